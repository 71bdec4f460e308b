"""Vectorised two-pool SIR-qMT fit of whole volumes.

Free parameters R1f, PSR, Sf, M0f; by default ``R1m = R1f`` and ``kmf = 14.5 s^-1`` are fixed, as in
Dortch et al. 2011 (MRM 66:1346) and the public SIR-qMT toolbox (nicksisco1932/The_SIR-qMT_toolbox,
``--kmf 14.5 --Sm 0.83``); Sm comes from the protocol. The model is the magnitude SIR signal of
:func:`qt1lib.sequences.sir.sir_signal`.

Method: starting values from a coarse grid over (R1f, PSR, Sf) with M0f solved linearly for every
grid point, then a batched Levenberg-Marquardt (Marquardt 1963, SIAM J Appl Math 11:431; diagonal
scaling of ``J^T J``) with steps projected onto the bounds. All voxels iterate together; a voxel
leaves the active set when it converges. The Jacobian is analytic in M0f (the model is linear in
it) and forward finite differences in the other parameters. Each voxel gets a convergence flag and
a flag when a parameter sits on a bound; values never leave the bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..protocols_sir import SIRProtocol
from ..sequences.sir import sir_signal
from ..sequences.twopool import KMF_HUMAN_BRAIN

__all__ = ["DEFAULT_BOUNDS", "SIRFitResult", "fit_sir"]

PARAMETERS = ("r1f", "psr", "sf", "m0f")

#: Bounds of (R1f [s^-1], PSR, Sf, M0f). R1f: qMRLab qmt_sirfse lower/upper bounds 0.05..10 s^-1
#: (the SIR-qMT toolbox's 0.3..3 would exclude CSF at 7 T); PSR 0..1 and Sf -1.05..0 from the
#: SIR-qMT toolbox (``SIR_proc.py``: LB [0, 0.3, -1.05, 0], UB [1, 3, 0, 10]); M0f >= 0, no upper
#: bound because the data are not normalised.
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "r1f": (0.05, 10.0),
    "psr": (0.0, 1.0),
    "sf": (-1.05, 0.0),
    "m0f": (0.0, np.inf),
}

# Starting-value grid (an implementation choice, covering brain tissue and CSF at 3-7 T).
_GRID_R1F = np.geomspace(0.15, 4.0, 14)
_GRID_PSR = np.array([0.0, 0.03, 0.06, 0.1, 0.15, 0.22, 0.32])
_GRID_SF = np.array([-1.0, -0.93, -0.85, -0.7])
_TYPICAL = np.array([1.0, 0.1, 1.0, 1.0])  # parameter scales for steps and tolerances


@dataclass(frozen=True)
class SIRFitResult:
    """Maps of a SIR-qMT fit, each of the data's batch shape.

    Attributes
    ----------
    r1f : ndarray
        Free-pool R1 (s^-1); the IR reference T1 is ``1 / r1f``.
    psr : ndarray
        Pool size ratio M0m / M0f.
    sf : ndarray
        Free-pool inversion factor.
    m0f : ndarray
        Free-pool equilibrium signal (data units).
    converged : ndarray of bool
        The iteration met its tolerance before ``max_iter`` (False for NaN input).
    at_bound : ndarray of bool
        Some parameter sits on one of its bounds (the estimate is constrained there).
    residual : ndarray
        Root-mean-square residual (data units).
    n_iter : ndarray of int
        Levenberg-Marquardt iterations used.
    """

    r1f: np.ndarray
    psr: np.ndarray
    sf: np.ndarray
    m0f: np.ndarray
    converged: np.ndarray
    at_bound: np.ndarray
    residual: np.ndarray
    n_iter: np.ndarray

    @property
    def t1(self) -> np.ndarray:
        """``1 / r1f`` (s)."""
        with np.errstate(divide="ignore"):
            return 1.0 / self.r1f


class _Model:
    """Magnitude SIR model on (N, 4) parameter rows, returning (N, n_samples)."""

    def __init__(self, ti, td, sm, kmf, r1m):
        self.ti, self.td, self.sm, self.kmf, self.r1m = ti, td, sm, kmf, r1m

    def shape(self, r1f, psr, sf) -> np.ndarray:
        """Signal for M0f = 1, signed, shape (N, n)."""
        r1m = None if self.r1m is None else np.full_like(r1f, self.r1m)
        s = sir_signal(r1f, psr, sf, ti=self.ti, td=self.td, sm=self.sm, kmf=self.kmf, r1m=r1m, magnitude=False)
        return s.T

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        return theta[:, 3:4] * np.abs(self.shape(theta[:, 0], theta[:, 1], theta[:, 2]))

    def jacobian(self, theta: np.ndarray, f: np.ndarray) -> np.ndarray:
        J = np.empty((*f.shape, 4))
        for j in range(3):
            h = 1e-7 * np.maximum(np.abs(theta[:, j]), _TYPICAL[j])
            step = theta.copy()
            step[:, j] += h
            J[..., j] = (self(step) - f) / h[:, None]
        J[..., 3] = np.abs(self.shape(theta[:, 0], theta[:, 1], theta[:, 2]))
        return J


def _solve_spd(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve the batch of small symmetric positive-definite systems ``A x = b`` by Cholesky."""
    n, p = b.shape
    L = np.zeros_like(A)
    for j in range(p):
        d = A[:, j, j] - np.einsum("nk,nk->n", L[:, j, :j], L[:, j, :j])
        L[:, j, j] = np.sqrt(np.maximum(d, 1e-300))
        for i in range(j + 1, p):
            L[:, i, j] = (A[:, i, j] - np.einsum("nk,nk->n", L[:, i, :j], L[:, j, :j])) / L[:, j, j]
    y = np.empty_like(b)
    for i in range(p):
        y[:, i] = (b[:, i] - np.einsum("nk,nk->n", L[:, i, :i], y[:, :i])) / L[:, i, i]
    x = np.empty_like(b)
    for i in reversed(range(p)):
        x[:, i] = (y[:, i] - np.einsum("nk,nk->n", L[:, i + 1 :, i], x[:, i + 1 :])) / L[:, i, i]
    return x


