"""One subject in SIR space: the MP2RAGE maps registered and resampled onto the SIR grid, with the
IR reference, the tissue segmentation and the voxels that are scored.

Registration as the seed's scripts (DESIGN.md 4.6): rigid, Mattes mutual information (antspyx,
:func:`qt1lib.register.register_rigid`), moving = an MP2RAGE-space image, fixed = a SIR-space image;
maps resampled linearly (``antsApplyTransforms -n Linear``), labels with ``genericLabel``.

The transform is published as ``sub-<label>/anat/sub-<label>_from-MP2RAGE_to-SIR_mode-image_xfm.txt``
(:func:`itk_transform_text`: an ITK text transform file, which ``antsApplyTransforms -t`` and ITK
read, mapping SIR-space physical points to MP2RAGE-space ones as ITK's resampling needs) with a
JSON sidecar holding the RAS matrix. The name follows the draft BIDS transforms proposal (BEP014)
as fMRIPrep writes it (``from-<source>_to-<target>_mode-image_xfm``: resamples an image of the
source space into the target space); BIDS 1.10 defines no transform file, so the derivative
dataset's ``.bidsignore`` lists these two (:data:`qt1lib.derivatives.BIDSIGNORE`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.affines import apply_affine

from .. import __version__
from ..derivatives import PIPELINE
from ..io import atomic_write_bytes, load_json, save_json
from ..register import (
    RigidTransform,
    apply_transform,
    register_rigid,
    registration_error,
)
from ..store import JSON
from ..tissues import SCORED
from .masks import MaskSource, NativeImages, space_segmentation
from .mp2rage import MP2RAGEMaps, T1Estimate, estimator_entries, mp2rage_maps
from .sir import SIRMaps, sir_maps
from .workspace import DerivativeEntry, Workspace, cached_images

__all__ = ["SIRSpaceSubject", "sir_space_subject", "resample_to_sir", "rigid_transform", "sir_segmentation",
           "itk_transform_text", "transform_path"]

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

@dataclass(frozen=True)
class SIRSpaceSubject:
    """Every map of a subject on the SIR grid.

    Attributes
    ----------
    subject : str
    affine : ndarray, shape (4, 4)
        The SIR grid.
    sir : SIRMaps
        The IR reference (its ``ir_t1`` = 1/R1f, ``converged``...).
    estimates : dict of str to T1Estimate
        The MP2RAGE-space maps resampled into SIR space (``t1``, ``std``, ``valid``).
    combinations : dict of str to ndarray
        ``"uni"`` (S_12) and ``"s13"`` resampled.
    b1 : ndarray or None
        The measured B1+ map resampled.
    dseg : ndarray of int16
        Tissue labels (:mod:`qt1lib.tissues`) on the SIR grid.
    dseg_source : MaskSource
        Where they came from.
    transform : RigidTransform
        Estimated SIR world -> MP2RAGE world.
    true_transform : RigidTransform or None
        The digital cohort's simulated one (None for real data).
    registration_error_mm : float or None
        Mean displacement error over the brain (:func:`qt1lib.register.registration_error`).
    mp2rage : MP2RAGEMaps
        The maps on the MP2RAGE grid.
    """

    subject: str
    affine: np.ndarray
    sir: SIRMaps
    estimates: dict[str, T1Estimate]
    combinations: dict[str, np.ndarray]
    b1: np.ndarray | None
    dseg: np.ndarray
    dseg_source: MaskSource
    transform: RigidTransform
    true_transform: RigidTransform | None
    registration_error_mm: float | None
    mp2rage: MP2RAGEMaps

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the SIR grid."""
        return self.dseg.shape

    @property
    def brain(self) -> np.ndarray:
        """Brain mask on the SIR grid: ``dseg > 0``."""
        return self.dseg > 0

    @property
    def scored(self) -> np.ndarray:
        """The voxels where MP2RAGE and IR T1 are compared: brain, a scored tissue
        (:data:`qt1lib.tissues.SCORED`), converged SIR fit and a finite IR T1."""
        return (
            self.brain
            & np.isin(self.dseg, [t.label for t in SCORED])
            & self.sir.converged
            & np.isfinite(self.sir.ir_t1)
        )

    def __getitem__(self, name: str) -> T1Estimate:
        if name not in self.estimates:
            raise KeyError(f"no SIR-space map of estimator {name!r} for sub-{self.subject}; computed: {sorted(self.estimates)}")
        return self.estimates[name]


