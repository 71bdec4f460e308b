"""Simulate one subject of the digital cohort: MP3RAGE and SIR images with their ground truth.

The chain, for subject ``s``:

1. **Anatomy.** The subject's head at world position ``x`` (mm, first-session scanner
   coordinates) shows the template at ``x + u(x)``, with ``u`` a smooth random displacement
   (:class:`~qt1lib.phantom.fields.SmoothField`, a few mm). The tissue fractions of a voxel are
   the template fractions averaged over the voxel (:func:`~qt1lib.phantom.anatomy.prefiltered_fractions`)
   and sampled at the voxel centre.
2. **Tissue.** Each class has its own two-pool parameters, varying per subject and smoothly in
   space (:class:`~qt1lib.phantom.tissues.TissueVariation`).
3. **Signals mix as signals.** The complex signal of a voxel is
   ``C(x) * sum_c f_c(x) m0f_c(x) S(theta_c(x), B1(x))``: each class's signal is computed with
   its own parameters and weighted by its fraction, never a mean T1 (partial volume acts on
   magnetisation, not on relaxation times).
4. **MP3RAGE** (first session, subject position): ``S`` is the two-pool steady-state chain
   (:func:`qt1lib.sequences.twopool.gre_signals_twopool`) at the subject's true B1+; ``C`` a
   smooth complex receive field; complex Gaussian noise of standard deviation
   :meth:`SimulationSettings.noise_sigma` per real/imaginary part (M0 = 1, unit receive gain).
5. **B1 map**: the true B1+ smoothed and perturbed by smooth noise, on the MP3RAGE grid.
6. **SIR** (second session): the head moved rigidly (:class:`~qt1lib.phantom.fields.RigidMotion`);
   the SIR grid, axis-aligned in the second session's scanner, has its own (coarser) voxels.
   ``S`` is the signed two-pool SIR signal (:func:`qt1lib.sequences.sir.sir_signal`) with a hard
   inversion pulse ``Sf = 0.95 cos(pi B1)``; the magnitude of signal plus complex noise is stored.

Only the noise (and the noise of the measured B1 map) is drawn from ``seed``; everything else
from ``anatomy_seed``, so a new ``seed`` repeats the acquisition of the same cohort.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nibabel.affines import apply_affine
from scipy import ndimage

from ..protocols import MPnRAGEProtocol
from ..protocols_sir import SIRProtocol
from ..sir_noise import SIR_SNR_DEFAULT
from ..sequences.twopool import TISSUES_7T, TwoPoolTissue
from .anatomy import TISSUE_CLASSES, load_template, prefiltered_fractions
from .fields import (
    Grid,
    RigidMotion,
    SmoothField,
    Where,
    b1_transmit_field,
    evaluate,
    points_of,
    random_rigid_motion,
)
from ..sequences.sir import SIR_READOUT_RESIDUAL_ASSUMED
from .signals import INVERSION_MODELS, TissueSignalFn, mpnrage_tissue_signals, sir_tissue_signals, tabulated
from .tissues import TissueMaps, TissueVariation

__all__ = [
    "SimulationSettings",
    "SubjectModel",
    "SubjectImages",
    "SpaceTruth",
    "MixedSignals",
    "draw_subject",
    "simulate_subject",
    "mix_signals",
    "rng_for",
    "cohort_box",
    "cohort_grids",
    "FRACTION_THRESHOLD",
]

#: Fractions below this are not simulated: their contribution (< 1e-4 of M0) is far below any
#: noise level the cohort uses.
FRACTION_THRESHOLD = 1e-4

# Identifiers of the independent random streams (SeedSequence spawn keys); fixed forever so that
# adding a stream never changes the others.
_STREAMS = {
    "deformation": 1,
    "tissues": 2,
    "b1": 3,
    "receive-mp2rage": 4,
    "receive-sir": 5,
    "motion": 6,
    "noise-mp2rage": 101,
    "noise-sir": 102,
    "noise-b1map": 103,
}


def rng_for(seed: int, subject_index: int, stream: str) -> np.random.Generator:
    """Independent generator for one subject and one random stream."""
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(subject_index, _STREAMS[stream])))


@dataclass(frozen=True)
class SimulationSettings:
    """Everything that defines the simulated acquisitions (see :func:`qt1lib.phantom.make_cohort`).

    Attributes
    ----------
    voxel_size, sir_voxel_size : tuple of float
        MP3RAGE and SIR voxel sizes (mm).
    protocol : MPnRAGEProtocol
        MP3RAGE protocol (every readout is simulated).
    sir_protocol : SIRProtocol
        SIR protocol.
    snr, sir_snr : float
        ``M0 / sigma`` of the complex noise (per real/imaginary part, M0 = 1) of the MP3RAGE and
        SIR images *at the reference voxels* :data:`REFERENCE_VOXEL_MM` and
        :data:`SIR_REFERENCE_VOXEL_MM`; ``inf`` for noise-free images. Other voxel sizes scale
        sigma by ``sqrt(V_ref / V)`` (:meth:`noise_sigma`).
    b1_noise : float
        Standard deviation of the smooth error of the measured B1 map (relative B1+). Default
        0.02 (assumption: a B1 mapping method good to a few percent; the seed's is not known).
    b1_map_fwhm_mm : float
        Smoothing of the measured B1 map (mm). Default 8 mm (assumption: B1 maps are acquired
        at low resolution and smoothed).
    deformation_mm : float
        Standard deviation of each component of the displacement field (mm). Default 1.5 mm
        (assumption: "small" deformations of a few mm at most, DESIGN.md 4.5).
    motion : bool
        Whether the head moves between the MP3RAGE and SIR sessions.
    rotation_sd_deg, translation_sd_mm : float
        Spread of the rigid motion (degrees, mm). Defaults 2 degrees and 2 mm (assumption: a
        head repositioned in the coil between two sessions).
    bound_pool : bool
        False sets PSR = 0 everywhere (single-pool tissue).
    tissues : dict of str to TwoPoolTissue
        Default tissue parameters per class.
    inversion : {"protocol", "bloch"}
        How the MP3RAGE inversion acts on the free pool (:data:`~qt1lib.phantom.signals.INVERSION_MODELS`).
    sir_readout_residual : float
        Free-pool Mz the SIR readout leaves, as a fraction of its equilibrium, in [0, 1).
    physics : str
        Name of the :mod:`~qt1lib.phantom.physics` setting the three fields above came from
        (recorded in the cohort's parameters; "custom" when they were set by hand).

    The defaults of ``tissues``, ``inversion`` and ``sir_readout_residual`` are those of the
    ``literature`` setting (:data:`qt1lib.phantom.physics.COHORT_PHYSICS`).
    """

    voxel_size: tuple[float, float, float]
    sir_voxel_size: tuple[float, float, float]
    protocol: MPnRAGEProtocol
    sir_protocol: SIRProtocol
    snr: float = 200.0
    sir_snr: float = SIR_SNR_DEFAULT
    b1_noise: float = 0.02
    b1_map_fwhm_mm: float = 8.0
    deformation_mm: float = 1.5
    motion: bool = True
    rotation_sd_deg: float = 2.0
    translation_sd_mm: float = 2.0
    bound_pool: bool = True
    tissues: dict[str, TwoPoolTissue] = field(default_factory=lambda: dict(TISSUES_7T))
    inversion: str = "bloch"
    sir_readout_residual: float = SIR_READOUT_RESIDUAL_ASSUMED
    physics: str = "literature"

    def __post_init__(self) -> None:
        if self.inversion not in INVERSION_MODELS:
            raise ValueError(f"inversion must be one of {INVERSION_MODELS}, got {self.inversion!r}")
        if not (0.0 <= self.sir_readout_residual < 1.0):
            raise ValueError(f"sir_readout_residual must lie in [0, 1), got {self.sir_readout_residual!r}")
        for name in ("snr", "sir_snr"):
            v = getattr(self, name)
            if not (v > 0) or np.isnan(v):
                raise ValueError(f"{name} must be > 0 (np.inf for noise-free images), got {v!r}")
        for name in ("b1_noise", "b1_map_fwhm_mm", "deformation_mm", "rotation_sd_deg", "translation_sd_mm"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
        for name in ("voxel_size", "sir_voxel_size"):
            v = np.asarray(getattr(self, name), dtype=float)
            if v.shape != (3,) or not (np.isfinite(v) & (v > 0)).all():
                raise ValueError(f"{name} must be three positive voxel sizes (mm), got {getattr(self, name)!r}")

    def noise_sigma(self, acquisition: str = "mp2rage") -> float:
        """Noise standard deviation per real/imaginary part in the images (units of M0).

        ``sigma = sqrt(V_ref / V) / snr``: the images are the reference acquisition averaged to
        larger voxels, so the noise falls with the square root of the voxel volume.

        Parameters
        ----------
        acquisition : {"mp2rage", "sir"}
        """
        if acquisition == "mp2rage":
            snr, ref, voxel = self.snr, REFERENCE_VOXEL_MM, self.voxel_size
        elif acquisition == "sir":
            snr, ref, voxel = self.sir_snr, SIR_REFERENCE_VOXEL_MM, self.sir_voxel_size
        else:
            raise ValueError(f"acquisition must be 'mp2rage' or 'sir', got {acquisition!r}")
        return float(np.sqrt(np.prod(ref) / np.prod(voxel)) / snr)


#: Voxel (mm) at which ``snr`` is defined: the seed's 0.7 mm isotropic MP2RAGE (scan
#: "WIPMP2RAGE_0p7mm" in MASILab/map_t1_mapping ``examples/measure_noise.py``), whose noise is
#: about 0.005 M0 (DESIGN.md 4.2; snr = 200).
REFERENCE_VOXEL_MM = (0.7, 0.7, 0.7)
#: Voxel (mm) at which ``sir_snr`` is defined: the ``paper`` profile's SIR voxel. The default
#: sir_snr there is :data:`qt1lib.sir_noise.SIR_SNR_DEFAULT`, derived from the seed's MP2RAGE
#: noise (:func:`qt1lib.sir_noise.sir_snr_from_mp2rage`; about 385 at the ``quick`` 3 x 3 x 4 mm).
SIR_REFERENCE_VOXEL_MM = (1.5, 1.5, 2.0)

#: Control-point spacing (mm) of the displacement field: smooth on the scale of lobes.
DEFORMATION_SPACING_MM = 24.0
#: Margin (mm) of the image field of view around the template brain.
FOV_MARGIN_MM = 12.0
#: B1+ shape (see :func:`~qt1lib.phantom.fields.b1_transmit_field`): peak 1.3 at the centre and
#: Gaussian widths chosen so that B1+ spans about 0.6..1.3 over the template brain (median about
#: 0.93): DESIGN.md 4.5 ("about 0.6..1.3"). Per subject the
#: peak varies by 4 %, the centre by 5 mm, the widths by 5 %, and a smooth field of 5 % breaks
#: the symmetry (assumptions).
B1_PEAK, B1_WIDTHS_MM = 1.3, (70.0, 85.0, 70.0)
B1_PEAK_SD, B1_CENTRE_SD_MM, B1_WIDTH_SD, B1_PERTURBATION_SD, B1_SPACING_MM = 0.04, 5.0, 0.05, 0.05, 40.0
#: Receive field: log-magnitude with standard deviation 0.15 and phase with standard deviation
#: 1 rad, smooth on the scale of 40-50 mm, plus a uniform random global phase (assumptions).
RECEIVE_LOG_SD, RECEIVE_PHASE_SD, RECEIVE_SPACING_MM = 0.15, 1.0, 45.0


@dataclass(frozen=True)
class SubjectModel:
    """Everything about one subject that is not noise.

    Positions are world coordinates (mm) of the subject's head in the first (MP3RAGE) session;
    every method takes either a :class:`~qt1lib.phantom.fields.Grid` (its voxel centres; fast
    separable evaluation) or an array of points of shape (..., 3).

    Attributes
    ----------
    index : int
        0-based subject index.
    deformation : SmoothField
        Three components, in units of ``deformation_mm``.
    deformation_mm : float
        Displacement scale (mm).
    tissues : TissueVariation
        Two-pool parameters as functions of position.
    b1_centre, b1_widths : ndarray
        B1+ bump centre (mm) and widths (mm).
    b1_peak : float
        B1+ at the centre.
    b1_perturbation : SmoothField
        Unit-variance field; the relative perturbation is ``B1_PERTURBATION_SD`` times it.
    receive : dict of str to (SmoothField, float)
        Per session (``"mp2rage"``, ``"sir"``): two components (log-magnitude, phase) and a
        global phase (rad), functions of that session's scanner coordinates.
    motion : RigidMotion
        Head-position change from the MP3RAGE to the SIR session.
    bound_pool : bool
        False: PSR = 0 in every tissue.
    """

    index: int
    deformation: SmoothField
    deformation_mm: float
    tissues: TissueVariation
    b1_centre: np.ndarray
    b1_widths: np.ndarray
    b1_peak: float
    b1_perturbation: SmoothField
    receive: dict[str, tuple[SmoothField, float]]
    motion: RigidMotion
    bound_pool: bool

    def template_points(self, where: Where) -> np.ndarray:
        """Template (MNI, mm) position shown at ``where``: ``x + u(x)``, shape (..., 3)."""
        u = evaluate(self.deformation, where)
        return points_of(where) + self.deformation_mm * np.moveaxis(u, 0, -1)

    def fractions(self, where: Where, voxel_size: tuple[float, float, float]) -> np.ndarray:
        """Tissue fractions (n_classes, ...) of voxels of ``voxel_size`` (mm) centred at ``where``."""
        template = load_template()
        stack = prefiltered_fractions(tuple(float(v) for v in voxel_size))
        vox = apply_affine(np.linalg.inv(template.affine), self.template_points(where))
        coords = vox.reshape(-1, 3).T
        out = np.stack([ndimage.map_coordinates(f, coords, order=1, mode="constant", cval=0.0) for f in stack])
        return np.clip(out, 0.0, 1.0).reshape(len(stack), *vox.shape[:-1])

    def b1(self, where: Where) -> np.ndarray:
        """True relative B1+ at ``where``."""
        perturbation = B1_PERTURBATION_SD * evaluate(self.b1_perturbation, where)[0]
        return b1_transmit_field(points_of(where), self.b1_centre, self.b1_widths, self.b1_peak, perturbation)

    def receive_field(self, session: str, where: Where) -> np.ndarray:
        """Complex receive sensitivity at ``where``, in the scanner coordinates of ``session``."""
        smooth, phase0 = self.receive[session]
        log_mag, phase = evaluate(smooth, where)
        return np.exp(RECEIVE_LOG_SD * log_mag + 1j * (RECEIVE_PHASE_SD * phase + phase0))

    def tissue(self, tissue: str, where: Where) -> TissueMaps:
        """Two-pool parameters of ``tissue`` at ``where`` (PSR = 0 without bound pool)."""
        maps = self.tissues.evaluate(tissue, where)
        if not self.bound_pool:
            maps = maps.without_bound_pool()
        return maps


def cohort_box() -> tuple[np.ndarray, np.ndarray]:
    """World corners (mm) of the imaged field of view: the template brain plus :data:`FOV_MARGIN_MM`."""
    lo, hi = load_template().brain_box()
    return lo - FOV_MARGIN_MM, hi + FOV_MARGIN_MM


def draw_subject(settings: SimulationSettings, index: int, anatomy_seed: int = 0) -> SubjectModel:
    """Draw subject ``index`` of the cohort (anatomy, tissue, fields, motion) from ``anatomy_seed``."""
    box = cohort_box()
    centre = (box[0] + box[1]) / 2
    deformation = SmoothField.random(rng_for(anatomy_seed, index, "deformation"), box, DEFORMATION_SPACING_MM, 3)
    tissues = TissueVariation.random(rng_for(anatomy_seed, index, "tissues"), box, defaults=settings.tissues)
    rng = rng_for(anatomy_seed, index, "b1")
    b1_peak = B1_PEAK * np.exp(B1_PEAK_SD * rng.standard_normal())
    b1_centre = centre + B1_CENTRE_SD_MM * rng.standard_normal(3)
    b1_widths = np.asarray(B1_WIDTHS_MM) * np.exp(B1_WIDTH_SD * rng.standard_normal(3))
    b1_perturbation = SmoothField.random(rng, box, B1_SPACING_MM, 1)
    receive = {}
    for session in ("mp2rage", "sir"):
        rng = rng_for(anatomy_seed, index, f"receive-{session}")
        receive[session] = (SmoothField.random(rng, box, RECEIVE_SPACING_MM, 2), float(rng.uniform(-np.pi, np.pi)))
    if settings.motion:
        rng = rng_for(anatomy_seed, index, "motion")
        motion = random_rigid_motion(rng, settings.rotation_sd_deg, settings.translation_sd_mm, centre)
    else:
        motion = RigidMotion(np.zeros(3), np.zeros(3), centre)
    return SubjectModel(
        index=index,
        deformation=deformation,
        deformation_mm=settings.deformation_mm,
        tissues=tissues,
        b1_centre=b1_centre,
        b1_widths=b1_widths,
        b1_peak=float(b1_peak),
        b1_perturbation=b1_perturbation,
        receive=receive,
        motion=motion,
        bound_pool=settings.bound_pool,
    )


@dataclass(frozen=True)
class MixedSignals:
    """Signals of a set of voxels and their free-water-weighted truth.

    Attributes
    ----------
    signal : ndarray, shape (n_out, ...)
        ``sum_c f_c m0f_c S_c`` (before receive field and noise).
    pd : ndarray
        ``sum_c f_c m0f_c``: apparent free-water proton density.
    r1f, psr : ndarray
        ``sum_c f_c m0f_c p_c / pd``: free-water-weighted R1f (s^-1) and PSR; 0 where ``pd = 0``.
    """

    signal: np.ndarray
    pd: np.ndarray
    r1f: np.ndarray
    psr: np.ndarray


def mix_signals(
    model: SubjectModel,
    fractions: np.ndarray,
    where: Where,
    b1: np.ndarray,
    signal_fn: TissueSignalFn,
    n_out: int,
) -> MixedSignals:
    """Partial-volume mixture of the tissue signals, as signals (module docstring, step 3).

    Parameters
    ----------
    model : SubjectModel
        The subject.
    fractions : ndarray, shape (n_classes, ...)
        Tissue fractions of the voxels.
    where : Grid or ndarray
        Subject position of the voxels, where the tissue parameters are evaluated.
    b1 : ndarray, shape fractions.shape[1:]
        True relative B1+ of the voxels.
    signal_fn : callable
        Tissue signal function per unit M0f (:mod:`qt1lib.phantom.signals`).
    n_out : int
        Number of signals (readouts or inversion times) that ``signal_fn`` returns.
    """
    shape = fractions.shape[1:]
    signal = np.zeros((n_out, *shape))
    pd = np.zeros(shape)
    r1f_sum = np.zeros(shape)
    psr_sum = np.zeros(shape)
    for c, tissue in enumerate(TISSUE_CLASSES):
        sel = fractions[c] > FRACTION_THRESHOLD
        if not sel.any():
            continue
        maps = model.tissue(tissue, where)
        maps = maps.select(shape, sel)
        weight = fractions[c][sel] * maps.m0f
        signal[:, sel] += weight * signal_fn(maps, b1[sel])
        pd[sel] += weight
        r1f_sum[sel] += weight * maps.r1f
        psr_sum[sel] += weight * maps.psr
    with np.errstate(invalid="ignore", divide="ignore"):
        r1f = np.where(pd > 0, r1f_sum / pd, 0.0)
        psr = np.where(pd > 0, psr_sum / pd, 0.0)
    return MixedSignals(signal=signal, pd=pd, r1f=r1f, psr=psr)


@dataclass(frozen=True)
class SpaceTruth:
    """Ground truth on one grid.

    Attributes
    ----------
    fractions : ndarray, shape (n_classes, *grid.shape)
        Tissue fractions.
    pd, r1f, psr : ndarray
        Free-water-weighted truth of each voxel (see :class:`MixedSignals`).
    b1 : ndarray
        True relative B1+.
    """

    fractions: np.ndarray
    pd: np.ndarray
    r1f: np.ndarray
    psr: np.ndarray
    b1: np.ndarray


@dataclass(frozen=True)
class SubjectImages:
    """Simulated images of one subject.

    Attributes
    ----------
    model : SubjectModel
        The subject.
    grid, sir_grid : Grid
        MP3RAGE grid (first-session scanner = subject coordinates) and SIR grid (second-session
        scanner coordinates).
    gre : ndarray, complex64, shape (n_readouts, *grid.shape)
        MP3RAGE images (one per inversion); None when the MP3RAGE session was not simulated.
    b1_map : ndarray, float32, shape grid.shape
        Measured relative B1+ map (None with the MP3RAGE session).
    sir : ndarray, float32, shape (n_samples, *sir_grid.shape)
        SIR magnitude images; None when the SIR session was not simulated.
    truth, sir_truth : SpaceTruth
        Ground truth on each grid (None with their session).
    """

    model: SubjectModel
    grid: Grid
    sir_grid: Grid
    gre: np.ndarray | None
    b1_map: np.ndarray | None
    sir: np.ndarray | None
    truth: SpaceTruth | None
    sir_truth: SpaceTruth | None


def _complex_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    if sigma == 0:
        return np.zeros(shape, dtype=complex)
    return sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def cohort_grids(settings: SimulationSettings) -> tuple[Grid, Grid]:
    """MP3RAGE and SIR grids: axis-aligned in their session's scanner, covering :func:`cohort_box`."""
    box = cohort_box()
    return Grid.covering(box, settings.voxel_size), Grid.covering(box, settings.sir_voxel_size)


#: The two sessions :func:`simulate_subject` can simulate.
SESSIONS = ("mp2rage", "sir")


def simulate_subject(
    settings: SimulationSettings, model: SubjectModel, seed: int = 0, sessions: tuple[str, ...] = SESSIONS
) -> SubjectImages:
    """Simulate the MP3RAGE, B1 map and SIR images of one subject.

    Parameters
    ----------
    settings : SimulationSettings
        Acquisitions.
    model : SubjectModel
        The subject (:func:`draw_subject`).
    seed : int
        Seed of the image noise and of the B1 map's error.
    sessions : tuple of {"mp2rage", "sir"}
        The sessions to simulate (the others' fields are None); each session's noise has its own
        random stream, so simulating one alone gives the same images as simulating both.

    Returns
    -------
    SubjectImages
    """
    unknown = set(sessions) - set(SESSIONS)
    if unknown or not sessions:
        raise ValueError(f"sessions must be a non-empty subset of {SESSIONS}, got {sessions!r}")
    grid, sir_grid = cohort_grids(settings)
    gre = b1_map = sir = truth = sir_truth = None
    if "mp2rage" in sessions:
        gre, b1_map, truth = _simulate_mp2rage(settings, model, seed, grid)
    if "sir" in sessions:
        sir, sir_truth = _simulate_sir(settings, model, seed, sir_grid)
    return SubjectImages(
        model=model,
        grid=grid,
        sir_grid=sir_grid,
        gre=None if gre is None else gre.astype(np.complex64),
        b1_map=None if b1_map is None else b1_map.astype(np.float32),
        sir=None if sir is None else sir.astype(np.float32),
        truth=truth,
        sir_truth=sir_truth,
    )


def _simulate_mp2rage(settings: SimulationSettings, model: SubjectModel, seed: int, grid: Grid):
    """MP3RAGE images, measured B1 map and truth on the MP3RAGE grid."""
    # MP3RAGE session: its scanner coordinates are the subject coordinates.
    fractions = model.fractions(grid, settings.voxel_size)
    b1 = model.b1(grid)
    protocol = settings.protocol
    signal_fn = tabulated(mpnrage_tissue_signals(protocol, settings.inversion))
    mixed = mix_signals(model, fractions, grid, b1, signal_fn, protocol.n_readouts)
    noise = _complex_noise(rng_for(seed, model.index, "noise-mp2rage"), mixed.signal.shape, settings.noise_sigma("mp2rage"))
    gre = mixed.signal * model.receive_field("mp2rage", grid) + noise
    truth = SpaceTruth(fractions=fractions, pd=mixed.pd, r1f=mixed.r1f, psr=mixed.psr, b1=b1)

    # Measured B1 map: the true B1+ smoothed, plus a smooth error of standard deviation b1_noise.
    sigma_vox = settings.b1_map_fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / np.asarray(grid.voxel_size)
    b1_map = ndimage.gaussian_filter(b1, sigma_vox, mode="nearest")
    if settings.b1_noise > 0:
        white = rng_for(seed, model.index, "noise-b1map").standard_normal(grid.shape)
        err = ndimage.gaussian_filter(white, sigma_vox, mode="wrap")
        b1_map = b1_map + settings.b1_noise * err / err.std()
    return gre, b1_map, truth


def _simulate_sir(settings: SimulationSettings, model: SubjectModel, seed: int, sir_grid: Grid):
    """SIR magnitude images and truth on the SIR grid."""
    # SIR session: the head moved; the SIR grid is axis-aligned in the new scanner coordinates.
    sir_pts = apply_affine(model.motion.session_to_subject, sir_grid.points())
    sir_fractions = model.fractions(sir_pts, settings.sir_voxel_size)
    sir_b1 = model.b1(sir_pts)
    sir_protocol = settings.sir_protocol
    sir_mixed = mix_signals(
        model, sir_fractions, sir_pts, sir_b1, sir_tissue_signals(sir_protocol, settings.sir_readout_residual),
        sir_protocol.n_samples,
    )
    sir_complex = sir_mixed.signal * model.receive_field("sir", sir_grid)
    noise = _complex_noise(rng_for(seed, model.index, "noise-sir"), sir_complex.shape, settings.noise_sigma("sir"))
    sir = np.abs(sir_complex + noise)
    sir_truth = SpaceTruth(fractions=sir_fractions, pd=sir_mixed.pd, r1f=sir_mixed.r1f, psr=sir_mixed.psr, b1=sir_b1)
    return sir, sir_truth
