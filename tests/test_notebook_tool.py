"""The single-source notebook tool: markers, errors, build/check, clean, run."""

from __future__ import annotations

import json
import textwrap

import nbformat
import pytest

from helpers.commands import notebooks
from helpers.commands.notebooks import (
    KERNELSPEC,
    MarkerError,
    NotebookBuildError,
    build,
    main,
    run_notebooks,
    to_student,
)


def code(source: str, **metadata) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(
        textwrap.dedent(source).strip("\n"), metadata=metadata
    )
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="old output\n")
    ]
    cell.execution_count = 7
    return cell


def notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    for index, cell in enumerate(nb.cells):
        cell.id = f"c{index}"
    nb.metadata = {
        "kernelspec": {"name": "other", "display_name": "Other", "language": "python"}
    }
    return nb


def student_sources(*cells) -> list[str]:
    return [cell.source for cell in to_student(notebook(*cells)).cells]


def student_source(source: str) -> str:
    (only,) = student_sources(code(source))
    return only


# --------------------------------------------------------------------------- # SOLUTION lines


def test_solution_line_keeps_the_assignment_target():
    assert student_source("out = ds.map_batches(f)  # SOLUTION") == "out = ..."


def test_solution_line_keeps_indentation_and_unmarked_lines():
    source = """
    def build(ds):
        out = ds.map_batches(f, batch_size=64)  # SOLUTION
        return out
    """
    assert student_source(source) == "def build(ds):\n    out = ...\n    return out"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("x: int = compute(a=1)  # SOLUTION", "x: int = ..."),
        ("ds = ray.data.read_parquet(path, columns=['a'])#SOLUTION", "ds = ..."),
        ("batch['y'] = batch['x'] == 2  # SOLUTION", "batch['y'] = ..."),
        ("f = lambda x=1: x  # SOLUTION", "f = ..."),
        ("a, b = split(x)  # SOLUTION", "a, b = ..."),
    ],
)
def test_solution_line_uses_first_top_level_equals(line, expected):
    assert student_source(line) == expected


@pytest.mark.parametrize(
    "line",
    ["print(x)  # SOLUTION", "x += 1  # SOLUTION", "# SOLUTION", "f(a=1)  # SOLUTION"],
)
def test_solution_line_without_assignment_is_an_error(line):
    nb = notebook(code("import ray"), code(f"y = 1\n{line}"))
    with pytest.raises(MarkerError) as info:
        to_student(nb, source_name="solutions/01_x.ipynb")
    error = info.value
    assert (error.notebook, error.cell_index, error.line) == (
        "solutions/01_x.ipynb",
        1,
        2,
    )
    assert "solutions/01_x.ipynb: cell index 1, line 2" in str(error)


def test_lowercase_solution_comment_is_an_ordinary_comment():
    assert student_source("x = 1  # solution is easy") == "x = 1  # solution is easy"


# --------------------------------------------------------------------------- BEGIN/END blocks


def test_block_becomes_a_todo_comment():
    source = """
    import ray
    # BEGIN SOLUTION
    ds = ray.data.range(10)
    ds.show()
    # END SOLUTION
    print("done")
    """
    assert student_source(source) == 'import ray\n# TODO: your code here\nprint("done")'


def test_block_with_stub_lines_keeps_names_defined():
    source = """
    # BEGIN SOLUTION
    # STUB: parquet_path = None
    # STUB: rows = []
    parquet_path = write(ds)
    rows = ds.take(5)
    # END SOLUTION
    """
    assert (
        student_source(source)
        == "# TODO: your code here\nparquet_path = None\nrows = []"
    )


def test_indented_block_uses_the_begin_indentation_for_todo_and_stub():
    source = """
    class Embed:
        def __call__(self, batch):
            # BEGIN SOLUTION
            # STUB: batch["vec"] = None
            batch["vec"] = self.model(batch["text"])
            # END SOLUTION
            return batch
    """
    expected = """
    class Embed:
        def __call__(self, batch):
            # TODO: your code here
            batch["vec"] = None
            return batch
    """
    assert student_source(source) == textwrap.dedent(expected).strip("\n")


