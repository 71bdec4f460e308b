"""Where T1 errors come from: B1+ sensitivity of the estimators, and the MP2RAGE-IR bias split by source.

**B1+ sensitivity.** An estimator that reads T1 from a combination ``S(T1, B1)`` with the
wrong B1 (nominal flip angles, or an erroneous B1 map) errs, to first order, by

    dT1 = -(dS/dB1) / (dS/dT1) dB1

(implicit function theorem on ``S(T1, B1) = s``; the B1 dependence of MP2RAGE's ``S_12`` is
Marques & Gruetter 2013, PLoS One 8:e69294). :func:`b1_sensitivity` evaluates it for any
combination ``S_1j`` (:func:`qt1lib.sequences.uni`), :func:`b1_error_grid` simulates the full
error of every estimator of :data:`qt1lib.pipeline.ESTIMATORS` on a T1 x B1 grid, and
:func:`b1_voxel_table` collects the cohort's voxelwise errors with their true B1+.

**Decomposition of the MP2RAGE-IR discrepancy** (digital cohort only: it needs the truth). For
an estimator ``E`` and the SIR-space difference ``E(noisy) o T_est - IR`` (MP2RAGE map resampled
with the estimated transform minus the IR T1 = 1/R1f of the SIR fit), with ``o T`` meaning
"resampled into SIR space with transform T" (linear, so it commutes with differences), the
telescoping sum

===================  =========================================================================
term                 definition (SIR space)
===================  =========================================================================
registration         ``E(noisy) o T_est - E(noisy) o T_true``
noise                ``[E(noisy) - E(nf, 2-pool)] o T_true``
MT                   ``[E(nf, 2-pool) - E(nf, 1-pool)] o T_true``
estimator            ``[E(nf, 1-pool) - X_E(nf, 1-pool)] o T_true``
B1                   ``[X_E(nf, 1-pool) - X_true(nf, 1-pool)] o T_true``
partial volume       ``[X_true(nf, 1-pool) - T1_true] o T_true``
resampling           ``T1_true o T_true - T1_true(SIR grid)``
IR noise             ``-[IR(noisy) - IR(nf)]``
IR model             ``-[IR(nf) - T1_true(SIR grid)]``
===================  =========================================================================

adds up exactly to ``E(noisy) o T_est - IR(noisy)`` in every voxel. ``nf`` are the cohort's
images re-simulated without noise (:func:`cohort_variant`), ``1-pool`` with PSR = 0 (single-pool
tissue, same anatomy, B1+, receive fields and motion); ``T1_true`` is the free-water-weighted
1/R1f of the truth; ``X`` is the noise-free *reading* of the estimator's combination with a
given B1 (the lookup table for ``S_12``, Marques et al. 2010; the exact MAP at negligible noise
for MP3RAGE): ``X_E`` with the B1 the estimator uses (nominal, or the measured map), ``X_true``
with the true B1+. So "MT" is the two-pool physics read by a single-pool model, "estimator" what
the estimator adds to the noise-free reading of its own data (binning, prior, MP3RAGE's S_13),
"B1" the effect of not knowing B1+ exactly, "partial volume" the signal mixing of the MP2RAGE
voxel (plus the table's resolution), "resampling" the grid change, and the IR terms the error of
the reference itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .estimate.lut import lut_t1
from .estimate.sir_fit import fit_sir
from .pipeline import (
    ESTIMATORS,
    DerivativeEntry,
    PipelineConfig,
    cached_maps,
    cohort_parameters,
    estimator_spec,
    estimate_t1,
    estimation_region,
    mp2rage_maps,
    resample_to_sir,
    sir_space_subject,
)
from .protocols import MPnRAGEProtocol
from .sequences import gre_signals, uni
from .stats import TISSUE_LABELS

__all__ = [
    "b1_sensitivity",
    "b1_error_grid",
    "b1_voxel_table",
    "binned_error",
    "b1_slope_table",
    "agreement_table",
    "TERMS",
    "TERM_DESCRIPTIONS",
    "cohort_variant",
    "decompose_subject",
    "decomposition_table",
]


# ============================================================================ B1 sensitivity
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
    config: PipelineConfig,
    estimators: Iterable[str],
    *,
    b1_map_errors: Sequence[float] = (0.0,),
    n_noise: int = 0,
    seed: int = 0,
    work_dir: str | Path | None = None,
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
        Noise std (M0 units) of the data and of the estimators' likelihoods.
    config : PipelineConfig
    estimators : iterable of str
        Names of :data:`qt1lib.pipeline.ESTIMATORS`.
    b1_map_errors : sequence of float
        Relative errors of the B1 map.
    n_noise : int
        Noisy copies per grid point (0: noise-free).
    seed : int
    work_dir : path-like, optional
        Cache of the seed MAP models.

    Returns
    -------
    DataFrame
        One row per estimator, T1, B1 and map error: ``estimator``, ``label``, ``t1`` (s),
        ``b1``, ``b1_map_error``, ``t1_est`` (mean over noisy copies, s), ``t1_sd`` (s; 0 without
        noise), ``valid`` (fraction of copies that pass the estimator's plausibility test, see
        :class:`qt1lib.estimate.map.PosteriorT1`), ``error`` (s), ``rel_error`` (``t1_est / t1 - 1``).
    """
    t1 = np.asarray(t1_values, dtype=float)
    b1 = np.asarray(b1_values, dtype=float)
    if t1.ndim != 1 or b1.ndim != 1 or t1.size == 0 or b1.size == 0:
        raise ValueError("t1_values and b1_values must be non-empty 1-D sequences")
    if isinstance(n_noise, bool) or int(n_noise) != n_noise or n_noise < 0:
        raise ValueError(f"n_noise must be an integer >= 0, got {n_noise!r}")
    names = [estimator_spec(n).name for n in estimators]
    b1_map_errors = [float(e) for e in b1_map_errors]
    if not b1_map_errors or any(not np.isfinite(e) or e <= -1 for e in b1_map_errors):
        raise ValueError(f"b1_map_errors must be a non-empty sequence of finite values > -1, got {b1_map_errors!r}")
    g = gre_signals(t1[:, None], protocol, b1[None, :]).astype(complex)  # (n_readouts, n_t1, n_b1)
    if n_noise:
        rng = np.random.default_rng(seed)
        shape = (g.shape[0], int(n_noise), *g.shape[1:])
        g = g[:, None] + sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    tt, bb = (a.ravel() for a in np.meshgrid(t1, b1, indexing="ij"))
    rows = []
    for name in names:
        spec = ESTIMATORS[name]
        for e in b1_map_errors:
            if spec.b1 != "none" or e == b1_map_errors[0]:  # B1-unaware estimators: one run for every map error
                b1_map = None if spec.b1 == "none" else np.broadcast_to(b1 * (1 + e), g.shape[1:])
                post = estimate_t1(name, g, protocol, sigma, config, b1=b1_map, work_dir=work_dir)
                est, valid = post.map, post.valid & np.isfinite(post.map)
                with np.errstate(invalid="ignore"):
                    mean = np.nanmean(est, axis=0) if n_noise else est
                    sd = np.nanstd(est, axis=0) if n_noise else np.zeros_like(est)
                valid = valid.mean(axis=0) if n_noise else valid.astype(float)
            rows.append(
                pd.DataFrame(
                    {"estimator": name, "label": spec.label, "t1": tt, "b1": bb, "b1_map_error": float(e),
                     "t1_est": mean.ravel(), "t1_sd": sd.ravel(), "valid": valid.ravel()}
                )
            )
    out = pd.concat(rows, ignore_index=True)
    out["error"] = out["t1_est"] - out["t1"]
    out["rel_error"] = out["t1_est"] / out["t1"] - 1
    return out


