"""Solutions of chapter 06's exercises (the calibration network), and the pieces chapter 07's reuse.

A full exercise of chapter 06 retrains four networks, minutes each on a CPU. The cheap variants:

* the *input skip's* part of a network, a linear map of a voxel's own inputs (chapter 06), as leave-one-
  subject-out least squares over the same folds (:func:`linear_channel_cv`): which channel carries
  information a line can use, in seconds;
* a *short training* of one fold (:func:`short_config`: a few epochs of a quarter of the patches), compared
  by its validation RMSE in seconds of T1 (:func:`validation_rmse`), never with the chapter's full networks;
* the *cost* of the full run from timed training steps and this chapter's measured epochs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import tissues as _tissues
from ..calibrate import CalibrationConfig, build_model
from ..calibrate.folds import Fold, fold_seed
from ..calibrate.train import TrainedModel, train_model
from ..notebook import compare_text, format_duration, format_number, plural
from ..stats import tissue_metrics
from ..validate import require_integer, require_number
from . import answers

__all__ = ["short_config", "validation_rmse", "train_short", "linear_channel_cv", "channel_gain", "input_headroom",
           "target_first_epochs", "step_seconds", "centre_cost", "width_cost", "second_input_short", "listed"]

TISSUES = _tissues.names()


def listed(parts: Sequence[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    parts = list(parts)
    if not parts:
        return "none"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# ============================================================================ short trainings
def short_config(config: CalibrationConfig, epochs: int = 3, fraction: float = 0.25, **changes) -> CalibrationConfig:
    """The chapter's network for a short training: ``epochs`` epochs (no early stop before), ``fraction`` of
    its training and validation patches per epoch (at least one batch), and ``changes``."""
    epochs = require_integer("epochs", epochs, 1)
    fraction = require_number("fraction", fraction, low=0, low_inclusive=False, high=1)
    patches = max(config.batch_size, int(round(fraction * config.patches_per_epoch)))
    validation = max(config.batch_size, int(round(fraction * config.validation_patches)))
    return dataclasses.replace(config, max_epochs=epochs, patience=epochs, patches_per_epoch=patches,
                               validation_patches=validation, **changes)


def validation_rmse(model: TrainedModel) -> np.ndarray:
    """Per epoch, the validation RMSE of a trained network in seconds of T1.

    The validation loss is the mean squared error of the standardised target, so its square root times the
    target's standard deviation (:class:`qt1lib.calibrate.data.Normalisation`) is the RMSE (s) of the
    predicted correction (``residual``) or T1 over the validation voxels: comparable between targets.
    """
    if model.config.loss != "mse":
        raise ValueError(f"validation_rmse needs the mse loss, got {model.config.loss!r}")
    return np.sqrt(model.history["val_loss"].to_numpy(float)) * model.normalisation.target_std


def train_short(subjects: Mapping, fold: Fold, config: CalibrationConfig, seed: int, store=None) -> TrainedModel:
    """Train ``config`` on the training subjects of ``fold`` with the fold's seed (:func:`qt1lib.calibrate.folds.fold_seed`).

    ``store``: the study's store, so that an identical short training in another exercise (or a rebuild) is
    loaded instead of repeated (:func:`qt1lib.calibrate.train.train_model`).
    """
    train = {name: subjects[name] for name in fold.train}
    return train_model(train, config, fold_seed(seed, fold.index), store, progress=False)


# ============================================================================ linear channels
def linear_channel_cv(subjects: Mapping, folds: Sequence[Fold], channels: Sequence[str],
                      tissues: Sequence[int] = _tissues.labels(),
                      method: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-one-subject-out least squares of the IR T1 on a voxel's own input channels, one fit for all tissues.

    ``T1_IR ~ c0 + sum_k c_k x_k`` over the scored voxels of each fold's training subjects, applied to its test
    subject: with ``channels = ["t1"]`` the chapter's global line, with more channels the linear map that the
    network's input skip adds (chapter 06).

    Returns
    -------
    metrics : DataFrame
        :func:`qt1lib.stats.tissue_metrics` of the held-out voxels: ``fold``, ``subject``, ``method`` (``method``,
        default the channels joined by "+"), ``tissue``, ``n``, ``bias``, ``rmse``, ...
    voxels : DataFrame
        The held-out voxels: ``fold``, ``subject``, ``method``, ``tissue``, ``estimate``, ``reference`` (s), and
        ``b1`` where the subjects have a B1+ map.
    """
    channels = list(channels)
    name = method or "+".join(channels)
    names = _tissues.label_names(_tissues.ALL)
    rows = []
    for fold in folds:
        x, y = [], []
        for subject in fold.train:
            s = subjects[subject]
            keep = s.scored(tissues)
            x.append(np.column_stack([np.ones(int(keep.sum()))] + [s.inputs[c][keep] for c in channels]))
            y.append(s.target[keep])
        coef, *_ = np.linalg.lstsq(np.concatenate(x), np.concatenate(y), rcond=None)
        test = subjects[fold.test]
        keep = test.scored(tissues)
        design = np.column_stack([np.ones(int(keep.sum()))] + [test.inputs[c][keep] for c in channels])
        frame = pd.DataFrame({"fold": fold.index, "subject": fold.test, "method": name,
                              "tissue": pd.Series(test.labels[keep]).map(names).to_numpy(),
                              "estimate": design @ coef, "reference": test.target[keep]})
        if "b1" in test.inputs:
            frame["b1"] = test.inputs["b1"][keep]
        rows.append(frame)
    voxels = pd.concat(rows, ignore_index=True)
    return tissue_metrics(voxels), voxels