def test_stub_keeps_its_own_relative_indentation():
    source = """
    # BEGIN SOLUTION
    # STUB: def normalize(batch):
    # STUB:     return batch
    def normalize(batch):
        batch["x"] = batch["x"] / 255
        return batch
    # END SOLUTION
    """
    assert (
        student_source(source)
        == "# TODO: your code here\ndef normalize(batch):\n    return batch"
    )


def test_block_that_was_a_whole_body_gets_pass():
    source = """
    def normalize(batch):
        # BEGIN SOLUTION
        batch["x"] = batch["x"] / 255
        return batch
        # END SOLUTION

    for i in range(3):
        # BEGIN SOLUTION
        print(i)
        # END SOLUTION
    """
    expected = """
    def normalize(batch):
        # TODO: your code here
        pass

    for i in range(3):
        # TODO: your code here
        pass
    """
    assert student_source(source) == textwrap.dedent(expected).strip("\n")


def test_block_in_try_except_and_match_bodies_gets_pass():
    source = """
    try:
        # BEGIN SOLUTION
        x = 1
        # END SOLUTION
    except ValueError:
        # BEGIN SOLUTION
        x = 2
        # END SOLUTION
    match x:
        case 1:
            # BEGIN SOLUTION
            print(x)
            # END SOLUTION
    """
    assert student_source(source).count("pass") == 3


def test_block_that_is_part_of_a_body_gets_no_pass():
    source = """
    def normalize(batch):
        # BEGIN SOLUTION
        batch["x"] = batch["x"] / 255
        # END SOLUTION
        return batch
    """
    assert "pass" not in student_source(source)


def test_block_around_a_whole_definition_gets_no_pass():
    source = """
    # BEGIN SOLUTION
    def normalize(batch):
        return batch
    # END SOLUTION
    """
    assert student_source(source) == "# TODO: your code here"


def test_solution_markers_inside_a_block_are_dropped_with_it():
    source = """
    # BEGIN SOLUTION
    x = 1  # SOLUTION
    # END SOLUTION
    """
    assert student_source(source) == "# TODO: your code here"


def test_magics_and_shell_lines_survive_and_compile():
    source = """
    %pip install -q pyarrow
    !ls
    # BEGIN SOLUTION
    # STUB: n = 0
    n = 3
    # END SOLUTION
    """
    assert (
        student_source(source)
        == "%pip install -q pyarrow\n!ls\n# TODO: your code here\nn = 0"
    )


def test_hint_and_solution_calls_stay_commented():
    source = "lab.check(total=total)\n# lab.hint()\n# lab.solution()"
    assert student_source(source) == source


# --------------------------------------------------------------------------- malformed markers


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        (
            "x = 1\n# BEGIN SOLUTION\ny = 2\n# BEGIN SOLUTION\n# END SOLUTION",
            4,
            "nested",
        ),
        ("x = 1\n# END SOLUTION", 2, "without a matching"),
        ("x = 1\n  # BEGIN SOLUTION\ny = 2", 2, "never closed"),
        ("x = 1  # BEGIN SOLUTION\ny = 2\n# END SOLUTION", 1, "alone on their line"),
        ("# begin solution\ny = 2\n# end solution", 1, "alone on their line"),
        ("# BEGIN SOLUTION NO PROMPT\ny = 2\n# END SOLUTION", 1, "alone on their line"),
        ("# STUB: x = 1\nx = 2", 1, "outside"),
        ("# BEGIN SOLUTION\nx = 2\n# STUB: x = 1\n# END SOLUTION", 3, "directly after"),
    ],
)
def test_malformed_markers_name_notebook_cell_and_line(source, line, words):
    nb = notebook(
        nbformat.v4.new_markdown_cell("# Title"), code("import ray"), code(source)
    )
    with pytest.raises(MarkerError) as info:
        to_student(nb, source_name="solutions/02_bad.ipynb")
    assert (info.value.notebook, info.value.cell_index, info.value.line) == (
        "solutions/02_bad.ipynb",
        2,
        line,
    )
    assert words in str(info.value)


