"""SIR signal: closed form against an independent matrix-exponential simulation, rates, protocols."""

import numpy as np
import pytest
from scipy.linalg import expm

from qt1lib.protocols_sir import DENSE_SIR, DORTCH_2018_SIR, SIRProtocol, get_sir_protocol
from qt1lib.sequences.sir import exchange_rates, sir_pool_curves, sir_signal


def _simulate(r1f, r1m, psr, kmf, m0f, sf, sm, ti, td):
    """Bloch-McConnell (longitudinal) with scipy's expm, written from the ODEs of Gochberg & Gore 2007."""
    kfm = psr * kmf
    m0 = np.array([m0f, psr * m0f])
    gen = np.array(
        [[-r1f - kfm, kmf, r1f * m0[0]], [kfm, -r1m - kmf, r1m * m0[1]], [0.0, 0.0, 0.0]]
    )
    out = []
    for t_i, t_d in zip(ti, td):
        m = np.array([0.0, 0.0, 1.0])  # saturated by the readout
        m = expm(gen * t_d) @ m
        m[:2] *= (sf, sm)  # selective inversion
        m = expm(gen * t_i) @ m
        out.append(m[:2])
    return np.array(out)


@pytest.mark.parametrize("protocol", [DORTCH_2018_SIR, DENSE_SIR])
def test_closed_form_matches_matrix_exponential(protocol):
    rng = np.random.default_rng(7)
    for _ in range(3):
        r1f, psr, kmf = rng.uniform(0.2, 1.5), rng.uniform(0.0, 0.3), rng.uniform(5, 30)
        m0f, sf = rng.uniform(0.5, 2.0), rng.uniform(-1.0, -0.7)
        for r1m in (None, rng.uniform(0.5, 3.0)):
            ref = _simulate(r1f, r1f if r1m is None else r1m, psr, kmf, m0f, sf, protocol.bound_inversion, protocol.ti, protocol.td)
            got = sir_signal(r1f, psr, sf, protocol, m0f=m0f, kmf=kmf, r1m=r1m, magnitude=False)
            np.testing.assert_allclose(got, ref[:, 0], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(sir_signal(r1f, psr, sf, protocol, m0f=m0f, kmf=kmf, r1m=r1m), np.abs(ref[:, 0]), atol=1e-12)


def test_pool_curves_match_matrix_exponential():
    ti = np.geomspace(1e-3, 5.0, 30)
    td, sm = 2.0, 0.83
    mf, mm = sir_pool_curves(0.75, 0.15, -0.95, ti, td, sm=sm, m0f=0.7, kmf=14.5, r1m=1.1)
    ref = _simulate(0.75, 1.1, 0.15, 14.5, 0.7, -0.95, sm, ti, np.full_like(ti, td))
    np.testing.assert_allclose(mf, ref[:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mm, ref[:, 1], rtol=1e-9, atol=1e-12)


def test_recovery_rates_are_the_exchange_matrix_eigenvalues():
    rng = np.random.default_rng(11)
    r1f, psr, kmf, r1m = rng.uniform(0.2, 2, 20), rng.uniform(0, 0.4, 20), rng.uniform(2, 40, 20), rng.uniform(0.2, 4, 20)
    slow, fast, diff = exchange_rates(r1f, psr, kmf, r1m)
    for i in range(20):
        kfm = psr[i] * kmf[i]
        eig = np.sort(-np.linalg.eigvals(np.array([[-r1f[i] - kfm, kmf[i]], [kfm, -r1m[i] - kmf[i]]])).real)
        np.testing.assert_allclose([slow[i], fast[i]], eig, rtol=1e-10)
    np.testing.assert_allclose(diff, fast - slow, rtol=1e-12)
    slow_tied, fast_tied, _ = exchange_rates(r1f, psr, kmf)
    np.testing.assert_allclose(slow_tied, r1f, rtol=1e-12)  # lambda- = R1f when R1m = R1f
    np.testing.assert_allclose(fast_tied, r1f + kmf * (1 + psr), rtol=1e-12)


def test_long_ti_and_broadcast_shape():
    r1f = np.full((3, 2), 0.7)
    s = sir_signal(r1f, 0.1, -0.9, ti=np.array([0.01, 60.0]), td=np.array([2.0, 2.0]), sm=0.83, m0f=0.8)
    assert s.shape == (2, 3, 2)
    np.testing.assert_allclose(s[1], 0.8, rtol=1e-9)


def test_sir_signal_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        sir_signal(np.nan, 0.1, -0.9, DORTCH_2018_SIR)
    with pytest.raises(ValueError, match="either"):
        sir_signal(0.7, 0.1, -0.9, DORTCH_2018_SIR, ti=[0.1], td=[1.0])
    with pytest.raises(ValueError, match="sm"):
        sir_signal(0.7, 0.1, -0.9, ti=[0.1, 0.2], td=[1.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        sir_signal(0.7, 0.1, -0.9, ti=[0.1, 0.2], td=[1.0], sm=0.8)
    with pytest.raises(ValueError, match="psr"):
        sir_signal(0.7, -0.1, -0.9, DORTCH_2018_SIR)
    with pytest.raises(ValueError, match="broadcast"):
        sir_signal(np.ones(3), np.full(4, 0.1), -0.9, DORTCH_2018_SIR)


def test_protocol_validation():
    with pytest.raises(ValueError, match="one td per ti"):
        SIRProtocol("x", (0.01, 0.1), (1.0,), 0.8, 3.0)
    with pytest.raises(ValueError, match="delay_times"):
        SIRProtocol("x", (0.01,), (-1.0,), 0.8, 3.0)
    with pytest.raises(ValueError, match="bound_inversion"):
        SIRProtocol("x", (0.01,), (1.0,), 1.2, 3.0)
    with pytest.raises(ValueError, match="unknown SIR protocol"):
        get_sir_protocol("nope")
    assert get_sir_protocol(DORTCH_2018_SIR.name) is DORTCH_2018_SIR
    assert DORTCH_2018_SIR.with_changes(bound_inversion=0.6).bound_inversion == 0.6
