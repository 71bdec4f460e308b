"""What a single-pool estimator reads from two-pool tissue: the MT bias of MP2RAGE.

The signals come from the two-pool chain (:mod:`qt1lib.sequences.twopool`); the reading is the
single-pool lookup table of :mod:`qt1lib.estimate.lut`, as a user of MP2RAGE would apply it.
Rioux et al. 2016 (MRM 75:2265) and Asslaender & Flassbeck 2024 (arXiv 2409.05318) explain the
resulting tissue-dependent bias by magnetization transfer.
"""

from __future__ import annotations

import numpy as np

from ..protocols import MPnRAGEProtocol
from ..sequences import uni
from ..sequences.twopool import gre_signals_twopool
from .lut import lut_t1

__all__ = ["apparent_single_pool_t1"]


def apparent_single_pool_t1(
    r1f,
    psr,
    protocol: MPnRAGEProtocol,
    b1=1.0,
    b1_corrected: bool = True,
    **twopool,
) -> np.ndarray:
    """T1 (s) that a single-pool lookup table on ``S_12`` reads from two-pool tissue.

    Simulates the two-pool signals (:func:`qt1lib.sequences.twopool.gre_signals_twopool`), forms ``S_12`` (Marques et al.
    2010, eq. 3) and reads it with the single-pool lookup table
    :func:`qt1lib.estimate.lut.lut_t1`, as a user of MP2RAGE would.

    Parameters
    ----------
    r1f, psr : array_like
        Tissue (see :class:`qt1lib.sequences.twopool.TwoPool`); other two-pool keywords go in ``**twopool``.
    protocol : MPnRAGEProtocol
        The acquisition.
    b1 : array_like
        True relative B1+ of the tissue.
    b1_corrected : bool, default True
        Read with the B1-corrected table at the true B1+ (a perfect B1 map, Marques & Gruetter
        2013), so that only the two-pool physics biases the result; False: the nominal table.

    Returns
    -------
    ndarray
        Apparent T1 (s); values of ``S_12`` beyond the table's monotonic branch map to its ends.
    """
    gre = gre_signals_twopool(r1f, psr, protocol, b1, **twopool)
    s12 = uni(gre[0], gre[1])
    b1 = np.asarray(b1, dtype=float)
    nominal = not b1_corrected or bool(np.all(b1 == 1.0))
    return lut_t1(s12, protocol, None if nominal else b1)
