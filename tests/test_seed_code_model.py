"""The seed's public code's two-train MP2RAGE model and the estimators that read three-train data with it.

The closed form below is written from Marques et al. 2010 (NeuroImage 49:1271, appendix) for any
number of trains, with ``np.float_power`` as in the seed's code (MASILab/map_t1_mapping,
``src/t1_mapping/utils.py``, ``gre_signal``), independently of qt1lib's chain of affine maps.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from qt1lib.estimate import estimator_class, estimator_names, make_estimator
from qt1lib.estimate.seed_code_shift import seed_code_shift, seed_code_tissue_readings
from qt1lib.protocols import (
    MARQUES_7T,
    PROTOCOLS,
    SEED_7T_MP2RAGE,
    SEED_7T_MP3RAGE,
    SEED_CODE_7T_MP2RAGE,
    SEED_CODE_7T_MP2RAGE_HALF_SPLIT,
    MPnRAGEProtocol,
)
from qt1lib.sequences import gre_signals, uni
from qt1lib.sequences.chain import AffineMap
from qt1lib.sequences.twopool import TISSUES_7T, TwoPoolTissue, gre_signals_twopool

SEED_CODE_ESTIMATORS = ("lut_seed_code", "lut_b1_seed_code", "map_seed_code_mp2rage")
T1_VALUES = (0.5, 0.8, 1.2, 1.5, 1.9, 2.5, 3.2, 4.0)
B1_VALUES = (0.7, 0.85, 1.0, 1.15, 1.3)


# ------------------------------------------------------------------------------ the closed form
def closed_form(t1, tr_mprage, tr, tis, flips_deg, n_before, n_after, eff, b1=1.0):
    """GRE signals at the k-space centres (M0 = 1), Marques et al. 2010 appendix, any number of trains.

    The magnetisation just before an inversion, ``M``, satisfies ``M = B - eff A M``: ``A`` is the
    product of every decay of the period (free recoveries, and ``(cos a E1)^n`` per train) and
    ``B`` the magnetisation at the end of the period started from zero right after the inversion.
    """
    t1 = np.asarray(t1, dtype=float)
    e1 = np.exp(-tr / t1)
    n = n_before + n_after
    td = [tis[0] - n_before * tr]
    td += [tis[k] - tis[k - 1] - n * tr for k in range(1, len(tis))]
    td += [tr_mprage - tis[-1] - n_after * tr]
    c = [np.cos(np.deg2rad(a) * b1) * e1 for a in flips_deg]

    def train(m, ck, steps):  # ``steps`` excitations, each followed by one TR of recovery
        return m * np.float_power(ck, steps) + (1 - e1) * (1 - np.float_power(ck, steps)) / (1 - ck)

    def recover(m, t):
        e = np.exp(-t / t1)
        return m * e + 1 - e

    a_total, b_total = np.ones_like(t1), np.zeros_like(t1)
    for k, ck in enumerate(c):  # the period after the inversion, from m = 0
        ek = np.exp(-td[k] / t1)
        a_total, b_total = a_total * ek, b_total * ek + 1 - ek
        a_total, b_total = a_total * np.float_power(ck, n), train(b_total, ck, n)
    e_last = np.exp(-td[-1] / t1)
    a_total, b_total = a_total * e_last, b_total * e_last + 1 - e_last
    m_ss = b_total / (1 + eff * a_total)

    signals, m = [], -eff * m_ss
    for k, ck in enumerate(c):
        m = train(recover(m, td[k]), ck, n_before)
        signals.append(np.sin(np.deg2rad(flips_deg[k]) * b1) * m)
        m = train(m, ck, n_after)
    return np.array(signals)


def closed_form_of(protocol: MPnRAGEProtocol, t1, b1=1.0):
    p = protocol
    return closed_form(t1, p.tr_mprage, p.echo_spacing, p.inversion_times, p.flip_angles, p.n_before, p.n_after,
                       p.inversion_efficiency, b1)


def closed_uni(protocol, t1, b1=1.0):
    g = closed_form_of(protocol, t1, b1)
    return uni(g[0], g[1])


def root_t1(target, model, b1_model=1.0):
    """The T1 whose closed-form UNI of ``model`` at ``b1_model`` equals ``target`` (monotonic branch)."""
    return brentq(lambda t: closed_uni(model, t, b1_model) - target, 0.05, 5.0, xtol=1e-9)


def apparent_t1(t1_true, b1_data, b1_model=None, model=SEED_CODE_7T_MP2RAGE):
    """The T1 whose two-train closed-form UNI equals the three-train data's (root on the monotonic branch)."""
    b1_model = b1_data if b1_model is None else b1_model
    return root_t1(closed_uni(SEED_7T_MP3RAGE, t1_true, b1_data), model, b1_model)


