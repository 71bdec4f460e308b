"""The interactive figures (qt1lib.interactive) and how the book serves plotly.js (qt1lib.book_sphinx).

The curves a slider shows are the signal models' at that grid point; the sliders step through their
grids; the HTML carries no plotly.js and points at no CDN. The page itself (rendered, offline, at a
phone's width) is checked by tests/test_book.py and tests/test_book_layout.py.
"""

from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import numpy as np
import pytest

from qt1lib import book_sphinx
from qt1lib.estimate.apparent import apparent_single_pool_t1
from qt1lib.estimate.lut import lut_t1
from qt1lib.interactive import (
    GRID_META_KEY,
    BookFigure,
    Slider,
    add_grid_sliders,
    grid_curves,
    mt_bias_explorer,
    uni_explorer,
)
from qt1lib.phantom.physics import COHORT_PHYSICS
from qt1lib.protocols import MARQUES_7T, SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals, uni

B1 = Slider.grid("B1+", 0.6, 1.4, 0.1, default=1.0)
EFF = Slider.grid("inversion efficiency", 0.72, 1.0, 0.04, default=SEED_7T_MP3RAGE.inversion_efficiency)
T1 = np.linspace(0.05, 5.0, 60)
BRAIN = [COHORT_PHYSICS["literature"].tissues[n] for n in ("WM", "subcortical_GM", "cortical_GM")]


@pytest.fixture(scope="module")
def uni_fig():
    return uni_explorer(SEED_7T_MP3RAGE, T1, B1, EFF)


@pytest.fixture(scope="module")
def mt_fig():
    eff = Slider.grid("free-pool inversion efficiency", SEED_7T_MP3RAGE.inversion_efficiency, 1.0, 0.04,
                      default=SEED_7T_MP3RAGE.inversion_efficiency)
    b1 = Slider.grid("B1+", 0.8, 1.2, 0.2, 1.0)
    return mt_bias_explorer(BRAIN, SEED_7T_MP3RAGE, np.linspace(0.0, 0.4, 5), eff, b1)


