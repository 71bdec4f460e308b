"""Estimators that read the data with the seed's public code's model: the two-train MP2RAGE.

The seed's public code (MASILab/map_t1_mapping; :data:`qt1lib.protocols.SEED_CODE_7T_MP2RAGE`)
builds its dictionaries for the first two trains of the MP3RAGE only, with TR_MP2RAGE 8.25 s,
while the data come from three trains. An estimator of this family reads readouts 1 and 2 of the
data, as its parent estimator does, but simulates its tables with that fixed model whatever the
data's protocol: the model mismatch is the point. The contract stays
``T1Estimator(protocol, sigma, **options)``; ``protocol`` is the data's acquisition, and

* it must be the seed's acquisition in readouts 1 and 2 (:func:`check_seed_acquisition`): the
  seed code's model describes that acquisition only, so other data raise ``ValueError`` naming
  the parameter that differs;
* :attr:`~qt1lib.estimate.base.T1Estimator.acquisition` (and ``view``) is the model, renamed
  ``"acquisition"`` as every estimator's; :attr:`SeedCodeModelEstimator.data_acquisition` is the
  data's;
* :meth:`~qt1lib.estimate.base.T1Estimator.parameters` records the model under ``protocol``,
  its name under ``model`` and the data's protocol under ``data_protocol``, so that a cache
  key holds both.

Option ``seed_code_split``: ``"integer"`` (default, :data:`~qt1lib.protocols.SEED_CODE_7T_MP2RAGE`,
the 112 / 113 split of :data:`~qt1lib.protocols.SEED_7T_MP3RAGE`, so that the model differs from
the acquisition in the trains only) or ``"half"`` (:data:`~qt1lib.protocols.SEED_CODE_7T_MP2RAGE_HALF_SPLIT`,
the code's own 112.5 / 112.5).

The registered estimators are in :mod:`qt1lib.estimate.seed_code_lut_estimators` and
:mod:`qt1lib.estimate.seed_code_map_estimators`. They are not in
:data:`~qt1lib.estimate.base.DEFAULT_ESTIMATORS`: they refuse any other acquisition (a user's own
data), so a workflow runs them only where they are named.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from ..protocols import SEED_7T_MP3RAGE, SEED_CODE_7T_MP2RAGE, SEED_CODE_7T_MP2RAGE_HALF_SPLIT, MPnRAGEProtocol
from .base import PosteriorT1, T1Estimator

__all__ = ["SEED_CODE_MODELS", "SEED_CODE_DEFAULTS", "SeedCodeModelEstimator", "check_seed_acquisition"]

#: The seed code's model per value of the option ``seed_code_split``.
SEED_CODE_MODELS: Mapping[str, MPnRAGEProtocol] = MappingProxyType(
    {"integer": SEED_CODE_7T_MP2RAGE, "half": SEED_CODE_7T_MP2RAGE_HALF_SPLIT}
)
#: The option every seed-code estimator adds to its parent's.
SEED_CODE_DEFAULTS: Mapping[str, Any] = MappingProxyType({"seed_code_split": "integer"})

#: Relative tolerance of the comparison with the seed's acquisition (sidecar values converted
#: from ms to s round-trip far better than this).
_RTOL = 1e-6


def check_seed_acquisition(protocol: MPnRAGEProtocol, who: str = "the seed-code model") -> None:
    """Refuse a protocol that is not the seed's acquisition in readouts 1 and 2.

    Compared with :data:`~qt1lib.protocols.SEED_7T_MP3RAGE`: ``tr_mprage``, ``echo_spacing``,
    ``inversion_times[0]``, ``inversion_times[1]``, ``flip_angles[0]``, ``flip_angles[1]`` and the
    excitations per train (``n_before + n_after``; the split is an assumption of this book, not
    a published value, and is not compared). The inversion efficiency and the field strength are
    not acquisition timings and are not compared: the seed code assumes 0.84 whatever the data.

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        The data's acquisition (an estimation view stands for its whole acquisition).
    who : str
        Name used in the message (e.g. the estimator's).

    Raises
    ------
    ValueError
        The protocol has fewer than two readouts, or differs; the message names every differing
        parameter with the data's and the seed's values.
    """
    if protocol.n_readouts < 2:
        raise ValueError(
            f"{who} needs readouts (1, 2); protocol {protocol.name!r} has {protocol.n_readouts} "
            f"(readouts 1..{protocol.n_readouts})"
        )
    seed = SEED_7T_MP3RAGE
    checks = [
        ("tr_mprage (s)", protocol.tr_mprage, seed.tr_mprage),
        ("echo_spacing (s)", protocol.echo_spacing, seed.echo_spacing),
        *((f"inversion_times[{k}] (s)", protocol.inversion_times[k], seed.inversion_times[k]) for k in range(2)),
        *((f"flip_angles[{k}] (degrees)", protocol.flip_angles[k], seed.flip_angles[k]) for k in range(2)),
        ("excitations per train (n_before + n_after)", protocol.excitations_per_train, seed.excitations_per_train),
    ]
    wrong = [f"{name} = {got!r} (the seed's: {want!r})" for name, got, want in checks
             if not np.isclose(got, want, rtol=_RTOL, atol=0.0)]
    if wrong:
        raise ValueError(
            f"{who} models the seed's acquisition (Saunders et al. 2025) as its public code does, and applies "
            f"to that acquisition only; protocol {protocol.name!r} differs in readouts 1-2: {'; '.join(wrong)}. "
            "Use an estimator without the seed-code model for other acquisitions"
        )


class SeedCodeModelEstimator(T1Estimator):
    """Base of the seed-code estimators: the parent estimator with the seed code's fixed model.

    Put it first among the bases, before the parent estimator class (module docstring)::

        class LUTSeedCode(SeedCodeModelEstimator, _LookupTableEstimator): ...

    Attributes
    ----------
    model_protocol : MPnRAGEProtocol
        The seed code's model chosen by ``seed_code_split`` (its published name).
    data_acquisition : MPnRAGEProtocol
        The data's protocol renamed ``"acquisition"`` (source ``""``, no view): ``fit`` expects
        one image per readout of it.

    Raises
    ------
    ValueError
        In addition to the parent's errors: the data's protocol is not the seed's acquisition
        (:func:`check_seed_acquisition`); ``seed_code_split`` is not one of :data:`SEED_CODE_MODELS`.
    """

    defaults: ClassVar[Mapping[str, Any]] = SEED_CODE_DEFAULTS

    def __init__(self, protocol: MPnRAGEProtocol, sigma: float = 0.0, **options: Any) -> None:
        if not isinstance(protocol, MPnRAGEProtocol):
            raise TypeError(f"protocol must be an MPnRAGEProtocol, got {type(protocol).__name__}")
        check_seed_acquisition(protocol, f"estimator {self.name!r}")
        split = options.get("seed_code_split", self.defaults["seed_code_split"])
        if not isinstance(split, str) or split not in SEED_CODE_MODELS:
            raise ValueError(f"option seed_code_split must be one of {tuple(SEED_CODE_MODELS)}, got {split!r}")
        self.model_protocol = SEED_CODE_MODELS[split]
        self.data_acquisition = protocol.with_changes(name="acquisition", source="", used_readouts=None)
        super().__init__(self.model_protocol, sigma, **options)

    def _parameters(self) -> dict[str, Any]:
        return {
            **super()._parameters(),
            "model": self.model_protocol.name,
            "seed_code_split": self.options["seed_code_split"],
            "data_protocol": self.data_acquisition.describe(),
        }

    def fit(self, gre: np.ndarray, b1: np.ndarray | float | None = None) -> PosteriorT1:
        """T1 of every voxel from readouts 1 and 2 of the data, read with the seed code's model.

        Parameters
        ----------
        gre : array_like, complex, shape (data_acquisition.n_readouts, ...)
            GRE images of every readout of the data's protocol (image units).
        b1 : array_like or float, optional
            As :meth:`qt1lib.estimate.base.T1Estimator.fit`.

        Returns
        -------
        PosteriorT1

        Raises
        ------
        ValueError
            ``gre`` does not have one image per readout of the data's protocol; the parent's errors.
        """
        gre = np.asarray(gre)
        n = self.data_acquisition.n_readouts
        if gre.ndim < 1 or gre.shape[0] != n:
            raise ValueError(
                f"gre must have shape ({n}, ...): one image per readout of the data's protocol, got shape {gre.shape}"
            )
        return super().fit(gre[: self.model_protocol.n_readouts], b1)
