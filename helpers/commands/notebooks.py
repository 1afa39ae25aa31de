"""Single-source workshop notebooks: authors write solutions, students get generated copies.

Only ``solutions/*.ipynb`` are written by hand. ``build`` derives each
``notebooks/<name>.ipynb`` from its solution by removing marked solution code,
so the two can never drift apart the way hand-kept twins do. The student copy
must still run top to bottom, so every generated cell is compiled before it is
written, and malformed markers stop the build instead of leaking an answer.

Markers (code cells only):

* ``target = expression  # SOLUTION`` becomes ``target = ...``.
* ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` (each on its own line) becomes
  ``# TODO: your code here`` at the BEGIN line's indentation, followed by the
  code of any ``# STUB: <code>`` lines placed directly after BEGIN, or by
  ``pass`` when the block was the whole body of a ``def``/``for``/``if``...
* A code cell whose first line is ``# HIDDEN``, and any cell tagged
  ``solution_only``, is left out of the student copy.

Command line::

    python -m helpers.notebooks build [--check] [--src solutions] [--dst notebooks]
    python -m helpers.notebooks clean [--check] [NOTEBOOK_OR_DIR ...]
    python -m helpers.notebooks run NOTEBOOK_OR_DIR ... [--html OUTDIR] [--timeout S]
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import re
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from helpers.errors import first_line
from helpers.kernel import KERNEL_DISPLAY_NAME, KERNEL_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The kernel every notebook names in its metadata: the one setup.sh registers on .venv, so that
#: JupyterLab and the runner start the workshop's Python, not whichever "python3" comes first.
KERNELSPEC = {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
SOLUTION_ONLY_TAG = "solution_only"
TODO_COMMENT = "# TODO: your code here"
DEFAULT_RUN_DIR = REPO_ROOT / "build" / "executed"

# Cell metadata that records one person's session rather than the notebook's content.
_VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")

BEGIN_MARK = re.compile(r"^(?P<indent>\s*)#\s*BEGIN SOLUTION\s*$")
END_MARK = re.compile(r"^\s*#\s*END SOLUTION\s*$")
STUB_MARK = re.compile(r"^\s*#\s*STUB:\s?(?P<code>.*)$")
SOLUTION_LINE_MARK = re.compile(r"^(?P<code>.*?)\s*#\s*SOLUTION\s*$")
_HIDDEN = re.compile(r"^\s*#\s*HIDDEN\b")
# Anything that looks like a block marker but is not exactly one: a typo here
# would otherwise leave the solution in the student copy without a word.
_MARKER_LOOKALIKE = re.compile(
    r"#.*\b(BEGIN|END)\s*SOLUTION\b|^\s*#\s*(?i:(begin|end)\s*solution)\s*$"
)


class NotebookBuildError(ValueError):
    """A solution notebook cannot be turned into a valid student notebook."""

    def __init__(
        self,
        notebook: str,
        cell_index: int,
        line: int | None,
        problem: str,
        text: str = "",
    ):
        self.notebook = notebook
        self.cell_index = cell_index
        self.line = line
        self.problem = problem
        where = f"{notebook}: cell index {cell_index}"
        if line is not None:
            where += f", line {line}"
        message = f"{where}: {problem}"
        if text:
            message += f"\n    > {text.strip()}"
        super().__init__(message)


class MarkerError(NotebookBuildError):
    """A solution marker is malformed (nested, unmatched, unterminated, misplaced)."""


# --------------------------------------------------------------------------- transform


@dataclass
class _Block:
    begin: int
    indent: str
    stubs: list[str] = field(default_factory=list)
    in_stub_header: bool = True


@dataclass
class _EmittedStub:
    begin: int
    end: int
    indent: str
    has_code: bool
    out_index: int  # where ``pass`` goes in the output lines, if it is needed


def _assignment_target(code: str) -> str | None:
    """Text left of the first top-level ``=`` (not ``==``, ``+=``, keyword args), or None."""
    depth = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code + "\n").readline):
            if tok.type != tokenize.OP:
                continue
            if tok.string in ("(", "[", "{"):
                depth += 1
            elif tok.string in (")", "]", "}"):
                depth -= 1
            elif tok.string == "=" and depth == 0:
                target = code[: tok.start[1]].rstrip()
                return target if target.strip() else None
    except (tokenize.TokenError, SyntaxError):
        return None
    return None


def _as_python(source: str) -> str:
    """Turn IPython syntax (``%magic``, ``!cmd``) into plain Python, keeping line numbers."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return source
    return TransformerManager().transform_cell(source)


