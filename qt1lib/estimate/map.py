"""Maximum a posteriori (MAP) T1 with posterior mean and standard deviation.

Two estimators share the result container :class:`PosteriorT1` (of every T1 estimator,
:mod:`qt1lib.estimate.base`):

* :class:`SeedMAPModel` / :func:`map_t1_seed`, the seed study's method (Saunders et al.,
  ISMRM 2024 abstract 3819; Saunders et al. 2025; public code MASILab/map_t1_mapping,
  ``scripts/mp2rage_simulation.py``, ``src/t1_mapping/utils.py``, ``src/t1_mapping/mp2rage.py``,
  ``scripts/params.yml``). A Monte-Carlo histogram of the combinations ``S_1j`` per T1 is the
  likelihood; the prior on T1 is uniform; MAP = argmax; a relative-likelihood test rejects
  implausible ``S``. It works on the combinations only and ignores B1+.
* :class:`ExactMAPModel` / :func:`map_t1_exact`, the exact posterior of the complex GRE
  signals with the unknown complex scale (M0 x receive field x phase) integrated out
  analytically, a B1-aware dictionary and no Monte-Carlo noise.

Units and noise convention (both estimators): signals are in units of the equilibrium
magnetisation M0 = 1 (:func:`qt1lib.sequences.gre_signals`), and ``sigma`` is the standard
deviation of the Gaussian noise on the real part and, independently, on the imaginary part of
each GRE image, in the same units. The seed's value is 0.005 (``noise_std`` of
``scripts/params.yml``); with the seed protocol's GRE signals of about 0.02..0.06 this is an
SNR of roughly 4..12 per readout. For data in scanner units, ``sigma`` is the noise standard
deviation of the real (or imaginary) image in those units: the exact estimator's unknown scale
absorbs M0 and the receive field, so only the ratio signal / sigma matters.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.stats import chi2
from threadpoolctl import threadpool_limits

from ..cpus import default_threads
from ..protocols import MPnRAGEProtocol
from ..sequences import gre_signals, uni
from ..validate import require_integer, require_number
from .base import PosteriorT1, _check_store, _Identity  # PosteriorT1: the result of every estimator (re-exported here)
from .lut import DEFAULT_B1_GRID
from .posterior_table import (
    TABLE_B1_RANGE,
    PosteriorTable,
    evaluate_table,
    posterior_table,
    stored_posterior_table,
    sufficient_statistics,
)
from .dense_map import DenseEvaluator, dense_chunk, resolve_device
from .quadratic_map import QUADRATIC_CHUNK, QuadraticEvaluator, quadratic_dictionary

__all__ = [
    "PosteriorT1",
    "SeedMAPModel",
    "map_t1_seed",
    "ExactMAPModel",
    "map_t1_exact",
    "exact_log_likelihood",
    "SEED_SIGMA",
    "SEED_T1_GRID",
    "SEED_N_BINS",
    "SEED_LIKELIHOOD_THRESHOLD",
    "DEFAULT_T1_RANGE",
    "EXACT_METHODS",
]

#: Noise standard deviation per real / imaginary part, relative to M0 (``noise_std`` in
#: MASILab/map_t1_mapping ``scripts/params.yml``).
SEED_SIGMA = 0.005
#: The seed's T1 grid (s): ``np.arange(0.05, 5.05, 0.05)``, i.e. 0.05..5 s in 50 ms steps
#: (``MP2RAGESubject.t1`` in ``src/t1_mapping/mp2rage.py``).
SEED_T1_GRID = np.linspace(0.05, 5.0, 100)
#: Bins per S axis, centres ``np.linspace(-0.5, 0.5, 100)`` (``MP2RAGESubject.m``).
SEED_N_BINS = 100
#: Relative-likelihood threshold (``likelihood_threshold`` in ``scripts/params.yml``).
SEED_LIKELIHOOD_THRESHOLD = 0.5
#: Support (s) of the uniform T1 prior of the exact estimator: the seed's T1 range.
DEFAULT_T1_RANGE = (0.05, 5.0)
#: Priors of the complex scale of the exact estimator (see :class:`ExactMAPModel`).
SCALE_PRIORS = ("flat", "jeffreys")
#: Evaluation methods of the exact estimator: ``"auto"`` (the fastest exact path for the data),
#: the direct grid evaluation (the reference), the sufficient-statistic posterior table
#: (MP2RAGE; :mod:`qt1lib.estimate.posterior_table`) and the quadratic-form evaluation (any readouts;
#: :mod:`qt1lib.estimate.quadratic_map`) and the evaluation on every dense node in torch (any readouts, the
#: path for a GPU; :mod:`qt1lib.estimate.dense_map`).
EXACT_METHODS = ("auto", "grid", "table", "quadratic", "dense")
#: Log-density drop (from the maximum) below which a narrow window's ends must lie: a Gaussian
#: sampled over +-6.4 stds ends at 20.5; a larger value at an end means a skewed tail (grid method).
_TAIL_DROP = 18.0

#: Voxels per chunk of the table method (bounds its memory at about 0.1 kB per voxel of a chunk).
TABLE_CHUNK = 65536


def _check_sigma(sigma: float) -> float:
    return require_number(
        "sigma (noise std per real/imaginary part, units of M0)", float(sigma), low=0, low_inclusive=False
    )


# ============================================================================ seed method
class SeedMAPModel:
    """The seed study's MAP estimator: a Monte-Carlo histogram likelihood of ``S_1j``.

    Model (MASILab/map_t1_mapping, ``scripts/mp2rage_simulation.py``): for every T1 of the grid,
    ``n_trials`` noisy copies of the noise-free GRE signals (M0 = 1, zero phase) get Gaussian
    noise of std ``sigma`` on their real and imaginary parts; the combinations
    ``S_1j`` of ``protocol.pairs`` (:func:`qt1lib.sequences.uni`) are binned to the nearest of
    ``n_bins`` centres ``linspace(-0.5, 0.5, n_bins)`` per axis (1-D histogram for MP2RAGE,
    2-D for MP3RAGE). With a uniform prior on the T1 grid the posterior of a bin is its column of
    counts normalised over T1, so

    * MAP = the grid T1 with the most counts in the bin;
    * posterior mean / std = the moments of that normalised column;
    * relative likelihood ``alpha = Lmax / (Lmax + Lu)``, with ``Lmax = max_T1 p(S | T1)`` the
      histogram density of the bin under its best T1 (counts / (n_trials dS^d), dS = 1/(n_bins-1))
      and ``Lu = 1 / (n_bins dS)^d`` the density of a uniform distribution over the histogram's
      domain (``src/t1_mapping/utils.py``, method ``likelihood``). ``alpha`` is the posterior
      probability, at even prior odds, that ``S`` comes from a tissue of the best-fitting T1 rather
      than from "anything" spread uniformly over the S domain; ``alpha >= threshold`` (0.5 in the
      seed) means exactly ``max_T1 counts(bin, T1) >= n_trials / n_bins^d``: some T1 puts at
      least its uniform share of trials into this bin. It rejects S values that no T1 produces
      at this noise level (CSF beyond the grid, background, artefacts).

    Voxel values are the bin tables interpolated (multi-)linearly at the voxel's S, as the seed
    does with ``RegularGridInterpolator``.

    Differences from the seed's code, on purpose: (1) the seed writes 0 into the T1 table where
    ``alpha < threshold`` before interpolating, which blends voxels near the rejection border
    with 0 s; here the tables keep the MAP and ``valid`` reports the test (the relative
    likelihood interpolated like the tables, compared with the threshold); (2) bins that no
    trial reached (no posterior) give NaN instead of the seed's first grid T1, which its
    threshold then turns into 0; (3) the default
    ``n_trials`` is 1e5 per T1, not the seed's 1e8 (``num_trials``), so that the histogram builds
    in seconds; its Monte-Carlo noise shows in the tables at long T1 (raise ``n_trials``).

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        Acquisition; ``protocol.pairs`` selects ``S_12`` (MP2RAGE view) or ``S_12, S_13``.
    sigma : float
        Noise std per real / imaginary part (units of M0); default the seed's 0.005.
    n_trials : int
        Noisy copies per T1 of the grid (seed: 1e8; default 1e5).
    seed : int or numpy.random.Generator
        Source of the Monte-Carlo noise.
    t1_grid : array_like, optional
        T1 values (s), increasing and positive; default :data:`SEED_T1_GRID`.
    n_bins : int
        Bins per S axis (seed: 100).
    likelihood_threshold : float
        Threshold on the relative likelihood, in [0, 1] (seed: 0.5).
    batch_trials : int
        Trials simulated at once (bounds memory; the histogram is reproducible for a given
        ``seed`` and ``batch_trials``).
    """

    def __init__(
        self,
        protocol: MPnRAGEProtocol,
        sigma: float = SEED_SIGMA,
        n_trials: int = 100_000,
        seed: int | np.random.Generator = 0,
        t1_grid: np.ndarray | None = None,
        n_bins: int = SEED_N_BINS,
        likelihood_threshold: float = SEED_LIKELIHOOD_THRESHOLD,
        batch_trials: int = 5_000,
    ):
        self.protocol = protocol
        self.sigma = _check_sigma(sigma)
        self.n_trials = require_integer("n_trials", n_trials, 1, integral_floats=True)
        self.n_bins = require_integer("n_bins", n_bins, 2, integral_floats=True)
        if not (0.0 <= likelihood_threshold <= 1.0):
            raise ValueError(f"likelihood_threshold must lie in [0, 1], got {likelihood_threshold!r}")
        t1 = SEED_T1_GRID if t1_grid is None else np.asarray(t1_grid, dtype=float)
        if t1.ndim != 1 or len(t1) < 2 or not np.all(np.isfinite(t1)) or np.any(t1 <= 0) or np.any(np.diff(t1) <= 0):
            raise ValueError("t1_grid must be a 1-D array of at least two increasing, positive T1 values (s)")
        self.likelihood_threshold = float(likelihood_threshold)
        self.t1_grid = t1
        self.pairs = protocol.pairs
        self.counts = self._histogram(np.random.default_rng(seed), int(batch_trials))
        self._tables()

    def _histogram(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        d, nb, nt = len(self.pairs), self.n_bins, len(self.t1_grid)
        used = sorted({r for pair in self.pairs for r in pair})
        g = gre_signals(self.t1_grid, self.protocol)  # (n_readouts, n_t1), M0 = 1, zero phase
        counts = np.zeros(nb**d * nt, dtype=np.int64)
        t1_index = np.arange(nt)
        for start in range(0, self.n_trials, batch):  # loop over batches of trials
            n = min(batch, self.n_trials - start)
            noisy = {
                r: g[r - 1] + rng.normal(0.0, self.sigma, (n, nt)) + 1j * rng.normal(0.0, self.sigma, (n, nt))
                for r in used
            }
            flat = np.broadcast_to(t1_index, (n, nt)).copy()
            stride = nt
            for i, j in reversed(self.pairs):
                s = np.nan_to_num(uni(noisy[i], noisy[j]))  # the seed replaces NaN by 0
                k = np.clip(np.rint((s + 0.5) * (nb - 1)), 0, nb - 1).astype(np.int64)  # nearest centre
                flat += k * stride
                stride *= nb
            counts += np.bincount(flat.ravel(), minlength=counts.size)
        return counts.reshape((nb,) * d + (nt,))

    def _tables(self) -> None:
        d, nb = len(self.pairs), self.n_bins
        c = self.counts.astype(float)
        total = c.sum(axis=-1)
        reached = total > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            post = c / total[..., None]  # posterior over the T1 grid (uniform prior)
        self.posterior_table = post
        self.map_table = np.where(reached, self.t1_grid[np.argmax(c, axis=-1)], np.nan)
        mean = (post * self.t1_grid).sum(axis=-1)
        self.mean_table = mean
        self.std_table = np.sqrt(np.maximum((post * (self.t1_grid - mean[..., None]) ** 2).sum(axis=-1), 0.0))
        ds = 1.0 / (nb - 1)
        l_max = c.max(axis=-1) / (self.n_trials * ds**d)
        l_uniform = 1.0 / (nb * ds) ** d
        self.alpha_table = l_max / (l_max + l_uniform)

    def _corners(self, s: np.ndarray):
        """Multi-linear interpolation corners: (flat bin index, weight) for each of 2^d corners."""
        nb = self.n_bins
        pos = (np.clip(s, -0.5, 0.5) + 0.5) * (nb - 1)
        i0 = np.clip(np.floor(pos), 0, nb - 2).astype(np.int64)
        f = pos - i0
        d = s.shape[0]
        for corner in range(2**d):
            index = np.zeros(s.shape[1:], dtype=np.int64)
            weight = np.ones(s.shape[1:])
            for axis in range(d):
                up = (corner >> (d - 1 - axis)) & 1
                index = index * nb + i0[axis] + up
                weight = weight * (f[axis] if up else 1.0 - f[axis])
            yield index, weight

    def _interpolate(self, table: np.ndarray, s: np.ndarray) -> np.ndarray:
        flat = table.reshape(-1, *table.shape[len(self.pairs):])
        out = 0.0
        for index, weight in self._corners(s):
            w = weight.reshape(weight.shape + (1,) * (flat.ndim - 1))
            out = out + np.where(w > 0, w * flat[index], 0.0)
        return out

    def _check_s(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(s, dtype=float)
        d = len(self.pairs)
        if s.ndim < 1 or s.shape[0] != d:
            raise ValueError(
                f"s must have shape ({d}, ...): one row per combination {['S_%d%d' % p for p in self.pairs]} "
                f"of protocol {self.protocol.name!r}, got shape {s.shape}"
            )
        finite = np.all(np.isfinite(s), axis=0)
        if np.any(np.abs(s[:, finite]) > 0.5 + 1e-9):
            raise ValueError(f"s must lie in [-0.5, 0.5] (MP2RAGE combinations), got max |s| = {np.abs(s[:, finite]).max():.4g}")
        return np.where(finite, s, 0.0), finite

    def fit(self, s: np.ndarray) -> PosteriorT1:
        """MAP, posterior mean and std (s) and the relative-likelihood test per voxel.

        Parameters
        ----------
        s : array_like, shape (len(protocol.pairs), ...)
            Combinations ``S_1j`` of each voxel, in [-0.5, 0.5]; non-finite voxels give NaN
            and ``valid`` False.

        Returns
        -------
        PosteriorT1
            ``valid`` is ``alpha >= likelihood_threshold`` (see the class docstring).
        """
        s, finite = self._check_s(s)
        out = {
            name: np.where(finite, self._interpolate(table, s), np.nan)
            for name, table in (("map", self.map_table), ("mean", self.mean_table), ("std", self.std_table))
        }
        alpha = self._interpolate(self.alpha_table, s)
        valid = finite & (alpha >= self.likelihood_threshold) & np.isfinite(out["map"])
        return PosteriorT1(out["map"], out["mean"], out["std"], valid)

    def posterior(self, s: np.ndarray) -> np.ndarray:
        """Posterior probabilities over :attr:`t1_grid`, interpolated at ``s``.

        Returns
        -------
        ndarray, shape (..., len(t1_grid))
            Sums to one over the last axis (NaN where no trial reached the bins).
        """
        s, finite = self._check_s(s)
        post = self._interpolate(self.posterior_table, s)
        return np.where(finite[..., None], post, np.nan)


def map_t1_seed(
    s: np.ndarray,
    protocol: MPnRAGEProtocol,
    sigma: float = SEED_SIGMA,
    n_trials: int = 100_000,
    seed: int | np.random.Generator = 0,
    t1_grid: np.ndarray | None = None,
    n_bins: int = SEED_N_BINS,
    likelihood_threshold: float = SEED_LIKELIHOOD_THRESHOLD,
) -> PosteriorT1:
    """The seed study's MAP T1: :class:`SeedMAPModel` built and applied once.

    See :class:`SeedMAPModel` for the model, the parameters and the meaning of ``valid``.
    Build the model once and call :meth:`SeedMAPModel.fit` to map many volumes.
    """
    model = SeedMAPModel(protocol, sigma, n_trials, seed, t1_grid, n_bins, likelihood_threshold)
    return model.fit(s)


# ============================================================================ exact method
def _used_rows(data: np.ndarray, protocol: MPnRAGEProtocol) -> np.ndarray:
    """The used readouts of ``data`` (all readouts, or already only the used ones)."""
    used = [r - 1 for r in protocol.readouts]
    if data.ndim >= 1 and data.shape[0] == protocol.n_readouts:
        return data[used]
    if data.ndim >= 1 and data.shape[0] == len(used):
        return data
    raise ValueError(
        f"data must have shape (n, ...) with n = {protocol.n_readouts} (every readout of {protocol.name!r}) "
        f"or n = {len(used)} (its used readouts {protocol.readouts}), got shape {data.shape}"
    )


def exact_log_likelihood(
    data: np.ndarray,
    t1: np.ndarray,
    protocol: MPnRAGEProtocol,
    sigma: float,
    b1: np.ndarray | float = 1.0,
    scale_prior: str = "jeffreys",
) -> np.ndarray:
    """Log marginal likelihood of T1 given complex GRE data, the complex scale integrated out.

    Model: ``y_k = c g_k(T1, B1) + n_k`` for the used readouts ``k``, with ``g`` the real
    noise-free signals (:func:`qt1lib.sequences.gre_signals`, M0 = 1), ``c`` an unknown complex
    scale (M0 x receive field x phase) and ``n_k`` complex Gaussian noise, std ``sigma`` on the
    real and on the imaginary part. Completing the square in ``c``,
    ``||y - c g||^2 = ||g||^2 |c - g.y/||g||^2|^2 + ||y||^2 - |g.y|^2/||g||^2``, and integrating
    ``exp(-||y - c g||^2 / (2 sigma^2))`` over the complex plane (flat prior on ``c``) gives
    ``2 pi sigma^2 / ||g||^2 exp(-(||y||^2 - |g.y|^2/||g||^2) / (2 sigma^2))``, hence

    ``log L(T1) = -log ||g||^2 + |g.y|^2 / (2 sigma^2 ||g||^2) + const``

    (marginalisation of linear amplitudes, Bretthorst 1988, Bayesian Spectrum Analysis and
    Parameter Estimation, ch. 3; the constant does not depend on T1 and is dropped). With
    ``scale_prior="jeffreys"`` the prior of ``c`` is ``∝ ||g||^2`` and the first term cancels
    (see :class:`ExactMAPModel`).

    Parameters
    ----------
    data : array_like, shape (n, ...)
        Complex (or real) GRE data: every readout of ``protocol`` or only its used readouts.
    t1 : array_like, shape (n_t1,)
        T1 values (s) to evaluate, > 0.
    protocol : MPnRAGEProtocol
    sigma : float
        Noise std per real / imaginary part (units of the data).
    b1 : array_like
        Relative B1+, broadcast with the voxel shape ``data.shape[1:]``.
    scale_prior : {"flat", "jeffreys"}
        Prior of the complex scale (see :class:`ExactMAPModel`).

    Returns
    -------
    ndarray, shape (n_t1, ...)
        Log-likelihood (up to a constant per voxel). Evaluated exactly (no table), for curves
        and checks; :class:`ExactMAPModel` is the fast estimator.
    """
    sigma = _check_sigma(sigma)
    if scale_prior not in SCALE_PRIORS:
        raise ValueError(f"scale_prior must be one of {SCALE_PRIORS}, got {scale_prior!r}")
    y = _used_rows(np.asarray(data, dtype=complex), protocol)
    t1 = np.asarray(t1, dtype=float)
    if t1.ndim != 1:
        raise ValueError(f"t1 must be 1-D, got shape {t1.shape}")
    vox = y.shape[1:]
    b1 = np.asarray(b1, dtype=float)
    try:
        b1 = np.broadcast_to(b1, vox)
    except ValueError:
        raise ValueError(f"b1 of shape {b1.shape} does not broadcast to the voxel shape {vox}") from None
    used = [r - 1 for r in protocol.readouts]
    t1_b = t1.reshape((-1,) + (1,) * len(vox))
    g = gre_signals(t1_b, protocol, b1[None])[used]  # (n_used, n_t1, *vox)
    n2 = (g**2).sum(axis=0)
    proj = np.abs((g * y[:, None]).sum(axis=0)) ** 2 / n2
    return proj / (2 * sigma**2) - (np.log(n2) if scale_prior == "flat" else 0.0)


@dataclass(frozen=True)
class _Table:
    """Dictionary of the used readouts on a dense log-T1 grid, per B1 node."""

    u: np.ndarray  # (n_dense,) log T1 nodes, uniform
    b1: np.ndarray  # (n_b1,) B1 nodes
    coefs: tuple[np.ndarray, ...]  # 4 x (n_b1 * (n_dense - 1), n_used): spline coefficients in u, by power
    coarse: np.ndarray  # (n_b1, n_coarse, n_used) exact signals on every refine-th node
    norm2: np.ndarray  # (n_b1, n_coarse) ||g||^2
    cross: np.ndarray  # (max(n_b1 - 1, 1), n_coarse) g(B1_j) . g(B1_j+1)


@lru_cache(maxsize=8)
def _build_table(
    protocol: MPnRAGEProtocol, t1_range: tuple[float, float], n_coarse: int, refine: int, b1_nodes: tuple[float, ...]
) -> _Table:
    used = [r - 1 for r in protocol.readouts]
    u = np.linspace(np.log(t1_range[0]), np.log(t1_range[1]), (n_coarse - 1) * refine + 1)
    b1 = np.asarray(b1_nodes)
    g = gre_signals(np.exp(u)[None, :], protocol, b1[:, None])[used]  # (n_used, n_b1, n_dense)
    g = np.moveaxis(g, 0, -1)  # (n_b1, n_dense, n_used)
    spline = CubicSpline(u, g, axis=1)  # not-a-knot; c has shape (4, n_dense - 1, n_b1, n_used)
    c = np.transpose(spline.c, (0, 2, 1, 3)).reshape(4, len(b1) * (len(u) - 1), len(used))
    coefs = tuple(np.ascontiguousarray(part) for part in c)  # cubic, quadratic, linear, constant
    coarse = np.ascontiguousarray(g[:, ::refine])
    norm2 = (coarse**2).sum(axis=-1)
    cross = (coarse[:-1] * coarse[1:]).sum(axis=-1) if len(b1) > 1 else norm2.copy()
    return _Table(u, b1, coefs, coarse, norm2, cross)


def _gregory_weights(n: int) -> np.ndarray:
    """Weights (per unit step) of the end-corrected trapezoidal rule, error O(h^4).

    ``h [3/8, 7/6, 23/24, 1, ..., 1, 23/24, 7/6, 3/8]`` (Press et al., Numerical Recipes, 3rd ed.,
    eq. 4.1.14); interior weights are those of the trapezoidal rule, so a posterior far from the
    ends keeps the trapezoidal rule's exponential accuracy. Needs ``n >= 6``.
    """
    w = np.ones(n)
    w[:3] = w[-3:][::-1] = (3 / 8, 7 / 6, 23 / 24)
    return w



class _SerialPool:
    """The interface of :class:`concurrent.futures.ThreadPoolExecutor` used here, in the calling thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def map(function, items):
        return map(function, items)


