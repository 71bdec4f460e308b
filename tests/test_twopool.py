"""Two-pool MPnRAGE model: limits, an independent matrix exponential, and the MT bias of MP2RAGE."""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.linalg import expm

from qt1lib.estimate.apparent import apparent_single_pool_t1
from qt1lib.protocols import MARQUES_7T, SEED_7T_MP3RAGE
from qt1lib.sequences.mpnrage import gre_signals, uni
from qt1lib.sequences.twopool import (
    SIEMENS_HS_INVERSION,
    TISSUES_7T,
    TwoPool,
    excitation_bound_fraction,
    gre_signals_twopool,
    lineshape,
    relaxation_map,
)


def test_zero_psr_equals_single_pool_chain():
    t1 = np.array([0.4, 0.9, 1.349, 1.9, 4.4])
    b1 = np.array([0.7, 0.9, 1.0, 1.1, 1.3])
    for protocol in (SEED_7T_MP3RAGE, MARQUES_7T):
        single = gre_signals(t1, protocol, b1)
        two = gre_signals_twopool(1.0 / t1, 0.0, protocol, b1)
        np.testing.assert_allclose(two, single, rtol=0, atol=1e-9)


def test_relaxation_map_matches_scipy_expm_of_bloch_mcconnell():
    rng = np.random.default_rng(3)
    r1f, r1m = rng.uniform(0.2, 1.5, 6), rng.uniform(0.2, 3.0, 6)
    psr, kmf, m0f = rng.uniform(0.0, 0.3, 6), rng.uniform(5.0, 40.0, 6), rng.uniform(0.5, 1.2, 6)
    m_start = rng.uniform(-1.0, 1.0, (6, 2))
    for t in (1e-4, 0.0067, 0.3, 2.5):
        mapped = relaxation_map(r1f, r1m, psr, kmf, m0f, t).apply(m_start)
        for i in range(6):
            kfm = psr[i] * kmf[i]
            m0 = np.array([m0f[i], psr[i] * m0f[i]])
            # augmented homogeneous system d/dt [M; 1] = [[L, R1 M0], [0, 0]] [M; 1], written from the ODEs
            big = np.array(
                [
                    [-r1f[i] - kfm, kmf[i], r1f[i] * m0[0]],
                    [kfm, -r1m[i] - kmf[i], r1m[i] * m0[1]],
                    [0.0, 0.0, 0.0],
                ]
            )
            expected = (expm(big * t) @ np.append(m_start[i], 1.0))[:2]
            np.testing.assert_allclose(mapped[i], expected, rtol=1e-10, atol=1e-12)


def test_relaxation_map_degenerate_eigenvalues():
    # PSR = 0 and R1f = R1m + kmf make the two eigenvalues equal: the closed form must stay exact.
    r1f, r1m, kmf, t = 3.0, 1.0, 2.0, 0.4
    mapped = relaxation_map(r1f, r1m, 0.0, kmf, 1.0, t)
    L = np.array([[-r1f, kmf], [0.0, -r1m - kmf]])
    np.testing.assert_allclose(mapped.A, expm(L * t), rtol=1e-10, atol=1e-14)


def test_superlorentzian_against_adaptive_quadrature():
    t2m = 12e-6
    for delta in (0.0, 800.0, 2500.0, 10000.0):
        eff = 0.00016 * delta**2 + 1140.0 if delta <= 1500 else delta

        def integrand(u):
            q = 3 * u**2 - 1
            return np.sqrt(2 / np.pi) * t2m / abs(q) * np.exp(-2 * (2 * np.pi * eff * t2m / q) ** 2)

        expected = quad(integrand, 0, 1, points=[1 / np.sqrt(3)], limit=200)[0]
        assert lineshape(delta, t2m) == pytest.approx(expected, rel=1e-6)


