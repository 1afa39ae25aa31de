"""Ray Data's progress records become one updating line per execution (no Ray needed to test)."""

from __future__ import annotations

import logging

from helpers.runtime.progress import NotebookProgress, short_plan


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("ray.data", level, __file__, 1, message, None, None)


class Recorded(NotebookProgress):
    """Keeps what would be displayed instead of displaying it (this test has no notebook)."""

    def __init__(self):
        super().__init__()
        self.shown: list[tuple[str, bool]] = []

    def _show(self, text: str, new: bool = False) -> None:
        self.shown.append((text, new))


def test_short_plan_drops_buffers_and_operator_classes():
    plan = (
        "InputDataBuffer[Input] -> TaskPoolMapOperator[ReadCSV->Project] -> ActorPoolMapOperator[MapBatches(ImageGen)]"
    )
    assert short_plan(plan) == "ReadCSV->Project -> MapBatches(ImageGen)"


def test_one_execution_is_one_line_updated_in_place_and_hidden_from_the_console():
    progress = Recorded()
    records = [
        record("Starting execution of Dataset dataset_7_0. Full logs are in /tmp/ray/x"),
        record("Execution plan of Dataset dataset_7_0: InputDataBuffer[Input] -> TaskPoolMapOperator[ReadCSV]"),
        record("Total Progress: 40/120"),
        record("✔️  Dataset dataset_7_0 execution finished in 3.25 seconds"),
    ]
    assert all(progress.filter(r) for r in records)
    assert all(r.hide for r in records)
    assert progress.shown == [
        ("Ray Data: starting ...", True),
        ("Ray Data: ReadCSV: running", False),
        ("Ray Data: ReadCSV: 40/120 rows", False),
        ("Ray Data: ReadCSV: done in 3.2 s", False),
    ]


def test_warnings_are_left_alone():
    progress = Recorded()
    warning = record("Replacing contents", logging.WARNING)
    assert progress.filter(warning) and not getattr(warning, "hide", False)
    assert progress.shown == []
