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
