"""Command-line arguments of ``qt1`` and ``qt1-cohort``, and the configuration they give.

``qt1`` follows the BIDS-Apps convention (Gorgolewski et al. 2017, PLoS Comput Biol 13:e1005209):
``qt1 BIDS_DIR OUTPUT_DIR {participant,group}`` with ``--participant-label``; every other option
maps onto a field of :class:`~qt1lib.config.PipelineConfig` (reader settings, noise) or of the
study's :class:`~qt1lib.config.StudyConfig` (profile, seed), so that the command and the book's
chapters share one configuration and one cache.
"""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import B1_UNITS, PROFILES, PipelineConfig, StudyConfig
from ..cpus import usable_cpus

__all__ = ["LEVELS", "Options", "qt1_parser", "cohort_parser", "parse_qt1", "default_workers"]

#: Analysis levels of the BIDS-Apps convention.
LEVELS: tuple[str, ...] = ("participant", "group")

_EPILOG = """\
examples:
  # T1 maps of every participant (four worker processes), then the calibration and statistics
  qt1 /data/bids /data/derivatives/qt1 participant --n-workers 4
  qt1 /data/bids /data/derivatives/qt1 group

  # two participants, session 2, run 1; a scanner export without InversionEfficiency / NumberShots
  qt1 /data/bids /out participant --participant-label 01 sub-02 --session-label 2 --run 1 \\
      --inversion-efficiency 0.96 --number-shots 88,88 --echo-spacing 0.0067

  # a TB1map stored in percent with "Units": "arbitrary"; only the lookup tables
  qt1 /data/bids /out participant --b1-units percent --estimators lut,lut_b1

  # on a running dask scheduler (e.g. a SLURM cluster started with dask-jobqueue)
  qt1 /data/bids /out participant --scheduler tcp://10.0.0.5:8786

  # the digital cohort of the study, then the same commands on it
  qt1-cohort /tmp/cohort --profile smoke --seed 0
  qt1 /tmp/cohort /tmp/out participant && qt1 /tmp/cohort /tmp/out group

exit status: 0 done; 1 a participant or the group step failed (each failure is named);
2 usage error, or a dataset that fails validation (every problem named with its file and field).
"""


