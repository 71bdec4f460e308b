"""Notebook parameters and the text that chapters glue into their prose.

Glued text (:func:`glue_text` and the ``format_*`` helpers at the end of this module) says in
words what a number format cannot: "p < 0.001" rather than "p = 0.000", "20 epochs" rather than
"20 to 20 epochs", "nowhere" rather than "at none s", "less than 0.1 µs" rather than "within 0.0 µs",
and singular or plural as the count requires.

Exercises' solutions (:func:`glue_solution`): each chapter's exercise runs a solution of
:mod:`qt1lib.solutions`, times it and glues its texts and its runtime for the "What you should see"
dropdown under the exercise; with the chapter parameter ``solutions = False`` it glues placeholders instead.

Notebook parameters: declared in a chapter's parameters cell, validated where they are given.

papermill only warns about a parameter that a notebook does not declare, and ``papermill -p``
passes every value that is not a number, ``True``, ``False`` or ``None`` as a string, so a typo or
``-p patch_shape "[16, 16]"`` would run the chapter with the wrong values. Each chapter therefore
validates its parameters in the cell that follows its parameters cell (after papermill's
injected cell)::

    from qt1lib.notebook import check_parameters
    parameters = check_parameters(globals())
    globals().update(parameters)

and the runner (:mod:`qt1lib.study`) validates the parameters it passes before papermill starts
(:func:`check_notebook_parameters`), with the same messages.

The parameters cell is the code cell tagged ``parameters`` whose first line is
:data:`PARAMETERS_HEADER`; each parameter is one assignment of a literal, with a comment::

    # Parameters (papermill)
    width = 16                  # channels of the first ResNet stage
    patch_shape = [32, 32]      # patch size in voxels
    snr = None                  # type: float  optional SNR; None: the seed's noise
    sigma: float | None = None  # an annotation declares the type too

Rules (:func:`validate`):

* a name the parameters cell does not declare is rejected (naming it and the declared ones);
* a value must have the declared default's type: ``int`` is accepted for ``float``, ``bool`` is
  not an ``int``, list elements are checked (a list default also accepts a tuple), a ``None``
  default accepts anything unless an annotation or a ``# type:`` comment (papermill's
  convention: the first word after ``type:``) declares the type;
* a string given for a parameter that takes no string (``papermill -p name "[1, 2]"``) is read as
  a Python literal (:func:`ast.literal_eval`), so list parameters work with ``-p`` as with ``-y``.
"""

from __future__ import annotations

import ast
import io
import numbers
import os
import re
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .cpus import usable_cpus
from .validate import is_integer, is_number

__all__ = [
    "PARAMETERS_HEADER",
    "INJECTED_HEADER",
    "ParameterError",
    "Parameter",
    "ParameterType",
    "parse_parameters",
    "parameters_cell",
    "declared_parameters",
    "validate",
    "check_parameters",
    "check_notebook_parameters",
    "format_number",
    "format_p",
    "plural",
    "format_count_range",
    "format_share",
    "format_percent_of",
    "format_values",
    "format_at_most",
    "training_stop_text",
    "format_duration",
    "compare_text",
    "format_ratio",
    "glue_text",
    "BOOK_BUILD_ENV",
    "glue_figure",
    "SOLUTION_NOT_RUN",
    "glue_solution",
]

#: First line of a chapter's parameters cell.
PARAMETERS_HEADER = "# Parameters (papermill)"
#: First line of the cell that papermill injects after it (``PythonTranslator.codify``).
INJECTED_HEADER = "# Parameters"


class ParameterError(ValueError):
    """A parameter that the notebook does not declare, or a value of the wrong type."""


