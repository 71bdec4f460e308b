"""The exact MAP's fast path for any number of readouts: the log-likelihood as a quadratic form.

With real dictionary signals ``g(T1, B1)`` (``n`` used readouts) and complex data ``y``, the
profile log-likelihood of :func:`qt1lib.estimate.map.exact_log_likelihood` is

``|g.y|^2 / (2 sigma^2 ||g||^2) = sum_{r <= s} m_rs q_rs(T1, B1)``,

with the data's ``n (n + 1) / 2`` numbers ``m_rr = |y_r|^2 / (2 sigma^2)``,
``m_rs = Re(y_r conj(y_s)) / (2 sigma^2)`` (the entries of ``Re(y y^H)``) and the dictionary's
``q_rr = g_r^2 / ||g||^2``, ``q_rs = 2 g_r g_s / ||g||^2`` (expand ``|g.y|^2 = g^T Re(y y^H) g``
for real ``g``). The flat scale prior adds ``-log ||g||^2``, a column of the dictionary with the
data weight 1 (:class:`~qt1lib.estimate.map.ExactMAPModel`). So the log-likelihood on any set
of T1 nodes is one matrix product of the voxels' ``n (n + 1) / 2 + 1`` numbers with the
dictionary's columns: for MP3RAGE seven numbers per node, against the twelve real products and
the squares of the grid evaluation's ``g.y``. This module tabulates ``q``, ``dq/du`` and
``d^2q/du^2`` (``u = log T1``) on the dense nodes of the grid evaluation's dictionary (from its
cubic splines of ``g``) and evaluates the posterior with few nodes per voxel:

1. *Coarse pass*, as the grid evaluation's: the log posterior on its ``n_coarse`` coarse nodes
   (one matrix product per B1 node of the chunk; with a B1 map, linear in B1 between the two
   bracketing B1 nodes).
   *B1 marginalised* (``b1_sd > 0``): the log-likelihood is expanded to second order in B1 about
   the map's value, and the Gaussian integral over B1 ~ N(b1, b1_sd^2) is taken in closed form
   (the Laplace method, Tierney & Kadane 1986; :meth:`QuadraticEvaluator._laplace`). The value
   and the first two B1 derivatives of the dictionary's columns are tabulated once at the B1
   nodes from the not-a-knot cubic spline in B1 (:func:`_b1_tables`) and interpolated linearly
   in B1 per voxel, so the expansion costs one matrix product per block of voxels that share a
   B1 interval. Where the cubic term (the spline's third derivative on that interval) could change
   the log-likelihood by more than ``LAPLACE_CUBIC`` over the integrand's support (at high SNR,
   where the data pin B1 down better than the map), the Gauss-Hermite quadrature of the grid
   evaluation (``n_b1_quadrature`` nodes, combined by log-sum-exp) is used instead. At the seed's
   noise the two agree with a 41-node quadrature within 0.4 ms (MAP) and 0.12 % (std).
2. *Wide posteriors* (coarse posterior std of ``u`` at least ``narrow_steps`` coarse steps,
   where the trapezoidal rule with Gregory's end corrections is accurate: see
   :class:`~qt1lib.estimate.map.ExactMAPModel`): the moments of the coarse pass; the MAP by Newton's
   method on the interpolating polynomial of degree 6 through the 7 coarse nodes around the
   coarse maximum, within one coarse step of it (a wide posterior's log density varies by
   O(1) per coarse step, so the polynomial's error, O(du^7) times its seventh derivative, is small
   against the curvature). A posterior with much density at a prior end (``END_DROP``) is
   integrated there on finer nodes.
3. *Narrow posteriors*: the MAP by Newton's method on the dense nodes, with the tabulated slope
   and curvature at the node nearest to the current estimate (the last step starts within half a
   dense step ``h`` of the maximum, so its error is about ``|l'''/l''| h^2 / 8``, under 1e-5 of
   T1); the moments from a window of dense nodes at most 0.8 posterior stds apart over at least
   +-8 stds (the trapezoidal rule).
4. *Left to the grid evaluation* (:meth:`QuadraticEvaluator.fit` returns them): narrow
   posteriors whose std is under 1.25 dense steps (the dense nodes cannot resolve them; SNR in
   the thousands), whose window crosses a prior end, whose window's ends lie above exp(-18) of
   the maximum (a skewed tail), where Newton's method did not settle on one dense node, or with
   B1 marginalised (the mixture of the quadrature nodes' likelihoods can have one peak per node).

The goodness-of-fit statistic uses the projection at the MAP (narrow: its Taylor expansion at
the last dense node; wide: the coarse maximum of the projection plus the polynomial's gain
over the coarse maximum of the log posterior, exact for one B1 node and Jeffreys' prior).
The result agrees with the grid evaluation within the bounds of the posterior tables (MAP within
1 ms, mean and std within 1 % of the std; tests/test_quadratic_map.py); it is the exact
estimator's ``method="quadratic"`` and, on the CPU, its ``"auto"`` choice wherever the posterior table does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, reduce

import numpy as np

from ..protocols import MPnRAGEProtocol

__all__ = ["QuadraticDictionary", "quadratic_dictionary", "data_products", "QuadraticEvaluator", "QUADRATIC_CHUNK"]

#: Voxels per chunk (bounds memory at about 5 kB per voxel of a chunk with 5 B1 quadrature nodes).
QUADRATIC_CHUNK = 16384
#: Degree of the interpolating polynomial of a wide posterior's MAP search (7 coarse nodes).
_WIDE_DEGREE = 6
#: Newton iterations of the MAP searches.
_NEWTON_STEPS = 4
#: Gaussian B1 marginalisation: accepted where the cubic term of the log-likelihood in B1 changes it
#: by at most ``LAPLACE_CUBIC`` over the integrand's support (module docstring); else Gauss-Hermite.
LAPLACE_CUBIC = 0.02
#: Voxels per block of the B1 marginalisation's arithmetic (its arrays then stay in the CPU's cache).
_LAPLACE_BLOCK = 2048
#: That bound is checked at the coarse maximum and this many coarse nodes on either side (+-0.29 in log T1).
_CHECK_REACH = 4
#: The narrow window: ``2 * _WINDOW_HALF + 1`` dense nodes, the dense stride nearest to
#: ``_WINDOW_STEP`` posterior stds (a spacing of at most 0.8 std for a std of at least 1.25 dense
#: steps: the trapezoidal rule's error on a Gaussian is then below 1e-13), over at least +-8 stds.
_WINDOW_HALF, _WINDOW_STEP = 16, 0.5
#: A wide posterior whose log density at a prior end lies above ``END_DROP`` (from the coarse
#: maximum) is integrated over the ``END_STEPS`` coarse steps next to that end on ``END_REFINE``
#: times finer nodes (Gregory's rule on both parts), and its MAP searched there if it lies there:
#: the coarse rule alone is 1-3 % wrong in the std of a posterior that peaks at the prior end,
#: under 0.65 % where the end's density is below exp(-4) of the maximum (3000 random voxels of
#: SNR 5..1000; tests/test_quadratic_map.py checks the bounds), hence exp(-6).
END_DROP, END_STEPS, END_REFINE = -6.0, 8, 2


@dataclass(frozen=True)
class QuadraticDictionary:
    """The quadratic-form dictionary: ``q``, ``dq/du``, ``d^2q/du^2`` on dense log-T1 nodes, per B1 node.

    Attributes
    ----------
    u : ndarray, shape (n_dense,)
        Dense nodes of ``u = log T1`` (uniform).
    b1 : ndarray, shape (n_b1,)
        B1 nodes.
    pairs : tuple of (int, int)
        The readout pairs ``(r, s)``, ``r <= s``, of the first columns (then the prior column).
    values, slopes, curvatures : ndarray, shape (n_b1, n_dense, n_pairs + 1)
        ``q`` and its first and second derivatives in ``u``; the last column is the scale
        prior's term (``-log ||g||^2`` for the flat prior, 0 for Jeffreys').
    """

    u: np.ndarray
    b1: np.ndarray
    pairs: tuple[tuple[int, int], ...]
    values: np.ndarray
    slopes: np.ndarray
    curvatures: np.ndarray


def _pairs(n: int) -> tuple[tuple[int, int], ...]:
    return tuple((r, s) for r in range(n) for s in range(r, n))


@lru_cache(maxsize=4)
def quadratic_dictionary(
    protocol: MPnRAGEProtocol,
    t1_range: tuple[float, float],
    n_coarse: int,
    refine: int,
    b1_nodes: tuple[float, ...],
    scale_prior: str,
) -> QuadraticDictionary:
    """Tabulate ``q`` and its derivatives from the grid evaluation's spline dictionary (cached).

    ``g``, ``g'`` and ``g''`` at the dense nodes are those of the not-a-knot cubic spline of the
    grid evaluation (:func:`qt1lib.estimate.map._build_table`); with ``a = g g^T`` and
    ``N = ||g||^2``, ``q = a / N`` and, by the quotient rule,
    ``q' = a' / N - a N' / N^2`` and ``q'' = a'' / N - 2 a' N' / N^2 - a N'' / N^2 + 2 a N'^2 / N^3``.
    """
    from .map import _build_table

    table = _build_table(protocol, t1_range, n_coarse, refine, b1_nodes)
    n_b1, n_dense, n_used = len(table.b1), len(table.u), table.coarse.shape[-1]
    h = table.u[1] - table.u[0]
    c3, c2, c1, c0 = (part.reshape(n_b1, n_dense - 1, n_used) for part in table.coefs)
    # values and derivatives at the left end of every interval, and at the right end of the last one
    g = np.concatenate([c0, (((c3[:, -1:] * h + c2[:, -1:]) * h + c1[:, -1:]) * h + c0[:, -1:])], axis=1)
    g1 = np.concatenate([c1, (3 * c3[:, -1:] * h + 2 * c2[:, -1:]) * h + c1[:, -1:]], axis=1)
    g2 = np.concatenate([2 * c2, 6 * c3[:, -1:] * h + 2 * c2[:, -1:]], axis=1)
    pairs = _pairs(n_used)
    factor = np.array([1.0 if r == s else 2.0 for r, s in pairs])
    a = np.stack([g[..., r] * g[..., s] for r, s in pairs], axis=-1) * factor
    a1 = np.stack([g1[..., r] * g[..., s] + g[..., r] * g1[..., s] for r, s in pairs], axis=-1) * factor
    a2 = np.stack([g2[..., r] * g[..., s] + 2 * g1[..., r] * g1[..., s] + g[..., r] * g2[..., s] for r, s in pairs],
                  axis=-1) * factor
    n2 = (g * g).sum(-1)[..., None]
    n2_1 = 2 * (g * g1).sum(-1)[..., None]
    n2_2 = 2 * ((g1 * g1).sum(-1) + (g * g2).sum(-1))[..., None]
    q = a / n2
    q1 = a1 / n2 - a * n2_1 / n2**2
    q2 = a2 / n2 - 2 * a1 * n2_1 / n2**2 - a * n2_2 / n2**2 + 2 * a * n2_1**2 / n2**3
    if scale_prior == "flat":
        p, p1, p2 = -np.log(n2), -n2_1 / n2, -n2_2 / n2 + (n2_1 / n2) ** 2
    else:
        p = p1 = p2 = np.zeros_like(n2)
    values = np.ascontiguousarray(np.concatenate([q, p], axis=-1))
    slopes = np.ascontiguousarray(np.concatenate([q1, p1], axis=-1))
    curvatures = np.ascontiguousarray(np.concatenate([q2, p2], axis=-1))
    return QuadraticDictionary(table.u, table.b1, pairs, values, slopes, curvatures)


def _b1_tables(values: np.ndarray, b1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The B1 marginalisation's tables of :meth:`QuadraticEvaluator._laplace` from ``values`` (n_b1, n_cols, n_nodes).

    Returns ``nodal`` (n_b1, n_cols, 3 n_nodes): the values and their first and second
    derivatives in B1 at the B1 nodes ``b1``, side by side, and ``third`` (n_b1 - 1, n_cols,
    n_nodes): the third derivative on each interval, all of the not-a-knot cubic spline in B1.
    """
    from scipy.interpolate import CubicSpline

    spline = CubicSpline(b1, values, axis=0)
    nodal = np.concatenate([values, spline(b1, 1), spline(b1, 2)], axis=-1)
    return np.ascontiguousarray(nodal), np.ascontiguousarray(6.0 * spline.c[0])


