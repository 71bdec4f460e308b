"""B1+ sensitivity of the T1 estimators: first-order theory and simulated errors on a T1 x B1 grid.

An estimator that reads T1 from a combination ``S(T1, B1)`` with the wrong B1 (nominal flip
angles, or an erroneous B1 map) errs, to first order, by

    dT1 = -(dS/dB1) / (dS/dT1) dB1

(implicit function theorem on ``S(T1, B1) = s``; the B1 dependence of MP2RAGE's ``S_12`` is
Marques & Gruetter 2013, PLoS One 8:e69294). :func:`b1_sensitivity` evaluates it for any
combination ``S_1j`` (:func:`qt1lib.sequences.uni`); :func:`b1_error_grid` simulates the full
error of registered estimators (:func:`qt1lib.estimate.base.make_estimator`) on a grid of true
T1, true B1+ and B1-map errors; :func:`noise_free_reading` is the noise-free reading of a
combination with a given B1 (the ``X`` of the MP2RAGE-IR bias decomposition).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..protocols import MPnRAGEProtocol
from ..sequences import gre_signals, uni
from ..validate import require_integer
from .base import estimator_class, estimator_names, make_estimator
from .base import estimator_options as _accepted_options  # the name of b1_error_grid's argument

__all__ = ["b1_sensitivity", "b1_error_grid", "noise_free_reading"]


def b1_sensitivity(
    t1: np.ndarray, protocol: MPnRAGEProtocol, pair: tuple[int, int] = (1, 2), b1: np.ndarray | float = 1.0, step: float = 1e-3
) -> np.ndarray:
    """First-order T1 error per unit B1+ error of a reading of ``S_pair`` that ignores B1.

    ``dT1/dB1 = -(dS/dB1) / (dS/dT1)`` at fixed ``S`` (module docstring), by central differences
    of :func:`qt1lib.sequences.gre_signals` (relative steps ``step`` in T1 and absolute ``step``
    in B1). A reading that assumes ``B1 + dB1`` instead of the true ``B1`` errs by about
    ``-dT1/dB1 * dB1``.

    Parameters
    ----------
    t1 : array_like
        T1 (s), > 0.
    protocol : MPnRAGEProtocol
    pair : (int, int)
        1-based readouts of the combination, e.g. ``(1, 3)`` for S_13.
    b1 : array_like or float
        True relative B1+, broadcast with ``t1``.
    step : float
        Finite-difference step.

    Returns
    -------
    ndarray
        dT1/dB1 (s per unit relative B1), shape of ``np.broadcast(t1, b1)``; NaN where ``S`` does
        not change with T1.
    """
    t1 = np.asarray(t1, dtype=float)
    b1 = np.asarray(b1, dtype=float)
    if np.any(~np.isfinite(t1)) or np.any(t1 <= 0):
        raise ValueError("t1 must be finite and > 0 (s)")
    if np.any(~np.isfinite(b1)) or np.any(b1 <= step):
        raise ValueError(f"b1 must be finite and > step = {step}")
    i, j = pair
    if not (1 <= i <= protocol.n_readouts and 1 <= j <= protocol.n_readouts and i != j):
        raise ValueError(f"pair {pair!r} names readouts that protocol {protocol.name!r} (1..{protocol.n_readouts}) lacks")

    def s(t, b):
        g = gre_signals(t, protocol, b)
        return uni(g[i - 1], g[j - 1])

    ds_db1 = (s(t1, b1 + step) - s(t1, b1 - step)) / (2 * step)
    h = step * t1
    ds_dt1 = (s(t1 + h, b1) - s(t1 - h, b1)) / (2 * h)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -ds_db1 / ds_dt1
    return np.where(np.isfinite(out), out, np.nan)


def b1_error_grid(
    t1_values: Sequence[float],
    b1_values: Sequence[float],
    protocol: MPnRAGEProtocol,
    sigma: float,
    estimators: Iterable[str],
    *,
    estimator_options: Mapping[str, Any] | None = None,
    b1_map_errors: Sequence[float] = (0.0,),
    n_noise: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """T1 errors of estimators on a grid of true T1, true B1+ and B1-map errors (single-pool signals).

    Signals: :func:`qt1lib.sequences.gre_signals` of every readout at the true B1+ (M0 = 1,
    zero phase), with ``n_noise`` noisy copies (complex Gaussian noise of std ``sigma`` per
    part, from ``seed``) or noise-free (``n_noise=0``). Estimators that use a B1 map get
    ``B1_true * (1 + e)`` for each ``e`` of ``b1_map_errors``; the others get nothing.

    Parameters
    ----------
    t1_values, b1_values : sequence of float
        True T1 (s) and true relative B1+.
    protocol : MPnRAGEProtocol
        Acquisition (every readout).
    sigma : float
        Noise std (M0 units) of the data and of the estimators' likelihoods (0: noise-free
        data, read with :data:`qt1lib.estimate.base.NOISE_FREE_SIGMA`).
    estimators : iterable of str
        Names of registered estimators (:func:`qt1lib.estimate.base.estimator_names`).
    estimator_options : mapping, optional
        Options for the estimators, shared: each estimator takes the entries it accepts
        (:func:`qt1lib.estimate.base.estimator_options`), e.g. ``{"scale_prior": "jeffreys",
        "b1_sd": 0.02, "seed_map_trials": 100_000, "store": store}``. Default: every
        estimator's defaults. An entry that none of ``estimators`` accepts raises.
    b1_map_errors : sequence of float
        Relative errors of the B1 map.
    n_noise : int
        Noisy copies per grid point (0: noise-free).
    seed : int
        Seed of the noise.

    Returns
    -------
    DataFrame
        One row per estimator, T1, B1 and map error: ``estimator``, ``label``, ``t1`` (s),
        ``b1``, ``b1_map_error``, ``t1_est`` (mean over noisy copies, s), ``t1_sd`` (s; 0 without
        noise), ``valid`` (fraction of copies that pass the estimator's plausibility test, see
        :class:`qt1lib.estimate.base.PosteriorT1`), ``error`` (s), ``rel_error`` (``t1_est / t1 - 1``).

    Raises
    ------
    ValueError
        Empty grids, invalid ``n_noise`` or ``b1_map_errors``, an unknown estimator, or an
        option that no registered estimator accepts (a mistyped name; one shared mapping may hold
        options of estimators not in ``estimators``).
    """
    t1 = np.asarray(t1_values, dtype=float)
    b1 = np.asarray(b1_values, dtype=float)
    if t1.ndim != 1 or b1.ndim != 1 or t1.size == 0 or b1.size == 0:
        raise ValueError("t1_values and b1_values must be non-empty 1-D sequences")
    n_noise = require_integer("n_noise", n_noise, 0, integral_floats=True)
    names = [estimator_class(n).name for n in estimators]
    settings = dict(estimator_options or {})
    accepted = {k for n in estimator_names() for k in estimator_class(n).defaults}
    unused = sorted(set(settings) - accepted)
    if unused:
        raise ValueError(f"estimator_options {unused} are options of no registered estimator; known: {sorted(accepted)}")
    b1_map_errors = [float(e) for e in b1_map_errors]
    if not b1_map_errors or any(not np.isfinite(e) or e <= -1 for e in b1_map_errors):
        raise ValueError(f"b1_map_errors must be a non-empty sequence of finite values > -1, got {b1_map_errors!r}")
    g = gre_signals(t1[:, None], protocol, b1[None, :]).astype(complex)  # (n_readouts, n_t1, n_b1)
    if n_noise:
        rng = np.random.default_rng(seed)
        shape = (g.shape[0], n_noise, *g.shape[1:])
        g = g[:, None] + sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    tt, bb = (a.ravel() for a in np.meshgrid(t1, b1, indexing="ij"))
    rows = []
    for name in names:
        estimator = make_estimator(name, protocol, sigma, **_accepted_options(name, settings))
        for e in b1_map_errors:
            if estimator.b1 != "none" or e == b1_map_errors[0]:  # B1-unaware estimators: one run for every map error
                b1_map = None if estimator.b1 == "none" else np.broadcast_to(b1 * (1 + e), g.shape[1:])
                post = estimator.fit(g, b1=b1_map)
                est, valid = post.map, post.valid & np.isfinite(post.map)
                with np.errstate(invalid="ignore"):
                    mean = np.nanmean(est, axis=0) if n_noise else est
                    sd = np.nanstd(est, axis=0) if n_noise else np.zeros_like(est)
                valid = valid.mean(axis=0) if n_noise else valid.astype(float)
            rows.append(
                pd.DataFrame(
                    {"estimator": name, "label": estimator.label, "t1": tt, "b1": bb, "b1_map_error": float(e),
                     "t1_est": mean.ravel(), "t1_sd": sd.ravel(), "valid": valid.ravel()}
                )
            )
    out = pd.concat(rows, ignore_index=True)
    out["error"] = out["t1_est"] - out["t1"]
    out["rel_error"] = out["t1_est"] / out["t1"] - 1
    return out


#: The estimator of :func:`noise_free_reading` per readouts and B1 use.
_READING_ESTIMATORS = {
    ((1, 2), False): "lut",
    ((1, 2), True): "lut_b1",
    ((1, 2, 3), False): "map_exact_mp3rage_nob1",
    ((1, 2, 3), True): "map_exact_mp3rage_b1",
}


def noise_free_reading(
    gre: np.ndarray,
    protocol: MPnRAGEProtocol,
    readouts: tuple[int, ...],
    b1: np.ndarray | float | None = None,
    *,
    scale_prior: str = "jeffreys",
) -> np.ndarray:
    """Noise-free reading of the combinations of ``readouts`` with a given B1+.

    For S_12 (``readouts = (1, 2)``) the lookup table (Marques et al. 2010; the 2-D table of
    Marques & Gruetter 2013 with ``b1``: estimators ``lut`` / ``lut_b1``); for MP3RAGE
    (``(1, 2, 3)``) the exact MAP at negligible noise (:data:`~qt1lib.estimate.base.NOISE_FREE_SIGMA`;
    ``map_exact_mp3rage_nob1`` / ``map_exact_mp3rage_b1``): the T1 that a single-pool model reads
    from noise-free data, the ``X`` of the MP2RAGE-IR bias decomposition.

    Parameters
    ----------
    gre : array_like, complex, shape (protocol.n_readouts, ...)
        Noise-free GRE images of every readout.
    protocol : MPnRAGEProtocol
        The acquisition (every readout).
    readouts : tuple of int
        ``(1, 2)`` or ``(1, 2, 3)``.
    b1 : array_like or float, optional
        Relative B1+ the reading assumes (broadcast to the voxel shape; clipped into 0.3..2.0);
        None: nominal flip angles.
    scale_prior : {"flat", "jeffreys"}
        Prior of the complex scale of the exact MAP (MP3RAGE).

    Returns
    -------
    ndarray
        T1 (s), the voxel shape of ``gre``.
    """
    key = (tuple(int(r) for r in readouts), b1 is not None)
    if key not in _READING_ESTIMATORS:
        raise ValueError(f"readouts must be (1, 2) or (1, 2, 3), got {readouts!r}")
    name = _READING_ESTIMATORS[key]
    options = {"scale_prior": scale_prior} if estimator_class(name).method == "exact" else {}
    return make_estimator(name, protocol, 0.0, **options).fit(gre, b1=b1).map
