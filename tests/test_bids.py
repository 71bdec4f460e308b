"""BIDS reader and validator: the cohort validates; damaged copies fail naming file and field, and
nothing is written; part conventions (mag/phase, magnitude + UNI), B1 units and grids, sidecar
inheritance, derivatives and their cache keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qt1lib.bids import (
    BIDSValidationError,
    applicable_sidecars,
    parse_name,
    read_mpnrage,
    read_sidecar,
    read_sir,
    validate_dataset,
)
from qt1lib.derivatives import default_derivatives_dir, write_derivative
from qt1lib.io import atomic_write_bytes, save_json, save_nifti
from qt1lib.phantom import SIR_7T
from qt1lib.protocols import SEED_7T_MP3RAGE
from qt1lib.sequences import uni


@pytest.fixture(scope="module")
def cohort(smoke_cohort):
    return smoke_cohort


@pytest.fixture
def copy(cohort, tmp_path):
    target = tmp_path / "ds"
    shutil.copytree(cohort.bids_dir, target)
    shutil.rmtree(target / "derivatives" / "qt1lib", ignore_errors=True)
    return target


def _pipeline(bids_dir: Path) -> list[Path]:
    """A minimal processing run: validate everything first, then write one derivative per subject."""
    subjects = validate_dataset(bids_dir)
    written = []
    for s in subjects:
        data = read_mpnrage(bids_dir, s)
        written.append(write_derivative(default_derivatives_dir(bids_dir), s, uni(data.gre[0], data.gre[1]), data.affine, "UNIT1", desc="test"))
    return written


def test_cohort_validates_and_sidecars_give_back_the_protocols(cohort):
    assert validate_dataset(cohort.bids_dir) == ["01", "02"]
    data = read_mpnrage(cohort.bids_dir, "01", require_b1=True)
    p, q = data.protocol, SEED_7T_MP3RAGE
    assert (p.tr_mprage, p.echo_spacing, p.inversion_times, p.flip_angles) == (
        q.tr_mprage,
        q.echo_spacing,
        q.inversion_times,
        q.flip_angles,
    )
    assert (p.n_before, p.n_after, p.inversion_efficiency, p.field_strength) == (
        q.n_before,
        q.n_after,
        q.inversion_efficiency,
        q.field_strength,
    )
    assert data.gre.shape[0] == 3 and data.gre.dtype == np.complex64
    assert data.b1.shape == data.gre.shape[1:]
    sir = read_sir(cohort.bids_dir, "01")
    assert sir.protocol.inversion_times == SIR_7T.inversion_times
    assert sir.protocol.delay_times == SIR_7T.delay_times
    assert sir.protocol.bound_inversion == SIR_7T.bound_inversion
    assert sir.images.shape[0] == SIR_7T.n_samples


def _edit_json(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


def _damage_missing_field(ds: Path) -> tuple[str, str]:
    name = "sub-01_inv-2_part-real_MP2RAGE"
    _edit_json(ds / "sub-01" / "anat" / f"{name}.json", FlipAngle=None)
    return name, "FlipAngle"


def _damage_milliseconds(ds: Path) -> tuple[str, str]:
    name = "sub-02_inv-1_part-imag_MP2RAGE"
    _edit_json(ds / "sub-02" / "anat" / f"{name}.json", InversionTime=1010)
    return name, "milliseconds"


def _damage_nan_slab(ds: Path) -> tuple[str, str]:
    name = "sub-02_inv-1_part-imag_MP2RAGE"
    path = ds / "sub-02" / "anat" / f"{name}.nii.gz"
    img = nib.load(path)
    data = img.get_fdata(dtype=np.float32)
    data[:, :, data.shape[2] // 2] = np.nan
    save_nifti(data, path, img.affine)
    return name, "NaN"


def _damage_affine(ds: Path) -> tuple[str, str]:
    name = "sub-01_inv-3_part-real_MP2RAGE"
    path = ds / "sub-01" / "anat" / f"{name}.nii.gz"
    img = nib.load(path)
    affine = img.affine.copy()
    affine[0, 3] += 1.0
    save_nifti(img.get_fdata(dtype=np.float32), path, affine)
    return name, "affine"


def _damage_truncated(ds: Path) -> tuple[str, str]:
    name = "sub-01_acq-SIR_inv-3_IRT1"
    path = ds / "sub-01" / "anat" / f"{name}.nii.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return name, "truncated"


def _damage_missing_file(ds: Path) -> tuple[str, str]:
    name = "sub-02_inv-2_part-imag_MP2RAGE"
    (ds / "sub-02" / "anat" / f"{name}.nii.gz").unlink()
    return "sub-02_inv-2_part-real_MP2RAGE", "incomplete"


def _damage_b1_grid(ds: Path) -> tuple[str, str]:
    name = "sub-01_TB1map"
    path = ds / "sub-01" / "fmap" / f"{name}.nii.gz"
    img = nib.load(path)
    data = img.get_fdata(dtype=np.float32)[:-1]
    save_nifti(data, path, img.affine)
    return name, "shape"


@pytest.mark.parametrize(
    "damage",
    [
        _damage_missing_field,
        _damage_milliseconds,
        _damage_nan_slab,
        _damage_affine,
        _damage_truncated,
        _damage_missing_file,
        _damage_b1_grid,
    ],
)
def test_damaged_copy_fails_naming_file_and_field_and_writes_nothing(copy, damage):
    name, word = damage(copy)
    with pytest.raises(BIDSValidationError) as info:
        _pipeline(copy)
    message = str(info.value)
    assert any(name in p and word in p for p in info.value.problems), message
    assert not (copy / "derivatives" / "qt1lib").exists()


def test_undamaged_copy_runs_the_pipeline(copy):
    written = _pipeline(copy)
    assert [p.name for p in written] == ["sub-01_desc-test_UNIT1.nii.gz", "sub-02_desc-test_UNIT1.nii.gz"]


def test_missing_inversion_efficiency_can_come_from_defaults(copy):
    for path in (copy / "sub-01" / "anat").glob("*_MP2RAGE.json"):
        _edit_json(path, InversionEfficiency=None)
    with pytest.raises(BIDSValidationError, match="InversionEfficiency"):
        read_mpnrage(copy, "01")
    data = read_mpnrage(copy, "01", defaults={"InversionEfficiency": 0.9})
    assert data.protocol.inversion_efficiency == 0.9


def test_sidecar_inheritance_from_the_dataset_root(copy):
    for path in copy.glob("sub-*/anat/*_MP2RAGE.json"):
        _edit_json(path, RepetitionTimeExcitation=None)
    save_json({"RepetitionTimeExcitation": SEED_7T_MP3RAGE.echo_spacing}, copy / "MP2RAGE.json")
    image = copy / "sub-01" / "anat" / "sub-01_inv-1_part-real_MP2RAGE.nii.gz"
    assert read_sidecar(image, copy)["RepetitionTimeExcitation"] == SEED_7T_MP3RAGE.echo_spacing
    assert read_mpnrage(copy, "01").protocol.echo_spacing == SEED_7T_MP3RAGE.echo_spacing
    # a more specific sidecar wins over the root one
    _edit_json(image.with_name("sub-01_inv-1_part-real_MP2RAGE.json"), RepetitionTimeExcitation=0.007)
    assert read_sidecar(image, copy)["RepetitionTimeExcitation"] == 0.007


def _rewrite_parts(ds: Path, subject: str, convert) -> None:
    anat = ds / f"sub-{subject}" / "anat"
    for k in (1, 2, 3):
        stem = f"sub-{subject}_inv-{k}"
        real = nib.load(anat / f"{stem}_part-real_MP2RAGE.nii.gz")
        imag = nib.load(anat / f"{stem}_part-imag_MP2RAGE.nii.gz")
        meta = json.loads((anat / f"{stem}_part-real_MP2RAGE.json").read_text())
        g = real.get_fdata() + 1j * imag.get_fdata()
        for part in ("real", "imag"):
            (anat / f"{stem}_part-{part}_MP2RAGE.nii.gz").unlink()
            (anat / f"{stem}_part-{part}_MP2RAGE.json").unlink()
        for part, values in convert(k, g).items():
            save_nifti(values, anat / f"{stem}_part-{part}_MP2RAGE.nii.gz", real.affine)
            # BIDS: a phase image's sidecar MUST give its Units ("rad" or "arbitrary")
            save_json(meta | ({"Units": "arbitrary"} if part == "phase" else {}), anat / f"{stem}_part-{part}_MP2RAGE.json")


def test_mag_phase_parts_give_the_complex_images(copy):
    reference = read_mpnrage(copy, "01").gre
    # Siemens-style integer phase (-4096..4095 for -pi..pi)
    _rewrite_parts(copy, "01", lambda k, g: {"mag": np.abs(g), "phase": np.round(np.angle(g) / np.pi * 4096)})
    gre = read_mpnrage(copy, "01").gre
    magnitude = np.abs(reference)
    strong = magnitude > 0.2 * magnitude.max()
    np.testing.assert_allclose(np.abs(gre), magnitude, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.angle(gre[strong] * np.conj(reference[strong])), 0, atol=2e-3)


def test_magnitude_with_uni_signs_the_first_inversion(copy):
    complex_data = read_mpnrage(copy, "01")
    g = complex_data.gre
    s12 = uni(g[0], g[1])
    anat = copy / "sub-01" / "anat"
    save_nifti(np.round((s12 + 0.5) * 4095).astype(np.int16), anat / "sub-01_UNIT1.nii.gz", complex_data.affine)
    _rewrite_parts(copy, "01", lambda k, gk: {"mag": np.abs(gk)})
    magnitude_data = read_mpnrage(copy, "01")
    # S_12 from signed magnitudes: sign(UNI) |G1||G2| / (|G1|^2 + |G2|^2)
    expected = np.sign(np.round((s12 + 0.5) * 4095) / 4095 - 0.5) * np.abs(g[0]) * np.abs(g[1])
    expected = expected / (np.abs(g[0]) ** 2 + np.abs(g[1]) ** 2)
    np.testing.assert_allclose(uni(magnitude_data.gre[0], magnitude_data.gre[1]), expected, atol=1e-6)
    assert (magnitude_data.gre[1:].imag == 0).all() and (magnitude_data.gre[1:].real >= 0).all()


def test_b1_units_and_grid(copy):
    ratio = read_mpnrage(copy, "01").b1
    fmap = copy / "sub-01" / "fmap"
    img = nib.load(fmap / "sub-01_TB1map.nii.gz")
    save_nifti(ratio * 100, fmap / "sub-01_TB1map.nii.gz", img.affine)
    _edit_json(fmap / "sub-01_TB1map.json", Units="percent")
    np.testing.assert_allclose(read_mpnrage(copy, "01").b1, ratio, rtol=1e-5)
    _edit_json(fmap / "sub-01_TB1map.json", Units=None)  # inferred from the values
    np.testing.assert_allclose(read_mpnrage(copy, "01").b1, ratio, rtol=1e-5)
    _edit_json(fmap / "sub-01_TB1map.json", Units="Hz")
    with pytest.raises(BIDSValidationError, match="Units"):
        read_mpnrage(copy, "01")
    # A B1 map on a coarser, shifted grid: an error, unless resampling is asked for. A field that
    # is linear in world position is reproduced exactly by trilinear resampling.
    def linear(points):
        return 1.0 + 0.002 * points[..., 0] - 0.001 * points[..., 1] + 0.003 * points[..., 2]

    coarse = img.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    coarse[:3, 3] += 1.3
    shape = tuple(n // 2 + 2 for n in ratio.shape)
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    save_nifti(linear(idx @ coarse[:3, :3].T + coarse[:3, 3]), fmap / "sub-01_TB1map.nii.gz", coarse)
    _edit_json(fmap / "sub-01_TB1map.json", Units="ratio")
    with pytest.raises(BIDSValidationError, match="resample_b1"):
        read_mpnrage(copy, "01")
    resampled = read_mpnrage(copy, "01", resample_b1=True).b1
    fine = np.stack(np.meshgrid(*(np.arange(n) for n in ratio.shape), indexing="ij"), axis=-1)
    expected = linear(fine @ img.affine[:3, :3].T + img.affine[:3, 3])
    inner = (slice(1, -3),) * 3
    np.testing.assert_allclose(resampled[inner], expected[inner], atol=1e-5)


def test_parse_name(tmp_path):
    name = parse_name("sub-01_acq-SIR_inv-2_IRT1.nii.gz")
    assert name.entities == {"sub": "01", "acq": "SIR", "inv": "2"} and name.suffix == "IRT1"
    assert name.extension == ".nii.gz"


def test_atomic_writer_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "table.tsv"
    target.write_text("old")

    def failing(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_bytes(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.tsv"]


def test_readers_list_every_file_they_read_with_inherited_sidecars(copy):
    root = copy / "MP2RAGE.json"
    save_json({"MagneticFieldStrength": 7.0}, root)
    data = read_mpnrage(copy, "01")
    assert root in data.inputs
    images = [p for k, paths in data.files.items() if k.startswith("inv-") for p in paths]
    assert set(images) <= set(data.inputs) and data.files["b1"] in data.inputs
    for image in images:
        assert image.with_name(image.name.replace(".nii.gz", ".json")) in data.inputs
    assert applicable_sidecars(images[0], copy)[0] == root  # the dataset level first (lowest precedence)
    sir = read_sir(copy, "01")
    assert set(sir.files) <= set(sir.inputs) and root not in sir.inputs
