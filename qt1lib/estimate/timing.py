"""Wall time and peak memory of the registered T1 estimators on one simulated volume.

What the performance page of the book runs at build time (``notebooks/08_performance.ipynb``)
and what ``bench/bench_t1_mapping.py`` measures at full size: every estimator maps the same
simulated voxels of the seed's 7 T MP3RAGE acquisition (:func:`simulate_volume`), and its time
is reported as a ratio to the plain lookup table's in the same run, so that the figures travel
between machines better than seconds do.

Each estimator is timed in three steps:

1. *build*: its first fit on :data:`WARM_VOXELS` voxels, which builds what it caches per
   process (the lookup tables, the seed MAP's histogram, the exact MAP's dictionary or
   posterior table) and is otherwise negligible;
2. *fit*: the whole volume, wall time (``time.perf_counter``);
3. *memory*: the whole volume again under :mod:`tracemalloc` (NumPy reports its buffers to it),
   the peak of traced allocations above those before the fit; the input volume is not counted.
   torch's CPU buffers are not traced, so for estimators that compute in torch this is a lower
   bound.
"""

from __future__ import annotations

import platform
import time
import tracemalloc
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..cpus import default_threads, usable_cpus
from ..protocols import SEED_7T_MP3RAGE
from ..sequences import gre_signals
from .base import estimator_class, make_estimator

__all__ = ["simulate_volume", "time_estimators", "machine_description", "DEFAULT_ESTIMATORS", "REFERENCE"]

#: The estimator every time is divided by: Marques' lookup table on S_12 without B1.
REFERENCE = "lut"
#: The estimators the performance page times, point estimates first.
DEFAULT_ESTIMATORS: tuple[str, ...] = (
    "lut",
    "lut_b1",
    "map_seed_mp2rage",
    "map_exact_mp2rage_nob1",
    "map_exact_mp2rage",
    "map_exact_mp3rage_nob1",
    "map_exact_mp3rage",
)
#: Voxels of the warm-up fit that builds an estimator's cached tables.
WARM_VOXELS = 64


def simulate_volume(n_voxels: int, sigma: float = 0.005, seed: int = 0) -> dict[str, np.ndarray]:
    """Noisy complex GRE signals of the seed 7 T MP3RAGE (all three readouts) for random voxels.

    T1 uniform in 0.6..4.5 s (brain tissue and CSF-free partial volume at 7 T), relative B1+
    uniform in 0.6..1.4 (the span of 7 T head B1+ maps; Marques & Gruetter 2013), |c| uniform in
    0.6..1.0 of M0 with a uniformly random phase, complex Gaussian noise of std ``sigma`` per
    real / imaginary part (default the seed's 0.005 of M0; Saunders et al. 2025).

    Parameters
    ----------
    n_voxels : int
        Number of voxels (>= 1).
    sigma : float
        Noise std (units of M0, > 0).
    seed : int
        Seed of the random generator.

    Returns
    -------
    dict
        ``"t1"`` (s) and ``"b1"`` of shape (n_voxels,), ``"gre"`` of shape (3, n_voxels).
    """
    if int(n_voxels) != n_voxels or n_voxels < 1:
        raise ValueError(f"n_voxels must be a positive integer, got {n_voxels!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be finite and > 0 (units of M0), got {sigma!r}")
    rng = np.random.default_rng(seed)
    n = int(n_voxels)
    t1 = rng.uniform(0.6, 4.5, n)
    b1 = rng.uniform(0.6, 1.4, n)
    scale = rng.uniform(0.6, 1.0, n) * np.exp(2j * np.pi * rng.random(n))
    gre = scale * gre_signals(t1, SEED_7T_MP3RAGE, b1)
    gre = gre + rng.normal(0, sigma, gre.shape) + 1j * rng.normal(0, sigma, gre.shape)
    return {"t1": t1, "b1": b1, "gre": gre}


def machine_description() -> str:
    """The machine a timing ran on, in words: processor, logical cores usable, the exact MAP's and torch's threads, device."""
    import torch

    cores = usable_cpus()
    processor = platform.processor() or platform.machine()
    try:  # Linux: the processor's marketing name
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            processor = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return (f"{processor}, {cores} logical CPU cores, the exact MAP on {default_threads()} threads, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads, NumPy {np.__version__}, {gpu}")


def _timed(fit, gre, b1) -> tuple[float, object]:
    start = time.perf_counter()
    out = fit(gre, b1)
    return time.perf_counter() - start, out


def time_estimators(
    names: Sequence[str] = DEFAULT_ESTIMATORS,
    n_voxels: int = 100_000,
    sigma: float = 0.005,
    seed: int = 0,
    options: dict[str, dict] | None = None,
    memory: bool = True,
) -> pd.DataFrame:
    """Time each estimator on one simulated volume (module docstring).

    Parameters
    ----------
    names : sequence of str
        Registered estimators; :data:`REFERENCE` is timed too when absent.
    n_voxels, sigma, seed
        The volume (:func:`simulate_volume`); ``sigma`` is also the estimators' noise level.
    options : dict, optional
        Estimator name -> its options (e.g. ``{"map_seed_mp2rage": {"seed_map_trials": 10000}}``).
    memory : bool
        Also measure the peak traced memory (a second fit of the volume).

    Returns
    -------
    DataFrame
        One row per estimator, in the order given (the reference first if added): ``estimator``,
        ``label``, ``build_s`` (the warm-up fit), ``fit_s``, ``ratio`` (``fit_s`` over the
        reference's), ``voxels_per_s``, ``peak_mib`` (NaN without ``memory``) and ``rmse_s`` (T1
        error on the voxels it marks valid, for orientation; chapter 02 studies accuracy).

    Raises
    ------
    ValueError
        An unknown estimator name (naming the known ones) or option.
    """
    names = list(dict.fromkeys(names))
    for name in names:
        estimator_class(name)  # a clear error for an unknown name before any work
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    options = dict(options or {})
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"options given for estimators that are not timed: {unknown}")
    volume = simulate_volume(n_voxels, sigma, seed)
    gre, b1, truth = volume["gre"], volume["b1"], volume["t1"]
    rows = []
    for name in names:  # loop over estimators
        estimator = make_estimator(name, SEED_7T_MP3RAGE, sigma, **options.get(name, {}))
        b1_in = None if estimator.b1 == "none" else b1
        warm = slice(0, min(WARM_VOXELS, gre.shape[1]))
        build_s, _ = _timed(estimator.fit, gre[:, warm], None if b1_in is None else b1_in[warm])
        fit_s, post = _timed(estimator.fit, gre, b1_in)
        peak = np.nan
        if memory:
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            estimator.fit(gre, b1_in)
            peak = (tracemalloc.get_traced_memory()[1] - before) / 2**20
            tracemalloc.stop()
        ok = post.valid & np.isfinite(post.map)
        rmse = float(np.sqrt(np.mean((post.map[ok] - truth[ok]) ** 2))) if ok.any() else np.nan
        rows.append({"estimator": name, "label": estimator.label, "build_s": build_s, "fit_s": fit_s,
                     "voxels_per_s": gre.shape[1] / fit_s, "peak_mib": peak, "rmse_s": rmse})
    table = pd.DataFrame(rows)
    table.insert(4, "ratio", table["fit_s"] / table.loc[table["estimator"] == REFERENCE, "fit_s"].iloc[0])
    return table
