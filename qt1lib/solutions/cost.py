"""What the full version of an exercise would cost, estimated from a short measured run."""

from __future__ import annotations

from collections.abc import Iterable

from ..estimate.timing import time_estimators
from ..validate import require_integer

__all__ = ["mapping_seconds"]


def mapping_seconds(estimators: Iterable[str], n_voxels: int, sigma: float, seed: int = 0,
                    sample_voxels: int = 2_000) -> float:
    """Seconds to map ``n_voxels`` voxels with every estimator, from a timing of each on ``sample_voxels``.

    :func:`qt1lib.estimate.timing.time_estimators` on a simulated volume of the seed's MP3RAGE: each
    estimator's build (its tables or histograms, once per process) plus its fit time scaled linearly to
    ``n_voxels`` (chapter 08: the fits are vectorised over voxels). The lookup table, which that function
    always times as its reference, counts only when listed.
    """
    names = list(dict.fromkeys(estimators))
    n_voxels = require_integer("n_voxels", n_voxels, 0)
    sample_voxels = require_integer("sample_voxels", sample_voxels, 100)
    timings = time_estimators(names, n_voxels=sample_voxels, sigma=sigma, seed=seed, memory=False)
    timings = timings[timings["estimator"].isin(names)]
    return float((timings["build_s"] + timings["fit_s"] * n_voxels / sample_voxels).sum())
