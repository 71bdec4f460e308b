"""Brain masks, estimation regions and tissue segmentations, and where each came from.

Assumptions (written in the book):

* **Tissue segmentation on the MP2RAGE grid** (labels of :mod:`qt1lib.tissues`). Digital cohort:
  its true ``dseg``. Real data, the first of:

  1. the segmentation named by :attr:`~qt1lib.config.PipelineConfig.segmentation` (a derivative
     dataset or a file). Its labels are read by name from the ``dseg.tsv`` that applies to it by
     the BIDS inheritance principle (BIDS 1.10, "The Inheritance Principle"; columns ``index``,
     ``name``, optional ``abbreviation``, "Derivatives: Segmentations"); without one that maps
     every label to WM, subcortical GM, cortical GM, CSF, grey matter as one class or the
     background, the run stops with an error naming the file;
  2. a ``sub-<label>[_...]_dseg.nii[.gz]`` without ``space`` entity under
     ``<bids_dir>/derivatives/<pipeline>/`` (any pipeline but ``phantom``, ``qt1lib`` and the
     workspace's own derivative folder) whose ``dseg.tsv`` maps its labels in the same way. A
     ``dseg`` without such a table is never used: its labels cannot be known (fMRIPrep writes
     ``1 GM, 2 WM, 3 CSF`` without a ``dseg.tsv`` for it; the project's own convention is
     ``1 WM, 2 sGM, 3 cGM, 4 CSF``), and the segmentation's :class:`MaskSource` says why;
  3. the automatic segmentation of :mod:`qt1lib.segment` (the MNI152 template registered to the
     subject, refined on its contrast), within the user's brain mask if there is one.

  Grey matter as one class (fMRIPrep's GM) is split with the warped template
  (:func:`qt1lib.segment.apply_dseg_mapping`: the deep nuclei are subcortical GM, the rest
  cortical GM). The segmentation used, in the registry's labels, is published as ``dseg`` with a
  ``dseg.tsv`` at the root of the derivative dataset (it applies to every ``dseg`` there).
* **Brain mask on the MP2RAGE grid.** Digital cohort: its segmentation, ``dseg > 0`` (voxels at
  least half tissue), a perfect stand-in for the seed's SLANT segmentation. Real data: a
  ``*_desc-brain_mask.nii[.gz]`` on the MP2RAGE grid under ``derivatives/<pipeline>/`` (same
  pipelines as above), else ``dseg > 0`` of the segmentation above.
* **Estimation mask.** T1 is estimated in the brain mask dilated by ``mask_dilation`` voxels, so
  that linear resampling into SIR space near the brain's edge blends real estimates rather
  than missing values; maps are NaN elsewhere.
* **Segmentation in SIR space.** Digital cohort: the true ``space-SIR_dseg``. Real data: a
  ``*_space-SIR_dseg`` found by rules 1 and 2, else the MP2RAGE-grid segmentation resampled with
  the estimated transform (``genericLabel``).
* **SIR fit mask.** Voxels whose largest SIR magnitude exceeds ``signal_threshold`` noise
  standard deviations.

Every function returns the files it read, so that the steps that use a mask put their content
in their store keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from .. import tissues as _tissues
from ..bids import parse_name
from ..derivatives import PIPELINE
from ..io import save_tsv
from ..segment import (
    apply_dseg_mapping,
    parameters,
    segment,
    subject_priors,
    template_files,
)
from ..store import IMAGES, Images
from ..tissues import DsegMapping, read_dseg_mapping
from .workspace import DerivativeEntry, Workspace, cached_images

__all__ = [
    "MaskSource",
    "NativeImages",
    "UserSegmentation",
    "brain_mask",
    "cohort_dseg_file",
    "dseg_tsv_for",
    "estimation_region",
    "find_user_derivative",
    "load_on_grid",
    "native_segmentation",
    "signal_mask",
    "space_segmentation",
    "template_priors",
    "user_segmentation",
    "write_dseg_tsv",
]

#: Modules whose source enters the keys of the segmentation steps.
SEGMENT_MODULES = (__name__, "qt1lib.segment")
#: How the segmentation used is published (``sub-<label>_dseg.nii.gz``).
DSEG_ENTRY = DerivativeEntry("dseg", kind="label", description="tissue classes; labels in dseg.tsv (qt1lib.tissues)")
#: Derivative folders under ``derivatives/`` that never hold a user's files.
_NOT_USER = (PIPELINE, "phantom")


@dataclass(frozen=True)
class MaskSource:
    """Where a mask or segmentation came from.

    Attributes
    ----------
    description : str
        ``"cohort segmentation"``, the path of the user's file (relative to the dataset when it
        lies in it) and how its labels were read, or ``"automatic segmentation ..."`` with its
        store key and, if any, why a user's file was not used.
    files : tuple of Path
        Files read to make it (their content enters the keys of the steps that use it).
    """

    description: str
    files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class NativeImages:
    """The MP2RAGE-grid images of a subject that a segmentation is made from.

    Attributes
    ----------
    shape : tuple of int
        The grid's shape.
    affine : ndarray, shape (4, 4)
        The grid (RAS, mm).
    sigma : float
        Noise standard deviation of the images.
    inputs : tuple of Path
        The files they were read from (:attr:`qt1lib.bids.MPnRAGEData.inputs`).
    gre : ndarray or callable
        The readouts, shape (n_readouts, X, Y, Z), or a function that reads them (called only on a
        store miss).
    """

    shape: tuple[int, ...]
    affine: np.ndarray
    sigma: float
    inputs: tuple[Path, ...]
    gre: np.ndarray | Callable[[], np.ndarray]

    def images(self) -> np.ndarray:
        """The readouts."""
        return self.gre() if callable(self.gre) else np.asarray(self.gre)


@dataclass(frozen=True)
class UserSegmentation:
    """A user's segmentation file and how its labels map to the registry's.

    Attributes
    ----------
    path : Path
        The ``dseg`` image.
    mapping : DsegMapping
        Its ``dseg.tsv``, read by :func:`qt1lib.tissues.read_dseg_mapping`.
    named : bool
        Named by :attr:`~qt1lib.config.PipelineConfig.segmentation` (else found under ``derivatives/``).
    """

    path: Path
    mapping: DsegMapping
    named: bool

    @property
    def files(self) -> tuple[Path, ...]:
        """The image and its table."""
        return (self.path, self.mapping.path)

    def describe(self, bids_dir: Path) -> str:
        """``"<path> (labels: 1 GM (split), 2 WM, 3 CSF)"``, the path relative to ``bids_dir`` when inside it."""
        return f"{_shown(self.path, bids_dir)} (labels: {self.mapping.describe()})"


def _shown(path: Path, bids_dir: Path) -> str:
    path, bids_dir = Path(path).absolute(), Path(bids_dir).absolute()
    return str(path.relative_to(bids_dir)) if path.is_relative_to(bids_dir) else str(path)


def _same(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _subject_files(root: Path, subject: str, suffix: str, space: str | None, desc: str | None) -> list[Path]:
    """``sub-<subject>[_...]_<suffix>.nii[.gz]`` under ``root/sub-<subject>/`` with exactly entity ``space`` and, if given, ``desc``."""
    found = []
    for path in sorted(Path(root).glob(f"sub-{subject}/**/sub-{subject}_*{suffix}.nii*")):
        try:
            name = parse_name(path)
        except ValueError:
            continue
        if (name.suffix == suffix and name.entities.get("space") == space
                and (desc is None or name.entities.get("desc") == desc)):
            found.append(path)
    return found


def _user_pipelines(bids_dir: Path, exclude: Iterable[Path]) -> list[Path]:
    root = Path(bids_dir) / "derivatives"
    if not root.is_dir():
        return []
    exclude = list(exclude)
    return [p for p in sorted(root.iterdir())
            if p.is_dir() and p.name not in _NOT_USER and not any(_same(p, e) for e in exclude)]


def find_user_derivative(
    bids_dir: Path, subject: str, suffix: str, *, space: str | None = None, desc: str | None = None,
    exclude: Iterable[Path] = (),
) -> Path | None:
    """The user's ``sub-<label>_..._<suffix>.nii[.gz]`` with entity ``space`` (None: no space entity) and,
    if given, ``desc``, under ``derivatives/<pipeline>/sub-<label>/`` for any pipeline but qt1lib, phantom
    and the folders of ``exclude`` (the workspace's own derivative dataset).

    Raises
    ------
    ValueError
        If several files could be the one (naming them).
    """
    found = [f for p in _user_pipelines(bids_dir, exclude) for f in _subject_files(p, subject, suffix, space, desc)]
    if len(found) > 1:
        raise ValueError(f"several user derivatives could be the {suffix} of sub-{subject}: {[str(p) for p in found]}")
    return found[0] if found else None


def dseg_tsv_for(image: Path, root: Path) -> Path | None:
    """The ``dseg.tsv`` that applies to the segmentation ``image`` by the BIDS inheritance principle.

    Candidates: every ``[<entities>_]dseg.tsv`` whose entities are a subset of the image's, in
    ``root`` (the derivative dataset) and each folder from it down to the image's; the deepest
    folder, then the most entities, wins (``sub-01_dseg.tsv`` beside the image over a
    ``dseg.tsv`` at the root). None when no table applies.
    """
    image, root = Path(image), Path(root)
    target = parse_name(image)
    parts = image.parent.relative_to(root).parts if image.parent.is_relative_to(root) else ()
    folders = dict.fromkeys([root] + [root.joinpath(*parts[: i + 1]) for i in range(len(parts))] + [image.parent])
    candidates = []
    for depth, folder in enumerate(folders):
        for tsv in sorted(folder.glob("*dseg.tsv")):
            try:
                name = parse_name(tsv)
            except ValueError:
                continue
            if name.suffix == "dseg" and all(target.entities.get(k) == v for k, v in name.entities.items()):
                candidates.append((depth, len(name.entities), str(tsv)))
    return Path(max(candidates)[2]) if candidates else None


def _dataset_root(path: Path, subject: str) -> Path:
    """The derivative dataset a file lies in: the folder above its ``sub-<label>`` folder (else its own folder)."""
    for parent in path.parents:
        if parent.name == f"sub-{subject}":
            return parent.parent
    return path.parent


def _mapping(image: Path, root: Path) -> DsegMapping:
    tsv = dseg_tsv_for(image, root)
    if tsv is None:
        raise ValueError("no dseg.tsv applies to it (BIDS inheritance: beside it or in a folder above, up to "
                         f"{root}) to name its labels")
    return read_dseg_mapping(tsv)


def _named(ws: Workspace, subject: str) -> tuple[Path, dict[str | None, list[Path]]]:
    """The named segmentation and its files of ``subject`` per space (None: MP2RAGE grid, ``"SIR"``)."""
    path = Path(ws.config.segmentation).expanduser()
    if not path.exists():
        raise ValueError(f"the segmentation named by PipelineConfig.segmentation, {path}, does not exist")
    if path.is_dir():
        files = {space: _subject_files(path, subject, "dseg", space, None) for space in (None, "SIR")}
    else:
        try:
            name = parse_name(path)
        except ValueError as err:
            raise ValueError(f"the named segmentation {path} is not a BIDS dseg file name: {err}") from None
        if name.suffix != "dseg" or not name.extension.startswith(".nii"):
            raise ValueError(f"the named segmentation {path} must be a sub-<label>[_...]_dseg.nii[.gz] file or a folder")
        files = {space: [path] if name.entities.get("space") == space and name.entities.get("sub") == subject else []
                 for space in (None, "SIR")}
    if not files[None] and not files["SIR"]:
        raise ValueError(f"the named segmentation {path} holds no sub-{subject}[_...]_dseg.nii[.gz] "
                         "(on the MP2RAGE grid, or with space-SIR)")
    return path, files


def user_segmentation(ws: Workspace, subject: str, space: str | None = None) -> tuple[UserSegmentation | None, tuple[str, ...]]:
    """The user's segmentation of ``subject`` on a grid (module docstring, rules 1 and 2) and why others were not used.

    Parameters
    ----------
    ws : Workspace
    subject : str
    space : {None, "SIR"}
        None: the MP2RAGE grid.

    Returns
    -------
    UserSegmentation or None
    notes : tuple of str
        One line per ``dseg`` found under ``derivatives/`` that was not used, and why.

    Raises
    ------
    ValueError
        A named segmentation that does not exist, holds nothing for the subject, or whose labels
        no ``dseg.tsv`` maps; several named or several usable found files for one grid.
    """
    if ws.config.segmentation is not None:
        named, files = _named(ws, subject)
        if len(files[space]) > 1:
            raise ValueError(f"the named segmentation {named} holds several {space or 'MP2RAGE-grid'} dseg of "
                             f"sub-{subject}: {[str(p) for p in files[space]]}")
        if not files[space]:
            grid = f"space-{space}" if space else "MP2RAGE-grid"
            return None, (f"the named segmentation {named} has no {grid} dseg of sub-{subject}",)
        image = files[space][0]
        try:
            mapping = _mapping(image, named if named.is_dir() else _dataset_root(image, subject))
        except ValueError as err:
            raise ValueError(f"{image} (named by PipelineConfig.segmentation): {err}") from None
        return UserSegmentation(image, mapping, named=True), ()
    usable, notes = [], []
    for pipeline in _user_pipelines(ws.bids_dir, (ws.derivatives_dir,)):
        for image in _subject_files(pipeline, subject, "dseg", space, None):
            try:
                usable.append(UserSegmentation(image, _mapping(image, pipeline), named=False))
            except ValueError as err:
                notes.append(f"{_shown(image, ws.bids_dir)} not used: {err}")
    if len(usable) > 1:
        raise ValueError(f"several user segmentations of sub-{subject} map their labels: "
                         f"{[str(u.path) for u in usable]}; name one with PipelineConfig.segmentation")
    return (usable[0] if usable else None), tuple(notes)


def load_on_grid(path: Path, shape: tuple, affine: np.ndarray, what: str) -> np.ndarray:
    """The image at ``path``, which must lie on the grid (``shape``, ``affine``) of the images it goes with."""
    img = nib.load(path)
    if img.shape != tuple(shape) or not np.allclose(img.affine, affine, atol=1e-4):
        raise ValueError(f"{path}: the {what} must lie on the grid of its images (shape {tuple(shape)}, same affine)")
    return np.asarray(img.dataobj)


def signal_mask(magnitude: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Voxels whose largest magnitude (over the first axis) exceeds ``threshold * sigma``."""
    return np.abs(magnitude).max(axis=0) > threshold * sigma


def cohort_dseg_file(ws: Workspace, subject: str, space: str | None = None) -> Path:
    """The digital cohort's true segmentation of ``subject`` (:func:`qt1lib.phantom.load_truth`), on the
    MP2RAGE grid (``space=None``) or the SIR grid (``"SIR"``)."""
    prefix = f"sub-{subject}" + (f"_space-{space}" if space else "")
    path = ws.bids_dir / "derivatives" / "phantom" / f"sub-{subject}" / "anat" / f"{prefix}_dseg.nii.gz"
    if not path.is_file():
        raise ValueError(f"no ground truth for sub-{subject}: {path} does not exist (not a digital cohort?)")
    return path


def _cohort_dseg(ws: Workspace, subject: str, shape: tuple, space: str | None = None) -> tuple[np.ndarray, MaskSource]:
    path = cohort_dseg_file(ws, subject, space)
    dseg = np.asarray(nib.load(path).dataobj).astype(np.int16)
    if dseg.shape != tuple(shape):
        raise ValueError(f"{path}: the cohort's dseg has shape {dseg.shape}, its images {tuple(shape)}")
    return dseg, MaskSource("cohort segmentation", (path,))


def _user_brain(ws: Workspace, subject: str, shape: tuple, affine: np.ndarray) -> tuple[np.ndarray, MaskSource] | None:
    user = find_user_derivative(ws.bids_dir, subject, "mask", desc="brain", exclude=(ws.derivatives_dir,))
    if user is None:
        return None
    return load_on_grid(user, shape, affine, "brain mask") > 0, MaskSource(_shown(user, ws.bids_dir), (user,))


def template_priors(ws: Workspace, subject: str, native: NativeImages) -> tuple[np.ndarray, str]:
    """The template's tissue fractions warped onto the subject's MP2RAGE grid (:func:`qt1lib.segment.subject_priors`),
    from the store or registered (about a minute at 2 mm); not published.

    Returns
    -------
    priors : ndarray of float32, shape (4, X, Y, Z)
        In :data:`qt1lib.tissues.ALL` order.
    key : str
        The store key.
    """
    params = {"subject": subject, "sigma": native.sigma, "seed": ws.config.random_seed, **parameters()}

    def compute() -> Images:
        priors = subject_priors(native.images(), native.affine, native.sigma, seed=ws.config.random_seed)
        return Images({"priors": priors}, np.asarray(native.affine, dtype=float))

    images, key = ws.store.get_or_compute_keyed(
        "template_priors", params, compute, IMAGES, inputs=[*native.inputs, *template_files()], modules=SEGMENT_MODULES
    )
    return images["priors"], key


def write_dseg_tsv(ws: Workspace) -> Path:
    """The derivative dataset's root ``dseg.tsv`` (index, name: the registry's labels and BIDS labels), written
    atomically when missing or different."""
    path = ws.derivatives_dir / "dseg.tsv"
    table = pd.DataFrame({"index": [t.label for t in _tissues.ALL], "name": [t.bids_label for t in _tissues.ALL]})
    text = table.to_csv(sep="\t", index=False, lineterminator="\n")
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        save_tsv(table, path)
    return path


def native_segmentation(ws: Workspace, subject: str, native: NativeImages) -> tuple[np.ndarray, MaskSource]:
    """Tissue labels on the MP2RAGE grid and where they came from (module docstring); published for real data.

    Parameters
    ----------
    ws : Workspace
    subject : str
    native : NativeImages
        The subject's MP2RAGE images (read only on a store miss when given as a function).

    Returns
    -------
    dseg : ndarray of int16
        Labels of :data:`qt1lib.tissues.ALL`, 0 outside the brain.
    source : MaskSource
    """
    if ws.is_simulated:
        return _cohort_dseg(ws, subject, native.shape)
    user, notes = user_segmentation(ws, subject)
    if user is not None:
        data = load_on_grid(user.path, native.shape, native.affine, "segmentation")
        priors, priors_key = template_priors(ws, subject, native) if user.mapping.grey_matter else (None, None)
        description = user.describe(ws.bids_dir)
        params = {"source": description, "priors": priors_key}
        files = user.files

        def compute() -> dict:
            return {"dseg": apply_dseg_mapping(data, user.mapping, priors)}
    else:
        brain = _user_brain(ws, subject, native.shape, native.affine)
        priors, priors_key = template_priors(ws, subject, native)
        within = brain[1].description if brain else "the template's brain mask"
        params = {"source": "automatic", "priors": priors_key, "brain": within}
        files = brain[1].files if brain else ()

        def compute() -> dict:
            mask = brain[0] if brain else None
            return {"dseg": segment(native.images(), native.affine, native.sigma, brain=mask, priors=priors).dseg}

    images, key = cached_images(ws, subject, "segmentation", {"dseg": DSEG_ENTRY}, params, native.affine, compute,
                                inputs=files, modules=SEGMENT_MODULES)
    write_dseg_tsv(ws)
    if user is None:
        description = f"automatic segmentation (qt1lib.segment) within {within}"
    description = "; ".join([f"{description}, store entry {key}", *notes])
    return images["dseg"], MaskSource(description, tuple(files))


def brain_mask(
    ws: Workspace, subject: str, gre: np.ndarray, affine: np.ndarray, sigma: float, *, inputs: Iterable[Path]
) -> tuple[np.ndarray, MaskSource]:
    """Brain mask on the MP2RAGE grid and where it came from (module docstring).

    Parameters
    ----------
    ws : Workspace
    subject : str
    gre : ndarray, shape (n_readouts, X, Y, Z)
        The MP2RAGE images (for the automatic segmentation).
    affine : ndarray
        Their grid.
    sigma : float
        Noise level of the images.
    inputs : iterable of Path
        The files the images were read from (keys of the automatic segmentation).
    """
    shape = np.shape(gre)[1:]
    if ws.is_simulated:
        dseg, source = _cohort_dseg(ws, subject, shape)
        return dseg > 0, source
    user = _user_brain(ws, subject, shape, affine)
    if user is not None:
        return user
    dseg, source = native_segmentation(ws, subject, NativeImages(shape, affine, sigma, tuple(inputs), gre))
    if not dseg.any():
        raise ValueError(f"sub-{subject}: the segmentation ({source.description}) has no brain voxel")
    return dseg > 0, source


def space_segmentation(
    ws: Workspace,
    subject: str,
    space: str,
    shape: tuple,
    affine: np.ndarray,
    native: NativeImages,
    to_space: Callable[[np.ndarray, str], np.ndarray],
) -> tuple[np.ndarray, MaskSource]:
    """Tissue labels on another grid (``space``, e.g. ``"SIR"``) and where they came from (module docstring).

    Parameters
    ----------
    ws : Workspace
    subject : str
    space : str
        The grid's BIDS ``space`` label.
    shape, affine
        The grid.
    native : NativeImages
        The subject's MP2RAGE-grid images (for the MP2RAGE-grid segmentation).
    to_space : callable
        ``to_space(image, kind)`` resamples an MP2RAGE-grid image onto the grid, ``kind`` ``"float"``
        (linear; NaN outside the MP2RAGE grid) or ``"label"``.

    Returns
    -------
    dseg : ndarray of int16
    source : MaskSource
    """
    if ws.is_simulated:
        return _cohort_dseg(ws, subject, shape, space)
    user, notes = user_segmentation(ws, subject, space)
    if user is not None:
        data = load_on_grid(user.path, shape, affine, f"space-{space} segmentation")
        priors = None
        if user.mapping.grey_matter:
            native_priors, _ = template_priors(ws, subject, native)
            priors = np.stack([np.nan_to_num(to_space(p, "float")) for p in native_priors])
        return apply_dseg_mapping(data, user.mapping, priors), MaskSource(user.describe(ws.bids_dir), user.files)
    dseg, source = native_segmentation(ws, subject, native)
    description = "; ".join([f"{source.description}, resampled into {space} space", *notes])
    return to_space(dseg, "label").astype(np.int16), MaskSource(description, source.files)


def estimation_region(brain: np.ndarray, dilation: int) -> np.ndarray:
    """Voxels where T1 is estimated: ``brain`` dilated by ``dilation`` voxels."""
    brain = np.asarray(brain, dtype=bool)
    return ndimage.binary_dilation(brain, iterations=dilation) if dilation else brain
