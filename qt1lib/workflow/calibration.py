"""The data of the calibration network, in SIR space, and its held-out calibrated maps as derivatives."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..derivatives import write_derivative
from ..calibrate.config import CalibrationConfig
from ..calibrate.crossval import CrossValidationResult
from ..calibrate.data import SubjectData
from ..calibrate.results import cached_cross_validation
from ..estimate.base import estimator_class, make_estimator
from .. import tissues
from .sir import sir_maps
from .sir_space import sir_space_subject
from .workspace import Workspace

__all__ = [
    "calibration_subjects",
    "input_refusal",
    "InputComparison",
    "compare_inputs",
    "cohort_table",
    "CALIBRATED_DESC",
    "write_calibrated_maps",
]


def calibration_subjects(
    ws: Workspace, subjects: Iterable[str] | None = None, estimator: str | None = None
) -> dict[str, SubjectData]:
    """Per-subject data of the calibration network, in SIR space.

    Parameters
    ----------
    ws : Workspace
        ``ws.config.calibration_input`` chooses the T1 map (default the seed's MAP MP2RAGE).
    subjects : iterable of str, optional
        Labels without ``sub-``; default the workspace's subjects with SIR images (:attr:`Workspace.sir_subjects`).
    estimator : str, optional
        Another registered estimator (:func:`qt1lib.estimate.estimator_names`) whose map is the
        input instead, with the workspace's settings: e.g. chapter 06's second input
        ``"map_seed_code_mp2rage"``. Default ``ws.config.calibration_input``.

    Returns
    -------
    dict of str to SubjectData
        Keyed ``"sub-<label>"``. ``inputs``: ``"t1"`` (the calibration input in SIR space, s),
        ``"b1"`` (measured B1+, when there is a map) and ``"t1_std"`` (its posterior std, for MAP
        inputs); ``target``: IR T1 = 1/R1f (s); ``labels``: the SIR-space dseg; ``mask``: the
        scored voxels (:attr:`~qt1lib.workflow.sir_space.SIRSpaceSubject.scored`) where every
        input is finite.
    """
    from tqdm.auto import tqdm

    name = ws.config.calibration_input if estimator is None else estimator_class(estimator).name
    labels = list(ws.sir_subjects) if subjects is None else list(subjects)
    out = {}
    for subject in tqdm(labels, desc="calibration subjects", disable=not ws.progress):
        s = sir_space_subject(ws, subject, estimators=(name,))
        inputs = {"t1": s[name].t1}
        if s.b1 is not None:
            inputs["b1"] = s.b1
        if estimator_class(name).posterior:
            inputs["t1_std"] = s[name].std
        target = s.sir.ir_t1.astype(float)
        mask = s.scored.copy()
        for value in inputs.values():
            mask &= np.isfinite(value)
        out[f"sub-{subject}"] = SubjectData(inputs=inputs, target=target, mask=mask, labels=s.dseg.astype(np.int64))
    return out


def input_refusal(ws: Workspace, estimator: str, subjects: Iterable[str] | None = None) -> str | None:
    """Why ``estimator`` cannot read the MP2RAGE data of this dataset, or None when it can.

    Builds the estimator (lazily: nothing is simulated) for each subject's protocol. E.g.
    ``map_seed_code_mp2rage`` models the seed's acquisition only
    (:func:`qt1lib.estimate.seed_code.check_seed_acquisition`) and refuses a user's other one.

    Parameters
    ----------
    ws : Workspace
    estimator : str
        A registered estimator (:func:`qt1lib.estimate.estimator_names`).
    subjects : iterable of str, optional
        Labels without ``sub-``; default :attr:`Workspace.sir_subjects`.

    Returns
    -------
    str or None
        ``"sub-<label>: <the estimator's ValueError>"`` for the first subject it refuses.

    Raises
    ------
    ValueError
        ``estimator`` is not registered.
    """
    estimator_class(estimator)
    for subject in list(ws.sir_subjects) if subjects is None else list(subjects):
        try:
            make_estimator(estimator, ws.read_mpnrage(subject).protocol)
        except ValueError as error:
            return f"sub-{subject}: {error}"
    return None


@dataclass
class InputComparison:
    """Cross-validations of further calibration inputs on the folds of the study's own input.

    Attributes
    ----------
    subjects : dict of str to dict of str to SubjectData
        Input (estimator name) -> its :func:`calibration_subjects`.
    results : dict of str to CrossValidationResult
        Input -> its cross-validation (:func:`~qt1lib.calibrate.results.cached_cross_validation`):
        the same subjects, hence the same folds, the same configuration and seed; the network's
        method ``"resnet"`` only when it was trained.
    reused : dict of str to bool
        Input -> the result was read from the store and nothing was trained.
    refused : dict of str to str
        Inputs that cannot read this dataset, and why (:func:`input_refusal`).
    network : bool
        Whether the network was trained on the inputs.
    """

    subjects: dict[str, dict[str, SubjectData]] = field(default_factory=dict)
    results: dict[str, CrossValidationResult] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    network: bool = False


def compare_inputs(
    ws: Workspace,
    inputs: Iterable[str],
    config: CalibrationConfig,
    seed: int,
    *,
    network: bool,
    device: str | None = None,
    progress: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> InputComparison:
    """The calibration's cross-validation with other T1 maps as its input, beside ``ws.config.calibration_input``.

    Each input gets its own :func:`calibration_subjects` and its own stored cross-validation
    (:func:`~qt1lib.calibrate.results.cached_cross_validation`): the subjects are those of the
    study's input, so the folds, the configuration and the seed (each fold's
    :func:`~qt1lib.calibrate.folds.fold_seed`) are the same; only the input map differs. With
    ``network=False`` the folds score the baselines alone (no training). No calibrated map is
    written (the derivatives' ``desc`` belongs to the study's input).

    Parameters
    ----------
    ws : Workspace
    inputs : iterable of str
        Registered estimators (e.g. ``["map_seed_code_mp2rage"]``); ``ws.config.calibration_input``
        and repeats are skipped.
    config : CalibrationConfig
        The study's network (chapter 06's).
    seed : int
        The study seed.
    network : bool
        Train and score the network on each input (chapter parameter ``comparison_network``).
    device : str, optional
        Torch device; default CUDA when available, else CPU.
    progress : bool
        Show progress bars.
    provenance : mapping, optional
        Recorded in each result's ``parameters.json`` besides ``pipeline`` (the workspace's
        pipeline with ``calibration_input`` set to the input).

    Returns
    -------
    InputComparison

    Raises
    ------
    ValueError
        An input that is not a registered estimator.
    """
    out = InputComparison(network=network)
    for name in dict.fromkeys(inputs):
        estimator_class(name)
        if name == ws.config.calibration_input:
            continue
        reason = input_refusal(ws, name)
        if reason is not None:
            out.refused[name] = reason
            continue
        subjects = calibration_subjects(ws, estimator=name)
        record = {**dict(provenance or {}), "pipeline": replace(ws.config, calibration_input=name).to_dict()}
        out.subjects[name] = subjects
        out.results[name], out.reused[name] = cached_cross_validation(
            subjects, config, seed, ws.store, device=device, progress=progress, provenance=record, network=network
        )
    return out


def cohort_table(subjects: Mapping[str, SubjectData], scored: tuple[tissues.Tissue, ...] = tissues.SCORED) -> pd.DataFrame:
    """Scored voxels and median T1 per subject and tissue: what the calibration starts from.

    Returns
    -------
    DataFrame
        ``subject``, ``tissue`` (display name), ``n`` (scored voxels, :meth:`SubjectData.scored`),
        ``t1_input`` and ``t1_reference`` (median input and IR T1, s), ``difference``
        (median of input - reference, s).
    """
    labels = tuple(t.label for t in scored)
    rows = []
    for name in sorted(subjects):
        s = subjects[name]
        mask = s.scored(labels)
        for t in scored:
            sel = mask & (s.labels == t.label)
            x, r = s.inputs["t1"][sel], s.target[sel]
            rows.append({"subject": name, "tissue": t.name, "n": int(sel.sum()),
                         "t1_input": float(np.median(x)) if x.size else np.nan,
                         "t1_reference": float(np.median(r)) if r.size else np.nan,
                         "difference": float(np.median(x - r)) if x.size else np.nan})
    return pd.DataFrame(rows)


#: BIDS ``desc`` entity of each calibration method's map (:data:`qt1lib.calibrate.METHODS`).
CALIBRATED_DESC: dict[str, str] = {
    "global_linear": "GlobalLinear",
    "tissue_linear": "TissueLinear",
    "resnet": "ResNet",
}


def write_calibrated_maps(
    ws: Workspace, maps: Mapping[str, Mapping[str, np.ndarray]], parameters: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write held-out calibrated T1 maps as SIR-space derivatives, atomically.

    Parameters
    ----------
    ws : Workspace
    maps : mapping
        ``maps["sub-<label>"][method]``: the calibrated T1 map (s) of a held-out subject on its
        SIR grid (:attr:`qt1lib.calibrate.CrossValidationResult.maps`); methods without a
        ``desc`` in :data:`CALIBRATED_DESC` (``"none"``, the input itself) are not written.
    parameters : mapping, optional
        Provenance recorded in each sidecar (``Parameters``): e.g. the network's configuration,
        the seed and the cross-validation's store key.

    Returns
    -------
    list of Path
        ``<derivatives_dir>/sub-<label>/anat/sub-<label>_space-SIR_desc-<Method>_T1map.nii.gz``.

    Raises
    ------
    ValueError
        If a subject key lacks the ``sub-`` prefix or a map's shape is not the SIR grid's.
    """
    written = []
    source_desc = estimator_class(ws.config.calibration_input).desc
    for name, by_method in maps.items():
        if not name.startswith("sub-"):
            raise ValueError(f"maps must be keyed 'sub-<label>', got {name!r}")
        subject = name.removeprefix("sub-")
        sir = sir_maps(ws, subject)
        for method, desc in CALIBRATED_DESC.items():
            if method not in by_method:
                continue
            data = np.asarray(by_method[method], dtype=np.float32)
            if data.shape != sir.shape:
                raise ValueError(f"{name} {method} map has shape {data.shape}, expected the SIR grid's {sir.shape}")
            written.append(write_derivative(
                ws.derivatives_dir, subject, data, sir.affine, "T1map", desc=desc, space="SIR",
                parameters={"step": "calibration", "method": method, **dict(parameters or {})},
                sidecar={"Units": "s", "Description": f"T1 calibrated to IR T1 = 1/R1f by {method}, "
                         "held out of the network's training (leave-one-subject-out); NaN outside the scored voxels",
                         "SkullStripped": True, "SpatialReference": ws.spatial_reference(subject, "SIR"),
                         "Sources": ws.sources([ws.derivative_path(subject, "T1map", desc=source_desc, space="SIR")])},
            ))
    return written
