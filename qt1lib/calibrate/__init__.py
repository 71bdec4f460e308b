"""Calibration of MAP MP2RAGE T1 to the inversion-recovery reference with a patch-based ResNet-18.

The seed (Saunders et al. 2025, Magn. Reson. Imaging 117:110322) trains "a patch-based
ResNet-18 to calibrate the MAP MP2RAGE T1 estimates to the multi-TI IR T1 values" across four
folds. Everything else (inputs, patch size, target, loss, optimiser, epochs) is left open and
is a parameter here (:class:`CalibrationConfig`), with defaults that state their source.

Modules
-------
data       SubjectData (maps in the space of the IR reference), normalisation.
config     CalibrationConfig: hyper-parameters (the cache key of a trained model).
resnet     ResNet-18 (BasicBlock [2, 2, 2, 2]) for 2-D / 3-D patches, torch.nn only.
patches    Balanced patch sampling, extraction, whole-volume (sliding-window) inference.
folds      Leave-one-subject-out folds.
train      Training with early stopping; the model a store entry, its checkpoint in the entry's scratch.
baselines  No calibration, global linear fit, per-tissue linear fit.
crossval   run_cross_validation: every fold, every method, a tidy voxel table, the baselines' coefficients.
results    cached_cross_validation: the saved cross-validation of chapters 06/07, a store entry of TSV tables.

Typical use (chapters 06/07)::

    subjects = {"sub-01": SubjectData(inputs={"t1": t1_map, "b1": b1_map}, target=ir_t1,
                                      mask=brain, labels=dseg), ...}
    config = CalibrationConfig(channels=("t1", "b1"), patch_shape=(32, 32))
    store = qt1lib.store.Store(work_dir / "store")
    result, reused = cached_cross_validation(subjects, config, seed=0, store=store)
    qt1lib.stats.fold_summary(result.metrics)
"""

from .baselines import LinearCalibration, fit_global_linear, fit_linear, fit_tissue_linear, no_calibration
from .config import CalibrationConfig
from .crossval import (
    BASELINE_COLUMNS,
    HISTORY_COLUMNS,
    METHOD_NAMES,
    METHODS,
    CrossValidationResult,
    baseline_rows,
    run_cross_validation,
    voxel_table,
)
from .data import (
    INPUT_CHANNELS,
    T1_CHANNEL,
    TISSUE_LABELS,
    Normalisation,
    SubjectData,
    denormalised_output,
    fit_normalisation,
    normalised_inputs,
    normalised_target,
)
from .folds import Fold, fold_seed, make_folds
from .patches import (
    extract_patches,
    pad_volume,
    predict_centres,
    sample_centres,
    slab_split,
    sliding_window_inference,
)
from .resnet import BasicBlock, ResNet18
from .results import (
    RESULT_STEP,
    cached_cross_validation,
    read_result,
    result_entry,
    result_parameters,
    stored_results,
    write_result,
)
from .train import (
    MODEL_STEP,
    TrainedModel,
    build_model,
    resolve_device,
    train_model,
    training_fingerprint,
    training_parameters,
)

__all__ = [
    "BASELINE_COLUMNS",
    "HISTORY_COLUMNS",
    "MODEL_STEP",
    "RESULT_STEP",
    "BasicBlock",
    "CalibrationConfig",
    "CrossValidationResult",
    "Fold",
    "INPUT_CHANNELS",
    "LinearCalibration",
    "METHODS",
    "METHOD_NAMES",
    "Normalisation",
    "ResNet18",
    "SubjectData",
    "T1_CHANNEL",
    "TISSUE_LABELS",
    "TrainedModel",
    "baseline_rows",
    "build_model",
    "cached_cross_validation",
    "extract_patches",
    "denormalised_output",
    "fit_global_linear",
    "fit_linear",
    "fit_normalisation",
    "fit_tissue_linear",
    "fold_seed",
    "make_folds",
    "no_calibration",
    "normalised_inputs",
    "normalised_target",
    "pad_volume",
    "predict_centres",
    "read_result",
    "result_entry",
    "result_parameters",
    "resolve_device",
    "run_cross_validation",
    "sample_centres",
    "slab_split",
    "sliding_window_inference",
    "stored_results",
    "train_model",
    "training_fingerprint",
    "training_parameters",
    "voxel_table",
    "write_result",
]
