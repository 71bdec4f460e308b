"""The shared checks of scalar parameters (qt1lib.validate)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from qt1lib.validate import is_finite_number, is_integer, is_number, require_integer, require_number

NOT_NUMBERS = [True, False, np.bool_(True), "3", None, 1j, np.complex128(1), np.array(2.0), [1], Fraction]


@pytest.mark.parametrize("value", [0, -7, 10**40, np.int64(3), np.uint8(2), np.int8(-1)])
def test_integers_are_integers_numbers_and_finite(value):
    assert is_integer(value) and is_integer(value, integral_floats=True)
    assert is_number(value) and is_finite_number(value)


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_bools_strings_complex_and_arrays_are_neither_integers_nor_numbers(value):
    assert not is_integer(value) and not is_integer(value, integral_floats=True) and not is_integer(value, builtin=True)
    assert not is_number(value) and not is_finite_number(value)


@pytest.mark.parametrize("value", [3.0, -0.0, np.float32(4.0), np.float64(2.0), Fraction(6, 2)])
def test_integral_floats_are_integers_only_when_asked(value):
    assert not is_integer(value)
    assert is_integer(value, integral_floats=True)


@pytest.mark.parametrize(
    "value", [2.5, np.float64(0.1), Fraction(1, 2), math.nan, math.inf, -math.inf, np.float32("nan")]
)
def test_fractional_and_non_finite_floats_are_never_integers(value):
    assert not is_integer(value, integral_floats=True)


def test_builtin_accepts_only_python_ints():
    assert is_integer(3, builtin=True)
    assert not is_integer(np.int64(3), builtin=True) and is_integer(np.int64(3))
    assert not is_integer(True, builtin=True)
    assert not is_integer(3.0, builtin=True) and is_integer(3.0, builtin=True, integral_floats=True)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("inf"), np.float64("nan")])
def test_nan_and_infinities_are_numbers_but_not_finite(value):
    assert is_number(value)
    assert not is_finite_number(value)


def test_huge_integers_and_fractions_are_finite():
    assert is_finite_number(10**400) and is_finite_number(Fraction(10**400, 3))
    assert is_finite_number(1e308) and is_finite_number(np.float32(3.4e38))


# ------------------------------------------------------------------ require_integer
def test_require_integer_returns_a_python_int():
    for value in (5, np.int64(5), np.uint16(5)):
        out = require_integer("n", value, 1)
        assert out == 5 and type(out) is int
    out = require_integer("n", np.float32(5.0), 1, integral_floats=True)
    assert out == 5 and type(out) is int


def test_require_integer_bound_is_inclusive():
    assert require_integer("seed", 0, 0) == 0
    with pytest.raises(ValueError, match=re.escape("seed must be an integer >= 0, got -1")):
        require_integer("seed", -1, 0)
    assert require_integer("seed", -(10**30)) == -(10**30)  # no bound


@pytest.mark.parametrize(
    ("value", "shown"),
    [(True, "True"), (1.5, "1.5"), (2.0, "2.0"), ("3", "'3'"), (None, "None"), (math.nan, "nan"),
     (np.int64(0), repr(np.int64(0)))],
)
def test_require_integer_message_names_the_parameter_the_bound_and_the_value(value, shown):
    with pytest.raises(ValueError, match=re.escape(f"seed_map_trials must be an integer >= 1, got {shown}")):
        require_integer("seed_map_trials", value, 1)


def test_require_integer_message_without_a_bound():
    with pytest.raises(ValueError, match=re.escape("option random_seed must be an integer, got 0.5")):
        require_integer("option random_seed", 0.5, integral_floats=True)


# ------------------------------------------------------------------ require_number
def test_require_number_returns_a_float():
    for value in (2, np.int32(2), np.float32(2.0), Fraction(4, 2)):
        out = require_number("x", value)
        assert out == 2.0 and type(out) is float


def test_require_number_bounds_are_inclusive_unless_told():
    assert require_number("b1_sd", 0, low=0) == 0.0
    assert require_number("t", 1, low=0, high=1) == 1.0
    with pytest.raises(ValueError, match=re.escape("sigma must be a finite number > 0, got 0")):
        require_number("sigma", 0, low=0, low_inclusive=False)
    with pytest.raises(ValueError, match=re.escape("t must be a number in [0, 1), got 1")):
        require_number("t", 1, low=0, high=1, high_inclusive=False)
    with pytest.raises(ValueError, match=re.escape("t must be a number in (0, 1], got 0.0")):
        require_number("t", 0.0, low=0, high=1, low_inclusive=False)
    with pytest.raises(ValueError, match=re.escape("x must be a finite number < 2, got 2")):
        require_number("x", 2, high=2, high_inclusive=False)
    assert require_number("x", -1e300, high=2) == -1e300


def test_require_number_rejects_nan_always_and_infinity_unless_allowed():
    for finite in (True, False):
        with pytest.raises(ValueError, match="snr"):
            require_number("snr", math.nan, finite=finite)
        with pytest.raises(ValueError, match="snr"):
            require_number("snr", np.float32("nan"), low=0, finite=finite)
    with pytest.raises(ValueError, match=re.escape("b1_sd (relative B1) must be a finite number >= 0, got inf")):
        require_number("b1_sd (relative B1)", math.inf, low=0)
    assert require_number("snr", math.inf, low=0, low_inclusive=False, finite=False) == math.inf
    with pytest.raises(ValueError, match=re.escape("snr must be a number > 0, got -inf")):
        require_number("snr", -math.inf, low=0, low_inclusive=False, finite=False)


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_require_number_rejects_what_is_not_a_number(value):
    with pytest.raises(ValueError, match=re.escape(f"b1_noise must be a finite number >= 0, got {value!r}")):
        require_number("b1_noise", value, low=0)


# ------------------------------------------------------------------ callers
def test_callers_keep_their_messages():
    from qt1lib.config import CohortConfig, PipelineConfig

    with pytest.raises(ValueError, match=re.escape("n_subjects must be an integer >= 1, got True")):
        CohortConfig(n_subjects=True)
    with pytest.raises(ValueError, match=re.escape("seed_map_trials must be an integer >= 1, got 0")):
        PipelineConfig(seed_map_trials=0)
    assert PipelineConfig(seed_map_trials=10.0).seed_map_trials == 10.0  # integral floats stay accepted
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got 1.0"):
        CohortConfig(seed=1.0)  # ... but not for the cohort's seeds
    assert CohortConfig(snr=None).snr == math.inf and CohortConfig(seed=np.int64(3)).seed == 3


def test_validate_imports_only_the_standard_library():
    code = (
        "import sys; before = set(sys.modules); import qt1lib.validate; "
        "new = {m.partition('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'qt1lib'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]", out.stdout
