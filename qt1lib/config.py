"""One study configuration: the digital cohort, the pipeline and the calibration network, per profile.

A :class:`StudyConfig` holds everything that defines a run of the study, in three parts:

``cohort``       :class:`CohortConfig`: the digital cohort's arguments of
                 :func:`qt1lib.phantom.make_cohort` (voxel sizes, seeds, noise, motion, bound pool);
``pipeline``     :class:`PipelineConfig`: the per-subject derivatives (noise, seed MAP, B1,
                 registration, masks);
``calibration``  :class:`qt1lib.calibrate.CalibrationConfig`: the network of chapters 06 and 07.

The build profiles live here and nowhere else (DESIGN.md section 3):

``smoke``  tiny parameters that only check that every chapter runs (tests);
``quick``  the embedded default (2 mm cohort, small Monte-Carlo and patch sets), what ``make book`` builds;
``paper``  the study at full size (1 mm cohort, 1e6 seed-MAP trials, width-64 networks).

:data:`PROFILE_SETTINGS` is what each profile changes in the three parts;
:data:`CHAPTER_PARAMETERS` holds the per-chapter knobs that belong to no part (``n_t1``,
``n_trials``, ``max_voxels``, ``ba_points``...), and :data:`CHAPTER_STUDY_PARAMETERS` names the
notebook parameters that are study settings; :func:`chapter_parameters` gives the runner
(:mod:`qt1lib.study`) the papermill parameters of a chapter for a profile.

Typical use (a chapter, after :func:`qt1lib.notebook.check_parameters`)::

    study = StudyConfig.for_profile(profile).with_overrides(seed=seed, width=width, max_epochs=max_epochs)
    study = StudyConfig.from_parameters(parameters)     # the same, from the notebook's parameters
    study.calibration                                   # one CalibrationConfig for chapters 06 and 07

This module imports neither torch nor the estimators (``qt1lib.phantom`` and
``qt1lib.workflow`` import it): :class:`~qt1lib.calibrate.CalibrationConfig` and the estimator
registry are imported when first needed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .sir_noise import SIR_SNR_DEFAULT
from .validate import is_finite_number, require_integer, require_number

if TYPE_CHECKING:  # pragma: no cover
    from .calibrate.config import CalibrationConfig

__all__ = [
    "PROFILES",
    "VOXEL_SIZES",
    "REGISTRATION_CONTRASTS",
    "SELECT_ENTITIES",
    "B1_UNITS",
    "CohortConfig",
    "PipelineConfig",
    "StudyConfig",
    "STUDY_CALIBRATION",
    "PROFILE_SETTINGS",
    "CHAPTER_PARAMETERS",
    "CHAPTER_STUDY_PARAMETERS",
    "chapter_parameters",
]

#: The build profiles, smallest first.
PROFILES: tuple[str, ...] = ("smoke", "quick", "paper")

#: Voxel sizes (mm) per profile: MP3RAGE and SIR. ``quick`` is the embedded 2 mm cohort; the SIR
#: voxels are 1.5 times larger in-plane and twice as thick, like a multi-slice SIR-TSE acquired
#: beside a 3-D MP3RAGE (the seed's SIR resolution is not public: an assumption). ``paper``
#: halves every size; ``smoke`` doubles them, for tests.
VOXEL_SIZES: dict[str, dict[str, tuple[float, float, float]]] = {
    "smoke": {"voxel_size": (4.0, 4.0, 4.0), "sir_voxel_size": (6.0, 6.0, 8.0)},
    "quick": {"voxel_size": (2.0, 2.0, 2.0), "sir_voxel_size": (3.0, 3.0, 4.0)},
    "paper": {"voxel_size": (1.0, 1.0, 1.0), "sir_voxel_size": (1.5, 1.5, 2.0)},
}

#: Contrasts of the rigid registration (:attr:`PipelineConfig.registration_contrast`).
REGISTRATION_CONTRASTS: tuple[str, ...] = ("inv2", "t1")

#: BIDS entities that pick one acquisition of a subject (:attr:`PipelineConfig.select`).
SELECT_ENTITIES: tuple[str, ...] = ("ses", "acq", "run", "echo")

#: Units of a TB1map's values the readers know (:data:`qt1lib.bids.B1_UNITS`, repeated so that this
#: module does not import the readers; tests/test_config.py checks that they agree).
B1_UNITS: tuple[str, ...] = ("ratio", "percent", "degrees")

# The seed MAP's defaults, as :mod:`qt1lib.estimate.map` defines them (``SEED_N_BINS``,
# ``SEED_LIKELIHOOD_THRESHOLD``; MASILab/map_t1_mapping). Repeated here so that this module does
# not import the estimators; tests/test_config.py checks that they agree.
_SEED_N_BINS = 100
_SEED_LIKELIHOOD_THRESHOLD = 0.5


def _check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    return profile




def _from_dict(cls, values: Mapping[str, Any]):
    """``cls(**values)``; unknown keys raise a ValueError naming them and the known ones."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{cls.__name__}.from_dict expects a mapping, got {values!r}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} parameters {unknown}; known: {known}")
    return cls(**values)


