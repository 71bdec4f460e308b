"""Acquisition protocols of the MP2RAGE family, with their sources.

An MPnRAGE protocol (Marques et al. 2010, NeuroImage 49:1271) repeats, every ``tr_mprage``
seconds, one adiabatic inversion followed by ``N`` gradient-echo (GRE) readout trains. Train
``k`` has ``n_before + n_after`` excitations of flip angle ``flip_angles[k]`` spaced by
``echo_spacing``; the centre of k-space is acquired by excitation number ``n_before + 1`` at
``inversion_times[k]`` after the inversion. ``n_before`` / ``n_after`` follow Marques'
``NZslices`` convention: ``n_after`` counts the k-space-centre excitation itself. They are whole
counts, with one exception for the seed's public code, which splits an odd count in halves
(225 = 112.5 + 112.5; :data:`SEED_CODE_7T_MP2RAGE_HALF_SPLIT`): the single-pool model evaluates a
half excitation as the seed code does, the two-pool model refuses it.

The seed's public code models the MP3RAGE acquisition with its first two trains only
(:data:`SEED_CODE_7T_MP2RAGE`, :meth:`MPnRAGEProtocol.first_trains`): a protocol that drops a
train, unlike an estimation view, which keeps simulating it.

The MP3RAGE protocol of the seed study (Saunders et al. 2025) has three readouts. An
*estimation view* (:meth:`MPnRAGEProtocol.view`) chooses which readouts an estimator combines
(MP2RAGE uses readouts 1 and 2) while the signal model keeps simulating every readout that
was acquired: the third train changes the steady state of the first two.

Names follow pymp2rage where they are clear (``inversion_efficiency``) and spell out units
otherwise: every time is in seconds, every angle in degrees, field strength in tesla.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .validate import is_integer

__all__ = [
    "MPnRAGEProtocol",
    "SEED_7T_MP3RAGE",
    "SEED_7T_MP2RAGE",
    "SEED_CODE_7T_MP2RAGE",
    "SEED_CODE_7T_MP2RAGE_HALF_SPLIT",
    "MARQUES_7T",
    "MARQUES_3T",
    "PROTOCOLS",
    "get_protocol",
]


@dataclass(frozen=True)
class MPnRAGEProtocol:
    """An MP2RAGE / MP3RAGE acquisition protocol.

    Parameters
    ----------
    name : str
        Short identifier, e.g. ``"seed-7T-MP3RAGE"``.
    tr_mprage : float
        Time between two successive inversion pulses, TR_MP2RAGE (s).
    echo_spacing : float
        Repetition time of the GRE readout, i.e. time between excitations (s).
    inversion_times : tuple of float
        Time from the inversion to the k-space-centre excitation of each readout train (s),
        strictly increasing.
    flip_angles : tuple of float
        Nominal flip angle of each readout train (degrees), in (0, 90].
    n_before : int
        Excitations of each train before the k-space-centre excitation. A half (``112.5``) only
        together with a half ``n_after``: the seed code's split of an odd count (module docstring).
    n_after : int
        Excitations of each train from the k-space-centre excitation (included) to its end.
    inversion_efficiency : float
        Fraction of Mz inverted by the adiabatic pulse, in (0, 1]: Mz -> -eff * Mz.
    field_strength : float
        Main field B0 (T).
    used_readouts : tuple of int, optional
        1-based readouts that estimators combine (``S_1j`` for each ``j`` > 1). Default: all.
    source : str
        Where every number comes from.

    Raises
    ------
    ValueError
        Naming the offending field, when a time is not positive, a flip angle is outside
        (0, 90], the efficiency is outside (0, 1], the lists disagree in length, or the
        readout trains overlap each other or the inversion period.
    """

    name: str
    tr_mprage: float
    echo_spacing: float
    inversion_times: tuple[float, ...]
    flip_angles: tuple[float, ...]
    n_before: int
    n_after: int
    inversion_efficiency: float
    field_strength: float
    used_readouts: tuple[int, ...] | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inversion_times", tuple(float(t) for t in self.inversion_times))
        object.__setattr__(self, "flip_angles", tuple(float(a) for a in self.flip_angles))
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        def positive(name: str, value: float) -> None:
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"protocol {self.name!r}: {name} must be a positive finite number, got {value!r}")

        positive("tr_mprage (s)", self.tr_mprage)
        positive("echo_spacing (s)", self.echo_spacing)
        positive("field_strength (T)", self.field_strength)
        tis = self.inversion_times
        if len(tis) < 1:
            raise ValueError(f"protocol {self.name!r}: inversion_times needs at least one value")
        for k, ti in enumerate(tis):
            positive(f"inversion_times[{k}] (s)", ti)
        if any(b <= a for a, b in zip(tis, tis[1:])):
            raise ValueError(f"protocol {self.name!r}: inversion_times must increase strictly, got {tis}")
        if len(self.flip_angles) != len(tis):
            raise ValueError(
                f"protocol {self.name!r}: flip_angles has {len(self.flip_angles)} values but "
                f"inversion_times has {len(tis)}; give one flip angle per readout"
            )
        for k, a in enumerate(self.flip_angles):
            if not (np.isfinite(a) and 0 < a <= 90):
                raise ValueError(f"protocol {self.name!r}: flip_angles[{k}] must lie in (0, 90] degrees, got {a!r}")
        if not (np.isfinite(self.inversion_efficiency) and 0 < self.inversion_efficiency <= 1):
            raise ValueError(
                f"protocol {self.name!r}: inversion_efficiency must lie in (0, 1], got {self.inversion_efficiency!r}"
            )
        halves = []
        for name in ("n_before", "n_after"):
            value = getattr(self, name)
            half = _is_half(value)
            if not (is_integer(value) or half):
                raise ValueError(f"protocol {self.name!r}: {name} must be an integer count, got {value!r}")
            halves.append(half)
        if halves[0] != halves[1]:
            raise ValueError(
                f"protocol {self.name!r}: n_before = {self.n_before!r} and n_after = {self.n_after!r}: a half "
                "count is accepted only for both, as the halves of an odd count (the seed code's 112.5 + 112.5); "
                "otherwise n_before and n_after must be integer counts"
            )
        if self.n_before < 0:
            raise ValueError(f"protocol {self.name!r}: n_before must be >= 0, got {self.n_before}")
        if self.n_after < 1:
            raise ValueError(f"protocol {self.name!r}: n_after must be >= 1 (it counts the k-space centre), got {self.n_after}")
        gaps = self._gaps()
        if gaps[0] < -1e-12:
            raise ValueError(
                f"protocol {self.name!r}: inversion_times[0] = {tis[0]} s is shorter than the "
                f"{self.n_before} excitations before the k-space centre ({self.n_before * self.echo_spacing:.4f} s): "
                "the first readout train would start before the inversion"
            )
        for k in range(1, len(tis)):
            if gaps[k] < -1e-12:
                raise ValueError(
                    f"protocol {self.name!r}: inversion_times[{k - 1}] and inversion_times[{k}] are "
                    f"{tis[k] - tis[k - 1]:.4f} s apart, less than one readout train "
                    f"({self.train_duration:.4f} s): the trains overlap"
                )
        if gaps[-1] < -1e-12:
            raise ValueError(
                f"protocol {self.name!r}: tr_mprage = {self.tr_mprage} s ends before the last readout train "
                f"(which ends at {tis[-1] + self.n_after * self.echo_spacing:.4f} s)"
            )
        if self.used_readouts is not None:
            used = tuple(int(r) for r in self.used_readouts)
            object.__setattr__(self, "used_readouts", used)
            n = len(tis)
            if len(used) < 2 or used[0] != 1 or len(set(used)) != len(used) or any(not 1 <= r <= n for r in used):
                raise ValueError(
                    f"protocol {self.name!r}: used_readouts must start with readout 1 and name at least two "
                    f"distinct readouts among 1..{n}, got {self.used_readouts!r}"
                )

    def _gaps(self) -> np.ndarray:
        tis = np.asarray(self.inversion_times)
        gaps = np.empty(len(tis) + 1)
        gaps[0] = tis[0] - self.n_before * self.echo_spacing
        gaps[1:-1] = np.diff(tis) - self.train_duration
        gaps[-1] = self.tr_mprage - tis[-1] - self.n_after * self.echo_spacing
        return gaps

    # ------------------------------------------------------------------ derived quantities
    @property
    def n_readouts(self) -> int:
        """Number of GRE readout trains per inversion period."""
        return len(self.inversion_times)

    @property
    def excitations_per_train(self) -> int:
        """Excitations in each readout train, ``n_before + n_after``."""
        return self.n_before + self.n_after

    @property
    def train_duration(self) -> float:
        """Duration of one readout train (s)."""
        return self.excitations_per_train * self.echo_spacing

    @property
    def free_recovery_times(self) -> np.ndarray:
        """Free-recovery gaps TD_0..TD_N (s): inversion to first train, between trains, last train to next inversion."""
        return self._gaps()

    @property
    def flip_angles_rad(self) -> np.ndarray:
        """Nominal flip angles (rad)."""
        return np.deg2rad(np.asarray(self.flip_angles))

    @property
    def readouts(self) -> tuple[int, ...]:
        """1-based readouts that estimators combine (all readouts unless a view was taken)."""
        return self.used_readouts if self.used_readouts is not None else tuple(range(1, self.n_readouts + 1))

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """Readout pairs (1, j) whose combinations S_1j the estimators use."""
        return tuple((1, j) for j in self.readouts[1:])

    # ------------------------------------------------------------------ variants
    def view(self, readouts: tuple[int, ...], name: str | None = None) -> "MPnRAGEProtocol":
        """Estimation view that combines only ``readouts`` but still simulates every readout.

        Parameters
        ----------
        readouts : tuple of int
            1-based readouts to combine, starting with 1, e.g. ``(1, 2)`` for MP2RAGE.
        name : str, optional
            Name of the view; default ``"<name>-view<readouts>"``.
        """
        label = name or f"{self.name}-view{''.join(str(r) for r in readouts)}"
        return replace(self, used_readouts=tuple(readouts), name=label)

    def first_trains(self, n: int, name: str | None = None) -> "MPnRAGEProtocol":
        """The protocol with only its first ``n`` readout trains, ``tr_mprage`` unchanged.

        What the seed's public code does when it keeps two of the three inversion times
        (``times = [times[0], times[1]]``; :data:`SEED_CODE_7T_MP2RAGE`): the dropped trains are
        not simulated, and the time they took becomes free recovery before the next inversion.
        An estimation view (:meth:`view`), by contrast, still simulates every train.

        Parameters
        ----------
        n : int
            Trains kept, 1..``n_readouts``.
        name : str, optional
            Name of the new protocol; default ``"<name>-first<n>"``.

        Raises
        ------
        ValueError
            ``n`` is not an integer in 1..``n_readouts``, or the protocol is an estimation view
            whose ``used_readouts`` need a train that ``n`` drops.
        """
        if not is_integer(n) or not 1 <= n <= self.n_readouts:
            raise ValueError(
                f"protocol {self.name!r}: first_trains needs n (trains kept), an integer in 1..{self.n_readouts}, got {n!r}"
            )
        if self.used_readouts is not None and max(self.used_readouts) > n:
            raise ValueError(
                f"protocol {self.name!r} is a view that combines readouts {self.used_readouts}: first_trains({n}) "
                f"drops readout {max(self.used_readouts)}, which the view needs (used_readouts)"
            )
        return replace(
            self,
            inversion_times=self.inversion_times[:n],
            flip_angles=self.flip_angles[:n],
            name=name or f"{self.name}-first{n}",
        )

    def with_changes(self, **changes) -> "MPnRAGEProtocol":
        """Copy with fields changed (validated again); unknown field names raise ``TypeError``."""
        return replace(self, **changes)

    def describe(self) -> dict:
        """Plain-dict summary, convenient for tables and BIDS-like sidecars."""
        return {
            "name": self.name,
            "TR_MP2RAGE_s": self.tr_mprage,
            "echo_spacing_s": self.echo_spacing,
            "inversion_times_s": list(self.inversion_times),
            "flip_angles_deg": list(self.flip_angles),
            "n_before": self.n_before,
            "n_after": self.n_after,
            "inversion_efficiency": self.inversion_efficiency,
            "field_strength_T": self.field_strength,
            "used_readouts": list(self.readouts),
            "source": self.source,
        }


def _is_half(value: object) -> bool:
    """Whether ``value`` is a real number ``k + 1/2`` (a half excitation count), e.g. 112.5."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(v) and v >= 0 and (2 * v).is_integer() and not v.is_integer())


