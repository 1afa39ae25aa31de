"""The workshop's Jupyter kernel: how ``setup.sh`` registers it, and what it says about a cell run too early.

JupyterLab keeps a lesson's cells when its kernel restarts (Kernel > Restart,
or after a crash), so a learner who then runs one cell further down gets
``NameError: name 'helpers' is not defined`` about a name the lesson's first
cell defines. The kernel "Ray Data workshop (.venv)" loads this module as an
IPython extension (``--IPKernelApp.extensions=helpers.kernel`` in its
``kernel.json``), which turns such a ``NameError`` into one line that says to
run the notebook from the top. A ``NameError`` about any other name (a typo,
a learner's own variable) keeps IPython's usual traceback.

``setup.sh`` registers the kernel with ``python -m ipykernel install --sys-prefix``,
then ``python -m helpers.kernel`` adds that one argument to its ``kernel.json``.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import sys
from functools import cache
from pathlib import Path

#: The kernel every notebook names in its metadata.
KERNEL_NAME = "ray-data-workshop"
KERNEL_DISPLAY_NAME = "Ray Data workshop (.venv)"
#: What ``kernel.json`` adds to ipykernel's own command line.
EXTENSION_ARGUMENT = "--IPKernelApp.extensions=helpers.kernel"

REPO_ROOT = Path(__file__).resolve().parents[1]
LESSON_FOLDERS = (REPO_ROOT / "notebooks", REPO_ROOT / "solutions")
_NAME_IN_ERROR = re.compile(r"name '(?P<name>\w+)' is not defined")
_RED, _RESET = "\x1b[31m", "\x1b[0m"


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _parse(source: str) -> ast.Module | None:
    """The cell's syntax tree; None for a cell that is not plain Python (a ``%magic``, a typo)."""
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _bound_here(node: ast.AST) -> set[str]:
    """The names ``node`` itself binds (not its children)."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
        return {node.id}
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.arg):
        return {node.arg}
    if isinstance(node, ast.alias):
        return {(node.asname or node.name).split(".")[0]}
    if isinstance(node, ast.ExceptHandler) and node.name:
        return {node.name}
    return set()


def names_bound(source: str, *, inner: bool = True) -> set[str]:
    """The names ``source`` binds: imports, assignments, ``def``, ``class``, loop targets.

    ``inner=False`` keeps those it binds in the notebook's namespace, leaving
    out function arguments and the names that functions, classes and
    comprehensions bind inside themselves. Parsed, not run.
    """
    tree = _parse(source)
    bound, todo = set(), [tree] if tree is not None else []
    while todo:
        node = todo.pop()
        bound |= _bound_here(node)
        if inner or not isinstance(node, _SCOPES):
            todo.extend(ast.iter_child_nodes(node))
    return bound


def names_used(source: str) -> set[str]:
    """Every name that ``source`` reads (``Load``), bound or not."""
    tree = _parse(source)
    if tree is None:
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


BUILTIN_NAMES = frozenset(dir(builtins)) | {"get_ipython", "display", "__file__", "__name__"}


@cache
def lesson_names() -> frozenset[str]:
    """The names the lessons' code cells define for later cells: ``helpers``, ``ray``, ``session``, ``animals`` ..."""
    names = set()
    for folder in LESSON_FOLDERS:
        for path in folder.glob("[0-9][0-9]_*.ipynb"):
            try:
                cells = json.loads(path.read_text())["cells"]
            except (OSError, ValueError, KeyError):
                continue
            for cell in cells:
                if cell.get("cell_type") == "code":
                    names |= names_bound("".join(cell.get("source", "")), inner=False)
    return frozenset(names - BUILTIN_NAMES)


def restart_advice(name: str, namespace: dict) -> str | None:
    """The one line for a ``NameError`` about ``name``, or None when IPython's own traceback says it better."""
    if name not in lesson_names():
        return None
    if "helpers" not in namespace:
        return (
            f"`{name}` is not defined yet: this kernel has not run the notebook's first cells (it was restarted "
            "or has just started). Run the notebook from the top: Run > Run All Cells."
        )
    return (
        f"`{name}` is not defined yet: a cell above this one defines it and has not run since the kernel started, "
        "or stopped with an error. Run the cells above: Run > Run All Above Selected Cell."
    )


def _name_error(shell, etype, value, tb, tb_offset=None):
    """IPython's custom exception handler: the advice as the whole traceback, else the usual one."""
    found = _NAME_IN_ERROR.search(str(value))
    advice = restart_advice(found["name"], shell.user_ns) if found else None
    if advice is not None:
        value._render_traceback_ = lambda: [f"{_RED}NameError{_RESET}: {advice}"]
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def load_ipython_extension(shell) -> None:
    """Called by IPython when the kernel starts (the kernel spec names this module)."""
    shell.set_custom_exc((NameError,), _name_error)


def kernel_json(prefix: str = sys.prefix) -> Path:
    """Where ``ipykernel install --sys-prefix --name ray-data-workshop`` wrote the kernel spec."""
    return Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"


def add_extension(prefix: str = sys.prefix) -> Path:
    """Add :data:`EXTENSION_ARGUMENT` to the registered kernel's command line (once); return its ``kernel.json``.

    ipykernel's installer writes the rest (this Python, its own flags), so
    only this one argument is the workshop's.
    """
    path = kernel_json(prefix)
    spec = json.loads(path.read_text())
    if EXTENSION_ARGUMENT not in spec["argv"]:
        spec["argv"].append(EXTENSION_ARGUMENT)
        path.write_text(json.dumps(spec, indent=1) + "\n")
    return path


if __name__ == "__main__":
    print(f"kernel {KERNEL_NAME}: {add_extension()} loads helpers.kernel")