# ============================================================================ cohort
@dataclass(frozen=True)
class CohortConfig:
    """The digital cohort's arguments of :func:`qt1lib.phantom.make_cohort` (its cache key).

    Attributes
    ----------
    profile : {"smoke", "quick", "paper"}
        Profile the cohort belongs to; recorded in the cohort's ``parameters.json``.
    voxel_size, sir_voxel_size : tuple of 3 float
        MP3RAGE and SIR voxel sizes (mm); default the profile's (:data:`VOXEL_SIZES`).
    seed : int
        Seed of the image noise and of the B1 map's error; the study seed (chapters 06 and 07
        also seed their patch sampling and network weights with it).
    snr : float
        ``M0 / sigma`` of the MP3RAGE complex noise per real/imaginary part at the seed's 0.7 mm
        voxel; ``inf`` (``None`` in :meth:`to_dict`): noise-free. Default 200 (the seed's 7 T
        noise, sigma 0.005 M0).
    n_subjects : int
        Subjects (the seed study had four).
    anatomy_seed : int
        Seed of deformations, tissue parameters, B1+, receive fields and motion.
    sir_snr : float
        The same as ``snr`` for the SIR images, at the ``paper`` profile's SIR voxel. Default
        :data:`qt1lib.sir_noise.SIR_SNR_DEFAULT` (about 136, derived from the seed's MP2RAGE
        noise by :func:`qt1lib.sir_noise.sir_snr_from_mp2rage`).
    b1_noise : float
        Standard deviation of the measured B1 map's smooth error (relative B1+). Default 0.02.
    motion : bool
        Head-position change between the MP3RAGE and SIR sessions.
    bound_pool : bool
        False simulates single-pool tissue (PSR = 0).
    physics : str
        The cohort's tissue physics, a key of :data:`qt1lib.phantom.physics.COHORT_PHYSICS`:
        ``"literature"`` (default: 7 T pool sizes from the measured fast IR fraction, R1m != R1f,
        Bloch inversion efficiency per tissue, an SIR readout that leaves some free-pool Mz) or
        ``"conservative"`` (the cohort before issue 9).
    """

    profile: str = "quick"
    voxel_size: tuple[float, float, float] = VOXEL_SIZES["quick"]["voxel_size"]
    sir_voxel_size: tuple[float, float, float] = VOXEL_SIZES["quick"]["sir_voxel_size"]
    seed: int = 0
    snr: float = 200.0
    n_subjects: int = 4
    anatomy_seed: int = 0
    sir_snr: float = SIR_SNR_DEFAULT
    b1_noise: float = 0.02
    motion: bool = True
    bound_pool: bool = True
    physics: str = "literature"

    def __post_init__(self) -> None:
        _check_profile(self.profile)
        from .phantom.physics import cohort_physics

        if not isinstance(self.physics, str):
            raise ValueError(f"physics must be a name, got {self.physics!r}")
        cohort_physics(self.physics)
        for name in ("voxel_size", "sir_voxel_size"):
            value = getattr(self, name)
            if (
                isinstance(value, (str, bytes))
                or not isinstance(value, Iterable)
                or len(value := tuple(value)) != 3
                or not all(is_finite_number(v) and v > 0 for v in value)
            ):
                raise ValueError(f"{name} must be 3 positive sizes (mm), got {getattr(self, name)!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        for name, least in (("seed", 0), ("anatomy_seed", 0), ("n_subjects", 1)):
            object.__setattr__(self, name, require_integer(name, getattr(self, name), least))
        for name in ("snr", "sir_snr"):
            value = getattr(self, name)
            value = require_number(f"{name} (inf or None: noise-free)", math.inf if value is None else value,
                                   low=0, low_inclusive=False, finite=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "b1_noise", require_number("b1_noise (relative B1)", self.b1_noise, low=0))
        for name in ("motion", "bound_pool"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def for_profile(cls, profile: str, **changes: Any) -> CohortConfig:
        """The cohort of ``profile`` (its voxel sizes, :data:`VOXEL_SIZES`) with ``changes``."""
        _check_profile(profile)
        return cls(**{"profile": profile, **VOXEL_SIZES[profile], **changes})

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`qt1lib.phantom.make_cohort` (after ``bids_dir``)."""
        return {
            "profile": self.profile,
            "seed": self.seed,
            "snr": self.snr,
            "n_subjects": self.n_subjects,
            "anatomy_seed": self.anatomy_seed,
            "sir_snr": self.sir_snr,
            "voxel_size": self.voxel_size,
            "sir_voxel_size": self.sir_voxel_size,
            "b1_noise": self.b1_noise,
            "motion": self.motion,
            "bound_pool": self.bound_pool,
            "physics": self.physics,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready: tuples become lists, an infinite SNR becomes None."""
        out = asdict(self)
        for name in ("voxel_size", "sir_voxel_size"):
            out[name] = list(out[name])
        for name in ("snr", "sir_snr"):
            if math.isinf(out[name]):
                out[name] = None
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CohortConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        return _from_dict(cls, values)


# ============================================================================ pipeline
@dataclass(frozen=True)
class PipelineConfig:
    """Parameters of the pipeline; the cache keys of its derivatives are built from them.

    Attributes
    ----------
    sigma : float or None
        Noise standard deviation of the MP2RAGE images per real/imaginary part (image units;
        M0 = 1 for the digital cohort). None: the cohort's ``parameters["noise_sigma"]``, else
        estimated from the image background (:func:`qt1lib.workflow.noise.estimate_noise_sigma`).
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
        Bins per S axis of the seed MAP (the seed's 100, ``qt1lib.estimate.map.SEED_N_BINS``).
    seed_likelihood_threshold : float
        Relative-likelihood threshold of the seed MAP (the seed's 0.5,
        ``qt1lib.estimate.map.SEED_LIKELIHOOD_THRESHOLD``).
    b1_sd : float
        Standard deviation of the B1+ map's error (relative B1) over which the exact MP3RAGE MAP
        marginalises. Default 0.02: the digital cohort's B1-map error
        (:class:`~qt1lib.phantom.simulate.SimulationSettings` ``b1_noise``; assumption for real data).
    scale_prior : {"flat", "jeffreys"}
        Prior of the complex scale of the exact MAP. Default ``"jeffreys"``, the default of
        :class:`~qt1lib.estimate.map.ExactMAPModel` (its MAP is the true T1 for noise-free data;
        the flat prior shifts it by O(sigma^2)).
    calibration_input : str
        Estimator whose map feeds the calibration network, a registered estimator
        (:func:`qt1lib.estimate.estimator_names`); the seed's: ``"map_seed_mp2rage"`` (MAP
        MP2RAGE, Saunders et al. 2025).
    registration_contrast : {"inv2", "t1"}
        ``"inv2"`` (the seed's scripts): moving = INV2 magnitude, fixed = the SIR image with the
        longest inversion time. ``"t1"``: moving = the LUT T1 map, fixed = the SIR T1 map (the
        same contrast on both sides).
    registration_bins : int
        Histogram bins of the mutual information (32, the seed's / antspyx's default).
    random_seed : int
        Seed of the seed MAP's Monte-Carlo and of the registration's metric sampling.
    mask_dilation : int
        Voxels by which the brain mask is dilated for estimation (see :mod:`qt1lib.workflow.masks`).
    signal_threshold : float
        Signal masks: largest magnitude above this many noise standard deviations (5: a
        Rayleigh-distributed background voxel exceeds it with probability exp(-12.5) = 4e-6).
    segmentation : str or None
        A user's tissue segmentation, named explicitly (the command line's ``--segmentation``): a
        BIDS derivative dataset (folder) holding ``sub-<label>/[ses-<label>/]anat/sub-<label>[_...]_dseg.nii[.gz]``
        on the MP2RAGE grid (or with ``space-SIR``, on the SIR grid), or one such file (for its own
        subject). Absolute, or relative to the working directory. Its labels are read from the
        ``dseg.tsv`` that applies to it by BIDS inheritance (names, :func:`qt1lib.tissues.read_dseg_mapping`);
        without one that maps them, the run stops with an error. None: a ``*_dseg`` under
        ``<bids_dir>/derivatives/<pipeline>/`` is used when its ``dseg.tsv`` maps its labels, else
        the automatic segmentation of :mod:`qt1lib.segment` (:mod:`qt1lib.workflow.masks`).

    The reader settings below decide how the BIDS readers (:func:`qt1lib.bids.read_mpnrage`,
    :func:`qt1lib.bids.read_sir`) read a dataset; every step reads through them
    (:meth:`qt1lib.workflow.workspace.Workspace.read_mpnrage`) and keys its results by them.
    None (the default) leaves the sidecars' values and the readers' rules in force.

    select : tuple of (str, str)
        BIDS entities the images must have when a subject has several acquisitions: any of
        ``ses``, ``acq``, ``run``, ``echo``, labels without their prefix. Give a mapping
        (``{"ses": "2", "run": "1"}``) or pairs; kept as sorted pairs (immutable, picklable);
        :meth:`reader_select` gives the mapping. Empty: every image (the readers then refuse
        several acquisitions).
    inversion_efficiency : float or None
        ``InversionEfficiency`` of the MP2RAGE inversions when their sidecars lack it (the
        fraction of Mz the adiabatic pulse inverts, in (0, 1]; not a BIDS field). No default:
        a scanner-specific value (e.g. 0.96, Marques et al. 2010; 0.84, the seed's
        MASILab/map_t1_mapping ``scripts/params.yml``) the user must know.
    number_shots : int, pair of int, or None
        ``NumberShots`` when the sidecars lack it: excitations per readout train, or
        ``(before, after)`` the k-space centre (BIDS qMRI appendix, "NumberShots metadata field").
    echo_spacing : float or None
        ``RepetitionTimeExcitation`` (s) when the sidecars lack it: the time between the
        excitations of a readout train (BIDS qMRI appendix: the echo spacing).
    bound_pool_inversion_factor : float or None
        ``BoundPoolInversionFactor`` (Sm) of the SIR images when their sidecars lack it: the
        bound pool's longitudinal magnetisation after the selective inversion, relative to
        before (in [-1, 1]; not a BIDS field; e.g. about 0.8 for a short hard pulse, Gochberg &
        Gore 2007, MRM 57:437).
    b1_units : {None, "ratio", "percent", "degrees"}
        Unit of the TB1map values, overriding its sidecar's ``Units`` (:data:`qt1lib.bids.B1_UNITS`).
    resample_b1 : bool
        Resample a B1+ map on another grid onto the MP2RAGE grid (trilinear) instead of
        refusing it.
    """

    sigma: float | None = None
    sir_sigma: float | None = None
    seed_map_sigma: float | None = None
    seed_map_trials: int = 100_000
    seed_map_bins: int = _SEED_N_BINS
    seed_likelihood_threshold: float = _SEED_LIKELIHOOD_THRESHOLD
    b1_sd: float = 0.02
    scale_prior: str = "jeffreys"
    calibration_input: str = "map_seed_mp2rage"
    registration_contrast: str = "inv2"
    registration_bins: int = 32
    random_seed: int = 0
    mask_dilation: int = 2
    signal_threshold: float = 5.0
    segmentation: str | None = None
    select: tuple[tuple[str, str], ...] = ()
    inversion_efficiency: float | None = None
    number_shots: int | tuple[int, int] | None = None
    echo_spacing: float | None = None
    bound_pool_inversion_factor: float | None = None
    b1_units: str | None = None
    resample_b1: bool = False

    def __post_init__(self) -> None:
        self._check_reader_settings()
        for name in ("sigma", "sir_sigma", "seed_map_sigma"):
            v = getattr(self, name)
            if v is not None:
                require_number(f"{name} (None or a noise standard deviation)", v, low=0, low_inclusive=False)
        for name, least in (("seed_map_trials", 1), ("seed_map_bins", 2), ("registration_bins", 8),
                            ("mask_dilation", 0), ("random_seed", 0)):
            require_integer(name, getattr(self, name), least, integral_floats=True)
        require_number("seed_likelihood_threshold", self.seed_likelihood_threshold, low=0, high=1)
        require_number("b1_sd (relative B1)", self.b1_sd, low=0)
        if self.scale_prior not in ("flat", "jeffreys"):
            raise ValueError(f"scale_prior must be 'flat' or 'jeffreys', got {self.scale_prior!r}")
        known = _estimator_names()
        if not isinstance(self.calibration_input, str) or (known is not None and self.calibration_input not in known):
            raise ValueError(
                f"calibration_input must be one of {sorted(known or ())}, got {self.calibration_input!r}"
            )
        if self.registration_contrast not in REGISTRATION_CONTRASTS:
            raise ValueError(
                f"registration_contrast must be one of {REGISTRATION_CONTRASTS}, got {self.registration_contrast!r}"
            )
        require_number(
            "signal_threshold (noise standard deviations)", self.signal_threshold, low=0, low_inclusive=False
        )
        if self.segmentation is not None:
            if not isinstance(self.segmentation, (str, os.PathLike)) or not str(self.segmentation).strip():
                raise ValueError(f"segmentation must be None or the path of a segmentation, got {self.segmentation!r}")
            object.__setattr__(self, "segmentation", os.fspath(self.segmentation))

    def _check_reader_settings(self) -> None:
        try:
            pairs = dict(self.select)
        except (TypeError, ValueError):
            raise ValueError(f"select must map BIDS entities to labels, got {self.select!r}") from None
        select = {}
        for key, value in sorted(pairs.items()):
            if key not in SELECT_ENTITIES:
                raise ValueError(f"select: entity {key!r} is not one of {SELECT_ENTITIES}")
            label = str(value)
            if isinstance(value, bool) or not label.isalnum():
                raise ValueError(f"select: the {key} label must be alphanumeric (without '{key}-'), got {value!r}")
            select[key] = label
        object.__setattr__(self, "select", tuple(select.items()))
        if self.inversion_efficiency is not None:
            require_number("inversion_efficiency (fraction of Mz inverted)", self.inversion_efficiency,
                           low=0, low_inclusive=False, high=1)
        if self.number_shots is not None:
            shots = self.number_shots
            if is_finite_number(shots):
                object.__setattr__(self, "number_shots", require_integer("number_shots", shots, 1, integral_floats=True))
            elif isinstance(shots, (list, tuple)) and len(shots) == 2:
                pair = tuple(require_integer("number_shots (before, after)", v, 0, integral_floats=True) for v in shots)
                if pair[1] < 1:
                    raise ValueError(f"number_shots (before, after): after counts the centre excitation, >= 1; got {shots!r}")
                object.__setattr__(self, "number_shots", pair)
            else:
                raise ValueError(f"number_shots must be an integer or a pair (before, after), got {shots!r}")
        if self.echo_spacing is not None:
            require_number("echo_spacing (s)", self.echo_spacing, low=0, low_inclusive=False, high=1)
        if self.bound_pool_inversion_factor is not None:
            require_number("bound_pool_inversion_factor", self.bound_pool_inversion_factor, low=-1, high=1)
        if self.b1_units is not None and self.b1_units not in B1_UNITS:
            raise ValueError(f"b1_units must be None or one of {B1_UNITS}, got {self.b1_units!r}")
        if not isinstance(self.resample_b1, bool):
            raise ValueError(f"resample_b1 must be True or False, got {self.resample_b1!r}")

    def reader_select(self) -> dict[str, str]:
        """The entities of :attr:`select` as the readers' ``select`` mapping."""
        return dict(self.select)

    def reader_defaults(self) -> dict[str, Any]:
        """The sidecar fields given here, as the readers' ``defaults`` (sidecars take precedence)."""
        values = {
            "InversionEfficiency": self.inversion_efficiency,
            "NumberShots": list(self.number_shots) if isinstance(self.number_shots, tuple) else self.number_shots,
            "RepetitionTimeExcitation": self.echo_spacing,
            "BoundPoolInversionFactor": self.bound_pool_inversion_factor,
        }
        return {k: v for k, v in values.items() if v is not None}

    def reader_settings(self) -> dict[str, Any]:
        """Every reader setting, JSON-ready: what the steps that read the dataset put in their store keys."""
        return {"select": self.reader_select(), "defaults": self.reader_defaults(), "b1_units": self.b1_units,
                "resample_b1": self.resample_b1}

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (``select`` a dict, ``number_shots`` a list when a pair)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["select"] = self.reader_select()
        if isinstance(self.number_shots, tuple):
            out["number_shots"] = list(self.number_shots)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        return _from_dict(cls, values)


def _estimator_names() -> tuple[str, ...] | None:
    """Names of the registered estimators (:func:`qt1lib.estimate.estimator_names`); None while
    they cannot be imported.

    Imported when a :class:`PipelineConfig` is built, not with this module, so that the estimator
    modules may import this one. None (no check) only while ``qt1lib.estimate`` is itself being
    imported; using such a configuration then fails on the unknown estimator instead.
    """
    try:
        # the registry's module, not the package: the store keys a step by the source of what its
        # modules import, and the package's __init__ imports every estimator
        from .estimate.base import estimator_names
    except ImportError:
        return None
    return tuple(estimator_names())


# ============================================================================ calibration
def _calibration_class():
    """:class:`qt1lib.calibrate.CalibrationConfig`, imported on first use (it imports torch)."""
    from .calibrate.config import CalibrationConfig

    return CalibrationConfig


#: The study's calibration network (chapters 06 and 07) in the ``quick`` profile: the values of
#: those chapters' parameters cells (the sixteen arguments they gave CalibrationConfig); every
#: other field keeps CalibrationConfig's default. The choices are the book's assumptions
#: (``book/assumptions.md``).
STUDY_CALIBRATION: dict[str, Any] = {
    "channels": ("t1", "b1", "t1_std"),
    "patch_shape": (32, 32),
    "slice_axis": 2,
    "target": "patch",
    "residual": True,
    "input_skip": True,
    "width": 16,
    "patches_per_epoch": 2048,
    "validation_patches": 512,
    "validation_fraction": 0.2,
    "validation_slab": 2,
    "batch_size": 32,
    "max_epochs": 20,
    "patience": 4,
    "learning_rate": 1e-3,
    "loss": "mse",
}

#: What each profile changes in the study's configuration: fields of :class:`CohortConfig`
#: (besides the voxel sizes, :data:`VOXEL_SIZES`), of :class:`PipelineConfig` (from its
#: defaults) and of the calibration network (from :data:`STUDY_CALIBRATION`). ``smoke`` and
#: ``quick`` share the pipeline defaults, so that every chapter of a build shares one cache;
#: ``paper`` builds the seed MAP's histogram from 1e6 trials per T1 and trains wider networks
#: for longer.
PROFILE_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "cohort": {},
        "pipeline": {},
        "calibration": {
            "max_epochs": 2,
            "patch_shape": (16, 16),
            "patches_per_epoch": 256,
            "patience": 2,
            "validation_fraction": 0.25,
            "validation_patches": 128,
            "validation_slab": 3,
            "width": 8,
        },
    },
    "quick": {"cohort": {}, "pipeline": {}, "calibration": {}},
    "paper": {
        "cohort": {},
        "pipeline": {"seed_map_trials": 1_000_000},
        "calibration": {
            "batch_size": 64,
            "max_epochs": 40,
            "patches_per_epoch": 8192,
            "patience": 8,
            "validation_patches": 2048,
            "validation_slab": 4,
            "width": 64,
        },
    },
}

