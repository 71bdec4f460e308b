"""Read and validate BIDS datasets of MP2RAGE/MP3RAGE, B1+ maps and multi-TI SIR; write derivatives.

Expected layout (DESIGN.md section 3; the digital cohort of :mod:`qt1lib.phantom` writes it)::

    sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-..][_acq-..][_run-..]_inv-<k>_part-<p>_MP2RAGE.nii[.gz]
    sub-<label>/[ses-<label>/]anat/sub-<label>..._acq-SIR_inv-<k>_IRT1.nii[.gz]
    sub-<label>/[ses-<label>/]fmap/sub-<label>..._TB1map.nii[.gz]

with JSON sidecars found by the BIDS inheritance principle (a sidecar applies to every image
whose entities include its own, from the dataset root down to the image's folder; the more
specific one wins).

The rules below follow the BIDS specification 1.10 (repository bids-standard/bids-specification):
the ``part`` entity (``src/schema/objects/entities.yaml``), the ``TB1map`` suffix
(``src/schema/objects/suffixes.yaml``), ``NumberShots`` (``src/schema/objects/metadata.yaml`` and
the qMRI appendix ``src/appendices/qmri.md``, "NumberShots metadata field"), ``IntendedFor``
(``metadata.yaml``), scans files (``src/modality-agnostic-files/data-summary-files.md``) and the
validator's check ``PHASE_UNITS`` (``src/schema/rules/checks/mri.yaml``). Where BIDS leaves a
choice open, the rule is marked *(choice)*.

**Acquisition.** The images of one subject that share every entity but ``inv`` and ``part`` form
one acquisition; several (other ``ses``, ``acq``, ``run``, ``echo``) are an error unless
``select`` picks one.

**MP2RAGE parts.** BIDS: ``part`` tells "which component of the complex representation of the
MRI signal is represented in voxel data". Every inversion must have the same parts, one of:
``part-real`` + ``part-imag`` (``real + i imag``); ``part-mag`` + ``part-phase``
(``mag * exp(i phase)``); ``part-mag`` alone, or no ``part`` entity (magnitude only, below).
Images must hold real numbers: a complex data type is an error naming the file, never a dropped
imaginary part (BIDS, ``src/modality-specific-files/magnetic-resonance-imaging-data.md``:
"Complex-valued data MUST be split into one file for each data type"). Magnitudes
(``part-mag``, and the SIR images) must not be negative.

**Phase units.** BIDS: "Phase images MAY be in radians or in arbitrary units. The sidecar JSON
file MUST include the "Units" of the phase image. The possible options are "rad" or
"arbitrary"." ``"rad"``: used as is; values outside ``[-pi, 2 pi]`` (0.01 rad tolerance) are an
error. ``"arbitrary"``, or no ``Units`` (which BIDS forbids; read the same way *(choice)*): values
inside ``[-pi, 2 pi]`` are radians; integer values beyond are a code of one turn *(choice)*:
unsigned codes ``0..P-1`` map to ``2 pi x / P - pi`` in ``[-pi, pi)``, signed codes ``-P..P-1``
to ``pi x / P`` (Siemens phase is a 12-bit code 0..4095, or -4096..4094 after its DICOM rescale
slope 2, intercept -4096, depending on the converter: assumption from converter practice), with
``P`` the smallest power of two that holds the codes (``2^ceil(log2(max + 1))`` unsigned,
``2^ceil(log2(max |x|))`` signed); non-integer values beyond are an error. Other ``Units`` are
an error.

**How many inversions** *(choice)*. The inversions found are the acquisition, numbered 1..n
without gaps. Evidence that more were acquired is an error, never a silent MP2RAGE: a sidecar of
an inversion of this acquisition (``..._inv-<k>_..._MP2RAGE.json`` beside the images) without
its image; an inversion whose parts differ from the others'; a ``PulseSequenceType`` of the form
``MP<n>RAGE`` in an inversion's sidecar with ``n`` other than the number found; an MP2RAGE image
of an inversion not found, named by the TB1map's ``IntendedFor`` or by the subject's
``scans.tsv``.

**Magnitude only.** Magnitude-only inversions need the scanner's UNI image
(``..._UNIT1.nii[.gz]``, same entities without ``inv``/``part``): inversion 1 gets the sign of
UNI, later inversions are taken positive. Rule: UNI = Re(conj(G1) G2) / (|G1|^2 + |G2|^2) has the
sign of G1 G2 for real signals, and G2 (and later readouts), acquired after Mz has recovered past
zero for brain T1s, is positive; UNI stored as integers 0..4095 (max > 1) is mapped to
``u / 4095 - 0.5``.

**Sidecar fields** (units as BIDS: seconds, degrees, tesla). MP2RAGE: ``InversionTime``,
``FlipAngle``, ``RepetitionTimeExcitation`` (the echo spacing; BIDS qMRI appendix: "When
accessible, the value of EchoSpacing corresponds to this metadata"), ``RepetitionTimePreparation``,
``NumberShots``, ``MagneticFieldStrength``, and ``InversionEfficiency`` (fraction of Mz the
adiabatic pulse inverts; not a BIDS field). ``NumberShots`` is, as BIDS allows, either an array
(qMRI appendix: "a 1X2 array, with first entry corresponding to before and the second to the
after" the k-space centre; Marques' ``NZslices``, whose ``after`` counts the centre excitation:
:attr:`MPnRAGEProtocol.n_before` / ``n_after``), or a number N of excitations per train, split
``before = N // 2``, ``after = N - N // 2``: the appendix's ``before = N (PF - 0.5)``,
``after = N / 2`` with full Fourier (PF = 1); with partial Fourier give the array. The non-BIDS
``NumberShotsBeforeKSpaceCenter`` of earlier qt1lib cohorts is an error that says so. SIR:
``InversionTime`` (ti), ``DelayTime`` (td, end of the previous readout to the inversion),
``BoundPoolInversionFactor`` (Sm; not a BIDS field), ``MagneticFieldStrength``; the (ti, td)
pairs must be distinct. A missing field may come from ``defaults``; the error for a missing field
says so, and names the command-line option of the fields a scanner export commonly lacks
(``InversionEfficiency``: ``--inversion-efficiency``, ``NumberShots``: ``--number-shots``,
``RepetitionTimeExcitation``: ``--echo-spacing``).

**B1+ map units.** BIDS: TB1map is "In arbitrary units (arbitrary)"; its values "are RECOMMENDED
to be represented as percent multiplicative factors such that FlipAngle_effective =
B1+_intensity * FlipAngle_nominal". The unit is the ``b1_units`` argument if given, else the
sidecar's ``Units``: ``ratio`` (also ``1``, ``fraction``, ``relative``), ``percent`` (also ``%``,
``pct``), ``deg`` (also ``degree``, ``degrees``: a flip-angle map, relative B1+ = value /
``FlipAngle`` of the TB1map sidecar, the nominal angle in degrees; without ``FlipAngle`` an
error), or ``arbitrary`` (also ``a.u.``) / absent: decided from the values *(choice)*. Then the
median m of the measured voxels in the head (voxels whose largest inversion magnitude exceeds
10 % of its 99th percentile, an assumption; all measured voxels if there are none) means
percent if m > 10, else ratio; but if the TB1map sidecar has a ``FlipAngle`` and
``m / FlipAngle`` lies in
``[1/3, 3]``, the map may hold flip angles and the reading is an error that asks for ``Units``
or ``b1_units``. Whatever the source, a median relative B1+ in the head outside ``[1/3, 3]`` is
an error naming the unit used *(choice: the scanner's transmit calibration puts it near 1)*.
Voxels that are not positive or not finite are NaN, "not measured" (zero outside the head is
common), counted in :attr:`MPnRAGEData.b1_not_measured`; B1-aware estimators give NaN T1 there
(:meth:`qt1lib.estimate.base.T1Estimator.fit`). With ``resample_b1`` the map is resampled
trilinearly, and a voxel is measured where every B1 voxel the interpolation weighs is measured:
the neighbours (within one B1 voxel) of a voxel not measured, and voxels outside the map's field
of view, are NaN.

**Validation** collects every problem of a subject (missing files or fields, values in the
wrong unit, shape or affine mismatches between parts, inversions and the B1 map, NaNs,
unreadable or truncated files) and raises one :class:`BIDSValidationError` whose message names
each file and field. Readers validate before returning anything, and write nothing.

**Derivatives** are written by :mod:`qt1lib.derivatives`. Whether a result is reused is decided
by the content-addressed store (:mod:`qt1lib.store`), which keys it by the content of the files a
reader read (:attr:`MPnRAGEData.inputs`, :func:`files_read`, sidecars inherited included).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .io import load_json
from .protocols import MPnRAGEProtocol
from .protocols_sir import SIRProtocol
from .validate import is_integer

__all__ = [
    "B1_UNITS",
    "MP2RAGE_FIELDS",
    "SIR_FIELDS",
    "BIDSName",
    "BIDSValidationError",
    "MPnRAGEData",
    "SIRData",
    "applicable_sidecars",
    "files_read",
    "has_sir",
    "list_subjects",
    "parse_name",
    "read_mpnrage",
    "read_sidecar",
    "read_sir",
    "validate_dataset",
]

#: Sidecar fields an MP2RAGE/MP3RAGE inversion needs (``InversionEfficiency`` may come from defaults).
MP2RAGE_FIELDS = (
    "InversionTime",
    "FlipAngle",
    "RepetitionTimeExcitation",
    "RepetitionTimePreparation",
    "NumberShots",
    "MagneticFieldStrength",
    "InversionEfficiency",
)
#: Sidecar fields a SIR image needs (``BoundPoolInversionFactor`` may come from defaults).
SIR_FIELDS = ("InversionTime", "DelayTime", "BoundPoolInversionFactor", "MagneticFieldStrength")
#: Units a B1+ map may be read in (the ``b1_units`` argument of :func:`read_mpnrage`).
B1_UNITS = ("ratio", "percent", "degrees")

#: Upper bounds that catch values in the wrong unit: milliseconds where BIDS wants seconds.
_SECONDS_MAX = {
    "InversionTime": 20.0,
    "DelayTime": 30.0,
    "RepetitionTimeExcitation": 1.0,
    "RepetitionTimePreparation": 100.0,
}
_FIELDS_SHARED = (
    "RepetitionTimeExcitation",
    "RepetitionTimePreparation",
    "NumberShots",
    "MagneticFieldStrength",
    "InversionEfficiency",
)
#: Command-line options (``qt1``) of the fields a scanner export commonly lacks.
_CLI_OPTIONS = {
    "InversionEfficiency": "--inversion-efficiency",
    "NumberShots": "--number-shots",
    "RepetitionTimeExcitation": "--echo-spacing",
}
#: TB1map ``Units`` spellings and the unit they mean (None: arbitrary, decided from the values).
_B1_UNIT_NAMES = {
    **dict.fromkeys(("ratio", "1", "fraction", "relative"), "ratio"),
    **dict.fromkeys(("percent", "%", "pct"), "percent"),
    **dict.fromkeys(("deg", "degree", "degrees"), "degrees"),
    **dict.fromkeys(("arbitrary", "a.u.", "au"), None),
}
#: Median of a map above which values are read as percent (module docstring).
_PERCENT_ABOVE = 10.0
#: Plausible median relative B1+ in the head, and of value / FlipAngle for a flip-angle map.
_B1_MEDIAN_RANGE = (1 / 3, 3.0)
#: Head voxels for the B1 statistics: largest inversion magnitude above this fraction of its 99th percentile.
_HEAD_FRACTION = 0.1
_PHASE_UNITS = ("rad", "arbitrary")
_RADIANS_TOLERANCE = 0.01
_PULSE_SEQUENCE = re.compile(r"MP(\d+)RAGE", re.IGNORECASE)
_NIFTI = re.compile(r"\.nii(\.gz)?$")

class BIDSValidationError(ValueError):
    """Problems found in a BIDS dataset; ``problems`` lists them, each naming its file and field."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the BIDS dataset:\n  " + "\n  ".join(self.problems))


