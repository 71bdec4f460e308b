"""Two-pool selective inversion recovery (SIR) signal, closed form and vectorised.

Model (Gochberg & Gore 2007, MRM 57:437; Li et al. 2010, MRM 64:491, eqs. 3-5; Dortch et al. 2011,
MRM 66:1346): the readout leaves both pools saturated (``Mf = Mm = 0``); during the delay ``td``
the pools recover with exchange; the selective (short, hard) inversion scales the free pool by
``Sf`` (about -0.9) and the macromolecular pool, whose line is far broader than the pulse's
spectrum and which cannot be rotated, by ``Sm`` (about 0.83: partly saturated, see
:func:`qt1lib.sequences.twopool.excitation_bound_fraction`); after ``ti`` the free pool is read::

    S(ti, td) = | M0f ( b+ exp(-R1+ ti) + b- exp(-R1- ti) + 1 ) |

with ``R1+-`` (s^-1) minus the eigenvalues of the exchange matrix ``L`` of
:func:`qt1lib.sequences.twopool.exchange_matrix`, ``R1+- = (R1f + R1m + (1 + PSR) kmf +- R1diff) / 2``,
``R1diff = sqrt((R1f - R1m + (PSR - 1) kmf)^2 + 4 PSR kmf^2)`` (Li et al. 2010, eq. 4) and the
amplitudes ``b+-`` of eq. 5 (the same expressions as the public SIR-qMT toolbox,
nicksisco1932/The_SIR-qMT_toolbox, ``signalSIR.m``). When ``R1m = R1f``, ``R1- = R1f`` exactly.

Units: times in s, rates in s^-1, signals in the unit of ``m0f``.
"""

from __future__ import annotations

import numpy as np

from ..protocols_sir import SIRProtocol
from .twopool import KMF_HUMAN_BRAIN, exchange_matrix, expm_2x2

__all__ = ["exchange_rates", "sir_signal", "sir_pool_curves"]


