"""The exercises' solutions (qt1lib.solutions): the machinery that times and glues them, and each chapter's
solution functions on known values and invariants."""

from __future__ import annotations

import re

import numpy as np
import pytest

from qt1lib import notebook
from qt1lib.cpus import usable_cpus
from qt1lib.notebook import SOLUTION_NOT_RUN, compare_text, format_duration, format_ratio, glue_solution
from qt1lib.solutions import SolutionError, answer_names, answers, scaled_seconds


# ============================================================================ machinery
def test_durations_read_as_prose_and_never_zero():
    assert format_duration(0.0) == "less than 0.1 s"
    assert format_duration(0.04) == "less than 0.1 s"
    assert format_duration(4.24) == "4.2 s"
    assert format_duration(59.94) == "59.9 s"
    assert format_duration(59.96) == "1.0 min"
    assert format_duration(210.0) == "3.5 min"
    assert format_duration(3 * 3600 + 360) == "3.1 h"
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seconds"):
            format_duration(bad)


def test_comparisons_and_ratios_say_what_the_printed_numbers_show():
    assert compare_text(1.234, 1.1, "longer", "shorter", "as long") == "longer"
    assert compare_text(1.0, 1.1, "longer", "shorter", "as long") == "shorter"
    assert compare_text(1.004, 1.001, "longer", "shorter", "as long") == "as long"  # both print 1.00
    assert compare_text(1.004, 1.001, "longer", "shorter", "as long", digits=3) == "longer"
    with pytest.raises(ValueError, match="NaN"):
        compare_text(float("nan"), 1.0, "a", "b", "c")
    assert format_ratio(3.26) == "3.3 times as large"
    assert format_ratio(0.96) == "1.0 times as large"
    assert format_ratio(0.23) == "23 % of it"
    with pytest.raises(ValueError, match="positive"):
        format_ratio(0.0)


def test_a_work_ratio_scales_a_measured_time():
    assert scaled_seconds(2.0, 100, 1000) == pytest.approx(20.0)
    assert scaled_seconds(2.0, 4, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="measured_work"):
        scaled_seconds(2.0, 0, 10)
    with pytest.raises(ValueError, match="measured"):
        scaled_seconds(-1.0, 1, 10)


@answers("value", "verdict")
def _toy(x):
    return {"value": f"{x:.1f}", "verdict": "large" if x > 1 else "small"}


def test_a_solution_declares_its_answers_and_must_return_exactly_those():
    assert answer_names(_toy) == ("value", "verdict")
    assert _toy(2.0) == {"value": "2.0", "verdict": "large"}

    @answers("value")
    def wrong_names():
        return {"other": "1"}

    @answers("value")
    def not_text():
        return {"value": 1.0}

    with pytest.raises(SolutionError, match="must return the texts"):
        wrong_names()
    with pytest.raises(SolutionError, match="not strings"):
        not_text()
    with pytest.raises(ValueError, match="identifiers"):
        answers("a b")
    with pytest.raises(ValueError, match="declares no answers"):
        answer_names(lambda: {})


@pytest.fixture
def glued(monkeypatch):
    out = {}
    monkeypatch.setattr(notebook, "glue_text", lambda key, text: out.__setitem__(key, text))
    return out


def test_glue_solution_glues_every_answer_and_a_measured_runtime(glued):
    glue_solution("ex09_1", _toy, 2.0)
    assert glued["ex09_1_value"] == "2.0" and glued["ex09_1_verdict"] == "large"
    cores = usable_cpus()
    assert glued["ex09_1_runtime"].endswith(f" on {cores} CPU core{'s' if cores > 1 else ''}")
    assert glued["ex09_1_runtime"].startswith(("less than 0.1 s", "0.", "1."))  # a toy takes no time
    assert 0 <= float(glued["ex09_1_seconds"]) < 60


def test_a_build_without_solutions_glues_placeholders_and_runs_nothing(glued):
    def explode(*args):
        raise AssertionError("ran")

    explode.answers = ("value",)
    glue_solution("ex09_2", explode, enabled=False)
    assert glued == {"ex09_2_value": SOLUTION_NOT_RUN,
                     "ex09_2_runtime": "not measured: this build skipped the solutions (`-p solutions False`)"}
    with pytest.raises(ValueError, match="identifier"):
        glue_solution("ex 1", _toy, 1.0)
    with pytest.raises(ValueError, match="enabled"):
        glue_solution("ex09_3", _toy, 1.0, enabled="yes")