# ---------------------------------------------------------------------- published protocols
#: The seed study's 7T (Philips) MP3RAGE. Every number is from the MAP authors' public code,
#: MASILab/map_t1_mapping, ``scripts/params.yml``: TR 6 ms, TR_MP2RAGE 8.25 s, TIs 1.010 / 3.310 /
#: 5.610 s, flip angles 4 / 4 / 4 degrees, n = 225 excitations per train, inversion efficiency
#: 0.84. That code splits n = 225 into 112.5 excitations before and after the centre
#: (a half excitation); a train has a whole number of pulses, so we take 112 before the
#: centre and 113 from it on (an assumption, written in the book).
SEED_7T_MP3RAGE = MPnRAGEProtocol(
    name="seed-7T-MP3RAGE",
    tr_mprage=8.25,
    echo_spacing=0.006,
    inversion_times=(1.010, 3.310, 5.610),
    flip_angles=(4.0, 4.0, 4.0),
    n_before=112,
    n_after=113,
    inversion_efficiency=0.84,
    field_strength=7.0,
    source=(
        "Saunders et al. 2025 (Magn Reson Imaging 117:110322); parameters from MASILab/map_t1_mapping "
        "scripts/params.yml; 225 excitations split 112 before / 113 from the k-space centre (assumption)"
    ),
)

