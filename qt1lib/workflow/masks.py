"""Brain masks, estimation regions and tissue segmentations, and where each came from.

Assumptions (written in the book):

* **Brain mask on the MP2RAGE grid.** Digital cohort: its segmentation, ``dseg > 0`` (voxels at
  least half tissue), a perfect stand-in for the seed's SLANT segmentation. Real data: a
  ``*_desc-brain_mask.nii[.gz]`` on the MP2RAGE grid under any ``derivatives/<pipeline>/``
  other than ``qt1lib``, else the rule "largest connected component of the voxels whose
  largest inversion magnitude exceeds ``signal_threshold`` noise standard deviations, holes
  filled" (for skull-stripped or brain-only fields of view).
* **Estimation mask.** T1 is estimated in the brain mask dilated by ``mask_dilation`` voxels, so
  that linear resampling into SIR space near the brain's edge blends real estimates rather
  than missing values; maps are NaN elsewhere.
* **Segmentation in SIR space.** Digital cohort: the true ``space-SIR_dseg`` (labels of
  :mod:`qt1lib.tissues`). Real data: a ``*_space-SIR_dseg`` under any ``derivatives/<pipeline>/``
  other than ``qt1lib``, else a ``*_dseg`` on the MP2RAGE grid resampled with the estimated
  transform (``genericLabel``); labels must follow the same convention.
* **SIR fit mask.** Voxels whose largest SIR magnitude exceeds ``signal_threshold`` noise
  standard deviations.

Every function returns the files it read, so that the steps that use a mask put their content
in their store keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..bids import parse_name
from ..derivatives import PIPELINE
from .workspace import Workspace

__all__ = [
    "MaskSource",
    "signal_mask",
    "brain_mask",
    "estimation_region",
    "find_user_derivative",
    "load_on_grid",
    "cohort_dseg_file",
]


@dataclass(frozen=True)
class MaskSource:
    """Where a mask or segmentation came from.

    Attributes
    ----------
    description : str
        ``"cohort segmentation"``, the dataset-relative path of the user's file, or ``"signal rule"``.
    files : tuple of Path
        Files read to make it (their content enters the keys of the steps that use it).
    """

    description: str
    files: tuple[Path, ...] = ()


def find_user_derivative(
    bids_dir: Path, subject: str, suffix: str, *, space: str | None = None, desc: str | None = None
) -> Path | None:
    """The user's ``sub-<label>_..._<suffix>.nii[.gz]`` with entity ``space`` (None: no space entity) and,
    if given, ``desc``, under ``derivatives/<pipeline>/sub-<label>/`` for any pipeline but qt1lib and phantom.

    Raises
    ------
    ValueError
        If several files could be the one (naming them).
    """
    root = Path(bids_dir) / "derivatives"
    if not root.is_dir():
        return None
    found = []
    for path in sorted(root.glob(f"*/sub-{subject}/**/sub-{subject}_*{suffix}.nii*")):
        if path.relative_to(root).parts[0] in (PIPELINE, "phantom"):
            continue
        name = parse_name(path)
        if name.suffix == suffix and name.entities.get("space") == space and (desc is None or name.entities.get("desc") == desc):
            found.append(path)
    if len(found) > 1:
        raise ValueError(f"several user derivatives could be the {suffix} of sub-{subject}: {[str(p) for p in found]}")
    return found[0] if found else None


def load_on_grid(path: Path, shape: tuple, affine: np.ndarray, what: str) -> np.ndarray:
    """The image at ``path``, which must lie on the grid (``shape``, ``affine``) of the images it goes with."""
    img = nib.load(path)
    if img.shape != tuple(shape) or not np.allclose(img.affine, affine, atol=1e-4):
        raise ValueError(f"{path}: the {what} must lie on the grid of its images (shape {tuple(shape)}, same affine)")
    return np.asarray(img.dataobj)


def signal_mask(magnitude: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Voxels whose largest magnitude (over the first axis) exceeds ``threshold * sigma``."""
    return np.abs(magnitude).max(axis=0) > threshold * sigma


def cohort_dseg_file(ws: Workspace, subject: str, space: str | None = None) -> Path:
    """The digital cohort's true segmentation of ``subject`` (:func:`qt1lib.phantom.load_truth`), on the
    MP2RAGE grid (``space=None``) or the SIR grid (``"SIR"``)."""
    prefix = f"sub-{subject}" + (f"_space-{space}" if space else "")
    path = ws.bids_dir / "derivatives" / "phantom" / f"sub-{subject}" / "anat" / f"{prefix}_dseg.nii.gz"
    if not path.is_file():
        raise ValueError(f"no ground truth for sub-{subject}: {path} does not exist (not a digital cohort?)")
    return path


def brain_mask(ws: Workspace, subject: str, gre: np.ndarray, affine: np.ndarray, sigma: float) -> tuple[np.ndarray, MaskSource]:
    """Brain mask on the MP2RAGE grid and where it came from (module docstring).

    Parameters
    ----------
    ws : Workspace
    subject : str
    gre : ndarray, shape (n_readouts, X, Y, Z)
        The MP2RAGE images (for the signal rule).
    affine : ndarray
        Their grid.
    sigma : float
        Noise level of the images.
    """
    shape = np.shape(gre)[1:]
    if ws.is_simulated:
        path = cohort_dseg_file(ws, subject)
        dseg = np.asarray(nib.load(path).dataobj)
        if dseg.shape != shape:
            raise ValueError(f"{path}: the cohort's dseg has shape {dseg.shape}, its images {shape}")
        return dseg > 0, MaskSource("cohort segmentation", (path,))
    user = find_user_derivative(ws.bids_dir, subject, "mask", desc="brain")
    if user is not None:
        return load_on_grid(user, shape, affine, "brain mask") > 0, MaskSource(str(user.relative_to(ws.bids_dir)), (user,))
    threshold = ws.config.signal_threshold
    mask = signal_mask(gre, sigma, threshold)
    labels, n = ndimage.label(mask)
    if n == 0:
        raise ValueError(f"sub-{subject}: no voxel exceeds {threshold} noise standard deviations")
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(labels == largest), MaskSource("signal rule")


def estimation_region(brain: np.ndarray, dilation: int) -> np.ndarray:
    """Voxels where T1 is estimated: ``brain`` dilated by ``dilation`` voxels."""
    brain = np.asarray(brain, dtype=bool)
    return ndimage.binary_dilation(brain, iterations=dilation) if dilation else brain
