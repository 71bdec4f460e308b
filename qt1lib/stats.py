"""Statistics of T1 agreement: per-tissue errors, fold summaries, paired tests, mixed model, Bland-Altman.

The tables follow the seed study (Saunders et al. 2025, Magn. Reson. Imaging 117:110322,
abstract): root-mean-square error (RMSE) of a T1 map against the inversion-recovery (IR)
reference per tissue (white matter, subcortical grey matter, cortical grey matter), per
cross-validation fold, summarised as mean +- standard deviation across the four folds.

Input convention: a tidy *voxel table* (``pandas.DataFrame``), one row per voxel and method,
with columns ``fold``, ``subject``, ``method``, ``tissue`` (a display name of :mod:`qt1lib.tissues`),
``estimate`` and ``reference`` (both T1 in s). :func:`qt1lib.calibrate.run_cross_validation`
returns one.

The seed does not state its test behind "significantly" (DESIGN.md section 5); here both a
paired t-test and an exact Wilcoxon signed-rank test over folds are reported, with the
caveat that with four folds the exact two-sided Wilcoxon p-value cannot fall below
2 / 2^4 = 0.125.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import tissues as _tissues

__all__ = [
    "TISSUE_LABELS",
    "TISSUES",
    "SEED_RMSE",
    "SEED_SOURCE",
    "BlandAltman",
    "MixedModelResult",
    "error_metrics",
    "tissue_metrics",
    "fold_summary",
    "paired_tests",
    "wilcoxon_min_p",
    "mixed_model",
    "bland_altman",
    "seed_comparison_table",
    "SEED_VIVO_LABEL",
    "SEED_METHODS",
    "seed_comparison_rows",
    "seed_gap_attribution",
    "binned_error",
    "b1_slope_table",
    "compare_methods",
    "mixed_model_cell_means",
]

#: Label -> display name of the scored tissues (:data:`qt1lib.tissues.SCORED`; other values
#: are not scored: 0 background, 4 CSF). An alias of the registry, kept for the notebooks.
TISSUE_LABELS: dict[int, str] = _tissues.label_names()
#: Display names of the scored tissues in table order (alias of :func:`qt1lib.tissues.names`).
TISSUES: tuple[str, ...] = _tissues.names()

#: Where :data:`SEED_RMSE` comes from.
SEED_SOURCE = (
    "Saunders et al. 2025, Magn. Reson. Imaging 117:110322, abstract: RMSE of MAP MP2RAGE T1 against "
    "multi-TI IR T1 across four folds, before and after the ResNet-18 calibration (in vivo, 7T)"
)
#: Published RMSE (s), mean and sd across four folds, before and after calibration (in vivo).
SEED_RMSE: dict[str, dict[str, tuple[float, float]]] = {
    "WM": {"before": (0.30, 0.01), "after": (0.11, 0.02)},
    "subcortical GM": {"before": (0.26, 0.02), "after": (0.10, 0.02)},
    "cortical GM": {"before": (0.36, 0.02), "after": (0.17, 0.03)},
}

_VOXEL_COLUMNS = ("estimate", "reference")


def _finite_pairs(estimate: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(estimate, dtype=float).ravel()
    r = np.asarray(reference, dtype=float).ravel()
    if e.shape != r.shape:
        raise ValueError(f"estimate and reference must have the same size, got {e.size} and {r.size}")
    keep = np.isfinite(e) & np.isfinite(r)
    return e[keep], r[keep]


def error_metrics(estimate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Agreement of an estimate with a reference over voxels where both are finite.

    Parameters
    ----------
    estimate, reference : array_like
        T1 values (s), same size.

    Returns
    -------
    dict
        ``n`` (voxels), ``bias`` = mean(estimate - reference) (s), ``rmse`` =
        sqrt(mean((estimate - reference)^2)) (s), ``mae`` = mean |estimate - reference| (s),
        ``pearson_r`` (Pearson correlation; NaN below 2 voxels or for a constant input).
    """
    e, r = _finite_pairs(estimate, reference)
    d = e - r
    n = d.size
    if n == 0:
        return {"n": 0, "bias": np.nan, "rmse": np.nan, "mae": np.nan, "pearson_r": np.nan}
    ec, rc = e - e.mean(), r - r.mean()
    denom = np.sqrt(np.sum(ec**2) * np.sum(rc**2))
    pearson = float(np.sum(ec * rc) / denom) if n > 1 and denom > 0 else np.nan
    return {
        "n": int(n),
        "bias": float(d.mean()),
        "rmse": float(np.sqrt(np.mean(d**2))),
        "mae": float(np.mean(np.abs(d))),
        "pearson_r": pearson,
    }


