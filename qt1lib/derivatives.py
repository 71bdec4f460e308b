"""Naming and writing the BIDS derivatives of qt1lib: one derivative dataset, anywhere on disk.

The derivative dataset is a folder of its own (the BIDS-App ``OUTPUT_DIR``; by default
``<bids_dir>/derivatives/qt1lib``) with a ``dataset_description.json`` of ``DatasetType``
``"derivative"`` (BIDS 1.10, "Derivatives: dataset_description.json"), subject folders
``sub-<label>/<datatype>/`` and dataset-level files at its root. Every file is written atomically
(:mod:`qt1lib.io`) and holds no time stamp, so the same results give the same bytes; the
published copies are never read back to decide what to reuse: the content-addressed store
(:mod:`qt1lib.store`) does that.

How the folder stays valid for the official validator (``bids-validator-deno``, schema of BIDS
1.11.1, which it embeds; the rules cited are its ``rules.sidecars.derivatives`` and
``rules.files.deriv``):

* **References to the input dataset.** ``dataset_description.json`` links the input dataset under
  the name ``raw`` (``DatasetLinks``, a ``file:`` URI, and ``SourceDatasets``), so that sidecars
  name its files with BIDS URIs (``bids:raw:sub-01/anat/...``, :func:`bids_uri`): ``Sources`` (the
  files a derivative was made from; "Using paths specified relative to the dataset root is
  DEPRECATED") and ``SpatialReference`` (REQUIRED with a ``space`` entity that is no standard
  template: "a path relative to the dataset root or a URI").
* **No ``CodeURL``** in ``GeneratedBy``: the package has no published code address to name.
* **What BIDS has no name for** is listed in ``.bidsignore`` (:data:`BIDSIGNORE`), each entry
  alone, never a folder or a suffix BIDS defines: the rigid transforms (``*_xfm.txt`` and their
  JSON; BIDS 1.10/1.11 defines no transform file: ``rules.files.deriv`` has no ``xfm`` suffix and
  no ``from``/``to``/``mode`` entities; the names follow the draft transforms proposal, BEP014, as
  fMRIPrep writes them), the two-pool SIR fit's pool size ratio and bound-pool inversion factor
  (``*_PSRmap``, ``*_Sfmap``: BIDS's parametric-map suffixes, ``objects.suffixes``, have no pool
  size ratio and no inversion factor, and taking another suffix such as ``MTVmap`` would name
  another quantity) and the group-level statistics tables at the root (:data:`GROUP_TABLES`;
  BIDS defines tables at a dataset's root only for participants, samples and ``desc``
  descriptions, and ``phenotype/`` tables must list participants: a table of results pooled over
  participants has no BIDS name). Tables with one row per participant (and a ``participant_id``
  column) go to ``phenotype/`` instead, which BIDS defines (``rules.files.common.tables``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .io import atomic_write_bytes, load_json, save_json, save_nifti, save_tsv

__all__ = [
    "PIPELINE",
    "RAW",
    "BIDS_VERSION",
    "BIDSIGNORE",
    "GROUP_TABLES",
    "default_derivatives_dir",
    "derivative_path",
    "sidecar_path",
    "bids_uri",
    "description",
    "write_description",
    "write_dataset_files",
    "write_derivative",
    "write_table",
    "write_descriptions",
]

#: Name of this package's derivative dataset (folder under ``derivatives/`` by default, ``GeneratedBy``).
PIPELINE = "qt1lib"
#: Name under which ``dataset_description.json`` links the input dataset (``DatasetLinks``).
RAW = "raw"
#: The BIDS version the derivatives follow.
BIDS_VERSION = "1.10.0"
#: Group-level tables written at the root (:func:`write_table`), listed in ``.bidsignore``.
GROUP_TABLES: tuple[str, ...] = (
    "calibration_summary",
    "calibration_tests",
    "calibration_blandaltman",
    "calibration_mixedmodel",
)
#: ``.bidsignore`` of the derivative dataset: only files BIDS has no name for (module docstring).
BIDSIGNORE: tuple[str, ...] = (
    "*_xfm.txt",
    "*_xfm.json",
    "*_PSRmap.nii.gz",
    "*_PSRmap.json",
    "*_Sfmap.nii.gz",
    "*_Sfmap.json",
    *(f"/{name}.{ext}" for name in GROUP_TABLES for ext in ("tsv", "json")),
)

_ENTITY_ORDER = ("ses", "acq", "run", "space", "label", "desc")
_NIFTI = re.compile(r"\.nii(\.gz)?$")
_README = """qt1lib derivatives
==================

T1 maps of MP2RAGE / MP3RAGE data (lookup table, B1-corrected lookup table, MAP with posterior
standard deviation), the two-pool fit of multi-TI selective inversion recovery (IR T1 = 1/R1f),
the MP2RAGE maps registered into the SIR space, and the calibration of MAP MP2RAGE T1 to IR T1,
written by the qt1 command (qt1lib {version}).

