"""Leave-one-subject-out cross-validation of the calibration network and its baselines.

For each fold (:func:`~qt1lib.calibrate.folds.make_folds`) :func:`run_cross_validation`

1. trains the ResNet-18 on the training subjects (with a :class:`~qt1lib.store.Store`:
   loading its stored model, or resuming from its checkpoint:
   :func:`~qt1lib.calibrate.train.train_model`);
2. fits the baselines on the same subjects (:mod:`~qt1lib.calibrate.baselines`) and keeps
   their coefficients (:attr:`CrossValidationResult.baselines`);
3. calibrates the held-out subject with every method (whole-volume inference for the
   network) and hands each map to a callback (e.g. a BIDS derivative writer);
4. collects the scored voxels of the held-out subject into a tidy voxel table.

Methods (column ``method``): ``"none"`` (the MAP MP2RAGE T1), ``"global_linear"``,
``"tissue_linear"`` (uses the segmentation) and ``"resnet"``. All methods are scored on the
same voxels: in the brain mask, in the configured tissues, with a finite reference and finite
estimates from every method. With ``network=False`` the folds skip step 1 and the table has
the three baselines only (seconds instead of a training per fold: e.g. a second calibration
input scored with the baselines alone).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import tissues as _tissues
from ..stats import fold_summary, tissue_metrics
from ..store import Store
from ..validate import is_integer
from .baselines import LinearCalibration, fit_global_linear, fit_tissue_linear, no_calibration
from .config import CalibrationConfig
from .data import SubjectData
from .folds import Fold, fold_seed, make_folds
from .train import MODEL_FILE, MODEL_STEP, train_model

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "BASELINE_COLUMNS",
    "HISTORY_COLUMNS",
    "CrossValidationResult",
    "baseline_rows",
    "run_cross_validation",
    "voxel_table",
]

#: Method identifiers, in table order.
METHODS: tuple[str, ...] = ("none", "global_linear", "tissue_linear", "resnet")
#: Human-readable method names for figures and tables.
METHOD_NAMES: dict[str, str] = {
    "none": "no calibration",
    "global_linear": "global linear",
    "tissue_linear": "per-tissue linear",
    "resnet": "ResNet-18",
}

#: Columns of :attr:`CrossValidationResult.baselines`.
BASELINE_COLUMNS: tuple[str, ...] = ("fold", "test", "method", "tissue", "intercept", "slope")
#: Columns of :attr:`CrossValidationResult.history`.
HISTORY_COLUMNS: tuple[str, ...] = ("fold", "subject", "epoch", "train_loss", "val_loss", "seconds", "best")

MapWriter = Callable[[str, str, np.ndarray], None]


def _empty_baselines() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float if c in ("intercept", "slope") else object)
                         for c in BASELINE_COLUMNS})


def _empty_history() -> pd.DataFrame:
    """The training curves of a cross-validation that trained no network."""
    dtypes = {"fold": int, "subject": object, "epoch": int, "best": bool}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, float)) for c in HISTORY_COLUMNS})


@dataclass
class CrossValidationResult:
    """Everything a cross-validation produced.

    Attributes
    ----------
    folds : list of Fold
    voxels : DataFrame
        One row per scored voxel of each held-out subject and method: ``fold``, ``subject``,
        ``method``, ``tissue`` (name), ``label``, ``voxel`` (flat index into the subject's
        grid), ``estimate`` and ``reference`` (T1, s). The input of :mod:`qt1lib.stats`.
    metrics : DataFrame
        :func:`qt1lib.stats.tissue_metrics` of ``voxels``: per fold, method and tissue.
    history : DataFrame
        Training curves: ``fold``, ``subject`` (the test subject), ``epoch``, ``train_loss``,
        ``val_loss``, ``seconds``, ``best`` (the epoch whose weights were kept).
    model_paths : dict of str to Path
        Test subject -> its fold's ``model.pt`` in the store (empty without a store).
    maps : dict of str to dict of str to ndarray
        Test subject -> method -> calibrated T1 map (s, NaN outside the mask), when kept.
    baselines : DataFrame
        Coefficients of the linear baselines that scored each fold, fitted on its training
        subjects: ``fold``, ``test``, ``method`` (``"global_linear"`` with ``tissue``
        ``"all"``, or ``"tissue_linear"`` with a tissue name), ``tissue``, ``intercept`` (s),
        ``slope`` (:func:`baseline_rows`).
    """

    folds: list[Fold]
    voxels: pd.DataFrame
    metrics: pd.DataFrame
    history: pd.DataFrame
    model_paths: dict[str, Path]
    maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    baselines: pd.DataFrame = field(default_factory=_empty_baselines)

    def summary(self) -> pd.DataFrame:
        """:func:`qt1lib.stats.fold_summary` of :attr:`metrics` (mean and sd across folds)."""
        return fold_summary(self.metrics)


_TISSUE_NAMES = _tissues.label_names(_tissues.ALL)


def _tissue_name(label: int) -> str:
    """Display name of the tissue labelled ``label`` (:mod:`qt1lib.tissues`), else ``"label <n>"``."""
    return _TISSUE_NAMES.get(int(label), f"label {int(label)}")


def baseline_rows(fold: Fold, global_fit: LinearCalibration, tissue_fit: LinearCalibration) -> list[dict]:
    """Rows of :attr:`CrossValidationResult.baselines` for one fold's global and per-tissue fits."""
    (a, b), = global_fit.coefficients.values()
    rows = [{"fold": fold.index, "test": fold.test, "method": "global_linear", "tissue": "all",
             "intercept": float(a), "slope": float(b)}]
    for label, (a, b) in tissue_fit.coefficients.items():
        rows.append({"fold": fold.index, "test": fold.test, "method": "tissue_linear",
                     "tissue": _tissue_name(label), "intercept": float(a), "slope": float(b)})
    return rows


