"""The calibration's caches go through the content-addressed store (qt1lib.store).

* a trained network is a store entry (step ``calibration_model``): a rerun trains nothing, a new
  seed retrains, a damaged ``model.pt`` is recomputed with a warning;
* its per-epoch checkpoint lives in the entry's scratch folder: an interrupted training resumes
  from it and ends with the weights of an uninterrupted one, a damaged checkpoint is discarded
  with a warning;
* :func:`run_cross_validation` returns the coefficients of the baselines it fitted;
* :func:`cached_cross_validation` stores the result's tables (step ``calibration_result``) and
  reuses them, with the calibrated maps on request.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic_subjects import make_subject

from qt1lib import tissues
from qt1lib.calibrate import (
    BASELINE_COLUMNS,
    MODEL_STEP,
    CalibrationConfig,
    SubjectData,
    cached_cross_validation,
    fit_global_linear,
    fit_tissue_linear,
    fold_seed,
    make_folds,
    read_result,
    result_entry,
    run_cross_validation,
    stored_results,
    train_model,
    training_fingerprint,
)
from qt1lib.calibrate.results import RESULT_FILES
from qt1lib.calibrate.train import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    TRAINING_MODULES,
    training_parameters,
)
from qt1lib.store import Store, module_closure

TISSUES = tissues.labels()
TINY = CalibrationConfig(
    patch_shape=(7, 7), width=4, stem="small", patches_per_epoch=64, validation_patches=32, batch_size=32,
    max_epochs=3, patience=10, validation_slab=2, inference_batch_size=1024,
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def subjects() -> dict[str, SubjectData]:
    return {f"sub-{i:02d}": make_subject(i, (20, 20, 6)) for i in range(1, 5)}


@pytest.fixture(scope="module")
def train(subjects) -> dict[str, SubjectData]:
    return {k: subjects[k] for k in ("sub-01", "sub-02")}


@pytest.fixture(scope="module")
def uninterrupted(train):
    """The reference training (no store, no files)."""
    return train_model(train, TINY, seed=5, progress=False)


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def assert_same_voxels(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same columns, dtypes (categories included) and values (faster than assert_frame_equal on categoricals)."""
    assert list(a.columns) == list(b.columns) and a.dtypes.to_dict() == b.dtypes.to_dict()
    assert a.equals(b)


def outcomes(store: Store, start: int = 0) -> list[str]:
    return [e.outcome for e in store.events[start:]]


class Interrupt(Exception):
    pass


def interrupt_at(stop: int):
    def on_epoch(epoch, record):
        if epoch == stop:
            raise Interrupt

    return on_epoch


def damage(path, how: str) -> None:
    """Truncate a file to half its size, or garble bytes in its middle (same size)."""
    raw = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    else:
        mid = len(raw) // 2
        raw[mid:mid + 64] = bytes(b ^ 0xFF for b in raw[mid:mid + 64])
        path.write_bytes(bytes(raw))


def checkpoint_path(store: Store, train, config: CalibrationConfig, seed: int):
    return store.scratch(MODEL_STEP, training_parameters(train, config, seed), modules=TRAINING_MODULES) / CHECKPOINT_FILE


# ---------------------------------------------------------------------------- the trained model
def test_the_model_key_follows_config_seed_data_and_training_code(train):
    key = training_fingerprint(train, TINY, 5)
    assert key == Store("anywhere").key(MODEL_STEP, training_parameters(train, TINY, 5), modules=TRAINING_MODULES)
    assert key != training_fingerprint(train, TINY, 6)
    assert key != training_fingerprint(train, replace(TINY, width=8), 5)
    s = train["sub-02"]
    target = s.target.copy()
    target[10, 10, 3] += 1e-6
    assert key != training_fingerprint({**train, "sub-02": SubjectData(s.inputs, target, s.mask, s.labels)}, TINY, 5)
    # the source of the training code and of what it imports is part of the key (no version number)
    closure = module_closure(TRAINING_MODULES)
    assert {"qt1lib.calibrate.train", "qt1lib.calibrate.resnet", "qt1lib.calibrate.patches",
            "qt1lib.calibrate.data", "qt1lib.calibrate.config"} <= set(closure)
    assert set(Store("x").describe(MODEL_STEP, {}, modules=TRAINING_MODULES)["code"]) == set(closure)


