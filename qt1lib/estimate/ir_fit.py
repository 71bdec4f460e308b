"""Mono-exponential inversion-recovery T1 fit of magnitude data (RD-NLS with polarity restoration).

Model (Barral et al. 2010, MRM 64:1057, Theory, magnitude data): ``|S(TI)| = |a + b exp(-TI/T1)|``.
Reduced-dimension non-linear least squares (RD-NLS): for a fixed T1 the model is linear in
``(a, b)``, so the cost is ``||y||^2 - ||P(T1) y||^2`` with ``P(T1)`` the projection onto
``span{1, exp(-TI/T1)}`` and only T1 is searched. Polarity restoration (Barral et al. 2010,
"RD-NLS-PR"): the magnitude hides the sign of the samples before the null; for each voxel every
sign pattern "the first k samples (in TI order) negative", k = 0..n, is tried and the best kept.
The T1 search is a log-spaced grid followed by a golden-section refinement between the grid
neighbours of the best point; everything is vectorised over voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IRFitResult", "fit_ir_rdnls"]

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class IRFitResult:
    """Maps of a mono-exponential IR fit, each of the data's batch shape.

    Attributes
    ----------
    t1 : ndarray
        T1 (s).
    a, b : ndarray
        Model coefficients of ``a + b exp(-TI/T1)`` (data units; ``b < 0`` for a recovery).
    n_negative : ndarray of int
        Number of leading samples (in TI order) restored to negative polarity.
    residual : ndarray
        Root-mean-square residual (data units).
    """

    t1: np.ndarray
    a: np.ndarray
    b: np.ndarray
    n_negative: np.ndarray
    residual: np.ndarray


def _orthonormal_basis(ti: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Orthonormal basis (..., n, 2) of span{1, exp(-ti/t1)} for each T1 in ``t1`` (...)."""
    ones = np.ones(t1.shape + ti.shape)
    e = np.exp(-ti / t1[..., None])
    q1 = ones / np.sqrt(ti.size)
    v = e - np.sum(e * q1, axis=-1, keepdims=True) * q1
    q2 = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)
    return np.stack([q1, q2], axis=-1)


