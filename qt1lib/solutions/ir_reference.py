"""Solutions of chapter 03's exercises (the IR reference and MT): fits and noise-free readings, seconds each.

Every exercise of chapter 03 is cheap at the chapter's own size (a vectorised SIR fit of a few thousand
voxels takes a fraction of a second), so the solutions run them at that size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..estimate.apparent import apparent_single_pool_t1
from ..estimate.ir_fit import fit_ir_rdnls
from ..estimate.sir_fit import fit_sir
from ..estimate.sir_model_error import readout_residual_bias
from ..notebook import compare_text, format_number, format_percent_of, format_ratio, format_values
from ..protocols import MPnRAGEProtocol
from ..protocols_sir import SIRProtocol
from ..sequences.bloch import free_pool_inversion
from ..sequences.sir import sir_signal
from ..sequences.twopool import (EFFICIENCY_TABLE_STEPS, EXCITATION_DURATION_DEFAULT, SIEMENS_HS_INVERSION,
                               excitation_bound_fraction)
from ..validate import require_integer, require_number
from . import answers

__all__ = ["sir_fit_spread", "sir_fit_metrics", "mt_sensitivity", "psr_linearity", "mono_start",
           "residual_detection", "efficiency_t2"]


def sir_fit_metrics(protocol: SIRProtocol, tissues: Sequence, snr: float, n_voxels: int, seed: int) -> dict[str, float]:
    """Relative errors of the two-pool SIR fit on voxels drawn as in chapter 03's fit demonstration.

    Voxels around the given tissues (chosen uniformly): ``R1f`` times U(0.9, 1.1), PSR times U(0.8, 1.2),
    ``Sf`` uniform in (-0.98, -0.85), the tissue's ``M0f``; simulated with the fit's own model and complex
    Gaussian noise of std ``M0f(first tissue) / snr``, fitted by :func:`qt1lib.estimate.sir_fit.fit_sir`
    on the magnitudes.

    Returns
    -------
    dict of float
        ``r1f_iqr``, ``psr_iqr`` (interquartile ranges of the relative errors, fractions), ``r1f_median``,
        ``psr_median`` and ``at_bound`` (fraction of voxels with a parameter on a bound).
    """
    n_voxels = require_integer("n_voxels", n_voxels, 10)
    snr = require_number("snr", snr, low=0, low_inclusive=False)
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(tissues), n_voxels)
    r1f = np.array([tissues[k].r1f for k in kind]) * rng.uniform(0.9, 1.1, n_voxels)
    psr = np.array([tissues[k].psr for k in kind]) * rng.uniform(0.8, 1.2, n_voxels)
    sf = rng.uniform(-0.98, -0.85, n_voxels)
    m0f = np.array([tissues[k].m0f for k in kind])
    clean = sir_signal(r1f, psr, sf, protocol, m0f=m0f, magnitude=False)
    sigma = tissues[0].m0f / snr
    data = np.abs(clean + sigma * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape)))
    fit = fit_sir(data, protocol)

    def iqr(x):
        return float(np.subtract(*np.percentile(x, [75, 25])))

    rel_r1f, rel_psr = fit.r1f / r1f - 1, fit.psr / psr - 1
    return {"r1f_iqr": iqr(rel_r1f), "psr_iqr": iqr(rel_psr), "r1f_median": float(np.median(rel_r1f)),
            "psr_median": float(np.median(rel_psr)), "at_bound": float(fit.at_bound.mean())}


@answers("r1f_iqr_pct", "ref_r1f_iqr_pct", "r1f_factor", "psr_iqr_pct", "ref_psr_iqr_pct", "psr_factor",
         "at_bound_pct", "ref_at_bound_pct")
def sir_fit_spread(tissues: Sequence, n_voxels: int, seed: int, protocol: SIRProtocol, snr: float,
                   reference_protocol: SIRProtocol, reference_snr: float):
    """Exercises 1 and 2: the SIR fit's spreads with another SNR or protocol, against the chapter's setting.

    Both settings fit the same draw of voxels (:func:`sir_fit_metrics`, the same seed).

    Returns
    -------
    dict of str
        Interquartile ranges of the relative ``R1f`` and PSR errors (%) in the exercise's setting and in
        the reference setting, their ratio (:func:`qt1lib.notebook.format_ratio`), and the shares of voxels on a bound
        (:func:`qt1lib.notebook.format_percent_of`: "none of the voxels", "0.3 % of them").
    """
    new = sir_fit_metrics(protocol, tissues, snr, n_voxels, seed)
    ref = sir_fit_metrics(reference_protocol, tissues, reference_snr, n_voxels, seed)

    def factor(name):
        return format_ratio(new[name] / ref[name]) if ref[name] > 0 and new[name] > 0 else "not comparable (a zero spread)"

    return {
        "r1f_iqr_pct": format_number(100 * new["r1f_iqr"], 1, "%"),
        "ref_r1f_iqr_pct": format_number(100 * ref["r1f_iqr"], 1, "%"),
        "r1f_factor": factor("r1f_iqr"),
        "psr_iqr_pct": format_number(100 * new["psr_iqr"], 0, "%"),
        "ref_psr_iqr_pct": format_number(100 * ref["psr_iqr"], 0, "%"),
        "psr_factor": factor("psr_iqr"),
        "at_bound_pct": format_percent_of(100 * new["at_bound"], "the voxels"),
        "ref_at_bound_pct": format_percent_of(100 * ref["at_bound"], "them"),
    }


def _mt_bias(tissue, protocol: MPnRAGEProtocol, psr=None) -> np.ndarray:
    """Single-pool LUT reading minus T1f (s) of two-pool tissue, the protocol's efficiency in the data (MT alone)."""
    psr = tissue.psr if psr is None else psr
    return apparent_single_pool_t1(tissue.r1f, psr, protocol, r1m=tissue.r1m) - tissue.t1f


