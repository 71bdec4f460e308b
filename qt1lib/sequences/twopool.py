"""Two-pool (free water + macromolecules) longitudinal model with exchange, for MPnRAGE chains.

State: ``M = (Mzf, Mzm)``, the longitudinal magnetisation of the free (f) and macromolecular
(m) pools, in units of the free pool's equilibrium ``M0f`` (``M0f = 1`` by default, so signals are
comparable with the single-pool model) and ``M0m = PSR * M0f``. Between RF pulses the pools relax
and exchange (Bloch-McConnell, longitudinal part; Gochberg & Gore 2007, MRM 57:437, eq. 1;
Dortch et al. 2011, MRM 66:1346, eq. 1)::

    dMf/dt = R1f (M0f - Mf) - kfm Mf + kmf Mm
    dMm/dt = R1m (M0m - Mm) - kmf Mm + kfm Mf,        kfm = PSR * kmf

so ``dM/dt = L (M - M0)`` with ``L = [[-(R1f + kfm), kmf], [kfm, -(R1m + kmf)]]`` and relaxation
over ``t`` is the affine map ``M -> M0 + exp(L t) (M - M0)``. ``exp(L t)`` of the 2x2 matrix is
written in closed form (Sylvester's formula with the divided difference of ``exp`` at the two
real eigenvalues of ``L``), vectorised over voxels.

RF pulses. The free pool is rotated (``Mzf -> cos(alpha) Mzf``, spoiled). The macromolecular
pool has a T2 of about 12 us and cannot be rotated: it is partially saturated at the rate
``W = pi * omega1(t)^2 * G(Delta)`` (Graham & Henkelman 1997, JMRI 7:903; Henkelman et al. 1993,
MRM 29:759), ``G`` its absorption lineshape at the offset ``Delta`` of the pulse. A hard
on-resonance excitation of flip ``alpha`` and duration ``tau`` therefore maps
``Mzm -> exp(-pi G(0) alpha^2 / tau) Mzm``. The adiabatic inversion of MP2RAGE inverts the free
pool (``Mzf -> -eff Mzf``) and saturates the bound pool by ``exp(-int W dt)`` integrated along the
frequency sweep of a hyperbolic-secant pulse (the Graham saturation rate that Assländer &
Flassbeck 2024, arXiv:2409.05318, apply to off-resonant pulses, here applied along the sweep).
The resulting fast exchange after the inversion is what makes white matter recover
bi-exponentially (Rioux et al. 2016, MRM 75:2265). Relaxation and exchange during the pulses are
neglected (the pulses last 0.5-10 ms against ``1/kmf`` of about 70 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..protocols import MPnRAGEProtocol
from .bloch import free_pool_inversion
from .chain import AffineMap
from .mpnrage import mpnrage_signals

__all__ = [
    "KMF_HUMAN_BRAIN",
    "T2M_DEFAULT",
    "EXCITATION_DURATION_DEFAULT",
    "LINESHAPES",
    "lineshape",
    "exchange_matrix",
    "expm_2x2",
    "relaxation_map",
    "ir_fast_fraction",
    "HyperbolicSecantPulse",
    "SIEMENS_HS_INVERSION",
    "excitation_bound_fraction",
    "TwoPool",
    "gre_signals_twopool",
    "TwoPoolTissue",
    "TISSUES_7T",
    "TISSUES_7T_CONSERVATIVE",
    "RIOUX_2016_WM_FAST_FRACTION",
    "RIOUX_2016_WM_T1_LONG",
    "r1f_for_slow_rate",
    "two_pool_from_ir_components",
    "R1M_CONVENTION",
    "T2F_7T",
]

#: Exchange rate from the macromolecular to the free pool (s^-1) that SIR fits fix for human
#: brain: ``kmf = 14.5`` in the public SIR-qMT toolbox (nicksisco1932/The_SIR-qMT_toolbox,
#: ``utils.jl``: "kmf is held constant at 14.5 for human brains"), close to the values Dortch et
#: al. 2011 (MRM 66:1346, abstract) measured at 3 T: WM 11 +- 2, GM 15 +- 6 s^-1.
KMF_HUMAN_BRAIN = 14.5

#: Transverse relaxation time of the macromolecular pool (s). 12 us is the white-matter value
#: used by Gloor et al. 2008 (MRM 60:691, bSSFP qMT); the super-Lorentzian with the on-resonance
#: extrapolation below gives G(0) = 1.40e-5 s for it, matching the G(0) = 1.4176e-5 s that
#: qMRLab's ``qmt_sirfse`` Bloch simulation uses.
T2M_DEFAULT = 12e-6

#: Default duration (s) of an MPnRAGE readout excitation, as the hard pulse that deposits the
#: same RF energy (``int omega1^2 dt``) as the binomial 1-2-1 water-excitation pulse with 0.2 ms
#: sub-pulses that Assländer & Flassbeck 2024 assume for Marques' MP2RAGE
#: (JakobAsslaender/T1variability, ``calculate_T1_MP2RAGE``): ``0.2 ms / (1/16 + 1/4 + 1/16)``.
#: The seed's (Philips) pulse is not public: an assumption.
EXCITATION_DURATION_DEFAULT = 0.2e-3 / (1 / 16 + 1 / 4 + 1 / 16)

LINESHAPES = ("super-lorentzian", "gaussian", "lorentzian")


# ---------------------------------------------------------------------------------- lineshapes
@lru_cache(maxsize=4)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _superlorentzian(delta_hz: np.ndarray, t2m: float) -> np.ndarray:
    """Super-Lorentzian absorption lineshape (s) with qMRLab's on-resonance extrapolation.

    ``G(Delta) = int_0^1 sqrt(2/pi) T2m / |3u^2 - 1| exp(-2 (2 pi Delta T2m / (3u^2 - 1))^2) du``
    (Morrison & Henkelman 1995, MRM 33:475; normalised so that ``W = pi omega1^2 G``). It
    diverges at resonance; below 1500 Hz the offset is replaced by ``0.00016 Delta^2 + 1140`` Hz
    (qMRLab/qMRLab, src/Common/lineshape/superlorentzianLineshape.m), continuous at 1500 Hz.
    Gauss-Legendre quadrature on [0, 1/sqrt 3] and [1/sqrt 3, 1] (the singular point).
    """
    d = np.abs(np.asarray(delta_hz, dtype=float))
    d = np.where(d <= 1500.0, 0.00016 * d**2 + 1140.0, d)
    x, w = _legendre(400)
    edge = 1.0 / np.sqrt(3.0)
    total = np.zeros_like(d)
    for lo, hi in ((0.0, edge), (edge, 1.0)):
        u = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
        q = 3.0 * u**2 - 1.0
        f = np.sqrt(2.0 / np.pi) * t2m / np.abs(q) * np.exp(-2.0 * (2.0 * np.pi * d[..., None] * t2m / q) ** 2)
        total = total + 0.5 * (hi - lo) * (f @ w)
    return total


def lineshape(delta_hz: np.ndarray | float, t2m: float = T2M_DEFAULT, kind: str = "super-lorentzian") -> np.ndarray:
    """Absorption lineshape ``G`` of the macromolecular pool (s), so that ``W = pi omega1^2 G``.

    ``G`` is a probability density in angular frequency (``int G d omega = 1``), evaluated at an
    offset given in Hz (the convention of Henkelman et al. 1993 and qMRLab).

    Parameters
    ----------
    delta_hz : array_like
        Offset of the RF from the pool's resonance (Hz).
    t2m : float
        Transverse relaxation time of the macromolecular pool (s), > 0.
    kind : {"super-lorentzian", "gaussian", "lorentzian"}
        Super-Lorentzian (for lipid bilayers, Morrison & Henkelman 1995; on-resonance
        extrapolation of qMRLab), Gaussian ``T2 / sqrt(2 pi) exp(-(2 pi Delta T2)^2 / 2)`` or
        Lorentzian ``T2 / pi / (1 + (2 pi Delta T2)^2)`` (Henkelman et al. 1993, MRM 29:759).

    Returns
    -------
    ndarray
        ``G(delta_hz)`` in seconds.
    """
    if not (np.isfinite(t2m) and t2m > 0):
        raise ValueError(f"t2m (s) must be positive and finite, got {t2m!r}")
    delta = np.asarray(delta_hz, dtype=float)
    x = 2.0 * np.pi * delta * t2m
    if kind == "super-lorentzian":
        return _superlorentzian(delta, t2m)
    if kind == "gaussian":
        return t2m / np.sqrt(2.0 * np.pi) * np.exp(-(x**2) / 2.0)
    if kind == "lorentzian":
        return t2m / np.pi / (1.0 + x**2)
    raise ValueError(f"unknown lineshape {kind!r}; expected one of {LINESHAPES}")


# ---------------------------------------------------------------------------------- relaxation
def exchange_matrix(r1f, r1m, psr, kmf) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Entries ``(l11, l12, l21, l22)`` of ``L`` in ``dM/dt = L (M - M0)`` (s^-1).

    ``L = [[-(R1f + kfm), kmf], [kfm, -(R1m + kmf)]]`` with ``kfm = PSR kmf`` (Gochberg & Gore
    2007, eq. 1; detailed balance ``kfm M0f = kmf M0m``). Arguments broadcast together.
    """
    r1f, r1m, psr, kmf = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (r1f, r1m, psr, kmf)))
    kfm = psr * kmf
    return -(r1f + kfm), kmf, kfm, -(r1m + kmf)


