"""The rendered book, checked as a reader sees it.

The book is built from the smoke execution of every chapter with warnings as errors (a missing
glue key, figure or reference fails). Each page is then opened in headless Chromium and its
rendered DOM is checked for tracebacks, unresolved glue keys and broken images. The book's frame is
checked on the same build: one MathJax component per page, the citation and the results at a glance on
the landing page, downloads without the build's paths, the build report's provenance and the teaching
page's lab times, and the interactive figures: captioned, served one local plotly.js, and no page asks
a CDN for anything.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from qt1lib import book_sphinx, study
from qt1lib.stats import SEED_RMSE

pytestmark = [pytest.mark.book, pytest.mark.slow]

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def html(smoke_html) -> Path:
    """The smoke book, rendered once per session (tests/conftest.py), shared with tests/test_book_layout.py."""
    return smoke_html


def _pages(html: Path) -> list[Path]:
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and p.name not in {"genindex.html", "search.html"})


def _rendered_dom(page: Path) -> str:
    """The page's DOM after Chromium has run its scripts."""
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120).stdout


def test_every_toc_page_is_rendered(html):
    pages = {p.relative_to(html).as_posix() for p in _pages(html)}
    for chapter in study.find_chapters():
        assert f"notebooks/{chapter.path.stem}.html" in pages
    for page in ("book/intro.html", "book/theory.html", "book/assumptions.html", "book/references.html"):
        assert page in pages
    report = (html / "book" / "build-report.html").read_text()
    assert "01_signal_models.ipynb" in report


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt: chromium-headless-shell)")
def test_pages_as_a_reader_sees_them(html):
    problems = []
    for page in _pages(html):
        redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', page.read_text(), re.IGNORECASE)
        if redirect:  # the root index.html only redirects to the first page
            if not (page.parent / redirect.group(1)).is_file():
                problems.append(f"{page.name}: redirects to a missing page {redirect.group(1)}")
            continue
        dom = _rendered_dom(page)
        name = page.relative_to(html).as_posix()
        if "<body" not in dom:
            problems.append(f"{name}: Chromium rendered nothing")
            continue
        text = re.sub(r"<[^>]+>", " ", dom)
        for marker in ("Traceback (most recent call last)", "NameError", "could not find glue key", "glue key"):
            if marker in text:
                problems.append(f"{name}: shows '{marker}'")
        images = re.findall(r"<img[^>]+src=\"([^\"]+)\"", dom)
        if name.startswith("notebooks/") and not images:
            problems.append(f"{name}: a chapter page without a single figure")
        for src in images:
            if src.startswith("data:"):
                continue
            target = unquote(urlparse(src).path)
            path = (page.parent / target).resolve() if not target.startswith("/") else Path(target)
            if not path.is_file():
                problems.append(f"{name}: broken image {src}")
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt: chromium-headless-shell)")
def test_statistics_page_shows_the_side_by_side_table_with_the_seed(html):
    """Chapter 7's table: the seed's published RMSE (in vivo) beside this book's (simulated), per tissue."""
    dom = _rendered_dom(html / "notebooks" / "07_statistics.html")
    tables = [t for t in re.findall(r"<table.*?</table>", dom, re.S) if "in vivo" in t and "simulated" in t]
    assert len(tables) == 1, "expected one table labelled in vivo and simulated"
    rows = {m.group(1): re.findall(r"<td>([^<]*)</td>", m.group(2))
            for m in re.finditer(r"<tr>\s*<th>([^<]+)</th>(.*?)</tr>", tables[0], re.S)}
    for tissue, published in SEED_RMSE.items():
        cells = rows[tissue]
        assert cells[:2] == [f"{m:.2f} ± {sd:.2f}" for m, sd in (published["before"], published["after"])]
        assert len(cells) == 4 and all(re.fullmatch(r"\d\.\d\d ± \d\.\d\d", c) for c in cells[2:]), cells


def _html_pages(html: Path) -> list[tuple[str, str]]:
    """(name, raw HTML) of every page that is not a redirect."""
    pages = []
    for page in _pages(html):
        text = page.read_text()
        if not re.search(r'http-equiv="Refresh"', text, re.IGNORECASE):
            pages.append((page.relative_to(html).as_posix(), text))
    return pages