# ------------------------------------------------------------------------------ file names
@dataclass(frozen=True)
class BIDSName:
    """A parsed BIDS file name: ``entities`` (in order), ``suffix`` and ``extension``."""

    path: Path
    entities: dict[str, str]
    suffix: str
    extension: str


def parse_name(path: str | os.PathLike) -> BIDSName:
    """Parse ``sub-01_inv-1_part-real_MP2RAGE.nii.gz`` into entities, suffix and extension.

    Raises
    ------
    ValueError
        If the name has no suffix or an entity without ``key-value`` form.
    """
    path = Path(path)
    name = path.name
    m = _NIFTI.search(name)
    if m:
        stem, extension = name[: m.start()], m.group(0)
    else:
        stem, extension = (name.split(".", 1) + [""])[:2]
        extension = "." + extension if extension else ""
    parts = stem.split("_")
    entities = {}
    for token in parts[:-1]:
        if "-" not in token:
            raise ValueError(f"{path}: {token!r} is not a BIDS key-value entity")
        key, value = token.split("-", 1)
        entities[key] = value
    if not parts[-1] or "-" in parts[-1]:
        raise ValueError(f"{path}: no BIDS suffix (expected e.g. _MP2RAGE, _IRT1, _TB1map)")
    return BIDSName(path=path, entities=entities, suffix=parts[-1], extension=extension)


def list_subjects(bids_dir: str | os.PathLike) -> list[str]:
    """Subject labels (without ``sub-``) of the folders ``sub-*`` at the dataset root, sorted.

    Raises
    ------
    ValueError
        If ``bids_dir`` does not exist.
    """
    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise ValueError(f"bids_dir {bids_dir} is not a directory")
    return sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())


def _rel(bids_dir: Path, path: Path) -> str:
    try:
        return str(path.relative_to(bids_dir))
    except ValueError:
        return str(path)


