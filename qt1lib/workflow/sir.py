"""The IR reference: the two-pool SIR fit of one subject on the SIR grid, IR T1 = 1/R1f.

The fit (:func:`qt1lib.estimate.sir_fit.fit_sir`: R1m = R1f, kmf = 14.5 s^-1, Sm from the
sidecars; Dortch et al. 2011, MRM 66:1346) runs on the SIR signal mask
(:func:`qt1lib.workflow.masks.signal_mask`): the head, so its maps are not ``SkullStripped``.

Published as ``space-SIR_desc-SIR_<suffix>`` with BIDS's suffixes where they exist (``R1map``,
``T1map``, ``M0map``: ``rules.files.deriv.imaging.anat_parametric_volumetric``). BIDS has no suffix
for the pool size ratio nor for the free pool's inversion factor: they keep the names ``PSRmap``
and ``Sfmap`` and the derivative dataset's ``.bidsignore`` lists them
(:data:`qt1lib.derivatives.BIDSIGNORE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..estimate.sir_fit import fit_sir
from ..protocols_sir import SIRProtocol
from ..sequences.twopool import KMF_HUMAN_BRAIN
from .masks import signal_mask
from .mp2rage import scatter
from .noise import noise_sigma
from .workspace import DerivativeEntry, Workspace, cached_images

__all__ = ["SIRMaps", "sir_maps", "SIR_ENTRIES"]

#: How the SIR fit's maps are published.
_FIT = "two-pool SIR fit (R1m = R1f, kmf fixed), in the SIR signal mask, NaN elsewhere"
SIR_ENTRIES: dict[str, DerivativeEntry] = {
    "r1f": DerivativeEntry("R1map", "SIR", "SIR", units="1/s", skull_stripped=False,
                           description=f"free-pool R1f of the {_FIT}"),
    "ir_t1": DerivativeEntry("T1map", "SIR", "SIR", units="s", skull_stripped=False,
                             description=f"IR T1 = 1/R1f of the {_FIT}: the reference"),
    "psr": DerivativeEntry("PSRmap", "SIR", "SIR", units="1", skull_stripped=False,
                           description=f"pool size ratio M0m/M0f of the {_FIT}"),
    "sf": DerivativeEntry("Sfmap", "SIR", "SIR", units="1", skull_stripped=False,
                          description=f"free-pool inversion factor Sf of the {_FIT}"),
    "m0f": DerivativeEntry("M0map", "SIR", "SIR", units="arbitrary", skull_stripped=False,
                           description=f"free-pool M0f (image units) of the {_FIT}"),
    "converged": DerivativeEntry("mask", "SIRconverged", "SIR", kind="mask",
                                 description="voxels where the two-pool SIR fit converged"),
    "at_bound": DerivativeEntry("mask", "SIRatbound", "SIR", kind="mask",
                                description="voxels where a parameter of the two-pool SIR fit ended at a bound"),
    "fit_mask": DerivativeEntry("mask", "SIRfit", "SIR", kind="mask",
                                description="the SIR signal mask: voxels the two-pool fit ran on"),
}


@dataclass(frozen=True)
class SIRMaps:
    """The SIR fit of one subject on the SIR grid (NaN / False outside the fit mask).

    Attributes
    ----------
    subject : str
    affine : ndarray, shape (4, 4)
        The SIR grid.
    protocol : SIRProtocol
        ti, td and Sm from the sidecars.
    sigma : float
        SIR noise level used (image units).
    r1f : ndarray
        Free-pool R1 (s^-1).
    ir_t1 : ndarray
        IR T1 = 1/R1f (s), the reference.
    psr, sf, m0f : ndarray
        Pool size ratio, free-pool inversion factor, free-pool M0.
    converged, at_bound, fit_mask : ndarray of bool
    key : str
        Store key of the maps.
    inputs : tuple of Path
        The files the fit read (the images and their sidecars).
    """

    subject: str
    affine: np.ndarray
    protocol: SIRProtocol
    sigma: float
    r1f: np.ndarray
    ir_t1: np.ndarray
    psr: np.ndarray
    sf: np.ndarray
    m0f: np.ndarray
    converged: np.ndarray
    at_bound: np.ndarray
    fit_mask: np.ndarray
    key: str
    inputs: tuple[Path, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the SIR grid."""
        return self.ir_t1.shape


def sir_maps(ws: Workspace, subject: str) -> SIRMaps:
    """Two-pool SIR fit of one subject on the SIR grid, from the store or computed (module docstring)."""
    data = ws.read_sir(subject)
    sigma = noise_sigma(ws, data.images, "sir")
    threshold = ws.config.signal_threshold
    params = {"sir_sigma": sigma, "signal_threshold": threshold, "kmf": KMF_HUMAN_BRAIN,
              "protocol": data.protocol.describe(), "reader": ws.reader_parameters()}

    def compute() -> dict:
        mask = signal_mask(data.images, sigma, threshold)
        fit = fit_sir(data.images[:, mask], data.protocol)
        maps = {name: scatter(getattr(fit, name), mask) for name in ("r1f", "psr", "sf", "m0f")}
        maps["ir_t1"] = scatter(1.0 / fit.r1f, mask)
        maps["converged"] = scatter(fit.converged, mask, False)
        maps["at_bound"] = scatter(fit.at_bound, mask, False)
        return maps | {"fit_mask": mask}

    maps, key = cached_images(
        ws, subject, "sir_fit", SIR_ENTRIES, params, data.affine, compute, inputs=[*data.inputs, *ws.cohort_inputs()],
        modules=(__name__, "qt1lib.estimate.sir_fit"),
    )
    return SIRMaps(subject=subject, affine=data.affine, protocol=data.protocol, sigma=sigma, key=key, inputs=data.inputs,
                   **maps)
