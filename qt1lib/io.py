"""Atomic, byte-reproducible writers for NIfTI images, JSON sidecars and TSV tables.

Every writer writes to a temporary file in the destination's directory and then renames it
over the destination with :func:`os.replace`, which is atomic on POSIX file systems: a reader
(or an interrupted run) sees either the old file or the complete new one, never a partial
file. Writers create missing parent directories.

Compressed NIfTI files are gzip streams with a zero modification time and no file name in the
header, so the same image always gives the same bytes (``gzip`` otherwise stamps the current
time into the header).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

__all__ = ["atomic_write_bytes", "save_nifti", "save_json", "save_tsv", "load_json"]

#: gzip level of written .nii.gz files: level 1 is several times faster than the default 9
#: and the noisy images of this project compress little better at higher levels.
GZIP_LEVEL = 1


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[object], None] | bytes) -> Path:
    """Write a file atomically.

    Parameters
    ----------
    path : path-like
        Destination; parent directories are created.
    write : bytes or callable
        The content, or a function that receives a binary file object and writes to it.

    Returns
    -------
    Path
        The destination.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(write, (bytes, bytearray)):
                fh.write(write)
            else:
                write(fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_nifti(
    data: np.ndarray | nib.Nifti1Image,
    path: str | os.PathLike,
    affine: np.ndarray | None = None,
    dtype: type | np.dtype | None = None,
) -> Path:
    """Save an image as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically and reproducibly.

    Parameters
    ----------
    data : ndarray or nibabel.Nifti1Image
        Voxel array (with ``affine``) or a ready image (``affine`` must then be None).
    path : path-like
        Destination ending in ``.nii`` or ``.nii.gz``.
    affine : ndarray, shape (4, 4), optional
        Voxel-to-world (RAS, mm) matrix of ``data``.
    dtype : numpy dtype, optional
        Storage type; default float32 for floating arrays, the array's own type otherwise.

    Returns
    -------
    Path
        The destination.

    Raises
    ------
    ValueError
        If the suffix is not ``.nii``/``.nii.gz``, or ``affine`` is missing or not a finite 4x4 matrix.
    """
    path = Path(path)
    if not (path.name.endswith(".nii.gz") or path.name.endswith(".nii")):
        raise ValueError(f"save_nifti: path must end in .nii or .nii.gz, got {path.name!r}")
    if isinstance(data, nib.Nifti1Image):
        if affine is not None:
            raise ValueError("save_nifti: give either an image or an array with its affine, not both")
        img = data
    else:
        if affine is None:
            raise ValueError("save_nifti: affine (4x4 voxel-to-world matrix) is required with an array")
        affine = np.asarray(affine, dtype=float)
        if affine.shape != (4, 4) or not np.isfinite(affine).all():
            raise ValueError(f"save_nifti: affine must be a finite 4x4 matrix, got shape {affine.shape}")
        arr = np.asarray(data)
        if dtype is None:
            dtype = np.float32 if np.issubdtype(arr.dtype, np.floating) else arr.dtype
        img = nib.Nifti1Image(arr.astype(dtype, copy=False), affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_qform(affine, code=1)
        img.header.set_sform(affine, code=1)
    raw = img.to_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)
    return atomic_write_bytes(path, raw)


def _json_default(obj: object) -> object:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def save_json(obj: object, path: str | os.PathLike) -> Path:
    """Save ``obj`` as indented JSON (NumPy scalars and arrays converted), atomically."""
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def load_json(path: str | os.PathLike) -> dict:
    """Read a JSON file; a file that is not valid JSON raises ``ValueError`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def save_tsv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save a table as tab-separated values (no index; ``n/a`` for missing values, as BIDS), atomically."""
    text = table.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    return atomic_write_bytes(path, text.encode("utf-8"))
