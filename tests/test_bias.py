"""B1+ sensitivity of the estimators and the decomposition of the MP2RAGE-IR bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qt1lib import bias as B
from qt1lib import pipeline as P
from qt1lib.bids import read_mpnrage, read_sir
from qt1lib.estimate.lut import lut_t1
from qt1lib.phantom import load_truth
from qt1lib.protocols import SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals, uni
from qt1lib.stats import TISSUE_LABELS


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    bids = tmp_path_factory.mktemp("bias") / "bids"
    P.ensure_dataset(bids, "smoke", 0, n_subjects=1, progress=False)
    return bids


# ------------------------------------------------------------------------------ B1 sensitivity
@pytest.mark.parametrize("pair", [(1, 2), (1, 3)])
def test_b1_sensitivity_predicts_the_nominal_reading_error(pair):
    """A table read at nominal B1 from data at B1 = 1 + d errs by -dT1/dB1 * d to first order."""
    t1 = np.array([0.8, 1.2, 1.8, 2.5])
    d = 0.01
    g = gre_signals(t1, SEED_7T_MP3RAGE, 1 + d)
    read = lut_t1(uni(g[pair[0] - 1], g[pair[1] - 1]), SEED_7T_MP3RAGE, pair=pair)
    predicted = -B.b1_sensitivity(t1, SEED_7T_MP3RAGE, pair) * d
    np.testing.assert_allclose(read - t1, predicted, rtol=0.05)
    assert np.all(predicted < 0)  # more flip -> a reading that assumes nominal flip sees shorter T1


def test_b1_sensitivity_rejects_bad_input():
    with pytest.raises(ValueError, match="t1"):
        B.b1_sensitivity(np.array([-1.0]), SEED_7T_MP3RAGE)
    with pytest.raises(ValueError, match="pair"):
        B.b1_sensitivity(np.array([1.0]), SEED_7T_MP3RAGE, (1, 4))


def test_b1_error_grid_noise_free():
    t1, b1 = [0.9, 1.5], [0.8, 1.0, 1.25]
    grid = B.b1_error_grid(
        t1, b1, SEED_7T_MP3RAGE, 0.001, P.PipelineConfig(), ["lut", "lut_b1", "map_exact_mp2rage"], b1_map_errors=[0.0, 0.05]
    )
    assert len(grid) == 3 * 2 * len(t1) * len(b1)
    exact_b1 = grid[(grid.estimator == "lut_b1") & (grid.b1_map_error == 0.0)]
    assert np.abs(exact_b1.rel_error).max() < 2e-3  # the B1-corrected table with a perfect map
    nominal = grid[(grid.estimator == "lut") & (grid.b1_map_error == 0.0)]
    for row in nominal.itertuples():  # independent: simulate and read with the nominal table
        g = gre_signals(np.array([row.t1]), SEED_7T_MP3RAGE, row.b1)
        assert row.t1_est == pytest.approx(float(lut_t1(uni(g[0], g[1]), SEED_7T_MP3RAGE)[0]), rel=1e-6)
    # the B1-unaware table does not depend on the map error; the corrected ones do
    lut = grid[grid.estimator == "lut"].pivot_table(index=["t1", "b1"], columns="b1_map_error", values="t1_est")
    np.testing.assert_array_equal(lut[0.0], lut[0.05])
    wrong_map = grid[(grid.estimator == "map_exact_mp2rage") & (grid.b1_map_error == 0.05)]
    assert (wrong_map.rel_error > 0).all()  # a map that overstates B1 -> longer T1
    with pytest.raises(ValueError, match="b1_map_errors"):
        B.b1_error_grid(t1, b1, SEED_7T_MP3RAGE, 0.001, P.PipelineConfig(), ["lut"], b1_map_errors=[])


def test_b1_error_grid_noise_spreads_the_estimates():
    grid = B.b1_error_grid([1.2], [1.0], SEED_7T_MP3RAGE, 0.002, P.PipelineConfig(), ["map_exact_mp2rage_nob1"], n_noise=300)
    row = grid.iloc[0]
    assert row.t1_sd > 0 and abs(row.rel_error) < 3 * row.t1_sd / np.sqrt(300) / 1.2 + 0.01
    assert 0.9 < row.valid <= 1.0


# ------------------------------------------------------------------------------ cohort
@pytest.mark.slow
def test_cohort_variant_reproduces_the_written_images(cohort):
    images = B.cohort_variant(cohort, "01", noisy=True)
    data, sir = read_mpnrage(cohort, "01"), read_sir(cohort, "01")
    np.testing.assert_array_equal(images.gre, data.gre)
    np.testing.assert_array_equal(images.sir, sir.images)
    single = B.cohort_variant(cohort, "01", bound_pool=False)
    assert np.all(single.truth.psr == 0)
    with pytest.raises(ValueError, match="subject"):
        B.cohort_variant(cohort, "07")


@pytest.mark.slow
def test_decomposition_adds_up_and_mt_shortens_t1(cohort):
    config = P.PipelineConfig()
    d = B.decompose_subject(cohort, "01", config, ["map_seed_mp2rage", "map_exact_mp2rage"], progress=False)
    for name, stack in d["terms"].items():
        assert stack.shape == (len(B.TERMS), *d["dseg"].shape)
        ok = np.all(np.isfinite(stack), axis=0) & np.isfinite(d["total"][name])
        assert ok.sum() > 1000
        np.testing.assert_allclose(stack[:, ok].sum(axis=0), d["total"][name][ok], atol=1e-4)
    table = B.decomposition_table(cohort, ["01"], config, ["map_seed_mp2rage", "map_exact_mp2rage"], progress=False)
    assert set(table.term) == {*B.TERMS, "total"} and set(table.tissue) == set(TISSUE_LABELS.values())
    sums = table[table.term != "total"].groupby(["estimator", "tissue"])["mean"].sum()
    totals = table[table.term == "total"].set_index(["estimator", "tissue"])["mean"]
    np.testing.assert_allclose(sums.sort_index(), totals.sort_index(), atol=1e-5)
    mt = table[table.term == "MT"]
    assert (mt["mean"] < 0).all()  # the two-pool physics makes a single-pool reading shorter
    exact_b1 = table[(table.term == "B1") & (table.estimator == "map_exact_mp2rage")]
    seed_b1 = table[(table.term == "B1") & (table.estimator == "map_seed_mp2rage")]
    assert exact_b1["rms"].max() < seed_b1["rms"].min()  # a B1 map removes most of the B1 error


@pytest.mark.slow
def test_b1_voxel_table(cohort):
    names = ["lut", "lut_b1"]
    table = B.b1_voxel_table(cohort, ["01"], P.PipelineConfig(), names, max_voxels=500, progress=False)
    assert set(table.estimator) == set(names) and (table.groupby("estimator").size() == 500).all()
    np.testing.assert_allclose(table.error, table.t1 - table.t1_true)
    truth = load_truth(cohort, "01")
    assert table.b1_true.between(truth["b1"].min(), truth["b1"].max()).all()
    corrected = table[table.estimator == "lut_b1"]
    assert np.median(np.abs(corrected.error_b1 / corrected.t1_b1_perfect)) < 0.02  # only the map's error and noise
    binned = B.binned_error(table, bins=4)
    assert {"median", "q25", "q75", "bin_centre"} <= set(binned.columns) and (binned.n >= 20).all()


def test_b1_slope_table_recovers_a_known_slope():
    import pandas as pd

    rng = np.random.default_rng(3)
    b1 = rng.uniform(0.6, 1.4, 400)
    table = pd.DataFrame({"estimator": "lut", "label": "LUT", "tissue": "WM", "b1_true": b1,
                          "error_b1": -0.5 * (b1 - 1) + 0.02 + rng.normal(0, 1e-3, b1.size)})
    row = B.b1_slope_table(table).iloc[0]
    assert row.slope == pytest.approx(-0.5, abs=0.01) and row.intercept == pytest.approx(0.02, abs=1e-3)


@pytest.mark.slow
def test_agreement_table_matches_the_calibration_voxels(cohort):
    config = P.PipelineConfig()
    table = B.agreement_table(cohort, ["01"], config, ["map_seed_mp2rage"], progress=False)
    data = P.calibration_subjects(cohort, config, progress=False)["sub-01"]
    finite = table[np.isfinite(table.estimate)]
    assert len(finite) == data.mask.sum()
    np.testing.assert_allclose(np.sort(finite.reference), np.sort(data.target[data.mask]))