def _starting_values(model: _Model, y: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Best grid point per voxel, with M0f = <y, g> / <g, g> (variable projection on the grid)."""
    r1f, psr, sf = (g.ravel() for g in np.meshgrid(_GRID_R1F, _GRID_PSR, _GRID_SF, indexing="ij"))
    g = np.abs(model.shape(r1f, psr, sf))  # (G, n)
    norm = np.sqrt(np.sum(g**2, axis=1))
    score = y @ (g / norm[:, None]).T  # (N, G), maximise <y, g>/|g|
    best = np.argmax(score, axis=1)
    m0f = score[np.arange(len(y)), best] / norm[best]
    theta = np.stack([r1f[best], psr[best], sf[best], m0f], axis=1)
    return np.clip(theta, lb, ub)


def _fit_chunk(model: _Model, y: np.ndarray, lb, ub, max_iter: int, xtol: float, ftol: float):
    n_vox = len(y)
    theta = _starting_values(model, y, lb, ub)
    scale = np.maximum(_TYPICAL, 0.0)
    scale = np.tile(scale, (n_vox, 1))
    scale[:, 3] = np.maximum(theta[:, 3], 1e-12)
    f = model(theta)
    cost = np.sum((f - y) ** 2, axis=1)
    lam = np.full(n_vox, 1e-3)
    converged = np.zeros(n_vox, bool)
    n_iter = np.zeros(n_vox, int)
    active = np.arange(n_vox)
    for _ in range(max_iter):
        if active.size == 0:
            break
        th, fa, ya, ca, la = theta[active], f[active], y[active], cost[active], lam[active]
        J = model.jacobian(th, fa)
        r = fa - ya
        JtJ = np.einsum("nki,nkj->nij", J, J)
        grad = np.einsum("nki,nk->ni", J, r)
        diag = np.maximum(np.einsum("nii->ni", JtJ), 1e-12 * np.max(np.einsum("nii->ni", JtJ), axis=1, keepdims=True) + 1e-300)
        A = JtJ + (la[:, None] * diag)[:, :, None] * np.eye(4)
        delta = _solve_spd(A, -grad)
        trial = np.clip(th + delta, lb, ub)
        f_trial = model(trial)
        c_trial = np.sum((f_trial - ya) ** 2, axis=1)
        better = np.isfinite(c_trial) & (c_trial <= ca)
        step = np.max(np.abs(trial - th) / scale[active], axis=1)
        decrease = ca - np.where(better, c_trial, ca)
        theta[active] = np.where(better[:, None], trial, th)
        f[active] = np.where(better[:, None], f_trial, fa)
        cost[active] = np.where(better, c_trial, ca)
        lam[active] = np.where(better, np.maximum(la / 10.0, 1e-12), la * 10.0)
        n_iter[active] += 1
        done = (better & ((step < xtol) | (decrease <= ftol * ca))) | (cost[active] <= 1e-30 * np.sum(ya**2, axis=1))
        stalled = lam[active] > 1e12
        converged[active] = done | (stalled & (step < xtol))
        active = active[~(done | stalled)]
    return theta, converged, np.sqrt(cost / y.shape[1]), n_iter


def fit_sir(
    signal: np.ndarray,
    protocol: SIRProtocol,
    *,
    kmf: float = KMF_HUMAN_BRAIN,
    r1m: float | None = None,
    sm: float | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
    max_iter: int = 100,
    xtol: float = 1e-7,
    ftol: float = 1e-12,
    chunk_size: int = 65536,
) -> SIRFitResult:
    """Fit the two-pool SIR model to every voxel of a volume.

    Parameters
    ----------
    signal : ndarray, shape (n_samples, *batch)
        Magnitude SIR images, one per (ti, td) sample of ``protocol``. Voxels with any NaN give
        NaN maps with ``converged = False``.
    protocol : SIRProtocol
        The acquisition (ti, td, Sm).
    kmf : float, default 14.5 s^-1
        Fixed exchange rate m -> f.
    r1m : float, optional
        Fixed macromolecular R1 (s^-1); default ``R1m = R1f`` (tied).
    sm : float, optional
        Macromolecular inversion factor; default ``protocol.bound_inversion``.
    bounds : dict, optional
        ``{name: (low, high)}`` for any of ``r1f, psr, sf, m0f``; others keep
        :data:`DEFAULT_BOUNDS`.
    max_iter : int
        Maximum Levenberg-Marquardt iterations.
    xtol, ftol : float
        Convergence when the accepted step is below ``xtol`` (relative to each parameter's
        scale) or the relative cost decrease below ``ftol``.
    chunk_size : int
        Voxels fitted together (memory ~ 1 kB per voxel).

    Returns
    -------
    SIRFitResult

    Raises
    ------
    ValueError
        If ``signal`` does not have ``protocol.n_samples`` rows, a bound name is unknown or a
        bound is empty.
    """
    y = np.asarray(signal, dtype=float)
    if y.ndim < 1 or y.shape[0] != protocol.n_samples:
        raise ValueError(
            f"signal must have shape (n_samples={protocol.n_samples}, ...), got {y.shape} for protocol {protocol.name!r}"
        )
    merged = dict(DEFAULT_BOUNDS)
    for name, value in (bounds or {}).items():
        if name not in merged:
            raise ValueError(f"unknown bound {name!r}; expected some of {PARAMETERS}")
        merged[name] = (float(value[0]), float(value[1]))
    lb = np.array([merged[p][0] for p in PARAMETERS])
    ub = np.array([merged[p][1] for p in PARAMETERS])
    if np.any(lb >= ub) or np.isnan(lb).any() or np.isnan(ub).any():
        raise ValueError(f"every bound needs low < high, got {merged}")
    if not (np.isfinite(kmf) and kmf > 0):
        raise ValueError(f"kmf (s^-1) must be positive, got {kmf!r}")
    if max_iter < 1 or chunk_size < 1:
        raise ValueError("max_iter and chunk_size must be >= 1")

    batch = y.shape[1:]
    data = y.reshape(y.shape[0], -1).T  # (N, n)
    valid = np.all(np.isfinite(data), axis=1)
    model = _Model(protocol.ti, protocol.td, protocol.bound_inversion if sm is None else float(sm), float(kmf), r1m)

    n_vox = data.shape[0]
    theta = np.full((n_vox, 4), np.nan)
    converged = np.zeros(n_vox, bool)
    residual = np.full(n_vox, np.nan)
    n_iter = np.zeros(n_vox, int)
    index = np.flatnonzero(valid)
    for start in range(0, index.size, chunk_size):
        sel = index[start : start + chunk_size]
        th, conv, res, it = _fit_chunk(model, data[sel], lb, ub, max_iter, xtol, ftol)
        theta[sel], converged[sel], residual[sel], n_iter[sel] = th, conv, res, it

    span = np.where(np.isfinite(ub - lb), ub - lb, 1.0)
    tol = 1e-9 * np.maximum(span, 1.0)
    at_bound = np.any((np.abs(theta - lb) <= tol) | (np.abs(theta - ub) <= tol), axis=1) & valid
    maps = [theta[:, k].reshape(batch) for k in range(4)]
    return SIRFitResult(
        *maps,
        converged=converged.reshape(batch),
        at_bound=at_bound.reshape(batch),
        residual=residual.reshape(batch),
        n_iter=n_iter.reshape(batch),
    )
