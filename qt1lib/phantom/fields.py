"""Smooth random fields of the digital cohort: deformations, B1+, receive field, rigid motion.

Every field is a function of world position (mm), so the same subject can be sampled on any
grid (the MP3RAGE grid, the coarser SIR grid, in either head position). Random draws come only
from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.affines import apply_affine
from scipy import ndimage
from scipy.spatial.transform import Rotation

__all__ = [
    "Grid",
    "SmoothField",
    "cubic_bspline",
    "Where",
    "evaluate",
    "points_of",
    "b1_transmit_field",
    "RigidMotion",
    "random_rigid_motion",
]

#: Mean variance of a cubic B-spline expansion with independent unit-variance coefficients, per
#: dimension: the integral of the squared cubic B-spline, beta^7(0) = 151/315 (the centred
#: B-spline of degree 7 at 0; Unser 1999, IEEE Signal Process. Mag. 16(6):22, "Splines: a
#: perfect fit"). Dividing the coefficients by sqrt(VAR^3) gives fields of unit mean variance.
_BSPLINE_VARIANCE_1D = 151.0 / 315.0


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape and voxel-to-world affine (RAS, mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @classmethod
    def covering(cls, box: tuple[np.ndarray, np.ndarray], voxel_size: tuple[float, float, float]) -> "Grid":
        """Axis-aligned grid of voxels ``voxel_size`` (mm), centred on ``box`` (corners, mm) and covering it."""
        lo, hi = (np.asarray(c, dtype=float) for c in box)
        v = np.asarray(voxel_size, dtype=float)
        if v.shape != (3,) or not (v > 0).all():
            raise ValueError(f"voxel_size must be three positive sizes (mm), got {voxel_size!r}")
        shape = tuple(int(n) for n in np.ceil((hi - lo) / v))
        affine = np.diag([*v, 1.0])
        affine[:3, 3] = (lo + hi) / 2 - v * (np.array(shape) - 1) / 2
        return cls(shape=shape, affine=affine)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size (mm)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def axis_aligned(self) -> bool:
        """True when the voxel axes are the world axes (diagonal linear part)."""
        a = self.affine[:3, :3]
        return bool(np.allclose(a, np.diag(np.diag(a))))

    def points(self) -> np.ndarray:
        """World coordinates (mm) of every voxel centre, shape (*shape, 3)."""
        idx = np.stack(np.meshgrid(*(np.arange(n) for n in self.shape), indexing="ij"), axis=-1)
        return apply_affine(self.affine, idx.astype(float))


def cubic_bspline(t: np.ndarray) -> np.ndarray:
    """Centred cubic B-spline ``beta3(t)`` (Unser 1999, IEEE Signal Process. Mag. 16(6):22, eq. 6).

    ``2/3 - t^2 + |t|^3 / 2`` for ``|t| < 1``, ``(2 - |t|)^3 / 6`` for ``1 <= |t| < 2``, else 0.
    """
    a = np.abs(np.asarray(t, dtype=float))
    return np.where(a < 1, 2.0 / 3.0 - a**2 + a**3 / 2, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))


@dataclass(frozen=True)
class SmoothField:
    """A smooth random field: cubic B-spline on a lattice of control points.

    ``f(x) = sum_j c_j beta3((x - x_j) / h)`` with independent standard normal coefficients
    ``c_j`` scaled so that the field has unit mean variance (:data:`_BSPLINE_VARIANCE_1D`);
    ``h`` (the control-point spacing) sets the smoothness: features are about ``2 h`` wide.

    Attributes
    ----------
    coefficients : ndarray, shape (n_components, nx, ny, nz)
        B-spline coefficients (already normalised).
    origin : ndarray, shape (3,)
        World position (mm) of control point (0, 0, 0).
    spacing : float
        Control-point spacing ``h`` (mm).
    """

    coefficients: np.ndarray
    origin: np.ndarray
    spacing: float

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        box: tuple[np.ndarray, np.ndarray],
        spacing: float,
        n_components: int = 1,
    ) -> "SmoothField":
        """Draw a field of unit mean variance covering ``box`` (lowest, highest corner in mm).

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of the coefficients.
        box : (ndarray, ndarray)
            World corners (mm) of the region where the field will be evaluated.
        spacing : float
            Control-point spacing (mm), > 0.
        n_components : int
            Number of independent components (3 for a displacement field).
        """
        if not spacing > 0:
            raise ValueError(f"spacing (mm) must be > 0, got {spacing!r}")
        lo, hi = (np.asarray(c, dtype=float) for c in box)
        # Two control points beyond each side: the cubic B-spline support is 4 spacings.
        origin = lo - 2 * spacing
        shape = np.ceil((hi - lo) / spacing).astype(int) + 5
        coefficients = rng.standard_normal((n_components, *shape)) / np.sqrt(_BSPLINE_VARIANCE_1D**3)
        return cls(coefficients=coefficients, origin=origin, spacing=float(spacing))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Field values at world ``points`` (mm), shape (..., 3) -> (n_components, ...)."""
        points = np.asarray(points, dtype=float)
        coords = ((points - self.origin) / self.spacing).reshape(-1, 3).T
        out = np.stack(
            [ndimage.map_coordinates(c, coords, order=3, prefilter=False, mode="nearest") for c in self.coefficients]
        )
        return out.reshape(len(self.coefficients), *points.shape[:-1])

    def on_grid(self, grid: Grid) -> np.ndarray:
        """Field values at the voxel centres of ``grid``, shape (n_components, *grid.shape).

        For an axis-aligned grid the tensor-product B-spline is separable and evaluated as three
        small matrix products (the same values as :meth:`__call__` wherever the control lattice
        covers the points); other grids fall back to :meth:`__call__`.
        """
        if not grid.axis_aligned:
            return self(grid.points())
        out = self.coefficients
        for axis, n in enumerate(grid.shape):
            x = grid.affine[axis, axis] * np.arange(n) + grid.affine[axis, 3]
            u = (x - self.origin[axis]) / self.spacing
            basis = cubic_bspline(u[:, None] - np.arange(self.coefficients.shape[axis + 1])[None, :])
            out = np.moveaxis(np.tensordot(out, basis, axes=([axis + 1], [1])), -1, axis + 1)
        return out