def _chunk_pool(n_threads: int, n_chunks: int):
    """A pool of ``min(n_threads, n_chunks)`` threads for the chunks of a fit (NumPy releases the GIL
    in its array loops), or the calling thread alone where that is one."""
    workers = min(n_threads, n_chunks)
    return ThreadPoolExecutor(workers) if workers > 1 else _SerialPool()


class ExactMAPModel:
    """Exact posterior of T1 from complex GRE data, scale marginalised, B1-aware, vectorised.

    Likelihood: :func:`exact_log_likelihood` (complex Gaussian noise, the complex scale
    integrated out). Prior: uniform on T1 in ``t1_range`` (default the seed's 0.05..5 s).
    Outputs per voxel: the MAP, the posterior mean and the posterior std of T1 (s), and ``valid``.

    Numerical scheme (no per-voxel loop; voxels in chunks of ``chunk_size``):

    1. *Dictionary.* The signals of the used readouts on a dense grid uniform in
       ``u = log T1`` (``(n_coarse - 1) * refine + 1`` nodes) and, with a B1 map, on a B1 grid
       (default that of :mod:`qt1lib.estimate.lut`, 0.3..2.0 in steps of 0.01). A not-a-knot cubic
       spline in ``u`` interpolates between T1 nodes; a voxel's signals are linear in B1
       between the two bracketing B1 nodes (relative signal error about 1e-5 between nodes,
       which moves T1 by about 5e-5 of its value).
    2. *Coarse pass.* The log posterior on every ``refine``-th node (``n_coarse`` nodes); the B1
       interpolation is linear, so it commutes with the projection ``g.y``. Posterior moments by
       the trapezoidal rule in ``u`` with the Jacobian ``dT1 = T1 du`` (with Gregory's end
       corrections, :func:`_gregory_weights`). The trapezoidal rule
       integrates a Gaussian of std ``s`` sampled with step ``h`` with a relative error of about
       ``2 exp(-2 pi^2 (s/h)^2)`` (Poisson summation formula): 5e-9 for ``s = h``, 1e-13 for
       ``s = h / 0.8``. The coarse moments are therefore kept wherever the coarse posterior std of
       ``u`` is at least ``narrow_steps`` coarse steps.
    3. *Narrow posteriors* get a window of ``n_fine`` nodes spaced ``fine_step`` posterior stds
       (estimated from the curvature of the coarse maximum), +-6.4 stds around the maximum; the
       moments come from the window. Where an end of the window lies above exp(-18) of the
       maximum (a skewed posterior, or the plateau towards T1 = 0.05 s of short T1 at high SNR,
       which a Gaussian window cuts: std 2 % too small before this rule), ``n_end``-node
       Gauss-Legendre segments from the window's end to one coarse step beyond the farthest
       coarse node above exp(-35) of the maximum are added, and the window's nodes take
       trapezoidal weights (checked against brute-force integration on 600 random voxels of
       SNR 5..1000, both priors: std and mean within 0.5 % of the std).
    4. *Posteriors cut by a prior end* (T1 near 0.05 or 5 s: the narrow window would cross the
       end, or a wide posterior keeps more than exp(-30) of its maximum density there) are
       integrated by ``n_end``-node Gauss-Legendre quadrature on a window from the end over
       the posterior's support (narrow: to 20 decay lengths beyond the vertex; wide: one coarse
       step beyond the farthest coarse node above exp(-35) of the maximum); the kink at the end
       would otherwise cost the trapezoidal rule its accuracy.
    5. *MAP.* Starting from the window's (or, for wide posteriors, the coarse) parabolic vertex,
       three parabolas through three nodes 1/8, 1/64 and 1/512 of the local spacing apart.

    Checked against brute-force integration on 4e5 nodes (tests): moments to about 1e-5
    relative, MAP to about 0.02 ms, at noise levels from 3e-4 to 1e-2 of M0.

    ``valid``: input finite and a goodness-of-fit test passed: when the model holds, the
    residual ``||y||^2 - max_T1 |g.y|^2/||g||^2`` is about ``sigma^2 chi^2`` with ``2 n - 3``
    degrees of freedom (``n`` used complex readouts; 2 real parameters of the scale and T1
    fitted); ``valid`` is False when it exceeds the ``1 - gof_alpha`` quantile (model violation:
    partial volume of tissues with different T1, motion between readouts, a wrong protocol).
    It does not reject background noise (any T1 fits zero signal): there the posterior std is
    close to the prior's (about 1.4 s on 0.05..5 s). ``gof_alpha=None`` skips the test.

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        Acquisition; its used readouts (``protocol.readouts``) enter the likelihood.
    sigma : float
        Noise std per real / imaginary part, units of the data (seed: 0.005 of M0).
    t1_range : (float, float)
        Support of the uniform prior on T1 (s).
    b1_grid : (start, stop, step)
        B1 nodes of the dictionary when a B1 map is given.
    scale_prior : {"flat", "jeffreys"}
        Prior of the complex scale given T1. ``"flat"`` (the prior DESIGN.md 4.2 names):
        ``log L = -log ||g||^2 + |g.y|^2 / (2 sigma^2 ||g||^2)``. ``"jeffreys"`` (default): Jeffreys' prior
        of ``c`` for fixed T1, ``det(I_cc)^(1/2) ∝ ||g||^2`` (Jeffreys 1946, Proc. R. Soc. Lond.
        A 186:453), which cancels the ``-log ||g||^2`` term, leaving the profile
        likelihood ``|g.y|^2 / (2 sigma^2 ||g||^2)``; its maximum is the true T1 for noise-free
        data at any ``sigma``, whereas the flat prior's ``-log ||g||^2`` (an Occam factor) shifts
        the MAP by O(sigma^2): +50 ms at T1 = 1 s for noise-free data at the seed's sigma = 0.005,
        which is why the default is Jeffreys' prior (chapter 02 compares both).
    n_coarse, refine, n_fine, n_end : int
        Coarse nodes (65: a step of 7.2 % in T1 over 0.05..5 s), dense nodes per coarse step
        (32), nodes of the narrow window (17) and of the Gauss-Legendre end window (32).
    narrow_steps, fine_step : float
        The narrow-window switch (1.0 coarse step) and the window's step in posterior stds (0.8).
    chunk_size : int
        Voxels per chunk (2048: fastest on the build machine; memory about 10 kB per voxel).
    gof_alpha : float or None
        Level of the goodness-of-fit test (default 1e-3).
    method : {"auto", "grid", "table", "quadratic", "dense"}
        ``"auto"`` (default): ``"dense"`` where ``device`` is a CUDA device; on the CPU ``"table"`` for two
        used readouts without B1 marginalisation (``b1_sd = 0``), ``"quadratic"`` otherwise. ``"dense"``:
        the log posterior on every dense node, in torch on ``device``, float64
        (:mod:`qt1lib.estimate.dense_map`, which states the scheme); the same bounds against the grid
        evaluation as the quadratic form; posteriors narrower than 1.25 dense steps go to the grid
        evaluation and are counted in :attr:`fit_info`. ``"grid"``: the scheme above, the reference.
        ``"quadratic"``: any number of readouts, with or without B1 marginalisation: the
        log-likelihood as a quadratic form in the data's ``Re(y y^H)`` on a tabulated dictionary,
        with few nodes per voxel (:mod:`qt1lib.estimate.quadratic_map`, which states the scheme and
        what holds); its MAP is within 1 ms (or on a plateau of the posterior where the
        log density differs by less than 1e-3), its std within 1 % and its mean within 1 % of the
        std of the grid evaluation's; voxels it cannot resolve (narrow posteriors cut by a prior
        end or with a skewed tail, narrow posteriors with B1 marginalised, stds under 1.25 dense
        steps) are evaluated by the grid method and counted in :attr:`fit_info`. ``"table"``: MP2RAGE only (two
        used readouts), no B1 marginalisation (``b1_sd = 0``): the posterior depends on the
        data only through two sufficient statistics (and B1), tabulated once per protocol,
        ``t1_range``, ``scale_prior`` and B1 rows for every noise level
        (:mod:`qt1lib.estimate.posterior_table`, which states what holds). Its MAP is within 1 ms,
        its std within 1 % and its mean within 1 % of the std of the grid evaluation's, and
        ``valid`` is the same (where they differ by more, the table is within those bounds of a
        brute-force integration). Voxels in table cells that failed the build's check (about 1 % of the
        cells), whose ``R / sigma^2`` exceeds the table, or whose B1 lies outside the table's rows
        (``table_b1_range``) are evaluated by the grid method; :attr:`fit_info` counts them. The
        dictionary's B1 grid bounds ``b1`` for both methods (a clear error beyond it).
    store : object, optional
        Content-addressed store (:class:`qt1lib.store.Store`) of the posterior tables
        (:func:`~qt1lib.estimate.posterior_table.stored_posterior_table`): read from it, or built
        once and written to it, instead of once per process. Does not change the output.
    table_b1_range : (float, float)
        B1 span of the table's rows, within the B1 grid (default
        :data:`qt1lib.estimate.posterior_table.TABLE_B1_RANGE`, 0.5..1.5, the issue's accuracy
        range; a row every 0.1 of B1 takes about 1 s to build with Jeffreys' prior, 1.5 s flat).
    n_threads : int, optional
        Threads over which the chunks of the table and the quadratic-form evaluations are shared
        (NumPy releases the GIL in its array loops; each chunk's BLAS calls use one thread, so the
        numbers do not depend on it). Default :func:`default_threads`: the CPUs this process may
        use, or ``OMP_NUM_THREADS`` where it is set (dask's workers set it to 1).
    device : str, optional
        Torch device of ``method="dense"`` and of ``"auto"``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        Default: ``"cuda"`` where ``torch.cuda.is_available()``, else ``"cpu"`` (where ``"auto"`` keeps to the
        NumPy paths, the reference). Resolved when the model is made (:attr:`device`).
    dense_chunk_size : int, optional
        Voxels per chunk of ``method="dense"`` (default :func:`~qt1lib.estimate.dense_map.dense_chunk`
        of the device: 32768 on a GPU, 2048 on the CPU); memory grows with it, the numbers do not
        depend on it (``bench/bench_t1_mapping.py --dense-chunk`` times it).
    """

    def __init__(
        self,
        protocol: MPnRAGEProtocol,
        sigma: float,
        t1_range: tuple[float, float] = DEFAULT_T1_RANGE,
        b1_grid: tuple[float, float, float] = DEFAULT_B1_GRID,
        scale_prior: str = "jeffreys",
        n_coarse: int = 65,
        refine: int = 32,
        n_fine: int = 17,
        n_end: int = 32,
        narrow_steps: float = 1.0,
        fine_step: float = 0.8,
        chunk_size: int = 2048,
        gof_alpha: float | None = 1e-3,
        method: str = "auto",
        table_b1_range: tuple[float, float] = TABLE_B1_RANGE,
        store: object | None = None,
        n_threads: int | None = None,
        device: str | None = None,
        dense_chunk_size: int | None = None,
    ):
        self.protocol = protocol
        self.sigma = _check_sigma(sigma)
        lo, hi = (float(v) for v in t1_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
            raise ValueError(f"t1_range must be (min, max) with 0 < min < max (s), got {t1_range!r}")
        self.t1_range = (lo, hi)
        start, stop, step = b1_grid
        if not (0 < start < stop and step > 0):
            raise ValueError(f"b1_grid must be (start, stop, step) with 0 < start < stop and step > 0, got {b1_grid!r}")
        self.b1_nodes = tuple(np.arange(start, stop + step / 2, step).tolist())
        if scale_prior not in SCALE_PRIORS:
            raise ValueError(f"scale_prior must be one of {SCALE_PRIORS}, got {scale_prior!r}")
        self.scale_prior = scale_prior
        self.n_coarse = require_integer("n_coarse", n_coarse, 6, integral_floats=True)
        self.refine = require_integer("refine", refine, 1, integral_floats=True)
        self.n_fine = require_integer("n_fine", n_fine, 6, integral_floats=True)
        self.n_end = require_integer("n_end", n_end, 3, integral_floats=True)
        self.chunk_size = require_integer("chunk_size", chunk_size, 1, integral_floats=True)
        if not (narrow_steps > 0 and fine_step > 0):
            raise ValueError(f"narrow_steps and fine_step must be > 0, got {narrow_steps!r}, {fine_step!r}")
        if gof_alpha is not None and not (0 < gof_alpha < 1):
            raise ValueError(f"gof_alpha must lie in (0, 1) or be None, got {gof_alpha!r}")
        self.narrow_steps, self.fine_step = float(narrow_steps), float(fine_step)
        self.gof_alpha = gof_alpha
        self.n_used = len(protocol.readouts)
        if method not in EXACT_METHODS:
            raise ValueError(f"method must be one of {EXACT_METHODS}, got {method!r}")
        if method == "table" and self.n_used != 2:
            raise ValueError(
                f"method='table' needs two used readouts (MP2RAGE); protocol {protocol.name!r} uses {protocol.readouts}: "
                "use method='grid'"
            )
        self.method = method
        #: The torch device of the dense evaluation (resolved; ``"cpu"`` without CUDA).
        resolved = resolve_device(device) if method in ("auto", "dense") or device is not None else "cpu"
        self.device = resolved if method in ("auto", "dense") else "cpu"  # the other methods run in NumPy
        tlo, thi = (float(v) for v in table_b1_range)
        if not (start - 1e-9 <= tlo < thi <= stop + 1e-9):
            raise ValueError(f"table_b1_range must be (min, max) within the B1 grid [{start}, {stop}], got {table_b1_range!r}")
        self.table_b1_range = (tlo, thi)
        self.store = _check_store(store)
        self.n_threads = default_threads() if n_threads is None else require_integer("n_threads", n_threads, 1)
        self.dense_chunk_size = (dense_chunk(self.device) if dense_chunk_size is None else
                                 require_integer("dense_chunk_size", dense_chunk_size, 1, integral_floats=True))
        #: Counts of the last :meth:`fit`: voxels fitted, by the table, by the quadratic-form
        #: evaluation, by the dense evaluation, by the grid (all of them for ``method="grid"``), and of
        #: those sent to the grid because their B1 lies outside the table's rows.
        self.fit_info: dict[str, int] = {}
        self.u_min, self.u_max = np.log(lo), np.log(hi)
        self.du = (self.u_max - self.u_min) / (self.n_coarse - 1)
        u_c = np.linspace(self.u_min, self.u_max, self.n_coarse)
        base = self.du * _gregory_weights(self.n_coarse) * np.exp(u_c)  # Jacobian dT1 = T1 du
        self._u_coarse = u_c
        # columns: normalisation, sum T1, sum T1^2, sum u, sum u^2
        self._coarse_weights = np.stack([base, base * np.exp(u_c), base * np.exp(2 * u_c), base * u_c, base * u_c**2], axis=1)

    # ---------------------------------------------------------------- tables
    def dictionary(self, with_b1: bool) -> _Table:
        """The (cached) dictionary: 1-D at B1 = 1, or on the B1 grid when ``with_b1``.

        Built on first use by :meth:`fit`; call it beforehand to time the build separately.
        """
        nodes = self.b1_nodes if with_b1 else (1.0,)
        return _build_table(self.protocol, self.t1_range, self.n_coarse, self.refine, nodes)

    @staticmethod
    def clear_dictionaries() -> None:
        """Free the cached dictionaries and posterior tables of every model (a B1 dictionary holds tens of MB)."""
        _build_table.cache_clear()
        quadratic_dictionary.cache_clear()
        posterior_table.cache_clear()
        stored_posterior_table.cache_clear()

    def posterior_table(self, with_b1: bool) -> PosteriorTable:
        """The (cached) posterior table of ``method="table"``: one B1 row, or rows on the B1 grid.

        Built on first use by :meth:`fit` (on the build machine: 0.9 s without B1 and 11 s with
        rows on 0.5..1.5 for Jeffreys' prior, 1.3 s and 16 s for the flat prior); call it
        beforehand to time the build separately.
        """
        nodes = self.b1_nodes if with_b1 else (1.0,)
        if self.store is not None:
            return stored_posterior_table(_Identity(self.store), self.protocol, self.t1_range, self.scale_prior, nodes,
                                          self.table_b1_range)
        return posterior_table(self.protocol, self.t1_range, self.scale_prior, nodes, self.table_b1_range)

    @staticmethod
    def _b1_position(table: _Table, b1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower B1 node index and linear weight of the upper node (``b1`` clipped into the grid)."""
        nodes = table.b1
        if len(nodes) == 1:
            return np.zeros(b1.shape, dtype=np.int64), np.zeros(b1.shape)
        b1 = np.clip(b1, nodes[0], nodes[-1])
        j = np.clip(np.searchsorted(nodes, b1, side="right") - 1, 0, len(nodes) - 2)
        return j, (b1 - nodes[j]) / (nodes[j + 1] - nodes[j])

    # ---------------------------------------------------------------- log-likelihoods
    def _loglik(self, proj: np.ndarray, n2: np.ndarray) -> np.ndarray:
        ll = proj * (0.5 / self.sigma**2)
        return ll - np.log(n2) if self.scale_prior == "flat" else ll

    def _coarse_loglik(self, table: _Table, yr: np.ndarray, yi: np.ndarray, j: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Log-likelihood on the coarse nodes, shape (m, n_coarse); ``yr``, ``yi`` of shape (m, n_used)."""
        m = yr.shape[0]
        if len(table.b1) == 1:
            g = table.coarse[0]
            ar = sum(yr[:, r, None] * g[:, r] for r in range(self.n_used))
            ai = sum(yi[:, r, None] * g[:, r] for r in range(self.n_used))
            return self._loglik((ar * ar + ai * ai) / table.norm2[0], np.broadcast_to(table.norm2[0], (m, self.n_coarse)))
        out = np.empty((m, self.n_coarse))
        for jj in np.unique(j):  # loop over the B1 nodes present in the chunk (voxels are sorted by B1)
            sel = np.nonzero(j == jj)[0]
            ws = w[sel, None]
            g_lo, g_hi = table.coarse[jj], table.coarse[jj + 1]
            ar = sum(yr[sel, r, None] * ((1 - ws) * g_lo[:, r] + ws * g_hi[:, r]) for r in range(self.n_used))
            ai = sum(yi[sel, r, None] * ((1 - ws) * g_lo[:, r] + ws * g_hi[:, r]) for r in range(self.n_used))
            n2 = (1 - ws) ** 2 * table.norm2[jj] + 2 * ws * (1 - ws) * table.cross[jj] + ws**2 * table.norm2[jj + 1]
            out[sel] = self._loglik((ar * ar + ai * ai) / n2, n2)
        return out

    def _window_signals(self, table: _Table, u: np.ndarray, j: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Dictionary signals at log-T1 ``u`` (m, n_nodes) for B1 position (j, w): (m, n_nodes, n_used)."""
        h = table.u[1] - table.u[0]
        x = (u - table.u[0]) / h
        k = np.clip(np.floor(x), 0, len(table.u) - 2).astype(np.int64)
        t = ((x - k) * h)[..., None]

        def evaluate(row: np.ndarray) -> np.ndarray:
            index = row[:, None] * (len(table.u) - 1) + k
            c3, c2, c1, c0 = (np.take(part, index, axis=0) for part in table.coefs)  # (m, n_nodes, n_used)
            return ((c3 * t + c2) * t + c1) * t + c0

        if len(table.b1) == 1:
            return evaluate(j)
        wv = w[:, None, None]
        return (1 - wv) * evaluate(j) + wv * evaluate(j + 1)

    def _window_loglik(self, table, yr, yi, u, j, w) -> tuple[np.ndarray, np.ndarray]:
        g = self._window_signals(table, u, j, w)
        ar = sum(g[..., r] * yr[:, r, None] for r in range(self.n_used))
        ai = sum(g[..., r] * yi[:, r, None] for r in range(self.n_used))
        n2 = sum(g[..., r] ** 2 for r in range(self.n_used))
        proj = (ar * ar + ai * ai) / n2
        return self._loglik(proj, n2), proj

    @staticmethod
    def _combine(logliks: list[np.ndarray], log_weights: np.ndarray) -> np.ndarray:
        """``log sum_q w_q L_q`` over the B1 quadrature nodes (or the single log-likelihood)."""
        if len(logliks) == 1:
            return logliks[0]
        stacked = np.stack(logliks) + log_weights.reshape((-1,) + (1,) * logliks[0].ndim)
        top = stacked.max(axis=0)
        return top + np.log(np.exp(stacked - top).sum(axis=0))

    @staticmethod
    def _vertex(x: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...]) -> np.ndarray:
        """Abscissa of the maximum of the parabola through three points, within [x0, x2].

        Where the parabola is not concave, the abscissa of the largest of the three values.
        """
        x0, x1, x2 = x
        y0, y1, y2 = y
        num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
        den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
        curvature = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
        best = np.choose(np.argmax(np.stack([y0, y1, y2]), axis=0), [x0, x1, x2])
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = np.where(np.isfinite(curvature) & (curvature < 0), x1 - 0.5 * num / den, best)
        return np.clip(np.where(np.isfinite(vertex), vertex, best), x0, x2)

    def _evaluate(self, table, yr, yi, u, positions, log_weights) -> tuple[np.ndarray, np.ndarray]:
        """Log-likelihood and projection ``|g.y|^2/||g||^2`` at nodes ``u`` (m, n) of each voxel."""
        results = [self._window_loglik(table, yr, yi, u, j, w) for j, w in positions]
        return self._combine([a for a, _ in results], log_weights), np.max([b for _, b in results], axis=0)

    def _window_summary(self, u, ll, weights):
        """Parabolic MAP candidate, node spacing there, and posterior mean / std of T1 on a window."""
        rows = np.arange(u.shape[0])
        kf = np.argmax(ll, axis=1)
        kc = np.clip(kf, 1, u.shape[1] - 2)
        x = tuple(u[rows, kc + d] for d in (-1, 0, 1))
        vertex = self._vertex(x, tuple(ll[rows, kc + d] for d in (-1, 0, 1)))
        t1 = np.exp(u)
        q = np.exp(ll - ll[rows, kf][:, None]) * t1 * weights  # Jacobian dT1 = T1 du
        dt = t1 - np.exp(vertex)[:, None]  # centred, against cancellation
        z = q.sum(axis=1)
        m1 = (q * dt).sum(axis=1) / z
        var = np.maximum((q * dt**2).sum(axis=1) / z - m1**2, 0.0)
        return vertex, (x[2] - x[0]) / 2, np.exp(vertex) + m1, np.sqrt(var)

    # ---------------------------------------------------------------- one chunk
    def _fit_chunk(self, table, y, positions, log_weights):
        yr, yi = np.ascontiguousarray(y.real), np.ascontiguousarray(y.imag)  # (m, n_used)
        m = y.shape[0]
        rows = np.arange(m)

        # 1. coarse pass: moments of T1 and of u = log T1
        ll = self._combine([self._coarse_loglik(table, yr, yi, j, w) for j, w in positions], log_weights)
        k = np.argmax(ll, axis=1)
        mom = np.exp(ll - ll[rows, k][:, None]) @ self._coarse_weights
        z = mom[:, 0]
        mean = mom[:, 1] / z
        std = np.sqrt(np.maximum(mom[:, 2] / z - mean**2, 0.0))
        mu = mom[:, 3] / z
        narrow = np.sqrt(np.maximum(mom[:, 4] / z - mu**2, 0.0)) < self.narrow_steps * self.du

        # 2. parabola l(u) ~ l0 + b (u - uk) + c (u - uk)^2 / 2 through the coarse maximum
        kk = np.clip(k, 1, self.n_coarse - 2)
        uk = self._u_coarse[kk]
        lm, l0, lp = ll[rows, kk - 1], ll[rows, kk], ll[rows, kk + 1]
        b, c = (lp - lm) / (2 * self.du), (lp - 2 * l0 + lm) / self.du**2
        centre = self._vertex((uk - self.du, uk, uk + self.du), (lm, l0, lp))
        with np.errstate(divide="ignore", invalid="ignore"):
            s_est = np.clip(np.where(c < 0, 1.0 / np.sqrt(-c), self.du), 1e-12, self.narrow_steps * self.du)

        # 3. windows: uniform steps around the maximum, and Gauss-Legendre against a prior end
        #    where the posterior is cut there (narrow: the window crosses the end; wide: the
        #    end's density exceeds exp(-30) of the maximum)
        h = np.where(narrow, self.fine_step * s_est, self.du / 4)
        half = h * (self.n_fine - 1) / 2
        end_lo, end_hi = ll[:, 0] - ll[rows, k], ll[:, -1] - ll[rows, k]
        upper = np.where(narrow, centre + half > self.u_max, end_hi >= end_lo)
        cut = np.where(narrow, upper | (centre - half < self.u_min), np.maximum(end_lo, end_hi) > -30.0)
        # wide posteriors: the MAP search starts from the coarse vertex
        vertex, spacing = centre.copy(), np.full(m, 4 * self.du)
        proj_max = np.full(m, -np.inf)

        unif = np.nonzero(narrow & ~cut)[0]
        if unif.size:
            start = centre[unif] - half[unif]
            u = start[:, None] + h[unif, None] * np.arange(self.n_fine)
            llw, proj = self._evaluate(table, yr[unif], yi[unif], u, [(j[unif], w[unif]) for j, w in positions], log_weights)
            vertex[unif], spacing[unif], mean[unif], std[unif] = self._window_summary(u, llw, 1.0)
            proj_max[unif] = proj.max(axis=1)
            # a tail the window cuts (an end above exp(-TAIL_DROP) of the maximum, where a Gaussian's
            # ends lie at exp(-20.5): a skewed posterior, or a plateau towards a prior end at short
            # T1 and high SNR): n_end-node Gauss-Legendre segments from the window's end to one
            # coarse step beyond the farthest coarse node above exp(-35) of the maximum (or to the
            # prior end) are added to the window, whose nodes then get trapezoidal weights
            top = llw.max(axis=1)
            tail_lo, tail_hi = llw[:, 0] - top > -_TAIL_DROP, llw[:, -1] - top > -_TAIL_DROP
            tails = np.nonzero(tail_lo | tail_hi)[0]
            if tails.size:
                sel = unif[tails]
                above = ll[sel] - ll[sel, k[sel]][:, None] > -35.0
                first, last = np.argmax(above, axis=1), self.n_coarse - 1 - np.argmax(above[:, ::-1], axis=1)
                edge_lo, edge_hi = u[tails, 0], u[tails, -1]
                far_lo = np.minimum(np.maximum(self._u_coarse[first] - self.du, self.u_min), edge_lo)
                far_hi = np.maximum(np.minimum(self._u_coarse[last] + self.du, self.u_max), edge_hi)
                len_lo = np.where(tail_lo[tails], edge_lo - far_lo, 0.0)
                len_hi = np.where(tail_hi[tails], far_hi - edge_hi, 0.0)
                x, wx = np.polynomial.legendre.leggauss(self.n_end)
                seg_lo = edge_lo[:, None] - len_lo[:, None] * (1 - x) / 2
                seg_hi = edge_hi[:, None] + len_hi[:, None] * (1 + x) / 2
                trap = np.full(self.n_fine, 1.0)
                trap[[0, -1]] = 0.5
                u_all = np.concatenate([seg_lo, u[tails], seg_hi], axis=1)
                w_all = np.concatenate([len_lo[:, None] * wx / 2, h[sel, None] * trap, len_hi[:, None] * wx / 2], axis=1)
                llt, proj = self._evaluate(table, yr[sel], yi[sel], u_all, [(j[sel], w[sel]) for j, w in positions], log_weights)
                _, _, mean[sel], std[sel] = self._window_summary(u_all, llt, w_all)
                proj_max[sel] = np.maximum(proj_max[sel], proj.max(axis=1))

        ends = np.nonzero(cut)[0]
        if ends.size:
            # the window [end - length, end] spans the posterior. Narrow: the distance from the
            # end to the vertex (> 0 inside) plus 20 decay lengths, the smaller of the posterior
            # std and 1 / slope of the log density of u (Jacobian: + u) towards the end. Wide:
            # up to one coarse step beyond the farthest coarse node above exp(-35) of the maximum.
            up, nw = upper[ends], narrow[ends]
            end = np.where(up, self.u_max, self.u_min)
            sign = np.where(up, 1.0, -1.0)
            slope = sign * (b[ends] + 1 + c[ends] * (end - uk[ends]))
            with np.errstate(divide="ignore", invalid="ignore"):
                peak = np.where(c[ends] < 0, uk[ends] - b[ends] / c[ends], centre[ends])
                decay = np.where(slope > 0, np.minimum(s_est[ends], 1.0 / slope), s_est[ends])
            above = ll[ends] - ll[ends, k[ends]][:, None] > -35.0
            first, last = np.argmax(above, axis=1), self.n_coarse - 1 - np.argmax(above[:, ::-1], axis=1)
            support = np.where(up, self.u_max - self._u_coarse[first], self._u_coarse[last] - self.u_min) + self.du
            length = np.where(nw, np.maximum(sign * (end - peak), 0.0) + 20 * decay, support)
            length = np.minimum(length, self.u_max - self.u_min)
            x, wx = np.polynomial.legendre.leggauss(self.n_end)
            x, wx = np.append(x, 1.0), np.append(wx, 0.0)  # the end itself, for the MAP only
            u = end[:, None] - sign[:, None] * length[:, None] * (1 - x) / 2
            llw, proj = self._evaluate(table, yr[ends], yi[ends], u, [(j[ends], w[ends]) for j, w in positions], log_weights)
            vertex_e, spacing_e, mean[ends], std[ends] = self._window_summary(u, llw, wx)
            vertex[ends] = np.where(nw, vertex_e, vertex[ends])
            spacing[ends] = np.where(nw, spacing_e, spacing[ends])
            proj_max[ends] = np.maximum(proj_max[ends], proj.max(axis=1))

        # 4. MAP: parabolas through three nodes around the current vertex, 1/8, 1/64 and 1/512
        #    of the spacing apart (the step shrinks only once the vertex falls inside)
        delta = spacing / 8
        for _ in range(3):
            first = np.minimum(np.maximum(vertex - delta, self.u_min), self.u_max - 2 * delta)
            u = first[:, None] + delta[:, None] * np.arange(3)
            llp, proj = self._evaluate(table, yr, yi, u, positions, log_weights)
            vertex = self._vertex(tuple(u.T), tuple(llp.T))
            proj_max = np.maximum(proj_max, proj.max(axis=1))
            edge = (vertex <= u[:, 0]) | (vertex >= u[:, 2])
            delta = np.where(edge & (vertex > self.u_min) & (vertex < self.u_max), delta, delta / 8)
        t1_map = np.exp(np.clip(vertex, self.u_min, self.u_max))

        valid = np.ones(m, dtype=bool)
        if self.gof_alpha is not None:
            residual = (yr * yr + yi * yi).sum(axis=1) - proj_max
            valid = residual <= self.sigma**2 * chi2.isf(self.gof_alpha, 2 * self.n_used - 3)
        return t1_map, mean, std, valid

    # ---------------------------------------------------------------- public
    def fit(
        self,
        data: np.ndarray,
        b1: np.ndarray | float | None = None,
        b1_sd: float = 0.0,
        n_b1_quadrature: int = 5,
    ) -> PosteriorT1:
        """Posterior summary of T1 for every voxel.

        Parameters
        ----------
        data : array_like, shape (n, ...)
            Complex GRE data (real data is taken as complex with zero imaginary part), either
            every readout of the protocol (``n = protocol.n_readouts``) or only its used
            readouts. Voxels with any non-finite readout give NaN and ``valid`` False.
        b1 : array_like or float, optional
            Relative B1+ per voxel (broadcast to the voxel shape). ``None``: nominal flip angles
            (B1 = 1) with the 1-D dictionary. NaN voxels give NaN and ``valid`` False.
        b1_sd : float
            Standard deviation of the B1 map's error (relative units). If > 0, the likelihood is
            averaged over B1 ~ Normal(b1, b1_sd) by Gauss-Hermite quadrature with
            ``n_b1_quadrature`` nodes (nodes outside the B1 grid are clipped to its ends).
            Accurate while the likelihood varies slowly over B1 +- b1_sd (low SNR); where the
            data pin B1 down better than ``b1_sd`` (high SNR), raise ``n_b1_quadrature``.
        n_b1_quadrature : int
            Quadrature nodes for ``b1_sd > 0`` (5 integrates polynomials of degree 9 exactly).

        Returns
        -------
        PosteriorT1

        Raises
        ------
        ValueError
            If ``data`` has the wrong number of readouts, ``b1`` does not broadcast, lies outside
            the B1 grid or is <= 0, ``b1_sd`` is negative or not finite, or ``b1_sd > 0``
            without ``b1`` or with ``method="table"``.
        """
        y = _used_rows(np.asarray(data, dtype=complex), self.protocol)
        vox = y.shape[1:]
        y = y.reshape(self.n_used, -1).T  # (n_vox, n_used)
        finite = np.all(np.isfinite(y), axis=1)
        with_b1 = b1 is not None
        if with_b1:
            b1 = np.asarray(b1, dtype=float)
            try:
                b1 = np.broadcast_to(b1, vox).reshape(-1)
            except ValueError:
                raise ValueError(f"b1 of shape {b1.shape} does not broadcast to the voxel shape {vox}") from None
            finite &= np.isfinite(b1)
            lo, hi = self.b1_nodes[0], self.b1_nodes[-1]
            b1_ok = b1[finite]
            if b1_ok.size and (b1_ok.min() < lo - 1e-9 or b1_ok.max() > hi + 1e-9):
                raise ValueError(
                    f"b1 spans [{b1_ok.min():.3f}, {b1_ok.max():.3f}], outside the dictionary's B1 grid [{lo}, {hi}]"
                )
        if not (np.isfinite(b1_sd) and b1_sd >= 0):
            raise ValueError(f"b1_sd must be finite and >= 0, got {b1_sd!r}")
        if b1_sd > 0 and not with_b1:
            raise ValueError("b1_sd > 0 needs a B1 map (b1); without one B1 is taken as exactly 1")
        if isinstance(n_b1_quadrature, bool) or int(n_b1_quadrature) != n_b1_quadrature or n_b1_quadrature < 1:
            raise ValueError(f"n_b1_quadrature must be a positive integer, got {n_b1_quadrature!r}")

        if self.method == "table" and b1_sd > 0:
            raise ValueError("method='table' does not marginalise B1 (b1_sd > 0): use method='grid' or 'auto'")
        use_dense = self.method == "dense" or (self.method == "auto" and self.device.startswith("cuda"))
        use_table = self.method == "table" or (self.method == "auto" and not use_dense and self.n_used == 2 and b1_sd == 0)
        use_quadratic = self.method == "quadratic" or (self.method == "auto" and not (use_table or use_dense))

        n_vox = y.shape[0]
        out = {name: np.full(n_vox, np.nan) for name in ("map", "mean", "std")}
        valid = np.zeros(n_vox, dtype=bool)
        todo = np.nonzero(finite)[0]
        self.fit_info = {"voxels": int(todo.size), "table": 0, "quadratic": 0, "dense": 0, "grid": int(todo.size),
                         "b1_outside_table": 0}
        if use_dense:
            todo = self._fit_dense(y, b1 if with_b1 else None, todo, b1_sd, n_b1_quadrature, out, valid)
        elif use_table:
            todo = self._fit_table(y, b1 if with_b1 else None, todo, out, valid)
        elif use_quadratic:
            todo = self._fit_quadratic(y, b1 if with_b1 else None, todo, b1_sd, n_b1_quadrature, out, valid)
        if todo.size:
            self._fit_grid(y, b1 if with_b1 else None, todo, b1_sd, n_b1_quadrature, out, valid)
        return PosteriorT1(*(out[name].reshape(vox) for name in ("map", "mean", "std")), valid.reshape(vox))

    @staticmethod
    def _b1_quadrature(b1_sd: float, n_b1_quadrature: int) -> tuple[np.ndarray, np.ndarray]:
        """B1 offsets and log weights of the Gauss-Hermite quadrature of N(0, b1_sd^2) (one node at 0 if b1_sd = 0)."""
        if b1_sd > 0:
            x, wq = np.polynomial.hermite_e.hermegauss(int(n_b1_quadrature))  # nodes of N(0, 1)
            return b1_sd * x, np.log(wq / wq.sum())
        return np.zeros(1), np.zeros(1)

    def _fit_grid(self, y, b1, todo, b1_sd, n_b1_quadrature, out, valid) -> None:
        """The grid evaluation of voxels ``todo`` of ``y`` (n_vox, n_used), written into ``out`` and ``valid``."""
        with_b1 = b1 is not None
        table = self.dictionary(with_b1)
        offsets, log_weights = self._b1_quadrature(b1_sd, n_b1_quadrature)
        if with_b1:  # sort voxels by B1 so that a chunk touches few B1 nodes
            todo = todo[np.argsort(b1[todo], kind="stable")]
        for begin in range(0, len(todo), self.chunk_size):  # loop over chunks of voxels
            sel = todo[begin : begin + self.chunk_size]
            b1_chunk = b1[sel] if with_b1 else np.ones(len(sel))
            positions = [self._b1_position(table, b1_chunk + off) for off in offsets]
            t1_map, mean, std, ok = self._fit_chunk(table, y[sel], positions, log_weights)
            out["map"][sel], out["mean"][sel], out["std"][sel], valid[sel] = t1_map, mean, std, ok

    def _fit_quadratic(self, y, b1, todo, b1_sd, n_b1_quadrature, out, valid) -> np.ndarray:
        """The quadratic-form evaluation of voxels ``todo``; returns those left to the grid evaluation."""
        with_b1 = b1 is not None
        evaluator = QuadraticEvaluator(self, with_b1)
        table = self.dictionary(with_b1)
        offsets, log_weights = self._b1_quadrature(b1_sd, n_b1_quadrature)
        limit = None if self.gof_alpha is None else self.sigma**2 * chi2.isf(self.gof_alpha, 2 * self.n_used - 3)
        if with_b1:  # sort voxels by B1 so that a chunk touches few B1 nodes
            todo = todo[np.argsort(b1[todo], kind="stable")]
        chunks = [todo[begin : begin + QUADRATIC_CHUNK] for begin in range(0, len(todo), QUADRATIC_CHUNK)]

        def evaluate(sel: np.ndarray) -> tuple[np.ndarray, ...]:
            b1_chunk = b1[sel] if with_b1 else np.ones(len(sel))
            positions = [self._b1_position(table, b1_chunk + off) for off in offsets]
            return evaluator.fit(y[sel], positions, log_weights, b1_chunk, b1_sd)

        rest = []
        # one BLAS thread per chunk: the matrix products then round the same way whatever the
        # machine's, a dask worker's or this model's thread settings (byte-identical derivatives)
        with threadpool_limits(1, user_api="blas"), _chunk_pool(self.n_threads, len(chunks)) as pool:
            for sel, (t1_map, mean, std, proj_max, left) in zip(chunks, pool.map(evaluate, chunks)):  # loop over chunks, in order
                self._store_quadratic(y, sel, t1_map, mean, std, proj_max, left, limit, out, valid, rest)
        rest = np.concatenate(rest) if rest else np.zeros(0, dtype=np.int64)
        self.fit_info.update(quadratic=int(todo.size - rest.size), grid=int(rest.size))
        return rest

    def _fit_dense(self, y, b1, todo, b1_sd, n_b1_quadrature, out, valid) -> np.ndarray:
        """The dense evaluation of voxels ``todo`` on :attr:`device`; returns those left to the grid evaluation."""
        with_b1 = b1 is not None
        evaluator = DenseEvaluator(self, with_b1, self.device)
        table = self.dictionary(with_b1)
        offsets, log_weights = self._b1_quadrature(b1_sd, n_b1_quadrature)
        limit = None if self.gof_alpha is None else self.sigma**2 * chi2.isf(self.gof_alpha, 2 * self.n_used - 3)
        if with_b1:  # sort voxels by B1 so that a chunk touches few B1 nodes
            todo = todo[np.argsort(b1[todo], kind="stable")]
        size = self.dense_chunk_size
        rest = []
        for begin in range(0, len(todo), size):  # loop over chunks of voxels
            sel = todo[begin : begin + size]
            b1_chunk = b1[sel] if with_b1 else np.ones(len(sel))
            positions = [self._b1_position(table, b1_chunk + off) for off in offsets]
            t1_map, mean, std, proj_max, left = evaluator.fit(y[sel], positions, log_weights)
            self._store_quadratic(y, sel, t1_map, mean, std, proj_max, left, limit, out, valid, rest)
        rest = np.concatenate(rest) if rest else np.zeros(0, dtype=np.int64)
        self.fit_info.update(dense=int(todo.size - rest.size), grid=int(rest.size))
        return rest

    @staticmethod
    def _store_quadratic(y, sel, t1_map, mean, std, proj_max, left, limit, out, valid, rest) -> None:
        """Write one chunk's quadratic-form results into ``out`` and ``valid``; append its left voxels to ``rest``."""
        done, keep = sel[~left], ~left
        out["map"][done], out["mean"][done], out["std"][done] = t1_map[keep], mean[keep], std[keep]
        if limit is None:
            valid[done] = True
        else:
            valid[done] = (np.abs(y[done]) ** 2).sum(axis=1) - proj_max[keep] <= limit
        rest.append(sel[left])

    def _fit_table(self, y, b1, todo, out, valid) -> np.ndarray:
        """The table evaluation of voxels ``todo``; returns those left to the grid evaluation."""
        table = self.posterior_table(b1 is not None)
        limit = None if self.gof_alpha is None else self.sigma**2 * chi2.isf(self.gof_alpha, 2 * self.n_used - 3)
        chunks = [todo[begin : begin + TABLE_CHUNK] for begin in range(0, len(todo), TABLE_CHUNK)]

        def evaluate(sel: np.ndarray):
            a, b, c = sufficient_statistics(y[sel].T)
            return evaluate_table(table, a, b, c, self.sigma, None if b1 is None else b1[sel], limit)

        rest = []
        with threadpool_limits(1, user_api="blas"), _chunk_pool(self.n_threads, len(chunks)) as pool:
            for sel, res in zip(chunks, pool.map(evaluate, chunks)):  # loop over chunks, in order
                done, keep = sel[~res.fallback], ~res.fallback
                out["map"][done], out["mean"][done], out["std"][done] = res.map[keep], res.mean[keep], res.std[keep]
                valid[done] = res.valid[keep]
                rest.append(sel[res.fallback])
        rest = np.concatenate(rest) if rest else np.zeros(0, dtype=np.int64)
        outside = 0
        if b1 is not None and rest.size:
            lo, hi = table.b1[0], table.b1[-1]
            outside = int(np.count_nonzero((b1[rest] < lo - 1e-9) | (b1[rest] > hi + 1e-9)))
        self.fit_info.update(table=int(todo.size - rest.size), grid=int(rest.size), b1_outside_table=outside)
        return rest


def map_t1_exact(
    data: np.ndarray,
    protocol: MPnRAGEProtocol,
    sigma: float,
    b1: np.ndarray | float | None = None,
    b1_sd: float = 0.0,
    n_b1_quadrature: int = 5,
    **options,
) -> PosteriorT1:
    """Exact MAP T1 with posterior mean and std from complex GRE data.

    Shorthand for ``ExactMAPModel(protocol, sigma, **options).fit(data, b1, b1_sd, n_b1_quadrature)``; see
    :class:`ExactMAPModel` for the model, the numerical scheme and ``valid``.

    Parameters
    ----------
    data : array_like, shape (n, ...)
        Complex GRE data of every readout (or of the used readouts) of ``protocol``.
    protocol : MPnRAGEProtocol
        Acquisition and estimation view (MP2RAGE: ``SEED_7T_MP2RAGE``; MP3RAGE: ``SEED_7T_MP3RAGE``).
    sigma : float
        Noise std per real / imaginary part, units of the data (seed: 0.005 of M0).
    b1 : array_like or float, optional
        Relative B1+ map; ``None`` for nominal flip angles.
    b1_sd : float
        Std of the B1 map's error, marginalised by quadrature when > 0.
    n_b1_quadrature : int
        Gauss-Hermite nodes of that quadrature.
    **options
        Keyword arguments of :class:`ExactMAPModel` (``t1_range``, ``chunk_size``, ``gof_alpha``...).
    """
    return ExactMAPModel(protocol, sigma, **options).fit(data, b1, b1_sd, n_b1_quadrature)