def test_lineshapes_are_normalised_densities():
    # G is a density in angular frequency (W = pi omega1^2 G): its integral over Hz is 1 / (2 pi)
    t2m, f_max = 12e-6, 2e5
    f = np.linspace(-f_max, f_max, 400001)
    assert np.trapezoid(lineshape(f, t2m, "gaussian"), f) == pytest.approx(1 / (2 * np.pi), rel=1e-6)
    # a Lorentzian truncated at +-f_max holds (2/pi) arctan(2 pi f_max T2) of its area
    expected = 2 / np.pi * np.arctan(2 * np.pi * f_max * t2m) / (2 * np.pi)
    assert np.trapezoid(lineshape(f, t2m, "lorentzian"), f) == pytest.approx(expected, rel=1e-6)


def test_bound_pool_saturation_grows_with_power():
    fractions = SIEMENS_HS_INVERSION.bound_fraction(np.array([0.5, 0.8, 1.0, 1.3]))
    assert np.all(np.diff(fractions) < 0) and np.all((fractions > 0) & (fractions < 1))
    # the exponent scales with B1^2
    np.testing.assert_allclose(np.log(fractions) / np.array([0.25, 0.64, 1.0, 1.69]), np.log(fractions[2]), rtol=1e-12)
    short, long = excitation_bound_fraction(np.deg2rad(8), 0.2e-3), excitation_bound_fraction(np.deg2rad(8), 1e-3)
    assert short < long < 1


def test_twopool_rejects_bad_input():
    with pytest.raises(ValueError, match="psr"):
        TwoPool(0.7, -0.1)
    with pytest.raises(ValueError, match="r1f"):
        TwoPool(np.nan, 0.1)
    with pytest.raises(ValueError, match="broadcast"):
        TwoPool(np.ones(3), np.ones(4) * 0.1)
    with pytest.raises(ValueError, match="duration"):
        TwoPool(0.7, 0.1).excite(np.deg2rad(4), 0.0)
    with pytest.raises(ValueError, match="b1"):
        gre_signals_twopool(np.full(2, 0.7), 0.1, SEED_7T_MP3RAGE, b1=np.ones(3))


def _lut_t1(s12, protocol, b1=1.0):
    """Independent single-pool lookup: invert S_12(T1) on its monotonic branch with np.interp."""
    grid = np.linspace(0.2, 4.0, 4000)
    g = gre_signals(grid, protocol, b1)
    curve = uni(g[0], g[1])
    keep = np.concatenate([[True], np.diff(curve) < 0])  # S_12 decreases with T1 on the branch
    keep &= np.cumprod(keep).astype(bool)
    return np.interp(s12, curve[keep][::-1], grid[keep][::-1])


def test_single_pool_reading_of_white_matter_is_shorter_and_grows_with_psr():
    wm = TISSUES_7T["WM"]
    psrs = np.array([0.0, 0.03, 0.06, 0.1, 0.15, 0.2])
    gre = gre_signals_twopool(wm.r1f, psrs, SEED_7T_MP3RAGE)
    t1_read = _lut_t1(uni(gre[0], gre[1]), SEED_7T_MP3RAGE)
    assert t1_read[0] == pytest.approx(wm.t1f, rel=1e-4)  # no MT: the LUT reads the truth
    assert np.all(t1_read[1:] < wm.t1f)
    assert np.all(np.diff(t1_read) < 0)  # the bias grows with PSR


def test_apparent_t1_helper_matches_an_independent_lookup():
    psrs = np.array([0.0, 0.05, 0.114, 0.2])
    for tissue in (TISSUES_7T["WM"], TISSUES_7T["cortical_GM"]):
        gre = gre_signals_twopool(tissue.r1f, psrs, SEED_7T_MP3RAGE)
        expected = _lut_t1(uni(gre[0], gre[1]), SEED_7T_MP3RAGE)
        np.testing.assert_allclose(apparent_single_pool_t1(tissue.r1f, psrs, SEED_7T_MP3RAGE), expected, rtol=1e-3)
