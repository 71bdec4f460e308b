"""Lookup tables with the seed code's two-train model: ``lut_seed_code`` and ``lut_b1_seed_code``.

The lookup tables of :mod:`qt1lib.estimate.lut_estimators` (UNI = S_12 of readouts 1 and 2)
built with :data:`qt1lib.protocols.SEED_CODE_7T_MP2RAGE` instead of the data's protocol
(:mod:`qt1lib.estimate.seed_code`). ``lut_seed_code`` is the seed code's point estimate
(MASILab/map_t1_mapping@2d6e086 ``scripts/create_t1_map_lut.py``: a 1-D table at nominal flip
angles; the code interpolates a 50 ms grid, this table a 1 ms one). ``lut_b1_seed_code`` adds the
B1+ map (Marques & Gruetter 2013), which the seed code does not: it isolates the error of the
two-train model from that of B1+.
"""

from __future__ import annotations

from .base import register_estimator
from .lut_estimators import _LookupTableEstimator
from .seed_code import SEED_CODE_DEFAULTS, SeedCodeModelEstimator

__all__ = ["LUTSeedCode", "LUTB1SeedCode"]


@register_estimator
class LUTSeedCode(SeedCodeModelEstimator, _LookupTableEstimator):
    """Marques' lookup table of UNI at nominal flip angles, two-train seed-code model."""

    name = "lut_seed_code"
    b1 = "none"
    desc = "LUTseedcode"
    label = "LUT, seed-code 2-train model"
    defaults = {**_LookupTableEstimator.defaults, **SEED_CODE_DEFAULTS}


@register_estimator
class LUTB1SeedCode(SeedCodeModelEstimator, _LookupTableEstimator):
    """The B1-corrected 2-D lookup table ``T1(UNI, B1)``, two-train seed-code model."""

    name = "lut_b1_seed_code"
    b1 = "map"
    desc = "LUTB1seedcode"
    label = "LUT, B1-corrected, seed-code 2-train model"
    defaults = {**_LookupTableEstimator.defaults, **SEED_CODE_DEFAULTS}
