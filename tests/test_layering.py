"""The package's layering: the workflow layer stands on the library, never the reverse, and imports no
notebook-only code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "qt1lib"
#: Modules that only the notebooks, the book and the runner need.
NOTEBOOK_ONLY = ("matplotlib", "seaborn", "plotly", "myst_nb", "IPython", "papermill", "nbformat", "jupyter_book",
                 "qt1lib.plots", "qt1lib.interactive", "qt1lib.notebook", "qt1lib.study")
#: Modules outside workflow/ that may import it: the study runner and the command line (its package).
WORKFLOW_CLIENTS = ("qt1lib.study", "qt1lib.cli")


def _is_client(name: str) -> bool:
    return any(name == c or name.startswith(c + ".") for c in WORKFLOW_CLIENTS)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, at any depth (lazy imports included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return found


def test_importing_the_workflow_loads_no_notebook_only_code():
    code = (
        "import sys, json; import qt1lib.workflow; "
        f"print(json.dumps([m for m in {list(NOTEBOOK_ONLY)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]", out.stdout


def test_only_the_runner_and_the_command_line_import_the_workflow():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if name.startswith("qt1lib.workflow") or _is_client(name):
            continue
        uses = sorted(m for m in _imports(path) if m == "qt1lib.workflow" or m.startswith("qt1lib.workflow."))
        if uses:
            offenders[name] = uses
    assert offenders == {}


def test_an_estimators_cache_key_depends_on_its_own_code_only():
    """The store keys a T1 map by the source its step imports (qt1lib.store.module_closure): the lookup
    table's maps must not depend on the MAP estimators' code, nor any estimator family on another's."""
    from qt1lib.estimate.base import estimator_class
    from qt1lib.store import module_closure

    families = {name: set(estimator_class(name).modules) for name in ("lut", "map_seed_mp2rage", "map_exact_mp2rage")}
    contract = set(module_closure(["qt1lib.estimate.base"]))  # what every estimator shares (B1 grid of lut.py)
    for name, own in families.items():
        closure = set(module_closure(["qt1lib.workflow.mp2rage", *own]))
        others = set().union(*(m for n, m in families.items() if n != name)) - own - contract
        assert closure.isdisjoint(others), (name, sorted(closure & others))
