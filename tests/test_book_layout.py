"""The chapters as readers meet them: captioned figures, folded code, glued prose that reads as prose,
answers under every exercise, and pages that fit a phone.

Fast tests check the glue helpers (:mod:`qt1lib.notebook`), the figure style (:mod:`qt1lib.plots`) and
the chapters' sources. The slow tests read the rendered smoke book (``smoke_html``, built once per
session from the smoke execution of every chapter): the phrases that glued numbers used to produce
("at none s", "20 to 20 epochs", "p = 0.000", "within 0.0 µs"), raw long floats and NaN in prose,
figures without number, caption or alt text, code cells that are not folded, exercises without a folded
"What you should see" that holds computed numbers and their runtime, and, in headless Chromium
at 390 px, figures, tables and equations wider than the page without a scroll container. The interactive
figures (:mod:`qt1lib.interactive`) are opened offline at 1280 and 390 px: they draw, fit the page, load
nothing from another host, and their sliders swap in the curves of the grid point they select.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest

from qt1lib import plots, study
from qt1lib.notebook import (
    format_at_most,
    format_count_range,
    format_number,
    format_p,
    format_percent_of,
    format_share,
    format_values,
    SOLUTION_NOT_RUN,
    plural,
    training_stop_text,
)

CHAPTERS = study.find_chapters()
CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
#: Phone width (CSS pixels) of the layout check: an iPhone 12-15 in portrait.
PHONE_WIDTH = 390


# ============================================================================ glue helpers
def test_p_values_have_a_floor_and_three_decimals():
    assert format_p(0.0) == "p < 0.001"
    assert format_p(0.00049) == "p < 0.001"
    assert format_p(0.001) == "p = 0.001"
    assert format_p(0.03449) == "p = 0.034"
    assert format_p(1.0) == "p = 1.000"
    assert format_p(0.02, floor=0.05) == "p < 0.05"
    assert format_p(float("nan")) == "p not available"
    with pytest.raises(ValueError, match="p must lie in"):
        format_p(1.5)
    with pytest.raises(ValueError, match="floor"):
        format_p(0.5, floor=0)


def test_counts_ranges_and_lists_read_as_prose():
    assert plural(1, "epoch") == "1 epoch" and plural(0, "epoch") == "0 epochs"
    assert plural(2, "analysis", "analyses") == "2 analyses"
    assert format_count_range(20, 20, "epoch") == "20 epochs"
    assert format_count_range(1, 1, "epoch") == "1 epoch"
    assert format_count_range(9, 20, "epoch") == "9 to 20 epochs"
    with pytest.raises(ValueError, match="low <= high"):
        format_count_range(20, 9, "epoch")
    assert format_values([], "s") == "nowhere"
    assert format_values([], "s", empty="at none of them") == "at none of them"
    assert format_values([0.3], "s") == "at 0.3 s"
    assert format_values(np.array([0.3, 0.5, 4.0]), "s", prefix="at T1 = ") == "at T1 = 0.3, 0.5 and 4 s"
    with pytest.raises(ValueError, match="plural|count"):
        plural(1.5, "epoch")


def test_shares_read_all_none_or_k_of_n():
    assert format_share(2, 3, "tissue") == "2 of 3 tissues"
    assert format_share(3, 3, "tissue") == "all 3 tissues"
    assert format_share(0, 3, "tissue") == "none of the 3 tissues"
    assert format_share(2, 2, "tissue") == "both tissues" and format_share(0, 2, "tissue") == "neither tissue"
    assert format_share(1, 1, "tissue") == "the tissue" and format_share(0, 1, "tissue") == "no tissue"
    assert format_share(1, 4, "T1 value") == "1 of 4 T1 values"
    for bad in ((4, 3), (-1, 3), (1, 0), (1.5, 3)):
        with pytest.raises(ValueError, match="count and total"):
            format_share(*bad, "tissue")
    assert format_percent_of(0.0, "the voxels") == "none of the voxels"
    assert format_percent_of(100.0, "the voxels") == "all of the voxels"
    assert format_percent_of(0.04, "the voxels") == "less than 0.1 % of the voxels"
    assert format_percent_of(99.97, "the voxels") == "more than 99.9 % of the voxels"
    assert format_percent_of(35.849, "the voxels") == "35.8 % of the voxels"
    with pytest.raises(ValueError, match="percent must lie"):
        format_percent_of(100.5, "the voxels")


def test_numbers_and_small_bounds_never_read_zero_or_raw():
    assert format_number(1.1082134662093972, 2, "s") == "1.11 s"
    assert format_number(-0.0004, 2) == "0.00"  # no "-0.00"
    assert format_number(0.25, 1, "%", signed=True) == "+0.2 %"
    assert format_number(float("nan")) == "n/a"
    assert format_at_most(0.04, 1, "µs") == "less than 0.1 µs"
    assert format_at_most(0.0, 1, "µs") == "less than 0.1 µs"
    assert format_at_most(0.26, 1, "µs") == "0.3 µs"
    with pytest.raises(ValueError, match="non-negative"):
        format_at_most(-1.0)
    with pytest.raises(ValueError, match="value must be a number"):
        format_number("1.0")


def test_training_sentence_says_when_every_network_hit_the_epoch_limit():
    at_limit = training_stop_text([20, 20, 20, 20], 20)
    assert at_limit.startswith("The 4 networks trained for 20 epochs each:")
    assert "all 4 reached the limit of 20 epochs" in at_limit and " to 20" not in at_limit
    mixed = training_stop_text([9, 20, 12, 20], 20)
    assert "9 to 20 epochs" in mixed and "2 of them stopped early and 2 reached the limit" in mixed
    assert training_stop_text([5], 20) == "The network trained for 5 epochs and stopped early."
    assert "both reached" in training_stop_text([3, 3], 3)
    with pytest.raises(ValueError, match="max_epochs"):
        training_stop_text([3], 0)


# ============================================================================ figure style
def test_book_style_renders_high_dpi_and_shows_every_table_column():
    import pandas as pd

    with matplotlib.rc_context(), pd.option_context("display.max_columns", 20):
        plots.book_style()
        assert matplotlib.rcParams["figure.dpi"] == plots.BOOK_DPI >= 150
        assert pd.get_option("display.max_columns") is None
        wide = pd.DataFrame(np.zeros((4, 27)))
        assert "27 columns" not in wide._repr_html_()
    pd.reset_option("display.max_columns")
    pd.reset_option("display.precision")
    with pytest.raises(ValueError, match="dpi"):
        plots.book_style(0)


def test_tissue_labels_get_a_categorical_legend_not_a_colour_bar():
    import matplotlib.pyplot as plt

    labels = np.zeros((8, 8))
    labels[:4] = 1
    labels[4:, :4] = 3
    labels[4:, 4:] = np.nan
    fig, ax = plt.subplots()
    plots.tissue_label_image(ax, labels)
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names == ["WM", "cortical GM"]  # the tissues present, in label order
    assert len(fig.axes) == 1  # no colour bar
    image = ax.get_images()[0].get_array()
    assert np.ma.getmaskarray(image)[0, 0] == False and np.isnan(np.ma.filled(image, np.nan)[4, 4])  # noqa: E712
    plt.close(fig)
    with pytest.raises(ValueError, match="2-D"):
        plots.tissue_label_image(ax, np.zeros((2, 2, 2)))


def test_performance_grid_has_one_panel_per_quantity_and_noise_level():
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = [{"protocol": p, "estimator": e, "sigma": s, "t1": t, "bias": 0.01 * t, "ratio": 1.0}
            for p in ("MP2RAGE", "MP3RAGE") for e in ("LUT", "exact MAP") for s in (0.0025, 0.005) for t in (0.5, 1, 2)]
    fig = plots.performance_grid(pd.DataFrame(rows), "MP2RAGE", {"bias": "bias (s)", "ratio": "std / CRLB"},
                                 references={"ratio": 1.0})
    panels = [a for a in fig.axes if a.get_lines()]
    assert len(panels) == 4
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["LUT", "exact MAP"]
    plt.close(fig)
    with pytest.raises(ValueError, match="protocol 'SIR'"):
        plots.performance_grid(pd.DataFrame(rows), "SIR", {"bias": "bias"})


# ============================================================================ chapter sources
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.path.name)
def test_chapter_folds_its_code_and_captions_every_figure(chapter):
    nb = nbformat.read(chapter.path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for cell in code:
        tags = set(cell.metadata.get("tags", []))
        assert tags & {"hide-input", "remove-cell"}, f"code cell not folded: {cell.source[:80]!r}"
        assert "plt.show()" not in cell.source, "figures are glued and shown by a captioned {glue:figure}"
    glued = {m.group(1) for c in code for m in re.finditer(r'glue(?:_figure)?\("(fig_\w+)"', c.source)}
    glued |= {f"fig_performance_{p}" for c in code if re.search(r'glue(_figure)?\(f"fig_performance_\{', c.source)
              for p in ("mp2rage", "mp3rage")}
    shown = re.findall(r"```\{glue:figure\} (\S+)\n((?::\w+:.*\n)*)\n(.+?)\n```", markdown)
    assert glued and glued == {key for key, _, _ in shown}, "every glued figure is shown once, with a caption"
    for key, options, caption in shown:
        assert re.search(r"^:name: fig-\d\d-[\w-]+$", options, re.M), key
        alt = re.search(r"^:alt: (.+)$", options, re.M)
        assert alt and len(alt.group(1)) > 40, f"{key}: alt text says what the figure shows"
        assert len(caption) > 40, f"{key}: the caption gives the figure's message"
    assert "```{admonition} Take-home" in markdown and "{glue:text}`" in markdown.split("```{admonition} Take-home")[1]


#: A glued solution runtime (:func:`qt1lib.notebook.glue_solution`), e.g. "less than 0.1 s on 2 CPU cores".
SOLUTION_RUNTIME = re.compile(r"(?:less than )?\d+(?:\.\d)? (?:s|min|h) on \d+ CPU cores?")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.path.name)
def test_every_exercise_has_a_solution_cell_and_a_dropdown(chapter):
    """In the source: after the Exercises heading, each numbered exercise is followed by a folded code cell that
    calls glue_solution with the exercise's key and by a "What you should see" dropdown that shows its runtime."""
    nb = nbformat.read(chapter.path, as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source)
    cells = nb.cells[start:]
    items = [int(m.group(1)) for c in cells if c.cell_type == "markdown"
             for m in re.finditer(r"^(\d+)\. ", c.source.split("## Exercises")[-1], re.M)]
    assert items == list(range(1, len(items) + 1)) and items, "exercises numbered 1, 2, ..."
    code = [c for c in cells if c.cell_type == "code"]
    dropdowns = [c for c in cells if c.cell_type == "markdown" and c.source.startswith("```{dropdown} What you should see")]
    assert len(code) == len(dropdowns) == len(items), "one solution cell and one dropdown per exercise"
    for k, (cell, dropdown) in enumerate(zip(code, dropdowns), 1):
        key = f"ex{chapter.key}_{k}"
        assert "hide-input" in cell.metadata.get("tags", []) and f'glue_solution("{key}"' in cell.source, key
        assert "enabled=solutions" in cell.source, f"{key}: the solutions parameter switches it"
        glued = set(re.findall(r"\{glue:text\}`(ex\d\d_\d+)_\w+`", dropdown.source))
        assert glued == {key} and f"{{glue:text}}`{key}_runtime`" in dropdown.source, key
    solutions = chapter.declared_parameters()["solutions"]
    assert solutions.default is True and str(solutions.type) == "bool"


