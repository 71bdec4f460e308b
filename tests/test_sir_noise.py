"""The SIR SNR derived from the MP2RAGE's noise."""

import math

import pytest

from qt1lib.config import CohortConfig
from qt1lib.sir_noise import SIR_SNR_DEFAULT, sir_snr_from_mp2rage


def test_snr_scales_with_volume_and_the_root_of_sampling_time():
    base = sir_snr_from_mp2rage()
    assert sir_snr_from_mp2rage(sir_voxel_mm3=9.0) == pytest.approx(2 * base)
    assert sir_snr_from_mp2rage(sampling_time_ratio=0.48) == pytest.approx(2 * base)
    assert sir_snr_from_mp2rage(effective_echo_time=0.0) == pytest.approx(base * math.exp(0.095 / 0.05))


def test_default_is_the_derivation_written_out():
    expected = 200.0 * (1.5 * 1.5 * 2.0) / 0.7**3 * math.sqrt(0.12) * math.exp(-0.095 / 0.05)
    assert SIR_SNR_DEFAULT == pytest.approx(expected, rel=1e-12)
    assert CohortConfig().sir_snr == SIR_SNR_DEFAULT


@pytest.mark.parametrize("name", ["mp2rage_snr", "sir_voxel_mm3", "sampling_time_ratio", "t2"])
def test_bad_input_names_the_parameter(name):
    with pytest.raises(ValueError, match=name):
        sir_snr_from_mp2rage(**{name: -1.0})
