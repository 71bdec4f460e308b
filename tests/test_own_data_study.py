"""The study on a user's dataset: every chapter runs, notes replace what needs the cohort's truth,
chapters that need SIR are skipped with a note, and nothing is written into the dataset."""

from __future__ import annotations

import shutil
import subprocess
import sys

import nbformat
import pytest

from qt1lib import study
from qt1lib.phantom import make_cohort

NOTE = "Not available for this dataset"


@pytest.fixture(scope="module")
def smoke_cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("own") / "cohort", "smoke", progress=False).bids_dir


def _users_copy(cohort, target, drop_sir=()):
    """The cohort as a user would have it: no truth (``derivatives/``), and no SIR for ``drop_sir``."""
    shutil.copytree(cohort, target, ignore=shutil.ignore_patterns("derivatives"))
    for subject in drop_sir:
        for path in (target / f"sub-{subject}" / "anat").glob("*_acq-SIR_*"):
            path.unlink()
    return target


def _listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def test_a_path_that_does_not_exist_is_an_error_not_a_simulation(tmp_path):
    missing = tmp_path / "typo"
    with pytest.raises(FileNotFoundError, match="not a directory"):
        study.run_study("smoke", tmp_path / "build", bids_dir=missing, work_dir=tmp_path / "work", build=False)
    run = subprocess.run([sys.executable, "-m", "qt1lib.study", "--profile", "smoke", "--bids-dir", str(missing),
                          "--build-dir", str(tmp_path / "build"), "--no-book"],
                         capture_output=True, text=True, timeout=120, cwd=study.REPO_ROOT)
    assert run.returncode == 2 and str(missing) in run.stderr, run.stderr
    assert not missing.exists()


def test_chapters_that_need_sir_are_skipped_with_a_note_when_no_subject_has_sir(smoke_cohort, tmp_path):
    own = _users_copy(smoke_cohort, tmp_path / "own", drop_sir=("01", "02", "03", "04"))
    chapters = {c.key: c for c in study.find_chapters()}
    assert {k for k, c in chapters.items() if "sir" in c.needs} == {"05", "06", "07"}
    assert all(study.dataset_lacks(c, None) is None for c in chapters.values())  # the cohort has SIR
    reason = study.dataset_lacks(chapters["06"], own)
    assert reason and "SIR" in reason and study.dataset_lacks(chapters["04"], own) is None
    out = tmp_path / "06.ipynb"
    study.write_skipped_chapter(chapters["06"], out, reason)
    written = nbformat.read(out, as_version=4)
    source = nbformat.read(chapters["06"].path, as_version=4)
    assert len(written.cells) == len(source.cells) + 1 and reason in written.cells[1].source
    assert not any(c.get("outputs") for c in written.cells if c.cell_type == "code")


@pytest.mark.slow
def test_the_whole_study_runs_on_a_users_dataset_and_writes_nothing_into_it(smoke_cohort, tmp_path):
    own = _users_copy(smoke_cohort, tmp_path / "own", drop_sir=("04",))
    before = _listing(own)
    work = tmp_path / "work"
    html = study.run_study("smoke", tmp_path / "build", bids_dir=own, work_dir=work, progress=False)
    assert (html / "index.html").is_file()
    assert _listing(own) == before, "the study wrote into the user's dataset"
    executed = {p.name: nbformat.read(p, as_version=4) for p in (tmp_path / "build" / "src" / "notebooks").glob("*.ipynb")}
    assert len(executed) == len(study.find_chapters())

    def text(nb):
        return "\n".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("text", ""))
                         for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))

    for name in ("01_signal_models.ipynb", "04_b1_sensitivity.ipynb", "05_registration_and_bias.ipynb"):
        assert NOTE in text(executed[name]), name  # the truth's sections say why they are empty
    assert any(work.joinpath("derivatives").rglob("*_T1map.nii.gz"))
    assert not any(work.joinpath("derivatives").glob("sub-04/anat/*space-SIR*")), "sub-04 has no SIR"
