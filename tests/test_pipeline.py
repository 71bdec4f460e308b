"""The whole-brain pipeline: BIDS derivatives, caching, accuracy on a noise-free cohort, calibration data."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qt1lib import pipeline as P
from qt1lib.bids import derivative_path
from qt1lib.io import load_json, save_nifti
from qt1lib.phantom import load_motion, load_truth
from qt1lib.stats import TISSUE_LABELS


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Two subjects of the smoke cohort (noisy, two-pool, with motion)."""
    bids = tmp_path_factory.mktemp("pipeline") / "bids"
    P.ensure_dataset(bids, "smoke", 0, n_subjects=2, progress=False)
    return bids


@pytest.fixture(scope="module")
def noise_free(tmp_path_factory) -> Path:
    """One subject of a noise-free, motion-free, single-pool smoke cohort with an exact B1 map (but smoothed)."""
    bids = tmp_path_factory.mktemp("pipeline-nf") / "bids"
    P.ensure_dataset(
        bids, "smoke", 0, n_subjects=1, snr=np.inf, sir_snr=np.inf, motion=False, bound_pool=False, b1_noise=0.0,
        progress=False,
    )
    return bids


def _count_estimates(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = P.estimate_t1

    def counting(name, *args, **kwargs):
        calls.append(name)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(P, "estimate_t1", counting)
    return calls


# ------------------------------------------------------------------------------ configuration
def test_config_validates_and_digests():
    base = P.PipelineConfig()
    assert base.digest() == P.PipelineConfig().digest()
    assert base.digest() != dataclasses.replace(base, b1_sd=0.03).digest()
    assert P.PipelineConfig.for_profile("paper").seed_map_trials > P.PipelineConfig.for_profile("quick").seed_map_trials
    for bad in ({"sigma": -1.0}, {"seed_map_trials": 0}, {"calibration_input": "nope"}, {"registration_contrast": "x"},
                {"b1_sd": np.nan}, {"scale_prior": "uniform"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            P.PipelineConfig(**bad)
    with pytest.raises(ValueError, match="profile"):
        P.PipelineConfig.for_profile("huge")
    # every estimator's cache parameters name it and exist for every registered estimator
    for name in P.ESTIMATORS:
        assert base.estimator_parameters(name)["estimator"] == name
    assert "b1_sd" in base.estimator_parameters("map_exact_mp3rage")
    assert "b1_sd" not in base.estimator_parameters("map_exact_mp2rage")


def test_noise_sigma_from_rayleigh_background():
    rng = np.random.default_rng(1)
    sigma = 0.01
    noise = sigma * (rng.standard_normal(200_000) + 1j * rng.standard_normal(200_000))
    for background in (1.0, 0.5, 0.2):  # fraction of voxels without signal
        signal = np.where(np.arange(noise.size) < background * noise.size, 0.0, rng.uniform(0.2, 1.0, noise.size))
        estimate = P.estimate_noise_sigma(np.abs(signal + noise))
        assert estimate == pytest.approx(sigma, rel=0.02), background
    assert P.estimate_noise_sigma(np.zeros(100)) == 0.0
    with pytest.raises(ValueError, match="cut"):
        P.estimate_noise_sigma(np.abs(noise), cut=0.1)


def test_estimate_t1_rejects_bad_input():
    from qt1lib.protocols import SEED_7T_MP2RAGE, SEED_7T_MP3RAGE

    g = np.ones((3, 4), dtype=complex)
    with pytest.raises(ValueError, match="unknown estimator"):
        P.estimate_t1("magic", g, SEED_7T_MP3RAGE, 0.001, P.PipelineConfig())
    with pytest.raises(ValueError, match="B1"):
        P.estimate_t1("lut_b1", g, SEED_7T_MP3RAGE, 0.001, P.PipelineConfig())
    with pytest.raises(ValueError, match="gre"):
        P.estimate_t1("lut", g[:2], SEED_7T_MP3RAGE, 0.001, P.PipelineConfig())
    two = SEED_7T_MP2RAGE.with_changes(inversion_times=(1.01, 3.31), flip_angles=(4.0, 4.0), used_readouts=None)
    with pytest.raises(ValueError, match="readouts"):
        P.estimate_t1("map_seed_mp3rage", g[:2], two, 0.001, P.PipelineConfig())


# ------------------------------------------------------------------------------ dataset
def test_ensure_dataset_reuses_cohort_and_refuses_foreign_data(cohort, tmp_path):
    info = P.ensure_dataset(cohort, "smoke", 0, n_subjects=2, progress=False)
    assert info["subjects"] == ["01", "02"] and info["is_simulated"] and not info["regenerated"]
    assert info["parameters"]["noise_sigma"] > 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "dataset_description.json").write_text("{}")
    with pytest.raises(ValueError, match="not the digital cohort"):
        P.ensure_dataset(foreign, snr=10.0)


# ------------------------------------------------------------------------------ caching
@pytest.mark.slow
def test_mp2rage_maps_are_bids_derivatives_and_reused(cohort, monkeypatch):
    shutil.rmtree(cohort / "derivatives" / "qt1lib", ignore_errors=True)
    calls = _count_estimates(monkeypatch)
    first = P.mp2rage_maps(cohort, "01", P.PipelineConfig(), progress=False)
    assert sorted(calls) == sorted(P.DEFAULT_ESTIMATORS)
    for name in P.DEFAULT_ESTIMATORS:
        spec = P.ESTIMATORS[name]
        path = derivative_path(cohort, "01", "T1map", desc=spec.desc)
        assert path.is_file() and path.parent == cohort / "derivatives" / "qt1lib" / "sub-01" / "anat"
        sidecar = load_json(path.with_name(path.name.replace(".nii.gz", ".json")))
        assert sidecar["Units"] == "s" and len(sidecar["CacheKey"]) == 64
        assert sidecar["Parameters"]["estimator"] == name
        img = nib.load(path)
        np.testing.assert_allclose(np.asarray(img.dataobj), first[name], equal_nan=True)
        np.testing.assert_allclose(img.affine, first["affine"])
        if spec.posterior:
            assert f"{name}_std" in first and first[f"{name}_valid"].dtype == bool
    assert (cohort / "derivatives" / "qt1lib" / "dataset_description.json").is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in (cohort / "derivatives" / "qt1lib").rglob("*.nii.gz")}

    calls.clear()
    second = P.mp2rage_maps(cohort, "01", P.PipelineConfig(), progress=False)
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    for name in P.DEFAULT_ESTIMATORS:
        np.testing.assert_array_equal(second[name], first[name])

    # a changed parameter recomputes what depends on it, and only that
    changed = P.PipelineConfig(seed_map_trials=20_000)
    third = P.mp2rage_maps(cohort, "01", changed, progress=False)
    assert sorted(calls) == ["map_seed_mp2rage", "map_seed_mp3rage"]
    brain = third["brain"]
    assert not np.allclose(third["map_seed_mp3rage"][brain], first["map_seed_mp3rage"][brain], equal_nan=True)
    np.testing.assert_array_equal(third["lut"], first["lut"])
    P.mp2rage_maps(cohort, "01", P.PipelineConfig(), progress=False)  # leave the default maps for the other tests


@pytest.mark.slow
def test_maps_are_finite_in_the_brain_and_nan_outside_the_estimation_region(cohort):
    maps = P.mp2rage_maps(cohort, "01", progress=False)
    region = P.estimation_region(maps["brain"], P.PipelineConfig())
    truth = load_truth(cohort, "01")
    np.testing.assert_array_equal(maps["brain"], truth["dseg"] > 0)
    for name in P.DEFAULT_ESTIMATORS:
        finite = np.isfinite(maps[name])
        assert not finite[~region].any(), name
        if name == "map_seed_mp3rage":  # histogram holes at this low noise: NaN, never a valid estimate
            assert finite[maps["brain"]].mean() > 0.3
            assert not (maps[f"{name}_valid"] & ~finite).any()
        else:
            assert finite[maps["brain"]].mean() > 0.99, name


# ------------------------------------------------------------------------------ accuracy
@pytest.mark.slow
def test_exact_map_recovers_single_pool_truth_without_noise(noise_free):
    names = ("map_exact_mp2rage", "map_exact_mp3rage", "lut_b1", "map_exact_mp2rage_nob1")
    maps = P.mp2rage_maps(noise_free, "01", estimators=names, progress=False)
    truth = load_truth(noise_free, "01")
    assert maps["sigma"] == 0.0  # noise-free cohort: the estimators use NOISE_FREE_SIGMA
    pure = (truth["fractions"][:3].max(axis=0) > 0.99) & maps["brain"]  # >99 % WM, subcortical or cortical GM
    assert pure.sum() >= 50
    for name in ("map_exact_mp2rage", "map_exact_mp3rage", "lut_b1"):
        rel = maps[name][pure] / truth["t1"][pure] - 1
        assert np.abs(rel).max() < 0.01, (name, np.abs(rel).max())
    # the same data read without the B1 map miss the 1 % (the cohort's B1+ spans about 0.6..1.3)
    assert np.abs(maps["map_exact_mp2rage_nob1"][pure] / truth["t1"][pure] - 1).max() > 0.02


# ------------------------------------------------------------------------------ SIR space
@pytest.mark.slow
def test_sir_space_subject_registers_close_to_the_true_motion(cohort):
    s = P.sir_space_subject(cohort, "02", progress=False)
    truth = load_truth(cohort, "02", "SIR")
    np.testing.assert_array_equal(s["dseg"], truth["dseg"])
    np.testing.assert_array_equal(s["brain"], truth["dseg"] > 0)
    np.testing.assert_allclose(s["true_transform"].matrix, load_motion(cohort, "02").session_to_subject)
    assert s["registration_error_mm"] < 1.5  # below a quarter of the 6 mm SIR voxel
    for name in (*P.DEFAULT_ESTIMATORS, "ir_t1", "b1", "uni"):
        assert s[name].shape == truth["dseg"].shape, name
    # SIR fit: IR T1 close to the true T1 in nearly pure tissue
    pure = truth["fractions"][:3].max(axis=0) > 0.9
    ok = pure & s["converged"]
    assert np.nanmedian(np.abs(s["ir_t1"][ok] / truth["t1"][ok] - 1)) < 0.05
    again = P.sir_space_subject(cohort, "02", progress=False)
    np.testing.assert_array_equal(again["transform"].matrix, s["transform"].matrix)
    # the same-contrast alternative: LUT T1 map (moving) to IR T1 map (fixed)
    t1_to_t1 = P.sir_space_subject(cohort, "02", P.PipelineConfig(registration_contrast="t1"),
                                   estimators=("lut",), progress=False)
    assert t1_to_t1["registration_error_mm"] < 1.5
    assert not np.allclose(t1_to_t1["transform"].matrix, s["transform"].matrix)


@pytest.mark.slow
def test_calibration_subjects_are_consistent_with_the_segmentation(cohort):
    subjects = P.calibration_subjects(cohort, progress=False)
    assert sorted(subjects) == ["sub-01", "sub-02"]
    for key, data in subjects.items():
        label = key.removeprefix("sub-")
        truth = load_truth(cohort, label, "SIR")
        np.testing.assert_array_equal(data.labels, truth["dseg"])
        assert data.mask.any()
        assert np.isin(data.labels[data.mask], list(TISSUE_LABELS)).all()
        assert set(np.unique(data.labels[data.mask])) == set(TISSUE_LABELS)
        assert sorted(data.inputs) == ["b1", "t1", "t1_std"]
        for value in (*data.inputs.values(), data.target):
            assert np.isfinite(value[data.mask]).all()
        s = P.sir_space_subject(cohort, label, estimators=("map_seed_mp2rage",), progress=False)
        assert not (data.mask & ~s["converged"]).any()
        np.testing.assert_array_equal(data.inputs["t1"], s["map_seed_mp2rage"])
        np.testing.assert_array_equal(data.target, s["ir_t1"])


def test_calibrated_maps_are_written_on_the_sir_grid(cohort):
    subjects = P.calibration_subjects(cohort, progress=False)
    s = subjects["sub-02"]
    maps = {"sub-02": {"none": s.inputs["t1"], "resnet": np.where(s.mask, 0.9 * s.inputs["t1"], np.nan),
                       "global_linear": s.inputs["t1"] + 0.1}}
    paths = P.write_calibrated_maps(cohort, maps, parameters={"seed": 7})
    names = sorted(p.name for p in paths)
    assert names == ["sub-02_space-SIR_desc-GlobalLinear_T1map.nii.gz", "sub-02_space-SIR_desc-ResNet_T1map.nii.gz"]
    resnet = next(p for p in paths if "ResNet" in p.name)
    assert resnet == derivative_path(cohort, "02", "T1map", desc="ResNet", space="SIR")
    img = nib.load(resnet)
    np.testing.assert_allclose(img.affine, P.sir_maps(cohort, "02")["affine"])
    np.testing.assert_allclose(img.get_fdata(), maps["sub-02"]["resnet"].astype(np.float32), equal_nan=True)
    sidecar = load_json(resnet.with_name(resnet.name.replace(".nii.gz", ".json")))
    assert sidecar["Units"] == "s" and sidecar["Parameters"]["method"] == "resnet" and sidecar["Parameters"]["seed"] == 7
    with pytest.raises(ValueError, match="expected the SIR grid"):
        P.write_calibrated_maps(cohort, {"sub-02": {"resnet": np.zeros((3, 3, 3))}})
    with pytest.raises(ValueError, match="keyed 'sub-<label>'"):
        P.write_calibrated_maps(cohort, {"02": {"resnet": s.inputs["t1"]}})


@pytest.mark.slow
def test_real_data_path_uses_user_segmentation_and_background_noise(cohort, tmp_path):
    """A copy of subject 01 without the cohort's truth, with a user-provided SIR-space dseg."""
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(cohort / "dataset_description.json", real)
    shutil.copytree(cohort / "sub-01", real / "sub-01")
    dseg = load_truth(cohort, "01", "SIR")
    save_nifti(dseg["dseg"].astype(np.int16), real / "derivatives" / "manual" / "sub-01" / "anat" / "sub-01_space-SIR_dseg.nii.gz",
               dseg["affine"])
    info = P.ensure_dataset(real, progress=False)
    assert not info["is_simulated"] and info["subjects"] == ["01"]
    s = P.sir_space_subject(real, "01", estimators=("lut", "map_seed_mp2rage"), progress=False)
    assert s["registration_error_mm"] is None and s["true_transform"] is None
    np.testing.assert_array_equal(s["dseg"], dseg["dseg"])
    assert "manual" in s["dseg_source"]
    sigma = P.cohort_parameters(cohort)["noise_sigma"]
    assert s["sigma"] == pytest.approx(sigma, rel=0.1)
    data = P.calibration_subjects(real, progress=False)["sub-01"]
    assert data.mask.any() and np.isfinite(data.inputs["t1"][data.mask]).all()
