"""qt1lib: the computational core of the qT1 study book.

Quantitative T1 mapping of the brain with MP2RAGE / MP3RAGE (lookup table and
maximum a posteriori estimates) compared with, and calibrated to, multi-TI
selective inversion recovery, after Saunders et al., Magn. Reson. Imaging 117:110322 (2025).

Modules
-------
protocols  Acquisition protocols with their sources.
sequences  Signal models (steady-state chains of affine maps of Mz).
estimate   T1 estimators: lookup table, MAP with posterior, Cramer-Rao bound.
calibrate  Patch-based ResNet-18 calibration, four folds leave one subject out, baselines.
stats      Error metrics per tissue and fold, paired tests, mixed model, Bland-Altman.
plots      Figure helpers shared by the chapters.
study      The study runner: papermill over the notebooks, then the book.
"""

__version__ = "0.1.0"
