"""Lookup-table estimators of the registry: ``lut`` (nominal B1) and ``lut_b1`` (B1-corrected).

Both read T1 from UNI = S_12 (:func:`qt1lib.sequences.uni` of readouts 1 and 2) with
:func:`qt1lib.estimate.lut.lut_t1`: the 1-D table of Marques et al. 2010 (NeuroImage 49:1271)
at nominal flip angles, or the 2-D table ``T1(S, B1)`` of Marques & Gruetter 2013 (PLoS One
8:e69294) with the measured B1+ map. The table simulates every acquired readout of the protocol.
They are point estimators: ``map`` = ``mean`` = the T1 read, ``std`` NaN, ``valid`` where finite.
"""

from __future__ import annotations

import numpy as np

from ..sequences import uni
from .base import PosteriorT1, T1Estimator, register_estimator
from .lut import lut_t1

__all__ = ["LUTEstimator", "LUTB1Estimator"]


class _LookupTableEstimator(T1Estimator):
    """UNI read by the lookup table of the whole acquisition (module docstring)."""

    method = "lut"
    readouts = (1, 2)
    posterior = False
    calls = ("qt1lib.estimate.lut",)

    def _fit(self, gre: np.ndarray, b1: np.ndarray | None) -> PosteriorT1:
        t1 = lut_t1(uni(gre[0], gre[1]), self.acquisition, b1)
        return PosteriorT1(t1, t1, np.full(t1.shape, np.nan), np.isfinite(t1))


@register_estimator
class LUTEstimator(_LookupTableEstimator):
    """Marques' lookup table of UNI at nominal flip angles (Marques et al. 2010)."""

    name = "lut"
    b1 = "none"
    desc = "LUT"
    label = "LUT"


@register_estimator
class LUTB1Estimator(_LookupTableEstimator):
    """The B1-corrected 2-D lookup table ``T1(UNI, B1)`` (Marques & Gruetter 2013)."""

    name = "lut_b1"
    b1 = "map"
    desc = "LUTB1"
    label = "LUT, B1-corrected"
