"""Cost of the digital cohort: anatomy, simulation, BIDS writing and reading, registration.

Times each stage of :func:`qt1lib.phantom.make_cohort` for a profile, then reads the dataset
back with :mod:`qt1lib.bids`, validates it, and registers each subject's INV2 magnitude to its
last SIR image (:func:`qt1lib.register.register_rigid`), reporting the registration error
against the simulated motion. Prints a table: seconds, peak traced memory (tracemalloc: NumPy
buffers included) and notes; the last line is the process's peak resident memory.

Also compares the tabulated MP3RAGE signals (:func:`qt1lib.phantom.signals.tabulated`) with the
exact two-pool chain on one subject's white matter: speed ratio and largest difference.

Usage::

    python bench/bench_phantom.py --profile quick --subjects 4
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def measured(fn, *args, **kwargs):
    """Run ``fn``; return (result, seconds, peak traced MiB)."""
    tracemalloc.start()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"))
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from qt1lib.bids import read_mpnrage, read_sir, validate_dataset
    from qt1lib.phantom import cohort_settings, draw_subject, load_motion, load_truth, make_cohort, simulate_subject
    from qt1lib.phantom.anatomy import load_template, prefiltered_fractions
    from qt1lib.phantom.cohort import write_subject
    from qt1lib.phantom.signals import mpnrage_tissue_signals, tabulated
    from qt1lib.phantom.tissues import TissueMaps
    from qt1lib.register import RigidTransform, register_rigid, registration_error
    from qt1lib.sequences.twopool import SIEMENS_HS_INVERSION
    from qt1lib.store import Store
    from qt1lib.workflow import ensure_cohort

    rows = []
    settings = cohort_settings(args.profile)
    _, s, m = measured(load_template)
    rows.append(("load template (MNI152 + DK atlas, 1 mm)", s, m, "once per process"))
    _, s, m = measured(lambda: [prefiltered_fractions(settings.voxel_size), prefiltered_fractions(settings.sir_voxel_size)])
    rows.append(("voxel prefilter (MP3RAGE + SIR sizes)", s, m, "once per process and size"))
    _, s, m = measured(SIEMENS_HS_INVERSION.bound_fraction, 1.0)
    rows.append(("HS inversion bound-pool saturation", s, m, "once per process (cached)"))

    model, s, m = measured(draw_subject, settings, 0, 0)
    rows.append(("draw subject", s, m, ""))
    images, s, m = measured(simulate_subject, settings, model, args.seed)
    n_vox = int(np.prod(images.grid.shape))
    rows.append(("simulate subject", s, m, f"MP3RAGE grid {images.grid.shape}, SIR grid {images.sir_grid.shape}"))
    with tempfile.TemporaryDirectory() as tmp:
        _, s, m = measured(write_subject, Path(tmp), images, settings)
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 2**20
        rows.append(("write subject (raw + truth)", s, m, f"{size:.0f} MiB on disk"))

    # tabulated versus exact two-pool signals on the subject's white matter
    wm = images.truth.fractions[0] > 1e-4
    maps = model.tissue("WM", images.grid)
    maps = TissueMaps(*(np.broadcast_to(getattr(maps, p), wm.shape)[wm] for p in ("r1f", "psr", "kmf", "m0f")))
    b1 = images.truth.b1[wm]
    exact = mpnrage_tissue_signals(settings.protocol)
    table, s_tab, _ = measured(tabulated(exact), maps, b1)
    n_exact = min(20000, wm.sum())
    sub = TissueMaps(*(getattr(maps, p)[:n_exact] for p in ("r1f", "psr", "kmf", "m0f")))
    direct, s_ex, _ = measured(exact, sub, b1[:n_exact])
    rate_tab, rate_ex = wm.sum() / s_tab, n_exact / s_ex
    rows.append(
        (
            "WM signals: table vs exact chain",
            s_tab,
            float("nan"),
            f"{rate_tab:.0f} vs {rate_ex:.0f} voxels/s ({rate_tab / rate_ex:.0f}x), "
            f"max |diff| {np.abs(table[:, :n_exact] - direct).max():.1e}",
        )
    )

    with tempfile.TemporaryDirectory() as tmp:
        cohort, s, m = measured(
            make_cohort, Path(tmp) / "bids", args.profile, seed=args.seed, n_subjects=args.subjects, progress=False
        )
        rows.append((f"make_cohort, {args.subjects} subjects (cold)", s, m, f"{n_vox} voxels per MP3RAGE image"))
        store = Store(Path(tmp) / "store")
        arguments = {"profile": args.profile, "seed": args.seed, "n_subjects": args.subjects}
        ensure_cohort(cohort.bids_dir, store, arguments, progress=False)  # generates and records it
        _, s, m = measured(ensure_cohort, cohort.bids_dir, store, arguments, progress=False)
        rows.append(("ensure_cohort again (store hit: every file hashed)", s, m, ""))
        _, s, m = measured(validate_dataset, cohort.bids_dir)
        rows.append(("validate_dataset (every file read)", s, m, ""))
        errors, seconds = [], 0.0
        for subject in cohort.subjects:
            mp, sir = read_mpnrage(cohort.bids_dir, subject), read_sir(cohort.bids_dir, subject)
            brain = load_truth(cohort.bids_dir, subject, space="SIR")["fractions"][:3].sum(axis=0) > 0.5
            true = load_motion(cohort.bids_dir, subject).session_to_subject
            transform, s, _ = measured(register_rigid, sir.images[-1], sir.affine, np.abs(mp.gre[1]), mp.affine)
            seconds += s
            errors.append(
                (registration_error(transform, true, brain, sir.affine), registration_error(RigidTransform(np.eye(4)), true, brain, sir.affine))
            )
        notes = ", ".join(f"{e:.2f} ({u:.1f}) mm" for e, u in errors)
        rows.append(("rigid registration per subject", seconds / len(errors), float("nan"), f"error (unregistered): {notes}"))

    width = max(len(r[0]) for r in rows)
    print(f"profile {args.profile}, {args.subjects} subjects")
    print(f"{'stage':<{width}}  {'seconds':>8}  {'peak MiB':>8}  notes")
    for name, s, m, note in rows:
        print(f"{name:<{width}}  {s:8.2f}  {m:8.0f}  {note}")
    print(f"peak resident memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