def _mathjax_scripts(text: str) -> list[str]:
    return [src for src in re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", text) if "mathjax" in src.lower()]


def test_each_page_loads_one_mathjax_component(html):
    """Jupyter Book adds every .js under the sources' _static to every page: MathJax must not be there."""
    problems = []
    for name, text in _html_pages(html):
        scripts = _mathjax_scripts(text)
        if len(scripts) > 1:
            problems.append(f"{name}: {len(scripts)} MathJax scripts {scripts[:5]}")
        if scripts and study.MATHJAX_COMPONENT not in scripts[0]:
            problems.append(f"{name}: loads {scripts[0]}, not {study.MATHJAX_COMPONENT}")
        local = [s for s in scripts if "://" not in s]
        for src in local:
            if not (html / name).parent.joinpath(unquote(urlparse(src).path)).resolve().is_file():
                problems.append(f"{name}: MathJax script {src} is missing from the site")
    assert not problems, "\n".join(problems)
    assert not list((html / "_static").glob("mathjax/tex-svg*.js")), "other MathJax components were copied"


def test_no_page_repeats_a_script(html):
    """A script given twice runs twice; an inline ``const`` given twice (sphinx-thebe's THEBE_JS_URL) is a console error."""
    problems = []
    for name, text in _html_pages(html):
        scripts = re.findall(r"<script\b[^>]*>.*?</script>", text, flags=re.S)
        repeated = {script[:120] for script in scripts if scripts.count(script) > 1}
        if repeated:
            problems.append(f"{name}: {sorted(repeated)}")
    assert not problems, "\n".join(problems)


def test_drop_repeated_scripts_keeps_the_first_of_equal_scripts():
    from sphinx.builders.html._assets import _JavaScript

    body = 'const THEBE_JS_URL = "x"'
    first, other = _JavaScript("", body=body), _JavaScript("doctools.js")
    context = {"script_files": [first, other, _JavaScript(None, body=body), _JavaScript("", body="const y = 1")]}
    book_sphinx.drop_repeated_scripts(None, "page", "page.html", context, None)
    assert context["script_files"][:2] == [first, other] and len(context["script_files"]) == 3


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt: chromium-headless-shell)")
def test_mathjax_loads_no_further_scripts_when_it_runs(html):
    """After MathJax has typeset the theory page, the page holds at most 3 MathJax scripts (the component
    loads its extensions lazily as script tags: none should be needed)."""
    dom = _rendered_dom(html / "book" / "theory.html")
    assert "mjx-container" in dom or "MathJax" in dom, "MathJax did not typeset the theory page"
    assert len(_mathjax_scripts(dom)) <= 3, _mathjax_scripts(dom)


