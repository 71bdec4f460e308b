"""Noise level of an acquisition: given, the digital cohort's, or estimated from the image background."""

from __future__ import annotations

import numpy as np

from .workspace import Workspace

__all__ = ["estimate_noise_sigma", "noise_sigma"]


def estimate_noise_sigma(magnitude: np.ndarray, cut: float = 2.0, n_iter: int = 50) -> float:
    """Noise standard deviation per real/imaginary part from the background of magnitude images.

    In background voxels the magnitude of complex Gaussian noise is Rayleigh distributed with
    scale ``sigma``. The estimate is the maximum-likelihood scale of a Rayleigh distribution
    truncated to ``[0, t]`` and fitted to the magnitudes below ``t = cut * sigma``, iterated to
    a fixed point (the lower part of the histogram, as Sijbers et al. 2007, Phys Med Biol
    52:1335): setting the derivative of the truncated log-likelihood to zero gives

    ``sigma^2 = (mean(x^2) + t^2 e^(-a) / (1 - e^(-a))) / 2``, with ``a = t^2 / (2 sigma^2)``.

    Voxels with signal lie far above ``t`` and do not enter. Start: the 5 % quantile of all
    magnitudes over the Rayleigh 5 % quantile (an overestimate unless every voxel is background).

    Parameters
    ----------
    magnitude : array_like
        Magnitude images (any shape; all voxels pooled). Needs background (air) voxels.
    cut : float
        Truncation point in units of sigma (2: 86 % of the background enters).
    n_iter : int
        Fixed-point iterations.

    Returns
    -------
    float
        sigma (image units); 0 for noise-free images with an exactly zero background.
    """
    if not (np.isfinite(cut) and cut > 0.5):
        raise ValueError(f"cut (noise standard deviations) must be > 0.5, got {cut!r}")
    m = np.abs(np.asarray(magnitude, dtype=float)).ravel()
    m = m[np.isfinite(m)]
    if m.size == 0:
        raise ValueError("magnitude has no finite voxel to estimate the noise from")
    sigma = float(np.quantile(m, 0.05) / np.sqrt(-2 * np.log(0.95)))
    for _ in range(int(n_iter)):  # fixed-point iterations, not voxels
        if sigma == 0:
            return 0.0
        t = cut * sigma
        x = m[m < t]
        if x.size < 10:
            raise ValueError("too few background voxels to estimate the noise level")
        a = t**2 / (2 * sigma**2)
        update = np.sqrt((np.mean(x**2) + t**2 * np.exp(-a) / -np.expm1(-a)) / 2)
        converged = abs(update - sigma) <= 1e-6 * sigma
        sigma = float(update)
        if converged:
            break
    return sigma


def noise_sigma(ws: Workspace, magnitude: np.ndarray, acquisition: str = "mp2rage") -> float:
    """Noise standard deviation of one acquisition.

    The configuration's (``sigma`` / ``sir_sigma``), else the digital cohort's
    (``parameters["noise_sigma"]`` / ``["sir_noise_sigma"]``), else estimated from the image
    background (:func:`estimate_noise_sigma`).

    Parameters
    ----------
    ws : Workspace
    magnitude : ndarray
        Magnitude images of the acquisition (for the background estimate).
    acquisition : {"mp2rage", "sir"}

    Returns
    -------
    float
        sigma (image units), 0 for noise-free data.
    """
    if acquisition not in ("mp2rage", "sir"):
        raise ValueError(f"acquisition must be 'mp2rage' or 'sir', got {acquisition!r}")
    given = ws.config.sigma if acquisition == "mp2rage" else ws.config.sir_sigma
    if given is not None:
        return float(given)
    if ws.cohort is not None:
        return float(ws.cohort["noise_sigma" if acquisition == "mp2rage" else "sir_noise_sigma"])
    return estimate_noise_sigma(magnitude)
