"""The study's dataset: the digital cohort, generated when missing, or the user's BIDS data.

The cohort is keyed through the store like every other derivative: its key holds the
generation arguments and the source of :mod:`qt1lib.phantom` (and of everything it imports), and
the store entry records the content digest of every file the generation wrote. The cohort on disk
is reused only if every file matches that record; otherwise (other arguments, an edited
simulation, a generation killed half-way, a file changed or missing) it is generated again.

A folder is taken for the digital cohort if it does not exist, is empty, or holds
``derivatives/phantom/`` (written first by :func:`qt1lib.phantom.make_cohort`, so an interrupted
generation is recognised as one and never taken for a user's data).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..bids import validate_dataset
from ..config import CohortConfig, PipelineConfig
from ..derivatives import default_derivatives_dir
from ..io import load_json
from ..store import JSON, Store, file_digest
from .workspace import Workspace

__all__ = ["PHANTOM_DIR", "cohort_parameters", "is_cohort_folder", "ensure_cohort", "open_workspace"]

#: Folder of the digital cohort's truth and generation parameters, relative to the dataset root.
PHANTOM_DIR = Path("derivatives") / "phantom"
_COHORT_MODULES = ("qt1lib.phantom",)


def cohort_parameters(bids_dir: str | os.PathLike) -> dict | None:
    """The digital cohort's generation parameters, or None for a dataset the cohort did not (fully) write."""
    path = Path(bids_dir) / PHANTOM_DIR / "parameters.json"
    return load_json(path) if path.is_file() else None


def is_cohort_folder(bids_dir: str | os.PathLike) -> bool:
    """Whether ``bids_dir`` is absent, empty, or holds a (possibly interrupted) digital cohort."""
    bids_dir = Path(bids_dir)
    if not bids_dir.exists():
        return True
    if not bids_dir.is_dir():
        raise ValueError(f"bids_dir {bids_dir} exists and is not a directory")
    return not any(bids_dir.iterdir()) or (bids_dir / PHANTOM_DIR).is_dir()


def _written_files(bids_dir: Path) -> dict[str, str]:
    """Content digest of every file of the cohort (raw data and its truth; not other derivatives)."""
    files = [p for p in bids_dir.rglob("*") if p.is_file()]
    keep = []
    for p in files:
        parts = p.relative_to(bids_dir).parts
        if parts[0] != "derivatives" or parts[1] == "phantom":
            keep.append(p)
    return {str(p.relative_to(bids_dir)): file_digest(p) for p in sorted(keep)}


def ensure_cohort(bids_dir: str | os.PathLike, store: Store, cohort: Mapping[str, Any], *, progress: bool = True) -> bool:
    """Generate the digital cohort in ``bids_dir`` unless the one there matches the store's record.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root (absent, empty, or a cohort).
    store : Store
    cohort : mapping
        Arguments of :func:`qt1lib.phantom.make_cohort` (``profile``, ``seed``, ``snr``...).
    progress : bool

    Returns
    -------
    bool
        True when the cohort was (re)generated.
    """
    from ..phantom import make_cohort

    bids_dir = Path(bids_dir)
    arguments = {k: cohort[k] for k in sorted(cohort)}
    key = store.key("cohort", arguments, modules=_COHORT_MODULES)
    ok, record = store.get("cohort", key, JSON)
    if ok and cohort_parameters(bids_dir) is not None:
        try:
            if _written_files(bids_dir) == record["files"]:
                store.record("cohort", key, "hit")
                return False
        except (FileNotFoundError, OSError):
            pass
    make_cohort(bids_dir, progress=progress, **arguments)
    store.put("cohort", key, {"files": _written_files(bids_dir)}, JSON, store.describe("cohort", arguments, (), _COHORT_MODULES))
    store.record("cohort", key, "miss")
    return True


def open_workspace(
    bids_dir: str | os.PathLike,
    work_dir: str | os.PathLike | None = None,
    config: PipelineConfig | None = None,
    *,
    cohort: CohortConfig | Mapping[str, Any] | None = None,
    subjects: list[str] | None = None,
    progress: bool = True,
    output_dir: str | os.PathLike | None = None,
) -> Workspace:
    """The workspace of a study: the dataset (the cohort generated when needed), the store and the configuration.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root. Absent, empty or holding the digital cohort: the cohort is generated there
        (or reused, :func:`ensure_cohort`); otherwise it is the user's BIDS dataset, validated
        before anything is computed.
    work_dir : path-like, optional
        Working directory; the store lives in ``<work_dir>/store``. Default:
        ``<output_dir>/.store`` (hidden from BIDS tools).
    config : PipelineConfig, optional
    cohort : CohortConfig or mapping, optional
        The digital cohort to generate when ``bids_dir`` is a cohort folder: a
        :class:`~qt1lib.config.CohortConfig` (a study's; ignored for a user's dataset), or
        arguments of :func:`qt1lib.phantom.make_cohort` (``profile``, ``seed``...; an error for a
        user's dataset). Default: ``CohortConfig()``, the ``quick`` profile's cohort.
    subjects : list of str, optional
        Subjects to process (labels without ``sub-``); default all.
    progress : bool
        Show progress bars.
    output_dir : path-like, optional
        The derivative dataset the steps publish into; default ``<bids_dir>/derivatives/qt1lib``.

    Raises
    ------
    ValueError
        Cohort arguments for a user's dataset, or the dataset fails validation
        (:class:`qt1lib.bids.BIDSValidationError`, naming every problem).
    """
    bids_dir = Path(bids_dir)
    derivatives_dir = Path(output_dir) if output_dir is not None else default_derivatives_dir(bids_dir)
    store = Store(Path(work_dir) / "store" if work_dir is not None else derivatives_dir / ".store")
    simulated = is_cohort_folder(bids_dir)
    if simulated:
        arguments = (cohort or CohortConfig()).kwargs() if not isinstance(cohort, Mapping) else dict(cohort)
        ensure_cohort(bids_dir, store, arguments, progress=progress)
    elif isinstance(cohort, Mapping) and cohort:
        raise ValueError(
            f"bids_dir {bids_dir} holds a dataset that is not the digital cohort; cohort arguments "
            f"{sorted(cohort)} do not apply to it"
        )
    labels = validate_dataset(bids_dir, subjects)
    return Workspace(
        bids_dir=bids_dir,
        store=store,
        config=config or PipelineConfig(),
        subjects=tuple(labels),
        is_simulated=simulated,
        cohort=cohort_parameters(bids_dir) if simulated else None,
        progress=progress,
        derivatives_dir=derivatives_dir,
    )
