"""The BIDS-App command ``qt1`` and ``qt1-cohort`` on one smoke cohort of three participants, the third
without SIR images: help and exit codes, participant level on MP3RAGE and MP2RAGE-only data, group level
(calibration over the two with SIR, the third left out and named), the official validator's verdict on
the output folder, and byte-identical derivatives from a serial and a two-worker dask run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from qt1lib.cli import EXIT_OK, EXIT_USAGE, cohort_main, main
from qt1lib.estimate.base import estimator_class
from qt1lib.io import load_json, save_json

VALIDATOR = Path(sys.executable).parent / "bids-validator-deno"
SMOKE = ["--profile", "smoke", "--no-progress"]


def _qt1(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """``qt1-cohort`` smoke, three participants; sub-03's SIR images removed (read-only: copy it to damage it)."""
    bids = tmp_path_factory.mktemp("cli") / "bids"
    assert cohort_main([str(bids), "--profile", "smoke", "--seed", "0", "--n-subjects", "3", "--no-progress"]) == EXIT_OK
    for path in (bids / "sub-03" / "anat").glob("sub-03_acq-SIR_*"):
        path.unlink()
    return bids


@pytest.fixture(scope="module")
def serial(cohort, tmp_path_factory) -> Path:
    """The participant level, serially (``--n-workers 1``), then the group level; returns OUTPUT_DIR."""
    out = tmp_path_factory.mktemp("serial") / "out"
    assert _qt1(cohort, out, "participant", "--n-workers", 1, *SMOKE) == EXIT_OK
    return out


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a derivative dataset but the work folder, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".work" not in p.relative_to(root).parts}


def _validate(root: Path) -> dict:
    out = subprocess.run([str(VALIDATOR), str(root), "--format", "json"], capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout)


def test_help_lists_the_options_and_examples(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--participant-label", "--session-label", "--acq", "--run", "--echo", "--estimators",
                   "--inversion-efficiency", "--number-shots", "--echo-spacing", "--b1-units", "--sigma",
                   "--work-dir", "--n-workers", "--scheduler", "--seed", "--profile"):
        assert option in text, option
    assert "examples:" in text and "qt1 /data/bids /data/derivatives/qt1 group" in text and "exit status" in text
    assert cohort_main(["--help"]) == 0 and "--profile" in capsys.readouterr().out


def test_a_missing_dataset_is_an_error_never_a_simulation(tmp_path, capsys):
    missing = tmp_path / "no-such-dataset"
    assert _qt1(missing, tmp_path / "out", "participant") == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
    assert not missing.exists() and not (tmp_path / "out").exists()
    assert _qt1(tmp_path, tmp_path / "out", "participant", "--n-workers", 0) == EXIT_USAGE  # argparse
    assert "--n-workers" in capsys.readouterr().err


def test_a_sidecar_field_missing_names_the_file_the_field_and_the_option(cohort, tmp_path, capsys):
    bids = tmp_path / "bids"
    shutil.copytree(cohort, bids)
    side = bids / "sub-02" / "anat" / "sub-02_inv-2_part-real_MP2RAGE.json"
    meta = load_json(side)
    del meta["InversionEfficiency"]
    save_json(meta, side)
    assert _qt1(bids, tmp_path / "out", "participant", "--participant-label", "sub-02", *SMOKE) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "sub-02_inv-2_part-real_MP2RAGE" in err and "InversionEfficiency" in err and "--inversion-efficiency" in err
    assert not list((tmp_path / "out").glob("sub-*"))  # nothing was computed


