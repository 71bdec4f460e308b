"""Read and validate BIDS datasets of MP2RAGE/MP3RAGE, B1+ maps and multi-TI SIR; write derivatives.

Expected layout (DESIGN.md section 3; the digital cohort of :mod:`qt1lib.phantom` writes it)::

    sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-..][_acq-..][_run-..]_inv-<k>_part-<p>_MP2RAGE.nii[.gz]
    sub-<label>/[ses-<label>/]anat/sub-<label>..._acq-SIR_inv-<k>_IRT1.nii[.gz]
    sub-<label>/[ses-<label>/]fmap/sub-<label>..._TB1map.nii[.gz]

with JSON sidecars found by the BIDS inheritance principle (a sidecar applies to every image
whose entities include its own, from the dataset root down to the image's folder; the more
specific one wins).

**MP2RAGE parts.** ``part-real`` + ``part-imag`` give the complex image. ``part-mag`` +
``part-phase`` give ``mag * exp(i phase)``; the phase is in radians, unless its largest magnitude
exceeds 2 pi + 0.01, in which case it is taken as integer-coded over ``[-max, max]`` (Siemens
stores -4096..4095) and scaled to ``[-pi, pi]``. Magnitude-only inversions (``part-mag`` alone, or
no ``part`` entity) need the scanner's UNI image (``..._UNIT1.nii[.gz]``, same entities without
``inv``/``part``): inversion 1 gets the sign of UNI, later inversions are taken positive. Rule:
UNI = Re(conj(G1) G2) / (|G1|^2 + |G2|^2) has the sign of G1 G2 for real signals, and G2 (and
later readouts), acquired after Mz has recovered past zero for brain T1s, is positive; UNI
stored as integers 0..4095 (max > 1) is mapped to ``u / 4095 - 0.5``.

**Sidecar fields** (units as BIDS: seconds, degrees, tesla). MP2RAGE: ``InversionTime``,
``FlipAngle``, ``RepetitionTimeExcitation``, ``RepetitionTimePreparation``, ``NumberShots``
(excitations per readout train), ``MagneticFieldStrength``, and ``InversionEfficiency``
(fraction of Mz the adiabatic pulse inverts; not a BIDS field, so it may come from the
``defaults`` argument instead); optionally ``NumberShotsBeforeKSpaceCenter`` (default
``NumberShots // 2``: linear ordering with the centre in the middle of the train, Marques'
``NZslices`` rule for full Fourier). SIR: ``InversionTime`` (ti), ``DelayTime`` (td, end of
the previous readout to the inversion), ``BoundPoolInversionFactor`` (Sm, may come from
``defaults``), ``MagneticFieldStrength``. TB1map: ``Units`` in {"ratio", "1", "fraction",
"relative"} or {"percent", "%", "pct"}; without ``Units``, a map whose median non-zero value
exceeds 10 is taken as percent.

**Validation** collects every problem of a subject (missing files or fields, values in the
wrong unit, shape or affine mismatches between parts, inversions and the B1 map, NaNs,
unreadable or truncated files) and raises one :class:`BIDSValidationError` whose message names
each file and field. Readers validate before returning anything, and write nothing.

**Derivatives** are written by :mod:`qt1lib.derivatives`. Whether a result is reused is decided
by the content-addressed store (:mod:`qt1lib.store`), which keys it by the content of the files a
reader read (:attr:`MPnRAGEData.inputs`, :func:`files_read`, sidecars inherited included).
"""

from __future__ import annotations

import os
import re
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
    "BIDSValidationError",
    "BIDSName",
    "parse_name",
    "list_subjects",
    "read_sidecar",
    "applicable_sidecars",
    "files_read",
    "MPnRAGEData",
    "SIRData",
    "read_mpnrage",
    "read_sir",
    "validate_dataset",
    "MP2RAGE_FIELDS",
    "SIR_FIELDS",
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
    "NumberShotsBeforeKSpaceCenter",
    "MagneticFieldStrength",
    "InversionEfficiency",
)
_RATIO_UNITS = {"ratio", "1", "fraction", "relative", "a.u.", "arbitrary"}
_PERCENT_UNITS = {"percent", "%", "pct", "p.u."}
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
def _images(bids_dir: Path, subject: str, datatype: str, suffix: str, select: Mapping[str, str] | None) -> list[BIDSName]:
    sub_dir = bids_dir / f"sub-{subject}"
    if not sub_dir.is_dir():
        raise BIDSValidationError([f"sub-{subject}: subject folder {_rel(bids_dir, sub_dir)} does not exist"])
    found = []
    for folder in [sub_dir / datatype, *sorted(sub_dir.glob(f"ses-*/{datatype}"))]:
        for path in sorted(folder.glob(f"sub-{subject}_*_{suffix}.nii*")) + sorted(folder.glob(f"sub-{subject}_{suffix}.nii*")):
            if not _NIFTI.search(path.name):
                continue
            name = parse_name(path)
            if name.suffix == suffix and all(name.entities.get(k) == v for k, v in (select or {}).items()):
                found.append(name)
    return found


