"""Naming and writing the BIDS derivatives of qt1lib: one derivative dataset, anywhere on disk.

The derivative dataset is a folder of its own (the BIDS-App ``OUTPUT_DIR``; by default
``<bids_dir>/derivatives/qt1lib``) with a ``dataset_description.json`` of ``DatasetType``
``"derivative"`` (BIDS 1.10, "Derivatives: dataset_description.json"), subject folders
``sub-<label>/<datatype>/`` and group-level files at its root. Every file is written atomically
(:mod:`qt1lib.io`); the published copies are never read back to decide what to reuse: the
content-addressed store (:mod:`qt1lib.store`) does that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import __version__
from .io import save_json, save_nifti

__all__ = ["PIPELINE", "default_derivatives_dir", "derivative_path", "sidecar_path", "write_description",
           "write_derivative"]

#: Name of this package's derivative dataset (folder under ``derivatives/`` by default, ``GeneratedBy``).
PIPELINE = "qt1lib"

_ENTITY_ORDER = ("ses", "acq", "run", "space", "label", "desc")
_NIFTI = re.compile(r"\.nii(\.gz)?$")


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
    ``subject=None``, a group-level file at the root (e.g. a table:
    ``derivative_path(root, None, "rmse", desc="calibration", extension=".tsv")`` gives
    ``<root>/desc-calibration_rmse.tsv``). Entity values and the suffix must be alphanumeric
    (BIDS labels).

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


def write_description(root: str | os.PathLike) -> Path:
    """Write the derivative dataset's ``dataset_description.json`` unless it exists; returns its path."""
    path = Path(root) / "dataset_description.json"
    if not path.is_file():
        save_json(
            {
                "Name": "qt1lib derivatives",
                "BIDSVersion": "1.10.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": PIPELINE, "Version": __version__}],
            },
            path,
        )
    return path


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
        Further sidecar fields (e.g. ``Units``).

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
