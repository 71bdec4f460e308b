"""The exact MP2RAGE posterior of T1 through a table of two sufficient statistics.

**The identity.** With two used readouts, complex data ``y = (y1, y2)`` and real dictionary
signals ``g = (g1, g2) = ||g|| (cos theta, sin theta)`` (:func:`qt1lib.sequences.gre_signals`,
``theta = atan2(g2, g1)``), expand the projection that the exact likelihood needs
(:func:`qt1lib.estimate.map.exact_log_likelihood`):

``|g^T y|^2 / ||g||^2 = |y1 cos theta + y2 sin theta|^2
= A cos^2 theta + B sin^2 theta + 2 C sin theta cos theta
= (A + B)/2 + (A - B)/2 cos 2 theta + C sin 2 theta
= (A + B)/2 + R cos(2 theta - phi)``

with ``A = |y1|^2``, ``B = |y2|^2``, ``C = Re(y1 conj(y2))``, ``R = sqrt(((A - B)/2)^2 + C^2)``
and ``phi = atan2(C, (A - B)/2)`` (the last step writes ``(A - B)/2 = R cos phi``,
``C = R sin phi``). The marginal likelihood of T1, the complex scale integrated out (Bretthorst
1988, Bayesian Spectrum Analysis and Parameter Estimation, ch. 3), is therefore

``log L(T1) = (kappa / 2) cos(psi(T1, B1) - phi) - [log ||g(T1, B1)||^2] + const``,

``kappa = R / sigma^2``, ``psi = 2 theta`` (the bracket for the flat scale prior only; it cancels
with Jeffreys' prior, :class:`qt1lib.estimate.map.ExactMAPModel`). For a prior on T1 that does
not depend on the data, the whole posterior of T1 depends on the data only through
``(phi, kappa)`` and B1: one table over ``(phi, log kappa)`` per B1 serves every voxel and every
noise level (``sigma`` enters only through ``kappa``). In ``phi`` it is a von Mises likelihood on
the arc ``psi([T1_min, T1_max])``: with Jeffreys' prior its maximum is ``psi^-1(phi)`` whatever
``kappa`` (the MAP is the lookup table of the angle ``phi``; Marques' lookup table inverts
``S_12 = C / (A + B) = R sin(phi) / (A + B)``, the same angle damped by the noise in ``R / (A + B)``),
and ``kappa`` sets its width. The goodness-of-fit test needs
``max_T1 |g^T y|^2 / ||g||^2 = (A + B)/2 + R max_T1 cos(psi - phi)``: ``R`` when ``phi`` lies on
the arc, ``R cos(d)`` at the angular distance ``d`` beyond its nearer end.

**The table** (:func:`posterior_table`). For each B1 row (every 0.1 of B1 on the exact MAP's B1
grid within ``b1_range``, default 0.5..1.5) three summaries are tabulated (:func:`_summaries`):
``(mean - T_ref) / std``, ``log std`` and, for the flat prior, ``(kappa + KAPPA_SHIFT)`` times the
MAP's shift from ``T_ref = exp(clip(c))`` in log T1 (``T_ref`` is Jeffreys' MAP), on

* ``c``, a coordinate along the circle of ``phi``: on the arc ``c = psi^-1(phi)`` = log T1 (at large
  ``kappa`` the mean tends to ``exp(c)`` and ``std sqrt(kappa)`` to a smooth function of ``c``), with
  nodes uniform in log T1 (0.02) and graded geometrically towards both ends in log T1 and in ``phi``
  (a posterior cut by a prior end has a boundary layer of width ``1/sqrt(kappa)`` in ``phi``, which
  the plateau of ``psi`` below T1 = 0.15 s stretches over 0.05..0.4 s of T1); beyond the arc, on
  each half of the gap between its ends, a coordinate growing like the log of the angular distance
  ``d`` (the posterior piled against an end has a std of about ``1 / (kappa d psi')``), then
  linearly (:func:`_gap_c`); the nodes are shared by the B1 rows;
* ``log kappa``, uniform (0.125) from ``kappa_range[0]`` to ``kappa_range[1]``; below, linear in
  ``kappa`` from the prior (``kappa = 0``; the moments are analytic in ``kappa`` at 0).

The entries are integrals computed once by composite Gauss-Legendre quadrature in log T1
(:func:`_posterior_moments`), with panel ends graded geometrically in ``|psi - phi|`` around the
likelihood's peak (resolving every width ``1/sqrt(kappa)``) or from both ends beyond the arc, and
uniform in log T1; against a brute-force integration on 2e6 nodes they are within 1e-5 (relative).
A voxel's summaries are interpolated linearly in ``c``, ``log kappa`` and B1. Every cell is
checked at its centre against the quadrature when the table is built (:func:`_check_cells`): a
cell whose interpolated mean or std misses by more than 0.5 % of the std is left to the grid
evaluation (about 1 % of the cells: posteriors shared by both prior ends far beyond the arc, the
plateau's edge at high SNR); for the flat prior, a cell whose interpolated MAP misses by more
than 0.25 ms, or where ``kappa < KAPPA_NEWTON`` (the MAP may jump between two modes), gets
Newton steps, which must reach 0.25 ms there.

**The MAP.** Jeffreys' prior: ``exp(psi^-1(phi))`` on the arc, else the end nearer in angle,
from ``psi`` of the dictionary's signals on a dense log-T1 grid (with a B1 map: bilinear in angle
and B1 row, then a Newton step on ``psi`` linear in B1 between the dictionary's B1 nodes, as the
grid evaluation's signals; within 0.06 ms of the exact T1 for noise-free data). Flat prior: the
interpolated MAP, or Newton steps on ``log L`` from it (and, where the corners' MAPs of the cell
spread, from Jeffreys' MAP and each corner's), the best of them and both ends (:func:`_flat_map`).

**What holds** (tests/test_posterior_table.py, against the grid evaluation
:class:`qt1lib.estimate.map.ExactMAPModel` ``method="grid"``, on seeded random voxels of T1
0.05..5 s, SNR 5..1000, both priors, with and without a B1 map of 0.5..1.5): the MAP within 1 ms
(measured: 0.15 ms Jeffreys', 0.44 ms flat), the std within 1 % and the mean within 1 % of the
std, ``valid`` identical. Where the table and the grid differ by more (0.2..0.5 % of the voxels:
T1 0.15..0.4 s at SNR above ~100, a narrow peak next to the plateau's flat tail, which the grid
evaluation's narrow window leaves out, by up to 17 % of the std; and long T1 at high SNR with a
B1 map, the grid's linear B1 interpolation of the signals), the table is within those bounds of a
brute-force integration and the grid evaluation is not. Below SNR 5 (very wide posteriors) the
std and mean keep the bounds; the flat prior's MAP of a nearly flat or bimodal posterior is
ill-defined there: it stays within 1e-3 of the log-likelihood's maximum.

References: Bretthorst 1988 (marginalisation of linear amplitudes); Marques et al. 2010,
NeuroImage 49:1271 (the lookup table); Press et al., Numerical Recipes, 3rd ed., sec. 4.6
(Gauss-Legendre quadrature).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from scipy.interpolate import CubicSpline

from ..protocols import MPnRAGEProtocol
from ..sequences import gre_signals
from .base import _Identity

__all__ = [
    "KAPPA_RANGE",
    "TABLE_B1_RANGE",
    "Geometry",
    "PosteriorTable",
    "TableResult",
    "evaluate_table",
    "geometry",
    "posterior_table",
    "stored_posterior_table",
    "POSTERIOR_TABLE_STEP",
    "projection_from_statistics",
    "sufficient_statistics",
]

#: (min, max) of kappa = R / sigma^2 on the table's log axis. 1e-2: below it the moments differ
#: from the prior's by less than 1 % and are linear in kappa (interpolated from kappa = 0);
#: 1e7: an SNR ||g|| |c| / sigma of about 4500 (kappa ~ SNR^2 / 2), beyond every SNR studied
#: here (5..1000); voxels above it go to the grid evaluation (assumption: choice of range).
KAPPA_RANGE = (1e-2, 1e7)
#: B1+ range of the B1 rows: the range of the issue's accuracy bounds (issue 12, 0.5..1.5);
#: voxels with B1 outside it (but inside the dictionary's grid) go to the grid evaluation.
TABLE_B1_RANGE = (0.5, 1.5)


# ============================================================================ the identity
def sufficient_statistics(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A = |y1|^2``, ``B = |y2|^2``, ``C = Re(y1 conj(y2))`` of two complex readouts.

    Parameters
    ----------
    y : array_like, shape (2, ...)
        Complex data of the two used readouts.

    Returns
    -------
    A, B, C : ndarray, shape (...)
    """
    y = np.asarray(y, dtype=complex)
    if y.ndim < 1 or y.shape[0] != 2:
        raise ValueError(f"y must have shape (2, ...): the two used readouts, got shape {y.shape}")
    y1, y2 = y[0], y[1]
    return (y1.real**2 + y1.imag**2, y2.real**2 + y2.imag**2, y1.real * y2.real + y1.imag * y2.imag)


