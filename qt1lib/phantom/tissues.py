"""Per-subject and within-tissue variation of the two-pool tissue parameters.

Each tissue class ``c`` of :data:`~qt1lib.phantom.anatomy.TISSUE_CLASSES` starts from the 7 T
defaults of :data:`qt1lib.sequences.twopool.TISSUES_7T`. A subject ``s`` gets, for each class and
parameter ``p`` in (``r1f``, ``psr``, ``kmf``, ``m0f``), a log-normal multiplier and a smooth
spatial variation inside the tissue::

    p_c(x) = p_c_default * exp(a_p z_cp + b_p f_cp(x))

with ``z_cp`` standard normal (one per subject) and ``f_cp`` a smooth random field of unit
variance (:class:`~qt1lib.phantom.fields.SmoothField`). The log-normal form keeps every
parameter positive and keeps ``PSR = 0`` of CSF at 0.

The spreads ``a_p`` (between subjects) and ``b_p`` (within a tissue) of
:data:`SUBJECT_SD` / :data:`WITHIN_SD` are assumptions of the book, not values from a paper:
a few percent for R1f and M0f (healthy adult brain T1 varies by a few percent between
subjects and regions), more for PSR, the noisier and more region-dependent quantity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..sequences.twopool import TISSUES_7T, TwoPoolTissue
from .anatomy import TISSUE_CLASSES
from .fields import Grid, SmoothField, Where, evaluate

__all__ = ["PARAMETERS", "SUBJECT_SD", "WITHIN_SD", "WITHIN_SPACING_MM", "TissueMaps", "TissueVariation"]

#: Two-pool parameters that vary: free-pool R1 (s^-1), pool size ratio, exchange rate m -> f
#: (s^-1), free-pool proton density (relative, CSF = 1).
PARAMETERS: tuple[str, ...] = ("r1f", "psr", "kmf", "m0f")

#: Log-scale standard deviation of the per-subject multiplier (assumption, see module docstring).
SUBJECT_SD: dict[str, float] = {"r1f": 0.04, "psr": 0.08, "kmf": 0.05, "m0f": 0.03}

#: Log-scale standard deviation of the smooth within-tissue variation (assumption). kmf is held
#: fixed within a subject, as SIR fits assume (Dortch et al. 2011).
WITHIN_SD: dict[str, float] = {"r1f": 0.03, "psr": 0.06, "kmf": 0.0, "m0f": 0.02}

#: Control-point spacing (mm) of the within-tissue fields: variations over a few centimetres.
WITHIN_SPACING_MM = 30.0


@dataclass(frozen=True)
class TissueMaps:
    """Two-pool parameters of one tissue class at a set of points.

    Attributes
    ----------
    r1f : ndarray
        Free-pool R1 (s^-1).
    psr : ndarray
        Pool size ratio M0m / M0f.
    kmf : ndarray
        Exchange rate m -> f (s^-1).
    m0f : ndarray
        Free-pool proton density (relative to CSF).
    r1m : float, optional
        Macromolecular-pool R1 of the class (s^-1); None: ``R1m = R1f`` in every voxel.
    inversion_relaxation : (float, float), optional
        The class's free-pool (T1f, T2f) (s) for the adiabatic inversion's Bloch simulation
        (:meth:`qt1lib.sequences.twopool.HyperbolicSecantPulse.free_pool_efficiency`); None: the
        protocol's constant efficiency.
    """

    r1f: np.ndarray
    psr: np.ndarray
    kmf: np.ndarray
    m0f: np.ndarray
    r1m: float | None = None
    inversion_relaxation: tuple[float, float] | None = None

    def select(self, shape: tuple[int, ...], where: np.ndarray) -> TissueMaps:
        """The voxel-wise maps broadcast to ``shape`` and indexed by ``where`` (class constants kept)."""
        return replace(self, **{p: np.broadcast_to(getattr(self, p), shape)[where] for p in PARAMETERS})

    def without_bound_pool(self) -> TissueMaps:
        """The same tissue with PSR = 0 (single-pool)."""
        return replace(self, psr=np.zeros_like(self.psr))


@dataclass(frozen=True)
class TissueVariation:
    """The tissue parameters of one subject, as functions of position.

    Attributes
    ----------
    defaults : dict of str to TwoPoolTissue
        Default parameters per class.
    log_offsets : ndarray, shape (n_classes, n_parameters)
        ``a_p z_cp``, the subject's log multipliers.
    field : SmoothField
        ``n_classes * n_parameters`` unit-variance components ``f_cp``.
    within_sd : dict of str to float
        ``b_p``.
    """

    defaults: dict[str, TwoPoolTissue]
    log_offsets: np.ndarray
    field: SmoothField
    within_sd: dict[str, float]

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        box: tuple[np.ndarray, np.ndarray],
        defaults: dict[str, TwoPoolTissue] | None = None,
        subject_sd: dict[str, float] | None = None,
        within_sd: dict[str, float] | None = None,
        spacing_mm: float = WITHIN_SPACING_MM,
    ) -> "TissueVariation":
        """Draw one subject's parameter variation.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of every draw.
        box : (ndarray, ndarray)
            World corners (mm) where the parameters will be evaluated.
        defaults : dict, optional
            Class name -> :class:`~qt1lib.sequences.twopool.TwoPoolTissue`; default
            :data:`~qt1lib.sequences.twopool.TISSUES_7T`.
        subject_sd, within_sd : dict, optional
            Log-scale spreads per parameter; defaults :data:`SUBJECT_SD`, :data:`WITHIN_SD`.
        spacing_mm : float
            Smoothness of the within-tissue fields (control-point spacing, mm).
        """
        defaults = dict(TISSUES_7T if defaults is None else defaults)
        missing = set(TISSUE_CLASSES) - set(defaults)
        if missing:
            raise ValueError(f"defaults lacks tissue classes {sorted(missing)}; expected {TISSUE_CLASSES}")
        subject_sd = {**SUBJECT_SD, **(subject_sd or {})}
        within_sd = {**WITHIN_SD, **(within_sd or {})}
        for name, table in (("subject_sd", subject_sd), ("within_sd", within_sd)):
            unknown = set(table) - set(PARAMETERS)
            if unknown:
                raise ValueError(f"{name} has unknown parameters {sorted(unknown)}; expected {PARAMETERS}")
            if any(not (np.isfinite(v) and v >= 0) for v in table.values()):
                raise ValueError(f"{name} values must be finite and >= 0, got {table}")
        a = np.array([subject_sd[p] for p in PARAMETERS])
        log_offsets = rng.standard_normal((len(TISSUE_CLASSES), len(PARAMETERS))) * a
        field = SmoothField.random(rng, box, spacing_mm, n_components=len(TISSUE_CLASSES) * len(PARAMETERS))
        return cls(defaults=defaults, log_offsets=log_offsets, field=field, within_sd=within_sd)

    def evaluate(self, tissue: str, where: Where) -> TissueMaps:
        """Parameters of class ``tissue`` at the voxels of a grid or at world points (mm)."""
        c = TISSUE_CLASSES.index(tissue)
        n = len(PARAMETERS)
        shape = where.shape if isinstance(where, Grid) else np.shape(where)[:-1]
        varying = [j for j, p in enumerate(PARAMETERS) if self.within_sd[p] > 0]
        values = np.zeros((0, *shape))
        if varying:
            coefficients = self.field.coefficients[[c * n + j for j in varying]]
            values = evaluate(SmoothField(coefficients, self.field.origin, self.field.spacing), where)
        default = self.defaults[tissue]
        out = {}
        for j, p in enumerate(PARAMETERS):
            log_value = np.full(shape, self.log_offsets[c, j])
            if j in varying:
                log_value = log_value + self.within_sd[p] * values[varying.index(j)]
            out[p] = getattr(default, p) * np.exp(log_value)
        relaxation = None if default.t2f is None else (default.t1f, default.t2f)
        return TissueMaps(**out, r1m=default.r1m, inversion_relaxation=relaxation)

    def subject_means(self) -> dict[str, dict[str, float]]:
        """Class -> parameter -> the subject's median value (default times its multiplier)."""
        return {
            t: {p: float(getattr(self.defaults[t], p) * np.exp(self.log_offsets[c, j])) for j, p in enumerate(PARAMETERS)}
            for c, t in enumerate(TISSUE_CLASSES)
        }