# ------------------------------------------------------------------------------ the protocol
def test_the_seed_code_protocol_is_the_first_two_trains_of_the_seed_acquisition():
    p = SEED_CODE_7T_MP2RAGE
    assert p.n_readouts == 2 and p.readouts == (1, 2)
    assert (p.tr_mprage, p.echo_spacing, p.inversion_efficiency) == (8.25, 0.006, 0.84)
    assert p.inversion_times == (1.010, 3.310) and p.flip_angles == (4.0, 4.0)
    assert (p.n_before, p.n_after) == (112, 113)
    # the third train's time is free recovery: the period is still 8.25 s
    np.testing.assert_allclose(p.free_recovery_times, [1.010 - 112 * 0.006, 3.310 - 1.010 - 225 * 0.006,
                                                       8.25 - 3.310 - 113 * 0.006])
    h = SEED_CODE_7T_MP2RAGE_HALF_SPLIT
    assert (h.n_before, h.n_after) == (112.5, 112.5) and h.excitations_per_train == 225
    np.testing.assert_allclose(h.free_recovery_times, [0.335, 0.95, 4.265])  # the seed code's TD (utils.py)
    assert h.with_changes(name="x") == SEED_CODE_7T_MP2RAGE_HALF_SPLIT.with_changes(name="x")
    for q in (p, h):
        assert PROTOCOLS[q.name] is q and "map_t1_mapping" in q.source


@pytest.mark.parametrize("protocol", [SEED_CODE_7T_MP2RAGE, SEED_CODE_7T_MP2RAGE_HALF_SPLIT, SEED_7T_MP3RAGE],
                         ids=lambda p: p.name)