def test_citation_is_rendered_on_the_landing_page(html):
    import yaml

    cff = yaml.safe_load((study.REPO_ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    paper = cff["preferred-citation"]
    assert paper["doi"] == "10.1016/j.mri.2025.110322" and paper["volume"] == 117 and paper["start"] == 110322
    assert [a["family-names"] for a in paper["authors"]][:1] == ["Saunders"] and len(paper["authors"]) == 9
    intro = (html / "book" / "intro.html").read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", intro)).replace("’", "'")
    assert "How to cite" in text
    for expected in (cff["title"], paper["title"], "Saunders AM, Kim ME", "O'Grady KP"):
        assert expected in text, expected
    assert "@article{saunders2025," in re.sub(r"<[^>]+>", "", intro)  # the BibTeX block (highlighted: tags inside)
    assert f'href="https://doi.org/{paper["doi"]}"' in intro
    assert 'href="https://github.com/MASILab/map_t1_mapping"' in intro


def _button_links(text: str, title: str) -> list[str]:
    """The targets of the theme's header buttons with this tooltip ("Source repository", "Launch on Binder")."""
    return re.findall(r'<a href="([^"]+)"[^>]*?title="' + re.escape(title) + '"', text)


def test_repository_and_launch_buttons_point_at_the_repository_the_build_found(html):
    """The buttons name the repository that :func:`qt1lib.study.find_repository_url` finds for this
    checkout, or are absent where it finds none: never a placeholder or another project's address."""
    url = study.find_repository_url()
    problems = []
    for name, text in _html_pages(html):
        repository = _button_links(text, "Source repository")
        binder = _button_links(text, "Launch on Binder")
        if "OWNER/" in text:
            problems.append(f"{name}: a placeholder repository address")
        if url is None:
            if repository or binder:
                problems.append(f"{name}: buttons {repository + binder} without a repository")
            continue
        if repository != [url]:
            problems.append(f"{name}: repository button {repository}, expected [{url}]")
        if name.startswith("notebooks/") and url.startswith("https://github.com/"):
            owner_name = url.removeprefix("https://github.com/")
            expected = f"/v2/gh/{owner_name}/main?urlpath=lab/tree/{name.removesuffix('.html')}.ipynb"
            if len(binder) != 1 or not binder[0].endswith(expected):
                problems.append(f"{name}: Binder link {binder}, expected one ending {expected}")
    assert not problems, "\n".join(problems)


def test_downloadable_notebooks_carry_no_build_path(html, smoke_build):
    """The .ipynb that the pages offer (and the page sources) hold no absolute path of the build."""
    machine = [str(smoke_build.build_dir), str(study.REPO_ROOT), sys.prefix]
    notebooks = sorted(html.rglob("*.ipynb"))
    for chapter in study.find_chapters():
        page = (html / "notebooks" / f"{chapter.path.stem}.html").read_text()
        link = re.search(r'href="([^"]*_sources/notebooks/' + re.escape(chapter.path.name) + ')"', page)
        assert link, f"{chapter.path.name}: no download link"
        assert (html / "notebooks" / link.group(1)).resolve().is_file()
    assert len(notebooks) >= len(study.find_chapters())
    problems = [f"{f.relative_to(html)}: {path}" for f in [*notebooks, *(html / "_sources").rglob("*.md")]
                for path in machine if path in f.read_text()]
    assert not problems, "\n".join(problems)
    executed = nbformat.read(smoke_build.src / "notebooks" / study.find_chapters()[0].path.name, as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'work_dir = "work"' in injected.source and 'profile = "smoke"' in injected.source  # reset to the default
    assert executed.metadata.papermill.parameters["work_dir"] == "work"


def test_portable_parameters_keep_repository_paths_relative():
    chapter = study.find_chapters()[0]
    declared = chapter.declared_parameters()
    inside = study.portable_parameters({"work_dir": str(study.REPO_ROOT / "work" / "quick"), "seed": 3}, declared)
    outside = study.portable_parameters({"work_dir": "/elsewhere/work", "bids_dir": ""}, declared)
    assert inside == {"work_dir": "work/quick", "seed": 3}
    assert outside == {"work_dir": declared["work_dir"].default, "bids_dir": ""}


def test_build_report_has_commit_versions_and_seed(html, smoke_build):
    report = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (html / "book" / "build-report.html").read_text()))
    run = subprocess.run(["git", "-C", str(study.REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = run.stdout.strip() if run.returncode == 0 else "unknown"
    assert f"commit {commit}" in report, report[:2000]
    assert "profile smoke" in report and "seed 0" in report
    assert re.search(r"machine \d+ CPU cores", report)
    for package in ("python", "numpy", "torch", "antspyx", "jupyter-book", "myst-nb", "mathjax"):
        assert re.search(rf"{package} (\d|from its CDN)", report), package
    for name in smoke_build.timings:
        assert re.search(re.escape(name) + r" \d+\.\d \d+\.\d", report), name  # seconds, of which solutions
    record = json.loads((smoke_build.src / "build-timings.json").read_text())
    assert record["commit"] == commit and record["seed"] == 0 and set(record["seconds"]) == set(smoke_build.timings)
    solving = record["solution_seconds"]
    assert set(solving) == set(smoke_build.timings)
    assert all(0 < solving[name] < record["seconds"][name] for name in solving), solving  # every chapter has exercises


def test_teaching_page_gives_the_lab_times_of_this_build(html, smoke_build):
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (html / "book" / "teaching.html").read_text()))
    for heading in ("Prerequisites", "Notation", "Glossary", "A two-hour lab on a laptop CPU"):
        assert heading in page, heading
    for key in study.LAB_LIVE:
        assert f"--notebooks {key} --no-book" in page
    assert page.count("live: python -m qt1lib.study") == len(study.LAB_LIVE)
    assert "whole build" in page and re.search(r"(\d+(\.\d)? min|\d+ s)", page)


def test_landing_page_shows_the_results_at_a_glance(html):
    """The side-by-side table of chapter 7 (seed in vivo, book simulated), the key figures with numbers,
    captions and alt text, glued numbers in the take-home points, the seed's DOI and code."""
    intro = (html / "book" / "intro.html").read_text()
    tables = [t for t in re.findall(r"<table.*?</table>", intro, re.S) if "in vivo" in t and "simulated" in t]
    assert len(tables) == 1, "expected chapter 7's table labelled in vivo and simulated"
    rows = {m.group(1): re.findall(r"<td>([^<]*)</td>", m.group(2))
            for m in re.finditer(r"<tr>\s*<th>([^<]+)</th>(.*?)</tr>", tables[0], re.S)}
    for tissue, published in SEED_RMSE.items():
        assert rows[tissue][:2] == [f"{m:.2f} ± {sd:.2f}" for m, sd in (published["before"], published["after"])]
    figures = re.findall(r'<figure class="pasted-figure.*?</figure>', intro, re.S)
    assert len(figures) >= 2
    for figure in figures:
        alt = re.search(r'<img alt="([^"]+)" src="([^"]+)"', figure)
        assert alt and "_images" not in alt.group(1) and len(alt.group(1)) > 20, figure[:300]
        assert (html / "book" / unquote(alt.group(2))).resolve().is_file()
        assert re.search(r'class="caption-number">Fig\. \d+', figure)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", intro))
    assert "Take-home" in text and "Beyond the seed" in text
    assert intro.count('class="pasted-text"') >= 8, "the take-home numbers are glued"
    assert 'href="https://doi.org/10.1016/j.mri.2025.110322"' in intro


#: The interactive figures (qt1lib.interactive) by page, and a static figure that stays beside each one
#: (for print and readers without JavaScript).
INTERACTIVE = {"notebooks/01_signal_models.html": ("fig-01-uni-explorer", "fig-01-uni-b1"),
               "notebooks/03_ir_reference_and_mt.html": ("fig-03-mt-explorer", "fig-03-bias-psr")}
#: A tag that makes the browser fetch from another host: scripts, images, frames, media and linked resources.
REMOTE_RESOURCE = re.compile(r'<(?:script|img|iframe|source|embed|audio|video)\b[^>]*?\bsrc="((?:https?:)?//[^"]*)"'
                             r'|<link\b[^>]*?\bhref="((?:https?:)?//[^"]*)"', re.IGNORECASE)


def _figure(text: str, name: str) -> str:
    """The HTML of the ``<figure>`` whose id is ``name`` (figures do not nest)."""
    found = re.search(r'<figure[^>]*\bid="' + re.escape(name) + r'".*?</figure>', text, re.S)
    assert found, f"no figure {name}"
    return found.group(0)


def test_interactive_figures_are_captioned_and_served_the_books_plotly(html):
    from plotly.offline import get_plotlyjs

    served = html / "_static" / book_sphinx.PLOTLY_JS
    assert served.is_file() and served.read_text() == get_plotlyjs()
    problems = []
    for name, text in _html_pages(html):
        scripts = [src for src in re.findall(r'<script[^>]*\bsrc="([^"]+)"', text) if "plotly" in src.lower()]
        if name not in INTERACTIVE:
            if scripts or book_sphinx.PLOTLY_DIV_CLASS in text:
                problems.append(f"{name}: loads plotly.js without an interactive figure: {scripts}")
            continue
        interactive, static = INTERACTIVE[name]
        figure = _figure(text, interactive)
        plotly_div = f'class="{book_sphinx.PLOTLY_DIV_CLASS}"'
        if figure.count(plotly_div) != 1 or text.count(plotly_div) != 1:
            problems.append(f"{name}: expected one Plotly figure, in figure {interactive}")
        if not re.search(r'class="caption-number">Fig\. \d+', figure):
            problems.append(f"{name}: the interactive figure has no numbered caption")
        if "<img" not in _figure(text, static):
            problems.append(f"{name}: the static figure {static} is gone")
        if len(scripts) != 1 or "://" in scripts[0]:
            problems.append(f"{name}: plotly scripts {scripts}, expected one local copy")
        elif (html / name).parent.joinpath(unquote(urlparse(scripts[0]).path)).resolve() != served.resolve():
            problems.append(f"{name}: loads {scripts[0]}, not the book's {book_sphinx.PLOTLY_JS}")
    assert not problems, "\n".join(problems)


def test_no_page_fetches_anything_from_another_host(html):
    """The book reads offline: no script, stylesheet, image or frame comes from another host, and no inline
    script points at a CDN (links for the reader to follow are fine). MathJax's CDN is the documented
    fallback of an environment without its own copy (``make`` installs one). sphinx-thebe's
    ``THEBE_JS_URL`` is fetched only when a reader launches Thebe, which ``_config.yml`` turns off
    (``launch_buttons.thebe: false``), so no page offers it."""
    allowed = set()
    if not (Path(sys.prefix) / "share" / "mathjax" / "es5" / study.MATHJAX_COMPONENT).is_file():
        import yaml

        allowed.add(yaml.safe_load((study.REPO_ROOT / "_config.yml").read_text())["sphinx"]["config"]["mathjax_path"])
    problems = []
    for name, text in _html_pages(html):
        problems += [f"{name}: fetches {url}" for url in (a or b for a, b in REMOTE_RESOURCE.findall(text))
                     if url.split("?")[0] not in allowed]
        for script in re.findall(r"<script\b[^>]*>(.*?)</script>", text, re.S):
            script = re.sub(r'\bTHEBE_JS_URL = "[^"]*"', "", script)
            problems += [f"{name}: a script points at {url}" for url in
                         re.findall(r"https?://[^\s\"']*(?:cdn|plot\.ly|jsdelivr|unpkg)[^\s\"']*", script)]
    assert not problems, "\n".join(problems)