def voxel_table(
    subject_id: str,
    subject: SubjectData,
    maps: Mapping[str, np.ndarray],
    tissues: tuple[int, ...],
    fold: int,
) -> pd.DataFrame:
    """Tidy rows of the scored voxels of one subject for several calibrated maps.

    Parameters
    ----------
    subject_id : str
    subject : SubjectData
        Provides the reference, mask and labels.
    maps : mapping of str to ndarray
        Method -> T1 map (s) on the subject's grid.
    tissues : tuple of int
        Tissue labels scored.
    fold : int
        Fold number written in the ``fold`` column.

    Returns
    -------
    DataFrame
        Columns as :attr:`CrossValidationResult.voxels`; the same voxels, in the same order,
        for every method (those where every map and the reference are finite).
    """
    keep = subject.scored(tissues)
    for name, m in maps.items():
        if np.shape(m) != subject.shape:
            raise ValueError(f"map {name!r} has shape {np.shape(m)}, expected {subject.shape}")
        keep &= np.isfinite(m)
    flat = np.flatnonzero(keep)
    labels = subject.labels.ravel()[flat]
    names = [_tissue_name(t) for t in tissues]
    tissue_order = _tissues.sort_names(names)
    lookup = np.full(max(tissues) + 1, -1)
    for t in tissues:
        lookup[t] = tissue_order.index(_tissue_name(t))
    tissue = pd.Categorical.from_codes(lookup[labels], categories=tissue_order)
    reference = subject.target.ravel()[flat]
    method_order = [m for m in METHODS if m in maps] + [m for m in maps if m not in METHODS]
    frames = [
        pd.DataFrame(
            {
                "fold": fold,
                "subject": subject_id,
                "method": name,
                "tissue": tissue,
                "label": labels,
                "voxel": flat,
                "estimate": np.asarray(maps[name], dtype=float).ravel()[flat],
                "reference": reference,
            }
        )
        for name in method_order
    ]
    out = pd.concat(frames, ignore_index=True)
    out["method"] = pd.Categorical(out["method"], categories=method_order)
    return out