def applicable_sidecars(image: str | os.PathLike, bids_dir: str | os.PathLike) -> list[Path]:
    """The ``.json`` files that apply to ``image`` by the BIDS inheritance principle, lowest precedence first.

    Every ``.json`` with the same suffix whose entities are a subset of the image's, in the
    dataset root, the subject folder, the session folder or the image's folder, applies; deeper
    folders and more entities take precedence.
    """
    image, bids_dir = Path(image), Path(bids_dir)
    target = parse_name(image)
    folders = [bids_dir]
    rel_parts = image.parent.relative_to(bids_dir).parts if image.is_relative_to(bids_dir) else ()
    for i in range(len(rel_parts)):
        folders.append(bids_dir.joinpath(*rel_parts[: i + 1]))
    candidates = []
    for depth, folder in enumerate(dict.fromkeys(folders)):
        for js in sorted(folder.glob(f"*_{target.suffix}.json")) + sorted(folder.glob(f"{target.suffix}.json")):
            try:
                name = parse_name(js) if "_" in js.name else BIDSName(js, {}, target.suffix, ".json")
            except ValueError:
                continue
            if name.suffix == target.suffix and all(target.entities.get(k) == v for k, v in name.entities.items()):
                candidates.append((depth, len(name.entities), js))
    return [js for _, _, js in sorted(candidates)]


def read_sidecar(image: str | os.PathLike, bids_dir: str | os.PathLike) -> dict:
    """Metadata of ``image`` by the BIDS inheritance principle (:func:`applicable_sidecars`, merged in order).

    Raises
    ------
    ValueError
        If an applicable sidecar is not valid JSON.
    """
    meta: dict = {}
    for js in applicable_sidecars(image, bids_dir):
        meta.update(load_json(js))
    return meta


def files_read(bids_dir: str | os.PathLike, images: Iterable[str | os.PathLike]) -> tuple[Path, ...]:
    """``images`` and every sidecar that applies to them: the files a reader of those images depends on."""
    out: set[Path] = set()
    for image in images:
        out.add(Path(image))
        out.update(applicable_sidecars(image, bids_dir))
    return tuple(sorted(out))


# ------------------------------------------------------------------------------ discovery
def _subject_folders(bids_dir: Path, subject: str) -> list[Path]:
    """The subject folder and its session folders."""
    sub_dir = bids_dir / f"sub-{subject}"
    if not sub_dir.is_dir():
        raise BIDSValidationError([f"sub-{subject}: subject folder {_rel(bids_dir, sub_dir)} does not exist"])
    return [sub_dir, *sorted(p for p in sub_dir.glob("ses-*") if p.is_dir())]


def _matching(subject: str, folders: Iterable[Path], suffix: str, pattern: str, select: Mapping | None) -> list[BIDSName]:
    found = []
    for folder in folders:
        for path in sorted(folder.glob(f"sub-{subject}_*_{suffix}{pattern}")) + sorted(folder.glob(f"sub-{subject}_{suffix}{pattern}")):
            try:
                name = parse_name(path)
            except ValueError:
                continue
            if name.suffix == suffix and all(name.entities.get(k) == v for k, v in (select or {}).items()):
                found.append(name)
    return found


def _images(bids_dir: Path, subject: str, datatype: str, suffix: str, select: Mapping[str, str] | None) -> list[BIDSName]:
    folders = [f / datatype for f in _subject_folders(bids_dir, subject)]
    return [n for n in _matching(subject, folders, suffix, ".nii*", select) if _NIFTI.search(n.path.name)]


def _group_key(name: BIDSName, ignore: tuple[str, ...] = ("inv", "part")) -> tuple:
    return tuple(sorted((k, v) for k, v in name.entities.items() if k not in ignore))


def _single_group(bids_dir: Path, names: list[BIDSName], ignore: tuple[str, ...], what: str) -> list[BIDSName]:
    """Keep one acquisition: all files must share every entity but ``ignore``."""
    groups: dict[tuple, list[BIDSName]] = {}
    for n in names:
        groups.setdefault(_group_key(n, ignore), []).append(n)
    if len(groups) > 1:
        listing = "; ".join("_".join(f"{k}-{v}" for k, v in key) for key in groups)
        raise BIDSValidationError(
            [f"{what}: several acquisitions found ({listing}); choose one with select={{'acq': ..., 'run': ..., 'ses': ...}}"]
        )
    return next(iter(groups.values()), [])


def _sir_images(bids_dir: Path, subject: str, select: Mapping[str, str] | None, acq: str) -> list[BIDSName]:
    """The subject's ``acq-<acq>`` IRT1 images with the ``select`` entities that SIR images carry.

    An entity of ``select`` that none of the subject's SIR images has (a ``run`` or ``echo`` that
    only the MP2RAGE acquisition has) does not filter them; ``acq`` is replaced by ``acq``.
    """
    candidates = _images(bids_dir, subject, "anat", "IRT1", {"acq": acq})
    carried = {k for n in candidates for k in n.entities}
    wanted = {k: v for k, v in (select or {}).items() if k in carried and k != "acq"}
    return [n for n in candidates if all(n.entities.get(k) == v for k, v in wanted.items())]


def has_sir(
    bids_dir: str | os.PathLike, subject: str, select: Mapping[str, str] | None = None, acq: str = "SIR"
) -> bool:
    """Whether the subject has SIR images (``anat/*_acq-<acq>_inv-<k>_IRT1.nii[.gz]``) that :func:`read_sir` would read.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root.
    subject : str
        Label without ``sub-``.
    select : mapping, optional
        Entity filters, as :func:`read_sir` applies them.
    acq : str
        Value of the ``acq`` entity of the SIR images.

    Raises
    ------
    BIDSValidationError
        If the subject folder does not exist.
    """
    return bool(_sir_images(Path(bids_dir), subject, select, acq))


# ------------------------------------------------------------------------------ images
def _load(bids_dir: Path, path: Path, problems: list[str]) -> nib.Nifti1Image | None:
    try:
        img = nib.load(path)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for a damaged header
        problems.append(f"{_rel(bids_dir, path)}: unreadable NIfTI header ({type(err).__name__}: {err})")
        return None
    if len(img.shape) != 3:
        problems.append(f"{_rel(bids_dir, path)}: expected a 3-D image, got shape {img.shape}")
        return None
    return img


def _data(bids_dir: Path, path: Path, img: nib.Nifti1Image, problems: list[str], finite: bool = True) -> np.ndarray | None:
    """Voxel values as float32; a complex data type, and (with ``finite``) NaN or infinite values, are problems."""
    dtype = img.get_data_dtype()
    if np.issubdtype(dtype, np.complexfloating):
        problems.append(
            f"{_rel(bids_dir, path)}: complex data type ({dtype}); BIDS stores complex images as real-valued "
            "files, one per part (part-real + part-imag, or part-mag + part-phase): split it"
        )
        return None
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:  # noqa: BLE001 - EOFError, zlib.error, OSError for truncated files
        problems.append(f"{_rel(bids_dir, path)}: unreadable or truncated image data ({type(err).__name__}: {err})")
        return None
    if not finite:
        return data
    n_nan = int(np.isnan(data).sum())
    if n_nan:
        problems.append(f"{_rel(bids_dir, path)}: {n_nan} NaN voxel(s); replace them (e.g. by 0) or mask them out")
        return None
    if not np.isfinite(data).all():
        problems.append(f"{_rel(bids_dir, path)}: infinite voxel values")
        return None
    return data


