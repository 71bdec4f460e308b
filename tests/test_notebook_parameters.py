"""Notebook parameters (qt1lib.notebook): declared in the parameters cell, validated in the notebook and in the runner."""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat
import papermill as pm
import pytest

from qt1lib import study
from qt1lib.notebook import (
    INJECTED_HEADER,
    PARAMETERS_HEADER,
    ParameterError,
    check_notebook_parameters,
    check_parameters,
    declared_parameters,
    parse_parameters,
    validate,
)

CELL = f'''{PARAMETERS_HEADER}
bids_dir = "work/bids"      # BIDS dataset
seed = 0                    # seed
scale = 1.0                 # a float
sizes = [1, 2]              # list of ints
values = [0.5, 1]           # list of floats
names = ["a", "b"]          # list of str
flag = True                 # a switch
anything = None             # any value
count = None                # type: int  refined by a type comment
shape: list[int] | None = None  # refined by an annotation
'''


@pytest.fixture(scope="module")
def declared():
    return parse_parameters(CELL)


# ------------------------------------------------------------------ parsing
def test_parameters_cell_is_parsed_with_types_and_help(declared):
    assert list(declared) == ["bids_dir", "seed", "scale", "sizes", "values", "names", "flag", "anything", "count",
                              "shape"]
    kinds = {name: str(p.type) for name, p in declared.items()}
    assert kinds == {"bids_dir": "str", "seed": "int", "scale": "float", "sizes": "list[int]", "values": "list[float]",
                     "names": "list[str]", "flag": "bool", "anything": "any", "count": "int | None",
                     "shape": "list[int] | None"}
    assert declared["count"].help == "refined by a type comment"
    assert declared["bids_dir"].source == '"work/bids"' and declared["bids_dir"].default == "work/bids"


