"""The tissue registry: unique identifiers, lookups, the scored set, the two-pool values, and
agreement with the files the digital cohort writes (dseg.tsv, probseg names, dseg labels)."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from qt1lib import stats, tissues
from qt1lib.calibrate import CalibrationConfig
from qt1lib.phantom import BIDS_LABELS, TISSUE_CLASSES, load_truth, make_cohort
from qt1lib.sequences.twopool import TISSUES_7T
from qt1lib.tissues import ALL, CGM, CSF, SCORED, SGM, WM


def test_identifiers_are_unique_and_well_formed():
    for attribute in ("label", "key", "name", "bids_label"):
        values = [getattr(t, attribute) for t in ALL]
        assert len(set(values)) == len(values), attribute
    assert [t.label for t in ALL] == [1, 2, 3, 4]  # the cohort's dseg convention, in order
    assert all(t.key.isidentifier() and t.key.islower() for t in ALL)
    assert all(t.bids_label.isalnum() for t in ALL)  # BIDS entity values are alphanumeric
    assert [t.key for t in ALL] == ["wm", "sgm", "cgm", "csf"]
    assert [t.name for t in ALL] == ["WM", "subcortical GM", "cortical GM", "CSF"]
    assert [t.bids_label for t in ALL] == ["WM", "sGM", "cGM", "CSF"]


def test_lookups_round_trip():
    for t in ALL:
        assert tissues.by_label(t.label) is t
        assert tissues.by_label(np.uint8(t.label)) is t
        assert tissues.by_key(t.key) is t
        assert tissues.by_name(t.name) is t
        for spelling in (t.key, t.name, t.bids_label, t.twopool.name):
            assert tissues.by_any_name(spelling) is t
            assert tissues.by_any_name(spelling.upper()) is t
    assert tissues.by_any_name("Subcortical_GM") is SGM
    assert tissues.by_any_name("  cortical-gm ") is CGM


def test_scored_set_is_the_seeds_three_tissues_in_order():
    assert SCORED == (WM, SGM, CGM)
    assert not CSF.scored
    assert tissues.labels() == (1, 2, 3)
    assert tissues.names() == ("WM", "subcortical GM", "cortical GM")
    assert tissues.label_names() == {1: "WM", 2: "subcortical GM", 3: "cortical GM"}
    assert tissues.name_keys() == {"WM": "wm", "subcortical GM": "sgm", "cortical GM": "cgm"}
    assert tissues.labels(ALL) == (1, 2, 3, 4)
    # the callers use the registry rather than their own copies
    assert stats.TISSUE_LABELS == tissues.label_names() and stats.TISSUES == tissues.names()
    assert CalibrationConfig().tissues == tissues.labels()


def test_two_pool_values_are_the_entries_of_tissues_7t():
    assert {t.twopool.name for t in ALL} == set(TISSUES_7T)
    for t in ALL:
        assert t.twopool is TISSUES_7T[t.twopool.name]
        assert t.twopool.source  # carries its literature sources
    assert TISSUE_CLASSES == tuple(t.twopool.name for t in ALL)
    assert BIDS_LABELS == {t.twopool.name: t.bids_label for t in ALL}


def test_sequences_do_not_import_the_registry():
    code = "import sys, qt1lib.sequences; assert 'qt1lib.tissues' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("lookup", "value", "listed"),
    [
        (tissues.by_label, 7, ["1 (WM)", "2 (subcortical GM)", "3 (cortical GM)", "4 (CSF)"]),
        (tissues.by_label, 0, ["1 (WM)", "4 (CSF)"]),
        (tissues.by_label, 1.5, ["1 (WM)"]),
        (tissues.by_label, True, ["1 (WM)"]),
        (tissues.by_key, "gm", ["'wm'", "'sgm'", "'cgm'", "'csf'"]),
        (tissues.by_key, "WM", ["'wm'"]),
        (tissues.by_name, "subcortical_GM", ["'WM'", "'subcortical GM'", "'cortical GM'", "'CSF'"]),
        (tissues.by_name, "sGM", ["'subcortical GM'"]),
        (tissues.by_any_name, "GM", ["subcortical GM", "cortical GM", "sGM", "cortical_GM"]),
    ],
)
def test_unknown_values_raise_naming_them_and_the_known_ones(lookup, value, listed):
    with pytest.raises(ValueError) as err:
        lookup(value)
    message = str(err.value)
    assert repr(value) in message
    for known in listed:
        assert known in message


def test_sort_names_puts_registry_names_first_in_label_order():
    assert tissues.sort_names(["cortical GM", "other", "WM", "cortical GM", "CSF", "subcortical GM", "a"]) == [
        "WM", "subcortical GM", "cortical GM", "CSF", "other", "a",
    ]
    assert tissues.sort_names([]) == []


def _write_tsv(path, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerows(rows)
    return path


def test_read_dseg_tsv_checks_the_label_convention(tmp_path):
    good = _write_tsv(tmp_path / "a.tsv", [("index", "name"), (2, "subcortical_GM"), (1, "wm")])
    assert tissues.read_dseg_tsv(good) == {2: SGM, 1: WM}
    swapped = _write_tsv(tmp_path / "b.tsv", [("index", "name"), (1, "sGM"), (2, "WM")])
    with pytest.raises(ValueError, match="'sGM' has index 1.*labels subcortical GM as 2"):
        tissues.read_dseg_tsv(swapped)
    with pytest.raises(ValueError, match="unknown tissue 'Thalamus'"):
        tissues.read_dseg_tsv(_write_tsv(tmp_path / "c.tsv", [("index", "name"), (5, "Thalamus")]))
    with pytest.raises(ValueError, match="columns 'index' and 'name'"):
        tissues.read_dseg_tsv(_write_tsv(tmp_path / "d.tsv", [("label", "tissue"), (1, "WM")]))
    with pytest.raises(ValueError, match="appears twice"):
        tissues.read_dseg_tsv(_write_tsv(tmp_path / "e.tsv", [("index", "name"), (1, "WM"), (1, "wm")]))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("tissues") / "bids", "smoke", n_subjects=1, progress=False)


def test_registry_matches_the_cohorts_dseg_files(cohort):
    phantom = cohort.bids_dir / "derivatives" / "phantom"
    with (phantom / "dseg.tsv").open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [(int(r["index"]), r["name"]) for r in rows] == [(t.label, t.bids_label) for t in ALL]
    assert tissues.read_dseg_tsv(phantom / "dseg.tsv") == {t.label: t for t in ALL}

    subject = cohort.subjects[0]
    anat = phantom / f"sub-{subject}" / "anat"
    for space in ("", "_space-SIR"):
        for t in ALL:
            assert (anat / f"sub-{subject}{space}_label-{t.bids_label}_probseg.nii.gz").is_file()
        truth = load_truth(cohort.bids_dir, subject, space="SIR" if space else None)
        dseg, fractions = truth["dseg"], truth["fractions"]
        assert set(np.unique(dseg)) == {0, *tissues.labels(ALL)}
        for c, t in enumerate(ALL):  # a voxel's label is the tissue with the largest fraction
            sel = dseg == t.label
            np.testing.assert_array_equal(np.argmax(fractions[:, sel], axis=0), c)


def test_read_dseg_mapping_maps_other_pipelines_labels_by_name(tmp_path):
    # fMRIPrep / sMRIPrep (FSL FAST): 1 GM, 2 WM, 3 CSF; grey matter as one class is listed to be split
    fmriprep = tissues.read_dseg_mapping(_write_tsv(tmp_path / "f.tsv", [("index", "name"), (1, "GM"), (2, "WM"), (3, "CSF")]))
    assert dict(fmriprep.tissues) == {2: WM, 3: CSF} and fmriprep.grey_matter == (1,) and fmriprep.background == ()
    assert fmriprep.indices == {1, 2, 3}
    assert fmriprep.describe() == "1 GM (split), 2 WM, 3 CSF"
    # long names, the abbreviation column when the name is not a tissue, a background row, several values per tissue
    rows = [("index", "name", "abbreviation"), (0, "Background", "bg"), (10, "Left white matter", "WM"),
            (11, "right white matter", "WM"), (20, "Deep gray matter", "DGM"), (30, "Cortical grey matter", "CGM"),
            (40, "Cerebrospinal fluid", "CSF")]
    long = tissues.read_dseg_mapping(_write_tsv(tmp_path / "l.tsv", rows))
    assert dict(long.tissues) == {10: WM, 11: WM, 20: SGM, 30: CGM, 40: CSF} and long.background == (0,)
    # this study's convention reads the same either way
    own = _write_tsv(tmp_path / "o.tsv", [("index", "name"), (1, "WM"), (2, "sGM"), (3, "cGM"), (4, "CSF")])
    assert dict(tissues.read_dseg_mapping(own).tissues) == tissues.read_dseg_tsv(own)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("index", "name"), (1, "WM"), (5, "Left-Thalamus")], r"index 5: unknown tissue 'Left-Thalamus'.*grey matter as one"),
        ([("index", "name"), (1, "WM"), (1, "CSF")], "index 1 appears twice"),
        ([("index", "name"), ("one", "WM")], "not a non-negative integer"),
        ([("index", "name"), (-1, "WM")], "not a non-negative integer"),
        ([("label", "name"), (1, "WM")], "columns 'index' and 'name'"),
    ],
)
def test_read_dseg_mapping_refuses_what_it_cannot_place(tmp_path, rows, message):
    path = _write_tsv(tmp_path / "bad.tsv", rows)
    with pytest.raises(ValueError, match=message) as err:
        tissues.read_dseg_mapping(path)
    assert str(path) in str(err.value)


def test_aliases_are_spellings_of_one_tissue_only():
    for t, words in tissues.ALIASES.items():
        for w in words:
            assert tissues.by_any_name(w) is t
    with pytest.raises(ValueError):
        tissues.by_any_name("grey matter")  # not a tissue of the study: read_dseg_mapping splits it
