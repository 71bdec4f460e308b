"""Lookup-table T1: round trips, B1 correction and bad input."""

import numpy as np
import pytest

from qt1lib.estimate.lut import DEFAULT_T1_GRID, LookupTable, _rows, lut_t1
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


def _branch_grid(protocol, pair=(1, 2)):
    """Forward model on a (B1, T1) grid, off the table's B1 nodes, and where T1 is on the branch."""
    t1 = np.linspace(0.05, 5.0, 1981)
    b1 = np.arange(0.5, 1.5, 0.0137)
    s = _s(t1[None, :], protocol, b1[:, None], pair)
    on_branch = np.zeros(s.shape, bool)
    for row, s_row in zip(on_branch, s):  # between the maximum and the minimum of S(T1): Marques' branch
        lo, hi = sorted((int(np.argmax(s_row)), int(np.argmin(s_row))))
        row[lo : hi + 1] = True
    slope = np.abs(np.gradient(s, t1, axis=1))
    return np.broadcast_to(t1, s.shape), np.broadcast_to(b1[:, None], s.shape), s, on_branch, slope


@pytest.mark.parametrize(
    "protocol, pair", [(SEED_7T_MP3RAGE, (1, 2)), (SEED_7T_MP3RAGE, (1, 3)), (MARQUES_3T, (1, 2)), (MARQUES_7T, (1, 2))],
    ids=lambda p: getattr(p, "name", str(p)),
)
def test_2d_table_agrees_with_the_forward_model_to_the_stated_bound(protocol, pair):
    """The bounds of BilinearTable's docstring: T1 0.05-5 s, B1 0.5-1.5, on the monotonic branch."""
    t1, b1, s, on_branch, slope = _branch_grid(protocol, pair)
    err = np.abs(lut_t1(s, protocol, b1=b1, pair=pair) - t1)
    # identifiable T1 (|dS/dT1| >= 0.02 /s), away from the end of the T1 grid (5 s), where a
    # neighbouring B1 row reads the end
    assert err[on_branch & (slope >= 0.02) & (t1 < 4.9)].max() < 0.5e-3
    assert err[on_branch & (slope >= 0.01) & (t1 < 4.9)].max() < 1e-3
    # everywhere on the branch, the error in S units is far below a voxel's S noise (~0.01)
    assert (err * slope)[on_branch].max() < 2e-3
    assert err[on_branch].max() < 0.06  # worst case: short T1 where S flattens (|dS/dT1| -> 0)


def test_2d_table_round_trip_at_random_t1_and_b1():
    """Forward model -> table -> T1 at random (T1, B1) inside the branch of every B1 row."""
    rng = np.random.default_rng(12)
    t1 = rng.uniform(0.3, 4.0, 5000)
    b1 = rng.uniform(0.5, 1.5, 5000)
    for pair in ((1, 2), (1, 3)):
        est = lut_t1(_s(t1, SEED_7T_MP3RAGE, b1, pair), SEED_7T_MP3RAGE, b1=b1, pair=pair)
        assert np.max(np.abs(est - t1)) < 1e-3


def test_2d_table_keeps_shape_scalars_and_nan():
    t1 = np.array([[0.8, 1.5], [2.0, 3.0]])
    b1 = np.array([0.9, 1.1])  # broadcast over rows
    s = _s(t1, SEED_7T_MP3RAGE, b1)
    s[1, 0] = np.nan
    out = lut_t1(s, SEED_7T_MP3RAGE, b1=b1)
    assert out.shape == (2, 2) and np.isnan(out[1, 0])
    ok = np.isfinite(s)
    assert np.all(np.abs(out[ok] - t1[ok]) < 1e-3)
    scalar = lut_t1(float(s[0, 0]), SEED_7T_MP3RAGE, b1=0.9)
    assert np.ndim(scalar) == 0 and abs(scalar - 0.8) < 1e-3


def test_2d_table_beyond_the_branch_reads_its_end():
    """At a B1 node, S beyond a row's branch gives the T1 at that end, as the 1-D table does."""
    for b1 in (0.7, 1.0, 1.3):
        (row,) = _rows(MARQUES_7T, (1, 2), DEFAULT_T1_GRID, (b1,))
        beyond = np.clip([-0.5, row.s[0] - 1e-3, row.s[-1] + 1e-3, 0.5], -0.5, 0.5)
        out = lut_t1(beyond, MARQUES_7T, b1=b1)
        np.testing.assert_allclose(out, row(beyond), atol=1e-9)
        np.testing.assert_allclose(out, [row.t1[0], row.t1[0], row.t1[-1], row.t1[-1]], atol=1e-9)


def test_2d_table_b1_outside_the_grid_names_the_range():
    with pytest.raises(ValueError, match=r"b1 spans \[0.290, 1.000\], outside the table's b1_grid \[0.3, 2\]"):
        lut_t1(np.array([0.1, 0.2]), SEED_7T_MP3RAGE, b1=np.array([1.0, 0.29]))
    with pytest.raises(ValueError, match="b1 must be finite"):
        lut_t1(np.array([0.1]), SEED_7T_MP3RAGE, b1=np.array([np.nan]))
    with pytest.raises(ValueError, match="u_step"):
        lut_t1(np.array([0.1]), SEED_7T_MP3RAGE, b1=np.array([1.0]), u_step=0.0)