def projection_from_statistics(a: np.ndarray, b: np.ndarray, c: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``|g^T y|^2 / ||g||^2 = (A + B)/2 + R cos(2 theta - phi)`` (module docstring).

    Parameters
    ----------
    a, b, c : array_like
        The sufficient statistics (:func:`sufficient_statistics`).
    theta : array_like
        Angle ``atan2(g2, g1)`` of the dictionary signal (rad), broadcast with ``a``.
    """
    r = np.hypot((a - b) / 2, c)
    phi = np.arctan2(c, (a - b) / 2)
    return (a + b) / 2 + r * np.cos(2 * np.asarray(theta) - phi)


# ============================================================================ geometry
@dataclass(frozen=True)
class Geometry:
    """``psi = 2 theta`` and ``log ||g||^2`` of the used readouts on a uniform log-T1 grid, per B1 node.

    ``psi`` is oriented (``sign`` makes it increase with T1) and unwrapped along T1 and B1; the
    grid extends ``n_ext`` steps beyond both ends of the T1 range.
    """

    b1: np.ndarray  # (n_rows,) B1 nodes
    u: np.ndarray  # (n,) log T1 nodes, uniform
    i_lo: int  # index of log T1_min in u
    i_hi: int  # index of log T1_max in u
    sign: float  # +1 if psi increases with T1, else -1 (psi here is sign * 2 theta)
    psi: np.ndarray  # (n_rows, n)
    log_n2_ends: np.ndarray  # (n_rows, 2): log ||g||^2 at T1_min and T1_max
    psi_coefs: np.ndarray  # (4, n_rows * (n - 1)): cubic coefficients of psi per interval, by power, high first
    log_n2_coefs: np.ndarray  # (4, n_rows * (n - 1)): the same for log ||g||^2

    @property
    def u_lo(self) -> float:
        return float(self.u[self.i_lo])

    @property
    def u_hi(self) -> float:
        return float(self.u[self.i_hi])

    @property
    def psi_lo(self) -> np.ndarray:
        return self.psi[:, self.i_lo]

    @property
    def psi_hi(self) -> np.ndarray:
        return self.psi[:, self.i_hi]

    def row_position(self, b1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower node index and weight of the upper node, linear in B1 (``b1`` within the nodes,
        which are uniform: ``numpy.arange`` of the B1 grid)."""
        if len(self.b1) == 1:
            return np.zeros(np.shape(b1), dtype=np.int64), np.zeros(np.shape(b1))
        x = (b1 - self.b1[0]) * ((len(self.b1) - 1) / (self.b1[-1] - self.b1[0]))
        np.clip(x, 0, len(self.b1) - 1, out=x)
        j = np.minimum(x.astype(np.int64), len(self.b1) - 2)
        return j, x - j

    def _locate(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interval index of ``u`` on the uniform grid and the offset in it."""
        h = self.u[1] - self.u[0]
        k = ((u - self.u[0]) * (1.0 / h)).astype(np.int64)
        np.clip(k, 0, len(self.u) - 2, out=k)
        return k, u - self.u[k]

    def _rows(self, j: np.ndarray, w: np.ndarray, k: np.ndarray):
        """Flat interval indices on B1 nodes ``j`` and ``j + 1`` and their weights (one row: no weight)."""
        n = len(self.u) - 1
        if len(self.b1) == 1:
            return ((k, None),)
        return ((j * n + k, 1 - w), (np.minimum(j + 1, len(self.b1) - 1) * n + k, w))

    def evaluate(self, u: np.ndarray, j: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
        """``psi, psi', psi'', l, l', l''`` (``l = log ||g||^2``, derivatives in log T1) at ``u``.

        Cubic spline in log T1 on each B1 node, linear in B1 between nodes ``j`` and ``j + 1``
        (weight ``w``); ``u``, ``j``, ``w`` broadcast together.
        """
        k, t = self._locate(u)
        out = None
        for index, weight in self._rows(j, w, k):
            parts = []
            for coefs in (self.psi_coefs, self.log_n2_coefs):
                c3, c2, c1, c0 = (np.take(c, index) for c in coefs)
                parts += [((c3 * t + c2) * t + c1) * t + c0, (3 * c3 * t + 2 * c2) * t + c1, 6 * c3 * t + 2 * c2]
            if weight is None:
                out = parts
            elif out is None:
                out = [p * weight for p in parts]
            else:
                out = [o + p * weight for o, p in zip(out, parts)]
        return tuple(out)

    def values(self, u: np.ndarray, j: np.ndarray, w: np.ndarray, slope: bool = False) -> tuple[np.ndarray, ...]:
        """``psi`` and ``l`` at ``u`` (:meth:`evaluate` without the derivatives), or ``psi`` and ``psi'``."""
        k, t = self._locate(u)
        out = None
        for index, weight in self._rows(j, w, k):
            c3, c2, c1, c0 = (np.take(c, index) for c in self.psi_coefs)
            first = ((c3 * t + c2) * t + c1) * t + c0
            if slope:
                second = (3 * c3 * t + 2 * c2) * t + c1
            else:
                d3, d2, d1, d0 = (np.take(c, index) for c in self.log_n2_coefs)
                second = ((d3 * t + d2) * t + d1) * t + d0
            if weight is None:
                out = (first, second)
            elif out is None:
                out = (first * weight, second * weight)
            else:
                out = (out[0] + first * weight, out[1] + second * weight)
        return out

    def inverse(self, phi: np.ndarray, row: int) -> np.ndarray:
        """log T1 at which ``psi = phi`` on B1 node ``row`` (linear between the grid's nodes)."""
        return np.interp(phi, self.psi[row], self.u)


@lru_cache(maxsize=8)
def geometry(protocol: MPnRAGEProtocol, t1_range: tuple[float, float], b1_nodes: tuple[float, ...], n: int = 1024, n_ext: int = 64) -> Geometry:
    """The (cached) :class:`Geometry` of ``protocol`` on ``t1_range`` at the B1 nodes.

    ``n`` steps of log T1 between the ends (1024: 0.0045 in log T1 on 0.05..5 s; the linear
    inverse of ``psi`` is then within 1e-4 of log T1 everywhere, the cubic splines far better)
    and ``n_ext`` steps beyond each end (64: 0.29 in log T1), so that B1 nodes whose arc ends
    differ slightly still invert near the ends.

    Raises
    ------
    ValueError
        If the protocol has not two used readouts, or ``psi`` is not strictly monotonic in T1
        on the extended range at some B1 node (then one ``phi`` maps to several T1 and the
        table's parametrisation does not hold), or its arc spans a full turn.
    """
    if len(protocol.readouts) != 2:
        raise ValueError(
            f"posterior tables need two used readouts (MP2RAGE), protocol {protocol.name!r} uses {protocol.readouts}"
        )
    used = [r - 1 for r in protocol.readouts]
    u_lo, u_hi = np.log(t1_range[0]), np.log(t1_range[1])
    h = (u_hi - u_lo) / n
    u = u_lo + h * np.arange(-n_ext, n + n_ext + 1)
    b1 = np.asarray(b1_nodes, dtype=float)
    g = gre_signals(np.exp(u)[None, :], protocol, b1[:, None])[used]  # (2, n_rows, n_u)
    psi = 2 * np.arctan2(g[1], g[0])
    psi[:, 0] = np.unwrap(psi[:, 0])  # consistent branch across B1 ...
    psi = np.unwrap(psi, axis=1)  # ... and along T1
    sign = 1.0 if psi[0, -1] > psi[0, 0] else -1.0
    psi = sign * psi
    if np.any(np.diff(psi, axis=1) <= 0):
        bad = b1[np.any(np.diff(psi, axis=1) <= 0, axis=1)]
        raise ValueError(
            f"posterior tables need psi = 2 atan2(g2, g1) strictly monotonic in T1 on {t1_range} s "
            f"(extended by {n_ext} steps); protocol {protocol.name!r} breaks it at B1 = {bad[:5].tolist()}"
        )
    if np.any(psi[:, n_ext + n] - psi[:, n_ext] >= 2 * np.pi - 1e-3):
        raise ValueError(f"the arc psi(t1_range) of protocol {protocol.name!r} spans a full turn: the table cannot tell T1 apart")
    log_n2 = np.log((g**2).sum(axis=0))
    spline = CubicSpline(u, np.stack([psi, log_n2], axis=-1), axis=1)  # c: (4, n_u - 1, n_rows, 2)
    # (4, n_rows * (n_u - 1)) per function: [c3, c2, c1, c0] per interval, row-major over (B1 node, interval)
    coefs = np.transpose(spline.c, (3, 0, 2, 1)).reshape(2, 4, len(b1) * (len(u) - 1))
    ends = np.ascontiguousarray(log_n2[:, [n_ext, n_ext + n]])
    return Geometry(
        b1, u, n_ext, n_ext + n, sign, np.ascontiguousarray(psi), ends, np.ascontiguousarray(coefs[0]), np.ascontiguousarray(coefs[1])
    )


# ============================================================================ the posterior on one B1 node
#: Newton steps of :func:`_polish_map` from the quadrature's best node (the table's MAP) and from
#: the table's interpolated MAP (:data:`CELL_NEWTON` cells, whose check verifies the result).
N_NEWTON, N_NEWTON_TABLE = 3, 2
#: Newton steps of ``psi^-1`` from its interpolation between the table's B1 rows to a voxel's B1.
N_NEWTON_B1 = 1


def _polish_map(
    geom: Geometry,
    u0: np.ndarray | tuple[np.ndarray, ...],
    phi: np.ndarray,
    kappa: np.ndarray,
    j: np.ndarray,
    w: np.ndarray,
    flat: bool,
    n_iter: int = N_NEWTON,
) -> np.ndarray:
    """The MAP of log T1: ``n_iter`` Newton steps on ``log L`` from ``u0`` (or from each of several
    starts); the best of the iterates and both ends.

    Where ``log L`` is not concave the step is 0.1 uphill; steps are at most 0.25 and stay in the
    T1 range. All arguments broadcast together; ``j``, ``w`` place B1 between the geometry's nodes.
    """
    lo, hi = geom.u_lo, geom.u_hi
    best = best_ll = None
    for first in u0 if isinstance(u0, tuple) else (u0,):  # the starts
        u = np.clip(first, lo, hi)
        for it in range(n_iter + 1):
            if it == n_iter:  # the last iterate: its value only
                psi, log_n2 = geom.values(u, j, w)
                c = np.cos(psi - phi)
            else:
                psi, d1, d2, log_n2, l1, l2 = geom.evaluate(u, j, w)
                dpsi = psi - phi
                s, c = np.sin(dpsi), np.cos(dpsi)
            ll = 0.5 * kappa * c
            if flat:
                ll -= log_n2
            if best is None:
                best, best_ll = u, ll
            else:
                better = ll > best_ll
                best, best_ll = np.where(better, u, best), np.where(better, ll, best_ll)
            if it == n_iter:
                break
            grad = -0.5 * kappa * s * d1
            curv = -0.5 * kappa * (c * d1**2 + s * d2)
            if flat:
                grad -= l1
                curv -= l2
            with np.errstate(divide="ignore", invalid="ignore"):
                step = np.where(curv < 0, -grad / curv, 0.1 * np.sign(grad))
            u = np.clip(u + np.clip(np.nan_to_num(step), -0.25, 0.25), lo, hi)
    for end, col in ((lo, 0), (hi, 1)):  # the ends: psi and log ||g||^2 linear in B1
        psi_end = geom.psi_lo if col == 0 else geom.psi_hi
        if len(geom.b1) == 1:
            p_end, l_end = psi_end[0], geom.log_n2_ends[0, col]
        else:
            j1 = np.minimum(j + 1, len(geom.b1) - 1)
            p_end = (1 - w) * psi_end[j] + w * psi_end[j1]
            l_end = (1 - w) * geom.log_n2_ends[j, col] + w * geom.log_n2_ends[j1, col]
        ll = 0.5 * kappa * np.cos(p_end - phi)
        if flat:
            ll = ll - l_end
        better = ll > best_ll
        best, best_ll = np.where(better, end, best), np.where(better, ll, best_ll)
    return best


#: Spread (log T1) of a cell's corners' MAPs above which the MAP jumps inside the cell.
MAP_JUMP = 0.1


def _flat_map(geom: Geometry, start, xi, corners, phi, kappa, j, w) -> np.ndarray:
    """The flat prior's MAP (log T1) in :data:`CELL_NEWTON` cells: Newton steps from the
    interpolated MAP ``start``; where the corners' MAPs spread by more than :data:`MAP_JUMP` (a jump
    between two modes inside the cell), from ``xi`` (Jeffreys' MAP) and each corner's MAP too.

    All arguments broadcast to the shape of ``start``.
    """
    shape = np.shape(start)
    start, xi, phi, kappa, j, w = (np.broadcast_to(a, shape) for a in (start, xi, phi, kappa, j, w))
    corners = [np.broadcast_to(q, shape) for q in corners]
    u = _polish_map(geom, start, phi, kappa, j, w, True, N_NEWTON_TABLE)
    spread = np.max(corners, axis=0) - np.min(corners, axis=0)
    jump = np.nonzero(spread > MAP_JUMP)
    if jump[0].size:
        starts = (start[jump], xi[jump], *(q[jump] for q in corners))
        u = np.array(u, copy=True)
        u[jump] = _polish_map(geom, starts, phi[jump], kappa[jump], j[jump], w[jump], True, N_NEWTON_TABLE)
    return u


def _gauss_legendre_nodes(geom: Geometry, row: int, phi: np.ndarray, n_gl: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes (log T1) and weights of the posterior of each ``phi`` on B1 node ``row``.

    Panels of ``n_gl``-node Gauss-Legendre rules between break points at both ends, every 0.25
    in log T1 and, for ``phi`` on the arc, at ``psi^-1(phi +- delta)`` with ``delta`` from 1e-8 to
    pi in steps of 1.5x (resolving the von Mises peak ``exp((kappa/2) cos(psi - phi))`` at every
    ``kappa``, and the plateau of ``psi`` at short T1); beyond the arc, where the posterior piles
    against both ends, at ``psi^-1(psi_end -+ delta)`` from each end.
    """
    lo, hi = geom.u_lo, geom.u_hi
    p_lo, p_hi = geom.psi_lo[row], geom.psi_hi[row]
    delta = 1e-8 * 1.5 ** np.arange(int(np.ceil(np.log(np.pi / 1e-8) / np.log(1.5))) + 1)
    on_arc = ((phi >= p_lo) & (phi <= p_hi))[:, None]
    around = phi[:, None] + np.concatenate([-delta[::-1], delta])[None, :]
    ends = np.concatenate([p_hi - delta[::-1], p_lo + delta])[None, :]
    levels = np.where(on_arc, around, ends)
    fixed = np.linspace(lo, hi, int(np.ceil((hi - lo) / 0.25)) + 1)
    breaks = np.concatenate([geom.inverse(levels, row), np.broadcast_to(fixed, (len(phi), len(fixed)))], axis=1)
    breaks = np.sort(np.clip(breaks, lo, hi), axis=1)
    x, wx = np.polynomial.legendre.leggauss(n_gl)
    a, b = breaks[:, :-1, None], breaks[:, 1:, None]
    nodes = ((a + b) / 2 + (b - a) / 2 * x).reshape(len(phi), -1)
    weights = ((b - a) / 2 * wx).reshape(len(phi), -1)
    return nodes, weights


def _posterior_moments(
    geom: Geometry, row: int, phi: np.ndarray, kappa: np.ndarray, flat: bool, n_gl: int = 4, batch: int = 2_000_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean and std of T1 (s) and MAP of log T1 on B1 node ``row``, by quadrature.

    Parameters
    ----------
    geom : Geometry
    row : int
        B1 node of ``geom``.
    phi : ndarray, shape (m,)
        Oriented data angles (rad), on the branch of ``geom.psi[row]`` (within half the gap of its arc).
    kappa : ndarray, shape (n_k,)
        ``R / sigma^2``, >= 0.
    flat : bool
        Flat scale prior (else Jeffreys').

    Returns
    -------
    mean, std, map_u : ndarray, shape (m, n_k)
        The MAP: Jeffreys' prior ``psi^-1(phi)`` on the arc, else the end nearer in angle; flat
        prior, :func:`_polish_map` from the best quadrature node.
    """
    m, nk = len(phi), len(kappa)
    lo, hi = geom.u_lo, geom.u_hi
    p_lo, p_hi = geom.psi_lo[row], geom.psi_hi[row]
    mean, std, map_u = (np.empty((m, nk)) for _ in range(3))
    index, zero = np.full(1, row, dtype=np.int64), np.zeros(1)
    # the peak: on the arc at psi = phi, else at the end nearer in angle (distance d)
    d_hi, d_lo = np.maximum(phi - p_hi, 0.0), np.maximum(p_lo - phi, 0.0)
    peak = np.where(phi > p_hi, hi, np.where(phi < p_lo, lo, np.clip(geom.inverse(phi, row), lo, hi)))
    cos_peak = np.cos(np.maximum(d_hi, d_lo))
    probe, _ = _gauss_legendre_nodes(geom, row, phi[:1], n_gl)
    step = max(1, batch // (nk * probe.shape[1]))
    for begin in range(0, m, step):  # loop over batches of table nodes
        sel = slice(begin, begin + step)
        ph = phi[sel]
        x, wx = _gauss_legendre_nodes(geom, row, ph, n_gl)
        psi, log_n2 = geom.values(x, index, zero)
        # log L - its bound (kappa/2) cos(d) [- min log ||g||^2] <= 0 (no overflow; flat: at most
        # e^-5 low), in single precision: its relative error 6e-8 moves the moments by < 1e-6
        diff = np.cos(psi - ph[:, None]) - cos_peak[sel, None]
        if flat:
            shift = log_n2 - log_n2.min(axis=1, keepdims=True)
            ll = np.float32(0.5) * kappa.astype(np.float32)[None, :, None] * diff.astype(np.float32)[:, None, :]
            ll -= shift.astype(np.float32)[:, None, :]
        else:
            ll = np.float32(0.5) * kappa.astype(np.float32)[None, :, None] * diff.astype(np.float32)[:, None, :]
        p = np.exp(ll)
        t1 = np.exp(x)
        ref = np.exp(peak[sel])[:, None]  # centring against cancellation
        dt = t1 - ref
        wt = wx * t1  # Jacobian dT1 = T1 du
        weights = np.stack([wt, wt * dt, wt * dt**2], axis=-1)
        scale = np.abs(weights).max(axis=1, keepdims=True)  # keeps single precision in range
        moments = np.matmul(p, (weights / scale).astype(np.float32)).astype(float) * scale  # (m, n_k, 3)
        z = moments[..., 0]
        m1 = moments[..., 1] / z
        mean[sel] = ref + m1
        std[sel] = np.sqrt(np.maximum(moments[..., 2] / z - m1**2, 0.0))
        if flat:
            start = np.take_along_axis(x, np.argmax(ll, axis=2), axis=1)
            map_u[sel] = _polish_map(geom, start, ph[:, None], kappa[None, :], index, zero, flat)
        else:
            map_u[sel] = peak[sel, None]
    return mean, std, map_u


# ============================================================================ the table
def _graded(first: float, last: float, ratio: float) -> np.ndarray:
    """``first * ratio^k`` up to ``last``."""
    return first * ratio ** np.arange(int(np.ceil(np.log(last / first) / np.log(ratio))) + 1)


#: The gap coordinate: ``c`` beyond an end grows like ``log(1 + s / GAP_S0)`` of the normalised
#: angular distance ``s = d / (gap / 2)`` up to ``GAP_S1``, then linearly (1e-5: below the
#: posterior width ``1/sqrt(kappa)`` at the table's largest kappa; 0.05: the linear part resolves
#: the posterior shared between both ends at low kappa). Assumptions, checked by the cell test.
GAP_S0, GAP_S1 = 1e-5, 0.05
_GAP_KNEE = np.log1p(GAP_S1 / GAP_S0)
_GAP_TOTAL = _GAP_KNEE + (1 - GAP_S1) / (GAP_S0 + GAP_S1)


def _gap_c(s: np.ndarray) -> np.ndarray:
    """Coordinate (0..1) of the normalised distance ``s`` (0..1) beyond an end of the arc."""
    s = np.asarray(s, dtype=float)
    raw = np.where(s <= GAP_S1, np.log1p(np.minimum(s, GAP_S1) / GAP_S0), _GAP_KNEE + (s - GAP_S1) / (GAP_S0 + GAP_S1))
    return raw / _GAP_TOTAL


def _gap_s(c: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_gap_c`."""
    raw = np.asarray(c, dtype=float) * _GAP_TOTAL
    return np.where(raw <= _GAP_KNEE, GAP_S0 * np.expm1(np.minimum(raw, _GAP_KNEE)), GAP_S1 + (raw - _GAP_KNEE) * (GAP_S0 + GAP_S1))


#: Scale of kappa in the flat prior's tabulated MAP (:func:`_summaries`): about where its shift
#: from the Jeffreys MAP turns from the prior's mode to ``O(1/kappa)`` (assumption, checked by
#: the cell test).
KAPPA_SHIFT = 10.0

#: Below this kappa the flat prior's posterior can be flat or bimodal (the likelihood's peak
#: against the prior's mode at an end): its MAP always gets Newton steps from two starts
#: (:data:`CELL_NEWTON`). 150: the largest kappa of a MAP jump on the seed protocol's table
#: (about e^5; measured, an assumption for other protocols, which the cell test guards).
KAPPA_NEWTON = 150.0

#: Cell states of :attr:`PosteriorTable.state`.
CELL_TABLE, CELL_NEWTON, CELL_GRID = 0, 1, 2


@dataclass(frozen=True)
class PosteriorTable:
    """Posterior summaries of T1 over ``(c, log kappa)`` per B1 row (module docstring).

    Attributes
    ----------
    geometry : Geometry
        ``psi`` on the exact MAP's B1 grid (all its nodes), for the angle-to-T1 map and the MAP.
    rows : ndarray, shape (n_rows,)
        Indices (into ``geometry.b1``) of the table's B1 rows.
    c : ndarray, shape (n_c,)
        Nodes of the coordinate along the circle of ``phi``, increasing, shared by the rows (their
        grading in ``psi`` from the row nearest B1 = 1).
    log_kappa : ndarray, shape (n_k,)
        Uniform nodes of log kappa.
    values : ndarray, shape (n_rows * n_c * n_k, n_col)
        ``(mean - T_ref) / std``, log std (s) and, for the flat prior (``n_col = 3``), kappa times
        the MAP's log T1 less ``log T_ref`` at the nodes (:func:`_summaries`), flattened row-major
        over (row, c, kappa).
    prior : ndarray, shape (n_rows, 3)
        Mean (s), log std and log MAP at kappa = 0 (the prior; the MAP is the grid evaluation's:
        ``T1_min`` for Jeffreys' prior, whose posterior is then flat). Between kappa = 0 and the
        first node the mean, log std and MAP start are linear in kappa.
    state : ndarray of int8, shape (n_rows, n_c - 1, n_k)
        Per cell ``[c_i, c_i+1] x [log kappa_k, log kappa_k+1]`` (the last column: ``[0, kappa_0]``),
        from the check at its centre: :data:`CELL_TABLE` (interpolate), :data:`CELL_NEWTON`
        (flat prior: interpolate, then Newton steps for the MAP), :data:`CELL_GRID` (leave to
        the grid evaluation).
    scale_prior : str
    """

    geometry: Geometry
    rows: np.ndarray
    c: np.ndarray
    log_kappa: np.ndarray
    values: np.ndarray
    prior: np.ndarray
    state: np.ndarray
    scale_prior: str

    @property
    def b1(self) -> np.ndarray:
        """B1 of the table's rows."""
        return self.geometry.b1[self.rows]

    @property
    def n_fallback_cells(self) -> int:
        """Cells left to the grid evaluation."""
        return int(np.count_nonzero(self.state == CELL_GRID))

    @cached_property
    def _values32(self) -> np.ndarray:
        """:attr:`values` in single precision (relative error 6e-8, far below the cells' check):
        the gathers of :func:`evaluate_table` move half the bytes."""
        return np.ascontiguousarray(self.values, dtype=np.float32)

    @cached_property
    def _arc_search(self) -> tuple[np.ndarray, ...]:
        """One-row tables: ``psi`` on the union of the geometry's nodes and the table's arc nodes,
        so that one search gives both ``psi^-1(phi)`` and the table cell (``c`` = log T1 on the arc)."""
        geom = self.geometry
        c = self.c
        arc = c[(c >= geom.u_lo) & (c <= geom.u_hi)]
        u = np.unique(np.concatenate([geom.u[geom.i_lo : geom.i_hi + 1], arc]))
        u = u[np.r_[True, np.diff(u) > 1e-9]]
        psi = geom.values(u, np.zeros(1, dtype=np.int64), np.zeros(1))[0]
        keep = np.r_[True, np.diff(psi) > 0]
        u, psi = u[keep], psi[keep]
        slope = np.diff(u) / np.diff(psi)
        cells = np.clip(np.searchsorted(c, (u[1:] + u[:-1]) / 2, side="right") - 1, 0, len(c) - 2)
        return psi, u, slope, cells, 1.0 / np.diff(c)

    @cached_property
    def _b1_inverse(self) -> tuple[np.ndarray, np.ndarray]:
        """Tables with B1 rows: ``psi^-1`` of each row at the angles ``psi`` takes on the geometry's
        nodes at the first and the last row (``psi`` is monotonic in B1 at fixed T1 for the seed
        protocol, so these span every row's arc; beyond a row's extended arc, its ends), for a
        first ``psi^-1`` bilinear in (angle, B1)."""
        geom = self.geometry
        phi = np.union1d(geom.psi[self.rows[0]], geom.psi[self.rows[-1]])
        return phi, np.stack([geom.inverse(phi, int(r)) for r in self.rows])

    @cached_property
    def _row_of_node(self) -> np.ndarray:
        """Per interval of the geometry's B1 nodes, the lower of the table rows that bracket it."""
        return np.clip(np.searchsorted(self.rows, np.arange(len(self.geometry.b1)), side="right") - 1, 0, len(self.rows) - 2)

    def cell(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower node index and fraction along ``c`` (the nodes are shared by the rows)."""
        x = np.interp(c, self.c, np.arange(len(self.c), dtype=float))
        i = np.minimum(x.astype(np.int64), len(self.c) - 2)
        return i, x - i


def _c_nodes(geom: Geometry, row: int, step_u: float, ratio: float, n_gap: int) -> np.ndarray:
    """Nodes of ``c`` on B1 node ``row``: the arc (uniform, graded in log T1 and in ``psi`` towards
    both ends) and ``n_gap`` per half-gap, uniform in :func:`_gap_c`."""
    lo, hi = geom.u_lo, geom.u_hi
    p_lo, p_hi = geom.psi_lo[row], geom.psi_hi[row]
    dpsi = _graded(1e-8, 0.5, ratio)
    du = _graded(1e-5, step_u, ratio)
    arc = np.concatenate(
        [
            np.linspace(lo, hi, int(np.ceil((hi - lo) / step_u)) + 1),
            geom.inverse(p_lo + dpsi, row),
            geom.inverse(p_hi - dpsi, row),
            lo + du,
            hi - du,
        ]
    )
    arc = np.sort(np.clip(arc, lo, hi))
    arc = np.maximum.accumulate(arc + 1e-12 * np.arange(len(arc)))  # strictly increasing, fixed count ...
    arc = lo + (arc - lo) * ((hi - lo) / (arc[-1] - lo))  # ... from T1_min to T1_max
    gap = np.linspace(0.0, 1.0, n_gap + 1)[1:]
    return np.concatenate([lo - gap[::-1], arc, hi + gap])


def _angles(geom: Geometry, row: int, c: np.ndarray) -> np.ndarray:
    """Oriented ``phi`` of the coordinates ``c`` on B1 node ``row`` (inverse of the voxel map)."""
    lo, hi = geom.u_lo, geom.u_hi
    half_gap = (2 * np.pi - (geom.psi_hi[row] - geom.psi_lo[row])) / 2
    phi = geom.values(np.clip(c, lo, hi), np.full(1, row, dtype=np.int64), np.zeros(1))[0]
    phi = np.where(c > hi, geom.psi_hi[row] + _gap_s(np.clip(c - hi, 0, 1)) * half_gap, phi)
    return np.where(c < lo, geom.psi_lo[row] - _gap_s(np.clip(lo - c, 0, 1)) * half_gap, phi)


def _summaries(geom: Geometry, row: int, c: np.ndarray, kappa: np.ndarray, flat: bool) -> np.ndarray:
    """Tabulated summaries at coordinates ``c`` (m,) and ``kappa`` (n_k,): shape (m, n_k, 3).

    ``(mean - T_ref) / std``, ``log std`` and ``(kappa + KAPPA_SHIFT) (log MAP - log T_ref)``,
    with ``T_ref = exp(clip(c))`` (the Jeffreys MAP: ``psi^-1(phi)`` on the arc, the nearer end
    beyond it). The first is smooth where the mean is not (against an end, at large kappa,
    ``mean = end - std``); the last, the flat prior's Occam shift of the MAP scaled, tends to a
    function of ``c`` alone both at large kappa (the shift is ``O(1/kappa)``) and at small kappa
    (the shift to the prior's mode).
    """
    mean, std, map_u = _posterior_moments(geom, row, _angles(geom, row, c), kappa, flat)
    ref = np.clip(c, geom.u_lo, geom.u_hi)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([(mean - np.exp(ref)) / std, np.log(std), (kappa + KAPPA_SHIFT) * (map_u - ref)], axis=-1)


def _interpolate_cells(v: np.ndarray) -> np.ndarray:
    """Bilinear interpolation at the centres of the cells of a (n_c, n_k, ...) table."""
    return (v[1:, 1:] + v[:-1, 1:] + v[1:, :-1] + v[:-1, :-1]) / 4


def _check_cells(
    geom: Geometry, row: int, c: np.ndarray, log_kappa: np.ndarray, v: np.ndarray, v0: np.ndarray, flat: bool, tol: float
) -> np.ndarray:
    """States (n_c - 1, n_k) of the cells, from their interpolation at the centre against the quadrature
    (:attr:`PosteriorTable.state`): mean and std within ``tol`` of the std; flat prior, MAP within
    ``50 tol`` ms, else after :data:`N_NEWTON_TABLE` Newton steps."""
    cc = (c[1:] + c[:-1]) / 2
    kk = np.exp(np.append((log_kappa[1:] + log_kappa[:-1]) / 2, log_kappa[0] - np.log(2.0)))  # last: kappa_0 / 2
    exact = _summaries(geom, row, cc, kk, flat)
    ref = np.exp(np.clip(cc, geom.u_lo, geom.u_hi))[:, None]
    approx = _interpolate_cells(v)
    mean, log_std = ref + approx[..., 0] * np.exp(approx[..., 1]), approx[..., 1]
    low = (v[1:, 0] + v[:-1, 0]) / 2  # the low band: linear in kappa between 0 and kappa_0, at kappa_0 / 2
    mean = np.concatenate([mean, ((ref[:, 0] + low[:, 0] * np.exp(low[:, 1])) + v0[0])[:, None] / 2], axis=1)
    log_std = np.concatenate([log_std, ((low[:, 1] + v0[1]) / 2)[:, None]], axis=1)
    clipped = np.log(ref)
    kappa0 = np.exp(log_kappa[0])
    map_start = np.concatenate(
        [clipped + approx[..., 2] / (kk[None, :-1] + KAPPA_SHIFT), (clipped + low[:, 2:] / (kappa0 + KAPPA_SHIFT) + v0[2]) / 2], axis=1
    )
    exact[..., 2] = clipped + exact[..., 2] / (kk[None, :] + KAPPA_SHIFT)  # the MAP's log T1
    std = np.exp(exact[..., 1])
    good = (np.abs(mean - (ref + exact[..., 0] * std)) <= tol * std) & (np.abs(log_std - exact[..., 1]) <= tol)
    state = np.where(good, CELL_TABLE, CELL_GRID).astype(np.int8)
    if flat:  # the MAP: interpolated where within 0.25 ms at kappa >= KAPPA_NEWTON, else Newton
        # steps from the interpolated MAP, the Jeffreys MAP and the cell's corners' MAPs (the modes
        # on both sides of a jump of the MAP inside the cell), which must reach 0.25 ms
        map_ms = 1e3 * np.abs(np.exp(map_start) - np.exp(exact[..., 2]))
        index = np.zeros(1, dtype=np.int64) + row
        phi = _angles(geom, row, cc)[:, None]
        node_map = np.clip(c, geom.u_lo, geom.u_hi)[:, None] + v[..., 2] / (np.exp(log_kappa)[None, :] + KAPPA_SHIFT)
        prior_map = np.full((len(cc), 1), v0[2])
        corners = (
            np.concatenate([node_map[:-1, :-1], node_map[:-1, :1]], axis=1),
            np.concatenate([node_map[1:, :-1], node_map[1:, :1]], axis=1),
            np.concatenate([node_map[:-1, 1:], prior_map], axis=1),
            np.concatenate([node_map[1:, 1:], prior_map], axis=1),
        )
        polished = _flat_map(geom, map_start, np.broadcast_to(clipped, map_start.shape), corners, phi, kk[None, :], index, np.zeros(1))
        newton = (map_ms > 50 * tol) | (kk[None, :] < KAPPA_NEWTON)  # 0.25 ms at tol = 0.005
        state[good & newton] = CELL_NEWTON
        state[newton & (1e3 * np.abs(np.exp(polished) - np.exp(exact[..., 2])) > 50 * tol)] = CELL_GRID
    return state


@lru_cache(maxsize=4)
def posterior_table(
    protocol: MPnRAGEProtocol,
    t1_range: tuple[float, float],
    scale_prior: str,
    b1_nodes: tuple[float, ...],
    b1_range: tuple[float, float] = TABLE_B1_RANGE,
    row_step: float = 0.1,
    kappa_range: tuple[float, float] = KAPPA_RANGE,
    step_log_kappa: float = 0.125,
    step_u: float = 0.02,
    ratio: float = 1.2,
    n_gap: int = 128,
    tol: float = 0.005,
) -> PosteriorTable:
    """Build (once; cached) the posterior table of ``protocol`` (module docstring).

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        With two used readouts.
    t1_range : (float, float)
        Support of the uniform prior on T1 (s).
    scale_prior : {"flat", "jeffreys"}
    b1_nodes : tuple of float
        B1 nodes of the exact MAP's dictionary (``(1.0,)`` without a B1 map).
    b1_range : (float, float)
        B1 span of the table's rows (ignored with one node).
    row_step : float
        B1 step between rows (rounded to a multiple of the nodes' step; 0.1: on random voxels of
        B1 0.8..1.2 as accurate against brute-force integration as 0.05, where 0.2 is not).
    kappa_range, step_log_kappa : (float, float), float
        The log-kappa axis.
    step_u, ratio, n_gap : float, float, int
        Nodes of ``c``: log-T1 step on the arc, ratio of the graded steps, nodes per half-gap.
    tol : float
        Cell check (:func:`_check_cells`): interpolation error at the centre relative to the
        posterior std, for the mean and the std (0.005: half the bound on the std).
    """
    geom = geometry(protocol, t1_range, b1_nodes)
    if len(b1_nodes) == 1:
        rows = np.zeros(1, dtype=np.int64)
    else:
        b1 = geom.b1
        inside = np.nonzero((b1 >= b1_range[0] - 1e-9) & (b1 <= b1_range[1] + 1e-9))[0]
        if len(inside) < 2:
            raise ValueError(f"b1_range {b1_range} holds fewer than two B1 nodes of the dictionary")
        every = max(1, int(np.rint(row_step / (b1[1] - b1[0]))))
        rows = inside[::every]
        if rows[-1] != inside[-1]:
            rows = np.append(rows, inside[-1])
    flat = scale_prior == "flat"
    log_kappa = np.arange(np.log(kappa_range[0]), np.log(kappa_range[1]) + step_log_kappa / 2, step_log_kappa)
    kappa = np.exp(log_kappa)
    c = _c_nodes(geom, int(rows[np.argmin(np.abs(geom.b1[rows] - 1.0))]), step_u, ratio, n_gap)
    v_all, p_all, f_all = [], [], []
    for row in rows:  # loop over the table's B1 rows
        v = _summaries(geom, int(row), c, kappa, flat)
        mean0, std0, map0 = (a[0, 0] for a in _posterior_moments(geom, int(row), geom.psi_lo[[row]], np.zeros(1), flat))
        v0 = np.array([mean0, np.log(std0), map0 if flat else geom.u_lo])  # Jeffreys: flat posterior, T1_min as the grid's search
        v_all.append(v)
        p_all.append(v0)
        f_all.append(_check_cells(geom, int(row), c, log_kappa, v, v0, flat, tol))
    values = np.ascontiguousarray(np.stack(v_all).reshape(-1, 3)[:, : 3 if flat else 2])
    return PosteriorTable(geom, rows, c, log_kappa, values, np.stack(p_all), np.stack(f_all), scale_prior)


#: Step name of the posterior tables in the content-addressed store (:mod:`qt1lib.store`).
POSTERIOR_TABLE_STEP = "posterior_table"


@lru_cache(maxsize=4)
def stored_posterior_table(
    store: _Identity,
    protocol: MPnRAGEProtocol,
    t1_range: tuple[float, float],
    scale_prior: str,
    b1_nodes: tuple[float, ...],
    b1_range: tuple[float, float] = TABLE_B1_RANGE,
) -> PosteriorTable:
    """:func:`posterior_table` (default build settings) read from a content-addressed store, or built and
    written to it: once per store rather than once per process (a table with B1 rows takes about 11 s to
    build on 2 cores; every chapter of a build is a process of its own).

    Parameters
    ----------
    store : _Identity
        Handle of the store (``get_or_compute(step, parameters, compute, codec, *, inputs, modules)``,
        :class:`qt1lib.store.Store`); step :data:`POSTERIOR_TABLE_STEP`, codec PICKLE, key: the
        arguments and the source of this module and of what it imports.
    protocol, t1_range, scale_prior, b1_nodes, b1_range
        As :func:`posterior_table`.

    Raises
    ------
    TypeError
        The store returned something other than a :class:`PosteriorTable`.
    """
    from ..store import PICKLE  # the store module is optional until a store is given

    parameters = {"protocol": protocol.describe(), "t1_range": list(t1_range), "scale_prior": scale_prior,
                  "b1_nodes": list(b1_nodes), "b1_range": list(b1_range)}

    def compute() -> PosteriorTable:  # the process's table, when it has one
        return posterior_table(protocol, t1_range, scale_prior, b1_nodes, b1_range)

    table = store.obj.get_or_compute(POSTERIOR_TABLE_STEP, parameters, compute, PICKLE, modules=(__name__,))
    if not isinstance(table, PosteriorTable):
        raise TypeError(f"the store returned a {type(table).__name__} for {POSTERIOR_TABLE_STEP!r}, not a PosteriorTable")
    return table


# ============================================================================ voxels
@dataclass(frozen=True)
class TableResult:
    """Per voxel: MAP, posterior mean and std of T1 (s), the goodness-of-fit flag and whether the
    voxel is left to the grid evaluation (its other fields are then not meaningful)."""

    map: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    valid: np.ndarray
    fallback: np.ndarray


def evaluate_table(
    table: PosteriorTable,
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    sigma: float,
    b1: np.ndarray | None = None,
    residual_limit: float | None = None,
) -> TableResult:
    """Posterior summaries of T1 from the sufficient statistics of finite voxels, by the table.

    Parameters
    ----------
    table : PosteriorTable
    a, b, c : ndarray, shape (m,)
        ``|y1|^2``, ``|y2|^2``, ``Re(y1 conj(y2))`` (:func:`sufficient_statistics`), finite.
    sigma : float
        Noise std per real / imaginary part, units of the data.
    b1 : ndarray, shape (m,), optional
        Relative B1+ within the geometry's B1 nodes (a table with several rows needs it);
        voxels outside the table's rows are left to the grid evaluation.
    residual_limit : float, optional
        ``valid`` is ``||y||^2 - max_T1 |g^T y|^2 / ||g||^2 <= residual_limit`` (None: all True).

    Returns
    -------
    TableResult
    """
    geom = table.geometry
    lo, hi = geom.u_lo, geom.u_hi
    flat = table.scale_prior == "flat"
    m = len(a)
    with_b1 = len(geom.b1) > 1
    if with_b1 and b1 is None:
        raise ValueError("this table has B1 rows: b1 is needed")
    # the statistics: R, the oriented angle phi and kappa = R / sigma^2
    half = 0.5 * (a - b)
    r = np.sqrt(half * half + c * c)
    phi = np.arctan2(c, half)
    if geom.sign < 0:
        np.negative(phi, out=phi)
    kappa = r * (1.0 / sigma**2)
    # the voxel's arc (ends of psi linear in B1 between the geometry's nodes) and phi on its branch
    if with_b1:
        j, w = geom.row_position(b1)
        j1 = np.minimum(j + 1, len(geom.b1) - 1)
        p_lo = (1 - w) * geom.psi_lo[j] + w * geom.psi_lo[j1]
        length = (1 - w) * geom.psi_hi[j] + w * geom.psi_hi[j1] - p_lo
    else:
        j = w = np.zeros(1, dtype=np.int64)
        p_lo, length = geom.psi_lo[0], geom.psi_hi[0] - geom.psi_lo[0]
    half_gap = np.pi - 0.5 * length
    rel = phi - p_lo
    rel += half_gap
    rel -= (2 * np.pi) * np.floor(rel * (0.5 / np.pi))
    rel -= half_gap  # in [-gap/2, arc + gap/2)
    phi_abs = rel + p_lo
    # log T1 at psi = phi, clipped to the T1 range: the ends beyond the arc
    n_rows, n_k = len(table.rows), len(table.log_kappa)
    if n_rows > 1:  # the table rows bracketing B1, through the geometry's node index
        tb1 = table.b1
        rr = table._row_of_node[j]
        wr = np.clip((b1 - tb1[rr]) / (tb1[rr + 1] - tb1[rr]), 0.0, 1.0)
    if with_b1:
        # psi^-1 bilinear in (angle, table row), then Newton steps on psi linear in B1 between
        # the geometry's nodes (as the grid evaluation's signals): within 0.06 ms of the exact T1
        # on 0.3..5 s, B1 0.5..1.5 (tests)
        phi_nodes, xi_rows = table._b1_inverse
        position = np.interp(phi_abs, phi_nodes, np.arange(len(phi_nodes), dtype=float))
        node = np.minimum(position.astype(np.int64), len(phi_nodes) - 2)
        frac = position - node
        flat_rows = xi_rows.reshape(-1)
        if n_rows > 1:
            lower, upper = rr * len(phi_nodes) + node, (rr + 1) * len(phi_nodes) + node
            x_lo, x_up = np.take(flat_rows, lower), np.take(flat_rows, upper)
            xi = x_lo + frac * (np.take(flat_rows, lower + 1) - x_lo)
            xi += wr * (x_up + frac * (np.take(flat_rows, upper + 1) - x_up) - xi)
        else:
            x_lo = np.take(flat_rows, node)
            xi = x_lo + frac * (np.take(flat_rows, node + 1) - x_lo)
        for _ in range(N_NEWTON_B1):
            np.clip(xi, lo, hi, out=xi)
            psi, d1 = geom.values(xi, j, w, slope=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                xi -= np.clip(np.nan_to_num((psi - phi_abs) / d1), -0.1, 0.1)
    else:  # one search for psi^-1 and the table cell (:attr:`PosteriorTable._arc_search`)
        psi_n, u_n, slope, cells, inv_width = table._arc_search
        position = np.interp(phi_abs, psi_n, np.arange(len(psi_n), dtype=float))
        node = np.minimum(position.astype(np.int64), len(psi_n) - 2)
        xi = phi_abs - psi_n[node]
        xi *= slope[node]
        xi += u_n[node]
    np.clip(xi, lo, hi, out=xi)
    if not with_b1:
        arc_cell = cells[node]
        arc_fraction = (xi - table.c[arc_cell]) * inv_width[arc_cell]
    else:
        arc_cell = arc_fraction = None
    t_ref = np.exp(xi)  # Jeffreys' MAP (kappa > 0)
    # the coordinate c: xi on the arc; beyond it, the gap coordinate of the angle beyond the nearer end
    off = np.flatnonzero((rel < 0) | (rel > length))
    coord = xi.copy()
    dist = np.zeros(0)
    if off.size:
        rel_off = rel[off]
        length_off = length[off] if with_b1 else length
        dist = np.maximum(rel_off - length_off, -rel_off)
        g = _gap_c(np.minimum(dist / (half_gap[off] if with_b1 else half_gap), 1.0))
        coord[off] = np.where(rel_off > 0, hi + g, lo - g)

    # kappa's position (kappa below the first node: linear in kappa from the prior)
    n_c = len(table.c)
    kappa0 = np.exp(table.log_kappa[0])
    x = np.maximum(kappa, kappa0)
    np.log(x, out=x)
    x -= table.log_kappa[0]
    x *= 1.0 / (table.log_kappa[1] - table.log_kappa[0])
    k = x.astype(np.int64)
    np.minimum(k, n_k - 2, out=k)
    fk = x - k
    low = np.flatnonzero(kappa < kappa0)
    grid = kappa > np.exp(table.log_kappa[-1]) * (1 + 1e-12)
    if n_rows > 1:
        grid |= (b1 < table.b1[0] - 1e-9) | (b1 > table.b1[-1] + 1e-9)
        sides = ((rr, 1 - wr), (rr + 1, wr))
    else:
        sides = ((0, None),)
    # the cell along c (shared by the rows)
    if with_b1:
        i, fc = table.cell(coord)
    else:
        i, fc = arc_cell, arc_fraction
        if off.size:
            i[off], fc[off] = table.cell(coord[off])
    values = table._values32
    state_flat = table.state.reshape(-1)
    fcc, fkk = fc[:, None], fk[:, None]
    cell = i * n_k + k
    val = state = corner_values = None
    for row, weight in sides:  # the (one or two) bracketing B1 rows: the summaries linear in B1
        base = i * n_k + k
        if n_rows > 1:
            base += row * (n_c * n_k)
        v00, v01, v10, v11 = (np.take(values, base + o, axis=0) for o in (0, 1, n_k, n_k + 1))
        v0 = v00 + fcc * (v10 - v00)  # at kappa_k
        row_val = v0 + fkk * (v01 + fcc * (v11 - v01) - v0)
        if flat and corner_values is None:  # the corners of the lower row, as starts of the MAP
            corner_values = (v00[:, 2], v10[:, 2], v01[:, 2], v11[:, 2])
        row_state = state_flat[cell + row * ((n_c - 1) * n_k) if n_rows > 1 else cell]
        if low.size:  # kappa below the first node: the low band's cell
            first = i[low] * n_k + n_k - 1
            row_state[low] = state_flat[first + row[low] * ((n_c - 1) * n_k) if n_rows > 1 else first]
        if weight is None:
            val, state = row_val, row_state
        elif val is None:
            val, state = weight[:, None] * row_val, row_state
        else:
            val += weight[:, None] * row_val
            np.maximum(state, row_state, out=state)
    std = np.exp(val[:, 1])
    mean = t_ref + val[:, 0] * std
    if flat:  # the MAP's log T1 from kappa times its Occam shift
        start = xi + val[:, 2] / (np.maximum(kappa, kappa0) + KAPPA_SHIFT)
    if low.size:  # linear in kappa between the prior (kappa = 0, linear in B1) and the first node
        share = kappa[low] / kappa0
        prior = table.prior[0] if n_rows == 1 else (1 - wr[low, None]) * table.prior[rr[low]] + wr[low, None] * table.prior[rr[low] + 1]
        mean[low] = share * mean[low] + (1 - share) * prior[..., 0]
        std[low] = np.exp(share * val[low, 1] + (1 - share) * prior[..., 1])
        if flat:
            start[low] = share * start[low] + (1 - share) * prior[..., 2]
    grid |= state == CELL_GRID

    if flat:
        t1_map = np.exp(start)
        newton = np.flatnonzero(state == CELL_NEWTON)
        if newton.size:
            jn, wn = (j[newton], w[newton]) if with_b1 else (j, w)
            # starts: the table's MAP, Jeffreys' (the likelihood's peak) and the cell's corners' MAPs
            # (on the lower B1 row; below kappa_0 the prior's MAP for the upper corners)
            ic, kc = i[newton], k[newton]
            u_node = np.clip(table.c, lo, hi)
            shift = np.exp(table.log_kappa) + KAPPA_SHIFT
            corner = [
                u_node[ic + di] + corner_values[q][newton] / shift[kc + dk]
                for q, (di, dk) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1)))
            ]
            if low.size:
                below = kappa[newton] < kappa0
                prior_map = table.prior[rr[newton] if n_rows > 1 else 0][..., 2]
                corner[2] = np.where(below, prior_map, corner[2])
                corner[3] = np.where(below, prior_map, corner[3])
            u = _flat_map(geom, start[newton], xi[newton], corner, phi_abs[newton], kappa[newton], jn, wn)
            t1_map[newton] = np.exp(u)
    else:
        t1_map = t_ref
        t1_map[kappa <= 0] = np.exp(lo)  # flat likelihood: the grid's search returns T1_min
    if residual_limit is None:
        valid = np.ones(m, dtype=bool)
    else:
        residual = 0.5 * (a + b) - r
        if off.size:
            residual[off] += r[off] * (1 - np.cos(dist))
        valid = residual <= residual_limit
    return TableResult(t1_map, mean, std, valid, grid)
