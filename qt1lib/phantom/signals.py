"""Tissue signal functions of the digital cohort, exact or tabulated.

A *tissue signal function* maps the two-pool parameters of ``n`` voxels of one tissue class
(:class:`~qt1lib.phantom.tissues.TissueMaps`) and their B1+ to the signals per unit M0f, shape
``(n_out, n)``. The cohort mixes them over tissue classes as signals
(:func:`qt1lib.phantom.simulate.mix_signals`).

Within one subject and tissue class the MP3RAGE signal depends smoothly on three varying
quantities (R1f, PSR, B1+; kmf is constant there and M0f a factor), so :func:`tabulated`
simulates the exact chain on a grid of nodes that spans the voxels' values and interpolates
it with cubic splines: tens of times fewer chain evaluations, with an interpolation error of a
few 1e-6 of M0 (``bench/bench_phantom.py``; bounded by 1e-5 in ``tests/test_phantom.py``), far
below the noise of the images (about 1e-3 M0 at 2 mm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from scipy import ndimage

from ..protocols import MPnRAGEProtocol
from ..protocols_sir import SIRProtocol
from ..sequences.sir import sir_signal
from ..sequences.twopool import SIEMENS_HS_INVERSION, HyperbolicSecantPulse, gre_signals_twopool
from .tissues import TissueMaps

__all__ = [
    "TissueSignalFn",
    "INVERSION_MODELS",
    "SIR_INVERSION_AMPLITUDE",
    "mpnrage_tissue_signals",
    "sir_tissue_signals",
    "tabulated",
    "TABLE_STEPS",
]

#: (tissue maps of n voxels, B1+ of those voxels) -> signals (n_out, n) per unit M0f.
TissueSignalFn = Callable[[TissueMaps, np.ndarray], np.ndarray]

#: Free-pool inversion factor of the SIR's hard inversion at nominal B1+: a perfect pulse gives
#: -1, and relaxation during the pulse loses a little; SIR fits report Sf of about -0.9 to -0.95
#: (Gochberg & Gore 2007, MRM 57:437; DESIGN.md 4.3). With a hard pulse scaled by the local B1+,
#: ``Sf = 0.95 cos(pi B1)`` (assumption).
SIR_INVERSION_AMPLITUDE = 0.95

#: Node spacing of :func:`tabulated`: 0.01 in log R1f, 0.02 in log PSR, 0.02 in B1+.
TABLE_STEPS = {"log_r1f": 0.01, "log_psr": 0.02, "b1": 0.02}
#: Extra nodes beyond the voxels' range on each side, so that no voxel falls where the spline
#: feels the table's boundary condition.
TABLE_PAD = 3


#: How the data's adiabatic inversion acts on the free pool: ``"protocol"``, the protocol's constant
#: ``inversion_efficiency`` (what the estimators assume); ``"bloch"``, each tissue's efficiency from a
#: Bloch simulation of the inversion pulse with its T1f and T2f at the voxel's B1+.
INVERSION_MODELS = ("protocol", "bloch")


def mpnrage_tissue_signals(
    protocol: MPnRAGEProtocol, inversion: str = "protocol", pulse: HyperbolicSecantPulse = SIEMENS_HS_INVERSION
) -> TissueSignalFn:
    """Exact two-pool MP2RAGE/MP3RAGE signals (:func:`qt1lib.sequences.twopool.gre_signals_twopool`).

    Its defaults: super-Lorentzian bound pool with T2m = 12 us, excitation pulses of
    :data:`~qt1lib.sequences.twopool.EXCITATION_DURATION_DEFAULT`, the Siemens hyperbolic-secant
    adiabatic inversion (see that module for the sources). The tissue's R1m comes with its maps.

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        The acquisition.
    inversion : {"protocol", "bloch"}
        The free pool's inversion efficiency (:data:`INVERSION_MODELS`). With ``"bloch"``, classes
        without a T2f keep the protocol's efficiency.
    pulse : HyperbolicSecantPulse
        The inversion pulse (bound-pool saturation, and the Bloch simulation).
    """
    if inversion not in INVERSION_MODELS:
        raise ValueError(f"inversion must be one of {INVERSION_MODELS}, got {inversion!r}")

    def signals(maps: TissueMaps, b1: np.ndarray) -> np.ndarray:
        efficiency = None
        if inversion == "bloch" and maps.inversion_relaxation is not None:
            efficiency = pulse.free_pool_efficiency(*maps.inversion_relaxation, b1)
        return gre_signals_twopool(
            maps.r1f, maps.psr, protocol, b1, kmf=maps.kmf, r1m=maps.r1m,
            inversion_pulse=pulse, free_inversion_efficiency=efficiency,
        )

    return signals


def sir_tissue_signals(protocol: SIRProtocol, readout_residual: float = 0.0) -> TissueSignalFn:
    """Exact signed two-pool SIR signals (:func:`qt1lib.sequences.sir.sir_signal`).

    The free-pool inversion factor is that of a hard pulse scaled by the local B1+,
    ``Sf = SIR_INVERSION_AMPLITUDE cos(pi B1)``; the macromolecular factor is the protocol's Sm
    everywhere (its weak B1+ dependence is neglected, as SIR fits do). The tissue's R1m comes
    with its maps; ``readout_residual`` is the fraction of the free pool's equilibrium left by the
    readout before each delay (0: the fully saturating readout the SIR fit assumes).
    """

    def signals(maps: TissueMaps, b1: np.ndarray) -> np.ndarray:
        sf = SIR_INVERSION_AMPLITUDE * np.cos(np.pi * np.asarray(b1))
        return sir_signal(
            maps.r1f, maps.psr, sf, protocol, kmf=maps.kmf, r1m=maps.r1m,
            readout_residual=readout_residual, magnitude=False,
        )

    return signals


def _axis(values: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Nodes spanning ``values`` with spacing <= ``step`` plus padding, and each value's fractional index."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        return None
    n = int(np.ceil((hi - lo) / step)) + 1
    h = (hi - lo) / (n - 1)
    nodes = lo + h * np.arange(-TABLE_PAD, n + TABLE_PAD)
    return nodes, (values - lo) / h + TABLE_PAD


def tabulated(signal_fn: TissueSignalFn, min_voxels: int = 5000) -> TissueSignalFn:
    """Wrap ``signal_fn`` so that large voxel sets are computed on a spline-interpolated table.

    The table spans the voxels' log R1f, log PSR (when PSR varies and is positive) and B1+ with
    the spacings of :data:`TABLE_STEPS`; the signals on its nodes are exact, and each voxel's
    signal is the cubic-spline interpolation (:func:`scipy.ndimage.map_coordinates`, order 3).
    Sets smaller than ``min_voxels``, or whose kmf varies, are computed exactly.

    Parameters
    ----------
    signal_fn : TissueSignalFn
        The exact signal function; the wrapped function takes 1-D voxel arrays.
    min_voxels : int
        Smallest voxel set worth a table.
    """

    def signals(maps: TissueMaps, b1: np.ndarray) -> np.ndarray:
        b1 = np.asarray(b1, dtype=float)
        kmf = np.asarray(maps.kmf, dtype=float)
        if b1.size < min_voxels or np.ptp(kmf) > 0:
            return signal_fn(maps, b1)
        psr = np.asarray(maps.psr, dtype=float)
        positive_psr = bool((psr > 0).all())
        if not positive_psr and psr.any():
            return signal_fn(maps, b1)
        axes = {
            "r1f": (_axis(np.log(maps.r1f), TABLE_STEPS["log_r1f"]), np.exp),
            "psr": (_axis(np.log(psr), TABLE_STEPS["log_psr"]) if positive_psr else None, np.exp),
            "b1": (_axis(b1, TABLE_STEPS["b1"]), lambda x: x),
        }
        grids, coords = [], []
        for axis, (spec, to_value) in axes.items():
            if spec is None:
                grids.append(None)
            else:
                grids.append(to_value(spec[0]))
                coords.append(spec[1])
        r1f_nodes = grids[0] if grids[0] is not None else np.asarray(maps.r1f).flat[0:1]
        psr_nodes = grids[1] if grids[1] is not None else psr.flat[0:1]
        b1_nodes = grids[2] if grids[2] is not None else b1.flat[0:1]
        table = signal_fn(
            replace(
                maps,
                r1f=r1f_nodes[:, None, None],
                psr=psr_nodes[None, :, None],
                kmf=kmf.flat[0],
                m0f=np.ones(1),
            ),
            b1_nodes[None, None, :],
        )
        if not coords:  # every voxel has the same parameters
            return np.repeat(table.reshape(-1, 1), b1.size, axis=1)
        kept = tuple(i for i, g in enumerate(grids) if g is not None)
        table = table.reshape(table.shape[0], *(table.shape[1 + i] for i in kept))
        points = np.stack(coords)
        return np.stack([ndimage.map_coordinates(t, points, order=3, mode="nearest") for t in table])

    return signals
