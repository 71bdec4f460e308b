"""Solutions of chapter 05's exercises (registration and the MP2RAGE-IR bias).

The chapter passes the workflow's SIR-space subjects (:func:`qt1lib.workflow.sir_space_subject`) and bias
terms (:func:`qt1lib.workflow.decomposition_table`) in. The cheap variants: the registration term computed
from its definition, ``E o T_est - E o T_true`` (:mod:`qt1lib.workflow.decomposition`), without the rest of
the split; the split of the cheap B1-corrected table on the first subject, the other estimators' cost
estimated; the subjects the chapter split already, against their own B1+ field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import tissues
from ..notebook import compare_text, format_duration, format_number, format_share, plural
from ..phantom import load_truth
from ..register import apply_transform
from . import answers
from .cost import mapping_seconds

__all__ = ["registration_term", "contrast_registration", "estimator_terms", "subject_terms", "subject_view"]


def registration_term(subject, estimator: str) -> dict[str, float]:
    """Mean registration term per scored tissue (s): the map resampled with the estimated transform minus
    the same map resampled with the true one (linear interpolation), over the subject's scored voxels.

    ``subject`` is a SIR-space subject of the digital cohort (:class:`qt1lib.workflow.sir_space.SIRSpaceSubject`
    with a ``true_transform``).
    """
    if subject.true_transform is None:
        raise ValueError("the registration term needs the true head motion, which only the digital cohort knows")
    moving = subject.mp2rage[estimator]
    true = apply_transform(subject.true_transform, np.nan_to_num(moving.t1), subject.mp2rage.affine, subject.shape,
                           subject.affine, "linear")
    difference = subject[estimator].t1 - true
    scored = subject.scored & np.isfinite(difference)
    return {t.name: float(np.mean(difference[scored & (subject.dseg == t.label)])) for t in tissues.SCORED}


@answers("error_t1_mm", "error_inv2_mm", "lower", "n_lower", "term_t1_ms", "term_inv2_ms", "term_compare")
def contrast_registration(inv2: Mapping[str, object], t1: Mapping[str, object], estimator: str):
    """Exercise 1: registration error and term with the T1-to-T1 contrast against the INV2-to-SIR one.

    Parameters
    ----------
    inv2, t1 : mapping of subject to SIR-space subject
        The same subjects registered with ``registration_contrast`` ``"inv2"`` and ``"t1"``.
    estimator : str
        The map whose registration term is computed (:func:`registration_term`).

    Returns
    -------
    dict of str
        Mean registration errors (mm), whether T1 is "lower", "higher" or "no different", in how many
        subjects it is lower, the registration terms in WM (ms, mean over subjects) and whether the T1
        contrast's is "smaller", "larger" or "the same" in size.
    """
    subjects = sorted(inv2)
    err_inv2 = np.mean([inv2[s].registration_error_mm for s in subjects])
    err_t1 = np.mean([t1[s].registration_error_mm for s in subjects])
    n_lower = sum(t1[s].registration_error_mm < inv2[s].registration_error_mm for s in subjects)
    wm = tissues.SCORED[0].name
    term_inv2 = 1e3 * np.mean([registration_term(inv2[s], estimator)[wm] for s in subjects])
    term_t1 = 1e3 * np.mean([registration_term(t1[s], estimator)[wm] for s in subjects])
    return {
        "error_t1_mm": format_number(err_t1, 2, "mm"),
        "error_inv2_mm": format_number(err_inv2, 2, "mm"),
        "lower": compare_text(err_t1, err_inv2, "higher", "lower", "no different"),
        "n_lower": format_share(n_lower, len(subjects), "subject"),
        "term_t1_ms": format_number(term_t1, 1, "ms"),
        "term_inv2_ms": format_number(term_inv2, 1, "ms"),
        "term_compare": compare_text(abs(term_t1), abs(term_inv2), "larger", "smaller", "the same", digits=1),
    }


def _term(terms: pd.DataFrame, estimator: str, term: str, tissue: str) -> float:
    sel = terms[(terms["estimator"] == estimator) & (terms["term"] == term) & (terms["tissue"] == tissue)]
    return 1e3 * float(sel["mean"].mean())


@answers("b1_ms", "b1_seed_ms", "estimator_ms", "estimator_seed_ms", "other", "other_estimate")
def estimator_terms(terms: pd.DataFrame, chapter_terms: pd.DataFrame, estimator: str, reference: str,
                    other: str, other_label: str, region_voxels: int, sigma: float, seed: int = 0):
    """Exercise 2: the B1 and estimator terms of a B1-corrected table, beside the seed's MAP, and what
    splitting a costlier estimator would take.

    Parameters
    ----------
    terms : DataFrame
        :func:`qt1lib.workflow.decomposition_table` of ``estimator`` (the cheap variant: the first subject).
    chapter_terms : DataFrame
        The chapter's table, which holds ``reference`` (the seed's MAP MP2RAGE) for the same subject.
    other, other_label : str
        The estimator the exercise also splits (the MP3RAGE MAP that marginalises B1) and its label.
    region_voxels, sigma
        Voxels of the subject's estimation region and the data's noise level: the split fits ``other`` to
        three re-simulated versions of them (noisy levels aside), timed by
        :func:`qt1lib.solutions.cost.mapping_seconds`.

    Returns
    -------
    dict of str
        Per tissue (WM, subcortical GM, cortical GM, as lists) the B1 and estimator terms (ms) of
        ``estimator`` and of ``reference``, the label of ``other`` and the estimated time of its split.
    """
    subject = sorted(terms["subject"].unique())[0]
    mine = terms[terms["subject"] == subject]
    seed_terms = chapter_terms[chapter_terms["subject"] == subject]

    def listed(table, name, term):
        values = [format_number(_term(table, name, term, t.name), 0) for t in tissues.SCORED]
        return ", ".join(values[:-1]) + f" and {values[-1]} ms"

    seconds = mapping_seconds([other], 3 * int(region_voxels), sigma, seed)
    return {
        "b1_ms": listed(mine, estimator, "B1"),
        "b1_seed_ms": listed(seed_terms, reference, "B1"),
        "estimator_ms": listed(mine, estimator, "estimator"),
        "estimator_seed_ms": listed(seed_terms, reference, "estimator"),
        "other": other_label,
        "other_estimate": format_duration(seconds),
    }


@answers("n_subjects", "variation", "follows_b1", "correlation", "full_run")
def subject_terms(terms: pd.DataFrame, sir_space: Mapping[str, object], bids_dir, estimator: str,
                  estimators: Sequence[str], extra_subjects: int, region_voxels: int, sigma: float, seed: int = 0):
    """Exercise 3: how the bias terms vary between the subjects the chapter split, and which follow B1+.

    Parameters
    ----------
    terms : DataFrame
        The chapter's :func:`qt1lib.workflow.decomposition_table`.
    sir_space : mapping of subject to SIR-space subject
        The split subjects (their scored voxels and labels on the SIR grid).
    bids_dir : path
        The digital cohort, whose truth gives each voxel's true B1+ on the SIR grid
        (:func:`qt1lib.phantom.load_truth`); its mean over a subject's scored voxels of a tissue is the
        B1+ the terms are correlated with.
    estimator : str
        The estimator whose terms are compared (the seed's MAP MP2RAGE).
    estimators, extra_subjects, region_voxels, sigma
        The full exercise splits ``extra_subjects`` more subjects for every one of ``estimators``: three
        fits of each to ``region_voxels`` voxels, timed by :func:`qt1lib.solutions.cost.mapping_seconds`.

    Returns
    -------
    dict of str
        How many subjects were split, ``variation``: a clause naming the term whose per-tissue mean varies
        most between them and by how much (ms, largest range over tissues), the term that follows the subjects' B1+ most closely
        (largest absolute Pearson correlation over subject-tissue cells with the mean B1+) with its
        correlation, and ``full_run``: a sentence with the estimated time of the full exercise's additional
        splits (or that there are none).
    """
    mine = terms[(terms["estimator"] == estimator) & (terms["term"] != "total")]
    subjects = sorted(mine["subject"].unique())
    cells = mine.pivot_table(index=["subject", "tissue"], columns="term", values="mean")
    spread = 1e3 * (cells.groupby(level="tissue").max() - cells.groupby(level="tissue").min()).max()
    b1_means = {}
    for subject in subjects:
        s, true_b1 = sir_space[subject], load_truth(bids_dir, subject, "SIR")["b1"]
        for t in tissues.SCORED:
            b1_means[(subject, t.name)] = float(np.mean(true_b1[s.scored & (s.dseg == t.label)]))
    b1 = np.array([b1_means[key] for key in cells.index])
    correlation = {}
    for term in cells.columns:
        y = cells[term].to_numpy()
        if np.std(y) > 0 and np.std(b1) > 0:
            correlation[term] = float(np.corrcoef(b1, y)[0, 1])
    best = max(correlation, key=lambda k: abs(correlation[k])) if correlation else None
    seconds = extra_subjects * mapping_seconds(estimators, 3 * int(region_voxels), sigma, seed) if extra_subjects else 0.0
    return {
        "n_subjects": plural(len(subjects), "subject"),
        "variation": (f"the term whose tissue means differ most between them is {spread.idxmax()}, by up to "
                      f"{format_number(float(spread.max()), 0, 'ms')}" if len(subjects) > 1 else
                      "one subject cannot show how the terms vary between subjects"),
        "follows_b1": best if best is not None else "none (the subjects' B1+ does not vary)",
        "correlation": format_number(correlation[best], 2) if best is not None else "not defined",
        "full_run": (f"Splitting {plural(extra_subjects, 'more subject')} for the page's estimators takes about "
                     f"{format_duration(seconds)} for their fits alone (timed on a simulated volume and scaled), plus "
                     "the re-simulation of each subject." if extra_subjects else
                     "The page already splits every subject of the cohort: the full exercise is this one."),
    }


@answers("subject", "motion_mm", "error_mm", "rotation_deg", "motion_rank")
def subject_view(registration: pd.DataFrame, subject: str):
    """Exercise 4: another subject's head motion and registration error, from the chapter's registration table.

    Returns
    -------
    dict of str
        The subject, its mean head displacement (mm), registration error (mm), estimated rotation (degrees)
        and where its motion ranks among the subjects ("the largest of the 4 subjects", "the 2nd smallest...").
    """
    if subject not in registration.index:
        raise ValueError(f"subject {subject!r} is not in the registration table (subjects {list(registration.index)})")
    row = registration.loc[subject]
    motion = registration["mean head displacement (mm)"]
    rank = int((motion > motion[subject]).sum())  # 0: the largest
    n = len(motion)
    where = ("the largest" if rank == 0 else "the smallest" if rank == n - 1 else
             f"number {rank + 1} from the largest")
    return {
        "subject": f"sub-{subject}",
        "motion_mm": format_number(row["mean head displacement (mm)"], 1, "mm"),
        "error_mm": format_number(row["registration error (mm)"], 2, "mm"),
        "rotation_deg": format_number(row["estimated rotation (deg)"], 2, "degrees"),
        "motion_rank": f"{where} of the {plural(n, 'subject')}",
    }
