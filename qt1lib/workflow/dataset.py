"""The study's dataset: the embedded digital cohort, or a BIDS dataset on disk (a user's, or a cohort).

:func:`open_workspace` takes either

* ``bids_dir=None``: the embedded digital cohort in ``<work_dir>/bids``, generated there or reused
  (:func:`ensure_cohort`). The cohort is keyed through the store like every other derivative:
  its key holds the generation arguments and the source of :mod:`qt1lib.phantom` (and of
  everything it imports), and the store entry records the content digest of every file the
  generation wrote. The cohort on disk is reused only if every file matches that record;
  otherwise (other arguments, an edited simulation, a generation killed half-way, a file changed
  or missing) it is generated again. That folder is taken for the cohort if it does not exist,
  is empty, or holds ``derivatives/phantom/`` (written first by :func:`qt1lib.phantom.make_cohort`,
  so an interrupted generation is recognised as one);
* a path: a dataset that must exist. It is used as it is, never generated or regenerated: a
  dataset holding ``derivatives/phantom/parameters.json`` is a digital cohort (written by
  ``qt1-cohort``; its truth is then available, :attr:`Workspace.is_simulated`), any other the
  user's data. A mistyped path is an error, never a reason to simulate.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..bids import BIDSValidationError, has_sir, validate_dataset
from ..config import CohortConfig, PipelineConfig
from ..derivatives import default_derivatives_dir, write_dataset_files
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


def _dataset_kind(bids_dir: Path) -> bool:
    """Whether an existing ``bids_dir`` is a (complete) digital cohort; raises for what is no dataset."""
    if not bids_dir.exists():
        raise BIDSValidationError([f"{bids_dir}: the BIDS dataset does not exist (check the path)"])
    if not bids_dir.is_dir():
        raise BIDSValidationError([f"{bids_dir}: not a directory (a BIDS dataset is a folder)"])
    if cohort_parameters(bids_dir) is not None:
        return True
    if (bids_dir / PHANTOM_DIR).is_dir():
        raise BIDSValidationError([
            f"{bids_dir / PHANTOM_DIR}: an incomplete digital cohort (no parameters.json: its generation was "
            "interrupted); write it again with qt1-cohort"
        ])
    return False


def open_workspace(
    bids_dir: str | os.PathLike | None,
    work_dir: str | os.PathLike | None = None,
    config: PipelineConfig | None = None,
    *,
    cohort: CohortConfig | Mapping[str, Any] | None = None,
    subjects: list[str] | None = None,
    progress: bool = True,
    output_dir: str | os.PathLike | None = None,
) -> Workspace:
    """The workspace of a study: the dataset, the store and the configuration (module docstring).

    Parameters
    ----------
    bids_dir : path-like or None
        None: the embedded digital cohort in ``<work_dir>/bids``, generated there or reused
        (:func:`ensure_cohort`). A path: a BIDS dataset that exists, validated before anything
        is computed; a digital cohort (``derivatives/phantom/parameters.json``) is used as it is.
    work_dir : path-like, optional
        Working directory; the store lives in ``<work_dir>/store``. Required with
        ``bids_dir=None``; otherwise default ``<output_dir>/.store`` (hidden from BIDS tools).
    config : PipelineConfig, optional
        Its reader settings (entity ``select``, sidecar defaults, ``b1_units``) apply to the
        validation and to every step.
    cohort : CohortConfig or mapping, optional
        The digital cohort to generate with ``bids_dir=None``: a
        :class:`~qt1lib.config.CohortConfig` (a study's; ignored for a dataset given by path), or
        arguments of :func:`qt1lib.phantom.make_cohort` (``profile``, ``seed``...; an error with
        a path). Default: ``CohortConfig()``, the ``quick`` profile's cohort.
    subjects : list of str, optional
        Subjects to process (labels without ``sub-``); default all.
    progress : bool
        Show progress bars.
    output_dir : path-like, optional
        The derivative dataset the steps publish into; default ``<bids_dir>/derivatives/qt1lib``.
        Its ``dataset_description.json`` (linking the input dataset), ``.bidsignore`` and
        ``README`` are written here (:func:`qt1lib.derivatives.write_dataset_files`).

    Returns
    -------
    Workspace
        With :attr:`~Workspace.sir_subjects`, the subjects that have SIR images (a subject without
        them is validated and mapped, not registered).

    Raises
    ------
    BIDSValidationError
        (a ValueError) A path that does not exist or is not a dataset, or a dataset that fails
        validation, naming every problem's file and field.
    ValueError
        ``bids_dir=None`` without ``work_dir``; cohort arguments with a path.
    """
    config = config or PipelineConfig()
    if bids_dir is None:
        if work_dir is None:
            raise ValueError("bids_dir=None (the embedded digital cohort) needs a work_dir to hold it")
        bids_dir = Path(work_dir) / "bids"
        derivatives_dir = Path(output_dir) if output_dir is not None else default_derivatives_dir(bids_dir)
        store = Store(Path(work_dir) / "store")
        if not is_cohort_folder(bids_dir):
            raise ValueError(f"{bids_dir} holds data that is not the digital cohort; the cohort is written "
                             "there: move that data or choose another work_dir")
        arguments = (cohort or CohortConfig()).kwargs() if not isinstance(cohort, Mapping) else dict(cohort)
        ensure_cohort(bids_dir, store, arguments, progress=progress)
        simulated = True
    else:
        bids_dir = Path(bids_dir)
        if isinstance(cohort, Mapping) and cohort:
            raise ValueError(
                f"cohort arguments {sorted(cohort)} apply only to the embedded cohort (bids_dir=None); "
                f"{bids_dir} is used as it is"
            )
        simulated = _dataset_kind(bids_dir)
        derivatives_dir = Path(output_dir) if output_dir is not None else default_derivatives_dir(bids_dir)
        store = Store(Path(work_dir) / "store" if work_dir is not None else derivatives_dir / ".store")
    select = config.reader_select()
    labels = validate_dataset(bids_dir, subjects, defaults=config.reader_defaults(), select=select,
                              b1_units=config.b1_units, resample_b1=config.resample_b1, require_sir=False)
    write_dataset_files(derivatives_dir, bids_dir)
    return Workspace(
        bids_dir=bids_dir,
        store=store,
        config=config,
        subjects=tuple(labels),
        is_simulated=simulated,
        cohort=cohort_parameters(bids_dir) if simulated else None,
        progress=progress,
        derivatives_dir=derivatives_dir,
        sir_subjects=tuple(s for s in labels if has_sir(bids_dir, s, select)),
    )
