"""The MPnRAGE chain against an independent closed form, and invariants of the combinations."""

import numpy as np
import pytest

from qt1lib.protocols import MARQUES_3T, MARQUES_7T, SEED_7T_MP3RAGE
from qt1lib.sequences import AffineMap, combinations, gre_signals, robust_uni, uni


def marques_closed_form(t1, protocol, b1=1.0):
    """Marques et al. 2010 appendix / MPRAGEfunc.m, written out independently of qt1lib's chain.

    Steady state before the inversion:
    Mss = num / (1 + eff * prod_k cos(a_k)^n * exp(-TR_MP2RAGE / T1)), where num is the recovery
    accumulated over the period starting from Mz = 0 after the inversion. The signal of readout
    k is sin(a_k) times Mz after n_before (excite + relax) steps of train k.
    """
    t1 = np.asarray(t1, float)
    n_b, n_a = protocol.n_before, protocol.n_after
    n = n_b + n_a
    tr = protocol.echo_spacing
    a = np.deg2rad(np.asarray(protocol.flip_angles)) * b1
    tis = protocol.inversion_times
    td = [tis[0] - n_b * tr] + [tis[k] - tis[k - 1] - n * tr for k in range(1, len(tis))]
    td.append(protocol.tr_mprage - tis[-1] - n_a * tr)
    e1 = np.exp(-tr / t1)
    ca = np.cos(a)[:, None] * e1 if np.ndim(t1) else np.cos(a) * e1

    def steps(m, k, count):  # `count` (excite, relax TR) steps of train k
        c = ca[k]
        return m * c**count + (1 - e1) * (1 - c**count) / (1 - c)

    num = 1 - np.exp(-td[0] / t1)
    for k in range(len(tis)):
        num = steps(num, k, n)
        num = num * np.exp(-td[k + 1] / t1) + 1 - np.exp(-td[k + 1] / t1)
    mss = num / (1 + protocol.inversion_efficiency * np.prod(np.cos(a)) ** n * np.exp(-protocol.tr_mprage / t1))

    out = []
    m = -protocol.inversion_efficiency * mss * np.exp(-td[0] / t1) + 1 - np.exp(-td[0] / t1)
    m = steps(m, 0, n_b)
    out.append(np.sin(a[0]) * m)
    for k in range(1, len(tis)):
        m = steps(m, k - 1, n_a)
        m = m * np.exp(-td[k] / t1) + 1 - np.exp(-td[k] / t1)
        m = steps(m, k, n_b)
        out.append(np.sin(a[k]) * m)
    return np.array(out)


@pytest.mark.parametrize("protocol", [SEED_7T_MP3RAGE, MARQUES_7T, MARQUES_3T], ids=lambda p: p.name)
@pytest.mark.parametrize("b1", [0.6, 0.8, 1.0, 1.3])
def test_chain_matches_marques_closed_form(protocol, b1):
    t1 = np.array([0.3, 0.8, 1.2, 1.9, 2.7, 4.4])
    expected = np.stack([marques_closed_form(t, protocol, b1) for t in t1], axis=1)
    np.testing.assert_allclose(gre_signals(t1, protocol, b1), expected, rtol=0, atol=1e-9)


def test_chain_closed_form_for_other_efficiency_and_two_readouts():
    p = SEED_7T_MP3RAGE.with_changes(inversion_efficiency=0.97, inversion_times=(1.0, 3.4), flip_angles=(5.0, 3.0))
    t1 = np.linspace(0.2, 4.5, 9)
    expected = np.stack([marques_closed_form(t, p) for t in t1], axis=1)
    np.testing.assert_allclose(gre_signals(t1, p), expected, atol=1e-9)


def test_broadcasting_shapes_and_values():
    t1 = np.linspace(0.5, 4, 7)[:, None]
    b1 = np.array([0.7, 1.0, 1.2])[None, :]
    g = gre_signals(t1, SEED_7T_MP3RAGE, b1)
    assert g.shape == (3, 7, 3)
    np.testing.assert_allclose(g[:, 4, 1], gre_signals(t1[4, 0], SEED_7T_MP3RAGE, 1.0), atol=1e-15)


def test_full_recovery_limit():
    """With T1 far shorter than every gap, Mz is back to M0 at each train: GRE_k -> sin(a_k) * steady FLASH."""
    p = MARQUES_7T
    t1 = 1e-3
    g = gre_signals(t1, p)
    a = np.deg2rad(np.asarray(p.flip_angles))
    # after n_before steps from Mz = 1, for e ~ 0 every step returns Mz to 1 - e ~ 1
    np.testing.assert_allclose(g, np.sin(a) * 1.0, atol=1e-6)


