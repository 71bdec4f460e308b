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
from .sir import exchange_rates, sir_signal
from .twopool import TISSUES_7T, TwoPool, TwoPoolTissue, gre_signals_twopool

__all__ = [
    "AffineMap",
    "TISSUES_7T",
    "TwoPool",
    "TwoPoolTissue",
    "exchange_rates",
    "gre_signals_twopool",
    "sir_signal",
    "PoolModel",
    "SinglePool",
    "combinations",
    "gre_signals",
    "mpnrage_signals",
    "robust_uni",
    "uni",
]