# ============================================================================ the rendered book
@pytest.fixture(scope="module")
def pages(smoke_html) -> dict[str, Path]:
    """The chapter pages of the rendered smoke book, by notebook stem."""
    return {c.path.stem: smoke_html / "notebooks" / f"{c.path.stem}.html" for c in CHAPTERS}


def _article(page: Path):
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page.read_text(), "html.parser")
    return soup.find("article") or soup.body


def _prose(article) -> str:
    """The page's prose: paragraphs, list items and captions, without code, outputs, tables or math.
    Removes those parts from ``article`` (pass a freshly parsed page)."""
    for hidden in article.select("div.cell, pre, table, .math, span.math, div.math, script, style"):
        hidden.decompose()
    return " ".join(" ".join(e.get_text(" ").split()) for e in article.find_all(["p", "li", "figcaption"]))


#: Phrases that glued numbers made when a helper should have said it in words (issue 13).
MISFIRES = {
    r"\bat none\b(?! of)": "an empty list read as 'at none'",
    r"\b(\d+) to \1 epochs\b": "a range whose ends are equal",
    r"\bwithin 0\.0+ ": "a bound that rounds to zero",
    r"\bp = 0\.000\b": "a p-value below the format's resolution",
    r"\b(\d+(?:\.\d+)?) standard deviations for MP2RAGE and \1 for MP3RAGE \((?:more|fewer)": "a comparison of equal rounded numbers",
    r"\d+ rows × \d+ columns": "a truncated table",
    r"\bnone s\b": "a unit after 'none'",
    r"\btook 0\.0+ ": "a duration that rounds to zero",
    r"\bin 0\b(?![.,]?\d)": "a count of zero read as 'in 0' (format_share: 'none of the 3 tissues')",
    r"\b(\d+) of (?:the )?\1 [a-zA-Z]": "'3 of 3' (format_share: 'all 3 tissues')",
    r"(?<![\d.])0\.0+ % of\b": "a share that rounds to zero (format_percent_of: 'none of the voxels')",
    r"\b[Aa]t least 100(?:\.0+)? %": "'at least 100 %' (format_percent_of: 'all of the voxels')",
    r"\bnot measurable with one subject per\b": "a clause glued where a number was expected",
    r"\bby 0\.0+ m?s\b": "a difference that rounds to zero (format_at_most: 'less than 0.1 ms')",
    r"\bis within [^.]{0,80} at none of\b": "'every X is within ... at none of' (say 'at no T1 are all ...')",
    r"\b0 more [a-z]": "'adds 0 more subjects' (say that the run already covers them)",
    r"\babout less than\b": "'about less than'",
    r"\bat least 1\.0+ of\b": "'at least 1.00 of the copies' (say 'in every copy')",
}