def resample_to_sir(
    image: np.ndarray, affine: np.ndarray, transform: RigidTransform, shape: tuple, sir_affine: np.ndarray, kind: str = "float"
) -> np.ndarray:
    """An MP2RAGE-grid image resampled onto the SIR grid.

    Parameters
    ----------
    image, affine : ndarray
        The image on the MP2RAGE grid and its RAS affine.
    transform : RigidTransform
        SIR world -> MP2RAGE world.
    shape, sir_affine
        The SIR grid.
    kind : {"float", "mask", "label"}
        ``"float"``: linear interpolation (as the seed's ``antsApplyTransforms -n Linear``); a NaN
        voxel spreads NaN to the SIR voxels whose interpolation touches it, and SIR voxels that
        fall outside the MP2RAGE grid are NaN. ``"mask"`` / ``"label"``: ``genericLabel``, 0 outside.
    """
    if kind not in ("float", "mask", "label"):
        raise ValueError(f"kind must be 'float', 'mask' or 'label', got {kind!r}")
    if kind == "float":
        out = apply_transform(transform, image, affine, shape, sir_affine, "linear", default_value=0.0)
        ijk = np.indices(shape).reshape(3, -1).T
        world = transform.apply_to_points(apply_affine(sir_affine, ijk))
        vox = apply_affine(np.linalg.inv(affine), world)
        inside = np.all((vox >= 0) & (vox <= np.asarray(np.shape(image)) - 1), axis=1).reshape(shape)
        return np.where(inside, out, np.nan).astype(np.float32)
    out = apply_transform(transform, np.asarray(image, dtype=np.float32), affine, shape, sir_affine, "genericLabel")
    return out > 0.5 if kind == "mask" else np.rint(out).astype(np.int16)


def itk_transform_text(transform: RigidTransform) -> str:
    """``transform`` as an ITK text transform file (``#Insight Transform File V1.0``).

    An ``AffineTransform_double_3_3`` with centre 0 (``FixedParameters``): ``T(x) = A x + t`` in
    ITK's LPS physical space, ``A`` and ``t`` the LPS form ``F M F`` (``F = diag(-1, -1, 1)``) of
    the RAS matrix ``M``. Numbers are written in their shortest round-trip form, so the same
    transform gives the same bytes; :meth:`qt1lib.register.RigidTransform.from_ants_file` reads it
    back through ANTs.
    """
    lps = _LPS @ np.asarray(transform.matrix, dtype=float) @ _LPS
    numbers = [*lps[:3, :3].ravel(), *lps[:3, 3]]
    return ("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
            f"Parameters: {' '.join(repr(float(v)) for v in numbers)}\nFixedParameters: 0 0 0\n")


def transform_path(ws: Workspace, subject: str) -> Path:
    """Where the MP2RAGE -> SIR transform of ``subject`` is published (module docstring)."""
    return ws.derivatives_dir / f"sub-{subject}" / "anat" / f"sub-{subject}_from-MP2RAGE_to-SIR_mode-image_xfm.txt"


