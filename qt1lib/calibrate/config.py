"""Hyper-parameters of the calibration network and its training.

The seed (Saunders et al. 2025) states a "patch-based ResNet-18" trained across four folds and
nothing else (DESIGN.md section 5): every default below is an assumption of this book, and
says where it comes from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from .. import tissues as _tissues
from ..validate import is_integer, require_integer
from .resnet import STEMS

__all__ = ["CalibrationConfig", "TARGETS", "OPTIMIZERS", "LOSSES"]

#: What the network predicts: the T1 of the patch-centre voxel, or of every patch voxel.
TARGETS: tuple[str, ...] = ("centre", "patch")
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam")
LOSSES: tuple[str, ...] = ("mse", "huber")


@dataclass(frozen=True)
class CalibrationConfig:
    """Everything that defines a trained calibration network (a cache key with the data and seed).

    Parameters
    ----------
    channels : tuple of str
        Input channels, names of :attr:`SubjectData.inputs`; the first must be ``"t1"`` (MAP
        MP2RAGE T1). Default ``("t1",)``: the seed's input. Add ``"b1"`` and ``"t1_std"`` for
        the B1 map and the posterior standard deviation.
    patch_shape : tuple of int
        Patch size in voxels: 2 values for 2-D patches in the plane orthogonal to
        ``slice_axis``, 3 for 3-D patches. Default (32, 32): 2-D patches train about 5x faster
        than 16^3 3-D patches with the strided stem (``NOTES-toolchain.md``).
    slice_axis : int
        Array axis (0, 1, 2) orthogonal to 2-D patches; also the axis of the validation slabs.
        Default 2 (axial for RAS-ordered arrays).
    target : {"centre", "patch"}
        ``"centre"``: the network regresses the reference T1 of the patch-centre voxel (one
        output) and whole-volume inference evaluates one patch per brain voxel.
        ``"patch"``: one output per patch voxel, and inference averages overlapping windows.
        Default ``"centre"`` (the head the abstract's "calibrate ... T1 estimates" suggests).
    residual : bool
        If true the network predicts the correction ``T1_IR - T1_MAP`` (standardised) and the
        calibrated T1 is the MAP T1 plus that correction; otherwise it predicts T1_IR itself.
        Default True: the pooled ResNet features blur the patch, and the correction (a
        tissue-dependent bias, smooth in space) suffers less from that blur than T1 itself;
        on the synthetic problem of ``tests/test_calibrate.py`` it reaches a clearly lower
        test error in the same number of epochs. The seed does not say (assumption).
    stem : {"strided", "small"}
        ResNet stem (:mod:`qt1lib.calibrate.resnet`). Default ``"strided"`` (He et al. 2016;
        7x faster than ``"small"``, ``NOTES-toolchain.md``).
    input_skip : bool
        Add a learned linear function of the input channels at each output voxel to the
        ResNet's head (:mod:`qt1lib.calibrate.resnet`), so that the network contains the
        global linear calibration as a special case. Default False (the plain ResNet-18).
    width : int
        Channels of the first ResNet stage. Default 64 (He et al. 2016).
    tissues : tuple of int
        Tissue labels (:mod:`qt1lib.tissues`) where patch centres are sampled, balanced, and the
        loss is computed. Default: the labels of :data:`qt1lib.tissues.SCORED`, (1, 2, 3), the
        seed's three tissues.
    patches_per_epoch : int
        Training patches drawn afresh each epoch, split evenly over subjects and tissues.
        Default 4096 (assumption: one epoch takes seconds on 2 cores, ``NOTES-toolchain.md``).
    validation_patches : int
        Validation patches, drawn once per fold. Default 1024 (assumption).
    validation_fraction : float
        Fraction of the slabs of each training subject kept for validation (0 = no
        validation and no early stopping). Default 0.2 (assumption: a common 80/20 split).
    validation_slab : int
        Thickness (voxels along ``slice_axis``) of the slabs split between training and
        validation; whole slabs limit how many validation patches overlap training patches.
        Default 8 (assumption).
    batch_size : int
        Patches per optimisation step; an incomplete last batch is dropped. Default 64
        (assumption).
    max_epochs : int
        Upper bound of epochs. Default 30 (assumption).
    patience : int
        Epochs without a lower validation loss before stopping (early stopping, Prechelt
        1998). Default 5 (assumption).
    optimizer : {"adamw", "adam"}
        AdamW (Loshchilov & Hutter 2019) or Adam (Kingma & Ba 2015). Default ``"adamw"``.
    learning_rate : float
        Default 1e-3: Adam's suggested step size (Kingma & Ba 2015, Algorithm 1).
    weight_decay : float
        Decoupled weight decay of AdamW (L2 penalty for Adam). Default 0.01, torch's AdamW
        default.
    loss : {"mse", "huber"}
        Mean squared error, or the Huber loss (Huber 1964) that is robust to outlying reference
        voxels (misregistration, failed IR fits). Default ``"mse"``: the seed reports RMSE.
    huber_delta : float
        Huber threshold, in units of the standard deviation of the target. Default 1.0 (torch's
        default).
    overlap : float
        Fraction of a window shared with its neighbour in sliding-window inference
        (``target="patch"``), in [0, 1). Default 0.5 (MONAI's ``sliding_window_inference``
        uses 0.25; half overlap averages every voxel over 2^d windows).
    inference_batch_size : int
        Patches per forward pass at inference. Default 256 (memory, not accuracy).
    """

    channels: tuple[str, ...] = ("t1",)
    patch_shape: tuple[int, ...] = (32, 32)
    slice_axis: int = 2
    target: str = "centre"
    residual: bool = True
    stem: str = "strided"
    input_skip: bool = False
    width: int = 64
    tissues: tuple[int, ...] = _tissues.labels()
    patches_per_epoch: int = 4096
    validation_patches: int = 1024
    validation_fraction: float = 0.2
    validation_slab: int = 8
    batch_size: int = 64
    max_epochs: int = 30
    patience: int = 5
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    loss: str = "mse"
    huber_delta: float = 1.0
    overlap: float = 0.5
    inference_batch_size: int = 256

    def __post_init__(self) -> None:
        for name in ("channels", "patch_shape", "tissues"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValueError(f"{name} must be a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.channels or self.channels[0] != "t1" or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels must be distinct names starting with 't1', got {self.channels!r}")
        shape = self.patch_shape
        if len(shape) not in (2, 3) or not all(is_integer(p, builtin=True) and p >= 1 for p in shape):
            raise ValueError(f"patch_shape must be 2 or 3 positive integers, got {self.patch_shape!r}")
        for name in ("residual", "input_skip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis!r}")
        tissues = self.tissues
        if (
            not tissues
            or not all(is_integer(t, builtin=True) and t >= 1 for t in tissues)
            or len(set(tissues)) != len(tissues)
        ):
            raise ValueError(f"tissues must be distinct positive labels, got {self.tissues!r}")
        for name, allowed in (("target", TARGETS), ("stem", STEMS), ("optimizer", OPTIMIZERS), ("loss", LOSSES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("width", "patches_per_epoch", "validation_patches", "validation_slab", "batch_size",
                     "max_epochs", "patience", "inference_batch_size"):
            require_integer(name, getattr(self, name), 1, builtin=True)
        if self.patches_per_epoch < self.batch_size:
            raise ValueError(
                f"patches_per_epoch ({self.patches_per_epoch}) must be >= batch_size ({self.batch_size}): "
                "incomplete batches are dropped"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in [0, 1), got {self.validation_fraction!r}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must lie in [0, 1), got {self.overlap!r}")
        for name in ("learning_rate", "huber_delta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    # ------------------------------------------------------------------ derived
    @property
    def spatial_dims(self) -> int:
        """2 or 3: dimensionality of the patches and of the ResNet."""
        return len(self.patch_shape)

    @property
    def window(self) -> tuple[int, int, int]:
        """The patch as a 3-D window of the volume (size 1 along ``slice_axis`` for 2-D patches)."""
        if self.spatial_dims == 3:
            return tuple(self.patch_shape)  # type: ignore[return-value]
        window = list(self.patch_shape)
        window.insert(self.slice_axis, 1)
        return tuple(window)  # type: ignore[return-value]

    @property
    def n_outputs(self) -> int:
        """Outputs of the ResNet head: 1 (centre) or one per patch voxel."""
        if self.target == "centre":
            return 1
        n = 1
        for p in self.patch_shape:
            n *= p
        return n

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (JSON-serialisable; tuples become lists in JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CalibrationConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown CalibrationConfig parameters {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the parameters (part of the training cache key)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