# ============================================================================ types
class ParameterType:
    """What values a parameter accepts: scalar types, and lists (or tuples) of an element type.

    Built from a declared default (:meth:`of_value`) or from an annotation / type comment
    (:meth:`parse`). ``int`` is accepted for ``float``; ``bool`` is not an ``int``.
    """

    _SCALARS: ClassVar[dict[str, type]] = {
        "int": int, "float": float, "str": str, "bool": bool, "dict": dict, "None": type(None), "NoneType": type(None),
    }
    _SEQUENCES: ClassVar[tuple[str, ...]] = ("list", "List", "tuple", "Tuple", "Sequence")

    def __init__(self, scalars: tuple[type, ...] = (), element: ParameterType | None = None, anything: bool = False):
        self.scalars = tuple(dict.fromkeys(scalars))
        self.element = element  # None: no sequence accepted
        self.anything = anything

    # ------------------------------------------------------------------ construction
    @classmethod
    def any(cls) -> ParameterType:
        return cls(anything=True)

    @classmethod
    def sequence_of(cls, element: ParameterType) -> ParameterType:
        return cls(element=element)

    @classmethod
    def union(cls, types: list[ParameterType]) -> ParameterType:
        if not types or any(t.anything for t in types):
            return cls.any()
        scalars = tuple(s for t in types for s in t.scalars)
        if float in scalars:  # int is accepted for float anyway
            scalars = tuple(s for s in scalars if s is not int)
        elements = [t.element for t in types if t.element is not None]
        return cls(scalars, cls.union(elements) if elements else None)

    @classmethod
    def of_value(cls, value: Any) -> ParameterType:
        """The type a declared default stands for (None: anything)."""
        if value is None:
            return cls.any()
        if isinstance(value, bool):
            return cls((bool,))
        if isinstance(value, numbers.Integral):
            return cls((int,))
        if isinstance(value, numbers.Real):
            return cls((float,))
        if isinstance(value, str):
            return cls((str,))
        if isinstance(value, (list, tuple)):
            return cls.sequence_of(cls.union([cls.of_value(v) for v in value]) if value else cls.any())
        if isinstance(value, Mapping):
            return cls((dict,))
        return cls.any()

    @classmethod
    def parse(cls, annotation: str | ast.expr) -> ParameterType:
        """An annotation: ``int``, ``float | None``, ``list[int]``, ``Optional[str]``, ``tuple[float, ...]``...

        Raises ``ParameterError`` for anything else.
        """
        try:
            node = ast.parse(annotation.strip(), mode="eval").body if isinstance(annotation, str) else annotation
        except SyntaxError:
            raise ParameterError(f"cannot read the type {annotation!r}") from None
        return cls._from_node(node)

    @classmethod
    def _from_node(cls, node: ast.expr) -> ParameterType:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
            return cls.parse(node.value)
        if isinstance(node, ast.Constant) and node.value is None:
            return cls((type(None),))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return cls.union([cls._from_node(node.left), cls._from_node(node.right)])
        name = (_dotted(node.value if isinstance(node, ast.Subscript) else node) or "").rsplit(".", 1)[-1]
        if isinstance(node, ast.Subscript):
            args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            args = [a for a in args if not (isinstance(a, ast.Constant) and a.value is Ellipsis)]
            if name in cls._SEQUENCES:
                return cls.sequence_of(cls.union([cls._from_node(a) for a in args]) if args else cls.any())
            if name == "Optional" and len(args) == 1:
                return cls.union([cls._from_node(args[0]), cls((type(None),))])
            if name == "Union":
                return cls.union([cls._from_node(a) for a in args])
            if name in ("dict", "Dict", "Mapping"):
                return cls((dict,))
        elif name in cls._SCALARS:
            return cls((cls._SCALARS[name],))
        elif name in cls._SEQUENCES:
            return cls.sequence_of(cls.any())
        elif name in ("Any", "object"):
            return cls.any()
        raise ParameterError(
            f"cannot read the type {ast.unparse(node)!r} (use int, float, str, bool, dict, list[...], X | None)"
        )

    # ------------------------------------------------------------------ use
    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is of this type."""
        if self.anything:
            return True
        for scalar in self.scalars:
            if scalar is bool:
                ok = isinstance(value, bool)
            elif scalar is int:
                ok = is_integer(value)
            elif scalar is float:
                ok = is_number(value)
            elif scalar is dict:
                ok = isinstance(value, Mapping)
            elif scalar is type(None):
                ok = value is None
            else:
                ok = isinstance(value, scalar)
            if ok:
                return True
        return self.element is not None and isinstance(value, (list, tuple)) and all(
            self.element.accepts(v) for v in value
        )

    def __str__(self) -> str:
        if self.anything:
            return "any"
        names = [s.__name__ for s in self.scalars if s is not type(None)]
        if self.element is not None:
            names.append(f"list[{self.element}]")
        if type(None) in self.scalars:
            names.append("None")
        return " | ".join(names)

    def __repr__(self) -> str:
        return f"ParameterType({self})"


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


# ============================================================================ parsing
_UNSET = object()


@dataclass(frozen=True)
class Parameter:
    """One parameter of a parameters cell.

    Attributes
    ----------
    name : str
    default : object
        The declared value (a Python literal), or None when it is no literal (then also
        ``literal`` is False).
    source : str
        The default's source text, e.g. ``'"work/bids"'``.
    type : ParameterType
        What values it accepts.
    help : str
        Its comment (without a ``type:`` prefix).
    literal : bool
        Whether ``default`` could be read as a literal.
    """

    name: str
    default: Any
    source: str
    type: ParameterType
    help: str
    literal: bool = True


def _literal(node: ast.expr) -> Any:
    """The value of a literal expression; also ``float('inf')``, ``float('nan')`` as papermill writes them."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
        and len(node.args) == 1 and not node.keywords
        and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
    ):
        return float(node.args[0].value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        if is_number(value):
            return -value
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_literal(e) for e in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    raise ValueError(f"not a literal: {ast.unparse(node)}")


def _comments(source: str) -> dict[int, str]:
    """Comment text by line number (1-based)."""
    out: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                out[token.start[0]] = token.string[1:].strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):  # pragma: no cover - ast.parse failed first
        pass
    return out