def _check_magnitude(bids_dir: Path, path: Path, data: np.ndarray, problems: list[str]) -> bool:
    negative = data < 0
    if negative.any():
        problems.append(
            f"{_rel(bids_dir, path)}: magnitude image with {int(negative.sum())} negative voxel(s) (min "
            f"{float(data.min()):.4g}); a magnitude is >= 0 (signed values belong in part-real/part-imag)"
        )
        return False
    return True


def _check_grid(bids_dir: Path, path: Path, img: nib.Nifti1Image, ref: tuple[Path, nib.Nifti1Image], problems: list[str]) -> bool:
    ref_path, ref_img = ref
    if img.shape != ref_img.shape:
        problems.append(
            f"{_rel(bids_dir, path)}: shape {img.shape} differs from {_rel(bids_dir, ref_path)} {ref_img.shape}"
        )
        return False
    if not np.allclose(img.affine, ref_img.affine, atol=1e-4):
        problems.append(
            f"{_rel(bids_dir, path)}: affine (voxel-to-world matrix) differs from that of {_rel(bids_dir, ref_path)} "
            f"(max difference {np.abs(img.affine - ref_img.affine).max():.3g} mm)"
        )
        return False
    return True


def _load_on_grid(bids_dir: Path, path: Path, ref: list, problems: list[str]) -> np.ndarray | None:
    """Data of one image that must share the grid of ``ref[0]``; the first image read sets ``ref``.

    Every problem (unreadable header, other shape or affine, complex data type, truncated data,
    NaN) is appended to ``problems`` naming the file, and None is returned.
    """
    img = _load(bids_dir, path, problems)
    if img is None:
        return None
    if not ref:
        ref.append((path, img))
    elif not _check_grid(bids_dir, path, img, ref[0], problems):
        return None
    return _data(bids_dir, path, img, problems)


# ------------------------------------------------------------------------------ sidecars
def _missing(key: str, where: str) -> str:
    option = _CLI_OPTIONS.get(key)
    return (
        f"{where}: missing sidecar field '{key}'; add it to the sidecar or give it with defaults={{'{key}': ...}}"
        + (f" (command line: {option})" if option else "")
    )


def _number(meta: dict, key: str, where: str, problems: list[str], defaults: Mapping | None = None) -> float | None:
    if key in meta:
        value = meta[key]
    elif defaults and key in defaults:
        value = defaults[key]
    else:
        problems.append(_missing(key, where))
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        problems.append(f"{where}: field '{key}' must be a finite number, got {value!r}")
        return None
    limit = _SECONDS_MAX.get(key)
    if value <= 0:
        problems.append(f"{where}: field '{key}' must be positive, got {value!r}")
        return None
    if limit is not None and value > limit:
        problems.append(f"{where}: field '{key}' = {value} looks like milliseconds; BIDS times are in seconds")
        return None
    return float(value)


def _number_shots(meta: dict, where: str, problems: list[str], defaults: Mapping | None) -> tuple[int, int] | None:
    """``(before, after)`` from ``NumberShots``: a BIDS ``[before, after]`` array or a number (module docstring)."""
    if "NumberShotsBeforeKSpaceCenter" in meta:
        problems.append(
            f"{where}: field 'NumberShotsBeforeKSpaceCenter' is not BIDS (earlier qt1lib cohorts wrote it); "
            "give 'NumberShots' as [before, after] instead (BIDS qMRI appendix, NumberShots metadata field)"
        )
        return None
    value = meta["NumberShots"] if "NumberShots" in meta else (defaults or {}).get("NumberShots")
    if value is None:
        problems.append(_missing("NumberShots", where))
        return None
    if isinstance(value, (list, tuple)):
        if (
            len(value) == 2
            and all(is_integer(v, integral_floats=True) for v in value)
            and value[0] >= 0
            and value[1] >= 1
        ):
            return int(value[0]), int(value[1])
        problems.append(
            f"{where}: field 'NumberShots' = {value!r} must be [before, after]: two integers, the excitations "
            "before the k-space centre (>= 0) and from the centre on (>= 1)"
        )
        return None
    if is_integer(value, integral_floats=True) and value >= 1:
        n = int(value)
        return n // 2, n - n // 2
    problems.append(
        f"{where}: field 'NumberShots' = {value!r} must be a positive integer (excitations per train) or "
        "[before, after]"
    )
    return None


@dataclass(frozen=True)
class MPnRAGEData:
    """MP2RAGE/MP3RAGE data of one subject.

    Attributes
    ----------
    subject : str
        Label without ``sub-``.
    gre : ndarray, complex64, shape (n_readouts, X, Y, Z)
        Complex GRE image of each inversion (arbitrary units).
    affine : ndarray, shape (4, 4)
        Voxel-to-world matrix (RAS, mm).
    protocol : MPnRAGEProtocol
        The acquisition, from the sidecars.
    b1 : ndarray or None
        Relative B1+ (1 = nominal) on the same grid, if a TB1map exists; NaN where not measured
        (module docstring, "B1+ map units").
    files : dict
        ``"inv-<k>"`` -> list of image paths, ``"b1"`` -> path (if any).
    inputs : tuple of Path
        Every file read: the images (the UNI image too, for magnitude-only data), the B1 map and
        every sidecar that applies to them (:func:`files_read`).
    b1_units : str or None
        The unit the B1 map was read in (one of :data:`B1_UNITS`), and how it was decided.
    b1_not_measured : int
        Voxels of ``b1`` that are NaN (not positive or not finite in the file).
    """

    subject: str
    gre: np.ndarray
    affine: np.ndarray
    protocol: MPnRAGEProtocol
    b1: np.ndarray | None
    files: dict = field(default_factory=dict)
    inputs: tuple[Path, ...] = ()
    b1_units: str | None = None
    b1_not_measured: int = 0


@dataclass(frozen=True)
class SIRData:
    """Multi-TI SIR data of one subject.

    Attributes
    ----------
    subject : str
        Label without ``sub-``.
    images : ndarray, float32, shape (n_samples, X, Y, Z)
        Magnitude image of each (ti, td) sample, in the order of the ``inv`` index.
    affine : ndarray, shape (4, 4)
        Voxel-to-world matrix (RAS, mm).
    protocol : SIRProtocol
        ti, td and Sm from the sidecars.
    files : list of Path
        The images.
    inputs : tuple of Path
        The images and every sidecar that applies to them (:func:`files_read`).
    """

    subject: str
    images: np.ndarray
    affine: np.ndarray
    protocol: SIRProtocol
    files: list[Path] = field(default_factory=list)
    inputs: tuple[Path, ...] = ()


def _inversion_index(bids_dir: Path, name: BIDSName, problems: list[str]) -> int | None:
    inv = name.entities.get("inv")
    if inv is None or not inv.isdigit() or int(inv) < 1:
        problems.append(f"{_rel(bids_dir, name.path)}: entity 'inv' must be a positive integer, got {inv!r}")
        return None
    return int(inv)