def _suites(tree: ast.AST) -> list[tuple[int, int, int]]:
    """(header line, first body line, last body line) of every indented statement list."""
    found = []
    for node in ast.walk(tree):
        # ``case`` clauses carry no position themselves; their pattern does.
        header = getattr(node, "lineno", None) or getattr(
            getattr(node, "pattern", None), "lineno", None
        )
        if isinstance(node, ast.Module) or header is None:
            continue
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                found.append((header, body[0].lineno, body[-1].end_lineno))
    return found


def _needs_pass(block: _EmittedStub, suites: list[tuple[int, int, int]]) -> bool:
    """True when the block held every statement of a suite whose header stays in the cell."""
    return any(
        header < block.begin and block.begin < first and last < block.end
        for header, first, last in suites
    )


def _transform_code(source: str, notebook: str, index: int) -> str:
    lines = source.split("\n")
    out: list[str] = []
    emitted: list[_EmittedStub] = []
    block: _Block | None = None

    def fail(lineno: int, problem: str) -> MarkerError:
        return MarkerError(notebook, index, lineno, problem, lines[lineno - 1])

    for lineno, line in enumerate(lines, 1):
        begin = BEGIN_MARK.match(line)
        if begin:
            if block is not None:
                raise fail(
                    lineno,
                    f"nested '# BEGIN SOLUTION': the block opened on line {block.begin} has no '# END SOLUTION' yet",
                )
            block = _Block(begin=lineno, indent=begin["indent"])
            continue
        if END_MARK.match(line):
            if block is None:
                raise fail(
                    lineno,
                    "'# END SOLUTION' without a matching '# BEGIN SOLUTION' above it",
                )
            out.append(block.indent + TODO_COMMENT)
            out.extend(
                block.indent + stub if stub.strip() else "" for stub in block.stubs
            )
            has_code = any(
                stub.strip() and not stub.lstrip().startswith("#")
                for stub in block.stubs
            )
            emitted.append(
                _EmittedStub(block.begin, lineno, block.indent, has_code, len(out))
            )
            block = None
            continue
        if _MARKER_LOOKALIKE.search(line):
            raise fail(
                lineno,
                "solution block markers must be exactly '# BEGIN SOLUTION' or '# END SOLUTION', alone on their line",
            )
        stub = STUB_MARK.match(line)
        if block is not None:
            if stub and block.in_stub_header:
                block.stubs.append(stub["code"])
            elif stub:
                raise fail(
                    lineno,
                    "'# STUB:' lines must come directly after '# BEGIN SOLUTION', before any solution code",
                )
            else:
                block.in_stub_header = False
            continue
        if stub:
            raise fail(
                lineno,
                "'# STUB:' line outside a '# BEGIN SOLUTION' ... '# END SOLUTION' block",
            )
        solution = SOLUTION_LINE_MARK.match(line)
        if solution:
            target = _assignment_target(solution["code"])
            if target is None:
                raise fail(
                    lineno,
                    "a '# SOLUTION' line must be an assignment like 'name = expression'; "
                    "use a BEGIN/END SOLUTION block otherwise",
                )
            out.append(f"{target} = ...")
            continue
        out.append(line)

    if block is not None:
        raise MarkerError(
            notebook,
            index,
            block.begin,
            "'# BEGIN SOLUTION' is never closed by '# END SOLUTION'",
            lines[block.begin - 1],
        )

    if emitted:
        try:
            suites = _suites(ast.parse(_as_python(source)))
        except SyntaxError as exc:
            raise NotebookBuildError(
                notebook,
                index,
                exc.lineno,
                f"the solution cell is not valid Python: {exc.msg}",
            ) from None
        for stub in reversed(emitted):
            if not stub.has_code and _needs_pass(stub, suites):
                out.insert(stub.out_index, stub.indent + "pass")

    student = "\n".join(out)
    try:
        compile(
            _as_python(student),
            f"{notebook}[{index}]",
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True,
        )
    except SyntaxError as exc:
        raise NotebookBuildError(
            notebook,
            index,
            exc.lineno,
            f"the student version of this cell is not valid Python ({exc.msg}); "
            "add '# STUB: <code>' lines after '# BEGIN SOLUTION' so the stub defines what later code needs",
            exc.text or "",
        ) from None
    return student


def is_hidden_cell(cell) -> bool:
    """Whether ``cell`` stays out of the student notebook: tagged solution-only, or a code cell headed ``# HIDDEN``."""
    if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
        return True
    first_line = cell.source.split("\n", 1)[0]
    return cell.cell_type == "code" and bool(_HIDDEN.match(first_line))


def _clean_cell_metadata(metadata: dict) -> dict:
    return {
        key: value
        for key, value in metadata.items()
        if key not in _VOLATILE_CELL_METADATA
    }