def _fold_mean(metrics: pd.DataFrame) -> pd.Series:
    return metrics.groupby("tissue", observed=True, sort=False)["rmse"].mean()


@answers("rmse_line", "rmse_b1", "rmse_std", "rmse_both", "carries", "b1_low_ms", "b1_high_ms", "b1_where")
def channel_gain(subjects: Mapping, folds: Sequence[Fold], tissues: Sequence[int] = _tissues.labels()):
    """Chapter 06, exercise 1: which input channel a voxel-wise linear calibration gains from, and where.

    :func:`linear_channel_cv` with the T1 map alone (the global line), with the B1+ map, with the posterior
    standard deviation and with both. For T1 + B1+ against T1 alone, the held-out voxels are split at the
    median of ``|B1+ - 1|`` and the RMSE reduction is computed in each half.

    Returns
    -------
    dict of str
        Fold-mean RMSE per tissue for each channel set (s, as lists WM, subcortical GM, cortical GM), the channel
        whose addition lowers the RMSE more (averaged over tissues), the RMSE reduction (ms) where B1+ is near 1
        and where it departs most, and where it is larger ("where B1+ departs furthest from 1", "where B1+ is
        near 1", "alike").
    """
    sets = {"line": ["t1"], "b1": ["t1", "b1"], "std": ["t1", "t1_std"], "both": ["t1", "b1", "t1_std"]}
    fits = {key: linear_channel_cv(subjects, folds, channels, tissues) for key, channels in sets.items()}
    means = {key: _fold_mean(metrics) for key, (metrics, _) in fits.items()}

    def values(key):
        return listed([format_number(means[key][t], 3) for t in means[key].index]) + " s"

    gain_b1 = float((means["line"] - means["b1"]).mean())
    gain_std = float((means["line"] - means["std"]).mean())
    carries = compare_text(gain_b1, gain_std, "the B1+ map", "the posterior standard deviation", "neither more than the other",
                           digits=4)
    line, b1 = fits["line"][1], fits["b1"][1]
    deviation = np.abs(b1["b1"].to_numpy() - 1.0)
    far = deviation > np.median(deviation)

    def rmse(v, sel):
        return float(np.sqrt(np.mean((v["estimate"].to_numpy()[sel] - v["reference"].to_numpy()[sel]) ** 2)))

    low = 1e3 * (rmse(line, ~far) - rmse(b1, ~far))
    high = 1e3 * (rmse(line, far) - rmse(b1, far))
    return {
        "rmse_line": values("line"), "rmse_b1": values("b1"), "rmse_std": values("std"), "rmse_both": values("both"),
        "carries": carries,
        "b1_low_ms": format_number(low, 1, "ms"), "b1_high_ms": format_number(high, 1, "ms"),
        "b1_where": compare_text(high, low, "where B1+ departs furthest from 1", "where B1+ is near 1", "alike", digits=1),
    }


