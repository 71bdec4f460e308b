"""Two-pool tissue from a measured bi-exponential inversion recovery (qt1lib.sequences.twopool)."""

import numpy as np
import pytest
from scipy.linalg import expm

from qt1lib.sequences.twopool import (
    r1f_for_slow_rate,
    two_pool_from_ir_components,
)
from qt1lib.sequences.sir import exchange_rates
from qt1lib.sequences.twopool import ir_fast_fraction


def test_r1f_for_slow_rate_makes_it_the_slow_eigen_rate():
    psr, r1m, kmf = np.array([0.05, 0.3, 0.8]), 1.0, 14.5
    r1f = r1f_for_slow_rate(0.7, psr, r1m, kmf)
    np.testing.assert_allclose(exchange_rates(r1f, psr, kmf, r1m)[0], 0.7, rtol=1e-12)


def test_with_r1m_equal_r1f_the_long_component_is_t1f():
    # with R1m = R1f, (R1f, R1f) is an eigenvector of L with eigenvalue -R1f (Li et al. 2010, eq. 4)
    r1f = r1f_for_slow_rate(1 / 1.349, np.array([0.0, 0.1, 0.4]), 1 / 1.349)
    np.testing.assert_allclose(r1f, 1 / 1.349, rtol=1e-12)


def _fast_fraction_from_matrix_exponential(r1f, psr, r1m, kmf, eff, bound):
    """Fit-free fast fraction: project M(t) - M0 from expm(L t) onto exp(-R1+ t), exp(-R1- t)."""
    kfm = psr * kmf
    L = np.array([[-(r1f + kfm), kmf], [kfm, -(r1m + kmf)]])
    x0 = np.array([-eff - 1.0, (bound - 1.0) * psr])
    t = np.array([0.01, 2.0])
    mf = np.array([(expm(L * ti) @ x0)[0] for ti in t])
    slow, fast, _ = exchange_rates(r1f, psr, kmf, r1m)
    a = np.linalg.solve(np.exp(-np.outer(t, [float(fast), float(slow)])), mf)
    return a[0] / a.sum()


@pytest.mark.parametrize("r1m, eff, bound", [(1.0, 0.91, 0.04), (0.5, 1.0, 1.0), (1 / 1.349, 0.84, 0.0)])
def test_solution_reproduces_both_measured_components(r1m, eff, bound):
    r1f, psr = two_pool_from_ir_components(1.349, 0.11, r1m=r1m, free_efficiency=eff, bound_fraction=bound)
    slow = float(exchange_rates(r1f, psr, 14.5, r1m)[0])
    assert 1 / slow == pytest.approx(1.349, rel=1e-9)
    assert _fast_fraction_from_matrix_exponential(r1f, psr, r1m, 14.5, eff, bound) == pytest.approx(0.11, rel=1e-6)


def test_known_tissue_is_recovered_from_its_own_components():
    r1f, psr, r1m, kmf, eff, bound = 0.65, 0.25, 1.0, 12.0, 0.9, 0.05
    slow = float(exchange_rates(r1f, psr, kmf, r1m)[0])
    fraction = float(ir_fast_fraction(r1f, psr, kmf, r1m, eff, bound))
    got = two_pool_from_ir_components(1 / slow, fraction, r1m=r1m, kmf=kmf, free_efficiency=eff, bound_fraction=bound)
    np.testing.assert_allclose(got, (r1f, psr), rtol=1e-8)


def test_r1m_above_the_slow_rate_lengthens_t1f():
    # R1m > R1-: the macromolecules speed the slow recovery, so the free pool alone relaxes slower
    r1f, _ = two_pool_from_ir_components(1.349, 0.11, r1m=1.0, free_efficiency=0.91, bound_fraction=0.04)
    assert 1 / r1f > 1.349


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="fast_fraction"):
        two_pool_from_ir_components(1.349, 1.2, r1m=1.0)
    with pytest.raises(ValueError, match="t1_long"):
        two_pool_from_ir_components(-1.0, 0.1, r1m=1.0)
    with pytest.raises(ValueError, match="free_efficiency"):
        two_pool_from_ir_components(1.349, 0.1, r1m=1.0, free_efficiency=0.0)
    with pytest.raises(ValueError, match="no PSR"):
        two_pool_from_ir_components(1.349, 0.9, r1m=1.0, psr_max=0.1)
