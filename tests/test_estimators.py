"""The estimator contract and registry (qt1lib.estimate.base) and the nine built-in estimators."""

from __future__ import annotations

import ast
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import qt1lib.estimate.base as base
from qt1lib.estimate import (
    DEFAULT_ESTIMATORS,
    NOISE_FREE_SIGMA,
    PosteriorT1,
    T1Estimator,
    estimator_class,
    estimator_names,
    estimator_options,
    make_estimator,
    register_estimator,
)
from qt1lib.estimate.lut import DEFAULT_B1_GRID, lut_t1
from qt1lib.estimate.map import ExactMAPModel, SeedMAPModel
from qt1lib.estimate.seed_map_estimators import SEED_MAP_HISTOGRAM_STEP
from qt1lib.protocols import SEED_7T_MP2RAGE, SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals, uni

#: The estimators of the former ``qt1lib.pipeline.ESTIMATORS``: method, readouts, B1, desc, label.
EXPECTED = {
    "lut": ("lut", (1, 2), "none", "LUT", "LUT"),
    "lut_b1": ("lut", (1, 2), "map", "LUTB1", "LUT, B1-corrected"),
    "map_seed_mp2rage": ("seed", (1, 2), "none", "MAPseedMP2RAGE", "seed MAP MP2RAGE"),
    "map_seed_mp3rage": ("seed", (1, 2, 3), "none", "MAPseedMP3RAGE", "seed MAP MP3RAGE"),
    "map_exact_mp2rage": ("exact", (1, 2), "map", "MAPexactMP2RAGE", "exact MAP MP2RAGE, B1 map"),
    "map_exact_mp3rage": ("exact", (1, 2, 3), "marginal", "MAPexactMP3RAGE", "exact MAP MP3RAGE, B1 marginalised"),
    "map_exact_mp2rage_nob1": ("exact", (1, 2), "none", "MAPexactMP2RAGEnoB1", "exact MAP MP2RAGE, no B1"),
    "map_exact_mp3rage_nob1": ("exact", (1, 2, 3), "none", "MAPexactMP3RAGEnoB1", "exact MAP MP3RAGE, no B1"),
    "map_exact_mp3rage_b1": ("exact", (1, 2, 3), "map", "MAPexactMP3RAGEB1", "exact MAP MP3RAGE, B1 map"),
}
#: The estimators that read the seed's acquisition with its public code's two-train model
#: (tests/test_seed_code_model.py): they refuse other acquisitions, so the tests here leave them out.
SEED_CODE = ("lut_seed_code", "lut_b1_seed_code", "map_seed_code_mp2rage")
#: Few Monte-Carlo trials: the seed MAP's histogram builds in well under a second.
TRIALS = 3000
SIGMA = 0.003


@pytest.fixture(scope="module")
def voxels():
    """Noisy complex GRE data of every readout of the seed MP3RAGE and a B1 map, some voxels outside the B1 grid."""
    rng = np.random.default_rng(7)
    n = 30
    t1 = rng.uniform(0.3, 4.5, n)
    b1_true = rng.uniform(0.5, 1.6, n)
    scale = rng.uniform(0.6, 1.2, n) * np.exp(2j * np.pi * rng.random(n))
    g = scale * gre_signals(t1, SEED_7T_MP3RAGE, b1_true)
    g = g + SIGMA * (rng.standard_normal(g.shape) + 1j * rng.standard_normal(g.shape))
    b1_map = b1_true * (1 + 0.02 * rng.standard_normal(n))
    b1_map[:2] = (0.1, 2.6)  # clipped into the grid 0.3..2.0
    g[:, 3] = np.nan  # a non-finite voxel
    return g, b1_map


