"""Participants per hour of ``qt1 ... participant``: serially and on a local dask cluster of 2 workers.

Writes the digital cohort (``qt1-cohort``; default the smoke profile, four participants) and runs
the participant level twice from scratch, each with its own output and work folder (so that
nothing is reused between the two): ``--n-workers 1`` (serially, without dask) and
``--n-workers 2`` (a ``LocalCluster`` of two single-threaded worker processes, started and
stopped inside the command). Prints a table: wall seconds of the whole command, participants per
hour, and whether the two runs wrote byte-identical derivatives.

What the numbers include: validation of the dataset (every file read), for the dask run the
cluster's start and each worker's imports (qt1lib, torch, antspyx: several seconds per worker),
and the protocol-level store entries (the seed MAP's histograms), which the serial run computes
once and each worker may compute at the same time. On a small cohort these fixed costs weigh
as much as the participants; ``--profile quick`` (2 mm, about four times the voxels) shows the
steady state better. Run it on an otherwise idle machine: the two workers need two free cores,
and do not edit qt1lib meanwhile (the store keys, and so the sidecars, follow its source).

Measured on 2 CPU cores (2026-12-02), four participants: smoke, serially 26.4 s (544 participants/h),
2 workers 48.6 s (296/h, 0.54x); quick, serially 103.6 s (139/h), 2 workers 64.6 s (223/h, 1.60x);
byte-identical derivatives in both.

Usage::

    python bench/bench_participants.py                       # smoke cohort, 4 participants
    python bench/bench_participants.py --profile quick --n-subjects 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from qt1lib.cli import EXIT_OK, cohort_main, main


def run(bids: Path, out: Path, workers: int, profile: str) -> float:
    start = time.perf_counter()
    status = main([str(bids), str(out), "participant", "--n-workers", str(workers), "--profile", profile,
                   "--no-progress"])
    if status != EXIT_OK:
        raise SystemExit(f"qt1 participant --n-workers {workers} failed with status {status}")
    return time.perf_counter() - start


def derivatives(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".work" not in p.relative_to(root).parts}


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke", choices=("smoke", "quick", "paper"))
    parser.add_argument("--n-subjects", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="folder to keep the cohort and both outputs in (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qt1-bench-") as tmp:
        root = args.keep or Path(tmp)
        bids = root / "bids"
        if cohort_main([str(bids), "--profile", args.profile, "--n-subjects", str(args.n_subjects), "--no-progress"]):
            raise SystemExit("qt1-cohort failed")
        rows = []
        for workers in (1, 2):
            seconds = run(bids, root / f"out-{workers}", workers, args.profile)
            rows.append((workers, seconds, 3600 * args.n_subjects / seconds))
        serial, parallel = derivatives(root / "out-1"), derivatives(root / "out-2")
        differ = sorted(k for k in serial.keys() | parallel.keys() if serial.get(k) != parallel.get(k))
    print(f"\nqt1 participant, {args.profile} cohort, {args.n_subjects} participants, fresh store each run")
    print(f"{'workers':>8} {'seconds':>9} {'participants/h':>15}")
    for workers, seconds, rate in rows:
        print(f"{workers:>8} {seconds:>9.1f} {rate:>15.0f}")
    print(f"speed-up with 2 workers: {rows[0][1] / rows[1][1]:.2f}x; derivatives byte-identical: {not differ}")
    for name in differ:
        print(f"  differs: {name}")


if __name__ == "__main__":
    main_bench()