@pytest.mark.slow
def test_participant_maps_mp3rage_and_says_which_participant_has_no_sir(serial, cohort):
    anat = serial / "sub-01" / "anat"
    for name in ("lut", "lut_b1", "map_seed_mp2rage", "map_seed_mp3rage", "map_exact_mp2rage", "map_exact_mp3rage"):
        desc = estimator_class(name).desc
        t1 = np.asarray(nib.load(anat / f"sub-01_desc-{desc}_T1map.nii.gz").dataobj)
        brain = np.asarray(nib.load(anat / "sub-01_desc-brain_mask.nii.gz").dataobj) > 0
        assert np.nanmedian(t1[brain]) == pytest.approx(1.2, abs=0.6), name  # brain T1 at 7 T: 0.8..2 s
        assert (anat / f"sub-01_space-SIR_desc-{desc}_T1map.nii.gz").is_file(), name
    assert (serial / "sub-01" / "fmap" / "sub-01_space-SIR_desc-measured_TB1map.nii.gz").is_file()
    xfm = anat / "sub-01_from-MP2RAGE_to-SIR_mode-image_xfm.txt"
    assert xfm.read_text().startswith("#Insight Transform File V1.0")
    assert (serial / "sub-03" / "anat" / "sub-03_desc-LUT_T1map.nii.gz").is_file()
    assert not list((serial / "sub-03").rglob("*space-SIR*")) and not list((serial / "sub-03").rglob("*xfm*"))
    sidecar = load_json(anat / "sub-01_space-SIR_desc-LUT_T1map.json")
    assert sidecar["SkullStripped"] is True and sidecar["SpatialReference"].startswith("bids:raw:sub-01/anat/")
    assert sidecar["Sources"] == ["bids::sub-01/anat/sub-01_desc-LUT_T1map.nii.gz"]
    assert load_json(serial / "dataset_description.json")["DatasetLinks"] == {"raw": cohort.resolve().as_uri()}


@pytest.mark.slow
def test_group_calibrates_over_the_participants_with_sir_and_names_the_others(serial, cohort, capsys):
    capsys.readouterr()
    assert _qt1(cohort, serial, "group", "--n-workers", 1, *SMOKE) == EXIT_OK
    text = capsys.readouterr().out
    assert "used: sub-01, sub-02" in text and "left out: sub-03 (no SIR images)" in text
    participants = pd.read_csv(serial / "participants.tsv", sep="\t")
    assert participants["calibration"].tolist() == ["used", "used", "left out"]
    assert participants["reason"].fillna("n/a").tolist() == ["n/a", "n/a", "no SIR images"]
    per_fold = pd.read_csv(serial / "phenotype" / "calibration.tsv", sep="\t")
    assert per_fold["participant_id"].tolist() == ["sub-01", "sub-02"] and per_fold["fold"].tolist() == [1, 2]
    summary = pd.read_csv(serial / "calibration_summary.tsv", sep="\t").set_index(["method", "tissue"])
    # the summary is the mean over the folds of the per-participant table
    assert summary.loc[("resnet", "WM"), "rmse_mean"] == pytest.approx(per_fold["resnet_wm_rmse"].mean())
    assert summary.loc[("none", "WM"), "rmse_mean"] > summary.loc[("tissue_linear", "WM"), "rmse_mean"]
    sidecar = load_json(serial / "calibration_summary.json")
    assert set(summary.reset_index().columns) <= set(sidecar) and sidecar["rmse_mean"]["Units"] == "s"
    agreement = pd.read_csv(serial / "phenotype" / "agreement.tsv", sep="\t")
    assert agreement["participant_id"].tolist() == ["sub-01", "sub-02"]
    resnet = serial / "sub-02" / "anat" / "sub-02_space-SIR_desc-ResNet_T1map.nii.gz"
    assert load_json(resnet.with_name(resnet.name.replace(".nii.gz", ".json")))["SkullStripped"] is True


@pytest.mark.slow
@pytest.mark.skipif(not VALIDATOR.is_file(), reason=f"the BIDS validator ({VALIDATOR}) is not installed")
def test_the_output_folder_has_zero_validator_errors(serial, cohort):
    if not (serial / "participants.tsv").is_file():  # the group level ran (test order), else run it
        assert _qt1(cohort, serial, "group", "--n-workers", 1, *SMOKE) == EXIT_OK
    report = _validate(serial)
    errors = [(i["code"], i.get("subCode"), i.get("location")) for i in report["issues"]["issues"]
              if i["severity"] == "error"]
    assert errors == []
    assert (serial / "calibration_summary.tsv").is_file() and (serial / "sub-01" / "anat").is_dir()