#: MP2RAGE view of the seed protocol: S_12 only, with all three readouts simulated.
SEED_7T_MP2RAGE = SEED_7T_MP3RAGE.view((1, 2), name="seed-7T-MP2RAGE")

#: The seed's public code's model of the seed MP3RAGE: its first two trains only, TR_MP2RAGE
#: 8.25 s, flip angles 4 / 4 degrees, 225 excitations per train, efficiency 0.84 (a two-train
#: MP2RAGE whose third train's time is free recovery: TD_2 = 8.25 - 3.31 - 113 x 0.006 = 4.262 s).
#:
#: Source: MASILab/map_t1_mapping at commit 2d6e0860083479f872416dad7afd4532f0ebe11a
#: (2024-01-04), the last version of its T1-map scripts before commit
#: 8c49cb3f5b76945b6a6e0e8dff0c2da47cc89e68 (2024-01-18) removed them:
#: ``scripts/create_t1_map_likelihood.py`` lines 49-54 (``times = [1010, 3310, 5610]``, then
#: ``times = [times[0], times[1]]``) with the histogram ``counts_100M_s1_2_0.005.npy`` (line 61),
#: ``scripts/create_t1_map_lut.py`` line 39 and ``scripts/create_t1_map_likelihood_parallel.py``
#: line 35 (the same truncation); ``src/t1_mapping/mp2rage.py`` lines 123-133 (``MP2RAGE_TR``
#: 8.25, ``n`` [225], ``eff`` 0.84; TR, flip angles and TIs read from the kept scans' JSON
#: sidecars); ``src/t1_mapping/utils.py`` lines 12-68 (``gre_signal``: Marques' closed form for
#: the trains it is given) and 169-173 (``TD[-1] = MP2RAGE_TR - TI_last - n_after TR``: the
#: full TR with two trains). The code at HEAD (7d5eebf2c72ac86105b5ae70325e4f484d7e1e5e,
#: ``create_image.py``) models the trains that its ``params.yml`` lists: the ``params.yml`` of commit
#: 8c49cb3 comments the third train out (lines 6 and 10, ``# - 4`` and ``# - 5.610``; deleted by
#: commit 33d0e204e9c5b389348b743189f27d36d40869ef), the README of HEAD lists all three.
#: The code splits n = 225 into 112.5 + 112.5 (``utils.py`` lines 153-156); this protocol uses
#: the book's 112 + 113 of :data:`SEED_7T_MP3RAGE`, so that it differs from the acquisition in the
#: trains only; :data:`SEED_CODE_7T_MP2RAGE_HALF_SPLIT` is the code's split.
SEED_CODE_7T_MP2RAGE = SEED_7T_MP3RAGE.first_trains(2, name="seed-code-7T-MP2RAGE").with_changes(
    source=(
        "the seed MP3RAGE (Saunders et al. 2025) as the seed's public code models it: first two trains only "
        "(MASILab/map_t1_mapping@2d6e086 scripts/create_t1_map_likelihood.py l. 54, create_t1_map_lut.py l. 39; "
        "src/t1_mapping/mp2rage.py l. 123-133; src/t1_mapping/utils.py l. 12-68, 169-173); "
        "225 excitations split 112 / 113 (assumption, as SEED_7T_MP3RAGE)"
    )
)

