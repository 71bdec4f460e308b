"""The workspace of a chapter: the study's dataset, store, configuration and derivative folder."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import StudyConfig
from .dataset import open_workspace
from .workspace import Workspace

__all__ = ["open_study_workspace"]


def open_study_workspace(
    bids_dir: str | os.PathLike | None, work_dir: str | os.PathLike, study: StudyConfig, *, progress: bool = True
) -> Workspace:
    """The workspace every chapter opens from its ``bids_dir`` and ``work_dir`` parameters.

    Parameters
    ----------
    bids_dir : path-like or None
        ``""`` or None: the digital cohort of ``study.cohort``, generated (or reused) in
        ``<work_dir>/bids``. Otherwise an existing BIDS dataset: a user's, or a cohort that
        ``qt1-cohort`` wrote (used as it is).
    work_dir : path-like
        The store (``<work_dir>/store``) and the derivative dataset (``<work_dir>/derivatives``):
        the chapters never write into the dataset they read.
    study : StudyConfig
        The pipeline settings and the cohort to generate.
    progress : bool
        Show progress bars.

    Raises
    ------
    qt1lib.bids.BIDSValidationError
        A ``bids_dir`` that does not exist (never a reason to simulate), or a dataset that fails
        validation.
    """
    work_dir = Path(work_dir)
    return open_workspace(
        Path(bids_dir) if bids_dir else None, work_dir, study.pipeline, cohort=study.cohort, progress=progress,
        output_dir=work_dir / "derivatives",
    )
