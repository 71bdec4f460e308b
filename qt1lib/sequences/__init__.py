"""Signal models: MP2RAGE / MP3RAGE steady-state chains (single and two-pool) and inversion recovery."""

from .chain import AffineMap
from .mpnrage import (
    PoolModel,
    SinglePool,
    combinations,
    gre_signals,
    mpnrage_signals,
    robust_uni,
    uni,
)

__all__ = [
    "AffineMap",
    "PoolModel",
    "SinglePool",
    "combinations",
    "gre_signals",
    "mpnrage_signals",
    "robust_uni",
    "uni",
]
