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
5. keep the weights of the best validation epoch and save them with everything that made
   them (hyper-parameters, channels, normalisation, qt1lib version, seed, a fingerprint of
   the data) as ``model.pt``.

Every random draw derives from ``seed``: NumPy generators ``default_rng([seed, stream,
epoch])`` for the sampling, ``torch.manual_seed(seed)`` (in a forked RNG state) for the
initial weights, a per-epoch ``torch.Generator`` for the shuffling; deterministic algorithms
are requested while training. On the CPU, the same seed gives bit-identical weights, and a
resumed run gives the weights of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
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

__all__ = ["TrainedModel", "build_model", "train_model", "training_fingerprint", "resolve_device", "MODEL_FILE", "CHECKPOINT_FILE"]

MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
_FORMAT = "qt1lib.calibrate.TrainedModel/1"
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


def training_fingerprint(subjects: Mapping[str, SubjectData], config: CalibrationConfig, seed: int) -> str:
    """SHA-256 of what determines a trained model: data, hyper-parameters, seed, qt1lib version."""
    key = {
        "config": config.digest(),
        "seed": int(seed),
        "qt1lib": __version__,
        "subjects": {name: subjects[name].digest for name in sorted(subjects)},
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


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
        :func:`training_fingerprint` of the training.
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


def _load_if_matching(path: Path, fingerprint: str, what: str) -> dict | None:
    if not path.exists():
        return None
    d = torch.load(path, map_location="cpu", weights_only=True)
    if d.get("fingerprint") == fingerprint:
        return d
    warnings.warn(f"{path}: {what} of other data or parameters; training again", stacklevel=3)
    return None


def train_model(
    subjects: Mapping[str, SubjectData],
    config: CalibrationConfig,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainedModel:
    """Train (or resume, or load) the calibration network on training subjects.

    Parameters
    ----------
    subjects : mapping of str to SubjectData
        The fold's training subjects (never its test subject).
    config : CalibrationConfig
        Hyper-parameters.
    seed : int
        Seed of every random draw of the training.
    out_dir : path, optional
        Folder of ``checkpoint.pt`` (per epoch) and ``model.pt`` (final). If ``model.pt``
        exists with the same fingerprint (data, config, seed, qt1lib version) it is loaded
        and nothing is trained; a matching checkpoint is resumed; files of other inputs are
        replaced (with a warning). ``None``: no files.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    progress : bool
        Show a tqdm bar over epochs.
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, record)`` after each epoch's checkpoint is written
        (``record``: the history row).

    Returns
    -------
    TrainedModel
        On the CPU, in evaluation mode.
    """
    if not subjects:
        raise ValueError("subjects must hold at least one training subject")
    cfg = config
    names = sorted(subjects)
    fingerprint = training_fingerprint(subjects, cfg, seed)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if (saved := _load_if_matching(out / MODEL_FILE, fingerprint, "a model")) is not None:
            return TrainedModel.from_dict(saved)
    dev = resolve_device(device)
    data = _prepare(subjects, cfg, seed)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg)
    model.to(dev)
    optimizer = _make_optimizer(model, cfg)

    state: dict[str, Any] = {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "bad_epochs": 0,
                             "stopped": False, "history": [], "best_state": None}
    ckpt_path = out / CHECKPOINT_FILE if out is not None else None
    if ckpt_path is not None and (ckpt := _load_if_matching(ckpt_path, fingerprint, "a checkpoint")) is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]

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
                _atomic_save({"fingerprint": fingerprint, "model": model.state_dict(),
                              "optimizer": optimizer.state_dict(), "state": state}, ckpt_path)
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if on_epoch is not None:
                on_epoch(epoch, dict(record))

    if state["best_state"] is not None:  # None only if every validation loss was NaN: keep the last weights
        model.load_state_dict(state["best_state"])
    trained = TrainedModel(
        model=model.cpu().eval(),
        config=cfg,
        normalisation=data.norm,
        seed=seed,
        history=pd.DataFrame(state["history"], columns=["epoch", "train_loss", "val_loss", "seconds"]),
        best_epoch=state["best_epoch"],
        fingerprint=fingerprint,
        train_subjects=tuple(names),
    )
    if out is not None:
        trained.save(out / MODEL_FILE)
        ckpt_path.unlink(missing_ok=True)
    return trained


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
