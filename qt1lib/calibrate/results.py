"""The saved cross-validation of the calibration chapters: computed once, kept in the store, reused.

Chapter 06 trains the ResNet-18 in four leave-one-subject-out folds
(:func:`~qt1lib.calibrate.crossval.run_cross_validation`) and chapter 07 analyses the same
result. Both call :func:`cached_cross_validation` with the same subjects, configuration, seed
and :class:`~qt1lib.store.Store`. The result is the store entry of step :data:`RESULT_STEP`,
keyed by :func:`result_parameters` (hyper-parameters, seed, the digests of the subjects'
arrays) and the source of :data:`RESULT_MODULES` and of every qt1lib module they import
(cross-validation, training, baselines, statistics); each fold's network is an entry of its
own (:data:`~qt1lib.calibrate.train.MODEL_STEP`). A chapter run alone recomputes only what it
lacks, two runs with different parameters or code never mix, and a damaged entry is
recomputed with a warning.

A result entry (``<store>/calibration_result/<key>/``, :func:`result_entry`) holds, written by
:data:`RESULT_CODEC`::

    voxels.tsv.gz    scored voxels, one row per voxel, one estimate column per method
    metrics.tsv      qt1lib.stats.tissue_metrics: per fold, method and tissue
    history.tsv      training curves per fold
    folds.tsv        fold, test subject, training subjects
    baselines.tsv    coefficients of the linear baselines per fold
    parameters.json  provenance (key, seed, config, subjects' digests, network, the caller's), the
                     methods and tissues in table order, each fold's model key, the SHA-256
                     of every table (checked when read)

Tables are tab-separated with ``n/a`` for missing values (BIDS convention,
:func:`qt1lib.io.save_tsv`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import __version__
from ..io import _json_default, save_tsv
from ..stats import tissue_metrics
from ..store import MANIFEST, Store
from .config import CalibrationConfig
from .crossval import BASELINE_COLUMNS, CrossValidationResult, run_cross_validation
from .data import SubjectData
from .folds import Fold
from .train import MODEL_FILE, MODEL_STEP

__all__ = [
    "RESULT_STEP",
    "RESULT_MODULES",
    "RESULT_FILES",
    "ResultCodec",
    "RESULT_CODEC",
    "result_parameters",
    "result_entry",
    "stored_results",
    "write_result",
    "read_result",
    "cached_cross_validation",
]

#: Store step of a saved cross-validation.
RESULT_STEP = "calibration_result"
#: qt1lib modules whose source (with that of every qt1lib module they import) keys a saved result.
RESULT_MODULES: tuple[str, ...] = ("qt1lib.calibrate.results",)
#: Files of a result entry (besides the store's ``manifest.json``); ``parameters.json`` is written last.
RESULT_FILES: tuple[str, ...] = (
    "voxels.tsv.gz", "metrics.tsv", "history.tsv", "folds.tsv", "baselines.tsv", "parameters.json",
)
_TABLES = RESULT_FILES[:-1]
_VOXEL_ID = ["fold", "subject", "tissue", "label", "voxel", "reference"]
_READ = {"sep": "\t", "na_values": ["n/a"], "keep_default_na": False}


def result_parameters(
    subjects: Mapping[str, SubjectData], config: CalibrationConfig, seed: int, network: bool = True
) -> dict[str, Any]:
    """The parameters of a saved cross-validation's store entry.

    Returns
    -------
    dict
        ``config`` (:meth:`CalibrationConfig.to_dict`), ``seed`` (the study seed), ``subjects``
        (name -> :attr:`SubjectData.digest`) and ``network`` (False: the baselines alone,
        :func:`~qt1lib.calibrate.crossval.run_cross_validation`).
    """
    if not isinstance(network, bool):
        raise TypeError(f"network must be True or False, got {network!r}")
    return {
        "config": config.to_dict(),
        "seed": int(seed),
        "subjects": {name: subjects[name].digest for name in sorted(subjects)},
        "network": network,
    }


def result_entry(
    store: Store, subjects: Mapping[str, SubjectData], config: CalibrationConfig, seed: int, network: bool = True
) -> Path:
    """Folder of the store entry of this cross-validation (it exists once the result is stored)."""
    return store.entry(RESULT_STEP, store.key(RESULT_STEP, result_parameters(subjects, config, seed, network),
                                              modules=RESULT_MODULES))


def stored_results(store: Store) -> dict[Path, dict]:
    """Every cross-validation committed in ``store``: entry folder -> its ``parameters.json``.

    For readers that know the parameters but not the subjects' data (e.g. a test of a built
    book, which picks the entry whose ``parameters["config"]`` is a chapter's configuration).
    Entries whose ``parameters.json`` does not read are left out.
    """
    out = {}
    for folder in sorted((Path(store.root) / RESULT_STEP).glob("*")):
        if not (folder / MANIFEST).is_file():
            continue
        try:
            out[folder] = json.loads((folder / "parameters.json").read_text())
        except (OSError, ValueError):
            continue
    return out


# ---------------------------------------------------------------------------- tables
def _categories(column: pd.Series) -> list[str]:
    """Values of a column in table order (the categories of a categorical column)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(m) for m in column.cat.categories]
    return [str(m) for m in dict.fromkeys(column)]


