"""Naming and writing derivatives in a derivative dataset anywhere on disk (qt1lib.derivatives), and the
official validator's verdict on what it writes."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from qt1lib.derivatives import (
    BIDSIGNORE,
    GROUP_TABLES,
    RAW,
    bids_uri,
    default_derivatives_dir,
    derivative_path,
    sidecar_path,
    write_dataset_files,
    write_derivative,
    write_description,
    write_descriptions,
    write_table,
)
from qt1lib.io import load_json


def test_derivative_paths_are_bids_names_under_the_root(tmp_path):
    path = derivative_path(tmp_path, "01", "T1map", desc="MAP", space="SIR")
    assert path == tmp_path / "sub-01" / "anat" / "sub-01_space-SIR_desc-MAP_T1map.nii.gz"
    table = derivative_path(tmp_path, None, "rmse", desc="calibration", extension=".tsv")
    assert table == tmp_path / "desc-calibration_rmse.tsv"
    assert default_derivatives_dir(tmp_path) == tmp_path / "derivatives" / "qt1lib"
    assert sidecar_path(path) == path.with_name("sub-01_space-SIR_desc-MAP_T1map.json")
    with pytest.raises(ValueError, match="alphanumeric"):
        derivative_path(tmp_path, "01", "T1map", desc="MAP_std")


def test_derivatives_are_written_atomically_with_their_sidecar(tmp_path):
    root = tmp_path / "out"
    params = {"method": "LUT", "t1_grid": [0.05, 5.0, 0.001]}
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    path = write_derivative(root, "01", data, np.eye(4), "T1map", desc="LUT", parameters=params, sidecar={"Units": "s"})
    assert path == root / "sub-01" / "anat" / "sub-01_desc-LUT_T1map.nii.gz"
    assert load_json(root / "dataset_description.json")["DatasetType"] == "derivative"
    assert np.array_equal(nib.load(path).get_fdata(), data)
    sidecar = load_json(path.with_name("sub-01_desc-LUT_T1map.json"))
    assert sidecar["Parameters"] == params and sidecar["Units"] == "s"
    assert sorted(p.name for p in path.parent.iterdir()) == ["sub-01_desc-LUT_T1map.json", "sub-01_desc-LUT_T1map.nii.gz"]


VALIDATOR = Path(sys.executable).parent / "bids-validator-deno"


def _errors(root: Path) -> list[tuple]:
    out = subprocess.run([str(VALIDATOR), str(root), "--format", "json"], capture_output=True, text=True, timeout=120)
    return [(i["code"], i.get("subCode"), i.get("location")) for i in json.loads(out.stdout)["issues"]["issues"]
            if i["severity"] == "error"]


def test_dataset_files_link_the_input_and_are_written_once(tmp_path):
    raw, root = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    write_dataset_files(root, raw)
    description = load_json(root / "dataset_description.json")
    assert description["DatasetLinks"] == {RAW: raw.resolve().as_uri()} and description["DatasetType"] == "derivative"
    assert (root / ".bidsignore").read_text().splitlines() == list(BIDSIGNORE)
    stamps = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    write_dataset_files(root, raw)
    write_description(root)  # without the input dataset: the linked description is kept
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == stamps
    assert bids_uri(raw, raw / "sub-01" / "anat" / "x.nii.gz") == "bids:raw:sub-01/anat/x.nii.gz"
    assert bids_uri(raw, tmp_path / "elsewhere.nii.gz") is None


def test_tables_describe_every_column(tmp_path):
    table = pd.DataFrame({"participant_id": ["sub-01"], "rmse": [0.1]})
    with pytest.raises(ValueError, match="rmse"):
        write_table(tmp_path, "phenotype/t", table, {"participant_id": {"Description": "who"}}, "a table")
    path = write_table(tmp_path, "phenotype/t", table, {"participant_id": {"Description": "who"},
                                                        "rmse": {"Description": "error", "Units": "s"}}, "a table")
    assert path.read_text() == "participant_id\trmse\nsub-01\t0.1\n"
    assert load_json(path.with_suffix(".json")) == {"Description": "a table", "participant_id": {"Description": "who"},
                                                    "rmse": {"Description": "error", "Units": "s"}}


def test_descriptions_table_lists_every_desc_label_per_suffix(tmp_path):
    for suffix, text in (("T1map", "IR T1"), ("R1map", "R1f")):
        write_derivative(tmp_path, "01", np.zeros((2, 2, 2)), np.eye(4), suffix, desc="SIR", space="SIR",
                         sidecar={"Description": text})
    write_derivative(tmp_path, "01", np.zeros((2, 2, 2)), np.eye(4), "T1map", desc="LUT", sidecar={"Description": "LUT"})
    write_descriptions(tmp_path)
    assert (tmp_path / "descriptions.tsv").read_text().splitlines() == [
        "desc_id\tdescription", "desc-LUT\tLUT", "desc-SIR\tR1map: R1f; T1map: IR T1"]


def test_the_transform_file_is_read_back_by_ants(tmp_path):
    from qt1lib.register import RigidTransform
    from qt1lib.workflow.sir_space import itk_transform_text

    angle = np.radians(7.0)
    matrix = np.eye(4)
    matrix[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    matrix[:3, 3] = [1.5, -2.25, 3.0]
    path = tmp_path / "sub-01_from-MP2RAGE_to-SIR_mode-image_xfm.txt"
    path.write_text(itk_transform_text(RigidTransform(matrix)))
    np.testing.assert_allclose(RigidTransform.from_ants_file(path).matrix, matrix, atol=1e-12)
    assert itk_transform_text(RigidTransform(matrix)) == path.read_text()  # the same bytes every time


@pytest.mark.skipif(not VALIDATOR.is_file(), reason=f"the BIDS validator ({VALIDATOR}) is not installed")
def test_the_validator_accepts_what_bids_names_and_the_bidsignore_lists_only_what_it_does_not(tmp_path):
    raw, root = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    write_dataset_files(root, raw)
    grid = {"data": np.zeros((2, 2, 2), np.float32), "affine": np.eye(4)}
    reference = "bids:raw:sub-01/anat/sub-01_acq-SIR_inv-1_IRT1.nii.gz"
    write_derivative(root, "01", grid["data"], grid["affine"], "T1map", desc="LUT", sidecar={"SkullStripped": True})
    write_derivative(root, "01", grid["data"], grid["affine"], "PSRmap", desc="SIR", space="SIR",
                     sidecar={"SkullStripped": False, "SpatialReference": reference})
    write_derivative(root, "01", grid["data"], grid["affine"], "TB1map", desc="measured", space="SIR", datatype="fmap",
                     sidecar={"SkullStripped": False, "SpatialReference": reference})
    write_derivative(root, "01", grid["data"].astype(np.uint8), grid["affine"], "mask", desc="brain",
                     sidecar={"Type": "Brain"})
    (root / "sub-01" / "anat" / "sub-01_from-MP2RAGE_to-SIR_mode-image_xfm.txt").write_text("#Insight Transform File\n")
    (root / "sub-01" / "anat" / "sub-01_from-MP2RAGE_to-SIR_mode-image_xfm.json").write_text("{}\n")
    write_table(root, GROUP_TABLES[0], pd.DataFrame({"rmse": [0.1]}), {"rmse": {"Description": "e"}}, "group")
    write_table(root, "phenotype/agreement", pd.DataFrame({"participant_id": ["sub-01"], "rmse": [0.1]}),
                {"participant_id": {"Description": "who"}, "rmse": {"Description": "e"}}, "per participant")
    write_descriptions(root)
    assert _errors(root) == []
    # what BIDS names is never ignored: a map without SkullStripped, a B1 map under anat/, a space-SIR image
    # without SpatialReference are errors
    write_derivative(root, "01", grid["data"], grid["affine"], "T1map", desc="MAP", space="SIR")
    write_derivative(root, "01", grid["data"], grid["affine"], "TB1map", desc="measured", sidecar={"SkullStripped": False})
    codes = {(code, sub) for code, sub, _ in _errors(root)}
    assert {("SIDECAR_KEY_REQUIRED", "SkullStripped"), ("SIDECAR_KEY_REQUIRED", "SpatialReference")} <= codes
    assert any(code in ("ALL_FILENAME_RULES_HAVE_ISSUES", "NOT_INCLUDED") for code, _ in codes)
