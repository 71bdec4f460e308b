"""Tests of qt1lib.stats (against scipy / statsmodels / hand formulas) and qt1lib.plots."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import statsmodels.formula.api as smf  # noqa: E402
from scipy import stats as sps  # noqa: E402

from qt1lib import plots, stats  # noqa: E402

TISSUES = ["WM", "subcortical GM", "cortical GM"]
METHODS = ["none", "resnet"]
BIAS = {("none", "WM"): -0.30, ("none", "subcortical GM"): -0.25, ("none", "cortical GM"): -0.35,
        ("resnet", "WM"): 0.01, ("resnet", "subcortical GM"): -0.02, ("resnet", "cortical GM"): 0.03}


def voxel_frame(seed: int = 0, n: int = 300) -> pd.DataFrame:
    """Four subjects (= folds), two methods, three tissues, with known biases and a subject effect."""
    rng = np.random.default_rng(seed)
    rows = []
    for fold in range(1, 5):
        subject_effect = rng.normal(0, 0.02)
        for tissue in TISSUES:
            reference = rng.uniform(1.0, 2.5, n)
            for method in METHODS:
                sd = 0.1 if method == "none" else 0.05
                estimate = reference + BIAS[method, tissue] + subject_effect + rng.normal(0, sd, n)
                rows.append(pd.DataFrame({"fold": fold, "subject": f"sub-{fold:02d}", "method": method,
                                          "tissue": tissue, "estimate": estimate, "reference": reference}))
    return pd.concat(rows, ignore_index=True)


def test_error_metrics_against_scipy():
    rng = np.random.default_rng(1)
    ref = rng.uniform(1, 2, 500)
    est = 0.8 * ref + 0.3 + rng.normal(0, 0.05, 500)
    est[3] = np.nan
    m = stats.error_metrics(est, ref)
    keep = np.isfinite(est)
    d = est[keep] - ref[keep]
    assert m["n"] == 499
    assert m["bias"] == pytest.approx(np.mean(d), rel=1e-12)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-12)
    assert m["mae"] == pytest.approx(np.mean(np.abs(d)), rel=1e-12)
    assert m["pearson_r"] == pytest.approx(sps.pearsonr(est[keep], ref[keep]).statistic, rel=1e-10)


def test_tissue_metrics_against_groupwise_scipy():
    df = voxel_frame()
    m = stats.tissue_metrics(df)
    assert len(m) == 4 * 2 * 3
    for _, row in m.sample(6, random_state=0).iterrows():
        g = df[(df.fold == row.fold) & (df.method == row.method) & (df.tissue == row.tissue)]
        d = g.estimate - g.reference
        assert row.n == len(g)
        assert row.rmse == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-10)
        assert row.bias == pytest.approx(d.mean(), abs=1e-12)
        assert row.pearson_r == pytest.approx(sps.pearsonr(g.estimate, g.reference).statistic, rel=1e-8)


def test_fold_summary_mean_and_sample_sd():
    m = stats.tissue_metrics(voxel_frame())
    s = stats.fold_summary(m)
    row = s[(s.method == "none") & (s.tissue == "WM")].iloc[0]
    folds = m[(m.method == "none") & (m.tissue == "WM")].rmse.to_numpy()
    assert row.n_folds == 4
    assert row.rmse_mean == pytest.approx(folds.mean())
    assert row.rmse_sd == pytest.approx(np.sqrt(np.sum((folds - folds.mean()) ** 2) / 3))
    # the simulated biases come back as the fold-mean bias
    assert row.bias_mean == pytest.approx(BIAS["none", "WM"], abs=0.03)


def exact_wilcoxon_p_all_positive(n: int) -> float:
    """Two-sided exact p of W+ = n(n+1)/2 by enumerating the 2^n sign patterns of ranks 1..n."""
    w = [sum(r for r, s in zip(range(1, n + 1), signs) if s) for signs in itertools.product([0, 1], repeat=n)]
    top = n * (n + 1) // 2
    return sum(x >= top for x in w) / len(w) + sum(x <= 0 for x in w) / len(w)


@pytest.mark.parametrize("n", [3, 4, 6])
def test_wilcoxon_min_p_by_enumeration(n):
    assert stats.wilcoxon_min_p(n) == pytest.approx(exact_wilcoxon_p_all_positive(n))


def test_paired_tests_against_scipy_and_four_fold_floor():
    m = stats.tissue_metrics(voxel_frame())
    t = stats.paired_tests(m, before="none", after="resnet")
    assert list(t.tissue) == TISSUES
    for _, row in t.iterrows():
        g = m[m.tissue == row.tissue].pivot(index="fold", columns="method", values="rmse")
        ref_t = sps.ttest_rel(g["resnet"], g["none"])
        ref_w = sps.wilcoxon(g["resnet"], g["none"], method="exact")
        assert row.t == pytest.approx(ref_t.statistic) and row.p_t == pytest.approx(ref_t.pvalue)
        assert row.p_wilcoxon == pytest.approx(ref_w.pvalue)
        # every fold improves, so the exact test sits at its floor 2 / 2^4
        assert row.p_wilcoxon == pytest.approx(row.p_wilcoxon_min) == pytest.approx(exact_wilcoxon_p_all_positive(4))
        assert row.mean_difference < 0
    with pytest.raises(ValueError, match="method 'unet'"):
        stats.paired_tests(m, after="unet")


# statsmodels flags a small random-effect variance (here 0.02^2 s^2) as "on the boundary"; the
# test checks that it is recovered.
@pytest.mark.filterwarnings("ignore:The MLE may be on the boundary")
def test_mixed_model_recovers_known_effects_and_matches_statsmodels():
    rng = np.random.default_rng(3)
    subject_effects = []
    mu = {("none", "WM"): 0.30, ("none", "cortical GM"): 0.36, ("resnet", "WM"): 0.11, ("resnet", "cortical GM"): 0.17}
    rows = []
    for s in range(6):
        u = rng.normal(0, 0.02)
        subject_effects.append(u)
        for tissue in ("WM", "cortical GM"):
            ref = rng.uniform(1, 2, 400)
            for method in METHODS:
                err = mu[method, tissue] + u + rng.normal(0, 0.01, 400)  # positive: |error| = error
                rows.append(pd.DataFrame({"subject": f"s{s}", "method": method, "tissue": tissue,
                                          "estimate": ref + err, "reference": ref}))
    df = pd.concat(rows, ignore_index=True)
    res = stats.mixed_model(df, reference_method="none", max_voxels_per_cell=None)
    coef = dict(zip(res.table.term, res.table.coef))
    assert coef["Intercept"] == pytest.approx(0.30, abs=0.02)
    assert coef["C(method)[T.resnet]"] == pytest.approx(0.11 - 0.30, abs=0.002)
    assert coef["C(tissue)[T.cortical GM]"] == pytest.approx(0.06, abs=0.002)
    assert coef["C(method)[T.resnet]:C(tissue)[T.cortical GM]"] == pytest.approx(0.0, abs=0.003)
    direct = df.assign(abs_error=(df.estimate - df.reference).abs())
    ref = smf.mixedlm("abs_error ~ C(method) * C(tissue)", direct, groups=direct["subject"]).fit(reml=True)
    np.testing.assert_allclose(res.table.coef, ref.fe_params.to_numpy(), rtol=1e-6, atol=1e-9)
    assert res.n_rows == len(df)
    assert float(res.result.cov_re.iloc[0, 0]) == pytest.approx(np.var(subject_effects, ddof=1), rel=0.2)
    sub = stats.mixed_model(df, max_voxels_per_cell=50, seed=1)
    assert sub.n_rows == 6 * 2 * 2 * 50


def test_bland_altman_hand_formula():
    est = np.array([1.0, 1.5, 2.0, np.nan, 2.5])
    ref = np.array([1.1, 1.3, 2.1, 1.0, 2.2])
    ba = stats.bland_altman(est, ref)
    d = [1.0 - 1.1, 1.5 - 1.3, 2.0 - 2.1, 2.5 - 2.2]
    mean = sum(d) / 4
    sd = (sum((x - mean) ** 2 for x in d) / 3) ** 0.5
    assert ba.n == 4
    assert ba.mean_difference == pytest.approx(mean)
    assert ba.sd_difference == pytest.approx(sd)
    assert (ba.lower, ba.upper) == pytest.approx((mean - 1.96 * sd, mean + 1.96 * sd))
    with pytest.raises(ValueError, match="two finite pairs"):
        stats.bland_altman([1.0, np.nan], [1.0, 2.0])


def test_seed_comparison_table_labels_sources():
    s = stats.fold_summary(stats.tissue_metrics(voxel_frame()))
    table = stats.seed_comparison_table(s)
    vivo, sim = "in vivo (Saunders et al. 2025)", "simulated (this book)"
    assert table.loc["WM", (vivo, "before")] == "0.30 ± 0.01"
    assert table.loc["cortical GM", (vivo, "after")] == "0.17 ± 0.03"
    numeric = stats.seed_comparison_table(s, formatted=False)
    row = s[(s.method == "resnet") & (s.tissue == "subcortical GM")].iloc[0]
    assert numeric.loc["subcortical GM", (sim, "after", "mean")] == pytest.approx(row.rmse_mean)
    assert table.loc["subcortical GM", (sim, "after")] == f"{row.rmse_mean:.2f} ± {row.rmse_sd:.2f}"
    assert table.to_html().count("<tr") == 2 + 3  # two header rows (source, stage), no index-name row


def summary_of(rmse: dict[tuple[str, str], float]) -> pd.DataFrame:
    """A fold_summary-like table with the given fold-mean RMSEs (sd 0.01)."""
    return pd.DataFrame([{"method": m, "tissue": t, "rmse_mean": v, "rmse_sd": 0.01} for (m, t), v in rmse.items()])


def test_seed_comparison_rows_put_the_seed_first_and_one_block_per_source():
    a = summary_of({("none", t): 0.1 + 0.01 * i for i, t in enumerate(TISSUES)}
                   | {("resnet", t): 0.05 for t in TISSUES})
    b = summary_of({("none", t): 0.2 for t in TISSUES})  # no network trained on this source
    table = stats.seed_comparison_rows({"A": a, "B": b}, methods=("none", "resnet"), formatted=False)
    vivo = stats.SEED_VIVO_LABEL
    assert list(table.index) == [(vivo, "none"), (vivo, "resnet"), ("A", "none"), ("A", "resnet"),
                                 ("B", "none"), ("B", "resnet")]
    assert table.loc[(vivo, "none"), ("WM", "mean")] == 0.30  # Saunders et al. 2025, abstract
    assert table.loc[(vivo, "resnet"), ("cortical GM", "sd")] == 0.03
    assert table.loc[("A", "none"), ("cortical GM", "mean")] == pytest.approx(0.12)
    assert np.isnan(table.loc[("B", "resnet"), ("WM", "mean")])
    shown = stats.seed_comparison_rows({"A": a, "B": b}, decimals=3)
    assert shown.loc[(vivo, "resnet"), "subcortical GM"] == "0.10 ± 0.02"
    assert shown.loc[("A", "none"), "subcortical GM"] == "0.110 ± 0.010"
    assert shown.loc[("B", "resnet"), "WM"] == "n/a"
    with pytest.raises(ValueError, match="seed's own row"):
        stats.seed_comparison_rows({vivo: a})
    with pytest.raises(ValueError, match="rmse_sd"):
        stats.seed_comparison_rows({"A": a.drop(columns="rmse_sd")})


def test_seed_gap_attribution_telescopes_to_the_seeds_rmse():
    seed = {t: stats.SEED_RMSE[t]["before"][0] for t in TISSUES}
    base = {("none", "WM"): 0.10, ("none", "subcortical GM"): 0.20, ("none", "cortical GM"): 0.40}
    other = {("none", "WM"): 0.15, ("none", "subcortical GM"): 0.23, ("none", "cortical GM"): 0.42}
    out = stats.seed_gap_attribution(summary_of(base), summary_of(other))
    for t in TISSUES:
        row = out.loc[t]
        b, o = base[("none", t)], other[("none", t)]
        assert row["seed"] == seed[t] and row["added"] == pytest.approx(o - b)
        assert row["base_share"] + row["added_share"] + row["remaining_share"] == pytest.approx(1.0)
        assert row["remaining"] == pytest.approx(seed[t] - o)
    # WM: the gap 0.30 - 0.10 = 0.20 s, of which 0.05 s is closed
    assert out.loc["WM", "gap_closed"] == pytest.approx(0.05 / 0.20)
    # cortical GM: the base (0.40 s) already exceeds the seed's 0.36 s: no gap to close
    assert out.loc["cortical GM", "gap"] < 0 and np.isnan(out.loc["cortical GM", "gap_closed"])
    after = stats.seed_gap_attribution(summary_of({("resnet", t): 0.05 for t in TISSUES}),
                                       summary_of({("resnet", t): 0.06 for t in TISSUES}), "resnet", "after")
    assert after.loc["WM", "seed"] == 0.11 and after.loc["WM", "gap_closed"] == pytest.approx(0.01 / 0.06)
    with pytest.raises(ValueError, match="stage"):
        stats.seed_gap_attribution(summary_of(base), summary_of(other), stage="during")
    with pytest.raises(ValueError, match="no 'resnet' rows"):
        stats.seed_gap_attribution(summary_of(base), summary_of(other), method="resnet")


# ---------------------------------------------------------------------------- plots
def test_bland_altman_plot_draws_the_limits():
    df = voxel_frame()
    g = df[(df.method == "none") & (df.tissue == "WM")]
    ax = plots.bland_altman_plot(g.estimate, g.reference, max_points=100)
    ba = stats.bland_altman(g.estimate, g.reference)
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines())
    assert levels == pytest.approx(sorted([ba.lower, ba.mean_difference, ba.upper, 0.0]))
    assert len(ax.collections[0].get_offsets()) == 100
    plt.close(ax.figure)


def test_tissue_rmse_bars_heights_are_fold_means():
    m = stats.tissue_metrics(voxel_frame())
    fig = plots.tissue_rmse_bars(m, method_names={"none": "no calibration", "resnet": "ResNet-18"})
    heights = sorted(p.get_height() for p in fig.axes[0].patches if p.get_height() > 0)
    expected = sorted(m.groupby(["method", "tissue"]).rmse.mean())
    assert heights == pytest.approx(expected)
    fig.canvas.draw()
    legend, axes = fig.axes[0].get_legend().get_window_extent(), fig.axes[0].get_window_extent()
    assert legend.y1 <= axes.y0  # the legend covers no bar
    plt.close(fig)


def test_figure_helpers_build():
    hist = pd.DataFrame({"fold": [1, 1, 2, 2], "epoch": [1, 2, 1, 2], "train_loss": [1.0, 0.5, 0.9, 0.4],
                         "val_loss": [1.1, 0.6, 1.0, 0.7], "best": [False, True, False, True]})
    fig = plots.training_curves(hist)
    assert fig.axes[0].get_yscale() == "log"
    plt.close(fig)
    ref = np.random.default_rng(0).uniform(1, 2, (6, 5, 4))
    fig = plots.maps_side_by_side({"none": ref - 0.3, "resnet": ref + 0.01}, ref)
    assert len(fig.axes) == 2 * 3 + 2  # two rows of 3 panels + 2 colour bars
    plt.close(fig)
    fig = plots.bland_altman_grid(voxel_frame(n=50))
    assert len(fig.axes) == 2 * 3
    plt.close(fig)
    with pytest.raises(ValueError, match="shape"):
        plots.maps_side_by_side({"x": ref[:-1]}, ref)
