"""Voxel tables of the cohort and of a dataset: MP2RAGE-space errors against the truth (B1+), and
MP2RAGE-space estimates against the IR reference in SIR space (:mod:`qt1lib.stats` layout)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .. import tissues
from ..estimate.base import estimator_class
from ..estimate.lut import lut_t1
from ..phantom import load_truth
from ..sequences.mpnrage import uni
from .decomposition import cohort_variant, true_t1
from .mp2rage import mp2rage_maps
from .sir_space import sir_space_subject
from .workspace import Workspace

__all__ = ["b1_voxel_table", "agreement_table"]


def b1_voxel_table(
    ws: Workspace,
    subjects: Iterable[str],
    estimators: Iterable[str],
    *,
    purity: float = 0.9,
    max_voxels: int | None = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Voxelwise T1 errors of the cohort's MP2RAGE-space maps with the voxels' true B1+.

    Voxels: in the brain, of a scored tissue (:data:`qt1lib.tissues.SCORED`), with at least
    ``purity`` of one tissue (nearly free of partial volume), at most ``max_voxels`` per subject
    (drawn from ``seed``). Reference values: the truth ``t1_true`` (1/R1f) and ``t1_b1_perfect``,
    the lookup-table reading of the noise-free two-pool signals with the true B1+
    (:func:`~qt1lib.workflow.decomposition.cohort_variant`): what a B1-perfect, noise-free MP2RAGE
    reading gives, MT bias included. ``estimate - t1_b1_perfect`` therefore isolates B1, noise
    and estimator effects.

    Returns
    -------
    DataFrame
        One row per voxel and estimator: ``subject``, ``tissue``, ``b1_true``, ``b1_map``,
        ``psr``, ``t1_true``, ``t1_b1_perfect``, ``estimator``, ``label``, ``t1``, ``error``
        (``t1 - t1_true``, s), ``error_b1`` (``t1 - t1_b1_perfect``, s).
    """
    from tqdm.auto import tqdm

    if not 0 < purity <= 1:
        raise ValueError(f"purity must lie in (0, 1], got {purity!r}")
    names = [estimator_class(n).name for n in estimators]
    scored = tissues.label_names()
    rng = np.random.default_rng(seed)
    frames = []
    for subject in tqdm(list(subjects), desc="B1 table", disable=not ws.progress):
        maps = mp2rage_maps(ws, subject, names)
        truth = load_truth(ws.bids_dir, subject)
        sel = maps.brain & np.isin(truth["dseg"], list(scored)) & (truth["fractions"].max(axis=0) >= purity)
        idx = np.flatnonzero(sel)
        if max_voxels is not None and idx.size > max_voxels:
            idx = np.sort(rng.choice(idx, size=int(max_voxels), replace=False))
        nf = cohort_variant(ws, subject)
        g = nf.gre.reshape(nf.gre.shape[0], -1)[:, idx]
        b1_true = truth["b1"].ravel()[idx]
        base = pd.DataFrame({
            "subject": subject,
            "tissue": pd.Series(truth["dseg"].ravel()[idx]).map(scored).to_numpy(),
            "b1_true": b1_true,
            "b1_map": maps.b1.ravel()[idx],
            "psr": truth["psr"].ravel()[idx],
            "t1_true": true_t1(truth["r1f"].ravel()[idx]),
            "t1_b1_perfect": lut_t1(uni(g[0], g[1]), maps.protocol, np.clip(b1_true, 0.3, 2.0)),
        })
        for name in names:
            frames.append(base.assign(estimator=name, label=estimator_class(name).label, t1=maps[name].t1.ravel()[idx]))
    out = pd.concat(frames, ignore_index=True)
    out["error"] = out["t1"] - out["t1_true"]
    out["error_b1"] = out["t1"] - out["t1_b1_perfect"]
    return out


def agreement_table(ws: Workspace, subjects: Iterable[str], estimators: Iterable[str]) -> pd.DataFrame:
    """Voxel table of MP2RAGE-space estimates against the IR T1, in SIR space (:mod:`qt1lib.stats` layout).

    Voxels: the scored voxels (:attr:`~qt1lib.workflow.sir_space.SIRSpaceSubject.scored`), the
    calibration's voxels.

    Returns
    -------
    DataFrame
        ``subject``, ``method`` (estimator), ``label`` (display name), ``tissue``, ``estimate``
        and ``reference`` (T1, s); feed it to :func:`qt1lib.stats.tissue_metrics`.
    """
    names = [estimator_class(n).name for n in estimators]
    frames = []
    for subject in subjects:
        s = sir_space_subject(ws, subject, estimators=names)
        mask = s.scored
        tissue = pd.Series(s.dseg[mask]).map(tissues.label_names()).to_numpy()
        for name in names:
            frames.append(pd.DataFrame({
                "subject": subject, "method": name, "label": estimator_class(name).label, "tissue": tissue,
                "estimate": s[name].t1[mask], "reference": s.sir.ir_t1[mask],
            }))
    return pd.concat(frames, ignore_index=True)
