"""The seed study's Monte-Carlo MAP in the registry: ``map_seed_mp2rage`` and ``map_seed_mp3rage``.

Both are :class:`qt1lib.estimate.map.SeedMAPModel` (Saunders et al., ISMRM 2024 abstract 3819;
MASILab/map_t1_mapping, ``scripts/mp2rage_simulation.py``): a Monte-Carlo histogram of the
combinations ``S_1j`` (:func:`qt1lib.sequences.uni`) of the estimator's readouts per T1 is the
likelihood; the prior is uniform on the seed's T1 grid; MAP, posterior mean and std per bin;
``valid`` is the seed's relative-likelihood test. MP2RAGE combines readouts (1, 2) (S_12);
MP3RAGE (1, 2, 3) (S_12, S_13, a 2-D histogram). Neither models B1+.

The histogram is expensive (1e5 trials per T1 and more). It is built once per process
(:func:`seed_map_model`, an ``lru_cache``) and, when the estimator gets a ``store`` option (the
project's content-addressed store, :mod:`qt1lib.store`), once per store: step
``"seed_map_histogram"``, parameters = the estimation view's
:meth:`~qt1lib.protocols.MPnRAGEProtocol.describe` and the histogram's settings, codec
:data:`qt1lib.store.PICKLE`, modules = the estimator's :attr:`~qt1lib.estimate.base.T1Estimator.modules`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..protocols import MPnRAGEProtocol
from ..sequences import uni
from ..validate import require_integer, require_number
from .base import PosteriorT1, T1Estimator, _check_store, _Identity, register_estimator
from .map import SEED_LIKELIHOOD_THRESHOLD, SEED_N_BINS, SeedMAPModel

__all__ = ["SeedMAPEstimator", "SeedMAPMP2RAGE", "SeedMAPMP3RAGE", "seed_map_model", "SEED_MAP_HISTOGRAM_STEP"]

#: Step name of the seed MAP's histogram in the content-addressed store.
SEED_MAP_HISTOGRAM_STEP = "seed_map_histogram"


@lru_cache(maxsize=8)
def _seed_model(
    protocol: MPnRAGEProtocol,
    sigma: float,
    trials: int,
    bins: int,
    threshold: float,
    seed: int,
    store: _Identity | None,
    modules: tuple[str, ...],
) -> SeedMAPModel:
    if store is None:
        return SeedMAPModel(protocol, sigma, n_trials=trials, seed=seed, n_bins=bins, likelihood_threshold=threshold)
    from ..store import PICKLE  # the store module is optional until a store is given

    parameters = {
        "protocol": protocol.describe(),
        "sigma": sigma,
        "n_trials": trials,
        "n_bins": bins,
        "likelihood_threshold": threshold,
        "seed": seed,
    }

    def compute() -> SeedMAPModel:  # the process's model, when it has one
        return _seed_model(protocol, sigma, trials, bins, threshold, seed, None, ())

    model = store.obj.get_or_compute(SEED_MAP_HISTOGRAM_STEP, parameters, compute, PICKLE, modules=modules)
    if not isinstance(model, SeedMAPModel):
        raise TypeError(f"the store returned a {type(model).__name__} for {SEED_MAP_HISTOGRAM_STEP!r}, not a SeedMAPModel")
    return model


def seed_map_model(
    protocol: MPnRAGEProtocol,
    sigma: float,
    n_trials: int = 100_000,
    n_bins: int = SEED_N_BINS,
    likelihood_threshold: float = SEED_LIKELIHOOD_THRESHOLD,
    seed: int = 0,
    *,
    store: Any = None,
    modules: tuple[str, ...] = (),
) -> SeedMAPModel:
    """The seed MAP's model (its Monte-Carlo histogram), built once per process and per store.

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        Estimation view; ``protocol.pairs`` selects the combinations.
    sigma : float
        Noise std per real/imaginary part of the histogram's trials (units of M0), > 0.
    n_trials, n_bins, likelihood_threshold, seed
        As :class:`~qt1lib.estimate.map.SeedMAPModel` (``seed``: an integer).
    store : object, optional
        Content-addressed store with ``get_or_compute(step, parameters, compute, codec, *,
        inputs=(), modules=())`` (:mod:`qt1lib.store`); the model is read from it, or built and
        written to it, once per process and store.
    modules : tuple of str
        qt1lib modules whose source the model depends on (the store's cache key).

    Returns
    -------
    SeedMAPModel
    """
    handle = None if store is None else _Identity(_check_store(store))
    return _seed_model(
        protocol, float(sigma), int(n_trials), int(n_bins), float(likelihood_threshold), int(seed), handle, tuple(modules)
    )


class SeedMAPEstimator(T1Estimator):
    """The seed's Monte-Carlo histogram MAP of the combinations ``S_1j`` (module docstring).

    Other Parameters
    ----------------
    seed_map_sigma : float or None
        Noise std (M0 units) of the histogram's trials. None (default): the data's ``sigma``
        (the likelihood matches the data), used as the seed does, as if M0 x receive gain were 1.
        0.005 reproduces the seed's fixed ``noise_std`` (MASILab/map_t1_mapping
        ``scripts/params.yml``).
    seed_map_trials : int
        Monte-Carlo trials per T1 (default 1e5; the seed's ``num_trials`` is 1e8).
    seed_map_bins : int
        Bins per S axis (the seed's 100).
    seed_likelihood_threshold : float
        Relative-likelihood threshold in [0, 1] (the seed's 0.5).
    random_seed : int
        Seed of the Monte-Carlo noise (>= 0).
    store : object, optional
        Content-addressed store of the histogram (:func:`seed_map_model`); does not change the output.
    """

    method = "seed"
    b1 = "none"
    calls = ("qt1lib.estimate.map",)
    defaults = {
        "seed_map_sigma": None,
        "seed_map_trials": 100_000,
        "seed_map_bins": SEED_N_BINS,
        "seed_likelihood_threshold": SEED_LIKELIHOOD_THRESHOLD,
        "random_seed": 0,
        "store": None,
    }

    def __init__(self, protocol: MPnRAGEProtocol, sigma: float = 0.0, **options: Any) -> None:
        super().__init__(protocol, sigma, **options)
        self._model: SeedMAPModel | None = None

    def _check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        s = options["seed_map_sigma"]
        if s is not None:
            options["seed_map_sigma"] = require_number(
                "option seed_map_sigma (None or a noise std, M0 units)", s, low=0, low_inclusive=False
            )
        for key, least in (("seed_map_trials", 1), ("seed_map_bins", 2), ("random_seed", 0)):
            options[key] = require_integer(f"option {key}", options[key], least, integral_floats=True)
        options["seed_likelihood_threshold"] = require_number(
            "option seed_likelihood_threshold", options["seed_likelihood_threshold"], low=0, high=1
        )
        _check_store(options["store"])
        return options

    @property
    def histogram_sigma(self) -> float:
        """Noise std (M0 units) of the histogram's trials: ``seed_map_sigma``, else the data's ``sigma``."""
        return self.options["seed_map_sigma"] or self.sigma

    def _parameters(self) -> dict[str, Any]:
        o = self.options
        return {
            "seed_map_sigma": self.histogram_sigma,
            "seed_map_trials": o["seed_map_trials"],
            "seed_map_bins": o["seed_map_bins"],
            "seed_likelihood_threshold": o["seed_likelihood_threshold"],
            "random_seed": o["random_seed"],
        }

    @property
    def model(self) -> SeedMAPModel:
        """The histogram model (:func:`seed_map_model`), built or read on first use."""
        if self._model is None:
            o = self.options
            self._model = seed_map_model(
                self.view,
                self.histogram_sigma,
                o["seed_map_trials"],
                o["seed_map_bins"],
                o["seed_likelihood_threshold"],
                o["random_seed"],
                store=o["store"],
                modules=self.modules,
            )
        return self._model

    def _fit(self, gre: np.ndarray, b1: np.ndarray | None) -> PosteriorT1:
        s = np.stack([uni(gre[i - 1], gre[j - 1]) for i, j in self.view.pairs])
        return self.model.fit(s)


@register_estimator
class SeedMAPMP2RAGE(SeedMAPEstimator):
    """The seed's MAP of S_12 (1-D histogram)."""

    name = "map_seed_mp2rage"
    readouts = (1, 2)
    desc = "MAPseedMP2RAGE"
    label = "seed MAP MP2RAGE"


@register_estimator
class SeedMAPMP3RAGE(SeedMAPEstimator):
    """The seed's MAP of (S_12, S_13) (2-D histogram)."""

    name = "map_seed_mp3rage"
    readouts = (1, 2, 3)
    desc = "MAPseedMP3RAGE"
    label = "seed MAP MP3RAGE"
