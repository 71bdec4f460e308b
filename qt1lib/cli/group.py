"""The group level of ``qt1``: agreement with IR T1, the calibration over the participants with SIR, the tables.

1. Per participant with SIR images (in parallel, :mod:`qt1lib.cli.execution`): the maps in SIR
   space (store hits after the participant level) and their agreement with IR T1 per estimator
   and tissue (:func:`group_agreement`).
2. With at least two such participants: the calibration of the MAP MP2RAGE T1 map to IR T1
   (:func:`qt1lib.calibrate.cached_cross_validation`: the ResNet-18 and the linear baselines,
   leave one participant out, so four folds for the seed's four participants), the held-out
   calibrated maps as derivatives (``space-SIR_desc-<Method>_T1map``) and the statistics tables
   (:mod:`qt1lib.cli.tables`). With fewer, no calibration and a message that says so.
3. ``participants.tsv``: every participant, whether it entered the calibration and why not.

Participants without SIR images are left out of 1 and 2 and named with the reason. The
cross-validation is leave-one-participant-out (:func:`qt1lib.calibrate.make_folds`): with more than
four participants it has one fold per participant, not four.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from ..calibrate import cached_cross_validation, result_entry
from ..config import StudyConfig
from ..estimate.base import estimator_class, estimator_names
from ..workflow import (
    Workspace,
    agreement_table,
    calibration_subjects,
    mp2rage_maps,
    write_calibrated_maps,
)
from .execution import TaskFailure, run_per_participant
from .tables import (
    agreement_metrics,
    participants_table,
    write_agreement,
    write_calibration_tables,
    write_participants,
)

__all__ = ["GroupResult", "group_agreement", "run_group", "MIN_CALIBRATION_PARTICIPANTS"]

#: Participants with SIR the calibration needs: leave-one-out trains on the others, so at least two.
MIN_CALIBRATION_PARTICIPANTS = 2


@dataclass
class GroupResult:
    """What the group level did.

    Attributes
    ----------
    used : list of str
        Participants in the calibration (labels without ``sub-``).
    left_out : dict of str to str
        Participants left out and why.
    calibrated : bool
        Whether the calibration ran.
    files : dict of str to str
        Tables and maps written (relative to the output folder) and a note on each.
    failures : list of TaskFailure
        Participants whose maps could not be computed.
    messages : list of str
        Lines for the report.
    """

    used: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    calibrated: bool = False
    files: dict[str, str] = field(default_factory=dict)
    failures: list[TaskFailure] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def group_agreement(ws: Workspace, subject: str, estimators: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Agreement with IR T1 of every estimator's map of one participant with SIR
    (:func:`qt1lib.cli.tables.agreement_metrics`); a task of :func:`~qt1lib.cli.execution.run_per_participant`."""
    ws = replace(ws, progress=False)
    names = list(mp2rage_maps(ws, subject, None if estimators is None else list(estimators)).estimates)
    return agreement_metrics(agreement_table(ws, [subject], names))


def run_group(
    ws: Workspace,
    study: StudyConfig,
    estimators: tuple[str, ...] | None = None,
    *,
    n_workers: int = 1,
    scheduler: str | None = None,
    device: str = "",
) -> GroupResult:
    """The group level (module docstring).

    Parameters
    ----------
    ws : Workspace
        The participants (:attr:`~qt1lib.workflow.Workspace.subjects`) and those with SIR.
    study : StudyConfig
        The calibration network (``study.calibration``) and seed (``study.seed``).
    estimators : tuple of str, optional
        Estimators of the agreement table (default the registry's).
    n_workers, scheduler
        Execution of the per-participant part (:func:`~qt1lib.cli.execution.run_per_participant`).
    device : str
        Torch device of the calibration; empty: CUDA when available.

    Returns
    -------
    GroupResult
    """
    out = GroupResult()
    root = ws.derivatives_dir
    with_sir = list(ws.sir_subjects)
    out.left_out = {s: "no SIR images" for s in ws.subjects if s not in with_sir}
    results = run_per_participant(group_agreement, ws, with_sir, estimators, n_workers=n_workers,
                                  scheduler=scheduler, progress=ws.progress, what="agreement")
    frames = []
    for subject, value in results.items():
        if isinstance(value, TaskFailure):
            out.failures.append(value)
            out.left_out[subject] = f"its maps failed ({value.message})"
        else:
            frames.append(value)
    usable = [s for s in with_sir if s not in out.left_out]
    if frames:
        write_agreement(root, pd.concat(frames, ignore_index=True), {n: estimator_class(n).label for n in estimator_names()})
        out.files["phenotype/agreement.tsv"] = f"{len(frames)} participants, before calibration"
    if len(usable) < MIN_CALIBRATION_PARTICIPANTS:
        named = ", ".join(f"sub-{s}" for s in usable) or "none"
        out.messages.append(
            f"no calibration: it needs at least {MIN_CALIBRATION_PARTICIPANTS} participants with SIR images "
            f"(leave one out trains on the others); found {len(usable)} ({named})"
        )
        for s in usable:
            out.left_out[s] = f"fewer than {MIN_CALIBRATION_PARTICIPANTS} participants with SIR"
    else:
        out.used = usable
        subjects = calibration_subjects(ws, usable)
        config, seed = study.calibration, study.seed
        provenance = {"profile": study.profile, "pipeline": ws.config.to_dict()}
        result, _ = cached_cross_validation(subjects, config, seed, ws.store, need_maps=True, device=device or None,
                                            progress=ws.progress, provenance=provenance)
        written = write_calibrated_maps(ws, result.maps, parameters={
            "result_key": result_entry(ws.store, subjects, config, seed).name, "seed": seed,
            "config": config.to_dict()})
        out.files.update({str(p.relative_to(root)): "calibrated T1, held out" for p in written})
        out.files.update(write_calibration_tables(root, result.metrics, result.voxels, seed))
        out.calibrated = True
        out.messages.append(f"calibration: {len(result.folds)} folds (leave one participant out) over "
                            + ", ".join(f"sub-{s}" for s in usable))
    table = participants_table([
        {"participant_id": f"sub-{s}", "inversions": ws.read_mpnrage(s).protocol.n_readouts,
         "sir": "yes" if s in with_sir else "no", "calibration": "used" if s in out.used else "left out",
         "reason": out.left_out.get(s, "n/a")}
        for s in ws.subjects
    ])
    write_participants(root, table)
    out.files["participants.tsv"] = "who entered the calibration, and why not"
    return out
