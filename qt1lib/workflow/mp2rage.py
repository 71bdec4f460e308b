"""T1 maps on the MP2RAGE grid: every estimator of :mod:`qt1lib.estimate.base`, cached per estimator.

From the complex MP2RAGE/MP3RAGE images of a subject: the combinations ``S_12`` (UNI) and
``S_13`` (MP3RAGE) with the brain mask, and each estimator's map (the lookup table with and
without B1 correction, Marques et al. 2010 and Marques & Gruetter 2013; the seed's Monte-Carlo
MAP; the exact MAP), each MAP with its posterior standard deviation and validity flag. Each
estimator's maps are one store entry whose key holds only that estimator's parameters and
source, so changing one estimator's setting or code recomputes that estimator alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..estimate.base import DEFAULT_ESTIMATORS, estimator_class, estimator_options, make_estimator
from ..protocols import MPnRAGEProtocol
from ..sequences.mpnrage import uni
from .masks import MaskSource, brain_mask, estimation_region
from .noise import noise_sigma
from .workspace import DerivativeEntry, Workspace, cached_images

__all__ = ["T1Estimate", "MP2RAGEMaps", "mp2rage_maps", "estimator_entries", "scatter"]

_MODULE = (__name__,)


@dataclass(frozen=True)
class T1Estimate:
    """One estimator's T1 map on a grid.

    Attributes
    ----------
    t1 : ndarray, float32
        T1 (s): the MAP (MAP estimators) or the table reading; NaN outside the estimation region.
    std : ndarray or None
        Posterior standard deviation (s), for estimators with a posterior.
    valid : ndarray of bool or None
        The estimator's validity flag, for estimators with a posterior.
    key : str
        Store key of the maps (what a later step that reads them puts in its parameters).
    """

    t1: np.ndarray
    std: np.ndarray | None
    valid: np.ndarray | None
    key: str


@dataclass(frozen=True)
class MP2RAGEMaps:
    """The MP2RAGE-grid derivatives of one subject.

    Attributes
    ----------
    subject : str
        Label without ``sub-``.
    affine : ndarray, shape (4, 4)
        The MP2RAGE grid (RAS, mm).
    protocol : MPnRAGEProtocol
        The acquisition, from the sidecars.
    sigma : float
        Noise level used (image units).
    b1 : ndarray or None
        The measured relative B1+ map.
    b1_key : str or None
        Identity of the B1 map as read (the B1 and MP2RAGE files and the reader's source).
    brain : ndarray of bool
        Brain mask.
    brain_source : MaskSource
        Where the brain mask came from.
    combinations : dict of str to ndarray
        ``"uni"`` (S_12) and, for MP3RAGE, ``"s13"``.
    combinations_key : str
        Store key of the combinations and the brain mask.
    estimates : dict of str to T1Estimate
        Per estimator name.
    inputs : tuple of Path
        The files the reader read: the images, the B1 map and their sidecars (the brain mask's files
        are in :attr:`brain_source`).
    """

    subject: str
    affine: np.ndarray
    protocol: MPnRAGEProtocol
    sigma: float
    b1: np.ndarray | None
    b1_key: str | None
    brain: np.ndarray
    brain_source: MaskSource
    combinations: dict[str, np.ndarray]
    combinations_key: str
    estimates: dict[str, T1Estimate]
    inputs: tuple[Path, ...] = ()

    def __getitem__(self, name: str) -> T1Estimate:
        if name not in self.estimates:
            raise KeyError(f"no map of estimator {name!r} for sub-{self.subject}; computed: {sorted(self.estimates)}")
        return self.estimates[name]


def scatter(values: np.ndarray, region: np.ndarray, fill: float | bool = np.nan) -> np.ndarray:
    """``values`` of the voxels of ``region`` placed on its grid (``fill`` elsewhere)."""
    out = np.full(region.shape, fill, dtype=bool if isinstance(fill, bool) else np.float32)
    out[region] = values
    return out


#: How the estimation region enters the T1 maps' descriptions (their ``SkullStripped`` is true: T1 is
#: estimated in the brain mask dilated by ``mask_dilation`` voxels, NaN elsewhere).
_REGION = "estimated in the brain mask dilated by the configuration's mask_dilation voxels, NaN elsewhere"


def estimator_entries(name: str, space: str | None = None) -> dict[str, DerivativeEntry]:
    """How estimator ``name``'s maps are published: ``desc-<desc>_T1map`` and, with a posterior,
    ``desc-<desc>std_T1map`` and ``desc-<desc>valid_mask``.

    The maps are ``SkullStripped``: NaN outside the estimation region (the brain mask dilated by
    a few voxels, :func:`~qt1lib.workflow.masks.estimation_region`)."""
    cls = estimator_class(name)
    what = "MAP" if cls.posterior else "T1 read from the table"
    where = "" if space is None else f", resampled into {space} space"
    entries = {"t1": DerivativeEntry("T1map", cls.desc, space, units="s", skull_stripped=True,
                                     description=f"{cls.label}: {what} ({_REGION}){where}")}
    if cls.posterior:
        entries["std"] = DerivativeEntry("T1map", f"{cls.desc}std", space, units="s", skull_stripped=True,
                                         description=f"{cls.label}: posterior standard deviation ({_REGION}){where}")
        entries["valid"] = DerivativeEntry("mask", f"{cls.desc}valid", space, kind="mask",
                                           description=f"{cls.label}: the estimator's validity flag{where}")
    return entries


def _requested(names: Iterable[str] | None, n_readouts: int, has_b1: bool, subject: str) -> list[str]:
    explicit = names is not None
    requested = list(DEFAULT_ESTIMATORS if names is None else names)
    out = []
    for name in requested:
        cls = estimator_class(name)
        if max(cls.readouts) > n_readouts:
            if explicit:
                raise ValueError(f"estimator {name!r} needs readouts {cls.readouts}; sub-{subject} has {n_readouts}")
            continue
        if cls.b1 != "none" and not has_b1:
            raise ValueError(
                f"estimator {name!r} needs a B1+ map; sub-{subject} has no fmap/*_TB1map "
                "(choose estimators without the B1-aware ones)"
            )
        out.append(name)
    return out


def mp2rage_maps(ws: Workspace, subject: str, estimators: Iterable[str] | None = None) -> MP2RAGEMaps:
    """T1 maps of one subject on the MP2RAGE grid, from the store or computed (module docstring).

    Parameters
    ----------
    ws : Workspace
    subject : str
        Label without ``sub-``.
    estimators : iterable of str, optional
        Registered estimator names; default :data:`~qt1lib.estimate.base.DEFAULT_ESTIMATORS`
        (without the MP3RAGE ones when the data have two readouts).

    Returns
    -------
    MP2RAGEMaps

    Raises
    ------
    ValueError
        An unknown estimator, one that needs readouts or a B1 map the subject lacks.
    """
    from tqdm.auto import tqdm

    data = ws.read_mpnrage(subject)
    protocol = data.protocol
    names = _requested(estimators, protocol.n_readouts, data.b1 is not None, subject)
    sigma = noise_sigma(ws, np.abs(data.gre), "mp2rage")
    brain, source = brain_mask(ws, subject, data.gre, data.affine, sigma, inputs=data.inputs)
    region = estimation_region(brain, ws.config.mask_dilation)
    inputs = [*data.inputs, *source.files, *ws.cohort_inputs()]
    base = {"sigma": sigma, "brain": source.description, "mask_dilation": ws.config.mask_dilation,
            "protocol": protocol.describe(), "reader": ws.reader_parameters()}

    pairs = {"uni": (1, 2)} | ({"s13": (1, 3)} if protocol.n_readouts >= 3 else {})
    entries = {k: DerivativeEntry("UNIT1", f"S{i}{j}", skull_stripped=False,
                                  description=f"S{i}{j} = Re(conj(G{i}) G{j}) / (|G{i}|^2 + |G{j}|^2) of inversions "
                                              f"{i} and {j}" + (" (the uniform image, UNI)" if k == "uni" else ""))
               for k, (i, j) in pairs.items()}
    entries["brain"] = DerivativeEntry("mask", "brain", kind="mask", mask_type="Brain",
                                       description=f"brain mask ({source.description})")

    def combinations() -> dict:
        return {k: uni(data.gre[i - 1], data.gre[j - 1]) for k, (i, j) in pairs.items()} | {"brain": brain}

    combos, combos_key = cached_images(
        ws, subject, "combinations", entries, base, data.affine, combinations, inputs=inputs,
        modules=_MODULE + ("qt1lib.sequences.mpnrage",),
    )
    settings = ws.estimator_settings()
    estimates = {}
    for name in tqdm(names, desc=f"sub-{subject} T1 maps", disable=not ws.progress, leave=False):
        estimator = make_estimator(name, protocol, sigma, **estimator_options(name, settings))

        def compute(estimator=estimator) -> dict:
            b1 = None if estimator.b1 == "none" else data.b1[region]
            post = estimator.fit(data.gre[:, region], b1=b1)
            maps = {"t1": scatter(post.map, region)}
            if estimator.posterior:
                maps["std"] = scatter(post.std, region)
                maps["valid"] = scatter(post.valid, region, False)
            return maps

        maps, key = cached_images(
            ws, subject, "mp2rage_t1", estimator_entries(name), {**base, **estimator.parameters()}, data.affine,
            compute, inputs=inputs, modules=_MODULE + tuple(estimator.modules),
        )
        estimates[name] = T1Estimate(maps["t1"], maps.get("std"), maps.get("valid"), key)
    return MP2RAGEMaps(
        subject=subject,
        affine=data.affine,
        protocol=protocol,
        sigma=sigma,
        b1=data.b1,
        b1_key=None if data.b1 is None else ws.store.key("b1", {"reader": ws.reader_parameters()}, data.inputs,
                                                         ("qt1lib.bids",)),
        brain=combos["brain"],
        brain_source=source,
        combinations={k: combos[k] for k in pairs},
        combinations_key=combos_key,
        estimates=estimates,
        inputs=tuple(data.inputs),
    )