def _publish_transform(ws: Workspace, subject: str, matrix: np.ndarray, params: dict, key: str,
                       sources: list[str]) -> None:
    path = transform_path(ws, subject)
    side = path.with_suffix(".json")
    meta = {
        "Description": "rigid transform that resamples MP2RAGE-space images into SIR space: it maps SIR-space "
                       "world points to MP2RAGE-space world points (ITK text file beside this sidecar, LPS)",
        "FixedToMovingRAS": np.asarray(matrix).tolist(),
        "FromSpace": "MP2RAGE", "ToSpace": "SIR",
        "Sources": sources, "StoreKey": key, "Parameters": params,
        "GeneratedBy": {"Name": PIPELINE, "Version": __version__},
    }
    text = itk_transform_text(RigidTransform(np.asarray(matrix, dtype=float)))
    try:
        same = path.is_file() and path.read_text() == text and side.is_file() and load_json(side) == meta
    except ValueError:
        same = False  # unreadable: written again
    if not same:
        atomic_write_bytes(path, text.encode())
        save_json(meta, side)


def rigid_transform(ws: Workspace, mp2: MP2RAGEMaps, sir: SIRMaps) -> RigidTransform:
    """The SIR -> MP2RAGE rigid transform of a subject, from the store or registered.

    ``ws.config.registration_contrast``: ``"inv2"`` (the seed's scripts) moves the INV2 magnitude
    onto the SIR image with the longest inversion time; ``"t1"`` moves the LUT T1 map onto the IR
    T1 map. Published as ``sub-<label>/anat/sub-<label>_from-MP2RAGE_to-SIR_mode-image_xfm.txt``
    and its JSON sidecar (module docstring, :func:`transform_path`).
    """
    config = ws.config  # PipelineConfig validates registration_contrast
    subject = mp2.subject
    params = {"contrast": config.registration_contrast, "bins": config.registration_bins,
              "random_seed": config.random_seed, "type": "Rigid", "metric": "mattes", "subject": subject}
    if config.registration_contrast == "inv2":
        params["reader"] = ws.reader_parameters()
        inputs = [*mp2.inputs, *sir.inputs]
        sources = ws.sources(inputs)
    else:
        params |= {"moving": mp2["lut"].key, "fixed": sir.key}
        inputs = []
        sources = ws.sources([ws.derivative_path(subject, "T1map", desc=estimator_entries("lut")["t1"].desc),
                              ws.derivative_path(subject, "T1map", desc="SIR", space="SIR")])

    def compute() -> dict:  # the images are read only when the transform is not in the store
        if config.registration_contrast == "inv2":
            moving = np.abs(ws.read_mpnrage(subject).gre[1])
            sir_data = ws.read_sir(subject)
            fixed = sir_data.images[int(np.argmax(sir_data.protocol.inversion_times))]
        else:
            moving = np.nan_to_num(np.clip(mp2["lut"].t1, 0.0, 5.0))
            fixed = np.nan_to_num(np.clip(sir.ir_t1, 0.0, 5.0))
        t = register_rigid(fixed, sir.affine, moving, mp2.affine, seed=config.random_seed, bins=config.registration_bins)
        return {"FixedToMovingRAS": np.asarray(t.matrix).tolist()}

    value, key = ws.store.get_or_compute_keyed(
        "registration", params, compute, JSON, inputs=inputs, modules=(__name__, "qt1lib.register")
    )
    _publish_transform(ws, subject, value["FixedToMovingRAS"], params, key, sources)
    return RigidTransform(np.asarray(value["FixedToMovingRAS"], dtype=float))


def sir_segmentation(ws: Workspace, mp2: MP2RAGEMaps, sir: SIRMaps, transform: RigidTransform) -> tuple[np.ndarray, MaskSource]:
    """Tissue labels on the SIR grid and where they came from (:func:`qt1lib.workflow.masks.space_segmentation`)."""
    subject = mp2.subject
    native = NativeImages(mp2.brain.shape, mp2.affine, mp2.sigma, mp2.inputs,
                          lambda: ws.read_mpnrage(subject).gre)

    def to_sir(image: np.ndarray, kind: str) -> np.ndarray:
        return resample_to_sir(image, mp2.affine, transform, sir.shape, sir.affine, kind)

    return space_segmentation(ws, subject, "SIR", sir.shape, sir.affine, native, to_sir)


