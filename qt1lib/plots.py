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

__all__ = [
    "BOOK_DPI",
    "TISSUE_COLOURS",
    "book_style",
    "tissue_label_image",
    "performance_grid",
    "bland_altman_plot",
    "bland_altman_grid",
    "training_curves",
    "maps_side_by_side",
    "tissue_rmse_bars",
]

#: Resolution (dots per inch) of the book's PNG figures. The inline backend renders a figure at its
#: ``figure.dpi``, and the HTML shows the PNG scaled to the text column (``max-width: 100%``): at 200 dpi a
#: 6-inch figure is 1200 px wide, sharp on a 1280 px screen and on a phone's high-density display.
BOOK_DPI = 200
#: One colour per tissue label of :mod:`qt1lib.tissues` (tab10, the colours chapter 05 names in its prose).
TISSUE_COLOURS = {1: "tab:blue", 2: "tab:orange", 3: "tab:green", 4: "tab:purple"}


def book_style(dpi: int = BOOK_DPI) -> None:
    """Set the book's figure and table style: call once per notebook, after ``import matplotlib.pyplot``.

    Matplotlib: figures rendered at ``dpi`` (default :data:`BOOK_DPI`), font sizes that stay legible
    when a figure is scaled to a phone's width. pandas: tables show every column (no "4 rows x 27
    columns" summary: the page scrolls a wide table sideways) and floats with at most 4 decimals.

    Parameters
    ----------
    dpi : int
        Dots per inch of the rendered figures (positive).
    """
    if not isinstance(dpi, (int, np.integer)) or isinstance(dpi, bool) or dpi <= 0:
        raise ValueError(f"dpi must be a positive integer, got {dpi!r}")
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": dpi,
        "savefig.dpi": dpi,
        "font.size": 10,
        "axes.titlesize": 10,
        "axes.labelsize": 10,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "legend.fontsize": 8.5,
        "figure.titlesize": 11,
    })
    pd.set_option("display.max_columns", None)
    pd.set_option("display.precision", 4)


def tissue_label_image(ax: Axes, labels: np.ndarray, *, alpha: float = 1.0, legend: bool = True) -> Axes:
    """Draw a 2-D tissue segmentation with one colour per tissue and a legend naming them.

    Labels are categories, not a scale: the legend (below the image) names each tissue of
    :mod:`qt1lib.tissues` that the image contains, in :data:`TISSUE_COLOURS`; other values and NaN are
    transparent.

    Parameters
    ----------
    ax : Axes
    labels : ndarray
        2-D label image, already oriented for display.
    alpha : float
        Opacity of the colours (below 1 to overlay a map).
    legend : bool
        Add the legend.

    Returns
    -------
    Axes
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    image = np.asarray(labels, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"labels must be a 2-D image, got shape {image.shape}")
    known = sorted(TISSUE_COLOURS)
    cmap = ListedColormap([TISSUE_COLOURS[k] for k in known])
    norm = BoundaryNorm(np.arange(known[0] - 0.5, known[-1] + 1.0), cmap.N)
    shown = np.where(np.isin(image, known), image, np.nan)
    ax.imshow(shown, cmap=cmap, norm=norm, alpha=alpha, interpolation="nearest")
    if legend:
        present = [t for t in _tissues.ALL if t.label in TISSUE_COLOURS and np.any(shown == t.label)]
        ax.legend(handles=[Patch(color=TISSUE_COLOURS[t.label], label=t.name) for t in present],
                  loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=2, frameon=False, fontsize="small")
    return ax


def performance_grid(
    perf: pd.DataFrame,
    protocol: str,
    quantities: Mapping[str, str],
    *,
    references: Mapping[str, float] | None = None,
) -> Figure:
    """Estimator performance against true T1: one row per quantity, one column per noise level.

    Parameters
    ----------
    perf : DataFrame
        :func:`qt1lib.estimate.performance.simulate_estimator_performance` output, with a
        ``protocol`` column and the columns named in ``quantities``.
    protocol : str
        The protocol whose rows are drawn.
    quantities : mapping of str to str
        Column -> y-axis label, in row order.
    references : mapping of str to float, optional
        Column -> value of a horizontal reference line (e.g. 0 for a bias, 1 for a ratio to the bound).

    Returns
    -------
    Figure
    """
    data = perf[perf["protocol"] == protocol]
    if data.empty:
        raise ValueError(f"perf has no rows of protocol {protocol!r}; it has {sorted(perf['protocol'].unique())}")
    missing = [q for q in ("t1", "sigma", "estimator", *quantities) if q not in data.columns]
    if missing:
        raise ValueError(f"perf lacks the columns {missing}")
    sigmas = sorted(data["sigma"].unique())
    estimators = list(pd.unique(data["estimator"]))
    markers = "osD^vP*X"
    fig, axes = plt.subplots(len(quantities), len(sigmas), figsize=(2.9 * len(sigmas) + 0.4, 2.3 * len(quantities) + 0.6),
                             sharex=True, sharey="row", squeeze=False, layout="constrained")
    for i, (column, label) in enumerate(quantities.items()):
        for j, sigma in enumerate(sigmas):
            ax = axes[i, j]
            at = data[np.isclose(data["sigma"], sigma)]
            for k, name in enumerate(estimators):
                d = at[at["estimator"] == name].sort_values("t1")
                ax.plot(d["t1"], d[column], marker=markers[k % len(markers)], ms=3.5, lw=1.2, color=f"C{k}", label=name)
            if references and column in references:
                ax.axhline(references[column], color="k", lw=0.6)
            if i == 0:
                ax.set_title(f"sigma = {sigma:g}")
            if j == 0:
                ax.set_ylabel(label)
            if i == len(quantities) - 1:
                ax.set_xlabel("true T1 (s)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper center", ncols=min(len(names), 4), frameon=False)
    return fig


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
    """Bars of a per-fold metric by tissue and method: mean across folds, error bar = sd; the methods'
    legend sits below the axes, in two columns.

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
    if ax.get_legend() is not None:  # below the axes, where it hides no bar whatever their heights
        sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.07), ncol=2, title=None, frameon=False)
    return ax.figure