def _array(name: str, value, low: float | None = None, high: float | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; mask those voxels out before simulating")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    if low is not None and (arr < low).any():
        raise ValueError(f"{name} must be >= {low}, got a minimum of {np.min(arr)}")
    if high is not None and (arr > high).any():
        raise ValueError(f"{name} must be <= {high}, got a maximum of {np.max(arr)}")
    return arr


def exchange_rates(r1f, psr, kmf=KMF_HUMAN_BRAIN, r1m=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recovery rates of the two-pool system (Li et al. 2010, eq. 4).

    Parameters
    ----------
    r1f, psr, kmf : array_like
        Free-pool R1 (s^-1), pool size ratio, exchange rate m -> f (s^-1).
    r1m : array_like, optional
        Macromolecular R1 (s^-1); default ``R1m = R1f``.

    Returns
    -------
    r1_minus, r1_plus, r1_diff : ndarray
        The slow and fast rates (s^-1), minus the eigenvalues of the exchange matrix, and their
        difference.
    """
    r1f, psr, kmf = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (r1f, psr, kmf)))
    r1m = r1f if r1m is None else np.asarray(r1m, dtype=float)
    r1_diff = np.sqrt((r1f - r1m + (psr - 1.0) * kmf) ** 2 + 4.0 * psr * kmf**2)
    r1_plus = 0.5 * (r1f + r1m + (1.0 + psr) * kmf + r1_diff)
    return r1_plus - r1_diff, r1_plus, r1_diff


def _times(protocol: SIRProtocol | None, ti, td) -> tuple[np.ndarray, np.ndarray]:
    if protocol is not None:
        if ti is not None or td is not None:
            raise ValueError("give either a protocol or ti and td, not both")
        return protocol.ti, protocol.td
    if ti is None or td is None:
        raise ValueError("give a SIRProtocol or both ti and td (s)")
    ti = _array("ti (s)", ti, low=0.0)
    td = _array("td (s)", td, low=0.0)
    if ti.ndim != 1 or td.shape != ti.shape:
        raise ValueError(f"ti and td must be 1-D and of the same length, got shapes {ti.shape} and {td.shape}")
    return ti, td


def sir_signal(
    r1f,
    psr,
    sf,
    protocol: SIRProtocol | None = None,
    *,
    ti=None,
    td=None,
    m0f=1.0,
    kmf=KMF_HUMAN_BRAIN,
    r1m=None,
    sm: float | None = None,
    magnitude: bool = True,
) -> np.ndarray:
    """Two-pool SIR signal at each (ti, td) sample (Li et al. 2010, eqs. 3-5).

    Parameters
    ----------
    r1f : array_like
        Free-pool R1 (s^-1), > 0.
    psr : array_like
        Pool size ratio M0m / M0f, >= 0.
    sf : array_like
        Free-pool inversion factor, in [-1.05, 1] (about -0.9).
    protocol : SIRProtocol, optional
        Supplies ti, td and Sm; otherwise give ``ti`` and ``td`` (1-D, s) and ``sm``.
    m0f : array_like, default 1
        Free-pool equilibrium magnetisation (signal units).
    kmf : array_like, default 14.5 s^-1
        Exchange rate m -> f.
    r1m : array_like, optional
        Macromolecular R1 (s^-1); default ``R1m = R1f``.
    sm : float, optional
        Macromolecular inversion factor in [0, 1]; default ``protocol.bound_inversion``.
    magnitude : bool, default True
        Return ``|S|`` (magnitude images) or the signed free-pool Mz.

    Returns
    -------
    ndarray, shape (n_samples, *batch)
        Batch = broadcast of the tissue parameters. Where ``R1diff = 0`` (only ``PSR = 0`` with
        ``R1f = R1m + kmf``) the closed form is 0/0 and gives NaN.

    Raises
    ------
    ValueError
        For NaN or out-of-range parameters, missing times, or shapes that do not broadcast.
    """
    ti, td = _times(protocol, ti, td)
    if sm is None:
        if protocol is None:
            raise ValueError("sm (macromolecular inversion factor) is needed when no protocol is given")
        sm = protocol.bound_inversion
    sm = float(_array("sm", sm, 0.0, 1.0))
    r1f = _array("r1f (s^-1)", r1f, low=0.0)
    psr = _array("psr", psr, low=0.0)
    sf = _array("sf", sf, -1.05, 1.0)
    m0f = _array("m0f", m0f, low=0.0)
    kmf = _array("kmf (s^-1)", kmf, low=0.0)
    r1m = r1f if r1m is None else _array("r1m (s^-1)", r1m, low=0.0)
    try:
        batch = np.broadcast_shapes(r1f.shape, psr.shape, sf.shape, m0f.shape, kmf.shape, r1m.shape)
    except ValueError:
        raise ValueError("SIR tissue parameters have shapes that do not broadcast together") from None

    r1_minus, r1_plus, r1_diff = exchange_rates(r1f, psr, kmf, r1m)
    t_i = ti.reshape((-1,) + (1,) * len(batch))
    t_d = td.reshape((-1,) + (1,) * len(batch))
    with np.errstate(invalid="ignore", divide="ignore"):
        e_plus_d, e_minus_d = np.exp(-r1_plus * t_d), np.exp(-r1_minus * t_d)
        # recovery from saturation over td, normalised by each pool's M0 (Li et al. 2010, eq. 5)
        mf_td = (-(r1f - r1_minus) * e_plus_d + (r1f - r1_plus) * e_minus_d) / r1_diff + 1.0
        mm_td = (-(r1m - r1_minus) * e_plus_d + (r1m - r1_plus) * e_minus_d) / r1_diff + 1.0
        # amplitudes after the selective inversion
        cross = (sf * mf_td - sm * mm_td) * psr * kmf
        b_plus = ((sf * mf_td - 1.0) * (r1f - r1_minus) + cross) / r1_diff
        b_minus = -((sf * mf_td - 1.0) * (r1f - r1_plus) + cross) / r1_diff
        signal = m0f * (b_plus * np.exp(-r1_plus * t_i) + b_minus * np.exp(-r1_minus * t_i) + 1.0)
    signal = np.broadcast_to(signal, (len(ti), *batch))
    return np.abs(signal) if magnitude else np.array(signal)


def sir_pool_curves(
    r1f,
    psr,
    sf,
    ti,
    td: float,
    *,
    sm: float,
    m0f=1.0,
    kmf=KMF_HUMAN_BRAIN,
    r1m=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed Mz of both pools after a selective inversion, for plotting recovery curves.

    Same physics as :func:`sir_signal`, computed with the matrix exponential of the exchange
    matrix (:func:`qt1lib.sequences.twopool.expm_2x2`): ``M(td) = (I - E(td)) M0``;
    ``M(0+) = diag(Sf, Sm) M(td)``; ``M(ti) = M0 + E(ti) (M(0+) - M0)`` (Dortch et al. 2013,
    NeuroImage 64:640, in the matrix notation of the SIR-qMT toolbox).

    Parameters
    ----------
    r1f, psr, sf, m0f, kmf, r1m
        Tissue, as in :func:`sir_signal`.
    ti : array_like
        Times after the inversion (s), 1-D.
    td : float
        Delay from the saturating readout to the inversion (s).
    sm : float
        Macromolecular inversion factor.

    Returns
    -------
    mf, mm : ndarray, shape (len(ti), *batch)
        Free and macromolecular Mz (units of ``m0f``; ``mm`` tends to ``PSR m0f``).
    """
    ti = _array("ti (s)", ti, low=0.0)
    if ti.ndim != 1:
        raise ValueError(f"ti must be 1-D, got shape {ti.shape}")
    td = float(_array("td (s)", td, low=0.0))
    r1f = _array("r1f (s^-1)", r1f, low=0.0)
    r1m = r1f if r1m is None else _array("r1m (s^-1)", r1m, low=0.0)
    psr = _array("psr", psr, low=0.0)
    m0f = _array("m0f", m0f, low=0.0)
    sf = _array("sf", sf, -1.05, 1.0)
    l11, l12, l21, l22 = exchange_matrix(r1f, r1m, psr, kmf)
    m0m = psr * m0f
    e11, e12, e21, e22 = expm_2x2(l11, l12, l21, l22, td)
    mf_d = (1.0 - e11) * m0f - e12 * m0m
    mm_d = -e21 * m0f + (1.0 - e22) * m0m
    df, dm = sf * mf_d - m0f, sm * mm_d - m0m
    t = ti.reshape((-1,) + (1,) * np.ndim(l11))
    e11, e12, e21, e22 = expm_2x2(l11, l12, l21, l22, t)
    return m0f + e11 * df + e12 * dm, m0m + e21 * df + e22 * dm
