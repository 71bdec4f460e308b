"""Synthetic calibration subjects shared by the calibration tests: a known, tissue-dependent,
nonlinear map from the input T1 to the reference, on a cylinder of three tissues."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from qt1lib.calibrate import SubjectData


def offset_by_label() -> np.ndarray:
    """Tissue offsets of the synthetic target (s); not monotonic in T1, so no single line fits."""
    return np.array([0.0, 0.5, 0.0, 0.5])


def true_calibration(t1: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Known nonlinear function of the input plus a tissue offset."""
    return 0.5 * t1**2 + 0.4 + offset_by_label()[labels]


def make_subject(seed: int, shape: tuple[int, int, int] = (28, 28, 8), noise: float = 0.02) -> SubjectData:
    """Cylinder of WM with a subcortical core and a cortical rim; smooth T1 variation within tissue."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).astype(float)
    c = (np.array(shape) - 1) / 2
    r = np.hypot((idx[0] - c[0]) / (shape[0] / 2), (idx[1] - c[1]) / (shape[1] / 2))
    mask = r < 0.95
    labels = np.where(mask, 1, 0)
    labels[(r > 0.7) & mask] = 3
    labels[r < 0.3] = 2
    field = ndimage.gaussian_filter(rng.normal(size=shape), 2)
    t1 = np.array([0.0, 1.1, 1.4, 1.7])[labels] + 0.2 * field / field.std() + noise * rng.normal(size=shape)
    target = true_calibration(t1, labels)
    return SubjectData({"t1": np.where(mask, t1, np.nan)}, np.where(mask, target, np.nan), mask, labels)
