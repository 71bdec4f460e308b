"""Automatic segmentation on the digital cohort: Dice per tissue against the truth, and seconds per subject.

For each subject of a cohort profile, :func:`qt1lib.segment.segment` (the MNI152 template
registered to the subject, refined on its contrast) is compared with the true segmentation
(``derivatives/phantom/sub-XX/anat/sub-XX_dseg.nii.gz``, :func:`qt1lib.phantom.load_truth`),
beside two references: the warped template without refinement, and the template taken as it is
(no registration). The cohort's anatomy is the template itself, deformed by 1.5 mm, so these
Dice values are an optimistic bound for real data (``qt1lib.segment``, "What the cohort cannot
tell"). The registration runs on one thread (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1``, set by
:mod:`qt1lib.register` for determinism).

Usage::

    python bench/bench_segment.py --profile quick --subjects 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"))
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bids-dir", type=Path, default=None, help="a cohort already written (else a temporary one)")
    args = parser.parse_args()

    import pandas as pd

    from qt1lib import segment as sg
    from qt1lib.bids import read_mpnrage
    from qt1lib.io import load_json
    from qt1lib.phantom import load_truth, make_cohort

    with tempfile.TemporaryDirectory(prefix="qt1lib-bench-seg-") as tmp:
        bids = args.bids_dir
        if bids is None:
            bids = Path(tmp) / "bids"
            make_cohort(bids, args.profile, seed=args.seed, n_subjects=args.subjects, progress=False)
        sigma = load_json(bids / "derivatives" / "phantom" / "parameters.json")["noise_sigma"]
        rows = []
        for subject in [f"{i + 1:02d}" for i in range(args.subjects)]:
            data = read_mpnrage(bids, subject)
            truth = load_truth(bids, subject)["dseg"]
            start = time.perf_counter()
            result = sg.segment(data.gre, data.affine, sigma, seed=args.seed)
            seconds = time.perf_counter() - start
            identity = sg.template_on_grid(truth.shape, data.affine)
            identity_brain = identity.sum(axis=0) >= 0.5
            variants = {
                "refined": result.dseg,
                "warped template": sg.labels_from_fractions(sg.normalised_priors(result.priors, result.brain),
                                                            result.brain),
                "template, no registration": sg.labels_from_fractions(
                    sg.normalised_priors(identity, identity_brain), identity_brain),
            }
            for method, dseg in variants.items():
                dice = sg.dice_per_tissue(dseg, truth)
                rows.append({"subject": subject, "method": method, **dice,
                             "seconds": seconds if method == "refined" else float("nan")})
        table = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print(f"profile {args.profile}, {args.subjects} subjects, ITK threads "
          f"{os.environ.get('ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS')}")
    print(table.round(3).to_string(index=False))
    print("\nmean over subjects")
    print(table.drop(columns="subject").groupby("method", sort=False).mean().round(3).to_string())


if __name__ == "__main__":
    main()