# ============================================================================ other inputs
@answers("none", "none_chapter", "lines", "lines_chapter", "network_chapter", "left_pct")
def input_headroom(result, other) -> dict[str, str]:
    """Chapter 06 exercise 2 (and 07 exercise 4): another calibration input's RMSE before calibration and after
    the per-tissue lines, beside the chapter's input and network.

    Parameters
    ----------
    result : CrossValidationResult
        The chapter's (its input, network included).
    other : CrossValidationResult
        The other input's, baselines only (:func:`qt1lib.workflow.calibration.compare_inputs` without a network).

    Returns
    -------
    dict of str
        Fold-mean RMSE per tissue (lists, s): the other input before calibration and after the per-tissue lines,
        the chapter's input likewise and its network's, and ``left_pct``: the part of the chapter's
        uncalibrated RMSE that the other input still has before calibration (mean over tissues, %).
    """
    mine = result.summary().astype({"method": str, "tissue": str}).set_index(["method", "tissue"])["rmse_mean"]
    theirs = other.summary().astype({"method": str, "tissue": str}).set_index(["method", "tissue"])["rmse_mean"]

    def values(table, method):
        return listed([format_number(table[(method, t)], 3) for t in TISSUES if (method, t) in table.index]) + " s"

    left = np.mean([theirs[("none", t)] / mine[("none", t)] for t in TISSUES])
    return {
        "none": values(theirs, "none"), "none_chapter": values(mine, "none"),
        "lines": values(theirs, "tissue_linear"), "lines_chapter": values(mine, "tissue_linear"),
        "network_chapter": values(mine, "resnet") if ("resnet", TISSUES[0]) in mine.index else "not trained",
        "left_pct": format_number(100 * left, 0, "%"),
    }


# ============================================================================ targets
@answers("epochs", "first_t1", "first_delta", "last_t1", "last_delta", "better_first", "fraction_pct")
def target_first_epochs(subjects: Mapping, fold: Fold, config: CalibrationConfig, seed: int, epochs: int = 3,
                        fraction: float = 0.25, store=None):
    """Chapter 06, exercise 3: a network that predicts T1 itself against one that predicts the correction.

    Two short trainings of ``fold`` (:func:`short_config`), ``residual`` False and True, compared by their
    validation RMSE (s, :func:`validation_rmse`) after the first and the last epoch.

    Returns
    -------
    dict of str
        The epochs, the validation RMSE (s) of each target after epoch 1 and the last, which is lower after
        the first epoch ("the correction", "T1 itself", "neither"), and the share of the patches trained.
    """
    out = {}
    for residual in (False, True):
        model = train_short(subjects, fold, short_config(config, epochs, fraction, residual=residual), seed, store)
        out[residual] = validation_rmse(model)
    first_t1, first_delta = out[False][0], out[True][0]
    return {
        "epochs": plural(len(out[True]), "epoch"),
        "first_t1": format_number(first_t1, 3, "s"), "first_delta": format_number(first_delta, 3, "s"),
        "last_t1": format_number(out[False][-1], 3, "s"), "last_delta": format_number(out[True][-1], 3, "s"),
        "better_first": compare_text(first_t1, first_delta, "the correction", "T1 itself", "neither", digits=3),
        "fraction_pct": format_number(100 * fraction, 0, "%"),
    }


# ============================================================================ costs
def step_seconds(config: CalibrationConfig, steps: int = 4, train: bool = True, seed: int = 0) -> float:
    """Measured seconds of one optimisation step (``train``) or one inference batch of ``config``'s network on
    random patches (the CPU or device that torch uses by default), after one warm-up step."""
    import torch

    steps = require_integer("steps", steps, 1)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(config)
    batch = config.batch_size if train else config.inference_batch_size
    x = torch.randn((batch, len(config.channels), *config.patch_shape), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)

    def step():
        if train:
            model.train()
            loss = model(x).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            model.eval()
            with torch.no_grad():
                model(x)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def _epoch_seconds(history: pd.DataFrame) -> float:
    """Mean measured seconds of one epoch of the chapter's trainings."""
    return float(history["seconds"].mean())


