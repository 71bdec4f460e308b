"""What the calibration and statistics chapters share: one cross-validation, run once, saved, reused.

Chapter 06 trains the ResNet-18 in four leave-one-subject-out folds
(:func:`qt1lib.calibrate.run_cross_validation`) and chapter 07 analyses the same result. Both
call :func:`cross_validation` with the same subjects, configuration and seed; the result is
saved under ``work_dir/calibration/<key>/`` where ``<key>`` (:func:`result_key`) hashes
everything that determines it (the subjects' arrays, the hyper-parameters, the seed and the
qt1lib version), so a chapter run alone recomputes only what it lacks, and two runs with
different parameters never mix::

    work_dir/calibration/<key>/
        models/fold-<k>_test-<subject>/model.pt      trained networks (resumable checkpoints)
        voxels.tsv.gz    scored voxels, one row per voxel, one estimate column per method
        metrics.tsv      qt1lib.stats.tissue_metrics: per fold, method and tissue
        history.tsv      training curves per fold
        folds.tsv        fold, test subject, training subjects
        baselines.tsv    coefficients of the linear baselines per fold
        parameters.json  what made the result (written last: its presence marks a complete result)

Tables are tab-separated with ``n/a`` for missing values (BIDS convention,
:func:`qt1lib.io.save_tsv`), written atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import __version__
from .calibrate import (
    CalibrationConfig,
    CrossValidationResult,
    Fold,
    SubjectData,
    fit_global_linear,
    fit_tissue_linear,
    make_folds,
    run_cross_validation,
)
from .calibrate.train import MODEL_FILE
from .io import atomic_write_bytes, load_json, save_json, save_tsv
from .stats import TISSUE_LABELS, TISSUES, MixedModelResult, tissue_metrics

__all__ = [
    "TISSUE_KEYS",
    "RESULT_FILES",
    "study_subjects",
    "cohort_table",
    "result_key",
    "result_dir",
    "save_result",
    "load_result",
    "cross_validation",
    "baseline_coefficients",
    "compare_methods",
    "mixed_model_cell_means",
]

#: Short identifiers of the tissues, for glue keys and file names.
TISSUE_KEYS: dict[str, str] = {"WM": "wm", "subcortical GM": "sgm", "cortical GM": "cgm"}
#: Files of a saved result; ``parameters.json`` is written last.
RESULT_FILES: tuple[str, ...] = (
    "voxels.tsv.gz", "metrics.tsv", "history.tsv", "folds.tsv", "baselines.tsv", "parameters.json",
)
_VOXEL_ID = ["fold", "subject", "tissue", "label", "voxel", "reference"]


def study_subjects(
    bids_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    profile: str = "quick",
    seed: int = 0,
    calibration_input: str = "map_seed_mp2rage",
    progress: bool = False,
) -> tuple[dict, Any, dict[str, SubjectData]]:
    """The dataset, pipeline configuration and calibration subjects of chapters 06 and 07.

    Parameters
    ----------
    bids_dir, work_dir : path
        Dataset (the digital cohort is generated there when absent) and working directory.
    profile : {"smoke", "quick", "paper"}
        Cohort and pipeline profile (:func:`qt1lib.pipeline.ensure_dataset`,
        :meth:`qt1lib.pipeline.PipelineConfig.for_profile`).
    seed : int
        Cohort noise seed.
    calibration_input : str
        Estimator whose map the network calibrates (``PipelineConfig.calibration_input``).
    progress : bool
        Show progress bars.

    Returns
    -------
    dataset : dict
        :func:`qt1lib.pipeline.ensure_dataset` summary.
    pipeline_config : PipelineConfig
    subjects : dict of str to SubjectData
        :func:`qt1lib.pipeline.calibration_subjects`, keyed ``"sub-<label>"``.
    """
    from .pipeline import PipelineConfig, calibration_subjects, ensure_dataset

    dataset = ensure_dataset(bids_dir, profile, seed, progress=progress)
    pipeline_config = PipelineConfig.for_profile(profile, calibration_input=calibration_input)
    subjects = calibration_subjects(bids_dir, pipeline_config, work_dir=work_dir, progress=progress)
    return dataset, pipeline_config, subjects


def cohort_table(subjects: Mapping[str, SubjectData], tissues: tuple[int, ...] = tuple(TISSUE_LABELS)) -> pd.DataFrame:
    """Scored voxels and median T1 per subject and tissue: what the calibration starts from.

    Returns
    -------
    DataFrame
        ``subject``, ``tissue``, ``n`` (scored voxels, :meth:`SubjectData.scored`),
        ``t1_input`` and ``t1_reference`` (median input and IR T1, s), ``difference``
        (median of input - reference, s).
    """
    rows = []
    for name in sorted(subjects):
        s = subjects[name]
        scored = s.scored(tissues)
        for label in tissues:
            sel = scored & (s.labels == label)
            x, r = s.inputs["t1"][sel], s.target[sel]
            rows.append({"subject": name, "tissue": TISSUE_LABELS.get(label, f"label {label}"), "n": int(sel.sum()),
                         "t1_input": float(np.median(x)) if x.size else np.nan,
                         "t1_reference": float(np.median(r)) if r.size else np.nan,
                         "difference": float(np.median(x - r)) if x.size else np.nan})
    return pd.DataFrame(rows)


def result_key(subjects: Mapping[str, SubjectData], config: CalibrationConfig, seed: int) -> str:
    """SHA-256 of what determines a cross-validation: the subjects' arrays, the configuration, the seed, qt1lib.

    Parameters
    ----------
    subjects : mapping of str to SubjectData
    config : CalibrationConfig
    seed : int
        Study seed of :func:`qt1lib.calibrate.run_cross_validation`.

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    payload = {
        "qt1lib": __version__,
        "config": config.digest(),
        "seed": int(seed),
        "subjects": {name: subjects[name].digest for name in sorted(subjects)},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def result_dir(work_dir: str | os.PathLike, key: str) -> Path:
    """``work_dir/calibration/<first 16 digits of key>``: the folder of one cross-validation."""
    if len(key) < 16 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"key must be a hexadecimal digest (result_key), got {key!r}")
    return Path(work_dir) / "calibration" / key[:16]


