"""Shared fixtures: one smoke-profile execution of every chapter, reused by the notebook and book tests."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qt1lib import study


@dataclass
class SmokeBuild:
    build_dir: Path
    src: Path
    errors: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory) -> SmokeBuild:
    """Execute every chapter with its ``smoke`` parameters into one build tree (once per session)."""
    build_dir = tmp_path_factory.mktemp("smoke-build")
    work_dir = build_dir / "work"
    result = SmokeBuild(build_dir, study.prepare_sources(build_dir))
    for chapter in study.find_chapters():
        try:
            result.timings[chapter.path.name] = study.execute_chapter(
                chapter, result.src / "notebooks" / chapter.path.name, "smoke", None, work_dir
            )
        except Exception:  # noqa: BLE001 - reported by the test of that chapter
            result.errors[chapter.path.name] = traceback.format_exc(limit=3)
    study.write_timings(result.src, "smoke", result.timings)
    study.write_parameter_reference(result.src)
    return result


@pytest.fixture(scope="session")
def smoke_cohort(tmp_path_factory):
    """The digital cohort, smoke profile, two subjects, seed 0; read-only: copy it before damaging it."""
    from qt1lib.phantom import make_cohort

    return make_cohort(tmp_path_factory.mktemp("smoke-cohort") / "ds", "smoke", seed=0, n_subjects=2, progress=False)


@pytest.fixture(scope="session")
def smoke_html(smoke_build) -> Path:
    """The smoke book rendered once per session (``smoke_build.build_dir / "html"``), warnings as errors."""
    if smoke_build.errors:
        pytest.fail(f"chapters failed, book not built: {sorted(smoke_build.errors)}")
    return study.build_book(smoke_build.src, smoke_build.build_dir)
