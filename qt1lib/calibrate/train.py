"""Training of the calibration ResNet-18 on one fold, with checkpoints and early stopping.

One call of :func:`train_model` trains a network on the training subjects of a fold:

1. standardise inputs and target with statistics of the training subjects
   (:func:`~qt1lib.calibrate.data.fit_normalisation`);
2. split each training subject into slabs, a fraction of which (stratified by tissue) hold the
   validation patches
   (:func:`~qt1lib.calibrate.patches.slab_split`), drawn once;
3. each epoch, draw fresh training patch centres balanced over tissues and subjects
   (:func:`~qt1lib.calibrate.patches.sample_centres`), shuffle them with a seeded
   ``torch.Generator`` and take AdamW/Adam steps on the MSE or Huber loss of the
   standardised reference T1 (at the patch centre, or at every scored voxel of the patch);
4. after each epoch, write a checkpoint (model, optimiser, early-stopping state, history)
   atomically (temporary file + ``os.replace``), so an interrupted fold resumes where it
   stopped; stop when the validation loss has not improved for ``patience`` epochs;
5. keep the weights of the best validation epoch with everything that made them
   (hyper-parameters, channels, normalisation, qt1lib version, seed, the store key).

With a :class:`~qt1lib.store.Store` the trained model is the store entry of step
:data:`MODEL_STEP` (``model.pt``, read back by :data:`MODEL_CODEC`), keyed by
:func:`training_parameters` (hyper-parameters, seed, the digests of the training subjects'
arrays) and the source of :data:`TRAINING_MODULES` and of every qt1lib module they import: a
rerun loads it and trains nothing, and editing the training code retrains. The per-epoch
checkpoint lives in the entry's :meth:`~qt1lib.store.Store.scratch` folder (same key) until the
model is committed. A damaged model or checkpoint (a file that no longer reads, or whose
SHA-256 differs from the one written with it) is removed with a warning naming it and trained
again, never served and never a crash.

Every random draw derives from ``seed``: NumPy generators ``default_rng([seed, stream,
epoch])`` for the sampling, ``torch.manual_seed(seed)`` (in a forked RNG state) for the
initial weights, a per-epoch ``torch.Generator`` for the shuffling; deterministic algorithms
are requested while training. On the CPU, the same seed gives bit-identical weights, and a
resumed run gives the weights of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import __version__
from ..io import atomic_write_bytes
from ..store import Store
from ..validate import is_integer
from .config import CalibrationConfig
from .data import (
    Normalisation,
    SubjectData,
    denormalised_output,
    fit_normalisation,
    normalised_inputs,
    normalised_target,
)
from .patches import extract_patches, pad_volume, predict_centres, sample_centres, slab_split, sliding_window_inference
from .resnet import ResNet18

__all__ = [
    "TrainedModel",
    "ModelCodec",
    "MODEL_CODEC",
    "MODEL_STEP",
    "TRAINING_MODULES",
    "build_model",
    "train_model",
    "training_parameters",
    "training_fingerprint",
    "resolve_device",
    "MODEL_FILE",
    "CHECKPOINT_FILE",
]

#: Store step of a trained model.
MODEL_STEP = "calibration_model"
#: qt1lib modules whose source (with that of every qt1lib module they import) keys a trained model.
TRAINING_MODULES: tuple[str, ...] = ("qt1lib.calibrate.train",)
#: The model's file in its store entry (``torch.save`` of :meth:`TrainedModel.to_dict`).
MODEL_FILE = "model.pt"
#: What the model entry records of ``model.pt`` (its SHA-256) and of the training, as JSON.
MODEL_INFO_FILE = "model.json"
#: The per-epoch checkpoint's file in the entry's scratch folder.
CHECKPOINT_FILE = "checkpoint.pt"
_FORMAT = "qt1lib.calibrate.TrainedModel/1"
_CHECKPOINT_MAGIC = b"qt1lib.calibrate.checkpoint/1\n"  # then the SHA-256 (32 bytes) of the torch.save payload
# Independent random streams derived from the seed.
_SPLIT, _VALIDATION, _TRAIN, _SHUFFLE = 0, 1, 2, 3


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when ``torch.cuda.is_available()``, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def _deterministic() -> Iterator[None]:
    """Request deterministic algorithms (warn where none exists), restore the caller's setting."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _torch_seed(*key: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def training_parameters(subjects: Mapping[str, SubjectData], config: CalibrationConfig, seed: int) -> dict[str, Any]:
    """The parameters of a trained model's store entry: hyper-parameters, seed, training subjects' data.

    Returns
    -------
    dict
        ``config`` (:meth:`CalibrationConfig.to_dict`), ``seed`` and ``subjects`` (name ->
        :attr:`SubjectData.digest`, the SHA-256 of the subject's arrays).
    """
    return {
        "config": config.to_dict(),
        "seed": int(seed),
        "subjects": {name: subjects[name].digest for name in sorted(subjects)},
    }


