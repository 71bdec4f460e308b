"""Figure helpers (matplotlib / seaborn) for the comparison and calibration chapters.

Every function returns the matplotlib ``Figure`` (or draws on a given ``Axes``) and never
calls ``plt.show()``: notebooks glue or show it and close it. Inputs are the tidy tables of
:mod:`qt1lib.stats` and :func:`qt1lib.calibrate.run_cross_validation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import tissues as _tissues
from .stats import bland_altman

__all__ = ["bland_altman_plot", "bland_altman_grid", "training_curves", "maps_side_by_side", "tissue_rmse_bars"]


def _name(method: str, names: Mapping[str, str] | None) -> str:
    return names.get(method, method) if names else method


def bland_altman_plot(
    estimate: np.ndarray,
    reference: np.ndarray,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    z: float = 1.96,
    max_points: int = 20000,
    seed: int = 0,
) -> Axes:
    """Bland-Altman plot: difference against mean, with the bias and limits of agreement.

    The lines come from :func:`qt1lib.stats.bland_altman` over all finite pairs; at most
    ``max_points`` points, drawn at random with ``seed``, are scattered (for speed).

    Parameters
    ----------
    estimate, reference : array_like
        Paired T1 values (s).
    ax : Axes, optional
        Where to draw (a new figure otherwise).
    title : str, optional
    z : float
        Normal quantile of the limits (1.96: 95 %).
    max_points : int
        Largest number of points drawn.
    seed : int
        Seed of the point subsampling.

    Returns
    -------
    Axes
    """
    ba = bland_altman(estimate, reference, z=z)
    e = np.asarray(estimate, dtype=float).ravel()
    r = np.asarray(reference, dtype=float).ravel()
    keep = np.flatnonzero(np.isfinite(e) & np.isfinite(r))
    if keep.size > max_points:
        keep = np.random.default_rng(seed).choice(keep, size=max_points, replace=False)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5), layout="constrained")
    ax.scatter((e[keep] + r[keep]) / 2, e[keep] - r[keep], s=3, alpha=0.3, linewidths=0, color="0.3")
    ax.axhline(ba.mean_difference, color="C3", label=f"bias {ba.mean_difference:.3f} s")
    ax.axhline(ba.lower, color="C0", ls="--", label=f"limits {ba.lower:.3f}, {ba.upper:.3f} s")
    ax.axhline(ba.upper, color="C0", ls="--")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("mean of estimate and reference (s)")
    ax.set_ylabel("estimate - reference (s)")
    ax.legend(fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return ax


def bland_altman_grid(
    voxels: pd.DataFrame,
    methods: Sequence[str] | None = None,
    tissues: Sequence[str] | None = None,
    *,
    method_names: Mapping[str, str] | None = None,
    max_points: int = 5000,
    seed: int = 0,
) -> Figure:
    """Bland-Altman plots of a voxel table: one row per method, one column per tissue.

    Parameters
    ----------
    voxels : DataFrame
        Voxel table (``method``, ``tissue``, ``estimate``, ``reference``; :mod:`qt1lib.stats`).
    methods, tissues : sequence of str, optional
        Subsets and order (default: all; methods in the table's order, tissues in the order of
        :mod:`qt1lib.tissues`).
    method_names : mapping, optional
        Display names of methods.
    max_points, seed
        See :func:`bland_altman_plot`.
    """
    methods = list(methods) if methods is not None else list(pd.unique(voxels["method"]))
    tissues = list(tissues) if tissues is not None else _tissues.sort_names(voxels["tissue"].astype(str))
    fig, axes = plt.subplots(
        len(methods), len(tissues), figsize=(3.6 * len(tissues), 2.9 * len(methods)),
        squeeze=False, sharex=True, sharey=True, layout="constrained",
    )
    for i, m in enumerate(methods):
        for j, t in enumerate(tissues):
            sel = voxels[(voxels["method"] == m) & (voxels["tissue"] == t)]
            bland_altman_plot(sel["estimate"], sel["reference"], axes[i, j], title=f"{_name(m, method_names)}, {t}",
                              max_points=max_points, seed=seed)
            if i < len(methods) - 1:
                axes[i, j].set_xlabel("")
            if j > 0:
                axes[i, j].set_ylabel("")
    return fig


def training_curves(history: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Training and validation loss per epoch, one colour per fold, the kept epoch marked.

    Parameters
    ----------
    history : DataFrame
        ``fold``, ``epoch``, ``train_loss``, ``val_loss`` and optionally ``best``
        (:attr:`qt1lib.calibrate.CrossValidationResult.history`).
    ax : Axes, optional

    Returns
    -------
    Figure
    """
    long = history.melt(id_vars=["fold", "epoch"], value_vars=["train_loss", "val_loss"], var_name="set",
                        value_name="loss")
    long["set"] = long["set"].map({"train_loss": "training", "val_loss": "validation"})
    long["fold"] = long["fold"].astype(str)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
    sns.lineplot(data=long, x="epoch", y="loss", hue="fold", style="set", ax=ax, marker="o", markersize=3)
    if "best" in history:
        best = history[history["best"].astype(bool)]
        ax.scatter(best["epoch"], best["val_loss"], s=60, facecolors="none", edgecolors="k", zorder=3,
                   label="kept epoch")
    ax.set_yscale("log")
    ax.set_ylabel("loss (standardised units)")
    ax.legend(fontsize="small", ncols=2)
    return ax.figure