_PARTS = ("cohort", "pipeline", "calibration")


# ============================================================================ study
@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a run of the study: the cohort, the pipeline and the calibration.

    Build one with :meth:`for_profile`, change it with :meth:`with_overrides` (notebook parameter
    names), store it with :meth:`to_dict` / :meth:`from_dict`. Equal configurations compare
    equal.

    Attributes
    ----------
    cohort : CohortConfig
    pipeline : PipelineConfig
    calibration : qt1lib.calibrate.CalibrationConfig
    """

    cohort: CohortConfig
    pipeline: PipelineConfig
    calibration: CalibrationConfig

    def __post_init__(self) -> None:
        for name, cls in (("cohort", CohortConfig), ("pipeline", PipelineConfig), ("calibration", _calibration_class())):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got {getattr(self, name)!r}")

    # ------------------------------------------------------------------ derived
    @property
    def profile(self) -> str:
        """The profile the configuration was built from (``cohort.profile``)."""
        return self.cohort.profile

    @property
    def seed(self) -> int:
        """The study seed: the cohort's noise, the calibration's patch sampling and weights."""
        return self.cohort.seed

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_profile(cls, profile: str) -> StudyConfig:
        """The study of ``profile`` (:data:`PROFILE_SETTINGS`, :data:`VOXEL_SIZES`)."""
        _check_profile(profile)
        settings = PROFILE_SETTINGS[profile]
        return cls(
            cohort=CohortConfig.for_profile(profile, **settings["cohort"]),
            pipeline=PipelineConfig(**settings["pipeline"]),
            calibration=_calibration_class()(**{**STUDY_CALIBRATION, **settings["calibration"]}),
        )

    @classmethod
    def parameter_names(cls) -> dict[str, str]:
        """Every parameter :meth:`with_overrides` accepts, and the part it sets
        (``"cohort"``, ``"pipeline"`` or ``"calibration"``)."""
        out: dict[str, str] = {}
        for part, part_cls in (("cohort", CohortConfig), ("pipeline", PipelineConfig),
                               ("calibration", _calibration_class())):
            for f in fields(part_cls):
                if f.name in out:  # pragma: no cover - guarded by tests/test_config.py
                    raise RuntimeError(f"parameter {f.name!r} is a field of both {out[f.name]} and {part}")
                out[f.name] = part
        del out["profile"]  # a profile is chosen with for_profile, not overridden
        return out

    def with_overrides(self, **parameters: Any) -> StudyConfig:
        """The configuration with notebook parameters set on the part they belong to.

        Each name is a field of exactly one part (:meth:`parameter_names`): e.g.
        ``registration_contrast`` and ``calibration_input`` set the pipeline; ``patch_shape``,
        ``width``, ``max_epochs`` the calibration; ``seed`` the cohort's seed, which is the
        study seed (:attr:`seed`). Values are validated by the part.

        Raises
        ------
        ValueError
            A name that is no study parameter (naming it and listing the known ones), or an
            invalid value.
        """
        names = self.parameter_names()
        unknown = [name for name in parameters if name not in names]
        if unknown:
            hint = " (choose a profile with StudyConfig.for_profile)" if "profile" in unknown else ""
            raise ValueError(
                f"unknown study parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}{hint}; "
                f"known: {', '.join(sorted(names))}"
            )
        changes: dict[str, dict[str, Any]] = {part: {} for part in _PARTS}
        for name, value in parameters.items():
            changes[names[name]][name] = value
        return StudyConfig(
            **{part: dataclasses.replace(getattr(self, part), **changes[part]) if changes[part] else getattr(self, part)
               for part in _PARTS}
        )

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any], names: Iterable[str] | None = None) -> StudyConfig:
        """The study of a notebook's parameters: ``for_profile(parameters["profile"])`` with overrides.

        Parameters
        ----------
        parameters : mapping
            The notebook's parameters (e.g. what :func:`qt1lib.notebook.check_parameters`
            returns): ``profile`` and any others.
        names : iterable of str, optional
            The parameters that are study settings. Default: every parameter whose name is one
            (:meth:`parameter_names`); the others (``bids_dir``, ``device``...) are the chapter's
            own. Pass them when a chapter's own knob shares a study setting's name (chapter 04's
            ``n_subjects`` counts the subjects it analyses, not the cohort's).

        A value of None keeps the profile's value (a parameters cell can declare
        ``width = None  # type: int`` to mean "the profile's width").
        """
        if "profile" not in parameters:
            raise ValueError("the parameters name no profile")
        study = cls.for_profile(parameters["profile"])
        known = study.parameter_names()
        if names is None:
            selected = [name for name in parameters if name in known]
        else:
            selected = list(names)
            missing = [name for name in selected if name not in parameters]
            if missing:
                raise ValueError(f"parameters {missing} are not among the notebook's parameters {sorted(parameters)}")
        return study.with_overrides(**{name: parameters[name] for name in selected if parameters[name] is not None})

    # ------------------------------------------------------------------ views
    def parameters(self) -> dict[str, Any]:
        """Every study parameter (:meth:`parameter_names`) and its value, JSON-ready (lists, not tuples)."""
        flat: dict[str, Any] = {}
        for part in _PARTS:
            flat.update(_json_ready(getattr(self, part).to_dict()))
        flat.pop("profile")
        return flat

    def to_dict(self) -> dict[str, Any]:
        """``{"cohort": ..., "pipeline": ..., "calibration": ...}``, JSON-ready (tuples become lists)."""
        return {part: _json_ready(getattr(self, part).to_dict()) for part in _PARTS}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StudyConfig:
        """Inverse of :meth:`to_dict` (also after a JSON round trip); unknown keys raise ``ValueError``."""
        if not isinstance(values, Mapping) or set(values) != set(_PARTS):
            got = sorted(values) if isinstance(values, Mapping) else values
            raise ValueError(f"a StudyConfig dictionary has exactly the keys {list(_PARTS)}, got {got!r}")
        return cls(
            cohort=CohortConfig.from_dict(values["cohort"]),
            pipeline=PipelineConfig.from_dict(values["pipeline"]),
            calibration=_calibration_class().from_dict(dict(values["calibration"])),
        )


def _json_ready(value: Any) -> Any:
    """Tuples as lists, recursively (JSON and papermill parameters have lists)."""
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


# ============================================================================ chapters
#: Per-chapter papermill parameters that belong to no part of :class:`StudyConfig`, per
#: profile (a chapter's parameters cell holds their defaults; a profile that does not list a
#: parameter keeps it). Keyed by notebook stem. ``comparison_network`` (chapters 06 and 07):
#: the network is trained on the second calibration input (``comparison_inputs``) in the
#: ``paper`` profile only; ``quick`` and ``smoke`` score that input with the baselines alone
#: (a second network cross-validation would add about as much as chapter 06's first to CI).
#: ``ablations`` (chapter 06): two more network cross-validations (the T1 map alone, no input
#: skip), trained by the ``smoke`` profile (the tests) and on request (``-p ablations True``);
#: ``quick`` leaves them out to keep the study's CI run under its 45 minutes (each costs about
#: as much as the network's own cross-validation), ``paper`` because at width 64 they would add about 1.6 hours on 2
#: CPU cores (eight more trainings of about 12 minutes each, measured 2026-12-03).
CHAPTER_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "01_signal_models": {
        "smoke": {"n_t1": 60},
        "quick": {"n_t1": 500},
        "paper": {"n_t1": 2000},
    },
    "02_map_vs_point": {
        "smoke": {"example_t1": [1.2], "n_trials": 60, "seed_n_trials": 2000, "sigmas": [0.005],
                  "t1_values": [0.5, 1.2, 3.0]},
        "quick": {"n_trials": 1000, "seed_n_trials": 100000},
        "paper": {"n_trials": 10000, "seed_n_trials": 1000000,
                  "t1_values": [0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]},
    },
    "03_ir_reference_and_mt": {
        "smoke": {"b1_values": [0.8, 1.0, 1.2], "n_psr": 4, "n_voxels": 300},
        "quick": {"n_psr": 13, "n_voxels": 5000},
        "paper": {"b1_values": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "n_psr": 26,
                  "n_voxels": 50000},
    },
    "04_b1_sensitivity": {
        "smoke": {"b1_map_errors": [0.0, 0.05], "b1_values": [0.7, 1.0, 1.3], "max_voxels": 3000, "n_noise": 20,
                  "n_subjects": 1, "t1_values": [0.8, 1.2, 2.2]},
        "quick": {},
        "paper": {"b1_values": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "max_voxels": 100000,
                  "n_noise": 1000, "n_subjects": 4,
                  "t1_values": [0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 2.0, 2.3, 2.6, 3.0, 3.5]},
    },
    "05_registration_and_bias": {
        "smoke": {"estimators": ["lut", "map_seed_mp2rage", "map_exact_mp2rage", "map_seed_code_mp2rage"],
                  "n_decomposition": 1},
        "quick": {},
        "paper": {"decomposition_estimators": ["map_seed_mp2rage", "map_exact_mp2rage", "map_exact_mp3rage",
                                               "map_seed_code_mp2rage"],
                  "estimators": ["lut", "lut_b1", "map_seed_mp2rage", "map_exact_mp2rage", "map_exact_mp3rage",
                                 "map_seed_code_mp2rage"],
                  "n_decomposition": 4},
    },
    "06_calibration": {
        "smoke": {},
        "quick": {"ablations": False},
        "paper": {"ablations": False, "comparison_network": True, "threads": 0},
    },
    "07_statistics": {
        "smoke": {"ba_points": 500, "max_voxels_per_cell": 200},
        "quick": {},
        "paper": {"ba_points": 5000, "comparison_network": True, "max_voxels_per_cell": 5000, "threads": 0},
    },
    "08_performance": {
        "smoke": {"n_voxels": 2000},
        "quick": {},
        "paper": {"n_voxels": 1000000},
    },
}

#: The parameters of each chapter that are study settings (:meth:`StudyConfig.parameter_names`):
#: the runner passes their values from the profile's :class:`StudyConfig`. Names that a chapter
#: uses for its own knobs are not listed (chapter 02's and 03's ``snr`` are their simulations',
#: chapter 04's ``n_subjects`` the subjects it analyses).
CHAPTER_STUDY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "01_signal_models": (),
    "02_map_vs_point": (),
    "03_ir_reference_and_mt": (),
    "04_b1_sensitivity": ("seed_map_sigma",),
    "05_registration_and_bias": ("registration_contrast",),
    "06_calibration": ("calibration_input", *STUDY_CALIBRATION),
    "07_statistics": ("calibration_input", *STUDY_CALIBRATION),
    "08_performance": (),
}


def chapter_parameters(chapter: str | Path, profile: str, study: StudyConfig | None = None) -> dict[str, Any]:
    """The papermill parameters a profile gives a chapter (besides ``bids_dir``, ``work_dir``,
    ``profile`` and ``seed``, which the runner adds).

    Parameters
    ----------
    chapter : str or path
        Notebook stem (``"06_calibration"``), file name or path.
    profile : {"smoke", "quick", "paper"}
    study : StudyConfig, optional
        Default ``StudyConfig.for_profile(profile)``: the values of the chapter's study
        settings (:data:`CHAPTER_STUDY_PARAMETERS`).

    Returns
    -------
    dict
        The chapter's study settings, then its own knobs (:data:`CHAPTER_PARAMETERS`), JSON-ready.

    Raises
    ------
    ValueError
        Unknown profile, or a chapter that the tables do not list.
    """
    _check_profile(profile)
    stem = Path(chapter).name.split(".", 1)[0]
    if stem not in CHAPTER_PARAMETERS:
        raise ValueError(
            f"chapter {stem!r} has no entry in qt1lib.config.CHAPTER_PARAMETERS; known: {sorted(CHAPTER_PARAMETERS)}"
        )
    out: dict[str, Any] = {}
    names = CHAPTER_STUDY_PARAMETERS.get(stem, ())
    if names:
        values = (study or StudyConfig.for_profile(profile)).parameters()
        out.update({name: values[name] for name in names})
    out.update(_json_ready(CHAPTER_PARAMETERS[stem][profile]))
    return out