def _cost_at(y_signed: np.ndarray, ti: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Residual sum of squares of the best (a, b) at per-voxel T1 (N,), y_signed (N, n)."""
    q = _orthonormal_basis(ti, t1)  # (N, n, 2)
    c = np.einsum("nk,nkj->nj", y_signed, q)
    return np.sum(y_signed**2, axis=1) - np.sum(c**2, axis=1)


def _refine(ys: np.ndarray, ti: np.ndarray, grid: np.ndarray, g: np.ndarray, n_refine: int):
    """Golden-section search of log T1 between the grid neighbours of index ``g`` (per voxel)."""
    left = np.log(grid[np.maximum(g - 1, 0)])
    right = np.log(grid[np.minimum(g + 1, grid.size - 1)])
    x1 = right - _GOLDEN * (right - left)
    x2 = left + _GOLDEN * (right - left)
    f1 = _cost_at(ys, ti, np.exp(x1))
    f2 = _cost_at(ys, ti, np.exp(x2))
    for _ in range(n_refine):
        go_left = f1 < f2  # the minimum lies in [left, x2], else in [x1, right]
        right = np.where(go_left, x2, right)
        left = np.where(go_left, left, x1)
        new_x = np.where(go_left, right - _GOLDEN * (right - left), left + _GOLDEN * (right - left))
        new_f = _cost_at(ys, ti, np.exp(new_x))
        x1, x2, f1, f2 = (
            np.where(go_left, new_x, x2),
            np.where(go_left, x1, new_x),
            np.where(go_left, new_f, f2),
            np.where(go_left, f1, new_f),
        )
    t1 = np.exp(0.5 * (left + right))
    return t1, _cost_at(ys, ti, t1)


def fit_ir_rdnls(
    signal: np.ndarray,
    inversion_times: np.ndarray,
    t1_range: tuple[float, float] = (0.01, 10.0),
    n_grid: int = 400,
    n_refine: int = 40,
    chunk_size: int = 8192,
) -> IRFitResult:
    """Fit ``|a + b exp(-TI/T1)|`` to magnitude IR data, voxel-wise and vectorised.

    Parameters
    ----------
    signal : ndarray, shape (n_ti, *batch)
        Magnitude images, one per inversion time. Voxels with NaN give NaN maps.
    inversion_times : array_like, shape (n_ti,)
        TI (s), > 0, at least 3 distinct values.
    t1_range : (float, float)
        Search interval for T1 (s). Default 0.01..10 s (brain tissue and CSF).
    n_grid : int
        Log-spaced grid points of the initial search.
    n_refine : int
        Golden-section iterations (each shrinks the bracket by 0.618).
    chunk_size : int
        Voxels processed together.

    Returns
    -------
    IRFitResult

    Raises
    ------
    ValueError
        For mismatched shapes, fewer than 3 TIs, non-positive TIs or an invalid ``t1_range``.
    """
    ti = np.asarray(inversion_times, dtype=float)
    y = np.asarray(signal, dtype=float)
    if ti.ndim != 1 or ti.size < 3 or np.unique(ti).size < 3:
        raise ValueError(f"inversion_times must be 1-D with at least 3 distinct values, got {ti!r}")
    if not np.all(np.isfinite(ti)) or np.any(ti <= 0):
        raise ValueError("inversion_times must be positive and finite (s)")
    if y.ndim < 1 or y.shape[0] != ti.size:
        raise ValueError(f"signal must have shape (n_ti={ti.size}, ...), got {y.shape}")
    lo, hi = float(t1_range[0]), float(t1_range[1])
    if not (0 < lo < hi and np.isfinite(hi)):
        raise ValueError(f"t1_range must satisfy 0 < low < high < inf, got {t1_range!r}")
    if n_grid < 3 or n_refine < 0 or chunk_size < 1:
        raise ValueError("n_grid must be >= 3, n_refine >= 0 and chunk_size >= 1")

    order = np.argsort(ti)
    ti_sorted = ti[order]
    batch = y.shape[1:]
    data = y.reshape(ti.size, -1)[order].T  # (N, n) in TI order
    n_vox, n = data.shape
    grid = np.geomspace(lo, hi, n_grid)
    basis = _orthonormal_basis(ti_sorted, grid)  # (G, n, 2)
    flat_basis = basis.transpose(1, 0, 2).reshape(n, -1)  # (n, G*2)

    t1 = np.full(n_vox, np.nan)
    a = np.full(n_vox, np.nan)
    b = np.full(n_vox, np.nan)
    n_neg = np.zeros(n_vox, int)
    rss = np.full(n_vox, np.nan)
    valid = np.flatnonzero(np.all(np.isfinite(data), axis=1))
    signs = np.where(np.arange(n)[None, :] < np.arange(n + 1)[:, None], -1.0, 1.0)  # (n+1, n)

    for start in range(0, valid.size, chunk_size):
        sel = valid[start : start + chunk_size]
        yc = np.abs(data[sel])
        best_cost = np.full(sel.size, np.inf)
        best_k = np.zeros(sel.size, int)
        t1c = np.full(sel.size, np.nan)
        for k in range(n + 1):
            ys = yc * signs[k]
            energy = np.sum((ys @ flat_basis).reshape(sel.size, -1, 2) ** 2, axis=-1)  # (M, G)
            t1k, cost = _refine(ys, ti_sorted, grid, np.argmax(energy, axis=1), n_refine)
            better = cost < best_cost
            best_cost = np.where(better, cost, best_cost)
            best_k = np.where(better, k, best_k)
            t1c = np.where(better, t1k, t1c)
        ys = yc * signs[best_k]
        design = np.stack([np.ones((sel.size, n)), np.exp(-ti_sorted / t1c[:, None])], axis=-1)  # (M, n, 2)
        gram = np.einsum("mki,mkj->mij", design, design)
        rhs = np.einsum("mki,mk->mi", design, ys)
        coefs = np.linalg.solve(gram, rhs[..., None])[..., 0]
        fit = np.einsum("mki,mi->mk", design, coefs)
        t1[sel], a[sel], b[sel], n_neg[sel] = t1c, coefs[:, 0], coefs[:, 1], best_k
        rss[sel] = np.sum((np.abs(fit) - yc) ** 2, axis=1)

    return IRFitResult(
        t1=t1.reshape(batch),
        a=a.reshape(batch),
        b=b.reshape(batch),
        n_negative=n_neg.reshape(batch),
        residual=np.sqrt(rss / n).reshape(batch),
    )
