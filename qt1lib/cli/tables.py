"""The tables of ``qt1 ... group``: what chapter 07 reports that needs no simulated truth, with their columns.

Every table is a TSV with a JSON sidecar describing each column (:func:`qt1lib.derivatives.write_table`).
Tables of per-participant values go to ``phenotype/``, which BIDS defines, in its layout: one row
per participant (``participant_id`` is the index and must be unique), one column per quantity,
named ``<estimator or method>_<tissue>_<metric>`` (tissues ``wm``, ``sgm``, ``cgm``,
:func:`qt1lib.tissues.name_keys`). Tables pooled over participants go to the root, one row per
method and tissue, and are listed in ``.bidsignore`` (:data:`qt1lib.derivatives.GROUP_TABLES`:
BIDS has no name for them).

==============================  ==========================================================================
``participants.tsv``            every participant: inversions, SIR or not, used in the calibration or why not
``phenotype/agreement.tsv``     per participant, estimator and tissue: MP2RAGE T1 (in SIR space) vs IR T1
``phenotype/calibration.tsv``   per held-out participant (fold), method and tissue: calibrated T1 vs IR T1
``calibration_summary.tsv``     mean and sd across folds (as the seed reports RMSE)
``calibration_tests.tsv``       paired t and exact Wilcoxon tests over folds, before vs after calibration
``calibration_blandaltman.tsv`` Bland-Altman bias and limits of agreement over every scored voxel
``calibration_mixedmodel.tsv``  linear mixed model of |error| by method and tissue, participant as group
==============================  ==========================================================================

All T1 differences are ``estimate - reference`` in seconds, the reference being IR T1 = 1/R1f of
the two-pool SIR fit, over the scored voxels (brain, WM / subcortical GM / cortical GM, converged
SIR fit; :attr:`qt1lib.workflow.SIRSpaceSubject.scored`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import stats, tissues
from ..calibrate import METHOD_NAMES
from ..derivatives import write_table

__all__ = [
    "METRIC_COLUMNS",
    "PAIRS",
    "participants_table",
    "agreement_metrics",
    "by_participant",
    "write_participants",
    "write_agreement",
    "write_calibration_tables",
]

_S = "s"
#: The agreement metrics of :func:`qt1lib.stats.tissue_metrics` and their meaning.
METRIC_COLUMNS: dict[str, dict[str, str]] = {
    "n": {"Description": "scored voxels"},
    "bias": {"Description": "mean of estimate - reference", "Units": _S},
    "rmse": {"Description": "root mean square of estimate - reference", "Units": _S},
    "mae": {"Description": "mean of |estimate - reference|", "Units": _S},
    "pearson_r": {"Description": "Pearson correlation of estimate and reference over the voxels"},
}
_TISSUE = {"Description": "tissue class of the segmentation in SIR space (WM, subcortical GM, cortical GM)"}
_PARTICIPANT = {"Description": "the participant (sub-<label>)"}
_METHOD = {"Description": "calibration method: " + "; ".join(f"{k}: {v}" for k, v in METHOD_NAMES.items())}
#: Before/after pairs of the paired tests (chapter 07).
PAIRS: tuple[tuple[str, str], ...] = (
    ("none", "resnet"), ("global_linear", "resnet"), ("tissue_linear", "resnet"),
    ("none", "global_linear"), ("none", "tissue_linear"),
)


def participants_table(rows: list[dict]) -> pd.DataFrame:
    """``participants.tsv`` from one dict per participant (``participant_id``, ``inversions``, ``sir``,
    ``calibration``, ``reason``), sorted by participant."""
    return pd.DataFrame(rows, columns=["participant_id", "inversions", "sir", "calibration", "reason"]).sort_values(
        "participant_id", ignore_index=True)


def write_participants(root: Path, table: pd.DataFrame) -> Path:
    """Write ``participants.tsv`` and its sidecar at the root of the derivative dataset."""
    return write_table(root, "participants", table, {
        "participant_id": _PARTICIPANT,
        "inversions": {"Description": "MP2RAGE inversions read (2: MP2RAGE, 3: MP3RAGE)"},
        "sir": {"Description": "whether the participant has multi-TI SIR images (then fitted and registered)",
                "Levels": {"yes": "SIR images found", "no": "no SIR images"}},
        "calibration": {"Description": "whether the participant entered the group-level calibration",
                        "Levels": {"used": "a fold of the leave-one-out calibration",
                                   "left out": "not used (see reason)"}},
        "reason": {"Description": "why a participant was left out of the calibration (n/a when used)"},
    }, "the participants of this run of qt1 and what the group level did with each")


def agreement_metrics(voxels: pd.DataFrame) -> pd.DataFrame:
    """Per participant, estimator and tissue: :func:`qt1lib.stats.tissue_metrics` of a voxel table of
    :func:`qt1lib.workflow.agreement_table` (MP2RAGE-space estimates against IR T1 in SIR space); long
    layout (``participant_id``, ``estimator``, ``tissue``, the metrics)."""
    m = stats.tissue_metrics(voxels, by=("subject", "method", "tissue"))
    m.insert(0, "participant_id", "sub-" + m.pop("subject").astype(str))
    return m.rename(columns={"method": "estimator"}).assign(tissue=lambda d: d["tissue"].astype(str))


def by_participant(long: pd.DataFrame, key: str, labels: dict[str, str], fixed: tuple[str, ...] = ()
                   ) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """A long table (``participant_id``, ``key``, ``tissue``, the metrics) in BIDS's phenotype layout.

    Parameters
    ----------
    long : DataFrame
    key : str
        The column of estimators or methods.
    labels : dict of str to str
        Display name of each value of ``key`` (for the column descriptions).
    fixed : tuple of str
        Columns with one value per participant, kept as they are (e.g. ``fold``).

    Returns
    -------
    table : DataFrame
        One row per participant: ``participant_id``, ``fixed``, then ``<key>_<tissue>_<metric>``
        in the order of ``long`` (tissues keyed by :func:`qt1lib.tissues.name_keys`).
    columns : dict
        The description of every metric column.
    """
    keys = tissues.name_keys()
    rows, columns = {}, {}
    for r in long.itertuples(index=False):
        r = r._asdict()
        row = rows.setdefault(r["participant_id"], {"participant_id": r["participant_id"],
                                                    **{c: r[c] for c in fixed}})
        for metric, doc in METRIC_COLUMNS.items():
            name = f"{r[key]}_{keys[r['tissue']]}_{metric}"
            row[name] = r[metric]
            columns[name] = {**doc, "Description": f"{labels.get(r[key], r[key])}, {r['tissue']}: {doc['Description']}"}
    return pd.DataFrame(list(rows.values())), columns


def write_agreement(root: Path, long: pd.DataFrame, labels: dict[str, str]) -> Path:
    """Write ``phenotype/agreement.tsv`` from :func:`agreement_metrics` of every participant with SIR."""
    table, columns = by_participant(long, "estimator", labels)
    return write_table(root, "phenotype/agreement", table, {"participant_id": _PARTICIPANT, **columns},
                       "agreement of each MP2RAGE T1 map, resampled into SIR space, with IR T1 = 1/R1f of the two-pool "
                       "SIR fit, per participant and tissue, before any calibration (differences: estimate - IR T1, "
                       "over the scored voxels)")


def _mixed_model(voxels: pd.DataFrame, seed: int) -> tuple[pd.DataFrame | None, str]:
    """The mixed model's fixed effects, or None and why not (it needs at least three participants)."""
    n = voxels["subject"].nunique()
    if n < 3:
        return None, f"not fitted: {n} participants estimate no between-participant variance"
    model = stats.mixed_model(voxels, reference_method="none", seed=seed)
    return model.table, f"fitted on {model.n_rows} voxel rows ({model.formula})"