def _direct(name: str, gre: np.ndarray, b1_map: np.ndarray, sigma: float, **options) -> PosteriorT1:
    """What the former ``pipeline.estimate_t1`` computed, by direct calls of the estimation functions."""
    method, readouts, b1_mode, _, _ = EXPECTED[name]
    sigma = sigma if sigma > 0 else 1e-4
    b1 = None if b1_mode == "none" else np.clip(b1_map, *DEFAULT_B1_GRID[:2])
    acquisition = SEED_7T_MP3RAGE.with_changes(name="acquisition", source="")
    view = acquisition.view(readouts)
    if method == "lut":
        t1 = lut_t1(uni(gre[0], gre[1]), SEED_7T_MP3RAGE, b1)
        return PosteriorT1(t1, t1, np.full(t1.shape, np.nan), np.isfinite(t1))
    if method == "seed":
        s = np.stack([uni(gre[i - 1], gre[j - 1]) for i, j in view.pairs])
        model = SeedMAPModel(view, options.get("seed_map_sigma") or sigma, n_trials=TRIALS, seed=0, n_bins=100,
                             likelihood_threshold=0.5)
        return model.fit(s)
    model = ExactMAPModel(view, sigma, scale_prior=options.get("scale_prior", "jeffreys"))
    return model.fit(gre, b1=b1, b1_sd=options.get("b1_sd", 0.02) if b1_mode == "marginal" else 0.0)


def _options(name: str, **extra) -> dict:
    return {"seed_map_trials": TRIALS, **extra} if estimator_class(name).method == "seed" else dict(extra)


# ------------------------------------------------------------------------------ the registry
def test_registry_holds_todays_estimators_with_their_attributes():
    assert estimator_names() == tuple(EXPECTED) + SEED_CODE
    assert DEFAULT_ESTIMATORS == ("lut", "lut_b1", "map_seed_mp2rage", "map_seed_mp3rage", "map_exact_mp2rage",
                                  "map_exact_mp3rage")
    assert NOISE_FREE_SIGMA == 1e-4
    for name, (method, readouts, b1, desc, label) in EXPECTED.items():
        cls = estimator_class(name)
        assert (cls.name, cls.method, cls.readouts, cls.b1, cls.desc, cls.label) == (name, method, readouts, b1, desc, label)
        assert cls.posterior is (method != "lut")
        assert issubclass(cls, T1Estimator)


