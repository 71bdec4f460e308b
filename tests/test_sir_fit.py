"""SIR-qMT fit and mono-exponential RD-NLS IR fit: recovery of known parameters, bounds, flags."""

import numpy as np
import pytest

from qt1lib.estimate.ir_fit import fit_ir_rdnls
from qt1lib.estimate.sir_fit import DEFAULT_BOUNDS, fit_sir
from qt1lib.protocols_sir import DENSE_SIR, DORTCH_2018_SIR
from qt1lib.sequences.sir import sir_signal


def _tissue(rng, n):
    return dict(
        r1f=rng.uniform(0.5, 0.8, n),
        psr=rng.uniform(0.06, 0.16, n),
        sf=rng.uniform(-0.98, -0.85, n),
        m0f=rng.uniform(0.6, 1.0, n),
    )


def _noisy(signal, sigma, rng):
    """Magnitude of the signal plus complex Gaussian noise (Rician magnitude data)."""
    noise = sigma * (rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape))
    return np.abs(signal + noise)


def test_noiseless_fit_is_exact():
    rng = np.random.default_rng(0)
    truth = _tissue(rng, 200)
    for protocol in (DORTCH_2018_SIR, DENSE_SIR):
        res = fit_sir(sir_signal(protocol=protocol, **truth), protocol)
        assert res.converged.all()
        for name in ("r1f", "psr", "sf", "m0f"):
            np.testing.assert_allclose(getattr(res, name), truth[name], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("protocol", [DORTCH_2018_SIR, DENSE_SIR])
def test_recovers_r1f_at_snr_100(protocol):
    rng = np.random.default_rng(1)
    truth = _tissue(rng, 1000)
    clean = sir_signal(protocol=protocol, magnitude=False, **truth)
    res = fit_sir(_noisy(clean, 1 / 100, rng), protocol)
    failures = ~res.converged
    assert failures.mean() < 0.02, f"{failures.sum()} of 1000 voxels did not converge"
    rel = res.r1f / truth["r1f"] - 1
    assert abs(np.median(rel)) < 0.02
    assert abs(np.median(res.psr / truth["psr"] - 1)) < 0.05


def test_values_never_leave_bounds_unflagged():
    rng = np.random.default_rng(2)
    truth = _tissue(rng, 400)
    truth["psr"][:200] = 0.0  # noise pushes half of these below PSR = 0
    truth["r1f"][::4] = 1.0  # far above the upper R1f bound below
    data = _noisy(sir_signal(protocol=DORTCH_2018_SIR, magnitude=False, **truth), 0.02, rng)
    bounds = {"r1f": (0.55, 0.75)}  # excludes part of the true R1f range
    res = fit_sir(data, DORTCH_2018_SIR, bounds=bounds)
    limits = dict(DEFAULT_BOUNDS, **bounds)
    on_bound = np.zeros(400, bool)
    for name, (low, high) in limits.items():
        value = getattr(res, name)
        assert np.all((value >= low) & (value <= high)), name
        on_bound |= np.isclose(value, low, rtol=0, atol=1e-9) | np.isclose(value, high, rtol=0, atol=1e-9)
    assert np.array_equal(on_bound, res.at_bound)
    assert res.at_bound[::4].mean() > 0.9  # a truth far outside the bounds is flagged


def test_fixed_r1m_option_and_nan_voxels():
    rng = np.random.default_rng(3)
    truth = _tissue(rng, 50)
    data = sir_signal(protocol=DENSE_SIR, r1m=1.0, **truth)
    data[:, :5] = np.nan
    res = fit_sir(data.reshape(DENSE_SIR.n_samples, 5, 10), DENSE_SIR, r1m=1.0)
    assert res.r1f.shape == (5, 10)
    assert np.isnan(res.r1f.ravel()[:5]).all() and not res.converged.ravel()[:5].any()
    np.testing.assert_allclose(res.r1f.ravel()[5:], truth["r1f"][5:], rtol=1e-6)


def test_fit_sir_rejects_bad_input():
    with pytest.raises(ValueError, match="n_samples"):
        fit_sir(np.ones((3, 10)), DORTCH_2018_SIR)
    with pytest.raises(ValueError, match="unknown bound"):
        fit_sir(np.ones((4, 10)), DORTCH_2018_SIR, bounds={"t1": (0, 1)})
    with pytest.raises(ValueError, match="low < high"):
        fit_sir(np.ones((4, 10)), DORTCH_2018_SIR, bounds={"psr": (0.5, 0.1)})


def test_rdnls_recovers_t1_on_noisy_data():
    rng = np.random.default_rng(4)
    ti = np.array([0.05, 0.15, 0.4, 0.8, 1.6, 3.2, 6.0])
    n = 2000
    t1 = rng.uniform(0.4, 4.5, n)
    a = rng.uniform(0.5, 1.5, n)
    b = -a * rng.uniform(1.7, 2.0, n)
    clean = a + b * np.exp(-ti[:, None] / t1)
    exact = fit_ir_rdnls(np.abs(clean), ti)
    np.testing.assert_allclose(exact.t1, t1, rtol=1e-5)
    np.testing.assert_allclose(exact.b, b, rtol=1e-5)
    np.testing.assert_array_equal(exact.n_negative, np.sum(clean < 0, axis=0))
    data = np.abs(clean + 0.01 * rng.standard_normal(clean.shape))
    noisy = fit_ir_rdnls(data[::-1], ti[::-1])  # unsorted TIs are accepted
    rel = noisy.t1 / t1 - 1
    assert abs(np.median(rel)) < 0.005 and np.percentile(np.abs(rel), 90) < 0.1


def test_rdnls_rejects_bad_input():
    with pytest.raises(ValueError, match="3 distinct"):
        fit_ir_rdnls(np.ones((2, 4)), [0.1, 0.2])
    with pytest.raises(ValueError, match="shape"):
        fit_ir_rdnls(np.ones((4, 4)), [0.1, 0.2, 0.4])
    with pytest.raises(ValueError, match="t1_range"):
        fit_ir_rdnls(np.ones((3, 4)), [0.1, 0.2, 0.4], t1_range=(2.0, 1.0))