def data_products(y: np.ndarray, sigma: float) -> np.ndarray:
    """The data's numbers of the quadratic form: ``Re(y_r conj(y_s)) / (2 sigma^2)`` per pair, then 1.

    Parameters
    ----------
    y : ndarray, shape (m, n)
        Complex data of ``m`` voxels, ``n`` used readouts.
    sigma : float
        Noise std per real / imaginary part (units of ``y``).

    Returns
    -------
    ndarray, shape (m, n (n + 1) / 2 + 1)
        In the order of :attr:`QuadraticDictionary.pairs`; the last column (1) weighs the prior term.
    """
    pairs = _pairs(y.shape[1])
    yr, yi = y.real, y.imag
    out = np.empty((y.shape[0], len(pairs) + 1))
    for col, (r, s) in enumerate(pairs):  # loop over readout pairs
        out[:, col] = yr[:, r] * yr[:, s] + yi[:, r] * yi[:, s]
    out[:, :-1] *= 0.5 / sigma**2
    out[:, -1] = 1.0
    return out


def _horner(coef: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``sum_i coef[i] t^i`` by Horner's scheme; ``coef`` of shape (degree + 1, n), ``t`` of shape (n,) or (k, n)."""
    out = np.broadcast_to(coef[-1], np.shape(t)).copy()
    for i in range(coef.shape[0] - 2, -1, -1):  # loop over the polynomial's degree
        out *= t
        out += coef[i]
    return out


class QuadraticEvaluator:
    """The posterior summaries of the module docstring for one :class:`~qt1lib.estimate.map.ExactMAPModel`.

    Parameters
    ----------
    model : ExactMAPModel
        Supplies the protocol, noise level, prior, nodes and windows (its attributes of the same names).
    with_b1 : bool
        The dictionary on the model's B1 grid (a B1 map given) or at B1 = 1.
    """

    def __init__(self, model, with_b1: bool):
        self.model = model
        nodes = model.b1_nodes if with_b1 else (1.0,)
        self.dictionary = quadratic_dictionary(model.protocol, model.t1_range, model.n_coarse, model.refine, nodes,
                                               model.scale_prior)
        self.h = self.dictionary.u[1] - self.dictionary.u[0]
        # interpolating polynomial through 7 coarse nodes at t = -3..3 (coarse steps): monomial coefficients
        t = np.arange(-3, 4, dtype=float)
        self._poly = np.linalg.inv(np.vander(t, _WIDE_DEGREE + 1, increasing=True))
        from .map import _gregory_weights

        d = self.dictionary
        stride = model.refine  # the coarse nodes of the grid evaluation
        self.u_c = d.u[::stride]
        self.du_c = self.u_c[1] - self.u_c[0]
        self.n_c = len(self.u_c)
        self.coarse = np.ascontiguousarray(np.transpose(d.values[:, ::stride], (0, 2, 1)))
        self._laplace_ready = len(d.b1) >= 4  # the B1 marginalisation's spline needs 4 nodes
        self._coarse_b1 = _b1_tables(self.coarse, d.b1) if self._laplace_ready else None
        t1_c = np.exp(self.u_c)
        base = self.du_c * _gregory_weights(self.n_c) * t1_c  # Jacobian dT1 = T1 du
        # columns: normalisation, sum T1, sum T1^2, sum u, sum u^2
        self._coarse_weights = np.stack([base, base * t1_c, base * t1_c**2, base * self.u_c, base * self.u_c**2], axis=1)
        # the end segments: dense nodes END_REFINE per coarse step over the END_STEPS coarse steps
        # next to each prior end (Gregory's rule there), the coarse rule on the rest
        self.has_ends = stride % END_REFINE == 0 and self.n_c >= 2 * END_STEPS + 6
        if self.has_ends:
            lo_idx = np.arange(0, END_STEPS * stride + 1, stride // END_REFINE)
            hi_idx = len(d.u) - 1 - lo_idx[::-1]
            self._end_tables = [np.ascontiguousarray(np.transpose(d.values[:, idx], (0, 2, 1))) for idx in (lo_idx, hi_idx)]
            self._end_b1 = [_b1_tables(t, d.b1) for t in self._end_tables] if self._laplace_ready else None
            fine = self.du_c / END_REFINE * _gregory_weights(len(lo_idx))
            self._end_weights = [np.stack([fine * np.exp(d.u[idx]) ** p for p in (1, 2, 3)], axis=1)
                                 for idx in (lo_idx, hi_idx)]
            self._cut_weights = {}
            for case in (1, 2, 3):  # which ends are cut: 1 lower, 2 upper, 3 both
                first = END_STEPS if case & 1 else 0
                last = self.n_c - 1 - END_STEPS if case & 2 else self.n_c - 1
                w = np.zeros(self.n_c)
                w[first : last + 1] = self.du_c * _gregory_weights(last - first + 1)
                self._cut_weights[case] = np.stack([w * t1_c**p for p in (1, 2, 3)], axis=1)
        cuts = [self._cut_weights[c] for c in (1, 2, 3)] if self.has_ends else []
        self._all_weights = np.ascontiguousarray(np.concatenate([self._coarse_weights] + cuts, axis=1))

    # ------------------------------------------------------------ log posterior on nodes
    @staticmethod
    def _products(table: np.ndarray, mvec: np.ndarray, positions: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Log-likelihood on fixed nodes, ``mvec @ table[B1]`` (m, n_nodes), per B1 quadrature node.

        ``table`` has shape (n_b1, n_pairs + 1, n_nodes); linear in B1 between B1 nodes.
        """
        if table.shape[0] == 1:
            return [mvec @ table[0]]
        out = []
        for j, w in positions:  # loop over B1 quadrature nodes
            ll = np.empty((mvec.shape[0], table.shape[-1]))
            for jj in np.unique(j):  # loop over the B1 nodes in the chunk (voxels are sorted by B1)
                sel = np.nonzero(j == jj)[0]
                lo, hi = mvec[sel] @ table[jj], mvec[sel] @ table[jj + 1]
                ll[sel] = lo + w[sel, None] * (hi - lo)
            out.append(ll)
        return out

    def _coarse(self, mvec: np.ndarray, positions: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Log-likelihood on the coarse nodes, (m, n_coarse), per B1 quadrature node."""
        return self._products(self.coarse, mvec, positions)

    def _b1_interval(self, b1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The B1 interval of each voxel: its lower node ``j``, the fraction ``x`` in [0, 1] of the step, and whether it exists."""
        nodes = self.dictionary.b1
        step = nodes[1] - nodes[0]
        j = np.floor((b1 - nodes[0]) / step).astype(np.int64)
        inside = (j >= 0) & (j <= len(nodes) - 2)
        j = np.clip(j, 0, len(nodes) - 2)
        return j, (b1 - nodes[j]) / step, inside

    def _laplace(self, tables: tuple[np.ndarray, np.ndarray], mvec: np.ndarray, j: np.ndarray, x: np.ndarray,
                 sd: float, check: bool = True):
        """The log-likelihood averaged over B1 ~ N(b1, sd^2), Gaussian in B1, on fixed nodes.

        With ``l(b1 + d) = a0 + a1 d + a2 d^2 / 2``, ``log int exp(l) N(d; 0, sd^2) dd =
        a0 + a1^2 sd^2 / (2 D) - log(D) / 2`` with ``D = 1 - a2 sd^2`` (a Gaussian integral; the
        Laplace method, Tierney & Kadane 1986, J. Am. Stat. Assoc. 81:82, exact for a quadratic
        ``l``). ``a0``, ``a1`` and ``a2`` are the log-likelihood and its first two derivatives in
        B1 at the voxel's ``b1``, linear in B1 between the nodes of :func:`_b1_tables` (as the
        grid evaluation's signals are); ``a3`` is the third derivative of the cubic spline in B1
        on the voxel's interval. ``tables`` is the output of :func:`_b1_tables`; the voxels must
        be sorted by B1 (``j`` non-decreasing); ``j, x`` from :meth:`_b1_interval`.

        Returns
        -------
        ll : ndarray, shape (m, n_nodes)
            That log-likelihood (NaN where ``D <= 0``).
        k, data_top, cubic : ndarray, shape (m,)
            Only with ``check``: the node of the maximum of ``ll``, the data term there (``a0``
            without the prior column) and the bound ``|a3| r^3 / 6`` of the cubic term over
            ``r = |d*| + 3 sd / sqrt(D)``, the integrand's peak ``d* = a1 sd^2 / D`` plus three of
            its stds, at the maximum and ``_CHECK_REACH`` nodes on either side of it (where the
            posterior's mass lies: a wide posterior's std is at least one coarse step; ``inf``
            where ``D <= 0`` there).
        """
        nodal, third = tables
        m, (_, n_cols, n_three) = mvec.shape[0], nodal.shape
        n_nodes = n_three // 3
        if np.any(np.diff(j) < 0):
            raise ValueError("the voxels of a chunk must be sorted by B1")
        # the data side of the linear interpolation in B1: [(1 - x) m, x m] against the rows [T_j; T_j+1]
        weighted = np.concatenate([(1.0 - x)[:, None] * mvec, x[:, None] * mvec], axis=1)
        s2 = sd * sd
        ll = np.empty((m, n_nodes))
        if check:
            k, data_top, cubic = np.empty(m, dtype=np.int64), np.empty(m), np.empty(m)
            reach_nodes = np.array([-_CHECK_REACH, 0, _CHECK_REACH])
        starts = np.flatnonzero(np.diff(j, prepend=j[0] - 1)) if m else np.zeros(0, dtype=np.int64)
        bounds = [(b, min(b + _LAPLACE_BLOCK, e)) for b, e in zip(starts, list(starts[1:]) + [m])
                  for b in range(b, e, _LAPLACE_BLOCK)]
        for begin, end in bounds:  # loop over blocks of voxels within one B1 interval (cache-sized)
            jj = j[begin]
            a = weighted[begin:end] @ nodal[jj : jj + 2].reshape(2 * n_cols, n_three)  # [a0 | a1 | a2]
            a0, a1, a2 = a[:, :n_nodes], a[:, n_nodes : 2 * n_nodes], a[:, 2 * n_nodes :]
            out = ll[begin:end]
            spread = np.multiply(a2, -s2)
            spread += 1.0
            np.square(a1, out=out)
            out *= s2 / 2
            with np.errstate(divide="ignore", invalid="ignore"):
                out /= spread
                log_spread = np.log(spread)
            log_spread *= 0.5
            out -= log_spread
            out += a0
            if not check:
                continue
            rows = np.arange(end - begin)
            top = np.argmax(out, axis=1)
            near = np.clip(top[:, None] + reach_nodes, 0, n_nodes - 1)
            a3 = np.einsum("mpk,mp->mk", third[jj][:, near].transpose(1, 0, 2), mvec[begin:end])
            sp, slope = spread[rows[:, None], near], a1[rows[:, None], near]
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.abs(slope) * s2 / sp + 3 * sd / np.sqrt(sp)
            cubic[begin:end] = np.where(sp > 0, np.abs(a3) * r**3 / 6, np.inf).max(axis=1)
            xb = x[begin:end]
            prior = (1.0 - xb) * nodal[jj, -1, top] + xb * nodal[jj + 1, -1, top]
            k[begin:end], data_top[begin:end] = top, a0[rows, top] - prior
        return (ll, k, data_top, cubic) if check else ll

    def _dense(self, mvec, idx, positions, derivatives: bool):
        """Log-likelihood (and slope, curvature) at dense nodes ``idx`` (m, k), per quadrature node."""
        d = self.dictionary
        tables = (d.values, d.slopes, d.curvatures) if derivatives else (d.values,)
        out = []
        for j, w in positions:  # loop over B1 quadrature nodes
            parts = []
            for tab in tables:  # loop over value, slope, curvature
                lo = np.einsum("mkp,mp->mk", tab[j[:, None], idx], mvec)
                if len(d.b1) > 1:
                    hi = np.einsum("mkp,mp->mk", tab[j[:, None] + 1, idx], mvec)
                    lo = lo + w[:, None] * (hi - lo)
                parts.append(lo)
            out.append(parts)
        return out

    @staticmethod
    def _combine(lls: list[np.ndarray], log_weights: np.ndarray, node_weights: bool = False):
        """``log sum_q w_q exp(l_q)`` over the quadrature nodes, and (``node_weights``) their posterior weights."""
        if len(lls) == 1:
            return lls[0], None
        top = lls[0] + log_weights[0]
        for q in range(1, len(lls)):  # loop over quadrature nodes: the running maximum
            np.maximum(top, lls[q] + log_weights[q], out=top)
        terms = [np.exp(lls[q] + (log_weights[q] - top)) for q in range(len(lls))] if node_weights else None
        total = np.zeros_like(top)
        for q in range(len(lls)):  # loop over quadrature nodes
            total += terms[q] if node_weights else np.exp(lls[q] + (log_weights[q] - top))
        combined = top + np.log(total)
        return combined, ([t / total for t in terms] if node_weights else None)

    def _dense_posterior(self, mvec, idx, positions, log_weights):
        """Combined log posterior, slope, curvature and the largest data projection term at dense nodes."""
        parts = self._dense(mvec, idx, positions, derivatives=True)
        ll, pi = self._combine([p[0] for p in parts], log_weights, node_weights=True)
        if pi is None:
            return ll, parts[0][1], parts[0][2], parts
        slope = sum(pi[q] * parts[q][1] for q in range(len(parts)))
        curv = sum(pi[q] * (parts[q][2] + parts[q][1] ** 2) for q in range(len(parts))) - slope**2
        return ll, slope, curv, parts

    def _polynomial_map(self, ll: np.ndarray, rows: np.ndarray, top: np.ndarray, k: np.ndarray, first: float,
                        step: float):
        """MAP on the degree-6 polynomial through the 7 nodes about each row's maximum ``k``.

        ``ll[rows]`` (n, n_nodes): log posterior on uniform nodes ``first + step * i``; Newton's
        method within one step of node ``k``, then the best of its result, the bracket's ends and
        node ``k``. Returns the MAP (in ``u``) and the polynomial's value there minus ``top``.
        """
        n_nodes = ll.shape[1]
        centre = np.clip(k, 3, n_nodes - 4)
        flat = np.ascontiguousarray(ll).reshape(-1)
        vals = np.take(flat, (rows * n_nodes + centre)[:, None] + np.arange(-3, 4))
        rows = np.arange(len(rows))
        coef = self._poly @ (vals - top[:, None]).T  # (7, n): monomial coefficients in t = (u - u_centre) / step
        lo = np.maximum(k - centre - 1.0, -3.0)
        hi = np.minimum(k - centre + 1.0, 3.0)
        t = (k - centre).astype(float)
        d1 = coef[1:] * np.arange(1, _WIDE_DEGREE + 1)[:, None]  # derivative's coefficients
        d2 = d1[1:] * np.arange(1, _WIDE_DEGREE)[:, None]
        for _ in range(_NEWTON_STEPS):  # Newton iterations (vectorised over voxels)
            p1, p2 = _horner(d1, t), _horner(d2, t)
            t = np.clip(t + np.where(p2 < 0, -p1 / np.where(p2 < 0, p2, -1.0), np.sign(p1) * 0.5), lo, hi)
        candidates = np.stack([t, lo, hi, (k - centre).astype(float)])
        values = _horner(coef, candidates)
        best = np.argmax(values, axis=0)
        return first + (centre + candidates[best, rows]) * step, values[best, rows]

    # ------------------------------------------------------------ fit
    def fit(self, y: np.ndarray, positions, log_weights, b1: np.ndarray | None = None,
            b1_sd: float = 0.0) -> tuple[np.ndarray, ...]:
        """Posterior summaries of one chunk of voxels.

        Parameters
        ----------
        y : ndarray, shape (m, n_used)
            Complex data.
        positions : list of (ndarray, ndarray)
            Per B1 quadrature node, the lower B1 node index and weight of each voxel.
        log_weights : ndarray
            Log weights of the quadrature nodes.
        b1, b1_sd : ndarray (m,) and float, optional
            With ``b1_sd > 0``: the Gaussian B1 marginalisation (:meth:`_laplace`) where its cubic
            term is below ``LAPLACE_CUBIC`` at and about the coarse maximum, the
            Gauss-Hermite quadrature of ``positions`` elsewhere.

        Returns
        -------
        map, mean, std : ndarray, shape (m,)
            T1 (s); NaN where ``rest``.
        proj_max : ndarray, shape (m,)
            ``|g.y|^2 / ||g||^2`` at the MAP (for the goodness-of-fit test).
        rest : ndarray of bool, shape (m,)
            Voxels left to the grid evaluation.
        """
        mvec = data_products(y, self.model.sigma)
        if not (b1_sd > 0 and b1 is not None and self._laplace_ready):
            return self._summaries(mvec, *self._quadrature_coarse(mvec, positions, log_weights), positions, log_weights,
                                   None, 0.0)
        interval, x, inside = self._b1_interval(b1)
        ll, k, data_top, cubic = self._laplace(self._coarse_b1, mvec, interval, x, b1_sd)
        accepted = inside & (cubic <= LAPLACE_CUBIC) & np.all(np.isfinite(ll), axis=1)
        if accepted.all():
            return self._summaries(mvec, ll, k, data_top, positions, log_weights, (interval, x), b1_sd)
        ours, other = np.nonzero(accepted)[0], np.nonzero(~accepted)[0]
        mine = self._summaries(mvec[ours], ll[ours], k[ours], data_top[ours], [(j[ours], w[ours]) for j, w in positions],
                               log_weights, (interval[ours], x[ours]), b1_sd)
        if not other.size:
            return mine
        pos = [(j[other], w[other]) for j, w in positions]  # the others by Gauss-Hermite quadrature
        theirs = self._summaries(mvec[other], *self._quadrature_coarse(mvec[other], pos, log_weights), pos, log_weights,
                                 None, 0.0)
        out = tuple(np.empty(len(accepted), dtype=r.dtype) for r in mine)
        for target, own, their in zip(out, mine, theirs):  # loop over the five outputs
            target[ours], target[other] = own, their
        return out

    def _quadrature_coarse(self, mvec, positions, log_weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coarse log posterior (Gauss-Hermite over B1 if several nodes), its maximum's node, and there the largest data term."""
        coarse = self._coarse(mvec, positions)
        ll, _ = self._combine(coarse, log_weights)
        k = np.argmax(ll, axis=1)
        rows = np.arange(len(k))
        at_top = [c[rows, k] for c in coarse]
        if self.model.scale_prior == "flat":  # remove the prior column
            prior = self.coarse[:, -1]  # (n_b1, n_coarse)
            if len(self.dictionary.b1) == 1:
                at_top = [at_top[0] - prior[0, k]]
            else:
                at_top = [c - prior[j, k] - w * (prior[j + 1, k] - prior[j, k]) for c, (j, w) in zip(at_top, positions)]
        return ll, k, reduce(np.maximum, at_top)

    def _summaries(self, mvec, ll, k, data_top, positions, log_weights, laplace, b1_sd) -> tuple[np.ndarray, ...]:
        """Steps 2-4 of the module docstring from the coarse log posterior ``ll``, its maximum's node ``k``
        and the data term there (see :meth:`fit`)."""
        model, d = self.model, self.dictionary
        m = mvec.shape[0]
        rows = np.arange(m)
        du, h, nc = self.du_c, self.h, self.n_c
        two_s2 = 2 * model.sigma**2
        t1_map, mean, std, proj_max = (np.full(m, np.nan) for _ in range(4))
        rest = np.zeros(m, dtype=bool)
        if m == 0:
            return t1_map, mean, std, proj_max, rest
        top = ll[rows, k]
        density = np.subtract(ll, top[:, None])
        np.exp(density, out=density)
        mom = density @ self._all_weights  # the coarse moments, then those of the cut cases
        z = mom[:, 0]
        mean_c = mom[:, 1] / z
        std_c = np.sqrt(np.maximum(mom[:, 2] / z - mean_c**2, 0.0))
        mu = mom[:, 3] / z
        # narrow: a small coarse std of u, or a sharp maximum (the curvature of the parabola through
        # the coarse maximum and its neighbours: a skewed posterior with a cliff on one side)
        kk = np.clip(k, 1, nc - 2)
        lm, l0, lp = ll[rows, kk - 1], ll[rows, kk], ll[rows, kk + 1]
        sharp = (lp - 2 * l0 + lm) < -1.0 / model.narrow_steps**2
        narrow = sharp | (np.sqrt(np.maximum(mom[:, 4] / z - mu**2, 0.0)) < model.narrow_steps * du)

        # 2. wide posteriors: coarse moments, MAP on the degree-6 polynomial through 7 coarse nodes
        wide = np.nonzero(~narrow)[0]
        if wide.size:
            kw = k[wide]
            u_best, gain = self._polynomial_map(ll, wide, top[wide], kw, self.u_c[0], du)
            mean[wide], std[wide] = mean_c[wide], std_c[wide]
            cut_lo = ll[wide, 0] - top[wide] > END_DROP
            cut_hi = ll[wide, -1] - top[wide] > END_DROP
            case = cut_lo + 2 * cut_hi
            if not self.has_ends:
                rest[wide[case > 0]] = True
            else:
                for c in (1, 2, 3):  # loop over which prior ends cut the posterior
                    sel = np.nonzero(case == c)[0]
                    if not sel.size:
                        continue
                    vox = wide[sel]
                    sums = mom[vox, 5 + 3 * (c - 1) : 8 + 3 * (c - 1)]
                    for side in (0, 1):  # lower, upper end
                        if c & (1 << side):
                            if laplace is None:
                                pos = [(j[vox], w[vox]) for j, w in positions]
                                lle, _ = self._combine(self._products(self._end_tables[side], mvec[vox], pos), log_weights)
                            else:
                                lle = self._laplace(self._end_b1[side], mvec[vox], laplace[0][vox], laplace[1][vox],
                                                    b1_sd, check=False)
                            sums += np.exp(lle - top[vox, None]) @ self._end_weights[side]
                            # a maximum within the end segment: the MAP on its finer nodes
                            near = (kw[sel] <= END_STEPS) if side == 0 else (kw[sel] >= nc - 1 - END_STEPS)
                            if near.any():
                                at = np.nonzero(near)[0]
                                fine = np.argmax(lle[at], axis=1)
                                first = model.u_min if side == 0 else model.u_max - END_STEPS * du
                                u_f, gain_f = self._polynomial_map(lle, at, top[vox[at]], fine, first, du / END_REFINE)
                                better = gain_f > gain[sel[at]]
                                u_best[sel[at[better]]] = u_f[better]
                                gain[sel[at[better]]] = gain_f[better]
                    mean[vox] = sums[:, 1] / sums[:, 0]
                    std[vox] = np.sqrt(np.maximum(sums[:, 2] / sums[:, 0] - mean[vox] ** 2, 0.0))
            t1_map[wide] = np.exp(np.clip(u_best, model.u_min, model.u_max))
            proj_max[wide] = two_s2 * (data_top[wide] + np.maximum(gain, 0.0))

        # 3. narrow posteriors: Newton on the dense nodes, moments on a dense window. With B1
        #    marginalised they are left to the grid evaluation: where the data pin T1 down
        #    better than the B1 quadrature's spread, the mixture of the quadrature nodes'
        #    likelihoods has a peak per node, which Newton's method and a window about one peak miss.
        if len(positions) > 1:
            rest[narrow] = True
            narrow = np.zeros(m, dtype=bool)
        nar = np.nonzero(narrow)[0]
        if nar.size:
            pos = [(j[nar], w[nar]) for j, w in positions]
            mv = mvec[nar]
            lm, l0, lp, kn = lm[nar], l0[nar], lp[nar], kk[nar]
            with np.errstate(divide="ignore", invalid="ignore"):
                shift = np.where(lp - 2 * l0 + lm < 0, 0.5 * (lm - lp) / (lp - 2 * l0 + lm), 0.0)
            u = self.u_c[kn] + np.clip(shift, -1, 1) * du
            n_dense = len(d.u)
            settled = np.zeros(nar.size, dtype=bool)
            for _ in range(_NEWTON_STEPS):  # Newton iterations on the dense nodes
                node = np.clip(np.rint((u - d.u[0]) / h).astype(np.int64), 0, n_dense - 1)
                _, slope, curv, _ = self._dense_posterior(mv, node[:, None], pos, log_weights)
                slope, curv = slope[:, 0], curv[:, 0]
                with np.errstate(divide="ignore", invalid="ignore"):
                    step = np.where(curv < 0, -slope / curv, np.sign(slope) * du)
                step = np.clip(np.nan_to_num(step), -du, du)
                u_new = np.clip(d.u[node] + step, model.u_min, model.u_max)
                settled = np.abs(u_new - d.u[node]) <= 0.5 * h
                u = u_new
            node = np.clip(np.rint((u - d.u[0]) / h).astype(np.int64), 0, n_dense - 1)
            ll0, slope, curv, parts = self._dense_posterior(mv, node[:, None], pos, log_weights)
            delta = u - d.u[node]
            with np.errstate(invalid="ignore", divide="ignore"):
                s = 1.0 / np.sqrt(-curv[:, 0])
            stride = np.rint(_WINDOW_STEP * s / h)
            half = _WINDOW_HALF
            ok = settled & np.isfinite(s) & (s >= 1.25 * h) & (node - half * stride >= 0) & (node + half * stride <= n_dense - 1)
            stride = np.where(ok, stride, 1).astype(np.int64)
            centre = np.where(ok, node, half)
            idx = centre[:, None] + stride[:, None] * np.arange(-half, half + 1)
            llw_parts = self._dense(mv, idx, pos, derivatives=False)
            llw, _ = self._combine([p[0] for p in llw_parts], log_weights)
            peak = llw.max(axis=1)
            ok &= (llw[:, 0] - peak < -18.0) & (llw[:, -1] - peak < -18.0)
            t1 = np.exp(d.u[idx])
            t1_hat = np.exp(u)
            wgt = np.exp(llw - peak[:, None]) * t1  # Jacobian dT1 = T1 du; uniform steps
            dt = t1 - t1_hat[:, None]
            zz = wgt.sum(axis=1)
            m1 = (wgt * dt).sum(axis=1) / zz
            var = np.maximum((wgt * dt**2).sum(axis=1) / zz - m1**2, 0.0)
            # the data projection at the MAP: Taylor expansion at the node, the prior term removed
            prior_col = [d.values[jj, node, -1] + ww * (d.values[np.minimum(jj + 1, len(d.b1) - 1), node, -1]
                                                        - d.values[jj, node, -1]) for jj, ww in pos]
            prior_slope = [d.slopes[jj, node, -1] + ww * (d.slopes[np.minimum(jj + 1, len(d.b1) - 1), node, -1]
                                                         - d.slopes[jj, node, -1]) for jj, ww in pos]
            data_at_map = np.max([p[0][:, 0] - pc + (p[1][:, 0] - ps) * delta
                                  for p, pc, ps in zip(parts, prior_col, prior_slope)], axis=0)
            good = nar[ok]
            t1_map[good] = t1_hat[ok]
            mean[good] = t1_hat[ok] + m1[ok]
            std[good] = np.sqrt(var[ok])
            proj_max[good] = two_s2 * data_at_map[ok]
            rest[nar[~ok]] = True
        return t1_map, mean, std, proj_max, rest
