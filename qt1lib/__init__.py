"""qt1lib: the computational core of the qT1 study book.

Quantitative T1 mapping of the brain with MP2RAGE / MP3RAGE (lookup table and
maximum a posteriori estimates) compared with, and calibrated to, multi-TI
selective inversion recovery, after Saunders et al., Magn. Reson. Imaging 117:110322 (2025).

Modules
-------
protocols      Acquisition protocols with their sources (protocols_sir: the SIR protocols).
tissues        The one tissue registry: label, key, name, two-pool values, scored or not.
config         The one study configuration (cohort, pipeline, calibration) and the build profiles.
sequences      Signal models (steady-state chains of affine maps of Mz; two-pool; SIR).
estimate       T1 estimators behind one contract and registry (estimate.base); CRLB, SIR fits.
phantom        The digital cohort, written as a BIDS dataset with its truth.
bids, io       Reading and validating BIDS data; atomic writes.
store          The one content-addressed cache (parameters, input content, source of the code).
register       Rigid registration with antspyx.
calibrate      Patch-based ResNet-18 calibration, four folds leave one subject out, baselines.
stats          Error metrics per tissue and fold, paired tests, mixed model, Bland-Altman.
workflow       The per-subject steps, with typed results, cached through the store.
plots          Figure helpers shared by the chapters.
notebook       Validation of a chapter's papermill parameters; the glued text; the exercises' glue.
solutions      The exercises' solutions, on their cheap variants, one module per chapter.
study          The study runner: papermill over the notebooks, then the book.
"""

__version__ = "0.1.0"
