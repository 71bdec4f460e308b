"""Entry points of the console scripts ``qt1`` and ``qt1-cohort``: messages and exit status.

Exit status: 0 done; 1 a participant (or the group step) failed, each failure named on stderr;
2 a usage error (argparse) or a dataset that fails validation: the message names every problem's
file and field (:class:`qt1lib.bids.BIDSValidationError`), and nothing is computed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..bids import BIDSValidationError
from .arguments import Options, cohort_parser, default_workers, parse_qt1

__all__ = ["main", "cohort_main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _say(text: str) -> None:
    print(text, flush=True)


def _error(prog: str, err: BaseException) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _workers(options: Options, n_tasks: int) -> int:
    if options.scheduler is not None:
        return 1
    wanted = options.n_workers if options.n_workers is not None else default_workers()
    return max(1, min(wanted, n_tasks))


def _open(options: Options):
    from ..workflow import open_workspace

    return open_workspace(options.bids_dir, options.work_dir, options.pipeline, subjects=options.participants,
                          progress=options.progress, output_dir=options.output_dir)


def _participant(options: Options, ws) -> int:
    from ..derivatives import write_descriptions
    from .execution import TaskFailure, run_per_participant
    from .participant import map_participant

    n = _workers(options, len(ws.subjects))
    where = options.scheduler or (f"{n} local worker processes" if n > 1 else "serially")
    _say(f"qt1 participant: {len(ws.subjects)} participant(s) ({', '.join('sub-' + s for s in ws.subjects)}), {where}")
    results = run_per_participant(map_participant, ws, ws.subjects, options.estimators, n_workers=n,
                                  scheduler=options.scheduler, progress=options.progress)
    write_descriptions(ws.derivatives_dir)
    failed = 0
    for subject, r in results.items():
        if isinstance(r, TaskFailure):
            failed += 1
            print(f"  sub-{subject}: FAILED: {r.message}", file=sys.stderr, flush=True)
            print(r.traceback, file=sys.stderr, flush=True)
        else:
            extra = "" if r.registration_error_mm is None else f", registration error {r.registration_error_mm:.2f} mm"
            _say(f"  sub-{subject}: MP{r.inversions}RAGE, {r.note}{extra} ({r.seconds:.1f} s)")
    _say(f"derivatives in {ws.derivatives_dir}")
    return EXIT_FAILED if failed else EXIT_OK


def _group(options: Options, ws) -> int:
    from ..derivatives import write_descriptions
    from .group import run_group

    _say(f"qt1 group: {len(ws.subjects)} participant(s), {len(ws.sir_subjects)} with SIR images")
    n = _workers(options, len(ws.sir_subjects))
    result = run_group(ws, options.study, options.estimators, n_workers=n, scheduler=options.scheduler,
                       device=options.device)
    write_descriptions(ws.derivatives_dir)
    for line in result.messages:
        _say(line)
    if result.used:
        _say("used: " + ", ".join(f"sub-{s}" for s in result.used))
    for subject, why in sorted(result.left_out.items()):
        _say(f"left out: sub-{subject} ({why})")
    for path, note in result.files.items():
        _say(f"  {path}: {note}")
    for failure in result.failures:
        print(f"  sub-{failure.subject}: FAILED: {failure.message}", file=sys.stderr, flush=True)
        print(failure.traceback, file=sys.stderr, flush=True)
    return EXIT_FAILED if result.failures else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``qt1 BIDS_DIR OUTPUT_DIR {participant,group} [options]`` (``qt1 --help``); returns the exit status."""
    try:
        options = parse_qt1(argv)
    except SystemExit as stop:  # argparse: --help (0) or a usage error (2), already printed
        return int(stop.code or 0)
    except ValueError as err:
        return _error("qt1", err)
    start = time.perf_counter()
    try:
        ws = _open(options)
    except (BIDSValidationError, ValueError) as err:
        return _error("qt1", err)
    status = (_participant if options.level == "participant" else _group)(options, ws)
    _say(f"qt1 {options.level}: {'done' if status == EXIT_OK else 'finished with failures'} in "
         f"{time.perf_counter() - start:.0f} s")
    return status


def cohort_main(argv: list[str] | None = None) -> int:
    """``qt1-cohort OUTPUT_DIR --profile {smoke,quick,paper} --seed N``: write the digital cohort; returns the exit status."""
    parser = cohort_parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    from ..phantom import make_cohort

    try:
        cohort = make_cohort(Path(a.output_dir), a.profile, seed=a.seed, n_subjects=a.n_subjects,
                             physics=a.physics, progress=not a.no_progress)
    except ValueError as err:
        return _error("qt1-cohort", err)
    _say(f"digital cohort ({a.profile} profile, {a.physics} physics, seed {a.seed}): {len(cohort.subjects)} subjects "
         f"in {cohort.bids_dir}; "
         f"truth in {Path(cohort.bids_dir) / 'derivatives' / 'phantom'}")
    return EXIT_OK


def run() -> None:  # pragma: no cover - the console script
    """Console script ``qt1``."""
    sys.exit(main())


def run_cohort() -> None:  # pragma: no cover - the console script
    """Console script ``qt1-cohort``."""
    sys.exit(cohort_main())
