"""The content-addressed store: keys from parameters, input content and code; atomic commits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from qt1lib.store import ARRAYS, IMAGES, JSON, PICKLE, Images, Store, code_digest, file_digest, module_closure

REPO = Path(__file__).resolve().parent.parent


def test_hit_after_miss_and_key_parts(tmp_path):
    store = Store(tmp_path / "store")
    data = tmp_path / "input.txt"
    data.write_text("one")
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    args = ("step_a", {"x": 1}, compute, JSON)
    assert store.get_or_compute(*args, inputs=[data], modules=["qt1lib.estimate.lut"]) == {"value": 1}
    assert store.get_or_compute(*args, inputs=[data], modules=["qt1lib.estimate.lut"]) == {"value": 1}
    assert [e.outcome for e in store.events] == ["miss", "hit"]
    # other parameters, other input content, other modules: other keys
    k0 = store.key("step_a", {"x": 1}, [data], ["qt1lib.estimate.lut"])
    assert store.key("step_a", {"x": 2}, [data], ["qt1lib.estimate.lut"]) != k0
    assert store.key("step_b", {"x": 1}, [data], ["qt1lib.estimate.lut"]) != k0
    assert store.key("step_a", {"x": 1}, [data], ["qt1lib.estimate.map"]) != k0
    data.write_text("two")
    assert store.key("step_a", {"x": 1}, [data], ["qt1lib.estimate.lut"]) != k0
    data.write_text("one")  # the same content again: the same key (content, not time, is hashed)
    os.utime(data, (1, 1))
    assert store.key("step_a", {"x": 1}, [data], ["qt1lib.estimate.lut"]) == k0


def test_codecs_round_trip(tmp_path):
    store = Store(tmp_path)
    rng = np.random.default_rng(0)
    arrays = {"a": rng.normal(size=(3, 4)), "b": np.arange(5)}
    images = Images({"t1": rng.normal(size=(4, 5, 6)).astype(np.float32), "mask": rng.random((4, 5, 6)) > 0.5},
                    np.diag([2.0, 2.0, 2.0, 1.0]), {"Units": "s"})
    for step, value, codec in (("j", {"a": [1, 2]}, JSON), ("p", {"t": (1, 2)}, PICKLE), ("a", arrays, ARRAYS),
                               ("i", images, IMAGES)):
        store.get_or_compute(step, {}, lambda v=value: v, codec)
        back = Store(tmp_path).get_or_compute(step, {}, lambda: pytest.fail("recomputed"), codec)
        if codec is ARRAYS:
            assert all(np.array_equal(back[k], arrays[k]) for k in arrays)
        elif codec is IMAGES:
            assert back.arrays["mask"].dtype == bool and np.array_equal(back["mask"], images["mask"])
            assert np.array_equal(back["t1"], images["t1"]) and np.allclose(back.affine, images.affine)
            assert back.metadata == {"Units": "s"}
        else:
            assert back == value


def test_damaged_entry_is_recomputed_with_a_warning(tmp_path):
    store = Store(tmp_path)
    store.get_or_compute("s", {}, lambda: {"a": np.ones(1000)}, ARRAYS)
    key = store.key("s", {})
    (store.entry("s", key) / "arrays.npz").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="damaged"):
        value = store.get_or_compute("s", {}, lambda: {"a": np.zeros(3)}, ARRAYS)
    assert np.array_equal(value["a"], np.zeros(3))
    assert [e.outcome for e in store.events][-2:] == ["damaged", "miss"]
    assert np.array_equal(Store(tmp_path).get_or_compute("s", {}, lambda: pytest.fail("miss"), ARRAYS)["a"], np.zeros(3))
    # damage that keeps the size (a flipped byte) is found too: the manifest holds each file's SHA-256
    path = store.entry("s", key) / "arrays.npz"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="SHA-256"):
        store.get_or_compute("s", {}, lambda: {"a": np.zeros(3)}, ARRAYS)


def test_bad_arguments_are_named(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="step"):
        store.key("bad step/", {})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        store.key("s", {"f": object()})
    with pytest.raises(ValueError, match="qt1lib.nothing"):
        store.key("s", {}, modules=["qt1lib.nothing"])
    with pytest.raises(FileNotFoundError, match="missing.nii"):
        store.key("s", {}, inputs=[tmp_path / "missing.nii"])


def test_module_closure_follows_imports_not_siblings():
    lut = module_closure(["qt1lib.estimate.lut"])
    assert "qt1lib.sequences.mpnrage" in lut and "qt1lib.protocols" in lut
    assert "qt1lib.estimate" in lut  # the parent package's own source
    assert "qt1lib.estimate.map" not in lut  # a sibling the parent imports does not change the LUT
    assert set(code_digest(["qt1lib.estimate.lut"])) == set(lut)


def test_file_digest_is_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"x" * 10)
    assert file_digest(a) == file_digest(b)
    b.write_bytes(b"y" * 10)
    assert file_digest(a) != file_digest(b)


_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from qt1lib import store as st

    class SlowImages(st._ImagesCodec):
        # writes every image slowly, so that SIGKILL lands between (and inside) files
        def write(self, value, folder):
            for k in value.arrays:
                super().write(st.Images({k: value.arrays[k]}, value.affine), folder)
                time.sleep(0.05)
            super().write(value, folder)

    s = st.Store(sys.argv[1], log=True)
    value = st.Images({f"m{i}": np.full((40, 40, 40), i, np.float32) for i in range(8)}, np.eye(4))
    print("start", flush=True)
    s.get_or_compute("slow", {"n": 8}, lambda: value, SlowImages())
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.45, 0.6])
def test_sigkill_during_a_write_never_leaves_a_hit(tmp_path, delay):
    root = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout.readline().strip() == "start"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store(root)
    key = store.key("slow", {"n": 8})
    ok, value = store.get(key=key, step="slow", codec=IMAGES)
    if ok:  # the write finished before the kill: the entry must then be complete
        assert sorted(value.arrays) == [f"m{i}" for i in range(8)]
        assert all(np.all(value.arrays[f"m{i}"] == i) for i in range(8))
        manifest = json.loads((store.entry("slow", key) / "manifest.json").read_text())
        assert manifest["key"] == key
    else:  # nothing committed; a later run computes and commits it, sweeping the dead write
        assert not store.entry("slow", key).exists()
        store.get_or_compute("slow", {"n": 8}, lambda: Images({"m0": np.zeros((2, 2, 2), np.float32)}, np.eye(4)), IMAGES)
        assert not any((root / ".tmp").iterdir())


def test_untouched_copy_of_the_package_gives_the_same_key_and_an_edit_changes_it(tmp_path):
    """The key hashes the package's source: a copy gives the same keys; an edit of one module changes
    the keys of the steps that import it and of no other."""
    copy = tmp_path / "pkg"
    shutil.copytree(REPO / "qt1lib", copy / "qt1lib", ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import sys, json; from qt1lib.store import Store; s = Store(sys.argv[1]);"
        "print(json.dumps([s.key('t', {}, modules=['qt1lib.estimate.lut']), s.key('t', {}, modules=['qt1lib.estimate.map'])]))"
    )

    def keys(path):
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s")], env={**os.environ, "PYTHONPATH": str(path)},
                             cwd=tmp_path, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    original = keys(REPO)
    assert keys(copy) == original
    target = copy / "qt1lib" / "estimate" / "map.py"
    target.write_text(target.read_text() + "\n# a comment changes nothing\n")
    assert keys(copy) == original
    target.write_text(target.read_text() + "\n_EDITED = 1\n")
    lut_key, map_key = keys(copy)
    assert lut_key == original[0] and map_key != original[1]


_RACER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from qt1lib.store import ARRAYS, Store

    start = float(sys.argv[2])
    time.sleep(max(0.0, start - time.time()))  # every racer starts at the same moment

    def compute():
        time.sleep(0.3)  # all racers are computing when the first commits
        return {"a": np.arange(1000, dtype=np.float64)}

    s = Store(sys.argv[1])
    value = s.get_or_compute("shared", {"protocol": "seed"}, compute, ARRAYS)
    print(json.dumps([float(value["a"].sum()), [e.outcome for e in s.events]]))
    """
)


