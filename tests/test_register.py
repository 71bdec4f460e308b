"""Registration: RAS/LPS geometry, transform files and ANTs' point convention, resampling against
the definition, determinism, and recovery of the digital cohort's simulated head motion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from nibabel.affines import apply_affine

from qt1lib.phantom import cohort_settings, draw_subject, load_motion, load_truth, make_cohort
from qt1lib.phantom.fields import Grid, RigidMotion
from qt1lib.register import RigidTransform, apply_transform, register_rigid, registration_error, to_ants


def _oblique_affine() -> np.ndarray:
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([2.0, 3.0, 2.5])
    affine[:3, 3] = [-40.0, 12.0, -7.0]
    return affine


def test_ants_image_has_the_nibabel_geometry_in_lps():
    import ants

    affine = _oblique_affine()
    img = to_ants(np.zeros((5, 6, 7)), affine)
    for index in [(0, 0, 0), (4, 0, 0), (1, 5, 2), (4, 5, 6)]:
        ras = affine[:3, :3] @ np.array(index, dtype=float) + affine[:3, 3]
        lps = ants.transform_index_to_physical_point(img, index)
        np.testing.assert_allclose(lps, ras * np.array([-1, -1, 1]), atol=1e-6)
    with pytest.raises(ValueError, match="shear"):
        sheared = np.eye(4)
        sheared[0, 1] = 0.5
        to_ants(np.zeros((3, 3, 3)), sheared)


def test_transform_file_round_trip_and_ants_point_convention(tmp_path):
    import ants

    motion = RigidMotion(np.array([3.0, -2.0, 4.0]), np.array([2.0, -1.5, 3.0]), np.array([1.0, -10.0, 5.0]))
    transform = RigidTransform(motion.session_to_subject)
    path = transform.to_ants_file(tmp_path / "t.mat")
    np.testing.assert_allclose(RigidTransform.from_ants_file(path).matrix, transform.matrix, atol=1e-9)
    points = np.array([[10.0, -20.0, 30.0], [-50.0, 40.0, 0.0], [0.0, 0.0, 0.0]])
    lps = points * np.array([-1, -1, 1])
    out = ants.apply_transforms_to_points(3, pd.DataFrame(lps, columns=["x", "y", "z"]), [str(path)])
    np.testing.assert_allclose(out[["x", "y", "z"]].to_numpy() * np.array([-1, -1, 1]), transform.apply_to_points(points), atol=1e-6)
    saved = transform.save(tmp_path / "t.json")
    np.testing.assert_array_equal(RigidTransform.load(saved).matrix, transform.matrix)


def test_apply_transform_resamples_as_defined():
    # moving image: a linear function of world position, which linear interpolation reproduces
    moving_grid = Grid(shape=(40, 44, 38), affine=np.diag([2.0, 2.0, 2.0, 1.0]) + np.c_[np.zeros((4, 3)), [-40, -44, -38, 0]])
    pts = moving_grid.points()
    coeff = np.array([0.01, -0.02, 0.015])
    moving = pts @ coeff + 3.0
    motion = RigidMotion(np.array([4.0, -3.0, 5.0]), np.array([2.0, 1.0, -1.5]), np.zeros(3))
    transform = RigidTransform(motion.session_to_subject)
    fixed_affine = _oblique_affine()
    fixed_affine[:3, 3] = [-15.0, -20.0, -15.0]
    out = apply_transform(transform, moving, moving_grid.affine, (12, 10, 12), fixed_affine)
    fixed_pts = Grid((12, 10, 12), fixed_affine).points()
    expected = transform.apply_to_points(fixed_pts) @ coeff + 3.0
    np.testing.assert_allclose(out, expected, atol=1e-4)
    # labels: genericLabel keeps the label set; far from the boundary the label is exact
    labels = (pts[..., 0] > 0).astype(np.float32) + 2 * (pts[..., 2] > 5)
    out = apply_transform(transform, labels, moving_grid.affine, (12, 10, 12), fixed_affine, "genericLabel")
    assert set(np.unique(out)) <= set(np.unique(labels))
    mapped = transform.apply_to_points(fixed_pts)
    exact = (mapped[..., 0] > 0) + 2 * (mapped[..., 2] > 5)
    far = (np.abs(mapped[..., 0]) > 3) & (np.abs(mapped[..., 2] - 5) > 3)
    np.testing.assert_array_equal(out[far], exact[far])
    with pytest.raises(ValueError, match="interpolation"):
        apply_transform(transform, labels, moving_grid.affine, (12, 10, 12), fixed_affine, "cubic")


def _tissue_image(model, where, voxel_size) -> np.ndarray:
    f = model.fractions(where, voxel_size)
    return 0.6 * f[0] + 1.0 * f[1] + 0.8 * f[2] + 0.3 * f[3]


def test_registration_is_deterministic_and_recovers_a_known_motion():
    settings = cohort_settings("quick", sir_voxel_size=(3.0, 3.0, 3.0))
    model = draw_subject(settings, 0)
    moving_grid = Grid.covering((np.array([-80.0, -115, -80]), np.array([80.0, 85, 90])), (2.0, 2.0, 2.0))
    fixed_grid = Grid.covering((np.array([-80.0, -115, -80]), np.array([80.0, 85, 90])), (3.0, 3.0, 3.0))
    moving = _tissue_image(model, moving_grid, (2.0, 2.0, 2.0))
    fixed_pts = apply_affine(model.motion.session_to_subject, fixed_grid.points())
    fixed = _tissue_image(model, fixed_pts, (3.0, 3.0, 3.0))
    first = register_rigid(fixed, fixed_grid.affine, moving, moving_grid.affine, seed=3)
    second = register_rigid(fixed, fixed_grid.affine, moving, moving_grid.affine, seed=3)
    np.testing.assert_array_equal(first.matrix, second.matrix)
    brain = fixed > 0.3
    error = registration_error(first, model.motion.session_to_subject, brain, fixed_grid.affine)
    unregistered = registration_error(RigidTransform(np.eye(4)), model.motion.session_to_subject, brain, fixed_grid.affine)
    assert unregistered > 2.0
    assert error < 0.25


@pytest.mark.slow
def test_registration_recovers_the_cohort_motion(tmp_path):
    cohort = make_cohort(tmp_path / "bids", "quick", progress=False)
    from qt1lib.bids import read_mpnrage, read_sir

    errors, unregistered = [], []
    for s in cohort.subjects:
        mp, sir = read_mpnrage(cohort.bids_dir, s), read_sir(cohort.bids_dir, s)
        truth = load_truth(cohort.bids_dir, s, space="SIR")
        true = load_motion(cohort.bids_dir, s).session_to_subject
        brain = truth["fractions"][:3].sum(axis=0) > 0.5
        estimated = register_rigid(sir.images[-1], sir.affine, np.abs(mp.gre[1]), mp.affine)
        errors.append(registration_error(estimated, true, brain, sir.affine))
        unregistered.append(registration_error(RigidTransform(np.eye(4)), true, brain, sir.affine))
        # labels into SIR space agree with the SIR-space truth better than without registration
        dseg = load_truth(cohort.bids_dir, s)["dseg"]
        moved = apply_transform(estimated, dseg, mp.affine, sir.images.shape[1:], sir.affine, "genericLabel")
        same = apply_transform(RigidTransform(np.eye(4)), dseg, mp.affine, sir.images.shape[1:], sir.affine, "genericLabel")
        both = truth["dseg"] > 0
        assert (moved[both] == truth["dseg"][both]).mean() > (same[both] == truth["dseg"][both]).mean()
    assert np.mean(errors) < 0.5, errors
    assert all(e < 0.25 * u for e, u in zip(errors, unregistered)), (errors, unregistered)
