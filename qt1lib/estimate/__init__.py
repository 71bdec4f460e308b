"""T1 estimators: lookup table (point estimate), MAP with posterior, Cramer-Rao bound, SIR and IR fits."""

from .crlb import crlb_t1, signal_derivative
from .lut import LookupTable, lut_t1
from .map import ExactMAPModel, PosteriorT1, SeedMAPModel, exact_log_likelihood, map_t1_exact, map_t1_seed
from .performance import ESTIMATORS, simulate_data, simulate_estimator_performance

__all__ = [
    "ESTIMATORS",
    "ExactMAPModel",
    "LookupTable",
    "PosteriorT1",
    "SeedMAPModel",
    "crlb_t1",
    "exact_log_likelihood",
    "lut_t1",
    "map_t1_exact",
    "map_t1_seed",
    "signal_derivative",
    "simulate_data",
    "simulate_estimator_performance",
]