#: :data:`SEED_CODE_7T_MP2RAGE` with the seed code's split of n = 225 into 112.5 excitations before
#: and 112.5 from the k-space centre (``n/2`` in ``acq_to_eqn_params``, MASILab/map_t1_mapping@2d6e086
#: ``src/t1_mapping/utils.py`` lines 153-156, evaluated with ``np.float_power`` in ``gre_signal``).
#: Single-pool models only.
SEED_CODE_7T_MP2RAGE_HALF_SPLIT = SEED_CODE_7T_MP2RAGE.with_changes(
    name="seed-code-7T-MP2RAGE-half-split",
    n_before=112.5,
    n_after=112.5,
    source=(
        "as seed-code-7T-MP2RAGE, with the code's split 112.5 / 112.5 of the 225 excitations "
        "(MASILab/map_t1_mapping@2d6e086 src/t1_mapping/utils.py l. 153-156)"
    ),
)

#: Marques' 7T demonstration protocol (JosePMarques/MP2RAGE-related-scripts, DemoForT1Estimation /
#: T1estimateMP2RAGE: B0 7 T, TR_MP2RAGE 6 s, TRFLASH 6.7 ms, TIs 0.8 / 2.7 s, NZslices [35 72],
#: flip angles 4 / 5 degrees, inversion efficiency 0.96).
MARQUES_7T = MPnRAGEProtocol(
    name="Marques-7T",
    tr_mprage=6.0,
    echo_spacing=0.0067,
    inversion_times=(0.8, 2.7),
    flip_angles=(4.0, 5.0),
    n_before=35,
    n_after=72,
    inversion_efficiency=0.96,
    field_strength=7.0,
    source="Marques et al. 2010 (NeuroImage 49:1271); JosePMarques/MP2RAGE-related-scripts demo protocol",
)

