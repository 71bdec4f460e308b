"""The Bloch simulation of the adiabatic inversion, the fast IR fraction and the cohort's tissue physics."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from qt1lib.phantom.physics import COHORT_PHYSICS, CohortPhysics, cohort_physics
from qt1lib.sequences.bloch import free_pool_inversion
from qt1lib.sequences.sir import exchange_rates
from qt1lib.sequences.twopool import (
    KMF_HUMAN_BRAIN,
    RIOUX_2016_WM_FAST_FRACTION_RANGE,
    SIEMENS_HS_INVERSION,
    TISSUES_7T,
    TISSUES_7T_CONSERVATIVE,
    TwoPool,
    TwoPoolTissue,
    expm_2x2,
    exchange_matrix,
    gre_signals_twopool,
    ir_fast_fraction,
)
from qt1lib.protocols import SEED_7T_MP3RAGE

PULSE = SIEMENS_HS_INVERSION


def _bloch_ode_efficiency(t1: float, t2: float, b1: float) -> float:
    """Independent integration of the continuous Bloch equations through the HS pulse (RK45)."""

    def rhs(t, m):
        wx = b1 * PULSE.amplitude(t)
        wz = PULSE.sweep(t)
        omega = np.array([wx, 0.0, wz])
        return np.cross(omega, m) - np.array([m[0] / t2, m[1] / t2, (m[2] - 1.0) / t1])

    sol = solve_ivp(rhs, (0.0, PULSE.duration), [0.0, 0.0, 1.0], method="DOP853", rtol=1e-9, atol=1e-11)
    return -float(sol.y[2, -1])


@pytest.mark.parametrize("t2, b1", [(0.045, 1.0), (0.045, 0.7), (0.1, 1.3)])
def test_hs_efficiency_equals_an_independent_bloch_integration(t2, b1):
    split = free_pool_inversion(PULSE.amplitude, PULSE.sweep, PULSE.duration, 1.349, t2, b1, n_steps=1000)
    assert float(split) == pytest.approx(_bloch_ode_efficiency(1.349, t2, b1), abs=2e-5)


def test_hs_efficiency_falls_with_t2_and_the_table_matches_the_simulation():
    b1 = np.array([0.6, 0.85, 1.0, 1.2])
    short = PULSE.free_pool_efficiency(1.3, 0.03, b1)
    long = PULSE.free_pool_efficiency(1.3, 0.1, b1)
    assert np.all(short < long) and np.all((short > 0) & (long <= 1))
    direct = free_pool_inversion(PULSE.amplitude, PULSE.sweep, PULSE.duration, 1.3, 0.045, b1, n_steps=1000)
    assert np.allclose(PULSE.free_pool_efficiency(1.3, 0.045, b1), direct, atol=1e-4)


def test_without_relaxation_and_rf_the_pulse_does_nothing():
    """B1 -> 0 leaves Mz = M0 (efficiency -1) when relaxation is negligible."""
    eff = free_pool_inversion(PULSE.amplitude, PULSE.sweep, PULSE.duration, 1e6, 1e6, 1e-9, n_steps=200)
    assert float(eff) == pytest.approx(-1.0, abs=1e-9)


def test_bloch_bad_input():
    with pytest.raises(ValueError, match="t2"):
        free_pool_inversion(PULSE.amplitude, PULSE.sweep, PULSE.duration, 1.0, -0.01)
    with pytest.raises(ValueError, match="b1"):
        PULSE.free_pool_efficiency(1.0, 0.045, 3.0)


def test_fast_fraction_equals_a_direct_matrix_exponential():
    """a_fast / (a_fast + a_slow) from two samples of exp(L t) against the closed form."""
    r1f, psr, r1m, eff, s = 0.74, 0.3, 1.0, 0.9, 0.6
    l11, l12, l21, l22 = exchange_matrix(r1f, r1m, psr, KMF_HUMAN_BRAIN)
    r_slow, r_fast, _ = exchange_rates(r1f, psr, KMF_HUMAN_BRAIN, r1m)
    x = np.array([-eff - 1.0, (s - 1.0) * psr])
    times = np.array([0.01, 0.5])
    dev = []
    for t in times:
        e11, e12, _, _ = expm_2x2(l11, l12, l21, l22, t)
        dev.append(float(e11 * x[0] + e12 * x[1]))
    basis = np.array([[np.exp(-r_fast * t), np.exp(-r_slow * t)] for t in times])
    a_fast, a_slow = np.linalg.solve(basis, dev)
    assert float(ir_fast_fraction(r1f, psr, KMF_HUMAN_BRAIN, r1m, eff, s)) == pytest.approx(a_fast / (a_fast + a_slow), rel=1e-9)


def _wm_fast_fraction(tissue: TwoPoolTissue, efficiency: float) -> float:
    return float(ir_fast_fraction(tissue.r1f, tissue.psr, tissue.kmf, tissue.r1m, efficiency, PULSE.bound_fraction(1.0)))


def test_literature_wm_fast_fraction_lies_in_rioux_range_and_the_conservative_one_does_not():
    wm = TISSUES_7T["WM"]
    eff = float(PULSE.free_pool_efficiency(wm.t1f, wm.t2f, 1.0))
    lo, hi = RIOUX_2016_WM_FAST_FRACTION_RANGE
    assert lo <= _wm_fast_fraction(wm, eff) <= hi
    conservative = _wm_fast_fraction(TISSUES_7T_CONSERVATIVE["WM"], SEED_7T_MP3RAGE.inversion_efficiency)
    assert conservative < lo


def test_literature_tissues_recover_at_the_measured_t1_and_keep_grey_matter_below_white_matter():
    """The measured (mono-exponential or long-component) T1 is each literature tissue's slow rate 1/R1-."""
    t = TISSUES_7T
    assert t["WM"].psr > t["subcortical_GM"].psr > t["cortical_GM"].psr > t["CSF"].psr == 0
    for name in ("WM", "subcortical_GM", "cortical_GM"):
        tissue = t[name]
        assert tissue.r1m is not None and tissue.r1m != pytest.approx(tissue.r1f)
        slow = exchange_rates(tissue.r1f, tissue.psr, tissue.kmf, tissue.r1m)[0]
        assert float(slow) == pytest.approx(TISSUES_7T_CONSERVATIVE[name].r1f, rel=1e-9)
        assert tissue.t1f > TISSUES_7T_CONSERVATIVE[name].t1f  # R1m > R1f: the free pool recovers slower