_TYPE_COMMENT = re.compile(r"^type:\s*(?P<type>\S+)\s*(?P<help>.*)$")


def parse_parameters(source: str) -> dict[str, Parameter]:
    """The parameters that a cell's source declares: its top-level assignments, in order.

    ``name = value  # help`` declares ``name`` with the type of ``value``; an annotation
    (``name: float | None = None``) or a comment ``# type: float  help`` (papermill's
    convention) declares the type. Other statements are ignored.

    Raises
    ------
    ParameterError
        Unreadable source or type, or a default that its declared type does not accept.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise ParameterError(f"cannot parse the parameters cell: {error}") from None
    comments = _comments(source)
    out: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, None, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, annotation, value = node.target.id, node.annotation, node.value
        else:
            continue
        comment = comments.get(node.end_lineno, "")
        declared = annotation
        match = _TYPE_COMMENT.match(comment)
        if match:
            declared, comment = match["type"], match["help"]
        try:
            default, literal = _literal(value), True
        except ValueError:
            default, literal = None, False
        if declared is not None:
            kind = ParameterType.parse(declared)
            if literal and default is None:  # a None default stays acceptable: "not given"
                kind = ParameterType.union([kind, ParameterType((type(None),))])
            elif literal and not kind.accepts(default):
                raise ParameterError(f"the default {ast.unparse(value)} of {name!r} is not of its declared type {kind}")
        else:
            kind = ParameterType.of_value(default) if literal else ParameterType.any()
        out[name] = Parameter(name, default, ast.get_source_segment(source, value) or ast.unparse(value),
                              kind, comment, literal)
    return out


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()
    return ""


def parameters_cell(notebook: str | os.PathLike | Any) -> str:
    """Source of a notebook's parameters cell: the code cell tagged ``parameters`` (papermill's
    rule), else the code cell whose first line is :data:`PARAMETERS_HEADER`.

    ``notebook`` is a path or an ``nbformat`` notebook. Raises ``ParameterError`` when it has none.
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, (str, os.PathLike)) else notebook
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        if "parameters" in cell.metadata.get("tags", []):
            return cell.source
    for cell in code:
        if _first_line(cell.source) == PARAMETERS_HEADER:
            return cell.source
    where = f" {Path(notebook).name}" if isinstance(notebook, (str, os.PathLike)) else ""
    raise ParameterError(f"notebook{where} has no parameters cell (a code cell tagged 'parameters')")


def declared_parameters(notebook: str | os.PathLike | Any) -> dict[str, Parameter]:
    """The parameters a notebook (path or ``nbformat`` notebook) declares in its parameters cell."""
    return parse_parameters(parameters_cell(notebook))


