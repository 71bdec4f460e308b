"""Results of the calibration chapters (06, 07) and what they share: one stored cross-validation.

Three kinds of tests:

* unit tests of what the chapters call on small synthetic subjects (the stored result's round trip,
  the cohort table, mixed-model cell means and method comparisons against independent computations);
* the structure of the cross-validation that chapter 06 saved in the smoke build (the session
  fixture ``smoke_build`` of ``conftest.py``), and that chapter 07 reused it;
* a slow test that runs the quick-profile calibration on the quick cohort and checks that the
  network beats no calibration and the global linear fit on held-out subjects (issue 5).
"""

from __future__ import annotations

import ast
import dataclasses
import gzip
import json

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
import torch

from qt1lib import stats, study, tissues
from qt1lib.calibrate import METHODS, CalibrationConfig, CrossValidationResult, SubjectData, make_folds, voxel_table
from qt1lib.calibrate.results import cached_cross_validation, read_result, stored_results, write_result
from qt1lib.config import StudyConfig
from qt1lib.stats import TISSUES
from qt1lib.store import Store
from qt1lib.protocols import SEED_7T_MP3RAGE
from qt1lib.workflow import calibration_subjects, cohort_table, open_workspace
from qt1lib.workflow.calibration import input_refusal

CH06 = study.REPO_ROOT / "notebooks" / "06_calibration.ipynb"
CH07 = study.REPO_ROOT / "notebooks" / "07_statistics.ipynb"
CONFIG_FIELDS = {f.name for f in dataclasses.fields(CalibrationConfig)}


# ------------------------------------------------------------------ helpers
def notebook_parameters(path, profile: str) -> dict:
    """Defaults of the notebook's parameters cell with the profile's overrides (what the runner passes)."""
    values = {name: ast.literal_eval(p["default"]) for name, p in papermill.inspect_notebook(str(path)).items()}
    return {**values, **study.Chapter(path).profile_parameters(profile)}


def synthetic_subjects(seed: int = 0, shape=(12, 10, 8)) -> dict[str, SubjectData]:
    """Four subjects with a tissue-dependent linear bias, noise and a subject offset."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(4):
        labels = rng.integers(0, 4, size=shape)
        truth = np.select([labels == 1, labels == 2, labels == 3], [1.2, 1.5, 1.9], 4.0) + rng.normal(0, 0.05, shape)
        t1 = np.where(labels == 1, 0.85 * truth, 0.92 * truth) + 0.02 * i + rng.normal(0, 0.03, shape)
        out[f"sub-{i + 1:02d}"] = SubjectData(
            inputs={"t1": t1}, target=truth, mask=labels > 0, labels=labels
        )
    return out


def synthetic_result(subjects: dict[str, SubjectData]):
    """A CrossValidationResult built without training: 'resnet' is a perturbed reference."""
    rng = np.random.default_rng(1)
    folds = make_folds(subjects)
    frames, history = [], []
    for fold in folds:
        s = subjects[fold.test]
        maps = {
            "none": np.where(s.mask, s.inputs["t1"], np.nan),
            "global_linear": 0.1 + s.inputs["t1"],
            "tissue_linear": np.where(s.labels > 0, s.inputs["t1"] * 1.05, np.nan),
            "resnet": s.target + rng.normal(0, 0.02, s.shape),
        }
        frames.append(voxel_table(fold.test, s, maps, (1, 2, 3), fold.index))
        history.append(pd.DataFrame({"fold": fold.index, "subject": fold.test, "epoch": [1, 2, 3],
                                     "train_loss": [1.0, 0.5, 0.4], "val_loss": [0.9, 0.6, 0.7],
                                     "seconds": [0.1, 0.1, 0.1], "best": [False, True, False]}))
    voxels = pd.concat(frames, ignore_index=True)
    for col in ("method", "tissue"):
        voxels[col] = pd.Categorical(voxels[col], categories=frames[0][col].cat.categories)
    return CrossValidationResult(folds=folds, voxels=voxels, metrics=stats.tissue_metrics(voxels),
                                 history=pd.concat(history, ignore_index=True), model_paths={})


# ------------------------------------------------------------------ chapters 06 and 07 agree
def test_chapters_06_and_07_share_the_calibration_parameters():
    """Chapter 07 recomputes the result key from its own parameters: they must equal chapter 06's."""
    for profile in study.PROFILES:
        p06, p07 = notebook_parameters(CH06, profile), notebook_parameters(CH07, profile)
        p06.pop("ablations")  # chapter 06 alone trains the ablations
        assert p06 == {k: p07[k] for k in p06}, profile
        # every network knob is a CalibrationConfig field of the same name, so the config follows the notebook
        assert CONFIG_FIELDS >= set(p06) - {"bids_dir", "work_dir", "profile", "seed", "calibration_input", "device", "threads",
                                            "comparison_inputs", "comparison_network", "solutions"}


