"""Tests of qt1lib.calibrate: ResNet-18, patches, folds, baselines, training, cross-validation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from synthetic_subjects import make_subject

from qt1lib import tissues
from qt1lib.calibrate import (
    BasicBlock,
    CalibrationConfig,
    Fold,
    ResNet18,
    SubjectData,
    TrainedModel,
    denormalised_output,
    extract_patches,
    fit_global_linear,
    fit_normalisation,
    fit_tissue_linear,
    make_folds,
    normalised_inputs,
    normalised_target,
    pad_volume,
    predict_centres,
    run_cross_validation,
    sample_centres,
    slab_split,
    sliding_window_inference,
    train_model,
)
from qt1lib.calibrate.train import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    MODEL_STEP,
    _draw_centres,
)
from qt1lib.store import Store

TISSUES = tissues.labels()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny networks run fastest on one thread (and do not fight other processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def subjects() -> dict[str, SubjectData]:
    return {f"sub-{i:02d}": make_subject(i) for i in range(1, 5)}


TINY = CalibrationConfig(
    patch_shape=(9, 9), width=8, stem="small", patches_per_epoch=128, validation_patches=64, batch_size=32,
    max_epochs=4, patience=2, validation_slab=2, inference_batch_size=512,
)


def rmse(estimate: np.ndarray, subject: SubjectData) -> float:
    keep = subject.scored(TISSUES)
    return float(np.sqrt(np.mean((estimate[keep] - subject.target[keep]) ** 2)))


# ---------------------------------------------------------------------------- ResNet-18
def independent_resnet18_count(in_channels: int, n_out: int, width: int, dims: int, stem_kernel: int) -> int:
    """Parameters of ResNet-18 counted from its table (He et al. 2016, Table 1), layer by layer."""
    k = 3**dims

    def conv(cin: int, cout: int, kernel_volume: int) -> int:
        return cin * cout * kernel_volume

    def bn(c: int) -> int:
        return 2 * c

    total = conv(in_channels, width, stem_kernel**dims) + bn(width)
    cin = width
    for stage in range(4):
        cout = width * 2**stage
        for block in range(2):
            total += conv(cin, cout, k) + bn(cout) + conv(cout, cout, k) + bn(cout)
            if cin != cout:
                total += conv(cin, cout, 1) + bn(cout)
            cin = cout
    return total + (cin + 1) * n_out


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet18_matches_torchvision_parameter_count():
    model = ResNet18(2, in_channels=3, n_outputs=1000, width=64, stem="strided")
    # torchvision.models.resnet18() has 11,689,512 parameters (torchvision model documentation).
    assert n_params(model) == 11_689_512
    assert n_params(model) == independent_resnet18_count(3, 1000, 64, dims=2, stem_kernel=7)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("stem,kernel", [("strided", 7), ("small", 3)])
def test_resnet18_parameter_count_any_dims_and_stem(dims, stem, kernel):
    model = ResNet18(dims, in_channels=2, n_outputs=5, width=8, stem=stem)
    assert n_params(model) == independent_resnet18_count(2, 5, 8, dims=dims, stem_kernel=kernel)


def test_resnet18_has_basicblocks_2_2_2_2():
    model = ResNet18(3, 1, 1, width=8)
    assert [sum(isinstance(m, BasicBlock) for m in stage) for stage in model.stages] == [2, 2, 2, 2]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    # stem + 8 blocks x 2 convs + 3 projection shortcuts (the first block of stages 2-4)
    assert len(convs) == 1 + 16 + 3
    assert not any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


@pytest.mark.parametrize(
    "dims,stem,size,n_out",
    [(2, "strided", 32, 1), (2, "small", 9, 81), (3, "strided", 16, 1), (3, "small", 5, 3)],
)
def test_resnet18_output_shape(dims, stem, size, n_out):
    model = ResNet18(dims, in_channels=2, n_outputs=n_out, width=4, stem=stem).eval()
    with torch.no_grad():
        y = model(torch.zeros((3, 2) + (size,) * dims))
    assert y.shape == (3, n_out)


def test_resnet18_rejects_bad_arguments():
    with pytest.raises(ValueError, match="spatial_dims"):
        ResNet18(4, 1, 1)
    with pytest.raises(ValueError, match="stem"):
        ResNet18(2, 1, 1, stem="wide")
    with pytest.raises(ValueError, match="width"):
        ResNet18(2, 1, 1, width=0)
    with pytest.raises(ValueError, match="shape"):
        ResNet18(2, 1, 1)(torch.zeros(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="input_skip must be"):
        ResNet18(2, 1, 1, input_skip=1)
    with pytest.raises(ValueError, match="one output per patch voxel"):
        ResNet18(2, 1, 5, width=4, input_skip=True)(torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("dims,size,n_out", [(2, 8, 1), (2, 6, 36), (3, 5, 1), (3, 4, 64)])
def test_input_skip_adds_a_linear_map_of_the_output_voxels_inputs(dims, size, n_out):
    """Skip output minus plain output = weights . input at the centre voxel (s // 2) or at every voxel."""
    torch.manual_seed(0)
    skip = ResNet18(dims, in_channels=2, n_outputs=n_out, width=4, stem="small", input_skip=True).eval()
    plain = ResNet18(dims, in_channels=2, n_outputs=n_out, width=4, stem="small").eval()
    plain.load_state_dict({k: v for k, v in skip.state_dict().items() if k != "input_skip"})
    assert n_params(skip) == n_params(plain) + 2
    x = torch.randn((3, 2) + (size,) * dims)
    with torch.no_grad():
        assert torch.equal(skip(x), plain(x))  # zero-initialised: the plain ResNet-18 at the start
        skip.input_skip.copy_(torch.tensor([0.7, -0.2]))
        diff = (skip(x) - plain(x)).numpy()
    xn = x.numpy()
    if n_out == 1:
        c = xn[(slice(None), slice(None)) + (size // 2,) * dims]
        expected = (0.7 * c[:, 0] - 0.2 * c[:, 1])[:, None]
    else:
        expected = (0.7 * xn[:, 0] - 0.2 * xn[:, 1]).reshape(3, -1)
    np.testing.assert_allclose(diff, expected, atol=1e-5)


# ---------------------------------------------------------------------------- patches
def test_sample_centres_inside_candidates_balanced_and_seeded():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(12, 10, 6))
    candidates = rng.random(labels.shape) < 0.5
    c = sample_centres(candidates, labels, TISSUES, 301, np.random.default_rng(7))
    assert c.shape == (301, 3)
    assert candidates[tuple(c.T)].all()
    counts = [np.sum(labels[tuple(c.T)] == t) for t in TISSUES]
    assert counts == [101, 100, 100]
    again = sample_centres(candidates, labels, TISSUES, 301, np.random.default_rng(7))
    other = sample_centres(candidates, labels, TISSUES, 301, np.random.default_rng(8))
    np.testing.assert_array_equal(c, again)
    assert not np.array_equal(c, other)


def test_sample_centres_without_replacement_when_possible_and_missing_tissue():
    labels = np.zeros((4, 4, 4), dtype=int)
    labels[0, :, :] = 1  # 16 voxels of tissue 1
    labels[1, :2, :2] = 2  # 4 voxels of tissue 2
    c = sample_centres(np.ones_like(labels, bool), labels, (1, 2), 20, np.random.default_rng(0))
    t1_rows = c[labels[tuple(c.T)] == 1]
    assert len({tuple(r) for r in t1_rows}) == 10  # 10 drawn from 16: no repeats
    assert set(map(tuple, c[labels[tuple(c.T)] == 2])) <= {(1, i, j) for i in range(2) for j in range(2)}
    with pytest.raises(ValueError, match=r"tissue label\(s\) \[3\]"):
        sample_centres(np.ones_like(labels, bool), labels, (1, 3), 4, np.random.default_rng(0))


def test_draw_centres_balances_tissues_over_the_subjects_that_have_them():
    """One subject without candidates, one without tissue 2: each tissue still gets n / 3 centres."""
    labels = np.zeros((6, 6, 6), dtype=int)
    labels[:2], labels[2:4], labels[4:] = 1, 2, 3
    no_tissue_2 = np.where(labels == 2, 0, labels)
    candidates = [np.ones_like(labels, bool), np.zeros_like(labels, bool), np.ones_like(labels, bool)]
    rows = _draw_centres(candidates, [labels, labels, no_tissue_2], 90, TISSUES, np.random.default_rng(0),
                         "training", True)
    assert len(rows) == 90 and 1 not in rows[:, 0]  # the subject without candidates gives none
    drawn = np.array([[labels, labels, no_tissue_2][s][x, y, z] for s, x, y, z in rows])
    assert [np.sum(drawn == t) for t in TISSUES] == [30, 30, 30]
    assert np.sum((rows[:, 0] == 0) & (drawn == 2)) == 30  # tissue 2 only from the subject that has it
    assert np.sum((rows[:, 0] == 0) & (drawn == 1)) == 15  # tissue 1 split over both holders
    with pytest.raises(ValueError, match=r"tissue label\(s\) \[2\] have no training voxel"):
        _draw_centres([candidates[2]], [no_tissue_2], 9, TISSUES, np.random.default_rng(0), "training", True)
    with pytest.warns(UserWarning, match=r"\[2\] have no validation voxel"):
        val = _draw_centres([candidates[2]], [no_tissue_2], 9, TISSUES, np.random.default_rng(0), "validation", False)
    assert len(val) == 9
    with pytest.raises(ValueError, match="no validation voxel"):
        _draw_centres([candidates[1]], [labels], 9, TISSUES, np.random.default_rng(0), "validation", False)


@pytest.mark.parametrize("window", [(5, 4, 1), (3, 3, 3), (1, 6, 2)])
def test_extract_patches_matches_direct_indexing(window):
    rng = np.random.default_rng(1)
    vol = rng.normal(size=(2, 7, 6, 5)).astype(np.float32)
    centres = np.argwhere(np.ones(vol.shape[1:], bool))[rng.choice(7 * 6 * 5, size=20, replace=False)]
    patches = extract_patches(pad_volume(vol, window), centres, window)
    assert patches.shape == (20, 2) + window
    for n, c in enumerate(centres):
        for o in np.ndindex(*window):
            p = np.array(c) + np.array(o) - np.array(window) // 2
            inside = np.all(p >= 0) and np.all(p < vol.shape[1:])
            expected = vol[(slice(None),) + tuple(p)] if inside else np.zeros(2)
            np.testing.assert_array_equal(patches[(n, slice(None)) + o], expected)


def test_slab_split_whole_slabs_and_fraction():
    v = slab_split((6, 5, 40), axis=2, slab=4, fraction=0.2, rng=np.random.default_rng(3))
    per_slice = v[0, 0, :]
    assert np.all(v == per_slice[None, None, :])  # constant across each slice
    assert per_slice.reshape(10, 4).std(axis=1).max() == 0  # whole slabs
    assert per_slice.reshape(10, 4)[:, 0].sum() == 2  # 20 % of 10 slabs
    assert not slab_split((6, 5, 40), 2, 4, 0.0, np.random.default_rng(3)).any()
    with pytest.raises(ValueError, match="fewer than two slabs"):
        slab_split((6, 5, 3), 2, 4, 0.2, np.random.default_rng(0))


def test_stratified_slab_split_gives_a_thin_tissue_a_validation_slab():
    """A tissue in 2 of 20 slabs falls in 1 of 2 validation slabs by chance with p ~ 0.19; stratified, always."""
    shape, slab = (4, 4, 40), 2
    thin = np.zeros(shape, bool)
    thin[..., 20:24] = True  # slabs 10 and 11
    wide = np.ones(shape, bool)
    single = np.zeros(shape, bool)
    single[..., 0] = True  # one slab only: it must keep its training slab, so it is not stratified
    plain_hits = 0
    for seed in range(60):
        v = slab_split(shape, 2, slab, 0.1, np.random.default_rng(seed), strata=[wide, thin, single])
        per_slice = v[0, 0]
        assert per_slice.reshape(20, 2)[:, 0].sum() == 2 and np.all(v == per_slice)
        assert per_slice[20:24].any() and not per_slice[20:24].all()
        plain_hits += slab_split(shape, 2, slab, 0.1, np.random.default_rng(seed))[0, 0, 20:24].any()
    assert plain_hits < 60  # the unstratified split does miss it
    with pytest.raises(ValueError, match=r"strata\[0\] has shape"):
        slab_split(shape, 2, slab, 0.1, np.random.default_rng(0), strata=[np.ones((4, 4, 4), bool)])


def centre_of(window):
    return tuple(w // 2 for w in window)


@pytest.mark.parametrize("window", [(5, 5, 1), (3, 4, 3), (9, 9, 9)])
def test_predict_centres_identity_and_constant_exact(window):
    rng = np.random.default_rng(2)
    vol = rng.normal(size=(2, 8, 7, 6)).astype(np.float32)
    mask = rng.random((8, 7, 6)) < 0.6
    c = centre_of(window)
    out = predict_centres(vol, lambda p: p[(slice(None), 0) + c], window, mask, batch_size=17)
    np.testing.assert_array_equal(out[mask], vol[0][mask])
    assert np.isnan(out[~mask]).all()
    const = predict_centres(vol, lambda p: np.full(len(p), 1.25), window, mask, batch_size=17)
    assert np.all(const[mask] == 1.25)


@pytest.mark.parametrize(
    "window,overlap", [((4, 4, 1), 0.5), ((3, 5, 2), 0.0), ((5, 5, 5), 0.75), ((12, 3, 3), 0.5)]
)
def test_sliding_window_identity_and_constant_exact(window, overlap):
    rng = np.random.default_rng(4)
    vol = rng.normal(size=(2, 10, 9, 7)).astype(np.float32)
    mask = rng.random((10, 9, 7)) < 0.7
    ident = sliding_window_inference(vol, lambda p: p[:, 0], window, mask, overlap=overlap, batch_size=5)
    np.testing.assert_array_equal(ident[mask], vol[0][mask])
    assert np.isnan(ident[~mask]).all()
    c = np.float32(-0.3)  # network outputs are float32: their sums in float64 are exact
    const = sliding_window_inference(vol, lambda p: np.full((len(p),) + window, c), window, mask, overlap, 5)
    assert np.all(const[mask] == c)


def test_sliding_window_averages_overlapping_windows():
    """Each window predicts its own origin; with stride 2 on a 1-D line every voxel averages known origins."""
    vol = np.zeros((1, 8, 1, 1), dtype=np.float32)
    window = (4, 1, 1)
    seen = []

    def predictor(p):
        # The windows of one batch arrive in order; identify them by call order.
        n0 = len(seen)
        seen.extend(range(n0, n0 + len(p)))
        return np.broadcast_to(np.arange(n0, n0 + len(p), dtype=float)[:, None, None, None], (len(p),) + window)

    out = sliding_window_inference(vol, predictor, window, np.ones((8, 1, 1), bool), overlap=0.5, batch_size=2)
    # windows start at 0, 2, 4 (stride 2): voxel 0-1 -> w0, 2-3 -> (w0+w1)/2, 4-5 -> (w1+w2)/2, 6-7 -> w2
    np.testing.assert_array_equal(out[:, 0, 0], [0, 0, 0.5, 0.5, 1.5, 1.5, 2, 2])


# ---------------------------------------------------------------------------- folds, data, baselines
def test_folds_leave_one_subject_out():
    ids = ["sub-03", "sub-01", "sub-04", "sub-02"]
    folds = make_folds(ids)
    assert len(folds) == 4
    assert sorted(f.test for f in folds) == sorted(ids)
    for f in folds:
        assert f.test not in f.train
        assert set(f.train) | {f.test} == set(ids)
    with pytest.raises(ValueError, match="also a training subject"):
        Fold(1, "a", ("a", "b"))
    with pytest.raises(ValueError, match="distinct"):
        make_folds(["a", "a", "b"])
    with pytest.raises(ValueError, match="at least two"):
        make_folds(["a"])


def test_subject_data_validation():
    s = make_subject(0, shape=(6, 6, 2))
    with pytest.raises(ValueError, match="'t1'"):
        SubjectData({"b1": s.target}, s.target, s.mask, s.labels)
    with pytest.raises(ValueError, match="shape"):
        SubjectData({"t1": s.target[:-1]}, s.target, s.mask, s.labels)
    with pytest.raises(ValueError, match="non-negative"):
        SubjectData(s.inputs, s.target, s.mask, -s.labels - 1)
    with pytest.raises(ValueError, match="channels"):
        CalibrationConfig(channels=("b1",))
    with pytest.raises(ValueError, match="target"):
        CalibrationConfig(target="mean")
    with pytest.raises(ValueError, match="unknown"):
        CalibrationConfig.from_dict({"epochs": 3})


@pytest.mark.parametrize("residual", [False, True])
def test_normalisation_standardises_training_target_and_round_trips(subjects, residual):
    subs = list(subjects.values())[:3]
    norm = fit_normalisation(subs, ("t1",), TISSUES, residual)
    y = np.concatenate([normalised_target(s, norm, TISSUES)[s.scored(TISSUES)] for s in subs])
    assert abs(y.mean()) < 1e-5 and abs(y.std() - 1) < 1e-5
    x = np.concatenate([normalised_inputs(s, norm)[0][s.mask] for s in subs])
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-5
    s = subs[0]
    back = denormalised_output(s, norm, normalised_target(s, norm, TISSUES))
    keep = s.scored(TISSUES)
    np.testing.assert_allclose(back[keep], s.target[keep], rtol=1e-5)
    assert normalised_inputs(s, norm)[0][~s.mask].max() == 0


def test_linear_baselines_recover_known_lines(subjects):
    subs = list(subjects.values())
    lines = {1: (0.2, 1.3), 2: (-0.1, 1.1), 3: (0.4, 0.9)}
    exact = []
    for s in subs:
        target = np.full(s.shape, np.nan)
        for t, (a, b) in lines.items():
            target[s.labels == t] = a + b * s.inputs["t1"][s.labels == t]
        exact.append(SubjectData(s.inputs, target, s.mask, s.labels))
    tissue = fit_tissue_linear(exact, TISSUES)
    for t, (a, b) in lines.items():
        np.testing.assert_allclose(tissue.coefficients[t], (a, b), atol=1e-10)
    glob = fit_global_linear(exact, TISSUES)
    x = np.concatenate([s.inputs["t1"][s.scored(TISSUES)] for s in exact])
    y = np.concatenate([s.target[s.scored(TISSUES)] for s in exact])
    slope, intercept = np.polyfit(x, y, 1)
    np.testing.assert_allclose(glob.coefficients[None], (intercept, slope), rtol=1e-9)
    s = exact[0]
    np.testing.assert_allclose(tissue.apply(s.inputs["t1"], s.labels)[s.scored(TISSUES)], s.target[s.scored(TISSUES)])


# ---------------------------------------------------------------------------- training
def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_network_beats_global_linear_on_synthetic_calibration(subjects):
    """Target = 0.5 T1^2 + 0.4 + tissue offset: one line cannot fit it; the network, seeing context, can."""
    train = {k: subjects[k] for k in ("sub-01", "sub-02", "sub-03")}
    test = subjects["sub-04"]
    cfg = replace(TINY, patches_per_epoch=512, validation_patches=256, max_epochs=10, patience=4, learning_rate=3e-3)
    model = train_model(train, cfg, seed=0, progress=False)
    net = rmse(model.predict(test), test)
    glob = rmse(fit_global_linear(train.values(), TISSUES).apply(test.inputs["t1"]), test)
    none = rmse(test.inputs["t1"], test)
    assert net < 0.8 * glob < none


def test_same_seed_same_weights_other_seed_other_weights(subjects):
    train = {k: subjects[k] for k in ("sub-01", "sub-02")}
    a = train_model(train, TINY, seed=3, progress=False)
    b = train_model(train, TINY, seed=3, progress=False)
    c = train_model(train, TINY, seed=4, progress=False)
    assert state_equal(a.model, b.model)
    assert a.history[["train_loss", "val_loss"]].equals(b.history[["train_loss", "val_loss"]])
    assert not state_equal(a.model, c.model)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_uninterrupted_weights(subjects, tmp_path):
    train = {k: subjects[k] for k in ("sub-01", "sub-02")}
    cfg = replace(TINY, patience=10)
    full = train_model(train, cfg, seed=5, progress=False)  # no store: no files
    store = Store(tmp_path / "store")

    def stop_at_2(epoch, record):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_model(train, cfg, 5, store, on_epoch=stop_at_2, progress=False)
    assert [p.name for p in (tmp_path / "store").rglob("*.pt")] == [CHECKPOINT_FILE]  # in scratch; no model
    epochs = []
    resumed = train_model(train, cfg, 5, store, progress=False, on_epoch=lambda e, r: epochs.append(e))
    assert epochs == [3, 4]
    assert state_equal(full.model, resumed.model)
    assert resumed.best_epoch == full.best_epoch
    assert full.history["val_loss"].equals(resumed.history["val_loss"])
    assert [p.name for p in (tmp_path / "store").rglob("*.pt")] == [MODEL_FILE]  # the checkpoint is spent


def test_saved_model_round_trip_and_cache(subjects, tmp_path):
    train = {k: subjects[k] for k in ("sub-01", "sub-02")}
    cfg = replace(TINY, channels=("t1", "b1"), target="patch")
    with_b1 = {k: SubjectData({"t1": s.inputs["t1"], "b1": np.ones(s.shape)}, s.target, s.mask, s.labels)
               for k, s in train.items()}
    store = Store(tmp_path)
    model = train_model(with_b1, cfg, seed=1, store=store, progress=False)
    path = store.entry(MODEL_STEP, model.fingerprint) / MODEL_FILE
    saved = torch.load(path, weights_only=True)
    assert saved["config"] == cfg.to_dict() and saved["in_channels"] == 2 and saved["seed"] == 1
    assert saved["normalisation"]["channels"] == ["t1", "b1"] and saved["qt1lib_version"]
    loaded = TrainedModel.load(path)
    assert state_equal(model.model, loaded.model) and loaded.config == cfg
    test = with_b1["sub-01"]
    np.testing.assert_array_equal(model.predict(test), loaded.predict(test))
    calls = []
    cached = train_model(with_b1, cfg, seed=1, store=store, progress=False, on_epoch=lambda e, r: calls.append(e))
    assert calls == [] and state_equal(cached.model, model.model)
    other = train_model(with_b1, replace(cfg, max_epochs=1), seed=1, store=store, progress=False)
    assert other.fingerprint != model.fingerprint and path.exists()  # another entry beside it
    assert [e.outcome for e in store.events] == ["miss", "hit", "miss"]
    with pytest.raises(TypeError, match="replaces out_dir"):
        train_model(with_b1, cfg, 1, tmp_path, progress=False)


@pytest.mark.parametrize(
    "optimizer,loss,patch_shape", [("adam", "huber", (5, 5, 5)), ("adamw", "mse", (7, 7))]
)
def test_training_options_and_3d_patches_predict_inside_mask(subjects, optimizer, loss, patch_shape):
    train = {k: subjects[k] for k in ("sub-01", "sub-02")}
    cfg = replace(TINY, optimizer=optimizer, loss=loss, patch_shape=patch_shape, max_epochs=2, slice_axis=0)
    model = train_model(train, cfg, seed=0, progress=False)
    assert np.isfinite(model.history[["train_loss", "val_loss"]].to_numpy()).all()
    test = subjects["sub-03"]
    pred = model.predict(test)
    assert np.isfinite(pred[test.mask]).all() and np.isnan(pred[~test.mask]).all()


def check_cross_validation(result, subjects):
    methods = ["none", "global_linear", "tissue_linear", "resnet"]
    assert list(result.voxels["method"].cat.categories) == methods
    for fold in result.folds:
        assert fold.test not in fold.train
        sub = result.voxels[result.voxels["fold"] == fold.index]
        assert set(sub["subject"]) == {fold.test}
        counts = sub.groupby("method", observed=True).size()
        assert counts.nunique() == 1 and counts.iloc[0] == subjects[fold.test].scored(TISSUES).sum()
    assert set(result.metrics["tissue"]) == {"WM", "subcortical GM", "cortical GM"}
    assert len(result.metrics) == 4 * 4 * 3


def test_cross_validation_plumbing_callback_and_rerun(subjects, tmp_path):
    cfg = replace(TINY, max_epochs=1)
    written = {}
    store = Store(tmp_path)
    result = run_cross_validation(subjects, cfg, seed=0, store=store, progress=False,
                                  write_map=lambda s, m, a: written.setdefault((s, m), a))
    check_cross_validation(result, subjects)
    assert len(written) == 16 and np.array_equal(written[("sub-02", "resnet")], result.maps["sub-02"]["resnet"],
                                                 equal_nan=True)
    assert len(result.model_paths) == 4 and all(p.exists() for p in result.model_paths.values())
    again = run_cross_validation(subjects, cfg, seed=0, store=store, progress=False, keep_maps=False)
    assert again.voxels.equals(result.voxels) and again.maps == {}
    assert [e.outcome for e in store.events] == ["miss"] * 4 + ["hit"] * 4


@pytest.mark.slow
def test_cross_validation_end_to_end_network_beats_baselines_without_labels(subjects, tmp_path):
    cfg = replace(TINY, patches_per_epoch=1024, validation_patches=512, batch_size=64, max_epochs=12, patience=4)
    result = run_cross_validation(subjects, cfg, seed=0, store=Store(tmp_path), progress=False)
    check_cross_validation(result, subjects)
    mean = result.metrics.groupby("method", observed=True)["rmse"].mean()
    assert mean["resnet"] < 0.8 * mean["global_linear"] < mean["none"]
    assert mean["tissue_linear"] < mean["global_linear"]