@pytest.mark.parametrize("name", list(EXPECTED))
@pytest.mark.parametrize("sigma", [SIGMA, 0.0])
def test_every_estimator_reproduces_the_direct_call(name, sigma, voxels):
    gre, b1_map = voxels
    estimator = make_estimator(name, SEED_7T_MP3RAGE, sigma, **_options(name))
    assert estimator.sigma == (sigma if sigma > 0 else NOISE_FREE_SIGMA)
    got = estimator.fit(gre, b1=b1_map)
    want = _direct(name, gre, b1_map, sigma)
    for field in ("map", "mean", "std", "valid"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    assert got.map.shape == gre.shape[1:]
    assert not got.valid[3] and np.isnan(got.map[3])  # the non-finite voxel
    if estimator.posterior:
        assert np.isfinite(got.std[got.valid]).all()
    else:
        np.testing.assert_array_equal(got.map, got.mean)
        assert np.isnan(got.std).all()


def test_options_change_the_numbers_as_the_direct_call(voxels):
    gre, b1_map = voxels
    for name, options in (
        ("map_exact_mp3rage", {"b1_sd": 0.1, "scale_prior": "flat"}),
        ("map_exact_mp2rage_nob1", {"scale_prior": "flat"}),
        ("map_seed_mp2rage", {"seed_map_sigma": 0.005}),
    ):
        got = make_estimator(name, SEED_7T_MP3RAGE, SIGMA, **_options(name, **options)).fit(gre, b1_map)
        want = _direct(name, gre, b1_map, SIGMA, **options)
        np.testing.assert_array_equal(got.map, want.map)
        np.testing.assert_array_equal(got.std, want.std)
        default = make_estimator(name, SEED_7T_MP3RAGE, SIGMA, **_options(name)).fit(gre, b1_map)
        assert not np.array_equal(got.map, default.map, equal_nan=True), name


def test_the_protocol_is_renamed_so_equal_acquisitions_share_dictionaries(voxels):
    gre, b1_map = voxels
    other = SEED_7T_MP3RAGE.with_changes(name="sub-02 sidecars", source="read from JSON")
    a = make_estimator("map_exact_mp2rage", SEED_7T_MP3RAGE, SIGMA)
    b = make_estimator("map_exact_mp2rage", other, SIGMA)
    assert a.acquisition == b.acquisition and a.acquisition.name == "acquisition" and a.acquisition.source == ""
    assert a.view.readouts == (1, 2) and a.acquisition.n_readouts == 3
    assert a.parameters() == b.parameters()
    np.testing.assert_array_equal(a.fit(gre, b1_map).map, b.fit(gre, b1_map).map)
    # an MP2RAGE view of the same acquisition is not the acquisition: every readout is modelled
    assert make_estimator("lut", SEED_7T_MP2RAGE, SIGMA).acquisition == a.acquisition


# ------------------------------------------------------------------------------ errors
def test_errors_name_what_is_wrong():
    g = np.ones((3, 4), dtype=complex)
    with pytest.raises(ValueError, match=r"unknown estimator 'magic'.*'lut'.*'map_exact_mp3rage_b1'"):
        make_estimator("magic", SEED_7T_MP3RAGE, SIGMA)
    with pytest.raises(ValueError, match="unknown estimator"):
        estimator_class("magic")
    with pytest.raises(ValueError, match=r"no option 'b1_sd'.*scale_prior"):
        make_estimator("map_exact_mp2rage", SEED_7T_MP3RAGE, SIGMA, b1_sd=0.02)
    with pytest.raises(ValueError, match=r"no option 'trials'"):
        make_estimator("map_seed_mp2rage", SEED_7T_MP3RAGE, SIGMA, trials=10)
    with pytest.raises(ValueError, match="no option 'scale_prior'.*none"):
        make_estimator("lut", SEED_7T_MP3RAGE, SIGMA, scale_prior="flat")
    with pytest.raises(ValueError, match="scale_prior"):
        make_estimator("map_exact_mp2rage", SEED_7T_MP3RAGE, SIGMA, scale_prior="uniform")
    with pytest.raises(ValueError, match="seed_map_trials"):
        make_estimator("map_seed_mp2rage", SEED_7T_MP3RAGE, SIGMA, seed_map_trials=0.5)
    with pytest.raises(ValueError, match="seed_likelihood_threshold"):
        make_estimator("map_seed_mp2rage", SEED_7T_MP3RAGE, SIGMA, seed_likelihood_threshold=2.0)
    with pytest.raises(ValueError, match="seed_map_sigma"):
        make_estimator("map_seed_mp2rage", SEED_7T_MP3RAGE, SIGMA, seed_map_sigma=-1.0)
    with pytest.raises(ValueError, match="b1_sd"):
        make_estimator("map_exact_mp3rage", SEED_7T_MP3RAGE, SIGMA, b1_sd=np.nan)
    with pytest.raises(ValueError, match="store"):
        make_estimator("map_seed_mp2rage", SEED_7T_MP3RAGE, SIGMA, store="a folder")
    for sigma in (-1.0, np.nan, np.inf, "x"):
        with pytest.raises(ValueError, match="sigma"):
            make_estimator("lut", SEED_7T_MP3RAGE, sigma)
    with pytest.raises(TypeError, match="protocol"):
        make_estimator("lut", "seed-7T-MP3RAGE", SIGMA)
    two = SEED_7T_MP2RAGE.with_changes(inversion_times=(1.01, 3.31), flip_angles=(4.0, 4.0), used_readouts=None)
    with pytest.raises(ValueError, match=r"map_seed_mp3rage.*readouts \(1, 2, 3\).*has 2"):
        make_estimator("map_seed_mp3rage", two, SIGMA)
    lut_b1 = make_estimator("lut_b1", SEED_7T_MP3RAGE, SIGMA)
    with pytest.raises(ValueError, match=r"'lut_b1' needs a B1\+ map"):
        lut_b1.fit(g)
    with pytest.raises(ValueError, match="b1 of shape"):
        lut_b1.fit(g, b1=np.ones(3))
    with pytest.raises(ValueError, match=r"gre must have shape \(3, \.\.\.\)"):
        make_estimator("lut", SEED_7T_MP3RAGE, SIGMA).fit(g[:2])
    with pytest.raises(ValueError, match="gre must have shape"):
        make_estimator("map_exact_mp2rage_nob1", two, SIGMA).fit(g)


# ------------------------------------------------------------------------------ parameters and modules
def test_parameters_are_json_ready_distinct_and_hold_the_changed_option():
    params = {n: make_estimator(n, SEED_7T_MP3RAGE, SIGMA).parameters() for n in EXPECTED}
    texts = {n: json.dumps(p, sort_keys=True) for n, p in params.items()}
    assert len(set(texts.values())) == len(texts)  # every estimator has its own parameters
    for name, p in params.items():
        method, readouts, b1, _, _ = EXPECTED[name]
        assert (p["estimator"], p["method"], p["readouts"], p["b1"]) == (name, method, list(readouts), b1)
        assert ("b1_grid" in p) == (b1 != "none")
        assert ("b1_sd" in p) == (b1 == "marginal")
        assert ("scale_prior" in p) == (method == "exact")
        assert ("seed_map_trials" in p) == (method == "seed")
        assert p["protocol"]["name"] == "acquisition"
    assert params["lut_b1"]["b1_grid"] == list(DEFAULT_B1_GRID)
    # the changed option is recorded
    assert make_estimator("map_seed_mp3rage", SEED_7T_MP3RAGE, SIGMA, seed_map_trials=1234).parameters()["seed_map_trials"] == 1234
    assert make_estimator("map_exact_mp3rage", SEED_7T_MP3RAGE, SIGMA, b1_sd=0.05).parameters()["b1_sd"] == 0.05
    assert make_estimator("map_exact_mp2rage", SEED_7T_MP3RAGE, SIGMA, scale_prior="flat").parameters()["scale_prior"] == "flat"
    # the noise level enters where it changes the output: not for the table
    assert make_estimator("lut", SEED_7T_MP3RAGE, 0.01).parameters() == params["lut"]
    assert make_estimator("map_exact_mp2rage", SEED_7T_MP3RAGE, 0.01).parameters()["sigma"] == 0.01
    assert make_estimator("map_exact_mp2rage", SEED_7T_MP3RAGE, 0.0).parameters()["sigma"] == NOISE_FREE_SIGMA
    # the seed MAP's histogram sigma: its own if given (then the data's does not matter), else the data's
    fixed = [make_estimator("map_seed_mp2rage", SEED_7T_MP3RAGE, s, seed_map_sigma=0.005).parameters() for s in (0.001, 0.01)]
    assert fixed[0] == fixed[1] and fixed[0]["seed_map_sigma"] == 0.005
    assert params["map_seed_mp2rage"]["seed_map_sigma"] == SIGMA
    # a store does not change the output
    store = _FakeStore()
    assert make_estimator("map_seed_mp2rage", SEED_7T_MP3RAGE, SIGMA, store=store).parameters() == params["map_seed_mp2rage"]


def test_modules_name_the_defining_and_the_estimation_modules():
    assert estimator_class("lut").modules == ("qt1lib.estimate.lut_estimators", "qt1lib.estimate.lut")
    assert estimator_class("map_seed_mp2rage").modules == ("qt1lib.estimate.seed_map_estimators", "qt1lib.estimate.map")
    assert estimator_class("map_exact_mp3rage").modules == ("qt1lib.estimate.exact_map_estimators", "qt1lib.estimate.map")
    assert make_estimator("lut", SEED_7T_MP3RAGE).modules == estimator_class("lut").modules


def _qt1lib_imports(module: str) -> set[str]:
    """Absolute names of the qt1lib modules that ``module``'s source imports (module level or not)."""
    path = Path(sys.modules[module].__file__)
    package = module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                out.add(f"{parent}.{node.module}" if node.module else parent)
            elif node.module:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("qt1lib")}