def training_fingerprint(subjects: Mapping[str, SubjectData], config: CalibrationConfig, seed: int) -> str:
    """The store key of the model that these subjects, hyper-parameters and seed train (SHA-256, hex).

    It hashes :func:`training_parameters` and the source of :data:`TRAINING_MODULES` (and of the
    qt1lib modules they import), as :meth:`qt1lib.store.Store.key` does for step
    :data:`MODEL_STEP`; a key does not depend on the store's folder.
    """
    return Store(".").key(MODEL_STEP, training_parameters(subjects, config, seed), modules=TRAINING_MODULES)


class _PatchDataset(Dataset):
    """Patches of several subjects' padded volumes, fetched a whole batch at a time."""

    def __init__(
        self,
        inputs: list[np.ndarray],
        targets: list[np.ndarray],
        centres: np.ndarray,
        config: CalibrationConfig,
    ):
        self.inputs, self.targets, self.centres, self.config = inputs, targets, centres, config

    def __len__(self) -> int:
        return len(self.centres)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        sel = self.centres[np.asarray(indices)]
        x = np.empty((len(sel), len(cfg.channels)) + cfg.window, dtype=np.float32)
        y = np.empty((len(sel), cfg.n_outputs), dtype=np.float32)
        for s in np.unique(sel[:, 0]):
            rows = sel[:, 0] == s
            x[rows] = extract_patches(self.inputs[s], sel[rows, 1:], cfg.window)
            if cfg.target == "centre":
                c = sel[rows, 1:]
                y[rows, 0] = self.targets[s][c[:, 0], c[:, 1], c[:, 2]]
            else:
                y[rows] = extract_patches(self.targets[s], sel[rows, 1:], cfg.window).reshape(rows.sum(), -1)
        x = x.reshape((len(sel), len(cfg.channels)) + cfg.patch_shape)
        return torch.from_numpy(x), torch.from_numpy(y)


def _as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def _draw_centres(
    candidates: list[np.ndarray], labels: list[np.ndarray], n: int, tissues: tuple[int, ...],
    rng: np.random.Generator, what: str, require_every_tissue: bool,
) -> np.ndarray:
    """``n`` centres balanced over tissues, and each tissue's share over the subjects that have it.

    A subject's region may miss a tissue, or every tissue (a validation slab can miss the
    subcortical GM, or the brain). Tissues absent from every subject are left out of the
    balance: an error with ``require_every_tissue`` (the training set), a warning otherwise
    (the validation set). Returns rows (subject index, x, y, z).
    """
    holders = [[i for i, (c, lab) in enumerate(zip(candidates, labels)) if np.any(c & (lab == t))] for t in tissues]
    missing = [t for t, h in zip(tissues, holders) if not h]
    if len(missing) == len(tissues) or (require_every_tissue and missing):
        raise ValueError(f"tissue label(s) {missing} have no {what} voxel in any training subject")
    if missing:
        warnings.warn(f"tissue label(s) {missing} have no {what} voxel in any training subject: "
                      f"the {what} loss leaves them out", stacklevel=3)
    present = [(t, h) for t, h in zip(tissues, holders) if h]
    parts = []
    for j, (tissue, subs) in enumerate(present):
        n_tissue = n // len(present) + (j < n % len(present))
        for m, i in enumerate(subs):
            count = n_tissue // len(subs) + (m < n_tissue % len(subs))
            c = sample_centres(candidates[i], labels[i], (tissue,), count, rng)
            parts.append(np.column_stack([np.full(len(c), i, dtype=np.int64), c]))
    return np.concatenate(parts)


def _prepare_target(target: np.ndarray, config: CalibrationConfig) -> np.ndarray:
    """Target volume as the dataset indexes it: as is (centre) or NaN-padded ``(1, ...)`` (patch)."""
    return target if config.target == "centre" else pad_volume(target[None], config.window, value=np.nan)