@pytest.mark.parametrize("protocol", [SEED_7T_MP3RAGE, MARQUES_7T, MARQUES_3T], ids=lambda p: p.name)
def test_uni_bounds_and_monotonic_branch(protocol):
    t1 = np.linspace(0.05, 5, 2000)
    g = gre_signals(t1, protocol)
    s = uni(g[0], g[1])
    assert np.all(s <= 0.5 + 1e-12) and np.all(s >= -0.5 - 1e-12)
    # On the branch the LUT uses (between the extremes), S is monotonic in T1.
    lo, hi = sorted((np.argmax(s), np.argmin(s)))
    d = np.diff(s[lo : hi + 1])
    assert np.all(d <= 1e-12) or np.all(d >= -1e-12)
    assert hi - lo > 1000  # the branch covers most of the brain's T1 range


def test_uni_invariance_to_complex_scale_and_robust_limit():
    rng = np.random.default_rng(1)
    g = gre_signals(np.array([0.9, 1.5, 3.0]), SEED_7T_MP3RAGE)
    c = 0.7 * np.exp(1j * 1.1)
    np.testing.assert_allclose(uni(c * g[0], c * g[1]), uni(g[0], g[1]), atol=1e-15)
    np.testing.assert_allclose(robust_uni(g[0], g[1], 0.0), uni(g[0], g[1]), atol=1e-15)
    # A large beta drives noise-only voxels to -0.5.
    noise = rng.normal(size=(2, 1000)) * 1e-3
    assert np.all(np.abs(robust_uni(noise[0], noise[1], beta=1.0) + 0.5) < 1e-3)
    assert np.isnan(uni(0.0, 0.0))
    with pytest.raises(ValueError, match="beta"):
        robust_uni(g[0], g[1], -1.0)


def test_uni_never_leaves_its_bounds_in_float32():
    """Equal and opposite float32 signals sit on the bounds, where rounding overshoots the raw formula
    (the paper profile's noise-free one-tissue images failed the seed MAP's range check so)."""
    rng = np.random.default_rng(3)
    g = (rng.standard_normal(20_000) + 1j * rng.standard_normal(20_000)).astype(np.complex64)
    raw = np.real(np.conj(g) * g) / (np.abs(g) ** 2 + np.abs(g) ** 2)
    assert raw.max() > 0.5  # the overshoot is real, so the test can fail
    for combine in (uni, lambda a, b: robust_uni(a, b, 0.0)):
        assert combine(g, g).max() == 0.5 and combine(g, -g).min() == -0.5
        assert combine(g, g).dtype == np.float32
    assert np.isnan(uni(np.complex64(0), np.complex64(0)))


def test_combinations_follow_the_view():
    g = gre_signals(np.array([1.0, 2.0]), SEED_7T_MP3RAGE)
    assert combinations(g, SEED_7T_MP3RAGE).shape == (2, 2)
    mp2 = SEED_7T_MP3RAGE.view((1, 2))
    np.testing.assert_array_equal(combinations(g, mp2)[0], uni(g[0], g[1]))
    with pytest.raises(ValueError, match="readouts"):
        combinations(g[:2], SEED_7T_MP3RAGE)


@pytest.mark.parametrize(
    "t1, b1, match",
    [(np.nan, 1.0, "NaN"), (-1.0, 1.0, "t1"), (1.0, 0.0, "b1"), (np.ones(3), np.ones(4), "broadcast")],
)
def test_bad_input(t1, b1, match):
    with pytest.raises(ValueError, match=match):
        gre_signals(t1, SEED_7T_MP3RAGE, b1)


def test_affine_map_algebra():
    rng = np.random.default_rng(0)
    A = rng.uniform(-0.9, 0.9, size=(5, 2, 2)) / 2
    b = rng.normal(size=(5, 2))
    f = AffineMap(A, b)
    x = rng.normal(size=(5, 2))
    np.testing.assert_allclose(f.power(5).apply(x), f.apply(f.apply(f.apply(f.apply(f.apply(x))))), atol=1e-12)
    np.testing.assert_allclose(f.power(0).apply(x), x)
    fp = f.fixed_point()
    np.testing.assert_allclose(f.apply(fp), fp, atol=1e-12)
    with pytest.raises(ValueError):
        f.power(-1)