def _wide_voxels(voxels: pd.DataFrame) -> pd.DataFrame:
    """One row per voxel, one estimate column per method (the methods share voxels and order)."""
    methods = _categories(voxels["method"])
    parts = [voxels[voxels["method"] == m].reset_index(drop=True) for m in methods]
    first = parts[0]
    for m, p in zip(methods, parts):
        same = len(p) == len(first) and (
            p[["subject", "voxel"]].to_numpy() == first[["subject", "voxel"]].to_numpy()).all()
        if not same:
            raise ValueError(f"method {m!r} does not list the same voxels as {methods[0]!r}")
    wide = first[_VOXEL_ID].copy()
    wide["tissue"] = wide["tissue"].astype(str)
    for m, p in zip(methods, parts):
        wide[m] = p["estimate"].to_numpy()
    return wide


def _long_voxels(wide: pd.DataFrame, methods: list[str], tissues: list[str]) -> pd.DataFrame:
    """Inverse of :func:`_wide_voxels`: the voxel table of :class:`CrossValidationResult`."""
    frames = []
    for _, g in wide.groupby("fold", sort=True):
        for m in methods:
            part = g[_VOXEL_ID[:-1]].copy()
            part.insert(2, "method", m)
            part["estimate"] = g[m].to_numpy()
            part["reference"] = g["reference"].to_numpy()
            frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    out["method"] = pd.Categorical(out["method"], categories=methods)
    out["tissue"] = pd.Categorical(out["tissue"], categories=tissues)
    return out[["fold", "subject", "method", "tissue", "label", "voxel", "estimate", "reference"]]


