"""Rigid registration of MP2RAGE-space images to the SIR space with antspyx, as the seed did.

The seed's scripts (MASILab/map_t1_mapping, ``register_to_ground_truth_mask.sh``) register
rigidly and resample the MP2RAGE maps into the IR space with ``antsApplyTransforms -n Linear``.
Here: ``ants.registration(type_of_transform="Rigid")`` with Mattes mutual information, 32 bins
(antspyx's defaults for the rigid stage, ``aff_metric="mattes"``, ``aff_sampling=32``); moving =
an MP2RAGE-space T1-weighted image (e.g. the INV2 magnitude), fixed = a SIR image. Maps are
resampled into SIR space with linear interpolation, label images with ``genericLabel``.

Coordinates. nibabel affines are RAS (mm); ITK/ANTs physical space is LPS. A point
``x_ras`` is ``F x_ras`` in LPS with ``F = diag(-1, -1, 1)``. :class:`RigidTransform` holds the
4x4 RAS matrix that maps a fixed-space (SIR) world point to the moving-space (MP2RAGE) world
point showing the same anatomy: the map that resampling needs, and the one ANTs estimates.

Determinism. The metric samples 20 % of the voxels at random (antspyx default
``aff_random_sampling_rate=0.2``); the ``seed`` argument fixes that sampling (antsRegistration
``--random-seed``, given ``seed + 1``: antsRegistration seeds from the clock when given 0, which we
observed as run-to-run differences). Multi-threaded metric sums can differ in their last bits from run to run, so
this module sets ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1`` on import unless it is already set
(ITK reads it once, when antspyx first runs).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import numpy as np  # noqa: E402
from nibabel.affines import apply_affine  # noqa: E402

from .io import load_json, save_json  # noqa: E402

__all__ = [
    "RigidTransform",
    "to_ants",
    "register_rigid",
    "apply_transform",
    "registration_error",
    "ants_random_seed",
    "INTERPOLATORS",
]

#: ANTs interpolators for :func:`apply_transform`: maps use ``linear`` (as the seed), labels
#: ``genericLabel`` (or ``nearestNeighbor``).
INTERPOLATORS = ("linear", "genericLabel", "nearestNeighbor", "bSpline")

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _ants():
    import ants

    return ants


def to_ants(data: np.ndarray, affine: np.ndarray):
    """An ``ants.ANTsImage`` of ``data`` with the nibabel (RAS) ``affine``.

    Raises
    ------
    ValueError
        If ``data`` is not 3-D or ``affine`` has shear (ANTs images need orthogonal axes).
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"data must be a 3-D image, got shape {data.shape}")
    affine = np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-5):
        raise ValueError("affine has shear or non-orthogonal axes; ANTs images need orthogonal voxel axes")
    flip = _LPS[:3, :3]
    return _ants().from_numpy(
        np.ascontiguousarray(data),
        origin=tuple(flip @ affine[:3, 3]),
        spacing=tuple(spacing),
        direction=flip @ direction,
    )


