"""The shift of T1 read from the seed's three-train data with its public code's two-train model.

The seed acquired an MP3RAGE (:data:`qt1lib.protocols.SEED_7T_MP3RAGE`); its public code
(MASILab/map_t1_mapping@2d6e086, :data:`qt1lib.protocols.SEED_CODE_7T_MP2RAGE`) builds the
dictionary of its MP2RAGE maps from the first two trains, as a two-train MP2RAGE of the same
period. Data of the three trains, read with that dictionary, give another T1 than data read with
the acquired protocol: the third train's saturation is not in the model. This module computes
that shift without noise, so that no estimator's binning or prior enters:

* :func:`seed_code_shift`: single-pool signals (:func:`qt1lib.sequences.gre_signals`) on a grid
  of T1 and B1+, read with the lookup tables of S_12 (Marques et al. 2010, NeuroImage 49:1271;
  the B1-corrected table of Marques & Gruetter 2013, PLoS One 8:e69294) built with the two-train
  model (``lut_b1_seed_code``, ``lut_seed_code``) and with the acquired protocol (``lut``);
* :func:`seed_code_tissue_readings`: the two-pool signals of tissue classes
  (:func:`qt1lib.sequences.twopool.gre_signals_twopool`) at B1+ = 1, read with the three-train
  and the two-train tables.

It lives apart from :mod:`qt1lib.estimate.seed_code`, whose source the store hashes with the
seed-code estimators' (:mod:`qt1lib.estimate.base`, ``modules``): the two-pool model imported here
must not be part of their cache keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..protocols import SEED_7T_MP3RAGE, MPnRAGEProtocol
from ..sequences import gre_signals
from ..sequences.twopool import TISSUES_7T, TwoPoolTissue, gre_signals_twopool
from .base import make_estimator
from .seed_code import SEED_CODE_MODELS, check_seed_acquisition

__all__ = ["seed_code_shift", "seed_code_tissue_readings"]


def _read(name: str, protocol: MPnRAGEProtocol, gre: np.ndarray, b1: np.ndarray | None, split: str) -> np.ndarray:
    """T1 (s) of noise-free ``gre`` read by the lookup table ``name`` (``seed_code_split`` where it has it)."""
    options = {"seed_code_split": split} if "seed_code" in name else {}
    return make_estimator(name, protocol, 0.0, **options).fit(gre, b1=b1).map


def _check_split(seed_code_split: str) -> None:
    if seed_code_split not in SEED_CODE_MODELS:
        raise ValueError(f"seed_code_split must be one of {tuple(SEED_CODE_MODELS)}, got {seed_code_split!r}")


def seed_code_shift(
    t1_values: Sequence[float],
    b1_values: Sequence[float],
    protocol: MPnRAGEProtocol = SEED_7T_MP3RAGE,
    *,
    seed_code_split: str = "integer",
) -> pd.DataFrame:
    """Apparent minus true T1 of noise-free single-pool data read with the seed code's two-train model.

    Signals: :func:`qt1lib.sequences.gre_signals` of every readout of ``protocol`` at the true
    T1 and B1+ (M0 = 1, zero phase). Readings of S_12 (readouts 1 and 2) with the 1 ms lookup
    tables of :mod:`qt1lib.estimate.lut_estimators` and :mod:`qt1lib.estimate.seed_code_lut_estimators`:

    * ``shift_ms``: ``lut_b1_seed_code`` at the true B1+ (the two-train table, B1-corrected as
      the seed code is not) minus the true T1: the error of the two-train model alone;
    * ``seed_code_ms``: ``lut_seed_code`` (nominal B1+, as the seed code reads) minus the true
      T1: the two-train model's error and the B1+ error together;
    * ``lut_ms``: ``lut`` (the acquired protocol's table, nominal B1+) minus the true T1: the
      B1+ error alone;
    * ``model_part_ms``: ``lut_seed_code - lut``: the two-train model's part of the error when
      B1+ is ignored too.

    Parameters
    ----------
    t1_values, b1_values : sequence of float
        True T1 (s, > 0) and true relative B1+ (> 0) of the grid.
    protocol : MPnRAGEProtocol
        The acquisition; the seed's in readouts 1 and 2
        (:func:`qt1lib.estimate.seed_code.check_seed_acquisition`). With three trains (the
        seed's MP3RAGE) the shift is the third train's; with the code's own two trains it is zero.
    seed_code_split : {"integer", "half"}
        The two-train model's split of the 225 excitations (:data:`~qt1lib.estimate.seed_code.SEED_CODE_MODELS`).

    Returns
    -------
    DataFrame
        One row per (T1, B1) pair, T1 slowest: ``t1`` (s), ``b1``, ``shift_ms``,
        ``seed_code_ms``, ``lut_ms``, ``model_part_ms`` (ms).

    Raises
    ------
    ValueError
        Empty, non-finite or non-positive grids; a protocol other than the seed's in readouts
        1-2; an unknown ``seed_code_split``.
    """
    t1 = np.asarray(t1_values, dtype=float)
    b1 = np.asarray(b1_values, dtype=float)
    for name, values in (("t1_values", t1), ("b1_values", b1)):
        if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"{name} must be a non-empty 1-D sequence of finite values > 0, got {values!r}")
    check_seed_acquisition(protocol, "seed_code_shift")
    _check_split(seed_code_split)
    tt, bb = (a.ravel() for a in np.meshgrid(t1, b1, indexing="ij"))
    gre = gre_signals(tt, protocol, bb).astype(complex)
    two_b1 = _read("lut_b1_seed_code", protocol, gre, bb, seed_code_split)
    two = _read("lut_seed_code", protocol, gre, None, seed_code_split)
    three = _read("lut", protocol, gre, None, seed_code_split)
    return pd.DataFrame({
        "t1": tt, "b1": bb,
        "shift_ms": 1e3 * (two_b1 - tt),
        "seed_code_ms": 1e3 * (two - tt),
        "lut_ms": 1e3 * (three - tt),
        "model_part_ms": 1e3 * (two - three),
    })


def seed_code_tissue_readings(
    protocol: MPnRAGEProtocol = SEED_7T_MP3RAGE,
    tissues: Mapping[str, TwoPoolTissue] = TISSUES_7T,
    *,
    seed_code_split: str = "integer",
) -> pd.DataFrame:
    """The two-pool tissues at B1+ = 1 read with the acquired protocol's table and with the two-train table.

    Signals: :func:`qt1lib.sequences.twopool.gre_signals_twopool` of every readout of
    ``protocol`` with each tissue's ``r1f``, ``psr`` and ``kmf`` (and its ``r1m`` where the
    tissue has one; otherwise that function's default), every other argument at that function's
    default (the protocol's inversion efficiency, not a tissue's Bloch-simulated one: the
    inversion term of the chapter 05 decomposition is left out), B1+ = 1. Read by ``lut`` (the acquired protocol: the "three-train" reading of the
    seed's MP3RAGE) and ``lut_seed_code`` (the seed code's two-train model). Both are single-pool
    readings, so both carry the magnetization-transfer bias of the tissue; their difference is
    the two-train model's.

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        The acquisition, the seed's in readouts 1 and 2
        (:func:`qt1lib.estimate.seed_code.check_seed_acquisition`).
    tissues : mapping of str to TwoPoolTissue
        The tissue classes, e.g. a cohort's defaults (:data:`qt1lib.sequences.twopool.TISSUES_7T`).
    seed_code_split : {"integer", "half"}
        The two-train model's split (the data are simulated with ``protocol``'s).

    Returns
    -------
    DataFrame
        One row per tissue, in the order of ``tissues``: ``tissue`` (its key), ``t1f`` (1/R1f,
        s), ``psr``, ``kmf`` (s^-1), ``three_train`` (``lut``, s), ``two_train``
        (``lut_seed_code``, s), ``shift_ms`` (``two_train - three_train``, ms).

    Raises
    ------
    ValueError
        An empty ``tissues``; a protocol other than the seed's in readouts 1-2; a tissue
        parameter the two-pool model refuses.
    """
    if not tissues:
        raise ValueError("tissues must name at least one tissue class")
    check_seed_acquisition(protocol, "seed_code_tissue_readings")
    _check_split(seed_code_split)
    rows = []
    for key, tissue in tissues.items():
        gre = gre_signals_twopool(tissue.r1f, tissue.psr, protocol, 1.0, kmf=tissue.kmf,
                                  r1m=getattr(tissue, "r1m", None))[:, None].astype(complex)
        three = float(_read("lut", protocol, gre, None, seed_code_split)[0])
        two = float(_read("lut_seed_code", protocol, gre, None, seed_code_split)[0])
        rows.append({"tissue": key, "t1f": 1.0 / tissue.r1f, "psr": tissue.psr, "kmf": tissue.kmf,
                     "three_train": three, "two_train": two, "shift_ms": 1e3 * (two - three)})
    return pd.DataFrame(rows)
