"""The study runner: execute every chapter with papermill for a profile, then build the book.

Profiles
--------
``quick``  the embedded default: 2 mm digital cohort, small Monte-Carlo and patch sets (about
           17 minutes on 2 CPU cores from a fresh clone, installation included, measured 2026-12-01;
           11.5 minutes on the machine of 2026-11-25); what ``make book`` builds.
``paper``  the study at full size (1 mm, full Monte-Carlo, width-64 networks trained on two inputs;
           about 2.2 hours on 2 CPU cores without a GPU, estimated 2026-12-03 from measured parts:
           chapters 01-05 took 23 minutes, and chapter 06 trains eight networks of about 12 minutes
           each; book/rerun.md gives the details).
``smoke``  tiny parameters that only check that every notebook runs (tests).

The profiles live in :mod:`qt1lib.config`: :class:`~qt1lib.config.StudyConfig` (cohort, pipeline,
calibration) and each chapter's own knobs (:func:`qt1lib.config.chapter_parameters`). The runner
copies the book sources (``_config.yml``, ``_toc.yml``, ``book/``) into a build tree, checks every
chapter's parameters against its parameters cell (:mod:`qt1lib.notebook`: an unknown name or a
value of the wrong type fails before any chapter runs), executes the notebooks into that tree
(hiding papermill's injected-parameters cell) while it shows the cells done and the time spent,
records how long each one took, and runs ``jupyter-book build`` with warnings treated as errors
(a missing glue key, figure or reference fails the build). The executed notebooks, which the pages
offer for download, carry no path of the build machine (:func:`make_portable`); the build report
records the commit, the package versions, the profile, the seed and the machine
(:func:`write_timings`); the landing page's "How to cite" is rendered from ``CITATION.cff``
(:func:`write_citation`); every page loads one MathJax component (:data:`MATHJAX_COMPONENT`), and a page
with an interactive figure the book's one copy of plotly.js (:mod:`qt1lib.book_sphinx`). One runner at a
time may use a build directory (a lock file, ``.qt1study.lock``, held with ``fcntl.flock``).

Usage::

    python -m qt1lib.study --profile quick
    python -m qt1lib.study --profile smoke --no-book --notebooks 01 02
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import nbformat
import yaml

from . import config as _config
from .cpus import usable_cpus
from .notebook import BOOK_BUILD_ENV, ParameterError, check_notebook_parameters, declared_parameters

__all__ = [
    "PROFILES",
    "LOCK_NAME",
    "BuildDirectoryLocked",
    "build_lock",
    "Chapter",
    "find_chapters",
    "chapter_run_parameters",
    "CellProgress",
    "prepare_sources",
    "MATHJAX_COMPONENT",
    "citation_markdown",
    "write_citation",
    "REPOSITORY_ENV",
    "RepositoryURLError",
    "remote_web_url",
    "find_repository_url",
    "write_repository_settings",
    "execute_chapter",
    "portable_parameters",
    "make_portable",
    "write_timings",
    "solution_seconds",
    "build_provenance",
    "write_parameter_reference",
    "build_book",
    "dataset_lacks",
    "write_skipped_chapter",
    "run_study",
    "main",
]

PROFILES = _config.PROFILES
REPO_ROOT = Path(__file__).resolve().parent.parent
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "_static")  # _static: the stylesheet (Jupyter Book adds its .css to every page)
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
#: Lock file of a build directory: one runner at a time (:func:`build_lock`).
LOCK_NAME = ".qt1study.lock"
_ENGINE = "qt1lib-progress"


@dataclass(frozen=True)
class Chapter:
    """A papermill-parameterised notebook of the book."""

    path: Path

    @property
    def key(self) -> str:
        """The chapter's number prefix, e.g. ``"02"``."""
        return self.path.name.split("_", 1)[0]

    def profile_parameters(self, profile: str) -> dict:
        """The papermill parameters that ``profile`` gives this chapter (:func:`qt1lib.config.chapter_parameters`)."""
        return _config.chapter_parameters(self.path.stem, profile)

    def declared_parameters(self) -> dict:
        """The parameters its parameters cell declares (:func:`qt1lib.notebook.declared_parameters`)."""
        return declared_parameters(self.path)

    @property
    def needs(self) -> tuple[str, ...]:
        """What the chapter needs of the dataset besides MP2RAGE images (notebook metadata
        ``qt1.needs``): ``"sir"`` for the chapters that compare with the SIR reference."""
        return tuple(nbformat.read(self.path, as_version=4).metadata.get("qt1", {}).get("needs", ()))


def dataset_lacks(chapter: Chapter, bids_dir: Path | None) -> str | None:
    """Why ``chapter`` cannot run on the dataset ``bids_dir`` (None: the digital cohort, which has
    everything), or None when it can."""
    if bids_dir is None or "sir" not in chapter.needs:
        return None
    from .bids import has_sir, list_subjects

    if not any(has_sir(bids_dir, s) for s in list_subjects(bids_dir)):
        return f"no subject of {bids_dir} has SIR images (`acq-SIR_inv-<k>_IRT1`), which this chapter compares with"
    return None