def _folds_table(folds: list[Fold]) -> pd.DataFrame:
    return pd.DataFrame(
        {"fold": [f.index for f in folds], "test": [f.test for f in folds], "train": [",".join(f.train) for f in folds]}
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_result(
    result: CrossValidationResult, folder: str | Path, provenance: Mapping[str, Any] | None = None
) -> Path:
    """Write the tables of a cross-validation into ``folder`` (module docstring); ``parameters.json`` last.

    The store calls it (through :data:`RESULT_CODEC`) in a fresh temporary folder; it may also
    write the tables anywhere else.

    Parameters
    ----------
    result : CrossValidationResult
    folder : path
        Created if needed.
    provenance : mapping, optional
        Recorded in ``parameters.json`` (JSON-ready).

    Returns
    -------
    Path
        ``folder``.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parameters.json").unlink(missing_ok=True)
    buffer = io.StringIO()
    _wide_voxels(result.voxels).to_csv(buffer, sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    (out / "voxels.tsv.gz").write_bytes(gzip.compress(buffer.getvalue().encode(), compresslevel=1, mtime=0))
    save_tsv(result.metrics.assign(tissue=result.metrics["tissue"].astype(str),
                                   method=result.metrics["method"].astype(str)), out / "metrics.tsv")
    save_tsv(result.history, out / "history.tsv")
    save_tsv(_folds_table(result.folds), out / "folds.tsv")
    save_tsv(result.baselines, out / "baselines.tsv")
    models = {test: path.parent.name for test, path in result.model_paths.items()}
    info = {
        **dict(provenance or {}),
        "qt1lib_version": __version__,
        "methods": _categories(result.voxels["method"]),
        "tissues": _categories(result.voxels["tissue"]),
        "models": models,
        "sha256": {name: _sha256(out / name) for name in _TABLES},
    }
    (out / "parameters.json").write_text(json.dumps(info, indent=1, sort_keys=True, default=_json_default))
    return out


def read_result(folder: str | Path) -> CrossValidationResult:
    """Read a result written by :func:`write_result` (without calibrated maps).

    ``model_paths`` point into the store that holds ``folder`` (``<root>/<step>/<key>``).

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        If a table's SHA-256 differs from the one in ``parameters.json`` (the message names it).
    """
    d = Path(folder)
    missing = [name for name in RESULT_FILES if not (d / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: incomplete calibration result, missing {missing}")
    info = json.loads((d / "parameters.json").read_text())
    for name in _TABLES:
        if _sha256(d / name) != info["sha256"][name]:
            raise ValueError(f"{d / name}: its SHA-256 differs from the one in parameters.json")
    with gzip.open(d / "voxels.tsv.gz", "rt") as fh:
        wide = pd.read_csv(fh, **_READ, dtype={"subject": str})
    voxels = _long_voxels(wide, info["methods"], info["tissues"])
    history = pd.read_csv(d / "history.tsv", **_READ, dtype={"subject": str})
    history["best"] = history["best"].astype(bool)
    folds_tab = pd.read_csv(d / "folds.tsv", **_READ, dtype={"test": str, "train": str})
    folds = [Fold(int(r.fold), r.test, tuple(r.train.split(","))) for r in folds_tab.itertuples()]
    baselines = pd.read_csv(d / "baselines.tsv", **_READ, dtype={"test": str, "method": str, "tissue": str})
    root = d.parent.parent
    paths = {test: root / MODEL_STEP / key / MODEL_FILE for test, key in info["models"].items()}
    return CrossValidationResult(folds=folds, voxels=voxels, metrics=tissue_metrics(voxels), history=history,
                                 model_paths=paths, baselines=baselines[list(BASELINE_COLUMNS)])


@dataclass(frozen=True)
class ResultCodec:
    """A :class:`CrossValidationResult` (without maps) as the tables of :func:`write_result`.

    ``provenance`` is recorded in ``parameters.json`` (it is not part of the key: give what the
    key already determines, or what only documents the run).
    """

    provenance: Mapping[str, Any] = field(default_factory=dict)
    name: str = "calibration_result"

    def write(self, value: CrossValidationResult, folder: Path) -> None:
        write_result(value, folder, self.provenance)

    def read(self, folder: Path) -> CrossValidationResult:
        return read_result(folder)


#: The codec of :data:`RESULT_STEP` entries (without extra provenance).
RESULT_CODEC = ResultCodec()


def cached_cross_validation(
    subjects: Mapping[str, SubjectData],
    config: CalibrationConfig,
    seed: int,
    store: Store,
    *,
    need_maps: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    provenance: Mapping[str, Any] | None = None,
    network: bool = True,
) -> tuple[CrossValidationResult, bool]:
    """The cross-validation of these subjects, configuration and seed: read from the store, or run and stored.

    Parameters
    ----------
    subjects : mapping of str to SubjectData
        The cohort (:func:`qt1lib.workflow.calibration_subjects`).
    config : CalibrationConfig
    seed : int
        Study seed.
    store : qt1lib.store.Store
        Holds the result (step :data:`RESULT_STEP`) and each fold's network
        (:data:`~qt1lib.calibrate.train.MODEL_STEP`).
    need_maps : bool
        The caller needs the calibrated maps (:attr:`CrossValidationResult.maps`): the folds
        run again (their networks are store hits, so this is inference only) and the maps are
        attached to the stored tables. Otherwise a stored result is read as it is.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    progress : bool
        Show tqdm bars.
    provenance : mapping, optional
        Extra provenance for ``parameters.json`` (e.g. the profile and pipeline configuration);
        not part of the key.
    network : bool
        Train and score the network. False: the same folds score the baselines alone (no
        training; an entry of its own, ``parameters["network"]`` False).

    Returns
    -------
    result : CrossValidationResult
        The stored tables (equal to a fresh run's on the CPU), and the maps with ``need_maps``.
    reused : bool
        True when nothing was trained and the result was already stored (every store lookup of
        this call was a hit).
    """
    parameters = result_parameters(subjects, config, seed, network)
    key = store.key(RESULT_STEP, parameters, modules=RESULT_MODULES)
    codec = ResultCodec({"key": key, **parameters, **dict(provenance or {})})
    start = len(store.events)
    fresh = None
    if need_maps:
        fresh = run_cross_validation(subjects, config, seed, store=store, device=device, keep_maps=True,
                                     progress=progress, network=network)

    def compute() -> CrossValidationResult:
        if fresh is not None:
            return fresh
        return run_cross_validation(subjects, config, seed, store=store, device=device, keep_maps=False,
                                    progress=progress, network=network)

    result = store.get_or_compute(RESULT_STEP, parameters, compute, codec, modules=RESULT_MODULES)
    if fresh is not None:
        result.maps = fresh.maps
    reused = all(event.outcome == "hit" for event in store.events[start:])
    return result, reused
