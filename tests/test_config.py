"""The study configuration (qt1lib.config): profiles, overrides, serialisation, and the chapters' parameters."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import subprocess
import sys

import pytest

from qt1lib import config, study
from qt1lib.calibrate import CalibrationConfig
from qt1lib.config import CohortConfig, PipelineConfig, StudyConfig
from qt1lib.notebook import declared_parameters

CH06 = study.REPO_ROOT / "notebooks" / "06_calibration.ipynb"
CH07 = study.REPO_ROOT / "notebooks" / "07_statistics.ipynb"

#: The CalibrationConfig chapters 06 and 07 built on 2026-11-25 (before qt1lib.config), per profile:
#: their parameters cells with the profile overrides of their notebook metadata.
_TODAY_QUICK = dict(
    channels=("t1", "b1", "t1_std"), patch_shape=(32, 32), slice_axis=2, target="patch", residual=True,
    width=16, patches_per_epoch=2048, validation_patches=512, validation_fraction=0.2, validation_slab=2,
    batch_size=32, max_epochs=20, patience=4, learning_rate=1e-3, loss="mse", input_skip=True,
)
TODAY_CALIBRATION = {
    "quick": CalibrationConfig(**_TODAY_QUICK),
    "smoke": CalibrationConfig(**{**_TODAY_QUICK, "max_epochs": 2, "patch_shape": (16, 16), "patches_per_epoch": 256,
                                  "patience": 2, "validation_fraction": 0.25, "validation_patches": 128,
                                  "validation_slab": 3, "width": 8}),
    "paper": CalibrationConfig(**{**_TODAY_QUICK, "batch_size": 64, "max_epochs": 40, "patches_per_epoch": 8192,
                                  "patience": 8, "validation_patches": 2048, "validation_slab": 4, "width": 64}),
}
#: PipelineConfig.for_profile of qt1lib.pipeline before qt1lib.config.
TODAY_PIPELINE = {"smoke": PipelineConfig(), "quick": PipelineConfig(), "paper": PipelineConfig(seed_map_trials=1_000_000)}
#: qt1lib.phantom.cohort.PROFILES before qt1lib.config.
TODAY_VOXELS = {
    "smoke": ((4.0, 4.0, 4.0), (6.0, 6.0, 8.0)),
    "quick": ((2.0, 2.0, 2.0), (3.0, 3.0, 4.0)),
    "paper": ((1.0, 1.0, 1.0), (1.5, 1.5, 2.0)),
}


# ------------------------------------------------------------------ profiles
@pytest.mark.parametrize("profile", config.PROFILES)
def test_profiles_hold_todays_values(profile):
    s = StudyConfig.for_profile(profile)
    assert s.profile == profile and s.seed == 0
    assert (s.cohort.voxel_size, s.cohort.sir_voxel_size) == TODAY_VOXELS[profile]
    assert s.cohort == CohortConfig.for_profile(profile)
    assert s.pipeline == TODAY_PIPELINE[profile]
    assert s.calibration == TODAY_CALIBRATION[profile]


def test_profiles_differ_and_unknown_profiles_are_rejected():
    assert StudyConfig.for_profile("quick") == StudyConfig.for_profile("quick")
    assert StudyConfig.for_profile("quick") != StudyConfig.for_profile("smoke")
    assert study.PROFILES == config.PROFILES == ("smoke", "quick", "paper")
    for make in (StudyConfig.for_profile, CohortConfig.for_profile):
        with pytest.raises(ValueError, match="unknown profile 'huge'"):
            make("huge")
    with pytest.raises(ValueError, match="profile"):
        config.chapter_parameters("01_signal_models", "huge")


def test_seed_map_defaults_match_the_estimators():
    from qt1lib.estimate.map import SEED_LIKELIHOOD_THRESHOLD, SEED_N_BINS

    assert PipelineConfig().seed_map_bins == SEED_N_BINS
    assert PipelineConfig().seed_likelihood_threshold == SEED_LIKELIHOOD_THRESHOLD


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "bad",
    [{"sigma": 0.0}, {"sigma": math.inf}, {"seed_map_trials": 0}, {"seed_map_bins": True}, {"registration_bins": 4},
     {"seed_likelihood_threshold": 1.5}, {"b1_sd": -0.1}, {"scale_prior": "uniform"}, {"calibration_input": "magic"},
     {"registration_contrast": "t2"}, {"signal_threshold": 0}, {"mask_dilation": -1},
     {"select": {"sub": "01"}}, {"select": {"run": "1_2"}}, {"select": "run-1"}, {"inversion_efficiency": 1.2},
     {"number_shots": 0}, {"number_shots": (3, 0)}, {"number_shots": (1, 2, 3)}, {"echo_spacing": 6.0},
     {"bound_pool_inversion_factor": 1.5}, {"b1_units": "tesla"}, {"resample_b1": "yes"}],
)
def test_pipeline_config_rejects_invalid_values(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        PipelineConfig(**bad)


def test_reader_settings_are_normalised_and_round_trip():
    from qt1lib.bids import B1_UNITS

    assert config.B1_UNITS == B1_UNITS
    c = PipelineConfig(select={"run": 1, "ses": "A"}, number_shots=[112, 113], inversion_efficiency=0.84,
                       echo_spacing=0.006, b1_units="percent")
    assert c.select == (("run", "1"), ("ses", "A")) and c.reader_select() == {"run": "1", "ses": "A"}
    assert c.reader_defaults() == {"InversionEfficiency": 0.84, "NumberShots": [112, 113],
                                   "RepetitionTimeExcitation": 0.006}
    assert c.reader_settings() == {"select": {"run": "1", "ses": "A"}, "defaults": c.reader_defaults(),
                                   "b1_units": "percent", "resample_b1": False}
    assert PipelineConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert hash(c) == hash(PipelineConfig.from_dict(c.to_dict()))  # hashable, so it keys caches
    assert PipelineConfig(number_shots=176.0).number_shots == 176
    assert PipelineConfig().reader_settings() == {"select": {}, "defaults": {}, "b1_units": None, "resample_b1": False}


def test_calibration_input_is_a_registered_estimator():
    from qt1lib.estimate import estimator_names

    for name in estimator_names():
        assert PipelineConfig(calibration_input=name).calibration_input == name
    with pytest.raises(ValueError, match="map_seed_mp2rage"):  # the message lists the known estimators
        PipelineConfig(calibration_input="magic")


@pytest.mark.parametrize(
    "bad",
    [{"profile": "huge"}, {"voxel_size": (2.0, 2.0)}, {"voxel_size": (2.0, 0.0, 2.0)}, {"sir_voxel_size": "3mm"},
     {"seed": -1}, {"seed": 1.5}, {"n_subjects": 0}, {"snr": 0}, {"sir_snr": -1.0}, {"b1_noise": -0.1},
     {"motion": 1}, {"bound_pool": "yes"}],
)
def test_cohort_config_rejects_invalid_values(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        CohortConfig(**bad)


def test_cohort_config_normalises_values():
    c = CohortConfig(voxel_size=[2, 2, 2], snr=None)
    assert c.voxel_size == (2.0, 2.0, 2.0) and c.snr == math.inf
    assert c == CohortConfig(snr=math.inf)


def test_parts_share_no_parameter_name():
    parts = [{f.name for f in dataclasses.fields(cls)} for cls in (CohortConfig, PipelineConfig, CalibrationConfig)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    names = StudyConfig.parameter_names()
    assert set(names) == (parts[0] | parts[1] | parts[2]) - {"profile"}


# ------------------------------------------------------------------ overrides
def test_overrides_go_to_the_right_part():
    base = StudyConfig.for_profile("quick")
    s = base.with_overrides(registration_contrast="t1", calibration_input="map_exact_mp2rage", width=32,
                            patch_shape=[8, 8, 8], max_epochs=3, seed=7, snr=100.0)
    assert s.pipeline == dataclasses.replace(base.pipeline, registration_contrast="t1",
                                             calibration_input="map_exact_mp2rage")
    assert s.calibration == dataclasses.replace(base.calibration, width=32, patch_shape=(8, 8, 8), max_epochs=3)
    assert s.cohort == dataclasses.replace(base.cohort, seed=7, snr=100.0)
    assert s.seed == 7 and s.profile == "quick"
    assert base.with_overrides() == base
    assert base == StudyConfig.for_profile("quick"), "with_overrides must not change the original"


def test_unknown_override_is_named_and_known_ones_listed():
    base = StudyConfig.for_profile("smoke")
    with pytest.raises(ValueError, match=r"unknown study parameter 'widht'; known: .*registration_contrast.*width"):
        base.with_overrides(widht=8)
    with pytest.raises(ValueError, match="for_profile"):
        base.with_overrides(profile="paper")
    with pytest.raises(ValueError, match="width"):
        base.with_overrides(width=0)  # validated by CalibrationConfig


def test_from_parameters_takes_the_profile_and_study_settings_only():
    parameters = {"bids_dir": "x", "profile": "smoke", "seed": 3, "width": None, "max_epochs": 5, "device": "",
                  "n_subjects": 2}
    s = StudyConfig.from_parameters(parameters, names=["seed", "width", "max_epochs"])
    assert s == StudyConfig.for_profile("smoke").with_overrides(seed=3, max_epochs=5)  # None: the profile's width
    assert StudyConfig.from_parameters(parameters).cohort.n_subjects == 2  # default: every study-named parameter
    with pytest.raises(ValueError, match="profile"):
        StudyConfig.from_parameters({"seed": 1})
    with pytest.raises(ValueError, match="patience"):
        StudyConfig.from_parameters(parameters, names=["patience"])


# ------------------------------------------------------------------ serialisation
@pytest.mark.parametrize("profile", config.PROFILES)
def test_round_trip_through_json(profile):
    s = StudyConfig.for_profile(profile).with_overrides(snr=math.inf, channels=["t1"], seed=5, sigma=0.01)
    text = json.dumps(s.to_dict(), allow_nan=False)  # strict JSON: no tuples, no Infinity
    back = StudyConfig.from_dict(json.loads(text))
    assert back == s
    assert back.cohort.snr == math.inf and back.calibration.channels == ("t1",)
    assert json.loads(text)["cohort"]["snr"] is None
    assert set(s.parameters()) == set(StudyConfig.parameter_names())


def test_from_dict_rejects_unknown_keys():
    d = StudyConfig.for_profile("quick").to_dict()
    with pytest.raises(ValueError, match="cohort"):
        StudyConfig.from_dict({k: v for k, v in d.items() if k != "cohort"})
    for part in ("cohort", "pipeline", "calibration"):
        bad = {**d, part: {**d[part], "colour": 1}}
        with pytest.raises(ValueError, match="colour"):
            StudyConfig.from_dict(bad)


def test_cohort_kwargs_are_make_cohorts():
    from qt1lib.phantom import cohort_settings, make_cohort

    for profile in config.PROFILES:
        kwargs = CohortConfig.for_profile(profile).kwargs()
        inspect.signature(make_cohort).bind("bids", **kwargs)
        settings = {k: v for k, v in kwargs.items() if k in inspect.signature(cohort_settings).parameters}
        assert cohort_settings(**settings) == cohort_settings(profile)


# ------------------------------------------------------------------ chapters
def _as_the_runner_runs(path, profile: str) -> dict:
    """The notebook's declared defaults with the runner's parameters for ``profile``: its namespace."""
    values = {name: p.default for name, p in declared_parameters(path).items()}
    return {**values, **study.chapter_run_parameters(study.Chapter(path), profile, "work/bids", "work")}


@pytest.mark.parametrize("profile", config.PROFILES)
def test_chapters_06_and_07_share_one_calibration_config_equal_to_todays(profile):
    expected = TODAY_CALIBRATION[profile]
    assert StudyConfig.for_profile(profile).calibration == expected
    for path in (CH06, CH07):
        values = _as_the_runner_runs(path, profile)
        # how the chapters build it with qt1lib.config ...
        assert StudyConfig.from_parameters(values).calibration == expected, path.name
        # ... and as they built it before (their sixteen CalibrationConfig arguments)
        assert CalibrationConfig(**{name: values[name] for name in config.STUDY_CALIBRATION}) == expected, path.name
        assert StudyConfig.from_parameters(values).pipeline == TODAY_PIPELINE[profile]


def test_chapter_tables_cover_every_chapter_and_profile():
    stems = {c.path.stem for c in study.find_chapters()}
    assert set(config.CHAPTER_PARAMETERS) == stems == set(config.CHAPTER_STUDY_PARAMETERS)
    names = StudyConfig.parameter_names()
    for stem, table in config.CHAPTER_PARAMETERS.items():
        assert set(table) == set(config.PROFILES), stem
        assert all(name not in names or name == "n_subjects" for values in table.values() for name in values), stem
        assert set(config.CHAPTER_STUDY_PARAMETERS[stem]) <= set(names), stem
    with pytest.raises(ValueError, match="CHAPTER_PARAMETERS"):
        config.chapter_parameters("99_missing", "quick")
    assert config.chapter_parameters("06_calibration.ipynb", "paper") == config.chapter_parameters(CH06, "paper")


def test_importing_the_configuration_loads_neither_numpy_nor_torch():
    code = "import sys, qt1lib.config; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=study.REPO_ROOT)
    assert out.stdout.strip() == "[]", out.stdout