def write_skipped_chapter(chapter: Chapter, output: Path, reason: str) -> None:
    """Write the chapter unexecuted, with a note after its title saying why it did not run."""
    nb = nbformat.read(chapter.path, as_version=4)
    note = nbformat.v4.new_markdown_cell(f"```{{note}}\nThis chapter did not run on this dataset: {reason}.\n```")
    nb.cells.insert(1, note)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(output))


def find_chapters(notebook_dir: Path = REPO_ROOT / "notebooks", only: list[str] | None = None) -> list[Chapter]:
    """Notebooks named ``NN_*.ipynb`` in order; ``only`` keeps those whose number is listed."""
    chapters = [Chapter(p) for p in sorted(Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))]
    if only:
        unknown = set(only) - {c.key for c in chapters}
        if unknown:
            raise ValueError(f"no notebook numbered {sorted(unknown)} in {notebook_dir}")
        chapters = [c for c in chapters if c.key in only]
    return chapters


def portable_parameters(parameters: dict[str, Any], declared: dict) -> dict[str, Any]:
    """The run's parameters as a reader's copy of the notebook should carry them: no machine paths.

    A path parameter (``bids_dir``, ``work_dir``: every string that is an absolute path) inside the
    repository becomes relative to it (the runner executes the chapters with the repository as
    working directory, so the value means the same there); one outside it (a temporary build, a
    user's dataset) becomes the notebook's declared default. Other values are kept.

    Parameters
    ----------
    parameters : dict
        The values the chapter ran with (:func:`chapter_run_parameters`).
    declared : dict
        Its parameters cell (:meth:`Chapter.declared_parameters`): name ->
        :class:`qt1lib.notebook.Parameter`, whose ``default`` replaces a path outside the repository.
    """
    portable = {}
    for name, value in parameters.items():
        if isinstance(value, str) and os.path.isabs(value):
            path = Path(value)
            if path.is_relative_to(REPO_ROOT):
                value = path.relative_to(REPO_ROOT).as_posix() or "."
            elif name in declared:
                value = declared[name].default
        portable[name] = value
    return portable


def _machine_paths(parameters: dict[str, Any], portable: dict[str, Any]) -> list[tuple[str, str]]:
    """(absolute prefix, replacement) pairs for the text of outputs, longest prefix first: each path
    parameter by its portable value, then the Python environment and the repository."""
    pairs = {str(Path(sys.prefix)): "<python-environment>", str(REPO_ROOT): "."}
    for name, value in parameters.items():
        if isinstance(value, str) and os.path.isabs(value) and isinstance(portable.get(name), str):
            pairs[str(Path(value))] = portable[name] or f"<{name}>"
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))


def _strip_paths(text: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(text, list):
        return [_strip_paths(t, pairs) for t in text]
    if not isinstance(text, str):
        return text
    for prefix, replacement in pairs:  # a whole path component only: /a/b does not match /a/bc
        text = re.sub(re.escape(prefix) + r"(?![\w.-])", lambda _: replacement, text)
    return text


def make_portable(path: Path, parameters: dict[str, Any], declared: dict) -> None:
    """Rewrite an executed chapter so that it carries no path of the machine that built it.

    The readers download these notebooks from the pages. papermill writes the run's absolute paths
    into the injected-parameters cell and its metadata (``input_path``, ``output_path``,
    ``parameters``); this rewrites the injected cell from :func:`portable_parameters` with
    papermill's own translator, tags it ``remove-cell`` (the pages do not show it), sets the
    metadata's paths relative to the repository, and replaces the run's path prefixes in the text of
    the outputs (streams, ``text/*`` data): a path parameter by its portable value, the Python
    environment by ``<python-environment>``, the repository by ``.``.
    """
    from papermill.translators import translate_parameters

    nb = nbformat.read(path, as_version=4)
    portable = portable_parameters(parameters, declared)
    pairs = _machine_paths(parameters, portable)
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    language = nb.metadata.get("language_info", {}).get("name", "python")
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.source = translate_parameters(kernel, language, portable, "Parameters")
            if "remove-cell" not in tags:
                cell.metadata["tags"] = [*tags, "remove-cell"]
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = _strip_paths(output["text"], pairs)
            for mime, data in output.get("data", {}).items():
                if mime.startswith("text/") or mime.startswith("application/papermill.record/text/"):
                    output["data"][mime] = _strip_paths(data, pairs)
    papermill = nb.metadata.get("papermill")
    if papermill is not None:
        papermill["parameters"] = portable
        name = Path(papermill.get("input_path") or path.name).name  # the chapter's source notebook
        papermill["input_path"] = papermill["output_path"] = f"notebooks/{name}"
    tmp = path.with_suffix(".tmp.ipynb")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)


class BuildDirectoryLocked(RuntimeError):
    """Another runner holds the build directory."""


