"""Tests of qt1lib.estimate.crlb against an independent numerical Fisher information."""

from __future__ import annotations

import numpy as np
import pytest

from qt1lib.estimate.crlb import crlb_t1, signal_derivative
from qt1lib.protocols import MARQUES_7T, SEED_7T_MP2RAGE, SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals


def numerical_crlb(t1: float, protocol, sigma: float, b1: float, c: complex) -> float:
    """sqrt([F^-1]_00) with F = J^T J / sigma^2 of the real-valued model (Re y, Im y), parameters
    (T1, Re c, Im c), J by central differences of the full model, F inverted numerically."""
    used = [r - 1 for r in protocol.readouts]

    def mean(theta: np.ndarray) -> np.ndarray:
        mu = (theta[1] + 1j * theta[2]) * gre_signals(theta[0], protocol, b1)[used]
        return np.concatenate([mu.real, mu.imag])

    theta = np.array([t1, c.real, c.imag])
    steps = np.array([1e-5 * t1, 1e-6, 1e-6])
    jac = np.stack([(mean(theta + d) - mean(theta - d)) / (2 * d[i]) for i, d in enumerate(np.diag(steps))], axis=1)
    fisher = jac.T @ jac / sigma**2
    return float(np.sqrt(np.linalg.inv(fisher)[0, 0]))


@pytest.mark.parametrize("protocol", [SEED_7T_MP2RAGE, SEED_7T_MP3RAGE, MARQUES_7T], ids=lambda p: p.name)
@pytest.mark.parametrize("t1, b1, c", [(0.3, 1.0, 1.0), (1.2, 0.8, 0.7 * np.exp(1j)), (2.5, 1.2, 1.5j), (4.5, 1.0, -0.9)])
def test_crlb_matches_numerical_fisher_information(protocol, t1, b1, c):
    sigma = 0.005
    expected = numerical_crlb(t1, protocol, sigma, b1, complex(c))
    got = crlb_t1(t1, protocol, sigma, b1=b1, scale=abs(c))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_crlb_scales_with_noise_over_signal_and_broadcasts():
    t1 = np.array([[0.8], [1.6]])
    b1 = np.array([0.9, 1.0, 1.1])
    base = crlb_t1(t1, SEED_7T_MP2RAGE, 0.005, b1=b1)
    assert base.shape == (2, 3)
    np.testing.assert_allclose(crlb_t1(t1, SEED_7T_MP2RAGE, 0.01, b1=b1, scale=0.5), 4 * base, rtol=1e-12)


def test_more_readouts_never_raise_the_bound():
    """Using readout 3 as well (MP3RAGE view) adds information."""
    t1 = np.linspace(0.2, 5.0, 40)
    assert np.all(crlb_t1(t1, SEED_7T_MP3RAGE, 0.005) <= crlb_t1(t1, SEED_7T_MP2RAGE, 0.005) * (1 + 1e-12))


def test_signal_derivative_against_richardson_extrapolation():
    t1 = np.array([0.05, 0.3, 1.0, 4.9])
    g, dg = signal_derivative(t1, SEED_7T_MP3RAGE)
    np.testing.assert_allclose(g, gre_signals(t1, SEED_7T_MP3RAGE), rtol=0, atol=0)

    def central(h: np.ndarray) -> np.ndarray:
        return (gre_signals(t1 + h, SEED_7T_MP3RAGE) - gre_signals(t1 - h, SEED_7T_MP3RAGE)) / (2 * h)

    h = 4e-4 * t1
    richardson = (4 * central(h / 2) - central(h)) / 3
    np.testing.assert_allclose(dg, richardson, rtol=0, atol=1e-8 * np.abs(dg).max())


def test_crlb_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        crlb_t1(1.0, SEED_7T_MP2RAGE, -1.0)
    with pytest.raises(ValueError, match="scale"):
        crlb_t1(1.0, SEED_7T_MP2RAGE, 0.005, scale=0.0)
    with pytest.raises(ValueError, match="t1"):
        crlb_t1(np.nan, SEED_7T_MP2RAGE, 0.005)
    with pytest.raises(ValueError, match="broadcast"):
        crlb_t1(np.ones(3), SEED_7T_MP2RAGE, 0.005, b1=np.ones(2))
