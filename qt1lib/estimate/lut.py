"""Point-estimate T1 from MP2RAGE combinations by lookup table (Marques et al. 2010).

The combination ``S = S_1j(T1)`` of a protocol (:func:`qt1lib.sequences.uni`) is simulated on a
T1 grid; on its monotonic branch it is inverted by interpolation (Marques et al. 2010,
NeuroImage 49:1271, section "T1 mapping"; ``T1estimateMP2RAGE.m`` of
JosePMarques/MP2RAGE-related-scripts). With a B1+ map, the table becomes two-dimensional,
``T1(S, B1)`` with the flip angles scaled by B1 (Marques & Gruetter 2013, PLoS One 8:e69294;
``T1B1correctpackage.m``): each voxel is inverted on the two B1 rows that bracket its B1 and
the two T1 values are interpolated linearly in B1.

Differences from Marques' scripts, on purpose: the default T1 grid is 1 ms (Marques: 50 ms,
linear interpolation), so that interpolation error stays far below noise; values of S beyond
the ends of the monotonic branch map to the T1 at that end (Marques pads the table with
S = +-0.5, which does the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..protocols import MPnRAGEProtocol
from ..sequences import gre_signals, uni

__all__ = ["LookupTable", "lut_t1", "DEFAULT_T1_GRID", "DEFAULT_B1_GRID"]

#: (start, stop, step) of the T1 grid (s): Marques' range 0.05..5 s, at 1 ms.
DEFAULT_T1_GRID = (0.05, 5.0, 0.001)
#: (start, stop, step) of the B1 grid of the 2-D table (relative B1+): covers 7T head B1 maps.
DEFAULT_B1_GRID = (0.3, 2.0, 0.01)


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


@lru_cache(maxsize=32)
def _tables(
    protocol: MPnRAGEProtocol,
    pair: tuple[int, int],
    t1_spec: tuple[float, float, float],
    b1_values: tuple[float, ...],
) -> tuple[LookupTable, ...]:
    t1 = _grid(t1_spec, "t1_grid")
    b1 = np.asarray(b1_values)
    g = gre_signals(t1[None, :], protocol, b1[:, None])  # (n_readouts, n_b1, n_t1)
    s = uni(g[pair[0] - 1], g[pair[1] - 1])
    return tuple(LookupTable.from_curve(t1, row) for row in s)


def lut_t1(
    s: np.ndarray,
    protocol: MPnRAGEProtocol,
    b1: np.ndarray | float | None = None,
    pair: tuple[int, int] = (1, 2),
    t1_grid: tuple[float, float, float] = DEFAULT_T1_GRID,
    b1_grid: tuple[float, float, float] = DEFAULT_B1_GRID,
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
        (table,) = _tables(protocol, (i, j), tuple(t1_grid), (1.0,))
        out = table(np.where(finite, s, 0.0))
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
            f"b1 spans [{b1.min():.3f}, {b1.max():.3f}], outside the table's b1_grid [{b1_nodes[0]}, {b1_nodes[-1]}]"
        )
    tables = _tables(protocol, (i, j), tuple(t1_grid), tuple(b1_nodes.tolist()))
    row = np.clip(np.searchsorted(b1_nodes, b1, side="right") - 1, 0, len(b1_nodes) - 2)
    weight = (b1 - b1_nodes[row]) / (b1_nodes[row + 1] - b1_nodes[row])
    t1 = np.full(s.shape, np.nan)
    s_ok = np.where(finite, s, 0.0)
    for r in np.unique(row):  # loop over table rows (B1 nodes), not voxels
        sel = row == r
        t1[sel] = (1 - weight[sel]) * tables[r](s_ok[sel]) + weight[sel] * tables[r + 1](s_ok[sel])
    return np.where(finite, t1, np.nan)
