"""Interactive figures of the book: Plotly figures whose sliders swap in curves computed at build time.

A page of the book is static: no kernel answers a slider. Every curve a slider can show is therefore
computed when the chapter runs, with qt1lib's own models, at every point of the grid of slider values
(:class:`Slider`), and the page only swaps data in. Each slider's steps use Plotly's ``"skip"`` method
(they move the slider and call nothing); a short script installed with the figure
(:data:`GRID_SCRIPT`) reads the positions of all sliders on every ``plotly_sliderchange`` event and
restyles the curves with that grid point's values, which the figure carries in ``layout.meta``
(:func:`add_grid_sliders`). Any number of sliders combine this way, which Plotly's own slider
methods cannot do: a step of theirs sets one fixed state and does not know where the other sliders
stand.

The figures work offline. :class:`BookFigure` writes the figure's HTML without plotly.js; the book
ships one copy of the plotly.js that comes with the installed plotly package and adds it to the pages
that show a figure (:mod:`qt1lib.book_sphinx`), so no page asks a CDN for anything.

The two figures of the book:

* :func:`uni_explorer` (chapter 1): the MP2RAGE / MP3RAGE combinations against T1 and the error of the
  ``S_12`` lookup table, with sliders for B1+ and the inversion efficiency of the data;
* :func:`mt_bias_explorer` (chapter 3): the MT bias of a single-pool MP2RAGE lookup table against the
  pool size ratio, with sliders for the free-pool inversion efficiency of the data and B1+.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .estimate.apparent import apparent_single_pool_t1
from .estimate.lut import lut_t1
from .protocols import MPnRAGEProtocol
from .sequences import gre_signals, uni
from .sequences.twopool import TwoPoolTissue

__all__ = [
    "GRID_META_KEY",
    "GRID_SCRIPT",
    "PLOTLY_CONFIG",
    "Slider",
    "BookFigure",
    "add_grid_sliders",
    "grid_curves",
    "uni_explorer",
    "mt_bias_explorer",
]

#: Key of ``layout.meta`` under which a figure carries its grid of curves (:func:`add_grid_sliders`).
GRID_META_KEY = "qt1_grid"

#: Installed with every figure (Plotly's ``post_script``, ``{plot_id}`` is the figure's div): on a
#: slider's move, the grid point's flat index (C order over the sliders) selects the curves' new y.
GRID_SCRIPT = """
var gd = document.getElementById('{plot_id}');
var grid = gd.layout.meta && gd.layout.meta.%s;
if (grid) {
  gd.on('plotly_sliderchange', function () {
    var index = 0;
    gd.layout.sliders.forEach(function (slider, k) { index = index * grid.shape[k] + slider.active; });
    Plotly.restyle(gd, {y: grid.y[index]}, grid.traces);
  });
}
""" % GRID_META_KEY

#: Plotly.js configuration of the book's figures: no Plotly logo, no link to Plotly's cloud, no zoom on
#: scroll (the page scrolls), the figure follows the width of its column.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False, "showSendToCloud": False,
                 "modeBarButtonsToRemove": ["zoom2d", "pan2d", "select2d", "lasso2d", "zoomIn2d", "zoomOut2d",
                                            "autoScale2d", "resetScale2d"]}

_DIV_ID = re.compile(r"[A-Za-z][\w-]*")
#: Curve colours: matplotlib's first tab10 colours, those of the chapters' static figures.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")


@dataclass(frozen=True)
class Slider:
    """One slider of an interactive figure: the grid of values it steps through.

    Parameters
    ----------
    label : str
        What the slider sets, shown before its value (e.g. ``"B1+"``).
    values : sequence of float
        The grid, strictly increasing and finite; the figure holds the curves at every value.
    default : float
        The value the figure opens at; must be one of ``values`` (to within 1e-9).
    fmt : str
        Format spec of the value shown on the slider (e.g. ``".2f"``).

    Raises
    ------
    ValueError
        When ``values`` is empty, not finite or not strictly increasing, or ``default`` is not one of them.
    """

    label: str
    values: tuple[float, ...]
    default: float
    fmt: str = ".2f"

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=float)
        if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(f"slider {self.label!r}: values must be a non-empty 1-D list of finite numbers, "
                             f"got {self.values!r}")
        if np.any(np.diff(values) <= 0):
            raise ValueError(f"slider {self.label!r}: values must be strictly increasing, got {self.values!r}")
        if not np.any(np.isclose(values, self.default, rtol=0, atol=1e-9)):
            raise ValueError(f"slider {self.label!r}: default {self.default!r} is not one of the values "
                             f"{self.values!r}")
        object.__setattr__(self, "values", tuple(float(v) for v in values))
        object.__setattr__(self, "default", float(self.default))

    @classmethod
    def grid(cls, label: str, low: float, high: float, step: float, default: float, fmt: str | None = None) -> "Slider":
        """A slider over ``low, low + step, ...`` up to ``high`` (included to within a millionth of a step),
        opening at the grid value nearest ``default``; the values are rounded to the decimals of ``step``,
        which the slider shows unless ``fmt`` is given.

        Raises
        ------
        ValueError
            When ``step`` is not positive or ``high`` is below ``low``.
        """
        if not step > 0 or not high >= low:
            raise ValueError(f"slider {label!r}: need step > 0 and high >= low, got low={low!r}, high={high!r}, "
                             f"step={step!r}")
        decimals = next(d for d in range(12) if abs(round(step, d) - step) < 1e-12 * max(1.0, step))
        values = np.round(low + step * np.arange(int(np.floor((high - low) / step + 1e-6)) + 1), decimals)
        nearest = float(values[np.argmin(np.abs(values - default))])
        return cls(label, tuple(values), nearest, fmt or f".{decimals}f")

    @property
    def default_index(self) -> int:
        """Position of :attr:`default` in :attr:`values`."""
        return int(np.argmin(np.abs(np.asarray(self.values) - self.default)))


def _json_values(y: np.ndarray, decimals: int) -> list:
    """``y`` rounded to ``decimals`` as nested lists, with None (JSON null: a gap) where it is not finite."""
    rounded = np.round(np.asarray(y, dtype=float), decimals)
    return np.where(np.isfinite(rounded), rounded, None).tolist()


def add_grid_sliders(fig: go.Figure, sliders: Sequence[Slider], traces: Sequence[int], curves: Sequence[np.ndarray],
                     decimals: int | Sequence[int] = 4, offset: int = 62, spacing: int = 78) -> go.Figure:
    """Give ``fig`` one slider per grid axis that swaps in the y values of ``traces`` (:data:`GRID_SCRIPT`).

    The traces open at the grid point of the sliders' defaults. The grid is stored, rounded to
    ``decimals``, in ``fig.layout.meta[GRID_META_KEY]`` as ``{"shape", "traces", "y"}``, with ``y[i][k]`` the
    y values of ``traces[k]`` at the grid point of flat index ``i`` (C order over ``sliders``). The sliders
    are stacked below the plot, the first one on top, in a bottom margin made to hold them.

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
        The figure, with its traces and its height (``layout.height``, px); modified in place and returned.
    sliders : sequence of Slider
        The grid's axes, in the order of the first axes of each curve.
    traces : sequence of int
        Indices (into ``fig.data``) of the traces the sliders update; each keeps its x.
    curves : sequence of ndarray
        One per trace of ``traces``, of shape ``(*(len(s.values) for s in sliders), n_k)``: the trace's
        ``n_k`` y values at each grid point.
    decimals : int or sequence of int
        Decimals of y kept in the page (its weight grows with them), for all curves or one per curve.
    offset, spacing : int
        Distance (px) from the bottom of the plot to the top of the first slider (room for the x axis's
        title), and from one slider to the next (its value, rail and step labels).

    Returns
    -------
    plotly.graph_objects.Figure
        ``fig``.

    Raises
    ------
    ValueError
        When no slider is given, a curve's shape does not match the sliders, the numbers of traces and
        curves differ, a trace index is not in ``fig.data``, or the figure has no height or no room for
        its plot.
    """
    shape = tuple(len(s.values) for s in sliders)
    curves = [np.asarray(c, dtype=float) for c in curves]
    if not sliders:
        raise ValueError("sliders: give at least one Slider")
    if len(curves) != len(traces):
        raise ValueError(f"curves: one per trace, got {len(curves)} curves for {len(traces)} traces")
    decimals = [decimals] * len(curves) if isinstance(decimals, (int, np.integer)) else list(decimals)
    if len(decimals) != len(curves):
        raise ValueError(f"decimals: one number, or one per curve ({len(curves)}), got {len(decimals)}")
    for k, c in enumerate(curves):
        if c.ndim != len(shape) + 1 or c.shape[:-1] != shape:
            raise ValueError(f"curves[{k}] must have shape {shape} + (n,) for sliders of {shape} values, got {c.shape}")
    if any(not 0 <= t < len(fig.data) for t in traces):
        raise ValueError(f"traces {list(traces)} must index the figure's {len(fig.data)} traces")
    bottom = offset + spacing * len(sliders)
    if fig.layout.height is None:
        raise ValueError("fig.layout.height must be set (px): the sliders are placed below the plot in pixels")
    plot_height = fig.layout.height - (fig.layout.margin.t or 0) - bottom
    if plot_height < 100:
        raise ValueError(f"fig.layout.height = {fig.layout.height} px leaves {plot_height} px for the plot above "
                         f"{len(sliders)} sliders; make it taller")
    default = tuple(s.default_index for s in sliders)
    for trace, c, d in zip(traces, curves, decimals):
        fig.data[trace].y = _json_values(c[default], d)
    layout_sliders = []
    for k, slider in enumerate(sliders):
        layout_sliders.append({
            "active": slider.default_index,
            "currentvalue": {"prefix": f"{slider.label} = ", "font": {"size": 13}},
            "steps": [{"method": "skip", "label": format(v, slider.fmt), "args": []} for v in slider.values],
            "x": 0.0, "len": 1.0, "xanchor": "left", "y": -(offset + spacing * k) / plot_height, "yanchor": "top",
            "pad": {"t": 0, "b": 0, "l": 0, "r": 0}, "font": {"size": 9},
        })
    flat = [c.reshape(-1, c.shape[-1]) for c in curves]
    grid = {"shape": list(shape), "traces": list(traces),
            "y": [[_json_values(c[i], d) for c, d in zip(flat, decimals)] for i in range(int(np.prod(shape)))]}
    fig.update_layout(sliders=layout_sliders, meta={GRID_META_KEY: grid}, margin={"b": bottom})
    return fig


def grid_curves(fig: go.Figure, index: Sequence[int]) -> list[np.ndarray]:
    """The curves that ``fig`` shows with its sliders at the given steps, as :data:`GRID_SCRIPT` selects them.

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
        A figure of :func:`add_grid_sliders`.
    index : sequence of int
        The step of each slider (0-based, in the order of ``fig.layout.sliders``).

    Returns
    -------
    list of ndarray
        The y values of each updated trace (in the order of the grid's ``traces``); NaN where the page
        shows a gap.
    """
    grid = fig.layout.meta[GRID_META_KEY]
    flat = int(np.ravel_multi_index(tuple(index), tuple(grid["shape"])))
    return [np.array([np.nan if v is None else v for v in curve], dtype=float) for curve in grid["y"][flat]]


@dataclass(frozen=True)
class BookFigure:
    """A Plotly figure as the book shows it: HTML without plotly.js, which the book ships once.

    ``glue(key, BookFigure(fig, "fig-01-..."))`` stores the HTML (``text/html``) for a ``{glue:figure}``
    and a short plain-text note for readers of the raw notebook. The page loads plotly.js from the
    book's ``_static/plotly/`` (:mod:`qt1lib.book_sphinx`), not from a CDN.

    Parameters
    ----------
    figure : plotly.graph_objects.Figure
        The figure.
    div_id : str
        Id of the figure's ``<div>``, unique in the page (a fixed id keeps the build reproducible):
        a letter, then letters, digits, ``-`` or ``_``.
    description : str
        What the figure shows, for the plain-text output.

    Raises
    ------
    ValueError
        When ``div_id`` is not a valid id.
    """

    figure: go.Figure
    div_id: str
    description: str = "interactive figure"

    def __post_init__(self) -> None:
        if not _DIV_ID.fullmatch(self.div_id):
            raise ValueError(f"div_id {self.div_id!r} must be a letter followed by letters, digits, '-' or '_'")

    def to_html(self) -> str:
        """The figure's ``<div>`` and the script that draws it (and installs :data:`GRID_SCRIPT`), without
        plotly.js."""
        return self.figure.to_html(include_plotlyjs=False, include_mathjax=False, full_html=False,
                                   config=PLOTLY_CONFIG, div_id=self.div_id, post_script=GRID_SCRIPT,
                                   default_width="100%")

    def _repr_html_(self) -> str:
        return f'<div class="qt1-interactive">{self.to_html()}</div>'

    def __repr__(self) -> str:
        return f"<{self.description}: interactive in the book's HTML pages (plotly.js)>"


def _layout(fig: go.Figure, height: int) -> None:
    """The book's layout of an explorer (before :func:`add_grid_sliders`): no title (the book's caption
    says what the figure shows), the legend above the plot with room for a few lines on a phone, no
    drag-to-zoom (on a phone a drag scrolls the page), hover labels on the x value."""
    fig.update_layout(
        height=height, template="plotly_white", dragmode=False, hovermode="x unified",
        margin={"l": 55, "r": 15, "t": 75},
        legend={"orientation": "h", "x": 0.0, "y": 1.02, "xanchor": "left", "yanchor": "bottom", "font": {"size": 11}},
    )
    fig.update_xaxes(fixedrange=True)
    fig.update_yaxes(fixedrange=True)


def uni_explorer(protocol: MPnRAGEProtocol, t1: np.ndarray, b1: Slider, efficiency: Slider,
                 error_limit: float = 50.0) -> go.Figure:
    """Chapter 1's explorer: the combinations ``S_1j`` of ``protocol`` against T1, and the error of the
    ``S_12`` lookup table, with sliders for B1+ and for the inversion efficiency of the data.

    Top: every combination ``S_1j`` (Marques et al. 2010, eq. 3; :func:`qt1lib.sequences.uni`) of the
    single-pool steady-state signals (:func:`qt1lib.sequences.gre_signals`) at the sliders' B1+ and
    efficiency, over the same curves at the protocol's nominal state (B1+ = 1, its own efficiency),
    dotted. Bottom: ``100 (T1_LUT - T1) / T1`` of the nominal ``S_12`` table
    (:func:`qt1lib.estimate.lut.lut_t1` without B1, the protocol's efficiency), the error of an estimator
    that ignores B1+ and assumes the protocol's efficiency; beyond the table's monotonic branch it reads
    the branch's end.

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        The acquisition; the table assumes its ``inversion_efficiency``.
    t1 : ndarray
        T1 values (s) of the x axis, positive and increasing.
    b1 : Slider
        Relative B1+ of the data (> 0); the table ignores it.
    efficiency : Slider
        Inversion efficiency of the data, in (0, 1].
    error_limit : float
        Half-range (%) of the error axis.

    Returns
    -------
    plotly.graph_objects.Figure
        Two rows, sliders ``[b1, efficiency]``; the traces of the combinations at the sliders' values come
        first (one per pair of ``protocol.pairs``), then the lookup table's error, then the nominal curves.
    """
    t1 = np.asarray(t1, dtype=float)
    if t1.ndim != 1 or t1.size < 2 or np.any(t1 <= 0) or np.any(np.diff(t1) <= 0):
        raise ValueError(f"t1 must be a 1-D increasing array of positive T1 values (s), got shape {t1.shape}")
    if not all(0 < e <= 1 for e in efficiency.values):
        raise ValueError(f"efficiency values must lie in (0, 1], got {efficiency.values}")
    pairs = protocol.pairs
    b1_values = np.asarray(b1.values)
    y = np.empty((len(b1.values), len(efficiency.values), len(pairs) + 1, t1.size))
    for j, eff in enumerate(efficiency.values):
        data = protocol.with_changes(inversion_efficiency=eff)
        gre = gre_signals(t1[None, :], data, b1_values[:, None])
        for k, (a, c) in enumerate(pairs):
            y[:, j, k] = uni(gre[a - 1], gre[c - 1])
        y[:, j, -1] = 100.0 * (lut_t1(uni(gre[0], gre[1]), protocol) / t1 - 1.0)
    nominal = gre_signals(t1, protocol)

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45])
    for k, (a, c) in enumerate(pairs):
        colour = _COLOURS[k % len(_COLOURS)]
        fig.add_trace(go.Scatter(x=t1, name=f"S<sub>{a}{c}</sub>", line={"color": colour, "width": 2.5},
                                 hovertemplate="%{y:.3f}"), row=1, col=1)
    fig.add_trace(go.Scatter(x=t1, name="error of the S<sub>12</sub> table", line={"color": "#d62728", "width": 2.5},
                             hovertemplate="%{y:.1f} %"), row=2, col=1)
    for k, (a, c) in enumerate(pairs):  # one legend entry for the nominal curves
        fig.add_trace(go.Scatter(x=t1, y=_json_values(uni(nominal[a - 1], nominal[c - 1]), 3), legendgroup="nominal",
                                 name=f"dotted: B1+ = 1, η = {protocol.inversion_efficiency:.2f}", showlegend=k == 0,
                                 line={"color": _COLOURS[k % len(_COLOURS)], "width": 1.2, "dash": "dot"},
                                 hoverinfo="skip"), row=1, col=1)
    fig.add_hline(y=0.0, line={"color": "grey", "width": 1}, row=2, col=1)
    _layout(fig, height=660)
    # S to 0.001 and the error to 0.1 %: well under a pixel of their panels (about 200 px high)
    add_grid_sliders(fig, [b1, efficiency], list(range(len(pairs) + 1)), list(np.moveaxis(y, 2, 0)),
                     decimals=[3] * len(pairs) + [1])
    fig.update_yaxes(title_text="S<sub>1j</sub>", range=[-0.52, 0.52], row=1, col=1)
    fig.update_yaxes(title_text="T1 error of the table (%)", range=[-error_limit, error_limit], row=2, col=1)
    fig.update_xaxes(title_text="true T1 (s)", row=2, col=1)
    return fig


def mt_bias_explorer(tissues: Sequence[TwoPoolTissue], protocol: MPnRAGEProtocol, psr: np.ndarray,
                     efficiency: Slider, b1: Slider) -> go.Figure:
    """Chapter 3's explorer: the MT bias of a single-pool MP2RAGE lookup table against the pool size
    ratio, with sliders for the free-pool inversion efficiency of the data and for B1+.

    For each tissue, ``1e3 (T1_app - 1/R1f)`` (ms) with ``T1_app`` the T1 that the B1-corrected single-pool
    table on ``S_12`` reads from two-pool data (:func:`qt1lib.estimate.apparent.apparent_single_pool_t1`:
    the tissue's ``R1f``, ``R1m`` and ``kmf``, the PSR of the x axis, the cohort's hyperbolic-secant
    inversion of the bound pool at that B1+), while the table assumes the protocol's
    ``inversion_efficiency``. At the protocol's efficiency the curves are the MT bias alone; a better
    inversion in the data lengthens the T1 read, against MT. A marker shows each tissue at its own PSR.

    Parameters
    ----------
    tissues : sequence of TwoPoolTissue
        The tissues, one curve each (their ``r1f``, ``r1m``, ``kmf``, ``psr``, ``name``).
    protocol : MPnRAGEProtocol
        The acquisition; the table assumes its ``inversion_efficiency``.
    psr : ndarray
        PSR values (M0m / M0f) of the x axis, non-negative and increasing.
    efficiency : Slider
        Free-pool inversion efficiency of the data, in (0, 1].
    b1 : Slider
        Relative B1+ of the data (the table is B1-corrected at that B1+: a perfect B1 map).

    Returns
    -------
    plotly.graph_objects.Figure
        Sliders ``[efficiency, b1]``; one curve per tissue, then one marker per tissue.
    """
    psr = np.asarray(psr, dtype=float)
    if psr.ndim != 1 or psr.size < 2 or np.any(psr < 0) or np.any(np.diff(psr) <= 0):
        raise ValueError(f"psr must be a 1-D increasing array of non-negative pool size ratios, got {psr!r}")
    if not all(0 < e <= 1 for e in efficiency.values):
        raise ValueError(f"efficiency values must lie in (0, 1], got {efficiency.values}")
    eff = np.asarray(efficiency.values)[:, None, None]
    b1_values = np.asarray(b1.values)[None, :, None]
    biases = []
    for t in tissues:
        x = np.append(psr, t.psr)  # the curve and the tissue's own PSR in one call
        read = apparent_single_pool_t1(t.r1f, x[None, None, :], protocol, b1=b1_values, r1m=t.r1m, kmf=t.kmf,
                                       free_inversion_efficiency=eff)
        biases.append(1e3 * (read - t.t1f))  # ms, shape (efficiency, b1, psr + 1)

    fig = go.Figure()
    for k, t in enumerate(tissues):
        fig.add_trace(go.Scatter(x=psr, name=f"{t.name.replace('_', ' ')} (T<sub>1f</sub> = {t.t1f:.2f} s)",
                                 line={"color": _COLOURS[k % len(_COLOURS)], "width": 2.5},
                                 hovertemplate="%{y:.0f} ms"))
    for k, t in enumerate(tissues):
        fig.add_trace(go.Scatter(x=[t.psr], mode="markers", showlegend=False,
                                 name=f"{t.name.replace('_', ' ')} at its PSR",
                                 marker={"symbol": "star", "size": 13, "color": _COLOURS[k % len(_COLOURS)],
                                         "line": {"color": "black", "width": 1}},
                                 hovertemplate="PSR %{x:.3f}: %{y:.0f} ms"))
    fig.add_hline(y=0.0, line={"color": "grey", "width": 1})
    curves = [b[..., :-1] for b in biases] + [b[..., -1:] for b in biases]
    _layout(fig, height=580)
    add_grid_sliders(fig, [efficiency, b1], list(range(2 * len(tissues))), curves, decimals=1)
    # one y range over the whole grid, so that the axis does not jump when a slider moves
    low, high = float(min(np.nanmin(b) for b in biases)), float(max(np.nanmax(b) for b in biases))
    margin = 0.05 * (high - low)
    fig.update_xaxes(title_text="pool size ratio PSR = M<sub>0m</sub> / M<sub>0f</sub>")
    fig.update_yaxes(title_text="MP2RAGE T1 − 1/R<sub>1f</sub> (ms)", range=[low - margin, high + margin])
    return fig