# ============================================================================ validation
def _convert(parameter: Parameter, value: Any) -> Any:
    kind = parameter.type
    if kind.accepts(value):
        return value
    if isinstance(value, os.PathLike) and kind.accepts(""):
        return os.fspath(value)
    if isinstance(value, str):
        try:
            converted = _literal(ast.parse(value.strip(), mode="eval").body)
        except (ValueError, SyntaxError):
            converted = _UNSET
        if converted is not _UNSET and kind.accepts(converted):
            return converted
    hint = "; pass strings with papermill -r" if kind.accepts("") and not isinstance(value, str) else ""
    raise ParameterError(
        f"parameter {parameter.name!r} expects {kind} (declared default {parameter.source}), "
        f"got {value!r} ({type(value).__name__}){hint}"
    )


def validate(declared: Mapping[str, Parameter], values: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``values`` against the ``declared`` parameters; returns them, strings converted.

    Raises
    ------
    ParameterError
        A name that is not declared (naming it and the declared ones), or a value of the wrong
        type (naming the parameter, the expected type and the value).
    """
    unknown = [name for name in values if name not in declared]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ParameterError(
            f"unknown parameter{plural} {', '.join(map(repr, unknown))}: the parameters cell declares "
            f"{', '.join(declared)}"
        )
    return {name: _convert(declared[name], value) for name, value in values.items()}


def _injected_values(source: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Names and values of papermill's injected cell (values that are no literal: the namespace's)."""
    out: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            try:
                out[name] = _literal(node.value)
            except ValueError:
                out[name] = namespace.get(name)
    return out


def check_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Validate, in a running notebook, the parameters that papermill injected.

    Call it in the cell after the parameters cell (papermill puts its injected cell between
    them) with ``globals()``; it reads IPython's input history ``namespace["In"]``: the last
    executed cell whose first line is :data:`PARAMETERS_HEADER`, and the injected cell (first
    line :data:`INJECTED_HEADER`) executed after it.

    Returns
    -------
    dict
        Every declared parameter and its value: the injected ones validated, strings given for
        list or number parameters converted (``papermill -p name "[1, 2]"``), the others as the
        parameters cell set them. Update the namespace with it. Outside papermill (no injected
        cell) nothing is checked; outside IPython (no ``In``, no parameters cell) it is empty.

    Raises
    ------
    ParameterError
        An injected name the parameters cell does not declare, or a value of the wrong type.
    """
    history = namespace.get("In")
    if not history:
        return {}
    history = list(history)
    declared_at = next(
        (i for i in range(len(history) - 1, -1, -1) if _first_line(history[i] or "") == PARAMETERS_HEADER), None
    )
    if declared_at is None:
        return {}
    declared = parse_parameters(history[declared_at])
    values = {name: namespace[name] for name in declared if name in namespace}
    injected_at = next(
        (i for i in range(len(history) - 1, declared_at, -1) if _first_line(history[i] or "") == INJECTED_HEADER), None
    )
    if injected_at is not None:
        values.update(validate(declared, _injected_values(history[injected_at], namespace)))
    return values


def check_notebook_parameters(notebook: str | os.PathLike | Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate parameters for a notebook before executing it (what the runner does).

    Same rules and messages as :func:`check_parameters`, prefixed with the notebook's name.

    Returns
    -------
    dict
        ``values``, validated, strings converted, paths as strings.
    """
    try:
        return validate(declared_parameters(notebook), values)
    except ParameterError as error:
        where = Path(notebook).name if isinstance(notebook, (str, os.PathLike)) else "notebook"
        raise ParameterError(f"{where}: {error}") from None



# ============================================================================ glued text
def _finite(value: Any, name: str) -> float:
    if not is_number(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def format_number(value: float, digits: int = 2, unit: str = "", *, signed: bool = False) -> str:
    """A number for prose: ``digits`` decimals, a minus sign, an optional unit; "n/a" for NaN.

    ``-0.00`` is written ``0.00``. Examples: ``format_number(1.108213, 2, "s")`` is ``"1.11 s"``;
    ``format_number(0.25, 1, "%", signed=True)`` is ``"+0.2 %"``.
    """
    value = _finite(value, "value")
    if not isinstance(digits, int) or digits < 0:
        raise ValueError(f"digits must be a non-negative integer, got {digits!r}")
    if value != value:  # NaN
        return "n/a"
    text = f"{value:{'+' if signed else ''}.{digits}f}"
    if float(text) == 0.0:
        text = f"{0.0:.{digits}f}"
    return f"{text} {unit}" if unit else text


def format_p(p: float, floor: float = 0.001) -> str:
    """A p-value for prose: ``"p < 0.001"`` below ``floor``, else ``"p = 0.034"`` (three decimals).

    Three decimals and a floor of 0.001 follow the APA style (Publication Manual, 7th ed., 6.36).
    NaN gives ``"p not available"``.
    """
    p = _finite(p, "p")
    floor = _finite(floor, "floor")
    if not 0 < floor < 1:
        raise ValueError(f"floor must lie in (0, 1), got {floor!r}")
    if p != p:
        return "p not available"
    if not 0.0 <= p <= 1.0 + 1e-12:
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    if p < floor:
        return f"p < {floor:g}"
    return f"p = {min(p, 1.0):.3f}"


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 network"``, ``"4 networks"``, ``"0 networks"`` (``plural_form`` default: ``singular + "s"``)."""
    if not is_integer(count):
        raise ValueError(f"count must be an integer, got {count!r}")
    word = singular if int(count) == 1 else (plural_form or singular + "s")
    return f"{int(count)} {word}"


def format_count_range(low: int, high: int, singular: str, plural_form: str | None = None) -> str:
    """``"12 to 20 epochs"``, or ``"20 epochs"`` when ``low == high`` (``"1 epoch"`` for one)."""
    if not (is_integer(low) and is_integer(high)) or int(low) > int(high):
        raise ValueError(f"low and high must be integers with low <= high, got {low!r} and {high!r}")
    if int(low) == int(high):
        return plural(int(low), singular, plural_form)
    return f"{int(low)} to {plural(int(high), singular, plural_form)}"


def format_share(count: int, total: int, singular: str, plural_form: str | None = None) -> str:
    """How many of ``total`` things, for prose: ``"2 of 3 tissues"``, ``"all 3 tissues"``,
    ``"none of the 3 tissues"`` (never ``"0 of 3"`` or ``"3 of the 3"``); ``"the tissue"`` or
    ``"no tissue"`` when there is one."""
    if not (is_integer(count) and is_integer(total)) or not 0 <= int(count) <= int(total) or int(total) < 1:
        raise ValueError(f"count and total must be integers with 0 <= count <= total and total >= 1, "
                         f"got {count!r} and {total!r}")
    count, total = int(count), int(total)
    word = plural_form or singular + "s"
    if total == 1:
        return f"the {singular}" if count == 1 else f"no {singular}"
    if count == total:
        return f"both {word}" if total == 2 else f"all {total} {word}"
    if count == 0:
        return f"neither {singular}" if total == 2 else f"none of the {total} {word}"
    return f"{count} of {total} {word}"


def format_percent_of(percent: float, noun: str, digits: int = 1) -> str:
    """A share of things as a percentage, for prose: ``"12.5 % of the voxels"``, ``"none of the voxels"``
    or ``"all of the voxels"`` when it is exactly 0 or 100 %, and ``"less than 0.1 % of the voxels"`` or
    ``"more than 99.9 % of the voxels"`` when it only rounds to them (never ``"0.0 %"`` or ``"At least 100.0 %"``).

    ``noun`` is the plural with its article (``"the voxels"``).
    """
    percent = _finite(percent, "percent")
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"percent must lie in [0, 100], got {percent!r}")
    if percent == 0.0:
        return f"none of {noun}"
    if percent == 100.0:
        return f"all of {noun}"
    step = 10.0 ** -digits
    if round(percent, digits) == 0.0:
        return f"less than {format_number(step, digits)} % of {noun}"
    if round(percent, digits) == 100.0:
        return f"more than {format_number(100 - step, digits)} % of {noun}"
    return f"{format_number(percent, digits)} % of {noun}"


def format_values(values: Any, unit: str = "", *, fmt: str = "g", prefix: str = "at ", empty: str = "nowhere") -> str:
    """A list of values for prose: ``"at 0.3, 0.5 and 4 s"``, or ``empty`` when there is none.

    Parameters
    ----------
    values : iterable of float
    unit : str
        Written once, after the last value.
    fmt : str
        Format specification of each value.
    prefix : str
        Written before the list (not before ``empty``).
    empty : str
        The text for an empty list.
    """
    texts = [format(float(v), fmt) for v in values]
    if not texts:
        return empty
    listed = texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} and {texts[-1]}"
    return f"{prefix}{listed}{' ' + unit if unit else ''}"