def _loss_function(config: CalibrationConfig, reduction: str) -> torch.nn.Module:
    if config.loss == "mse":
        return torch.nn.MSELoss(reduction=reduction)
    return torch.nn.HuberLoss(reduction=reduction, delta=config.huber_delta)


def _make_optimizer(model: torch.nn.Module, config: CalibrationConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def build_model(config: CalibrationConfig) -> ResNet18:
    """The untrained ResNet-18 that ``config`` describes (inputs, outputs, width, stem, input skip)."""
    return ResNet18(config.spatial_dims, len(config.channels), config.n_outputs, config.width, config.stem,
                    config.input_skip)


@dataclass
class _Prepared:
    """A fold's training data, standardised, padded and split into training and validation slabs."""

    norm: Normalisation
    config: CalibrationConfig
    inputs: list[np.ndarray]
    labels: list[np.ndarray]
    train_targets: list[np.ndarray]
    train_candidates: list[np.ndarray]
    val_loader: DataLoader | None

    def train_loader(self, seed: int, epoch: int) -> DataLoader:
        """Fresh balanced training centres for ``epoch``, shuffled by a seeded generator."""
        cfg = self.config
        centres = _draw_centres(self.train_candidates, self.labels, cfg.patches_per_epoch, cfg.tissues,
                                np.random.default_rng([seed, _TRAIN, epoch]), "training", True)
        return DataLoader(
            _PatchDataset(self.inputs, self.train_targets, centres, cfg),
            batch_size=cfg.batch_size,
            shuffle=True,
            drop_last=True,  # a batch of one breaks batch normalisation
            generator=torch.Generator().manual_seed(_torch_seed(seed, _SHUFFLE, epoch)),
            collate_fn=_as_batch,
        )


def _prepare(subjects: Mapping[str, SubjectData], cfg: CalibrationConfig, seed: int) -> _Prepared:
    subs = [subjects[n] for n in sorted(subjects)]
    norm = fit_normalisation(subs, cfg.channels, cfg.tissues, cfg.residual)
    inputs = [pad_volume(normalised_inputs(s, norm), cfg.window) for s in subs]
    labels = [s.labels for s in subs]
    split_rng = np.random.default_rng([seed, _SPLIT])
    scored = [s.scored(cfg.tissues) for s in subs]
    val_region = [  # stratified: every tissue of a subject gets a validation slab where it can
        slab_split(s.shape, cfg.slice_axis, cfg.validation_slab, cfg.validation_fraction, split_rng,
                   strata=[sc & (s.labels == t) for t in cfg.tissues])
        for s, sc in zip(subs, scored)
    ]
    targets = [normalised_target(s, norm, cfg.tissues) for s in subs]
    # Each set's loss sees only its own slabs' target voxels (matters for target="patch").
    train_targets = [_prepare_target(np.where(v, np.nan, t), cfg) for t, v in zip(targets, val_region)]
    val_loader = None
    if cfg.validation_fraction > 0:
        val_targets = [_prepare_target(np.where(v, t, np.nan), cfg) for t, v in zip(targets, val_region)]
        val_centres = _draw_centres(
            [sc & v for sc, v in zip(scored, val_region)], labels, cfg.validation_patches, cfg.tissues,
            np.random.default_rng([seed, _VALIDATION]), "validation", False,
        )
        val_loader = DataLoader(
            _PatchDataset(inputs, val_targets, val_centres, cfg), batch_size=cfg.inference_batch_size,
            collate_fn=_as_batch,
        )
    train_candidates = [sc & ~v for sc, v in zip(scored, val_region)]
    return _Prepared(norm, cfg, inputs, labels, train_targets, train_candidates, val_loader)


@dataclass
class TrainedModel:
    """A trained calibration network with everything needed to apply and reproduce it.

    Attributes
    ----------
    model : ResNet18
        Weights of the best validation epoch, in evaluation mode.
    config : CalibrationConfig
        Hyper-parameters.
    normalisation : Normalisation
        Input and target standardisation (training subjects).
    seed : int
        Seed of the training.
    history : DataFrame
        Per epoch: ``epoch``, ``train_loss``, ``val_loss`` (standardised units), ``seconds``.
    best_epoch : int
        Epoch whose weights were kept.
    fingerprint : str
        :func:`training_fingerprint` of the training: the key of its store entry.
    train_subjects : tuple of str
        Subjects it was trained on.
    """

    model: ResNet18
    config: CalibrationConfig
    normalisation: Normalisation
    seed: int
    history: pd.DataFrame
    best_epoch: int
    fingerprint: str
    train_subjects: tuple[str, ...]

    def predict(
        self, subject: SubjectData, device: str | torch.device | None = None, progress: bool = False
    ) -> np.ndarray:
        """Calibrated T1 map of a subject.

        Parameters
        ----------
        subject : SubjectData
            Needs the model's input channels; target and labels are not used.
        device : str or torch.device, optional
            Default: CUDA when available, else CPU.
        progress : bool
            Show a tqdm bar.

        Returns
        -------
        ndarray of float64, shape (X, Y, Z)
            Calibrated T1 (s) in the brain mask, NaN outside. With ``target="centre"`` each
            voxel is the prediction of the patch centred on it; with ``"patch"`` the average
            of overlapping windows (:mod:`qt1lib.calibrate.patches`).
        """
        cfg, norm = self.config, self.normalisation
        dev = resolve_device(device)
        model = self.model.to(dev).eval()
        x = normalised_inputs(subject, norm)
        patch = (-1, len(cfg.channels)) + cfg.patch_shape

        def predictor(patches: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                y = model(torch.from_numpy(np.ascontiguousarray(patches)).reshape(patch).to(dev))
            y = y.cpu().numpy()
            return y[:, 0] if cfg.target == "centre" else y.reshape((-1,) + cfg.window)

        if cfg.target == "centre":
            out = predict_centres(x, predictor, cfg.window, subject.mask, cfg.inference_batch_size, progress)
        else:
            out = sliding_window_inference(
                x, predictor, cfg.window, subject.mask, cfg.overlap, cfg.inference_batch_size, progress
            )
        return denormalised_output(subject, norm, out)

    def to_dict(self) -> dict[str, Any]:
        """The saved form: plain Python and CPU tensors only (loadable with ``weights_only=True``)."""
        return {
            "format": _FORMAT,
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "config": self.config.to_dict(),
            "in_channels": len(self.config.channels),
            "channels": list(self.config.channels),
            "normalisation": self.normalisation.to_dict(),
            "qt1lib_version": __version__,
            "seed": int(self.seed),
            "history": {c: [float(v) for v in self.history[c]] for c in self.history.columns},
            "best_epoch": int(self.best_epoch),
            "fingerprint": self.fingerprint,
            "train_subjects": list(self.train_subjects),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` to ``path`` atomically."""
        _atomic_save(self.to_dict(), Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainedModel:
        """Read a model written by :meth:`save` (safe load: ``weights_only=True``)."""
        return cls.from_dict(torch.load(Path(path), map_location="cpu", weights_only=True))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainedModel:
        """Inverse of :meth:`to_dict`."""
        if d.get("format") != _FORMAT:
            raise ValueError(f"not a qt1lib calibration model (format {d.get('format')!r}, expected {_FORMAT!r})")
        config = CalibrationConfig.from_dict(d["config"])
        model = build_model(config)
        model.load_state_dict(d["state_dict"])
        history = pd.DataFrame(d["history"])
        history["epoch"] = history["epoch"].astype(int)
        return cls(
            model=model.eval(),
            config=config,
            normalisation=Normalisation.from_dict(d["normalisation"]),
            seed=d["seed"],
            history=history,
            best_epoch=d["best_epoch"],
            fingerprint=d["fingerprint"],
            train_subjects=tuple(d["train_subjects"]),
        )


@dataclass(frozen=True)
class ModelCodec:
    """A :class:`TrainedModel` in a store entry: ``model.pt`` and ``model.json``.

    ``model.pt`` is ``torch.save`` of :meth:`TrainedModel.to_dict` (loadable on its own with
    :meth:`TrainedModel.load`); ``model.json`` records its SHA-256, checked on every read, and
    a summary of the training. A file that does not read, or a ``model.pt`` whose SHA-256
    differs, raises ``ValueError`` naming the file: the store then removes the entry with a
    warning and trains again.
    """

    name: str = "calibration_model"

    def write(self, value: TrainedModel, folder: Path) -> None:
        buffer = io.BytesIO()
        torch.save(value.to_dict(), buffer)
        raw = buffer.getvalue()
        (folder / MODEL_FILE).write_bytes(raw)
        info = {
            "format": _FORMAT,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "seed": int(value.seed),
            "train_subjects": list(value.train_subjects),
            "epochs": int(len(value.history)),
            "best_epoch": int(value.best_epoch),
            "config": value.config.to_dict(),
        }
        (folder / MODEL_INFO_FILE).write_text(json.dumps(info, indent=1, sort_keys=True))

    def read(self, folder: Path) -> TrainedModel:
        path = folder / MODEL_FILE
        try:
            info = json.loads((folder / MODEL_INFO_FILE).read_text())
            raw = path.read_bytes()
            if hashlib.sha256(raw).hexdigest() != info["sha256"]:
                raise ValueError(f"its SHA-256 differs from the one in {MODEL_INFO_FILE}")
            return TrainedModel.from_dict(torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True))
        except Exception as err:
            raise ValueError(f"{path}: unreadable calibration model ({type(err).__name__}: {err})") from err


#: The codec of :data:`MODEL_STEP` entries.
MODEL_CODEC = ModelCodec()

_STATE_KEYS = frozenset({"epoch", "best_val", "best_epoch", "bad_epochs", "stopped", "history", "best_state"})


def _initial_state() -> dict[str, Any]:
    return {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "bad_epochs": 0, "stopped": False,
            "history": [], "best_state": None}


def _write_checkpoint(path: Path, key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      state: Mapping[str, Any]) -> None:
    """Write the training state atomically: magic, SHA-256 of the payload, the ``torch.save`` payload."""
    buffer = io.BytesIO()
    torch.save({"key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": dict(state)},
               buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, _CHECKPOINT_MAGIC + hashlib.sha256(payload).digest() + payload)


def _damaged_checkpoint(path: Path, err: BaseException) -> None:
    warnings.warn(f"{path}: damaged checkpoint ({type(err).__name__}: {err}); it is removed and the fold "
                  "trains from its first epoch", stacklevel=2)
    path.unlink(missing_ok=True)


def _read_checkpoint(path: Path, key: str) -> dict | None:
    """The checkpoint at ``path``; None when there is none, or when it is damaged (removed, with a warning)."""
    if not path.exists():
        return None
    try:
        raw = path.read_bytes()
        head = len(_CHECKPOINT_MAGIC)
        if raw[:head] != _CHECKPOINT_MAGIC:
            raise ValueError("not a qt1lib calibration checkpoint")
        digest, payload = raw[head:head + 32], raw[head + 32:]
        if hashlib.sha256(payload).digest() != digest:
            raise ValueError("its content differs from the SHA-256 written with it")
        ckpt = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        if ckpt.get("key") != key:
            raise ValueError("a checkpoint of another training")
        missing = _STATE_KEYS - set(ckpt["state"])
        if missing:
            raise ValueError(f"its training state lacks {sorted(missing)}")
        return ckpt
    except Exception as err:  # a checkpoint that does not read is absent: train again, never crash
        _damaged_checkpoint(path, err)
        return None


def train_model(
    subjects: Mapping[str, SubjectData],
    config: CalibrationConfig,
    seed: int = 0,
    store: Store | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainedModel:
    """Train (or resume, or load from the store) the calibration network on training subjects.

    Parameters
    ----------
    subjects : mapping of str to SubjectData
        The fold's training subjects (never its test subject).
    config : CalibrationConfig
        Hyper-parameters.
    seed : int
        Seed of every random draw of the training.
    store : qt1lib.store.Store, optional
        Where the trained model is kept: the entry of step :data:`MODEL_STEP` whose key
        (:func:`training_fingerprint`) hashes :func:`training_parameters` and the source of
        :data:`TRAINING_MODULES`. A sound entry is loaded and nothing is trained; otherwise the
        checkpoint of the entry's scratch folder (``checkpoint.pt``, written atomically after
        each epoch) is resumed, the model is committed and the checkpoint removed. A damaged
        model or checkpoint is removed with a warning naming it and trained again. ``None``: no
        files.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU (not part of the key: a model trained on a GPU
        is reused on the CPU).
    progress : bool
        Show a tqdm bar over epochs.
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, record)`` after each epoch's checkpoint is written
        (``record``: the history row).

    Returns
    -------
    TrainedModel
        On the CPU, in evaluation mode; its ``fingerprint`` is the store key.

    Raises
    ------
    TypeError
        If ``store`` is not a :class:`~qt1lib.store.Store` (``out_dir`` was replaced by it) or
        ``seed`` is not an integer.
    """
    if not subjects:
        raise ValueError("subjects must hold at least one training subject")
    if store is not None and not isinstance(store, Store):
        raise TypeError(f"store must be a qt1lib.store.Store or None (it replaces out_dir), got {store!r}")
    if not is_integer(seed):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    parameters = training_parameters(subjects, config, seed)
    if store is None:
        return _train(subjects, config, int(seed), training_fingerprint(subjects, config, seed), None, device,
                      progress, on_epoch)
    key = store.key(MODEL_STEP, parameters, modules=TRAINING_MODULES)
    scratch: list[Path] = []

    def compute() -> TrainedModel:
        folder = store.scratch(MODEL_STEP, parameters, modules=TRAINING_MODULES)
        scratch.append(folder)
        return _train(subjects, config, int(seed), key, folder / CHECKPOINT_FILE, device, progress, on_epoch)

    trained = store.get_or_compute(MODEL_STEP, parameters, compute, MODEL_CODEC, modules=TRAINING_MODULES)
    for folder in scratch:  # the model is committed: its checkpoint is spent
        shutil.rmtree(folder, ignore_errors=True)
    return trained


def _fresh_model(config: CalibrationConfig, seed: int, device: torch.device) -> tuple[ResNet18, torch.optim.Optimizer]:
    """The initial network (seeded, in a forked torch RNG state) and its optimiser."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config)
    model.to(device)
    return model, _make_optimizer(model, config)


def _train(
    subjects: Mapping[str, SubjectData],
    config: CalibrationConfig,
    seed: int,
    key: str,
    ckpt_path: Path | None,
    device: str | torch.device | None,
    progress: bool,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> TrainedModel:
    """The training of :func:`train_model`, checkpointed to ``ckpt_path`` (None: no checkpoint)."""
    cfg = config
    names = sorted(subjects)
    dev = resolve_device(device)
    data = _prepare(subjects, cfg, seed)
    model, optimizer = _fresh_model(cfg, seed, dev)
    state = _initial_state()
    if ckpt_path is not None and (ckpt := _read_checkpoint(ckpt_path, key)) is not None:
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            state = ckpt["state"]
        except Exception as err:  # a checkpoint the network does not accept: start again from scratch
            _damaged_checkpoint(ckpt_path, err)
            model, optimizer = _fresh_model(cfg, seed, dev)
            state = _initial_state()

    validate = data.val_loader is not None
    bar = tqdm(total=cfg.max_epochs, initial=state["epoch"], desc="epochs", disable=not progress)
    with _deterministic(), bar:
        while not state["stopped"] and state["epoch"] < cfg.max_epochs:
            epoch = state["epoch"] + 1
            tic = time.perf_counter()
            train_loss = _train_epoch(model, optimizer, data.train_loader(seed, epoch), cfg, dev)
            val_loss = _evaluate(model, data.val_loader, cfg, dev) if validate else float("nan")
            if not validate or val_loss < state["best_val"]:
                state["best_val"] = val_loss if validate else state["best_val"]
                state["best_epoch"] = epoch
                state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            state["stopped"] = validate and state["bad_epochs"] >= cfg.patience
            record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                      "seconds": time.perf_counter() - tic}
            state["history"].append(record)
            state["epoch"] = epoch
            if ckpt_path is not None:
                _write_checkpoint(ckpt_path, key, model, optimizer, state)
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if on_epoch is not None:
                on_epoch(epoch, dict(record))

    if state["best_state"] is not None:  # None only if every validation loss was NaN: keep the last weights
        model.load_state_dict(state["best_state"])
    return TrainedModel(
        model=model.cpu().eval(),
        config=cfg,
        normalisation=data.norm,
        seed=seed,
        history=pd.DataFrame(state["history"], columns=["epoch", "train_loss", "val_loss", "seconds"]),
        best_epoch=state["best_epoch"],
        fingerprint=key,
        train_subjects=tuple(names),
    )


def _train_epoch(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, cfg: CalibrationConfig,
    device: torch.device,
) -> float:
    """One pass over a loader; returns the mean loss over the finite target values."""
    loss_fn = _loss_function(cfg, "mean")
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        keep = torch.isfinite(y)
        loss = loss_fn(model(x)[keep], y[keep])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = int(keep.sum())
        total, count = total + loss.item() * n, count + n
    return total / count


def _evaluate(model: torch.nn.Module, loader: DataLoader, cfg: CalibrationConfig, device: torch.device) -> float:
    """Mean loss over the finite target values of a loader, in evaluation mode."""
    loss_fn = _loss_function(cfg, "sum")
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            keep = torch.isfinite(y)
            total += float(loss_fn(model(x)[keep], y[keep]))
            count += int(keep.sum())
    return total / count
