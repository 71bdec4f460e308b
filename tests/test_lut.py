"""Lookup-table T1: round trips, B1 correction and bad input."""

import numpy as np
import pytest

from qt1lib.estimate.lut import LookupTable, lut_t1
from qt1lib.protocols import MARQUES_3T, MARQUES_7T, SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals, uni


def _s(t1, protocol, b1=1.0, pair=(1, 2)):
    g = gre_signals(t1, protocol, b1)
    return uni(g[pair[0] - 1], g[pair[1] - 1])


@pytest.mark.parametrize("protocol", [SEED_7T_MP3RAGE, MARQUES_3T], ids=lambda p: p.name)
@pytest.mark.parametrize("b1", [1.0, 0.8])
def test_noise_free_round_trip_within_1ms(protocol, b1):
    t1 = np.linspace(0.5, 4.0, 351)
    s = _s(t1, protocol, b1)
    est = lut_t1(s, protocol) if b1 == 1.0 else lut_t1(s, protocol, b1=np.full_like(s, b1))
    assert np.max(np.abs(est - t1)) < 1e-3


def test_round_trip_between_b1_nodes_and_s13():
    t1 = np.linspace(0.5, 4.0, 200)
    b1 = np.linspace(0.65, 1.25, 200)  # off the 0.01 grid nodes
    est = lut_t1(_s(t1, SEED_7T_MP3RAGE, b1), SEED_7T_MP3RAGE, b1=b1)
    assert np.max(np.abs(est - t1)) < 1e-3
    s13 = _s(t1, SEED_7T_MP3RAGE, pair=(1, 3))
    assert np.max(np.abs(lut_t1(s13, SEED_7T_MP3RAGE, pair=(1, 3)) - t1)) < 1e-3


def test_marques_7t_branch_ends_before_csf():
    """Beyond its branch the 7T UNI folds back: a long T1 is read as the branch end, never longer."""
    t1 = np.linspace(0.5, 3.5, 100)
    assert np.max(np.abs(lut_t1(_s(t1, MARQUES_7T), MARQUES_7T) - t1)) < 1e-3
    csf = lut_t1(_s(4.5, MARQUES_7T), MARQUES_7T)
    assert csf < 4.5


def test_ignoring_b1_biases_and_correction_removes_it():
    t1 = np.full(5, 1.2)
    b1 = np.array([0.6, 0.8, 1.0, 1.2, 1.4])
    s = _s(t1, SEED_7T_MP3RAGE, b1)
    naive = lut_t1(s, SEED_7T_MP3RAGE)
    corrected = lut_t1(s, SEED_7T_MP3RAGE, b1=b1)
    assert np.all(np.abs(corrected - t1) < 1e-3)
    err = naive - t1
    assert abs(err[2]) < 1e-3
    assert np.all(np.diff(err) > 0) or np.all(np.diff(err) < 0)  # monotonic in B1


def test_lut_is_monotonic_in_s():
    s = np.linspace(-0.44, 0.49, 500)
    t1 = lut_t1(s, SEED_7T_MP3RAGE)
    assert np.all(np.diff(t1) <= 0)


def test_plateau_is_trimmed():
    t1 = np.array([0.05, 0.051, 0.052, 0.3, 1.0])
    table = LookupTable.from_curve(t1, np.array([0.5, 0.5, 0.5, 0.2, -0.1]))
    assert np.all(np.diff(table.s) > 0)
    assert table(0.5) == 0.05


def test_nan_passes_through_and_bad_input_raises():
    out = lut_t1(np.array([0.1, np.nan]), SEED_7T_MP3RAGE)
    assert np.isfinite(out[0]) and np.isnan(out[1])
    with pytest.raises(ValueError, match=r"\[-0.5, 0.5\]"):
        lut_t1(np.array([0.7]), SEED_7T_MP3RAGE)
    with pytest.raises(ValueError, match="b1"):
        lut_t1(np.array([0.1]), SEED_7T_MP3RAGE, b1=np.array([0.0]))
    with pytest.raises(ValueError, match="b1_grid"):
        lut_t1(np.array([0.1]), SEED_7T_MP3RAGE, b1=np.array([2.5]))
    with pytest.raises(ValueError, match="broadcast"):
        lut_t1(np.zeros(3), SEED_7T_MP3RAGE, b1=np.ones(4))
    with pytest.raises(ValueError, match="pair"):
        lut_t1(np.zeros(3), SEED_7T_MP3RAGE, pair=(1, 4))
