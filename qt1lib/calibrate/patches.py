"""Patches: balanced sampling of patch centres, extraction, and whole-volume inference.

Volumes are channel-first arrays ``(C, X, Y, Z)``. A patch is a 3-D *window* of the volume;
2-D patches are windows of size 1 along the slice axis (see
:attr:`qt1lib.calibrate.config.CalibrationConfig.window`). A window of size ``w`` along an
axis centred on voxel ``c`` covers ``c - w // 2 .. c - w // 2 + w - 1`` (for even ``w`` the
centre is the upper of the two middle voxels); voxels beyond the volume are padded.

Whole-volume inference comes in two forms, matching the two regression heads:

* :func:`predict_centres`: one patch per voxel of a mask, and the predictor returns the value
  at each patch centre (a sliding window of stride 1 that keeps the centre only);
* :func:`sliding_window_inference`: windows on a grid with a given overlap, the predictor
  returns a whole window, and every voxel is the plain average of the windows that cover it
  (the ``"constant"`` blending mode of MONAI's ``sliding_window_inference``).

Both are vectorised over the voxels of a batch of windows (``sliding_window_view``, fancy
indexing, ``bincount``); the Python loop runs over batches only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm.auto import tqdm

__all__ = [
    "pad_volume",
    "extract_patches",
    "sample_centres",
    "slab_split",
    "predict_centres",
    "sliding_window_inference",
]

Predictor = Callable[[np.ndarray], np.ndarray]


def _check_window(window: Sequence[int]) -> tuple[int, int, int]:
    window = tuple(int(w) for w in window)
    if len(window) != 3 or any(w < 1 for w in window):
        raise ValueError(f"window must be 3 positive sizes, got {window!r}")
    return window  # type: ignore[return-value]


def _check_volume(volume: np.ndarray) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 4:
        raise ValueError(f"volume must have shape (channels, X, Y, Z), got {volume.shape}")
    return volume


def pad_volume(volume: np.ndarray, window: Sequence[int], value: float = 0.0) -> np.ndarray:
    """Pad a ``(C, X, Y, Z)`` volume so that every voxel can be a patch centre.

    Each spatial axis gets ``w // 2`` voxels before and ``w - w // 2 - 1`` after, filled
    with ``value``; the window centred on voxel ``c`` then starts at index ``c`` of the
    padded volume.
    """
    volume = _check_volume(volume)
    window = _check_window(window)
    pad = [(0, 0)] + [(w // 2, w - w // 2 - 1) for w in window]
    return np.pad(volume, pad, constant_values=value)


def extract_patches(padded: np.ndarray, centres: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """Patches centred on voxels of a volume padded by :func:`pad_volume`.

    Parameters
    ----------
    padded : ndarray, shape (C, X + w_x - 1, Y + w_y - 1, Z + w_z - 1)
        Output of :func:`pad_volume` with the same ``window``.
    centres : ndarray of int, shape (n, 3)
        Voxel indices of the centres in the *unpadded* volume.
    window : tuple of 3 int

    Returns
    -------
    ndarray, shape (n, C, *window)
        A copy, of ``padded``'s dtype.
    """
    padded = _check_volume(padded)
    window = _check_window(window)
    centres = np.asarray(centres)
    if centres.ndim != 2 or centres.shape[1] != 3 or not np.issubdtype(centres.dtype, np.integer):
        raise ValueError(f"centres must be an integer array of shape (n, 3), got {centres.dtype} {centres.shape}")
    inner = tuple(s - w + 1 for s, w in zip(padded.shape[1:], window))
    if centres.size and (centres.min() < 0 or np.any(centres.max(axis=0) >= inner)):
        raise ValueError(f"centres must lie inside the unpadded volume of shape {inner}")
    view = sliding_window_view(padded, window, axis=(1, 2, 3))
    patches = view[:, centres[:, 0], centres[:, 1], centres[:, 2]]
    return np.moveaxis(patches, 1, 0)


def sample_centres(
    candidates: np.ndarray,
    labels: np.ndarray,
    tissues: Sequence[int],
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw patch centres balanced across tissue labels.

    Tissue ``tissues[i]`` receives ``n // k + (i < n % k)`` centres (``k = len(tissues)``),
    drawn uniformly among the candidate voxels of that label, without replacement when there
    are enough of them and with replacement otherwise.

    Parameters
    ----------
    candidates : ndarray of bool, shape (X, Y, Z)
        Voxels allowed as centres (e.g. brain mask & finite target & training slabs).
    labels : ndarray of int, shape (X, Y, Z)
        Tissue labels.
    tissues : sequence of int
        Labels to balance.
    n : int
        Number of centres, >= 0.
    rng : numpy.random.Generator
        Source of every random draw.

    Returns
    -------
    ndarray of int64, shape (n, 3)
        Centres in random order.

    Raises
    ------
    ValueError
        If shapes differ, ``n`` is negative, or a tissue has no candidate voxel.
    """
    candidates = np.asarray(candidates, dtype=bool)
    labels = np.asarray(labels)
    if candidates.ndim != 3 or labels.shape != candidates.shape:
        raise ValueError(f"candidates and labels must be 3-D of one shape, got {candidates.shape} and {labels.shape}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    if len(tissues) == 0:
        raise ValueError("tissues must name at least one label")
    pools = {t: np.flatnonzero(candidates & (labels == t)) for t in tissues}
    missing = [t for t, pool in pools.items() if pool.size == 0]
    if missing:
        raise ValueError(f"tissue label(s) {missing} have no candidate voxel for patch centres")
    k = len(tissues)
    chosen = []
    for i, tissue in enumerate(tissues):
        count = n // k + (i < n % k)
        if count:
            chosen.append(rng.choice(pools[tissue], size=count, replace=count > pools[tissue].size))
    flat = rng.permutation(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)
    return np.stack(np.unravel_index(flat, candidates.shape), axis=1).astype(np.int64)


def slab_split(
    shape: Sequence[int],
    axis: int,
    slab: int,
    fraction: float,
    rng: np.random.Generator,
    strata: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Split a volume into slabs and mark a fraction of them for validation.

    The slices along ``axis`` are grouped into consecutive slabs of ``slab`` slices; ``round(
    fraction * n_slabs)`` slabs (at least one when ``fraction > 0``, at most ``n_slabs - 1``)
    are drawn at random. Whole slabs keep validation centres away from training centres
    except at slab borders.

    With ``strata`` (e.g. one mask per tissue) the draw is stratified: taking the strata from
    the one that spans the fewest slabs, each one that spans at least two slabs and has no
    validation slab yet gets one of its slabs, while the ``round(fraction * n_slabs)`` slabs
    last; the rest are drawn at random. No draw takes a stratum's last training slab unless
    nothing else is left. A thin tissue (the subcortical GM in a few axial slabs) is then
    neither left out of validation nor out of training by chance.

    Parameters
    ----------
    shape : sequence of int
        Volume shape.
    axis : int
        Axis along which the slabs are stacked.
    slab : int
        Slices per slab, >= 1.
    fraction : float
        Fraction of the slabs for validation, in [0, 1).
    rng : numpy.random.Generator
        Source of every random draw.
    strata : sequence of ndarray of bool, optional
        Masks of shape ``shape`` to be represented in the validation slabs.

    Returns
    -------
    ndarray of bool, shape ``shape``
        True on validation voxels.

    Raises
    ------
    ValueError
        If ``fraction > 0`` and the volume has fewer than two slabs, or a stratum's shape is
        not ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    if axis not in range(len(shape)):
        raise ValueError(f"axis must index the volume's {len(shape)} axes, got {axis!r}")
    if slab < 1 or not 0 <= fraction < 1:
        raise ValueError(f"slab must be >= 1 and fraction in [0, 1), got {slab!r} and {fraction!r}")
    out = np.zeros(shape, dtype=bool)
    if fraction == 0:
        return out
    n_slabs = -(-shape[axis] // slab)
    if n_slabs < 2:
        raise ValueError(
            f"a volume of {shape[axis]} slices along axis {axis} holds fewer than two slabs of {slab}: "
            "lower the slab thickness or set the validation fraction to 0"
        )
    n_val = min(max(1, round(fraction * n_slabs)), n_slabs - 1)
    slab_of_slice = np.arange(shape[axis]) // slab
    spans = []  # the slabs of each stratum that spans two or more (one-slab strata stay in training)
    for i, stratum in enumerate(strata or []):
        stratum = np.asarray(stratum, dtype=bool)
        if stratum.shape != shape:
            raise ValueError(f"strata[{i}] has shape {stratum.shape}, expected {shape}")
        slabs = np.unique(slab_of_slice[stratum.any(axis=tuple(a for a in range(len(shape)) if a != axis))])
        if len(slabs) >= 2:
            spans.append(slabs)
    chosen: list[int] = []

    def leaves_training(candidate: int) -> bool:
        return all(not np.isin(span, chosen + [candidate]).all() for span in spans)

    # the strata that span the fewest slabs first, ties in random order
    for i in sorted(rng.permutation(len(spans)), key=lambda i: len(spans[i])):
        if len(chosen) < n_val and not np.isin(spans[i], chosen).any():
            allowed = [int(c) for c in spans[i] if leaves_training(int(c))]
            if allowed:
                chosen.append(int(rng.choice(allowed)))
    rest = [int(c) for c in rng.permutation(np.setdiff1d(np.arange(n_slabs), chosen))]
    for c in rest:
        if len(chosen) < n_val and leaves_training(c):
            chosen.append(c)
    chosen.extend([c for c in rest if c not in chosen][: n_val - len(chosen)])  # only if the strata leave too few
    index = [np.newaxis] * len(shape)
    index[axis] = slice(None)
    return out | np.isin(slab_of_slice, chosen)[tuple(index)]


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, disable=not progress, leave=False)


def predict_centres(
    volume: np.ndarray,
    predictor: Predictor,
    window: Sequence[int],
    mask: np.ndarray,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Evaluate a patch-centre predictor at every voxel of a mask.

    Parameters
    ----------
    volume : ndarray, shape (C, X, Y, Z)
        Input channels; padded with 0 beyond the volume.
    predictor : callable
        Maps patches ``(B, C, *window)`` (float32) to centre values ``(B,)``.
    window : tuple of 3 int
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels to predict.
    batch_size : int
        Patches per predictor call.
    progress : bool
        Show a tqdm bar over batches.

    Returns
    -------
    ndarray of float64, shape (X, Y, Z)
        Predictions in the mask, NaN elsewhere.
    """
    volume = _check_volume(volume)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape[1:]:
        raise ValueError(f"mask has shape {mask.shape}, expected the volume's {volume.shape[1:]}")
    window = _check_window(window)
    padded = pad_volume(volume.astype(np.float32, copy=False), window)
    centres = np.argwhere(mask)
    out = np.full(mask.shape, np.nan)
    for start in _batches(len(centres), batch_size, progress, "voxels"):
        c = centres[start : start + batch_size]
        values = np.asarray(predictor(extract_patches(padded, c, window)), dtype=float).reshape(-1)
        if values.shape != (len(c),):
            raise ValueError(f"predictor returned {values.size} values for {len(c)} patches; expected one per patch")
        out[c[:, 0], c[:, 1], c[:, 2]] = values
    return out


def _window_starts(length: int, window: int, overlap: float) -> np.ndarray:
    """Window origins covering ``0 .. max(length, window) - 1`` with the given overlap."""
    last = max(length - window, 0)
    stride = max(1, int(np.floor(window * (1 - overlap))))
    starts = np.arange(0, last + 1, stride)
    return starts if starts[-1] == last else np.append(starts, last)


def sliding_window_inference(
    volume: np.ndarray,
    predictor: Predictor,
    window: Sequence[int],
    mask: np.ndarray,
    overlap: float = 0.5,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Whole-volume inference of a window-to-window predictor, averaging overlapping windows.

    Windows lie on a grid of stride ``floor(w * (1 - overlap))`` (at least 1) along each
    axis, plus a last window flush with the volume's end; windows that contain no mask voxel
    are skipped. Each voxel is the unweighted mean of the predictions of the windows that
    cover it, accumulated in float64: float32 predictions (what a network returns) sum
    exactly, so a predictor that returns its input channel 0, or a float32 constant,
    reproduces it bit for bit.

    Parameters
    ----------
    volume : ndarray, shape (C, X, Y, Z)
        Input channels; padded with 0 at the end of axes shorter than the window.
    predictor : callable
        Maps windows ``(B, C, *window)`` (float32) to ``(B, *window)``.
    window : tuple of 3 int
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels to predict.
    overlap : float
        Fraction of a window shared with its neighbour, in [0, 1).
    batch_size : int
        Windows per predictor call.
    progress : bool
        Show a tqdm bar over batches.

    Returns
    -------
    ndarray of float64, shape (X, Y, Z)
        Averaged predictions in the mask, NaN elsewhere.
    """
    volume = _check_volume(volume)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape[1:]:
        raise ValueError(f"mask has shape {mask.shape}, expected the volume's {volume.shape[1:]}")
    window = _check_window(window)
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap!r}")
    shape = mask.shape
    full = tuple(max(s, w) for s, w in zip(shape, window))
    pad = [(0, f - s) for f, s in zip(full, shape)]
    vol = np.pad(volume.astype(np.float32, copy=False), [(0, 0)] + pad)
    msk = np.pad(mask, pad)
    starts = [_window_starts(s, w, overlap) for s, w in zip(full, window)]
    corners = np.stack([g.ravel() for g in np.meshgrid(*starts, indexing="ij")], axis=1)
    mask_view = sliding_window_view(msk, window)
    corners = corners[mask_view[corners[:, 0], corners[:, 1], corners[:, 2]].any(axis=(1, 2, 3))]
    vol_view = sliding_window_view(vol, window, axis=(1, 2, 3))
    offsets = np.stack(np.meshgrid(*[np.arange(w) for w in window], indexing="ij"), axis=-1).reshape(-1, 3)
    offsets_flat = np.ravel_multi_index(tuple(offsets.T), full)
    total = np.zeros(int(np.prod(full)))
    count = np.zeros(int(np.prod(full)))
    for start in _batches(len(corners), batch_size, progress, "windows"):
        c = corners[start : start + batch_size]
        patches = np.moveaxis(vol_view[:, c[:, 0], c[:, 1], c[:, 2]], 1, 0)
        values = np.asarray(predictor(patches), dtype=float)
        if values.shape != (len(c),) + window:
            raise ValueError(f"predictor returned shape {values.shape}; expected {(len(c),) + window}")
        flat = (np.ravel_multi_index(tuple(c.T), full)[:, None] + offsets_flat[None, :]).ravel()
        total += np.bincount(flat, weights=values.reshape(-1), minlength=total.size)
        count += np.bincount(flat, minlength=count.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (total / count).reshape(full)
    out = out[tuple(slice(0, s) for s in shape)]
    out[~mask] = np.nan
    return out