def test_the_chain_equals_the_closed_form(protocol):
    t1 = np.linspace(0.05, 5.0, 120)[:, None]
    b1 = np.array([0.3, 0.7, 1.0, 1.3, 2.0])[None, :]
    got = gre_signals(t1, protocol, b1)
    want = closed_form_of(protocol, t1, b1)
    assert got.shape == want.shape == (protocol.n_readouts, 120, 5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_a_half_power_of_a_scalar_map_is_the_continuation_of_whole_powers():
    f = AffineMap.scalar(np.array([0.9, 0.5, 1.0]), np.array([0.1, 0.3, 0.2]))
    m = np.array([[0.3], [-0.7], [0.1]])
    half = f.power(0.5)
    np.testing.assert_allclose(half.then(half).apply(m), f.apply(m), atol=1e-15)
    np.testing.assert_allclose(f.power(2.5).apply(m), half.apply(f.apply(f.apply(m))), atol=1e-15)
    with pytest.raises(ValueError, match="a > 0"):
        AffineMap.scalar(-0.5, 0.1).power(0.5)
    with pytest.raises(ValueError, match="2-dimensional.*single-pool"):
        AffineMap(np.eye(2) * 0.5, np.zeros(2)).power(112.5)
    with pytest.raises(ValueError, match="non-negative"):
        f.power(np.nan)


# ------------------------------------------------------------------------------ the shift of three-train data
@pytest.fixture(scope="module")
def three_train_data():
    """Noise-free complex GRE signals of the seed MP3RAGE (independent closed form), T1 x B1, random scale and phase."""
    rng = np.random.default_rng(3)
    t1, b1 = np.meshgrid(T1_VALUES, B1_VALUES, indexing="ij")
    scale = rng.uniform(0.5, 2.0, t1.shape) * np.exp(2j * np.pi * rng.random(t1.shape))
    return t1, b1, scale * closed_form_of(SEED_7T_MP3RAGE, t1, b1)


@pytest.mark.parametrize("split, model", [("integer", SEED_CODE_7T_MP2RAGE), ("half", SEED_CODE_7T_MP2RAGE_HALF_SPLIT)])
def test_three_train_data_read_with_two_trains_give_the_closed_form_apparent_t1(three_train_data, split, model):
    t1, b1, gre = three_train_data
    with_b1 = make_estimator("lut_b1_seed_code", SEED_7T_MP3RAGE, 0.0, seed_code_split=split).fit(gre, b1=b1).map
    nominal = make_estimator("lut_seed_code", SEED_7T_MP3RAGE, 0.0, seed_code_split=split).fit(gre).map
    want_b1 = np.vectorize(lambda t, b: apparent_t1(t, b, model=model))(t1, b1)
    want_nominal = np.vectorize(lambda t, b: apparent_t1(t, b, 1.0, model=model))(t1, b1)
    assert np.abs(with_b1 - want_b1).max() < 1e-3  # within 1 ms
    assert np.abs(nominal - want_nominal).max() < 1e-3
    # the two-train dictionary reads three-train data short, more so at long T1
    shift = want_b1 - t1
    assert (shift < 0).all()
    assert (np.diff(shift, axis=0) < 0).all()


def test_the_shift_in_white_and_grey_matter():
    """The closed form's shift at B1 = 1: about -33 ms at a WM-like T1 of 1.2 s and -152 ms at a GM-like 1.9 s."""
    shift = {t: 1e3 * (apparent_t1(t, 1.0) - t) for t in (1.2, 1.9)}
    assert -36 < shift[1.2] < -30
    assert -157 < shift[1.9] < -147
    # the code's half split moves them by about 1 ms
    half = {t: 1e3 * (apparent_t1(t, 1.0, model=SEED_CODE_7T_MP2RAGE_HALF_SPLIT) - t) for t in (1.2, 1.9)}
    assert all(0 < half[t] - shift[t] < 2 for t in half)


def test_the_seed_code_map_reads_the_two_train_apparent_t1(three_train_data):
    _, b1, gre = three_train_data
    at_one = np.isclose(b1[0], 1.0)
    gre = gre[:, :, at_one][..., 0]
    options = {"seed_map_trials": 2000, "seed_map_sigma": 0.001}
    code = make_estimator("map_seed_code_mp2rage", SEED_7T_MP3RAGE, 1e-4, **options).fit(gre).map
    seed = make_estimator("map_seed_mp2rage", SEED_7T_MP3RAGE, 1e-4, **options).fit(gre).map
    want = np.array([apparent_t1(t, 1.0) for t in T1_VALUES])
    # the seed MAP's T1 grid has 50 ms steps; beyond 3 s the Monte-Carlo noise of 2000 trials shows
    tissue = np.array(T1_VALUES) < 3.0
    assert np.abs(code - want)[tissue].max() < 0.05
    assert np.abs(seed - np.array(T1_VALUES))[tissue].max() < 0.05
    gm = T1_VALUES.index(1.9)
    assert seed[gm] - code[gm] > 0.1


# ------------------------------------------------------------------------------ the shift functions of the book
def test_seed_code_shift_is_the_closed_form_shift():
    t1, b1 = (0.8, 1.349, 1.939, 2.5), (0.7, 1.0, 1.3)
    table = seed_code_shift(t1, b1)
    assert list(table.columns) == ["t1", "b1", "shift_ms", "seed_code_ms", "lut_ms", "model_part_ms"]
    assert len(table) == len(t1) * len(b1) and list(table.t1[:len(b1)]) == [t1[0]] * len(b1)
    for row in table.itertuples():
        assert row.shift_ms == pytest.approx(1e3 * (apparent_t1(row.t1, row.b1) - row.t1), abs=1.0)
        assert row.seed_code_ms == pytest.approx(1e3 * (apparent_t1(row.t1, row.b1, 1.0) - row.t1), abs=1.0)
        three = apparent_t1(row.t1, row.b1, 1.0, model=SEED_7T_MP3RAGE)  # the acquired protocol, nominal B1
        assert row.lut_ms == pytest.approx(1e3 * (three - row.t1), abs=1.0)
    np.testing.assert_allclose(table.model_part_ms, table.seed_code_ms - table.lut_ms, atol=1e-9)
    # negative, and more so at long T1 and high B1+ (more saturation in the third train)
    shift = table.pivot(index="t1", columns="b1", values="shift_ms").to_numpy()
    assert (shift < 0).all() and (np.diff(shift, axis=0) < 0).all() and (np.diff(shift, axis=1) < 0).all()
    # the code's half split: within 3 ms of the book's
    half = seed_code_shift(t1, b1, seed_code_split="half")
    assert np.abs(half.shift_ms - table.shift_ms).max() < 3.0
    # at nominal B1+ the two readings agree, up to the 2-D table's grid in arcsin(2 S) (qt1lib.estimate.lut.BilinearTable)
    one = table[np.isclose(table.b1, 1.0)].set_index("t1")
    np.testing.assert_allclose(one.shift_ms, one.seed_code_ms, atol=1e-3)
    np.testing.assert_allclose(one.lut_ms, 0.0, atol=1.0)


def test_seed_code_shift_of_two_train_data_is_zero_and_other_data_are_refused():
    table = seed_code_shift((0.8, 1.9, 3.0), (0.8, 1.2), SEED_CODE_7T_MP2RAGE)
    assert np.abs(table.shift_ms).max() < 1.0 and np.abs(table.model_part_ms).max() < 1.0
    with pytest.raises(ValueError, match=r"seed_code_shift models.*tr_mprage"):
        seed_code_shift((1.0,), (1.0,), MARQUES_7T)
    with pytest.raises(ValueError, match="t1_values"):
        seed_code_shift((), (1.0,))
    with pytest.raises(ValueError, match="b1_values"):
        seed_code_shift((1.0,), (0.0,))
    with pytest.raises(ValueError, match="seed_code_split"):
        seed_code_shift((1.0,), (1.0,), seed_code_split="quarter")


def test_seed_code_tissue_readings_read_the_two_pool_signals():
    names = ("WM", "cortical_GM")
    table = seed_code_tissue_readings(tissues={k: TISSUES_7T[k] for k in names})
    assert list(table.tissue) == list(names)
    for row, key in zip(table.itertuples(), names):
        t = TISSUES_7T[key]
        g = gre_signals_twopool(t.r1f, t.psr, SEED_7T_MP3RAGE, 1.0, kmf=t.kmf, r1m=t.r1m)
        target = uni(g[0], g[1])
        assert row.three_train == pytest.approx(root_t1(target, SEED_7T_MP3RAGE), abs=1e-3)
        assert row.two_train == pytest.approx(root_t1(target, SEED_CODE_7T_MP2RAGE), abs=1e-3)
        assert row.shift_ms == pytest.approx(1e3 * (row.two_train - row.three_train))
        assert row.three_train < row.t1f  # MT: a single-pool reading of two-pool tissue is short
    assert (table.shift_ms < 0).all() and table.shift_ms.iloc[1] < table.shift_ms.iloc[0]
    # single-pool tissue (PSR 0): the three-train reading is the truth, the two-train one the shift
    plain = TwoPoolTissue("plain", r1f=1 / 1.5, psr=0.0, kmf=14.5, m0f=1.0)
    row = seed_code_tissue_readings(tissues={"plain": plain}).iloc[0]
    assert row.three_train == pytest.approx(1.5, abs=1e-3)
    assert row.two_train == pytest.approx(apparent_t1(1.5, 1.0), abs=1e-3)


def test_seed_code_tissue_readings_take_the_tissue_r1m_and_ignore_other_fields():
    """R1m enters the signals; T2f (the data's Bloch inversion efficiency) does not: the table isolates the model."""
    wm = TISSUES_7T["WM"]
    base = seed_code_tissue_readings(tissues={"WM": wm})
    same = seed_code_tissue_readings(tissues={"WM": dataclasses.replace(wm, t2f=0.05)})
    pd.testing.assert_frame_equal(base, same)
    fast = seed_code_tissue_readings(tissues={"WM": dataclasses.replace(wm, r1m=2.0)})
    assert abs(fast.three_train[0] - base.three_train[0]) > 1e-3
    with pytest.raises(ValueError, match="tissues"):
        seed_code_tissue_readings(tissues={})
    with pytest.raises(ValueError, match="seed_code_tissue_readings models"):
        seed_code_tissue_readings(MARQUES_7T)


# ------------------------------------------------------------------------------ every estimator and the protocol
@pytest.mark.parametrize("protocol", [SEED_CODE_7T_MP2RAGE, SEED_CODE_7T_MP2RAGE_HALF_SPLIT], ids=lambda p: p.name)
def test_every_estimator_accepts_the_seed_code_protocol_as_data(protocol):
    """Two-train data of the seed-code protocol: every MP2RAGE estimator reads them as any protocol's."""
    t1 = np.array([0.6, 1.2, 1.9, 3.0])
    b1 = np.array([0.8, 1.0, 1.0, 1.2])
    gre = (0.7 + 0.3j) * gre_signals(t1, protocol, b1)
    tolerance = {"lut": 1e-3, "lut_b1": 1e-3, "map_exact_mp2rage": 1e-3, "map_seed_mp2rage": 0.05,
                 "lut_seed_code": 1e-3, "lut_b1_seed_code": 1e-3}
    for name, tol in tolerance.items():
        options = {"seed_map_trials": 2000, "seed_map_sigma": 0.001} if "seed_map" in name else {}
        if "seed_code" in name:
            options["seed_code_split"] = "half" if protocol is SEED_CODE_7T_MP2RAGE_HALF_SPLIT else "integer"
        got = make_estimator(name, protocol, 0.0, **options).fit(gre, b1=b1).map
        unbiased = b1 == 1.0 if estimator_class(name).b1 == "none" else np.ones(t1.shape, bool)  # nominal flips
        assert np.abs(got - t1)[unbiased].max() < tol, name


def test_the_two_pool_model_refuses_half_excitations():
    with pytest.raises(ValueError, match="single-pool"):
        gre_signals_twopool(1 / 1.35, 0.114, SEED_CODE_7T_MP2RAGE_HALF_SPLIT)
    assert np.isfinite(gre_signals_twopool(1 / 1.35, 0.114, SEED_CODE_7T_MP2RAGE)).all()


# ------------------------------------------------------------------------------ refusals and bad input
@pytest.mark.parametrize(
    "change, field",
    [
        ({"tr_mprage": 8.0}, r"tr_mprage \(s\) = 8\.0 \(the seed's: 8\.25\)"),
        ({"echo_spacing": 0.0062}, r"echo_spacing"),
        ({"inversion_times": (0.9, 3.31, 5.61)}, r"inversion_times\[0\]"),
        ({"inversion_times": (1.01, 3.2, 5.61)}, r"inversion_times\[1\] \(s\) = 3\.2"),
        ({"flip_angles": (4.0, 5.0, 4.0)}, r"flip_angles\[1\]"),
        ({"n_before": 100}, r"excitations per train"),
    ],
)
def test_the_seed_code_estimators_refuse_another_acquisition(change, field):
    other = SEED_7T_MP3RAGE.with_changes(name="other", **change)
    for name in SEED_CODE_ESTIMATORS:
        with pytest.raises(ValueError, match=rf"estimator '{name}'.*protocol 'other' differs in readouts 1-2: .*{field}"):
            make_estimator(name, other, 0.001)


def test_what_the_seed_code_estimators_accept():
    # the third train, the efficiency and the split are not compared (the model fixes them)
    for change in ({"inversion_times": (1.01, 3.31, 6.0)}, {"inversion_efficiency": 0.9},
                   {"n_before": 100, "n_after": 125}):
        e = make_estimator("lut_seed_code", SEED_7T_MP3RAGE.with_changes(**change), 0.001)
        assert e.parameters()["protocol"]["inversion_efficiency"] == 0.84
    # an MP2RAGE view stands for its acquisition; a true two-train acquisition is read without mismatch
    assert make_estimator("lut_seed_code", SEED_7T_MP2RAGE).data_acquisition.n_readouts == 3
    assert make_estimator("lut_seed_code", SEED_CODE_7T_MP2RAGE).data_acquisition.n_readouts == 2
    with pytest.raises(ValueError, match=r"differs in readouts 1-2: .*tr_mprage.*inversion_times\[0\].*flip_angles\[1\]"):
        make_estimator("map_seed_code_mp2rage", MARQUES_7T)


def test_bad_input_names_the_parameter():
    # a protocol or view that drops a train the estimator needs
    one_train = SEED_7T_MP3RAGE.first_trains(1)
    assert one_train.n_readouts == 1 and one_train.tr_mprage == 8.25
    with pytest.raises(ValueError, match=r"'lut_seed_code' needs readouts \(1, 2\); protocol .* has 1"):
        make_estimator("lut_seed_code", one_train)
    with pytest.raises(ValueError, match=r"used_readouts"):
        SEED_7T_MP3RAGE.view((1, 3)).first_trains(2)
    with pytest.raises(ValueError, match="used_readouts"):
        SEED_CODE_7T_MP2RAGE.view((1, 3))
    with pytest.raises(ValueError, match=r"map_seed_mp3rage.*readouts \(1, 2, 3\).*has 2"):
        make_estimator("map_seed_mp3rage", SEED_CODE_7T_MP2RAGE)
    for n in (0, 4, 1.5, "2"):
        with pytest.raises(ValueError, match=r"first_trains needs n \(trains kept\)"):
            SEED_7T_MP3RAGE.first_trains(n)
    # half counts only as the two halves of an odd count
    with pytest.raises(ValueError, match="n_before = 112.5 and n_after = 113"):
        SEED_CODE_7T_MP2RAGE.with_changes(n_before=112.5)
    with pytest.raises(ValueError, match="n_after must be an integer"):
        SEED_CODE_7T_MP2RAGE.with_changes(n_after=112.25)
    # options and data
    with pytest.raises(ValueError, match="seed_code_split"):
        make_estimator("lut_seed_code", SEED_7T_MP3RAGE, seed_code_split="quarter")
    with pytest.raises(ValueError, match="no option 'scale_prior'"):
        make_estimator("lut_seed_code", SEED_7T_MP3RAGE, scale_prior="flat")
    with pytest.raises(TypeError, match="protocol"):
        make_estimator("lut_seed_code", "seed-7T-MP3RAGE")
    with pytest.raises(ValueError, match=r"gre must have shape \(3, \.\.\.\): one image per readout of the data's"):
        make_estimator("lut_seed_code", SEED_7T_MP3RAGE).fit(np.ones((2, 4), dtype=complex))
    with pytest.raises(ValueError, match=r"'lut_b1_seed_code' needs a B1\+ map"):
        make_estimator("lut_b1_seed_code", SEED_7T_MP3RAGE).fit(np.ones((3, 4), dtype=complex))


# ------------------------------------------------------------------------------ registry, parameters, modules
def test_the_estimators_are_registered_and_their_parameters_hold_model_and_data():
    assert estimator_names()[-3:] == SEED_CODE_ESTIMATORS
    expected = {"lut_seed_code": ("lut", "none", "LUTseedcode", "lut"),
                "lut_b1_seed_code": ("lut", "map", "LUTB1seedcode", "lut_b1"),
                "map_seed_code_mp2rage": ("seed", "none", "MAPseedcodeMP2RAGE", "map_seed_mp2rage")}
    model = SEED_CODE_7T_MP2RAGE.with_changes(name="acquisition", source="").describe()
    data = SEED_7T_MP3RAGE.with_changes(name="acquisition", source="").describe()
    for name, (method, b1, desc, parent) in expected.items():
        cls = estimator_class(name)
        assert (cls.method, cls.b1, cls.desc, cls.readouts) == (method, b1, desc, (1, 2))
        p = make_estimator(name, SEED_7T_MP3RAGE, 0.002).parameters()
        json.dumps(p)
        assert p["protocol"] == model and p["data_protocol"] == data
        assert (p["model"], p["seed_code_split"]) == ("seed-code-7T-MP2RAGE", "integer")
        plain = make_estimator(parent, SEED_7T_MP3RAGE, 0.002).parameters()  # the same but for the model
        assert {k: v for k, v in p.items() if k not in ("model", "seed_code_split", "data_protocol")} == {
            **plain, "estimator": name, "protocol": model}
        half = make_estimator(name, SEED_7T_MP3RAGE, 0.002, seed_code_split="half").parameters()
        assert half["protocol"]["n_before"] == 112.5 and half["model"] == SEED_CODE_7T_MP2RAGE_HALF_SPLIT.name
        renamed = make_estimator(name, SEED_7T_MP3RAGE.with_changes(name="sub-01 sidecars"), 0.002).parameters()
        assert renamed == p


def _qt1lib_imports(module: str) -> set[str]:
    path = Path(sys.modules[module].__file__)
    package = module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            out.add(f"{package}.{node.module}")
    return out


def test_each_seed_code_module_imports_only_its_parent_estimator():
    """The store hashes an estimator's modules and their imports: keep unrelated estimators out."""
    estimators = {f"qt1lib.estimate.{m}" for m in ("lut_estimators", "seed_map_estimators", "exact_map_estimators",
                                                   "seed_code_lut_estimators", "seed_code_map_estimators")}
    assert not _qt1lib_imports("qt1lib.estimate.seed_code") & estimators
    assert _qt1lib_imports("qt1lib.estimate.seed_code_lut_estimators") & estimators == {"qt1lib.estimate.lut_estimators"}
    assert _qt1lib_imports("qt1lib.estimate.seed_code_map_estimators") & estimators == {
        "qt1lib.estimate.seed_map_estimators"}
    assert estimator_class("lut_seed_code").modules == (
        "qt1lib.estimate.lut_estimators", "qt1lib.estimate.seed_code", "qt1lib.estimate.seed_code_lut_estimators",
        "qt1lib.estimate.lut")
    assert estimator_class("map_seed_code_mp2rage").modules == (
        "qt1lib.estimate.seed_map_estimators", "qt1lib.estimate.seed_code", "qt1lib.estimate.seed_code_map_estimators",
        "qt1lib.estimate.map")
