"""Solutions of chapter 07's exercises (statistics of the calibration), on the cheap variants of
:mod:`qt1lib.solutions.calibration`: short trainings of one fold, the linear part of the network, a smaller
mixed model, and the baselines of other inputs."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import tissues as _tissues
from ..calibrate import CalibrationConfig
from ..calibrate.folds import Fold
from ..notebook import compare_text, format_duration, format_number, format_p, format_share, plural
from ..stats import mixed_model, paired_tests
from ..validate import require_integer
from . import answers, scaled_seconds
from .calibration import linear_channel_cv, listed, short_config, train_short, validation_rmse

__all__ = ["seed_noise", "t1_only_tests", "mixed_model_size", "second_input_tests"]

TISSUES = _tissues.names()


def _rmse_sd(summary: pd.DataFrame, method: str) -> pd.Series:
    table = summary.astype({"method": str, "tissue": str})
    return table[table["method"] == method].set_index("tissue")["rmse_sd"]


@answers("seeds", "epochs", "fraction_pct", "seed_difference_ms", "fold_sd_ms", "compare", "network_time")
def seed_noise(subjects: Mapping, fold: Fold, config: CalibrationConfig, seeds: Sequence[int], summary: pd.DataFrame,
               history: pd.DataFrame, epochs: int = 3, fraction: float = 0.25, store=None):
    """Exercise 1: how much two training seeds differ, against the network's fold-to-fold spread.

    Two short trainings of ``fold`` (:func:`qt1lib.solutions.calibration.short_config`) with the two seeds on
    the same data; their last validation RMSE (s) differ by an amount that is training noise alone. The full
    exercise also redraws the cohort's noise (the study seed seeds both) and retrains every fold.

    Returns
    -------
    dict of str
        The seeds, the epochs and the share of the patches trained, the difference of the two validation RMSEs (ms), the network's standard
        deviation of the RMSE across folds (ms, mean over tissues), which is larger ("the seeds' difference",
        "the folds' spread", "neither"), and the networks' measured training time (a lower bound of the full run).
    """
    seeds = [int(s) for s in seeds]
    short = short_config(config, epochs, fraction)
    rmse = [validation_rmse(train_short(subjects, fold, short, s, store))[-1] for s in seeds]
    difference = 1e3 * abs(rmse[1] - rmse[0])
    spread = 1e3 * float(_rmse_sd(summary, "resnet").mean())
    return {
        "seeds": " and ".join(str(s) for s in seeds),
        "epochs": plural(short.max_epochs, "epoch"),
        "fraction_pct": format_number(100 * fraction, 0, "%"),
        "seed_difference_ms": format_number(difference, 1, "ms"),
        "fold_sd_ms": format_number(spread, 1, "ms"),
        "compare": compare_text(difference, spread, "the seeds' difference", "the folds' spread", "neither", digits=1),
        "network_time": format_duration(float(history["seconds"].sum())),
    }


@answers("loss_ms", "loses_most", "p_values", "n_significant", "floor")
def t1_only_tests(subjects: Mapping, folds: Sequence[Fold], tissues: Sequence[int] = _tissues.labels()):
    """Exercise 2: what the T1 map alone loses against every channel, in the linear part of the calibration,
    and whether the paired tests over folds notice.

    :func:`qt1lib.solutions.calibration.linear_channel_cv` with the T1 map alone and with T1, B1+ and the
    posterior standard deviation, on the same folds; :func:`qt1lib.stats.paired_tests` of their per-fold RMSE.

    Returns
    -------
    dict of str
        The RMSE increase per tissue (ms, list WM, subcortical GM, cortical GM), the tissue that loses most,
        the t-test p-values (list), how many tissues reach p < 0.05, and the Wilcoxon test's floor.
    """
    alone, _ = linear_channel_cv(subjects, folds, ["t1"], tissues, method="t1")
    every, _ = linear_channel_cv(subjects, folds, ["t1", "b1", "t1_std"], tissues, method="all")
    tests = paired_tests(pd.concat([alone, every], ignore_index=True), before="all", after="t1")
    tests = tests.astype({"tissue": str}).set_index("tissue").reindex([t for t in TISSUES if t in set(tests["tissue"].astype(str))])
    loss = 1e3 * tests["mean_difference"]
    return {
        "loss_ms": listed([format_number(v, 1) for v in loss]) + " ms",
        "loses_most": str(loss.idxmax()),
        "p_values": listed([format_p(p) for p in tests["p_t"]]),
        "n_significant": format_share(int((tests["p_t"] < 0.05).sum()), len(tests), "tissue"),
        "floor": format_number(float(tests["p_wilcoxon_min"].iloc[0]), 3),
    }


def _ci_width(mm) -> float:
    row = mm.table.set_index("term").loc["C(method)[T.resnet]"]
    return float(row["ci_high"] - row["ci_low"])


@answers("small_cells", "cells", "width_small_ms", "width_ms", "shrink", "expected", "full_cells", "full_estimate")
def mixed_model_size(voxels: pd.DataFrame, mm, max_voxels_per_cell: int, seed: int, factor: int = 4):
    """Exercise 3: how the mixed model's confidence interval narrows with the voxels it uses.

    The chapter's model (:func:`qt1lib.stats.mixed_model`) refitted with ``factor`` times fewer voxels per
    subject, method and tissue; with independent voxels the 95 % interval of a coefficient would narrow as
    ``1/sqrt(n)``, so going from the small to the chapter's fit it should narrow ``sqrt(factor)`` times. The
    time of a fit on every voxel is the small fit's measured time scaled by the rows (linear in the rows: a
    lower bound for REML).

    Returns
    -------
    dict of str
        Voxels per cell of both fits, the width of the network's coefficient's interval in both (ms), the
        measured narrowing, the ``1/sqrt(n)`` expectation, the largest cell of the full data and the full fit's
        estimated time.
    """
    factor = require_integer("factor", factor, 2)
    small_cells = max(1, int(max_voxels_per_cell) // factor)
    start = time.perf_counter()
    small = mixed_model(voxels, reference_method="none", max_voxels_per_cell=small_cells, seed=seed)
    seconds = time.perf_counter() - start
    cells = voxels.groupby(["subject", "method", "tissue"], observed=True).size()
    ratio = _ci_width(small) / _ci_width(mm)
    return {
        "small_cells": f"{small_cells:,}",
        "cells": f"{int(max_voxels_per_cell):,}",
        "width_small_ms": format_number(1e3 * _ci_width(small), 1, "ms"),
        "width_ms": format_number(1e3 * _ci_width(mm), 1, "ms"),
        "shrink": format_number(ratio, 2),
        "expected": format_number(np.sqrt(mm.n_rows / small.n_rows), 2),
        "full_cells": f"{int(cells.max()):,}",
        "full_estimate": format_duration(scaled_seconds(seconds, small.n_rows, int(cells.sum()))),
    }


@answers("lines_gap_ms", "none_gap_ms", "p_lines", "p_none", "absorbs", "network_time")
def second_input_tests(metrics: pd.DataFrame, second_metrics: pd.DataFrame, history: pd.DataFrame):
    """Exercise 5: do the per-tissue lines absorb the two-train dictionary's shift, by the paired tests?

    Per tissue, the RMSE of the second input minus the chapter's input per fold, before calibration and
    after the per-tissue lines (:func:`qt1lib.stats.paired_tests` of the two inputs as two "methods").

    Returns
    -------
    dict of str
        The fold-mean gaps (ms, lists WM, subcortical GM, cortical GM) after the lines and before calibration,
        their t-test p-values, in which tissues the lines shrink the gap (``absorbs``), and the networks'
        measured training time (what the full exercise adds for the second input).
    """
    def gap(method):
        both = pd.concat([metrics[metrics["method"].astype(str) == method].assign(method="three"),
                          second_metrics[second_metrics["method"].astype(str) == method].assign(method="two")])
        tests = paired_tests(both, before="three", after="two").astype({"tissue": str}).set_index("tissue")
        return tests.reindex([t for t in TISSUES if t in tests.index])

    lines, none = gap("tissue_linear"), gap("none")
    hit = [t for t in lines.index if abs(lines.loc[t, "mean_difference"]) < abs(none.loc[t, "mean_difference"])]
    return {
        "lines_gap_ms": listed([format_number(1e3 * v, 0, signed=True) for v in lines["mean_difference"]]) + " ms",
        "none_gap_ms": listed([format_number(1e3 * v, 0, signed=True) for v in none["mean_difference"]]) + " ms",
        "p_lines": listed([format_p(p) for p in lines["p_t"]]),
        "p_none": listed([format_p(p) for p in none["p_t"]]),
        "absorbs": "in every tissue" if len(hit) == len(lines) else "in no tissue" if not hit else "in " + listed(hit) + " only",
        "network_time": format_duration(float(history["seconds"].sum())),
    }
