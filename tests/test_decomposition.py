"""The cohort re-simulated, the MP2RAGE-IR bias split by source, and the voxel tables of chapters 04 and 05."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qt1lib import stats, tissues
from qt1lib.bids import read_mpnrage, read_sir
from qt1lib.estimate import make_estimator
from qt1lib.estimate.b1_sensitivity import noise_free_reading
from qt1lib.estimate.seed_code_shift import seed_code_shift
from qt1lib.phantom import load_truth
from qt1lib.protocols import SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals
from qt1lib.workflow import (
    TERMS,
    agreement_table,
    b1_voxel_table,
    calibration_subjects,
    cohort_variant,
    decompose_subject,
    decomposition_table,
    open_workspace,
)
from qt1lib.workflow.decomposition import START_LEVEL, TERM_CHAIN, model_reading


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("decomposition")
    return open_workspace(None, root, cohort={"profile": "smoke", "n_subjects": 1}, progress=False)


@pytest.mark.slow
def test_cohort_variant_reproduces_the_written_images(ws):
    images = cohort_variant(ws, "01", noisy=True)
    data, sir = read_mpnrage(ws.bids_dir, "01"), read_sir(ws.bids_dir, "01")
    np.testing.assert_array_equal(images.gre, data.gre)
    np.testing.assert_array_equal(images.sir, sir.images)
    single = cohort_variant(ws, "01", bound_pool=False)
    assert np.all(single.truth.psr == 0)
    with pytest.raises(ValueError, match="subject"):
        cohort_variant(ws, "07")


def test_the_terms_form_one_chain():
    levels = [START_LEVEL[0], *(t.level for t in TERM_CHAIN)]
    assert len(set(levels)) == len(levels) and len(set(TERMS)) == len(TERMS) == len(TERM_CHAIN)
    assert TERMS.index("estimator") + 1 == TERMS.index("estimator model") == TERMS.index("B1") - 1
    assert TERMS.index("MT") + 1 == TERMS.index("inversion") == TERMS.index("estimator") - 1
    assert TERMS.index("IR model") + 1 == TERMS.index("SIR readout") == TERMS.index("IR noise") - 1


def test_model_reading_is_the_seed_code_reading_and_none_for_the_acquisition():
    t1 = np.array([0.8, 1.349, 1.939, 2.5])
    b1 = np.array([0.8, 1.0, 1.1, 1.25])
    gre = (0.6 - 0.2j) * gre_signals(t1, SEED_7T_MP3RAGE, b1)
    for name in ("lut", "map_seed_mp2rage", "map_exact_mp3rage"):
        assert model_reading(make_estimator(name, SEED_7T_MP3RAGE, 0.001), gre, SEED_7T_MP3RAGE, b1) is None
    code = make_estimator("map_seed_code_mp2rage", SEED_7T_MP3RAGE, 0.001)
    for b1_used, reading in ((None, "lut_seed_code"), (b1, "lut_b1_seed_code")):
        got = model_reading(code, gre, SEED_7T_MP3RAGE, b1_used)
        want = make_estimator(reading, SEED_7T_MP3RAGE).fit(gre, b1=b1_used).map
        np.testing.assert_allclose(got, want, atol=1e-9)
    # the model term at nominal B1 is the shift table's two-train part (signals simulated there anew)
    term = 1e3 * (model_reading(code, gre, SEED_7T_MP3RAGE, None) - noise_free_reading(gre, SEED_7T_MP3RAGE, (1, 2)))
    table = seed_code_shift(t1, b1).set_index(["t1", "b1"]).model_part_ms
    np.testing.assert_allclose(term, [table[(t, b)] for t, b in zip(t1, b1)], atol=1e-6)
    assert (term < 0).all()


@pytest.mark.slow
def test_decomposition_adds_up_and_mt_shortens_t1(ws):
    names = ["map_seed_mp2rage", "map_exact_mp2rage", "map_seed_code_mp2rage"]
    d = decompose_subject(ws, "01", names)
    for name, stack in d["terms"].items():
        assert stack.shape == (len(TERMS), *d["dseg"].shape)
        ok = np.all(np.isfinite(stack), axis=0) & np.isfinite(d["total"][name])
        assert ok.sum() > 1000
        np.testing.assert_allclose(stack[:, ok].sum(axis=0), d["total"][name][ok], atol=1e-4)
    table = decomposition_table(ws, ["01"], names)
    assert set(table.term) == {*TERMS, "total"} and set(table.tissue) == set(tissues.names())
    sums = table[table.term != "total"].groupby(["estimator", "tissue"])["mean"].sum()
    totals = table[table.term == "total"].set_index(["estimator", "tissue"])["mean"]
    np.testing.assert_allclose(sums.sort_index(), totals.sort_index(), atol=1e-5)
    assert (table[table.term == "MT"]["mean"] < 0).all()  # the two-pool physics makes a single-pool reading shorter
    # literature physics: the data's Bloch efficiency (about 0.9 at T2f 45 ms) exceeds the estimators' 0.84, which
    # reads long-T1 tissue shorter still, so removing the mismatch shortens the reading: a positive term; the SIR
    # readout's residual shortens the IR T1, a positive term with the sign of an error of the reference
    for term in ("inversion", "SIR readout"):
        assert (table[table.term == term]["mean"] > 0).all(), term
    exact_b1 = table[(table.term == "B1") & (table.estimator == "map_exact_mp2rage")]
    seed_b1 = table[(table.term == "B1") & (table.estimator == "map_seed_mp2rage")]
    assert exact_b1["rms"].max() < seed_b1["rms"].min()  # a B1 map removes most of the B1 error
    model = table[table.term == "estimator model"].set_index(["estimator", "tissue"])
    assert (model.loc[["map_seed_mp2rage", "map_exact_mp2rage"], "rms"] == 0).all()  # they model the acquisition
    code = model.loc["map_seed_code_mp2rage", "mean"]
    assert (code < 0).all() and code["WM"] > code["cortical GM"]  # the two-train model reads short, more at long T1
    decomposition_table(ws, ["01"], names)  # a rerun reads the terms back
    assert [e.outcome for e in ws.store.events if e.step == "bias_terms"][-len(names):] == ["hit"] * len(names)


@pytest.mark.slow
def test_b1_voxel_table(ws):
    names = ["lut", "lut_b1"]
    table = b1_voxel_table(ws, ["01"], names, max_voxels=500)
    assert set(table.estimator) == set(names) and (table.groupby("estimator").size() == 500).all()
    np.testing.assert_allclose(table.error, table.t1 - table.t1_true)
    truth = load_truth(ws.bids_dir, "01")
    assert table.b1_true.between(truth["b1"].min(), truth["b1"].max()).all()
    corrected = table[table.estimator == "lut_b1"]
    assert np.median(np.abs(corrected.error_b1 / corrected.t1_b1_perfect)) < 0.02  # only the map's error and noise
    binned = stats.binned_error(table, bins=4)
    assert {"median", "q25", "q75", "bin_centre"} <= set(binned.columns) and (binned.n >= 20).all()


def test_b1_slope_table_recovers_a_known_slope():
    rng = np.random.default_rng(3)
    b1 = rng.uniform(0.6, 1.4, 400)
    table = pd.DataFrame({"estimator": "lut", "label": "LUT", "tissue": "WM", "b1_true": b1,
                          "error_b1": -0.5 * (b1 - 1) + 0.02 + rng.normal(0, 1e-3, b1.size)})
    row = stats.b1_slope_table(table).iloc[0]
    assert row.slope == pytest.approx(-0.5, abs=0.01) and row.intercept == pytest.approx(0.02, abs=1e-3)


@pytest.mark.slow
def test_agreement_table_matches_the_calibration_voxels(ws):
    table = agreement_table(ws, ["01"], ["map_seed_mp2rage"])
    data = calibration_subjects(ws)["sub-01"]
    finite = table[np.isfinite(table.estimate)]
    assert len(finite) == data.mask.sum()
    np.testing.assert_allclose(np.sort(finite.reference), np.sort(data.target[data.mask]))
