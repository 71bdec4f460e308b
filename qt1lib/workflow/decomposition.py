"""The MP2RAGE-IR discrepancy of a cohort subject split by source (digital cohort only: it needs the truth).

For an estimator ``E`` and the SIR-space difference ``E(noisy) o T_est - IR`` (MP2RAGE map resampled
with the estimated transform minus the IR T1 = 1/R1f of the SIR fit), with ``o T`` meaning
"resampled into SIR space with transform T" (linear, so it commutes with differences), a chain of
*levels* runs from the MP2RAGE map to the IR map, and each term is one level minus the next
(:data:`TERM_CHAIN`), so that the telescoping sum

===================  =========================================================================
term                 definition (SIR space)
===================  =========================================================================
registration         ``E(noisy) o T_est - E(noisy) o T_true``
noise                ``[E(noisy) - E(nf, 2-pool)] o T_true``
MT                   ``[E(nf, 2-pool) - E(nf, 1-pool)] o T_true``
inversion            ``[E(nf, 1-pool) - E(nf, 1-pool, eff)] o T_true``
estimator            ``[E(nf, 1-pool, eff) - X_E^model(nf, 1-pool, eff)] o T_true``
estimator model      ``[X_E^model(nf, 1-pool) - X_E(nf, 1-pool)] o T_true``
B1                   ``[X_E(nf, 1-pool) - X_true(nf, 1-pool)] o T_true``
partial volume       ``[X_true(nf, 1-pool) - T1_true] o T_true``
resampling           ``T1_true o T_true - T1_true(SIR grid)``
IR model             ``-[IR(nf, sat) - T1_true(SIR grid)]``
SIR readout          ``-[IR(nf) - IR(nf, sat)]``
IR noise             ``-[IR(noisy) - IR(nf)]``
===================  =========================================================================

adds up exactly to ``E(noisy) o T_est - IR(noisy)`` in every voxel. ``nf`` are the cohort's
images re-simulated without noise (:func:`cohort_variant`), ``1-pool`` with PSR = 0 (single-pool
tissue, same anatomy, B1+, receive fields and motion), ``eff`` with the protocol's inversion
efficiency in the data (the one the estimators assume) instead of the tissue's Bloch-simulated one,
``sat`` with a readout that fully saturates the free pool before each SIR delay (the SIR fit's
assumption); ``T1_true`` is the free-water-weighted
1/R1f of the truth; ``X`` is the noise-free *reading* of the estimator's combination with a
given B1 (:func:`qt1lib.estimate.b1_sensitivity.noise_free_reading`): ``X_E`` with the acquired
protocol and the B1 the estimator uses (nominal, or the measured map), ``X_true`` with the
acquired protocol and the true B1+, ``X_E^model`` with the sequence the estimator *models*
(:attr:`~qt1lib.estimate.base.T1Estimator.acquisition`) and the B1 it uses. So "MT" is the
two-pool physics read by a single-pool model, "inversion" the data's free-pool inversion
efficiency (per tissue, from a Bloch simulation of the pulse, :mod:`qt1lib.phantom.physics`)
against the protocol's constant that every estimator assumes, "estimator" what the estimator adds to the
noise-free reading of its own model (binning, prior, MP3RAGE's S_13), "estimator model" the
effect of modelling another sequence than the acquired one (the two-train dictionary of the
seed's public code, :mod:`qt1lib.estimate.seed_code`; zero, exactly, for an estimator that
models the acquisition), "B1" the effect of not knowing B1+ exactly, "partial volume" the
signal mixing of the MP2RAGE voxel (plus the table's resolution), "resampling" the grid change,
and the IR terms the error of the reference itself: "IR model" the SIR fit's own model (mixed-tissue
voxels, fixed kmf, ``R1m = R1f``), "SIR readout" the free-pool magnetization the readout leaves,
which the fit assumes to be zero, and "IR noise". "inversion" and "SIR readout" are exactly zero
for a cohort with the ``conservative`` physics.

Why the model term is split off "estimator" and not off "B1": "B1" compares two readings with the
acquired protocol at two B1+ (what the estimator uses, and the truth); the model mismatch is a
difference at one B1+ between two sequences, as the binning and the prior are differences at one
B1+ between two readings. It is measured at the B1+ the estimator uses, so that "B1" stays the
effect of B1+ on a reading with the acquired protocol for every estimator (another order would
move the interaction of the model mismatch with B1+ between the two terms; the sum does not change).

A new term is one more level: a :class:`Term` inserted into :data:`TERM_CHAIN` at its place in the
chain, and its level computed in :func:`decompose_subject` (``levels``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .. import tissues
from ..bids import read_mpnrage, read_sir
from ..estimate.b1_sensitivity import noise_free_reading
from ..estimate.base import T1Estimator, estimator_class, estimator_options, make_estimator
from ..estimate.sir_fit import fit_sir
from ..phantom import cohort_physics, cohort_settings, draw_subject, load_truth, simulate_subject, subject_label
from ..phantom.simulate import SimulationSettings
from ..protocols import MPnRAGEProtocol
from .masks import estimation_region
from .mp2rage import scatter
from .sir_space import resample_to_sir, sir_space_subject
from .workspace import DerivativeEntry, Workspace, cached_images

__all__ = [
    "Term",
    "START_LEVEL",
    "TERM_CHAIN",
    "TERMS",
    "TERM_DESCRIPTIONS",
    "true_t1",
    "cohort_variant",
    "model_reading",
    "decompose_subject",
    "decomposition_table",
]


@dataclass(frozen=True)
class Term:
    """One term of the telescoping sum: the level before it in :data:`TERM_CHAIN` minus ``level``.

    Parameters
    ----------
    name : str
        Name of the term (a row of the tables).
    level : str
        Key of the level the term ends at, and the next term starts from (``levels`` in
        :func:`decompose_subject`).
    definition : str
        That level, in the notation of the module docstring.
    description : str
        What the term measures.
    """

    name: str
    level: str
    definition: str
    description: str


#: The level the chain starts from: the MP2RAGE map resampled with the estimated transform.
START_LEVEL: tuple[str, str] = ("mp2rage", "E(noisy) o T_est")

#: The terms in the order of the chain (module docstring): term k is level k-1 minus level k.
TERM_CHAIN: tuple[Term, ...] = (
    Term("registration", "noisy", "E(noisy) o T_true", "estimated instead of true transform into SIR space"),
    Term("noise", "nf2", "E(nf, 2-pool) o T_true", "MP2RAGE image noise"),
    Term("MT", "nf1", "E(nf, 1-pool) o T_true",
         "two-pool (magnetization transfer) physics read by a single-pool model"),
    Term("inversion", "nf1_eff", "E(nf, 1-pool, eff) o T_true",
         "the data's free-pool inversion efficiency (Bloch-simulated per tissue) instead of the protocol's, "
         "which the estimators assume"),
    Term("estimator", "x_model", "X_E^model(nf, 1-pool, eff) o T_true",
         "the estimator against the noise-free reading of its own model (binning, prior, S_13)"),
    Term("estimator model", "x_e", "X_E(nf, 1-pool) o T_true",
         "the sequence the estimator models (e.g. the seed code's two trains) instead of the acquired one, "
         "at the B1+ the estimator uses; zero for an estimator that models the acquisition"),
    Term("B1", "x_true", "X_true(nf, 1-pool) o T_true",
         "B1+ the estimator assumes (nominal or measured map) instead of the true B1+"),
    Term("partial volume", "t1_true", "T1_true o T_true",
         "signals of several tissues mixed in an MP2RAGE voxel (and the table's resolution)"),
    Term("resampling", "t1_true_sir", "T1_true(SIR grid)",
         "true T1 resampled from the MP2RAGE grid onto the coarser SIR grid"),
    Term("IR model", "ir_nf_sat", "IR(nf, sat)",
         "SIR fit of mixed-tissue voxels, fixed kmf and R1m = R1f, with the sign of an error of the reference"),
    Term("SIR readout", "ir_nf", "IR(nf)",
         "free-pool magnetization left by the SIR readout, which the fit takes as zero, with the sign of an "
         "error of the reference"),
    Term("IR noise", "ir", "IR(noisy)", "SIR image noise, with the sign of an error of the reference"),
)
#: Terms of the decomposition, in the order of the telescoping sum.
TERMS: tuple[str, ...] = tuple(t.name for t in TERM_CHAIN)
#: What each term measures.
TERM_DESCRIPTIONS: dict[str, str] = {t.name: t.description for t in TERM_CHAIN}


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
    physics = cohort_physics(params["physics"])
    values = {t.twopool.name: {k: v for k, v in dataclasses.asdict(physics.tissues[t.twopool.name]).items()
                               if k != "source"} for t in tissues.ALL}
    if params["tissues"] != values:
        raise ValueError(f"the cohort was generated with tissue parameters other than those of its {physics.name!r} "
                         "physics; cannot re-simulate it")
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
        physics=physics.name,
    )
    defaults = {f.name: f.default for f in dataclasses.fields(SimulationSettings)}
    for key in ("b1_map_fwhm_mm", "deformation_mm", "rotation_sd_deg", "translation_sd_mm"):
        if params[key] != defaults[key]:
            raise ValueError(f"the cohort's {key} = {params[key]} differs from the simulation default; cannot re-simulate it")
    return settings, draw_subject(settings, index, params["anatomy_seed"]), params


def cohort_variant(
    ws: Workspace,
    subject: str,
    *,
    bound_pool: bool = True,
    noisy: bool = False,
    protocol_inversion: bool = False,
    saturating_readout: bool = False,
    sessions: tuple[str, ...] = ("mp2rage", "sir"),
):
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
    protocol_inversion : bool
        True: the MP3RAGE inversion has the protocol's efficiency in every tissue (what the
        estimators assume) instead of the cohort's.
    saturating_readout : bool
        True: the SIR readout leaves no free-pool magnetization (what the SIR fit assumes).
    sessions : tuple of {"mp2rage", "sir"}
        The sessions to simulate (:func:`qt1lib.phantom.simulate_subject`).

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
    if protocol_inversion:
        settings = dataclasses.replace(settings, inversion="protocol")
    if saturating_readout:
        settings = dataclasses.replace(settings, sir_readout_residual=0.0)
    return simulate_subject(settings, model, params["seed"], sessions)


def model_reading(
    estimator: T1Estimator,
    gre: np.ndarray,
    protocol: MPnRAGEProtocol,
    b1: np.ndarray | float | None,
    *,
    scale_prior: str = "jeffreys",
) -> np.ndarray | None:
    """Noise-free reading with the sequence the estimator models (``X_E^model``), or None if it models ``protocol``.

    An estimator simulates :attr:`~qt1lib.estimate.base.T1Estimator.acquisition`: the data's
    protocol renamed, for most; a fixed model of its own for the seed-code estimators
    (:mod:`qt1lib.estimate.seed_code`), which read the data's first readouts with it. The reading
    is :func:`qt1lib.estimate.b1_sensitivity.noise_free_reading` of the estimator's readouts with
    that model, on the data's first ``model.n_readouts`` readouts.

    Parameters
    ----------
    estimator : T1Estimator
    gre : array_like, complex, shape (protocol.n_readouts, ...)
        Noise-free GRE images of every readout of the data.
    protocol : MPnRAGEProtocol
        The data's acquisition.
    b1 : array_like or float, optional
        The B1+ the reading assumes (None: nominal).
    scale_prior : {"flat", "jeffreys"}
        As :func:`~qt1lib.estimate.b1_sensitivity.noise_free_reading`.

    Returns
    -------
    ndarray or None
        T1 (s), the voxel shape of ``gre``; None when the estimator models ``protocol`` itself
        (its model term is zero).
    """
    model = estimator.acquisition
    if model == protocol.with_changes(name="acquisition", source="", used_readouts=None):
        return None
    gre = np.asarray(gre)
    return noise_free_reading(gre[: model.n_readouts], model, estimator.readouts, b1, scale_prior=scale_prior)


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

    def ir_map(images) -> np.ndarray:
        fit = fit_sir(images.sir[:, sir.fit_mask], sir.protocol)
        out = np.full(sir.shape, np.nan)
        out[sir.fit_mask] = 1.0 / fit.r1f
        return out

    def lazy_variants() -> dict:
        if not variants:
            settings, _, _ = _settings_and_model(ws, subject)
            variants["two"] = cohort_variant(ws, subject)
            variants["one"] = cohort_variant(ws, subject, bound_pool=False, sessions=("mp2rage",))
            variants["one_eff"] = (
                variants["one"] if settings.inversion == "protocol"
                else cohort_variant(ws, subject, bound_pool=False, protocol_inversion=True, sessions=("mp2rage",))
            )
            variants["truth"] = load_truth(ws.bids_dir, subject)
            variants["t1_true_sir"] = true_t1(load_truth(ws.bids_dir, subject, "SIR")["r1f"])
            variants["ir_nf"] = ir_map(variants["two"])
            variants["ir_nf_sat"] = (
                variants["ir_nf"] if settings.sir_readout_residual == 0
                else ir_map(cohort_variant(ws, subject, saturating_readout=True, sessions=("sir",)))
            )
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

            one = v["one_eff"].gre[:, region]
            prior = ws.config.scale_prior
            x_e = noise_free_reading(one, mp2.protocol, estimator.readouts, b1_map, scale_prior=prior)
            x_model = model_reading(estimator, one, mp2.protocol, b1_map, scale_prior=prior)
            grid = {  # levels on the MP2RAGE grid (module docstring)
                "noisy": mp2[name].t1,
                "nf2": est(v["two"]),
                "nf1": est(v["one"]),
                "nf1_eff": est(v["one_eff"]),
                "x_e": scatter(x_e, region),
                "x_true": scatter(noise_free_reading(one, mp2.protocol, estimator.readouts, truth["b1"][region],
                                                     scale_prior=prior), region),
                "t1_true": true_t1(truth["r1f"]).astype(np.float32),
            }
            if x_model is not None:
                grid["x_model"] = scatter(x_model, region)
            levels = {k: resample_to_sir(m, mp2.affine, s.true_transform, shape, affine) for k, m in grid.items()}
            levels.setdefault("x_model", levels["x_e"])  # the estimator models the acquisition: term 0
            levels |= {START_LEVEL[0]: s[name].t1, "t1_true_sir": v["t1_true_sir"], "ir_nf": v["ir_nf"],
                       "ir_nf_sat": v["ir_nf_sat"],
                       "ir": sir.ir_t1}
            upper = [START_LEVEL[0], *(t.level for t in TERM_CHAIN[:-1])]
            stack = np.stack([levels[a] - levels[t.level] for a, t in zip(upper, TERM_CHAIN)])
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