def maps_side_by_side(
    maps: Mapping[str, np.ndarray],
    reference: np.ndarray,
    *,
    axis: int = 2,
    index: int | None = None,
    vmin: float = 0.0,
    vmax: float | None = None,
    error_limit: float | None = None,
    reference_label: str = "IR reference",
) -> Figure:
    """One slice of each map beside the reference (top row) and of its error (bottom row).

    Parameters
    ----------
    maps : mapping of str to ndarray
        Title -> 3-D T1 map (s), NaN outside the brain.
    reference : ndarray
        3-D reference T1 map (s), same shape.
    axis : int
        Axis orthogonal to the slice.
    index : int, optional
        Slice index (default: the middle).
    vmin, vmax : float
        T1 display range (s); ``vmax`` defaults to the 99th percentile of the reference.
    error_limit : float, optional
        Symmetric range of the error maps (s); default the 99th percentile of |error|.
    reference_label : str

    Returns
    -------
    Figure
    """
    reference = np.asarray(reference, dtype=float)
    if reference.ndim != 3 or axis not in (0, 1, 2):
        raise ValueError(f"reference must be 3-D and axis in 0..2, got shape {reference.shape} and axis {axis!r}")
    for name, m in maps.items():
        if np.shape(m) != reference.shape:
            raise ValueError(f"map {name!r} has shape {np.shape(m)}, expected {reference.shape}")
    index = reference.shape[axis] // 2 if index is None else index

    def cut(a: np.ndarray) -> np.ndarray:
        return np.rot90(np.take(np.asarray(a, dtype=float), index, axis=axis))

    errors = {n: np.asarray(m, dtype=float) - reference for n, m in maps.items()}
    if vmax is None:
        vmax = float(np.nanpercentile(reference, 99))
    if error_limit is None:
        all_err = np.concatenate([np.abs(e[np.isfinite(e)]) for e in errors.values()] or [np.zeros(1)])
        error_limit = float(np.percentile(all_err, 99)) if all_err.size else 1.0
    n = len(maps) + 1
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.4), squeeze=False, layout="constrained")
    im = axes[0, 0].imshow(cut(reference), cmap="gray", vmin=vmin, vmax=vmax)
    axes[0, 0].set_title(reference_label)
    for j, (name, m) in enumerate(maps.items(), start=1):
        axes[0, j].imshow(cut(m), cmap="gray", vmin=vmin, vmax=vmax)
        axes[0, j].set_title(name)
        err = axes[1, j].imshow(cut(errors[name]), cmap="RdBu_r", vmin=-error_limit, vmax=error_limit)
        axes[1, j].set_title(f"{name} - reference")
    for a in axes.ravel():
        a.set_axis_off()
    fig.colorbar(im, ax=axes[0, :], label="T1 (s)", shrink=0.8)
    if maps:
        fig.colorbar(err, ax=axes[1, :], label="error (s)", shrink=0.8)
    return fig


def tissue_rmse_bars(
    metrics: pd.DataFrame,
    value: str = "rmse",
    ax: Axes | None = None,
    *,
    method_names: Mapping[str, str] | None = None,
) -> Figure:
    """Bars of a per-fold metric by tissue and method: mean across folds, error bar = sd.

    Tissues are in the order of :mod:`qt1lib.tissues` (others after, in the table's order).

    Parameters
    ----------
    metrics : DataFrame
        :func:`qt1lib.stats.tissue_metrics` output (one row per fold, method, tissue).
    value : str
        Metric column (default RMSE, s).
    ax : Axes, optional
    method_names : mapping, optional
        Display names of methods.

    Returns
    -------
    Figure
    """
    df = metrics.copy()
    df["method"] = [_name(m, method_names) for m in df["method"].astype(str)]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    df["tissue"] = df["tissue"].astype(str)
    sns.barplot(data=df, x="tissue", y=value, hue="method", errorbar="sd", ax=ax, capsize=0.1,
                order=_tissues.sort_names(df["tissue"]))
    unit = value.upper() if value in ("rmse", "mae") else value
    ax.set_ylabel("Pearson r" if value == "pearson_r" else f"{unit} (s)")
    ax.set_xlabel("")
    return ax.figure