def _mp2rage_fields(bids_dir: Path, path: Path, meta: dict, defaults: Mapping | None, problems: list[str]) -> dict:
    """Checked fields of one MP2RAGE sidecar (None where a problem was recorded); ``NumberShots`` as (before, after)."""
    where = f"{_rel(bids_dir, path)} (sidecar)"
    v: dict = {key: _number(meta, key, where, problems, defaults) for key in MP2RAGE_FIELDS if key != "NumberShots"}
    v["NumberShots"] = _number_shots(meta, where, problems, defaults)
    if v["FlipAngle"] is not None and v["FlipAngle"] > 90:
        problems.append(f"{where}: field 'FlipAngle' = {v['FlipAngle']} must be <= 90 degrees")
    if v["InversionEfficiency"] is not None and v["InversionEfficiency"] > 1:
        problems.append(f"{where}: field 'InversionEfficiency' = {v['InversionEfficiency']} must lie in (0, 1]")
    return v


def _differ(a, b) -> bool:
    return a is not None and b is not None and not np.allclose(a, b)


def _mpnrage_protocol(
    bids_dir: Path,
    subject: str,
    sidecars: dict[int, list[tuple[Path, dict]]],
    defaults: Mapping | None,
    problems: list[str],
) -> MPnRAGEProtocol | None:
    """Protocol from the sidecars of every part of every inversion (each checked on its own)."""
    n_problems = len(problems)
    values: dict[int, dict] = {}
    paths: dict[int, Path] = {}
    for k, entries in sorted(sidecars.items()):
        per_part = [(path, _mp2rage_fields(bids_dir, path, meta, defaults, problems)) for path, meta in entries]
        first_path, first = per_part[0]
        for path, v in per_part[1:]:
            for key, value in v.items():
                if _differ(value, first[key]):
                    problems.append(
                        f"{_rel(bids_dir, path)} (sidecar): field '{key}' = {value} differs from {first[key]} in "
                        f"{_rel(bids_dir, first_path)} (same inversion)"
                    )
        values[k], paths[k] = first, first_path
    if len(problems) > n_problems:
        return None
    first_k = min(values)
    first_path = paths[first_k]
    for k, v in values.items():
        for key in _FIELDS_SHARED:
            if _differ(v[key], values[first_k][key]):
                problems.append(
                    f"{_rel(bids_dir, paths[k])} (sidecar): field '{key}' = {v[key]} differs from "
                    f"{values[first_k][key]} in {_rel(bids_dir, first_path)}; all inversions share it"
                )
    if len(problems) > n_problems:
        return None
    ks = sorted(values)
    shared = values[first_k]
    before, after = shared["NumberShots"]
    try:
        return MPnRAGEProtocol(
            name=f"sub-{subject} (BIDS sidecars)",
            tr_mprage=shared["RepetitionTimePreparation"],
            echo_spacing=shared["RepetitionTimeExcitation"],
            inversion_times=tuple(values[k]["InversionTime"] for k in ks),
            flip_angles=tuple(values[k]["FlipAngle"] for k in ks),
            n_before=before,
            n_after=after,
            inversion_efficiency=shared["InversionEfficiency"],
            field_strength=shared["MagneticFieldStrength"],
            source=f"BIDS sidecars of sub-{subject}",
        )
    except ValueError as err:
        files = ", ".join(_rel(bids_dir, paths[k]) for k in ks)
        problems.append(f"{files} (sidecars): inconsistent protocol: {err}")
        return None


# ------------------------------------------------------------------------------ inversions present
def _listed_files(bids_dir: Path, subject: str) -> dict[Path, str]:
    """Files the subject's metadata names (TB1map ``IntendedFor``, ``scans.tsv``) -> where it is named."""
    listed: dict[Path, str] = {}
    folders = _subject_folders(bids_dir, subject)
    for tb1 in _matching(subject, [f / "fmap" for f in folders], "TB1map", ".json", None):
        try:
            intended = load_json(tb1.path).get("IntendedFor", [])
        except ValueError:
            continue  # reported by the reader of the B1 map
        for entry in [intended] if isinstance(intended, str) else intended:
            if not isinstance(entry, str):
                continue
            if entry.startswith("bids::"):  # a BIDS URI into this dataset
                listed[bids_dir / entry[len("bids::"):]] = f"{_rel(bids_dir, tb1.path)} (field 'IntendedFor')"
            elif ":" not in entry:  # relative to the subject folder (deprecated by BIDS)
                listed[folders[0] / entry] = f"{_rel(bids_dir, tb1.path)} (field 'IntendedFor')"
    for folder in folders:
        for scans in sorted(folder.glob(f"sub-{subject}*_scans.tsv")):
            with open(scans, newline="") as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    if row.get("filename"):
                        listed[folder / row["filename"]] = f"{_rel(bids_dir, scans)} (column 'filename')"
    return listed


def _check_inversions_present(
    bids_dir: Path,
    subject: str,
    names: list[BIDSName],
    inversions: dict[int, dict[str, BIDSName]],
    sidecars: dict[int, list[tuple[Path, dict]]],
    problems: list[str],
) -> None:
    """Evidence that inversions or parts are missing (module docstring, "How many inversions")."""
    key = _group_key(names[0])
    ks = sorted(inversions)
    # sidecars of this acquisition without their image
    folders = sorted({n.path.parent for n in names})
    for js in _matching(subject, folders, "MP2RAGE", ".json", None):
        if "inv" in js.entities and _group_key(js) == key:
            stem = js.path.name[: -len(".json")]
            if not any((js.path.parent / f"{stem}{ext}").exists() for ext in (".nii", ".nii.gz")):
                problems.append(
                    f"{_rel(bids_dir, js.path)}: sidecar of inversion {js.entities['inv']} without its image "
                    f"({stem}.nii[.gz] is missing)"
                )
    # every inversion with the same parts
    parts = {k: sorted(inversions[k]) for k in ks}
    if len({tuple(p) for p in parts.values()}) > 1:
        listing = "; ".join(f"inversion {k}: {p}" for k, p in parts.items())
        problems.append(f"sub-{subject} MP2RAGE: the inversions have different parts ({listing}); each needs the same")
    # the sequence type names the number of inversions
    for k, entries in sorted(sidecars.items()):
        for path, meta in entries:
            m = _PULSE_SEQUENCE.fullmatch(str(meta.get("PulseSequenceType", "")).strip())
            if m and int(m.group(1)) != len(ks):
                problems.append(
                    f"{_rel(bids_dir, path)} (sidecar): field 'PulseSequenceType' = {meta['PulseSequenceType']!r} "
                    f"names {m.group(1)} inversions, but inversions {ks} were found"
                )
    # inversions of this acquisition that the metadata names but that were not found
    for path, where in _listed_files(bids_dir, subject).items():
        try:
            name = parse_name(path)
        except ValueError:
            continue
        inv = name.entities.get("inv", "")
        if name.suffix == "MP2RAGE" and _group_key(name) == key and not (inv.isdigit() and int(inv) in ks):
            problems.append(f"{where} names {_rel(bids_dir, path)} (inversion {inv}), which does not exist")


