"""Solutions of chapter 01's exercises (signal models): noise-free curves, each in well under a second."""

from __future__ import annotations

import numpy as np

from ..estimate.lut import LookupTable, lut_t1
from ..protocols import MPnRAGEProtocol
from ..sequences import gre_signals, uni
from ..validate import require_integer, require_number
from . import answers
from ..notebook import compare_text, format_at_most, format_number, format_ratio

__all__ = ["uni_minimum", "b1_error", "inversion_mismatch"]


def _uni(t1: np.ndarray, protocol: MPnRAGEProtocol, b1: float = 1.0) -> np.ndarray:
    g = gre_signals(t1, protocol, b1)
    return uni(g[0], g[1])


@answers("t1_min", "s12_min", "shift_ms", "step_ms", "t1_end", "s12_end", "t1_end_read")
def uni_minimum(protocol: MPnRAGEProtocol, n_t1: int, n_t1_dense: int, t1_range: tuple[float, float] = (0.05, 5.0)):
    """Exercise 1: the minimum of ``S12(T1)`` on a plotting grid and on a denser one, and what the
    lookup table reads at the grid's end beyond it.

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        E.g. Marques' 7T protocol, whose curve turns back inside 0.05..5 s.
    n_t1, n_t1_dense : int
        Points of the chapter's grid and of the exercise's denser grid over ``t1_range`` (s).

    Returns
    -------
    dict of str
        ``t1_min`` (s) and ``s12_min`` at the dense grid's minimum; ``shift_ms``, how far the
        minimum moves from the coarse grid's (bounded by the coarse step, ``step_ms``); ``t1_end``
        (s), ``s12_end`` and ``t1_end_read`` (s): the last grid T1, its S12 and the lookup table's
        reading of it (:func:`qt1lib.estimate.lut.lut_t1`, Marques et al. 2010): a T1 beyond the
        branch reads as a shorter one.
    """
    n_t1 = require_integer("n_t1", n_t1, 3)
    n_t1_dense = require_integer("n_t1_dense", n_t1_dense, 3)
    lo, hi = (require_number("t1_range (s)", t, low=0, low_inclusive=False) for t in t1_range)
    minima = {}
    for n in (n_t1, n_t1_dense):
        t1 = np.linspace(lo, hi, n)
        s = _uni(t1, protocol)
        minima[n] = (float(LookupTable.from_curve(t1, s).t1.max()), float(s.min()))
    s_end = float(_uni(np.array([hi]), protocol)[0])
    t1_min, s_min = minima[n_t1_dense]
    return {
        "t1_min": format_number(t1_min, 2, "s"),
        "s12_min": format_number(s_min, 3),
        "shift_ms": format_at_most(1e3 * abs(t1_min - minima[n_t1][0]), 1, "ms"),
        "step_ms": format_number(1e3 * (hi - lo) / (n_t1 - 1), 1, "ms"),
        "t1_end": format_number(hi, 1, "s"),
        "s12_end": format_number(s_end, 3),
        "t1_end_read": format_number(float(lut_t1(np.array([s_end]), protocol)[0]), 2, "s"),
    }


@answers("t1_read", "error_pct", "t1_corrected", "error_ratio")
def b1_error(protocol: MPnRAGEProtocol, t1: float, b1: float, t1_reference: float, b1_reference: float):
    """Exercise 2: the lookup-table T1 of a voxel whose B1+ the table ignores, against the chapter's probe.

    Noise-free ``S12`` at (``t1``, ``b1``) read with the nominal-B1 table and with the B1-corrected one
    (Marques & Gruetter 2013).

    Returns
    -------
    dict of str
        ``t1_read`` (s), ``error_pct`` (signed, % of ``t1``), ``t1_corrected`` (s) and
        ``error_ratio``: the relative error over that of the chapter's probe (``t1_reference``,
        ``b1_reference``), in words (:func:`qt1lib.notebook.format_ratio`).
    """
    def read(t, b):
        s = _uni(np.array([t]), protocol, b)
        return float(lut_t1(s, protocol)[0]), float(lut_t1(s, protocol, b1=b)[0])

    t1 = require_number("t1 (s)", t1, low=0, low_inclusive=False)
    ignored, corrected = read(t1, require_number("b1", b1, low=0, low_inclusive=False))
    ref_ignored, _ = read(t1_reference, b1_reference)
    error, ref_error = (ignored - t1) / t1, (ref_ignored - t1_reference) / t1_reference
    return {
        "t1_read": format_number(ignored, 3, "s"),
        "error_pct": format_number(100 * error, 1, "%", signed=True),
        "t1_corrected": format_number(corrected, 3, "s"),
        "error_ratio": format_ratio(abs(error / ref_error)) if ref_error and error else "not comparable (no error)",
    }


@answers("t1_read", "error_pct", "direction", "reason")
def inversion_mismatch(protocol: MPnRAGEProtocol, t1: float, assumed_efficiency: float):
    """Exercise 3: data made with the protocol's inversion efficiency, read by a table that assumes another.

    Returns
    -------
    dict of str
        ``t1_read`` (s), ``error_pct`` (signed, % of ``t1``), ``direction``: "overestimates",
        "underestimates" or "reads exactly" (at the printed precision, :func:`qt1lib.notebook.compare_text`),
        and ``reason``, a clause that says why from the two efficiencies.
    """
    t1 = require_number("t1 (s)", t1, low=0, low_inclusive=False)
    wrong = protocol.with_changes(inversion_efficiency=require_number(
        "assumed_efficiency", assumed_efficiency, low=0, low_inclusive=False, high=1))
    read = float(lut_t1(_uni(np.array([t1]), protocol), wrong)[0])
    more = wrong.inversion_efficiency > protocol.inversion_efficiency
    reason = ("the data start their recovery {} inverted than the table expects, so they look {} recovered, as a "
              "{} T1 would").format(*(("less", "further", "shorter") if more else ("more", "less", "longer")))
    return {
        "t1_read": format_number(read, 3, "s"),
        "error_pct": format_number(100 * (read - t1) / t1, 1, "%", signed=True),
        "direction": compare_text(read, t1, "overestimates", "underestimates", "reads exactly", digits=3),
        "reason": reason,
    }
