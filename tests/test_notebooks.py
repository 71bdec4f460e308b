"""Every chapter runs with papermill on its smoke parameters and follows the book's conventions."""

import nbformat
import pytest

from qt1lib import study

CHAPTERS = study.find_chapters()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.path.name)
def test_notebook_is_committed_clean_and_parameterised(chapter):
    nb = nbformat.read(chapter.path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit without outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    for name in ("bids_dir", "work_dir", "profile", "seed"):
        assert f"{name} =" in tagged[0].source, f"parameters cell lacks {name}"
    for profile in study.PROFILES:  # the profiles' values live in qt1lib.config and match the parameters cell
        study.chapter_run_parameters(chapter, profile, "work/bids", "work")
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "Learning goals" in first.source
    assert any(c.cell_type == "markdown" and "Exercises" in c.source for c in nb.cells)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.path.name)
def test_notebook_runs_on_smoke_parameters(smoke_build, chapter):
    error = smoke_build.errors.get(chapter.path.name)
    assert error is None, error
    executed = nbformat.read(smoke_build.src / "notebooks" / chapter.path.name, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "remove-cell" in injected[0].metadata["tags"]


def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError, match="profile"):
        CHAPTERS[0].profile_parameters("huge")
    with pytest.raises(ValueError, match="no notebook numbered"):
        study.find_chapters(only=["99"])