def test_concurrent_identical_commits_leave_one_sound_entry(tmp_path):
    """Worker processes that compute the same entry at once (a protocol's histogram shared by participants)
    all succeed, and one entry remains, sound, with no temporary folder left behind."""
    root = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = str(time.time() + 3.0)
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(root), start], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(4)]
    outputs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [o[0] for o in outputs] == [float(np.arange(1000).sum())] * 4
    assert sum(o[1] == ["miss"] for o in outputs) >= 2  # they really raced (else the test proves nothing)
    store = Store(root)
    key = store.key("shared", {"protocol": "seed"})
    assert [p.name for p in (root / "shared").iterdir()] == [key]
    ok, value = store.get("shared", key, ARRAYS)
    assert ok and np.array_equal(value["a"], np.arange(1000))
    assert not any((root / ".tmp").iterdir())


def test_a_commit_that_loses_the_race_keeps_the_winners_entry(tmp_path, monkeypatch):
    winner, loser = Store(tmp_path), Store(tmp_path)
    winner.put("s", "k", {"v": 1}, JSON)
    manifest = (winner.entry("s", "k") / "manifest.json").read_bytes()
    # the loser looked before the winner's rename (no entry), then renames onto the committed entry
    monkeypatch.setattr(Path, "exists", lambda self: False if self == loser.entry("s", "k") else os.path.exists(self))
    assert loser.put("s", "k", {"v": 1}, JSON) == {"v": 1}
    assert (winner.entry("s", "k") / "manifest.json").read_bytes() == manifest
    assert not any((tmp_path / ".tmp").iterdir())


def test_sweep_removes_dead_writes_of_this_host_only(tmp_path):
    from qt1lib.store import _HOST

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp = tmp_path / ".tmp"
    names = {"other": f"node-17@{dead.pid}@abc", "mine": f"{_HOST}@{dead.pid}@def", "legacy": f"{dead.pid}-0123",
             "alive": f"{_HOST}@{os.getpid()}@ghi"}
    for name in names.values():
        (tmp / name).mkdir(parents=True)
    Store(tmp_path).put("s", "k", {"v": 1}, JSON)  # a write sweeps the temporary folders
    assert sorted(p.name for p in tmp.iterdir()) == sorted([names["other"], names["alive"]])