def to_student(
    nb: nbformat.NotebookNode, source_name: str = "<notebook>"
) -> nbformat.NotebookNode:
    """Return the student copy of a solution notebook; the input is not modified.

    Raises MarkerError / NotebookBuildError naming ``source_name``, the cell
    index and the line when markers are malformed or a stub does not compile.
    """
    student = nbformat.v4.new_notebook()
    student.metadata = nbformat.from_dict(
        {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    )
    for index, cell in enumerate(nb.cells):
        if is_hidden_cell(cell):
            continue
        source = cell.source
        metadata = _clean_cell_metadata(dict(cell.get("metadata", {})))
        cell_id = cell.get("id") or f"cell-{index}"
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(
                _transform_code(source, source_name, index), metadata=metadata
            )
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(source, metadata=metadata)
            if cell.get("attachments"):
                new.attachments = cell.attachments
        else:
            new = nbformat.v4.new_raw_cell(source, metadata=metadata)
        new.id = cell_id
        student.cells.append(new)
    return student


def _dumps(nb: nbformat.NotebookNode) -> str:
    """The exact bytes Jupyter would save (sorted keys, 1-space indent, trailing newline)."""
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class Drift:
    """One student notebook that does not match its solution."""

    name: str
    status: str  # "differs", "missing" or "extra"


def plan(src: Path, dst: Path) -> tuple[dict[str, str], list[Drift]]:
    """Render every student notebook and compare with ``dst``; writes nothing."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"solutions folder not found: {src}")
    rendered = {
        path.name: _dumps(to_student(_read(path), source_name=_display(path)))
        for path in sorted(src.glob("*.ipynb"))
    }
    drift = []
    for name, text in rendered.items():
        target = dst / name
        if not target.exists():
            drift.append(Drift(name, "missing"))
        elif target.read_text(encoding="utf-8") != text:
            drift.append(Drift(name, "differs"))
    if dst.is_dir():
        drift.extend(
            Drift(path.name, "extra")
            for path in sorted(dst.glob("*.ipynb"))
            if path.name not in rendered
        )
    return rendered, drift


def build(
    src: Path = REPO_ROOT / "solutions",
    dst: Path = REPO_ROOT / "notebooks",
    check: bool = False,
) -> list[str]:
    """Write student notebooks for every solution; return the names that were (or would be) changed.

    With ``check=True`` nothing is written. Names of extra student notebooks
    (no matching solution) are included but never deleted: removing a file is
    left to a person.
    """
    rendered, drift = plan(src, dst)
    if not check:
        _apply(rendered, drift, Path(dst))
    return [item.name for item in drift]


def _apply(rendered: dict[str, str], drift: list[Drift], dst: Path) -> None:
    for item in drift:
        if item.status != "extra":
            _write_text(dst / item.name, rendered[item.name])


# --------------------------------------------------------------------------- clean


def clean_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs, execution counts and session metadata in place; set the workshop kernel."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata = nbformat.from_dict(
            _clean_cell_metadata(dict(cell.get("metadata", {})))
        )
    nb.metadata["kernelspec"] = nbformat.from_dict(dict(KERNELSPEC))
    nb.metadata["language_info"] = nbformat.from_dict({"name": "python"})
    return nb


def clean(paths: list[Path], check: bool = False) -> list[Path]:
    """Clean notebooks in place (for authors); return those that were (or would be) changed."""
    changed = []
    for path in _expand(paths):
        before = path.read_text(encoding="utf-8")
        after = _dumps(clean_notebook(_read(path)))
        if before != after:
            changed.append(path)
            if not check:
                _write_text(path, after)
    return changed


# --------------------------------------------------------------------------- run


@dataclass
class RunResult:
    notebook: Path
    seconds: float
    executed: Path
    html: Path | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _expand(paths) -> list[Path]:
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.glob("*.ipynb")))
        elif path.suffix == ".ipynb" and path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"not a notebook or a folder of notebooks: {raw}")
    return found


def _one_line_error(exc: BaseException) -> str:
    """A notebook cell's error as its kernel named it (``ename``/``evalue``), else the exception's own."""
    value = getattr(exc, "evalue", None)
    return first_line(Exception(value) if value is not None else exc, getattr(exc, "ename", None) or type(exc).__name__)


def kernel_env(notebook: Path) -> dict[str, str]:
    """The environment JupyterLab gives a notebook's kernel: this one, plus the notebook's name.

    ``helpers.start()`` reads the name (``JPY_SESSION_NAME``) to check what
    this lesson needs on storage, not what every lesson needs.
    """
    return {**os.environ, "JPY_SESSION_NAME": str(Path(notebook).resolve())}


def run_notebooks(
    paths,
    outdir: Path,
    html: bool = True,
    timeout: int = 600,
    kernel_name: str = KERNELSPEC["name"],
) -> list[RunResult]:
    """Execute notebooks top to bottom, each in its own folder, and keep the results.

    Executed copies (and HTML with ``html=True``) go to
    ``outdir/<notebook's folder name>/<name>.ipynb|.html`` so ``solutions`` and
    ``notebooks`` can be previewed together; sources are never overwritten.
    A failing notebook is still saved, outputs up to the failing cell included.
    """
    from nbclient import NotebookClient

    outdir = Path(outdir)
    results = []
    for path in _expand(paths):
        nb = _read(path)
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name=kernel_name,
            resources={"metadata": {"path": str(path.parent.resolve())}},
        )
        error = None
        started = time.perf_counter()
        try:
            client.execute(env=kernel_env(path))
        except Exception as exc:  # noqa: BLE001 - the notebook's failure is the result we report
            error = _one_line_error(exc)
        seconds = time.perf_counter() - started

        target = outdir / path.parent.resolve().name / path.name
        _write_text(target, _dumps(nb))
        html_path = None
        if html:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(nb)
            html_path = target.with_suffix(".html")
            _write_text(html_path, body)
        results.append(RunResult(path, seconds, target, html_path, error))
    return results


def _print_table(results: list[RunResult]) -> None:
    names = [_display(result.notebook) for result in results]
    width = max([len("notebook"), *map(len, names)])
    print(f"{'notebook':<{width}}  {'seconds':>8}  result")
    for name, result in zip(names, results, strict=True):
        print(
            f"{name:<{width}}  {result.seconds:>8.1f}  {'ok' if result.ok else 'error: ' + result.error}"
        )


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.notebooks", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    build_cmd = commands.add_parser(
        "build", help="generate student notebooks from solutions"
    )
    build_cmd.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if notebooks are out of sync",
    )
    build_cmd.add_argument("--src", type=Path, default=REPO_ROOT / "solutions")
    build_cmd.add_argument("--dst", type=Path, default=REPO_ROOT / "notebooks")

    clean_cmd = commands.add_parser(
        "clean", help="strip outputs and execution counts in place"
    )
    clean_cmd.add_argument(
        "paths", nargs="*", type=Path, default=[REPO_ROOT / "solutions"]
    )
    clean_cmd.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any notebook needs cleaning",
    )

    run_cmd = commands.add_parser("run", help="execute notebooks (instructor preview)")
    run_cmd.add_argument("paths", nargs="+", type=Path)
    run_cmd.add_argument(
        "--html",
        type=Path,
        metavar="OUTDIR",
        help="write executed copies and HTML here",
    )
    run_cmd.add_argument(
        "--timeout",
        type=int,
        default=600,
        help="seconds allowed per cell (default 600)",
    )
    run_cmd.add_argument(
        "--kernel",
        default=KERNELSPEC["name"],
        help=f"Jupyter kernel to run them in (default {KERNELSPEC['name']}, registered by setup.sh)",
    )

    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            return _build_command(args)
        if args.command == "clean":
            changed = clean(args.paths, check=args.check)
            for path in changed:
                print(
                    f"{'needs cleaning' if args.check else 'cleaned'}: {_display(path)}"
                )
            return 1 if args.check and changed else 0
        outdir = args.html or DEFAULT_RUN_DIR
        results = run_notebooks(
            args.paths,
            outdir,
            html=args.html is not None,
            timeout=args.timeout,
            kernel_name=args.kernel,
        )
        _print_table(results)
        print(f"executed copies in {_display(Path(outdir))}")
        return 0 if all(result.ok for result in results) else 1
    except (NotebookBuildError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _build_command(args) -> int:
    rendered, drift = plan(args.src, args.dst)
    if args.check:
        if not drift:
            print(f"{_display(args.dst)} is in sync with {_display(args.src)}")
            return 0
        print(f"{_display(args.dst)} is out of sync with {_display(args.src)}:")
        for item in drift:
            note = (
                f" (no {_display(args.src / item.name)})"
                if item.status == "extra"
                else ""
            )
            print(f"  {item.status:<8} {_display(args.dst / item.name)}{note}")
        print("Run `python -m helpers.notebooks build` and commit the result.")
        return 1
    _apply(rendered, drift, args.dst)
    for item in drift:
        if item.status == "extra":
            print(
                f"warning: {_display(args.dst / item.name)} has no solution; delete it or add one",
                file=sys.stderr,
            )
        else:
            print(f"wrote {_display(args.dst / item.name)}")
    if not drift:
        print(f"{_display(args.dst)} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
