"""Whole-brain derivatives of a study dataset, cached as BIDS derivatives.

The steps, per subject, as the seed study ran them (Saunders et al. 2025; DESIGN.md sections 3, 4.6):

1. :func:`mp2rage_maps`: T1 maps on the MP2RAGE grid from the complex MP2RAGE/MP3RAGE images:
   lookup table with and without B1 correction (Marques et al. 2010; Marques & Gruetter 2013),
   the seed's Monte-Carlo MAP (MP2RAGE and MP3RAGE) and the exact MAP with B1 (MP2RAGE with the
   measured B1 map, MP3RAGE with B1 marginalised over the map's error), each MAP with its
   posterior standard deviation.
2. :func:`sir_maps`: the two-pool SIR fit on the SIR grid, IR T1 = 1/R1f (Dortch et al. 2011).
3. :func:`sir_space_subject`: rigid registration of the MP2RAGE space to the SIR space (antspyx,
   Mattes mutual information, as the seed's scripts) and every MP2RAGE map resampled there,
   with the tissue segmentation in SIR space.
4. :func:`calibration_subjects`: the per-subject data of the calibration network;
   :func:`write_calibrated_maps` writes the held-out subjects' calibrated maps back
   (``space-SIR_desc-ResNet_T1map`` and the baselines').

Every step writes its maps under ``derivatives/qt1lib/sub-<label>/`` (``xfm`` for the
transform) with a sidecar that records the step's parameters and a cache key
(:func:`qt1lib.bids.cache_key`: parameters, qt1lib version and the fingerprint of the
subject's raw files), and reuses them when the key matches. Each map's key holds only the
parameters that change it, so changing one estimator's setting recomputes that estimator alone.

Masks and segmentations (assumptions, written in the book):

* **Brain mask on the MP2RAGE grid.** Digital cohort: its segmentation, ``dseg > 0`` (voxels at
  least half tissue), a perfect stand-in for the seed's SLANT segmentation. Real data: a
  ``*_desc-brain_mask.nii[.gz]`` on the MP2RAGE grid under any ``derivatives/<pipeline>/``
  other than ``qt1lib``, else the rule "largest connected component of the voxels whose
  largest inversion magnitude exceeds ``signal_threshold`` noise standard deviations, holes
  filled" (for skull-stripped or brain-only fields of view).
* **Estimation mask.** T1 is estimated in the brain mask dilated by ``mask_dilation`` voxels, so
  that linear resampling into SIR space near the brain's edge blends real estimates rather
  than missing values; maps are NaN elsewhere.
* **Segmentation in SIR space.** Digital cohort: the true ``space-SIR_dseg`` (1 WM,
  2 subcortical GM, 3 cortical GM, 4 CSF). Real data: a ``*_space-SIR_dseg`` under any
  ``derivatives/<pipeline>/`` other than ``qt1lib``, else a ``*_dseg`` on the MP2RAGE grid
  resampled with the estimated transform (``genericLabel``); labels must follow the same
  convention. The SIR-space brain mask is ``dseg > 0``.
* **SIR fit mask.** Voxels whose largest SIR magnitude exceeds ``signal_threshold`` noise
  standard deviations.

Noise: ``sigma`` (per real/imaginary part) comes from the configuration, else from the digital
cohort's ``parameters.json``, else from the image background (:func:`estimate_noise_sigma`).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from . import __version__
from .bids import (
    PIPELINE,
    cache_key,
    derivative_path,
    list_subjects,
    parse_name,
    read_cached,
    read_mpnrage,
    read_sir,
    validate_dataset,
    write_derivative,
)
from .calibrate.data import SubjectData
from .estimate.lut import DEFAULT_B1_GRID, lut_t1
from .estimate.map import (
    SEED_LIKELIHOOD_THRESHOLD,
    SEED_N_BINS,
    ExactMAPModel,
    PosteriorT1,
    SeedMAPModel,
)
from .estimate.sir_fit import fit_sir
from .io import atomic_write_bytes, load_json, save_json
from .protocols import MPnRAGEProtocol
from .register import RigidTransform, apply_transform, register_rigid, registration_error
from .sequences import uni
from .sequences.twopool import KMF_HUMAN_BRAIN
from .stats import TISSUE_LABELS

__all__ = [
    "PipelineConfig",
    "PROFILE_CONFIGS",
    "EstimatorSpec",
    "estimator_spec",
    "DerivativeEntry",
    "cached_maps",
    "ESTIMATORS",
    "DEFAULT_ESTIMATORS",
    "NOISE_FREE_SIGMA",
    "ensure_dataset",
    "is_simulated",
    "cohort_parameters",
    "estimate_noise_sigma",
    "noise_sigma",
    "seed_map_model",
    "estimate_t1",
    "brain_mask",
    "estimation_region",
    "mp2rage_maps",
    "sir_maps",
    "resample_to_sir",
    "sir_space_subject",
    "calibration_subjects",
    "CALIBRATED_DESC",
    "write_calibrated_maps",
]

#: Noise standard deviation (units of M0) used by the estimators when the data are noise-free
#: (the digital cohort with ``snr=inf``): the MAP estimators need ``sigma > 0``. 1e-4 M0 is 50
#: times below the seed's 0.005, so the posterior is far narrower than any effect studied here.
NOISE_FREE_SIGMA = 1e-4


# ============================================================================ estimators
@dataclass(frozen=True)
class EstimatorSpec:
    """One T1 estimator of the pipeline.

    Attributes
    ----------
    name : str
        Key of its map in :func:`mp2rage_maps`.
    method : {"lut", "seed", "exact"}
        Lookup table (:func:`qt1lib.estimate.lut.lut_t1`), the seed's Monte-Carlo MAP
        (:class:`qt1lib.estimate.map.SeedMAPModel`) or the exact MAP
        (:class:`qt1lib.estimate.map.ExactMAPModel`).
    readouts : tuple of int
        1-based readouts combined: ``(1, 2)`` MP2RAGE, ``(1, 2, 3)`` MP3RAGE.
    b1 : {"none", "map", "marginal"}
        Nominal flip angles; the measured B1+ map; the map with its error marginalised
        (``PipelineConfig.b1_sd``).
    desc : str
        BIDS ``desc`` label of the derivative.
    label : str
        Display name.
    """

    name: str
    method: str
    readouts: tuple[int, ...]
    b1: str
    desc: str
    label: str

    @property
    def posterior(self) -> bool:
        """The estimator gives a posterior standard deviation and a validity flag."""
        return self.method != "lut"


ESTIMATORS: dict[str, EstimatorSpec] = {
    s.name: s
    for s in (
        EstimatorSpec("lut", "lut", (1, 2), "none", "LUT", "LUT"),
        EstimatorSpec("lut_b1", "lut", (1, 2), "map", "LUTB1", "LUT, B1-corrected"),
        EstimatorSpec("map_seed_mp2rage", "seed", (1, 2), "none", "MAPseedMP2RAGE", "seed MAP MP2RAGE"),
        EstimatorSpec("map_seed_mp3rage", "seed", (1, 2, 3), "none", "MAPseedMP3RAGE", "seed MAP MP3RAGE"),
        EstimatorSpec("map_exact_mp2rage", "exact", (1, 2), "map", "MAPexactMP2RAGE", "exact MAP MP2RAGE, B1 map"),
        EstimatorSpec(
            "map_exact_mp3rage", "exact", (1, 2, 3), "marginal", "MAPexactMP3RAGE", "exact MAP MP3RAGE, B1 marginalised"
        ),
        EstimatorSpec(
            "map_exact_mp2rage_nob1", "exact", (1, 2), "none", "MAPexactMP2RAGEnoB1", "exact MAP MP2RAGE, no B1"
        ),
        EstimatorSpec(
            "map_exact_mp3rage_nob1", "exact", (1, 2, 3), "none", "MAPexactMP3RAGEnoB1", "exact MAP MP3RAGE, no B1"
        ),
        EstimatorSpec(
            "map_exact_mp3rage_b1", "exact", (1, 2, 3), "map", "MAPexactMP3RAGEB1", "exact MAP MP3RAGE, B1 map"
        ),
    )
}
#: The maps :func:`mp2rage_maps` computes by default (the pipeline contract).
DEFAULT_ESTIMATORS: tuple[str, ...] = (
    "lut",
    "lut_b1",
    "map_seed_mp2rage",
    "map_seed_mp3rage",
    "map_exact_mp2rage",
    "map_exact_mp3rage",
)

_REGISTRATION_CONTRASTS = ("inv2", "t1")


def estimator_spec(name: str) -> EstimatorSpec:
    """The :class:`EstimatorSpec` of ``name``; ValueError naming the known estimators otherwise."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; expected one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[name]


