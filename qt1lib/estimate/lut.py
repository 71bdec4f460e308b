"""Point-estimate T1 from MP2RAGE combinations by lookup table (Marques et al. 2010).

The combination ``S = S_1j(T1)`` of a protocol (:func:`qt1lib.sequences.uni`) is simulated on a
T1 grid; on its monotonic branch it is inverted by interpolation (Marques et al. 2010,
NeuroImage 49:1271, section "T1 mapping"; ``T1estimateMP2RAGE.m`` of
JosePMarques/MP2RAGE-related-scripts). With a B1+ map, the table becomes two-dimensional,
``T1(S, B1)`` with the flip angles scaled by B1 (Marques & Gruetter 2013, PLoS One 8:e69294;
``T1B1correctpackage.m``): here it is tabulated once per protocol on a regular grid and read
per voxel by one bilinear interpolation (:class:`BilinearTable`).

Differences from Marques' scripts, on purpose: the default T1 grid is 1 ms (Marques: 50 ms,
linear interpolation), so that interpolation error stays far below noise; values of S beyond
the ends of the monotonic branch map to the T1 at that end (Marques pads the table with
S = +-0.5, which does the same); the 2-D table's first axis is ``u = arcsin(2 S)`` rather than
S (:class:`BilinearTable` says why and what error that leaves).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..protocols import MPnRAGEProtocol
from ..sequences import gre_signals, uni

__all__ = ["LookupTable", "BilinearTable", "lut_t1", "DEFAULT_T1_GRID", "DEFAULT_B1_GRID", "DEFAULT_U_STEP"]

#: (start, stop, step) of the T1 grid (s): Marques' range 0.05..5 s, at 1 ms.
DEFAULT_T1_GRID = (0.05, 5.0, 0.001)
#: (start, stop, step) of the B1 grid of the 2-D table (relative B1+): covers 7T head B1 maps.
DEFAULT_B1_GRID = (0.3, 2.0, 0.01)
#: Step (rad) of the 2-D table's axis ``u = arcsin(2 S)``: about 6300 columns (8.6 MB with the
#: default grids); the error it leaves is measured in :class:`BilinearTable`.
DEFAULT_U_STEP = 5e-4


def _grid(spec: tuple[float, float, float], name: str) -> np.ndarray:
    start, stop, step = spec
    if not (0 < start < stop and step > 0):
        raise ValueError(f"{name} must be (start, stop, step) with 0 < start < stop and step > 0, got {spec!r}")
    return np.arange(start, stop + step / 2, step)


@dataclass(frozen=True)
class LookupTable:
    """The monotonic branch of ``S_ij(T1)`` at one B1, ready for inversion.

    Attributes
    ----------
    s : ndarray
        Combination values on the branch, increasing.
    t1 : ndarray
        T1 (s) at those values.
    """

    s: np.ndarray
    t1: np.ndarray

    @classmethod
    def from_curve(cls, t1: np.ndarray, s: np.ndarray) -> "LookupTable":
        """Keep the branch of ``s(t1)`` between its maximum and its minimum (Marques' rule)."""
        lo, hi = sorted((int(np.argmax(s)), int(np.argmin(s))))
        s_branch, t1_branch = s[lo : hi + 1], t1[lo : hi + 1]
        # Drop plateaus (e.g. S = 0.5 for very short T1, where both readouts have fully
        # recovered): there T1 is not identifiable, and np.interp needs strictly increasing S.
        v = s_branch if s_branch[-1] > s_branch[0] else -s_branch
        keep = np.r_[True, v[1:] > np.maximum.accumulate(v)[:-1] + 1e-12]
        s_branch, t1_branch = s_branch[keep], t1_branch[keep]
        order = np.argsort(s_branch)
        s_branch, t1_branch = s_branch[order], t1_branch[order]
        if len(s_branch) < 2:
            raise ValueError("the combination is constant over this T1 grid: T1 cannot be estimated")
        return cls(s_branch, t1_branch)

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """T1 (s) for combination values ``s``; beyond the branch, the T1 at its nearest end."""
        return np.interp(s, self.s, self.t1)


def _rows(
    protocol: MPnRAGEProtocol,
    pair: tuple[int, int],
    t1_spec: tuple[float, float, float],
    b1_values: tuple[float, ...],
) -> tuple[LookupTable, ...]:
    """The monotonic branch of ``S_ij(T1)`` at each B1 of ``b1_values``."""
    t1 = _grid(t1_spec, "t1_grid")
    b1 = np.asarray(b1_values)
    g = gre_signals(t1[None, :], protocol, b1[:, None])  # (n_readouts, n_b1, n_t1)
    s = uni(g[pair[0] - 1], g[pair[1] - 1])
    return tuple(LookupTable.from_curve(t1, row) for row in s)


@lru_cache(maxsize=32)
def _table_1d(protocol: MPnRAGEProtocol, pair: tuple[int, int], t1_spec: tuple[float, float, float]) -> LookupTable:
    """The 1-D table at nominal flip angles (B1 = 1), Marques et al. 2010."""
    return _rows(protocol, pair, t1_spec, (1.0,))[0]


@dataclass(frozen=True)
class BilinearTable:
    """The 2-D table ``T1(S, B1)`` on a regular grid in ``u = arcsin(2 S)`` and B1, read bilinearly.

    Row ``k`` (B1 node ``b1_start + k b1_step``) holds the 1-D table of Marques & Gruetter 2013
    (PLoS One 8:e69294) at that B1, :class:`LookupTable` of the branch, evaluated at
    ``u_start + m u_step``; beyond the row's branch, the T1 at its nearest end (the 1-D rule).
    A voxel's fractional indices follow arithmetically from its (u, B1), and T1 is the bilinear
    interpolation of the four surrounding nodes: no search per voxel.

    Why ``u`` and not S: for real signals ``S = Re(g1* g2) / (|g1|^2 + |g2|^2) = sin(2 phi) / 2``
    with ``phi = atan2(g2, g1)`` (Marques et al. 2010, eq. 3), so ``u = 2 phi`` is the angle of
    the readout pair, smooth in T1 where S flattens towards +-0.5 (short T1, where both readouts
    have recovered; long T1 at 3T). A uniform S grid is too coarse there: at a step of 5e-5 in S
    (20 000 columns) the error still reached 15-19 ms at S -> -0.5 (T1 4.3-4.9 s, B1 1.2-1.5,
    Marques' 3T and 7T protocols), against below 1 ms on the ``u`` grid.

    Error measured against the forward model (``tests/test_lut.py`` asserts the bounds), over
    T1 0.05-5 s and B1 0.5-1.5 (off the 0.01 nodes), on each row's monotonic branch, protocols
    Marques 3T / 7T and the seed 7T (S_12, S_13), ``u_step = 5e-4``:

    * where T1 is identifiable, ``|dS/dT1| >= 0.02 /s`` (T1 noise below 0.5 s at an S noise of
      0.01) and T1 < 4.9 s: max ``|T1_table - T1|`` 0.33 ms (seed 7T at T1 4.9 s, B1 1.49; the
      per-voxel inversion of the two bracketing rows this table replaced: 0.33 ms); Marques 3T / 7T
      0.06 ms (rows: 0.04 ms). With ``|dS/dT1| >= 0.01 /s``: 0.67 ms (rows: 0.29 ms), at T1 0.15 s.
    * the error is largest where ``|dS/dT1| -> 0``, the steep ends of T1(S): short T1 (0.05-0.15 s,
      S at its maximum 0.49-0.5, where T1 is not identifiable) up to 47 ms on the seed protocol's
      plateau (rows: 21 ms) and 7 ms at 3T / 7T (rows: 5-7 ms); and within 0.1 s of the T1 grid's
      end (5 s) at B1 near 1.5, 19 ms for both methods (a neighbouring row reads the end, 5 s).
    * in S units (``|dT1| |dS/dT1|``) every error on the branch is below 1.2e-3, the same as
      the row inversion's and far below the S noise of a voxel (about 0.01 at the seed's 0.5 %).

    Between the B1 nodes the error is mostly that of the linear interpolation in B1, which the
    row inversion shares; the ``u`` axis adds little (at 1e-3 rad, the 0.01 /s figure was 2.4 ms).

    Attributes
    ----------
    u_start, u_step : float
        First node and step (rad) of the ``u = arcsin(2 S)`` axis.
    b1_start, b1_step : float
        First node and step of the B1 axis (relative B1+).
    t1 : ndarray, shape (n_b1, n_u)
        T1 (s) at the nodes.
    """

    u_start: float
    u_step: float
    b1_start: float
    b1_step: float
    t1: np.ndarray

    @classmethod
    def from_rows(cls, rows: tuple[LookupTable, ...], b1_nodes: np.ndarray, u_step: float) -> "BilinearTable":
        """Evaluate each row's branch on a common ``u`` grid spanning all the branches."""
        if not u_step > 0:
            raise ValueError(f"u_step must be > 0 (rad), got {u_step!r}")
        u_rows = [np.arcsin(np.clip(2 * row.s, -1.0, 1.0)) for row in rows]
        lo = min(u[0] for u in u_rows)
        hi = max(u[-1] for u in u_rows)
        u_nodes = lo + u_step * np.arange(int(np.ceil((hi - lo) / u_step)) + 1)
        t1 = np.stack([np.interp(u_nodes, u, row.t1) for u, row in zip(u_rows, rows)])
        b1_step = (b1_nodes[-1] - b1_nodes[0]) / (len(b1_nodes) - 1)
        return cls(float(lo), float(u_step), float(b1_nodes[0]), float(b1_step), t1)

    def __call__(self, s: np.ndarray, b1: np.ndarray) -> np.ndarray:
        """T1 (s) at finite combinations ``s`` in [-0.5, 0.5] and ``b1`` inside the nodes (same shape)."""
        n_b1, n_u = self.t1.shape
        x = np.multiply(s, 2.0)
        np.clip(x, -1.0, 1.0, out=x)
        np.arcsin(x, out=x)
        x -= self.u_start
        x *= 1.0 / self.u_step
        np.clip(x, 0.0, n_u - 1, out=x)  # beyond every branch: the end columns, i.e. the end T1
        i = x.astype(np.intp)
        np.minimum(i, n_u - 2, out=i)
        x -= i  # weight of column i + 1
        y = (b1 - self.b1_start) * (1.0 / self.b1_step)
        np.clip(y, 0.0, n_b1 - 1, out=y)
        j = y.astype(np.intp)
        np.minimum(j, n_b1 - 2, out=j)
        y -= j  # weight of row j + 1
        j *= n_u
        j += i  # flat index of node (j, i)
        flat = self.t1.ravel()
        t00 = flat.take(j)
        t01 = flat.take(j + 1)
        j += n_u
        t10 = flat.take(j)
        t11 = flat.take(j + 1)
        t01 -= t00
        t01 *= x
        t00 += t01  # row j at u
        t11 -= t10
        t11 *= x
        t10 += t11  # row j + 1 at u
        t10 -= t00
        t10 *= y
        t00 += t10
        return t00


@lru_cache(maxsize=32)
def _table_2d(
    protocol: MPnRAGEProtocol,
    pair: tuple[int, int],
    t1_spec: tuple[float, float, float],
    b1_spec: tuple[float, float, float],
    u_step: float,
) -> BilinearTable:
    """The 2-D table of Marques & Gruetter 2013 on the B1 grid ``b1_spec``, built once per protocol."""
    b1_nodes = _grid(b1_spec, "b1_grid")
    return BilinearTable.from_rows(_rows(protocol, pair, t1_spec, tuple(b1_nodes.tolist())), b1_nodes, u_step)


def lut_t1(
    s: np.ndarray,
    protocol: MPnRAGEProtocol,
    b1: np.ndarray | float | None = None,
    pair: tuple[int, int] = (1, 2),
    t1_grid: tuple[float, float, float] = DEFAULT_T1_GRID,
    b1_grid: tuple[float, float, float] = DEFAULT_B1_GRID,
    u_step: float = DEFAULT_U_STEP,
) -> np.ndarray:
    """Lookup-table T1 (s) from an MP2RAGE combination, optionally B1-corrected.

    Parameters
    ----------
    s : array_like
        Combination ``S_ij`` (e.g. UNI = S_12), in [-0.5, 0.5]. NaN voxels give NaN.
    protocol : MPnRAGEProtocol
        Acquisition; all its readouts are simulated.
    b1 : array_like or float, optional
        Relative B1+ per voxel (broadcast with ``s``), inside ``b1_grid``. ``None``: nominal
        flip angles (B1 = 1), Marques et al. 2010. Given: the 2-D table of Marques & Gruetter 2013.
    pair : (int, int)
        1-based readouts ``(i, j)`` of the combination, e.g. ``(1, 3)`` for S_13 of MP3RAGE.
    t1_grid, b1_grid : (start, stop, step)
        Grids of the table, in s and relative units.
    u_step : float
        Step (rad) of the 2-D table's axis ``u = arcsin(2 S)`` (:class:`BilinearTable`); used only
        with ``b1``.

    Returns
    -------
    ndarray
        T1 (s), shape of ``np.broadcast(s, b1)``.

    Raises
    ------
    ValueError
        If ``|s| > 0.5``, ``b1`` is not finite and positive or lies outside ``b1_grid``, the
        readouts of ``pair`` do not exist, or the shapes do not broadcast.
    """
    s = np.asarray(s, dtype=float)
    finite = np.isfinite(s)
    if np.any(np.abs(s[finite]) > 0.5 + 1e-9):
        raise ValueError(f"s must lie in [-0.5, 0.5] (an MP2RAGE combination), got max |s| = {np.abs(s[finite]).max():.4g}")
    i, j = pair
    if not (1 <= i <= protocol.n_readouts and 1 <= j <= protocol.n_readouts and i != j):
        raise ValueError(f"pair {pair!r} names readouts that protocol {protocol.name!r} (1..{protocol.n_readouts}) lacks")
    if b1 is None:
        out = _table_1d(protocol, (i, j), tuple(t1_grid))(np.where(finite, s, 0.0))
        return np.where(finite, out, np.nan)

    b1 = np.asarray(b1, dtype=float)
    try:
        s, b1 = np.broadcast_arrays(s, b1)
    except ValueError:
        raise ValueError(f"s of shape {s.shape} and b1 of shape {b1.shape} do not broadcast") from None
    finite = np.isfinite(s)
    if np.isnan(b1).any() or np.any(b1 <= 0):
        raise ValueError("b1 must be finite and > 0 everywhere; mask NaN or non-positive B1 voxels first")
    b1_nodes = _grid(b1_grid, "b1_grid")
    if b1.min() < b1_nodes[0] or b1.max() > b1_nodes[-1]:
        raise ValueError(
            f"b1 spans [{b1.min():.3f}, {b1.max():.3f}], outside the table's b1_grid [{b1_nodes[0]:.6g}, {b1_nodes[-1]:.6g}]"
        )
    table = _table_2d(protocol, (i, j), tuple(t1_grid), tuple(b1_grid), float(u_step))
    out = table(np.atleast_1d(np.where(finite, s, 0.0)), np.atleast_1d(b1)).reshape(s.shape)
    out[~finite] = np.nan
    return out
