"""The live per-operator view of a Ray Data execution, and ``helpers.show_run()``.

Most tests feed recorded operator states (what ``ray_internals.operator_progress``
returned during a run of lesson 05's pipeline) to the view, so they need no Ray.
The last one runs a small pipeline with two actor pools in a notebook kernel,
as a lesson does, and reads what the cell displayed.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers.runtime.progress import HideProgressRecords, LiveProgress, Run
from helpers.runtime.ray_internals import OperatorProgress
from helpers.show.progress import ProgressView, RunTimeline, render, show_run
from tests.kernels import workshop_kernel

READ, EXPAND, LLM, IMAGES = "ReadCSV", "MapBatches(expand_prompt)", "MapBatches(Enhancer)", "MapBatches(ImageGen)"


def op(name, *, pool=False, tasks=0, finished=0, running=0, pending=0, rows_in=0, rows_out=0, queued=0, done=False,
       backpressured=False) -> OperatorProgress:
    return OperatorProgress(name=name, is_actor_pool=pool, tasks=tasks, tasks_finished=finished,
                            actors_running=running, actors_pending=pending, actors_restarting=0, rows_in=rows_in,
                            rows_out=rows_out, queued_blocks=queued, backpressured=backpressured, done=done)


#: Seconds into the run, and the four operators at that moment (shaped after lesson 05 on 2 cores).
RECORDED = [
    (0.0, [op(READ, tasks=1), op(EXPAND), op(LLM, pool=True, pending=2), op(IMAGES, pool=True, pending=2)]),
    (1.0, [op(READ, finished=1, rows_in=1, rows_out=12, done=True), op(EXPAND, tasks=2, rows_in=12),
           op(LLM, pool=True, pending=2, queued=3), op(IMAGES, pool=True, pending=2)]),
    (4.0, [op(READ, finished=1, rows_in=1, rows_out=12, done=True),
           op(EXPAND, finished=3, rows_in=12, rows_out=12, done=True),
           op(LLM, pool=True, tasks=2, running=2, rows_in=12, rows_out=4, queued=1),
           op(IMAGES, pool=True, tasks=1, running=1, pending=1, rows_in=4, queued=0)]),
    (8.0, [op(READ, finished=1, rows_in=1, rows_out=12, done=True),
           op(EXPAND, finished=3, rows_in=12, rows_out=12, done=True),
           op(LLM, pool=True, finished=3, running=2, rows_in=12, rows_out=12, done=True),
           op(IMAGES, pool=True, tasks=2, finished=1, running=2, rows_in=12, rows_out=4, queued=1)]),
]


def recorded_run(until: float = 8.0) -> Run:
    run = Run()
    for elapsed, states in RECORDED:
        if elapsed <= until:
            run.observe(elapsed, states)
    return run


def test_a_run_records_when_each_operator_asked_for_actors_worked_and_ended():
    run = recorded_run()
    run.finish(10.0, ok=True)
    read, expand, llm, images = run.operators
    assert (read.started, read.ended, read.asked) == (0.0, 1.0, None)
    assert (llm.asked, llm.started, llm.ended, llm.pool_size) == (0.0, 4.0, 8.0, 2)
    assert (images.started, images.ended) == (4.0, 10.0)  # still working when the run ended
    assert expand.rows_per_second == pytest.approx(12 / 3.0)
    assert (run.outcome, run.rows) == ("done", 4)


def test_the_live_table_shows_both_actor_pools_running_at_once():
    text, html = render(recorded_run(until=4.0), table=True)
    rows = {line.split()[0]: line for line in text.splitlines()[2:]}
    assert text.splitlines()[0] == "Ray Data: running for 4 s"
    assert set(rows) == {READ, EXPAND, LLM, IMAGES}
    assert " done " in rows[READ] and " done " in rows[EXPAND]
    assert re.search(r"running\s+actors: 2 running · 2 tasks\s+12\s+4\s+1 block$", rows[LLM]), rows[LLM]
    assert re.search(r"running\s+actors: 1 running, 1 pending · 1 task\s+4\s+0$", rows[IMAGES]), rows[IMAGES]
    assert html.count("<tr>") == 5 and html.count(">running</b>") == 2


def test_actors_loading_their_model_show_as_starting():
    text, _ = render(recorded_run(until=1.0), table=True)
    llm = next(line for line in text.splitlines() if LLM in line)
    assert "starting actors" in llm and "actors: 0 running, 2 pending · 0 tasks" in llm
    assert re.search(r"3 blocks$", llm), llm  # what the read and expand_prompt produced, waiting for the LLM


def test_after_the_run_each_operator_becomes_its_summary_row():
    run = recorded_run()
    run.finish(10.0, ok=True)
    text, html = render(run, table=True)
    lines = text.splitlines()
    assert lines[0] == "Ray Data: done in 10.0 s, 4 rows"
    assert lines[1].split() == ["operator", "ran", "as", "time", "rows", "out", "rows/s"]
    summary = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert summary == {READ: ["1", "task", "1.0", "s", "12", "12"],
                       EXPAND: ["3", "tasks", "3.0", "s", "12", "4.0"],
                       LLM: ["2", "actors", "4.0", "s", "12", "3.0"],
                       IMAGES: ["2", "actors", "6.0", "s", "4", "0.7"]}
    assert "rows/s" in html and "running" not in html


def test_a_failed_run_says_so_above_its_rows_and_on_its_one_line():
    run = recorded_run(until=4.0)
    run.finish(4.5, ok=False)
    text, _ = render(run, table=True)
    assert text.splitlines()[0] == "Ray Data: failed after 4.5 s (the error follows)"
    assert [line.split()[0] for line in text.splitlines()[2:]] == [READ, EXPAND, LLM, IMAGES]
    line, _ = render(run, table=False)
    assert line.endswith(f"{IMAGES}: failed after 4.5 s (the error follows)"), line


def test_an_operator_without_tasks_is_timed_from_its_first_rows():
    """A limit (``take_batch``) or an all-to-all operator runs no task Ray counts: its rows tell when it worked."""
    run = Run()
    run.observe(0.0, [op(IMAGES, pool=True, pending=2), op("limit=4")])
    run.observe(2.0, [op(IMAGES, pool=True, tasks=1, running=2, rows_in=8), op("limit=4")])
    run.observe(3.0, [op(IMAGES, pool=True, finished=1, running=2, rows_in=8, rows_out=8),
                      op("limit=4", rows_in=8, rows_out=4, done=True)])
    run.finish(3.5, ok=True)
    text, _ = render(run, table=True)
    assert text.splitlines()[0] == "Ray Data: done in 3.5 s, 4 rows"
    assert text.splitlines()[-1].split() == ["limit=4", "–", "0.0", "s", "4", "–"]


def test_a_short_run_stays_one_line_and_a_long_one_becomes_a_table_updated_at_most_every_refresh():
    """A test double: a clock the test moves and a display that keeps what it would show."""

    class Recorded(ProgressView):
        def __init__(self):
            super().__init__(refresh_s=2.0, clock=lambda: self.now)
            self.now, self.displayed = 0.0, []

        def _show(self, text, html_text):
            self.displayed.append(text)

    short = Recorded()
    run = recorded_run(until=0.0)
    short.update(run, force=True)
    run.finish(0.4, ok=True)
    short.update(run, force=True)
    assert short.displayed == [f"Ray Data: {READ} -> {EXPAND} -> {LLM} -> {IMAGES}: running",
                           f"Ray Data: {READ} -> {EXPAND} -> {LLM} -> {IMAGES}: 0 rows in 0.4 s"]

    view = Recorded()
    view.update(recorded_run(until=0.0), force=True)
    for view.now, until in ((1.0, 1.0), (2.5, 1.0), (3.0, 4.0), (4.6, 4.0), (5.0, 8.0)):
        run = recorded_run(until)
        run.elapsed = view.now
        view.update(run)
    assert len(view.displayed) == 3, view.displayed  # at 0 s, at 2.5 s (a table from now on), at 5 s
    assert [text.splitlines()[0] for text in view.displayed[1:]] == ["Ray Data: running for 2 s",
                                                                 "Ray Data: running for 5 s"]


def test_show_run_draws_overlapping_stages_as_overlapping_bars(capsys):
    run = recorded_run()
    run.finish(10.0, ok=True)
    lines = repr(RunTimeline(run)).splitlines()
    bars = {line.split()[0]: line.split()[1] for line in lines[2:-1]}
    assert bars[LLM] == "░" * 16 + "█" * 16 + "·" * 8  # starting 0-4 s, working 4-8 s, of 10 s
    assert bars[IMAGES] == "░" * 16 + "█" * 24
    both = [i for i in range(40) if bars[LLM][i] == bars[IMAGES][i] == "█"]
    assert both == list(range(16, 32))
    assert "actors starting" in lines[-1]


def test_show_run_before_any_run_says_so(monkeypatch, capsys):
    from helpers.runtime import progress

    monkeypatch.setattr(progress, "_last_run", None)
    assert show_run() is None
    assert "No Ray Data execution has run here" in capsys.readouterr().out


def test_a_broken_reading_turns_the_view_off_and_leaves_the_execution_alone():
    live = LiveProgress()
    live.before_execution_starts(object())  # no operators to read: the hook must not raise
    live.on_execution_step(object())
    live.after_execution_succeeds(object())
    assert (live.recording, live.view) == (False, None)


def test_rays_info_progress_records_are_hidden_and_warnings_are_left_alone():
    hide = HideProgressRecords()
    info = logging.LogRecord("ray.data", logging.INFO, __file__, 1, "Total Progress: 40/120", None, None)
    warning = logging.LogRecord("ray.data", logging.WARNING, __file__, 1, "Replacing contents", None, None)
    assert hide.filter(info) and hide.filter(warning)
    assert info.hide and not getattr(warning, "hide", False)


# ---------------------------------------------------------------- in a notebook kernel

PIPELINE = '''
import time

import ray

import helpers

session = helpers.start()


class Slow:
    """A model stage in small: __init__ takes a moment, each row takes a moment."""

    def __init__(self, seconds):
        self.seconds = seconds
        time.sleep(1)

    def __call__(self, batch):
        time.sleep(self.seconds * len(batch["id"]))
        return batch


ds = (
    ray.data.range(24, override_num_blocks=6)
    .map_batches(Slow, fn_constructor_args=(0.2,), batch_size=2, num_cpus=0.5, num_gpus=0,
                 compute=ray.data.ActorPoolStrategy(size=2))
    .map_batches(Slow, fn_constructor_args=(0.1,), batch_size=4, num_cpus=0.5, num_gpus=0,
                 compute=ray.data.ActorPoolStrategy(size=2))
)
'''


def _outputs(client, msg_id: str) -> tuple[list[dict], str]:
    """The display bundles (each display and update) and the stream text of one request, until the kernel is idle."""
    bundles, streams = [], ""
    while True:
        message = client.get_iopub_msg(timeout=300)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind in ("display_data", "update_display_data", "execute_result"):
            bundles.append(content["data"])
        elif kind == "stream":
            streams += content["text"]
        elif kind == "status" and content["execution_state"] == "idle":
            return bundles, streams


def _answers(url: str, tries: int = 60) -> bool:
    """Whether ``url`` answers 200 within ``tries`` seconds (the dashboard starts after Ray on a busy machine)."""
    import time

    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=10) as page:
                return page.status == 200
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    return False


@pytest.mark.notebooks
def test_a_kernel_shows_each_operator_live_then_its_summary_and_the_dashboard_answers(learners_ray):
    """One run of two actor pools in a lesson's kernel, on the shared Ray started with WORKSHOP_DASHBOARD=1."""
    env = {**os.environ, "WORKSHOP_PROFILE": "cpu", "WORKSHOP_DASHBOARD": "1"}
    env.pop("RAY_ADDRESS", None)
    with workshop_kernel(env) as (_, client):
        def run(code):
            msg_id = client.execute(code)
            bundles, streams = _outputs(client, msg_id)
            reply = client.get_shell_msg(timeout=300)["content"]
            assert reply["status"] == "ok", reply
            return bundles, streams

        _, started = run(PIPELINE)
        dashboard = re.search(r"Dashboard: (http://\S+) \(it asks for a token: paste the contents of (\S+)\)", started)
        assert dashboard, started
        bundles, streams = run("materialized = ds.materialize()")
        timeline, _ = run("helpers.show_run()")

    texts = [bundle["text/plain"] for bundle in bundles]
    assert len(texts) >= 3 and all("text/html" in bundle for bundle in bundles), texts
    assert "Total Progress" not in streams and "Starting execution" not in streams, streams
    live = [text for text in texts if text.startswith("Ray Data: running for")]
    assert live, texts
    assert all(text.count("MapBatches(Slow)") == 2 and "ReadRange" in text for text in live), live
    summary = texts[-1].splitlines()
    assert summary[0].startswith("Ray Data: done in") and summary[0].endswith(", 24 rows"), summary
    assert summary[1].split()[:3] == ["operator", "ran", "as"], summary
    assert [line.split()[0] for line in summary[2:]] == ["ReadRange", "MapBatches(Slow)", "MapBatches(Slow)"]
    assert all(re.search(r"2 actors\s+[\d.]+ s\s+24\s+[\d.]+$", line) for line in summary[3:]), summary
    drawn = timeline[-1]["text/plain"]
    assert drawn.count("█") >= 2 and "actors starting" in drawn, drawn

    # The shared Ray's dashboard answers, and asks for the token in the file that helpers.start() named.
    base, token_file = dashboard[1].rstrip("/"), dashboard[2]
    assert _answers(base + "/"), f"the dashboard at {base} did not answer"
    with urllib.request.urlopen(base + "/api/authentication_mode", timeout=30) as mode:
        assert b'"token"' in mode.read()
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(base + "/api/version", timeout=30)
    secret = Path(token_file).read_text().strip()
    request = urllib.request.Request(base + "/api/version", headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200 and b"ray_version" in answer.read()
