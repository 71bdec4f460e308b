"""The data of the calibration network, in SIR space, and its held-out calibrated maps as derivatives."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..derivatives import write_derivative
from ..calibrate.data import SubjectData
from ..estimate.base import estimator_class
from .. import tissues
from .sir import sir_maps
from .sir_space import sir_space_subject
from .workspace import Workspace

__all__ = ["calibration_subjects", "cohort_table", "CALIBRATED_DESC", "write_calibrated_maps"]


def calibration_subjects(ws: Workspace, subjects: Iterable[str] | None = None) -> dict[str, SubjectData]:
    """Per-subject data of the calibration network, in SIR space.

    Parameters
    ----------
    ws : Workspace
        ``ws.config.calibration_input`` chooses the T1 map (default the seed's MAP MP2RAGE).
    subjects : iterable of str, optional
        Labels without ``sub-``; default the workspace's subjects with SIR images (:attr:`Workspace.sir_subjects`).

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

    name = ws.config.calibration_input
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