def _single_group(bids_dir: Path, names: list[BIDSName], ignore: tuple[str, ...], what: str) -> list[BIDSName]:
    """Keep one acquisition: all files must share every entity but ``ignore``."""
    groups: dict[tuple, list[BIDSName]] = {}
    for n in names:
        key = tuple(sorted((k, v) for k, v in n.entities.items() if k not in ignore))
        groups.setdefault(key, []).append(n)
    if len(groups) > 1:
        listing = "; ".join("_".join(f"{k}-{v}" for k, v in key) for key in groups)
        raise BIDSValidationError(
            [f"{what}: several acquisitions found ({listing}); choose one with select={{'acq': ..., 'run': ..., 'ses': ...}}"]
        )
    return next(iter(groups.values()), [])


# ------------------------------------------------------------------------------ images
def _load(bids_dir: Path, path: Path, problems: list[str]) -> nib.Nifti1Image | None:
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises many types for a damaged header
        problems.append(f"{_rel(bids_dir, path)}: unreadable NIfTI header ({type(err).__name__}: {err})")
        return None
    if len(img.shape) != 3:
        problems.append(f"{_rel(bids_dir, path)}: expected a 3-D image, got shape {img.shape}")
        return None
    return img


def _data(bids_dir: Path, path: Path, img: nib.Nifti1Image, problems: list[str]) -> np.ndarray | None:
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:  # EOFError, zlib.error, OSError for truncated files
        problems.append(f"{_rel(bids_dir, path)}: unreadable or truncated image data ({type(err).__name__}: {err})")
        return None
    n_nan = int(np.isnan(data).sum())
    if n_nan:
        problems.append(f"{_rel(bids_dir, path)}: {n_nan} NaN voxel(s); replace them (e.g. by 0) or mask them out")
        return None
    if not np.isfinite(data).all():
        problems.append(f"{_rel(bids_dir, path)}: infinite voxel values")
        return None
    return data


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

    Every problem (unreadable header, other shape or affine, truncated data, NaN) is appended to
    ``problems`` naming the file, and None is returned.
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
def _number(meta: dict, key: str, where: str, problems: list[str], defaults: Mapping | None = None) -> float | None:
    if key in meta:
        value = meta[key]
    elif defaults and key in defaults:
        value = defaults[key]
    else:
        problems.append(f"{where}: missing sidecar field '{key}'" + (" (or give it in defaults)" if key in ("InversionEfficiency", "BoundPoolInversionFactor") else ""))
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
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
        Relative B1+ (1 = nominal) on the same grid, if a TB1map exists.
    files : dict
        ``"inv-<k>"`` -> list of image paths, ``"b1"`` -> path (if any).
    inputs : tuple of Path
        Every file read: the images (the UNI image too, for magnitude-only data), the B1 map and
        every sidecar that applies to them (:func:`files_read`).
    """

    subject: str
    gre: np.ndarray
    affine: np.ndarray
    protocol: MPnRAGEProtocol
    b1: np.ndarray | None
    files: dict = field(default_factory=dict)
    inputs: tuple[Path, ...] = ()


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


def _mp2rage_fields(
    bids_dir: Path, path: Path, meta: dict, defaults: Mapping | None, problems: list[str]
) -> dict[str, float | None]:
    """Checked numeric fields of one MP2RAGE sidecar (None where a problem was recorded)."""
    where = f"{_rel(bids_dir, path)} (sidecar)"
    v = {key: _number(meta, key, where, problems, defaults) for key in MP2RAGE_FIELDS}
    if v["FlipAngle"] is not None and v["FlipAngle"] > 90:
        problems.append(f"{where}: field 'FlipAngle' = {v['FlipAngle']} must be <= 90 degrees")
    if v["InversionEfficiency"] is not None and v["InversionEfficiency"] > 1:
        problems.append(f"{where}: field 'InversionEfficiency' = {v['InversionEfficiency']} must lie in (0, 1]")
    shots = v["NumberShots"]
    if shots is not None and shots != int(shots):
        problems.append(f"{where}: field 'NumberShots' must be an integer, got {shots}")
    if "NumberShotsBeforeKSpaceCenter" in meta:
        before = meta["NumberShotsBeforeKSpaceCenter"]
        if not is_integer(before, builtin=True) or before < 0 or (shots and before >= shots):
            problems.append(
                f"{where}: field 'NumberShotsBeforeKSpaceCenter' must be an integer in [0, NumberShots), got {before!r}"
            )
            before = None
        v["NumberShotsBeforeKSpaceCenter"] = before
    else:
        v["NumberShotsBeforeKSpaceCenter"] = int(shots) // 2 if shots is not None else None
    return v


def _mpnrage_protocol(
    bids_dir: Path,
    subject: str,
    sidecars: dict[int, list[tuple[Path, dict]]],
    defaults: Mapping | None,
    problems: list[str],
) -> MPnRAGEProtocol | None:
    """Protocol from the sidecars of every part of every inversion (each checked on its own)."""
    n_problems = len(problems)
    values: dict[int, dict[str, float | None]] = {}
    paths: dict[int, Path] = {}
    for k, entries in sorted(sidecars.items()):
        per_part = [(path, _mp2rage_fields(bids_dir, path, meta, defaults, problems)) for path, meta in entries]
        first_path, first = per_part[0]
        for path, v in per_part[1:]:
            for key, value in v.items():
                if value is not None and first[key] is not None and not np.isclose(value, first[key]):
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
            if not np.isclose(v[key], values[first_k][key]):
                problems.append(
                    f"{_rel(bids_dir, paths[k])} (sidecar): field '{key}' = {v[key]} differs from "
                    f"{values[first_k][key]} in {_rel(bids_dir, first_path)}; all inversions share it"
                )
    if len(problems) > n_problems:
        return None
    ks = sorted(values)
    shared = values[first_k]
    try:
        return MPnRAGEProtocol(
            name=f"sub-{subject} (BIDS sidecars)",
            tr_mprage=shared["RepetitionTimePreparation"],
            echo_spacing=shared["RepetitionTimeExcitation"],
            inversion_times=tuple(values[k]["InversionTime"] for k in ks),
            flip_angles=tuple(values[k]["FlipAngle"] for k in ks),
            n_before=int(shared["NumberShotsBeforeKSpaceCenter"]),
            n_after=int(shared["NumberShots"]) - int(shared["NumberShotsBeforeKSpaceCenter"]),
            inversion_efficiency=shared["InversionEfficiency"],
            field_strength=shared["MagneticFieldStrength"],
            source=f"BIDS sidecars of sub-{subject}",
        )
    except ValueError as err:
        files = ", ".join(_rel(bids_dir, paths[k]) for k in ks)
        problems.append(f"{files} (sidecars): inconsistent protocol: {err}")
        return None


def _b1_scale(bids_dir: Path, path: Path, meta: dict, data: np.ndarray, problems: list[str]) -> float | None:
    units = meta.get("Units")
    if units is None:
        nonzero = data[data != 0]
        return 0.01 if nonzero.size and np.median(np.abs(nonzero)) > 10 else 1.0
    u = str(units).strip().lower()
    if u in _RATIO_UNITS:
        return 1.0
    if u in _PERCENT_UNITS:
        return 0.01
    problems.append(
        f"{_rel(bids_dir, path)} (sidecar): field 'Units' = {units!r} is not a relative B1+ unit "
        f"(expected one of {sorted(_RATIO_UNITS | _PERCENT_UNITS)})"
    )
    return None


def _read_b1(
    bids_dir: Path, subject: str, ref: tuple[Path, nib.Nifti1Image], select: Mapping | None, resample_b1: bool, problems: list[str]
) -> tuple[np.ndarray | None, Path | None]:
    names = _images(bids_dir, subject, "fmap", "TB1map", select and {k: v for k, v in select.items() if k == "ses"})
    if not names:
        return None, None
    if len(names) > 1:
        problems.append(
            f"sub-{subject}: several TB1map images ({', '.join(_rel(bids_dir, n.path) for n in names)}); "
            "choose one with select={'ses': ...} or remove the others"
        )
        return None, None
    path = names[0].path
    img = _load(bids_dir, path, problems)
    if img is None:
        return None, path
    try:
        meta = read_sidecar(path, bids_dir)
    except ValueError as err:
        problems.append(str(err))
        return None, path
    same_grid = img.shape == ref[1].shape and np.allclose(img.affine, ref[1].affine, atol=1e-4)
    if not same_grid and not resample_b1:
        _check_grid(bids_dir, path, img, ref, problems)
        problems[-1] += " (pass resample_b1=True to resample the B1 map onto the MP2RAGE grid)"
        return None, path
    data = _data(bids_dir, path, img, problems)
    if data is None:
        return None, path
    scale = _b1_scale(bids_dir, path, meta, data, problems)
    if scale is None:
        return None, path
    if not same_grid:
        from nilearn.image import resample_to_img

        resampled = resample_to_img(
            nib.Nifti1Image(data, img.affine), ref[1], interpolation="linear", force_resample=True, copy_header=True
        )
        data = resampled.get_fdata(dtype=np.float32)
    return data * np.float32(scale), path


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
        if data is not None:
            arrays[part] = data
    if len(arrays) != len(needed):
        return None
    if needed == ("real", "imag"):
        return arrays["real"] + 1j * arrays["imag"]
    if needed == ("mag", "phase"):
        phase = arrays["phase"]
        peak = float(np.abs(phase).max())
        if peak > 2 * np.pi + 0.01:
            phase = phase / peak * np.pi
        return arrays["mag"] * np.exp(1j * phase)
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


def read_mpnrage(
    bids_dir: str | os.PathLike,
    subject: str,
    *,
    defaults: Mapping[str, float] | None = None,
    select: Mapping[str, str] | None = None,
    require_b1: bool = False,
    resample_b1: bool = False,
) -> MPnRAGEData:
    """Read and validate the MP2RAGE/MP3RAGE images, their protocol and the B1+ map of one subject.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root.
    subject : str
        Label without ``sub-``.
    defaults : mapping, optional
        Values for sidecar fields that are missing (e.g. ``{"InversionEfficiency": 0.96}``).
        Sidecars take precedence.
    select : mapping, optional
        Entities that the images must have (e.g. ``{"ses": "1", "run": "2"}``), when a subject
        has several acquisitions.
    require_b1 : bool
        Treat a missing TB1map as a problem.
    resample_b1 : bool
        Resample a B1 map with another grid onto the MP2RAGE grid (trilinear) instead of
        reporting the mismatch.

    Returns
    -------
    MPnRAGEData

    Raises
    ------
    BIDSValidationError
        (a ValueError) listing every problem found, each naming its file and field.
    """
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
    protocol = _mpnrage_protocol(bids_dir, subject, sidecars, defaults, problems) if sidecars else None

    ref: list = []
    magnitude_only = any(set(p) == {"mag"} for p in inversions.values())
    uni = uni_path = None
    if magnitude_only and ks:
        uni, uni_path = _read_uni(bids_dir, subject, next(iter(inversions[ks[0]].values())).entities, ref, problems)
    gre = [_complex_inversion(bids_dir, inversions[k], uni, k, ref, problems) for k in ks]

    b1, b1_path = (None, None)
    if ref:
        b1, b1_path = _read_b1(bids_dir, subject, ref[0], select, resample_b1, problems)
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
        Further entities the images must have.
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
        _images(bids_dir, subject, "anat", "IRT1", {**(select or {}), "acq": acq}),
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
        if data is not None:
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
    defaults: Mapping[str, float] | None = None,
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
    defaults, resample_b1
        As :func:`read_mpnrage`; ``defaults`` also feeds :func:`read_sir`.
    require_b1, require_sir : bool
        Treat a missing B1 map / missing SIR images as problems.

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
            read_mpnrage(bids_dir, s, defaults=defaults, require_b1=require_b1, resample_b1=resample_b1)
        except BIDSValidationError as err:
            problems += err.problems
        if require_sir:
            try:
                read_sir(bids_dir, s, defaults=defaults)
            except BIDSValidationError as err:
                problems += err.problems
    if problems:
        raise BIDSValidationError(problems)
    return labels
