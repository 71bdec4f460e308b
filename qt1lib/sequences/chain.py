"""Steady-state sequences as chains of affine maps of the longitudinal magnetisation.

Between two readouts the longitudinal magnetisation of a voxel evolves linearly: relaxation
over a time ``t`` maps ``M -> E M + (I - E) M0`` (single pool: ``E = exp(-t/T1)``), an ideal
excitation of flip ``alpha`` maps ``M -> cos(alpha) M`` and an inversion ``M -> -eff M``. Every
event is therefore an *affine map* ``M -> A M + b`` of the state vector ``M`` (one entry for a
single pool, two for the free and macromolecular pools of a two-pool model). A whole period
of a steady-state sequence is the composition of its events; its fixed point is the
steady state, and propagating the fixed point through the events gives Mz at every readout.

This is the structure behind Marques et al. 2010 (NeuroImage 49:1271, appendix), written so
that it holds for any number of readouts and any dimension of the state: the closed form of
that appendix is what this chain gives for two readouts and one pool (checked in the tests
against an independent implementation of the closed form).

All maps carry leading batch dimensions (one per voxel, T1 value, B1 value...), so a whole
dictionary or a whole volume is simulated at once without a Python loop over voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AffineMap"]


@dataclass(frozen=True)
class AffineMap:
    """The map ``M -> A @ M + b`` over a batch of state vectors.

    Parameters
    ----------
    A : ndarray, shape (..., d, d)
        Linear part.
    b : ndarray, shape (..., d)
        Offset (same unit as the magnetisation, M0 = 1 for relative units).
    """

    A: np.ndarray
    b: np.ndarray

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the state vector."""
        return self.A.shape[-1]

    @classmethod
    def identity(cls, dim: int, batch_shape: tuple[int, ...] = ()) -> "AffineMap":
        """Identity map of a ``dim``-vector, broadcast to ``batch_shape``."""
        A = np.broadcast_to(np.eye(dim), (*batch_shape, dim, dim)).copy()
        return cls(A, np.zeros((*batch_shape, dim)))

    @classmethod
    def scalar(cls, a: np.ndarray, b: np.ndarray) -> "AffineMap":
        """One-dimensional map ``m -> a m + b`` from arrays ``a`` and ``b`` (broadcast together)."""
        a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
        return cls(a[..., None, None], b[..., None])

    def then(self, other: "AffineMap") -> "AffineMap":
        """Composition: apply ``self`` first, then ``other``."""
        A = other.A @ self.A
        b = (other.A @ self.b[..., None])[..., 0] + other.b
        return AffineMap(A, b)

    def power(self, n: float) -> "AffineMap":
        """The map applied ``n`` times (``n >= 0``).

        A whole ``n``: binary exponentiation (log2(n) products). A fractional ``n`` (the seed
        code's half excitations, :data:`qt1lib.protocols.SEED_CODE_7T_MP2RAGE_HALF_SPLIT`) only for a
        one-dimensional map ``m -> a m + b`` with ``a > 0``: ``m -> a^n m + b (1 - a^n) / (1 - a)``,
        the continuation of the whole powers that ``np.float_power`` gives in the seed code's closed
        form (MASILab/map_t1_mapping ``src/t1_mapping/utils.py``, ``gre_signal``).

        Raises
        ------
        ValueError
            ``n`` negative or not finite; a fractional ``n`` for a map of dimension > 1 (the
            two-pool model) or with ``a <= 0``.
        """
        if not np.isfinite(n) or n < 0:
            raise ValueError(f"power of an affine map needs a non-negative number, got {n!r}")
        if int(n) != n:
            return self._fractional_power(float(n))
        n = int(n)
        batch = np.broadcast_shapes(self.A.shape[:-2], self.b.shape[:-1])
        result = AffineMap.identity(self.dim, batch)
        base = self
        while n:
            if n & 1:
                result = result.then(base)
            n >>= 1
            if n:
                base = base.then(base)
        return result

    def _fractional_power(self, n: float) -> "AffineMap":
        if self.dim != 1:
            raise ValueError(
                f"a fractional power ({n!r}) of a {self.dim}-dimensional affine map is not defined: half "
                "excitations (the seed code's split of an odd count) need the single-pool model"
            )
        a, b = self.A[..., 0, 0], self.b[..., 0]
        if np.any(a <= 0):
            raise ValueError(f"a fractional power ({n!r}) of m -> a m + b needs a > 0 (e.g. flip angles below 90 degrees)")
        an = a**n
        with np.errstate(invalid="ignore", divide="ignore"):
            geometric = np.where(a == 1.0, n, (1.0 - an) / (1.0 - a))  # sum of a^k, k < n, continued to real n
        return AffineMap.scalar(an, b * geometric)

    def apply(self, m: np.ndarray) -> np.ndarray:
        """Image of the state ``m`` (shape ``(..., d)``)."""
        return (self.A @ m[..., None])[..., 0] + self.b

    def fixed_point(self) -> np.ndarray:
        """The state ``m`` with ``A m + b = m``: the steady state of a periodic sequence.

        Solves ``(I - A) m = b``; unique whenever the period relaxes (every eigenvalue of ``A``
        is smaller than one in modulus, true for any finite T1 and positive period).
        """
        batch = np.broadcast_shapes(self.A.shape[:-2], self.b.shape[:-1])
        d = self.dim
        A = np.broadcast_to(self.A, (*batch, d, d))
        b = np.broadcast_to(self.b, (*batch, d))
        if d == 1:
            return b / (1.0 - A[..., 0])
        return np.linalg.solve(np.eye(d) - A, b[..., None])[..., 0]
