"""Solutions of chapter 02's exercises (MAP versus point estimate): Monte Carlo at the chapter's trial count.

Each solution runs :func:`qt1lib.estimate.performance.simulate_estimator_performance` only where the
exercise changes it (one or two noise levels, one estimator, four T1 values), so each takes seconds;
exercise 3 reads the chapter's own comparison of the scale priors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..estimate.performance import simulate_estimator_performance
from ..notebook import compare_text, format_number, format_percent_of, format_share, format_values
from ..protocols import MPnRAGEProtocol
from ..validate import require_number
from . import answers

__all__ = ["bound_at_noise", "seed_trials", "prior_change", "prior_end"]


def _ratio(perf: pd.DataFrame) -> pd.Series:
    return perf["std"] / perf["crlb"]


def _medians(perf: pd.DataFrame) -> str:
    """Each estimator's median ratio, as a list for prose: "LUT 0.98, exact MAP 1.01 and ..."."""
    medians = perf.groupby("estimator", sort=False)["ratio"].median()
    parts = [f"{name} {format_number(value, 2)}" for name, value in medians.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _where(holds: pd.Series, claim: str, nowhere: str, exceptions: str = "") -> str:
    """A sentence on the T1 values (the index of ``holds``) where ``claim`` holds: "{claim} at every T1",
    "{claim} at T1 = 0.5 and 4 s" (and ``exceptions`` with the others, if given), or ``nowhere``."""
    yes, no = holds.index[holds.to_numpy()], holds.index[~holds.to_numpy()]
    if len(no) == 0:
        return f"{claim} at every T1"
    if len(yes) == 0:
        return nowhere
    rest = f", and {exceptions} {format_values(no, 's', prefix='at T1 = ')}" if exceptions else ""
    return f"{claim} {format_values(yes, 's', prefix='at T1 = ')}{rest}"


@answers("low_sigma", "low_medians", "low_below", "low_min", "low_min_where", "high_sigma", "high_medians",
         "high_within")
def bound_at_noise(protocols: Mapping[str, MPnRAGEProtocol], t1_values: Sequence[float], sigma_low_snr: float,
                   sigma_high_snr: float, n_trials: int, seed: int, seed_n_trials: int, scale_prior: str):
    """Exercise 1: every estimator's standard deviation over the Cramér-Rao bound at a tenfold noise
    and at half the seed's noise.

    Parameters
    ----------
    protocols : mapping of label to MPnRAGEProtocol
        The chapter's MP2RAGE and MP3RAGE views.
    t1_values, n_trials, seed, seed_n_trials, scale_prior
        As in the chapter (:func:`qt1lib.estimate.performance.simulate_estimator_performance`).
    sigma_low_snr, sigma_high_snr : float
        Noise std (M0 units) of the two runs: SNR 20 (0.05) and half the seed's noise (0.0025).

    Returns
    -------
    dict of str
        Each estimator's median std/CRLB over T1 and protocols at both noise levels (``*_medians``).
        At ``sigma_low_snr``: a sentence on the T1 values where every estimator of both protocols has
        its std below the bound (``low_below``) and the smallest ratio (``low_min``, ``low_min_where``).
        At ``sigma_high_snr``: a sentence on the T1 values where every estimator is within three
        Monte-Carlo standard errors of the bound and where one is not (``high_within``; the relative
        standard error of a sample standard deviation of ``n`` draws is ``1/sqrt(2 (n - 1))``, in the
        sentence as a percentage).
    """
    n_trials = int(n_trials)
    tolerance = 3.0 / np.sqrt(2.0 * (n_trials - 1))
    perf = simulate_estimator_performance(list(protocols.values()), t1_values, [sigma_low_snr, sigma_high_snr],
                                          n_trials, seed=seed, seed_n_trials=seed_n_trials, scale_prior=scale_prior)
    perf["ratio"] = _ratio(perf)
    labels = {p.name: label for label, p in protocols.items()}
    low = perf[np.isclose(perf["sigma"], sigma_low_snr)]
    high = perf[np.isclose(perf["sigma"], sigma_high_snr)]
    below = low.groupby("t1")["ratio"].max() < 1.0
    within = (high["ratio"] - 1.0).abs().groupby(high["t1"]).max() <= tolerance
    worst = low.loc[low["ratio"].idxmin()]
    return {
        "low_sigma": format_number(sigma_low_snr, 3),
        "low_medians": _medians(low),
        "low_below": _where(below, "Every estimator of both protocols has its standard deviation below the bound",
                            "At no T1 do all estimators of both protocols have their standard deviation below the bound"),
        "low_min": format_number(worst["ratio"], 2),
        "low_min_where": f"{worst['estimator']}, {labels[worst['protocol']]}, T1 = {worst['t1']:g} s",
        "high_sigma": format_number(sigma_high_snr, 4),
        "high_medians": _medians(high),
        "high_within": _where(within, f"Every estimator is within three Monte-Carlo standard errors "
                                      f"({format_number(100 * tolerance, 0, '%')}) of the bound",
                              f"At no T1 are all estimators within three Monte-Carlo standard errors "
                              f"({format_number(100 * tolerance, 0, '%')}) of the bound", "at least one is not"),
    }


def _accepted(fraction: float, noun: str = "the voxels") -> str:
    """The smallest share of accepted voxels over T1 values, as the subject of "... at every T1"."""
    return f"all of {noun}" if fraction >= 1 else f"at least {format_percent_of(100 * fraction, noun)}"


@answers("n_trials", "chapter_trials", "max_bias_ms", "chapter_max_bias_ms", "bias_compare", "valid_min_pct",
         "chapter_valid_min_pct", "std_change_pct")
def seed_trials(protocols: Mapping[str, MPnRAGEProtocol], perf: pd.DataFrame, t1_values: Sequence[float],
                sigma: float, n_trials: int, seed: int, seed_n_trials: int, chapter_seed_n_trials: int):
    """Exercise 2: the seed's Monte-Carlo MAP with a smaller histogram, against the chapter's.

    Parameters
    ----------
    perf : DataFrame
        The chapter's performance table (its ``protocol`` column relabelled with the keys of
        ``protocols``), which holds the seed MAP with ``chapter_seed_n_trials`` trials per T1.
    sigma : float
        The seed's noise level, at which both are compared.
    seed_n_trials : int
        The exercise's trials per T1 of the histogram.

    Returns
    -------
    dict of str
        The largest absolute bias of the seed MAP over the T1 values and protocols (ms) with the
        exercise's and with the chapter's histogram and a word comparing them (``bias_compare``), the
        smallest share of accepted voxels (``valid_fraction``: "all of the voxels", "at least 98.5 % of the voxels") of each, and the median change of
        its standard deviation (%).
    """
    small = simulate_estimator_performance(list(protocols.values()), t1_values, [sigma], n_trials, seed=seed,
                                           estimators=("seed MAP",), seed_n_trials=seed_n_trials)
    small["protocol"] = small["protocol"].map({p.name: label for label, p in protocols.items()})
    ref = perf[np.isclose(perf["sigma"], sigma) & (perf["estimator"] == "seed MAP")]
    merged = small.merge(ref, on=["protocol", "t1"], suffixes=("", "_chapter"))
    bias, bias_ref = 1e3 * merged["bias"].abs().max(), 1e3 * merged["bias_chapter"].abs().max()
    return {
        "n_trials": f"{int(seed_n_trials):,}",
        "chapter_trials": f"{int(chapter_seed_n_trials):,}",
        "max_bias_ms": format_number(bias, 0, "ms"),
        "chapter_max_bias_ms": format_number(bias_ref, 0, "ms"),
        "bias_compare": compare_text(bias, bias_ref, "larger than", "smaller than", "the same as", digits=0),
        "valid_min_pct": _accepted(merged["valid_fraction"].min()),
        "chapter_valid_min_pct": _accepted(merged["valid_fraction_chapter"].min(), "them"),
        "std_change_pct": format_number(100 * float(np.median(merged["std"] / merged["std_chapter"] - 1)), 1, "%",
                                        signed=True),
    }


@answers("t1_most", "change_ms", "longer", "small_t1", "threshold_pct")
def prior_change(priors: pd.DataFrame, threshold: float = 0.01):
    """Exercise 3: where the flat scale prior moves the exact MAP most, from the chapter's comparison.

    Parameters
    ----------
    priors : DataFrame
        The chapter's Monte Carlo of the exact MAP with both priors (columns ``scale_prior``,
        ``estimator``, ``t1``, ``bias``).
    threshold : float
        Relative change (fraction of T1) below which the priors are said to agree.

    Returns
    -------
    dict of str
        The T1 of the largest change of the MAP's bias (flat minus Jeffreys), the change (ms), whether
        the flat prior reads longer or shorter there, and the T1 values where the change stays below
        ``threshold`` of T1.
    """
    threshold = require_number("threshold", threshold, low=0, low_inclusive=False)
    exact = priors[priors["estimator"] == "exact MAP"].pivot_table(index="t1", columns="scale_prior", values="bias")
    change = exact["flat"] - exact["jeffreys"]
    most = float(change.abs().idxmax())
    small = (change.abs() / change.index.to_numpy()) < threshold
    return {
        "t1_most": format_number(most, 1, "s"),
        "change_ms": format_number(1e3 * abs(change[most]), 0, "ms"),
        "longer": "longer" if change[most] > 0 else "shorter",
        "small_t1": format_values(change.index[small], "s", prefix="at T1 = ", empty="at none of the T1 values"),
        "threshold_pct": format_number(100 * threshold, 0, "%"),
    }


@answers("t1_values", "map_bias_ms", "mean_bias_ms", "mean_vs_map", "mean_rmse_wins", "t1_last", "map_rmse",
         "mean_rmse")
def prior_end(protocol: MPnRAGEProtocol, t1_values: Sequence[float], sigma: float, n_trials: int, seed: int,
              scale_prior: str):
    """Exercise 4: the exact posterior mean and MAP at CSF-like T1 near the prior's end (5 s).

    Returns
    -------
    dict of str
        The biases of the MAP and of the posterior mean at each T1 (ms, as lists), at how many of the
        T1 values the mean has the smaller RMSE, and both RMSEs at the longest T1 (s); ``mean_vs_map``
        says which of the two is biased further at the longest T1.
    """
    perf = simulate_estimator_performance([protocol], t1_values, [sigma], n_trials, seed=seed,
                                          estimators=("exact MAP", "exact mean"), scale_prior=scale_prior)
    by = perf.pivot_table(index="t1", columns="estimator", values=["bias", "rmse"])
    last = by.index.max()

    def listed(values):
        return format_values([round(1e3 * v) for v in values], "ms", fmt="+.0f", prefix="")

    wins = int((by[("rmse", "exact mean")] < by[("rmse", "exact MAP")]).sum())
    mean_bias, map_bias = abs(by.loc[last, ("bias", "exact mean")]), abs(by.loc[last, ("bias", "exact MAP")])
    further = compare_text(1e3 * mean_bias, 1e3 * map_bias, "further from the truth than", "less far from the truth than",
                           "as far from the truth as", digits=0)
    return {
        "t1_values": format_values(by.index, "s", prefix=""),
        "map_bias_ms": listed(by[("bias", "exact MAP")]),
        "mean_bias_ms": listed(by[("bias", "exact mean")]),
        "mean_vs_map": f"the posterior mean is {further} the MAP",
        "mean_rmse_wins": format_share(wins, len(by), "T1 value"),
        "t1_last": format_number(last, 1, "s"),
        "map_rmse": format_number(by.loc[last, ("rmse", "exact MAP")], 2, "s"),
        "mean_rmse": format_number(by.loc[last, ("rmse", "exact mean")], 2, "s"),
    }