def test_per_voxel_inversion_efficiency_enters_the_chain():
    """A free-pool efficiency equal to the protocol's reproduces the default chain; another changes INV1."""
    wm = TISSUES_7T_CONSERVATIVE["WM"]
    base = gre_signals_twopool(wm.r1f, wm.psr, SEED_7T_MP3RAGE, 1.0)
    same = gre_signals_twopool(wm.r1f, wm.psr, SEED_7T_MP3RAGE, 1.0,
                               free_inversion_efficiency=SEED_7T_MP3RAGE.inversion_efficiency)
    assert np.allclose(base, same, rtol=0, atol=1e-14)
    more = gre_signals_twopool(wm.r1f, wm.psr, SEED_7T_MP3RAGE, 1.0, free_inversion_efficiency=0.95)
    assert more[0] < base[0]
    with pytest.raises(ValueError, match="free_inversion_efficiency"):
        TwoPool(wm.r1f, wm.psr, free_inversion_efficiency=1.2)


def test_physics_settings_and_bad_names():
    assert set(COHORT_PHYSICS) == {"literature", "conservative"}
    assert cohort_physics("conservative").tissues["WM"] is TISSUES_7T_CONSERVATIVE["WM"]
    assert cohort_physics("conservative").sir_readout_residual == 0.0
    with pytest.raises(ValueError, match="unknown cohort physics"):
        cohort_physics("fancy")
    with pytest.raises(ValueError, match="sir_readout_residual"):
        CohortPhysics("x", dict(TISSUES_7T), inversion="bloch", sir_readout_residual=1.0)
    with pytest.raises(ValueError, match="inversion"):
        CohortPhysics("x", dict(TISSUES_7T), inversion="perfect", sir_readout_residual=0.0)
    with pytest.raises(ValueError, match="t2f"):
        TwoPoolTissue("x", r1f=1.0, psr=0.1, kmf=14.5, m0f=0.8, t2f=-1.0)


def test_cohort_settings_take_the_named_physics():
    from qt1lib.config import CohortConfig
    from qt1lib.phantom import cohort_settings

    literature = cohort_settings("smoke")
    assert (literature.physics, literature.inversion) == ("literature", "bloch")
    assert literature.tissues["WM"] is TISSUES_7T["WM"]
    conservative = cohort_settings("smoke", physics="conservative")
    assert (conservative.inversion, conservative.sir_readout_residual) == ("protocol", 0.0)
    assert CohortConfig(physics="conservative").kwargs()["physics"] == "conservative"
    with pytest.raises(ValueError, match="unknown cohort physics"):
        CohortConfig(physics="fancy")


def test_the_cohort_command_offers_every_physics_setting():
    from qt1lib.cli.arguments import cohort_parser

    action = next(a for a in cohort_parser()._actions if a.dest == "physics")
    assert set(action.choices) == set(COHORT_PHYSICS) and action.default == "literature"