# ------------------------------------------------------------------ the shared tables
def test_saved_result_round_trips_exactly(tmp_path):
    result = synthetic_result(synthetic_subjects())
    write_result(result, tmp_path, {"note": "test"})
    back = read_result(tmp_path)
    pd.testing.assert_frame_equal(back.voxels, result.voxels, check_dtype=False, check_categorical=True)
    pd.testing.assert_frame_equal(back.metrics, result.metrics, check_dtype=False)
    pd.testing.assert_frame_equal(back.history, result.history, check_dtype=False)
    assert back.folds == result.folds
    saved = pd.read_csv(tmp_path / "metrics.tsv", sep="\t", dtype={"subject": str})
    np.testing.assert_allclose(saved["rmse"], result.metrics["rmse"], rtol=1e-12)
    assert json.loads((tmp_path / "parameters.json").read_text())["note"] == "test"
    (tmp_path / "parameters.json").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        read_result(tmp_path)


def test_cohort_table_counts_and_medians():
    subjects = synthetic_subjects()
    table = cohort_table(subjects).set_index(["subject", "tissue"])
    for name, s in subjects.items():
        for t in tissues.SCORED:
            sel = s.mask & (s.labels == t.label)
            row = table.loc[(name, t.name)]
            assert row["n"] == sel.sum()
            np.testing.assert_allclose(row["difference"], np.median(s.inputs["t1"][sel] - s.target[sel]))


class _Protocols:
    """A stand-in workspace: subjects with SIR images, each read with the given MP2RAGE protocol."""

    def __init__(self, protocols):
        self.protocols = protocols
        self.sir_subjects = tuple(protocols)

    def read_mpnrage(self, subject):
        return dataclasses.make_dataclass("Data", ["protocol"])(self.protocols[subject])


def test_input_refusal_names_the_subject_whose_acquisition_the_seed_code_does_not_model():
    seed = {"01": SEED_7T_MP3RAGE, "02": SEED_7T_MP3RAGE}
    assert input_refusal(_Protocols(seed), "map_seed_code_mp2rage") is None
    other = {**seed, "02": SEED_7T_MP3RAGE.with_changes(flip_angles=(5.0, 4.0, 4.0))}
    reason = input_refusal(_Protocols(other), "map_seed_code_mp2rage")
    assert reason.startswith("sub-02:") and "flip_angles[0]" in reason
    assert input_refusal(_Protocols(other), "map_seed_mp2rage") is None  # models any acquisition
    with pytest.raises(ValueError, match="unknown estimator"):
        input_refusal(_Protocols(seed), "map_seed_code")


def test_mixed_model_cell_means_equal_raw_means_in_a_balanced_design():
    """With every subject contributing equally to every cell, the GLS cell means are the raw means."""
    rng = np.random.default_rng(3)
    rows = []
    for subject in range(4):
        offset = rng.normal(0, 0.1)
        for method, scale in (("none", 0.2), ("resnet", 0.1)):
            for tissue in TISSUES:
                rows.append(pd.DataFrame({"fold": subject + 1, "subject": f"s{subject}", "method": method,
                                          "tissue": tissue, "reference": 1.0,
                                          "estimate": 1.0 + offset + np.abs(rng.normal(0, scale, 50))}))
    voxels = pd.concat(rows, ignore_index=True)
    mm = stats.mixed_model(voxels, max_voxels_per_cell=None)
    cells = stats.mixed_model_cell_means(mm).set_index(["method", "tissue"])["mae"]
    raw = (voxels["estimate"] - voxels["reference"]).abs().groupby([voxels["method"], voxels["tissue"]]).mean()
    for key, value in raw.items():
        np.testing.assert_allclose(cells[key], value, rtol=1e-6)