# ------------------------------------------------------------------------------ parts
def _phase_radians(bids_dir: Path, path: Path, meta: dict, phase: np.ndarray, problems: list[str]) -> np.ndarray | None:
    """Phase in radians from its ``Units`` and values (module docstring, "Phase units")."""
    where = _rel(bids_dir, path)
    units = meta.get("Units")
    unit = None if units is None else str(units).strip().lower()
    if unit is not None and unit not in _PHASE_UNITS:
        problems.append(f"{where} (sidecar): field 'Units' = {units!r}; BIDS phase images are in 'rad' or 'arbitrary'")
        return None
    lo, hi = float(phase.min()), float(phase.max())
    radians = lo >= -np.pi - _RADIANS_TOLERANCE and hi <= 2 * np.pi + _RADIANS_TOLERANCE
    if radians:
        return phase
    if unit == "rad":
        problems.append(
            f"{where}: phase values span [{lo:g}, {hi:g}], outside [-pi, 2 pi], but the sidecar field 'Units' is "
            "'rad'; integer-coded phase needs Units 'arbitrary'"
        )
        return None
    if not np.array_equal(phase, np.round(phase)):
        problems.append(
            f"{where}: phase in arbitrary units with non-integer values spanning [{lo:g}, {hi:g}]: its coding cannot "
            "be told; store it in radians with Units 'rad'"
        )
        return None
    if lo >= 0:  # unsigned code 0..P-1 -> [-pi, pi)
        period = 2.0 ** np.ceil(np.log2(hi + 1))
        return (phase * np.float32(2 * np.pi / period) - np.float32(np.pi)).astype(np.float32)
    period = 2.0 ** np.ceil(np.log2(max(-lo, hi)))  # signed code -P..P-1 -> [-pi, pi)
    return (phase * np.float32(np.pi / period)).astype(np.float32)


def _complex_inversion(
    bids_dir: Path, parts: dict[str, BIDSName], uni: np.ndarray | None, k: int, ref: list, problems: list[str]
) -> np.ndarray | None:
    """Complex image of one inversion from its parts (module docstring)."""
    kinds = set(parts)
    if kinds == {"real", "imag"}:
        needed = ("real", "imag")
    elif kinds == {"mag", "phase"}:
        needed = ("mag", "phase")
    elif kinds == {"mag"}:
        needed = ("mag",)
    else:
        files = ", ".join(_rel(bids_dir, n.path) for n in parts.values())
        problems.append(
            f"inversion {k} ({files}): parts {sorted(kinds)} are incomplete; expected real+imag, mag+phase, or mag "
            "(with a UNIT1 image)"
        )
        return None
    arrays = {}
    for part in needed:
        data = _load_on_grid(bids_dir, parts[part].path, ref, problems)
        if data is not None and (part != "mag" or _check_magnitude(bids_dir, parts[part].path, data, problems)):
            arrays[part] = data
    if len(arrays) != len(needed):
        return None
    if needed == ("real", "imag"):
        return arrays["real"] + 1j * arrays["imag"]
    if needed == ("mag", "phase"):
        try:
            meta = read_sidecar(parts["phase"].path, bids_dir)
        except ValueError as err:
            problems.append(str(err))
            return None
        phase = _phase_radians(bids_dir, parts["phase"].path, meta, arrays["phase"], problems)
        return None if phase is None else arrays["mag"] * np.exp(1j * phase)
    if uni is None:
        problems.append(
            f"{_rel(bids_dir, parts['mag'].path)}: magnitude-only inversion needs a UNIT1 image to sign inversion 1"
        )
        return None
    return arrays["mag"] * (np.sign(uni) if k == 1 else 1.0)


def _read_uni(bids_dir: Path, subject: str, entities: dict, ref: list, problems: list[str]) -> tuple[np.ndarray | None, Path | None]:
    select = {k: v for k, v in entities.items() if k not in ("sub", "inv", "part")}
    names = _images(bids_dir, subject, "anat", "UNIT1", select)
    if len(names) != 1:
        return None, None
    path = names[0].path
    img = _load(bids_dir, path, problems)
    if img is None:
        return None, None
    if not ref:
        ref.append((path, img))  # the inversions are then checked against the UNI's grid
    elif not _check_grid(bids_dir, path, img, ref[0], problems):
        return None, None
    data = _data(bids_dir, path, img, problems)
    if data is None:
        return None, None
    return (data / 4095.0 - 0.5 if data.max() > 1 else data), path


# ------------------------------------------------------------------------------ B1+ map
def _b1_scale(
    bids_dir: Path, path: Path, meta: dict, median: float, b1_units: str | None, problems: list[str]
) -> tuple[float, str] | None:
    """Factor from the map's values to relative B1+, and the unit used (module docstring, "B1+ map units")."""
    where = f"{_rel(bids_dir, path)} (sidecar)"
    nominal = meta.get("FlipAngle")
    if isinstance(nominal, bool) or not isinstance(nominal, (int, float)) or not np.isfinite(nominal) or nominal <= 0:
        nominal = None
    if b1_units is not None:
        unit, source = b1_units, "b1_units"
    else:
        units = meta.get("Units")
        key = None if units is None else str(units).strip().lower()
        if key is not None and key not in _B1_UNIT_NAMES:
            problems.append(
                f"{where}: field 'Units' = {units!r} is not a unit of relative B1+ (expected one of "
                f"{sorted(_B1_UNIT_NAMES)}, or pass b1_units)"
            )
            return None
        unit = _B1_UNIT_NAMES.get(key)
        source = f"sidecar field 'Units' = {units!r}"
        if unit is None:
            unit = "percent" if median > _PERCENT_ABOVE else "ratio"
            source = f"{'no' if units is None else 'arbitrary'} Units, median value {median:.4g}"
            lo, hi = _B1_MEDIAN_RANGE
            if nominal is not None and lo <= median / nominal <= hi:
                problems.append(
                    f"{where}: field 'Units' = {units!r} leaves the scale open and the values (median {median:.4g}) "
                    f"could be {unit} or flip angles (the sidecar's FlipAngle is {nominal:g} deg); set 'Units' to "
                    f"'{unit}' or 'deg', or pass b1_units"
                )
                return None
    if unit == "degrees":
        if nominal is None:
            problems.append(
                f"{where}: a flip-angle map (units degrees, from {source}) needs the nominal flip angle: field "
                "'FlipAngle' (deg, positive) is missing or invalid"
            )
            return None
        scale = 1.0 / nominal
    else:
        scale = 0.01 if unit == "percent" else 1.0
    lo, hi = _B1_MEDIAN_RANGE
    if not lo <= median * scale <= hi:
        problems.append(
            f"{_rel(bids_dir, path)}: median relative B1+ {median * scale:.4g} in the head when read as {unit} "
            f"({source}); expected about 1 (between {lo:.2g} and {hi:g}). Set the sidecar field 'Units' ('ratio', "
            "'percent', or 'deg' with 'FlipAngle') or pass b1_units"
        )
        return None
    return scale, f"{unit} ({source})"


