"""Solutions of chapter 08's exercises (timings): a volume smaller than the chapter's, timed the same way,
against the chapter's own timings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..estimate.timing import REFERENCE, time_estimators
from ..notebook import format_duration, format_number
from ..validate import require_integer, require_number
from . import answers, scaled_seconds

__all__ = ["volume_scaling", "noise_timing"]


def _labels(timings: pd.DataFrame) -> dict[str, str]:
    return dict(zip(timings["estimator"], timings["label"]))


def _timed_twice(estimators: Sequence[str], n_voxels: int, sigma: float, seed: int) -> pd.DataFrame:
    """:func:`qt1lib.estimate.timing.time_estimators`, run twice, each estimator's faster fit kept.

    In a process that has already timed the estimators, the builds are cached, but the first fit of a
    volume of a new size can still pay a one-time cost (e.g. the B1-aware exact MAP: about ten times its
    fit on the second run); the faster of two runs times the fit alone. The ratios are recomputed.
    """
    runs = [time_estimators(estimators, n_voxels=n_voxels, sigma=sigma, seed=seed, memory=False).set_index("estimator")
            for _ in range(2)]
    out = runs[0].copy()
    out["fit_s"] = np.minimum(runs[0]["fit_s"], runs[1]["fit_s"])
    out["ratio"] = out["fit_s"] / out.loc[REFERENCE, "fit_s"]
    return out


@answers("n_small", "n_chapter", "exponents", "exponent_range", "ratio_change_pct", "n_full", "full_estimate")
def volume_scaling(timings: pd.DataFrame, estimators: Sequence[str], n_voxels: int, sigma: float, seed: int,
                   n_full: int, divisor: int = 10):
    """Exercise 1: does each fit time grow in proportion to the voxels, and do the ratios move?

    :func:`qt1lib.estimate.timing.time_estimators` on ``n_voxels // divisor`` voxels (the cheap variant; the
    faster of two runs),
    against the chapter's ``timings`` on ``n_voxels``: per estimator the exponent ``k`` of
    ``fit time ~ voxels^k`` between the two sizes (1: proportional), the largest relative change of a ratio to
    the lookup table, and the time of a run on ``n_full`` voxels (the chapter's fits scaled linearly, plus its
    builds).

    Returns
    -------
    dict of str
        Both sizes, the exponents ("label (k)" joined by semicolons), their range, the largest ratio change
        (%), ``n_full`` and the estimated time of its run.
    """
    n_voxels = require_integer("n_voxels", n_voxels, 100)
    divisor = require_integer("divisor", divisor, 2)
    n_small = n_voxels // divisor
    small = _timed_twice(estimators, n_small, sigma, seed)
    chapter = timings.set_index("estimator")
    names = [n for n in chapter.index if n in small.index]
    exponent = {n: float(np.log(chapter.loc[n, "fit_s"] / small.loc[n, "fit_s"]) / np.log(n_voxels / n_small))
                for n in names}
    moved = {n: abs(small.loc[n, "ratio"] / chapter.loc[n, "ratio"] - 1) for n in names if n != REFERENCE}
    labels = _labels(timings)
    full = scaled_seconds(float(chapter["fit_s"].sum()), n_voxels, n_full) + float(chapter["build_s"].sum())
    return {
        "n_small": f"{n_small:,}",
        "n_chapter": f"{n_voxels:,}",
        "exponents": "; ".join(f"{labels[n]} ({format_number(k, 2)})" for n, k in exponent.items()),
        "exponent_range": f"{format_number(min(exponent.values()), 2)} to {format_number(max(exponent.values()), 2)}",
        "ratio_change_pct": format_number(100 * max(moved.values()), 0, "%") if moved else "0 %",
        "n_full": f"{int(n_full):,}",
        "full_estimate": format_duration(full),
    }


@answers("sigma", "sigma_chapter", "n_voxels", "ratios", "rmse", "rmse_chapter", "lut_same")
def noise_timing(timings: pd.DataFrame, estimators: Sequence[str], n_voxels: int, sigma: float, chapter_sigma: float,
                 seed: int, divisor: int = 10):
    """Exercise 2: the timings and RMSE at another noise level, on a volume ``divisor`` times smaller than the chapter's.

    Ratios to the lookup table hardly depend on the volume's size (exercise 1), so the cheap run's ratios are
    compared with the chapter's; the RMSE does not depend on it either.

    Returns
    -------
    dict of str
        The noise levels (the exercise's and the chapter's), the voxels, each estimator's ratio at ``sigma`` beside the chapter's ("label (new,
        chapter)"), the RMSEs (ms) at both noise levels, and whether the lookup table's RMSE changes.
    """
    sigma = require_number("sigma", sigma, low=0, low_inclusive=False)
    n_small = require_integer("n_voxels", n_voxels, 100) // require_integer("divisor", divisor, 2)
    noisy = _timed_twice(estimators, n_small, sigma, seed)
    chapter = timings.set_index("estimator")
    labels = _labels(timings)
    names = [n for n in chapter.index if n in noisy.index]
    return {
        "sigma": format_number(sigma, 3),
        "sigma_chapter": format_number(chapter_sigma, 3),
        "n_voxels": f"{n_small:,}",
        "ratios": "; ".join(f"{labels[n]} ({format_number(noisy.loc[n, 'ratio'], 1)}, {format_number(chapter.loc[n, 'ratio'], 1)})"
                            for n in names if n != REFERENCE),
        "rmse": "; ".join(f"{labels[n]} ({format_number(1e3 * noisy.loc[n, 'rmse_s'], 0, 'ms')})" for n in names),
        "rmse_chapter": "; ".join(f"{labels[n]} ({format_number(1e3 * chapter.loc[n, 'rmse_s'], 0, 'ms')})"
                                  for n in names),
        "lut_same": "rises" if noisy.loc[REFERENCE, "rmse_s"] > chapter.loc[REFERENCE, "rmse_s"] else "does not rise",
    }