#: Where a field is evaluated: the voxel centres of a grid, or world points of shape (..., 3).
Where = Grid | np.ndarray


def points_of(where: Where) -> np.ndarray:
    """World points (mm), shape (..., 3), of ``where``."""
    return where.points() if isinstance(where, Grid) else np.asarray(where, dtype=float)


def evaluate(field: SmoothField, where: Where) -> np.ndarray:
    """``field`` at ``where``: (n_components, *grid.shape) or (n_components, ...) for points."""
    return field.on_grid(where) if isinstance(where, Grid) else field(where)


def b1_transmit_field(
    points: np.ndarray,
    centre: np.ndarray,
    widths: np.ndarray,
    peak: float,
    perturbation: np.ndarray | float = 0.0,
) -> np.ndarray:
    """A 7T-like relative B1+ field: bright centre, weaker periphery.

    ``B1(x) = peak * exp(-1/2 sum_i ((x_i - c_i) / w_i)^2) * (1 + perturbation(x))``.

    At 7 T the RF wavelength in tissue is comparable to the head, and a single-channel
    (circularly polarised) head coil gives a central brightening with B1+ falling by about half
    towards the temporal lobes and the cerebellum (Van de Moortele et al. 2005, MRM 54:1503;
    the design target "about 0.6..1.3" is DESIGN.md 4.5). A Gaussian bump is the simplest shape
    with that behaviour; the smooth ``perturbation`` breaks its symmetry.

    Parameters
    ----------
    points : ndarray, shape (..., 3)
        World positions (mm).
    centre : ndarray, shape (3,)
        Position of the maximum (mm).
    widths : ndarray, shape (3,)
        Gaussian widths along x, y, z (mm).
    peak : float
        B1+ at the centre (relative to nominal).
    perturbation : ndarray or float
        Relative smooth deviation, broadcast with ``points[..., 0]``.

    Returns
    -------
    ndarray, shape points.shape[:-1]
        Relative B1+ (1 = nominal flip angle).
    """
    d = (np.asarray(points, dtype=float) - np.asarray(centre)) / np.asarray(widths)
    return peak * np.exp(-0.5 * np.sum(d**2, axis=-1)) * (1.0 + np.asarray(perturbation))


@dataclass(frozen=True)
class RigidMotion:
    """A rigid head-position change between two sessions.

    The head at subject (first-session) position ``x`` is found in the second session's scanner
    coordinates at ``y = R (x - c) + c + t``: a rotation ``R`` about the centre ``c`` then a
    translation ``t``.

    Attributes
    ----------
    rotation_deg : ndarray, shape (3,)
        Rotation angles about x, y, z (degrees), applied in that order (extrinsic "xyz").
    translation_mm : ndarray, shape (3,)
        Translation (mm).
    centre_mm : ndarray, shape (3,)
        Rotation centre (mm, world).
    """

    rotation_deg: np.ndarray
    translation_mm: np.ndarray
    centre_mm: np.ndarray

    @property
    def subject_to_session(self) -> np.ndarray:
        """4x4 matrix mapping subject (first-session) world points to second-session world points."""
        r = Rotation.from_euler("xyz", self.rotation_deg, degrees=True).as_matrix()
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = self.centre_mm - r @ self.centre_mm + self.translation_mm
        return m

    @property
    def session_to_subject(self) -> np.ndarray:
        """4x4 matrix mapping second-session world points back to subject world points."""
        return np.linalg.inv(self.subject_to_session)

    def to_dict(self) -> dict:
        """JSON-ready description (degrees, mm, and both matrices)."""
        return {
            "RotationDegrees": [float(v) for v in self.rotation_deg],
            "RotationOrder": "extrinsic xyz about RotationCentre",
            "TranslationMillimetres": [float(v) for v in self.translation_mm],
            "RotationCentre": [float(v) for v in self.centre_mm],
            "SubjectToSIRMatrix": self.subject_to_session.tolist(),
            "SIRToSubjectMatrix": self.session_to_subject.tolist(),
            "Description": (
                "World (RAS, mm) coordinates: a head point at x in the MP2RAGE session lies at "
                "SubjectToSIRMatrix @ x in the SIR session"
            ),
        }


def random_rigid_motion(
    rng: np.random.Generator, rotation_sd_deg: float, translation_sd_mm: float, centre_mm: np.ndarray
) -> RigidMotion:
    """Draw a rigid motion with normal angles and translations of the given standard deviations."""
    if rotation_sd_deg < 0 or translation_sd_mm < 0:
        raise ValueError(
            f"rotation_sd_deg and translation_sd_mm must be >= 0, got {rotation_sd_deg!r}, {translation_sd_mm!r}"
        )
    return RigidMotion(
        rotation_deg=rng.normal(0.0, rotation_sd_deg, 3),
        translation_mm=rng.normal(0.0, translation_sd_mm, 3),
        centre_mm=np.asarray(centre_mm, dtype=float),
    )