def _check_columns(df: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {list(df.columns)}")


def _ordered_tissues(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` whose ``tissue`` column is categorical in registry order (others after, sorted)."""
    if "tissue" not in df.columns or isinstance(df["tissue"].dtype, pd.CategoricalDtype):
        return df
    order = _tissues.sort_names(sorted(set(df["tissue"])))
    return df.assign(tissue=pd.Categorical(df["tissue"], categories=order))


def tissue_metrics(
    voxels: pd.DataFrame, by: tuple[str, ...] = ("fold", "subject", "method", "tissue")
) -> pd.DataFrame:
    """:func:`error_metrics` for every group of a voxel table.

    Parameters
    ----------
    voxels : DataFrame
        Voxel table (module docstring); rows with a non-finite estimate or reference are
        ignored.
    by : tuple of str
        Grouping columns.

    Returns
    -------
    DataFrame
        One row per group: the ``by`` columns, ``n``, ``bias``, ``rmse``, ``mae``,
        ``pearson_r`` (T1 differences in s).
    """
    _check_columns(voxels, tuple(by) + _VOXEL_COLUMNS, "voxels")
    voxels = _ordered_tissues(voxels)
    e = voxels["estimate"].to_numpy(float)
    r = voxels["reference"].to_numpy(float)
    keep = np.isfinite(e) & np.isfinite(r)
    df = voxels.loc[keep, list(by)].copy()
    e, r = e[keep], r[keep]
    d = e - r
    df["d"], df["d2"], df["ad"] = d, d**2, np.abs(d)
    df["e"], df["r"], df["ee"], df["rr"], df["er"] = e, r, e * e, r * r, e * r
    g = df.groupby(list(by), observed=True, sort=True)
    s = g[["d", "d2", "ad", "e", "r", "ee", "rr", "er"]].mean()
    n = g.size()
    cov = s["er"] - s["e"] * s["r"]
    var_e = (s["ee"] - s["e"] ** 2).clip(lower=0)
    var_r = (s["rr"] - s["r"] ** 2).clip(lower=0)
    denom = np.sqrt(var_e * var_r)
    pearson = (cov / denom.where(denom > 0)).where(n > 1)
    out = pd.DataFrame(
        {
            "n": n,
            "bias": s["d"],
            "rmse": np.sqrt(s["d2"]),
            "mae": s["ad"],
            "pearson_r": pearson.clip(-1, 1),
        }
    )
    return out.reset_index()


def fold_summary(
    metrics: pd.DataFrame,
    values: tuple[str, ...] = ("rmse", "bias", "mae", "pearson_r"),
    by: tuple[str, ...] = ("method", "tissue"),
) -> pd.DataFrame:
    """Mean and standard deviation across folds, as the seed reports RMSE (mean +- sd).

    Parameters
    ----------
    metrics : DataFrame
        Output of :func:`tissue_metrics` (one row per fold, method and tissue).
    values : tuple of str
        Metric columns to summarise.
    by : tuple of str
        Grouping columns kept.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``n_folds``, and ``<value>_mean``, ``<value>_sd`` for each value;
        the sd has ``ddof = 1`` (sample standard deviation; the seed does not say which).
    """
    _check_columns(metrics, tuple(by) + tuple(values) + ("fold",), "metrics")
    metrics = _ordered_tissues(metrics)
    g = metrics.groupby(list(by), observed=True, sort=True)
    out = pd.DataFrame({"n_folds": g["fold"].nunique()})
    for v in values:
        out[f"{v}_mean"] = g[v].mean()
        out[f"{v}_sd"] = g[v].std(ddof=1)
    return out.reset_index()


def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided p-value of an exact Wilcoxon signed-rank test with ``n`` pairs.

    Under the null hypothesis each of the ``2^n`` sign patterns of the ranked differences is
    equally likely (Wilcoxon 1945); the most extreme statistic is reached by the two
    patterns with all signs equal, so p >= 2 / 2^n (0.125 for four folds).
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of pairs, got {n!r}")
    return min(1.0, 2.0 / 2.0**n)


def paired_tests(
    metrics: pd.DataFrame, before: str = "none", after: str = "resnet", metric: str = "rmse"
) -> pd.DataFrame:
    """Paired tests over folds of a metric before and after calibration, per tissue.

    Parameters
    ----------
    metrics : DataFrame
        Output of :func:`tissue_metrics` with columns ``fold``, ``method``, ``tissue``.
    before, after : str
        Methods compared (e.g. ``"none"``, no calibration, and ``"resnet"``).
    metric : str
        Metric column (``"rmse"``, ``"mae"``, ``"bias"``, ...).

    Returns
    -------
    DataFrame
        Per tissue: ``n_folds``, ``mean_before``, ``mean_after``, ``mean_difference``
        (after - before), ``t``, ``p_t`` (two-sided paired t-test, Student 1908;
        ``scipy.stats.ttest_rel``), ``w``, ``p_wilcoxon`` (exact two-sided Wilcoxon
        signed-rank test, Wilcoxon 1945; ``scipy.stats.wilcoxon(method="exact")``) and
        ``p_wilcoxon_min`` (:func:`wilcoxon_min_p`: with four folds the Wilcoxon test cannot
        give p < 0.125, however large the effect).

    Raises
    ------
    ValueError
        If a method is missing or the folds of the two methods differ.
    """
    _check_columns(metrics, ("fold", "method", "tissue", metric), "metrics")
    metrics = _ordered_tissues(metrics)
    rows = []
    for method in (before, after):
        if method not in set(metrics["method"]):
            raise ValueError(f"method {method!r} is not in metrics (methods: {sorted(set(metrics['method']))})")
    for tissue, g in metrics.groupby("tissue", observed=True, sort=True):
        wide = g.pivot_table(index="fold", columns="method", values=metric, observed=True)
        if wide[[before, after]].isna().any().any():
            raise ValueError(f"tissue {tissue!r}: methods {before!r} and {after!r} do not share the same folds")
        b, a = wide[before].to_numpy(float), wide[after].to_numpy(float)
        n = b.size
        if n >= 2:
            t = sps.ttest_rel(a, b)
            t_stat, p_t = float(t.statistic), float(t.pvalue)
        else:
            t_stat = p_t = np.nan
        if n >= 1 and np.any(a != b):
            w = sps.wilcoxon(a, b, method="exact", alternative="two-sided")
            w_stat, p_w = float(w.statistic), float(w.pvalue)
        else:
            w_stat = p_w = np.nan
        rows.append(
            {
                "tissue": tissue,
                "n_folds": n,
                "mean_before": b.mean(),
                "mean_after": a.mean(),
                "mean_difference": float(np.mean(a - b)),
                "t": t_stat,
                "p_t": p_t,
                "w": w_stat,
                "p_wilcoxon": p_w,
                "p_wilcoxon_min": wilcoxon_min_p(n),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class MixedModelResult:
    """A fitted linear mixed model of absolute error.

    Attributes
    ----------
    table : DataFrame
        Fixed effects: ``term``, ``coef`` (s), ``se``, ``z``, ``p``, ``ci_low``, ``ci_high``.
    result : statsmodels MixedLMResults
        The full fit (``result.summary()``).
    formula : str
        The model formula.
    n_rows : int
        Voxel rows used (after subsampling).
    """

    table: pd.DataFrame
    result: Any
    formula: str
    n_rows: int


def mixed_model(
    voxels: pd.DataFrame,
    reference_method: str = "none",
    max_voxels_per_cell: int | None = 2000,
    seed: int = 0,
) -> MixedModelResult:
    """Linear mixed model of the absolute error by method and tissue, subject as group.

    ``|estimate - reference| ~ method * tissue + (1 | subject)``, fitted by REML with
    ``statsmodels.formula.api.mixedlm`` (Lindstrom & Bates 1988). Treatment coding: the
    intercept is ``reference_method`` in WM; coefficients are differences in mean absolute
    error (s).

    Voxels within a subject are spatially correlated, so voxel-level standard errors are
    optimistic, and four subjects estimate the random-intercept variance poorly: read the
    model as a description of effect sizes, and the fold-level :func:`paired_tests` for
    inference.

    Parameters
    ----------
    voxels : DataFrame
        Voxel table (module docstring) with ``subject``, ``method``, ``tissue``.
    reference_method : str
        Method of the intercept.
    max_voxels_per_cell : int or None
        At most this many voxels per (subject, method, tissue), drawn at random, to keep the
        fit fast; ``None`` keeps all. The same voxels are kept for every method: the rows of
        each method must list a subject's voxels in the same order, as
        :func:`qt1lib.calibrate.run_cross_validation` writes them.
    seed : int
        Seed of the subsampling.

    Returns
    -------
    MixedModelResult
    """
    import statsmodels.formula.api as smf

    _check_columns(voxels, ("subject", "method", "tissue") + _VOXEL_COLUMNS, "voxels")
    methods = list(dict.fromkeys(voxels["method"]))
    if reference_method not in methods:
        raise ValueError(f"reference_method {reference_method!r} is not a method of voxels ({methods})")
    df = voxels[["subject", "method", "tissue", "estimate", "reference"]].copy()
    df["abs_error"] = np.abs(df["estimate"].to_numpy(float) - df["reference"].to_numpy(float))
    df = df[np.isfinite(df["abs_error"])]
    if max_voxels_per_cell is not None:
        if max_voxels_per_cell < 1:
            raise ValueError(f"max_voxels_per_cell must be a positive integer or None, got {max_voxels_per_cell!r}")
        rng = np.random.default_rng(seed)
        # The same voxels for every method: rank voxels within (subject, tissue, method) by order,
        # and keep ranks drawn once per (subject, tissue).
        df["_rank"] = df.groupby(["subject", "tissue", "method"], observed=True).cumcount()
        sizes = df.groupby(["subject", "tissue"], observed=True)["_rank"].max() + 1
        keep = []
        for key, size in sizes.items():
            chosen = np.sort(rng.permutation(int(size))[:max_voxels_per_cell])
            keep.append(pd.DataFrame({"subject": key[0], "tissue": key[1], "_rank": chosen}))
        df = df.merge(pd.concat(keep), on=["subject", "tissue", "_rank"]).drop(columns="_rank")
    df = _ordered_tissues(df.assign(tissue=df["tissue"].astype(str)))
    order = [reference_method] + [m for m in methods if m != reference_method]
    df["method"] = pd.Categorical(df["method"], categories=order)
    formula = "abs_error ~ C(method) * C(tissue)"
    fit = smf.mixedlm(formula, df, groups=df["subject"]).fit(reml=True)
    ci = fit.conf_int()
    names = list(fit.fe_params.index)
    table = pd.DataFrame(
        {
            "term": names,
            "coef": fit.fe_params.to_numpy(),
            "se": fit.bse_fe.to_numpy(),
            "z": fit.tvalues[names].to_numpy(),
            "p": fit.pvalues[names].to_numpy(),
            "ci_low": ci.loc[names, 0].to_numpy(),
            "ci_high": ci.loc[names, 1].to_numpy(),
        }
    )
    return MixedModelResult(table=table, result=fit, formula=formula + " + (1 | subject)", n_rows=len(df))


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman agreement statistics (Bland & Altman 1986, Lancet 1(8476):307).

    Attributes
    ----------
    n : int
        Pairs used.
    mean_difference : float
        Mean of ``estimate - reference`` (s): the bias.
    sd_difference : float
        Sample standard deviation (ddof = 1) of the differences (s).
    lower, upper : float
        Limits of agreement ``mean_difference -+ z * sd_difference`` (s).
    z : float
        Normal quantile of the limits (1.96 for 95 %).
    """

    n: int
    mean_difference: float
    sd_difference: float
    lower: float
    upper: float
    z: float


def bland_altman(estimate: np.ndarray, reference: np.ndarray, z: float = 1.96) -> BlandAltman:
    """Bias and 95 % limits of agreement of ``estimate`` against ``reference``.

    Parameters
    ----------
    estimate, reference : array_like
        Paired values (s); pairs with a non-finite member are dropped.
    z : float
        Normal quantile of the limits; default 1.96, the 95 % limits of Bland & Altman 1986.

    Returns
    -------
    BlandAltman

    Raises
    ------
    ValueError
        With fewer than two finite pairs, or a non-positive ``z``.
    """
    if not (np.isfinite(z) and z > 0):
        raise ValueError(f"z must be a positive normal quantile, got {z!r}")
    e, r = _finite_pairs(estimate, reference)
    if e.size < 2:
        raise ValueError(f"bland_altman needs at least two finite pairs, got {e.size}")
    d = e - r
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    return BlandAltman(
        n=int(d.size), mean_difference=mean, sd_difference=sd, lower=mean - z * sd, upper=mean + z * sd, z=z
    )


def seed_comparison_table(
    summary: pd.DataFrame, before: str = "none", after: str = "resnet", formatted: bool = True
) -> pd.DataFrame:
    """The seed's published RMSE beside this study's, labelled in vivo versus simulated.

    Parameters
    ----------
    summary : DataFrame
        Output of :func:`fold_summary` (columns ``method``, ``tissue``, ``rmse_mean``,
        ``rmse_sd``).
    before, after : str
        Methods shown as "before" and "after" calibration.
    formatted : bool
        If true, cells are strings ``"0.30 ± 0.01"`` (s, two decimals as published);
        otherwise numeric columns ``(<source>, <stage>, mean|sd)``.

    Returns
    -------
    DataFrame
        Index: tissue (WM, subcortical GM, cortical GM; named ``tissue`` in the numeric table only).
        Columns: ``("in vivo (Saunders et al. 2025)", "before"|"after")`` from :data:`SEED_RMSE` and
        ``("simulated (this book)", "before"|"after")`` from ``summary``.
    """
    _check_columns(summary, ("method", "tissue", "rmse_mean", "rmse_sd"), "summary")
    vivo, sim = "in vivo (Saunders et al. 2025)", "simulated (this book)"
    cols = pd.MultiIndex.from_product([[vivo, sim], ["before", "after"], ["mean", "sd"]])
    table = pd.DataFrame(index=pd.Index(TISSUES, name="tissue"), columns=cols, dtype=float)
    indexed = summary.set_index(["method", "tissue"])
    for tissue in TISSUES:
        for stage, method in (("before", before), ("after", after)):
            table.loc[tissue, (vivo, stage, "mean")], table.loc[tissue, (vivo, stage, "sd")] = SEED_RMSE[tissue][stage]
            if (method, tissue) in indexed.index:
                row = indexed.loc[(method, tissue)]
                table.loc[tissue, (sim, stage, "mean")] = row["rmse_mean"]
                table.loc[tissue, (sim, stage, "sd")] = row["rmse_sd"]
    if not formatted:
        return table
    # unnamed index: pandas gives a named one an HTML header row of its own, empty but for "tissue"
    out = pd.DataFrame(index=pd.Index(TISSUES), columns=pd.MultiIndex.from_product([[vivo, sim], ["before", "after"]]))
    for source in (vivo, sim):
        for stage in ("before", "after"):
            m, s = table[(source, stage, "mean")], table[(source, stage, "sd")]
            out[(source, stage)] = [f"{a:.2f} ± {b:.2f}" if np.isfinite(a) else "n/a" for a, b in zip(m, s)]
    return out


#: Label of the seed's published numbers in :func:`seed_comparison_rows`.
SEED_VIVO_LABEL = "in vivo (Saunders et al. 2025)"
#: The method behind each stage of :data:`SEED_RMSE`: before = no calibration, after = the seed's ResNet-18.
SEED_METHODS: dict[str, str] = {"before": "none", "after": "resnet"}


def seed_comparison_rows(
    summaries: Mapping[str, pd.DataFrame], methods: Sequence[str] = ("none", "resnet"), formatted: bool = True,
    decimals: int = 3,
) -> pd.DataFrame:
    """The seed's published RMSE and one block of rows per simulated source (e.g. per calibration input).

    Parameters
    ----------
    summaries : mapping of str to DataFrame
        Source label -> :func:`fold_summary` output (columns ``method``, ``tissue``,
        ``rmse_mean``, ``rmse_sd``), in row order.
    methods : sequence of str
        Methods shown for every source; a source that lacks one (e.g. a network that was not
        trained) gets NaN (``"n/a"`` when formatted).
    formatted : bool
        If true, cells are strings ``"mean ± sd"`` (s): the seed's with two decimals, as
        published, the simulated with ``decimals``. Otherwise numeric columns
        ``(<tissue>, mean|sd)``.
    decimals : int
        Decimals of the simulated cells.

    Returns
    -------
    DataFrame
        Index ``(source, method)``: first :data:`SEED_VIVO_LABEL` with the methods of
        :data:`SEED_METHODS` (``"none"``: before, ``"resnet"``: after calibration, from
        :data:`SEED_RMSE`), then each source of ``summaries`` with ``methods``. Columns: the
        tissues (:data:`TISSUES`).

    Raises
    ------
    ValueError
        A summary lacks a column, or a source is labelled :data:`SEED_VIVO_LABEL`.
    """
    if SEED_VIVO_LABEL in summaries:
        raise ValueError(f"summaries: the label {SEED_VIVO_LABEL!r} is the seed's own row")
    rows, index = [], []
    for stage, method in SEED_METHODS.items():
        index.append((SEED_VIVO_LABEL, method))
        rows.append({(t, k): v for t in TISSUES for k, v in zip(("mean", "sd"), SEED_RMSE[t][stage])})
    for label, summary in summaries.items():
        _check_columns(summary, ("method", "tissue", "rmse_mean", "rmse_sd"), f"summaries[{label!r}]")
        indexed = summary.assign(method=summary["method"].astype(str), tissue=summary["tissue"].astype(str)
                                 ).set_index(["method", "tissue"])
        for method in methods:
            index.append((label, method))
            row = {}
            for t in TISSUES:
                found = (method, t) in indexed.index
                row[(t, "mean")] = float(indexed.loc[(method, t), "rmse_mean"]) if found else np.nan
                row[(t, "sd")] = float(indexed.loc[(method, t), "rmse_sd"]) if found else np.nan
            rows.append(row)
    table = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["source", "method"]),
                         columns=pd.MultiIndex.from_product([list(TISSUES), ["mean", "sd"]]))
    if not formatted:
        return table
    out = pd.DataFrame(index=table.index, columns=list(TISSUES), dtype=object)
    for (source, method), row in table.iterrows():
        places = 2 if source == SEED_VIVO_LABEL else decimals
        for t in TISSUES:
            m, sd = row[(t, "mean")], row[(t, "sd")]
            out.loc[(source, method), t] = f"{m:.{places}f} ± {sd:.{places}f}" if np.isfinite(m) else "n/a"
    return out


def seed_gap_attribution(
    base: pd.DataFrame, other: pd.DataFrame, method: str = "none", stage: str = "before"
) -> pd.DataFrame:
    """Which part of the seed's published RMSE a base simulation and one more error source reach.

    A telescoping split of the seed's fold-mean RMSE ``R_seed`` (:data:`SEED_RMSE`) in RMSE units,
    per tissue, with ``R_base`` the base simulation's fold-mean RMSE and ``R_other`` that of the
    same simulation with one more error source (e.g. the seed code's two-train dictionary)::

        R_seed = R_base + (R_other - R_base) + (R_seed - R_other)

    and the share of the gap ``R_seed - R_base`` that the extra source closes,
    ``(R_other - R_base) / (R_seed - R_base)``. RMSEs of independent sources do not add (their
    squares do, for zero-mean errors, and a bias adds coherently to a bias of the same sign):
    the split reads measured RMSEs in the order given; it is not a decomposition of variance.

    Parameters
    ----------
    base, other : DataFrame
        :func:`fold_summary` outputs (``method``, ``tissue``, ``rmse_mean``).
    method : str
        The method compared (``"none"``: before calibration).
    stage : {"before", "after"}
        The seed's number it is compared with.

    Returns
    -------
    DataFrame
        Index: tissue. ``seed``, ``base``, ``other`` (RMSE, s); ``added`` = other - base,
        ``remaining`` = seed - other, ``gap`` = seed - base (s); ``base_share``, ``added_share``,
        ``remaining_share`` (fractions of ``seed``, summing to 1); ``gap_closed`` = added / gap
        (NaN unless ``gap`` > 0: where the base already reaches the seed's RMSE there is no gap
        to close).

    Raises
    ------
    ValueError
        Unknown ``stage``, a missing column, or a summary without ``method`` in a tissue.
    """
    if stage not in SEED_METHODS:
        raise ValueError(f"stage must be one of {list(SEED_METHODS)}, got {stage!r}")
    values = {}
    for name, summary in (("base", base), ("other", other)):
        _check_columns(summary, ("method", "tissue", "rmse_mean"), name)
        indexed = summary.assign(method=summary["method"].astype(str), tissue=summary["tissue"].astype(str)
                                 ).set_index(["method", "tissue"])["rmse_mean"]
        missing = [t for t in TISSUES if (method, t) not in indexed.index]
        if missing:
            raise ValueError(f"{name} has no {method!r} rows for tissues {missing}")
        values[name] = np.array([float(indexed[(method, t)]) for t in TISSUES])
    seed = np.array([SEED_RMSE[t][stage][0] for t in TISSUES])
    b, o = values["base"], values["other"]
    gap = seed - b
    with np.errstate(divide="ignore", invalid="ignore"):
        closed = np.where(gap > 0, (o - b) / gap, np.nan)
    return pd.DataFrame(
        {"seed": seed, "base": b, "other": o, "added": o - b, "remaining": seed - o, "gap": gap,
         "base_share": b / seed, "added_share": (o - b) / seed, "remaining_share": (seed - o) / seed,
         "gap_closed": closed},
        index=pd.Index(TISSUES, name="tissue"),
    )


def binned_error(
    table: pd.DataFrame, value: str = "error_b1", by: str = "b1_true", bins: Sequence[float] | int = 10
) -> pd.DataFrame:
    """Median and quartiles of ``value`` in bins of ``by``, per tissue and estimator.

    Parameters
    ----------
    table : DataFrame
        :func:`qt1lib.workflow.b1_voxel_table` output (columns ``tissue``, ``estimator``, ``label``, ``by``, ``value``).
    value, by : str
        Columns.
    bins : int or sequence of float
        Bin edges, or the number of equal-width bins over the range of ``by``.

    Returns
    -------
    DataFrame
        ``tissue``, ``estimator``, ``label``, ``bin_centre``, ``median``, ``q25``, ``q75``, ``n``;
        bins with fewer than 20 voxels are dropped.
    """
    for col in ("tissue", "estimator", "label", value, by):
        if col not in table.columns:
            raise ValueError(f"table lacks column {col!r}")
    edges = np.linspace(table[by].min(), table[by].max(), int(bins) + 1) if np.isscalar(bins) else np.asarray(bins, float)
    centres = (edges[:-1] + edges[1:]) / 2
    df = table.assign(_bin=pd.cut(table[by], edges, labels=False, include_lowest=True)).dropna(subset=["_bin", value])
    g = df.groupby(["tissue", "estimator", "label", "_bin"], observed=True)[value]
    out = g.agg(median="median", q25=lambda x: x.quantile(0.25), q75=lambda x: x.quantile(0.75), n="size").reset_index()
    out["bin_centre"] = centres[out["_bin"].astype(int)]
    return out[out["n"] >= 20].drop(columns="_bin").reset_index(drop=True)


def b1_slope_table(table: pd.DataFrame, value: str = "error_b1", by: str = "b1_true") -> pd.DataFrame:
    """Least-squares slope of ``value`` against ``by`` per estimator and tissue.

    For ``value="error_b1"`` and ``by="b1_true"`` the slope is the cohort's T1 error per unit of
    B1+ (s), the voxelwise counterpart of the first-order sensitivity (:func:`qt1lib.estimate.b1_sensitivity.b1_sensitivity`, which is minus the slope for a
    reading at nominal B1).

    Returns
    -------
    DataFrame
        ``estimator``, ``label``, ``tissue``, ``slope`` (units of ``value`` per unit of ``by``),
        ``intercept`` (at ``by = 1``), ``rms`` (of ``value``), ``n``.
    """
    for col in ("tissue", "estimator", "label", value, by):
        if col not in table.columns:
            raise ValueError(f"table lacks column {col!r}")
    rows = []
    for (name, label, tissue), df in table.dropna(subset=[value, by]).groupby(["estimator", "label", "tissue"], sort=False):
        x, y = df[by].to_numpy(float) - 1.0, df[value].to_numpy(float)
        slope, intercept = np.polyfit(x, y, 1) if len(df) > 2 else (np.nan, np.nan)
        rows.append({"estimator": name, "label": label, "tissue": tissue, "slope": slope, "intercept": intercept,
                     "rms": float(np.sqrt(np.mean(y**2))), "n": len(df)})
    return pd.DataFrame(rows)


def compare_methods(
    summary: pd.DataFrame, method: str = "resnet", others: tuple[str, ...] = ("none", "global_linear", "tissue_linear"),
    metric: str = "rmse_mean",
) -> pd.DataFrame:
    """Whether ``method`` has a lower fold-mean metric than each other method, per tissue.

    Parameters
    ----------
    summary : DataFrame
        :func:`fold_summary` output.
    method : str
        The method under test.
    others : tuple of str
        Methods it is compared with.
    metric : str
        Column of ``summary`` (lower is better).

    Returns
    -------
    DataFrame
        ``tissue``, ``other``, ``value`` (of ``method``), ``other_value``, ``difference``
        (``value - other_value``), ``relative`` (difference / other_value), ``lower`` (bool).
    """
    indexed = summary.set_index(["method", "tissue"])[metric]
    rows = []
    for tissue in dict.fromkeys(summary["tissue"].astype(str)):
        for other in others:
            v, o = float(indexed[(method, tissue)]), float(indexed[(other, tissue)])
            rows.append({"tissue": tissue, "other": other, "value": v, "other_value": o, "difference": v - o,
                         "relative": (v - o) / o if o else np.nan, "lower": bool(v < o)})
    return pd.DataFrame(rows)


def mixed_model_cell_means(model: MixedModelResult) -> pd.DataFrame:
    """Mean absolute error per method and tissue predicted by the fixed effects of :func:`mixed_model`.

    With treatment coding, the cell mean of method ``m`` in tissue ``t`` is the sum of the
    intercept, the main effects of ``m`` and ``t`` and their interaction (zero terms for the
    reference levels), i.e. the fixed-effect prediction for a typical subject.

    Returns
    -------
    DataFrame
        ``method``, ``tissue``, ``mae`` (s), ``se`` (s; from the fixed-effect covariance).
    """
    fit = model.result
    params = fit.fe_params
    cov = fit.cov_params().loc[params.index, params.index]
    data = fit.model.data.frame
    methods = list(data["method"].cat.categories)
    tissues = list(data["tissue"].cat.categories)
    rows = []
    for m in methods:
        for t in tissues:
            terms = ["Intercept"]
            if m != methods[0]:
                terms.append(f"C(method)[T.{m}]")
            if t != tissues[0]:
                terms.append(f"C(tissue)[T.{t}]")
            if m != methods[0] and t != tissues[0]:
                terms.append(f"C(method)[T.{m}]:C(tissue)[T.{t}]")
            w = pd.Series(0.0, index=params.index)
            w[terms] = 1.0
            rows.append({"method": m, "tissue": t, "mae": float(w @ params), "se": float(np.sqrt(w @ cov @ w))})
    return pd.DataFrame(rows)