def _train_saturation(protocol: MPnRAGEProtocol) -> list[float]:
    """Bound-pool Mz left by each readout train: the per-excitation fraction to the power of its excitations."""
    n = protocol.excitations_per_train
    return [float(excitation_bound_fraction(np.deg2rad(a), EXCITATION_DURATION_DEFAULT)) ** n
            for a in protocol.flip_angles[:2]]


@answers("name", "bias_ms", "ref_name", "ref_bias_ms", "more_sensitive", "flips", "ref_flips", "trains",
         "ref_trains", "saturation", "ref_saturation", "saturation_clause")
def mt_sensitivity(tissue, protocol: MPnRAGEProtocol, reference: MPnRAGEProtocol):
    """Exercise 3: the MT bias of a tissue (single-pool lookup table minus ``1/R1f``) with two protocols.

    The bias is that of chapter 03's PSR figure (literature tissue, the protocol's inversion efficiency in
    the data, noise-free, nominal B1+). What makes it differ is how much the readout pulses saturate the
    bound pool: the flip angles, the excitations per train and the train durations are returned, and the
    bound-pool Mz that one train of each of the first two readouts leaves
    (:func:`qt1lib.sequences.twopool.excitation_bound_fraction` to the power of the excitations).

    Returns
    -------
    dict of str
        Both protocols' names and WM biases (ms), which one is more sensitive (``more_sensitive``: a
        protocol name, or "neither" when the biases print alike), their flip angles, trains (excitations
        and duration), the bound-pool fractions left by one train of readouts 1 and 2, and
        ``saturation_clause``: whether the more sensitive protocol is the one whose trains saturate the
        bound pool more (the product of the two fractions smaller), in words.
    """
    bias, ref_bias = 1e3 * float(_mt_bias(tissue, protocol)), 1e3 * float(_mt_bias(tissue, reference))
    more = compare_text(abs(bias), abs(ref_bias), protocol.name, reference.name, "neither", digits=0)

    left, ref_left = np.prod(_train_saturation(protocol)), np.prod(_train_saturation(reference))
    if more == "neither":
        clause = "the two biases agree at this precision"
    else:
        saturates_more = (left < ref_left) == (more == protocol.name)
        clause = ("as its trains saturate the bound pool more" if saturates_more else
                  "although its trains saturate the bound pool less: the readouts' saturation alone does not decide "
                  "the bias, the timing of the inversion and the trains does too")

    def flips(p):
        return " / ".join(f"{a:g}" for a in p.flip_angles[:2]) + " degrees"

    def trains(p):
        return f"{p.excitations_per_train:g} excitations, {format_number(1e3 * p.train_duration, 0, 'ms')}"

    def saturation(p):
        return " and ".join(format_number(f, 2) for f in _train_saturation(p))

    return {
        "name": protocol.name, "bias_ms": format_number(bias, 0, "ms"),
        "ref_name": reference.name, "ref_bias_ms": format_number(ref_bias, 0, "ms"),
        "more_sensitive": more, "flips": flips(protocol), "ref_flips": flips(reference),
        "trains": trains(protocol), "ref_trains": trains(reference),
        "saturation": saturation(protocol), "ref_saturation": saturation(reference),
        "saturation_clause": clause,
    }


