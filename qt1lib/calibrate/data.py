"""Per-subject data of the calibration, in the space of the IR reference maps, and its normalisation.

A :class:`SubjectData` holds, on one voxel grid (the SIR space of the seed: the MP2RAGE maps
are registered and resampled onto the IR maps, DESIGN.md section 4.6):

* ``inputs``: named 3-D maps, the network's input channels. ``"t1"`` (MAP MP2RAGE T1, s) is
  required; conventional optional names are ``"b1"`` (relative B1+ map, 1 = nominal flip) and
  ``"t1_std"`` (posterior standard deviation of T1, s). Any other name may be used.
* ``target``: the IR reference T1 = 1 / R1f (s); NaN where there is none (failed fits).
* ``mask``: the brain mask (bool); patches are centred and maps calibrated inside it.
* ``labels``: integer tissue labels (:mod:`qt1lib.tissues`: 1 WM, 2 subcortical GM,
  3 cortical GM, 4 CSF, 0 background; the configured tissues, by default the scored ones of
  :data:`qt1lib.tissues.SCORED`, are scored). The network does not see them: they balance the
  patch sampling, select the voxels of the loss, and split the statistics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..stats import TISSUE_LABELS  # re-exported: alias of qt1lib.tissues.label_names()

__all__ = [
    "SubjectData",
    "Normalisation",
    "T1_CHANNEL",
    "INPUT_CHANNELS",
    "TISSUE_LABELS",
    "fit_normalisation",
    "normalised_inputs",
    "normalised_target",
    "denormalised_output",
]

#: The input channel every subject must have: the MAP MP2RAGE T1 (s).
T1_CHANNEL = "t1"
#: Conventional channel names and their meaning.
INPUT_CHANNELS: dict[str, str] = {
    "t1": "MAP MP2RAGE T1 (s)",
    "b1": "relative B1+ (1 = nominal flip angle)",
    "t1_std": "posterior standard deviation of the MAP T1 (s)",
}


@dataclass(frozen=True, eq=False)
class SubjectData:
    """One subject's maps on the voxel grid of the IR reference (module docstring).

    Parameters
    ----------
    inputs : mapping of str to ndarray
        Input maps, each of shape (X, Y, Z); must contain ``"t1"`` (s).
    target : ndarray, shape (X, Y, Z)
        IR reference T1 (s); NaN where undefined.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    labels : ndarray of int, shape (X, Y, Z)
        Tissue labels, non-negative integers.

    Raises
    ------
    ValueError
        If ``"t1"`` is missing, an array is not 3-D or its shape differs from ``target``'s,
        the mask is not boolean (0/1), or labels are not non-negative integers.
    """

    inputs: Mapping[str, np.ndarray]
    target: np.ndarray
    mask: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        target = np.asarray(self.target, dtype=float)
        if target.ndim != 3:
            raise ValueError(f"target must be a 3-D map (X, Y, Z), got shape {target.shape}")
        shape = target.shape
        if T1_CHANNEL not in self.inputs:
            raise ValueError(f"inputs must contain {T1_CHANNEL!r} (MAP MP2RAGE T1, s); got {sorted(self.inputs)}")
        inputs = {}
        for name, value in self.inputs.items():
            arr = np.asarray(value, dtype=float)
            if arr.shape != shape:
                raise ValueError(f"inputs[{name!r}] has shape {arr.shape}, expected the target's {shape}")
            inputs[name] = arr
        mask = np.asarray(self.mask)
        if mask.shape != shape:
            raise ValueError(f"mask has shape {mask.shape}, expected the target's {shape}")
        if mask.dtype != bool:
            if not np.all((mask == 0) | (mask == 1)):
                raise ValueError("mask must be boolean (or 0/1)")
            mask = mask.astype(bool)
        labels = np.asarray(self.labels)
        if labels.shape != shape:
            raise ValueError(f"labels has shape {labels.shape}, expected the target's {shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.isfinite(labels) & (labels == np.round(labels))):
                raise ValueError("labels must be integers")
        labels = labels.astype(np.int64)
        if labels.min(initial=0) < 0:
            raise ValueError("labels must be non-negative (0 = not a scored tissue)")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "labels", labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel grid (X, Y, Z)."""
        return self.target.shape  # type: ignore[return-value]

    def scored(self, tissues: Iterable[int]) -> np.ndarray:
        """Voxels that train and score the calibration: in the mask, in ``tissues``, finite target and T1."""
        return (
            self.mask
            & np.isin(self.labels, list(tissues))
            & np.isfinite(self.target)
            & np.isfinite(self.inputs[T1_CHANNEL])
        )

    @cached_property
    def digest(self) -> str:
        """SHA-256 of every array (part of the training cache key); computed once."""
        h = hashlib.sha256()
        for name in sorted(self.inputs):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.inputs[name]).tobytes())
        for arr in (self.target, self.mask, self.labels):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Normalisation:
    """Affine standardisation of inputs and target, fitted on training subjects only.

    ``x_norm = (x - mean) / std`` per input channel and for the target; the network works in
    these units and its output is mapped back with ``target_mean + target_std * y``. With
    ``residual``, the "target" is the correction ``T1_IR - T1_MAP`` and the calibrated T1 is
    ``T1_MAP + target_mean + target_std * y``.

    Attributes
    ----------
    channels : tuple of str
        Channel names, in the network's order.
    input_mean, input_std : tuple of float
        Per channel, over brain-mask voxels with finite values (channel units).
    target_mean, target_std : float
        Of the target (or of the correction, with ``residual``) over the scored voxels
        (:meth:`SubjectData.scored`) (s).
    residual : bool
        Whether the network predicts the correction to the MAP T1 rather than T1 itself.
    """

    channels: tuple[str, ...]
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    target_mean: float
    target_std: float
    residual: bool = False

    def to_dict(self) -> dict:
        """Plain-Python dictionary (saved with the model)."""
        return {
            "channels": list(self.channels),
            "input_mean": list(self.input_mean),
            "input_std": list(self.input_std),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "residual": self.residual,
        }

    @classmethod
    def from_dict(cls, values: Mapping) -> Normalisation:
        """Inverse of :meth:`to_dict`."""
        return cls(
            channels=tuple(values["channels"]),
            input_mean=tuple(float(v) for v in values["input_mean"]),
            input_std=tuple(float(v) for v in values["input_std"]),
            target_mean=float(values["target_mean"]),
            target_std=float(values["target_std"]),
            residual=bool(values["residual"]),
        )