def default_workers() -> int:
    """The CPU cores this process may use (:func:`qt1lib.cpus.usable_cpus`)."""
    return usable_cpus()


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _number_shots(text: str) -> int | tuple[int, int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or BEFORE,AFTER (integers), got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise argparse.ArgumentTypeError(f"expected N or BEFORE,AFTER, got {text!r}")


def _label(prefix: str):
    def parse(text: str) -> str:
        label = text.removeprefix(f"{prefix}-")
        if not label.isalnum():
            raise argparse.ArgumentTypeError(f"a BIDS {prefix} label is alphanumeric (with or without '{prefix}-'), "
                                             f"got {text!r}")
        return label
    return parse


def _estimators(text: str) -> tuple[str, ...]:
    from ..estimate.base import estimator_names

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    known = estimator_names()
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown estimator(s) {unknown or [text]}; known: {', '.join(known)}")
    return names


def qt1_parser() -> argparse.ArgumentParser:
    """The parser of ``qt1``."""
    from ..estimate.base import DEFAULT_ESTIMATORS

    p = argparse.ArgumentParser(
        prog="qt1",
        description=textwrap.fill(
            "T1 mapping of MP2RAGE / MP3RAGE data, with the multi-TI SIR reference when present, and its "
            "calibration (a BIDS App). participant: T1 maps (lookup table, B1-corrected lookup table, MAP) of each "
            "participant; with SIR images also the two-pool SIR fit, the registration and the maps in SIR space. "
            "group: the calibration of MAP MP2RAGE T1 to IR T1 over the participants with SIR (leave one "
            "participant out), and the statistics tables.", 100),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bids_dir", type=Path, help="the input BIDS dataset (it must exist; nothing is simulated)")
    p.add_argument("output_dir", type=Path, help="the output folder: a BIDS derivative dataset")
    p.add_argument("analysis_level", choices=LEVELS, help="participant or group")

    sel = p.add_argument_group("which data")
    sel.add_argument("--participant-label", nargs="+", type=_label("sub"), metavar="LABEL",
                     help="participants to process, with or without 'sub-' (default: all)")
    sel.add_argument("--session-label", type=_label("ses"), metavar="LABEL", help="the ses-<label> to read")
    sel.add_argument("--acq", type=_label("acq"), metavar="LABEL", help="the acq-<label> of the MP2RAGE images")
    sel.add_argument("--run", type=_label("run"), metavar="LABEL", help="the run-<label> to read")
    sel.add_argument("--echo", type=_label("echo"), metavar="LABEL", help="the echo-<label> to read")

    est = p.add_argument_group("estimation")
    est.add_argument("--estimators", type=_estimators, metavar="NAMES",
                     help=f"comma-separated registered estimators (default: {','.join(DEFAULT_ESTIMATORS)}, "
                          "without the MP3RAGE ones for two inversions)")
    est.add_argument("--calibration-input", metavar="NAME",
                     help="the estimator whose map is calibrated (default: map_seed_mp2rage, the seed's MAP MP2RAGE)")
    est.add_argument("--sigma", type=_positive_float, metavar="SD",
                     help="noise SD of the MP2RAGE real/imaginary images (image units; default: from the background)")
    est.add_argument("--sir-sigma", type=_positive_float, metavar="SD",
                     help="noise SD of the SIR magnitude images (default: from the background)")
    est.add_argument("--profile", choices=PROFILES, default="quick",
                     help="size of the calibration network and the seed MAP's Monte-Carlo (qt1lib.config): smoke "
                          "(tests), quick (default, the book's), paper (the study at full size)")
    est.add_argument("--seed", type=int, default=0, help="seed of the registration sampling, the seed MAP's "
                     "Monte-Carlo and the calibration (default 0)")
    est.add_argument("--device", default="", help="torch device of the calibration (default: CUDA when available)")

    side = p.add_argument_group("sidecar fields a scanner export may lack (sidecars take precedence)")
    side.add_argument("--inversion-efficiency", type=_positive_float, metavar="EFF",
                      help="InversionEfficiency of the MP2RAGE inversions, in (0, 1]")
    side.add_argument("--number-shots", type=_number_shots, metavar="N|BEFORE,AFTER",
                      help="NumberShots: excitations per readout train, or before,after the k-space centre")
    side.add_argument("--echo-spacing", type=_positive_float, metavar="S",
                      help="RepetitionTimeExcitation (s): the time between excitations of a train")
    side.add_argument("--bound-pool-inversion-factor", type=float, metavar="SM",
                      help="BoundPoolInversionFactor of the SIR images, in [-1, 1]")
    side.add_argument("--b1-units", choices=B1_UNITS,
                      help="unit of the TB1map values, overriding its sidecar's Units")
    side.add_argument("--resample-b1", action="store_true",
                      help="resample a B1 map on another grid onto the MP2RAGE grid (trilinear)")

    masks = p.add_argument_group("masks")
    masks.add_argument("--segmentation", type=Path, metavar="PATH",
                       help="your tissue segmentation: a derivative dataset folder or one sub-<label>_dseg.nii.gz, "
                            "with a dseg.tsv naming its labels (default: a dseg whose dseg.tsv names its labels "
                            "under BIDS_DIR/derivatives, else the automatic segmentation from the MNI152 template)")

    run = p.add_argument_group("execution")
    run.add_argument("--work-dir", type=Path, metavar="DIR",
                     help="working folder holding the cache of every result (default: OUTPUT_DIR/.work, hidden "
                          "from BIDS tools; keep it to rerun without recomputing)")
    run.add_argument("--n-workers", type=int, metavar="N",
                     help="participants computed in parallel, one process each, on a local dask cluster "
                          "(default: the CPU cores, at most one per participant; 1: serially, without dask)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="address of a running dask scheduler (e.g. tcp://host:8786) to compute on instead")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def cohort_parser() -> argparse.ArgumentParser:
    """The parser of ``qt1-cohort``."""
    p = argparse.ArgumentParser(
        prog="qt1-cohort",
        description=textwrap.fill(
            "Write the digital cohort of the qT1 study book as a BIDS dataset: MP3RAGE (complex), B1+ map and "
            "multi-TI SIR of simulated subjects, with their truth under derivatives/phantom.", 100),
        epilog="example:\n  qt1-cohort /tmp/cohort --profile smoke --seed 0\n  qt1 /tmp/cohort /tmp/out participant",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("output_dir", type=Path, help="folder to write (new, empty, or a cohort written before)")
    p.add_argument("--profile", choices=PROFILES, default="quick",
                   help="voxel sizes: smoke 4 mm, quick 2 mm (default), paper 1 mm (qt1lib.config.VOXEL_SIZES)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image noise (default 0)")
    p.add_argument("--n-subjects", type=int, default=4, help="simulated subjects (default 4, as the seed study)")
    p.add_argument("--physics", choices=("literature", "conservative"), default="literature",
                   help="tissue physics (qt1lib.phantom.physics): literature (default; 7 T pool sizes from the "
                        "measured fast IR fraction, R1m != R1f, Bloch inversion efficiency, an imperfect SIR "
                        "readout) or conservative (the cohort of earlier versions)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@dataclass(frozen=True)
class Options:
    """What a ``qt1`` command line asks for.

    Attributes
    ----------
    bids_dir, output_dir, work_dir : Path
    level : {"participant", "group"}
    participants : tuple of str or None
        Labels without ``sub-``; None: all.
    estimators : tuple of str or None
        None: the registry's defaults.
    study : StudyConfig
        The profile's study with the command's pipeline settings.
    n_workers : int
    scheduler : str or None
    progress : bool
    device : str
    """

    bids_dir: Path
    output_dir: Path
    level: str
    participants: tuple[str, ...] | None
    estimators: tuple[str, ...] | None
    study: StudyConfig
    work_dir: Path
    n_workers: int | None
    scheduler: str | None
    progress: bool
    device: str

    @property
    def pipeline(self) -> PipelineConfig:
        """The pipeline configuration (reader settings included)."""
        return self.study.pipeline


def parse_qt1(argv: list[str] | None = None) -> Options:
    """Parse a ``qt1`` command line (``argv`` without the program name).

    Raises
    ------
    SystemExit
        With status 2 for a usage error (argparse), 0 for ``--help``.
    ValueError
        For settings that the configuration rejects (the message names the option's field).
    """
    parser = qt1_parser()
    a = parser.parse_args(argv)
    if a.n_workers is not None and a.n_workers < 1:
        parser.error(f"--n-workers must be at least 1, got {a.n_workers}")
    if a.output_dir.resolve() == a.bids_dir.resolve():
        parser.error("OUTPUT_DIR must not be BIDS_DIR (write the derivatives into a folder of their own, e.g. "
                     "BIDS_DIR/derivatives/qt1)")
    select = {k: v for k, v in (("ses", a.session_label), ("acq", a.acq), ("run", a.run), ("echo", a.echo)) if v}
    study = StudyConfig.for_profile(a.profile).with_overrides(seed=a.seed)
    changes = {
        "select": select, "sigma": a.sigma, "sir_sigma": a.sir_sigma, "random_seed": a.seed,
        "inversion_efficiency": a.inversion_efficiency, "number_shots": a.number_shots,
        "echo_spacing": a.echo_spacing, "bound_pool_inversion_factor": a.bound_pool_inversion_factor,
        "b1_units": a.b1_units, "resample_b1": a.resample_b1,
        "segmentation": None if a.segmentation is None else str(a.segmentation.resolve()),
    }
    if a.calibration_input:
        changes["calibration_input"] = a.calibration_input
    pipeline = replace(study.pipeline, **changes)
    return Options(
        bids_dir=a.bids_dir,
        output_dir=a.output_dir,
        level=a.analysis_level,
        participants=None if a.participant_label is None else tuple(dict.fromkeys(a.participant_label)),
        estimators=a.estimators,
        study=replace(study, pipeline=pipeline),
        work_dir=a.work_dir if a.work_dir is not None else a.output_dir / ".work",
        n_workers=a.n_workers,
        scheduler=a.scheduler,
        progress=not a.no_progress,
        device=a.device,
    )