@answers("psr_max", "bias_end_ms", "bias_half_ms", "ratio", "shape", "deviation_ms", "deviation_pct")
def psr_linearity(tissue, protocol: MPnRAGEProtocol, psr_max: float, n_psr: int):
    """Exercise 4: is the MT bias of a tissue linear in PSR over ``[0, psr_max]``?

    Returns
    -------
    dict of str
        The bias at ``psr_max`` and at half of it (ms), their ratio (2 for a line through the origin),
        the shape in words ("grows less than linearly", "grows more than linearly", "is linear"), and the
        largest distance of the curve from its least-squares line (ms, and % of the bias at ``psr_max``).
    """
    psr_max = require_number("psr_max", psr_max, low=0, low_inclusive=False)
    n_psr = require_integer("n_psr", n_psr, 3)
    psr = np.linspace(0.0, psr_max, n_psr)
    bias = 1e3 * _mt_bias(tissue, protocol, psr)
    half = 1e3 * float(_mt_bias(tissue, protocol, psr_max / 2))
    line = np.polyval(np.polyfit(psr, bias, 1), psr)
    deviation = float(np.max(np.abs(bias - line)))
    ratio = bias[-1] / half
    return {
        "psr_max": format_number(psr_max, 2),
        "bias_end_ms": format_number(bias[-1], 0, "ms"),
        "bias_half_ms": format_number(half, 0, "ms"),
        "ratio": format_number(ratio, 2),
        "shape": compare_text(ratio, 2.0, "grows more than linearly", "grows less than linearly", "is linear"),
        "deviation_ms": format_number(deviation, 1, "ms"),
        "deviation_pct": format_number(100 * deviation / abs(bias[-1]), 1, "%"),
    }


@answers("t1_start_ms", "t1_start", "t1_chapter_start", "earliest_ms", "threshold_pct", "t1f_ms")
def mono_start(tissue, protocol: SIRProtocol, ti_min: float, ti_min_chapter: float, threshold: float = 0.01):
    """Exercise 5: the mono-exponential IR fit of noise-free two-pool tissue (``R1m = R1f``), by first TI kept.

    Every inversion time of the protocol is tried as the first one kept (at least three samples left);
    :func:`qt1lib.estimate.ir_fit.fit_ir_rdnls` fits the rest. With ``R1m = R1f`` the slow rate is
    ``R1f`` exactly, so a late fit should read ``1/R1f``.

    Returns
    -------
    dict of str
        The T1 read when the fit starts at ``ti_min`` and at the chapter's ``ti_min_chapter`` (ms), the
        earliest first TI whose fit is within ``threshold`` of ``1/R1f`` (ms), and ``1/R1f`` (ms).
    """
    threshold = require_number("threshold", threshold, low=0, low_inclusive=False)
    data = sir_signal(tissue.r1f, tissue.psr, -0.95, protocol, m0f=tissue.m0f)
    ti = np.asarray(protocol.ti, dtype=float)

    def fit_from(start):
        keep = ti >= start
        return float(fit_ir_rdnls(data[keep], ti[keep]).t1) if keep.sum() >= 3 else np.nan

    starts = np.unique(ti)[:-2]
    t1 = np.array([fit_from(s) for s in starts])
    close = np.abs(t1 * tissue.r1f - 1) < threshold
    earliest = f"{format_number(1e3 * starts[np.argmax(close)], 0, 'ms')}" if close.any() else "no first TI of the protocol"
    return {
        "t1_start_ms": format_number(1e3 * ti_min, 0, "ms"),
        "t1_start": format_number(1e3 * fit_from(ti_min), 0, "ms"),
        "t1_chapter_start": format_number(1e3 * fit_from(ti_min_chapter), 0, "ms"),
        "earliest_ms": earliest,
        "threshold_pct": format_number(100 * threshold, 0, "%"),
        "t1f_ms": format_number(1e3 * tissue.t1f, 0, "ms"),
    }