@pytest.mark.book
@pytest.mark.slow
def test_glued_prose_reads_as_prose(pages):
    from bs4 import BeautifulSoup

    problems = []
    for stem, page in pages.items():
        prose = _prose(BeautifulSoup(page.read_text(), "html.parser").find("article"))
        for pattern, why in MISFIRES.items():
            for m in re.finditer(pattern, prose):
                problems.append(f"{stem}: {why}: ...{prose[max(0, m.start() - 60):m.end() + 20]}...")
        for m in re.finditer(r"(?<![\w.])-?\d+\.\d{5,}\b", prose):
            problems.append(f"{stem}: raw float {m.group(0)}: ...{prose[max(0, m.start() - 60):m.end() + 10]}...")
        soup = BeautifulSoup(page.read_text(), "html.parser")
        for pasted in soup.select("span.pasted-text"):  # glued numbers (prose may name NaN in words)
            if re.fullmatch(r"\s*[-+]?(?:nan|NaN|n/a|inf)\s*", pasted.get_text()):
                problems.append(f"{stem}: a glued NaN: ...{pasted.parent.get_text(' ', strip=True)[:120]}...")
        page_text = soup.get_text(" ")
        if re.search(r"\d+ rows × \d+ columns", page_text):
            problems.append(f"{stem}: a table is truncated")
    assert not problems, "\n".join(problems)