def format_at_most(value: float, digits: int = 1, unit: str = "") -> str:
    """A small non-negative bound for prose: ``"0.3 µs"``, or ``"less than 0.1 µs"`` when ``value``
    rounds to zero at ``digits`` decimals (never ``"0.0 µs"``)."""
    value = _finite(value, "value")
    if value != value:
        return "n/a"
    if value < 0:
        raise ValueError(f"value must be non-negative, got {value!r}")
    step = 10.0 ** -digits
    if round(value, digits) == 0.0:
        return f"less than {format_number(step, digits, unit)}"
    return format_number(value, digits, unit)


def training_stop_text(epochs: Any, max_epochs: int) -> str:
    """What the epochs of several trainings say about early stopping, as one sentence.

    Parameters
    ----------
    epochs : iterable of int
        Epochs each training ran (one per fold).
    max_epochs : int
        The epoch limit of the trainings.

    Returns
    -------
    str
        E.g. "The 4 networks trained for 20 epochs each; all 4 reached the limit of 20 epochs
        before early stopping could act, so their validation loss may still have been falling."
        or "The 4 networks trained for 9 to 20 epochs; 3 of them stopped early."
    """
    counts = [int(e) for e in epochs]
    if not counts or not all(is_integer(e) and e >= 1 for e in counts):
        raise ValueError(f"epochs must be positive integers, got {list(epochs)!r}")
    if not is_integer(max_epochs) or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}")
    n = len(counts)
    at_limit = sum(e >= max_epochs for e in counts)
    who = "The network" if n == 1 else f"The {n} networks"
    span = format_count_range(min(counts), max(counts), "epoch")
    each = " each" if n > 1 and min(counts) == max(counts) else ""
    first = f"{who} trained for {span}{each}"
    if at_limit == n:
        every = "it" if n == 1 else ("both" if n == 2 else f"all {n}")
        return (f"{first}: {every} reached the limit of {plural(max_epochs, 'epoch')} before early stopping could act, "
                "so the validation loss may still have been falling.")
    stopped = n - at_limit
    if n == 1:
        return f"{first} and stopped early."
    return f"{first}; {stopped} of them stopped early and {at_limit} reached the limit of {plural(max_epochs, 'epoch')}."