def expm_2x2(l11, l12, l21, l22, t) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ``exp(L t)`` of real 2x2 matrices with real eigenvalues, vectorised.

    Sylvester / Newton form: ``exp(L t) = e^{lam2 t} I + phi (L - lam2 I)`` with
    ``phi = (e^{lam1 t} - e^{lam2 t}) / (lam1 - lam2) = t e^{lam2 t} expm1(d t) / (d t)``,
    ``d = lam1 - lam2 >= 0`` (Moler & Van Loan 2003, SIAM Rev 45:3, method 15, divided
    differences), which stays exact as ``d -> 0``. The exchange matrix always has real eigenvalues
    (``l12 l21 >= 0``). All arguments broadcast; ``t`` (s) may carry extra axes.

    Returns
    -------
    tuple of ndarray
        ``(e11, e12, e21, e22)``.
    """
    half_tr = 0.5 * (l11 + l22)
    disc = (0.5 * (l11 - l22)) ** 2 + l12 * l21
    root = np.sqrt(np.maximum(disc, 0.0))
    lam2 = half_tr - root
    d = 2.0 * root
    t = np.asarray(t, dtype=float)
    dt = d * t
    e2 = np.exp(lam2 * t)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.abs(dt) > 1e-8, np.expm1(dt) / np.where(dt == 0, 1.0, dt), 1.0 + 0.5 * dt)
    phi = t * e2 * ratio
    return e2 + phi * (l11 - lam2), phi * l12, phi * l21, e2 + phi * (l22 - lam2)


def relaxation_map(r1f, r1m, psr, kmf, m0f, t: float) -> AffineMap:
    """Two-pool relaxation with exchange over ``t`` seconds as an affine map of ``(Mzf, Mzm)``.

    ``M -> E M + (I - E) M0`` with ``E = exp(L t)`` (:func:`expm_2x2`), ``M0 = (m0f, PSR m0f)``.
    Arguments broadcast together into the batch shape.
    """
    l11, l12, l21, l22 = exchange_matrix(r1f, r1m, psr, kmf)
    e11, e12, e21, e22 = expm_2x2(l11, l12, l21, l22, t)
    m0f = np.asarray(m0f, dtype=float)
    m0m = np.asarray(psr, dtype=float) * m0f
    e11, e12, e21, e22, m0f, m0m = np.broadcast_arrays(e11, e12, e21, e22, m0f, m0m)
    A = np.stack([np.stack([e11, e12], -1), np.stack([e21, e22], -1)], -2)
    b = np.stack([(1.0 - e11) * m0f - e12 * m0m, -e21 * m0f + (1.0 - e22) * m0m], -1)
    return AffineMap(A, b)


def ir_fast_fraction(r1f, psr, kmf=KMF_HUMAN_BRAIN, r1m=None, free_efficiency=1.0, bound_fraction=1.0) -> np.ndarray:
    """Fraction of the free pool's inversion recovery carried by the fast (exchange) component.

    After an inversion from equilibrium (``Mf -> -eff M0f``, ``Mm -> s M0m``) the free pool recovers
    as ``Mf(t) = M0f + a_fast exp(-R1+ t) + a_slow exp(-R1- t)`` (Gochberg & Gore 2007, MRM 57:437;
    Li et al. 2010, MRM 64:491, eqs. 3-5). With the eigenvalues ``lam_slow = -R1-`` and
    ``lam_fast = -R1+`` of the exchange matrix ``L`` (:func:`exchange_matrix`) and ``x = M(0) - M0``,
    the spectral projectors of ``L`` give ``a_fast = ((l11 - lam_slow) x_f + l12 x_m) / (lam_fast -
    lam_slow)`` and ``a_slow = ((l11 - lam_fast) x_f + l12 x_m) / (lam_slow - lam_fast)``. This returns
    ``a_fast / (a_fast + a_slow)``: the "short T1 component" fraction that a bi-exponential fit of an
    inversion recovery reports (Rioux et al. 2016, MRM 75:2265: 11 % in WM at 7 T).

    Parameters
    ----------
    r1f, psr, kmf, r1m : array_like
        Tissue (see :class:`TwoPool`); ``r1m`` default ``R1f``.
    free_efficiency : array_like, default 1
        The inversion's efficiency on the free pool.
    bound_fraction : array_like, default 1
        The factor it applies to Mzm (e.g. :meth:`HyperbolicSecantPulse.bound_fraction`).
    """
    r1f = np.asarray(r1f, dtype=float)
    r1m = r1f if r1m is None else np.asarray(r1m, dtype=float)
    l11, l12, l21, l22 = exchange_matrix(r1f, r1m, psr, kmf)
    half_trace, det = (l11 + l22) / 2, l11 * l22 - l12 * l21
    root = np.sqrt(np.maximum(half_trace**2 - det, 0.0))
    lam_slow, lam_fast = half_trace + root, half_trace - root
    x_f = -np.asarray(free_efficiency, dtype=float) - 1.0
    x_m = (np.asarray(bound_fraction, dtype=float) - 1.0) * np.asarray(psr, dtype=float)
    a_fast = ((l11 - lam_slow) * x_f + l12 * x_m) / (lam_fast - lam_slow)
    a_slow = ((l11 - lam_fast) * x_f + l12 * x_m) / (lam_slow - lam_fast)
    return a_fast / (a_fast + a_slow)


# ---------------------------------------------------------------------------------- RF pulses
@dataclass(frozen=True)
class HyperbolicSecantPulse:
    """A hyperbolic-secant (HS1) adiabatic inversion pulse (Silver et al. 1985, J Magn Reson 64:684).

    ``omega1(t) = omega1_max sech(beta (t - T/2))`` (rad/s) with the frequency sweep
    ``Delta omega(t) = -mu beta tanh(beta (t - T/2))`` (rad/s), ``0 <= t <= T``.

    Parameters
    ----------
    duration : float
        T (s).
    omega1_max : float
        Peak RF amplitude (rad/s) at B1+ = 1.
    beta : float
        Modulation rate (s^-1).
    mu : float
        Sweep parameter (rad).
    source : str
        Where the numbers come from.
    """

    duration: float
    omega1_max: float
    beta: float
    mu: float
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("duration", "omega1_max", "beta", "mu"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"HyperbolicSecantPulse.{name} must be positive and finite, got {value!r}")

    def bound_fraction(self, b1: np.ndarray | float = 1.0, t2m: float = T2M_DEFAULT, kind: str = "super-lorentzian") -> np.ndarray:
        """Fraction of the macromolecular Mz that survives the pulse, ``exp(-int W dt)``.

        ``W(t) = pi (b1 omega1(t))^2 G(Delta omega(t) / 2 pi)`` (Graham & Henkelman 1997), the
        integral by the trapezoidal rule on 2001 points. The exponent scales with ``b1^2``.

        Parameters
        ----------
        b1 : array_like
            Relative B1+ (>= 0).
        t2m, kind
            Lineshape of the macromolecular pool (see :func:`lineshape`).
        """
        b1 = np.asarray(b1, dtype=float)
        if np.isnan(b1).any() or (b1 < 0).any():
            raise ValueError("b1 (relative B1+) must be >= 0 and not NaN")
        return np.exp(-(b1**2) * _hs_saturation_exponent(self, float(t2m), kind))

    def amplitude(self, t: np.ndarray) -> np.ndarray:
        """``omega1(t)`` (rad/s) at B1+ = 1."""
        return self.omega1_max / np.cosh(self.beta * (np.asarray(t, dtype=float) - self.duration / 2))

    def sweep(self, t: np.ndarray) -> np.ndarray:
        """``Delta omega(t)`` (rad/s), the frequency sweep."""
        return -self.mu * self.beta * np.tanh(self.beta * (np.asarray(t, dtype=float) - self.duration / 2))

    def free_pool_efficiency(self, t1: float, t2: float, b1: np.ndarray | float = 1.0) -> np.ndarray:
        """Inversion efficiency ``-Mz(T)/M0`` of the free pool, from a Bloch simulation of the pulse.

        :func:`qt1lib.sequences.bloch.free_pool_inversion` on resonance, with the tissue's free-pool
        T1 and T2 (relaxation during the pulse), tabulated once per (pulse, T1, T2) on B1+ from 0 to
        :data:`EFFICIENCY_TABLE_B1_MAX` in steps of :data:`EFFICIENCY_TABLE_B1_STEP` and
        interpolated linearly (error below 1e-4 for this pulse: ``tests/test_bloch.py``).

        Parameters
        ----------
        t1, t2 : float
            Free-pool relaxation times (s).
        b1 : array_like
            Relative B1+, in [0, EFFICIENCY_TABLE_B1_MAX].
        """
        b1 = np.asarray(b1, dtype=float)
        if np.isnan(b1).any() or (b1 < 0).any() or (b1 > EFFICIENCY_TABLE_B1_MAX).any():
            raise ValueError(f"b1 (relative B1+) must lie in [0, {EFFICIENCY_TABLE_B1_MAX}] and not be NaN")
        nodes, table = _hs_efficiency_table(self, float(t1), float(t2))
        return np.interp(b1, nodes, table)


#: B1+ range and step of :meth:`HyperbolicSecantPulse.free_pool_efficiency`'s table, and the time
#: steps of its Bloch simulation (1000 steps of 10 us change the efficiency by < 1e-6 against 16000).
EFFICIENCY_TABLE_B1_MAX, EFFICIENCY_TABLE_B1_STEP, EFFICIENCY_TABLE_STEPS = 2.5, 0.005, 1000


@lru_cache(maxsize=64)
def _hs_efficiency_table(pulse: HyperbolicSecantPulse, t1: float, t2: float) -> tuple[np.ndarray, np.ndarray]:
    nodes = np.arange(0.0, EFFICIENCY_TABLE_B1_MAX + EFFICIENCY_TABLE_B1_STEP / 2, EFFICIENCY_TABLE_B1_STEP)
    table = free_pool_inversion(
        pulse.amplitude, pulse.sweep, pulse.duration, t1, t2, np.maximum(nodes, 1e-9), n_steps=EFFICIENCY_TABLE_STEPS
    )
    table.setflags(write=False)
    return nodes, table


@lru_cache(maxsize=32)
def _hs_saturation_exponent(pulse: HyperbolicSecantPulse, t2m: float, kind: str) -> float:
    t = np.linspace(0.0, pulse.duration, 2001)
    s = pulse.beta * (t - pulse.duration / 2)
    omega1 = pulse.omega1_max / np.cosh(s)
    offset_hz = -pulse.mu * pulse.beta * np.tanh(s) / (2.0 * np.pi)
    w = np.pi * omega1**2 * lineshape(offset_hz, t2m, kind)
    return float(np.sum(0.5 * (w[1:] + w[:-1]) * np.diff(t)))


#: The standard Siemens hyperbolic-secant inversion pulse as parameterised by Assländer &
#: Flassbeck 2024 (JakobAsslaender/T1variability, helper_functions.jl, ``sech_inversion_pulse``:
#: T = 10.24 ms, beta = 674.1 s^-1, mu = 5, omega1_max = 4965.9 rad/s, i.e. 18.6 uT). The seed's
#: Philips pulse is not public: an assumption.
SIEMENS_HS_INVERSION = HyperbolicSecantPulse(
    duration=10.24e-3,
    omega1_max=4965.910769033364,
    beta=674.1,
    mu=5.0,
    source="standard Siemens HS1 inversion, JakobAsslaender/T1variability helper_functions.jl",
)


def excitation_bound_fraction(
    alpha: np.ndarray | float, duration: float, t2m: float = T2M_DEFAULT, kind: str = "super-lorentzian"
) -> np.ndarray:
    """Fraction of the macromolecular Mz left by a hard on-resonance pulse of flip ``alpha``.

    ``exp(-W tau)`` with ``W = pi omega1^2 G(0)``, ``omega1 = alpha / tau`` (Graham & Henkelman
    1997): ``exp(-pi G(0) alpha^2 / tau)``.

    Parameters
    ----------
    alpha : array_like
        Actual flip angle (rad).
    duration : float
        Pulse duration tau (s), > 0.
    """
    if not (np.isfinite(duration) and duration > 0):
        raise ValueError(f"excitation pulse duration (s) must be positive for a two-pool model, got {duration!r}")
    g0 = float(lineshape(0.0, t2m, kind))
    return np.exp(-np.pi * g0 * np.asarray(alpha, dtype=float) ** 2 / duration)


# ---------------------------------------------------------------------------------- pool model
def _param(name: str, value, low: float = 0.0, allow_equal: bool = False) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; mask those voxels out before simulating")
    bad = (arr < low) if allow_equal else (arr <= low)
    if bad.any() or not np.isfinite(arr).all():
        relation = ">=" if allow_equal else ">"
        raise ValueError(f"{name} must be finite and {relation} {low}, got values in [{np.min(arr)}, {np.max(arr)}]")
    return arr


class TwoPool:
    """Free + macromolecular pools with exchange: a :class:`~qt1lib.sequences.mpnrage.PoolModel`.

    Parameters
    ----------
    r1f : array_like
        Longitudinal relaxation rate of the free pool (s^-1), > 0.
    psr : array_like
        Pool size ratio ``M0m / M0f`` (>= 0).
    kmf : array_like, default :data:`KMF_HUMAN_BRAIN`
        Exchange rate from the macromolecular to the free pool (s^-1), > 0; ``kfm = PSR kmf``.
    r1m : array_like, optional
        Relaxation rate of the macromolecular pool (s^-1). Default ``R1m = R1f``, the constraint
        of the SIR fits (Gochberg & Gore 2007; Dortch et al. 2011), so that the simulated tissue's
        R1f is the quantity the SIR reference measures.
    m0f : array_like, default 1
        Equilibrium magnetisation of the free pool (signal units); ``M0m = PSR m0f``.
    t2m : float, default :data:`T2M_DEFAULT`
        Transverse relaxation time of the macromolecular pool (s).
    lineshape : str, default "super-lorentzian"
        Absorption lineshape of the macromolecular pool (see :func:`lineshape`).
    free_inversion_efficiency : array_like, optional
        Efficiency of the inversion on the free pool (``Mzf -> -eff Mzf``) in (0, 1], per voxel (e.g.
        :meth:`HyperbolicSecantPulse.free_pool_efficiency`). Default: the protocol's
        ``inversion_efficiency``, whatever the tissue.
    inversion_bound_fraction : array_like, default 1 (bound pool untouched)
        Factor the adiabatic inversion applies to Mzm, in [-1, 1]: compute it from the inversion
        pulse and the voxel's B1+ with :meth:`HyperbolicSecantPulse.bound_fraction` (in (0, 1],
        what :func:`gre_signals_twopool` does). Negative values (an inverted bound pool, which no
        real pulse achieves for a T2 of microseconds) serve as a thought experiment.

    Notes
    -----
    All parameters broadcast into the batch shape. ``excite`` needs a positive pulse duration.
    """

    dim = 2

    def __init__(
        self,
        r1f,
        psr,
        kmf=KMF_HUMAN_BRAIN,
        r1m=None,
        m0f=1.0,
        t2m: float = T2M_DEFAULT,
        lineshape: str = "super-lorentzian",
        inversion_bound_fraction=1.0,
        free_inversion_efficiency=None,
    ):
        self.r1f = _param("r1f (s^-1)", r1f)
        self.psr = _param("psr (M0m/M0f)", psr, allow_equal=True)
        self.kmf = _param("kmf (s^-1)", kmf)
        self.r1m = self.r1f if r1m is None else _param("r1m (s^-1)", r1m)
        self.m0f = _param("m0f", m0f, allow_equal=True)
        frac = _param("inversion_bound_fraction", inversion_bound_fraction, low=-1.0, allow_equal=True)
        if (frac > 1).any():
            raise ValueError("inversion_bound_fraction must lie in [-1, 1]")
        self.inversion_bound_fraction = frac
        if free_inversion_efficiency is None:
            self.free_inversion_efficiency = None
        else:
            eff = np.asarray(free_inversion_efficiency, dtype=float)
            if np.isnan(eff).any() or (eff <= 0).any() or (eff > 1).any():
                raise ValueError("free_inversion_efficiency must lie in (0, 1] and not be NaN")
            self.free_inversion_efficiency = eff
        if lineshape not in LINESHAPES:
            raise ValueError(f"unknown lineshape {lineshape!r}; expected one of {LINESHAPES}")
        self.t2m = float(_param("t2m (s)", t2m))
        self.lineshape = lineshape
        try:
            self.batch_shape = np.broadcast_shapes(
                *(a.shape for a in (self.r1f, self.psr, self.kmf, self.r1m, self.m0f, frac)),
                *(() if self.free_inversion_efficiency is None else (self.free_inversion_efficiency.shape,)),
            )
        except ValueError:
            raise ValueError("two-pool parameters have shapes that do not broadcast together") from None

    def relax(self, t: float) -> AffineMap:
        return relaxation_map(self.r1f, self.r1m, self.psr, self.kmf, self.m0f, t)

    def excite(self, alpha: np.ndarray, duration: float) -> AffineMap:
        alpha = np.asarray(alpha, dtype=float)
        fm = excitation_bound_fraction(alpha, duration, self.t2m, self.lineshape)
        return _diagonal(np.cos(alpha), fm, self.batch_shape)

    def invert(self, efficiency: float) -> AffineMap:
        if self.free_inversion_efficiency is not None:
            efficiency = self.free_inversion_efficiency
        return _diagonal(np.asarray(-efficiency, dtype=float), self.inversion_bound_fraction, self.batch_shape)

    def observed(self, m: np.ndarray) -> np.ndarray:
        return m[..., 0]


def _diagonal(a: np.ndarray, d: np.ndarray, batch_shape: tuple[int, ...]) -> AffineMap:
    shape = np.broadcast_shapes(a.shape, d.shape, batch_shape)
    A = np.zeros((*shape, 2, 2))
    A[..., 0, 0] = a
    A[..., 1, 1] = d
    return AffineMap(A, np.zeros((*shape, 2)))


def gre_signals_twopool(
    r1f,
    psr,
    protocol: MPnRAGEProtocol,
    b1=1.0,
    kmf=KMF_HUMAN_BRAIN,
    r1m=None,
    m0f=1.0,
    t2m: float = T2M_DEFAULT,
    lineshape: str = "super-lorentzian",
    pulse_duration: float = EXCITATION_DURATION_DEFAULT,
    inversion_pulse: HyperbolicSecantPulse | float = SIEMENS_HS_INVERSION,
    free_inversion_efficiency=None,
) -> np.ndarray:
    """Two-pool steady-state GRE signals of an MP2RAGE / MP3RAGE protocol (units of M0f).

    The generic chain :func:`~qt1lib.sequences.mpnrage.mpnrage_signals` with a :class:`TwoPool`
    whose inversion saturates the bound pool as ``inversion_pulse`` does at this B1+.

    Parameters
    ----------
    r1f, psr, kmf, r1m, m0f, t2m, lineshape
        Tissue (see :class:`TwoPool`).
    protocol : MPnRAGEProtocol
        The acquisition (every readout is simulated).
    b1 : array_like, default 1
        Relative B1+ (> 0): scales every excitation flip and the inversion's RF amplitude.
    pulse_duration : float, default :data:`EXCITATION_DURATION_DEFAULT`
        Duration of each (hard-pulse equivalent) excitation (s).
    inversion_pulse : HyperbolicSecantPulse or float
        Adiabatic inversion, whose bound-pool saturation is computed at each voxel's B1+; or a
        number in [-1, 1], the factor the inversion applies to Mzm whatever B1+ (1: untouched,
        0: fully saturated, negative: inverted, a thought experiment).
    free_inversion_efficiency : array_like, optional
        The inversion's efficiency on the free pool per voxel, in (0, 1]; default the protocol's
        ``inversion_efficiency`` (see :class:`TwoPool`).

    Returns
    -------
    ndarray, shape (protocol.n_readouts, *batch)
        ``sin(b1 alpha_k) Mzf`` at each k-space centre.

    Raises
    ------
    ValueError
        If a parameter is NaN, out of range, or the shapes do not broadcast.
    """
    b1 = _param("b1 (relative B1+)", b1)
    tissue = [np.shape(v) for v in (r1f, psr, kmf, m0f) + (() if r1m is None else (r1m,))]
    try:
        shape = np.broadcast_shapes(*tissue, b1.shape)
    except ValueError:
        raise ValueError(f"b1 of shape {b1.shape} and the tissue parameters of shapes {tissue} do not broadcast") from None
    if isinstance(inversion_pulse, HyperbolicSecantPulse):
        fraction = inversion_pulse.bound_fraction(b1, t2m, lineshape)
    else:
        fraction = inversion_pulse
    model = TwoPool(r1f, psr, kmf, r1m, m0f, t2m, lineshape, fraction, free_inversion_efficiency)
    return mpnrage_signals(model, protocol, np.broadcast_to(b1, shape), pulse_duration)


# ---------------------------------------------------------------------------------- tissues
@dataclass(frozen=True)
class TwoPoolTissue:
    """Default two-pool parameters of one tissue class.

    Parameters
    ----------
    name : str
        Tissue label.
    r1f : float
        Free-pool R1 (s^-1).
    psr : float
        Pool size ratio M0m / M0f.
    kmf : float
        Exchange rate m -> f (s^-1).
    m0f : float
        Relative free-water proton density (CSF = 1).
    source : str
        Where each number comes from.
    r1m : float, optional
        Macromolecular-pool R1 (s^-1); None: ``R1m = R1f`` (the SIR fits' constraint).
    t2f : float, optional
        Free-pool T2 (s), which sets the adiabatic inversion's efficiency on the free pool in a
        Bloch simulation (:meth:`HyperbolicSecantPulse.free_pool_efficiency`); None: the tissue
        takes the protocol's constant efficiency.
    """

    name: str
    r1f: float
    psr: float
    kmf: float
    m0f: float
    source: str = field(default="", compare=False)
    r1m: float | None = None
    t2f: float | None = None

    def __post_init__(self) -> None:
        for name in ("r1f", "kmf", "m0f"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"TwoPoolTissue.{name} must be positive and finite, got {value!r}")
        if not (np.isfinite(self.psr) and self.psr >= 0):
            raise ValueError(f"TwoPoolTissue.psr must be >= 0 and finite, got {self.psr!r}")
        for name in ("r1m", "t2f"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"TwoPoolTissue.{name} must be positive and finite or None, got {value!r}")

    @property
    def t1f(self) -> float:
        """1 / R1f (s)."""
        return 1.0 / self.r1f


_KMF_SRC = "kmf 14.5 s^-1: SIR-qMT toolbox fixed value for human brain"
_PD_SRC = "relative proton density: DESIGN.md 4.4 starting value (not verified against a paper)"
_WM_R1F_SRC = "R1f = 1/1.349 s: long T1 component of WM at 7 T, Rioux et al. 2016 (MRM 75:2265, abstract)"
_SGM_R1F_SRC = (
    "R1f = 1/1.664 s: mean of putamen (1.644 s) and caudate head (1.684 s) T1 at 7 T, Wright et al. "
    "2008 (MAGMA 21:121, abstract; mono-exponential MPRAGE fit, so slightly MT-weighted)"
)
_CGM_R1F_SRC = "R1f = 1/1.939 s: cortical GM T1 at 7 T, Wright et al. 2008 (MAGMA 21:121, abstract)"
_CSF_SRC = (
    "T1 4.4 s: DESIGN.md 4.4 starting value (recalled from Rooney et al. 2007, MRM 57:308; not verified "
    "here); PSR 0: no macromolecules"
)

#: The cohort's 7 T tissue physics before issue 9 ("conservative"): 3 T pool size ratios and
#: ``R1m = R1f``; the tissues take the protocol's inversion efficiency (no ``t2f``).
TISSUES_7T_CONSERVATIVE: dict[str, TwoPoolTissue] = {
    "WM": TwoPoolTissue(
        "WM", r1f=1.0 / 1.349, psr=0.114, kmf=KMF_HUMAN_BRAIN, m0f=0.69,
        source=(
            f"{_WM_R1F_SRC}; PSR 0.114: WM at 3 T, Dortch et al. 2011 (MRM 66:1346, abstract), assumed field "
            f"independent; {_KMF_SRC}; {_PD_SRC}"
        ),
    ),
    "subcortical_GM": TwoPoolTissue(
        "subcortical_GM", r1f=1.0 / 1.664, psr=0.09, kmf=KMF_HUMAN_BRAIN, m0f=0.8,
        source=(
            f"{_SGM_R1F_SRC}; PSR 0.09: assumption between the WM and GM values of Dortch et al. 2011 "
            f"(DESIGN.md 4.4 starting value); {_KMF_SRC}; {_PD_SRC}"
        ),
    ),
    "cortical_GM": TwoPoolTissue(
        "cortical_GM", r1f=1.0 / 1.939, psr=0.075, kmf=KMF_HUMAN_BRAIN, m0f=0.8,
        source=f"{_CGM_R1F_SRC}; PSR 0.075: GM at 3 T, Dortch et al. 2011 (abstract); {_KMF_SRC}; {_PD_SRC}",
    ),
    "CSF": TwoPoolTissue("CSF", r1f=1.0 / 4.4, psr=0.0, kmf=KMF_HUMAN_BRAIN, m0f=1.0, source=f"{_CSF_SRC}; {_PD_SRC}"),
}

#: Fast ("short T1") component of the WM inversion recovery at 7 T: 11 % (with T1 = 57 ms; the long
#: component 1349 ms, 89 %), Rioux et al. 2016 (MRM 75:2265, abstract; IR-FSE with 13 TIs and an
#: adiabatic inversion). At 3 T they report 9 %, so (0.09, 0.13) is kept as the cited range.
RIOUX_2016_WM_FAST_FRACTION = 0.11
#: The long component (s) of the same fit: the two-pool model's slow rate ``1 / R1-``, which is ``1 / R1f``
#: only when ``R1m = R1f``.
RIOUX_2016_WM_T1_LONG = 1.349
RIOUX_2016_WM_FAST_FRACTION_RANGE = (0.09, 0.13)

#: Macromolecular-pool R1 (s^-1) where it is not constrained to R1f: 1 s^-1, the value qMT fits
#: fix by convention (Henkelman et al. 1993, MRM 29:759; Sled & Pike 2001, MRM 46:923). At 7 T it
#: is an assumption: Wang et al. 2020 (NeuroImage 213:116700) infer a macromolecular T1 in WM that
#: grows with B0, and Assländer & Flassbeck 2024 (arXiv:2409.05318) find fits with R1m != R1f
#: explain most of the literature's T1 variability.
R1M_CONVENTION = 1.0

#: Free-pool T2 (s) at 7 T for the inversion's Bloch simulation: 45 ms in WM and GM, qMRLab's 7 T
#: default tissue parameters for its adiabatic-inversion simulation (qMRLab/qMRLab commit 07a79ba,
#: ``src/Models_Functions/adiabatic_inv/pulseDefaultParams/AI_defaultTissueParams.m``, ``T2a``;
#: not further sourced there). CSF 1 s: assumption (long; the efficiency changes by < 0.01
#: between 0.5 and 2 s for this pulse).
T2F_7T: dict[str, float] = {"WM": 45e-3, "subcortical_GM": 45e-3, "cortical_GM": 45e-3, "CSF": 1.0}


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
    fast fraction of that tissue after the inversion (:func:`ir_fast_fraction`,
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
    from scipy.optimize import brentq

    psr = float(brentq(excess, low, high, xtol=1e-12))
    return float(r1f_for_slow_rate(r1_slow, psr, r1m, kmf)), psr


def _wm_literature() -> tuple[float, float]:
    """WM ``(R1f, PSR)`` whose inversion recovery has Rioux et al. 2016's 7 T long component and fast fraction.

    :func:`two_pool_from_ir_components` with 1.349 s and 11 %, ``R1m`` = :data:`R1M_CONVENTION`,
    ``kmf`` = :data:`KMF_HUMAN_BRAIN`, after the Siemens HS inversion at B1+ = 1 (free pool: Bloch
    efficiency with T1 1.349 s and the WM T2f; bound pool: :meth:`HyperbolicSecantPulse.bound_fraction`).
    """
    pulse = SIEMENS_HS_INVERSION
    eff = float(free_pool_inversion(pulse.amplitude, pulse.sweep, pulse.duration, RIOUX_2016_WM_T1_LONG,
                                    T2F_7T["WM"], 1.0, n_steps=EFFICIENCY_TABLE_STEPS))
    return two_pool_from_ir_components(RIOUX_2016_WM_T1_LONG, RIOUX_2016_WM_FAST_FRACTION, r1m=R1M_CONVENTION,
                                       free_efficiency=eff, bound_fraction=float(pulse.bound_fraction(1.0)))


_R1F_WM_LITERATURE, _PSR_WM_LITERATURE = _wm_literature()
_WM_LIT_SRC = (
    f"R1f = 1/{1 / _R1F_WM_LITERATURE:.3f} s and PSR {_PSR_WM_LITERATURE:.3f}: the two-pool WM whose inversion "
    "recovery after the HS inversion has the long component 1.349 s and the fast fraction 11 % that Rioux et al. "
    "2016 (MRM 75:2265, abstract) measured at 7 T (computed, qt1lib.sequences.twopool._wm_literature)"
)
_R1M_SRC = "R1m 1 s^-1: qMT convention (Henkelman et al. 1993; Sled & Pike 2001), an assumption at 7 T"
_T2F_SRC = "T2f 45 ms: qMRLab 7 T default (AI_defaultTissueParams.m, commit 07a79ba)"


def _grey_matter(t1_slow: float, ratio_to_wm: float, why: str, t1_source: str) -> tuple[float, float, str]:
    """Grey-matter ``(R1f, PSR, source)``: the PSR scaled from the literature WM, the measured T1 as the slow rate."""
    psr = _PSR_WM_LITERATURE * ratio_to_wm
    r1f = float(r1f_for_slow_rate(1.0 / t1_slow, psr, R1M_CONVENTION))
    source = (
        f"PSR {psr:.3f}: the literature WM's times {ratio_to_wm:.3f} ({why}); R1f = 1/{1 / r1f:.3f} s: the free-pool "
        f"R1 whose slow recovery rate is 1/{t1_slow} s ({t1_source}, a mono-exponential T1, taken as the slow "
        "component; qt1lib.sequences.twopool.r1f_for_slow_rate)"
    )
    return r1f, psr, source


_SGM = _grey_matter(1.664, 0.09 / 0.114, "the conservative sGM/WM ratio 0.09/0.114, an assumption",
                    "mean of putamen 1.644 s and caudate head 1.684 s at 7 T, Wright et al. 2008, MAGMA 21:121")
_CGM = _grey_matter(1.939, 0.075 / 0.114, "the GM/WM ratio of Dortch et al. 2011 at 3 T, 0.075/0.114",
                    "cortical GM at 7 T, Wright et al. 2008, MAGMA 21:121")


#: Default 7 T two-pool tissue parameters of the digital cohort ("literature"): a WM whose inversion
#: recovery has the long component and the fast fraction Rioux et al. 2016 measured at 7 T, grey
#: matter with the 3 T GM/WM pool-size ratio and its measured 7 T T1 as the slow recovery rate,
#: ``R1m`` = :data:`R1M_CONVENTION` (the SIR fit keeps its ``R1m = R1f`` constraint, so the reference
#: carries that model error) and a free-pool T2 that sets each tissue's inversion efficiency. The tissue registry (:attr:`qt1lib.tissues.Tissue.twopool`)
#: points at these entries; this module must not import it.
TISSUES_7T: dict[str, TwoPoolTissue] = {
    "WM": TwoPoolTissue(
        "WM", r1f=_R1F_WM_LITERATURE, psr=_PSR_WM_LITERATURE, kmf=KMF_HUMAN_BRAIN, m0f=0.69,
        r1m=R1M_CONVENTION, t2f=T2F_7T["WM"],
        source=f"{_WM_LIT_SRC}; {_R1M_SRC}; {_T2F_SRC}; {_KMF_SRC}; {_PD_SRC}",
    ),
    "subcortical_GM": TwoPoolTissue(
        "subcortical_GM", r1f=_SGM[0], psr=_SGM[1], kmf=KMF_HUMAN_BRAIN, m0f=0.8,
        r1m=R1M_CONVENTION, t2f=T2F_7T["subcortical_GM"],
        source=f"{_SGM[2]}; {_R1M_SRC}; {_T2F_SRC}; {_KMF_SRC}; {_PD_SRC}",
    ),
    "cortical_GM": TwoPoolTissue(
        "cortical_GM", r1f=_CGM[0], psr=_CGM[1], kmf=KMF_HUMAN_BRAIN, m0f=0.8,
        r1m=R1M_CONVENTION, t2f=T2F_7T["cortical_GM"],
        source=f"{_CGM[2]}; {_R1M_SRC}; {_T2F_SRC}; {_KMF_SRC}; {_PD_SRC}",
    ),
    "CSF": TwoPoolTissue(
        "CSF", r1f=1.0 / 4.4, psr=0.0, kmf=KMF_HUMAN_BRAIN, m0f=1.0, t2f=T2F_7T["CSF"],
        source=f"{_CSF_SRC}; T2f 1 s: assumption; {_PD_SRC}",
    ),
}