sub-<label>/anat/   maps on the MP2RAGE grid (no space entity) and on the SIR grid (space-SIR),
                    masks, the MP2RAGE -> SIR rigid transform (*_xfm.txt, ITK text format)
sub-<label>/fmap/   the measured B1+ map resampled into SIR space (space-SIR_desc-measured_TB1map)
participants.tsv    who was mapped and who entered the calibration (and why not)
phenotype/          tables with one row per participant (agreement with IR T1, calibration folds)
calibration_*.tsv   group-level statistics (each with a JSON sidecar describing its columns)
descriptions.tsv    what each desc-<label> means

Every image has a JSON sidecar (Units, Description, Sources, the parameters and store key of the
computation). The input dataset is linked as "{raw}" in dataset_description.json.
"""


def default_derivatives_dir(bids_dir: str | os.PathLike) -> Path:
    """``<bids_dir>/derivatives/qt1lib``: where derivatives go when no output folder is named."""
    return Path(bids_dir) / "derivatives" / PIPELINE


def derivative_path(
    root: str | os.PathLike,
    subject: str | None,
    suffix: str,
    *,
    desc: str | None = None,
    space: str | None = None,
    label: str | None = None,
    extension: str = ".nii.gz",
    datatype: str = "anat",
) -> Path:
    """Path of a derivative in the derivative dataset ``root``.

    With a subject: ``<root>/sub-01/anat/sub-01_space-SIR_desc-MAP_T1map.nii.gz``; with
    ``subject=None``, a file at the root (``<root>/desc-<desc>_<suffix><extension>``). Entity
    values and the suffix must be alphanumeric (BIDS labels).

    Raises
    ------
    ValueError
        A name piece that is not alphanumeric.
    """
    entities = {"space": space, "label": label, "desc": desc}
    for key, value in {"subject": subject, "suffix": suffix, **entities}.items():
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]+", str(value)):
            raise ValueError(f"{key} must be alphanumeric for a BIDS name, got {value!r}")
    parts = [] if subject is None else [f"sub-{subject}"]
    parts += [f"{k}-{entities[k]}" for k in _ENTITY_ORDER if entities.get(k) is not None]
    name = "_".join(parts + [suffix]) + extension
    root = Path(root)
    return root / name if subject is None else root / f"sub-{subject}" / datatype / name


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a NIfTI image (``x.nii.gz`` -> ``x.json``)."""
    path = Path(path)
    return path.with_name(_NIFTI.sub("", path.name) + ".json")


def bids_uri(dataset: str | os.PathLike, path: str | os.PathLike, name: str = RAW) -> str | None:
    """The BIDS URI ``bids:<name>:<path within dataset>`` of a file of ``dataset``, or None outside it.

    BIDS 1.10, "Common principles: BIDS URI": ``bids:[<dataset-name>]:<relative-path>``; the
    empty name (``bids::...``) is the current dataset.
    """
    try:
        rel = Path(path).resolve().relative_to(Path(dataset).resolve())
    except ValueError:
        return None
    return f"bids:{name}:{rel.as_posix()}"


def description(bids_dir: str | os.PathLike | None = None) -> dict:
    """The content of the derivative dataset's ``dataset_description.json``.

    Parameters
    ----------
    bids_dir : path-like, optional
        The input dataset, linked as :data:`RAW` (``DatasetLinks``, ``SourceDatasets``).
    """
    out = {
        "Name": "qt1lib derivatives",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": PIPELINE,
            "Version": __version__,
            "Description": "qT1 study book: MP2RAGE/MP3RAGE T1 maps, multi-TI SIR fit, registration and "
                           "calibration to IR T1 (the qt1 command)",
        }],
    }
    if bids_dir is not None:
        uri = Path(bids_dir).resolve().as_uri()
        out["SourceDatasets"] = [{"URL": uri}]
        out["DatasetLinks"] = {RAW: uri}
    return out


def write_description(root: str | os.PathLike, bids_dir: str | os.PathLike | None = None) -> Path:
    """Write the derivative dataset's ``dataset_description.json`` (:func:`description`); returns its path.

    Without ``bids_dir`` only a missing file is written (an existing one, with its links, is
    kept); with it, the file is written unless it already holds exactly that content.
    """
    path = Path(root) / "dataset_description.json"
    content = description(bids_dir)
    if path.is_file():
        if bids_dir is None:
            return path
        try:
            if load_json(path) == content:
                return path
        except ValueError:
            pass  # unreadable: written again
    save_json(content, path)
    return path


def _write_text_if_changed(path: Path, text: str) -> None:
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        atomic_write_bytes(path, text.encode("utf-8"))