@contextmanager
def build_lock(build_dir: Path) -> Iterator[Path]:
    """Hold the build directory's lock file (``build_dir/.qt1study.lock``) for the ``with`` block.

    An exclusive ``fcntl.flock`` on the file, which records the holder's PID; the kernel releases it
    when the holder exits, however it exits.

    Raises
    ------
    BuildDirectoryLocked
        Another process holds it; the message names the directory and that process's PID.
    """
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        pid = f"PID {holder}" if holder.isdigit() else "a process whose PID is not recorded yet"
        raise BuildDirectoryLocked(
            f"build directory {build_dir} is in use by another qt1lib.study runner ({pid}, lock file {path}); "
            "wait for it to finish or choose another --build-dir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class CellProgress:
    """Progress of one notebook: cells done of total and the time spent.

    A tqdm bar on a terminal; otherwise (logs, CI) a line at most every ``interval`` seconds.
    It is drawn by the runner process on ``stream`` (default stderr), never in the notebook, so
    no bar reaches the rendered pages.
    """

    def __init__(self, name: str, stream: IO[str] | None = None, interval: float = 30.0):
        self.name = name
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.start_time = time.perf_counter()
        self._last = self.start_time
        self._bar = None
        self.done = 0
        self.total = 0

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        self.start_time = self._last = time.perf_counter()
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.name, unit="cell", file=self.stream, leave=False,
                             dynamic_ncols=True, bar_format="{desc}: {n_fmt}/{total_fmt} cells |{bar}| {elapsed}")

    def __call__(self, cell_index: int | None, total: int) -> None:
        """A cell completed (papermill's ``cell_complete``)."""
        self.done = min(self.done + 1, total)
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(1)
            return
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            print(f"    {self.name}: {self.done}/{total} cells, {now - self.start_time:.0f} s", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _kernel_manager_class() -> type:
    """The kernel manager of the chapters' runs: on POSIX, kernels talk to papermill over Unix sockets
    (ZeroMQ ``ipc`` transport) instead of unencrypted localhost TCP ports, which other users of the
    machine could reach (and which ipykernel warns about for every chapter); elsewhere, the default."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    if os.name != "posix":
        return AsyncKernelManager

    class LocalSocketKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

    return LocalSocketKernelManager


def _register_engine() -> str:
    """Register (once) the papermill engine that reports each completed cell to a :class:`CellProgress`."""
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.exceptions import PapermillException

    try:
        papermill_engines.get_engine(_ENGINE)
    except PapermillException:

        class ProgressEngine(NBClientEngine):
            """nbclient, plus a callback ``progress(cell_index, n_cells)`` after each cell."""

            @classmethod
            def execute_managed_notebook(cls, nb_man, kernel_name, progress: Callable | None = None, **kwargs):
                if progress is not None:
                    complete = nb_man.cell_complete

                    def cell_complete(cell, cell_index=None, **kw):
                        complete(cell, cell_index=cell_index, **kw)
                        progress(cell_index, len(nb_man.nb.cells))

                    nb_man.cell_complete = cell_complete
                    if hasattr(progress, "start"):
                        progress.start(len(nb_man.nb.cells))
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

        papermill_engines.register(_ENGINE, ProgressEngine)
    return _ENGINE


def chapter_run_parameters(
    chapter: Chapter,
    profile: str,
    bids_dir: Path | None,
    work_dir: Path,
    seed: int = 0,
    extra: dict | None = None,
) -> dict[str, Any]:
    """The papermill parameters of a chapter's run, validated against its parameters cell.

    ``bids_dir`` (``""`` for None: the digital cohort in ``work_dir/bids``), ``work_dir``,
    ``profile``, ``seed``, the profile's values (:meth:`Chapter.profile_parameters`) and ``extra``.

    Raises
    ------
    qt1lib.notebook.ParameterError
        A name the chapter does not declare, or a value of the wrong type.
    """
    parameters = {
        "bids_dir": "" if bids_dir is None else str(Path(bids_dir).resolve()),
        "work_dir": str(Path(work_dir).resolve()),
        "profile": profile,
        "seed": seed,
        **chapter.profile_parameters(profile),
        **(extra or {}),
    }
    return check_notebook_parameters(chapter.path, parameters)


def execute_chapter(
    chapter: Chapter,
    output: Path,
    profile: str,
    bids_dir: Path | None,
    work_dir: Path,
    seed: int = 0,
    extra: dict | None = None,
    progress: bool | None = None,
) -> float:
    """Run one notebook with papermill; returns the wall time (s).

    The parameters are checked first (:func:`chapter_run_parameters`). The executed notebook is
    written next to a temporary name and moved into place only when the run succeeded, so a
    failed run leaves no half-written chapter behind. ``progress``: show cells done and time
    spent on stderr (:class:`CellProgress`); None: yes (a bar on a terminal, else a line every
    30 s).
    """
    import papermill as pm

    parameters = chapter_run_parameters(chapter, profile, bids_dir, work_dir, seed, extra)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    reporter = CellProgress(chapter.path.stem) if progress is not False else None
    # The kernel inherits this process's environment: a non-interactive backend such as Agg
    # (common in CI) would drop every figure from the executed notebook, and so from the book.
    previous_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    # ... and this flag: glued figures are then shown by their captions alone (qt1lib.notebook.glue_figure)
    previous_flag = os.environ.get(BOOK_BUILD_ENV)
    os.environ[BOOK_BUILD_ENV] = "1"
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(chapter.path),
            str(tmp),
            parameters=parameters,
            cwd=str(REPO_ROOT),
            kernel_name="python3",
            engine_name=_register_engine(),
            progress_bar=False,  # papermill's own bar: replaced by CellProgress
            progress=reporter,
            kernel_manager_class=_kernel_manager_class(),
        )
    finally:
        if reporter is not None:
            reporter.close()
        for name, previous in (("MPLBACKEND", previous_backend), (BOOK_BUILD_ENV, previous_flag)):
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
    elapsed = time.perf_counter() - start
    make_portable(tmp, parameters, chapter.declared_parameters())
    os.replace(tmp, output)
    return elapsed


#: Distributions whose versions the build report lists (importlib.metadata names).
REPORT_PACKAGES = ("numpy", "scipy", "pandas", "torch", "antspyx", "nibabel", "statsmodels", "matplotlib", "plotly",
                   "papermill", "jupyter-book", "myst-nb", "sphinx")
#: The chapters that a two-hour lab on a laptop CPU runs live; the others are read from a precomputed build.
LAB_LIVE = ("01", "02", "03")


def _git(*args: str) -> str | None:
    try:
        run = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def build_provenance(profile: str, seed: int) -> dict[str, Any]:
    """What a build ran on: the commit (``git rev-parse HEAD``; ``"unknown"`` outside a git
    checkout) and whether the working tree had uncommitted changes, the versions of Python and of
    :data:`REPORT_PACKAGES`, the MathJax copy, the profile, the seed and the machine (CPU cores, the
    cores this process may use, torch's threads, the GPU if any)."""
    from importlib import metadata

    commit = _git("rev-parse", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no") if commit != "unknown" else None
    versions = {"python": sys.version.split()[0]}
    for name in REPORT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    package_json = Path(sys.prefix) / "share" / "mathjax" / "package.json"
    versions["mathjax"] = (json.loads(package_json.read_text()).get("version", "unknown") + f" ({MATHJAX_COMPONENT})"
                           if package_json.is_file() else "from its CDN")
    machine: dict[str, Any] = {"cpu_cores": os.cpu_count(), "usable_cores": usable_cpus()}
    try:
        import torch

        machine["torch_threads"] = torch.get_num_threads()
        machine["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a dependency
        machine["gpu"] = None
    return {"profile": profile, "seed": seed, "commit": commit, "uncommitted_changes": bool(status),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "versions": versions, "machine": machine}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def solution_seconds(notebook: Path) -> float:
    """Seconds an executed chapter spent in its exercises' solutions: the sum of the ``exNN_k_seconds``
    that :func:`qt1lib.notebook.glue_solution` glues for each solution it ran (0 when none ran)."""
    total = 0.0
    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name", "")
            if re.fullmatch(r"ex\d\d_\d+_seconds", name):
                total += float(str(output["data"]["application/papermill.record/text/plain"]).strip("'\""))
    return total


def write_timings(src: Path, profile: str, timings: dict[str, float], seed: int = 0) -> None:
    """Write the build report into ``src``: ``book/build-timings.md`` (provenance and the time of each
    chapter, included by ``book/build-report.md``), ``book/lab-timings.md`` (the lab plan's table,
    included by ``book/teaching.md``) and ``build-timings.json`` (the same, machine-readable).

    Parameters
    ----------
    src : Path
        The build tree's sources (:func:`prepare_sources`).
    profile : str
        The profile the chapters ran with.
    timings : dict
        Notebook file name -> wall time of its papermill run (s).
    seed : int
        The seed passed to every chapter.
    """
    info = build_provenance(profile, seed)
    total = sum(timings.values())
    machine = info["machine"]
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU"
    dirty = " (with uncommitted changes)" if info["uncommitted_changes"] else ""
    commit = info["commit"] if info["commit"] == "unknown" else f"`{info['commit']}`"
    repository = (yaml.safe_load((src / "_config.yml").read_text()).get("repository") or {}).get("url")
    repository = f"<{repository}>" if repository else "none named (no repository or launch buttons)"
    solving = {name: solution_seconds(src / "notebooks" / name) if (src / "notebooks" / name).is_file() else 0.0
               for name in timings}
    rows = "\n".join(f"| `{name}` | {seconds:.1f} | {solving[name]:.1f} |" for name, seconds in timings.items())
    versions = "\n".join(f"| {name} | {version} |" for name, version in info["versions"].items())
    text = (
        f"| | |\n|---|---|\n| profile | **{profile}** |\n| seed | {seed} |\n| commit | {commit}{dirty} |\n"
        f"| built | {info['date']} |\n| repository | {repository} |\n| machine | {machine['cpu_cores']} CPU cores ({machine['usable_cores']} usable, "
        f"torch threads: {machine.get('torch_threads', '?')}){gpu} |\n\n"
        "## Time per chapter\n\nThe time of each papermill run, and the part of it spent in the exercises' solutions "
        "(the *What you should see* dropdowns; `-p solutions False` skips them).\n\n"
        "| notebook | seconds | of which solutions |\n|---|---|---|\n"
        f"{rows}\n| **total** | {total:.1f} | {sum(solving.values()):.1f} |\n\n## Package versions\n\n| package | version |\n|---|---|\n{versions}\n"
    )
    (src / "book" / "build-timings.md").write_text(text)
    lab = []
    for name, seconds in timings.items():
        key = name.split("_", 1)[0]
        stem = name.removesuffix(".ipynb")
        if key in LAB_LIVE:
            how = f"live: `python -m qt1lib.study --profile {profile} --notebooks {key} --no-book`"
        else:
            how = f"read: the executed page, or `_build/src/notebooks/{name}` in Jupyter"
        lab.append(f"| {{doc}}`../notebooks/{stem}` | {how} | {_minutes(seconds)} |")
    live = sum(s for n, s in timings.items() if n.split("_", 1)[0] in LAB_LIVE)
    (src / "book" / "lab-timings.md").write_text(
        f"Times measured by the build you are reading (profile **{profile}**, {machine['usable_cores']} usable CPU "
        f"cores{gpu}; {{doc}}`build-report`).\n\n| chapter | in the lab | time in this build |\n|---|---|---|\n"
        + "\n".join(lab)
        + f"\n| **live chapters** ({', '.join(LAB_LIVE)}) | | **{_minutes(live)}** |\n"
        f"| **whole build** (the instructor's `make book PROFILE={profile}`, before the lab) | | **{_minutes(total)}** |\n"
    )
    (src / "build-timings.json").write_text(json.dumps({**info, "seconds": timings, "solution_seconds": solving},
                                                       indent=2))


def prepare_sources(build_dir: Path, repository: str | None = None) -> Path:
    """Copy the book sources into a fresh ``build_dir/src`` and return that directory (with the
    environment's MathJax, the rendered citation, the repository and launch buttons and the
    profiles' substitutions).

    Parameters
    ----------
    build_dir : Path
        The build tree; its ``src`` is replaced.
    repository : str, optional
        The book's public repository (https URL); default: :func:`find_repository_url`.
    """
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
    url = find_repository_url(repository)
    write_repository_settings(src, url)
    write_citation(src, repository=url)
    write_profile_substitutions(src)
    return src


#: The one MathJax 3 component that every page loads: TeX input, CommonHTML output and every TeX
#: extension in one file (https://docs.mathjax.org/en/v3.2-latest/web/components/combined.html); its
#: fonts are loaded from ``output/chtml/fonts/woff-v2`` next to it, and only the glyph sets a page uses.
MATHJAX_COMPONENT = "tex-chtml-full.js"
#: Where the vendored copy goes in the build tree: a folder of ``html_extra_path`` that is copied to
#: the site's ``_static/mathjax/``. Not ``_static/`` itself: Jupyter Book 1 adds every ``.js`` file
#: under the source's ``_static`` to every page (``jupyter_book.config``), which made each page load
#: all of MathJax's components and extensions (about 70 files).
MATHJAX_EXTRA = "_mathjax"


def _vendor_mathjax(src: Path) -> None:
    """Serve MathJax from the book itself when the environment has a copy (``make`` installs one).

    Copies the environment's MathJax (``<prefix>/share/mathjax/es5``) without its other combined
    components into ``src/_mathjax/_static/mathjax`` and points ``mathjax_path`` at
    :data:`MATHJAX_COMPONENT` there, so that a page loads one script and the fonts it needs. Without
    a copy, pages load the same component from the CDN that ``_config.yml`` names and show raw TeX
    when read offline.
    """
    es5 = Path(sys.prefix) / "share" / "mathjax" / "es5"
    if not (es5 / MATHJAX_COMPONENT).is_file():
        return
    combined = {p.name for p in es5.glob("*.js")} - {MATHJAX_COMPONENT}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return combined & set(names) if Path(folder) == es5 else set()

    shutil.copytree(es5, src / MATHJAX_EXTRA / "_static" / "mathjax", ignore=ignore)
    config_path = src / "_config.yml"
    config = yaml.safe_load(config_path.read_text())
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["mathjax_path"] = f"mathjax/{MATHJAX_COMPONENT}"
    sphinx_config["html_extra_path"] = [*sphinx_config.get("html_extra_path", []), MATHJAX_EXTRA]
    config["exclude_patterns"] = [*config.get("exclude_patterns", []), MATHJAX_EXTRA]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def _author_names(authors: list[dict]) -> list[str]:
    """CFF authors as "Family GI" (Vancouver style), or an entity's ``name``."""
    names = []
    for author in authors:
        if "family-names" in author:
            initials = "".join(part[0] for part in str(author.get("given-names", "")).replace(".", " ").split())
            names.append(f"{author['family-names']} {initials}".strip())
        else:
            names.append(str(author["name"]))
    return names


def _bibtex(key: str, entry: dict) -> str:
    authors = " and ".join(
        f"{a['family-names']}, {a.get('given-names', '')}".strip(", ") if "family-names" in a else f"{{{a['name']}}}"
        for a in entry.get("authors", [])
    )
    kind = "article" if entry.get("type") == "article" else "software"
    fields = {"author": authors, "title": f"{{{entry['title']}}}", "journal": entry.get("journal"),
              "volume": entry.get("volume"), "pages": entry.get("start"), "year": entry.get("year"),
              "doi": entry.get("doi"), "version": entry.get("version"),
              "url": entry.get("repository-code") or entry.get("url")}
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields.items() if value not in (None, ""))
    return f"@{kind}{{{key},\n{body}\n}}"


def citation_markdown(cff: dict) -> str:
    """The "How to cite" text of a ``CITATION.cff`` (Citation File Format 1.2.0): the work itself, its
    ``preferred-citation`` and its ``references``, each as a sentence, then BibTeX for all of them."""
    if cff.get("cff-version") != "1.2.0" or "title" not in cff or "authors" not in cff:
        raise ValueError("CITATION.cff: expected cff-version 1.2.0 with a title and authors")
    lines = [" ".join(str(cff.get("message", "")).split()), ""]
    version = f" Version {cff['version']}." if "version" in cff else ""
    code = f" <{cff['repository-code']}>" if cff.get("repository-code") else ""
    lines.append(f"- **This book**: {', '.join(_author_names(cff['authors']))}. *{cff['title']}*.{version}{code}")
    bib = [_bibtex("qt1book", cff)]
    preferred = cff.get("preferred-citation")
    if preferred:
        where = f" {preferred['journal']} {preferred.get('volume', '')}:{preferred.get('start', '')}".rstrip(":")
        doi = f" [doi:{preferred['doi']}](https://doi.org/{preferred['doi']})" if "doi" in preferred else ""
        lines.append(f"- **The study it reproduces** (preferred citation): {', '.join(_author_names(preferred['authors']))}."
                     f" {preferred['title']}.{where} ({preferred.get('year', '')}).{doi}")
        bib.append(_bibtex("saunders2025", preferred))
    for i, ref in enumerate(cff.get("references", [])):
        url = ref.get("repository-code") or ref.get("url")
        commit = f", commit `{ref['commit']}`" if "commit" in ref else ""
        link = f" <{url}>{commit}." if url else ""
        lines.append(f"- **Reference**: {', '.join(_author_names(ref.get('authors', [])))}. *{ref['title']}*"
                     f" ({ref.get('year', '')}).{link} {ref.get('notes', '')}".rstrip())
        bib.append(_bibtex(f"reference{i + 1}", ref))
    lines += ["", "BibTeX:", "", "```bibtex", "\n\n".join(bib), "```", ""]
    return "\n".join(lines)


def write_citation(src: Path, cff_path: Path = REPO_ROOT / "CITATION.cff", repository: str | None = None) -> None:
    """Write ``src/book/citation.md`` (included by the landing page) from the repository's
    ``CITATION.cff`` (:func:`citation_markdown`), so the page cannot drift from the file.
    ``repository`` (the book's URL, :func:`find_repository_url`) fills the book's
    ``repository-code`` where the file leaves it out."""
    cff = yaml.safe_load(Path(cff_path).read_text())
    if repository and not cff.get("repository-code"):
        cff = {**cff, "repository-code": repository}
    (src / "book" / "citation.md").write_text(citation_markdown(cff))


class RepositoryURLError(ValueError):
    """The repository URL given for the build is not an https URL."""


#: Environment variable naming the book's public repository (https URL) for the build; the command
#: line's ``--repository-url`` takes precedence over it.
REPOSITORY_ENV = "QT1_REPOSITORY_URL"
_FORGE_REMOTE = re.compile(
    r"(?:https?://|ssh://)?(?:[^@/\s]+@)?(github\.com|gitlab\.com|codeberg\.org|bitbucket\.org)[:/]"
    r"([\w.-]+/[\w.-]+?)(?:\.git)?/?"
)


def remote_web_url(remote: str) -> str | None:
    """The https address of a git remote on a public forge (GitHub, GitLab, Codeberg, Bitbucket), in
    https or ssh form; None for anything else (a local path, a private host)."""
    match = _FORGE_REMOTE.fullmatch(remote.strip())
    return f"https://{match[1]}/{match[2]}" if match else None


def find_repository_url(explicit: str | None = None, cff_path: Path = REPO_ROOT / "CITATION.cff") -> str | None:
    """The book's public repository, for its repository and launch buttons and its citation.

    In order: ``explicit`` (the command line's ``--repository-url``), the environment variable
    :data:`REPOSITORY_ENV`, ``repository-code`` in ``CITATION.cff``, then the checkout's ``origin``
    remote when it is on a public forge (:func:`remote_web_url`). None when none of them names
    one: a clone of a local copy publishes no link rather than a wrong one.

    Raises
    ------
    RepositoryURLError
        ``explicit`` or :data:`REPOSITORY_ENV` is set but is not an https URL.
    """
    for name, value in (("--repository-url", explicit), (REPOSITORY_ENV, os.environ.get(REPOSITORY_ENV))):
        if value:
            if not re.fullmatch(r"https://[^\s/]+/\S+", value):
                raise RepositoryURLError(f"{name}: expected the repository's https URL (https://github.com/OWNER/NAME), got {value!r}")
            return value.rstrip("/")
    cff = yaml.safe_load(Path(cff_path).read_text()) if Path(cff_path).is_file() else {}
    if cff.get("repository-code"):
        return str(cff["repository-code"]).rstrip("/")
    origin = _git("remote", "get-url", "origin")
    return remote_web_url(origin) if origin else None


def write_repository_settings(src: Path, url: str | None) -> None:
    """Point the repository and launch buttons of ``src/_config.yml`` at ``url``, or drop them.

    Without a URL the repository button and the launch buttons are turned off. Binder and Colab
    links are kept only for a GitHub repository, the one provider sphinx-book-theme builds them
    for (it warns, and a strict build fails, on any other). Only links: nothing is fetched.
    """
    config_path = src / "_config.yml"
    config = yaml.safe_load(config_path.read_text())
    config.setdefault("repository", {})["url"] = url or ""
    config.setdefault("html", {})["use_repository_button"] = bool(url)
    if not (url and url.startswith("https://github.com/")):
        launch = config.setdefault("launch_buttons", {})
        for key in ("binderhub_url", "colab_url", "jupyterhub_url"):
            if key in launch:
                launch[key] = ""
    tmp = config_path.with_name(f".{config_path.name}.tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, config_path)


def build_book(src: Path, build_dir: Path, strict: bool = True) -> Path:
    """Run ``jupyter-book build`` on ``src``; returns ``build_dir/html``.

    ``strict``: warnings are errors (the book of the digital cohort). The book of a user's dataset
    is built without: a chapter that did not run, or a section that does not apply, leaves glue
    keys unset, and its pages say why.

    Raises
    ------
    subprocess.CalledProcessError
        When Sphinx fails, or (``strict``) reports any warning: a missing glue key, figure,
        reference or page.
    """
    build_dir = Path(build_dir).resolve()
    staging = build_dir / "jb"
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "--path-output", str(staging),
           *(["-W", "-n"] if strict else []), "--keep-going"]
    subprocess.run(cmd, check=True)
    html = build_dir / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(staging / "_build" / "html"), html)
    shutil.rmtree(staging)
    return html


def write_parameter_reference(src: Path, chapters: list[Chapter] | None = None) -> None:
    """Write ``book/chapter-parameters.md``: every chapter's papermill parameters and profile values.

    Read from the notebooks' parameters cells (name, default, meaning) and from
    :mod:`qt1lib.config` (the values of the ``quick`` and ``paper`` profiles), the sources the
    runner uses, so the page that includes it cannot drift from the code.
    """

    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    sections = []
    for chapter in chapters if chapters is not None else find_chapters():
        parameters = chapter.declared_parameters()
        profiles = {name: chapter.profile_parameters(name) for name in ("quick", "paper")}
        rows = []
        for name, info in parameters.items():
            quick = profiles["quick"].get(name, "")
            paper = profiles["paper"].get(name, "")
            rows.append(f"| `{name}` | `{cell(info.source)}` | {cell(quick)} | {cell(paper)} | {cell(info.help)} |")
        sections.append(
            f"### `{chapter.path.name}`\n\n| parameter | default | quick | paper | meaning |\n|---|---|---|---|---|\n"
            + "\n".join(rows)
            + "\n"
        )
    (src / "book" / "chapter-parameters.md").write_text("\n".join(sections))


#: Fields of the calibration network that the prose states per profile (``{{ quick_max_epochs }}`` ...).
SUBSTITUTED_CALIBRATION = ("width", "max_epochs", "patience", "batch_size", "patches_per_epoch")


def write_profile_substitutions(src: Path) -> dict[str, str]:
    """Add the profiles' calibration settings to ``src/_config.yml`` as MyST substitutions; returns them.

    ``{{ quick_max_epochs }}``, ``{{ paper_patience }}`` ... (profile, then a field of
    :data:`SUBSTITUTED_CALIBRATION`) read from :meth:`qt1lib.config.StudyConfig.for_profile`, the
    configuration the runner uses, so the assumptions and rerun pages cannot drift from it.
    """
    values = {}
    for profile in ("smoke", "quick", "paper"):
        calibration = _config.StudyConfig.for_profile(profile).calibration
        for field in SUBSTITUTED_CALIBRATION:
            values[f"{profile}_{field}"] = f"{getattr(calibration, field):,}"
    config_path = src / "_config.yml"
    config = yaml.safe_load(config_path.read_text())
    parse = config.setdefault("parse", {})
    parse["myst_substitutions"] = {**parse.get("myst_substitutions", {}), **values}
    tmp = config_path.with_name(f".{config_path.name}.tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, config_path)
    return values


def run_study(
    profile: str = "quick",
    build_dir: Path = REPO_ROOT / "_build",
    bids_dir: Path | None = None,
    work_dir: Path | None = None,
    seed: int = 0,
    only: list[str] | None = None,
    build: bool = True,
    progress: bool | None = None,
    repository: str | None = None,
) -> Path:
    """Execute the chapters for ``profile`` and build the book; returns the HTML directory.

    Parameters
    ----------
    profile : {"smoke", "quick", "paper"}
        Profile of :mod:`qt1lib.config`.
    build_dir : Path
        Build tree: ``src/`` (book sources and executed notebooks) and ``html/``. One runner at a
        time (:func:`build_lock`).
    bids_dir : Path, optional
        A BIDS dataset (yours, or a cohort that ``qt1-cohort`` wrote); it must exist. Default:
        the digital cohort, generated (or reused) in ``<work_dir>/bids``. Chapters that need
        what the dataset lacks (SIR images) are written unexecuted with a note saying why, and
        the book of a user's dataset is built without treating warnings as errors.
    work_dir : Path, optional
        Working directory: the store of cached results and the derivatives
        (``<work_dir>/derivatives``); default ``work/<profile>`` under the repository.
    seed : int
        Seed passed to every notebook.
    only : list of str, optional
        Chapter numbers to run (default: all); the book is built only when all ran.
    build : bool
        Run ``jupyter-book build`` after the notebooks.
    progress : bool, optional
        Show each chapter's cells done and time spent (:class:`CellProgress`); default yes.
    repository : str, optional
        The book's public repository (https URL) for its repository and launch buttons and its
        citation; default: :func:`find_repository_url` (``QT1_REPOSITORY_URL``, ``CITATION.cff``,
        the ``origin`` remote), none when none names one.

    Raises
    ------
    BuildDirectoryLocked
        Another runner uses ``build_dir``.
    qt1lib.notebook.ParameterError
        A chapter's parameters do not match its parameters cell (checked for every chapter
        before the first one runs).
    FileNotFoundError
        ``bids_dir`` does not exist (a dataset is never simulated where a path was given).
    RepositoryURLError
        ``repository`` is not an https URL.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    build_dir = Path(build_dir).resolve()
    work_dir = Path(work_dir or REPO_ROOT / "work" / profile).resolve()
    if bids_dir is not None:
        bids_dir = Path(bids_dir).resolve()
        if not bids_dir.is_dir():
            raise FileNotFoundError(
                f"bids_dir {bids_dir} is not a directory; give an existing BIDS dataset, or leave --bids-dir out "
                "for the digital cohort (qt1-cohort DIR writes one)"
            )
    with build_lock(build_dir):
        chapters = find_chapters(only=only)
        for chapter in chapters:  # fail before anything runs
            chapter_run_parameters(chapter, profile, bids_dir, work_dir, seed)
        src = prepare_sources(build_dir, repository)
        timings: dict[str, float] = {}
        for i, chapter in enumerate(chapters, 1):
            print(f"[{i}/{len(chapters)}] {chapter.path.name} (profile {profile})", flush=True)
            lacking = dataset_lacks(chapter, bids_dir)
            if lacking:
                print(f"    not run: {lacking}", flush=True)
                write_skipped_chapter(chapter, src / "notebooks" / chapter.path.name, lacking)
                continue
            timings[chapter.path.name] = execute_chapter(
                chapter, src / "notebooks" / chapter.path.name, profile, bids_dir, work_dir, seed, progress=progress
            )
            print(f"    {timings[chapter.path.name]:.1f} s", flush=True)
        write_timings(src, profile, timings, seed)
        write_parameter_reference(src)
        html = build_dir / "html"
        if build and not only:
            html = build_book(src, build_dir, strict=bids_dir is None)
            print(f"book: {html / 'index.html'}")
    return html


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m qt1lib.study``); 2 when the build directory is in
    use or a chapter's parameters are invalid."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / "_build")
    parser.add_argument("--bids-dir", type=Path, default=None, help="BIDS dataset (default: the embedded cohort)")
    parser.add_argument("--work-dir", type=Path, default=None, help="working directory for derivatives and caches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notebooks", nargs="*", default=None, help="chapter numbers to run, e.g. 01 02")
    parser.add_argument("--no-book", action="store_true", help="run the notebooks but do not build the book")
    parser.add_argument("--no-progress", action="store_true", help="do not show the cells done within a chapter")
    parser.add_argument("--repository-url", default=None,
                        help=f"the book's public repository for its repository and launch buttons (default: ${REPOSITORY_ENV}, "
                             "CITATION.cff's repository-code, or the origin remote on a public forge; none: no buttons)")
    args = parser.parse_args(argv)
    try:
        repository = find_repository_url(args.repository_url)
        run_study(args.profile, args.build_dir, args.bids_dir, args.work_dir, args.seed, args.notebooks,
                  not args.no_book, progress=False if args.no_progress else None, repository=repository)
    except (BuildDirectoryLocked, ParameterError, FileNotFoundError, RepositoryURLError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