@pytest.mark.slow
def test_serial_and_dask_runs_give_byte_identical_derivatives(serial, cohort, tmp_path):
    """Two workers on two participants that share the protocol-level store entries (the seed MAP's
    histograms): both compute them at once in a fresh store, one commit wins."""
    out = tmp_path / "out"
    assert _qt1(cohort, out, "participant", "--participant-label", "01", "03", "--n-workers", 2, *SMOKE) == EXIT_OK
    parallel, reference = _files(out), _files(serial)
    assert any(name.endswith(".nii.gz") for name in parallel) and any(name.endswith(".tsv") for name in parallel)
    per_participant = {k: v for k, v in parallel.items() if k.startswith(("sub-01/", "sub-03/"))}
    assert per_participant and all(reference[k] == v for k, v in per_participant.items())
    assert parallel["dataset_description.json"] == reference["dataset_description.json"]


@pytest.mark.slow
@pytest.mark.skipif(not VALIDATOR.is_file(), reason=f"the BIDS validator ({VALIDATOR}) is not installed")
def test_a_users_dataset_without_truth_or_segmentation_is_mapped_into_a_valid_folder(cohort, tmp_path):
    """The cohort's raw data of one participant alone (no derivatives/phantom, no dseg): noise from the
    background, the automatic segmentation (qt1lib.segment), and still zero validator errors."""
    bids = tmp_path / "bids"
    bids.mkdir()
    for name in ("dataset_description.json", "README"):
        shutil.copy(cohort / name, bids / name)
    shutil.copytree(cohort / "sub-01", bids / "sub-01")
    out = tmp_path / "out"
    assert _qt1(bids, out, "participant", "--n-workers", 1, *SMOKE) == EXIT_OK
    assert (out / "sub-01" / "anat" / "sub-01_dseg.nii.gz").is_file()
    assert (out / "sub-01" / "anat" / "sub-01_space-SIR_desc-LUT_T1map.nii.gz").is_file()
    errors = [(i["code"], i.get("location")) for i in _validate(out)["issues"]["issues"] if i["severity"] == "error"]
    assert errors == []


def _mp2rage_only(cohort: Path, target: Path, subject: str = "01") -> Path:
    """A copy whose participant ``subject`` has two inversions: inv-3 removed with every trace of it."""
    shutil.copytree(cohort, target)
    anat = target / f"sub-{subject}" / "anat"
    for path in anat.glob(f"sub-{subject}_inv-3_*"):
        path.unlink()
    for path in anat.glob(f"sub-{subject}_inv-*_MP2RAGE.json"):
        meta = load_json(path)
        meta["PulseSequenceType"] = "MP2RAGE"
        save_json(meta, path)
    b1 = target / f"sub-{subject}" / "fmap" / f"sub-{subject}_TB1map.json"
    meta = load_json(b1)
    meta["IntendedFor"] = [f for f in meta["IntendedFor"] if "_inv-3_" not in f]
    save_json(meta, b1)
    return target


@pytest.mark.slow
def test_participant_on_mp2rage_only_data(cohort, tmp_path, capsys):
    bids = _mp2rage_only(cohort, tmp_path / "bids")
    out = tmp_path / "out"
    capsys.readouterr()
    assert _qt1(bids, out, "participant", "--participant-label", "01", "--n-workers", 1, *SMOKE) == EXIT_OK
    assert "sub-01: MP2RAGE" in capsys.readouterr().out
    anat = out / "sub-01" / "anat"
    made = {p.name.split("_desc-")[1].rsplit("_", 1)[0] for p in anat.glob("sub-01_desc-*_T1map.nii.gz")}
    mp2rage = {estimator_class(n).desc for n in ("lut", "lut_b1", "map_seed_mp2rage", "map_exact_mp2rage")}
    assert made == mp2rage | {f"{d}std" for d in mp2rage if d.startswith("MAP")}
    assert not (anat / "sub-01_desc-S13_UNIT1.nii.gz").exists()
    lut = np.asarray(nib.load(anat / "sub-01_desc-LUT_T1map.nii.gz").dataobj)
    brain = np.asarray(nib.load(anat / "sub-01_desc-brain_mask.nii.gz").dataobj) > 0
    assert np.isfinite(lut[brain]).mean() > 0.99
    assert (anat / "sub-01_space-SIR_desc-LUT_T1map.nii.gz").is_file()