def _read_b1(
    bids_dir: Path,
    subject: str,
    ref: tuple[Path, nib.Nifti1Image],
    head: np.ndarray | None,
    select: Mapping | None,
    resample_b1: bool,
    b1_units: str | None,
    problems: list[str],
) -> tuple[np.ndarray | None, Path | None, str | None]:
    """Relative B1+ on the grid of ``ref`` (NaN where not measured), its path and the unit it was read in."""
    names = _images(bids_dir, subject, "fmap", "TB1map", select and {k: v for k, v in select.items() if k == "ses"})
    if not names:
        return None, None, None
    if len(names) > 1:
        problems.append(
            f"sub-{subject}: several TB1map images ({', '.join(_rel(bids_dir, n.path) for n in names)}); "
            "choose one with select={'ses': ...} or remove the others"
        )
        return None, None, None
    path = names[0].path
    img = _load(bids_dir, path, problems)
    if img is None:
        return None, path, None
    try:
        meta = read_sidecar(path, bids_dir)
    except ValueError as err:
        problems.append(str(err))
        return None, path, None
    same_grid = img.shape == ref[1].shape and np.allclose(img.affine, ref[1].affine, atol=1e-4)
    if not same_grid and not resample_b1:
        _check_grid(bids_dir, path, img, ref, problems)
        problems[-1] += " (pass resample_b1=True to resample the B1 map onto the MP2RAGE grid)"
        return None, path, None
    data = _data(bids_dir, path, img, problems, finite=False)
    if data is None:
        return None, path, None
    measured = np.isfinite(data) & (data > 0)
    if not same_grid:
        from nilearn.image import resample_to_img

        def resample(values: np.ndarray) -> np.ndarray:
            moved = resample_to_img(
                nib.Nifti1Image(values, img.affine), ref[1], interpolation="linear", force_resample=True, copy_header=True
            )
            return moved.get_fdata(dtype=np.float32)

        # a voxel is measured where every B1 voxel that the interpolation weighs is measured
        # (outside the map's field of view none is)
        data = resample(np.where(measured, data, np.float32(0)))
        with warnings.catch_warnings():  # the weights of a 0/1 mask are what is wanted here
            warnings.filterwarnings("ignore", "Resampling binary images", UserWarning)
            measured = resample(measured.astype(np.float32)) > 1 - 1e-4
    data = np.where(measured, data, np.float32(np.nan))
    if not measured.any():
        problems.append(f"{_rel(bids_dir, path)}: no voxel holds a positive B1+ value")
        return None, path, None
    inside = measured & head if head is not None and (measured & head).any() else measured
    read = _b1_scale(bids_dir, path, meta, float(np.median(data[inside])), b1_units, problems)
    if read is None:
        return None, path, None
    scale, unit = read
    return data * np.float32(scale), path, unit


def _head(gre: list[np.ndarray | None]) -> np.ndarray | None:
    """Voxels whose largest inversion magnitude exceeds :data:`_HEAD_FRACTION` of its 99th percentile."""
    if not gre or any(g is None for g in gre):
        return None
    peak = np.max(np.abs(np.stack(gre)), axis=0)
    return peak > _HEAD_FRACTION * np.percentile(peak, 99)


# ------------------------------------------------------------------------------ readers
def read_mpnrage(
    bids_dir: str | os.PathLike,
    subject: str,
    *,
    defaults: Mapping[str, float | list] | None = None,
    select: Mapping[str, str] | None = None,
    require_b1: bool = False,
    resample_b1: bool = False,
    b1_units: str | None = None,
) -> MPnRAGEData:
    """Read and validate the MP2RAGE/MP3RAGE images, their protocol and the B1+ map of one subject.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root.
    subject : str
        Label without ``sub-``.
    defaults : mapping, optional
        Values for sidecar fields that are missing (e.g. ``{"InversionEfficiency": 0.96,
        "NumberShots": [88, 88], "RepetitionTimeExcitation": 0.0067}``). Sidecars take precedence.
    select : mapping, optional
        Entities that the images must have (e.g. ``{"ses": "1", "run": "2"}``), when a subject
        has several acquisitions (``ses``, ``acq``, ``run``, ``echo``). The B1 map is chosen by
        ``ses`` only.
    require_b1 : bool
        Treat a missing TB1map as a problem.
    resample_b1 : bool
        Resample a B1 map with another grid onto the MP2RAGE grid (trilinear) instead of
        reporting the mismatch.
    b1_units : {None, "ratio", "percent", "degrees"}
        Unit of the B1 map's values, overriding its sidecar's ``Units``; None: from the sidecar,
        or from the values (module docstring, "B1+ map units").

    Returns
    -------
    MPnRAGEData

    Raises
    ------
    BIDSValidationError
        (a ValueError) listing every problem found, each naming its file and field.
    ValueError
        For a ``b1_units`` not in :data:`B1_UNITS`.
    """
    if b1_units is not None and b1_units not in B1_UNITS:
        raise ValueError(f"b1_units must be None or one of {B1_UNITS}, got {b1_units!r}")
    bids_dir = Path(bids_dir)
    problems: list[str] = []
    names = _single_group(
        bids_dir, _images(bids_dir, subject, "anat", "MP2RAGE", select), ("inv", "part"), f"sub-{subject} MP2RAGE"
    )
    if not names:
        raise BIDSValidationError([f"sub-{subject}: no *_MP2RAGE.nii[.gz] images under sub-{subject}/[ses-*/]anat/"])
    inversions: dict[int, dict[str, BIDSName]] = {}
    for n in names:
        k = _inversion_index(bids_dir, n, problems)
        if k is not None:
            inversions.setdefault(k, {})[n.entities.get("part", "mag")] = n
    ks = sorted(inversions)
    if ks and ks != list(range(1, len(ks) + 1)):
        problems.append(f"sub-{subject}: MP2RAGE inversions {ks} are not numbered 1..{len(ks)}")
    if len(ks) < 2:
        problems.append(f"sub-{subject}: MP2RAGE needs at least two inversions, found {ks}")
    sidecars: dict[int, list[tuple[Path, dict]]] = {}
    for k in ks:
        try:
            sidecars[k] = [(n.path, read_sidecar(n.path, bids_dir)) for n in inversions[k].values()]
        except ValueError as err:
            problems.append(str(err))
    _check_inversions_present(bids_dir, subject, names, inversions, sidecars, problems)
    protocol = _mpnrage_protocol(bids_dir, subject, sidecars, defaults, problems) if sidecars else None

    ref: list = []
    magnitude_only = any(set(p) == {"mag"} for p in inversions.values())
    uni = uni_path = None
    if magnitude_only and ks:
        uni, uni_path = _read_uni(bids_dir, subject, next(iter(inversions[ks[0]].values())).entities, ref, problems)
    gre = [_complex_inversion(bids_dir, inversions[k], uni, k, ref, problems) for k in ks]

    b1, b1_path, b1_unit = None, None, None
    if ref:
        b1, b1_path, b1_unit = _read_b1(bids_dir, subject, ref[0], _head(gre), select, resample_b1, b1_units, problems)
        if b1_path is None and require_b1:
            problems.append(f"sub-{subject}: no fmap/sub-{subject}*_TB1map.nii[.gz] (required)")
    if problems:
        raise BIDSValidationError(problems)
    files = {f"inv-{k}": [n.path for n in inversions[k].values()] for k in ks}
    if b1_path is not None:
        files["b1"] = b1_path
    if uni_path is not None:
        files["uni"] = uni_path
    read = [p for k in ks for p in files[f"inv-{k}"]] + [files[k] for k in ("b1", "uni") if k in files]
    return MPnRAGEData(
        subject=subject,
        gre=np.stack(gre).astype(np.complex64),
        affine=ref[0][1].affine.copy(),
        protocol=protocol,
        b1=b1,
        files=files,
        inputs=files_read(bids_dir, read),
        b1_units=b1_unit,
        b1_not_measured=0 if b1 is None else int(np.isnan(b1).sum()),
    )


