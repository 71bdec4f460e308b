"""Checks of scalar parameters shared by the package: predicates and the checks that raise.

Every module that validates its arguments asks the same questions of a scalar: is it an
integer, is it a real number, is it finite, does it lie in a range. This module answers them
once, with one convention:

* ``bool`` is never a number (``True`` is an ``int`` in Python, but ``n_subjects=True`` is a
  mistake), and neither is ``numpy.bool_``;
* NumPy integers and floats are numbers (NumPy registers them with :mod:`numbers`); strings,
  ``None``, complex numbers, arrays (even 0-d) and :class:`decimal.Decimal` are not;
* NaN is never accepted by a range check (it compares false with every bound).

The raising checks (:func:`require_integer`, :func:`require_number`) raise ``ValueError`` with a
message that names the parameter, says what was expected and shows the value received::

    seed_map_trials must be an integer >= 1, got 0
    b1_sd (relative B1) must be a finite number >= 0, got nan

This module imports only the standard library, so that light modules (:mod:`qt1lib.config`)
can use it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["is_integer", "is_number", "is_finite_number", "require_integer", "require_number"]


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number that is not a bool.

    Parameters
    ----------
    value : object
        Anything.

    Returns
    -------
    bool
        True for instances of :class:`numbers.Real` (``int``, ``float``,
        :class:`fractions.Fraction`, NumPy integers and floats), NaN and infinities included;
        False for ``bool``, ``numpy.bool_``, complex numbers, strings, ``None`` and arrays.
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a real number (:func:`is_number`) that is neither NaN nor infinite.

    Parameters
    ----------
    value : object
        Anything.

    Returns
    -------
    bool
        True for a finite real number; integers and fractions of any size are finite.
    """
    if not is_number(value):
        return False
    if isinstance(value, numbers.Rational):  # never NaN or infinite; float() would overflow a huge one
        return True
    return math.isfinite(value)


def is_integer(value: Any, *, integral_floats: bool = False, builtin: bool = False) -> bool:
    """Whether ``value`` is an integer that is not a bool.

    Parameters
    ----------
    value : object
        Anything.
    integral_floats : bool
        Also accept a finite real number whose value is an integer (``3.0``,
        ``numpy.float32(3)``). Default False: ``3.0`` is not an integer.
    builtin : bool
        Accept only the built-in ``int`` as an integer type (not NumPy integers), for values
        that must stay JSON-serialisable. Default False: any :class:`numbers.Integral`.

    Returns
    -------
    bool
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int if builtin else numbers.Integral):
        return True
    return integral_floats and is_finite_number(value) and int(value) == value


def require_integer(
    name: str, value: Any, least: int | None = None, *, integral_floats: bool = False, builtin: bool = False
) -> int:
    """``value`` as an ``int``, or ``ValueError`` if it is not an integer (:func:`is_integer`) >= ``least``.

    Parameters
    ----------
    name : str
        The parameter, as the message names it (it may carry a note: ``"option seed_map_bins"``).
    value : object
        The value to check.
    least : int, optional
        Smallest accepted value (inclusive). Default None: no bound.
    integral_floats, builtin : bool
        As for :func:`is_integer`.

    Returns
    -------
    int
        ``int(value)``.

    Raises
    ------
    ValueError
        ``"<name> must be an integer >= <least>, got <value!r>"``.
    """
    if not is_integer(value, integral_floats=integral_floats, builtin=builtin) or (
        least is not None and value < least
    ):
        bound = "" if least is None else f" >= {least}"
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)


def require_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    finite: bool = True,
) -> float:
    """``value`` as a ``float``, or ``ValueError`` if it is not a real number in the range.

    Parameters
    ----------
    name : str
        The parameter, as the message names it (it may carry a note: ``"b1_sd (relative B1)"``).
    value : object
        The value to check: a real number (:func:`is_number`), never NaN.
    low, high : float, optional
        Bounds of the accepted range. Default None: unbounded on that side.
    low_inclusive, high_inclusive : bool
        Whether ``low`` (``high``) itself is accepted. Default True: ``[low, high]``.
    finite : bool
        Reject infinities. Default True; False accepts ``inf`` (and ``-inf``) where the bounds
        allow it (``snr=inf``: noise-free).

    Returns
    -------
    float
        ``float(value)``.

    Raises
    ------
    ValueError
        ``"<name> must be a finite number >= <low>, got <value!r>"`` (the expected range written
        as ``> low``, ``<= high``, ``in [low, high)``..., and "finite" left out when both bounds
        imply it).
    """
    ok = is_finite_number(value) or (not finite and is_number(value) and math.isinf(value))
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        if low is not None and high is not None:
            expected = f"a number in {'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
        else:
            expected = "a finite number" if finite else "a number"
            if low is not None:
                expected += f" {'>=' if low_inclusive else '>'} {low}"
            if high is not None:
                expected += f" {'<=' if high_inclusive else '<'} {high}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)
