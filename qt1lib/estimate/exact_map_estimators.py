"""The exact-likelihood MAP in the registry: five variants of :class:`qt1lib.estimate.map.ExactMAPModel`.

The exact posterior of the complex GRE signals of the estimator's readouts, the unknown complex
scale (M0 x receive field x phase) integrated out analytically (:func:`qt1lib.estimate.map.exact_log_likelihood`;
Bretthorst 1988, ch. 3), a uniform prior on T1 in 0.05..5 s, no Monte-Carlo noise:

============================  ==========  ==========  =======================================
name                          readouts    B1+         desc
============================  ==========  ==========  =======================================
``map_exact_mp2rage``         (1, 2)      map         ``MAPexactMP2RAGE``
``map_exact_mp3rage``         (1, 2, 3)   marginal    ``MAPexactMP3RAGE``
``map_exact_mp2rage_nob1``    (1, 2)      none        ``MAPexactMP2RAGEnoB1``
``map_exact_mp3rage_nob1``    (1, 2, 3)   none        ``MAPexactMP3RAGEnoB1``
``map_exact_mp3rage_b1``      (1, 2, 3)   map         ``MAPexactMP3RAGEB1``
============================  ==========  ==========  =======================================

``map``: the B1-aware dictionary at the measured B1+; ``marginal``: the likelihood averaged over
B1 ~ Normal(map, ``b1_sd``) by Gauss-Hermite quadrature (:meth:`ExactMAPModel.fit`); ``none``:
nominal flip angles (the 1-D dictionary).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..protocols import MPnRAGEProtocol
from ..validate import require_number
from .base import PosteriorT1, T1Estimator, _check_store, register_estimator
from .dense_map import resolve_device
from .map import EXACT_METHODS, SCALE_PRIORS, ExactMAPModel

__all__ = [
    "ExactMAPEstimator",
    "ExactMAPMP2RAGE",
    "ExactMAPMP3RAGE",
    "ExactMAPMP2RAGENoB1",
    "ExactMAPMP3RAGENoB1",
    "ExactMAPMP3RAGEB1",
]


class ExactMAPEstimator(T1Estimator):
    """The exact MAP, posterior mean and std of T1 (module docstring; :class:`~qt1lib.estimate.map.ExactMAPModel`).

    ``valid`` is the model's goodness-of-fit test (level 1e-3).

    Other Parameters
    ----------------
    scale_prior : {"flat", "jeffreys"}
        Prior of the complex scale (default ``"jeffreys"``: its MAP is the true T1 for noise-free
        data; the flat prior shifts it by O(sigma^2); :class:`~qt1lib.estimate.map.ExactMAPModel`).
    evaluation : {"auto", "grid", "table", "quadratic", "dense"}
        Evaluation of the posterior, the model's ``method`` (default ``"auto"``: on a CUDA device the dense
        evaluation in torch; on the CPU the sufficient-statistic table for MP2RAGE without B1 marginalisation,
        the quadratic-form evaluation otherwise; :class:`~qt1lib.estimate.map.ExactMAPModel`).
    device : str, optional
        Torch device of the dense evaluation (default: CUDA where ``torch.cuda.is_available()``, else the CPU;
        :func:`~qt1lib.estimate.dense_map.resolve_device`). A CUDA device enters the derivative's parameters:
        its numbers agree with the CPU paths' within the bounds of the model, not to the last digit.
    store : object, optional
        Content-addressed store of the posterior tables (:class:`~qt1lib.estimate.map.ExactMAPModel`);
        does not change the output.
    b1_sd : float
        B1-marginalising estimators only: standard deviation of the B1+ map's error (relative
        B1), default 0.02 (the digital cohort's B1-map error,
        :class:`~qt1lib.phantom.simulate.SimulationSettings` ``b1_noise``; an assumption for real data).
    """

    method = "exact"
    calls = ("qt1lib.estimate.map",)
    defaults = {"scale_prior": "jeffreys", "evaluation": "auto", "store": None, "device": None}

    def __init__(self, protocol: MPnRAGEProtocol, sigma: float = 0.0, **options: Any) -> None:
        super().__init__(protocol, sigma, **options)
        self.model = ExactMAPModel(self.view, self.sigma, scale_prior=self.options["scale_prior"], method=self.options["evaluation"],
                                   store=self.options["store"], device=self.options["device"])

    def _check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["scale_prior"] not in SCALE_PRIORS:
            raise ValueError(f"option scale_prior must be one of {SCALE_PRIORS}, got {options['scale_prior']!r}")
        _check_store(options["store"])
        if options["evaluation"] not in EXACT_METHODS:
            raise ValueError(f"option evaluation must be one of {EXACT_METHODS}, got {options['evaluation']!r}")
        if options["evaluation"] in ("auto", "dense"):
            options["device"] = resolve_device(options["device"])
        if "b1_sd" in options:
            options["b1_sd"] = require_number("option b1_sd (relative B1)", options["b1_sd"], low=0)
        return options

    def _parameters(self) -> dict[str, Any]:
        p: dict[str, Any] = {"sigma": self.sigma, "scale_prior": self.options["scale_prior"],
                                "evaluation": self.options["evaluation"]}
        if self.model.device != "cpu":
            p["device"] = self.model.device
        if self.b1 == "marginal":
            p["b1_sd"] = self.options["b1_sd"]
        return p

    def _fit(self, gre: np.ndarray, b1: np.ndarray | None) -> PosteriorT1:
        b1_sd = self.options["b1_sd"] if self.b1 == "marginal" else 0.0
        return self.model.fit(gre, b1=b1, b1_sd=b1_sd)


@register_estimator
class ExactMAPMP2RAGE(ExactMAPEstimator):
    """Exact MAP of MP2RAGE (readouts 1, 2) with the measured B1+ map."""

    name = "map_exact_mp2rage"
    readouts = (1, 2)
    b1 = "map"
    desc = "MAPexactMP2RAGE"
    label = "exact MAP MP2RAGE, B1 map"


@register_estimator
class ExactMAPMP3RAGE(ExactMAPEstimator):
    """Exact MAP of MP3RAGE (readouts 1, 2, 3), B1+ marginalised over the map's error ``b1_sd``."""

    name = "map_exact_mp3rage"
    readouts = (1, 2, 3)
    b1 = "marginal"
    desc = "MAPexactMP3RAGE"
    label = "exact MAP MP3RAGE, B1 marginalised"
    defaults = {**ExactMAPEstimator.defaults, "b1_sd": 0.02}


@register_estimator
class ExactMAPMP2RAGENoB1(ExactMAPEstimator):
    """Exact MAP of MP2RAGE at nominal flip angles."""

    name = "map_exact_mp2rage_nob1"
    readouts = (1, 2)
    b1 = "none"
    desc = "MAPexactMP2RAGEnoB1"
    label = "exact MAP MP2RAGE, no B1"


@register_estimator
class ExactMAPMP3RAGENoB1(ExactMAPEstimator):
    """Exact MAP of MP3RAGE at nominal flip angles."""

    name = "map_exact_mp3rage_nob1"
    readouts = (1, 2, 3)
    b1 = "none"
    desc = "MAPexactMP3RAGEnoB1"
    label = "exact MAP MP3RAGE, no B1"


@register_estimator
class ExactMAPMP3RAGEB1(ExactMAPEstimator):
    """Exact MAP of MP3RAGE with the measured B1+ map."""

    name = "map_exact_mp3rage_b1"
    readouts = (1, 2, 3)
    b1 = "map"
    desc = "MAPexactMP3RAGEB1"
    label = "exact MAP MP3RAGE, B1 map"