def _mean_std(values: np.ndarray, what: str) -> tuple[float, float]:
    if values.size == 0:
        raise ValueError(f"no finite voxel to normalise {what}")
    std = float(values.std())
    # A constant channel is centred but not scaled (documented in fit_normalisation).
    return float(values.mean()), std if std > 0 else 1.0


def fit_normalisation(
    subjects: Iterable[SubjectData], channels: tuple[str, ...], tissues: tuple[int, ...], residual: bool = False
) -> Normalisation:
    """Means and standard deviations of the inputs and the target over training subjects.

    Parameters
    ----------
    subjects : iterable of SubjectData
        The training subjects (never the test subject).
    channels : tuple of str
        Input channels, in order.
    tissues : tuple of int
        Tissue labels of the target statistics.
    residual : bool
        Standardise the correction ``target - t1`` instead of the target.

    Returns
    -------
    Normalisation
        A channel with zero spread gets ``std = 1`` (centred, not scaled).

    Raises
    ------
    ValueError
        If a subject lacks a channel, or no voxel is finite.
    """
    subjects = list(subjects)
    means, stds = [], []
    for name in channels:
        values = []
        for s in subjects:
            if name not in s.inputs:
                raise ValueError(f"channel {name!r} is missing from a subject's inputs ({sorted(s.inputs)})")
            v = s.inputs[name][s.mask]
            values.append(v[np.isfinite(v)])
        m, sd = _mean_std(np.concatenate(values), f"channel {name!r}")
        means.append(m)
        stds.append(sd)
    target = np.concatenate([_target(s, residual)[s.scored(tissues)] for s in subjects])
    t_mean, t_std = _mean_std(target, "the target")
    return Normalisation(tuple(channels), tuple(means), tuple(stds), t_mean, t_std, bool(residual))


def _target(subject: SubjectData, residual: bool) -> np.ndarray:
    return subject.target - subject.inputs[T1_CHANNEL] if residual else subject.target


def normalised_inputs(subject: SubjectData, norm: Normalisation) -> np.ndarray:
    """Stack and standardise a subject's input channels.

    Returns
    -------
    ndarray of float32, shape (C, X, Y, Z)
        ``(x - mean) / std`` per channel; 0 (the training mean) outside the brain mask and
        where an input is not finite, so the network never sees background or NaN.
    """
    out = np.zeros((len(norm.channels),) + subject.shape, dtype=np.float32)
    for c, (name, m, sd) in enumerate(zip(norm.channels, norm.input_mean, norm.input_std)):
        if name not in subject.inputs:
            raise ValueError(f"channel {name!r} is missing from the subject's inputs ({sorted(subject.inputs)})")
        x = subject.inputs[name]
        keep = subject.mask & np.isfinite(x)
        out[c][keep] = (x[keep] - m) / sd
    return out


def normalised_target(subject: SubjectData, norm: Normalisation, tissues: tuple[int, ...]) -> np.ndarray:
    """Standardised reference T1 (or correction, with ``norm.residual``) on the scored voxels.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        ``(target - target_mean) / target_std`` (``target - t1`` in place of ``target`` with
        ``norm.residual``) where :meth:`SubjectData.scored`, else NaN (NaN voxels are left out
        of the loss).
    """
    out = np.full(subject.shape, np.nan, dtype=np.float32)
    keep = subject.scored(tissues)
    out[keep] = (_target(subject, norm.residual)[keep] - norm.target_mean) / norm.target_std
    return out


def denormalised_output(subject: SubjectData, norm: Normalisation, y: np.ndarray) -> np.ndarray:
    """Calibrated T1 (s) from the network's standardised output map ``y`` (inverse of :func:`normalised_target`)."""
    out = norm.target_mean + norm.target_std * np.asarray(y, dtype=float)
    return out + subject.inputs[T1_CHANNEL] if norm.residual else out