def write_calibration_tables(root: Path, metrics: pd.DataFrame, voxels: pd.DataFrame, seed: int) -> dict[str, str]:
    """Write the calibration's tables (module docstring) from a cross-validation's metrics and voxels.

    Parameters
    ----------
    root : Path
        The derivative dataset.
    metrics, voxels : DataFrame
        :attr:`qt1lib.calibrate.CrossValidationResult.metrics` and ``.voxels``.
    seed : int
        Seed of the mixed model's voxel subsampling.

    Returns
    -------
    dict of str to str
        Each table written (path relative to ``root``), or a skipped one, and a note.
    """
    notes: dict[str, str] = {}
    long = metrics.assign(participant_id=metrics["subject"].astype(str), method=metrics["method"].astype(str),
                          tissue=metrics["tissue"].astype(str))
    per_fold, columns = by_participant(long, "method", dict(METHOD_NAMES), fixed=("fold",))
    write_table(root, "phenotype/calibration", per_fold, {
        "participant_id": {"Description": "the participant held out of the fold's training and scored"},
        "fold": {"Description": "fold of the leave-one-participant-out cross-validation"},
        **columns,
    }, "calibrated MAP MP2RAGE T1 of each held-out participant against IR T1 = 1/R1f, per method and tissue "
       "(differences: estimate - IR T1, over the scored voxels)")
    notes["phenotype/calibration.tsv"] = f"{metrics['fold'].nunique()} folds"

    summary = stats.fold_summary(metrics).assign(method=lambda d: d["method"].astype(str),
                                                 tissue=lambda d: d["tissue"].astype(str))
    columns = {"method": _METHOD, "tissue": _TISSUE, "n_folds": {"Description": "folds averaged"}}
    for value in ("rmse", "bias", "mae", "pearson_r"):
        doc = METRIC_COLUMNS[value]
        units = {"Units": doc["Units"]} if "Units" in doc else {}
        columns[f"{value}_mean"] = {"Description": f"mean across folds of the {value} ({doc['Description']})", **units}
        columns[f"{value}_sd"] = {"Description": f"sample standard deviation (ddof 1) across folds of the {value}",
                                  **units}
    write_table(root, "calibration_summary", summary, columns,
                "mean and standard deviation across folds of each method's agreement with IR T1, per tissue")
    notes["calibration_summary.tsv"] = "mean and sd across folds"

    tests = pd.concat([stats.paired_tests(metrics, before=b, after=a).assign(before=b, after=a) for b, a in PAIRS],
                      ignore_index=True).assign(tissue=lambda d: d["tissue"].astype(str))
    tests = tests[["before", "after", "tissue", "n_folds", "mean_before", "mean_after", "mean_difference", "t", "p_t",
                   "w", "p_wilcoxon", "p_wilcoxon_min"]]
    write_table(root, "calibration_tests", tests, {
        "before": _METHOD, "after": _METHOD, "tissue": _TISSUE,
        "n_folds": {"Description": "paired folds"},
        "mean_before": {"Description": "mean RMSE across folds of the before method", "Units": _S},
        "mean_after": {"Description": "mean RMSE across folds of the after method", "Units": _S},
        "mean_difference": {"Description": "mean of after - before RMSE over folds", "Units": _S},
        "t": {"Description": "paired t statistic (Student 1908; scipy.stats.ttest_rel)"},
        "p_t": {"Description": "two-sided p-value of the paired t-test"},
        "w": {"Description": "Wilcoxon signed-rank statistic (exact, Wilcoxon 1945)"},
        "p_wilcoxon": {"Description": "two-sided exact Wilcoxon p-value"},
        "p_wilcoxon_min": {"Description": "smallest p-value the exact Wilcoxon test can give with these folds"},
    }, "paired tests over folds of the RMSE against IR T1, before vs after calibration, per tissue")
    notes["calibration_tests.tsv"] = "paired t and exact Wilcoxon tests of RMSE over folds"

    rows = []
    for (method, tissue), g in voxels.groupby(["method", "tissue"], observed=True, sort=True):
        ba = stats.bland_altman(g["estimate"], g["reference"])
        rows.append({"method": str(method), "tissue": str(tissue), "n": ba.n, "mean_difference": ba.mean_difference,
                     "sd_difference": ba.sd_difference, "lower": ba.lower, "upper": ba.upper})
    write_table(root, "calibration_blandaltman", pd.DataFrame(rows), {
        "method": _METHOD, "tissue": _TISSUE, "n": {"Description": "voxels (every held-out participant pooled)"},
        "mean_difference": {"Description": "mean of estimate - IR T1 (the bias; Bland & Altman 1986)", "Units": _S},
        "sd_difference": {"Description": "sample standard deviation of estimate - IR T1", "Units": _S},
        "lower": {"Description": "lower 95 % limit of agreement (mean - 1.96 sd)", "Units": _S},
        "upper": {"Description": "upper 95 % limit of agreement (mean + 1.96 sd)", "Units": _S},
    }, "Bland-Altman agreement of each method with IR T1 over the scored voxels of the held-out participants")
    notes["calibration_blandaltman.tsv"] = "bias and 95 % limits of agreement"

    table, note = _mixed_model(voxels, seed)
    if table is not None:
        write_table(root, "calibration_mixedmodel", table, {
            "term": {"Description": "fixed effect of |estimate - IR T1| ~ method * tissue + (1 | participant) "
                                    "(REML, statsmodels mixedlm; intercept: no calibration in WM)"},
            "coef": {"Description": "coefficient: difference in mean absolute error", "Units": _S},
            "se": {"Description": "standard error (voxels within a participant are correlated: optimistic)",
                   "Units": _S},
            "z": {"Description": "coef / se"},
            "p": {"Description": "two-sided p-value of z"},
            "ci_low": {"Description": "lower end of the 95 % confidence interval", "Units": _S},
            "ci_high": {"Description": "upper end of the 95 % confidence interval", "Units": _S},
        }, "linear mixed model of the absolute error by method and tissue, participant as group: effect sizes")
    notes["calibration_mixedmodel.tsv"] = note
    return notes