@pytest.mark.slow
def test_group_with_one_participant_with_sir_says_why_it_does_not_calibrate(serial, cohort, tmp_path, capsys):
    out = tmp_path / "out"
    capsys.readouterr()
    assert _qt1(cohort, out, "group", "--participant-label", "01", "03", "--work-dir", serial / ".work",
                "--n-workers", 1, *SMOKE) == EXIT_OK
    text = capsys.readouterr().out
    assert "no calibration" in text and "at least 2 participants with SIR" in text and "(sub-01)" in text
    assert (out / "phenotype" / "agreement.tsv").is_file() and not (out / "calibration_summary.tsv").exists()
    assert pd.read_csv(out / "participants.tsv", sep="\t")["calibration"].tolist() == ["left out", "left out"]


def test_the_console_scripts_are_declared():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["qt1"] == "qt1lib.cli.main:run"
    assert project["scripts"]["qt1-cohort"] == "qt1lib.cli.main:run_cohort"
    assert any(d.startswith("distributed") for d in project["dependencies"])
    assert any(d.startswith("bids-validator-deno") for d in project["optional-dependencies"]["test"])


def _synthetic_cross_validation(n_subjects: int = 3, n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A voxel table as a cross-validation's: each method's error around IR T1 shrinks from none to resnet."""
    rng = np.random.default_rng(seed)
    spread = {"none": 0.30, "global_linear": 0.15, "tissue_linear": 0.12, "resnet": 0.10}
    frames = []
    for fold in range(1, n_subjects + 1):
        offset = rng.normal(0.0, 0.05)  # each participant's own bias (the mixed model's random intercept)
        for tissue, t1 in (("WM", 1.2), ("subcortical GM", 1.5), ("cortical GM", 1.9)):
            reference = rng.normal(t1, 0.1, n)
            for method, sd in spread.items():
                frames.append(pd.DataFrame({"fold": fold, "subject": f"sub-0{fold}", "method": method, "tissue": tissue,
                                            "label": 1, "voxel": np.arange(n), "reference": reference,
                                            "estimate": reference + offset + rng.normal(sd / 2, sd, n)}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.skipif(not VALIDATOR.is_file(), reason=f"the BIDS validator ({VALIDATOR}) is not installed")
def test_calibration_tables_agree_with_the_voxels_and_pass_the_validator(tmp_path):
    from qt1lib import stats
    from qt1lib.cli.tables import write_calibration_tables
    from qt1lib.derivatives import write_dataset_files

    voxels = _synthetic_cross_validation()
    metrics = stats.tissue_metrics(voxels)
    write_dataset_files(tmp_path)
    notes = write_calibration_tables(tmp_path, metrics, voxels, seed=0)
    assert "fitted" in notes["calibration_mixedmodel.tsv"]
    per_fold = pd.read_csv(tmp_path / "phenotype" / "calibration.tsv", sep="\t").set_index("participant_id")
    row = metrics[(metrics["fold"] == 2) & (metrics["method"] == "resnet") & (metrics["tissue"] == "cortical GM")]
    assert per_fold.loc["sub-02", "resnet_cgm_rmse"] == pytest.approx(float(row["rmse"].iloc[0]))
    ba = pd.read_csv(tmp_path / "calibration_blandaltman.tsv", sep="\t").set_index(["method", "tissue"])
    sel = voxels[(voxels["method"] == "none") & (voxels["tissue"] == "WM")]
    assert ba.loc[("none", "WM"), "mean_difference"] == pytest.approx((sel["estimate"] - sel["reference"]).mean())
    tests = pd.read_csv(tmp_path / "calibration_tests.tsv", sep="\t")
    first = tests[(tests["before"] == "none") & (tests["after"] == "resnet")]
    assert (first["mean_difference"] < 0).all() and (first["p_wilcoxon_min"] == 0.25).all()  # 3 folds: p >= 2/2^3
    model = pd.read_csv(tmp_path / "calibration_mixedmodel.tsv", sep="\t").set_index("term")
    assert model.loc["C(method)[T.resnet]", "coef"] < 0  # the network's error is smaller than none's
    for table in tmp_path.rglob("*.tsv"):
        sidecar = load_json(table.with_suffix(".json"))
        assert set(pd.read_csv(table, sep="\t", nrows=0).columns) <= set(sidecar), table
    assert [i for i in _validate(tmp_path)["issues"]["issues"] if i["severity"] == "error"] == []
