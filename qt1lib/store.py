"""The one content-addressed derivative store: every cached result of the study goes through it.

A derivative is stored under a **key**, the SHA-256 of

* the name of the step that computed it and the step's **parameters** (JSON-ready),
* the **content** of every input file the step read (:func:`file_digest`: images, every sidecar
  that applies to them by BIDS inheritance, a user's mask or segmentation),
* the **source** of the qt1lib modules the step depends on and of every qt1lib module they import,
  transitively (:func:`code_digest`; the source is compared as its syntax tree, so comments and
  formatting do not count, docstrings and code do).

Editing an estimator's module therefore recomputes exactly the derivatives of the steps that
import it, editing a dataset-level sidecar recomputes what read it, and an untouched rerun
reuses everything. There is no version number to forget to bump.

An entry is a folder ``<root>/<step>/<key>/`` holding the value's files (written by a
:class:`Codec`) and ``manifest.json``. It is written in a private temporary folder and committed
by one atomic ``rename``: a process killed at any point of a write leaves either nothing or a
temporary folder that no lookup reads (it is removed by the next write of any entry), never a
half-written entry. Several processes, on one machine or on the nodes of a cluster that share
the store's file system (dask workers), may compute and commit the same entry at once: the first
rename wins, the others find the committed entry and drop their copy (entries are immutable and
their content is fixed by their key). A temporary folder is named after its host and process, so
that a process removes only the leftovers of dead processes of its own host (and anyone's after
six hours), never the folder another node is writing. The manifest records the size and SHA-256 of every file; a committed entry
whose files differ from it or no longer read (a damaged file) is removed with a warning and
recomputed.

:meth:`Store.get_or_compute` is the only way steps cache. Resumable work (training checkpoints)
keeps its state in :meth:`Store.scratch`, a folder under the same key.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import shutil
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from .io import _json_default

__all__ = [
    "Codec",
    "JSON",
    "PICKLE",
    "ARRAYS",
    "IMAGES",
    "Images",
    "Store",
    "StoreEvent",
    "file_digest",
    "code_digest",
    "module_closure",
]

T = TypeVar("T")
PACKAGE = "qt1lib"
MANIFEST = "manifest.json"
_TMP = ".tmp"
_SCRATCH = ".scratch"
#: This machine's name, in the names of the temporary folders its processes write.
_HOST = socket.gethostname().replace("@", "_") or "localhost"


# ============================================================================ digests
_FILE_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (hex).

    Memoised within the process on (path, size, modification time, inode), so that the many
    steps of a subject that read the same raw images hash them once.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _FILE_DIGESTS:
        _FILE_DIGESTS[memo] = _sha256(path)
    return _FILE_DIGESTS[memo]


def _package_dir() -> Path:
    return Path(__file__).resolve().parent


def _module_file(name: str) -> Path | None:
    """Source file of module ``name`` of the package (found on disk, nothing imported), or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE or not all(p.isidentifier() for p in parts):
        return None
    base = _package_dir().joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(name: str, path: Path) -> set[str]:
    """qt1lib modules that module ``name`` (source ``path``) imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # ``from . import x`` / ``from .pkg import sub`` may import submodules
            found.update(f"{module}.{a.name}" for a in node.names)
    return {m for m in found if _module_file(m) is not None}


@lru_cache(maxsize=None)
def _closure(names: tuple[str, ...], stamp: tuple) -> tuple[str, ...]:
    """Modules named, what they import (followed), and their parent packages (their own source only:
    importing ``a.b.c`` runs ``a/b/__init__.py``, whose imports of sibling modules do not change ``c``)."""
    included: set[str] = set()
    followed: set[str] = set()
    todo = [(name, True) for name in names]
    while todo:
        name, follow = todo.pop()
        path = _module_file(name)
        if path is None:
            raise ValueError(f"modules: {name!r} is not a module of the {PACKAGE} package")
        included.add(name)
        if follow and name not in followed:
            followed.add(name)
            todo.extend((m, True) for m in _imported_modules(name, path) if m not in followed)
            todo.extend((".".join(name.split(".")[:i]), False) for i in range(1, name.count(".") + 1))
    return tuple(sorted(included))


def _source_stamp() -> tuple:
    """Modification stamp of the package's source, so that memoised closures follow edits."""
    return tuple((str(p), p.stat().st_mtime_ns) for p in sorted(_package_dir().rglob("*.py")))


