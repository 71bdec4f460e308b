"""Named settings of the digital cohort's tissue physics: what the simulated 7 T brain is made of.

A :class:`CohortPhysics` bundles everything about the simulated tissue and acquisitions that the
estimators do not know: the two-pool tissue parameters, how the MP2RAGE inversion acts on the free
pool, and how completely the SIR readout saturates the free pool. Two settings exist, so that the
book can show both:

``literature`` (the default)
    :data:`qt1lib.sequences.twopool.TISSUES_7T`: a WM pool size ratio consistent with the fast IR
    fraction Rioux et al. 2016 measured at 7 T, grey matter scaled by the 3 T GM/WM ratio,
    ``R1m`` != ``R1f``; the free pool's inversion efficiency from a Bloch simulation of the
    hyperbolic-secant pulse with each tissue's T2f (the estimators keep assuming the protocol's
    0.84); an SIR readout that leaves :data:`qt1lib.sequences.sir.SIR_READOUT_RESIDUAL_ASSUMED`
    of the free pool's equilibrium.
``conservative``
    The cohort before these additions: :data:`qt1lib.sequences.twopool.TISSUES_7T_CONSERVATIVE`
    (3 T pool size ratios, ``R1m = R1f``), the protocol's efficiency in the data, a fully
    saturating SIR readout. Only the bound pool separates the data from the estimators' models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sequences.sir import SIR_READOUT_RESIDUAL_ASSUMED
from ..sequences.twopool import TISSUES_7T, TISSUES_7T_CONSERVATIVE, TwoPoolTissue
from .signals import INVERSION_MODELS

__all__ = ["CohortPhysics", "COHORT_PHYSICS", "DEFAULT_PHYSICS", "cohort_physics"]


@dataclass(frozen=True)
class CohortPhysics:
    """One named setting of the cohort's tissue physics.

    Attributes
    ----------
    name : str
        Key of :data:`COHORT_PHYSICS`.
    tissues : dict of str to TwoPoolTissue
        Default tissue parameters per class (:data:`qt1lib.phantom.anatomy.TISSUE_CLASSES`).
    inversion : {"protocol", "bloch"}
        The free pool's MP2RAGE inversion efficiency (:data:`qt1lib.phantom.signals.INVERSION_MODELS`).
    sir_readout_residual : float
        Free-pool Mz the SIR readout leaves, as a fraction of its equilibrium, in [0, 1).
    description : str
        One line for tables and the book.
    """

    name: str
    tissues: dict[str, TwoPoolTissue] = field(compare=False)
    inversion: str
    sir_readout_residual: float
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.inversion not in INVERSION_MODELS:
            raise ValueError(f"CohortPhysics.inversion must be one of {INVERSION_MODELS}, got {self.inversion!r}")
        r = self.sir_readout_residual
        if not (0.0 <= r < 1.0):
            raise ValueError(f"sir_readout_residual must lie in [0, 1), got {r!r}")


#: The named settings (module docstring).
COHORT_PHYSICS: dict[str, CohortPhysics] = {
    "literature": CohortPhysics(
        "literature",
        dict(TISSUES_7T),
        inversion="bloch",
        sir_readout_residual=SIR_READOUT_RESIDUAL_ASSUMED,
        description=(
            "7 T pool size ratios from the measured fast IR fraction, R1m != R1f, Bloch inversion "
            "efficiency per tissue, an SIR readout that does not fully saturate"
        ),
    ),
    "conservative": CohortPhysics(
        "conservative",
        dict(TISSUES_7T_CONSERVATIVE),
        inversion="protocol",
        sir_readout_residual=0.0,
        description="3 T pool size ratios, R1m = R1f, the protocol's inversion efficiency, a saturating SIR readout",
    ),
}

#: The setting the cohort uses unless told otherwise.
DEFAULT_PHYSICS = "literature"


def cohort_physics(name: str) -> CohortPhysics:
    """The setting ``name`` of :data:`COHORT_PHYSICS`; unknown names raise ``ValueError``."""
    try:
        return COHORT_PHYSICS[name]
    except KeyError:
        raise ValueError(f"unknown cohort physics {name!r}; expected one of {sorted(COHORT_PHYSICS)}") from None
