"""The shift of T1 read from three-train data with the seed's public code's two-train model.

Prints the numbers of ``book/_seed-code-section.md`` (before they are glued in a chapter):

1. single-pool three-train data (:data:`qt1lib.protocols.SEED_7T_MP3RAGE`) at true B1+, read with
   ``lut_b1_seed_code`` (the two-train table at the true B1+): the shift (apparent - true T1) that
   the two-train model alone makes, by T1 and B1;
2. the same data read without B1+, as the seed code does: ``lut_seed_code`` (two-train table) and
   ``lut`` (three-train table), and their difference (the two-train model's part of the error
   when B1+ is ignored too);
3. the code's own 112.5 / 112.5 split (``seed_code_split="half"``) against 112 / 113, at B1 = 1;
4. the cohort's default two-pool tissues (:data:`qt1lib.sequences.twopool.TISSUES_7T`), three-train
   signals read with ``lut`` and ``lut_seed_code`` at B1 = 1.

Noise-free, so every estimator of S_12 gives the same T1 up to its grid (the seed MAP's 50 ms grid
aside). Usage::

    PYTHONPATH=. python bench/seed_code_shift.py   # from the repository root
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from qt1lib.estimate import make_estimator
from qt1lib.protocols import SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals
from qt1lib.sequences.twopool import TISSUES_7T, gre_signals_twopool

T1 = (0.8, 1.0, 1.2, 1.349, 1.5, 1.664, 1.9, 1.939, 2.5, 3.0, 4.0)
B1 = (0.7, 0.85, 1.0, 1.15, 1.3)


def read(name: str, gre: np.ndarray, b1: np.ndarray | None = None, **options) -> np.ndarray:
    return make_estimator(name, SEED_7T_MP3RAGE, 0.0, **options).fit(gre, b1=b1).map


def main() -> None:
    start = time.perf_counter()
    t1, b1 = np.meshgrid(T1, B1, indexing="ij")
    gre = gre_signals(t1, SEED_7T_MP3RAGE, b1).astype(complex)
    table = lambda values: pd.DataFrame(values, index=pd.Index(T1, name="T1 (s)"),  # noqa: E731
                                        columns=pd.Index(B1, name="B1")).round(1)
    trains = 1e3 * (read("lut_b1_seed_code", gre, b1) - t1)
    print("1. two-train model at the true B1+ (lut_b1_seed_code - true T1), ms\n", table(trains), "\n")
    code = 1e3 * (read("lut_seed_code", gre) - t1)
    lut = 1e3 * (read("lut", gre) - t1)
    print("2a. seed code without B1+ (lut_seed_code - true T1), ms\n", table(code), "\n")
    print("2b. three-train table without B1+ (lut - true T1), ms\n", table(lut), "\n")
    print("2c. the two-train model's part without B1+ (lut_seed_code - lut), ms\n", table(code - lut), "\n")
    at_one = np.isclose(b1, 1.0)
    half = 1e3 * (read("lut_b1_seed_code", gre, b1, seed_code_split="half") - t1)
    print("3. split 112.5/112.5 vs 112/113 at B1 = 1 (ms):")
    print(pd.DataFrame({"112/113": trains[at_one], "112.5/112.5": half[at_one],
                        "difference": half[at_one] - trains[at_one]}, index=pd.Index(T1, name="T1 (s)")).round(2), "\n")
    rows = []
    for name in ("WM", "subcortical_GM", "cortical_GM"):
        tissue = TISSUES_7T[name]
        g = gre_signals_twopool(tissue.r1f, tissue.psr, SEED_7T_MP3RAGE, 1.0, kmf=tissue.kmf)[:, None].astype(complex)
        three, two = read("lut", g)[0], read("lut_seed_code", g)[0]
        rows.append({"tissue": name, "T1f (s)": tissue.t1f, "PSR": tissue.psr, "lut (s)": three,
                     "lut_seed_code (s)": two, "shift (ms)": 1e3 * (two - three)})
    print("4. cohort two-pool tissues at B1 = 1\n", pd.DataFrame(rows).round(4).to_string(index=False))
    print(f"\n{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
