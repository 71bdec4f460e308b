"""Solutions of chapter 04's exercises (B1+ sensitivity): the first-order sensitivity, B1-map errors on the
simulation grid, the seed's fixed histogram noise, and the stability of the cohort's slopes.

The cohort-based exercises (3 and 4) need T1 maps, which the workflow computes; the chapter passes its
voxel tables (:func:`qt1lib.workflow.b1_voxel_table`) in, and the cheap variant keeps the chapter's subjects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..estimate.b1_sensitivity import b1_error_grid, b1_sensitivity
from ..notebook import compare_text, format_duration, format_number, format_percent_of, plural
from ..protocols import MPnRAGEProtocol
from ..validate import require_integer
from . import answers
from .cost import mapping_seconds

__all__ = ["sensitivity_at", "map_error_linearity", "pooled_slopes", "seed_histogram_noise", "slope_stability"]


def _sensitivity_pct(protocol: MPnRAGEProtocol, t1: float, pair: tuple[int, int]) -> float:
    """T1 error (% of T1) of a reading of ``S_pair`` that takes B1+ = 1.1 for 1 (first order, chapter 04)."""
    return float(-0.1 * b1_sensitivity(np.array([t1]), protocol, pair)[0] / t1 * 100)


@answers("t1", "s12_pct", "s13_pct", "ratio", "t1_ref", "s12_ref_pct", "s13_ref_pct", "ratio_ref", "grows", "ratio_moves")
def sensitivity_at(protocol: MPnRAGEProtocol, t1: float, t1_reference: float):
    """Exercise 1: the first-order B1 sensitivity of ``S12`` and ``S13`` at another T1 than the chapter's.

    Returns
    -------
    dict of str
        The T1 error (%) of each combination for B1+ = 1.1 read as 1, and their ratio, at ``t1`` and at
        ``t1_reference``; whether the ``S12`` error ``grows`` ("grows", "shrinks", "stays") from the
        reference to ``t1``, and whether the ratio moves "further from 1", "closer to 1" or "no further from 1".
    """
    out = {}
    for tag, t in (("", t1), ("_ref", t1_reference)):
        s12, s13 = _sensitivity_pct(protocol, t, (1, 2)), _sensitivity_pct(protocol, t, (1, 3))
        out[tag] = (s12, s13, s13 / s12)
    (s12, s13, ratio), (s12_ref, s13_ref, ratio_ref) = out[""], out["_ref"]
    return {
        "t1": format_number(t1, 1, "s"), "s12_pct": format_number(s12, 1, "%"), "s13_pct": format_number(s13, 1, "%"),
        "ratio": format_number(ratio, 2),
        "t1_ref": format_number(t1_reference, 1, "s"), "s12_ref_pct": format_number(s12_ref, 1, "%"),
        "s13_ref_pct": format_number(s13_ref, 1, "%"), "ratio_ref": format_number(ratio_ref, 2),
        "grows": compare_text(abs(s12), abs(s12_ref), "grows", "shrinks", "stays", digits=1),
        "ratio_moves": compare_text(abs(ratio - 1), abs(ratio_ref - 1), "further from 1", "closer to 1",
                                    "no further from 1"),
    }


@answers("errors_pct", "slopes", "deviation_pp", "deviation_pct", "asymmetry")
def map_error_linearity(protocol: MPnRAGEProtocol, t1: float, b1_values: Sequence[float], sigma: float,
                        estimators: Sequence[str], labels: Mapping[str, str], map_errors: Sequence[float],
                        options: Mapping | None = None):
    """Exercise 2: the T1 error of the B1-aware estimators against the B1 map's error, noise-free.

    :func:`qt1lib.estimate.b1_sensitivity.b1_error_grid` at one T1 over the chapter's B1 values, with each
    map error; the error is averaged over B1 (as in the chapter's right panel) and fitted by a line in the
    map error.

    Parameters
    ----------
    map_errors : sequence of float
        Relative map errors, symmetric about 0, e.g. ``[-0.1, -0.05, 0, 0.05, 0.1]``.

    Returns
    -------
    dict of str
        The errors (%) at the largest positive map error and the slopes (% T1 error per % map error) per
        estimator ("label (value)" joined by semicolons), the largest distance of an estimator's errors from
        its line (percentage points, and % of its largest error), and ``asymmetry``: whether the largest
        positive map error gives a "larger", "smaller" or "the same" error as the largest negative one
        (the first estimator; a second-order term shows as a difference).
    """
    grid = b1_error_grid([t1], b1_values, protocol, sigma, estimators, estimator_options=dict(options or {}),
                         b1_map_errors=map_errors)
    mean = grid.groupby(["estimator", "b1_map_error"], sort=False)["rel_error"].mean()
    slopes, at_max, worst, worst_rel = [], [], 0.0, 0.0
    for name in estimators:
        e = 100 * np.asarray(mean[name].index, dtype=float)
        y = 100 * mean[name].to_numpy(dtype=float)
        fit = np.polyfit(e, y, 1)
        deviation = float(np.max(np.abs(y - np.polyval(fit, e))))
        if deviation > worst:
            worst, worst_rel = deviation, deviation / float(np.max(np.abs(y)))
        label = labels.get(name, name)
        slopes.append(f"{label} ({format_number(fit[0], 2)})")
        at_max.append(f"{label} ({format_number(y[np.argmax(e)], 1, '%', signed=True)})")
    first = 100 * mean[estimators[0]]
    high, low = abs(float(first.iloc[np.argmax(first.index)])), abs(float(first.iloc[np.argmin(first.index)]))
    return {
        "errors_pct": "; ".join(at_max),
        "slopes": "; ".join(slopes),
        "deviation_pp": format_number(worst, 2, "percentage points"),
        "deviation_pct": format_number(100 * worst_rel, 0, "%"),
        "asymmetry": compare_text(high, low, "a larger", "a smaller", "the same", digits=1),
    }


def pooled_slopes(voxels: pd.DataFrame) -> dict[str, float]:
    """Least-squares slope of ``error_b1`` against ``b1_true - 1`` per estimator, pooled over tissues (s per unit B1)."""
    out = {}
    for name, d in voxels.dropna(subset=["error_b1"]).groupby("estimator"):
        out[name] = float(np.polyfit(d["b1_true"] - 1.0, d["error_b1"], 1)[0]) if len(d) > 2 else np.nan
    return out


@answers("holes_pct", "holes_chapter_pct", "slope2_ms", "slope2_chapter_ms", "slope3_ms", "slope3_chapter_ms",
         "slope3_change", "sd3", "sd3_chapter", "sd_change")
def seed_histogram_noise(holes: float, holes_chapter: float, voxels: pd.DataFrame, voxels_chapter: pd.DataFrame,
                         protocol: MPnRAGEProtocol, sigma: float, t1: float, options: Mapping, n_noise: int,
                         seed: int, noisy_chapter: pd.DataFrame):
    """Exercise 3: the seed's MAP with its fixed histogram noise (0.005) instead of the data's.

    Parameters
    ----------
    holes, holes_chapter : float
        Fraction of the first subject's brain voxels without a MAP MP3RAGE value, with the fixed and
        with the data's histogram noise.
    voxels, voxels_chapter : DataFrame
        :func:`qt1lib.workflow.b1_voxel_table` rows of the seed MAPs with both settings.
    options : mapping
        Estimator settings of the fixed histogram noise (``seed_map_sigma``), for the noisy copies.
    n_noise, seed, t1, sigma
        The chapter's noisy copies at B1+ = 1: the posterior spread of MAP MP3RAGE is recomputed with
        the fixed histogram noise and compared with ``noisy_chapter`` (the chapter's precision table).

    Returns
    -------
    dict of str
        Holes (%), the pooled cohort slopes of MAP MP2RAGE and MP3RAGE (ms per 0.1 of B1+) with both
        settings (``slope3_change``: "steeper", "shallower" or "as steep" for MP3RAGE), the spread of the MAP MP3RAGE estimates at ``t1`` and B1+ = 1 (s) with both, and how the
        spread changes ("widens", "narrows", "stays").
    """
    n_noise = require_integer("n_noise", n_noise, 2)
    new, old = pooled_slopes(voxels), pooled_slopes(voxels_chapter)
    noisy = b1_error_grid([t1], [1.0], protocol, sigma, ["map_seed_mp3rage"], estimator_options=dict(options),
                          n_noise=n_noise, seed=seed)
    chapter = noisy_chapter[(noisy_chapter["estimator"] == "map_seed_mp3rage") & np.isclose(noisy_chapter["b1"], 1.0)]
    sd, sd_old = float(noisy["t1_sd"].iloc[0]), float(chapter["t1_sd"].iloc[0])
    return {
        "holes_pct": format_percent_of(100 * holes, "the first subject's brain voxels"),
        "holes_chapter_pct": format_percent_of(100 * holes_chapter, "them"),
        "slope2_ms": format_number(100 * new["map_seed_mp2rage"], 0, "ms"),
        "slope2_chapter_ms": format_number(100 * old["map_seed_mp2rage"], 0, "ms"),
        "slope3_ms": format_number(100 * new["map_seed_mp3rage"], 0, "ms"),
        "slope3_chapter_ms": format_number(100 * old["map_seed_mp3rage"], 0, "ms"),
        "slope3_change": compare_text(abs(100 * new["map_seed_mp3rage"]), abs(100 * old["map_seed_mp3rage"]),
                                      "steeper", "shallower", "as steep", digits=0),
        "sd3": format_number(sd, 3, "s"),
        "sd3_chapter": format_number(sd_old, 3, "s"),
        "sd_change": compare_text(sd, sd_old, "widens", "narrows", "stays", digits=3),
    }


def _slopes_by(voxels: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """Slope (ms per 0.1 of B1+) of ``error_b1`` against ``b1_true`` per estimator, tissue and ``by``."""
    rows = {}
    for key, d in voxels.dropna(subset=["error_b1"]).groupby(["estimator", "tissue", *by]):
        if len(d) > 2:
            rows[key] = 100 * float(np.polyfit(d["b1_true"] - 1.0, d["error_b1"], 1)[0])
    return pd.Series(rows, dtype=float)


@answers("between_subjects", "spread_purity_ms", "purity_pct", "purity_pure_pct", "estimator",
         "full_run")
def slope_stability(voxels: pd.DataFrame, voxels_pure: pd.DataFrame, purity: float, purity_pure: float,
                    labels: Mapping[str, str], estimator: str, extra_subjects: int, brain_voxels: int,
                    sigma: float, seed: int):
    """Exercise 4: the cohort's per-tissue B1 slopes across subjects and purity thresholds.

    Parameters
    ----------
    voxels, voxels_pure : DataFrame
        :func:`qt1lib.workflow.b1_voxel_table` of the chapter's subjects at ``purity`` and ``purity_pure``.
    estimator : str
        The estimator whose spreads are reported (e.g. ``"map_seed_mp3rage"``).
    extra_subjects, brain_voxels, sigma
        The full exercise maps ``extra_subjects`` more subjects of about ``brain_voxels`` voxels with every
        estimator of the tables: its time is estimated by :func:`qt1lib.solutions.cost.mapping_seconds`.

    Returns
    -------
    dict of str
        ``between_subjects``: a clause with the largest difference of a tissue's slope between the subjects
        compared (ms per 0.1 of B1+, for ``estimator``; with one subject, that it cannot be measured), the
        largest difference between the two purities, the estimator's label, and ``full_run``: a sentence
        with the estimated time of the maps the full exercise adds (or that it adds none).
    """
    by_subject = _slopes_by(voxels, ["subject"])
    pure = _slopes_by(voxels_pure, [])
    base = _slopes_by(voxels, [])
    mine = by_subject[estimator]
    spread = mine.groupby(level=0).agg(lambda s: s.max() - s.min()).max() if mine.index.nlevels > 1 else 0.0
    change = float((pure[estimator] - base[estimator]).abs().max())
    subjects = sorted(voxels["subject"].unique())
    names = list(dict.fromkeys(voxels["estimator"]))
    seconds = mapping_seconds(names, brain_voxels, sigma, seed) * extra_subjects if extra_subjects else 0.0
    return {
        "between_subjects": (f"differs by up to {format_number(spread, 0, 'ms')} per 0.1 of B1+ between the chapter's "
                             f"subjects ({', '.join(f'sub-{s}' for s in subjects)})" if len(subjects) > 1 else
                             f"cannot be compared between subjects: the chapter maps sub-{subjects[0]} only"),
        "spread_purity_ms": format_number(change, 0, "ms"),
        "purity_pct": format_number(100 * purity, 0, "%"),
        "purity_pure_pct": format_number(100 * purity_pure, 0, "%"),
        "estimator": labels.get(estimator, estimator),
        "full_run": (f"The full exercise adds {plural(extra_subjects, 'more subject')}; their maps alone take about "
                     f"{format_duration(seconds)} here (each estimator timed on a simulated volume and scaled to a "
                     "subject's brain voxels)." if extra_subjects else
                     "The chapter already maps every subject of the cohort: the full exercise is this one."),
    }