@pytest.mark.book
@pytest.mark.slow
def test_every_figure_is_numbered_captioned_and_described(pages):
    problems = []
    for stem, page in pages.items():
        article = _article(page)
        for img in article.find_all("img"):
            figure = img.find_parent("figure")
            where = f"{stem}: {img.get('src', '')[-40:]}"
            if figure is None:
                problems.append(f"{where}: an image outside a figure (no number, no caption)")
                continue
            caption = figure.find("figcaption")
            if caption is None or not caption.find(class_="caption-number"):
                problems.append(f"{where}: a figure without a numbered caption")
            elif not re.match(r"Fig\. \d+", caption.find(class_="caption-number").get_text(strip=True)):
                problems.append(f"{where}: caption number {caption.find(class_='caption-number').get_text()!r}")
            alt = img.get("alt", "")
            if len(alt) < 40 or "_images" in alt or alt.endswith((".png", ".svg")):
                problems.append(f"{where}: alt text {alt!r} does not say what the figure shows")
    assert not problems, "\n".join(problems)


@pytest.mark.book
@pytest.mark.slow
def test_code_is_folded_by_default(pages):
    problems = []
    for stem, page in pages.items():
        for cell in _article(page).select("div.cell"):
            if cell.select_one("div.cell_input") is None:
                continue
            classes = cell.get("class", [])
            if "tag_hide-input" not in classes:
                problems.append(f"{stem}: code shown unfolded: {cell.get_text(' ', strip=True)[:80]!r}")
            elif cell.find("details") is None:
                problems.append(f"{stem}: hide-input cell without a toggle")
        text = _article(page).get_text(" ")
        if "check_parameters(globals())" in text:
            problems.append(f"{stem}: the parameter plumbing is on the page")
    assert not problems, "\n".join(problems)


