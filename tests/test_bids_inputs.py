"""Inputs that a scanner or converter writes and the readers once read silently wrong: each, on a
damaged copy of the smoke cohort, gives the same arrays as the undamaged read (within the
tolerance its storage allows) or a BIDSValidationError naming the file and the field.
The rules are in the docstring of qt1lib.bids; the raw cohort and its truth pass the official validator."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qt1lib.bids import (
    BIDSValidationError,
    has_sir,
    read_mpnrage,
    read_sir,
    validate_dataset,
)
from qt1lib.estimate import make_estimator
from qt1lib.io import save_json, save_nifti

ANAT, FMAP = Path("sub-01") / "anat", Path("sub-01") / "fmap"
TB1 = FMAP / "sub-01_TB1map"
#: Flip angle (deg) of the B1-mapping pulse in the flip-angle-map cases (e.g. an 80 deg TFL preparation).
NOMINAL_DEG = 80.0


@pytest.fixture(scope="module")
def reference(smoke_cohort):
    """The undamaged reads of sub-01."""
    return read_mpnrage(smoke_cohort.bids_dir, "01"), read_sir(smoke_cohort.bids_dir, "01")


@pytest.fixture
def ds(smoke_cohort, tmp_path) -> Path:
    target = tmp_path / "ds"
    shutil.copytree(smoke_cohort.bids_dir, target)
    return target


def _edit_json(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        meta.pop(key, None) if value is None else meta.__setitem__(key, value)
    path.write_text(json.dumps(meta))


def _store(path: Path, data: np.ndarray, dtype=None) -> None:
    save_nifti(data, path, nib.load(path).affine, dtype=dtype)


def _raises(call, *words: str) -> list[str]:
    """The problems of the BIDSValidationError that ``call`` raises; one names every word."""
    with pytest.raises(BIDSValidationError) as info:
        call()
    assert any(all(w in p for w in words) for p in info.value.problems), info.value
    return info.value.problems


# ------------------------------------------------------------------------------ official validator
@pytest.mark.parametrize("dataset", ["raw", "truth"])
def test_cohort_and_its_truth_pass_the_official_validator(smoke_cohort, dataset):
    """Zero errors (warnings allowed) in the raw cohort and in its truth, ``derivatives/phantom``."""
    validator = Path(sys.executable).parent / "bids-validator-deno"
    if not validator.exists():
        pytest.skip(f"bids-validator-deno not installed beside {sys.executable} (pip install bids-validator-deno)")
    root = smoke_cohort.bids_dir if dataset == "raw" else smoke_cohort.bids_dir / "derivatives" / "phantom"
    run = subprocess.run([validator, root, "--format", "json"], capture_output=True, text=True, check=False)
    issues = json.loads(run.stdout)["issues"]["issues"]
    errors = [i for i in issues if i["severity"] == "error"]
    assert errors == [], errors[:5]


def test_cohort_writes_bids_fields(smoke_cohort, reference):
    data, _ = reference
    meta = json.loads((smoke_cohort.bids_dir / ANAT / "sub-01_inv-1_part-real_MP2RAGE.json").read_text())
    assert meta["NumberShots"] == [data.protocol.n_before, data.protocol.n_after]
    assert "NumberShotsBeforeKSpaceCenter" not in meta
    assert json.loads((smoke_cohort.bids_dir / f"{TB1}.json").read_text())["Units"] == "arbitrary"
    stored = nib.load(smoke_cohort.bids_dir / f"{TB1}.nii.gz").get_fdata(dtype=np.float32)
    np.testing.assert_allclose(data.b1, stored / 100, rtol=1e-6)  # percent of nominal, read as percent
    assert data.b1_units.startswith("percent") and data.b1_not_measured == 0


# ------------------------------------------------------------------------------ 1, 2: B1 units
@pytest.mark.parametrize(
    ("factor", "units", "flip", "b1_units"),
    [
        (100, "arbitrary", None, None),  # BIDS's own TB1map: percent, Units "arbitrary"
        (100, None, None, None),
        (1, "arbitrary", None, None),
        (1, "ratio", None, None),
        (100, "ratio", None, "percent"),  # the argument overrides a wrong sidecar
        (NOMINAL_DEG, "deg", NOMINAL_DEG, None),  # a flip-angle map
        (NOMINAL_DEG, "degrees", NOMINAL_DEG, None),
        (NOMINAL_DEG, "arbitrary", NOMINAL_DEG, "degrees"),
    ],
)
def test_b1_units_give_the_same_map(ds, reference, factor, units, flip, b1_units):
    _store(ds / f"{TB1}.nii.gz", reference[0].b1 * factor)
    _edit_json(ds / f"{TB1}.json", Units=units, FlipAngle=flip)
    np.testing.assert_allclose(read_mpnrage(ds, "01", b1_units=b1_units).b1, reference[0].b1, rtol=1e-5)


@pytest.mark.parametrize(
    ("factor", "units", "flip", "words"),
    [
        (100, "ratio", None, ("median relative B1+", "ratio", "Units")),  # percent values labelled ratio
        (NOMINAL_DEG, "deg", None, ("FlipAngle",)),  # degrees without the nominal angle
        (NOMINAL_DEG, "arbitrary", NOMINAL_DEG, ("Units", "flip angles")),  # percent or degrees? ask
        (4.0, None, None, ("median relative B1+", "ratio")),  # a 4 deg flip-angle map is not a ratio
        (1, "Hz", None, ("Units", "Hz")),
    ],
)
def test_b1_units_that_the_values_contradict_are_errors(ds, reference, factor, units, flip, words):
    _store(ds / f"{TB1}.nii.gz", reference[0].b1 * factor)
    _edit_json(ds / f"{TB1}.json", Units=units, FlipAngle=flip)
    _raises(lambda: read_mpnrage(ds, "01"), "sub-01_TB1map", *words)


# ------------------------------------------------------------------------------ 6: B1 <= 0
def test_non_positive_or_non_finite_b1_is_not_measured(ds, reference):
    b1 = reference[0].b1.copy()
    rng = np.random.default_rng(0)
    bad = rng.random(b1.shape) < 0.05
    b1[bad] = rng.choice([0.0, -0.5, np.nan, np.inf], size=int(bad.sum()))
    _store(ds / f"{TB1}.nii.gz", b1 * 100)
    data = read_mpnrage(ds, "01")
    assert data.b1_not_measured == int(bad.sum())
    np.testing.assert_array_equal(np.isnan(data.b1), bad)
    np.testing.assert_allclose(data.b1[~bad], reference[0].b1[~bad], rtol=1e-5)


def test_resampled_b1_is_nan_near_unmeasured_voxels_and_outside_the_map(ds, reference):
    fine = reference[0].affine
    coarse = fine @ np.diag([2.0, 2.0, 2.0, 1.0])
    coarse[:3, 3] += 1.3
    shape = tuple(n // 2 for n in reference[0].b1.shape)
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    percent = 100 + 0.2 * (idx @ coarse[:3, :3].T + coarse[:3, 3])[..., 0]
    save_nifti(percent, ds / f"{TB1}.nii.gz", coarse)
    full = read_mpnrage(ds, "01", resample_b1=True).b1
    hole = tuple(n // 2 for n in shape)
    percent[hole] = 0
    save_nifti(percent, ds / f"{TB1}.nii.gz", coarse)
    partial = read_mpnrage(ds, "01", resample_b1=True)
    # fine voxels in coarse-voxel coordinates: measured only where the trilinear stencil lies in the map
    pts = np.stack(np.meshgrid(*(np.arange(n) for n in full.shape), indexing="ij"), axis=-1)
    c = (pts @ fine[:3, :3].T + fine[:3, 3] - coarse[:3, 3]) @ np.linalg.inv(coarse[:3, :3]).T
    inside = np.all((c >= 0) & (c <= np.array(shape) - 1), axis=-1)
    near = np.all(np.abs(c - np.array(hole)) < 1, axis=-1)
    np.testing.assert_array_equal(np.isnan(full), ~inside)
    np.testing.assert_array_equal(np.isnan(partial.b1), ~inside | near)
    assert partial.b1_not_measured == int((~inside | near).sum()) and near.any()
    np.testing.assert_array_equal(partial.b1[inside & ~near], full[inside & ~near])


@pytest.mark.parametrize("name", ["lut_b1", "map_exact_mp2rage", "map_exact_mp3rage"])
def test_b1_aware_estimators_give_nan_where_b1_is_not_measured(reference, name):
    data = reference[0]
    head = np.abs(data.gre[1]) > 0.5 * np.abs(data.gre[1]).max()
    gre, b1 = data.gre[:, head][:, :60], data.b1[head][:60].astype(float)
    holes = np.arange(60) % 4 == 0
    estimator = make_estimator(name, data.protocol, 0.005)
    full = estimator.fit(gre, b1=b1)
    partial = estimator.fit(gre, b1=np.where(holes, np.nan, b1))
    for got, want in ((partial.map, full.map), (partial.std, full.std)):
        assert np.isnan(got[holes]).all()
        # the same numbers, up to floating point: the exact MAP's matrix products (quadratic-form
        # evaluation) round differently with other voxels in a chunk, and the MAP of a flat
        # posterior moves by about the square root of that rounding
        np.testing.assert_allclose(got[~holes], want[~holes], rtol=1e-6)
    assert not partial.valid[holes].any() and np.isfinite(full.map).all()


# ------------------------------------------------------------------------------ 3: phase
def _to_mag_phase(ds: Path, encode, units: str | None) -> None:
    """Rewrite every inversion of sub-01 as part-mag + part-phase, the phase stored by ``encode``."""
    anat = ds / ANAT
    for k in (1, 2, 3):
        stem = f"sub-01_inv-{k}"
        real, imag = (anat / f"{stem}_part-{p}_MP2RAGE.nii.gz" for p in ("real", "imag"))
        affine = nib.load(real).affine
        g = nib.load(real).get_fdata() + 1j * nib.load(imag).get_fdata()
        meta = json.loads((anat / f"{stem}_part-real_MP2RAGE.json").read_text())
        for p in ("real", "imag"):
            (anat / f"{stem}_part-{p}_MP2RAGE.nii.gz").unlink()
            (anat / f"{stem}_part-{p}_MP2RAGE.json").unlink()
        values, dtype = encode(np.angle(g))
        save_nifti(np.abs(g), anat / f"{stem}_part-mag_MP2RAGE.nii.gz", affine)
        save_nifti(values, anat / f"{stem}_part-phase_MP2RAGE.nii.gz", affine, dtype=dtype)
        save_json(meta, anat / f"{stem}_part-mag_MP2RAGE.json")
        save_json(meta | ({} if units is None else {"Units": units}), anat / f"{stem}_part-phase_MP2RAGE.json")


def _siemens_unsigned(angle):  # 12-bit code 0..4095 for [-pi, pi)
    return np.round((angle + np.pi) / (2 * np.pi) * 4096).astype(int) % 4096, np.uint16


def _siemens_rescaled(angle):  # the same code after the DICOM rescale (slope 2, intercept -4096): -4096..4094
    return 2 * _siemens_unsigned(angle)[0] - 4096, np.int16


#: 12-bit phase: a rounding error of at most half a step, pi / 4096 rad, moves G by at most |G| pi / 4096.
TWELVE_BIT = np.pi / 4096


@pytest.mark.parametrize(
    ("encode", "units", "tolerance"),
    [
        (_siemens_unsigned, "arbitrary", TWELVE_BIT),
        (_siemens_rescaled, "arbitrary", TWELVE_BIT),
        (_siemens_unsigned, None, TWELVE_BIT),  # no Units (BIDS requires it): read as arbitrary
        (lambda a: (a, np.float32), "rad", 1e-6),
        (lambda a: (np.mod(a, 2 * np.pi), np.float32), "rad", 1e-6),  # radians in [0, 2 pi)
    ],
)
def test_phase_codings_give_the_complex_image(ds, reference, encode, units, tolerance):
    _to_mag_phase(ds, encode, units)
    gre, ref = read_mpnrage(ds, "01").gre, reference[0].gre
    bound = np.abs(ref) * tolerance * 1.001 + 1e-6 * np.abs(ref).max()  # + float32 rounding
    assert (np.abs(gre - ref) <= bound).all(), np.max(np.abs(gre - ref) / np.maximum(np.abs(ref), 1e-12))


@pytest.mark.parametrize(
    ("encode", "units", "words"),
    [
        (_siemens_unsigned, "rad", ("Units", "'rad'", "arbitrary")),  # integer codes are not radians
        (lambda a: (a, np.float32), "deg", ("Units", "'deg'")),
        (lambda a: (a * 10.5, np.float32), "arbitrary", ("non-integer",)),
    ],
)
def test_phase_units_that_the_values_contradict_are_errors(ds, encode, units, words):
    _to_mag_phase(ds, encode, units)
    _raises(lambda: read_mpnrage(ds, "01"), "part-phase", *words)


# ------------------------------------------------------------------------------ 8: negative magnitudes
def test_negative_magnitude_is_an_error(ds):
    _to_mag_phase(ds, lambda a: (a, np.float32), "rad")
    path = ds / ANAT / "sub-01_inv-2_part-mag_MP2RAGE.nii.gz"
    mag = nib.load(path).get_fdata()
    mag[mag.shape[0] // 2] *= -1
    _store(path, mag)
    _raises(lambda: read_mpnrage(ds, "01"), "sub-01_inv-2_part-mag_MP2RAGE", "negative")


def test_negative_sir_magnitude_is_an_error(ds):
    path = ds / ANAT / "sub-01_acq-SIR_inv-4_IRT1.nii.gz"
    _store(path, -nib.load(path).get_fdata())
    _raises(lambda: read_sir(ds, "01"), "sub-01_acq-SIR_inv-4_IRT1", "negative")


# ------------------------------------------------------------------------------ 5: complex data type
def test_complex_values_in_part_real_are_an_error_not_dropped(ds, reference):
    path = ds / ANAT / "sub-01_inv-2_part-real_MP2RAGE.nii.gz"
    _store(path, reference[0].gre[1], dtype=np.complex64)
    _raises(lambda: read_mpnrage(ds, "01"), "sub-01_inv-2_part-real_MP2RAGE", "complex data type")


# ------------------------------------------------------------------------------ 4: third inversion
def _remove(ds: Path, pattern: str) -> None:
    for path in (ds / ANAT).glob(pattern):
        path.unlink()


def _drop_inv3_from_intended_for(ds: Path) -> None:
    meta = json.loads((ds / f"{TB1}.json").read_text())
    _edit_json(ds / f"{TB1}.json", IntendedFor=[p for p in meta["IntendedFor"] if "_inv-3_" not in p])


def test_inversion_image_missing_beside_its_sidecar(ds):
    _remove(ds, "sub-01_inv-3_*_MP2RAGE.nii.gz")
    _raises(lambda: read_mpnrage(ds, "01"), "sub-01_inv-3_part-real_MP2RAGE.json", "without its image")


def test_inversion_with_one_part(ds):
    _remove(ds, "sub-01_inv-3_part-imag_MP2RAGE.*")
    _raises(lambda: read_mpnrage(ds, "01"), "inversion 3", "parts")


def test_inversion_named_by_the_metadata_but_absent(ds):
    _remove(ds, "sub-01_inv-3_*")
    problems = _raises(lambda: read_mpnrage(ds, "01"), "sub-01_inv-1_part-real_MP2RAGE.nii.gz (sidecar)", "PulseSequenceType", "MP3RAGE")
    assert any("IntendedFor" in p and "sub-01_inv-3_part-real_MP2RAGE.nii.gz" in p for p in problems)
    # the scans file is evidence too
    _drop_inv3_from_intended_for(ds)
    for path in (ds / ANAT).glob("*_MP2RAGE.json"):
        _edit_json(path, PulseSequenceType="MP2RAGE")
    (ds / "sub-01" / "sub-01_scans.tsv").write_text("filename\nanat/sub-01_inv-3_part-imag_MP2RAGE.nii.gz\n")
    _raises(lambda: read_mpnrage(ds, "01"), "sub-01_scans.tsv", "filename", "sub-01_inv-3_part-imag_MP2RAGE")


def test_two_inversions_without_evidence_of_a_third_are_mp2rage(ds, reference):
    _remove(ds, "sub-01_inv-3_*")
    _drop_inv3_from_intended_for(ds)
    for path in (ds / ANAT).glob("*_MP2RAGE.json"):
        _edit_json(path, PulseSequenceType="MP2RAGE")
    data = read_mpnrage(ds, "01")
    np.testing.assert_array_equal(data.gre, reference[0].gre[:2])
    assert data.protocol.inversion_times == reference[0].protocol.inversion_times[:2]


# ------------------------------------------------------------------------------ 7: SIR samples
def test_repeated_sir_sample_is_an_error(ds):
    first = json.loads((ds / ANAT / "sub-01_acq-SIR_inv-1_IRT1.json").read_text())
    _edit_json(ds / ANAT / "sub-01_acq-SIR_inv-3_IRT1.json", InversionTime=first["InversionTime"], DelayTime=first["DelayTime"])
    _raises(lambda: read_sir(ds, "01"), "sub-01_acq-SIR_inv-1_IRT1", "sub-01_acq-SIR_inv-3_IRT1", "InversionTime", "DelayTime")


# ------------------------------------------------------------------------------ 9, 10: sidecar fields
def test_number_shots_as_a_number_is_split_around_the_centre(ds, reference):
    p = reference[0].protocol
    assert (p.n_before, p.n_after) == (112, 113)  # the seed's split of 225 (SEED_7T_MP3RAGE)
    for path in (ds / ANAT).glob("*_MP2RAGE.json"):
        _edit_json(path, NumberShots=225)
    assert read_mpnrage(ds, "01").protocol == p


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"NumberShots": [112.5, 112.5]}, ("NumberShots", "[before, after]")),
        ({"NumberShots": [112, 113, 1]}, ("NumberShots", "[before, after]")),
        ({"NumberShotsBeforeKSpaceCenter": 112}, ("NumberShotsBeforeKSpaceCenter", "not BIDS")),
    ],
)
def test_number_shots_that_cannot_be_read_are_errors(ds, changes, words):
    _edit_json(ds / ANAT / "sub-01_inv-2_part-imag_MP2RAGE.json", **changes)
    _raises(lambda: read_mpnrage(ds, "01"), "sub-01_inv-2_part-imag_MP2RAGE.nii.gz (sidecar)", *words)


def test_fields_a_scanner_export_lacks_say_how_to_give_them(ds, reference):
    p = reference[0].protocol
    lacking = {
        "InversionEfficiency": ("--inversion-efficiency", p.inversion_efficiency),
        "NumberShots": ("--number-shots", [p.n_before, p.n_after]),
        "RepetitionTimeExcitation": ("--echo-spacing", p.echo_spacing),
    }
    for path in (ds / ANAT).glob("*_MP2RAGE.json"):
        _edit_json(path, **dict.fromkeys(lacking))
    for key, (option, _) in lacking.items():
        _raises(lambda: read_mpnrage(ds, "01"), "sub-01_inv-1_part-real_MP2RAGE.nii.gz (sidecar)", key, "defaults", option)
    defaults = {key: value for key, (_, value) in lacking.items()}
    assert read_mpnrage(ds, "01", defaults=defaults).protocol == p


# ------------------------------------------------------------------------------ validate_dataset
def test_validate_dataset_checks_sir_when_present_and_requires_it_only_when_asked(ds):
    for path in (ds / "sub-02" / "anat").glob("*_IRT1.*"):
        path.unlink()
    assert has_sir(ds, "01") and not has_sir(ds, "02")
    assert validate_dataset(ds, require_sir=False) == ["01", "02"]
    _raises(lambda: validate_dataset(ds), "sub-02", "IRT1")
    path = ds / ANAT / "sub-01_acq-SIR_inv-2_IRT1.nii.gz"
    _store(path, -nib.load(path).get_fdata())
    _raises(lambda: validate_dataset(ds, require_sir=False), "sub-01_acq-SIR_inv-2_IRT1", "negative")


def test_validate_dataset_passes_select_and_b1_units_on(ds):
    for path in sorted((ds / ANAT).glob("sub-01_inv-*_MP2RAGE.*")):
        run2 = path.with_name(path.name.replace("sub-01_", "sub-01_run-2_"))
        shutil.copy(path, run2)
        path.rename(path.with_name(path.name.replace("sub-01_", "sub-01_run-1_")))
    _raises(lambda: validate_dataset(ds, ["01"]), "sub-01 MP2RAGE", "several acquisitions")
    assert validate_dataset(ds, ["01"], select={"run": "2"}) == ["01"]  # the SIR images have no run: kept
    assert has_sir(ds, "01", select={"run": "2"})
    _raises(lambda: validate_dataset(ds, ["01"], select={"run": "2"}, b1_units="ratio"), "sub-01_TB1map", "ratio")