def test_compare_methods_reads_the_summary():
    summary = stats.fold_summary(synthetic_result(synthetic_subjects()).metrics)
    verdict = stats.compare_methods(summary, "resnet", ("none", "global_linear"))
    indexed = summary.set_index(["method", "tissue"])["rmse_mean"]
    assert len(verdict) == 2 * len(TISSUES)
    for row in verdict.itertuples():
        assert row.value == indexed[("resnet", row.tissue)]
        assert row.other_value == indexed[(row.other, row.tissue)]
        assert row.lower == (row.value < row.other_value)


# ------------------------------------------------------------------ the smoke build
def _smoke_results(smoke_build, calibration_input: str | None = None) -> dict:
    """Entry -> parameters.json of the saved cross-validations of chapter 06's own configuration
    with ``calibration_input`` (default the chapter's), after checking that every saved one is
    that configuration or one of its two ablations."""
    error = smoke_build.errors.get(CH06.name)
    assert error is None, error
    p = notebook_parameters(CH06, "smoke")
    config = CalibrationConfig(**{k: v for k, v in p.items() if k in CONFIG_FIELDS})
    saved = stored_results(Store(smoke_build.build_dir / "work" / "store"))
    ablations = {dataclasses.replace(config, channels=("t1",)), dataclasses.replace(config, input_skip=False)}
    assert {CalibrationConfig.from_dict(q["config"]) for q in saved.values()} == {config} | ablations
    name = calibration_input or p["calibration_input"]
    return {d: q for d, q in saved.items()
            if CalibrationConfig.from_dict(q["config"]) == config and q["pipeline"]["calibration_input"] == name}


def _smoke_result_dir(smoke_build):
    """The saved cross-validation of chapter 06's own configuration and input (beside its two ablations)."""
    found = list(_smoke_results(smoke_build))
    assert len(found) == 1, f"expected one saved cross-validation of chapter 06's configuration, got {found}"
    return found[0]


def _glued(executed) -> dict:
    """Glue name -> its text/plain value in an executed notebook."""
    return {
        o.metadata["scrapbook"]["name"]: o.data[o.metadata["scrapbook"]["mime_prefix"] + "text/plain"]
        for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
        if "scrapbook" in o.get("metadata", {})
    }


def test_smoke_calibration_result_structure(smoke_build):
    d = _smoke_result_dir(smoke_build)
    metrics = pd.read_csv(d / "metrics.tsv", sep="\t", dtype={"subject": str})
    folds = pd.read_csv(d / "folds.tsv", sep="\t", dtype=str)
    with gzip.open(d / "voxels.tsv.gz", "rt") as fh:
        voxels = pd.read_csv(fh, sep="\t", dtype={"subject": str})
    history = pd.read_csv(d / "history.tsv", sep="\t", dtype={"subject": str})

    assert set(metrics["method"]) == set(METHODS) and len(METHODS) == 4
    assert set(metrics["tissue"]) == set(TISSUES) and len(TISSUES) == 3
    assert len(metrics) == len(folds) * 4 * 3  # every fold scores every method in every tissue

    subjects = set(folds["test"])
    assert len(folds) == len(subjects) == 4  # leave one subject out, four subjects
    for row in folds.itertuples():
        train = set(row.train.split(","))
        assert row.test not in train and train == subjects - {row.test}
        assert set(voxels.loc[voxels["fold"] == int(row.fold), "subject"]) == {row.test}

    # RMSE recomputed from the saved voxels (one estimate column per method)
    recomputed = {}
    for (fold, tissue), g in voxels.groupby(["fold", "tissue"]):
        for method in METHODS:
            recomputed[(fold, method, tissue)] = np.sqrt(np.mean((g[method] - g["reference"]) ** 2))
    for row in metrics.itertuples():
        np.testing.assert_allclose(row.rmse, recomputed[(row.fold, row.method, row.tissue)], rtol=1e-9)

    assert set(history["fold"]) == set(folds["fold"].astype(int))
    assert (history.groupby("fold")["best"].sum() == 1).all()