def format_duration(seconds: float) -> str:
    """A measured duration for prose: ``"less than 0.1 s"``, ``"4.2 s"``, ``"3.5 min"``, ``"1.2 h"``.

    Seconds with one decimal below a minute (never ``"0.0 s"``), minutes with one decimal below an
    hour, hours above.
    """
    seconds = _finite(seconds, "seconds")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"seconds must be finite, got {seconds!r}")
    if seconds < 0:
        raise ValueError(f"seconds must be non-negative, got {seconds!r}")
    if round(seconds, 1) < 60:
        return format_at_most(seconds, 1, "s")
    if round(seconds / 60, 1) < 60:
        return format_number(seconds / 60, 1, "min")
    return format_number(seconds / 3600, 1, "h")


def compare_text(value: float, reference: float, more: str, less: str, same: str, digits: int = 2) -> str:
    """The word for how ``value`` compares with ``reference`` at the precision the prose shows.

    ``same`` when the two round to the same number at ``digits`` decimals (so that the prose never
    says "more" beside two equal printed numbers), else ``more`` or ``less``. Example:
    ``compare_text(1.234, 1.1, "longer", "shorter", "as long")`` is ``"longer"``.
    """
    value, reference = _finite(value, "value"), _finite(reference, "reference")
    if value != value or reference != reference:
        raise ValueError("value and reference must not be NaN")
    if round(value, digits) == round(reference, digits):
        return same
    return more if value > reference else less


