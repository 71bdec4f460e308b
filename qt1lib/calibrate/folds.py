"""Leave-one-subject-out cross-validation folds.

The seed (Saunders et al. 2025) evaluates its network "across four folds" with four subjects:
each fold tests on one subject and trains on the other three. The validation data of early
stopping come from inside the training subjects (slabs, :func:`qt1lib.calibrate.patches.slab_split`),
never from the test subject.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["Fold", "make_folds", "fold_seed"]


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold.

    Attributes
    ----------
    index : int
        1-based fold number.
    test : str
        The held-out subject.
    train : tuple of str
        Subjects whose data train the network (and provide its validation slabs) and fit
        the baselines.

    Raises
    ------
    ValueError
        If the test subject is among the training subjects, or ``train`` is empty or repeats
        a subject.
    """

    index: int
    test: str
    train: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", tuple(self.train))
        if not self.train or len(set(self.train)) != len(self.train):
            raise ValueError(f"fold {self.index}: train must list distinct subjects, got {self.train!r}")
        if self.test in self.train:
            raise ValueError(f"fold {self.index}: test subject {self.test!r} is also a training subject")


def make_folds(subject_ids: Iterable[str]) -> list[Fold]:
    """Leave-one-subject-out folds, in sorted subject order.

    Parameters
    ----------
    subject_ids : iterable of str
        At least two distinct subjects.

    Returns
    -------
    list of Fold
        One fold per subject; fold ``i`` tests on the ``i``-th subject in sorted order.

    Raises
    ------
    ValueError
        On fewer than two subjects or a repeated subject.
    """
    ids = list(subject_ids)
    if len(set(ids)) != len(ids):
        raise ValueError(f"subject_ids must be distinct, got {ids!r}")
    if len(ids) < 2:
        raise ValueError(f"leave-one-subject-out needs at least two subjects, got {ids!r}")
    ids = sorted(ids)
    folds = [Fold(i + 1, s, tuple(t for t in ids if t != s)) for i, s in enumerate(ids)]
    tested = [f.test for f in folds]
    if sorted(tested) != ids or any(f.test in f.train for f in folds):
        raise ValueError("internal error: folds do not test every subject exactly once")
    return folds


def fold_seed(seed: int, index: int) -> int:
    """Independent integer seed of fold ``index`` derived from the study seed (NumPy SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])