def test_rerun_trains_nothing_and_a_new_seed_retrains(train, uninterrupted, tmp_path):
    store = Store(tmp_path)
    first = train_model(train, TINY, 5, store, progress=False)
    assert state_equal(first.model, uninterrupted.model)
    assert first.fingerprint == training_fingerprint(train, TINY, 5)
    entry = store.entry(MODEL_STEP, first.fingerprint)
    assert (entry / MODEL_FILE).is_file() and (entry / "manifest.json").is_file()
    epochs = []
    again = train_model(train, TINY, 5, store, progress=False, on_epoch=lambda e, r: epochs.append(e))
    assert epochs == [] and state_equal(again.model, first.model)
    assert again.history.equals(first.history) and again.normalisation == first.normalisation
    other = train_model(train, TINY, 6, store, progress=False, on_epoch=lambda e, r: epochs.append(e))
    assert epochs == [1, 2, 3] and not state_equal(other.model, first.model)
    assert outcomes(store) == ["miss", "hit", "miss"]
    assert len({e.key for e in store.events}) == 2


@pytest.mark.parametrize("how", ["truncate", "garble"])
def test_a_damaged_model_is_retrained_with_a_warning(train, uninterrupted, tmp_path, how):
    store = Store(tmp_path)
    first = train_model(train, TINY, 5, store, progress=False)
    path = store.entry(MODEL_STEP, first.fingerprint) / MODEL_FILE
    damage(path, how)
    epochs = []
    with pytest.warns(UserWarning, match=r"model\.pt") as caught:
        again = train_model(train, TINY, 5, store, progress=False, on_epoch=lambda e, r: epochs.append(e))
    assert any(str(path) in str(w.message) for w in caught)
    assert epochs == [1, 2, 3] and state_equal(again.model, uninterrupted.model)
    assert outcomes(store) == ["miss", "damaged", "miss"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new entry is sound
        train_model(train, TINY, 5, store, progress=False)
    assert outcomes(store)[-1] == "hit"


# ---------------------------------------------------------------------------- the checkpoint
def test_an_interrupted_training_resumes_from_its_checkpoint(train, uninterrupted, tmp_path):
    store = Store(tmp_path)
    with pytest.raises(Interrupt):
        train_model(train, TINY, 5, store, progress=False, on_epoch=interrupt_at(1))
    ckpt = checkpoint_path(store, train, TINY, 5)
    assert ckpt.is_file() and not store.entry(MODEL_STEP, training_fingerprint(train, TINY, 5)).exists()
    epochs = []
    resumed = train_model(train, TINY, 5, store, progress=False, on_epoch=lambda e, r: epochs.append(e))
    assert epochs == [2, 3]
    assert state_equal(resumed.model, uninterrupted.model)
    assert resumed.best_epoch == uninterrupted.best_epoch
    pd.testing.assert_frame_equal(resumed.history.drop(columns="seconds"),
                                  uninterrupted.history.drop(columns="seconds"))
    assert not ckpt.exists()  # spent once the model is committed
    assert outcomes(store) == ["miss"]  # the interrupted call committed nothing


@pytest.mark.parametrize("how", ["truncate", "garble"])
def test_a_damaged_checkpoint_is_discarded_with_a_warning(train, uninterrupted, tmp_path, how):
    store = Store(tmp_path)
    with pytest.raises(Interrupt):
        train_model(train, TINY, 5, store, progress=False, on_epoch=interrupt_at(2))
    ckpt = checkpoint_path(store, train, TINY, 5)
    damage(ckpt, how)
    epochs = []
    with pytest.warns(UserWarning, match=r"checkpoint\.pt: damaged checkpoint") as caught:
        again = train_model(train, TINY, 5, store, progress=False, on_epoch=lambda e, r: epochs.append(e))
    assert any(str(ckpt) in str(w.message) for w in caught)
    assert epochs == [1, 2, 3] and state_equal(again.model, uninterrupted.model)


def test_a_checkpoint_of_other_code_or_parameters_is_not_resumed(train, tmp_path):
    """The scratch folder is per key: another seed never sees the checkpoint (and trains from epoch 1)."""
    store = Store(tmp_path)
    with pytest.raises(Interrupt):
        train_model(train, TINY, 5, store, progress=False, on_epoch=interrupt_at(2))
    epochs = []
    train_model(train, TINY, 6, store, progress=False, on_epoch=lambda e, r: epochs.append(e))
    assert epochs == [1, 2, 3] and checkpoint_path(store, train, TINY, 5).is_file()


# ---------------------------------------------------------------------------- cross-validation
def test_cross_validation_returns_the_baselines_it_fitted(subjects):
    cfg = replace(TINY, max_epochs=1)
    result = run_cross_validation(subjects, cfg, seed=0, progress=False, keep_maps=True)
    table = result.baselines
    assert tuple(table.columns) == BASELINE_COLUMNS
    assert len(table) == 4 * (1 + len(TISSUES))
    assert result.model_paths == {}  # no store: no files
    names = {1: "WM", 2: "subcortical GM", 3: "cortical GM"}
    indexed = table.set_index(["fold", "method", "tissue"])
    for fold in make_folds(subjects):
        train = [subjects[n] for n in fold.train]
        assert set(table.loc[table["fold"] == fold.index, "test"]) == {fold.test}
        glob = fit_global_linear(train, TISSUES)
        row = indexed.loc[(fold.index, "global_linear", "all")]
        assert (row["intercept"], row["slope"]) == glob.coefficients[None]
        per_tissue = fit_tissue_linear(train, TISSUES)
        for label, coefficients in per_tissue.coefficients.items():
            row = indexed.loc[(fold.index, "tissue_linear", names[label])]
            assert (row["intercept"], row["slope"]) == coefficients
        # the maps the voxel table scores are those fits
        t1 = result.maps[fold.test]["none"]
        np.testing.assert_array_equal(result.maps[fold.test]["global_linear"], glob.apply(t1))
    # without the network: the same folds, fits and baseline voxels, and nothing trained
    alone = run_cross_validation(subjects, cfg, seed=0, progress=False, network=False)
    assert alone.folds == result.folds and alone.model_paths == {} and alone.history.empty
    assert list(alone.voxels["method"].cat.categories) == ["none", "global_linear", "tissue_linear"]
    pd.testing.assert_frame_equal(alone.baselines, table)
    shared = result.voxels[result.voxels["method"] != "resnet"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.voxels.astype({"method": str}), shared.astype({"method": str}))


def test_cached_cross_validation_stores_and_reuses_the_result(subjects, tmp_path):
    cfg = replace(TINY, max_epochs=1)
    store = Store(tmp_path)
    result, reused = cached_cross_validation(subjects, cfg, 0, store, progress=False,
                                             provenance={"profile": "test"})
    assert not reused and outcomes(store) == ["miss"] * 5  # four networks, then the result
    entry = result_entry(store, subjects, cfg, 0)
    assert all((entry / name).is_file() for name in RESULT_FILES)
    params = stored_results(store)[entry]
    assert params["profile"] == "test" and CalibrationConfig.from_dict(params["config"]) == cfg
    assert params["key"] == entry.name and params["methods"] == ["none", "global_linear", "tissue_linear", "resnet"]
    assert len(result.model_paths) == 4 and all(p.is_file() for p in result.model_paths.values())

    n = len(store.events)
    back, reused = cached_cross_validation(subjects, cfg, 0, store, progress=False)
    assert reused and outcomes(store, n) == ["hit"]  # read as it is: no network is even loaded
    assert_same_voxels(back.voxels, result.voxels)
    pd.testing.assert_frame_equal(back.metrics, result.metrics)
    pd.testing.assert_frame_equal(back.history, result.history, check_dtype=False)
    pd.testing.assert_frame_equal(back.baselines, result.baselines, check_dtype=False)
    assert back.folds == result.folds and back.model_paths == result.model_paths and back.maps == {}
    direct = read_result(entry)
    assert_same_voxels(direct.voxels, result.voxels)

    n = len(store.events)
    with_maps, reused = cached_cross_validation(subjects, cfg, 0, store, need_maps=True, progress=False)
    assert reused and outcomes(store, n) == ["hit"] * 5  # inference with the stored networks
    assert sorted(with_maps.maps) == sorted(subjects)
    fresh = run_cross_validation(subjects, cfg, 0, progress=False)
    for name in subjects:
        for method, m in fresh.maps[name].items():
            np.testing.assert_array_equal(with_maps.maps[name][method], m)
    assert_same_voxels(with_maps.voxels, fresh.voxels)

    n = len(store.events)
    _, reused = cached_cross_validation(subjects, cfg, 1, store, progress=False)  # another seed
    assert not reused and outcomes(store, n) == ["miss"] * 5


def test_the_baselines_alone_are_an_entry_of_their_own_and_train_nothing(subjects, tmp_path):
    store = Store(tmp_path)
    result, reused = cached_cross_validation(subjects, TINY, 0, store, progress=False, network=False)
    assert not reused and outcomes(store) == ["miss"]  # the result only: no network
    entry = result_entry(store, subjects, TINY, 0, network=False)
    assert entry != result_entry(store, subjects, TINY, 0)
    params = stored_results(store)[entry]
    assert params["network"] is False and params["methods"] == ["none", "global_linear", "tissue_linear"]
    back, reused = cached_cross_validation(subjects, TINY, 0, store, progress=False, network=False)
    assert reused and outcomes(store, 1) == ["hit"]
    assert_same_voxels(back.voxels, result.voxels)
    assert back.history.empty and list(back.history.columns) == list(result.history.columns)
    with pytest.raises(TypeError, match="network"):
        cached_cross_validation(subjects, TINY, 0, store, progress=False, network="no")


def test_a_damaged_result_table_is_recomputed_from_the_stored_networks(subjects, tmp_path):
    cfg = replace(TINY, max_epochs=1)
    store = Store(tmp_path)
    result, _ = cached_cross_validation(subjects, cfg, 0, store, progress=False)
    entry = result_entry(store, subjects, cfg, 0)
    damage(entry / "metrics.tsv", "garble")
    n = len(store.events)
    with pytest.warns(UserWarning, match=r"metrics\.tsv"):
        again, reused = cached_cross_validation(subjects, cfg, 0, store, progress=False)
    assert not reused and outcomes(store, n) == ["damaged"] + ["hit"] * 4 + ["miss"]  # no network retrained
    assert_same_voxels(again.voxels, result.voxels)
    assert read_result(entry).folds == result.folds  # the entry is sound again


def test_an_interrupted_cross_validation_keeps_its_finished_folds(subjects, tmp_path):
    """Folds 1 and 2 trained, fold 3 interrupted after its first epoch: the rerun loads 1 and 2, resumes 3."""
    cfg = replace(TINY, max_epochs=2)
    store = Store(tmp_path)
    folds = make_folds(subjects)
    for fold in folds[:2]:
        train_model({n: subjects[n] for n in fold.train}, cfg, fold_seed(0, fold.index), store, progress=False)
    with pytest.raises(Interrupt):
        train_model({n: subjects[n] for n in folds[2].train}, cfg, fold_seed(0, 3), store, progress=False,
                    on_epoch=interrupt_at(1))
    n = len(store.events)
    result = run_cross_validation(subjects, cfg, 0, store=store, progress=False, keep_maps=False)
    assert outcomes(store, n) == ["hit", "hit", "miss", "miss"]
    assert (result.history.groupby("fold")["epoch"].max() == 2).all()
    reference = run_cross_validation(subjects, cfg, 0, progress=False, keep_maps=False)
    assert_same_voxels(result.voxels, reference.voxels)
