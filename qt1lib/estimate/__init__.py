"""T1 estimators: lookup table (point estimate), MAP with posterior, Cramer-Rao bound, SIR and IR fits.

Every T1 estimator of MPnRAGE data follows one contract, :class:`T1Estimator`, and is built by
name from one registry (:func:`make_estimator`; :mod:`qt1lib.estimate.base`). Importing this
package registers the built-in estimators: ``lut``, ``lut_b1``
(:mod:`~qt1lib.estimate.lut_estimators`), ``map_seed_mp2rage``, ``map_seed_mp3rage``
(:mod:`~qt1lib.estimate.seed_map_estimators`), the five exact MAPs
(:mod:`~qt1lib.estimate.exact_map_estimators`) and three that read the seed's acquisition with the
seed's public code's two-train model, ``lut_seed_code``, ``lut_b1_seed_code``
(:mod:`~qt1lib.estimate.seed_code_lut_estimators`) and ``map_seed_code_mp2rage``
(:mod:`~qt1lib.estimate.seed_code_map_estimators`; :mod:`~qt1lib.estimate.seed_code`). The B1+ sensitivity of the estimators is
:mod:`qt1lib.estimate.b1_sensitivity` (the module: import its functions from it).
"""

from .base import (
    B1_HANDLING,
    DEFAULT_ESTIMATORS,
    NOISE_FREE_SIGMA,
    PosteriorT1,
    T1Estimator,
    clip_b1,
    estimator_class,
    estimator_names,
    estimator_options,
    make_estimator,
    register_estimator,
)
from .crlb import crlb_t1, signal_derivative
from .lut import LookupTable, lut_t1
from .map import ExactMAPModel, SeedMAPModel, exact_log_likelihood, map_t1_exact, map_t1_seed

# the built-in estimators register themselves on import, in this order
from . import lut_estimators, seed_map_estimators, exact_map_estimators  # noqa: E402, F401  isort: skip
from . import seed_code_lut_estimators, seed_code_map_estimators  # noqa: E402, F401  isort: skip
from . import b1_sensitivity  # noqa: E402, F401  the module (b1_sensitivity, b1_error_grid, noise_free_reading)
from .performance import PERFORMANCE_ESTIMATORS, simulate_data, simulate_estimator_performance  # noqa: E402  isort: skip
from .seed_map_estimators import seed_map_model  # noqa: E402  isort: skip

__all__ = [
    "B1_HANDLING",
    "DEFAULT_ESTIMATORS",
    "ExactMAPModel",
    "LookupTable",
    "NOISE_FREE_SIGMA",
    "PERFORMANCE_ESTIMATORS",
    "PosteriorT1",
    "SeedMAPModel",
    "T1Estimator",
    "clip_b1",
    "crlb_t1",
    "estimator_class",
    "estimator_names",
    "estimator_options",
    "exact_log_likelihood",
    "lut_t1",
    "make_estimator",
    "map_t1_exact",
    "map_t1_seed",
    "register_estimator",
    "seed_map_model",
    "signal_derivative",
    "simulate_data",
    "simulate_estimator_performance",
]