#: Measures, after the page and MathJax have rendered, every figure, image, table, equation and code block
#: of the article that reaches beyond the viewport's right edge without an ancestor that scrolls sideways.
LAYOUT_SCRIPT = """
<script>
function qt1LayoutReport() {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if ((o === 'auto' || o === 'scroll') && a.getBoundingClientRect().right <= width + 1) return true;
    }
    return false;
  };
  const root = document.querySelector('article') || document.body;
  const wide = [];
  for (const el of root.querySelectorAll('img, figure, table, mjx-container, pre, div.math')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 1 && !scrolls(el)) {
      wide.push({tag: el.tagName.toLowerCase(), cls: String(el.className || ''), right: Math.round(r.right),
                 text: (el.getAttribute('alt') || el.textContent || '').slice(0, 60)});
    }
  }
  const leaves = [];
  if (document.documentElement.scrollWidth > width + 1) {  // what pushes the page sideways
    for (const el of root.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (el.children.length === 0 && r.width > 0 && r.right > width + 1 && !scrolls(el) && leaves.length < 5) {
        leaves.push({tag: el.tagName.toLowerCase(), cls: String(el.className || ''), right: Math.round(r.right),
                     text: (el.textContent || '').slice(0, 60)});
      }
    }
  }
  const out = document.createElement('pre');
  out.id = 'qt1-layout-report';
  out.textContent = JSON.stringify({width: width, pageWidth: document.documentElement.scrollWidth, wide: wide, leaves: leaves});
  document.body.appendChild(out);
}
window.addEventListener('load', () => {
  const ready = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
  ready.then(() => setTimeout(qt1LayoutReport, 200));
});
</script>
"""


def layout_report(page: Path, width: int = PHONE_WIDTH) -> dict:
    """Chromium's layout of ``page`` at ``width`` CSS pixels: the viewport, the page's scroll width and the
    elements that overflow it without a scroll container (:data:`LAYOUT_SCRIPT`). The script runs in a copy of
    the page next to it (same relative assets), removed afterwards."""
    probe = page.with_name(f".{page.stem}.layout.html")
    probe.write_text(page.read_text().replace("</body>", LAYOUT_SCRIPT + "</body>", 1))
    try:
        dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--window-size={width},2400", "--virtual-time-budget=20000",
                              "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180).stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="qt1-layout-report">(.*?)</pre>', dom, re.S)
    assert found, f"{page.name}: the layout script did not report (Chromium output {len(dom)} characters)"
    import html

    return json.loads(html.unescape(found.group(1)))


@pytest.mark.book
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt: chromium-headless-shell)")
def test_nothing_is_wider_than_a_phone_without_a_scroll_container(pages):
    problems = []
    for stem, page in pages.items():
        report = layout_report(page)
        assert report["width"] <= PHONE_WIDTH + 20, report["width"]  # the window really is a phone's width
        for el in report["wide"]:
            problems.append(f"{stem}: <{el['tag']} class={el['cls'][:40]!r}> reaches x = {el['right']} "
                            f"> {report['width']} px: {el['text']!r}")
        if report["pageWidth"] > report["width"] + 1:
            pushed = "; ".join(f"<{el['tag']}> {el['text']!r} to x = {el['right']}" for el in report["leaves"])
            problems.append(f"{stem}: the page scrolls sideways ({report['pageWidth']} px > {report['width']} px): {pushed}")
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt: chromium-headless-shell)")
def test_layout_check_finds_what_overflows_and_spares_scroll_containers(tmp_path):
    """The detector itself, on a page with one too-wide image and one too-wide table in a scroll container."""
    page = tmp_path / "page.html"
    page.write_text(
        '<html><head><meta name="viewport" content="width=device-width"></head><body style="margin:0"><article>'
        '<img alt="too wide" style="display:block;width:900px;height:10px">'
        '<div style="overflow-x:auto"><table style="width:900px"><tr><td>scrolls</td></tr></table></div>'
        '<img alt="fits" style="display:block;width:100px;height:10px">'
        "</article></body></html>"
    )
    report = layout_report(page)
    assert report["width"] == PHONE_WIDTH
    assert [(el["tag"], el["text"]) for el in report["wide"]] == [("img", "too wide")]
    assert report["pageWidth"] > PHONE_WIDTH