@dataclass(frozen=True)
class RigidTransform:
    """A rigid (or affine) map of world points, fixed space -> moving space.

    Attributes
    ----------
    matrix : ndarray, shape (4, 4)
        RAS (mm) matrix: the moving-space point that shows the anatomy at fixed-space point ``x``
        is ``matrix @ [x, 1]``.
    """

    matrix: np.ndarray

    def apply_to_points(self, points: np.ndarray) -> np.ndarray:
        """Map fixed-space world points (..., 3) to moving space."""
        return apply_affine(self.matrix, np.asarray(points, dtype=float))

    def rotation_deg(self) -> float:
        """Total rotation angle (degrees) of the linear part."""
        c = (np.trace(self.matrix[:3, :3]) - 1) / 2
        return float(np.degrees(np.arccos(np.clip(c, -1, 1))))

    def to_ants_file(self, path: str | os.PathLike) -> Path:
        """Write as an ITK affine transform file (``.mat``) usable by ``antsApplyTransforms``."""
        ants = _ants()
        lps = _LPS @ self.matrix @ _LPS
        tx = ants.create_ants_transform(
            transform_type="AffineTransform", precision="double", dimension=3, matrix=lps[:3, :3], offset=lps[:3, 3]
        )
        ants.write_transform(tx, str(path))
        return Path(path)

    @classmethod
    def from_ants_file(cls, path: str | os.PathLike) -> "RigidTransform":
        """Read an ITK/ANTs affine transform file (``.mat``, as antsRegistration writes for Rigid).

        ITK's ``MatrixOffsetTransformBase`` stores the matrix ``A`` (row-major), the translation
        ``t`` and the centre ``c`` (fixed parameters): ``T(x) = A (x - c) + t + c`` in LPS.

        Raises
        ------
        ValueError
            If the file holds another kind of transform.
        """
        tx = _ants().read_transform(str(path), precision="double")
        params = np.asarray(tx.parameters, dtype=float)
        centre = np.asarray(tx.fixed_parameters, dtype=float)
        if params.size != 12 or centre.size != 3:
            raise ValueError(f"{path}: expected a 3-D affine transform (12 parameters), got {tx.type} with {params.size}")
        lps = np.eye(4)
        lps[:3, :3] = params[:9].reshape(3, 3)
        lps[:3, 3] = params[9:] + centre - lps[:3, :3] @ centre
        return cls(_LPS @ lps @ _LPS)

    def save(self, path: str | os.PathLike) -> Path:
        """Save as JSON (the RAS matrix and its direction), atomically."""
        return save_json(
            {"FixedToMovingRAS": self.matrix, "Description": "maps fixed-space world points (RAS, mm) to moving space"},
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RigidTransform":
        """Load what :meth:`save` wrote."""
        return cls(np.asarray(load_json(path)["FixedToMovingRAS"], dtype=float))


@contextlib.contextmanager
def ants_random_seed(seed: int):
    """Set antspyx's random seed (``--random-seed`` of antsRegistration) for the duration of a call."""
    config = _ants().config
    previous = config._random_seed
    config._random_seed = int(seed) + 1  # antsRegistration treats 0 as "seed from the clock"
    try:
        yield
    finally:
        config._random_seed = previous


def register_rigid(
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    *,
    seed: int = 0,
    bins: int = 32,
    fixed_mask: np.ndarray | None = None,
) -> RigidTransform:
    """Rigid registration with Mattes mutual information (antspyx).

    Parameters
    ----------
    fixed, fixed_affine : ndarray
        Fixed image (e.g. a SIR image) and its RAS affine.
    moving, moving_affine : ndarray
        Moving image (e.g. the INV2 magnitude in MP2RAGE space) and its RAS affine.
    seed : int
        Random seed of the metric's voxel sampling.
    bins : int
        Histogram bins of the mutual information (32, as the seed / antspyx default).
    fixed_mask : ndarray, optional
        Metric mask in fixed space (non-zero = used).

    Returns
    -------
    RigidTransform
        Fixed (SIR) world point -> moving (MP2RAGE) world point.
    """
    if bins < 8 or int(bins) != bins:
        raise ValueError(f"bins must be an integer >= 8, got {bins!r}")
    ants = _ants()
    fixed_img = to_ants(fixed, fixed_affine)
    moving_img = to_ants(moving, moving_affine)
    mask = None if fixed_mask is None else to_ants((np.asarray(fixed_mask) != 0).astype(np.float32), fixed_affine)
    with tempfile.TemporaryDirectory(prefix="qt1lib-reg-") as tmp, ants_random_seed(seed):
        result = ants.registration(
            fixed=fixed_img,
            moving=moving_img,
            type_of_transform="Rigid",
            aff_metric="mattes",
            aff_sampling=int(bins),
            mask=mask,
            outprefix=str(Path(tmp) / "rigid_"),
        )
        (path,) = result["fwdtransforms"]
        return RigidTransform.from_ants_file(path)


def apply_transform(
    transform: RigidTransform,
    data: np.ndarray,
    affine: np.ndarray,
    reference_shape: tuple[int, int, int],
    reference_affine: np.ndarray,
    interpolation: str = "linear",
    default_value: float = 0.0,
) -> np.ndarray:
    """Resample a moving-space image into the fixed (reference) grid with ``antsApplyTransforms``.

    Parameters
    ----------
    transform : RigidTransform
        Fixed -> moving map (as :func:`register_rigid` returns).
    data, affine : ndarray
        Moving-space image (3-D) and its RAS affine.
    reference_shape, reference_affine
        The fixed grid.
    interpolation : str
        One of :data:`INTERPOLATORS`: ``"linear"`` for maps, ``"genericLabel"`` for labels.
    default_value : float
        Value outside the moving image.

    Returns
    -------
    ndarray, float32, shape reference_shape
    """
    if interpolation not in INTERPOLATORS:
        raise ValueError(f"interpolation must be one of {INTERPOLATORS}, got {interpolation!r}")
    ants = _ants()
    reference = to_ants(np.zeros(reference_shape, dtype=np.float32), reference_affine)
    with tempfile.TemporaryDirectory(prefix="qt1lib-xfm-") as tmp:
        path = transform.to_ants_file(Path(tmp) / "fixed_to_moving.mat")
        out = ants.apply_transforms(
            fixed=reference,
            moving=to_ants(data, affine),
            transformlist=[str(path)],
            interpolator=interpolation,
            defaultvalue=default_value,
        )
    return out.numpy().astype(np.float32)


def registration_error(
    estimated: RigidTransform, true_matrix: np.ndarray, mask: np.ndarray, affine: np.ndarray
) -> float:
    """Mean displacement (mm) between the estimated and the true map over the voxels of ``mask``.

    ``mean_x || M_est x - M_true x ||`` over the world positions ``x`` of the non-zero voxels
    of ``mask`` (e.g. the brain in SIR space).

    Parameters
    ----------
    estimated : RigidTransform
        Fixed -> moving map estimated by :func:`register_rigid`.
    true_matrix : ndarray, shape (4, 4)
        The true fixed -> moving RAS matrix (for the digital cohort,
        ``load_motion(...).session_to_subject``).
    mask, affine : ndarray
        Voxels (fixed grid) over which to average, and the grid's RAS affine.
    """
    idx = np.argwhere(np.asarray(mask) != 0)
    if idx.size == 0:
        raise ValueError("mask is empty: no voxel to measure the registration error on")
    pts = apply_affine(np.asarray(affine), idx)
    true = apply_affine(np.asarray(true_matrix), pts)
    return float(np.linalg.norm(estimated.apply_to_points(pts) - true, axis=1).mean())