def module_closure(modules: Iterable[str]) -> tuple[str, ...]:
    """The qt1lib modules ``modules`` depend on: themselves and what they import, transitively, with
    the source of their parent packages' ``__init__`` (not what those import).

    Parameters
    ----------
    modules : iterable of str
        Dotted module names of the package (e.g. ``"qt1lib.estimate.map"``).

    Raises
    ------
    ValueError
        If a name is not a module of the package.
    """
    return _closure(tuple(sorted(set(modules))), _source_stamp())


@lru_cache(maxsize=None)
def _source_digest(path: str, mtime_ns: int) -> str:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def code_digest(modules: Iterable[str]) -> dict[str, str]:
    """SHA-256 of the syntax tree of every module of :func:`module_closure` (comments and layout ignored)."""
    out = {}
    for name in module_closure(modules):
        path = _module_file(name)
        assert path is not None
        out[name] = _source_digest(str(path), path.stat().st_mtime_ns)
    return out


# ============================================================================ codecs
class Codec(Protocol[T]):
    """How a value is written to and read from an entry's folder."""

    name: str

    def write(self, value: T, folder: Path) -> None:
        """Write ``value`` into the (new, empty) ``folder``."""

    def read(self, folder: Path) -> T:
        """Read the value back; any exception marks the entry as damaged."""


@dataclass(frozen=True)
class _JSONCodec:
    name: str = "json"

    def write(self, value: Any, folder: Path) -> None:
        (folder / "value.json").write_text(json.dumps(value, indent=1, sort_keys=True, default=_json_default))

    def read(self, folder: Path) -> Any:
        return json.loads((folder / "value.json").read_text())


@dataclass(frozen=True)
class _PickleCodec:
    name: str = "pickle"

    def write(self, value: Any, folder: Path) -> None:
        (folder / "value.pkl").write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def read(self, folder: Path) -> Any:
        return pickle.loads((folder / "value.pkl").read_bytes())


