"""Tests of qt1lib.estimate.timing: the simulated volume and the timing table (not the times)."""

import numpy as np
import pytest

from qt1lib.estimate.timing import REFERENCE, simulate_volume, time_estimators
from qt1lib.protocols import SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals


def test_simulated_volume_is_reproducible_and_follows_the_signal_model():
    a, b = simulate_volume(300, seed=4), simulate_volume(300, seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["gre"].shape == (3, 300)
    assert (a["t1"].min() >= 0.6) and (a["t1"].max() <= 4.5)
    # noise-free part: |y| / |g| is the same scale for the three readouts of a voxel
    g = gre_signals(a["t1"], SEED_7T_MP3RAGE, a["b1"])
    y = simulate_volume(300, sigma=1e-12, seed=4)["gre"]
    k = np.argmax(np.abs(g), axis=0)
    scale = np.take_along_axis(y / g, k[None], axis=0)
    assert np.all((np.abs(scale) >= 0.6) & (np.abs(scale) <= 1.0))
    np.testing.assert_allclose(y, scale * g, rtol=0, atol=1e-9)


def test_table_has_the_reference_at_ratio_one_and_one_row_per_estimator():
    table = time_estimators(["map_exact_mp2rage_nob1"], n_voxels=400, memory=False)
    assert list(table["estimator"]) == [REFERENCE, "map_exact_mp2rage_nob1"]
    assert table.loc[0, "ratio"] == 1.0
    assert np.all(table["fit_s"] > 0) and table["peak_mib"].isna().all()
    assert np.all(np.isfinite(table["rmse_s"]) & (table["rmse_s"] > 0))


def test_bad_names_and_options():
    with pytest.raises(ValueError, match="lut_fast"):
        time_estimators(["lut_fast"], n_voxels=10)
    with pytest.raises(ValueError, match="not timed"):
        time_estimators(["lut"], n_voxels=10, options={"lut_b1": {}})
    with pytest.raises(ValueError, match="n_voxels"):
        simulate_volume(0)
    with pytest.raises(ValueError, match="sigma"):
        simulate_volume(10, sigma=-1.0)
