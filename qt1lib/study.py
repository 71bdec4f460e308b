"""The study runner: execute every chapter with papermill for a profile, then build the book.

Profiles
--------
``quick``  the embedded default: 2 mm digital cohort, small Monte-Carlo and patch sets (about
           11.5 minutes on 2 CPU cores from a fresh clone, measured 2026-11-25); what ``make book`` builds.
``paper``  the study at full size (1 mm, full Monte-Carlo, width-64 networks; about 79 minutes on 2
           CPU cores, measured 2026-11-25).
``smoke``  tiny parameters that only check that every notebook runs (tests).

Each notebook declares its own parameter overrides per profile in its metadata,
``metadata["qt1"]["profiles"][profile]``, so a chapter stays self-describing and can be rerun
alone with papermill. The runner copies the book sources (``_config.yml``, ``_toc.yml``,
``book/``) into a build tree, executes the notebooks into that tree (hiding papermill's
injected-parameters cell), records how long each one took, and runs ``jupyter-book build``
with warnings treated as errors (a missing glue key, figure or reference fails the build).

Usage::

    python -m qt1lib.study --profile quick
    python -m qt1lib.study --profile smoke --no-book --notebooks 01 02
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

__all__ = [
    "PROFILES",
    "Chapter",
    "find_chapters",
    "prepare_sources",
    "execute_chapter",
    "write_timings",
    "write_parameter_reference",
    "build_book",
    "run_study",
    "main",
]

PROFILES = ("smoke", "quick", "paper")
REPO_ROOT = Path(__file__).resolve().parent.parent
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@dataclass(frozen=True)
class Chapter:
    """A papermill-parameterised notebook of the book."""

    path: Path

    @property
    def key(self) -> str:
        """The chapter's number prefix, e.g. ``"02"``."""
        return self.path.name.split("_", 1)[0]

    def profile_parameters(self, profile: str) -> dict:
        """Parameter overrides that the notebook declares for ``profile``."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
        nb = nbformat.read(self.path, as_version=4)
        profiles = nb.metadata.get("qt1", {}).get("profiles", {})
        return dict(profiles.get(profile, {}))


def find_chapters(notebook_dir: Path = REPO_ROOT / "notebooks", only: list[str] | None = None) -> list[Chapter]:
    """Notebooks named ``NN_*.ipynb`` in order; ``only`` keeps those whose number is listed."""
    chapters = [Chapter(p) for p in sorted(Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))]
    if only:
        unknown = set(only) - {c.key for c in chapters}
        if unknown:
            raise ValueError(f"no notebook numbered {sorted(unknown)} in {notebook_dir}")
        chapters = [c for c in chapters if c.key in only]
    return chapters


def _hide_injected_parameters(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    tmp = path.with_suffix(".tmp.ipynb")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)


def execute_chapter(
    chapter: Chapter,
    output: Path,
    profile: str,
    bids_dir: Path,
    work_dir: Path,
    seed: int = 0,
    extra: dict | None = None,
) -> float:
    """Run one notebook with papermill; returns the wall time (s).

    The executed notebook is written next to a temporary name and moved into place only when
    the run succeeded, so a failed run leaves no half-written chapter behind.
    """
    import papermill as pm

    parameters = {
        "bids_dir": str(Path(bids_dir).resolve()),
        "work_dir": str(Path(work_dir).resolve()),
        "profile": profile,
        "seed": seed,
        **chapter.profile_parameters(profile),
        **(extra or {}),
    }
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    # The kernel inherits this process's environment: a non-interactive backend such as Agg
    # (common in CI) would drop every figure from the executed notebook, and so from the book.
    previous_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(chapter.path),
            str(tmp),
            parameters=parameters,
            cwd=str(REPO_ROOT),
            kernel_name="python3",
            progress_bar=False,
        )
    finally:
        if previous_backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = previous_backend
    elapsed = time.perf_counter() - start
    _hide_injected_parameters(tmp)
    os.replace(tmp, output)
    return elapsed


def write_timings(src: Path, profile: str, timings: dict[str, float]) -> None:
    """Write the build-report table (``book/build-timings.md``) and ``build-timings.json`` into ``src``."""
    rows = "\n".join(f"| `{name}` | {seconds:.1f} |" for name, seconds in timings.items())
    total = sum(timings.values())
    machine = f"{os.cpu_count()} CPU cores"
    try:
        import torch

        if torch.cuda.is_available():
            machine += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    text = (
        f"Profile **{profile}**, built on {time.strftime('%Y-%m-%d %H:%M %Z')} on {machine}.\n\n"
        "| notebook | seconds |\n|---|---|\n"
        f"{rows}\n| **total** | {total:.1f} |\n"
    )
    (src / "book" / "build-timings.md").write_text(text)
    (src / "build-timings.json").write_text(json.dumps({"profile": profile, "seconds": timings}, indent=2))


def prepare_sources(build_dir: Path) -> Path:
    """Copy the book sources into a fresh ``build_dir/src`` and return that directory."""
    src = Path(build_dir).resolve() / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in BOOK_SOURCES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name)
        else:
            shutil.copy2(source, src / name)
    _vendor_mathjax(src)
    return src


def _vendor_mathjax(src: Path) -> None:
    """Serve MathJax from the book itself when the environment has a copy (``make`` installs one).

    Without it, pages load MathJax from its CDN and show raw TeX when read offline.
    """
    es5 = Path(sys.prefix) / "share" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        return
    shutil.copytree(es5, src / "_static" / "mathjax")
    config_path = src / "_config.yml"
    config = yaml.safe_load(config_path.read_text())
    config.setdefault("sphinx", {}).setdefault("config", {})["mathjax_path"] = "mathjax/tex-chtml.js"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def build_book(src: Path, build_dir: Path) -> Path:
    """Run ``jupyter-book build`` on ``src`` with warnings as errors; returns ``build_dir/html``.

    Raises
    ------
    subprocess.CalledProcessError
        When Sphinx reports any warning: a missing glue key, figure, reference or page.
    """
    build_dir = Path(build_dir).resolve()
    staging = build_dir / "jb"
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "--path-output", str(staging),
           "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    html = build_dir / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(staging / "_build" / "html"), html)
    shutil.rmtree(staging)
    return html


def write_parameter_reference(src: Path, chapters: list[Chapter] | None = None) -> None:
    """Write ``book/chapter-parameters.md``: every chapter's papermill parameters and profile values.

    Read from the notebooks themselves (their ``parameters`` cell and metadata), so the page that
    includes it cannot drift from the code.
    """
    import papermill as pm

    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    sections = []
    for chapter in chapters if chapters is not None else find_chapters():
        parameters = pm.inspect_notebook(str(chapter.path))
        profiles = {name: chapter.profile_parameters(name) for name in ("quick", "paper")}
        rows = []
        for name, info in parameters.items():
            quick = profiles["quick"].get(name, "")
            paper = profiles["paper"].get(name, "")
            rows.append(f"| `{name}` | `{cell(info['default'])}` | {cell(quick)} | {cell(paper)} | {cell(info['help'])} |")
        sections.append(
            f"### `{chapter.path.name}`\n\n| parameter | default | quick | paper | meaning |\n|---|---|---|---|---|\n"
            + "\n".join(rows)
            + "\n"
        )
    (src / "book" / "chapter-parameters.md").write_text("\n".join(sections))


def run_study(
    profile: str = "quick",
    build_dir: Path = REPO_ROOT / "_build",
    bids_dir: Path | None = None,
    work_dir: Path | None = None,
    seed: int = 0,
    only: list[str] | None = None,
    build: bool = True,
) -> Path:
    """Execute the chapters for ``profile`` and build the book; returns the HTML directory.

    Parameters
    ----------
    profile : {"smoke", "quick", "paper"}
    build_dir : Path
        Build tree: ``src/`` (book sources and executed notebooks) and ``html/``.
    bids_dir, work_dir : Path, optional
        Input dataset and working directory; default ``work/<profile>/bids`` and
        ``work/<profile>`` under the repository (the embedded cohort is generated there).
    seed : int
        Seed passed to every notebook.
    only : list of str, optional
        Chapter numbers to run (default: all); the book is built only when all ran.
    build : bool
        Run ``jupyter-book build`` after the notebooks.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    build_dir = Path(build_dir).resolve()
    work_dir = Path(work_dir or REPO_ROOT / "work" / profile).resolve()
    bids_dir = Path(bids_dir or work_dir / "bids").resolve()
    src = prepare_sources(build_dir)
    timings: dict[str, float] = {}
    chapters = find_chapters(only=only)
    for i, chapter in enumerate(chapters, 1):
        print(f"[{i}/{len(chapters)}] {chapter.path.name} (profile {profile})", flush=True)
        timings[chapter.path.name] = execute_chapter(
            chapter, src / "notebooks" / chapter.path.name, profile, bids_dir, work_dir, seed
        )
        print(f"    {timings[chapter.path.name]:.1f} s", flush=True)
    write_timings(src, profile, timings)
    write_parameter_reference(src)
    html = build_dir / "html"
    if build and not only:
        html = build_book(src, build_dir)
        print(f"book: {html / 'index.html'}")
    return html


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m qt1lib.study``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / "_build")
    parser.add_argument("--bids-dir", type=Path, default=None, help="BIDS dataset (default: the embedded cohort)")
    parser.add_argument("--work-dir", type=Path, default=None, help="working directory for derivatives and caches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notebooks", nargs="*", default=None, help="chapter numbers to run, e.g. 01 02")
    parser.add_argument("--no-book", action="store_true", help="run the notebooks but do not build the book")
    args = parser.parse_args(argv)
    run_study(args.profile, args.build_dir, args.bids_dir, args.work_dir, args.seed, args.notebooks, not args.no_book)
    return 0


if __name__ == "__main__":
    sys.exit(main())
