"""Two-pool selective inversion recovery (SIR) signal, closed form and vectorised.

Model (Gochberg & Gore 2007, MRM 57:437; Li et al. 2010, MRM 64:491, eqs. 3-5; Dortch et al. 2011,
MRM 66:1346): the readout leaves both pools saturated (``Mf = Mm = 0``; optionally a residual
free-pool ``Mf = r M0f``, see :func:`sir_signal`); during the delay ``td`` the pools recover with
exchange; the selective (short, hard) inversion scales the free pool by
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

__all__ = [
    "SIR_READOUT_RESIDUAL_ASSUMED",
    "cpmg_readout_residual",
    "exchange_rates",
    "sir_pool_curves",
    "sir_signal",
]


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


def _readout_residual(value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if np.isnan(arr).any() or (arr < 0).any() or (arr >= 1).any():
        low, high = np.nanmin(arr, initial=np.inf), np.nanmax(arr, initial=-np.inf)
        raise ValueError(
            "readout_residual (free-pool Mz left by the readout, fraction of M0f) must lie in [0, 1) with no "
            f"NaN; got values in [{low}, {high}]{' and NaN' if np.isnan(arr).any() else ''}"
        )
    return arr


def cpmg_readout_residual(r1f, t2f, echo_spacing: float, refocusing_angle, n_refocusing: int) -> np.ndarray:
    """Free-pool Mz that a spin-echo (FSE/TSE) readout train leaves, as a fraction of M0f.

    Extended phase graphs (Hennig 1988, JMR 78:397; Weigel 2015, JMRI 41:266: RF mixing of
    ``(F+_k, F-_k, Z_k)``, one dephasing order per half echo spacing, relaxation with recovery
    into ``Z_0``) of a crushed CPMG train: ``esp/2`` after an ideal 90 degree excitation,
    ``n`` refocusing pulses of angle ``beta`` ``esp`` apart, and ``esp/2`` after the last one (the
    last echo, where the readout ends and ``td`` starts). The excitation's own pathways sit at odd
    orders when a pulse plays and never return to ``Z_0``, so only what recovers during the train
    remains: recovered ``Z_0`` is tipped by each pulse (``cos beta`` stays, ``sin beta`` becomes
    transverse at even orders) and its echo pathways feed back into ``Z_0``, decaying with T2. With
    ideal 180 degree pulses the recoveries cancel (``Z_0 ~ (R1f esp)^2``); lower angles, as in
    7 T SAR-limited or variable-flip-angle 3D trains, leave percents; a flip-back
    (driven-equilibrium) pulse at the end, not modelled, leaves far more. Neglected: exchange with
    the bound pool (saturated by the train), slice profiles, and the memory of the pre-readout
    state that a non-90 degree excitation (B1+ error) leaves in ``Z_0``. The SIR papers
    (Gochberg & Gore 2007, MRM 57:437; Dortch et al. 2011, MRM 66:1346) assume 0.

    Parameters
    ----------
    r1f : array_like
        Free-pool R1 (s^-1), >= 0.
    t2f : array_like
        Free-pool T2 (s), > 0; broadcasts with ``r1f``.
    echo_spacing : float
        Time between refocusing pulses (s), > 0.
    refocusing_angle : array_like
        Refocusing flip angle (degrees), in [0, 360]; broadcasts with ``r1f`` (e.g. the nominal
        angle times a B1+ map).
    n_refocusing : int
        Number of refocusing pulses (the echo train length), >= 1.

    Returns
    -------
    ndarray
        ``Mf / M0f`` at the end of the readout, of the broadcast shape of the array arguments.
        Memory: ``3 (n_refocusing + 2)`` complex states per voxel.
    """
    r1f = _array("r1f (s^-1)", r1f, low=0.0)
    t2f = _array("t2f (s)", t2f)
    if (t2f <= 0).any():
        raise ValueError(f"t2f (s) must be positive, got a minimum of {np.min(t2f)}")
    if not (np.isfinite(echo_spacing) and echo_spacing > 0):
        raise ValueError(f"echo_spacing (s) must be positive and finite, got {echo_spacing!r}")
    angle = _array("refocusing_angle (degrees)", refocusing_angle, 0.0, 360.0)
    if int(n_refocusing) != n_refocusing or n_refocusing < 1:
        raise ValueError(f"n_refocusing must be a positive integer, got {n_refocusing!r}")
    r1f, t2f, angle = np.broadcast_arrays(r1f, t2f, angle)
    n = int(n_refocusing)
    e1 = np.exp(-0.5 * echo_spacing * r1f)[..., None]
    e2 = np.exp(-0.5 * echo_spacing / t2f)[..., None]
    shape = (*r1f.shape, n + 2)
    fp, fm, z = np.zeros(shape, complex), np.zeros(shape, complex), np.zeros(shape, complex)
    b = np.deg2rad(angle)[..., None]
    c2, s2, cb, sb = np.cos(b / 2) ** 2, np.sin(b / 2) ** 2, np.cos(b), np.sin(b)

    def half_interval(fp, fm, z):
        fp, fm, z = fp * e2, fm * e2, z * e1
        z[..., 0] += 1.0 - e1[..., 0]
        fp = np.concatenate([np.zeros_like(fp[..., :1]), fp[..., :-1]], axis=-1)
        fm = np.concatenate([fm[..., 1:], np.zeros_like(fm[..., :1])], axis=-1)
        fp[..., 0] = np.conj(fm[..., 0])
        return fp, fm, z

    fp, fm, z = half_interval(fp, fm, z)
    for k in range(n):  # loop over pulses (the state is vectorised over voxels)
        fp, fm, z = (
            c2 * fp + s2 * fm - 1j * sb * z,
            s2 * fp + c2 * fm + 1j * sb * z,
            -0.5j * sb * fp + 0.5j * sb * fm + cb * z,
        )
        fp, fm, z = half_interval(fp, fm, z)
        if k < n - 1:
            fp, fm, z = half_interval(fp, fm, z)
    return z[..., 0].real


#: Free-pool Mz left by the SIR readout that the project assumes (fraction of M0f). No SIR
#: paper that we could read reports it: Gochberg & Gore 2007 (MRM 57:437), Li et al. 2010
#: (MRM 64:491), Dortch et al. 2011 (MRM 66:1346) and the public implementations (the SIR-qMT
#: toolbox's ``signalSIR.m``; qMRLab's ``qmt_sirfse`` "FastSim", ``M0 = [0 0 0 0]``, "Assume zero
#: mag after FSE sequence") set it to 0, and qMRLab's "FullSim" simulates the FSE train instead
#: (``FSE_seq.m``). Assumption: :func:`cpmg_readout_residual` of the 3D SIR-TSE readout that
#: the SIR-qMT toolbox's phantom scan records (nicksisco1932/The_SIR-qMT_toolbox,
#: ``Data_used_for_publication/Phantom/Data/*SIR_TSE*.PAR``: TSE factor 22, TE 95.5 ms), with an
#: echo spacing of TE / 11 (linear ordering, assumption), refocusing pulses of 120 degrees (a
#: 7 T SAR-limited value, assumption: 180 degrees gives 0, 90 degrees 1.6 %, 40 degrees 6 %),
#: white matter at 7 T (R1f = 1/1.349 s^-1, :data:`qt1lib.sequences.twopool.TISSUES_7T`) and a
#: free-water T2 of 50 ms (assumption, the order of 7 T white matter; 30-80 ms give 0.4-0.8 %):
#: 0.6 %.
SIR_READOUT_RESIDUAL_ASSUMED = float(cpmg_readout_residual(1.0 / 1.349, 0.05, 95.51e-3 / 11, 120.0, 22))


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
    readout_residual=0.0,
) -> np.ndarray:
    """Two-pool SIR signal at each (ti, td) sample (Li et al. 2010, eqs. 3-5).

    Readout residual. Li et al. (2010, eq. 5) start the delay ``td`` from the saturated state
    ``M(0) = (0, 0)`` that Gochberg & Gore (2007) and Dortch et al. (2011) assume for their
    FSE readouts; ``readout_residual = r`` starts it instead from ``M(0) = (r M0f, 0)``: the
    free pool keeps ``r M0f``, a fixed fraction (what recovers during the train; after a 90
    degree excitation the pre-readout magnetisation does not come back to Mz,
    :func:`cpmg_readout_residual`), while the macromolecular pool stays saturated: each
    refocusing pulse multiplies ``Mm`` by ``exp(-pi G(0) int omega1^2 dt)`` (Graham & Henkelman
    1997, JMRI 7:903), 0.65 for a 1 ms 180 degree pulse and 0.83 at 120 degrees with
    ``G(0) = 1.4e-5 s`` (qMRLab ``qmt_sirfse``; :data:`qt1lib.sequences.twopool.T2M_DEFAULT`),
    so over a train ``Mm`` settles near its recovery over one echo spacing divided by one minus
    that factor: a few % of ``M0m``, a few tenths of a % of ``M0f`` for PSR about 0.1
    (neglected). The recovery over ``td`` is the
    affine map ``M(td) = M0 + E(td) (M(0) - M0)``, ``E = exp(L td)`` (Gochberg & Gore 2007, eq.
    1; :func:`qt1lib.sequences.twopool.expm_2x2`), which adds ``r M0f (E11, E21)`` to the
    saturated case::

        Mf(td) / M0f = [Li et al. eq. 5 term] + r E11(td)
        Mm(td) / M0f = PSR [Li et al. eq. 5 term] + r E21(td)

    with ``E11 = ((R1+ - R1f - kfm) e^{-R1- td} + (R1f + kfm - R1-) e^{-R1+ td}) / R1diff`` and
    ``E21 = kfm (e^{-R1- td} - e^{-R1+ td}) / R1diff`` (Sylvester's formula, ``kfm = PSR kmf``);
    the inversion and the ``ti`` recovery (``b+-``) are unchanged. ``r = 0`` (the default) is
    the model of those papers, computed exactly as before.

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
    readout_residual : array_like, default 0
        Free-pool Mz left by the readout, as a fraction of M0f, in [0, 1); broadcasts with the
        tissue parameters (see above; :data:`SIR_READOUT_RESIDUAL_ASSUMED`).

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
    residual = _readout_residual(readout_residual)
    try:
        batch = np.broadcast_shapes(r1f.shape, psr.shape, sf.shape, m0f.shape, kmf.shape, r1m.shape, residual.shape)
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
        if np.any(residual):
            # the free-pool residual r M0f recovers as r M0f (E11, E21)(td); Mm/M0m gains r E21 / PSR
            e11, _, e21, _ = expm_2x2(*exchange_matrix(r1f, r1m, psr, kmf), t_d)
            mf_td = mf_td + residual * e11
            cross = cross + (sf * residual * e11 * psr - sm * residual * e21) * kmf
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
    readout_residual=0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed Mz of both pools after a selective inversion, for plotting recovery curves.

    Same physics as :func:`sir_signal`, computed with the matrix exponential of the exchange
    matrix (:func:`qt1lib.sequences.twopool.expm_2x2`): ``M(td) = M0 + E(td) (M(0) - M0)`` from
    the readout's ``M(0) = (r M0f, 0)`` (``r = 0``: ``(I - E(td)) M0``);
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
    readout_residual : array_like, default 0
        Free-pool Mz left by the readout (fraction of M0f, in [0, 1)), as in :func:`sir_signal`.

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
    residual = _readout_residual(readout_residual)
    l11, l12, l21, l22, residual = np.broadcast_arrays(*exchange_matrix(r1f, r1m, psr, kmf), residual)
    m0m = psr * m0f
    e11, e12, e21, e22 = expm_2x2(l11, l12, l21, l22, td)
    mf_d = (1.0 - e11 + residual * e11) * m0f - e12 * m0m
    mm_d = (residual - 1.0) * e21 * m0f + (1.0 - e22) * m0m
    df, dm = sf * mf_d - m0f, sm * mm_d - m0m
    t = ti.reshape((-1,) + (1,) * np.ndim(l11))
    e11, e12, e21, e22 = expm_2x2(l11, l12, l21, l22, t)
    return m0f + e11 * df + e12 * dm, m0m + e21 * df + e22 * dm