def test_stub_that_does_not_compile_is_an_error():
    source = """
    def f(batch):
        # BEGIN SOLUTION
        # STUB: return (
        return batch
        # END SOLUTION
    """
    with pytest.raises(NotebookBuildError, match="not valid Python"):
        to_student(notebook(code(source)), source_name="s.ipynb")


# --------------------------------------------------------------------------- hidden cells and notebook shape


def test_hidden_and_solution_only_cells_are_dropped():
    cells = [
        nbformat.v4.new_markdown_cell("intro"),
        code("# HIDDEN\nassert total == 10"),
        code("x = 1", tags=["solution_only"]),
        nbformat.v4.new_markdown_cell(
            "answer explained", metadata={"tags": ["solution_only"]}
        ),
        code("# HIDDEN_VALUE = 3 is not a marker\ny = 2"),
        code("z = 3", tags=["keep-me"]),
    ]
    student = to_student(notebook(*cells))
    assert [cell.source for cell in student.cells] == [
        "intro",
        "# HIDDEN_VALUE = 3 is not a marker\ny = 2",
        "z = 3",
    ]
    assert [cell.id for cell in student.cells] == ["c0", "c4", "c5"]
    assert student.cells[2].metadata == {"tags": ["keep-me"]}


def test_student_notebook_is_clean_and_uses_the_workshop_kernel():
    solution = notebook(
        code("x = 1  # SOLUTION", execution={"iopub.status.busy": "2024"}),
        code("print(x)"),
    )
    student = to_student(solution)
    assert student.metadata["kernelspec"] == KERNELSPEC
    for cell in student.cells:
        assert cell.outputs == []
        assert cell.execution_count is None
        assert "execution" not in cell.metadata
    # the solution is untouched
    assert solution.cells[0].outputs and solution.cells[0].execution_count == 7
    nbformat.validate(student)


def test_every_student_code_cell_compiles():
    cells = [
        code("import ray\nds = ray.data.range(8)  # SOLUTION"),
        code("def f(b):\n    # BEGIN SOLUTION\n    return b\n    # END SOLUTION"),
        code(
            "# BEGIN SOLUTION\n# STUB: out = None\nout = ds.map_batches(f)\n# END SOLUTION\nprint(out)"
        ),
        code("%time x = 1\n!echo hi"),
    ]
    from helpers.commands.notebooks import _as_python

    for cell in to_student(notebook(*cells)).cells:
        compile(_as_python(cell.source), "<cell>", "exec")


# --------------------------------------------------------------------------- build, --check, clean


@pytest.fixture
def project(tmp_path):
    src, dst = tmp_path / "solutions", tmp_path / "notebooks"
    src.mkdir()
    nb = notebook(
        nbformat.v4.new_markdown_cell("# Lab 1"),
        code("total = sum([1, 2, 3, 4])  # SOLUTION"),
        code("# HIDDEN\nassert total == 10"),
    )
    nbformat.write(nb, src / "01_sum.ipynb")
    return src, dst


def test_build_writes_student_notebooks_and_is_idempotent(project):
    src, dst = project
    solution_bytes = (src / "01_sum.ipynb").read_bytes()

    assert build(src, dst) == ["01_sum.ipynb"]
    first = (dst / "01_sum.ipynb").read_bytes()
    assert build(src, dst) == []
    assert (dst / "01_sum.ipynb").read_bytes() == first
    assert (src / "01_sum.ipynb").read_bytes() == solution_bytes

    text = first.decode()
    assert text.endswith("}\n") and text.startswith('{\n "cells": [')
    assert json.loads(text)["cells"][1]["source"] == ["total = ..."]


