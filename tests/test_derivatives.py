"""Naming and writing derivatives in a derivative dataset anywhere on disk (qt1lib.derivatives)."""

import nibabel as nib
import numpy as np
import pytest

from qt1lib.derivatives import default_derivatives_dir, derivative_path, sidecar_path, write_derivative
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
