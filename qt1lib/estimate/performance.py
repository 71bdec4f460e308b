"""Monte-Carlo bias, standard deviation and RMSE of T1 estimators against the Cramer-Rao bound.

For every protocol, noise level and true T1, ``n_trials`` noisy acquisitions
``y_k = c g_k(T1, B1) + n_k`` are simulated for every readout of the protocol (|c| = ``scale``,
a uniformly random phase per trial, complex Gaussian noise of std ``sigma`` per real /
imaginary part; the model of :mod:`qt1lib.estimate.map` and :mod:`qt1lib.estimate.crlb`), and
each estimator maps them:

``"LUT"``          Marques' lookup table on S_12: the registered estimator ``lut``, or ``lut_b1``
                   (the B1-corrected 2-D table) when ``b1 != 1`` (:mod:`qt1lib.estimate.lut_estimators`),
                   for MP3RAGE too (it ignores readout 3's data);
``"seed MAP"``     the seed's Monte-Carlo histogram MAP on the protocol's combinations
                   (:class:`qt1lib.estimate.map.SeedMAPModel`, built at the same ``sigma``; no B1);
``"seed mean"``    its posterior mean;
``"exact MAP"``    the exact-likelihood MAP, B1 known: the registered exact estimator of the
                   protocol's readouts, at nominal B1 (``map_exact_mp2rage_nob1``,
                   ``map_exact_mp3rage_nob1``) when ``b1 == 1``, else with the B1 map
                   (``map_exact_mp2rage``, ``map_exact_mp3rage_b1``;
                   :mod:`qt1lib.estimate.exact_map_estimators`);
``"exact mean"``   its posterior mean.

The seed MAP is built here rather than through the registry's ``map_seed_mp2rage`` /
``map_seed_mp3rage``: its histogram draws from this simulation's random generator (one stream
per protocol and noise level, spawned from ``seed``), whereas a registered seed MAP draws from
an integer seed and is cached per process.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..protocols import MPnRAGEProtocol
from ..sequences import combinations, gre_signals
from ..validate import require_integer
from .base import estimator_class, estimator_names, make_estimator
from .crlb import crlb_t1
from .map import SeedMAPModel

__all__ = ["PERFORMANCE_ESTIMATORS", "registered_estimator", "simulate_data", "simulate_estimator_performance"]

#: Display names of the estimators (rows) of :func:`simulate_estimator_performance`.
PERFORMANCE_ESTIMATORS = ("LUT", "seed MAP", "seed mean", "exact MAP", "exact mean")


def registered_estimator(method: str, readouts: tuple[int, ...], b1: str) -> str:
    """Name of the registered estimator of ``method`` that combines ``readouts`` with B1+ handling ``b1``.

    Parameters
    ----------
    method : str
        ``"lut"``, ``"seed"`` or ``"exact"`` (:attr:`qt1lib.estimate.base.T1Estimator.method`).
    readouts : tuple of int
        1-based readouts, e.g. ``protocol.readouts`` of an estimation view.
    b1 : {"none", "map", "marginal"}

    Raises
    ------
    ValueError
        No registered estimator matches.
    """
    readouts = tuple(int(r) for r in readouts)
    for name in estimator_names():
        cls = estimator_class(name)
        if (cls.method, cls.readouts, cls.b1) == (method, readouts, b1):
            return name
    raise ValueError(f"no registered estimator has method {method!r}, readouts {readouts} and B1 handling {b1!r}")


def simulate_data(
    t1: np.ndarray,
    protocol: MPnRAGEProtocol,
    sigma: float,
    n_trials: int,
    rng: np.random.Generator,
    b1: float = 1.0,
    scale: float = 1.0,
) -> np.ndarray:
    """Noisy complex GRE data of every readout: shape (n_readouts, n_trials, len(t1)).

    ``scale exp(i phi) g(T1, B1) + noise`` with ``phi`` uniform on [0, 2 pi) per trial and
    voxel and Gaussian noise of std ``sigma`` on the real and imaginary parts (units of M0).
    """
    t1 = np.asarray(t1, dtype=float)
    g = gre_signals(t1, protocol, b1)  # (n_readouts, n_t1)
    shape = (n_trials, len(t1))
    phase = np.exp(2j * np.pi * rng.random(shape))
    noise = rng.normal(0.0, sigma, (2, protocol.n_readouts) + shape)
    return scale * phase * g[:, None, :] + noise[0] + 1j * noise[1]


def simulate_estimator_performance(
    protocols: Sequence[MPnRAGEProtocol],
    t1_values: Sequence[float],
    sigmas: Sequence[float],
    n_trials: int,
    seed: int | np.random.Generator = 0,
    estimators: Sequence[str] = PERFORMANCE_ESTIMATORS,
    b1: float = 1.0,
    seed_n_trials: int = 100_000,
    scale_prior: str = "jeffreys",
) -> pd.DataFrame:
    """Monte-Carlo performance of T1 estimators, one row per protocol, sigma, T1 and estimator.

    Parameters
    ----------
    protocols : sequence of MPnRAGEProtocol
        Estimation views, e.g. ``(SEED_7T_MP2RAGE, SEED_7T_MP3RAGE)``; data always simulate
        every readout.
    t1_values : sequence of float
        True T1 values (s), inside the estimators' range 0.05..5 s.
    sigmas : sequence of float
        Noise std per real / imaginary part (units of M0; seed: 0.005).
    n_trials : int
        Noisy acquisitions per protocol, sigma and T1.
    seed : int or numpy.random.Generator
        Source of every random draw (data and the seed estimator's Monte-Carlo histogram).
    estimators : sequence of str
        Any of :data:`PERFORMANCE_ESTIMATORS`.
    b1 : float
        True B1+, known to the LUT (2-D table) and the exact estimator; the seed's ignores it.
    seed_n_trials : int
        Monte-Carlo trials per T1 of the seed estimator's histogram.
    scale_prior : {"flat", "jeffreys"}
        Prior of the complex scale of the exact estimator.

    Returns
    -------
    pandas.DataFrame
        Columns ``protocol, sigma, t1, estimator, n, bias, std, rmse, crlb, post_std,
        valid_fraction`` (seconds; ``post_std`` is the mean posterior std, NaN for the LUT;
        statistics use every trial, valid or not).
    """
    unknown = set(estimators) - set(PERFORMANCE_ESTIMATORS)
    if unknown:
        raise ValueError(f"unknown estimators {sorted(unknown)}; expected some of {PERFORMANCE_ESTIMATORS}")
    n_trials = require_integer("n_trials", n_trials, 2, integral_floats=True)
    t1 = np.asarray(t1_values, dtype=float)
    if t1.ndim != 1 or t1.size == 0 or np.any(t1 < 0.05) or np.any(t1 > 5.0):
        raise ValueError(f"t1_values must be a non-empty 1-D sequence inside 0.05..5 s, got {t1_values!r}")
    b1_mode = "none" if b1 == 1.0 else "map"
    b1_map = None if b1 == 1.0 else b1
    rng = np.random.default_rng(seed)
    rows = []
    for protocol in protocols:  # loops over a few settings, not voxels
        for sigma in sigmas:
            data_rng, table_rng = rng.spawn(2)
            y = simulate_data(t1, protocol, sigma, n_trials, data_rng, b1)
            estimates: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray]] = {}
            if "LUT" in estimators:
                post = make_estimator(registered_estimator("lut", (1, 2), b1_mode), protocol, sigma).fit(y, b1=b1_map)
                estimates["LUT"] = (post.map, None, post.valid)
            if {"seed MAP", "seed mean"} & set(estimators):
                post = SeedMAPModel(protocol, sigma, seed_n_trials, table_rng).fit(combinations(y, protocol))
                estimates["seed MAP"] = (post.map, post.std, post.valid)
                estimates["seed mean"] = (post.mean, post.std, post.valid)
            if {"exact MAP", "exact mean"} & set(estimators):
                exact = registered_estimator("exact", protocol.readouts, b1_mode)
                post = make_estimator(exact, protocol, sigma, scale_prior=scale_prior).fit(y, b1=b1_map)
                estimates["exact MAP"] = (post.map, post.std, post.valid)
                estimates["exact mean"] = (post.mean, post.std, post.valid)
            bound = crlb_t1(t1, protocol, sigma, b1)
            for name in estimators:
                value, post_std, valid = estimates[name]
                error = value - t1
                for i, t in enumerate(t1):
                    rows.append(
                        {
                            "protocol": protocol.name,
                            "sigma": float(sigma),
                            "t1": float(t),
                            "estimator": name,
                            "n": int(np.isfinite(error[:, i]).sum()),
                            "bias": float(np.nanmean(error[:, i])),
                            "std": float(np.nanstd(value[:, i], ddof=1)),
                            "rmse": float(np.sqrt(np.nanmean(error[:, i] ** 2))),
                            "crlb": float(bound[i]),
                            "post_std": float(np.nanmean(post_std[:, i])) if post_std is not None else np.nan,
                            "valid_fraction": float(valid[:, i].mean()),
                        }
                    )
    return pd.DataFrame(rows)
