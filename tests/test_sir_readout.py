"""SIR readout residual: zero is today's model, the closed form against an ODE, the fit's error, inputs."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import least_squares

from qt1lib.estimate.sir_fit import fit_sir
from qt1lib.estimate.sir_model_error import readout_residual_bias
from qt1lib.phantom.cohort import SIR_7T
from qt1lib.protocols_sir import DENSE_SIR, DORTCH_2018_SIR
from qt1lib.sequences.sir import cpmg_readout_residual, sir_pool_curves, sir_signal
from qt1lib.sequences.twopool import TISSUES_7T


def _bloch_mcconnell(r1f, r1m, psr, kmf, m0f):
    """Longitudinal two-pool equations of Gochberg & Gore 2007 (eq. 1), as an ODE right-hand side."""
    kfm, m0m = psr * kmf, psr * m0f

    def rhs(_t, m):
        mf, mm = m
        return [r1f * (m0f - mf) - kfm * mf + kmf * mm, r1m * (m0m - mm) - kmf * mm + kfm * mf]

    return rhs


def _ode_sir(r1f, r1m, psr, kmf, m0f, sf, sm, ti, td, residual):
    """Readout residual -> td recovery -> selective inversion -> ti recovery, by numerical integration."""
    rhs = _bloch_mcconnell(r1f, r1m, psr, kmf, m0f)
    out = []
    for t_i, t_d in zip(ti, td):
        m = solve_ivp(rhs, (0.0, t_d), [residual * m0f, 0.0], method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1]
        m = m * (sf, sm)
        out.append(solve_ivp(rhs, (0.0, t_i), m, method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1])
    return np.array(out)


def test_zero_residual_is_todays_signal():
    rng = np.random.default_rng(3)
    r1f, psr, sf = rng.uniform(0.2, 1.5, 50), rng.uniform(0.0, 0.3, 50), rng.uniform(-1.0, -0.7, 50)
    for protocol in (DORTCH_2018_SIR, DENSE_SIR):
        for magnitude in (True, False):
            today = sir_signal(r1f, psr, sf, protocol, magnitude=magnitude)
            for zero in (0.0, np.zeros(50)):
                got = sir_signal(r1f, psr, sf, protocol, magnitude=magnitude, readout_residual=zero)
                np.testing.assert_array_equal(got, today)
    ti = np.geomspace(1e-3, 5.0, 20)
    today = sir_pool_curves(0.7, 0.12, -0.9, ti, 1.5, sm=0.83)
    for a, b in zip(sir_pool_curves(0.7, 0.12, -0.9, ti, 1.5, sm=0.83, readout_residual=0.0), today):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("residual", [0.02, 0.1, 0.5])
def test_closed_form_matches_bloch_mcconnell_integration(residual):
    rng = np.random.default_rng(int(residual * 100))
    protocol = DORTCH_2018_SIR
    for r1m in (None, 1.3):
        r1f, psr, kmf = rng.uniform(0.3, 1.2), rng.uniform(0.05, 0.25), rng.uniform(8.0, 25.0)
        m0f, sf = rng.uniform(0.5, 1.5), rng.uniform(-1.0, -0.8)
        sm, r1m_true = protocol.bound_inversion, r1f if r1m is None else r1m
        ref = _ode_sir(r1f, r1m_true, psr, kmf, m0f, sf, sm, protocol.ti, protocol.td, residual)
        tissue = {"m0f": m0f, "kmf": kmf, "r1m": r1m, "readout_residual": residual}
        got = sir_signal(r1f, psr, sf, protocol, magnitude=False, **tissue)
        np.testing.assert_allclose(got, ref[:, 0], rtol=1e-9, atol=1e-11)
        for k, (t_i, t_d) in enumerate(zip(protocol.ti, protocol.td)):
            mf, mm = sir_pool_curves(r1f, psr, sf, [t_i], t_d, sm=sm, **tissue)
            np.testing.assert_allclose([mf[0], mm[0]], ref[k], rtol=1e-9, atol=1e-11)


def test_residual_broadcasts_with_voxel_arrays():
    r1f, psr = np.array([0.5, 0.6, 0.75, 0.9]), np.array([0.05, 0.08, 0.11, 0.14])
    residual = np.array([0.0, 0.03, 0.2])[:, None]
    got = sir_signal(r1f, psr, -0.95, DORTCH_2018_SIR, readout_residual=residual)
    assert got.shape == (DORTCH_2018_SIR.n_samples, 3, 4)
    for i in range(3):
        for j in range(4):
            one = sir_signal(r1f[j], psr[j], -0.95, DORTCH_2018_SIR, readout_residual=float(residual[i, 0]))
            np.testing.assert_allclose(got[:, i, j], one, rtol=1e-13)


def _eig_model(theta, ti, td, sm, kmf):
    """|Mf(ti)| of the zero-residual model with R1m = R1f, by eigendecomposition of the exchange matrix."""
    r1f, psr, sf, m0f = theta
    kfm = psr * kmf
    lam, vec = np.linalg.eig(np.array([[-r1f - kfm, kmf], [kfm, -r1f - kmf]]))
    inv = np.linalg.inv(vec)
    m0 = np.array([m0f, psr * m0f])

    def relax(m, t):
        return m0 + vec @ (np.exp(lam * t) * (inv @ (m - m0)))

    return np.array([abs(relax(relax(np.zeros(2), t_d) * (sf, sm), t_i)[0]) for t_i, t_d in zip(ti, td)])


@pytest.mark.parametrize(("tissue", "residual"), [("WM", 0.02), ("WM", 0.05), ("cortical_GM", 0.02)])
def test_four_sample_fit_error_matches_direct_solution(tissue, residual):
    t = TISSUES_7T[tissue]
    sf, protocol = -0.95, SIR_7T
    data = sir_signal(t.r1f, t.psr, sf, protocol, m0f=t.m0f, kmf=t.kmf, readout_residual=residual)
    fit = fit_sir(data, protocol, kmf=t.kmf)
    assert fit.converged and not fit.at_bound
    # the same four equations solved directly, from the true tissue (the fit starts from its grid)
    sol = least_squares(
        lambda th: _eig_model(th, protocol.ti, protocol.td, protocol.bound_inversion, t.kmf) - data,
        x0=[t.r1f, t.psr, sf, t.m0f], xtol=1e-15, ftol=1e-15, gtol=1e-15,
    )
    assert np.max(np.abs(sol.fun)) < 1e-12  # four samples, four unknowns: the data are interpolated
    np.testing.assert_allclose(fit.r1f, sol.x[0], rtol=1e-7)
    bias = readout_residual_bias(t.r1f, t.psr, sf, residual, protocol, m0f=t.m0f, kmf=t.kmf)
    np.testing.assert_allclose(bias.t1_error, 1.0 / sol.x[0] - 1.0 / t.r1f, rtol=1e-6)
    assert bias.t1_error < -0.03  # a T1 error of tens of ms ...
    assert bias.rss < 1e-20  # ... that the four-sample fit cannot see


def test_single_td_protocol_folds_the_residual_into_sf():
    t = TISSUES_7T["WM"]
    four = readout_residual_bias(t.r1f, t.psr, -0.95, 0.02, SIR_7T, m0f=t.m0f)
    dense = readout_residual_bias(t.r1f, t.psr, -0.95, 0.02, DENSE_SIR, m0f=t.m0f)
    assert abs(dense.t1_error) < 1e-4 < abs(four.t1_error)  # s
    assert dense.sf_apparent < -0.95  # the extra free-pool Mz at td looks like a deeper inversion
    assert dense.rss < 1e-9


def _isochromat_cpmg(r1f, esp, angle_deg, n, t2=0.05, n_iso=360):
    """Mean Mz of crushed-CPMG isochromats (90x, refocusing about y), Bloch rotations and relaxation."""
    psi = 2 * np.pi * np.arange(n_iso) / n_iso  # crusher + free precession phase per half echo spacing
    m = np.zeros((n_iso, 3))
    m[:, 1], m[:, 2] = -1.0, 0.0  # after a 90 degree pulse about x

    def relax_precess(m, t, turns):
        e1, e2 = np.exp(-r1f * t), np.exp(-t / t2)
        c, s = np.cos(turns * psi), np.sin(turns * psi)
        x, y = m[:, 0] * c - m[:, 1] * s, m[:, 0] * s + m[:, 1] * c
        return np.stack([x * e2, y * e2, 1.0 - (1.0 - m[:, 2]) * e1], axis=1)

    b = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    m = relax_precess(m, esp / 2, 1)
    for k in range(n):
        m = m @ rot.T
        m = relax_precess(m, esp if k < n - 1 else esp / 2, 2 if k < n - 1 else 1)
    return m[:, 2].mean()


def test_cpmg_residual_matches_isochromat_simulation():
    r1f, t2f, esp, n = 1 / 1.349, 0.05, 8.7e-3, 22
    angles = np.array([180.0, 150.0, 120.0, 60.0, 216.0])  # 216: 120 degrees at B1+ 1.8
    expected = [_isochromat_cpmg(r1f, esp, a, n, t2=t2f) for a in angles]
    np.testing.assert_allclose(cpmg_readout_residual(r1f, t2f, esp, angles, n), expected, rtol=1e-9, atol=1e-12)


def test_cpmg_residual_without_echo_pathways():
    """With T2 -> 0 no echo pathway returns: Z0 is rotated by cos(beta) and recovers, alone."""
    r1f, esp, n = np.array([0.25, 0.5, 0.75]), 5e-3, 200
    for angle in (150.0, 120.0, 90.0):
        c = np.cos(np.deg2rad(angle))
        z_pulse = (1 - np.exp(-r1f * esp)) / (1 - c * np.exp(-r1f * esp))  # steady state before a pulse
        expected = 1 - (1 - c * z_pulse) * np.exp(-r1f * esp / 2)
        np.testing.assert_allclose(cpmg_readout_residual(r1f, 1e-9, esp, angle, n), expected, rtol=1e-9)
    assert cpmg_readout_residual(0.75, 0.05, esp, 180.0, n) < (0.75 * esp) ** 2  # ideal pulses cancel


@pytest.mark.parametrize("bad", [-0.1, 1.0, np.nan, [0.1, np.nan]])
def test_bad_readout_residual_is_rejected(bad):
    with pytest.raises(ValueError, match="readout_residual"):
        sir_signal(0.7, 0.1, -0.9, DORTCH_2018_SIR, readout_residual=bad)
    with pytest.raises(ValueError, match="readout_residual"):
        sir_pool_curves(0.7, 0.1, -0.9, [0.1], 1.0, sm=0.83, readout_residual=bad)
    with pytest.raises(ValueError, match="readout_residual"):
        readout_residual_bias(0.7, 0.1, -0.9, bad, DORTCH_2018_SIR)


def test_bad_cpmg_arguments_are_rejected():
    with pytest.raises(ValueError, match="t2f"):
        cpmg_readout_residual(0.7, 0.0, 5e-3, 120.0, 10)
    for kwargs, name in (
        ({"echo_spacing": 0.0, "refocusing_angle": 120.0, "n_refocusing": 10}, "echo_spacing"),
        ({"echo_spacing": 5e-3, "refocusing_angle": 400.0, "n_refocusing": 10}, "refocusing_angle"),
        ({"echo_spacing": 5e-3, "refocusing_angle": 120.0, "n_refocusing": 0}, "n_refocusing"),
    ):
        with pytest.raises(ValueError, match=name):
            cpmg_readout_residual(0.7, 0.05, **kwargs)
