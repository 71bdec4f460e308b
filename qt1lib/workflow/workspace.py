"""Where the per-subject steps read and write: the dataset, the store, the configuration, the derivatives.

A :class:`Workspace` bundles the BIDS dataset a study reads, the content-addressed
:class:`~qt1lib.store.Store` every step caches through, the :class:`~qt1lib.config.PipelineConfig`
and the BIDS derivative dataset where the steps publish their maps for people and other tools
(``<derivatives_dir>/sub-<label>/anat/...``, by default ``derivatives_dir = <bids_dir>/derivatives/qt1lib``;
each image with a sidecar naming the store entry it came from). Lookups never read the published files: the store alone decides what is reused, so a
derivative killed half-way through its publication can never be taken for a result.

Every step reads the dataset through :meth:`Workspace.read_mpnrage` and :meth:`Workspace.read_sir`,
which pass the configuration's reader settings (entity selection, sidecar defaults, B1 units;
:meth:`~qt1lib.config.PipelineConfig.reader_settings`) to the readers of :mod:`qt1lib.bids`, and
puts those settings in its store key (:meth:`Workspace.reader_parameters`).

Each published sidecar carries what the BIDS validator asks of a derivative
(:mod:`qt1lib.derivatives`): ``SkullStripped`` for images (:attr:`DerivativeEntry.skull_stripped`),
``Type`` for masks, ``SpatialReference`` (for ``space-SIR`` images the subject's first SIR image,
:meth:`Workspace.spatial_reference`, REQUIRED; for images on the MP2RAGE grid the first MP2RAGE
image they were made from; BIDS URIs into the input dataset) and ``Sources``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..bids import MPnRAGEData, SIRData, read_mpnrage, read_sir
from ..config import PipelineConfig
from ..derivatives import (
    PIPELINE,
    RAW,
    bids_uri,
    default_derivatives_dir,
    derivative_path,
    sidecar_path,
    write_derivative,
)
from ..io import _json_default, load_json
from ..store import IMAGES, Images, Store

__all__ = ["Workspace", "DerivativeEntry", "cached_images"]


@dataclass(frozen=True)
class Workspace:
    """The dataset, the store, the configuration and the derivative folder of a study.

    Attributes
    ----------
    bids_dir : Path
        The BIDS dataset (the digital cohort or a user's data).
    store : Store
        Cache of every step (:mod:`qt1lib.store`).
    config : PipelineConfig
        Parameters of the steps.
    subjects : tuple of str
        Labels (without ``sub-``) of the subjects the study processes.
    is_simulated : bool
        Whether the dataset is the digital cohort (its truth is then available).
    cohort : dict or None
        The cohort's generation parameters (``derivatives/phantom/parameters.json``), or None.
    progress : bool
        Show progress bars (tqdm).
    derivatives_dir : Path
        The derivative dataset the steps publish into (:mod:`qt1lib.derivatives`); default
        ``<bids_dir>/derivatives/qt1lib``.
    sir_subjects : tuple of str
        The subjects of :attr:`subjects` that have SIR images (:func:`qt1lib.bids.has_sir` with
        the configuration's ``select``): those that can be registered and calibrated.
    """

    bids_dir: Path
    store: Store
    config: PipelineConfig = field(default_factory=PipelineConfig)
    subjects: tuple[str, ...] = ()
    is_simulated: bool = False
    cohort: dict | None = None
    progress: bool = True
    derivatives_dir: Path | None = None
    sir_subjects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "bids_dir", Path(self.bids_dir))
        root = default_derivatives_dir(self.bids_dir) if self.derivatives_dir is None else self.derivatives_dir
        object.__setattr__(self, "derivatives_dir", Path(root))
        object.__setattr__(self, "subjects", tuple(self.subjects))
        object.__setattr__(self, "sir_subjects", tuple(self.sir_subjects))
        extra = sorted(set(self.sir_subjects) - set(self.subjects))
        if extra:
            raise ValueError(f"sir_subjects {extra} are not among the subjects {list(self.subjects)}")

    # ------------------------------------------------------------------ reading the dataset
    def read_mpnrage(self, subject: str) -> MPnRAGEData:
        """The MP2RAGE/MP3RAGE data and B1 map of ``subject``, read with the configuration's reader
        settings (:func:`qt1lib.bids.read_mpnrage`)."""
        c = self.config
        return read_mpnrage(self.bids_dir, subject, defaults=c.reader_defaults(), select=c.reader_select(),
                            b1_units=c.b1_units, resample_b1=c.resample_b1)

    def read_sir(self, subject: str) -> SIRData:
        """The SIR data of ``subject``, read with the configuration's reader settings
        (:func:`qt1lib.bids.read_sir`)."""
        c = self.config
        return read_sir(self.bids_dir, subject, defaults=c.reader_defaults(), select=c.reader_select())

    def reader_parameters(self) -> dict:
        """The reader settings (:meth:`~qt1lib.config.PipelineConfig.reader_settings`): a step that reads the
        dataset puts them in its store key."""
        return self.config.reader_settings()

    # ------------------------------------------------------------------ naming and provenance
    def raw_uri(self, path: str | Path) -> str | None:
        """BIDS URI of a file of the input dataset (``bids:raw:...``), None outside it."""
        return bids_uri(self.bids_dir, path, RAW)

    def own_uri(self, path: str | Path) -> str | None:
        """BIDS URI of a file of the derivative dataset (``bids::...``), None outside it."""
        return bids_uri(self.derivatives_dir, path, "")

    def sources(self, paths: Iterable[str | Path]) -> list[str]:
        """``Sources`` of a derivative: the BIDS URIs of the images (NIfTI) among ``paths``, in the
        derivative dataset or the input dataset, sorted; sidecars and other files are left out."""
        uris = {self.own_uri(p) or self.raw_uri(p) for p in paths if str(p).endswith((".nii", ".nii.gz"))}
        return sorted(u for u in uris if u is not None)

    def spatial_reference(self, subject: str, space: str | None) -> str | None:
        """``SpatialReference`` of a derivative in ``space``: None without a space entity; for
        ``"SIR"``, the BIDS URI of the subject's first SIR image (the grid the map lies on)."""
        if space is None:
            return None
        if space != "SIR":
            raise ValueError(f"no spatial reference known for space {space!r}")
        return _first_sir_image(self, subject)

    def derivative_path(self, subject: str | None, suffix: str, **naming) -> Path:
        """Path of a derivative in this workspace's derivative dataset (:func:`qt1lib.derivatives.derivative_path`)."""
        return derivative_path(self.derivatives_dir, subject, suffix, **naming)

    def with_config(self, config: PipelineConfig) -> "Workspace":
        """The same workspace with another configuration."""
        return replace(self, config=config)

    def estimator_settings(self) -> dict:
        """The configuration's fields that some registered estimator takes as an option, and the store
        (for the seed MAP's histogram): pick each estimator's with
        :func:`qt1lib.estimate.base.estimator_options`."""
        from ..estimate.base import estimator_class, estimator_names

        accepted = {k for name in estimator_names() for k in estimator_class(name).defaults}
        return {k: v for k, v in {**self.config.to_dict(), "store": self.store}.items() if k in accepted}

    def cohort_inputs(self) -> list[Path]:
        """The cohort's ``parameters.json`` when the dataset is the cohort (an input of steps that use it)."""
        path = self.bids_dir / "derivatives" / "phantom" / "parameters.json"
        return [path] if self.is_simulated and path.is_file() else []


@dataclass(frozen=True)
class DerivativeEntry:
    """How one image of a step is published as a BIDS derivative.

    Attributes
    ----------
    suffix, desc, space : str
        BIDS name pieces (:func:`qt1lib.derivatives.derivative_path`).
    kind : {"float", "mask", "label"}
        Storage: float32, bool (uint8 on disk), int16.
    units : str, optional
        ``Units`` of the sidecar.
    description : str, optional
        ``Description`` of the sidecar (default: the image's name in its step).
    datatype : str
        BIDS datatype folder (``anat``; ``fmap`` for B1+ maps: BIDS's derivative rule for
        ``TB1map``, ``rules.files.deriv.imaging.fmap_parametric_volumetric``).
    skull_stripped : bool, optional
        ``SkullStripped`` of the sidecar, REQUIRED by BIDS for derivative images other than
        masks and segmentations ("whether the volume was skull stripped (non-brain voxels set
        to zero) or not"): True for maps set to NaN outside the brain's estimation region.
    mask_type : str, optional
        ``Type`` of a mask (BIDS: ``"Brain"``, ``"Lesion"``, ``"Face"``, ``"ROI"``; default ``"ROI"``).
    """

    suffix: str
    desc: str | None = None
    space: str | None = None
    kind: str = "float"
    units: str | None = None
    description: str | None = None
    datatype: str = "anat"
    skull_stripped: bool | None = None
    mask_type: str | None = None

    def sidecar(self, name: str) -> dict:
        """The sidecar fields this entry fixes: ``Description``, ``Units``, ``SkullStripped`` / ``Type``."""
        out: dict = {"Description": self.description or name}
        if self.units:
            out["Units"] = self.units
        if self.suffix == "mask":
            out["Type"] = self.mask_type or "ROI"
        elif self.suffix not in ("dseg", "probseg") and self.skull_stripped is not None:
            out["SkullStripped"] = self.skull_stripped
        return out

    def cast(self, data: np.ndarray) -> np.ndarray:
        """``data`` in this entry's storage type."""
        data = np.asarray(data)
        if self.kind == "mask":
            return data.astype(bool)
        if self.kind == "label":
            return data.astype(np.int16)
        return data.astype(np.float32)


@lru_cache(maxsize=256)
def _sir_reference(bids_dir: str, subject: str, config: PipelineConfig) -> str | None:
    data = read_sir(bids_dir, subject, defaults=config.reader_defaults(), select=config.reader_select())
    return bids_uri(bids_dir, data.files[0], RAW)


def _first_sir_image(ws: Workspace, subject: str) -> str | None:
    """BIDS URI of the first SIR image of ``subject`` (memoised per dataset, subject and reader settings)."""
    return _sir_reference(str(ws.bids_dir), subject, ws.config)


def _native_reference(sources: list[str]) -> str | None:
    """The MP2RAGE image among ``sources`` whose grid an image without a ``space`` entity lies on."""
    return next((u for u in sources if u.startswith(f"bids:{RAW}:") and u.endswith(("_MP2RAGE.nii", "_MP2RAGE.nii.gz"))),
                None)


def _sidecar_text(meta: Mapping) -> dict:
    """``meta`` as it reads back from its JSON file (tuples as lists, NumPy scalars as numbers)."""
    return json.loads(json.dumps(meta, default=_json_default))


def _publish(ws: Workspace, subject: str, entries: Mapping[str, DerivativeEntry], images: Images, key: str,
             parameters: Mapping, sources: list[str]) -> None:
    """Write each image as a BIDS derivative unless the published copy has exactly this sidecar (and so
    comes from entry ``key`` with the same provenance)."""
    from .. import __version__

    for name, e in entries.items():
        path = ws.derivative_path(subject, e.suffix, desc=e.desc, space=e.space, datatype=e.datatype)
        sidecar = e.sidecar(name) | {"StoreKey": key}
        reference = ws.spatial_reference(subject, e.space) if e.space else _native_reference(sources)
        if reference is not None:
            sidecar["SpatialReference"] = reference
        if sources:
            sidecar["Sources"] = list(sources)
        expected = _sidecar_text({**sidecar, "GeneratedBy": {"Name": PIPELINE, "Version": __version__},
                                  "Parameters": dict(parameters)})
        side = sidecar_path(path)
        if path.is_file() and side.is_file():
            try:
                if load_json(side) == expected:
                    continue
            except ValueError:
                pass  # an unreadable sidecar is written again
        data = images[name]
        write_derivative(
            ws.derivatives_dir, subject, data.astype(np.uint8) if data.dtype == bool else data, images.affine,
            e.suffix, desc=e.desc, space=e.space, parameters=parameters, sidecar=sidecar, datatype=e.datatype,
        )


def cached_images(
    ws: Workspace,
    subject: str,
    step: str,
    entries: Mapping[str, DerivativeEntry],
    parameters: Mapping,
    affine: np.ndarray,
    compute: Callable[[], Mapping[str, np.ndarray]],
    *,
    inputs: Iterable[str | Path] = (),
    modules: Iterable[str] = (),
    sources: Iterable[str | Path] | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """A group of images of one subject, from the store or computed, and published as BIDS derivatives.

    Parameters
    ----------
    ws : Workspace
    subject : str
        Label without ``sub-``.
    step : str
        Store step name.
    entries : mapping of str to DerivativeEntry
        Name of each image and how it is published.
    parameters : mapping
        Everything besides input files and code that changes the images (JSON-ready).
    affine : ndarray, shape (4, 4)
        Grid of the images.
    compute : callable
        Returns an array for every name of ``entries``.
    inputs, modules
        As :meth:`qt1lib.store.Store.get_or_compute`.
    sources : iterable of path-like, optional
        The files the images were made from, for the sidecars' ``Sources``
        (:meth:`Workspace.sources`); default the images among ``inputs``.

    Returns
    -------
    images : dict of str to ndarray
        In each entry's storage type.
    key : str
        The store key (put it in the parameters of a step that reads these images).
    """
    params = {"subject": subject, **dict(parameters)}

    def make() -> Images:
        maps = compute()
        missing = sorted(set(entries) - set(maps))
        if missing:
            raise RuntimeError(f"step {step!r} computed no image for {missing}")
        return Images({n: e.cast(maps[n]) for n, e in entries.items()}, np.asarray(affine, dtype=float))

    inputs = list(inputs)
    images, key = ws.store.get_or_compute_keyed(step, params, make, IMAGES, inputs=inputs, modules=modules)
    _publish(ws, subject, entries, images, key, params, ws.sources(inputs if sources is None else sources))
    return {n: images[n] for n in entries}, key