def _methods(voxels: pd.DataFrame) -> list[str]:
    """Methods of a voxel table in table order (the categories of a categorical column)."""
    column = voxels["method"]
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(m) for m in column.cat.categories]
    return list(dict.fromkeys(column))


def _wide_voxels(voxels: pd.DataFrame) -> pd.DataFrame:
    """One row per voxel, one estimate column per method (the methods share voxels and order)."""
    methods = _methods(voxels)
    parts = [voxels[voxels["method"] == m].reset_index(drop=True) for m in methods]
    first = parts[0]
    for m, p in zip(methods, parts):
        if len(p) != len(first) or not (p[["subject", "voxel"]].to_numpy() == first[["subject", "voxel"]].to_numpy()).all():
            raise ValueError(f"method {m!r} does not list the same voxels as {methods[0]!r}")
    wide = first[_VOXEL_ID].copy()
    wide["tissue"] = wide["tissue"].astype(str)
    for m, p in zip(methods, parts):
        wide[m] = p["estimate"].to_numpy()
    return wide


def _long_voxels(wide: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Inverse of :func:`_wide_voxels`: the voxel table of :class:`CrossValidationResult`."""
    present = list(dict.fromkeys(wide["tissue"]))
    order = [t for t in TISSUES if t in present] + [t for t in present if t not in TISSUES]
    frames = []
    for fold, g in wide.groupby("fold", sort=True):
        for m in methods:
            part = g[_VOXEL_ID[:-1]].copy()
            part.insert(2, "method", m)
            part["estimate"] = g[m].to_numpy()
            part["reference"] = g["reference"].to_numpy()
            frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    out["method"] = pd.Categorical(out["method"], categories=methods)
    out["tissue"] = pd.Categorical(out["tissue"], categories=order)
    return out[["fold", "subject", "method", "tissue", "label", "voxel", "estimate", "reference"]]


def _folds_table(folds: list[Fold]) -> pd.DataFrame:
    return pd.DataFrame(
        {"fold": [f.index for f in folds], "test": [f.test for f in folds], "train": [",".join(f.train) for f in folds]}
    )


def save_result(
    result: CrossValidationResult,
    directory: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    baselines: pd.DataFrame | None = None,
) -> Path:
    """Write the tables of a cross-validation (module docstring); ``parameters.json`` last.

    Parameters
    ----------
    result : CrossValidationResult
    directory : path
        Usually :func:`result_dir`.
    parameters : mapping, optional
        Recorded in ``parameters.json`` (with the qt1lib version).
    baselines : DataFrame, optional
        :func:`baseline_coefficients`; written as ``baselines.tsv`` (an empty table otherwise).

    Returns
    -------
    Path
        ``directory``.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parameters.json").unlink(missing_ok=True)  # an interrupted rewrite is not a complete result
    buffer = io.StringIO()
    _wide_voxels(result.voxels).to_csv(buffer, sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    atomic_write_bytes(out / "voxels.tsv.gz", gzip.compress(buffer.getvalue().encode(), compresslevel=1, mtime=0))
    save_tsv(result.metrics.assign(tissue=result.metrics["tissue"].astype(str),
                                   method=result.metrics["method"].astype(str)), out / "metrics.tsv")
    save_tsv(result.history, out / "history.tsv")
    save_tsv(_folds_table(result.folds), out / "folds.tsv")
    save_tsv(baselines if baselines is not None else pd.DataFrame(columns=["fold"]), out / "baselines.tsv")
    save_json({"qt1lib_version": __version__, "methods": _methods(result.voxels), **dict(parameters or {})},
              out / "parameters.json")
    return out


def load_result(directory: str | os.PathLike) -> CrossValidationResult:
    """Read a result written by :func:`save_result` (without calibrated maps).

    Raises
    ------
    FileNotFoundError
        If the result is incomplete (no ``parameters.json``, or a table is missing).
    """
    d = Path(directory)
    missing = [name for name in RESULT_FILES if not (d / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: incomplete calibration result, missing {missing}")
    methods = load_json(d / "parameters.json")["methods"]
    read = {"sep": "\t", "na_values": ["n/a"], "keep_default_na": False, "dtype": {"subject": str, "test": str}}
    with gzip.open(d / "voxels.tsv.gz", "rt") as fh:
        wide = pd.read_csv(fh, **read)
    voxels = _long_voxels(wide, methods)
    metrics = tissue_metrics(voxels)
    history = pd.read_csv(d / "history.tsv", **read)
    history["best"] = history["best"].astype(bool)
    folds_tab = pd.read_csv(d / "folds.tsv", **{**read, "dtype": {"test": str, "train": str}})
    folds = [Fold(int(r.fold), r.test, tuple(r.train.split(","))) for r in folds_tab.itertuples()]
    paths = {f.test: d / "models" / f"fold-{f.index}_test-{f.test}" / MODEL_FILE for f in folds}
    return CrossValidationResult(folds=folds, voxels=voxels, metrics=metrics, history=history, model_paths=paths)


def baseline_coefficients(
    subjects: Mapping[str, SubjectData], tissues: tuple[int, ...] = tuple(TISSUE_LABELS)
) -> pd.DataFrame:
    """Intercept and slope of the linear baselines of every fold, fitted on its training subjects.

    The same fits as :func:`qt1lib.calibrate.run_cross_validation` makes
    (:func:`~qt1lib.calibrate.fit_global_linear`, :func:`~qt1lib.calibrate.fit_tissue_linear`).

    Returns
    -------
    DataFrame
        ``fold``, ``test``, ``method`` (``global_linear`` with ``tissue`` "all", or
        ``tissue_linear``), ``tissue``, ``intercept`` (s), ``slope``.
    """
    rows = []
    for fold in make_folds(subjects):
        train = [subjects[n] for n in fold.train]
        a, b = fit_global_linear(train, tissues).coefficients[None]
        rows.append({"fold": fold.index, "test": fold.test, "method": "global_linear", "tissue": "all",
                     "intercept": a, "slope": b})
        for label, (a, b) in fit_tissue_linear(train, tissues).coefficients.items():
            rows.append({"fold": fold.index, "test": fold.test, "method": "tissue_linear",
                         "tissue": TISSUE_LABELS.get(label, f"label {label}"), "intercept": a, "slope": b})
    return pd.DataFrame(rows)


def cross_validation(
    subjects: Mapping[str, SubjectData],
    config: CalibrationConfig,
    work_dir: str | os.PathLike,
    seed: int = 0,
    *,
    need_maps: bool = False,
    parameters: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[CrossValidationResult, Path, bool]:
    """Run the cross-validation, or reuse the one saved for the same inputs.

    Parameters
    ----------
    subjects : mapping of str to SubjectData
        The cohort (:func:`qt1lib.pipeline.calibration_subjects`).
    config : CalibrationConfig
    work_dir : path
        Working directory; the result goes to :func:`result_dir`.
    seed : int
        Study seed.
    need_maps : bool
        The caller needs the calibrated maps (:attr:`CrossValidationResult.maps`): the folds
        are run again, loading the saved networks (inference only) and reusing checkpoints.
        Otherwise a saved result is read as it is.
    parameters : mapping, optional
        Extra provenance for ``parameters.json`` (e.g. the pipeline configuration).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    progress : bool
        Show tqdm bars.

    Returns
    -------
    result : CrossValidationResult
    directory : Path
        Where it is saved.
    reused : bool
        True when a saved result was read and nothing was computed.
    """
    key = result_key(subjects, config, seed)
    directory = result_dir(work_dir, key)
    if not need_maps:
        try:
            return load_result(directory), directory, True
        except FileNotFoundError:
            pass
    result = run_cross_validation(
        subjects, config, directory / "models", seed, device=device, keep_maps=need_maps, progress=progress
    )
    provenance = {
        "key": key,
        "seed": int(seed),
        "config": config.to_dict(),
        "subjects": {name: subjects[name].digest for name in sorted(subjects)},
        **dict(parameters or {}),
    }
    save_result(result, directory, provenance, baseline_coefficients(subjects, config.tissues))
    return result, directory, False


def compare_methods(
    summary: pd.DataFrame, method: str = "resnet", others: tuple[str, ...] = ("none", "global_linear", "tissue_linear"),
    metric: str = "rmse_mean",
) -> pd.DataFrame:
    """Whether ``method`` has a lower fold-mean metric than each other method, per tissue.

    Parameters
    ----------
    summary : DataFrame
        :func:`qt1lib.stats.fold_summary` output.
    method : str
        The method under test.
    others : tuple of str
        Methods it is compared with.
    metric : str
        Column of ``summary`` (lower is better).

    Returns
    -------
    DataFrame
        ``tissue``, ``other``, ``value`` (of ``method``), ``other_value``, ``difference``
        (``value - other_value``), ``relative`` (difference / other_value), ``lower`` (bool).
    """
    indexed = summary.set_index(["method", "tissue"])[metric]
    rows = []
    for tissue in dict.fromkeys(summary["tissue"].astype(str)):
        for other in others:
            v, o = float(indexed[(method, tissue)]), float(indexed[(other, tissue)])
            rows.append({"tissue": tissue, "other": other, "value": v, "other_value": o, "difference": v - o,
                         "relative": (v - o) / o if o else np.nan, "lower": bool(v < o)})
    return pd.DataFrame(rows)


def mixed_model_cell_means(model: MixedModelResult) -> pd.DataFrame:
    """Mean absolute error per method and tissue predicted by the fixed effects of :func:`qt1lib.stats.mixed_model`.

    With treatment coding, the cell mean of method ``m`` in tissue ``t`` is the sum of the
    intercept, the main effects of ``m`` and ``t`` and their interaction (zero terms for the
    reference levels), i.e. the fixed-effect prediction for a typical subject.

    Returns
    -------
    DataFrame
        ``method``, ``tissue``, ``mae`` (s), ``se`` (s; from the fixed-effect covariance).
    """
    fit = model.result
    params = fit.fe_params
    cov = fit.cov_params().loc[params.index, params.index]
    data = fit.model.data.frame
    methods = list(data["method"].cat.categories)
    tissues = list(data["tissue"].cat.categories)
    rows = []
    for m in methods:
        for t in tissues:
            terms = ["Intercept"]
            if m != methods[0]:
                terms.append(f"C(method)[T.{m}]")
            if t != tissues[0]:
                terms.append(f"C(tissue)[T.{t}]")
            if m != methods[0] and t != tissues[0]:
                terms.append(f"C(method)[T.{m}]:C(tissue)[T.{t}]")
            w = pd.Series(0.0, index=params.index)
            w[terms] = 1.0
            rows.append({"method": m, "tissue": t, "mae": float(w @ params), "se": float(np.sqrt(w @ cov @ w))})
    return pd.DataFrame(rows)
