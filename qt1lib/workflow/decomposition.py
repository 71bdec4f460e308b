"""The MP2RAGE-IR discrepancy of a cohort subject split by source (digital cohort only: it needs the truth).

For an estimator ``E`` and the SIR-space difference ``E(noisy) o T_est - IR`` (MP2RAGE map resampled
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
given B1 (:func:`qt1lib.estimate.b1_sensitivity.noise_free_reading`): ``X_E`` with the B1 the
estimator uses (nominal, or the measured map), ``X_true`` with the true B1+. So "MT" is the
two-pool physics read by a single-pool model, "estimator" what the estimator adds to the
noise-free reading of its own data (binning, prior, MP3RAGE's S_13), "B1" the effect of not
knowing B1+ exactly, "partial volume" the signal mixing of the MP2RAGE voxel (plus the table's
resolution), "resampling" the grid change, and the IR terms the error of the reference itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .. import tissues
from ..bids import read_mpnrage, read_sir
from ..estimate.b1_sensitivity import noise_free_reading
from ..estimate.base import estimator_class, estimator_options, make_estimator
from ..estimate.sir_fit import fit_sir
from ..phantom import cohort_settings, draw_subject, load_truth, simulate_subject, subject_label
from ..phantom.simulate import SimulationSettings
from .masks import estimation_region
from .mp2rage import scatter
from .sir_space import resample_to_sir, sir_space_subject
from .workspace import DerivativeEntry, Workspace, cached_images

__all__ = ["TERMS", "TERM_DESCRIPTIONS", "true_t1", "cohort_variant", "decompose_subject", "decomposition_table"]

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


def true_t1(r1f: np.ndarray) -> np.ndarray:
    """1/R1f (s) where R1f > 0, NaN elsewhere."""
    with np.errstate(divide="ignore"):
        return np.where(r1f > 0, 1.0 / r1f, np.nan)


def _settings_and_model(ws: Workspace, subject: str):
    """The cohort's simulation settings and the subject's model, rebuilt from ``parameters.json``."""
    if not ws.is_simulated or ws.cohort is None:
        raise ValueError(f"{ws.bids_dir} holds no digital cohort (derivatives/phantom/parameters.json): the truth is unknown")
    key_file = ws.bids_dir / "derivatives" / "phantom" / "parameters.json"
    return _settings_and_model_cached(str(ws.bids_dir.resolve()), subject, key_file.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _settings_and_model_cached(bids_dir: str, subject: str, stamp: int):
    """:func:`_settings_and_model` for one version (``stamp``) of the cohort."""
    from ..io import load_json

    bids_dir = Path(bids_dir)
    params = load_json(bids_dir / "derivatives" / "phantom" / "parameters.json")
    index = next((i for i in range(params["n_subjects"]) if subject_label(i) == subject), None)
    if index is None:
        raise ValueError(f"subject {subject!r} is not one of the cohort's {params['n_subjects']} subjects")
    values = {t.twopool.name: {k: v for k, v in dataclasses.asdict(t.twopool).items() if k != "source"}
              for t in tissues.ALL}
    if params["tissues"] != values:
        raise ValueError("the cohort was generated with tissue parameters other than the registry's; cannot re-simulate it")
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
    for key in ("b1_map_fwhm_mm", "deformation_mm", "rotation_sd_deg", "translation_sd_mm"):
        if params[key] != defaults[key]:
            raise ValueError(f"the cohort's {key} = {params[key]} differs from the simulation default; cannot re-simulate it")
    return settings, draw_subject(settings, index, params["anatomy_seed"]), params


def cohort_variant(ws: Workspace, subject: str, *, bound_pool: bool = True, noisy: bool = False):
    """One subject of the digital cohort re-simulated in memory, without noise or without the bound pool.

    The same anatomy, tissue parameters, B1+ and receive fields, motion and measured B1 map as
    the written cohort (:func:`qt1lib.phantom.simulate_subject` with the cohort's settings and
    seeds); with ``noisy=True`` and ``bound_pool`` as generated, it reproduces the written images.

    Parameters
    ----------
    ws : Workspace
        Of a digital cohort.
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
    settings, model, params = _settings_and_model(ws, subject)
    if not noisy:
        settings = dataclasses.replace(settings, snr=np.inf, sir_snr=np.inf)
    if not bound_pool:
        settings = dataclasses.replace(settings, bound_pool=False)
        model = dataclasses.replace(model, bound_pool=False)
    return simulate_subject(settings, model, params["seed"])


