"""The participant level of ``qt1``: every map of one participant, as a task a dask worker can run.

For one participant :func:`map_participant` computes (through the store, so a rerun reuses
everything) and publishes into the derivative dataset

* the T1 maps on the MP2RAGE grid of every requested estimator (:func:`qt1lib.workflow.mp2rage_maps`;
  the MP3RAGE estimators only when the data have three inversions);
* when the participant has SIR images: the two-pool SIR fit, the rigid registration and every
  map resampled into SIR space (:func:`qt1lib.workflow.sir_space_subject`).

A participant without SIR images is mapped and reported as such (it cannot be registered nor
enter the calibration). The task returns a small picklable :class:`ParticipantResult`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace

from ..workflow import Workspace, mp2rage_maps, sir_space_subject

__all__ = ["ParticipantResult", "map_participant"]


@dataclass(frozen=True)
class ParticipantResult:
    """What the participant level did for one participant.

    Attributes
    ----------
    subject : str
        Label without ``sub-``.
    inversions : int
        MP2RAGE inversions read (2: MP2RAGE, 3: MP3RAGE).
    estimators : tuple of str
        The estimators whose maps were computed.
    has_sir : bool
        Whether SIR images were found (then fitted, registered and resampled).
    registration_error_mm : float or None
        Error of the registration against the simulated motion (digital cohort only).
    seconds : float
        Wall time of the task.
    store : dict of str to int
        Store lookups by outcome (``hit``, ``miss``, ``damaged``).
    note : str
        One line for the report.
    """

    subject: str
    inversions: int
    estimators: tuple[str, ...]
    has_sir: bool
    registration_error_mm: float | None
    seconds: float
    store: dict = field(default_factory=dict)
    note: str = ""


def map_participant(ws: Workspace, subject: str, estimators: tuple[str, ...] | None = None) -> ParticipantResult:
    """Compute and publish every map of ``subject`` (module docstring).

    Parameters
    ----------
    ws : Workspace
        Progress bars are turned off (a worker's output is not a terminal).
    subject : str
        Label without ``sub-``.
    estimators : tuple of str, optional
        Registered estimator names; default the registry's defaults.

    Returns
    -------
    ParticipantResult
    """
    start = time.perf_counter()
    ws = replace(ws, progress=False)
    first_event = len(ws.store.events)
    names = None if estimators is None else list(estimators)
    mp2 = mp2rage_maps(ws, subject, names)
    error = None
    has_sir = subject in ws.sir_subjects
    if has_sir:
        s = sir_space_subject(ws, subject, names)
        error = s.registration_error_mm
        note = f"mapped, SIR fitted and registered ({len(mp2.estimates)} estimators)"
    else:
        note = f"mapped ({len(mp2.estimates)} estimators); no SIR images: not registered, not in the calibration"
    outcomes = Counter(e.outcome for e in ws.store.events[first_event:])
    return ParticipantResult(
        subject=subject,
        inversions=mp2.protocol.n_readouts,
        estimators=tuple(mp2.estimates),
        has_sir=has_sir,
        registration_error_mm=error,
        seconds=time.perf_counter() - start,
        store=dict(sorted(outcomes.items())),
        note=note,
    )