# ============================================================================ configuration
@dataclass(frozen=True)
class PipelineConfig:
    """Parameters of the pipeline; the cache keys of its derivatives are built from them.

    Attributes
    ----------
    sigma : float or None
        Noise standard deviation of the MP2RAGE images per real/imaginary part (image units;
        M0 = 1 for the digital cohort). None: the cohort's ``parameters["noise_sigma"]``, else
        estimated from the image background (:func:`estimate_noise_sigma`).
    sir_sigma : float or None
        The same for the SIR magnitude images (``parameters["sir_noise_sigma"]`` for the cohort).
    seed_map_sigma : float or None
        Noise standard deviation (M0 units) of the seed MAP's Monte-Carlo histogram. None: the
        data's ``sigma`` (the likelihood matches the data). 0.005 reproduces the seed's fixed
        ``noise_std`` (MASILab/map_t1_mapping ``scripts/params.yml``, its 0.7 mm data) whatever the
        voxel size. At low noise the MP3RAGE histogram has holes (bins that no trial reaches) and
        the map is NaN there (:class:`~qt1lib.estimate.map.SeedMAPModel`).
    seed_map_trials : int
        Monte-Carlo trials per T1 of the seed MAP's histogram. Default 1e5 (the default of
        :class:`~qt1lib.estimate.map.SeedMAPModel`; the seed used 1e8, ``num_trials`` in
        MASILab/map_t1_mapping ``scripts/params.yml``); the ``paper`` profile uses 1e6.
    seed_map_bins : int
        Bins per S axis of the seed MAP (the seed's 100).
    seed_likelihood_threshold : float
        Relative-likelihood threshold of the seed MAP (the seed's 0.5).
    b1_sd : float
        Standard deviation of the B1+ map's error (relative B1) over which the exact MP3RAGE MAP
        marginalises. Default 0.02: the digital cohort's B1-map error
        (:class:`~qt1lib.phantom.simulate.SimulationSettings` ``b1_noise``; assumption for real data).
    scale_prior : {"flat", "jeffreys"}
        Prior of the complex scale of the exact MAP. Default ``"jeffreys"``, the default of
        :class:`~qt1lib.estimate.map.ExactMAPModel` (its MAP is the true T1 for noise-free data;
        the flat prior shifts it by O(sigma^2)).
    calibration_input : str
        Estimator whose map feeds the calibration network; the seed's: ``"map_seed_mp2rage"``
        (MAP MP2RAGE, Saunders et al. 2025).
    registration_contrast : {"inv2", "t1"}
        ``"inv2"`` (the seed's scripts): moving = INV2 magnitude, fixed = the SIR image with the
        longest inversion time. ``"t1"``: moving = the LUT T1 map, fixed = the SIR T1 map (the
        same contrast on both sides).
    registration_bins : int
        Histogram bins of the mutual information (32, the seed's / antspyx's default).
    random_seed : int
        Seed of the seed MAP's Monte-Carlo and of the registration's metric sampling.
    mask_dilation : int
        Voxels by which the brain mask is dilated for estimation (see the module docstring).
    signal_threshold : float
        Signal masks: largest magnitude above this many noise standard deviations (5: a
        Rayleigh-distributed background voxel exceeds it with probability exp(-12.5) = 4e-6).
    """

    sigma: float | None = None
    sir_sigma: float | None = None
    seed_map_sigma: float | None = None
    seed_map_trials: int = 100_000
    seed_map_bins: int = SEED_N_BINS
    seed_likelihood_threshold: float = SEED_LIKELIHOOD_THRESHOLD
    b1_sd: float = 0.02
    scale_prior: str = "jeffreys"
    calibration_input: str = "map_seed_mp2rage"
    registration_contrast: str = "inv2"
    registration_bins: int = 32
    random_seed: int = 0
    mask_dilation: int = 2
    signal_threshold: float = 5.0

    def __post_init__(self) -> None:
        for name in ("sigma", "sir_sigma", "seed_map_sigma"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be None or a finite noise standard deviation > 0, got {v!r}")
        for name, least in (("seed_map_trials", 1), ("seed_map_bins", 2), ("registration_bins", 8), ("mask_dilation", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
        if not 0 <= self.seed_likelihood_threshold <= 1:
            raise ValueError(f"seed_likelihood_threshold must lie in [0, 1], got {self.seed_likelihood_threshold!r}")
        if not (np.isfinite(self.b1_sd) and self.b1_sd >= 0):
            raise ValueError(f"b1_sd (relative B1) must be finite and >= 0, got {self.b1_sd!r}")
        if self.scale_prior not in ("flat", "jeffreys"):
            raise ValueError(f"scale_prior must be 'flat' or 'jeffreys', got {self.scale_prior!r}")
        if self.calibration_input not in ESTIMATORS:
            raise ValueError(f"calibration_input must be one of {sorted(ESTIMATORS)}, got {self.calibration_input!r}")
        if self.registration_contrast not in _REGISTRATION_CONTRASTS:
            raise ValueError(
                f"registration_contrast must be one of {_REGISTRATION_CONTRASTS}, got {self.registration_contrast!r}"
            )
        if not (np.isfinite(self.signal_threshold) and self.signal_threshold > 0):
            raise ValueError(f"signal_threshold (noise standard deviations) must be > 0, got {self.signal_threshold!r}")

    @classmethod
    def for_profile(cls, profile: str, **changes: Any) -> "PipelineConfig":
        """The configuration of a build profile (:data:`PROFILE_CONFIGS`) with ``changes``."""
        if profile not in PROFILE_CONFIGS:
            raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILE_CONFIGS)}")
        return cls(**{**PROFILE_CONFIGS[profile], **changes})

    def to_dict(self) -> dict:
        """Every field, JSON-ready."""
        return asdict(self)

    def digest(self) -> str:
        """SHA-256 of :meth:`to_dict` and the qt1lib version."""
        text = json.dumps({"qt1lib_version": __version__, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def estimator_parameters(self, name: str) -> dict:
        """The fields that change the map of estimator ``name`` (its cache-key parameters)."""
        spec = estimator_spec(name)
        p: dict[str, Any] = {"estimator": name, "method": spec.method, "readouts": list(spec.readouts), "b1": spec.b1}
        if spec.b1 != "none":
            p["b1_grid"] = list(DEFAULT_B1_GRID)
        if spec.method == "seed":
            p.update(
                seed_map_sigma=self.seed_map_sigma,
                seed_map_trials=self.seed_map_trials,
                seed_map_bins=self.seed_map_bins,
                seed_likelihood_threshold=self.seed_likelihood_threshold,
                random_seed=self.random_seed,
            )
        if spec.method == "exact":
            p["scale_prior"] = self.scale_prior
            if spec.b1 == "marginal":
                p["b1_sd"] = self.b1_sd
        return p


#: Overrides of :class:`PipelineConfig` per build profile. ``smoke`` and ``quick`` use the
#: defaults, so that every chapter of a build shares one cache; ``paper`` builds the seed MAP's
#: histogram from 1e6 trials per T1.
PROFILE_CONFIGS: dict[str, dict[str, Any]] = {"smoke": {}, "quick": {}, "paper": {"seed_map_trials": 1_000_000}}


# ============================================================================ dataset
_PHANTOM_KEY = Path("derivatives") / "phantom" / "parameters.json"


def cohort_parameters(bids_dir: str | Path) -> dict | None:
    """The digital cohort's generation parameters, or None for a dataset the cohort did not write."""
    path = Path(bids_dir) / _PHANTOM_KEY
    return load_json(path) if path.is_file() else None


def is_simulated(bids_dir: str | Path) -> bool:
    """Whether ``bids_dir`` holds the digital cohort (its ground truth is then available)."""
    return cohort_parameters(bids_dir) is not None


def ensure_dataset(
    bids_dir: str | Path, profile: str = "quick", seed: int = 0, *, progress: bool = True, **cohort_kwargs: Any
) -> dict:
    """The study's dataset: the digital cohort, generated when missing, or the user's BIDS data.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root. If it does not exist, is empty or holds the digital cohort, the cohort is
        generated there (or reused when its parameters match) with
        :func:`qt1lib.phantom.make_cohort`; otherwise it is taken as the user's dataset.
    profile : {"smoke", "quick", "paper"}
        Cohort profile (voxel sizes); ignored for a user's dataset.
    seed : int
        Cohort noise seed; ignored for a user's dataset.
    progress : bool
        Show the cohort's progress bar.
    **cohort_kwargs
        Further arguments of :func:`~qt1lib.phantom.make_cohort` (``snr``, ``n_subjects``,
        ``bound_pool``, ``motion``...). Every chapter must pass the same ones: other values
        regenerate the cohort, which removes every derivative.

    Returns
    -------
    dict
        ``bids_dir`` (Path), ``subjects`` (labels without ``sub-``), ``is_simulated``,
        ``parameters`` (the cohort's, or None), ``regenerated`` (bool).

    Raises
    ------
    ValueError
        Cohort arguments for a user's dataset, or the dataset fails validation
        (:class:`qt1lib.bids.BIDSValidationError`, naming every problem).
    """
    from .phantom import make_cohort

    bids_dir = Path(bids_dir)
    cohort_dir = not bids_dir.exists() or (bids_dir.is_dir() and not any(bids_dir.iterdir())) or is_simulated(bids_dir)
    regenerated = False
    parameters = None
    if cohort_dir:
        cohort = make_cohort(bids_dir, profile, seed, progress=progress, **cohort_kwargs)
        regenerated, parameters = cohort.regenerated, cohort.parameters
    elif cohort_kwargs:
        raise ValueError(
            f"bids_dir {bids_dir} holds a dataset that is not the digital cohort; cohort arguments "
            f"{sorted(cohort_kwargs)} do not apply to it"
        )
    subjects = validate_dataset(bids_dir)
    return {
        "bids_dir": bids_dir,
        "subjects": subjects,
        "is_simulated": cohort_dir,
        "parameters": parameters,
        "regenerated": regenerated,
    }


# ============================================================================ noise
def estimate_noise_sigma(magnitude: np.ndarray, cut: float = 2.0, n_iter: int = 50) -> float:
    """Noise standard deviation per real/imaginary part from the background of magnitude images.

    In background voxels the magnitude of complex Gaussian noise is Rayleigh distributed with
    scale ``sigma``. The estimate is the maximum-likelihood scale of a Rayleigh distribution
    truncated to ``[0, t]`` and fitted to the magnitudes below ``t = cut * sigma``, iterated to
    a fixed point (the lower part of the histogram, as Sijbers et al. 2007, Phys Med Biol
    52:1335): setting the derivative of the truncated log-likelihood to zero gives

    ``sigma^2 = (mean(x^2) + t^2 e^(-a) / (1 - e^(-a))) / 2``, with ``a = t^2 / (2 sigma^2)``.

    Voxels with signal lie far above ``t`` and do not enter. Start: the 5 % quantile of all
    magnitudes over the Rayleigh 5 % quantile (an overestimate unless every voxel is background).

    Parameters
    ----------
    magnitude : array_like
        Magnitude images (any shape; all voxels pooled). Needs background (air) voxels.
    cut : float
        Truncation point in units of sigma (2: 86 % of the background enters).
    n_iter : int
        Fixed-point iterations.

    Returns
    -------
    float
        sigma (image units); 0 for noise-free images with an exactly zero background.
    """
    if not (np.isfinite(cut) and cut > 0.5):
        raise ValueError(f"cut (noise standard deviations) must be > 0.5, got {cut!r}")
    m = np.abs(np.asarray(magnitude, dtype=float)).ravel()
    m = m[np.isfinite(m)]
    if m.size == 0:
        raise ValueError("magnitude has no finite voxel to estimate the noise from")
    sigma = float(np.quantile(m, 0.05) / np.sqrt(-2 * np.log(0.95)))
    for _ in range(int(n_iter)):  # fixed-point iterations, not voxels
        if sigma == 0:
            return 0.0
        t = cut * sigma
        x = m[m < t]
        if x.size < 10:
            raise ValueError("too few background voxels to estimate the noise level")
        a = t**2 / (2 * sigma**2)
        update = np.sqrt((np.mean(x**2) + t**2 * np.exp(-a) / -np.expm1(-a)) / 2)
        converged = abs(update - sigma) <= 1e-6 * sigma
        sigma = float(update)
        if converged:
            break
    return sigma


def noise_sigma(
    bids_dir: str | Path, config: PipelineConfig, magnitude: np.ndarray, acquisition: str = "mp2rage"
) -> float:
    """Noise standard deviation of one acquisition (module docstring: configuration, cohort, background).

    Parameters
    ----------
    bids_dir : path-like
    config : PipelineConfig
    magnitude : ndarray
        Magnitude images of the acquisition (for the background estimate).
    acquisition : {"mp2rage", "sir"}

    Returns
    -------
    float
        sigma (image units), 0 for noise-free data.
    """
    if acquisition not in ("mp2rage", "sir"):
        raise ValueError(f"acquisition must be 'mp2rage' or 'sir', got {acquisition!r}")
    given = config.sigma if acquisition == "mp2rage" else config.sir_sigma
    if given is not None:
        return float(given)
    params = cohort_parameters(bids_dir)
    if params is not None:
        return float(params["noise_sigma" if acquisition == "mp2rage" else "sir_noise_sigma"])
    return estimate_noise_sigma(magnitude)


# ============================================================================ estimation
@lru_cache(maxsize=8)
def _seed_model(protocol: MPnRAGEProtocol, sigma: float, trials: int, bins: int, threshold: float, seed: int) -> SeedMAPModel:
    return SeedMAPModel(protocol, sigma, n_trials=trials, seed=seed, n_bins=bins, likelihood_threshold=threshold)


def seed_map_model(
    protocol: MPnRAGEProtocol, sigma: float, config: PipelineConfig, work_dir: str | Path | None = None
) -> SeedMAPModel:
    """The seed's MAP model (its Monte-Carlo histogram) for ``protocol`` and ``sigma``.

    Built once per process; with ``work_dir``, also stored as a pickle under
    ``work_dir/cache/`` (keyed by the protocol, ``sigma``, the seed-MAP fields of ``config`` and
    the qt1lib version) and reused by later processes.
    """
    args = (protocol, float(sigma), int(config.seed_map_trials), int(config.seed_map_bins),
            float(config.seed_likelihood_threshold), int(config.random_seed))
    if work_dir is None:
        return _seed_model(*args)
    key = hashlib.sha256(
        json.dumps([__version__, protocol.describe(), *args[1:]], sort_keys=True, default=str).encode()
    ).hexdigest()[:24]
    path = Path(work_dir) / "cache" / f"seed_map_{key}.pkl"
    if path.is_file():
        try:
            model = pickle.loads(path.read_bytes())
            if isinstance(model, SeedMAPModel):
                return model
        except Exception:  # a damaged cache entry is rebuilt
            pass
    model = _seed_model(*args)
    atomic_write_bytes(path, pickle.dumps(model))
    return model


def _clip_b1(b1: np.ndarray) -> np.ndarray:
    """B1 clipped into the dictionaries' grid (:data:`qt1lib.estimate.lut.DEFAULT_B1_GRID`)."""
    lo, hi, _ = DEFAULT_B1_GRID
    return np.clip(np.asarray(b1, dtype=float), lo, hi)


def estimate_t1(
    name: str,
    gre: np.ndarray,
    protocol: MPnRAGEProtocol,
    sigma: float,
    config: PipelineConfig,
    b1: np.ndarray | float | None = None,
    work_dir: str | Path | None = None,
) -> PosteriorT1:
    """T1 of voxels by one estimator of :data:`ESTIMATORS`.

    Parameters
    ----------
    name : str
        Estimator.
    gre : array_like, complex, shape (protocol.n_readouts, ...)
        GRE images of every readout (image units).
    protocol : MPnRAGEProtocol
        The acquisition (every readout); the estimator takes its view of ``spec.readouts``.
    sigma : float
        Noise standard deviation per real/imaginary part (image units); 0 (noise-free data) is
        replaced by :data:`NOISE_FREE_SIGMA`. The seed MAP uses it (unless
        ``config.seed_map_sigma`` is set) as the seed does, as if M0 x receive gain were 1.
    config : PipelineConfig
    b1 : array_like or float, optional
        Measured relative B1+ (broadcast to the voxel shape), needed by estimators with
        ``b1 != "none"``; clipped into 0.3..2.0 (the dictionaries' grid).
    work_dir : path-like, optional
        Cache folder of the seed MAP model (:func:`seed_map_model`).

    Returns
    -------
    PosteriorT1
        For the lookup tables ``map`` = ``mean`` = the T1 read, ``std`` NaN and ``valid`` where finite.

    Raises
    ------
    ValueError
        Unknown estimator, wrong number of readouts, a readout the protocol lacks, or a missing B1 map.
    """
    spec = estimator_spec(name)
    gre = np.asarray(gre)
    if gre.ndim < 1 or gre.shape[0] != protocol.n_readouts:
        raise ValueError(f"gre must have shape ({protocol.n_readouts}, ...) for protocol {protocol.name!r}, got {gre.shape}")
    if max(spec.readouts) > protocol.n_readouts:
        raise ValueError(
            f"estimator {name!r} needs readouts {spec.readouts}; protocol {protocol.name!r} has {protocol.n_readouts}"
        )
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
    sigma = float(sigma) if sigma > 0 else NOISE_FREE_SIGMA
    b1_used = None
    if spec.b1 != "none":
        if b1 is None:
            raise ValueError(f"estimator {name!r} needs a B1+ map (b1)")
        b1_used = np.broadcast_to(_clip_b1(b1), gre.shape[1:])
    # one name for every subject's acquisition, so that the dictionaries and histograms (cached per
    # protocol) are built once for equal protocols read from different subjects' sidecars
    protocol = protocol.with_changes(name="acquisition", source="")
    view = protocol.view(spec.readouts)
    if spec.method == "lut":
        t1 = lut_t1(uni(gre[0], gre[1]), protocol, b1_used)
        return PosteriorT1(t1, t1, np.full(t1.shape, np.nan), np.isfinite(t1))
    if spec.method == "seed":
        s = np.stack([uni(gre[i - 1], gre[j - 1]) for i, j in view.pairs])
        return seed_map_model(view, config.seed_map_sigma or sigma, config, work_dir).fit(s)
    model = ExactMAPModel(view, sigma, scale_prior=config.scale_prior)
    return model.fit(gre, b1=b1_used, b1_sd=config.b1_sd if spec.b1 == "marginal" else 0.0)


# ============================================================================ derivative groups
@dataclass(frozen=True)
class DerivativeEntry:
    """One derivative image of a cached group (:func:`cached_maps`).

    Attributes
    ----------
    suffix, desc, space : str
        BIDS name pieces (:func:`qt1lib.bids.derivative_path`).
    kind : {"float", "mask", "label"}
        Storage: float32, uint8 read back as bool, int16.
    units : str, optional
        ``Units`` of the sidecar.
    """

    suffix: str
    desc: str | None = None
    space: str | None = None
    kind: str = "float"
    units: str | None = None


def _load_group(bids_dir: Path, subject: str, entries: Mapping[str, DerivativeEntry], key: str) -> dict | None:
    out = {}
    for name, e in entries.items():
        img = read_cached(derivative_path(bids_dir, subject, e.suffix, desc=e.desc, space=e.space), key)
        if img is None:
            return None
        data = np.asarray(img.dataobj)
        out[name] = data.astype(bool) if e.kind == "mask" else data.astype(np.int16 if e.kind == "label" else np.float32)
    return out


def _write_group(
    bids_dir: Path, subject: str, entries: Mapping[str, DerivativeEntry], maps: Mapping[str, np.ndarray], affine: np.ndarray,
    key: str, parameters: Mapping,
) -> None:
    for name, e in entries.items():
        data = np.asarray(maps[name])
        if e.kind == "mask":
            data = data.astype(np.uint8)
        elif e.kind == "label":
            data = data.astype(np.int16)
        else:
            data = data.astype(np.float32)
        sidecar = {"Description": name} | ({"Units": e.units} if e.units else {})
        write_derivative(
            bids_dir, subject, data, affine, e.suffix, desc=e.desc, space=e.space,
            parameters=parameters, key=key, sidecar=sidecar,
        )


def cached_maps(
    bids_dir: Path,
    subject: str,
    entries: Mapping[str, DerivativeEntry],
    parameters: Mapping,
    affine: np.ndarray,
    compute: Callable[[], Mapping[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """A group of derivative maps of one subject, from the cache or computed and written.

    The cache key is :func:`qt1lib.bids.cache_key` of ``parameters`` and the subject's raw
    files. If every entry's sidecar holds that key, the maps are read back; otherwise
    ``compute()`` (returning a map for every entry name) runs and each map is written atomically
    with its sidecar (:func:`qt1lib.bids.write_derivative`, which writes the key last).
    """
    key = cache_key(parameters, bids_dir, subject)
    hit = _load_group(bids_dir, subject, entries, key)
    if hit is not None:
        return hit
    maps = compute()
    _write_group(bids_dir, subject, entries, maps, affine, key, parameters)
    return {name: maps[name] for name in entries}


def _estimator_entries(name: str, space: str | None = None) -> dict[str, DerivativeEntry]:
    spec = estimator_spec(name)
    entries = {name: DerivativeEntry("T1map", spec.desc, space, units="s")}
    if spec.posterior:
        entries[f"{name}_std"] = DerivativeEntry("T1map", f"{spec.desc}std", space, units="s")
        entries[f"{name}_valid"] = DerivativeEntry("mask", f"{spec.desc}valid", space, kind="mask")
    return entries


# ============================================================================ masks
def _find_user_derivative(
    bids_dir: Path, subject: str, suffix: str, *, space: str | None = None, desc: str | None = None
) -> Path | None:
    """The user's ``sub-<label>_..._<suffix>.nii[.gz]`` with entity ``space`` (None: no space entity) and,
    if given, ``desc``, under ``derivatives/<pipeline>/sub-<label>/`` for any pipeline but qt1lib and phantom."""
    root = bids_dir / "derivatives"
    if not root.is_dir():
        return None
    found = []
    for path in sorted(root.glob(f"*/sub-{subject}/**/sub-{subject}_*{suffix}.nii*")):
        if path.relative_to(root).parts[0] in (PIPELINE, "phantom"):
            continue
        name = parse_name(path)
        if name.suffix == suffix and name.entities.get("space") == space and (desc is None or name.entities.get("desc") == desc):
            found.append(path)
    if len(found) > 1:
        raise ValueError(f"several user derivatives could be the {suffix} of sub-{subject}: {[str(p) for p in found]}")
    return found[0] if found else None


def _load_on_grid(path: Path, shape: tuple, affine: np.ndarray, what: str) -> np.ndarray:
    img = nib.load(path)
    if img.shape != tuple(shape) or not np.allclose(img.affine, affine, atol=1e-4):
        raise ValueError(f"{path}: the {what} must lie on the grid of its images (shape {tuple(shape)}, same affine)")
    return np.asarray(img.dataobj)


def _signal_mask(magnitude: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Voxels whose largest magnitude (over the first axis) exceeds ``threshold * sigma``."""
    return np.abs(magnitude).max(axis=0) > threshold * sigma


def brain_mask(
    bids_dir: str | Path, subject: str, gre: np.ndarray, affine: np.ndarray, sigma: float, config: PipelineConfig
) -> tuple[np.ndarray, str]:
    """Brain mask on the MP2RAGE grid and where it came from (module docstring).

    Returns
    -------
    mask : ndarray of bool
    source : str
        ``"cohort segmentation"``, the path of the user's mask, or ``"signal rule"``.
    """
    bids_dir = Path(bids_dir)
    shape = np.shape(gre)[1:]
    if is_simulated(bids_dir):
        from .phantom import load_truth

        dseg = load_truth(bids_dir, subject)["dseg"]
        if dseg.shape != shape:
            raise ValueError(f"the cohort's dseg of sub-{subject} has shape {dseg.shape}, its images {shape}")
        return dseg > 0, "cohort segmentation"
    user = _find_user_derivative(bids_dir, subject, "mask", desc="brain")
    if user is not None:
        return _load_on_grid(user, shape, affine, "brain mask") > 0, str(user.relative_to(bids_dir))
    mask = _signal_mask(gre, sigma, config.signal_threshold)
    labels, n = ndimage.label(mask)
    if n == 0:
        raise ValueError(f"sub-{subject}: no voxel exceeds {config.signal_threshold} noise standard deviations")
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(labels == largest), "signal rule"


def estimation_region(brain: np.ndarray, config: PipelineConfig) -> np.ndarray:
    """Voxels where T1 is estimated: ``brain`` dilated by ``config.mask_dilation`` voxels."""
    brain = np.asarray(brain, dtype=bool)
    return ndimage.binary_dilation(brain, iterations=config.mask_dilation) if config.mask_dilation else brain


# ============================================================================ MP2RAGE space
def _mp2rage(
    bids_dir: Path, subject: str, config: PipelineConfig, work_dir, estimators, progress: bool
) -> tuple[dict, dict]:
    """Maps on the MP2RAGE grid and the cache parameters of each estimator's group."""
    from tqdm.auto import tqdm

    data = read_mpnrage(bids_dir, subject)
    protocol = data.protocol
    requested = DEFAULT_ESTIMATORS if estimators is None else tuple(estimators)
    for name in requested:
        spec = estimator_spec(name)
        if max(spec.readouts) > protocol.n_readouts and estimators is not None:
            raise ValueError(f"estimator {name!r} needs readouts {spec.readouts}; sub-{subject} has {protocol.n_readouts}")
        if spec.b1 != "none" and data.b1 is None:
            raise ValueError(
                f"estimator {name!r} needs a B1+ map; sub-{subject} has no fmap/*_TB1map "
                "(pass estimators= without the B1-aware ones)"
            )
    names = [n for n in requested if max(ESTIMATORS[n].readouts) <= protocol.n_readouts]
    sigma = noise_sigma(bids_dir, config, np.abs(data.gre), "mp2rage")
    brain, brain_source = brain_mask(bids_dir, subject, data.gre, data.affine, sigma, config)
    region = estimation_region(brain, config)
    base = {"sigma": sigma, "brain": brain_source, "mask_dilation": config.mask_dilation, "protocol": protocol.describe()}

    out: dict[str, Any] = {"affine": data.affine, "sigma": sigma, "b1": data.b1, "protocol": protocol}
    combos = {"uni": (1, 2)} | ({"s13": (1, 3)} if protocol.n_readouts >= 3 else {})
    entries = {k: DerivativeEntry("UNIT1", f"S{i}{j}") for k, (i, j) in combos.items()}
    entries["brain"] = DerivativeEntry("mask", "brain", kind="mask")

    def combinations() -> dict:
        maps = {k: uni(data.gre[i - 1], data.gre[j - 1]) for k, (i, j) in combos.items()}
        return maps | {"brain": brain}

    out.update(cached_maps(bids_dir, subject, entries, {"step": "combinations", **base}, data.affine, combinations))
    params = {}
    for name in tqdm(names, desc=f"sub-{subject} T1 maps", disable=not progress, leave=False):
        spec = ESTIMATORS[name]
        params[name] = {"step": "mp2rage_t1", **base, **config.estimator_parameters(name)}

        def compute(name=name, spec=spec) -> dict:
            post = estimate_t1(
                name, data.gre[:, region], protocol, sigma, config,
                b1=None if spec.b1 == "none" else data.b1[region], work_dir=work_dir,
            )
            maps = {name: _scatter(post.map, region)}
            if spec.posterior:
                maps[f"{name}_std"] = _scatter(post.std, region)
                maps[f"{name}_valid"] = _scatter(post.valid, region, False)
            return maps

        out.update(cached_maps(bids_dir, subject, _estimator_entries(name), params[name], data.affine, compute))
    return out, params


def _scatter(values: np.ndarray, region: np.ndarray, fill: float | bool = np.nan) -> np.ndarray:
    out = np.full(region.shape, fill, dtype=bool if isinstance(fill, bool) else np.float32)
    out[region] = values
    return out


def mp2rage_maps(
    bids_dir: str | Path,
    subject: str,
    config: PipelineConfig | None = None,
    work_dir: str | Path | None = None,
    *,
    estimators: Iterable[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """T1 maps on the MP2RAGE grid, cached as BIDS derivatives.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root (derivatives go to ``derivatives/qt1lib``).
    subject : str
        Label without ``sub-``.
    config : PipelineConfig, optional
        Default ``PipelineConfig()``.
    work_dir : path-like, optional
        Cache folder of the seed MAP's Monte-Carlo histograms (:func:`seed_map_model`).
    estimators : iterable of str, optional
        Names of :data:`ESTIMATORS`; default :data:`DEFAULT_ESTIMATORS` (without the MP3RAGE
        ones when the data have two readouts).
    progress : bool
        Show a progress bar over the estimators.

    Returns
    -------
    dict
        Per estimator ``<name>`` (T1, s) and, for the MAP estimators, ``<name>_std`` (posterior
        std, s) and ``<name>_valid`` (bool); NaN / False outside the estimation mask.
        ``"uni"`` (S_12) and ``"s13"`` (S_13, MP3RAGE), ``"b1"`` (the measured B1+ map or None),
        ``"brain"`` (bool), ``"affine"``, ``"sigma"`` (the noise level used) and ``"protocol"``.
    """
    config = config or PipelineConfig()
    out, _ = _mp2rage(Path(bids_dir), subject, config, work_dir, estimators, progress)
    return out


# ============================================================================ SIR space
_SIR_ENTRIES = {
    "r1f": DerivativeEntry("R1map", "SIR", "SIR", units="1/s"),
    "ir_t1": DerivativeEntry("T1map", "SIR", "SIR", units="s"),
    "psr": DerivativeEntry("PSRmap", "SIR", "SIR"),
    "sf": DerivativeEntry("Sfmap", "SIR", "SIR"),
    "m0f": DerivativeEntry("M0map", "SIR", "SIR"),
    "converged": DerivativeEntry("mask", "SIRconverged", "SIR", kind="mask"),
    "at_bound": DerivativeEntry("mask", "SIRatbound", "SIR", kind="mask"),
    "fit_mask": DerivativeEntry("mask", "SIRfit", "SIR", kind="mask"),
}


def _sir(bids_dir: Path, subject: str, config: PipelineConfig) -> tuple[dict, dict]:
    """SIR maps and their cache parameters."""
    data = read_sir(bids_dir, subject)
    sigma = noise_sigma(bids_dir, config, data.images, "sir")
    params = {
        "step": "sir_fit",
        "sir_sigma": sigma,
        "signal_threshold": config.signal_threshold,
        "kmf": KMF_HUMAN_BRAIN,
        "protocol": data.protocol.describe(),
    }

    def compute() -> dict:
        mask = _signal_mask(data.images, sigma, config.signal_threshold)
        fit = fit_sir(data.images[:, mask], data.protocol)
        maps = {name: _scatter(getattr(fit, name), mask) for name in ("r1f", "psr", "sf", "m0f")}
        maps["ir_t1"] = _scatter(1.0 / fit.r1f, mask)
        maps["converged"] = _scatter(fit.converged, mask, False)
        maps["at_bound"] = _scatter(fit.at_bound, mask, False)
        return maps | {"fit_mask": mask}

    out = cached_maps(bids_dir, subject, _SIR_ENTRIES, params, data.affine, compute)
    return out | {"affine": data.affine, "sigma": sigma, "protocol": data.protocol}, params


def sir_maps(bids_dir: str | Path, subject: str, config: PipelineConfig | None = None) -> dict[str, Any]:
    """Two-pool SIR fit on the SIR grid (:func:`qt1lib.estimate.sir_fit.fit_sir`), cached.

    The fit runs on the SIR signal mask (module docstring) with the fit's defaults: R1m = R1f,
    kmf = 14.5 s^-1, Sm from the sidecars (Dortch et al. 2011).

    Returns
    -------
    dict
        ``"r1f"`` (s^-1), ``"ir_t1"`` = 1/R1f (s), ``"psr"``, ``"sf"``, ``"m0f"`` (NaN outside
        the fit mask), ``"converged"``, ``"at_bound"``, ``"fit_mask"`` (bool), ``"affine"``,
        ``"sigma"`` (SIR noise level used) and ``"protocol"``.
    """
    return _sir(Path(bids_dir), subject, config or PipelineConfig())[0]


def _xfm_path(bids_dir: Path, subject: str) -> Path:
    return derivative_path(bids_dir, subject, "xfm", desc="MP2RAGEtoSIR", datatype="xfm", extension=".json")


def _registration_parameters(config: PipelineConfig, mp2_params: Mapping, sir_params: Mapping) -> dict:
    p = {
        "step": "registration",
        "contrast": config.registration_contrast,
        "bins": config.registration_bins,
        "random_seed": config.random_seed,
        "type": "Rigid",
        "metric": "mattes",
    }
    if config.registration_contrast == "t1":
        p |= {"moving": dict(mp2_params), "fixed": dict(sir_params)}
    return p


def _rigid_transform(
    bids_dir: str | Path, subject: str, mp2: Mapping, sir: Mapping, parameters: Mapping
) -> RigidTransform:
    """The SIR -> MP2RAGE rigid transform of a subject (:func:`qt1lib.register.register_rigid`), cached.

    Parameters
    ----------
    bids_dir, subject
    mp2 : mapping
        :func:`mp2rage_maps` output (``"lut"`` needed for the ``"t1"`` contrast).
    sir : mapping
        :func:`sir_maps` output.
    parameters : mapping
        Its cache parameters (``"contrast"``: ``"inv2"`` or ``"t1"``, ``"bins"``, ``"random_seed"``).

    Returns
    -------
    RigidTransform
        Fixed (SIR) world point -> moving (MP2RAGE) world point. Stored as JSON in
        ``derivatives/qt1lib/sub-<label>/xfm/sub-<label>_desc-MP2RAGEtoSIR_xfm.json``.
    """
    bids_dir = Path(bids_dir)
    key = cache_key(parameters, bids_dir, subject)
    path = _xfm_path(bids_dir, subject)
    if path.is_file():
        try:
            stored = load_json(path)
            if stored.get("CacheKey") == key:
                return RigidTransform(np.asarray(stored["FixedToMovingRAS"], dtype=float))
        except (ValueError, KeyError):
            pass  # damaged: recompute
    sir_data = read_sir(bids_dir, subject)
    if parameters["contrast"] == "inv2":
        mp2_data = read_mpnrage(bids_dir, subject)
        moving = np.abs(mp2_data.gre[1])
        fixed = sir_data.images[int(np.argmax(sir_data.protocol.inversion_times))]
    else:
        moving = np.nan_to_num(np.clip(mp2["lut"], 0.0, 5.0))
        fixed = np.nan_to_num(np.clip(sir["ir_t1"], 0.0, 5.0))
    transform = register_rigid(
        fixed, sir_data.affine, moving, mp2["affine"], seed=int(parameters["random_seed"]), bins=int(parameters["bins"])
    )
    save_json(
        {
            "FixedToMovingRAS": transform.matrix,
            "Description": "maps SIR-space world points (RAS, mm) to MP2RAGE-space world points",
            "Parameters": dict(parameters),
            "CacheKey": key,
            "GeneratedBy": {"Name": "qt1lib", "Version": __version__},
        },
        path,
    )
    return transform


def resample_to_sir(
    image: np.ndarray, affine: np.ndarray, transform: RigidTransform, shape: tuple, sir_affine: np.ndarray, kind: str = "float"
) -> np.ndarray:
    """An MP2RAGE-grid image resampled onto the SIR grid.

    Parameters
    ----------
    image, affine : ndarray
        The image on the MP2RAGE grid and its RAS affine.
    transform : RigidTransform
        SIR world -> MP2RAGE world.
    shape, sir_affine
        The SIR grid.
    kind : {"float", "mask", "label"}
        ``"float"``: linear interpolation (as the seed's ``antsApplyTransforms -n Linear``); a NaN
        voxel spreads NaN to the SIR voxels whose interpolation touches it, and SIR voxels that
        fall outside the MP2RAGE grid are NaN. ``"mask"`` / ``"label"``: ``genericLabel``, 0 outside.
    """
    if kind not in ("float", "mask", "label"):
        raise ValueError(f"kind must be 'float', 'mask' or 'label', got {kind!r}")
    if kind == "float":
        out = apply_transform(transform, image, affine, shape, sir_affine, "linear", default_value=0.0)
        ijk = np.indices(shape).reshape(3, -1).T.astype(float)
        world = transform.apply_to_points(ijk @ np.asarray(sir_affine)[:3, :3].T + np.asarray(sir_affine)[:3, 3])
        inv = np.linalg.inv(affine)
        vox = world @ inv[:3, :3].T + inv[:3, 3]
        inside = np.all((vox >= 0) & (vox <= np.asarray(np.shape(image)) - 1), axis=1).reshape(shape)
        return np.where(inside, out, np.nan).astype(np.float32)
    out = apply_transform(transform, np.asarray(image, dtype=np.float32), affine, shape, sir_affine, "genericLabel")
    return out > 0.5 if kind == "mask" else np.rint(out).astype(np.int16)


def _sir_segmentation(
    bids_dir: Path, subject: str, shape: tuple, affine: np.ndarray, transform: RigidTransform
) -> tuple[np.ndarray, str]:
    """Tissue labels on the SIR grid and where they came from (module docstring)."""
    if is_simulated(bids_dir):
        from .phantom import load_truth

        return load_truth(bids_dir, subject, "SIR")["dseg"].astype(np.int16), "cohort segmentation"
    user = _find_user_derivative(bids_dir, subject, "dseg", space="SIR")
    if user is not None:
        return _load_on_grid(user, shape, affine, "SIR-space dseg").astype(np.int16), str(user.relative_to(bids_dir))
    native = _find_user_derivative(bids_dir, subject, "dseg")
    if native is not None:
        img = nib.load(native)
        dseg = resample_to_sir(np.asarray(img.dataobj), img.affine, transform, shape, affine, "label")
        return dseg, str(native.relative_to(bids_dir))
    raise ValueError(
        f"sub-{subject}: no tissue segmentation. Provide derivatives/<pipeline>/sub-{subject}/anat/"
        f"sub-{subject}_space-SIR_dseg.nii.gz (on the SIR grid) or sub-{subject}_dseg.nii.gz (on the MP2RAGE "
        "grid) with labels 1 WM, 2 subcortical GM, 3 cortical GM (4 CSF, 0 background)"
    )


def sir_space_subject(
    bids_dir: str | Path,
    subject: str,
    config: PipelineConfig | None = None,
    work_dir: str | Path | None = None,
    *,
    estimators: Iterable[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every MP2RAGE map of a subject resampled into SIR space, with the SIR fit and the segmentation.

    Parameters
    ----------
    bids_dir, subject, config, work_dir, estimators, progress
        As :func:`mp2rage_maps`.

    Returns
    -------
    dict
        The maps of :func:`mp2rage_maps` (``<name>``, ``<name>_std``, ``<name>_valid``, ``"uni"``,
        ``"s13"``, ``"b1"``) on the SIR grid (cached as ``space-SIR`` derivatives); the maps of
        :func:`sir_maps` (``"ir_t1"``, ``"r1f"``, ``"psr"``, ``"converged"``...); ``"dseg"``
        (int, 1 WM, 2 subcortical GM, 3 cortical GM, 4 CSF) and its ``"dseg_source"``;
        ``"brain"`` (``dseg > 0``); ``"transform"`` (:class:`~qt1lib.register.RigidTransform`,
        SIR -> MP2RAGE world); ``"true_transform"`` and ``"registration_error_mm"`` (mean
        displacement error over the brain, :func:`qt1lib.register.registration_error`) for the
        digital cohort, None for real data; ``"affine"`` and ``"shape"`` of the SIR grid;
        ``"mp2rage_affine"``; ``"sigma"`` (MP2RAGE), ``"sir_sigma"`` and ``"sir_protocol"``.
    """
    from tqdm.auto import tqdm

    bids_dir = Path(bids_dir)
    config = config or PipelineConfig()
    names = None if estimators is None else list(estimators)  # None: the defaults, which include "lut"
    if config.registration_contrast == "t1" and names is not None and "lut" not in names:
        names.append("lut")  # the moving image of the T1-to-T1 registration
    mp2, mp2_params = _mp2rage(bids_dir, subject, config, work_dir, names, progress)
    sir, sir_params = _sir(bids_dir, subject, config)
    shape, affine = sir["ir_t1"].shape, sir["affine"]
    reg_params = _registration_parameters(config, mp2_params.get("lut", {}), sir_params)
    transform = _rigid_transform(bids_dir, subject, mp2, sir, reg_params)

    out: dict[str, Any] = {k: v for k, v in sir.items() if k not in ("affine", "sigma", "protocol")}
    sources: dict[str, tuple[DerivativeEntry, Mapping]] = {}
    for name, params in mp2_params.items():
        for entry_name, entry in _estimator_entries(name, "SIR").items():
            sources[entry_name] = (entry, params)
    for name, desc in (("uni", "S12"), ("s13", "S13")):
        if name in mp2:
            sources[name] = (DerivativeEntry("UNIT1", desc, "SIR"), {"step": "combinations", "sigma": mp2["sigma"]})
    if mp2["b1"] is not None:
        sources["b1"] = (DerivativeEntry("TB1map", "measured", "SIR"), {"step": "b1"})
    for name, (entry, params) in tqdm(sources.items(), desc=f"sub-{subject} to SIR space", disable=not progress, leave=False):

        def compute(name=name, kind=entry.kind) -> dict:
            return {name: resample_to_sir(mp2[name], mp2["affine"], transform, shape, affine, kind)}

        params = {"step": "to_sir", "source": dict(params), "registration": reg_params}
        out.update(cached_maps(bids_dir, subject, {name: entry}, params, affine, compute))
    dseg, dseg_source = _sir_segmentation(bids_dir, subject, shape, affine, transform)
    true_transform = error = None
    if is_simulated(bids_dir):
        from .phantom import load_motion

        true_transform = RigidTransform(load_motion(bids_dir, subject).session_to_subject)
        error = registration_error(transform, true_transform.matrix, dseg > 0, affine)
    return out | {
        "dseg": dseg,
        "dseg_source": dseg_source,
        "brain": dseg > 0,
        "transform": transform,
        "true_transform": true_transform,
        "registration_error_mm": error,
        "affine": affine,
        "shape": shape,
        "mp2rage_affine": mp2["affine"],
        "sigma": mp2["sigma"],
        "sir_sigma": sir["sigma"],
        "sir_protocol": sir["protocol"],
    }


# ============================================================================ calibration
def calibration_subjects(
    bids_dir: str | Path,
    config: PipelineConfig | None = None,
    *,
    subjects: Iterable[str] | None = None,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, SubjectData]:
    """Per-subject data of the calibration network, in SIR space.

    Parameters
    ----------
    bids_dir : path-like
    config : PipelineConfig, optional
        ``calibration_input`` chooses the T1 map (default the seed's MAP MP2RAGE).
    subjects : iterable of str, optional
        Labels without ``sub-``; default every subject of the dataset.
    work_dir, progress
        As :func:`mp2rage_maps`.

    Returns
    -------
    dict of str to SubjectData
        Keyed ``"sub-<label>"``. ``inputs``: ``"t1"`` (the calibration input in SIR space, s),
        ``"b1"`` (measured B1+, when there is a map) and ``"t1_std"`` (its posterior std, for MAP
        inputs); ``target``: IR T1 = 1/R1f (s); ``labels``: the SIR-space dseg; ``mask``: brain,
        labels 1..3 (:data:`qt1lib.stats.TISSUE_LABELS`), converged SIR fit, and every input and
        the target finite.
    """
    from tqdm.auto import tqdm

    config = config or PipelineConfig()
    labels_wanted = sorted(TISSUE_LABELS)
    names = list_subjects(bids_dir) if subjects is None else list(subjects)
    name = config.calibration_input
    out = {}
    for subject in tqdm(names, desc="calibration subjects", disable=not progress):
        s = sir_space_subject(bids_dir, subject, config, work_dir, estimators=(name,), progress=progress)
        inputs = {"t1": s[name]}
        if s.get("b1") is not None:
            inputs["b1"] = s["b1"]
        if ESTIMATORS[name].posterior:
            inputs["t1_std"] = s[f"{name}_std"]
        target = s["ir_t1"].astype(float)
        mask = s["brain"] & np.isin(s["dseg"], labels_wanted) & s["converged"] & np.isfinite(target)
        for value in inputs.values():
            mask &= np.isfinite(value)
        out[f"sub-{subject}"] = SubjectData(inputs=inputs, target=target, mask=mask, labels=s["dseg"].astype(np.int64))
    return out


#: BIDS ``desc`` entity of each calibration method's map (:data:`qt1lib.calibrate.METHODS`).
CALIBRATED_DESC: dict[str, str] = {
    "global_linear": "GlobalLinear",
    "tissue_linear": "TissueLinear",
    "resnet": "ResNet",
}


def write_calibrated_maps(
    bids_dir: str | Path,
    maps: Mapping[str, Mapping[str, np.ndarray]],
    config: PipelineConfig | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write held-out calibrated T1 maps as SIR-space derivatives, atomically.

    Parameters
    ----------
    bids_dir : path-like
    maps : mapping
        ``maps["sub-<label>"][method]``: the calibrated T1 map (s) of a held-out subject on its
        SIR grid (:attr:`qt1lib.calibrate.CrossValidationResult.maps`); methods without a
        ``desc`` in :data:`CALIBRATED_DESC` (``"none"``, the input itself) are not written.
    config : PipelineConfig, optional
        Locates the SIR grid (its affine) through the cached SIR fit.
    parameters : mapping, optional
        Provenance recorded in each sidecar (``Parameters``): e.g. the network's configuration,
        the seed and the cross-validation's result key.

    Returns
    -------
    list of Path
        ``derivatives/qt1lib/sub-<label>/anat/sub-<label>_space-SIR_desc-<Method>_T1map.nii.gz``.

    Raises
    ------
    ValueError
        If a subject key lacks the ``sub-`` prefix or a map's shape is not the SIR grid's.
    """
    config = config or PipelineConfig()
    written = []
    for name, by_method in maps.items():
        if not name.startswith("sub-"):
            raise ValueError(f"maps must be keyed 'sub-<label>', got {name!r}")
        subject = name.removeprefix("sub-")
        sir = sir_maps(bids_dir, subject, config)
        for method, desc in CALIBRATED_DESC.items():
            if method not in by_method:
                continue
            data = np.asarray(by_method[method], dtype=np.float32)
            if data.shape != sir["ir_t1"].shape:
                raise ValueError(
                    f"{name} {method} map has shape {data.shape}, expected the SIR grid's {sir['ir_t1'].shape}"
                )
            written.append(write_derivative(
                bids_dir, subject, data, sir["affine"], "T1map", desc=desc, space="SIR",
                parameters={"step": "calibration", "method": method, **dict(parameters or {})},
                sidecar={"Units": "s", "Description": f"T1 calibrated to IR T1 = 1/R1f by {method}, "
                         "held out of the network's training (leave-one-subject-out)"},
            ))
    return written