def test_estimator_modules_import_no_unrelated_estimator():
    """The content-addressed cache hashes the modules an estimator imports: keep them apart."""
    estimator_modules = {"qt1lib.estimate.lut_estimators", "qt1lib.estimate.seed_map_estimators",
                         "qt1lib.estimate.exact_map_estimators"}
    assert not _qt1lib_imports("qt1lib.estimate.base") & (estimator_modules | {"qt1lib.estimate.map"})
    assert "qt1lib.estimate.map" not in _qt1lib_imports("qt1lib.estimate.lut_estimators")
    for module in estimator_modules:
        assert not _qt1lib_imports(module) & (estimator_modules - {module}), module


def test_estimator_options_picks_what_each_estimator_accepts():
    settings = {"scale_prior": "flat", "b1_sd": 0.05, "seed_map_trials": 10, "random_seed": 3}
    assert estimator_options("lut", settings) == {}
    assert estimator_options("map_exact_mp2rage", settings) == {"scale_prior": "flat"}
    assert estimator_options("map_exact_mp3rage", settings) == {"scale_prior": "flat", "b1_sd": 0.05}
    assert estimator_options("map_seed_mp3rage", settings) == {"seed_map_trials": 10, "random_seed": 3}


# ------------------------------------------------------------------------------ a new estimator
@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry, restored after the test."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def test_a_new_estimator_is_one_class_and_one_registration(registry, voxels):
    gre, b1_map = voxels

    @register_estimator
    class B1Echo(T1Estimator):
        """Toy: reports the (clipped) B1 map times ``gain`` as T1, or |GRE_1| / |GRE_2| without B1."""

        name = "toy_b1_echo"
        method = "toy"
        readouts = (1, 2)
        b1 = "map"
        desc = "TOYecho"
        label = "toy echo"
        posterior = False
        defaults = {"gain": 1.0}

        def _parameters(self):
            return {"gain": self.options["gain"]}

        def _fit(self, gre, b1):
            t1 = self.options["gain"] * b1 + 0 * np.abs(gre[0])
            return PosteriorT1(t1, t1, np.full(t1.shape, np.nan), np.isfinite(t1))

    assert "toy_b1_echo" in estimator_names() and estimator_class("toy_b1_echo") is B1Echo
    toy = make_estimator("toy_b1_echo", SEED_7T_MP3RAGE, SIGMA, gain=2.0)
    post = toy.fit(gre, b1=b1_map)
    expected = 2.0 * np.clip(b1_map, 0.3, 2.0)
    np.testing.assert_array_equal(post.map[np.isfinite(post.map)], expected[np.isfinite(post.map)])
    assert post.map[0] == pytest.approx(0.6) and post.map[1] == pytest.approx(4.0)  # clipped into the B1 grid
    assert toy.parameters()["gain"] == 2.0 and toy.parameters()["estimator"] == "toy_b1_echo"
    assert toy.modules == (__name__,)
    with pytest.raises(ValueError, match="needs a B1"):
        toy.fit(gre)
    with pytest.raises(ValueError, match="no option 'gain2'"):
        make_estimator("toy_b1_echo", SEED_7T_MP3RAGE, SIGMA, gain2=1.0)

    # names and desc labels are unique; the attributes are checked
    def toy(**attrs):
        return type("Toy", (B1Echo,), {"__module__": "elsewhere", **attrs})

    with pytest.raises(ValueError, match="taken"):
        register_estimator(toy(desc="TOYother"))
    with pytest.raises(ValueError, match="desc 'LUT'"):
        register_estimator(toy(name="toy2", desc="LUT"))
    with pytest.raises(ValueError, match="readouts"):
        register_estimator(toy(name="toy3", desc="TOY3", readouts=(2, 3)))
    with pytest.raises(ValueError, match="b1"):
        register_estimator(toy(name="toy4", desc="TOY4", b1="measured"))
    with pytest.raises(ValueError, match="desc"):
        register_estimator(toy(name="toy5", desc="TOY-5"))
    with pytest.raises(TypeError, match="_fit"):
        register_estimator(type("Abstract", (T1Estimator,), {"name": "toy6", "method": "x", "readouts": (1, 2),
                                                            "b1": "none", "desc": "TOY6", "label": "toy"}))
    register_estimator(B1Echo)  # the same class again (a reload) is accepted