@answers("patches", "inference", "per_second", "training", "epochs")
def centre_cost(subjects: Mapping, config: CalibrationConfig, history: pd.DataFrame, max_epochs: int):
    """Chapter 06, exercise 4: what a centre-voxel target costs: one inference patch per scored voxel.

    The inference time is the measured time of an inference batch of the centre network
    (:func:`step_seconds`) times the batches that cover every masked voxel of the held-out subjects; the
    training time is ``max_epochs`` of this chapter's measured epochs per fold (an upper bound: early stopping).

    Returns
    -------
    dict of str
        The patches, the inference time, the patches per second, the training time and its epochs.
    """
    centre = dataclasses.replace(config, target="centre")
    patches = int(sum(int(s.mask.sum()) for s in subjects.values()))
    batch = step_seconds(centre, train=False)
    inference = batch * np.ceil(patches / centre.inference_batch_size)
    training = _epoch_seconds(history) * max_epochs * len(subjects)
    return {
        "patches": f"{patches:,}",
        "inference": format_duration(inference),
        "per_second": f"{centre.inference_batch_size / batch:,.0f}",
        "training": format_duration(training),
        "epochs": plural(max_epochs, "epoch"),
    }


@answers("width", "ratio", "estimate", "epochs", "beats_lines")
def width_cost(config: CalibrationConfig, history: pd.DataFrame, result, width: int, max_epochs: int):
    """Chapter 06, exercise 5: the cost of a wider network trained longer, and where this chapter's network stands.

    The time of a training step at ``width`` over one at the chapter's width (:func:`step_seconds`), times
    this chapter's measured epoch time, ``max_epochs`` and the folds: an upper bound (early stopping may end
    sooner), which assumes the epoch's time scales with its optimisation steps.

    Returns
    -------
    dict of str
        The width, the step-time ratio, the estimated training time, the epochs, and the tissues in which
        this chapter's network has a lower fold-mean RMSE than the per-tissue lines.
    """
    width = require_integer("width", width, 1)
    ratio = step_seconds(dataclasses.replace(config, width=width)) / step_seconds(config)
    folds = len(result.folds)
    estimate = ratio * _epoch_seconds(history) * max_epochs * folds
    summary = result.summary().astype({"method": str, "tissue": str}).set_index(["method", "tissue"])["rmse_mean"]
    wins = [t for t in TISSUES if summary[("resnet", t)] < summary[("tissue_linear", t)]]
    return {
        "width": f"{width}",
        "ratio": format_number(ratio, 1),
        "estimate": format_duration(estimate),
        "epochs": plural(max_epochs, "epoch"),
        "beats_lines": "in " + listed(wins) if wins else "in no tissue",
    }


@answers("epochs", "fraction_pct", "rmse_two", "rmse_three", "compare", "estimate")
def second_input_short(subjects: Mapping, second: Mapping, fold: Fold, config: CalibrationConfig, seed: int,
                       history: pd.DataFrame, epochs: int = 3, fraction: float = 0.25, store=None):
    """Chapter 06 exercise 6: a short training of one fold on a second input against the chapter's input.

    Returns
    -------
    dict of str
        The epochs and the share of the patches trained, the last validation RMSE (s) on the second and on the chapter's input, which is lower
        ("the two-train input", "the three-train input", "neither"), and the full exercise's time: this
        chapter's measured training time (the same configuration on another input).
    """
    short = short_config(config, epochs, fraction)
    two = validation_rmse(train_short(second, fold, short, seed, store))[-1]
    three = validation_rmse(train_short(subjects, fold, short, seed, store))[-1]
    return {
        "epochs": plural(short.max_epochs, "epoch"),
        "fraction_pct": format_number(100 * fraction, 0, "%"),
        "rmse_two": format_number(two, 3, "s"), "rmse_three": format_number(three, 3, "s"),
        "compare": compare_text(three, two, "the two-train input", "the three-train input", "neither", digits=3),
        "estimate": format_duration(float(history["seconds"].sum())),
    }
