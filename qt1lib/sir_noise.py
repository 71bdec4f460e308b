"""The SIR images' noise level, derived from the MP2RAGE's measured noise (no NumPy: the configuration imports it)."""

from __future__ import annotations

import math

__all__ = ["sir_snr_from_mp2rage", "SIR_SNR_DEFAULT"]


def sir_snr_from_mp2rage(
    mp2rage_snr: float = 200.0,
    mp2rage_voxel_mm3: float = 0.7**3,
    sir_voxel_mm3: float = 1.5 * 1.5 * 2.0,
    sampling_time_ratio: float = 0.12,
    effective_echo_time: float = 0.095,
    t2: float = 0.05,
) -> float:
    """SNR (``M0 / sigma``) of an SIR image, derived from the MP2RAGE's measured noise.

    ``SNR_SIR = SNR_MP2RAGE (V_SIR / V_MP2RAGE) sqrt(rho) exp(-TE_eff / T2)``: the SNR of an image
    grows with the voxel volume and the square root of the time spent sampling it (Macovski 1996,
    MRM 36:494, eq. 1), and a spin-echo train reads the free pool after its echo time has decayed it.

    Parameters
    ----------
    mp2rage_snr : float
        The MP2RAGE's SNR at its voxel: 200, the seed's sigma = 0.005 M0 at 0.7 mm (MASILab/map_t1_mapping
        ``examples/measure_noise.py``; DESIGN.md 4.2).
    mp2rage_voxel_mm3, sir_voxel_mm3 : float
        Voxel volumes (mm^3): the seed's 0.7 mm isotropic MP2RAGE, the ``paper`` profile's SIR voxel.
    sampling_time_ratio : float
        Readout sampling time per SIR image over that per MP2RAGE image. 0.12 (assumption: equal total
        scan times, readout duty cycles of about 8 % for the MP2RAGE and 4 % for a TSE-read SIR whose
        four images are acquired one after another).
    effective_echo_time, t2 : float
        Effective echo time of the SIR's spin-echo readout (s) and the tissue's T2 (s): 95 ms, the 3D
        SIR-TSE of the public SIR-qMT toolbox's example (``WIP_3D_4pt_SIR_TSE`` PAR header: TSE factor
        22, TE 95.51 ms), and 50 ms (assumption). With a 15 ms effective TE the SNR would be five times
        higher: the default is the low end of what these assumptions allow.
    """
    for name, value in (("mp2rage_snr", mp2rage_snr), ("mp2rage_voxel_mm3", mp2rage_voxel_mm3),
                        ("sir_voxel_mm3", sir_voxel_mm3), ("sampling_time_ratio", sampling_time_ratio),
                        ("t2", t2)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    if not (math.isfinite(effective_echo_time) and effective_echo_time >= 0):
        raise ValueError(f"effective_echo_time must be >= 0 (s), got {effective_echo_time!r}")
    volume_gain = sir_voxel_mm3 / mp2rage_voxel_mm3
    return float(mp2rage_snr * volume_gain * math.sqrt(sampling_time_ratio) * math.exp(-effective_echo_time / t2))


#: The cohort's default SIR SNR at the ``paper`` profile's 1.5 x 1.5 x 2 mm voxel
#: (:func:`sir_snr_from_mp2rage` with its defaults, about 136).
SIR_SNR_DEFAULT = sir_snr_from_mp2rage()