def sir_space_subject(ws: Workspace, subject: str, estimators: Iterable[str] | None = None) -> SIRSpaceSubject:
    """Every MP2RAGE map of a subject resampled into SIR space, with the SIR fit and the segmentation.

    Parameters
    ----------
    ws : Workspace
    subject : str
        Label without ``sub-``.
    estimators : iterable of str, optional
        As :func:`qt1lib.workflow.mp2rage.mp2rage_maps` (``"lut"`` is added for the ``"t1"``
        registration contrast, whose moving image it is).

    Returns
    -------
    SIRSpaceSubject
    """
    from tqdm.auto import tqdm

    names = None if estimators is None else list(estimators)
    if ws.config.registration_contrast == "t1" and names is not None and "lut" not in names:
        names.append("lut")
    mp2 = mp2rage_maps(ws, subject, names)
    sir = sir_maps(ws, subject)
    transform = rigid_transform(ws, mp2, sir)
    shape, affine = sir.shape, sir.affine
    to_sir = {"transform": np.asarray(transform.matrix).tolist()}

    xfm = transform_path(ws, subject)

    def resampled(step_key: str, entries: dict[str, DerivativeEntry], images: dict[str, np.ndarray],
                  sources: list) -> dict:
        def compute() -> dict:
            return {n: resample_to_sir(images[n], mp2.affine, transform, shape, affine, e.kind) for n, e in entries.items()}

        maps, _ = cached_images(ws, subject, "to_sir", entries, {"source": step_key, **to_sir}, affine, compute,
                                modules=(__name__, "qt1lib.register"), sources=[*sources, xfm])
        return maps

    estimates = {}
    for name, est in tqdm(mp2.estimates.items(), desc=f"sub-{subject} to SIR space", disable=not ws.progress, leave=False):
        entries = estimator_entries(name, "SIR")
        images = {"t1": est.t1} | ({"std": est.std, "valid": est.valid} if est.std is not None else {})
        native = estimator_entries(name)
        maps = resampled(est.key, entries, images,
                         [ws.derivative_path(subject, native[n].suffix, desc=native[n].desc) for n in images])
        estimates[name] = T1Estimate(maps["t1"], maps.get("std"), maps.get("valid"), est.key)
    combo_entries = {k: DerivativeEntry("UNIT1", "S12" if k == "uni" else "S13", "SIR", skull_stripped=False,
                                        description=f"{'S12 (UNI)' if k == 'uni' else 'S13'} resampled into SIR space")
                     for k in mp2.combinations}
    combinations = resampled(mp2.combinations_key, combo_entries, mp2.combinations,
                             [ws.derivative_path(subject, "UNIT1", desc=e.desc) for e in combo_entries.values()])
    b1 = None
    if mp2.b1 is not None:
        b1_entry = DerivativeEntry("TB1map", "measured", "SIR", datatype="fmap", skull_stripped=False,
                                   description="the measured relative B1+ map (1 = nominal flip angle), read on the "
                                               "MP2RAGE grid and resampled into SIR space")
        b1 = resampled(mp2.b1_key, {"b1": b1_entry}, {"b1": mp2.b1},
                       [p for p in mp2.inputs if "_TB1map.nii" in p.name])["b1"]
    dseg, dseg_source = sir_segmentation(ws, mp2, sir, transform)
    true_transform = error = None
    if ws.is_simulated:
        from ..phantom import load_motion

        true_transform = RigidTransform(load_motion(ws.bids_dir, subject).session_to_subject)
        error = registration_error(transform, true_transform.matrix, dseg > 0, affine)
    return SIRSpaceSubject(
        subject=subject,
        affine=affine,
        sir=sir,
        estimates=estimates,
        combinations=combinations,
        b1=b1,
        dseg=dseg,
        dseg_source=dseg_source,
        transform=transform,
        true_transform=true_transform,
        registration_error_mm=error,
        mp2rage=mp2,
    )
