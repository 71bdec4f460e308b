"""Calibrations the network must beat: none, a global linear fit, a per-tissue linear fit.

Each linear fit is ordinary least squares of the IR reference T1 on the MP2RAGE T1,
``T1_IR ~ a + b T1_MP2RAGE``, over the scored voxels of the training subjects. The per-tissue
fit has one ``(a, b)`` per tissue label and so uses a segmentation, which the network does not
get: it is the strongest simple baseline, and a fair network must come close to it without
the labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .. import tissues as _tissues
from .data import T1_CHANNEL, SubjectData

__all__ = ["LinearCalibration", "fit_linear", "fit_global_linear", "fit_tissue_linear", "no_calibration"]


@dataclass(frozen=True)
class LinearCalibration:
    """``T1_cal = a + b T1`` globally or per tissue label.

    Attributes
    ----------
    coefficients : dict of int to (float, float)
        ``label -> (a (s), b)``; the key ``None`` holds a global fit that applies to every
        voxel.
    """

    coefficients: Mapping[int | None, tuple[float, float]]

    def apply(self, t1: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Calibrate T1 (s).

        Parameters
        ----------
        t1 : ndarray
            MP2RAGE T1 (s).
        labels : ndarray of int, optional
            Tissue labels, same shape; required for a per-tissue fit.

        Returns
        -------
        ndarray of float
            Calibrated T1 (s); for a per-tissue fit NaN where the label was not fitted.
        """
        t1 = np.asarray(t1, dtype=float)
        if None in self.coefficients:
            a, b = self.coefficients[None]
            return a + b * t1
        if labels is None or np.shape(labels) != t1.shape:
            raise ValueError(f"a per-tissue calibration needs labels of the T1 map's shape {t1.shape}")
        out = np.full(t1.shape, np.nan)
        for label, (a, b) in self.coefficients.items():
            sel = labels == label
            out[sel] = a + b * t1[sel]
        return out


def fit_linear(t1: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Ordinary least-squares line ``target ~ a + b t1`` over finite pairs.

    Returns
    -------
    (a, b) : tuple of float
        Intercept (s) and slope.

    Raises
    ------
    ValueError
        With fewer than two finite pairs or a constant ``t1``.
    """
    x = np.asarray(t1, dtype=float).ravel()
    y = np.asarray(target, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"t1 and target must have the same size, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("a linear fit needs at least two finite voxels with different T1")
    xm, ym = x.mean(), y.mean()
    b = float(np.sum((x - xm) * (y - ym)) / np.sum((x - xm) ** 2))
    return float(ym - b * xm), b


def _training_voxels(subjects: Iterable[SubjectData], tissues: tuple[int, ...]):
    t1, target, labels = [], [], []
    for s in subjects:
        keep = s.scored(tissues)
        t1.append(s.inputs[T1_CHANNEL][keep])
        target.append(s.target[keep])
        labels.append(s.labels[keep])
    return np.concatenate(t1), np.concatenate(target), np.concatenate(labels)


def no_calibration(subject: SubjectData) -> np.ndarray:
    """The MP2RAGE T1 itself in the brain mask, NaN outside (s)."""
    return np.where(subject.mask, subject.inputs[T1_CHANNEL], np.nan)


def fit_global_linear(
    subjects: Iterable[SubjectData], tissues: tuple[int, ...] = _tissues.labels()
) -> LinearCalibration:
    """One line over the scored voxels of all training subjects and tissues.

    ``tissues``: labels of :mod:`qt1lib.tissues`; default the scored ones (:data:`~qt1lib.tissues.SCORED`).
    """
    t1, target, _ = _training_voxels(subjects, tissues)
    return LinearCalibration({None: fit_linear(t1, target)})


def fit_tissue_linear(
    subjects: Iterable[SubjectData], tissues: tuple[int, ...] = _tissues.labels()
) -> LinearCalibration:
    """One line per tissue label over the scored voxels of all training subjects.

    ``tissues``: labels of :mod:`qt1lib.tissues`; default the scored ones (:data:`~qt1lib.tissues.SCORED`).
    """
    t1, target, labels = _training_voxels(subjects, tissues)
    return LinearCalibration({int(t): fit_linear(t1[labels == t], target[labels == t]) for t in tissues})
