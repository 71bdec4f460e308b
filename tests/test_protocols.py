"""Protocol validation and derived timing."""

import numpy as np
import pytest

from qt1lib.protocols import MARQUES_3T, MARQUES_7T, PROTOCOLS, SEED_7T_MP2RAGE, SEED_7T_MP3RAGE, get_protocol


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=lambda p: p.name)
def test_timing_adds_up_to_the_period(protocol):
    gaps = protocol.free_recovery_times
    assert np.all(gaps >= 0)
    assert gaps.sum() + protocol.n_readouts * protocol.train_duration == pytest.approx(protocol.tr_mprage)
    assert protocol.source


def test_seed_protocol_values_and_view():
    p = SEED_7T_MP3RAGE
    assert p.n_readouts == 3 and p.excitations_per_train == 225
    assert p.pairs == ((1, 2), (1, 3))
    assert SEED_7T_MP2RAGE.pairs == ((1, 2),)
    # The view keeps every readout in the model.
    assert SEED_7T_MP2RAGE.n_readouts == 3
    assert SEED_7T_MP2RAGE.inversion_times == p.inversion_times
    assert get_protocol("Marques-7T") is MARQUES_7T
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nope")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"tr_mprage": 0.0}, "tr_mprage"),
        ({"echo_spacing": -1.0}, "echo_spacing"),
        ({"flip_angles": (0.0, 5.0)}, "flip_angles"),
        ({"flip_angles": (4.0, 95.0)}, "flip_angles"),
        ({"flip_angles": (4.0,)}, "flip_angles"),
        ({"inversion_efficiency": 1.2}, "inversion_efficiency"),
        ({"inversion_efficiency": 0.0}, "inversion_efficiency"),
        ({"inversion_times": (0.1, 2.7)}, "inversion_times"),  # first train before the inversion
        ({"inversion_times": (0.8, 1.2)}, "overlap"),  # trains overlap
        ({"inversion_times": (2.7, 0.8)}, "increase"),
        ({"tr_mprage": 3.0}, "tr_mprage"),  # period ends inside the last train
        ({"n_before": 1.5}, "n_before"),
        ({"n_after": 0}, "n_after"),
        ({"used_readouts": (2, 1)}, "used_readouts"),
        ({"used_readouts": (1, 5)}, "used_readouts"),
    ],
)
def test_invalid_protocols_name_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        MARQUES_7T.with_changes(**change)


def test_unknown_field_is_rejected():
    with pytest.raises(TypeError):
        MARQUES_3T.with_changes(flip=3)