def read_sir(
    bids_dir: str | os.PathLike,
    subject: str,
    *,
    defaults: Mapping[str, float] | None = None,
    select: Mapping[str, str] | None = None,
    acq: str = "SIR",
) -> SIRData:
    """Read and validate the multi-TI SIR images (``_acq-<acq>_inv-<k>_IRT1``) of one subject.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root.
    subject : str
        Label without ``sub-``.
    defaults : mapping, optional
        Values for missing sidecar fields (e.g. ``{"BoundPoolInversionFactor": 0.83}``).
    select : mapping, optional
        Entities the images must have, among those SIR images carry: the ``select`` of
        :func:`read_mpnrage` may be passed as is (its ``acq`` is replaced by ``acq``; an entity
        that no SIR image of the subject has is ignored).
    acq : str
        Value of the ``acq`` entity of the SIR images.

    Returns
    -------
    SIRData

    Raises
    ------
    BIDSValidationError
        Listing every problem found.
    """
    bids_dir = Path(bids_dir)
    problems: list[str] = []
    names = _single_group(
        bids_dir,
        _sir_images(bids_dir, subject, select, acq),
        ("inv", "part"),
        f"sub-{subject} SIR",
    )
    if not names:
        raise BIDSValidationError([f"sub-{subject}: no *_acq-{acq}_inv-<k>_IRT1.nii[.gz] images"])
    by_k: dict[int, BIDSName] = {}
    for n in names:
        if n.entities.get("part", "mag") != "mag":
            problems.append(f"{_rel(bids_dir, n.path)}: SIR images must be magnitude (part-mag or no part entity)")
            continue
        k = _inversion_index(bids_dir, n, problems)
        if k is not None:
            by_k[k] = n
    ks = sorted(by_k)
    if ks != list(range(1, len(ks) + 1)):
        problems.append(f"sub-{subject}: SIR images {ks} are not numbered 1..{len(ks)}")
    ti, td, sm, b0 = [], [], [], []
    for k in ks:
        path = by_k[k].path
        try:
            meta = read_sidecar(path, bids_dir)
        except ValueError as err:
            problems.append(str(err))
            continue
        where = f"{_rel(bids_dir, path)} (sidecar)"
        v = {key: _number(meta, key, where, problems, defaults) for key in SIR_FIELDS}
        ti.append(v["InversionTime"])
        td.append(v["DelayTime"])
        sm.append(v["BoundPoolInversionFactor"])
        b0.append(v["MagneticFieldStrength"])
    protocol = None
    if not problems:
        for key, vals in (("BoundPoolInversionFactor", sm), ("MagneticFieldStrength", b0)):
            if not np.allclose(vals, vals[0]):
                problems.append(f"sub-{subject} SIR sidecars: field '{key}' differs between images ({vals})")
        samples: dict[tuple[float, float], list[int]] = {}
        for k, pair in zip(ks, zip(ti, td)):
            samples.setdefault(pair, []).append(k)
        for (t_i, t_d), same in samples.items():
            if len(same) > 1:
                files = ", ".join(_rel(bids_dir, by_k[k].path) for k in same)
                problems.append(
                    f"{files} (sidecars): the same sample twice (fields 'InversionTime' = {t_i} s, 'DelayTime' = "
                    f"{t_d} s); each SIR image must be a distinct (InversionTime, DelayTime) pair"
                )
        if not problems:
            try:
                protocol = SIRProtocol(
                    name=f"sub-{subject} SIR (BIDS sidecars)",
                    inversion_times=tuple(ti),
                    delay_times=tuple(td),
                    bound_inversion=sm[0],
                    field_strength=b0[0],
                    source=f"BIDS sidecars of sub-{subject}",
                )
            except ValueError as err:
                problems.append(f"sub-{subject} SIR sidecars: {err}")
    ref: list = []
    images = []
    for k in ks:
        data = _load_on_grid(bids_dir, by_k[k].path, ref, problems)
        if data is not None and _check_magnitude(bids_dir, by_k[k].path, data, problems):
            images.append(data)
    if problems:
        raise BIDSValidationError(problems)
    return SIRData(
        subject=subject,
        images=np.stack(images),
        affine=ref[0][1].affine.copy(),
        protocol=protocol,
        files=[by_k[k].path for k in ks],
        inputs=files_read(bids_dir, [by_k[k].path for k in ks]),
    )


def validate_dataset(
    bids_dir: str | os.PathLike,
    subjects: Iterable[str] | None = None,
    *,
    defaults: Mapping[str, float | list] | None = None,
    select: Mapping[str, str] | None = None,
    b1_units: str | None = None,
    require_b1: bool = True,
    require_sir: bool = True,
    resample_b1: bool = False,
) -> list[str]:
    """Validate every subject (all files read fully) before any processing.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root.
    subjects : iterable of str, optional
        Labels to check; default every ``sub-*`` folder.
    defaults, select, b1_units, resample_b1
        As :func:`read_mpnrage`; ``defaults`` and ``select`` also feed :func:`read_sir`.
    require_b1 : bool
        Treat a missing B1 map as a problem.
    require_sir : bool
        Treat a subject without SIR images as a problem. SIR images that are present are
        validated either way.

    Returns
    -------
    list of str
        The subjects validated.

    Raises
    ------
    BIDSValidationError
        Listing every problem of every subject.
    """
    bids_dir = Path(bids_dir)
    problems: list[str] = []
    if not (bids_dir / "dataset_description.json").is_file():
        problems.append(f"{bids_dir}: missing dataset_description.json")
    labels = list(subjects) if subjects is not None else list_subjects(bids_dir)
    if not labels:
        problems.append(f"{bids_dir}: no sub-* folders")
    for s in labels:
        try:
            read_mpnrage(
                bids_dir, s, defaults=defaults, select=select, require_b1=require_b1, resample_b1=resample_b1,
                b1_units=b1_units,
            )
        except BIDSValidationError as err:
            problems += err.problems
        try:
            if require_sir or has_sir(bids_dir, s, select):
                read_sir(bids_dir, s, defaults=defaults, select=select)
        except BIDSValidationError as err:
            problems += [p for p in err.problems if p not in problems]
    if problems:
        raise BIDSValidationError(problems)
    return labels