def test_check_reports_missing_differs_and_extra_without_writing(project, capsys):
    src, dst = project
    args = ["build", "--check", "--src", str(src), "--dst", str(dst)]

    assert main(args) == 1
    assert "missing" in capsys.readouterr().out
    assert not dst.exists()

    assert main(["build", "--src", str(src), "--dst", str(dst)]) == 0
    assert main(args) == 0
    assert "in sync" in capsys.readouterr().out

    student = dst / "01_sum.ipynb"
    student.write_text(student.read_text().replace("total = ...", "total = 10"))
    nbformat.write(notebook(code("x = 1")), dst / "99_orphan.ipynb")
    changed = build(src, dst, check=True)
    assert changed == ["01_sum.ipynb", "99_orphan.ipynb"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "differs" in out and "01_sum.ipynb" in out
    assert "extra" in out and "99_orphan.ipynb" in out
    assert "total = 10" in student.read_text()


def test_build_reports_marker_errors_with_exit_code_2(project, capsys):
    src, dst = project
    nbformat.write(notebook(code("# BEGIN SOLUTION\nx = 1")), src / "02_bad.ipynb")
    assert main(["build", "--src", str(src), "--dst", str(dst)]) == 2
    err = capsys.readouterr().err
    assert "02_bad.ipynb: cell index 0, line 1" in err and "never closed" in err
    assert not dst.exists()


def test_clean_strips_outputs_in_place(project):
    src, _ = project
    path = src / "01_sum.ipynb"
    assert notebooks.clean([path], check=True) == [path]
    assert notebooks.clean([src]) == [path]
    nb = nbformat.read(path, as_version=4)
    assert all(
        cell.outputs == [] and cell.execution_count is None
        for cell in nb.cells
        if cell.cell_type == "code"
    )
    assert nb.metadata["kernelspec"] == KERNELSPEC
    assert "# SOLUTION" in nb.cells[1].source
    assert notebooks.clean([src]) == []


# --------------------------------------------------------------------------- run (starts a real workshop kernel)


def test_run_executes_in_the_notebook_folder_and_writes_html(tmp_path, capsys):
    folder = tmp_path / "lessons"
    folder.mkdir()
    (folder / "data.txt").write_text("hello from the data file")
    good = notebook(
        nbformat.v4.new_markdown_cell("# Preview"),
        code("import os\ntext = open('data.txt').read()"),
        code("print(text.upper())"),
    )
    nbformat.write(good, folder / "01_good.ipynb")
    source_bytes = (folder / "01_good.ipynb").read_bytes()
    out = tmp_path / "preview"

    (result,) = run_notebooks([folder / "01_good.ipynb"], out, html=True, timeout=60)

    assert result.ok, result.error
    assert result.executed == out / "lessons" / "01_good.ipynb"
    executed = nbformat.read(result.executed, as_version=4)
    assert executed.cells[2].outputs[0]["text"] == "HELLO FROM THE DATA FILE\n"
    assert "HELLO FROM THE DATA FILE" in result.html.read_text()
    assert (folder / "01_good.ipynb").read_bytes() == source_bytes


def test_run_reports_failures_and_exits_nonzero(tmp_path, capsys):
    folder = tmp_path / "lessons"
    folder.mkdir()
    nbformat.write(
        notebook(code("x = 1"), code("raise ValueError('boom\\nmore detail')")),
        folder / "02_bad.ipynb",
    )
    out = tmp_path / "preview"

    assert main(["run", str(folder), "--html", str(out), "--timeout", "60"]) == 1
    table = capsys.readouterr().out
    assert "02_bad.ipynb" in table and "error: ValueError: boom" in table
    assert "more detail" not in table
    assert (out / "lessons" / "02_bad.html").exists()
    executed = nbformat.read(out / "lessons" / "02_bad.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["ename"] == "ValueError"
