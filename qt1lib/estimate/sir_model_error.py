"""Model error of the SIR reference: what an imperfect readout saturation does to the fitted T1.

The SIR fit (:func:`qt1lib.estimate.sir_fit.fit_sir`) assumes, as Gochberg & Gore 2007 (MRM
57:437), Li et al. 2010 (MRM 64:491) and Dortch et al. 2011 (MRM 66:1346) do, that the readout
saturates the free pool. :func:`readout_residual_bias` simulates noise-free data whose readout
leaves ``r M0f`` in the free pool (:func:`qt1lib.sequences.sir.sir_signal`, ``readout_residual``),
fits them with that zero-residual model and reports the apparent IR T1 (``1 / R1f``) and the
fit's residual sum of squares. A protocol with as many samples as free parameters (the four-sample
protocol of Dortch et al. 2018) interpolates the data while the fit stays inside its bounds, so
its residual sum of squares stays at zero: the error cannot be seen in the fit. A protocol with
one td for every sample (:data:`qt1lib.protocols_sir.DENSE_SIR`) gives every sample the same
post-readout state, and the residual is then folded into Sf almost exactly (small T1 error, and a
residual sum of squares near zero too); samples at different td are what reveal it. With noise of
standard deviation ``sigma`` per sample, a residual sum of squares well above
``n_samples sigma^2`` (the noise's mean, with standard deviation ``sqrt(2 n_samples) sigma^2``)
is what a protocol needs to notice the residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..protocols_sir import SIRProtocol
from ..sequences.sir import sir_signal
from ..sequences.twopool import KMF_HUMAN_BRAIN
from .sir_fit import fit_sir

__all__ = ["ReadoutResidualBias", "readout_residual_bias"]


@dataclass(frozen=True)
class ReadoutResidualBias:
    """Zero-residual SIR fit of noise-free data simulated with a readout residual.

    Every array has the broadcast shape of the tissue parameters and the residual.

    Attributes
    ----------
    t1_true : ndarray
        ``1 / R1f`` of the simulated tissue (s).
    t1_apparent : ndarray
        ``1 / R1f`` of the fit (s): the IR reference T1 that the residual gives.
    t1_error : ndarray
        ``t1_apparent - t1_true`` (s).
    psr_apparent, sf_apparent : ndarray
        The fit's pool size ratio and free-pool inversion factor.
    rss : ndarray
        Residual sum of squares of the fit over the protocol's samples (units of ``m0f^2``).
    n_samples : int
        Samples of the protocol (compare ``rss`` with ``n_samples sigma^2``).
    converged, at_bound : ndarray of bool
        The fit's flags (:class:`qt1lib.estimate.sir_fit.SIRFitResult`); a fit on a bound cannot
        interpolate the data and its ``rss`` is then positive even with four samples.
    """

    t1_true: np.ndarray
    t1_apparent: np.ndarray
    t1_error: np.ndarray
    psr_apparent: np.ndarray
    sf_apparent: np.ndarray
    rss: np.ndarray
    n_samples: int
    converged: np.ndarray
    at_bound: np.ndarray


def readout_residual_bias(
    r1f,
    psr,
    sf,
    readout_residual,
    protocol: SIRProtocol,
    *,
    m0f=1.0,
    kmf: float = KMF_HUMAN_BRAIN,
    sm: float | None = None,
) -> ReadoutResidualBias:
    """Apparent IR T1 of the zero-residual SIR fit when the readout leaves ``r M0f`` behind.

    Noise-free magnitude data of ``protocol`` are simulated with
    :func:`qt1lib.sequences.sir.sir_signal` (``R1m = R1f``, ``readout_residual = r``) and fitted
    with :func:`qt1lib.estimate.sir_fit.fit_sir` (the same ``kmf`` and ``Sm``, ``R1m = R1f``,
    residual 0), so the only model error is the residual.

    Parameters
    ----------
    r1f, psr, sf : array_like
        Tissue: free-pool R1 (s^-1), pool size ratio, free-pool inversion factor.
    readout_residual : array_like
        Free-pool Mz left by the readout, fraction of M0f in [0, 1); broadcasts with the tissue
        (e.g. shape ``(n_residuals, 1)`` against tissues of shape ``(n_tissues,)``).
    protocol : SIRProtocol
        The acquisition, e.g. :data:`qt1lib.phantom.cohort.SIR_7T` (four samples) or
        :data:`qt1lib.protocols_sir.DENSE_SIR`.
    m0f : array_like, default 1
        Free-pool equilibrium signal (scales ``rss`` by ``m0f^2``).
    kmf : float, default 14.5 s^-1
        Exchange rate m -> f, simulated and fixed in the fit.
    sm : float, optional
        Macromolecular inversion factor; default ``protocol.bound_inversion``.

    Returns
    -------
    ReadoutResidualBias

    Raises
    ------
    ValueError
        For out-of-range tissue parameters or a residual outside [0, 1) (from
        :func:`~qt1lib.sequences.sir.sir_signal`).
    """
    data = sir_signal(r1f, psr, sf, protocol, m0f=m0f, kmf=kmf, sm=sm, readout_residual=readout_residual)
    fit = fit_sir(data, protocol, kmf=kmf, sm=sm)
    t1_true = np.broadcast_to(1.0 / np.asarray(r1f, dtype=float), data.shape[1:])
    return ReadoutResidualBias(
        t1_true=np.array(t1_true),
        t1_apparent=fit.t1,
        t1_error=fit.t1 - t1_true,
        psr_apparent=fit.psr,
        sf_apparent=fit.sf,
        rss=fit.residual**2 * protocol.n_samples,
        n_samples=protocol.n_samples,
        converged=fit.converged,
        at_bound=fit.at_bound,
    )
