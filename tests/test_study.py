"""The runner (qt1lib.study): one runner per build directory, progress within a chapter, the parameter page."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import nbformat
import papermill as pm
import pytest

from qt1lib import study
from qt1lib.notebook import PARAMETERS_HEADER

HOLD = (
    "import sys, time\n"
    "from qt1lib.study import build_lock\n"
    "with build_lock(sys.argv[1]):\n"
    "    print('locked', flush=True)\n"
    "    time.sleep(120)\n"
)


def test_a_second_runner_on_the_same_build_directory_is_refused(tmp_path):
    build_dir = tmp_path / "build"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(build_dir)], stdout=subprocess.PIPE, text=True,
                              cwd=study.REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        run = subprocess.run(
            [sys.executable, "-m", "qt1lib.study", "--profile", "smoke", "--build-dir", str(build_dir),
             "--notebooks", "01", "--no-book"],
            capture_output=True, text=True, timeout=120, cwd=study.REPO_ROOT,
        )
        assert run.returncode == 2, run.stderr
        assert str(build_dir) in run.stderr and f"PID {holder.pid}" in run.stderr, run.stderr
        assert not (build_dir / "src").exists(), "the refused runner must not touch the build tree"
        with pytest.raises(study.BuildDirectoryLocked, match=f"PID {holder.pid}"):
            with study.build_lock(build_dir):
                pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with study.build_lock(build_dir) as lock:  # released when its holder died
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(study.BuildDirectoryLocked, match=str(build_dir)):
            with study.build_lock(build_dir):  # a second holder in the same process is refused too
                pass
    with study.build_lock(build_dir):  # released on exit of the with block
        pass


def test_progress_reports_cells_done_and_time(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f"{PARAMETERS_HEADER}\nx = 1\n", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("y = x + 1"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    stream = io.StringIO()
    progress = study.CellProgress("tiny", stream=stream, interval=0.0)
    pm.execute_notebook(str(tmp_path / "tiny.ipynb"), str(tmp_path / "out.ipynb"), parameters={"x": 2},
                        kernel_name="python3", progress_bar=False, engine_name=study._register_engine(),
                        progress=progress)
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("    tiny: 4/4 cells, ") and lines[-1].endswith(" s"), lines  # with the injected cell
    assert progress.done == progress.total == 4
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert all("tiny" not in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_parameter_reference_comes_from_the_notebooks_and_config(tmp_path):
    (tmp_path / "book").mkdir()
    study.write_parameter_reference(tmp_path, study.find_chapters(only=["01", "06"]))
    page = (tmp_path / "book" / "chapter-parameters.md").read_text()
    assert "### `01_signal_models.ipynb`" in page and "### `06_calibration.ipynb`" in page
    row = next(line for line in page.splitlines() if line.startswith("| `n_t1` |"))
    assert row.split(" | ")[1:4] == ["`500`", "500", "2000"]
    row = next(line for line in page.splitlines() if line.startswith("| `width` |"))
    assert row.split(" | ")[2:4] == ["16", "64"]


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("https://github.com/someone/qt1-study-book.git", "https://github.com/someone/qt1-study-book"),
        ("git@github.com:someone/qt1-study-book.git", "https://github.com/someone/qt1-study-book"),
        ("ssh://git@gitlab.com/group/book", "https://gitlab.com/group/book"),
        ("https://codeberg.org/a/b/", "https://codeberg.org/a/b"),
        ("/work/main", None),
        ("file:///srv/git/book.git", None),
        ("https://git.example.org/a/b.git", None),
    ],
)
def test_remote_web_url_knows_public_forges_only(remote, expected):
    assert study.remote_web_url(remote) == expected


def _cff(tmp_path, **fields):
    path = tmp_path / "CITATION.cff"
    path.write_text("".join(f"{k}: {v}\n" for k, v in {"cff-version": "1.2.0", **fields}.items()))
    return path


def test_repository_url_precedence(tmp_path, monkeypatch):
    """--repository-url, then $QT1_REPOSITORY_URL, then CITATION.cff's repository-code, then origin."""
    monkeypatch.delenv(study.REPOSITORY_ENV, raising=False)
    with_code = _cff(tmp_path, **{"repository-code": "https://github.com/cff/book"})
    monkeypatch.setattr(study, "_git", lambda *args: "git@github.com:origin/book.git")
    assert study.find_repository_url(None, tmp_path / "absent.cff") == "https://github.com/origin/book"
    assert study.find_repository_url(None, with_code) == "https://github.com/cff/book"
    monkeypatch.setenv(study.REPOSITORY_ENV, "https://github.com/env/book/")
    assert study.find_repository_url(None, with_code) == "https://github.com/env/book"
    assert study.find_repository_url("https://gitlab.com/cli/book", with_code) == "https://gitlab.com/cli/book"
    monkeypatch.delenv(study.REPOSITORY_ENV)
    monkeypatch.setattr(study, "_git", lambda *args: "/work/main")
    assert study.find_repository_url(None, _cff(tmp_path)) is None