def write_dataset_files(root: str | os.PathLike, bids_dir: str | os.PathLike | None = None) -> None:
    """``dataset_description.json``, ``.bidsignore`` (:data:`BIDSIGNORE`) and ``README`` of the dataset.

    Idempotent: a file that already holds its content is not rewritten (several processes may
    call it at once; each write is atomic and the content the same).
    """
    root = Path(root)
    write_description(root, bids_dir)
    _write_text_if_changed(root / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
    _write_text_if_changed(root / "README", _README.format(version=__version__, raw=RAW))


def write_derivative(
    root: str | os.PathLike,
    subject: str,
    data: np.ndarray,
    affine: np.ndarray,
    suffix: str,
    *,
    desc: str | None = None,
    space: str | None = None,
    label: str | None = None,
    parameters: Mapping | None = None,
    sidecar: Mapping | None = None,
    datatype: str = "anat",
) -> Path:
    """Write a derivative image and its sidecar atomically in the derivative dataset ``root``.

    Parameters
    ----------
    root : path-like
        The derivative dataset (its ``dataset_description.json`` is written when missing).
    subject, suffix, desc, space, label, datatype
        Naming (:func:`derivative_path`).
    data : ndarray
        The image (3-D, or 4-D).
    affine : ndarray, shape (4, 4)
        Voxel-to-world matrix.
    parameters : mapping, optional
        Recorded in the sidecar (``Parameters``).
    sidecar : mapping, optional
        Further sidecar fields (e.g. ``Units``, ``SkullStripped``, ``SpatialReference``,
        ``Sources``: BIDS requires the first for every image but masks and segmentations, the
        second with a ``space`` entity).

    Returns
    -------
    Path
        The image written.
    """
    path = derivative_path(root, subject, suffix, desc=desc, space=space, label=label, datatype=datatype)
    write_description(root)
    meta = {**(sidecar or {}), "GeneratedBy": {"Name": PIPELINE, "Version": __version__}}
    if parameters is not None:
        meta["Parameters"] = dict(parameters)
    save_nifti(data, path, affine)
    save_json(meta, sidecar_path(path))
    return path


def write_table(
    root: str | os.PathLike,
    name: str,
    table: pd.DataFrame,
    columns: Mapping[str, Mapping[str, str]],
    what: str,
) -> Path:
    """Write a table as TSV (``n/a`` for missing values) with a JSON sidecar describing every column.

    Parameters
    ----------
    root : path-like
        The derivative dataset.
    name : str
        Path of the table relative to ``root``, without extension (``"phenotype/agreement"``,
        ``"calibration_summary"``).
    table : DataFrame
    columns : mapping
        Column name -> ``{"Description": ..., "Units": ...}`` (BIDS tabular sidecar); every column
        of ``table`` must be described.
    what : str
        The table's ``Description`` (BIDS derivatives: "This describes the nature of the file").

    Returns
    -------
    Path
        The TSV written.

    Raises
    ------
    ValueError
        A column of ``table`` without a description.
    """
    missing = [c for c in table.columns if c not in columns]
    if missing:
        raise ValueError(f"table {name!r}: columns {missing} have no description")
    if "Description" in table.columns:
        raise ValueError(f"table {name!r}: a column named 'Description' would clash with the sidecar's Description")
    root = Path(root)
    path = root / f"{name}.tsv"
    save_tsv(table, path)
    save_json({"Description": what, **{c: dict(columns[c]) for c in table.columns}}, path.with_suffix(".json"))
    return path


def write_descriptions(root: str | os.PathLike) -> Path | None:
    """``descriptions.tsv`` at the root: every ``desc`` label of the dataset's images and what it means.

    BIDS 1.10, "Derivatives: descriptions.tsv": ``desc_id`` (``desc-<label>``) and ``description``;
    at the dataset root it SHOULD list every ``desc`` label used. A label's description is the
    ``Description`` of the sidecar of its first image in sorted path order, per suffix when the
    label names images of several suffixes (``desc-SIR``: ``R1map: ...; T1map: ...``). Returns None
    when no image has a ``desc`` entity.
    """
    root = Path(root)
    found: dict[str, dict[str, str]] = {}
    for image in sorted(root.glob("sub-*/*/sub-*_desc-*.nii*")):
        match = re.search(r"_desc-([A-Za-z0-9]+)_([A-Za-z0-9]+)\.nii", image.name)
        if match is None:
            continue
        label, suffix = match.groups()
        if suffix in found.setdefault(label, {}):
            continue
        try:
            text = load_json(sidecar_path(image)).get("Description", "")
        except (OSError, ValueError):
            text = ""
        found[label][suffix] = text or "n/a"
    if not found:
        return None
    labels = sorted(found)
    texts = [next(iter(found[k].values())) if len(found[k]) == 1 else
             "; ".join(f"{suffix}: {found[k][suffix]}" for suffix in sorted(found[k])) for k in labels]
    table = pd.DataFrame({"desc_id": [f"desc-{k}" for k in labels], "description": texts})
    return write_table(root, "descriptions", table, {
        "desc_id": {"Description": "a desc-<label> entity of the dataset's images"},
        "description": {"Description": "what the images with that label hold"},
    }, "the desc labels of this dataset and their meaning")
