"""MP2RAGE / MP3RAGE signal model: GRE signals at the k-space centres and their combinations.

The sequence (Marques et al. 2010, NeuroImage 49:1271) is simulated as a chain of affine maps
of the longitudinal magnetisation (:mod:`qt1lib.sequences.chain`):

* inversion, ``Mz -> -eff Mz``;
* free recovery over ``TD_0``;
* for each readout train ``k``: ``n_before`` steps of [excitation by ``B1 * alpha_k``, then
  relaxation over the echo spacing], the k-space-centre signal ``sin(B1 alpha_k) Mz``, then
  ``n_after`` more steps, then free recovery over ``TD_k``;

and the steady state is the fixed point of the whole period. The pool physics (what an
excitation, a relaxation and an inversion do) is supplied by a *pool model*: :class:`SinglePool`
here, the two-pool model with exchange in :mod:`qt1lib.sequences.twopool`. Half excitation
counts (the seed code's ``112.5 + 112.5``) are fractional powers of the single-pool step
(:meth:`~qt1lib.sequences.chain.AffineMap.power`); the two-pool model refuses them.

Signals are in units of the equilibrium magnetisation (M0 = 1), real, before any receive
field, phase or noise.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..protocols import MPnRAGEProtocol
from .chain import AffineMap

__all__ = [
    "PoolModel",
    "SinglePool",
    "mpnrage_signals",
    "gre_signals",
    "uni",
    "robust_uni",
    "combinations",
]


class PoolModel(Protocol):
    """What the MPnRAGE chain needs to know about the tissue.

    Every map may carry batch dimensions that broadcast with the flip-angle arrays given to
    :meth:`excite`.
    """

    dim: int

    def relax(self, t: float) -> AffineMap:
        """Free relaxation over ``t`` seconds."""

    def excite(self, alpha: np.ndarray, duration: float) -> AffineMap:
        """Excitation of flip ``alpha`` (rad, batch-shaped) lasting ``duration`` (s)."""

    def invert(self, efficiency: float) -> AffineMap:
        """Adiabatic inversion of nominal efficiency ``efficiency``."""

    def observed(self, m: np.ndarray) -> np.ndarray:
        """Longitudinal magnetisation that an excitation turns into signal (the free pool)."""


class SinglePool:
    """A single pool with longitudinal relaxation time ``t1`` and equilibrium M0 = 1.

    Relaxation over ``t``: ``Mz -> E Mz + 1 - E`` with ``E = exp(-t / T1)`` (Bloch equation).
    Excitation: ``Mz -> cos(alpha) Mz`` (instantaneous, spoiled). Inversion: ``Mz -> -eff Mz``.

    Parameters
    ----------
    t1 : array_like
        Longitudinal relaxation time (s), positive; its shape is the batch shape.
    """

    dim = 1

    def __init__(self, t1: np.ndarray):
        self.t1 = np.asarray(t1, dtype=float)

    def relax(self, t: float) -> AffineMap:
        e = np.exp(-t / self.t1)
        return AffineMap.scalar(e, 1.0 - e)

    def excite(self, alpha: np.ndarray, duration: float = 0.0) -> AffineMap:
        return AffineMap.scalar(np.cos(alpha), 0.0)

    def invert(self, efficiency: float) -> AffineMap:
        return AffineMap.scalar(-efficiency, 0.0)

    def observed(self, m: np.ndarray) -> np.ndarray:
        return m[..., 0]


def mpnrage_signals(
    model: PoolModel,
    protocol: MPnRAGEProtocol,
    b1: np.ndarray | float = 1.0,
    pulse_duration: float = 0.0,
) -> np.ndarray:
    """Steady-state GRE signal at each k-space centre for any pool model.

    Parameters
    ----------
    model : PoolModel
        The tissue (single pool, or two pools with exchange).
    protocol : MPnRAGEProtocol
        The acquisition; every readout train is simulated, whatever ``protocol.used_readouts``.
    b1 : array_like
        Relative transmit field B1+ (actual flip = ``b1`` x nominal flip), broadcast with the
        model's batch shape.
    pulse_duration : float
        Duration of each excitation pulse (s), passed to ``model.excite`` (bound-pool
        saturation in two-pool models; ignored by :class:`SinglePool`).

    Returns
    -------
    ndarray, shape (n_readouts, *batch)
        ``sin(b1 alpha_k) Mz_free`` just before the k-space-centre excitation of train ``k``
        (Marques et al. 2010, appendix; M0 = 1).
    """
    b1 = np.asarray(b1, dtype=float)
    alphas = [b1 * a for a in protocol.flip_angles_rad]
    gaps = protocol.free_recovery_times
    tr = protocol.echo_spacing

    # The period, as a list of maps; ``None`` marks a k-space centre.
    events: list[AffineMap | None] = [model.invert(protocol.inversion_efficiency), model.relax(gaps[0])]
    for k, alpha in enumerate(alphas):
        step = model.excite(alpha, pulse_duration).then(model.relax(tr))
        events += [step.power(protocol.n_before), None, step.power(protocol.n_after), model.relax(gaps[k + 1])]

    period = events[0]
    for event in events[1:]:
        if event is not None:
            period = period.then(event)
    m = period.fixed_point()  # state just before the inversion

    signals = []
    for event in events:
        if event is None:
            k = len(signals)
            signals.append(np.sin(alphas[k]) * model.observed(m))
        else:
            m = event.apply(m)
    batch = np.broadcast_shapes(*(s.shape for s in signals))
    return np.stack([np.broadcast_to(s, batch) for s in signals])


def _validated(name: str, value: np.ndarray | float, low: float = 0.0) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; mask those voxels out before simulating")
    if (arr <= low).any() or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite and > {low}, got values in [{np.min(arr)}, {np.max(arr)}]")
    return arr


def gre_signals(t1: np.ndarray | float, protocol: MPnRAGEProtocol, b1: np.ndarray | float = 1.0) -> np.ndarray:
    """Single-pool steady-state GRE signals of an MP2RAGE / MP3RAGE protocol.

    Equivalent to the closed form of Marques et al. 2010 (NeuroImage 49:1271, appendix, and
    ``MPRAGEfunc.m`` of JosePMarques/MP2RAGE-related-scripts) for any number of readouts.

    Parameters
    ----------
    t1 : array_like
        Longitudinal relaxation time (s), > 0.
    protocol : MPnRAGEProtocol
        The acquisition.
    b1 : array_like, default 1.0
        Relative transmit field B1+ (> 0); broadcast with ``t1``.

    Returns
    -------
    ndarray, shape (protocol.n_readouts, *np.broadcast_shapes(t1.shape, b1.shape))
        Signal in units of M0.

    Raises
    ------
    ValueError
        If ``t1`` or ``b1`` holds NaN, infinities or values <= 0, or their shapes do not broadcast.
    """
    t1 = _validated("t1 (s)", t1)
    b1 = _validated("b1 (relative B1+)", b1)
    try:
        shape = np.broadcast_shapes(t1.shape, b1.shape)
    except ValueError:
        raise ValueError(f"t1 of shape {t1.shape} and b1 of shape {b1.shape} do not broadcast") from None
    return mpnrage_signals(SinglePool(np.broadcast_to(t1, shape)), protocol, np.broadcast_to(b1, shape))


def uni(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """MP2RAGE combination ``S = Re(conj(g1) g2) / (|g1|^2 + |g2|^2)`` in [-0.5, 0.5].

    Marques et al. 2010, eq. 3. Free of M0, T2*, receive field and common phase. Where both
    signals are zero (no signal at all) the result is NaN. The bound is exact,
    ``|Re(conj(g1) g2)| <= |g1| |g2| <= (|g1|^2 + |g2|^2) / 2``, but rounding overshoots it by an ulp
    where the two signals are (anti)parallel and equally large (in float32, a third of such voxels):
    the result is clipped to it, so that estimators may check their input's range strictly.
    """
    g1 = np.asarray(g1)
    g2 = np.asarray(g2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(np.real(np.conj(g1) * g2) / (np.abs(g1) ** 2 + np.abs(g2) ** 2), -0.5, 0.5)


def robust_uni(g1: np.ndarray, g2: np.ndarray, beta: float) -> np.ndarray:
    """Regularised combination of O'Brien et al. 2014 (PLoS One 9:e99676, eq. 2).

    ``S = (Re(conj(g1) g2) - beta) / (|g1|^2 + |g2|^2 + 2 beta)``: ``beta`` (signal units squared,
    >= 0) pulls noise-only voxels (background) towards -0.5 while leaving voxels with signal
    nearly unchanged. ``beta = 0`` gives :func:`uni`. The result lies in [-0.5, 0.5] as that of
    :func:`uni` does, and is clipped to it for the same reason.
    """
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
    g1 = np.asarray(g1)
    g2 = np.asarray(g2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip((np.real(np.conj(g1) * g2) - beta) / (np.abs(g1) ** 2 + np.abs(g2) ** 2 + 2 * beta), -0.5, 0.5)


def combinations(gre: np.ndarray, protocol: MPnRAGEProtocol) -> np.ndarray:
    """The combinations ``S_1j`` that the protocol's estimation view uses.

    Parameters
    ----------
    gre : ndarray, shape (n_readouts, ...)
        GRE signals (real or complex) of every readout of ``protocol``.
    protocol : MPnRAGEProtocol
        Its :attr:`~qt1lib.protocols.MPnRAGEProtocol.pairs` select the combinations.

    Returns
    -------
    ndarray, shape (len(protocol.pairs), ...)
    """
    gre = np.asarray(gre)
    if gre.shape[0] != protocol.n_readouts:
        raise ValueError(
            f"gre has {gre.shape[0]} readouts along axis 0 but protocol {protocol.name!r} has {protocol.n_readouts}"
        )
    return np.stack([uni(gre[i - 1], gre[j - 1]) for i, j in protocol.pairs])