# ------------------------------------------------------------------------------ the seed MAP's store
class _FakeStore:
    """A content-addressed store in memory: ``get_or_compute`` keyed by step and parameters."""

    def __init__(self, values: dict | None = None):
        self.values = {} if values is None else values
        self.calls: list[dict] = []
        self.computed = 0

    def get_or_compute(self, step, parameters, compute, codec, *, inputs=(), modules=()):
        self.calls.append({"step": step, "parameters": parameters, "codec": codec, "inputs": inputs, "modules": modules})
        key = (step, json.dumps(parameters, sort_keys=True))
        if key not in self.values:
            self.computed += 1
            self.values[key] = compute()
        return self.values[key]


@pytest.fixture
def store_codec(monkeypatch):
    """``qt1lib.store.PICKLE``; a stand-in module while qt1lib.store is not importable."""
    try:
        from qt1lib.store import PICKLE
    except ImportError:
        fake = types.ModuleType("qt1lib.store")
        fake.PICKLE = PICKLE = object()
        monkeypatch.setitem(sys.modules, "qt1lib.store", fake)
    return PICKLE


def test_the_seed_map_builds_its_histogram_once_per_store(store_codec, voxels):
    gre, _ = voxels
    trials = 2500  # settings of this test only: nothing cached by another test
    store = _FakeStore()
    first = make_estimator("map_seed_mp3rage", SEED_7T_MP3RAGE, SIGMA, seed_map_trials=trials, random_seed=5, store=store)
    a = first.fit(gre)
    first.fit(gre)
    second = make_estimator("map_seed_mp3rage", SEED_7T_MP3RAGE, SIGMA, seed_map_trials=trials, random_seed=5, store=store)
    b = second.fit(gre)
    assert len(store.calls) == 1 and store.computed == 1  # per process: the store is asked once
    call = store.calls[0]
    assert call["step"] == SEED_MAP_HISTOGRAM_STEP == "seed_map_histogram"
    assert call["codec"] is store_codec
    assert call["modules"] == first.modules
    assert call["parameters"] == {
        "protocol": first.view.describe(),
        "sigma": SIGMA,
        "n_trials": trials,
        "n_bins": 100,
        "likelihood_threshold": 0.5,
        "seed": 5,
    }
    assert call["parameters"]["protocol"]["used_readouts"] == [1, 2, 3]
    json.dumps(call["parameters"])
    np.testing.assert_array_equal(a.map, b.map)
    # the same histogram without a store
    plain = make_estimator("map_seed_mp3rage", SEED_7T_MP3RAGE, SIGMA, seed_map_trials=trials, random_seed=5).fit(gre)
    np.testing.assert_array_equal(a.map, plain.map)
    np.testing.assert_array_equal(a.valid, plain.valid)

    # another process (another store object on the same contents) reads it instead of building it
    (stored,) = store.values.values()
    later = _FakeStore(store.values)
    again = make_estimator("map_seed_mp3rage", SEED_7T_MP3RAGE, SIGMA, seed_map_trials=trials, random_seed=5, store=later)
    assert again.model is stored
    assert len(later.calls) == 1 and later.computed == 0
    # other settings are another entry
    make_estimator("map_seed_mp3rage", SEED_7T_MP3RAGE, SIGMA, seed_map_trials=trials, random_seed=6, store=store).fit(gre)
    assert store.computed == 2


def test_a_store_must_return_a_seed_map_model(store_codec):
    class Broken(_FakeStore):
        def get_or_compute(self, step, parameters, compute, codec, *, inputs=(), modules=()):
            return "not a model"

    estimator = make_estimator("map_seed_mp2rage", SEED_7T_MP3RAGE, SIGMA, seed_map_trials=10, store=Broken())
    with pytest.raises(TypeError, match="SeedMAPModel"):
        estimator.model