@answers("residual_pct", "n_samples", "snr", "z", "detected", "snr_needed", "z_detect", "t1_error_ms")
def residual_detection(tissues: Sequence, sf: float, residual: float, protocol: SIRProtocol, snr: float,
                       z_detect: float = 3.0):
    """Exercise 6: can a protocol with two delay times detect a small SIR readout residual, and at what SNR?

    The zero-residual fit of noise-free data with residual ``r``
    (:func:`qt1lib.estimate.sir_model_error.readout_residual_bias`) leaves a residual sum of squares
    RSS in the first tissue; the noise adds ``n sigma^2`` with standard deviation ``sqrt(2 n) sigma^2``
    (a chi-square with ``n`` degrees of freedom times ``sigma^2 / 2`` per real part, as in chapter 03).
    ``z = RSS / (sqrt(2 n) sigma^2)`` with ``sigma = M0f / snr``. The residual counts as detected when
    ``z >= z_detect`` (default 3 standard deviations); since ``z`` grows with ``snr^2``, the SNR that
    reaches it is ``snr * sqrt(z_detect / z)``.

    Returns
    -------
    dict of str
        ``z``, whether it is detected ("can" or "cannot"), the SNR needed, the T1 error of the fit (ms).
    """
    residual = require_number("residual", residual, low=0, high=1, high_inclusive=False)
    snr = require_number("snr", snr, low=0, low_inclusive=False)
    z_detect = require_number("z_detect", z_detect, low=0, low_inclusive=False)
    r1f = np.array([t.r1f for t in tissues])
    psr = np.array([t.psr for t in tissues])
    m0f = np.array([t.m0f for t in tissues])
    out = readout_residual_bias(r1f, psr, sf, residual, protocol, m0f=m0f)
    sigma = tissues[0].m0f / snr
    z = float(out.rss[0]) / (np.sqrt(2 * protocol.n_samples) * sigma**2)
    needed = snr * np.sqrt(z_detect / z) if z > 0 else np.inf
    return {
        "residual_pct": format_number(100 * residual, 1, "%"),
        "n_samples": f"{protocol.n_samples}",
        "snr": format_number(snr, 0),
        "z": format_number(z, 1),
        "detected": "can" if z >= z_detect else "cannot",
        "snr_needed": format_number(needed, 0) if np.isfinite(needed) else "no finite SNR",
        "z_detect": format_number(z_detect, 0),
        "t1_error_ms": format_number(1e3 * float(out.t1_error[0]), 1, "ms", signed=True),
    }


@answers("target", "t2_ms", "listed", "brain_t2_ms", "plausible")
def efficiency_t2(tissue, target: float, t2_values: Sequence[float], brain_t2: Sequence[float],
                  t2_range: tuple[float, float] = (0.002, 0.5)):
    """Exercise 7: the free-pool T2 at which the hyperbolic-secant inversion has a given efficiency at B1+ = 1.

    The efficiency of :data:`qt1lib.sequences.twopool.SIEMENS_HS_INVERSION` from the Bloch simulation
    (:func:`qt1lib.sequences.bloch.free_pool_inversion`, the tissue's T1f) rises with T2; it is evaluated on
    200 log-spaced T2 in ``t2_range`` (s) and inverted by interpolation.

    Parameters
    ----------
    target : float
        The efficiency sought (the seed's 0.84).
    t2_values : sequence of float
        The exercise's T2 values (s), whose efficiencies are listed.
    brain_t2 : sequence of float
        Free-pool T2 (s) of the brain tissues of the cohort's table, against which the answer is judged.

    Returns
    -------
    dict of str
        The T2 (ms) that gives ``target``, the efficiencies at ``t2_values``, the brain tissues' T2 (ms)
        and the verdict: "shorter than", "longer than" or "within the range of" those.
    """
    target = require_number("target", target, low=0, low_inclusive=False, high=1)
    pulse = SIEMENS_HS_INVERSION

    def efficiency(t2):
        return np.asarray(free_pool_inversion(pulse.amplitude, pulse.sweep, pulse.duration, tissue.t1f,
                                              np.asarray(t2, dtype=float), 1.0, n_steps=EFFICIENCY_TABLE_STEPS))

    grid = np.geomspace(*t2_range, 200)
    eff = efficiency(grid)
    if not eff.min() <= target <= eff.max():
        raise ValueError(f"no T2 in {t2_range} s gives an efficiency of {target} (range {eff.min():.3f}..{eff.max():.3f})")
    t2 = float(np.exp(np.interp(target, np.maximum.accumulate(eff), np.log(grid))))
    t2_ms, lo, hi = (round(1e3 * t) for t in (t2, min(brain_t2), max(brain_t2)))  # as the prose prints them
    verdict = "shorter than" if t2_ms < lo else "longer than" if t2_ms > hi else "within the range of"
    listed = ", ".join(f"{format_number(e, 3)} at {1e3 * t:g} ms" for t, e in zip(t2_values, efficiency(t2_values)))
    return {
        "target": format_number(target, 2),
        "t2_ms": format_number(1e3 * t2, 0, "ms"),
        "listed": listed,
        "brain_t2_ms": format_values([1e3 * t for t in sorted(set(brain_t2))], "ms", prefix=""),
        "plausible": verdict,
    }
