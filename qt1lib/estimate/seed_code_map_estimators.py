"""The seed's Monte-Carlo MAP with the seed code's two-train model: ``map_seed_code_mp2rage``.

:class:`qt1lib.estimate.seed_map_estimators.SeedMAPEstimator` of S_12 (readouts 1 and 2) whose
histogram is simulated with :data:`qt1lib.protocols.SEED_CODE_7T_MP2RAGE` instead of the data's
protocol (:mod:`qt1lib.estimate.seed_code`): the seed code's MAP as its scripts ran it
(MASILab/map_t1_mapping@2d6e086 ``scripts/create_t1_map_likelihood.py``: two kept scan times and
the histogram ``counts_100M_s1_2_0.005.npy`` of ``scripts/mp2rage_simulation.py --times 1 2``).
The histogram is cached like the seed MAP's (step ``"seed_map_histogram"``), under the model's
:meth:`~qt1lib.protocols.MPnRAGEProtocol.describe`, so it is not the histogram of ``map_seed_mp2rage``.
"""

from __future__ import annotations

from .base import register_estimator
from .seed_code import SEED_CODE_DEFAULTS, SeedCodeModelEstimator
from .seed_map_estimators import SeedMAPEstimator

__all__ = ["SeedMAPSeedCodeMP2RAGE"]


@register_estimator
class SeedMAPSeedCodeMP2RAGE(SeedCodeModelEstimator, SeedMAPEstimator):
    """The seed's MAP of S_12 (1-D histogram), two-train seed-code model."""

    name = "map_seed_code_mp2rage"
    readouts = (1, 2)
    desc = "MAPseedcodeMP2RAGE"
    label = "seed MAP MP2RAGE, seed-code 2-train model"
    defaults = {**SeedMAPEstimator.defaults, **SEED_CODE_DEFAULTS}