def decompose_subject(ws: Workspace, subject: str, estimators: Iterable[str] | None = None) -> dict:
    """Split ``E o T_est - IR`` of one cohort subject into :data:`TERMS` (module docstring), from the store or computed.

    Parameters
    ----------
    ws : Workspace
        Of a digital cohort.
    subject : str
    estimators : iterable of str, optional
        Estimators ``E``; default ``(ws.config.calibration_input,)``.

    Returns
    -------
    dict
        ``"terms"``: estimator -> ndarray (len(TERMS), X, Y, Z) on the SIR grid (s; published as a
        4-D ``space-SIR_desc-<desc>terms_T1map`` derivative); ``"total"``: estimator -> ``E o T_est
        - IR`` (s); ``"dseg"``, ``"converged"`` and ``"affine"`` of the SIR grid.
    """
    from tqdm.auto import tqdm

    names = [estimator_class(n).name for n in (estimators or (ws.config.calibration_input,))]
    s = sir_space_subject(ws, subject, estimators=names)
    if s.true_transform is None:
        raise ValueError("the decomposition needs the digital cohort's truth")
    mp2, sir = s.mp2rage, s.sir
    shape, affine = s.shape, s.affine
    truth_inputs = sorted((ws.bids_dir / "derivatives" / "phantom" / f"sub-{subject}").rglob("*.*"))
    variants: dict = {}

    def lazy_variants() -> dict:
        if not variants:
            variants["two"] = cohort_variant(ws, subject)
            variants["one"] = cohort_variant(ws, subject, bound_pool=False)
            variants["truth"] = load_truth(ws.bids_dir, subject)
            variants["t1_true_sir"] = true_t1(load_truth(ws.bids_dir, subject, "SIR")["r1f"])
            fit = fit_sir(variants["two"].sir[:, sir.fit_mask], sir.protocol)
            ir_nf = np.full(sir.shape, np.nan)
            ir_nf[sir.fit_mask] = 1.0 / fit.r1f
            variants["ir_nf"] = ir_nf
        return variants

    settings = ws.estimator_settings()
    terms, totals = {}, {}
    for name in tqdm(names, desc=f"sub-{subject} bias terms", disable=not ws.progress, leave=False):
        estimator = make_estimator(name, mp2.protocol, mp2.sigma, **estimator_options(name, settings))
        params = {"terms": list(TERMS), "estimator": estimator.parameters(), "mp2rage": mp2[name].key,
                  "sir": sir.key, "transform": np.asarray(s.transform.matrix).tolist(),
                  "mask_dilation": ws.config.mask_dilation}

        def compute(name=name, estimator=estimator) -> dict:
            v = lazy_variants()
            truth = v["truth"]
            region = estimation_region(mp2.brain, ws.config.mask_dilation)
            b1_map = None if estimator.b1 == "none" else mp2.b1[region]

            def est(images) -> np.ndarray:
                return scatter(estimator.fit(images.gre[:, region], b1=b1_map).map, region)

            one = v["one"].gre[:, region]
            prior = ws.config.scale_prior
            grid = {
                "noisy": mp2[name].t1,
                "nf2": est(v["two"]),
                "nf1": est(v["one"]),
                "x_e": scatter(noise_free_reading(one, mp2.protocol, estimator.readouts, b1_map, scale_prior=prior), region),
                "x_true": scatter(noise_free_reading(one, mp2.protocol, estimator.readouts, truth["b1"][region],
                                                     scale_prior=prior), region),
                "t1_true": true_t1(truth["r1f"]).astype(np.float32),
            }
            r = {k: resample_to_sir(m, mp2.affine, s.true_transform, shape, affine) for k, m in grid.items()}
            t_sir, ir, ir_nf = v["t1_true_sir"], sir.ir_t1, v["ir_nf"]
            stack = np.stack([
                s[name].t1 - r["noisy"],
                r["noisy"] - r["nf2"],
                r["nf2"] - r["nf1"],
                r["nf1"] - r["x_e"],
                r["x_e"] - r["x_true"],
                r["x_true"] - r["t1_true"],
                r["t1_true"] - t_sir,
                -(ir - ir_nf),
                -(ir_nf - t_sir),
            ])
            return {"terms": stack}

        entry = {"terms": DerivativeEntry("T1map", f"{estimator.desc}terms", "SIR", units="s", skull_stripped=True,
                                          description=f"{estimator.label}: bias terms (s), one volume per term of TERMS; "
                                                      "NaN outside the estimation region")}
        maps, _ = cached_images(
            ws, subject, "bias_terms", entry, params, affine, compute, inputs=[*ws.cohort_inputs(), *truth_inputs],
            modules=(__name__, "qt1lib.phantom", "qt1lib.estimate.b1_sensitivity", *estimator.modules),
        )
        terms[name] = maps["terms"]
        totals[name] = s[name].t1 - sir.ir_t1
    return {"terms": terms, "total": totals, "dseg": s.dseg, "converged": sir.converged, "affine": affine}


def decomposition_table(ws: Workspace, subjects: Iterable[str], estimators: Iterable[str] | None = None) -> pd.DataFrame:
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
    rows = []
    for subject in subjects:
        d = decompose_subject(ws, subject, estimators)
        for name, stack in d["terms"].items():
            ok = d["converged"] & np.all(np.isfinite(stack), axis=0) & np.isfinite(d["total"][name])
            for t in tissues.SCORED:
                sel = ok & (d["dseg"] == t.label)
                n = int(sel.sum())
                values = list(zip(TERMS, stack[:, sel])) + [("total", d["total"][name][sel])]
                for term, x in values:
                    x = np.asarray(x, dtype=float)
                    rows.append({
                        "subject": subject, "estimator": name, "label": estimator_class(name).label, "tissue": t.name,
                        "term": term, "mean": float(x.mean()) if n else np.nan,
                        "rms": float(np.sqrt(np.mean(x**2))) if n else np.nan, "n": n,
                    })
    return pd.DataFrame(rows)