def run_cross_validation(
    subjects: Mapping[str, SubjectData],
    config: CalibrationConfig,
    seed: int = 0,
    *,
    store: Store | None = None,
    device: str | torch.device | None = None,
    write_map: MapWriter | None = None,
    keep_maps: bool = True,
    progress: bool = True,
    network: bool = True,
) -> CrossValidationResult:
    """Leave-one-subject-out training, inference and scoring of the network and the baselines.

    Parameters
    ----------
    subjects : mapping of str to SubjectData
        Subject id -> data in the space of the IR maps (at least two subjects; the seed has
        four, hence four folds).
    config : CalibrationConfig
        Network and training hyper-parameters.
    seed : int
        Study seed; fold ``k`` trains with :func:`~qt1lib.calibrate.folds.fold_seed`
        ``(seed, k)``.
    store : qt1lib.store.Store, optional
        Where each fold's trained network is kept (:func:`~qt1lib.calibrate.train.train_model`):
        a rerun with the same inputs and code loads the finished folds' models and resumes an
        interrupted fold from its checkpoint. ``None``: every fold trains, no files.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    write_map : callable, optional
        Called as ``write_map(subject_id, method, t1_map)`` for each held-out subject and
        method (T1 in s, NaN outside the brain mask).
    keep_maps : bool
        Keep the calibrated maps in the result (memory: 4 maps per subject).
    progress : bool
        Show tqdm bars.
    network : bool
        Train and score the ResNet-18 (method ``"resnet"``). False: the same folds score the
        baselines only; nothing is trained, ``history`` and ``model_paths`` are empty.

    Returns
    -------
    CrossValidationResult
        With the baselines' coefficients (:attr:`CrossValidationResult.baselines`) and, with a
        store, the path of each fold's ``model.pt``.
    """
    if store is not None and not isinstance(store, Store):
        raise TypeError(f"store must be a qt1lib.store.Store or None (it replaces out_dir), got {store!r}")
    if not is_integer(seed):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    folds = make_folds(subjects)
    tissues = config.tissues
    voxels, histories, paths, kept, baselines = [], [], {}, {}, []
    if not isinstance(network, bool):
        raise TypeError(f"network must be True or False, got {network!r}")
    for fold in folds:
        train = {name: subjects[name] for name in fold.train}
        model = None
        if network:
            model = train_model(
                train, config, fold_seed(seed, fold.index), store, device=device, progress=progress
            )
            if store is not None:
                paths[fold.test] = store.entry(MODEL_STEP, model.fingerprint) / MODEL_FILE
        test = subjects[fold.test]
        global_fit = fit_global_linear(train.values(), tissues)
        tissue_fit = fit_tissue_linear(train.values(), tissues)
        baselines.extend(baseline_rows(fold, global_fit, tissue_fit))
        t1 = no_calibration(test)
        maps = {
            "none": t1,
            "global_linear": global_fit.apply(t1),
            "tissue_linear": np.where(test.mask, tissue_fit.apply(t1, test.labels), np.nan),
        }
        if model is not None:
            maps["resnet"] = model.predict(test, device=device, progress=progress)
        if write_map is not None:
            for method, m in maps.items():
                write_map(fold.test, method, m)
        if keep_maps:
            kept[fold.test] = maps
        voxels.append(voxel_table(fold.test, test, maps, tissues, fold.index))
        if model is None:
            continue
        h = model.history.copy()
        h.insert(0, "subject", fold.test)
        h.insert(0, "fold", fold.index)
        h["best"] = h["epoch"] == model.best_epoch
        histories.append(h)
    table = pd.concat(voxels, ignore_index=True)
    for col in ("method", "tissue"):
        table[col] = pd.Categorical(table[col], categories=voxels[0][col].cat.categories)
    return CrossValidationResult(
        folds=folds,
        voxels=table,
        metrics=tissue_metrics(table),
        history=pd.concat(histories, ignore_index=True) if histories else _empty_history(),
        model_paths=paths,
        maps=kept,
        baselines=pd.DataFrame(baselines, columns=list(BASELINE_COLUMNS)),
    )
