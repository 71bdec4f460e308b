"""The exercises' solutions: what each chapter's exercises ask, computed on their cheap variant.

Every chapter ends with exercises, papermill runs of the chapter with other parameters. Under each
exercise the book shows "What you should see": numbers that a solution computed in the same build,
with the time it took, in a folded dropdown. The solutions are functions of this package, one module
per chapter; each runs the exercise's *cheap variant* (the quantity that decides the exercise, on
fewer trials, voxels, folds or epochs than a full rerun of the chapter) and returns the texts the
chapter glues into the dropdown's prose, already formatted (:mod:`qt1lib.notebook`: no raw floats,
no "0.0 s", words for qualitative outcomes). Where the full exercise takes more than a few minutes,
the solution also estimates its time from the cheap run's measured time, scaled by the work it
leaves out (a ratio stated in the function's docstring).

A solution is declared with :func:`answers`, which names the texts it returns, so that a chapter
run with ``solutions = False`` can glue a placeholder for each of them without running it
(:func:`qt1lib.notebook.glue_solution` does the timing and the glueing).

Modules
-------
signal_models   chapter 01: the UNI minimum, the B1 error of grey matter, a perfect-inversion table.
map_vs_point    chapter 02: the estimators at other noise levels, trials, priors and T1 ranges.
ir_reference    chapter 03: the SIR fit at low SNR and dense sampling, the MT bias, the readout residual.
b1              chapter 04: B1 sensitivity at long T1, map errors, the seed's histogram noise, purity.
registration    chapter 05: the registration contrast, the bias terms of other estimators and subjects.
calibration     chapters 06 and 07: input channels, inputs, targets and widths of the calibration.
statistics      chapter 07: seeds, channels and the mixed model's voxel count.
performance     chapter 08: the timings at other volumes and noise levels.

The solutions format with the helpers of :mod:`qt1lib.notebook` (which load no notebook machinery until
they glue) and do not import the workflow layer (tests/test_layering.py): a chapter passes the
workflow's results in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..validate import require_number

__all__ = ["answers", "answer_names", "solving", "SolutionError", "scaled_seconds"]

F = TypeVar("F", bound=Callable[..., Mapping[str, str]])


class SolutionError(ValueError):
    """A solution that returned other texts than it declares, or a text that is not a string."""


def answers(*names: str) -> Callable[[F], F]:
    """Declare the texts a solution returns (the names its chapter glues, after the exercise's key).

    The decorated function must return a mapping with exactly these names, each a ``str``; it gets an
    attribute ``answers`` (the names, in order) that :func:`answer_names` reads.

    Raises
    ------
    ValueError
        No names, a repeated name, or a name that is not an identifier (it becomes part of a glue key).
    SolutionError
        At call time: the function returned other names, or a value that is not a string.
    """
    if not names:
        raise ValueError("a solution declares at least one answer")
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise ValueError(f"answer names must be distinct identifiers, got {names!r}")

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> dict[str, str]:
            out = function(*args, **kwargs)
            if not isinstance(out, Mapping) or set(out) != set(names):
                got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
                raise SolutionError(f"{function.__name__} must return the texts {list(names)}, got {got}")
            wrong = [n for n in names if not isinstance(out[n], str)]
            if wrong:
                raise SolutionError(f"{function.__name__}: the answers {wrong} are not strings (format them)")
            return {n: out[n] for n in names}

        wrapper.answers = tuple(names)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def answer_names(function: Callable[..., Any]) -> tuple[str, ...]:
    """The names a solution declared with :func:`answers`; ``ValueError`` if it declared none."""
    names = getattr(function, "answers", None)
    if not names:
        raise ValueError(f"{getattr(function, '__name__', function)!r} declares no answers (decorate it with @answers)")
    return tuple(names)


def solving(solution: Callable[..., Any]) -> Callable[[F], F]:
    """Declare that a chapter's own function returns what ``solution`` returns (its :func:`answers`).

    For a solution whose inputs the chapter computes with the workflow inside the timed run::

        @solving(b1.seed_histogram_noise)
        def fixed_histogram_noise():
            table = workflow.b1_voxel_table(...)
            return b1.seed_histogram_noise(..., table, ...)
    """
    return answers(*answer_names(solution))


def scaled_seconds(measured: float, measured_work: float, full_work: float) -> float:
    """The time of a full run estimated from a measured cheap one, assuming time proportional to work.

    Parameters
    ----------
    measured : float
        Seconds the cheap run took.
    measured_work, full_work : float
        The work of the cheap and of the full run in any common unit (trials, voxels, epochs x folds).

    Returns
    -------
    float
        ``measured * full_work / measured_work`` (s). A linear model: fixed costs (tables built once,
        imports) make it an overestimate when the full run is larger.
    """
    measured = require_number("measured (s)", measured, low=0)
    measured_work = require_number("measured_work", measured_work, low=0, low_inclusive=False)
    full_work = require_number("full_work", full_work, low=0)
    return measured * full_work / measured_work