#: Pages with an interactive figure (qt1lib.interactive), by notebook stem.
INTERACTIVE_PAGES = ("01_signal_models", "03_ir_reference_and_mt")
#: Chromium without a network: a page that needed one would not draw its figure.
OFFLINE_FLAGS = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]

#: After load, for every Plotly figure of the page: its size, then each slider moved (a press on its rail
#: at another step, as a reader's click) and the curves it then shows.
PLOTLY_SCRIPT = """
<script>
function qt1PlotlyReport() {
  const figures = [];
  for (const gd of document.querySelectorAll('.plotly-graph-div')) {
    const box = gd.getBoundingClientRect();
    const sliders = (gd.layout && gd.layout.sliders) || [];
    const before = gd.data.map((d) => Array.from(d.y || []));
    const groups = gd.querySelectorAll('.slider-group');
    const targets = sliders.map((slider) => (slider.active === 0 ? slider.steps.length - 1 : 0));
    targets.forEach((target, k) => {
      const tick = groups[k].querySelectorAll('rect.slider-tick-rect')[target].getBoundingClientRect();
      const rail = groups[k].querySelector('rect.slider-rail-touch-rect');
      const r = rail.getBoundingClientRect();
      const at = {bubbles: true, cancelable: true, view: window, clientX: tick.left + tick.width / 2, clientY: r.top + r.height / 2};
      rail.dispatchEvent(new MouseEvent('mousedown', at));
      gd.dispatchEvent(new MouseEvent('mouseup', at));
    });
    figures.push({id: gd.id, svg: gd.querySelectorAll('svg.main-svg').length, right: Math.round(box.right),
                  height: Math.round(box.height), targets: targets, active: sliders.map((s) => s.active),
                  before: before, after: gd.data.map((d) => Array.from(d.y || [])),
                  grid: (gd.layout.meta || {}).qt1_grid || null});
  }
  const out = document.createElement('pre');
  out.id = 'qt1-plotly-report';
  out.textContent = JSON.stringify({width: document.documentElement.clientWidth, pageWidth: document.documentElement.scrollWidth,
    plotly: typeof Plotly, figures: figures});
  document.body.appendChild(out);
}
window.addEventListener('load', () => setTimeout(qt1PlotlyReport, 500));
</script>
"""


def plotly_report(page: Path, width: int, netlog: Path) -> dict:
    """What :data:`PLOTLY_SCRIPT` reports of ``page`` in Chromium at ``width`` CSS pixels, offline (a copy of
    the page next to it, removed afterwards), and under ``"requests"`` every URL that Chromium's network log
    (``netlog``, a file it writes) shows it asked for: requests to other hosts, never ``file:``."""
    import html

    probe = page.with_name(f".{page.stem}.plotly.html")
    probe.write_text(page.read_text().replace("</body>", PLOTLY_SCRIPT + "</body>", 1))
    try:
        dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *OFFLINE_FLAGS, f"--log-net-log={netlog}",
                              f"--window-size={width},1600", "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=180).stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="qt1-plotly-report"[^>]*>(.*?)</pre>', dom, re.S)  # the theme adds a tabindex
    assert found, f"{page.name}: the Plotly script did not report (Chromium output {len(dom)} characters)"
    report = json.loads(html.unescape(found.group(1)))
    report["requests"] = sorted(set(re.findall(r'"url":\s*"([^"]+)"', netlog.read_text()))) if netlog.is_file() else []
    return report


