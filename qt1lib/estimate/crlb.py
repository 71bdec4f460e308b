"""Cramer-Rao lower bound on the standard deviation of T1 from MP2RAGE / MP3RAGE data.

Model (the same as :class:`qt1lib.estimate.map.ExactMAPModel`): the complex GRE signals of the
used readouts are ``y_k = c g_k(T1, B1) + n_k`` with ``g`` the real noise-free signals
(:func:`qt1lib.sequences.gre_signals`, M0 = 1), an unknown complex scale ``c`` (M0 x receive
field x phase) and complex Gaussian noise with std ``sigma`` on the real and on the imaginary
part. With the parameters ``theta = (T1, Re c, Im c)`` and the mean ``mu = c g``, the Fisher
information of independent real and imaginary Gaussian noise is
``I = Re(J^H J) / sigma^2`` with ``J = d mu / d theta`` (Kay 1993, Fundamentals of Statistical
Signal Processing: Estimation Theory, section 3.9, the Gaussian case ``I = J^T C^-1 J``, with
the real and imaginary parts as separate real observations):

``I = (1/sigma^2) [[|c|^2 |g'|^2, Re(c) g.g', Im(c) g.g'],
                   [Re(c) g.g',   |g|^2,       0        ],
                   [Im(c) g.g',   0,           |g|^2    ]]``

with ``g' = dg/dT1``. The bound on T1 with ``c`` unknown is the (1, 1) element of ``I^-1``
(Kay 1993, section 3.7), which by block inversion is the inverse of the Schur complement
``I_11 - I_1c I_cc^-1 I_c1`` of the nuisance block:

``var(T1_hat) >= sigma^2 / (|c|^2 (|g'|^2 - (g.g')^2 / |g|^2))``.

It does not depend on the phase of ``c``. ``g'`` comes from a five-point central difference
of :func:`qt1lib.sequences.gre_signals` with step ``h = 1e-3 T1``: truncation error
``h^4 g^(5) / 30`` and rounding error about ``eps g / h``, together below 1e-8 relative over
T1 = 0.05..5 s (checked against a Richardson-extrapolated difference in the tests), far below
any use of the bound.
"""

from __future__ import annotations

import numpy as np

from ..protocols import MPnRAGEProtocol
from ..sequences import gre_signals

__all__ = ["crlb_t1", "signal_derivative"]

#: Relative step of the five-point difference for dg/dT1 (see the module docstring).
RELATIVE_STEP = 1e-3


def signal_derivative(
    t1: np.ndarray | float, protocol: MPnRAGEProtocol, b1: np.ndarray | float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Signals of the used readouts and their derivative with respect to T1.

    Parameters
    ----------
    t1 : array_like
        T1 (s), > 0.
    protocol : MPnRAGEProtocol
        Acquisition; ``protocol.readouts`` selects the readouts.
    b1 : array_like
        Relative B1+, broadcast with ``t1``.

    Returns
    -------
    g, dg : ndarray, shape (len(protocol.readouts), *batch)
        ``g`` in units of M0 and ``dg/dT1`` in units of M0 per second (five-point central
        difference, step 1e-3 T1).
    """
    t1 = np.asarray(t1, dtype=float)
    if np.any(~np.isfinite(t1)) or np.any(t1 <= 0):
        raise ValueError("t1 (s) must be finite and > 0")
    if np.any(t1 * (1 - 2 * RELATIVE_STEP) <= 0):
        raise ValueError("t1 (s) too small for the finite-difference step")
    used = [r - 1 for r in protocol.readouts]
    h = RELATIVE_STEP * t1

    def g(x: np.ndarray) -> np.ndarray:
        return gre_signals(x, protocol, b1)[used]

    dg = (-g(t1 + 2 * h) + 8 * g(t1 + h) - 8 * g(t1 - h) + g(t1 - 2 * h)) / (12 * h)
    return g(t1), dg


def crlb_t1(
    t1: np.ndarray | float,
    protocol: MPnRAGEProtocol,
    sigma: float,
    b1: np.ndarray | float = 1.0,
    scale: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Cramer-Rao bound on the std (s) of any unbiased T1 estimator, complex scale unknown.

    ``sqrt(sigma^2 / (|c|^2 (|g'|^2 - (g.g')^2 / |g|^2)))`` over the used readouts of
    ``protocol`` (derivation and sources in the module docstring).

    Parameters
    ----------
    t1 : array_like
        True T1 (s), > 0.
    protocol : MPnRAGEProtocol
        Acquisition and estimation view (which readouts the estimator uses).
    sigma : float
        Noise std per real / imaginary part, units of M0 (seed: 0.005).
    b1 : array_like
        Relative B1+ (known to the estimator).
    scale : array_like
        Magnitude of the complex scale ``|c|`` (M0 x receive field), > 0.

    Returns
    -------
    ndarray
        Lower bound on the standard deviation of T1 (s), shape of
        ``np.broadcast(t1, b1, scale)``.

    Raises
    ------
    ValueError
        If ``sigma`` or ``scale`` is not finite and positive, ``t1`` or ``b1`` is not finite
        and positive, or the shapes do not broadcast.
    """
    sigma = float(sigma)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma (noise std per real/imaginary part, units of M0) must be finite and > 0, got {sigma!r}")
    scale = np.asarray(scale, dtype=float)
    if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError("scale (|c|, units of M0) must be finite and > 0")
    t1 = np.asarray(t1, dtype=float)
    b1 = np.asarray(b1, dtype=float)
    try:
        shape = np.broadcast_shapes(t1.shape, b1.shape, scale.shape)
    except ValueError:
        raise ValueError(f"t1 {t1.shape}, b1 {b1.shape} and scale {scale.shape} do not broadcast") from None
    g, dg = signal_derivative(np.broadcast_to(t1, shape), protocol, np.broadcast_to(b1, shape))
    norm2 = (g**2).sum(axis=0)
    fisher = scale**2 * ((dg**2).sum(axis=0) - (g * dg).sum(axis=0) ** 2 / norm2) / sigma**2
    return 1.0 / np.sqrt(fisher)
