"""Two-pool tissue that reproduces a measured bi-exponential inversion recovery.

A bi-exponential fit of an inversion recovery reports a long T1 component and the fraction of
the recovery carried by the short one (Rioux et al. 2016, MRM 75:2265: 1349 ms and 11 % in WM at
7 T). In the two-pool model the long component is ``1 / R1-``, the slow rate of the exchange
matrix (Li et al. 2010, MRM 64:491, eq. 4), which equals ``R1f`` only when ``R1m = R1f``.
:func:`two_pool_from_ir_components` finds the ``(R1f, PSR)`` whose recovery has both measured
values for a given ``R1m`` and ``kmf``, so that a book can show what a tissue table that takes the
long component as ``1 / R1f`` leaves out.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from ..sequences.twopool import KMF_HUMAN_BRAIN, ir_fast_fraction

__all__ = ["r1f_for_slow_rate", "two_pool_from_ir_components"]


def r1f_for_slow_rate(r1_slow, psr, r1m, kmf=KMF_HUMAN_BRAIN) -> np.ndarray:
    """Free-pool R1 (s^-1) for which ``r1_slow`` is an eigen-rate of the two-pool exchange matrix.

    ``-r1_slow`` is an eigenvalue of ``L = [[-(R1f + kfm), kmf], [kfm, -(R1m + kmf)]]``
    (Gochberg & Gore 2007, MRM 57:437, eq. 1; ``kfm = PSR kmf``) when
    ``(R1f + kfm - r1_slow)(R1m + kmf - r1_slow) = kfm kmf``, so
    ``R1f = r1_slow - PSR kmf + PSR kmf^2 / (R1m + kmf - r1_slow)``. The other eigen-rate is the
    trace minus ``r1_slow``, ``PSR kmf^2 / (R1m + kmf - r1_slow) + R1m + kmf``, so ``r1_slow`` is
    the slow rate ``R1-`` whenever ``r1_slow < R1m + kmf``. Arguments broadcast (s^-1, PSR
    dimensionless).
    """
    r1_slow, psr, r1m, kmf = (np.asarray(v, dtype=float) for v in (r1_slow, psr, r1m, kmf))
    return r1_slow - psr * kmf + psr * kmf**2 / (r1m + kmf - r1_slow)


def two_pool_from_ir_components(
    t1_long: float,
    fast_fraction: float,
    *,
    r1m: float,
    kmf: float = KMF_HUMAN_BRAIN,
    free_efficiency: float = 1.0,
    bound_fraction: float = 1.0,
    psr_max: float = 2.0,
) -> tuple[float, float]:
    """``(R1f, PSR)`` whose inversion recovery has the long component ``t1_long`` and ``fast_fraction``.

    For each PSR, :func:`r1f_for_slow_rate` gives the R1f whose slow rate ``R1-`` is ``1 / t1_long``
    (it is the slow one since ``1 / t1_long < r1m + kmf`` is required); the
    fast fraction of that tissue after the inversion (:func:`qt1lib.sequences.twopool.ir_fast_fraction`,
    Li et al. 2010, eqs. 3-5) is then solved for PSR by Brent's method.

    Parameters
    ----------
    t1_long : float
        Long T1 component of the recovery (s), > 0 (Rioux et al. 2016: 1.349 s in WM at 7 T).
    fast_fraction : float
        Fraction of the recovery carried by the short component, in (0, 1) (Rioux et al. 2016: 0.11).
    r1m : float
        Macromolecular R1 (s^-1), > 0, assumed known (e.g. the qMT convention 1 s^-1).
    kmf : float, default 14.5 s^-1
        Exchange rate m -> f.
    free_efficiency : float, default 1
        The inversion's efficiency on the free pool, in (0, 1].
    bound_fraction : float, default 1
        Factor the inversion applies to the macromolecular Mz, in [-1, 1].
    psr_max : float, default 2
        Largest pool size ratio searched.

    Returns
    -------
    (float, float)
        ``R1f`` (s^-1) and ``PSR``.

    Raises
    ------
    ValueError
        For a parameter out of range, or a fraction that no PSR in ``(0, psr_max]`` with a
        positive R1f produces.
    """
    for name, value in (("t1_long (s)", t1_long), ("r1m (s^-1)", r1m), ("kmf (s^-1)", kmf), ("psr_max", psr_max)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    if not (0.0 < fast_fraction < 1.0):
        raise ValueError(f"fast_fraction must lie in (0, 1), got {fast_fraction!r}")
    if not (0.0 < free_efficiency <= 1.0):
        raise ValueError(f"free_efficiency must lie in (0, 1], got {free_efficiency!r}")
    if not (-1.0 <= bound_fraction <= 1.0):
        raise ValueError(f"bound_fraction must lie in [-1, 1], got {bound_fraction!r}")
    r1_slow = 1.0 / t1_long
    if r1_slow >= r1m + kmf:
        raise ValueError(f"1 / t1_long ({r1_slow:.3g} s^-1) must be below r1m + kmf ({r1m + kmf:.3g} s^-1)")
    high = psr_max
    if r1m > r1_slow:  # R1f falls with PSR: stay where it is positive
        high = min(psr_max, 0.999 * r1_slow * (r1m + kmf - r1_slow) / (kmf * (r1m - r1_slow)))

    def excess(psr: float) -> float:
        r1f = float(r1f_for_slow_rate(r1_slow, psr, r1m, kmf))
        return float(ir_fast_fraction(r1f, psr, kmf, r1m, free_efficiency, bound_fraction)) - fast_fraction

    low = 1e-6
    if np.sign(excess(low)) == np.sign(excess(high)):
        raise ValueError(
            f"no PSR in ({low}, {high:.3g}] gives a fast fraction of {fast_fraction!r} with t1_long {t1_long!r} s, "
            f"r1m {r1m!r} s^-1, kmf {kmf!r} s^-1"
        )
    psr = float(brentq(excess, low, high, xtol=1e-12))
    return float(r1f_for_slow_rate(r1_slow, psr, r1m, kmf)), psr