def test_slider_grid_includes_its_ends_and_snaps_the_default():
    s = Slider.grid("eff", 0.84, 1.0, 0.02, default=0.91)
    assert s.values == (0.84, 0.86, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 1.0)
    assert s.default in (0.9, 0.92) and s.values[s.default_index] == s.default and s.fmt == ".2f"
    assert Slider.grid("B1+", 0.6, 1.4, 0.1, 1.0).values[-1] == 1.4
    with pytest.raises(ValueError, match="not one of the values"):
        Slider("B1+", (0.8, 1.2), 1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        Slider("B1+", (1.0, 0.8), 1.0)
    with pytest.raises(ValueError, match="step > 0"):
        Slider.grid("B1+", 0.6, 1.4, 0.0, 1.0)


def test_uni_explorer_shows_the_signal_model_at_every_slider_position(uni_fig):
    sliders = uni_fig.layout.sliders
    assert [len(s.steps) for s in sliders] == [len(B1.values), len(EFF.values)] == [9, 8]
    assert [s.active for s in sliders] == [B1.default_index, EFF.default_index]
    assert all(step.method == "skip" for s in sliders for step in s.steps)
    assert [s.steps[s.active].label for s in sliders] == ["1.0", "0.84"]
    for i, j in [(0, 0), (B1.default_index, 7), (2, EFF.default_index)]:
        data = SEED_7T_MP3RAGE.with_changes(inversion_efficiency=EFF.values[j])
        gre = gre_signals(T1, data, B1.values[i])
        s12, s13, error = grid_curves(uni_fig, (i, j))
        np.testing.assert_allclose(s12, uni(gre[0], gre[1]), atol=5e-4)  # S kept to 0.001, the error to 0.1 %
        np.testing.assert_allclose(s13, uni(gre[0], gre[2]), atol=5e-4)
        np.testing.assert_allclose(error, 100 * (lut_t1(uni(gre[0], gre[1]), SEED_7T_MP3RAGE) / T1 - 1), atol=0.05)
    # the figure opens at the defaults, where the nominal table reads its own curve back
    default = grid_curves(uni_fig, (B1.default_index, EFF.default_index))
    for trace, curve in zip(uni_fig.data[:3], default):
        np.testing.assert_array_equal(np.array(trace.y, dtype=float), curve)
    inside = (T1 > 0.3) & (T1 < 4.0)
    assert np.abs(default[2][inside]).max() < 0.1
    # ignoring a low B1+ biases T1: the error at B1+ = 0.6 is large somewhere on the grid
    assert np.nanmax(np.abs(grid_curves(uni_fig, (0, EFF.default_index))[2][inside])) > 10


def test_uni_explorer_follows_the_protocols_readouts():
    fig = uni_explorer(MARQUES_7T, T1, Slider.grid("B1+", 0.8, 1.2, 0.2, 1.0), Slider.grid("eff", 0.9, 1.0, 0.05, 0.95))
    assert [t.name for t in fig.data[:2]] == ["S<sub>12</sub>", "error of the S<sub>12</sub> table"]
    assert len(fig.layout.meta[GRID_META_KEY]["y"]) == 3 * 3


def test_mt_explorer_reads_the_two_pool_tissue_with_the_single_pool_table(mt_fig):
    grid = mt_fig.layout.meta[GRID_META_KEY]
    assert grid["shape"] == [5, 3] and len(grid["traces"]) == 2 * len(BRAIN)
    assert [len(s.steps) for s in mt_fig.layout.sliders] == [5, 3]
    psr = np.array(mt_fig.data[0].x)
    eff = SEED_7T_MP3RAGE.inversion_efficiency
    for i, j, b1 in [(0, 1, 1.0), (4, 0, 0.8)]:
        curves = grid_curves(mt_fig, (i, j))
        efficiency = mt_fig.layout.sliders[0].steps[i].label
        for k, t in enumerate(BRAIN):
            expected = apparent_single_pool_t1(t.r1f, np.append(psr, t.psr), SEED_7T_MP3RAGE, b1=b1, r1m=t.r1m,
                                               kmf=t.kmf, free_inversion_efficiency=float(efficiency))
            np.testing.assert_allclose(curves[k], 1e3 * (expected[:-1] - t.t1f), atol=0.06)
            np.testing.assert_allclose(curves[len(BRAIN) + k], [1e3 * (expected[-1] - t.t1f)], atol=0.06)
    at_protocol = grid_curves(mt_fig, (0, 1))
    assert float(mt_fig.layout.sliders[0].steps[0].label) == eff
    for k in range(len(BRAIN)):
        assert abs(at_protocol[k][0]) < 0.1  # PSR = 0 and the table's own efficiency: a single pool, read exactly
        assert np.all(np.diff(at_protocol[k]) < 0)  # MT: the larger the PSR, the shorter the T1 read
    # a better inversion than the table assumes lengthens the T1 read, at every PSR, in every tissue
    by_efficiency = np.array([grid_curves(mt_fig, (i, 1))[: len(BRAIN)] for i in range(5)])
    assert np.all(np.diff(by_efficiency, axis=0) > 0)


def test_grid_sliders_reject_curves_that_do_not_match():
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 0]), layout={"height": 400})
    with pytest.raises(ValueError, match=r"curves\[0\] must have shape \(3,\)"):
        add_grid_sliders(fig, [Slider("a", (1, 2, 3), 2)], [0], [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="one per trace"):
        add_grid_sliders(fig, [Slider("a", (1, 2, 3), 2)], [0], [])
    with pytest.raises(ValueError, match="decimals"):
        add_grid_sliders(fig, [Slider("a", (1, 2, 3), 2)], [0], [np.zeros((3, 2))], decimals=[1, 2])
    with pytest.raises(ValueError, match="layout.height"):
        add_grid_sliders(go.Figure(go.Scatter(x=[0, 1])), [Slider("a", (1, 2), 2)], [0], [np.zeros((2, 2))])


def test_book_figure_html_carries_no_plotly_js_and_no_cdn(mt_fig):
    figure = BookFigure(mt_fig, "fig-03-test", "a test figure")
    page = figure._repr_html_()
    assert 'id="fig-03-test"' in page and 'class="plotly-graph-div"' in page
    assert "plotly_sliderchange" in page and GRID_META_KEY in page
    assert "<script src" not in page and "https://" not in page and "cdn" not in page.lower()
    assert len(page) < 200_000  # the grid, not plotly.js (about 4.8 MB)
    assert "interactive" in repr(figure)
    with pytest.raises(ValueError, match="div_id"):
        BookFigure(mt_fig, "1 bad id")


def _app(outdir, fmt="html"):
    added = []
    return SimpleNamespace(add_js_file=added.append, builder=SimpleNamespace(format=fmt, outdir=str(outdir))), added


def test_book_serves_one_local_plotly_js_to_the_pages_that_need_it(tmp_path):
    app, added = _app(tmp_path)
    book_sphinx.load_plotly_where_needed(app, "notebooks/02", "page.html", {"body": "<img src='a.png'>"}, None)
    assert added == []
    body = f'<div id="x" class="{book_sphinx.PLOTLY_DIV_CLASS}"></div>'
    book_sphinx.load_plotly_where_needed(app, "notebooks/01", "page.html", {"body": body}, None)
    assert added == [book_sphinx.PLOTLY_JS] and "://" not in book_sphinx.PLOTLY_JS
    book_sphinx.write_plotly_js(app, None)
    served = tmp_path / "_static" / book_sphinx.PLOTLY_JS
    from plotly.offline import get_plotlyjs

    assert served.read_text() == get_plotlyjs()
    assert stat.S_IMODE(os.stat(served).st_mode) == 0o644
    assert not [p for p in served.parent.iterdir() if p != served]  # no temporary file left
    latex, _ = _app(tmp_path / "latex", fmt="latex")
    book_sphinx.write_plotly_js(latex, None)
    assert not (tmp_path / "latex").exists()