@pytest.mark.parametrize("bad", ["github.com/a/b", "http://github.com/a/b", "https://github.com", "OWNER/book"])
def test_repository_url_that_is_not_https_is_refused(bad, monkeypatch):
    monkeypatch.delenv(study.REPOSITORY_ENV, raising=False)
    with pytest.raises(study.RepositoryURLError, match="--repository-url"):
        study.find_repository_url(bad)
    monkeypatch.setenv(study.REPOSITORY_ENV, bad)
    with pytest.raises(study.RepositoryURLError, match=study.REPOSITORY_ENV):
        study.find_repository_url()


def test_the_command_line_refuses_a_bad_repository_url(tmp_path, capsys):
    assert study.main(["--repository-url", "OWNER/book", "--build-dir", str(tmp_path), "--no-book"]) == 2
    assert "--repository-url" in capsys.readouterr().err
    assert not (tmp_path / "src").exists()


@pytest.mark.parametrize(
    ("url", "repository_button", "binder"),
    [("https://github.com/a/book", True, "https://mybinder.org"), ("https://gitlab.com/a/book", True, ""), (None, False, "")],
)
def test_repository_settings_turn_buttons_on_only_where_they_can_work(tmp_path, url, repository_button, binder):
    """No URL: no repository or launch button (never a placeholder link); Binder only for GitHub, the one
    provider sphinx-book-theme builds Binder links for."""
    import yaml

    (tmp_path / "_config.yml").write_text((study.REPO_ROOT / "_config.yml").read_text())
    study.write_repository_settings(tmp_path, url)
    config = yaml.safe_load((tmp_path / "_config.yml").read_text())
    assert config["repository"]["url"] == (url or "")
    assert config["html"]["use_repository_button"] is repository_button
    assert config["launch_buttons"]["binderhub_url"] == binder


def test_citation_names_the_repository_the_build_found(tmp_path):
    (tmp_path / "book").mkdir()
    study.write_citation(tmp_path, repository="https://github.com/a/book")
    page = (tmp_path / "book" / "citation.md").read_text()
    assert "<https://github.com/a/book>" in page.splitlines()[2]  # the book's own line
    assert "url = {https://github.com/a/book}" in page.split("@article")[0]
    study.write_citation(tmp_path)
    assert "github.com/a/book" not in (tmp_path / "book" / "citation.md").read_text()


def test_solution_seconds_sum_the_glued_solution_times(tmp_path):
    """The build report's solutions column reads the seconds that glue_solution glues, and nothing else."""

    def record(name, value):
        return nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": repr(value)},
                                      metadata={"scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}})

    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [record("ex01_1_seconds", "1.250"), record("ex01_1_runtime", "1.3 s on 2 CPU cores"),
                    record("ex01_2_seconds", "0.500"), record("t1_seconds", "9.0")]
    path = tmp_path / "01.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_markdown_cell("text")]), path)
    assert study.solution_seconds(path) == pytest.approx(1.75)


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets")
def test_chapter_kernels_talk_over_unix_sockets_not_tcp_ports():
    assert study._kernel_manager_class()(kernel_name="python3").transport == "ipc"