def test_smoke_statistics_chapter_reused_the_saved_result(smoke_build):
    _smoke_result_dir(smoke_build)
    error = smoke_build.errors.get(CH07.name)
    assert error is None, error
    glued = _glued(nbformat.read(smoke_build.src / "notebooks" / CH07.name, as_version=4))
    assert ast.literal_eval(glued["reuse_text"]) == "read the saved result of chapter 6"
    assert ast.literal_eval(glued["cmp_reuse_text"]) == "read the saved results of chapter 6"


def test_smoke_comparison_input_is_scored_on_the_same_folds_without_a_network(smoke_build):
    """Issue 9: chapter 06 scores the seed code's two-train MAP with the baselines on the folds of its
    own input; the smoke profile trains no network on it (``comparison_network`` is off)."""
    p = notebook_parameters(CH06, "smoke")
    assert p["comparison_inputs"] == ["map_seed_code_mp2rage"] and p["comparison_network"] is False
    own = _smoke_result_dir(smoke_build)
    found = _smoke_results(smoke_build, "map_seed_code_mp2rage")
    assert len(found) == 1, found
    (entry, params), = found.items()
    assert params["network"] is False and params["methods"] == ["none", "global_linear", "tissue_linear"]
    assert params["seed"] == json.loads((own / "parameters.json").read_text())["seed"]
    pd.testing.assert_frame_equal(pd.read_csv(entry / "folds.tsv", sep="\t", dtype=str),
                                  pd.read_csv(own / "folds.tsv", sep="\t", dtype=str))
    assert pd.read_csv(entry / "history.tsv", sep="\t").empty
    metrics = pd.read_csv(entry / "metrics.tsv", sep="\t", dtype={"subject": str})
    assert len(metrics) == 4 * 3 * 3  # four folds, three baselines, three tissues


# ------------------------------------------------------------------ issue 5: the quick-profile calibration
#: The work directory of the quick build (``make book``): its store is content-addressed, so a
#: cross-validation with the same subjects, configuration, seed and code has the same key there.
QUICK_WORK_DIR = study.REPO_ROOT / "work" / "quick"


@pytest.mark.slow
def test_network_beats_no_calibration_and_global_line_on_held_out_subjects(tmp_path):
    """The quick profile of chapter 06 on the quick cohort: per tissue, the fold-mean RMSE of the
    ResNet-18 on held-out subjects is below that of no calibration and of the global linear fit.

    Where ``make book`` ran in this checkout (CI runs it first), the workspace is the quick
    build's, so that this checks the result the book shows (computed again only if any code it
    depends on changed since); otherwise the cohort and the cross-validation are computed here."""
    p = notebook_parameters(CH06, "quick")
    study_config = StudyConfig.from_parameters(p)
    work_dir = QUICK_WORK_DIR if (QUICK_WORK_DIR / "store").is_dir() else tmp_path
    ws = open_workspace(None, work_dir, study_config.pipeline, cohort=study_config.cohort, progress=False)
    subjects = calibration_subjects(ws)
    threads = torch.get_num_threads()
    torch.set_num_threads(p["threads"] or threads)  # as the chapter runs it
    try:
        result, _ = cached_cross_validation(subjects, study_config.calibration, study_config.seed, ws.store,
                                            progress=False)
    finally:
        torch.set_num_threads(threads)
    rmse = stats.fold_summary(result.metrics).set_index(["method", "tissue"])["rmse_mean"]
    for tissue in TISSUES:
        for baseline in ("none", "global_linear"):
            assert rmse[("resnet", tissue)] < rmse[(baseline, tissue)], (tissue, baseline, rmse.to_dict())
