"""Whole-volume T1 mapping benchmark: seconds and peak memory per estimator.

Simulates ``--n-voxels`` voxels of the seed 7T MP3RAGE (all three readouts; T1 uniform in
0.6..4.5 s, B1+ uniform in 0.6..1.4, |c| uniform in 0.6..1.0 with a random phase, complex
Gaussian noise of std ``--sigma`` per real / imaginary part, default the seed's 0.005 of M0)
and maps T1 with

* the lookup table on S_12 (Marques et al. 2010) and its B1-corrected 2-D version (Marques &
  Gruetter 2013; one bilinear read per voxel of :class:`qt1lib.estimate.lut.BilinearTable`),
* the seed's Monte-Carlo histogram MAP (MP2RAGE: S_12; MP3RAGE: S_12, S_13), building the
  histogram (``--seed-trials`` trials per T1) and mapping timed separately,
* the exact-likelihood MAP with posterior mean / std (MP2RAGE, MP3RAGE, without and with the
  B1 map, and MP3RAGE with the B1 map's error marginalised, ``b1_sd`` 0.02) by the grid evaluation
  (``method="grid"``, the reference), for MP2RAGE by the sufficient-statistic posterior table
  (``method="table"``, :mod:`qt1lib.estimate.posterior_table`) and for MP3RAGE by the
  quadratic-form evaluation (``method="quadratic"``, :mod:`qt1lib.estimate.quadratic_map`), and for
  MP2RAGE and MP3RAGE by the dense evaluation in torch (``method="dense"``, :mod:`qt1lib.estimate.dense_map`)
  on ``--device`` (default CUDA where ``torch.cuda.is_available()``, else the CPU), for
  each scale prior of ``--scale-priors`` (default Jeffreys', the estimators' default).
  ``tracemalloc`` does not see torch's buffers: the dense steps' peak memory is that of their
  NumPy side only (on CUDA, ``torch.cuda.max_memory_allocated`` is printed for them).

Each step runs twice: once timed, once under ``tracemalloc`` (which NumPy reports to) for
its peak of traced allocations above what was allocated before it; the input volume is not
counted. Each exact-MAP fit follows the build of its dictionary or table (cached, not
re-counted; the builds are reported as steps of their own); the lookup tables of the LUT are
built before its steps. Every step's time is also given as
a ratio to the plain LUT's in the same run (the issue-12 targets are such ratios). The RMSE
against the true T1 is printed for orientation only (the chapter
``notebooks/02_map_vs_point.ipynb`` studies accuracy); for the table steps, the voxels left to
the grid evaluation are counted. The volume is that of the book's performance chapter
(:func:`qt1lib.estimate.timing.simulate_volume`). The exact MAP shares its chunks over
:func:`qt1lib.cpus.default_threads` threads (every usable core; ``OMP_NUM_THREADS=1`` times one
thread); the lookup tables run on one.

Measured on 2 cores (AMD EPYC, idle, 2026-12-03, ``--steps lut quadratic table``): the plain LUT
0.07 s; as ratios to it, LUT-B1 0.4, exact MAP MP2RAGE 1.1 (table) and 2.2 with a B1 map,
MP3RAGE 5.9 (quadratic form), 10.4 with a B1 map and 13.3 with the B1 map's error marginalised;
peak memory at most 165 MiB (the MP3RAGE fits).

Usage::

    python bench/bench_t1_mapping.py                 # 1 million voxels
    python bench/bench_t1_mapping.py --n-voxels 200000 --json out.json
    python bench/bench_t1_mapping.py --n-voxels 200000 --steps lut table --scale-priors jeffreys flat
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc

import numpy as np

from qt1lib.estimate.lut import lut_t1
from qt1lib.estimate.map import ExactMAPModel, SeedMAPModel
from qt1lib.estimate.timing import simulate_volume
from qt1lib.protocols import SEED_7T_MP2RAGE, SEED_7T_MP3RAGE
from qt1lib.sequences import combinations, uni

#: The reference step of the ratios.
LUT_STEP = "LUT S12"
#: Standard deviation of the B1 map's error of the marginalising steps (that of ``map_exact_mp3rage``).
B1_SD = 0.02


def measure(name: str, step, truth: np.ndarray | None, results: list[dict], memory: bool, reset=None) -> object:
    """Time ``step`` (without tracing: ``tracemalloc`` slows NumPy-heavy code by up to half), then
    run it again under ``tracemalloc`` for its peak memory when ``memory`` (after ``reset()``)."""
    start = time.perf_counter()
    out = step()
    seconds = time.perf_counter() - start
    peak = float("nan")
    if memory:
        if reset is not None:
            reset()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        step()
        peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
        tracemalloc.stop()
    t1_map = getattr(out, "map", out)
    rmse = float(np.sqrt(np.nanmean((t1_map - truth) ** 2))) if truth is not None else float("nan")
    lut = next((r["seconds"] for r in results if r["step"] == LUT_STEP), seconds)
    results.append({"step": name, "seconds": seconds, "ratio_to_lut": seconds / lut, "peak_MiB": peak, "rmse_s": rmse})
    print(f"{name:<46s} {seconds:9.2f} {seconds / lut:7.1f} {peak:10.1f} {rmse:9.3f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-voxels", type=int, default=1_000_000, help="voxels to map (default 1e6)")
    parser.add_argument("--sigma", type=float, default=0.005, help="noise std per real/imaginary part, units of M0")
    parser.add_argument("--seed-trials", type=int, default=100_000, help="Monte-Carlo trials per T1 of the seed's histogram")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--json", help="also write the table to this JSON file")
    parser.add_argument("--no-memory", action="store_true", help="skip the second, memory-traced run of each step")
    parser.add_argument(
        "--steps", nargs="+", choices=("lut", "seed", "grid", "table", "quadratic", "dense"),
        default=["lut", "seed", "grid", "table", "quadratic"],
        help="estimator families to run (the plain LUT always runs: it is the reference of the ratios)",
    )
    parser.add_argument("--device", default=None, help="torch device of the dense steps (default CUDA if available, else cpu)")
    parser.add_argument("--dense-chunk", type=int, default=None,
                        help="voxels per chunk of the dense steps (default: qt1lib.estimate.dense_map.dense_chunk of the device)")
    parser.add_argument("--scale-priors", nargs="+", choices=("jeffreys", "flat"), default=["jeffreys"], help="scale priors of the exact MAP")
    args = parser.parse_args()

    data = simulate_volume(args.n_voxels, args.sigma, args.seed)
    t1, b1, y = data["t1"], data["b1"], data["gre"]
    memory = not args.no_memory
    print(f"{args.n_voxels} voxels, sigma = {args.sigma}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'step':<46s} {'seconds':>9s} {'x LUT':>7s} {'peak MiB':>10s} {'RMSE (s)':>9s}")
    results: list[dict] = []
    s12 = uni(y[0], y[1])
    lut_t1(s12[:10], SEED_7T_MP2RAGE), lut_t1(s12[:10], SEED_7T_MP2RAGE, b1=b1[:10])  # build the (cached) lookup tables first
    measure(LUT_STEP, lambda: lut_t1(s12, SEED_7T_MP2RAGE), t1, results, memory)
    if "lut" in args.steps:
        measure("LUT S12, B1-corrected", lambda: lut_t1(s12, SEED_7T_MP2RAGE, b1=b1), t1, results, memory)
    if "seed" in args.steps:
        for protocol, label in ((SEED_7T_MP2RAGE, "MP2RAGE"), (SEED_7T_MP3RAGE, "MP3RAGE")):
            model = measure(
                f"seed MAP {label}: build histogram",
                lambda: SeedMAPModel(protocol, args.sigma, args.seed_trials, args.seed),
                None,
                results,
                memory,
            )
            s = combinations(y, protocol)
            measure(f"seed MAP {label}: map volume", lambda: model.fit(s), t1, results, memory)
    for prior in args.scale_priors:
        tag = "" if prior == "jeffreys" else f" ({prior})"
        if "grid" in args.steps:
            for protocol, label in ((SEED_7T_MP2RAGE, "MP2RAGE"), (SEED_7T_MP3RAGE, "MP3RAGE")):
                model = ExactMAPModel(protocol, args.sigma, scale_prior=prior, method="grid")
                clear = model.clear_dictionaries
                measure(f"exact MAP {label}{tag}, grid: dictionary", lambda: model.dictionary(False), None, results, memory, clear)
                measure(f"exact MAP {label}{tag}, grid", lambda: model.fit(y), t1, results, memory)
                measure(f"exact MAP {label}{tag}, grid: B1 dictionary", lambda: model.dictionary(True), None, results, memory, clear)
                measure(f"exact MAP {label}{tag}, grid, B1 map", lambda: model.fit(y, b1=b1), t1, results, memory)
                if protocol is SEED_7T_MP3RAGE:
                    measure(f"exact MAP {label}{tag}, grid, B1 marginalised", lambda: model.fit(y, b1=b1, b1_sd=B1_SD),
                            t1, results, memory)
        if "quadratic" in args.steps:
            model = ExactMAPModel(SEED_7T_MP3RAGE, args.sigma, scale_prior=prior, method="quadratic")
            for kw, suffix in (({}, ""), ({"b1": b1}, ", B1 map"), ({"b1": b1, "b1_sd": B1_SD}, ", B1 marginalised")):
                model.fit(y[:, :64], **{k: v[:64] if k == "b1" else v for k, v in kw.items()})  # builds its dictionaries
                measure(f"exact MAP MP3RAGE{tag}, quadratic{suffix}", lambda: model.fit(y, **kw), t1, results, memory)
                info = model.fit_info
                results[-1]["fit_info"] = dict(info)
                print(f"    {info['quadratic']} voxels by the quadratic form, {info['grid']} by the grid")
        if "dense" in args.steps:
            for protocol, label in ((SEED_7T_MP2RAGE, "MP2RAGE"), (SEED_7T_MP3RAGE, "MP3RAGE")):
                model = ExactMAPModel(protocol, args.sigma, scale_prior=prior, method="dense", device=args.device,
                                      dense_chunk_size=args.dense_chunk)
                cases = [({}, ""), ({"b1": b1}, ", B1 map")] + ([({"b1": b1, "b1_sd": B1_SD}, ", B1 marginalised")]
                                                              if protocol is SEED_7T_MP3RAGE else [])
                for kw, suffix in cases:
                    model.fit(y[:, :64], **{k: v[:64] if k == "b1" else v for k, v in kw.items()})  # builds its dictionaries
                    if model.device.startswith("cuda"):
                        import torch

                        torch.cuda.reset_peak_memory_stats()
                    measure(f"exact MAP {label}{tag}, dense ({model.device}, chunk {model.dense_chunk_size}){suffix}",
                            lambda: model.fit(y, **kw), t1, results, memory)
                    info = model.fit_info
                    results[-1]["fit_info"] = dict(info)
                    gpu = ""
                    if model.device.startswith("cuda"):
                        gpu = f"; CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
                        results[-1]["cuda_peak_MiB"] = torch.cuda.max_memory_allocated() / 2**20
                    print(f"    {info['dense']} voxels by the dense evaluation, {info['grid']} by the grid{gpu}")
        if "table" in args.steps:
            model = ExactMAPModel(SEED_7T_MP2RAGE, args.sigma, scale_prior=prior, method="table")
            clear = model.clear_dictionaries
            for with_b1, suffix in ((False, ""), (True, ", B1 map")):
                kw = {"b1": b1} if with_b1 else {}
                measure(f"exact MAP MP2RAGE{tag}, table{suffix}: build", lambda: model.posterior_table(with_b1), None, results, memory, clear)
                if with_b1:  # the grid evaluation of the voxels the table leaves to it needs its dictionary
                    model.dictionary(True)
                measure(f"exact MAP MP2RAGE{tag}, table{suffix}", lambda: model.fit(y, **kw), t1, results, memory)
                info = model.fit_info
                results[-1]["fit_info"] = dict(info)
                print(f"    {info['table']} voxels by the table, {info['grid']} by the grid ({info['b1_outside_table']} with B1 outside its rows)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n_voxels": args.n_voxels, "sigma": args.sigma, "cpus": os.cpu_count(), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