#: A 3T MP2RAGE after Marques et al. 2010: TR_MP2RAGE 6.75 s, TR 7.9 ms, TIs 0.8 / 3.2 s, flip
#: angles 4 / 5 degrees, inversion efficiency 0.96 (the value measured in Marques 2010). The
#: excitation counts are not given there: we assume 176 partitions with 6/8 partial Fourier and
#: Marques' rule NZslices = slices * [PF - 0.5, 0.5] = [44, 88] (an assumption).
MARQUES_3T = MPnRAGEProtocol(
    name="Marques-3T",
    tr_mprage=6.75,
    echo_spacing=0.0079,
    inversion_times=(0.8, 3.2),
    flip_angles=(4.0, 5.0),
    n_before=44,
    n_after=88,
    inversion_efficiency=0.96,
    field_strength=3.0,
    source=(
        "after Marques et al. 2010 (NeuroImage 49:1271), 3T protocol; n = 176 x [6/8 - 0.5, 0.5] "
        "by Marques' NZslices rule (assumption)"
    ),
)

PROTOCOLS: dict[str, MPnRAGEProtocol] = {
    p.name: p
    for p in (SEED_7T_MP3RAGE, SEED_7T_MP2RAGE, SEED_CODE_7T_MP2RAGE, SEED_CODE_7T_MP2RAGE_HALF_SPLIT, MARQUES_7T, MARQUES_3T)
}


def get_protocol(name: str) -> MPnRAGEProtocol:
    """Look a published protocol up by name (see ``PROTOCOLS``); unknown names raise ``ValueError``."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; known protocols: {sorted(PROTOCOLS)}") from None

