"""The rendered book, checked as a reader sees it.

The book is built from the smoke execution of every chapter with warnings as errors (a missing
glue key, figure or reference fails). Each page is then opened in headless Chromium and its
rendered DOM is checked for tracebacks, unresolved glue keys and broken images.
"""

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from qt1lib import study
from qt1lib.stats import SEED_RMSE

pytestmark = [pytest.mark.book, pytest.mark.slow]

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def html(smoke_build) -> Path:
    if smoke_build.errors:
        pytest.fail(f"chapters failed, book not built: {sorted(smoke_build.errors)}")
    return study.build_book(smoke_build.src, smoke_build.build_dir)


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