def test_every_chapter_declares_its_parameters_under_the_header():
    for chapter in study.find_chapters():
        nb = nbformat.read(chapter.path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert cell.source.splitlines()[0] == PARAMETERS_HEADER, chapter.path.name
        declared = declared_parameters(chapter.path)
        assert {"bids_dir", "work_dir", "profile", "seed"} <= set(declared)
        assert all(p.literal for p in declared.values()), chapter.path.name


def test_a_default_of_the_wrong_declared_type_is_rejected():
    with pytest.raises(ParameterError, match="'width'"):
        parse_parameters("width: int = 'wide'\n")
    with pytest.raises(ParameterError, match="cannot read the type"):
        parse_parameters("width = None  # type: Width\n")


# ------------------------------------------------------------------ validation
def test_unknown_name_is_rejected_and_the_declared_ones_listed(declared):
    with pytest.raises(ParameterError, match=r"unknown parameter 'sead': the parameters cell declares bids_dir, seed, "):
        validate(declared, {"sead": 1})


@pytest.mark.parametrize(
    "name, value, expected",
    [("seed", 1.5, "int"), ("seed", True, "int"), ("flag", 1, "bool"), ("scale", "big", "float"),
     ("sizes", [1, 2.5], r"list\[int\]"), ("names", ["a", 1], r"list\[str\]"), ("bids_dir", 3, "str"),
     ("count", 2.0, "int"), ("shape", "[1, 2.5]", r"list\[int\]"), ("sizes", "[1, 2", r"list\[int\]")],
)
def test_wrong_type_is_rejected_naming_parameter_type_and_value(declared, name, value, expected):
    with pytest.raises(ParameterError, match=rf"parameter '{name}' expects {expected}.*got {re.escape(repr(value))}"):
        validate(declared, {name: value})


def test_accepted_values(declared):
    given = {"seed": 3, "scale": 2, "values": (1, 2.5), "anything": {"a": 1}, "count": 4, "shape": None, "flag": False}
    assert validate(declared, given) == given  # int for float, a tuple for a list, None default: anything


def test_strings_for_lists_and_numbers_are_converted(declared):
    out = validate(declared, {"sizes": "[3, 4]", "values": "[0.1, 2]", "scale": "0.5", "shape": "[16, 16]",
                              "count": "7", "names": "['x']", "bids_dir": "[1]"})
    assert out == {"sizes": [3, 4], "values": [0.1, 2], "scale": 0.5, "shape": [16, 16], "count": 7, "names": ["x"],
                   "bids_dir": "[1]"}  # a str parameter keeps its string


def test_injected_values_are_checked_in_the_notebook_namespace(declared):
    injected = f'{INJECTED_HEADER}\nsizes = "[5, 6]"\nscale = 3\n'
    namespace = {name: p.default for name, p in declared.items()} | {"sizes": "[5, 6]", "scale": 3}
    namespace["In"] = ["", "import numpy", CELL, injected, "check"]
    values = check_parameters(namespace)
    assert values["sizes"] == [5, 6] and values["scale"] == 3 and values["bids_dir"] == "work/bids"
    namespace["In"] = ["", CELL, f"{INJECTED_HEADER}\nsaeed = 1\n"]
    with pytest.raises(ParameterError, match="unknown parameter 'saeed'"):
        check_parameters(namespace)
    namespace = {name: p.default for name, p in declared.items()}
    namespace["In"] = ["", CELL, "check"]  # not run by papermill: nothing to check
    assert check_parameters(namespace)["sizes"] == [1, 2]
    namespace["In"] = ["", f"{INJECTED_HEADER}\nsaeed = 1\n", CELL]  # the parameters cell ran again after it
    assert check_parameters(namespace)["seed"] == 0
    assert check_parameters({}) == {}  # outside IPython


def test_runner_rejects_bad_parameters_before_papermill_starts(tmp_path):
    chapter = study.find_chapters(only=["01"])[0]
    with pytest.raises(ParameterError, match=r"01_signal_models.ipynb: unknown parameter 'n_t2'.*n_t1"):
        study.execute_chapter(chapter, tmp_path / "out.ipynb", "smoke", tmp_path / "bids", tmp_path,
                              extra={"n_t2": 10})
    with pytest.raises(ParameterError, match=r"parameter 'n_t1' expects int.*got 'many'"):
        study.chapter_run_parameters(chapter, "smoke", tmp_path / "bids", tmp_path, extra={"n_t1": "many"})
    assert not list(tmp_path.iterdir())
    values = study.chapter_run_parameters(chapter, "smoke", tmp_path / "bids", tmp_path, extra={"b1_values": "[0.9]"})
    assert values["b1_values"] == [0.9] and values["n_t1"] == 60
    assert check_notebook_parameters(chapter.path, {"bids_dir": tmp_path}) == {"bids_dir": str(tmp_path)}


# ------------------------------------------------------------------ papermill
def _tiny_notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f'{PARAMETERS_HEADER}\nsizes = [1, 2]  # sizes\nname = "a"  # a name\n',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from qt1lib.notebook import check_parameters\n"
                                  "globals().update(check_parameters(globals()))"),
        nbformat.v4.new_code_cell("print(type(sizes).__name__, sum(sizes), name)"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _stdout(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for o in nb.cells[-1].outputs)


def test_papermill_p_list_string_and_unknown_name(tmp_path):
    source = _tiny_notebook(tmp_path / "tiny.ipynb")
    # `papermill -p sizes "[3, 4]"` injects the string "[3, 4]": the notebook reads it as a list
    run = subprocess.run(
        [sys.executable, "-m", "papermill", str(source), str(tmp_path / "p.ipynb"), "-p", "sizes", "[3, 4]",
         "-p", "name", "b", "-k", "python3", "--cwd", str(study.REPO_ROOT)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert _stdout(tmp_path / "p.ipynb").strip() == "list 7 b"
    # an unknown name: papermill only warns, the notebook's check fails naming it
    with pytest.raises(pm.PapermillExecutionError, match=r"unknown parameter 'sizez'.*declares sizes, name"):
        pm.execute_notebook(str(source), str(tmp_path / "u.ipynb"), parameters={"sizez": [3]}, kernel_name="python3",
                            progress_bar=False, cwd=str(study.REPO_ROOT))
