"""The per-subject steps of the study, each returning a typed result, all cached through one store.

Data flow (one subject; every step reads its inputs, keys itself in the
:class:`~qt1lib.store.Store` by parameters, input content and code, and publishes its maps as
BIDS derivatives):

=================  ===========================================================================
module             step
=================  ===========================================================================
``dataset``        the dataset: the embedded digital cohort (``bids_dir=None``), or a dataset on
                   disk used as it is; :func:`open_workspace` returns the :class:`Workspace`
                   every step takes (its reader settings, its subjects with SIR);
                   :func:`open_study_workspace` the one a chapter opens from its parameters
``noise``          noise level: given, the cohort's, or from the image background
``masks``          brain mask, estimation region, segmentations, and the files they came from
``mp2rage``        T1 maps on the MP2RAGE grid, one store entry per estimator -> :class:`MP2RAGEMaps`
``sir``            the two-pool SIR fit, IR T1 = 1/R1f -> :class:`SIRMaps`
``sir_space``      registration, resampling into SIR space, tissues -> :class:`SIRSpaceSubject`
``decomposition``  the MP2RAGE-IR discrepancy split by source (cohort only)
``agreement``      voxel tables for the statistics
``calibration``    the calibration network's subjects; held-out calibrated maps as derivatives
=================  ===========================================================================

Only the study runner and the command line import this package from outside it.
"""

from .agreement import agreement_table, b1_voxel_table
from .calibration import CALIBRATED_DESC, calibration_subjects, cohort_table, write_calibrated_maps
from .dataset import cohort_parameters, ensure_cohort, is_cohort_folder, open_workspace
from .decomposition import TERM_DESCRIPTIONS, TERMS, cohort_variant, decompose_subject, decomposition_table, true_t1
from .masks import MaskSource, brain_mask, estimation_region, signal_mask
from .mp2rage import MP2RAGEMaps, T1Estimate, mp2rage_maps
from .noise import estimate_noise_sigma, noise_sigma
from .sir import SIRMaps, sir_maps
from .sir_space import SIRSpaceSubject, resample_to_sir, rigid_transform, sir_space_subject
from .study_workspace import open_study_workspace
from .workspace import DerivativeEntry, Workspace, cached_images

__all__ = [
    "Workspace",
    "DerivativeEntry",
    "cached_images",
    "open_workspace",
    "open_study_workspace",
    "ensure_cohort",
    "is_cohort_folder",
    "cohort_parameters",
    "estimate_noise_sigma",
    "noise_sigma",
    "MaskSource",
    "brain_mask",
    "estimation_region",
    "signal_mask",
    "T1Estimate",
    "MP2RAGEMaps",
    "mp2rage_maps",
    "SIRMaps",
    "sir_maps",
    "SIRSpaceSubject",
    "sir_space_subject",
    "resample_to_sir",
    "rigid_transform",
    "TERMS",
    "TERM_DESCRIPTIONS",
    "true_t1",
    "cohort_variant",
    "decompose_subject",
    "decomposition_table",
    "b1_voxel_table",
    "agreement_table",
    "calibration_subjects",
    "cohort_table",
    "CALIBRATED_DESC",
    "write_calibrated_maps",
]