# ============================================================================ cohort variants
def _settings_and_model(bids_dir: Path, subject: str):
    """The cohort's simulation settings and the subject's model, rebuilt from ``parameters.json``."""
    key_file = Path(bids_dir) / "derivatives" / "phantom" / "parameters.json"
    if not key_file.is_file():
        raise ValueError(f"{bids_dir} holds no digital cohort (derivatives/phantom/parameters.json): the truth is unknown")
    return _settings_and_model_cached(str(Path(bids_dir).resolve()), subject, key_file.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _settings_and_model_cached(bids_dir: str, subject: str, stamp: int):
    """:func:`_settings_and_model` for one version (``stamp``) of the cohort."""
    bids_dir = Path(bids_dir)
    from .bids import read_mpnrage, read_sir
    from .phantom import cohort_settings, draw_subject, subject_label
    from .phantom.simulate import SimulationSettings
    from .sequences.twopool import TISSUES_7T

    params = cohort_parameters(bids_dir)
    index = next((i for i in range(params["n_subjects"]) if subject_label(i) == subject), None)
    if index is None:
        raise ValueError(f"subject {subject!r} is not one of the cohort's {params['n_subjects']} subjects")
    tissues = {n: {k: v for k, v in dataclasses.asdict(t).items() if k != "source"} for n, t in TISSUES_7T.items()}
    if params["tissues"] != tissues:
        raise ValueError("the cohort was generated with tissue parameters other than TISSUES_7T; cannot re-simulate it")
    settings = cohort_settings(
        params["profile"],
        np.inf if params["snr"] is None else params["snr"],
        sir_snr=np.inf if params["sir_snr"] is None else params["sir_snr"],
        voxel_size=tuple(params["voxel_size_mm"]),
        sir_voxel_size=tuple(params["sir_voxel_size_mm"]),
        protocol=read_mpnrage(bids_dir, subject).protocol,
        sir_protocol=read_sir(bids_dir, subject).protocol,
        b1_noise=params["b1_noise"],
        motion=params["motion"],
        bound_pool=params["bound_pool"],
    )
    defaults = {f.name: f.default for f in dataclasses.fields(SimulationSettings)}
    for key, field_name in (("b1_map_fwhm_mm", "b1_map_fwhm_mm"), ("deformation_mm", "deformation_mm"),
                            ("rotation_sd_deg", "rotation_sd_deg"), ("translation_sd_mm", "translation_sd_mm")):
        if params[key] != defaults[field_name]:
            raise ValueError(f"the cohort's {key} = {params[key]} differs from the simulation default; cannot re-simulate it")
    return settings, draw_subject(settings, index, params["anatomy_seed"]), params


def cohort_variant(bids_dir: str | Path, subject: str, *, bound_pool: bool = True, noisy: bool = False):
    """One subject of the digital cohort re-simulated in memory, without noise or without the bound pool.

    The same anatomy, tissue parameters, B1+ and receive fields, motion and measured B1 map as
    the written cohort (:func:`qt1lib.phantom.simulate_subject` with the cohort's settings and
    seeds); with ``noisy=True`` and ``bound_pool`` as generated, it reproduces the written images.

    Parameters
    ----------
    bids_dir : path-like
        A digital cohort.
    subject : str
        Label without ``sub-``.
    bound_pool : bool
        False: PSR = 0 in every tissue (single-pool physics). Ignored (False) for a cohort
        generated without bound pool.
    noisy : bool
        Keep the cohort's noise (True) or simulate noise-free images (False).

    Returns
    -------
    qt1lib.phantom.SubjectImages
    """
    from .phantom import simulate_subject

    bids_dir = Path(bids_dir)
    settings, model, params = _settings_and_model(bids_dir, subject)
    if not noisy:
        settings = dataclasses.replace(settings, snr=np.inf, sir_snr=np.inf)
    if not bound_pool:
        settings = dataclasses.replace(settings, bound_pool=False)
        model = dataclasses.replace(model, bound_pool=False)
    return simulate_subject(settings, model, params["seed"])


# ============================================================================ cohort B1 table
def _true_t1(r1f: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(r1f > 0, 1.0 / r1f, np.nan)


def b1_voxel_table(
    bids_dir: str | Path,
    subjects: Iterable[str],
    config: PipelineConfig,
    estimators: Iterable[str],
    *,
    purity: float = 0.9,
    max_voxels: int | None = 20_000,
    seed: int = 0,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Voxelwise T1 errors of the cohort's MP2RAGE-space maps with the voxels' true B1+.

    Voxels: in the brain, labelled WM / subcortical GM / cortical GM, with at least ``purity`` of
    one tissue (nearly free of partial volume), at most ``max_voxels`` per subject (drawn from
    ``seed``). Reference values: the truth ``t1_true`` (1/R1f) and ``t1_b1_perfect``, the
    lookup-table reading of the noise-free two-pool signals with the true B1+
    (:func:`cohort_variant`): what a B1-perfect, noise-free MP2RAGE reading gives, MT bias
    included. ``estimate - t1_b1_perfect`` therefore isolates B1, noise and estimator effects.

    Returns
    -------
    DataFrame
        One row per voxel and estimator: ``subject``, ``tissue``, ``b1_true``, ``b1_map``,
        ``psr``, ``t1_true``, ``t1_b1_perfect``, ``estimator``, ``label``, ``t1``, ``error``
        (``t1 - t1_true``, s), ``error_b1`` (``t1 - t1_b1_perfect``, s).
    """
    from tqdm.auto import tqdm

    from .phantom import load_truth

    if not 0 < purity <= 1:
        raise ValueError(f"purity must lie in (0, 1], got {purity!r}")
    names = [estimator_spec(n).name for n in estimators]
    rng = np.random.default_rng(seed)
    frames = []
    for subject in tqdm(list(subjects), desc="B1 table", disable=not progress):
        maps = mp2rage_maps(bids_dir, subject, config, work_dir, estimators=names, progress=progress)
        truth = load_truth(bids_dir, subject)
        sel = maps["brain"] & np.isin(truth["dseg"], list(TISSUE_LABELS)) & (truth["fractions"].max(axis=0) >= purity)
        idx = np.flatnonzero(sel)
        if max_voxels is not None and idx.size > max_voxels:
            idx = np.sort(rng.choice(idx, size=int(max_voxels), replace=False))
        nf = cohort_variant(bids_dir, subject)
        g = nf.gre.reshape(nf.gre.shape[0], -1)[:, idx]
        b1_true = truth["b1"].ravel()[idx]
        base = pd.DataFrame(
            {
                "subject": subject,
                "tissue": pd.Series(truth["dseg"].ravel()[idx]).map(TISSUE_LABELS).to_numpy(),
                "b1_true": b1_true,
                "b1_map": maps["b1"].ravel()[idx],
                "psr": truth["psr"].ravel()[idx],
                "t1_true": _true_t1(truth["r1f"].ravel()[idx]),
                "t1_b1_perfect": lut_t1(uni(g[0], g[1]), maps["protocol"], np.clip(b1_true, 0.3, 2.0)),
            }
        )
        for name in names:
            frames.append(base.assign(estimator=name, label=ESTIMATORS[name].label, t1=maps[name].ravel()[idx]))
    out = pd.concat(frames, ignore_index=True)
    out["error"] = out["t1"] - out["t1_true"]
    out["error_b1"] = out["t1"] - out["t1_b1_perfect"]
    return out


def binned_error(
    table: pd.DataFrame, value: str = "error_b1", by: str = "b1_true", bins: Sequence[float] | int = 10
) -> pd.DataFrame:
    """Median and quartiles of ``value`` in bins of ``by``, per tissue and estimator.

    Parameters
    ----------
    table : DataFrame
        :func:`b1_voxel_table` output (columns ``tissue``, ``estimator``, ``label``, ``by``, ``value``).
    value, by : str
        Columns.
    bins : int or sequence of float
        Bin edges, or the number of equal-width bins over the range of ``by``.

    Returns
    -------
    DataFrame
        ``tissue``, ``estimator``, ``label``, ``bin_centre``, ``median``, ``q25``, ``q75``, ``n``;
        bins with fewer than 20 voxels are dropped.
    """
    for col in ("tissue", "estimator", "label", value, by):
        if col not in table.columns:
            raise ValueError(f"table lacks column {col!r}")
    edges = np.linspace(table[by].min(), table[by].max(), int(bins) + 1) if np.isscalar(bins) else np.asarray(bins, float)
    centres = (edges[:-1] + edges[1:]) / 2
    df = table.assign(_bin=pd.cut(table[by], edges, labels=False, include_lowest=True)).dropna(subset=["_bin", value])
    g = df.groupby(["tissue", "estimator", "label", "_bin"], observed=True)[value]
    out = g.agg(median="median", q25=lambda x: x.quantile(0.25), q75=lambda x: x.quantile(0.75), n="size").reset_index()
    out["bin_centre"] = centres[out["_bin"].astype(int)]
    return out[out["n"] >= 20].drop(columns="_bin").reset_index(drop=True)


def b1_slope_table(table: pd.DataFrame, value: str = "error_b1", by: str = "b1_true") -> pd.DataFrame:
    """Least-squares slope of ``value`` against ``by`` per estimator and tissue.

    For ``value="error_b1"`` and ``by="b1_true"`` the slope is the cohort's T1 error per unit of
    B1+ (s), the voxelwise counterpart of :func:`b1_sensitivity` (which is minus the slope for a
    reading at nominal B1).

    Returns
    -------
    DataFrame
        ``estimator``, ``label``, ``tissue``, ``slope`` (units of ``value`` per unit of ``by``),
        ``intercept`` (at ``by = 1``), ``rms`` (of ``value``), ``n``.
    """
    for col in ("tissue", "estimator", "label", value, by):
        if col not in table.columns:
            raise ValueError(f"table lacks column {col!r}")
    rows = []
    for (name, label, tissue), df in table.dropna(subset=[value, by]).groupby(["estimator", "label", "tissue"], sort=False):
        x, y = df[by].to_numpy(float) - 1.0, df[value].to_numpy(float)
        slope, intercept = np.polyfit(x, y, 1) if len(df) > 2 else (np.nan, np.nan)
        rows.append({"estimator": name, "label": label, "tissue": tissue, "slope": slope, "intercept": intercept,
                     "rms": float(np.sqrt(np.mean(y**2))), "n": len(df)})
    return pd.DataFrame(rows)


def agreement_table(
    bids_dir: str | Path,
    subjects: Iterable[str],
    config: PipelineConfig,
    estimators: Iterable[str],
    *,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Voxel table of MP2RAGE-space estimates against the IR T1, in SIR space (:mod:`qt1lib.stats` layout).

    Voxels: brain, labels 1..3, converged SIR fit, finite IR T1 (the calibration's voxels,
    :func:`qt1lib.pipeline.calibration_subjects`).

    Returns
    -------
    DataFrame
        ``subject``, ``method`` (estimator), ``label`` (display name), ``tissue``, ``estimate``
        and ``reference`` (T1, s); feed it to :func:`qt1lib.stats.tissue_metrics`.
    """
    names = [estimator_spec(n).name for n in estimators]
    frames = []
    for subject in subjects:
        s = sir_space_subject(bids_dir, subject, config, work_dir, estimators=names, progress=progress)
        mask = s["brain"] & np.isin(s["dseg"], list(TISSUE_LABELS)) & s["converged"] & np.isfinite(s["ir_t1"])
        tissue = pd.Series(s["dseg"][mask]).map(TISSUE_LABELS).to_numpy()
        for name in names:
            frames.append(
                pd.DataFrame(
                    {"subject": subject, "method": name, "label": ESTIMATORS[name].label, "tissue": tissue,
                     "estimate": s[name][mask], "reference": s["ir_t1"][mask]}
                )
            )
    return pd.concat(frames, ignore_index=True)


# ============================================================================ decomposition
#: Terms of the decomposition, in the order of the telescoping sum (module docstring).
TERMS: tuple[str, ...] = (
    "registration",
    "noise",
    "MT",
    "estimator",
    "B1",
    "partial volume",
    "resampling",
    "IR noise",
    "IR model",
)
#: What each term measures.
TERM_DESCRIPTIONS: dict[str, str] = {
    "registration": "estimated instead of true transform into SIR space",
    "noise": "MP2RAGE image noise",
    "MT": "two-pool (magnetization transfer) physics read by a single-pool model",
    "estimator": "the estimator against the noise-free reading of its own combination (binning, prior, S_13)",
    "B1": "B1+ the estimator assumes (nominal or measured map) instead of the true B1+",
    "partial volume": "signals of several tissues mixed in an MP2RAGE voxel (and the table's resolution)",
    "resampling": "true T1 resampled from the MP2RAGE grid onto the coarser SIR grid",
    "IR noise": "SIR image noise, with the sign of an error of the reference",
    "IR model": "SIR fit of mixed-tissue voxels and fixed kmf, with the sign of an error of the reference",
}


def _reading(gre: np.ndarray, protocol: MPnRAGEProtocol, readouts: tuple[int, ...], b1, config: PipelineConfig) -> np.ndarray:
    """Noise-free reading of a combination: the LUT for S_12, the exact MAP at negligible noise for MP3RAGE."""
    if tuple(readouts) == (1, 2):
        return lut_t1(uni(gre[0], gre[1]), protocol, None if b1 is None else np.clip(b1, 0.3, 2.0))
    name = "map_exact_mp3rage_nob1" if b1 is None else "map_exact_mp3rage_b1"
    return estimate_t1(name, gre, protocol, 0.0, config, b1=b1).map


def decompose_subject(
    bids_dir: str | Path,
    subject: str,
    config: PipelineConfig | None = None,
    estimators: Iterable[str] | None = None,
    *,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Split ``E o T_est - IR`` of one cohort subject into :data:`TERMS` (module docstring), cached.

    Parameters
    ----------
    bids_dir : path-like
        A digital cohort.
    subject : str
    config : PipelineConfig, optional
    estimators : iterable of str, optional
        Estimators ``E``; default ``(config.calibration_input,)``.
    work_dir, progress
        As :func:`qt1lib.pipeline.mp2rage_maps`.

    Returns
    -------
    dict
        ``"terms"``: estimator -> ndarray (len(TERMS), X, Y, Z) on the SIR grid (s; cached as a
        4-D ``space-SIR_desc-<desc>terms_T1map`` derivative); ``"total"``: estimator -> ``E o T_est
        - IR`` (s); ``"dseg"``, ``"converged"`` and ``"affine"`` of the SIR grid.
    """
    from tqdm.auto import tqdm

    from .phantom import load_truth

    bids_dir = Path(bids_dir)
    config = config or PipelineConfig()
    names = [estimator_spec(n).name for n in (estimators or (config.calibration_input,))]
    sir = sir_space_subject(bids_dir, subject, config, work_dir, estimators=names, progress=progress)
    if sir["true_transform"] is None:
        raise ValueError("the decomposition needs the digital cohort's truth")
    shape, affine = sir["shape"], sir["affine"]
    variants: dict[str, Any] = {}

    def lazy_variants() -> dict:
        if not variants:
            mp2 = mp2rage_maps(bids_dir, subject, config, work_dir, estimators=names, progress=False)
            variants["mp2"] = mp2
            variants["two"] = cohort_variant(bids_dir, subject)
            variants["one"] = cohort_variant(bids_dir, subject, bound_pool=False)
            variants["truth"] = load_truth(bids_dir, subject)
            truth_sir = load_truth(bids_dir, subject, "SIR")
            variants["t1_true_sir"] = _true_t1(truth_sir["r1f"])
            fit_mask = sir["fit_mask"]
            fit = fit_sir(variants["two"].sir[:, fit_mask], sir["sir_protocol"])
            ir_nf = np.full(shape, np.nan)
            ir_nf[fit_mask] = 1.0 / fit.r1f
            variants["ir_nf"] = ir_nf
        return variants

    terms, totals = {}, {}
    for name in tqdm(names, desc=f"sub-{subject} bias terms", disable=not progress, leave=False):
        spec = ESTIMATORS[name]
        params = {
            "step": "bias_terms",
            "terms": list(TERMS),
            "estimator": name,
            "pipeline": config.to_dict(),
        }

        def compute(name=name, spec=spec) -> dict:
            v = lazy_variants()
            mp2, truth = v["mp2"], v["truth"]
            protocol, sigma = mp2["protocol"], mp2["sigma"]
            region = estimation_region(mp2["brain"], config)
            b1_map = None if spec.b1 == "none" else mp2["b1"][region]

            def on_grid(values) -> np.ndarray:
                out = np.full(region.shape, np.nan, dtype=np.float32)
                out[region] = values
                return out

            def est(images) -> np.ndarray:
                post = estimate_t1(name, images.gre[:, region], protocol, sigma, config, b1=b1_map, work_dir=work_dir)
                return on_grid(post.map)

            one = v["one"].gre[:, region]
            mp2_grid = {
                "noisy": mp2[name],
                "nf2": est(v["two"]),
                "nf1": est(v["one"]),
                "x_e": on_grid(_reading(one, protocol, spec.readouts, b1_map, config)),
                "x_true": on_grid(_reading(one, protocol, spec.readouts, truth["b1"][region], config)),
                "t1_true": _true_t1(truth["r1f"]).astype(np.float32),
            }
            r = {k: resample_to_sir(m, mp2["affine"], sir["true_transform"], shape, affine) for k, m in mp2_grid.items()}
            t_sir, ir, ir_nf = v["t1_true_sir"], sir["ir_t1"], v["ir_nf"]
            stack = np.stack(
                [
                    sir[name] - r["noisy"],
                    r["noisy"] - r["nf2"],
                    r["nf2"] - r["nf1"],
                    r["nf1"] - r["x_e"],
                    r["x_e"] - r["x_true"],
                    r["x_true"] - r["t1_true"],
                    r["t1_true"] - t_sir,
                    -(ir - ir_nf),
                    -(ir_nf - t_sir),
                ]
            )
            return {name: stack}

        entry = {name: DerivativeEntry("T1map", f"{spec.desc}terms", "SIR", units="s")}
        terms[name] = cached_maps(bids_dir, subject, entry, params, affine, compute)[name]
        totals[name] = sir[name] - sir["ir_t1"]
    return {"terms": terms, "total": totals, "dseg": sir["dseg"], "converged": sir["converged"], "affine": affine}


def decomposition_table(
    bids_dir: str | Path,
    subjects: Iterable[str],
    config: PipelineConfig | None = None,
    estimators: Iterable[str] | None = None,
    *,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Per subject, estimator and tissue: the mean and RMS of every term and of the total.

    Voxels: labelled WM / subcortical GM / cortical GM in SIR space, converged SIR fit, every
    term finite (the calibration's voxels). The means of the terms add up to the mean of the
    total (the bias ``E o T_est - IR``); RMS values do not add.

    Returns
    -------
    DataFrame
        ``subject``, ``estimator``, ``label``, ``tissue``, ``term`` (:data:`TERMS` and
        ``"total"``), ``mean`` (s), ``rms`` (s), ``n``.
    """
    config = config or PipelineConfig()
    rows = []
    for subject in subjects:
        d = decompose_subject(bids_dir, subject, config, estimators, work_dir=work_dir, progress=progress)
        for name, stack in d["terms"].items():
            ok = d["converged"] & np.all(np.isfinite(stack), axis=0) & np.isfinite(d["total"][name])
            for label, tissue in TISSUE_LABELS.items():
                sel = ok & (d["dseg"] == label)
                n = int(sel.sum())
                values = list(zip(TERMS, stack[:, sel])) + [("total", d["total"][name][sel])]
                for term, x in values:
                    x = np.asarray(x, dtype=float)
                    rows.append(
                        {
                            "subject": subject,
                            "estimator": name,
                            "label": ESTIMATORS[name].label,
                            "tissue": tissue,
                            "term": term,
                            "mean": float(x.mean()) if n else np.nan,
                            "rms": float(np.sqrt(np.mean(x**2))) if n else np.nan,
                            "n": n,
                        }
                    )
    return pd.DataFrame(rows)
