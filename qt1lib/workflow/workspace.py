"""Where the per-subject steps read and write: the dataset, the store, the configuration, the derivatives.

A :class:`Workspace` bundles the BIDS dataset a study reads, the content-addressed
:class:`~qt1lib.store.Store` every step caches through, the :class:`~qt1lib.config.PipelineConfig`
and the BIDS derivative dataset where the steps publish their maps for people and other tools
(``<derivatives_dir>/sub-<label>/anat/...``, by default ``derivatives_dir = <bids_dir>/derivatives/qt1lib``;
each image with a sidecar naming the store entry it came from). Lookups never read the published files: the store alone decides what is reused, so a
derivative killed half-way through its publication can never be taken for a result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..derivatives import default_derivatives_dir, derivative_path, sidecar_path, write_derivative
from ..config import PipelineConfig
from ..io import load_json
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
    """

    bids_dir: Path
    store: Store
    config: PipelineConfig = field(default_factory=PipelineConfig)
    subjects: tuple[str, ...] = ()
    is_simulated: bool = False
    cohort: dict | None = None
    progress: bool = True
    derivatives_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bids_dir", Path(self.bids_dir))
        root = default_derivatives_dir(self.bids_dir) if self.derivatives_dir is None else self.derivatives_dir
        object.__setattr__(self, "derivatives_dir", Path(root))

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
        BIDS datatype folder (``anat``).
    """

    suffix: str
    desc: str | None = None
    space: str | None = None
    kind: str = "float"
    units: str | None = None
    description: str | None = None
    datatype: str = "anat"

    def cast(self, data: np.ndarray) -> np.ndarray:
        """``data`` in this entry's storage type."""
        data = np.asarray(data)
        if self.kind == "mask":
            return data.astype(bool)
        if self.kind == "label":
            return data.astype(np.int16)
        return data.astype(np.float32)


def _publish(ws: Workspace, subject: str, entries: Mapping[str, DerivativeEntry], images: Images, key: str,
             parameters: Mapping) -> None:
    """Write each image as a BIDS derivative unless the published copy already comes from entry ``key``."""
    for name, e in entries.items():
        path = ws.derivative_path(subject, e.suffix, desc=e.desc, space=e.space, datatype=e.datatype)
        side = sidecar_path(path)
        if path.is_file() and side.is_file():
            try:
                if load_json(side).get("StoreKey") == key:
                    continue
            except ValueError:
                pass  # an unreadable sidecar is written again
        data = images[name]
        sidecar = {"Description": e.description or name, "StoreKey": key} | ({"Units": e.units} if e.units else {})
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

    images, key = ws.store.get_or_compute_keyed(step, params, make, IMAGES, inputs=inputs, modules=modules)
    _publish(ws, subject, entries, images, key, params)
    return {n: images[n] for n in entries}, key