@pytest.mark.book
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt: chromium-headless-shell)")
@pytest.mark.parametrize("width", [1280, PHONE_WIDTH])
def test_interactive_figures_draw_offline_fit_and_follow_their_sliders(pages, width, tmp_path):
    problems = []
    for stem in INTERACTIVE_PAGES:
        report = plotly_report(pages[stem], width, tmp_path / f"{stem}-{width}.netlog.json")
        if report["requests"]:
            problems.append(f"{stem}: asked another host for {report['requests'][:3]}")
        if report["plotly"] != "object" or len(report["figures"]) != 1:
            problems.append(f"{stem}: plotly.js {report['plotly']}, {len(report['figures'])} figures (expected one)")
            continue
        fig = report["figures"][0]
        if fig["svg"] < 1 or fig["height"] < 300:
            problems.append(f"{stem}: the figure did not draw ({fig['svg']} svg, {fig['height']} px high)")
        if fig["right"] > report["width"] + 1 or report["pageWidth"] > report["width"] + 1:
            problems.append(f"{stem}: the figure reaches x = {fig['right']}, the page {report['pageWidth']} px, "
                            f"wider than the {report['width']} px window")
        grid = fig["grid"]
        if grid is None or len(grid["shape"]) != len(fig["targets"]) or fig["active"] != fig["targets"]:
            problems.append(f"{stem}: sliders at {fig['active']} after moving them to {fig['targets']}")
            continue
        shown = grid["y"][int(np.ravel_multi_index(fig["active"], grid["shape"]))]
        if [fig["after"][t] for t in grid["traces"]] != shown:
            problems.append(f"{stem}: after the sliders moved, the curves are not those of grid point {fig['active']}")
        if all(fig["after"][t] == fig["before"][t] for t in grid["traces"]):
            problems.append(f"{stem}: moving the sliders changed no curve")
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt: chromium-headless-shell)")
def test_plotly_check_sees_a_request_to_another_host(tmp_path):
    """The detector itself: a page that asks a CDN for an image shows in the network log, and without
    plotly.js the report finds no figure."""
    page = tmp_path / "page.html"
    page.write_text('<html><body><img src="https://cdn.example.org/plot.png" alt="remote"></body></html>')
    report = plotly_report(page, PHONE_WIDTH, tmp_path / "netlog.json")
    assert report["requests"] == ["https://cdn.example.org/plot.png"]
    assert report["plotly"] == "undefined" and report["figures"] == []


@pytest.mark.book
@pytest.mark.slow
def test_every_exercise_shows_what_you_should_see(pages):
    """Under every exercise of the smoke book: a collapsed "What you should see" dropdown with at least one glued
    value and the glued runtime of its solution."""
    from bs4 import BeautifulSoup

    problems = []
    for stem, page in pages.items():
        section = BeautifulSoup(page.read_text(), "html.parser").find("section", id="exercises")
        if section is None:
            problems.append(f"{stem}: no Exercises section")
            continue
        exercises = [li for ol in section.find_all("ol", recursive=False) for li in ol.find_all("li", recursive=False)]
        dropdowns = [d for d in section.select("details.sd-dropdown")
                     if d.summary is not None and "What you should see" in d.summary.get_text()]
        if not exercises or len(dropdowns) != len(exercises):
            problems.append(f"{stem}: {len(exercises)} exercises, {len(dropdowns)} 'What you should see' dropdowns")
        for k, dropdown in enumerate(dropdowns, 1):
            glued = [p.get_text(" ", strip=True) for p in dropdown.select("span.pasted-text")]
            runtimes = [g for g in glued if SOLUTION_RUNTIME.fullmatch(g)]
            if dropdown.has_attr("open"):
                problems.append(f"{stem}, exercise {k}: the answer is open, not folded")
            if len(runtimes) != 1 or len(glued) < 2:
                problems.append(f"{stem}, exercise {k}: {len(glued) - len(runtimes)} glued values and runtimes {runtimes}")
            if SOLUTION_NOT_RUN in glued:
                problems.append(f"{stem}, exercise {k}: the smoke build did not compute its solution")
    assert not problems, "\n".join(problems)


def test_profile_substitutions_are_the_configuration_and_cover_the_pages(tmp_path):
    """The prose's {{ profile_field }} values come from StudyConfig.for_profile, and every one a page uses exists."""
    from qt1lib.config import StudyConfig

    shutil.copy(study.REPO_ROOT / "_config.yml", tmp_path / "_config.yml")
    values = study.write_profile_substitutions(tmp_path)
    assert values["paper_max_epochs"] == str(StudyConfig.for_profile("paper").calibration.max_epochs)
    assert values["quick_patience"] == str(StudyConfig.for_profile("quick").calibration.patience)
    import yaml

    assert yaml.safe_load((tmp_path / "_config.yml").read_text())["parse"]["myst_substitutions"] == values
    used = {key for page in (study.REPO_ROOT / "book").glob("*.md")
            for key in re.findall(r"\{\{\s*(\w+)\s*\}\}", page.read_text())}
    assert used and used <= set(values), sorted(used - set(values))