@dataclass(frozen=True)
class _ArraysCodec:
    """A mapping of names to arrays, in one ``.npz`` (uncompressed: fast to read back)."""

    name: str = "arrays"

    def write(self, value: Mapping[str, np.ndarray], folder: Path) -> None:
        with open(folder / "arrays.npz", "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in value.items()})

    def read(self, folder: Path) -> dict[str, np.ndarray]:
        with np.load(folder / "arrays.npz", allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


@dataclass(frozen=True)
class Images:
    """Images on one grid: named arrays (3-D or 4-D) and their voxel-to-world matrix (RAS, mm)."""

    arrays: dict[str, np.ndarray]
    affine: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


@dataclass(frozen=True)
class _ImagesCodec:
    """:class:`Images` as one NIfTI-1 file per array (gzip level 1) and the metadata as JSON."""

    name: str = "images"

    def write(self, value: Images, folder: Path) -> None:
        import nibabel as nib

        for key, data in value.arrays.items():
            data = np.asarray(data)
            stored = data.astype(np.uint8) if data.dtype == bool else data
            img = nib.Nifti1Image(stored, np.asarray(value.affine, dtype=float))
            img.header.set_xyzt_units("mm", "sec")
            nib.save(img, folder / f"{key}.nii.gz")
        types = {k: str(np.asarray(v).dtype) for k, v in value.arrays.items()}
        (folder / "images.json").write_text(
            json.dumps({"dtypes": types, "metadata": value.metadata}, default=_json_default, sort_keys=True)
        )

    def read(self, folder: Path) -> Images:
        import nibabel as nib

        info = json.loads((folder / "images.json").read_text())
        arrays, affine = {}, None
        for key, dtype in info["dtypes"].items():
            img = nib.load(folder / f"{key}.nii.gz")
            arrays[key] = np.asarray(img.dataobj).astype(dtype)
            affine = img.affine
        return Images(arrays, affine if affine is not None else np.eye(4), info["metadata"])


JSON: Codec = _JSONCodec()
PICKLE: Codec = _PickleCodec()
ARRAYS: Codec = _ArraysCodec()
IMAGES: Codec = _ImagesCodec()


# ============================================================================ the store
@dataclass(frozen=True)
class StoreEvent:
    """One lookup: ``outcome`` is ``"hit"``, ``"miss"`` (computed) or ``"damaged"`` (removed, recomputed)."""

    step: str
    key: str
    outcome: str


class Store:
    """A content-addressed store of derivatives under ``root``.

    Parameters
    ----------
    root : path-like
        Folder of the store (created when needed), e.g. ``<work_dir>/store``.

    Attributes
    ----------
    events : list of StoreEvent
        Every lookup of this object, in order (for reports and tests). With ``log=True`` they
        are also appended to ``<root>/events.log`` (one ``outcome step key`` line each), which
        tests of other processes read.
    """

    def __init__(self, root: str | os.PathLike, *, log: bool = False) -> None:
        self.root = Path(root)
        self.events: list[StoreEvent] = []
        self._log = log

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ------------------------------------------------------------------ keys
    @staticmethod
    def _check_step(step: str) -> None:
        if not step or not all(c.isalnum() or c in "_-" for c in step):
            raise ValueError(f"step must be a non-empty name of letters, digits, '_' or '-', got {step!r}")

    def describe(
        self, step: str, parameters: Mapping, inputs: Iterable[str | os.PathLike] = (), modules: Iterable[str] = ()
    ) -> dict:
        """What the key of an entry is made of (it is recorded in the entry's manifest).

        Input files are named by their absolute path and identified by their content.

        Raises
        ------
        ValueError
            If the parameters are not JSON-serialisable or a module is not one of the package.
        FileNotFoundError
            If an input file does not exist.
        """
        self._check_step(step)
        try:
            params = json.loads(json.dumps(dict(parameters), sort_keys=True, default=_json_default))
        except TypeError as err:
            raise ValueError(f"parameters of step {step!r} must be JSON-serialisable: {err}") from err
        files = sorted({str(Path(p).resolve()) for p in inputs})
        return {
            "step": step,
            "parameters": params,
            "inputs": {p: file_digest(p) for p in files},
            "code": code_digest(modules),
        }

    def key(
        self, step: str, parameters: Mapping, inputs: Iterable[str | os.PathLike] = (), modules: Iterable[str] = ()
    ) -> str:
        """The key (SHA-256, hex) of a step's derivative; see the module docstring."""
        return self._digest(self.describe(step, parameters, inputs, modules))

    @staticmethod
    def _digest(description: Mapping) -> str:
        return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()

    def entry(self, step: str, key: str) -> Path:
        """Folder of the entry ``key`` of ``step`` (it may not exist)."""
        return self.root / step / key

    # ------------------------------------------------------------------ lookups
    def record(self, step: str, key: str, outcome: str) -> None:
        """Note a lookup in :attr:`events` (and the log); steps that keep an entry by hand (the cohort) call it."""
        self.events.append(StoreEvent(step, key, outcome))
        if self._log:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / "events.log", "a") as f:
                f.write(f"{outcome} {step} {key}\n")

    def _read(self, folder: Path, key: str, codec: Codec) -> tuple[bool, Any]:
        """(True, value) for a sound committed entry; (False, None) if absent; raises if damaged."""
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            return False, None
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") != key or manifest.get("codec") != codec.name:
            raise ValueError(f"{folder}: the manifest's key or codec does not match the entry")
        for name, recorded in manifest["files"].items():
            path = folder / name
            if path.stat().st_size != recorded["size"] or _sha256(path) != recorded["sha256"]:
                raise ValueError(f"{path}: its content differs from the manifest's (size and SHA-256)")
        return True, codec.read(folder)

    def get(self, step: str, key: str, codec: Codec) -> tuple[bool, Any]:
        """(True, value) if entry ``key`` is committed and sound, else (False, None); a damaged entry is removed."""
        folder = self.entry(step, key)
        try:
            return self._read(folder, key, codec)
        except Exception as err:  # a damaged entry is recomputed, never served
            warnings.warn(f"store entry {folder} is damaged ({err}); it will be recomputed", stacklevel=3)
            self.record(step, key, "damaged")
            shutil.rmtree(folder, ignore_errors=True)
            return False, None

    def put(self, step: str, key: str, value: T, codec: Codec, description: Mapping | None = None) -> T:
        """Commit ``value`` as entry ``key`` of ``step``: written in a temporary folder, then renamed."""
        self._check_step(step)
        tmp_root = self.root / _TMP
        tmp_root.mkdir(parents=True, exist_ok=True)
        self._sweep(tmp_root)
        tmp = tmp_root / f"{_HOST}@{os.getpid()}@{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            codec.write(value, tmp)
            files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
            manifest = {
                "key": key,
                "step": step,
                "codec": codec.name,
                "files": files,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "python": sys.version.split()[0],
                "made_of": dict(description or {}),
            }
            with open(tmp / MANIFEST, "w") as f:
                json.dump(manifest, f, indent=1, sort_keys=True, default=_json_default)
                f.flush()
                os.fsync(f.fileno())
            final = self.entry(step, key)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # a damaged or concurrent entry: the committed one wins
                ok, _ = self.get(step, key, codec)
                if ok:
                    shutil.rmtree(tmp, ignore_errors=True)
                    return value
            try:
                os.rename(tmp, final)
            except OSError:  # another process committed the same key meanwhile: keep its entry
                shutil.rmtree(tmp, ignore_errors=True)
                if not (final / MANIFEST).is_file():
                    raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return value

    @staticmethod
    def _sweep(tmp_root: Path, older_than_s: float = 6 * 3600) -> None:
        """Remove temporary folders of writes that died: of this host's processes that are gone, or
        older than ``older_than_s`` (any host's; another host's processes cannot be asked)."""
        now = time.time()
        for tmp in tmp_root.iterdir():
            host, pid = _tmp_owner(tmp.name)
            alive = host != _HOST or (pid is not None and _pid_alive(pid))
            try:
                stale = now - tmp.stat().st_mtime > older_than_s
            except FileNotFoundError:
                continue
            if not alive or stale:
                shutil.rmtree(tmp, ignore_errors=True)

    def get_or_compute(
        self,
        step: str,
        parameters: Mapping,
        compute: Callable[[], T],
        codec: Codec,
        *,
        inputs: Iterable[str | os.PathLike] = (),
        modules: Iterable[str] = (),
    ) -> T:
        """The derivative of ``step`` for these parameters, inputs and code: read back, or computed and committed.

        Parameters
        ----------
        step : str
            Name of the step (a folder name: letters, digits, ``_``, ``-``).
        parameters : mapping
            Everything besides input files and code that changes the result (JSON-ready).
        compute : callable
            Computes the value when there is no sound entry.
        codec : Codec
            :data:`JSON`, :data:`PICKLE`, :data:`ARRAYS`, :data:`IMAGES` or another :class:`Codec`.
        inputs : iterable of path-like
            Every file the step reads (their content enters the key).
        modules : iterable of str
            qt1lib modules the step's result depends on (their source, and that of everything they
            import from qt1lib, enters the key).

        Returns
        -------
        The value (the computed one on a miss, the one read back on a hit).
        """
        return self.get_or_compute_keyed(step, parameters, compute, codec, inputs=inputs, modules=modules)[0]

    def get_or_compute_keyed(
        self,
        step: str,
        parameters: Mapping,
        compute: Callable[[], T],
        codec: Codec,
        *,
        inputs: Iterable[str | os.PathLike] = (),
        modules: Iterable[str] = (),
    ) -> tuple[T, str]:
        """:meth:`get_or_compute` and the entry's key (a later step that reads the value puts the key in
        its parameters, so that its own key follows everything upstream)."""
        description = self.describe(step, parameters, list(inputs), list(modules))
        key = self._digest(description)
        ok, value = self.get(step, key, codec)
        if ok:
            self.record(step, key, "hit")
            return value, key
        value = compute()
        self.put(step, key, value, codec, description)
        self.record(step, key, "miss")
        return value, key

    def scratch(
        self, step: str, parameters: Mapping, inputs: Iterable[str | os.PathLike] = (), modules: Iterable[str] = ()
    ) -> Path:
        """A folder for the resumable state (e.g. checkpoints) of the work whose key these arguments give.

        Its content is the caller's business: write files atomically
        (:func:`qt1lib.io.atomic_write_bytes`) and treat a file that does not read as absent.
        """
        key = self.key(step, parameters, inputs, modules)
        folder = self.root / _SCRATCH / step / key
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def _tmp_owner(name: str) -> tuple[str, int | None]:
    """Host and process id of a temporary folder's writer (``<host>@<pid>@<uuid>``; the older
    ``<pid>-<uuid>`` names were this host's)."""
    if name.count("@") >= 2:
        host, pid, _ = name.rsplit("@", 2)
    else:
        host, pid = _HOST, name.split("-", 1)[0]
    return host, int(pid) if pid.isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