def format_ratio(ratio: float, digits: int = 1) -> str:
    """A ratio of two positive quantities for prose, after "(...)" or a dash: ``"3.3 times as large"``
    from 1 up, ``"23 % of it"`` below 1 (never ``"0.2 times"``)."""
    ratio = _finite(ratio, "ratio")
    if not ratio > 0 or ratio == float("inf"):
        raise ValueError(f"ratio must be positive and finite, got {ratio!r}")
    if round(ratio, digits) >= 1:
        return f"{format_number(ratio, digits)} times as large"
    return f"{format_number(100 * ratio, 0)} % of it"


def glue_text(key: str, text: str) -> str:
    """Glue ``text`` (a sentence or phrase for ``{glue:text}``) without showing it; returns it."""
    from myst_nb import glue

    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    glue(key, text, display=False)
    return text


#: Environment variable that :func:`qt1lib.study.execute_chapter` sets to ``1`` for the book's build.
BOOK_BUILD_ENV = "QT1_BOOK_BUILD"


def glue_figure(key: str, figure: Any) -> None:
    """Glue a Matplotlib ``figure`` for ``{glue:figure}``, show it outside the book's build, and close it.

    The book places the figure where its caption is (the glue), so the build's cell shows nothing
    (``display=False``). Run live (Jupyter, or papermill by hand), the cell shows the figure too:
    ``{glue:figure}`` is a Jupyter Book directive that Jupyter does not render, so a figure glued
    silently would be seen nowhere. The build is told apart by :data:`BOOK_BUILD_ENV`.
    """
    import matplotlib.pyplot as plt
    from myst_nb import glue

    glue(key, figure, display=False)
    if os.environ.get(BOOK_BUILD_ENV) != "1":
        from IPython.display import display

        display(figure)
    plt.close(figure)


# ============================================================================ exercises' solutions
#: What a solution's texts read when the build did not run the solutions (``solutions = False``).
SOLUTION_NOT_RUN = "(not computed in this build)"


def glue_solution(key: str, solution: Any, *args: Any, enabled: bool = True, unavailable: str | None = None,
                  **kwargs: Any) -> None:
    """Run an exercise's solution, time it, and glue its texts and its runtime for the dropdown.

    Parameters
    ----------
    key : str
        The exercise's glue prefix, e.g. ``"ex02_1"``: each text ``name`` the solution declares
        (:func:`qt1lib.solutions.answers`) is glued as ``{key}_{name}``, the runtime as
        ``{key}_runtime`` (e.g. ``"1.3 s on 2 CPU cores"``, measured with :func:`time.perf_counter`),
        and, when it ran, the seconds as ``{key}_seconds`` (``"1.274"``, for the build report).
    solution : callable
        A function decorated with :func:`qt1lib.solutions.answers`, called as
        ``solution(*args, **kwargs)``.
    enabled : bool
        False (a chapter's ``solutions = False``): nothing runs; every text reads
        :data:`SOLUTION_NOT_RUN` and the runtime says that the build skipped the solutions.
    unavailable : str, optional
        Why this exercise cannot run on the chapter's dataset (e.g. it needs the digital cohort's
        truth): nothing runs, the texts read :data:`SOLUTION_NOT_RUN` and the runtime this reason.

    Nothing is returned, so that a notebook cell that ends with this call shows no output.
    """
    import time

    from .solutions import answer_names

    if not isinstance(key, str) or not key.isidentifier():
        raise ValueError(f"key must be an identifier (a glue prefix), got {key!r}")
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False, got {enabled!r}")
    names = answer_names(solution)
    if unavailable is not None and (not isinstance(unavailable, str) or not unavailable.strip()):
        raise ValueError(f"unavailable must be None or a reason, got {unavailable!r}")
    if enabled and unavailable is None:
        start = time.perf_counter()
        texts = dict(solution(*args, **kwargs))
        seconds = time.perf_counter() - start
        texts["runtime"] = f"{format_duration(seconds)} on {plural(usable_cpus(), 'CPU core')}"
        glue_text(f"{key}_seconds", f"{seconds:.3f}")  # for the build report (qt1lib.study.solution_seconds)
    else:
        texts = dict.fromkeys(names, SOLUTION_NOT_RUN)
        texts["runtime"] = (f"not measured: {unavailable}" if unavailable is not None and enabled else
                            "not measured: this build skipped the solutions (`-p solutions False`)")
    for name, text in texts.items():
        glue_text(f"{key}_{name}", text)