def _num(text: str) -> float:
    """The first number of a glued text ("+11.8 %" -> 11.8, "1,000" -> 1000)."""
    import re

    return float(re.search(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?", text).group(0).replace(",", ""))


# ============================================================================ chapter 01
def test_chapter_01_solutions_on_known_curves():
    from qt1lib.protocols import MARQUES_7T, SEED_7T_MP3RAGE
    from qt1lib.solutions import signal_models as sm

    turn = sm.uni_minimum(MARQUES_7T, 50, 2000)
    assert _num(turn["shift_ms"]) <= _num(turn["step_ms"]) + 2.5  # within a coarse step (plus a dense one)
    assert 3.0 < _num(turn["t1_min"]) < 4.5 and _num(turn["t1_end_read"]) < _num(turn["t1_min"])  # CSF reads short
    assert _num(turn["s12_min"]) < _num(turn["s12_end"])  # the curve turns back up
    flat = sm.uni_minimum(SEED_7T_MP3RAGE, 50, 2000)  # monotonic to the grid's end: the end reads as itself
    assert _num(flat["t1_min"]) == pytest.approx(5.0) and _num(flat["t1_end_read"]) == pytest.approx(5.0, abs=0.01)

    nominal = sm.b1_error(SEED_7T_MP3RAGE, 1.9, 1.0, 1.2, 0.8)
    assert nominal["error_pct"] == "0.0 %" and _num(nominal["t1_corrected"]) == pytest.approx(1.9, abs=1e-3)
    low = sm.b1_error(SEED_7T_MP3RAGE, 1.9, 0.7, 1.2, 0.8)
    assert _num(low["error_pct"]) > 0 and _num(low["t1_corrected"]) == pytest.approx(1.9, abs=2e-3)

    own = SEED_7T_MP3RAGE.inversion_efficiency
    assert sm.inversion_mismatch(SEED_7T_MP3RAGE, 1.2, own)["direction"] == "reads exactly"
    perfect = sm.inversion_mismatch(SEED_7T_MP3RAGE, 1.2, 1.0)
    assert perfect["direction"] == "underestimates" and _num(perfect["error_pct"]) < 0
    assert "shorter T1" in perfect["reason"]
    assert sm.inversion_mismatch(SEED_7T_MP3RAGE, 1.2, 0.7)["direction"] == "overestimates"


# ============================================================================ chapter 02
@pytest.fixture(scope="module")
def views():
    from qt1lib.protocols import SEED_7T_MP2RAGE, SEED_7T_MP3RAGE

    return {"MP2RAGE": SEED_7T_MP2RAGE, "MP3RAGE": SEED_7T_MP3RAGE}


def test_chapter_02_noise_levels_move_estimators_towards_or_below_the_bound(views):
    from qt1lib.solutions import map_vs_point

    out = map_vs_point.bound_at_noise(views, [0.8, 2.0, 4.0], 0.05, 0.0025, 200, 0, 20_000, "jeffreys")
    low = [float(x) for x in re.findall(r" (\d\.\d\d)", out["low_medians"])]
    high = [float(x) for x in re.findall(r" (\d\.\d\d)", out["high_medians"])]
    assert len(low) == len(high) == 5
    assert max(low) < min(high)  # every estimator's median std/CRLB falls with the SNR
    assert all(abs(h - 1) < 0.2 for h in high)  # and is near the bound at half the seed's noise
    assert "standard errors (15 %) of the bound" in out["high_within"]  # 3 / sqrt(2 * 199)
    assert "4 s" in out["low_below"]  # at 4 s every estimator is pulled below the bound
    assert out["high_within"].startswith(("Every estimator is within", "At no T1 are all estimators"))
    import pandas as pd

    t1 = pd.Index([0.5, 1.0, 4.0])
    assert map_vs_point._where(pd.Series([True, True, True], t1), "X holds", "never") == "X holds at every T1"
    assert map_vs_point._where(pd.Series([False] * 3, t1), "X holds", "never") == "never"
    assert (map_vs_point._where(pd.Series([True, False, True], t1), "X holds", "never", "it fails")
            == "X holds at T1 = 0.5 and 4 s, and it fails at T1 = 1 s")


def test_chapter_02_prior_change_finds_the_largest_difference():
    import pandas as pd

    from qt1lib.solutions import map_vs_point

    rows = [{"scale_prior": p, "estimator": "exact MAP", "t1": t, "bias": b}
            for p, biases in (("flat", (0.001, 0.02, 0.3)), ("jeffreys", (0.0, 0.0, 0.1))) for t, b in zip((0.5, 1.0, 3.0), biases)]
    rows.append({"scale_prior": "flat", "estimator": "exact mean", "t1": 0.5, "bias": 9.0})  # ignored
    out = map_vs_point.prior_change(pd.DataFrame(rows), threshold=0.01)
    assert out == {"t1_most": "3.0 s", "change_ms": "200 ms", "longer": "longer", "small_t1": "at T1 = 0.5 s",
                   "threshold_pct": "1 %"}


def test_chapter_02_seed_trials_and_prior_end_compare_like_with_like(views):
    from qt1lib.estimate.performance import simulate_estimator_performance
    from qt1lib.solutions import map_vs_point

    t1 = [1.0, 2.0]
    perf = simulate_estimator_performance(list(views.values()), t1, [0.005], 100, seed=0, seed_n_trials=5000,
                                          estimators=("seed MAP",))
    perf["protocol"] = perf["protocol"].map({p.name: k for k, p in views.items()})
    same = map_vs_point.seed_trials(views, perf, t1, 0.005, 100, 0, 5000, 5000)
    assert same["max_bias_ms"] == same["chapter_max_bias_ms"] and same["bias_compare"] == "the same as"
    assert same["std_change_pct"] == "0.0 %"
    end = map_vs_point.prior_end(views["MP2RAGE"], [3.0, 4.5], 0.005, 200, 0, "jeffreys")
    assert end["t1_last"] == "4.5 s" and end["mean_rmse_wins"] in ("both T1 values", "1 of 2 T1 values", "neither T1 value")
    assert same["valid_min_pct"] == "all of the voxels" or same["valid_min_pct"].startswith("at least ")
    assert end["mean_bias_ms"].split(" and ")[-1].startswith("-")  # the prior's end pulls the mean back


# ============================================================================ chapter 03
@pytest.fixture(scope="module")
def literature():
    from qt1lib.phantom.physics import COHORT_PHYSICS

    lit = COHORT_PHYSICS["literature"]
    return [lit.tissues[n] for n in ("WM", "subcortical_GM", "cortical_GM")]


def test_chapter_03_sir_fit_recovers_the_truth_at_high_snr_and_spreads_at_low(literature):
    from qt1lib.phantom.cohort import SIR_7T
    from qt1lib.solutions import ir_reference

    sharp = ir_reference.sir_fit_metrics(SIR_7T, literature, 1e5, 300, 0)
    assert sharp["r1f_iqr"] < 1e-3 and abs(sharp["r1f_median"]) < 1e-3
    out = ir_reference.sir_fit_spread(literature, 300, 0, SIR_7T, 30.0, SIR_7T, 300.0)
    assert _num(out["r1f_iqr_pct"]) > _num(out["ref_r1f_iqr_pct"]) and out["r1f_factor"].endswith("times as large")


def test_chapter_03_mt_bias_readings(literature):
    from qt1lib.protocols import MARQUES_7T, SEED_7T_MP3RAGE
    from qt1lib.solutions import ir_reference

    wm = literature[0]
    same = ir_reference.mt_sensitivity(wm, SEED_7T_MP3RAGE, SEED_7T_MP3RAGE)
    assert same["more_sensitive"] == "neither" and same["bias_ms"] == same["ref_bias_ms"]
    both = ir_reference.mt_sensitivity(wm, MARQUES_7T, SEED_7T_MP3RAGE)
    assert _num(both["bias_ms"]) < 0 and _num(both["ref_bias_ms"]) < 0  # MT shortens the reading
    assert all(0 < _num(f) < 1 for f in both["saturation"].split(" and "))
    tiny = ir_reference.psr_linearity(wm, SEED_7T_MP3RAGE, 0.01, 5)  # a small range is nearly linear
    assert _num(tiny["deviation_pct"]) < 1.0 and abs(_num(tiny["ratio"]) - 2) < 0.05
    wide = ir_reference.psr_linearity(wm, SEED_7T_MP3RAGE, 0.8, 9)
    assert _num(wide["bias_end_ms"]) < _num(wide["bias_half_ms"]) < 0


def test_chapter_03_mono_fit_converges_to_r1f_when_started_late(literature):
    from qt1lib.protocols_sir import DENSE_SIR
    from qt1lib.solutions import ir_reference

    out = ir_reference.mono_start(literature[0], DENSE_SIR, 0.05, 0.5)
    t1f = _num(out["t1f_ms"])
    assert abs(_num(out["t1_chapter_start"]) - t1f) < abs(_num(out["t1_start"]) - t1f)
    assert _num(out["earliest_ms"]) <= 500


def test_chapter_03_residual_excess_grows_with_the_square_of_the_snr(literature):
    from qt1lib.protocols_sir import DENSE_SIR
    from qt1lib.solutions import ir_reference

    at100 = ir_reference.residual_detection(literature, -0.95, 0.02, DENSE_SIR, 100.0)
    at200 = ir_reference.residual_detection(literature, -0.95, 0.02, DENSE_SIR, 200.0)
    assert _num(at200["z"]) == pytest.approx(4 * _num(at100["z"]), rel=0.05)
    needed = _num(at100["snr_needed"])
    at_needed = ir_reference.residual_detection(literature, -0.95, 0.02, DENSE_SIR, needed)
    assert _num(at_needed["z"]) == pytest.approx(3.0, abs=0.1)


def test_chapter_03_efficiency_inverts_the_bloch_simulation(literature):
    from qt1lib.solutions import ir_reference

    wm = literature[0]
    listed = ir_reference.efficiency_t2(wm, 0.9, [wm.t2f], [wm.t2f])["listed"]
    eff_wm = _num(listed)
    back = ir_reference.efficiency_t2(wm, eff_wm, [wm.t2f], [wm.t2f])
    assert _num(back["t2_ms"]) == pytest.approx(1e3 * wm.t2f, rel=0.03) and back["plausible"] == "within the range of"
    with pytest.raises(ValueError, match="no T2"):
        ir_reference.efficiency_t2(wm, 0.999, [wm.t2f], [wm.t2f])


# ============================================================================ chapter 04
def test_chapter_04_sensitivity_and_map_errors():
    from qt1lib.estimate import estimator_class
    from qt1lib.protocols import SEED_7T_MP3RAGE
    from qt1lib.solutions import b1

    same = b1.sensitivity_at(SEED_7T_MP3RAGE, 1.2, 1.2)
    assert same["grows"] == "stays" and same["ratio_moves"] == "no further from 1" and same["ratio"] == same["ratio_ref"]
    long = b1.sensitivity_at(SEED_7T_MP3RAGE, 2.6, 1.2)
    assert long["grows"] == "grows" and _num(long["s12_pct"]) < _num(long["s12_ref_pct"]) < 0  # more flip reads short

    names = ["lut_b1", "map_exact_mp2rage"]
    labels = {n: estimator_class(n).label for n in names}
    out = b1.map_error_linearity(SEED_7T_MP3RAGE, 1.2, [0.8, 1.0, 1.2], 0.005, names, labels, [-0.1, -0.05, 0.0, 0.05, 0.1])
    slopes = [float(x) for x in re.findall(r"\((\d\.\d\d)\)", out["slopes"])]
    assert len(slopes) == 2 and all(0.1 < k < 1.0 for k in slopes)  # a map too high reads long, less than 1:1
    assert _num(out["deviation_pp"]) < 0.5 and out["asymmetry"] in ("a larger", "a smaller", "the same")


def _b1_voxels(slope_by_subject, n=400, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for subject, slope in slope_by_subject.items():
        b1 = rng.uniform(0.7, 1.3, n)
        for tissue in ("WM", "cortical GM"):
            rows.append(pd.DataFrame({"subject": subject, "tissue": tissue, "estimator": "map_seed_mp3rage",
                                      "b1_true": b1, "error_b1": slope * (b1 - 1) + 0.01 * rng.normal(size=n)}))
    return pd.concat(rows, ignore_index=True)


def test_chapter_04_slopes_by_subject_and_purity_on_known_lines():
    from qt1lib.solutions import b1

    voxels = _b1_voxels({"01": -0.5, "02": -0.3})
    assert b1.pooled_slopes(voxels)["map_seed_mp3rage"] == pytest.approx(-0.4, abs=0.02)
    out = b1.slope_stability(voxels, _b1_voxels({"01": -0.5, "02": -0.3}, seed=1), 0.9, 0.97,
                             {"map_seed_mp3rage": "seed MAP MP3RAGE"}, "map_seed_mp3rage", 0, 1000, 0.005, 0)
    # 100 x (0.5 - 0.3) s per unit B1, per 0.1 of B1+
    assert out["between_subjects"] == "differs by up to 20 ms per 0.1 of B1+ between the chapter's subjects (sub-01, sub-02)"
    assert _num(out["spread_purity_ms"]) < 2
    assert out["full_run"] == "The chapter already maps every subject of the cohort: the full exercise is this one."
    one = b1.slope_stability(_b1_voxels({"01": -0.5}), _b1_voxels({"01": -0.5}, seed=1), 0.9, 0.97, {},
                             "map_seed_mp3rage", 0, 1000, 0.005, 0)
    assert one["between_subjects"] == "cannot be compared between subjects: the chapter maps sub-01 only"


# ============================================================================ chapter 05
def test_chapter_05_registration_term_vanishes_when_the_transform_is_right(monkeypatch):
    from types import SimpleNamespace

    from qt1lib.register import RigidTransform
    from qt1lib.solutions import registration

    shape, affine = (12, 12, 6), np.diag([2.0, 2.0, 2.0, 1.0])
    t1 = np.linspace(0.8, 2.0, np.prod(shape)).reshape(shape).astype(np.float32)
    dseg = np.ones(shape, dtype=np.int16)
    dseg[:, :, :2], dseg[:, :, 4:] = 2, 3
    scored = np.zeros(shape, bool)
    scored[2:-2, 2:-2, :] = True

    class Maps(dict):  # an estimator's maps by name, with the grid's affine (MP2RAGEMaps, SIRSpaceSubject)
        def __init__(self, **attributes):
            super().__init__(map_seed_mp2rage=SimpleNamespace(t1=t1))
            self.__dict__.update(attributes)

    def subject(error):
        return Maps(true_transform=RigidTransform(np.eye(4)), shape=shape, affine=affine, scored=scored, dseg=dseg,
                    registration_error_mm=error, mp2rage=Maps(affine=affine))

    terms = registration.registration_term(subject(0.5), "map_seed_mp2rage")
    assert all(abs(v) < 1e-6 for v in terms.values())
    out = registration.contrast_registration({"01": subject(0.9), "02": subject(0.8)},
                                             {"01": subject(0.5), "02": subject(0.9)}, "map_seed_mp2rage")
    assert out["lower"] == "lower" and out["n_lower"] == "1 of 2 subjects" and out["term_compare"] == "the same"


def test_chapter_05_subject_view_ranks_the_motion():
    import pandas as pd

    from qt1lib.solutions import registration

    table = pd.DataFrame({"estimated rotation (deg)": [1.0, 3.0, 2.0], "mean head displacement (mm)": [1.0, 5.0, 3.0],
                          "registration error (mm)": [0.5, 0.7, 0.6]}, index=["01", "02", "03"])
    assert registration.subject_view(table, "02")["motion_rank"] == "the largest of the 3 subjects"
    assert registration.subject_view(table, "03")["motion_rank"] == "number 2 from the largest of the 3 subjects"
    assert registration.subject_view(table, "01")["motion_rank"] == "the smallest of the 3 subjects"
    with pytest.raises(ValueError, match="not in the registration table"):
        registration.subject_view(table, "09")


# ============================================================================ chapters 06 and 07
@pytest.fixture(scope="module")
def channel_subjects():
    """Four synthetic subjects whose reference is a known linear function of T1 and B1+ (no posterior-std effect)."""
    from qt1lib.calibrate import SubjectData

    out = {}
    for k in range(4):
        rng = np.random.default_rng(k)
        shape = (10, 10, 4)
        labels = rng.integers(1, 4, shape)
        t1 = rng.uniform(0.8, 2.0, shape)
        b1 = rng.uniform(0.7, 1.3, shape)
        std = rng.uniform(0.05, 0.2, shape)
        target = 0.1 + 0.9 * t1 + 0.5 * (b1 - 1)
        out[f"sub-0{k + 1}"] = SubjectData({"t1": t1, "b1": b1, "t1_std": std}, target, np.ones(shape, bool), labels)
    return out


def test_linear_channels_recover_a_known_calibration(channel_subjects):
    from qt1lib.calibrate import make_folds
    from qt1lib.solutions import calibration, statistics

    folds = make_folds(channel_subjects)
    exact, voxels = calibration.linear_channel_cv(channel_subjects, folds, ["t1", "b1"])
    line, _ = calibration.linear_channel_cv(channel_subjects, folds, ["t1"])
    assert exact["rmse"].max() < 1e-9 and line["rmse"].min() > 0.05 and set(voxels["method"]) == {"t1+b1"}
    gain = calibration.channel_gain(channel_subjects, folds)
    assert gain["carries"] == "the B1+ map" and gain["rmse_b1"] == "0.000, 0.000 and 0.000 s"
    assert gain["b1_where"] == "where B1+ departs furthest from 1"  # the B1 term is largest there
    tests = statistics.t1_only_tests(channel_subjects, folds)
    assert tests["n_significant"] == "all 3 tissues" and tests["floor"] == "0.125"


def test_short_trainings_and_their_validation_rmse():
    from types import SimpleNamespace

    import pandas as pd

    from qt1lib.config import StudyConfig
    from qt1lib.solutions import calibration

    config = StudyConfig.for_profile("quick").calibration
    short = calibration.short_config(config, 3, 0.25, residual=False)
    assert (short.max_epochs, short.patience, short.patches_per_epoch, short.residual) == (3, 3, 512, False)
    assert calibration.short_config(config, 1, 0.001).patches_per_epoch == config.batch_size  # at least one batch
    model = SimpleNamespace(config=config, history=pd.DataFrame({"val_loss": [0.25, 0.04]}),
                            normalisation=SimpleNamespace(target_std=0.2))
    assert calibration.validation_rmse(model) == pytest.approx([0.1, 0.04])


def test_cost_estimates_scale_measured_steps(channel_subjects):
    import dataclasses

    import pandas as pd

    from qt1lib.config import StudyConfig
    from qt1lib.solutions import calibration

    config = dataclasses.replace(StudyConfig.for_profile("smoke").calibration, channels=("t1",))
    assert calibration.step_seconds(config, steps=1) > 0
    history = pd.DataFrame({"seconds": [2.0, 2.0]})
    centre = calibration.centre_cost(channel_subjects, config, history, 10)
    assert centre["patches"] == "1,600" and centre["training"] == "1.3 min"  # 2 s x 10 epochs x 4 folds
    assert centre["epochs"] == "10 epochs"


def test_chapter_07_mixed_model_interval_narrows_with_voxels():
    import pandas as pd

    from qt1lib.solutions import statistics
    from qt1lib.stats import mixed_model

    rng = np.random.default_rng(0)
    rows = []
    for subject in ("s1", "s2", "s3", "s4"):
        offset = rng.normal(0, 0.02)
        for method, shift in (("none", 0.0), ("resnet", -0.05)):
            for tissue in ("WM", "cortical GM"):
                reference = rng.uniform(1, 2, 400)
                rows.append(pd.DataFrame({"fold": 1, "subject": subject, "method": method, "tissue": tissue,
                                          "estimate": reference + 0.1 + shift + offset + rng.normal(0, 0.05, 400),
                                          "reference": reference}))
    voxels = pd.concat(rows, ignore_index=True)
    mm = mixed_model(voxels, reference_method="none", max_voxels_per_cell=400, seed=0)
    out = statistics.mixed_model_size(voxels, mm, 400, 0)
    assert out["small_cells"] == "100" and out["expected"] == "2.00"
    assert 1.5 < _num(out["shrink"]) < 2.6  # independent synthetic voxels: about sqrt(4)


@pytest.mark.parametrize("flag, shown", [(None, 1), ("1", 0)])
def test_glue_figure_shows_the_figure_live_but_not_in_the_book_build(monkeypatch, flag, shown):
    """Jupyter does not render {glue:figure}: a live run must show the figure, the build must not show it twice."""
    import IPython.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import myst_nb

    glued, displayed = {}, []
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: glued.update({key: (value, display)}))
    monkeypatch.setattr(IPython.display, "display", lambda value: displayed.append(value))
    if flag is None:
        monkeypatch.delenv(notebook.BOOK_BUILD_ENV, raising=False)
    else:
        monkeypatch.setenv(notebook.BOOK_BUILD_ENV, flag)
    fig = plt.figure()
    notebook.glue_figure("fig_x", fig)
    assert glued == {"fig_x": (fig, False)} and len(displayed) == shown
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend does not show it a second time
