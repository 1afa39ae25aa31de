"""Every accessor of helpers.runtime.ray_internals still works with the installed Ray.

One test calls them all on tiny real Datasets. When any of them raises or
returns the wrong shape, it fails with one message that names each accessor
that broke, the private Ray names it reads, and the Ray version they were
checked against: after a Ray upgrade, the list of what to fix.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import time

from helpers.errors import first_line
from helpers.runtime import ray_internals as ri
from helpers.runtime.stage_request import StageRequest

#: A label selector that every node meets (a label no node has, asked to be absent or different).
ABSENT_LABEL = {"workshop-absent": "!x"}


def tiny_classes():
    """The tiny Dataset's stage and what its execution callback saw.

    Defined in a function, so that Ray ships them to its workers by value (the
    tests are no package a worker could import).
    """

    class Double:
        """A callable class: the actor pool stage."""

        def __init__(self, factor: int = 2, *, offset: int = 0):
            self.factor, self.offset = factor, offset

        def __call__(self, batch):
            return {"id": batch["id"] * self.factor + self.offset}

    class Seen:
        """Ray Data ships the DataContext, callback classes included, to its tasks;
        what this holds stays behind (operators cannot be pickled)."""

        def __init__(self):
            self.operators: list | None = None
            self.error: Exception | None = None
            self.progress: list = []  # what operator_progress read at each step, then at the end
            self.progress_error: Exception | None = None

        def __reduce__(self):
            return Seen, ()

    return Double, Seen


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def logged_progress(monkeypatch):
    """Ray Data's progress records while the body runs, as a notebook kernel would produce them."""
    capture = Capture()
    loggers = [logging.getLogger(ri.EXECUTOR_LOGGER), logging.getLogger(ri.LOGGING_PROGRESS_LOGGER)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(capture)
        logger.setLevel(logging.INFO)  # helpers.start() quietens the progress loggers outside a notebook
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stdout", io.StringIO())  # not a terminal: Ray Data logs its progress
            yield capture.records
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(capture)
            logger.setLevel(level)


def messages(records, logger_name: str) -> list[str]:
    return [r.getMessage() for r in records if r.name == logger_name and r.levelno == logging.INFO]


class Checks:
    """Each check exercises one accessor; it raises when the accessor broke."""

    def __init__(self, tmp_path, monkeypatch):
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.Double, Seen = tiny_classes()
        self.seen = Seen()
        self.records: list[logging.LogRecord] = []
        self.ran = False

    # ---------------------------------------------------------------- executions

    def execution_callback_base(self):
        base = ri.execution_callback_base()
        assert isinstance(base, type), f"not a class: {base!r}"
        for hook in ("before_execution_starts", "on_execution_step", "after_execution_succeeds",
                     "after_execution_fails"):  # fmt: skip
            assert callable(getattr(base, hook, None)), f"no hook {hook}"
        try:
            self._run(base)
        except Exception as err:
            raise AssertionError(f"the tiny Dataset, observed by a subclass, failed: {first_line(err)}") from err

    def _run(self, base):
        """One execution through an actor pool, observed by a callback and by log handlers."""
        import ray

        seen = self.seen

        class Observe(base):
            def before_execution_starts(self, executor):
                try:
                    seen.operators = ri.execution_operators(executor)
                except Exception as err:  # noqa: BLE001 - reported by the execution_operators check
                    seen.error = err

            def on_execution_step(self, executor):
                self._read_progress(executor)

            def after_execution_succeeds(self, executor):
                self._read_progress(executor)

            def _read_progress(self, executor):
                try:
                    seen.progress.append(ri.operator_progress(executor))
                except Exception as err:  # noqa: BLE001 - reported by the operator_progress check
                    seen.progress_error = err

        callbacks = ray.data.DataContext.get_current().custom_execution_callback_classes
        callbacks.append(Observe)
        try:
            with logged_progress(self.monkeypatch) as self.records:
                dataset = ray.data.range(8).map_batches(
                    self.Double, batch_size=4, num_cpus=1, compute=ray.data.ActorPoolStrategy(size=2),
                    label_selector=ABSENT_LABEL,  # every node meets it: read back by operator_minimum
                )
                rows = sorted(row["id"] for row in dataset.take_all())
        finally:
            callbacks.remove(Observe)
        assert rows == [2 * i for i in range(8)], rows
        self.ran = True

    def execution_operators(self):
        self._needs_run()
        if self.seen.error is not None:
            raise self.seen.error
        operators = self.seen.operators
        assert isinstance(operators, list) and operators, f"no operators: {operators!r}"
        names = [op.name for op in operators]
        assert any("MapBatches(Double)" in name for name in names), names

    def operator_minimum(self):
        self._needs_run()
        assert self.seen.operators, "no operators to read (see execution_operators)"
        minimums = {m.name: m for m in (StageRequest(**ri.operator_minimum(op)) for op in self.seen.operators)}
        pool = next((m for name, m in minimums.items() if "MapBatches(Double)" in name), None)
        assert pool and (pool.is_actor_pool, pool.units, pool.cpus, pool.gpus) == (True, 2, 1.0, 0.0), minimums
        assert (pool.labels, pool.custom, pool.fallbacks) == (tuple(ABSENT_LABEL.items()), (), ()), pool
        read = next((m for name, m in minimums.items() if "ReadRange" in name), None)
        assert read and (read.is_actor_pool, read.units) == (False, 1), minimums
        assert all(isinstance(m.memory, float) for m in minimums.values()), minimums

    def shutdown_operator(self):
        self._needs_run()
        assert self.seen.operators, "no operators to shut down (see execution_operators)"
        for op in self.seen.operators:
            ri.shutdown_operator(op)  # already shut down by Ray: returns at once, but the call must still fit

    def _needs_run(self):
        assert self.ran, "the tiny Dataset did not run (see execution_callback_base)"

    # ---------------------------------------------------------------- logical plan

    def logical_operators(self):
        import ray

        pool = ray.data.ActorPoolStrategy(min_size=1, max_size=3)
        dataset = (
            ray.data.range(8)
            .join(ray.data.range(8), join_type="inner", num_partitions=2, on=("id",))
            .repartition(2)
            .repartition(target_num_rows_per_block=4)
            .random_shuffle()
            .map_batches(self.Double, batch_size=4, num_gpus=1, compute=pool, fn_constructor_args=(3,),
                         fn_constructor_kwargs={"offset": 1})
        )  # fmt: skip
        ops = ri.logical_operators(dataset)
        assert all(isinstance(op, ri.PlanOperator) for op in ops), ops
        kinds = [op.kind for op in ops]
        assert kinds == ["read", "read", "join", "repartition", "streaming_repartition", "all_to_all",
                         "map_batches"], kinds  # fmt: skip
        assert [op.inputs for op in ops] == [(), (), (0, 1), (2,), (3,), (4,), (5,)], [op.inputs for op in ops]
        _, _, join, repartition, streaming, _, stage = ops
        assert (join.join_type, join.join_keys, join.num_partitions) == ("inner", ("id",), 2), join
        assert repartition.num_outputs == 2, repartition
        assert streaming.target_num_rows_per_block == 4, streaming
        assert stage.name == "MapBatches(Double)" and stage.fn is self.Double, stage
        assert (stage.batch_size, stage.ray_remote_args.get("num_gpus")) == (4, 1), stage
        assert isinstance(stage.compute, ray.data.ActorPoolStrategy), stage.compute
        assert (stage.compute.min_size, stage.compute.max_size) == (1, 3), stage.compute
        assert (stage.fn_constructor_args, stage.fn_constructor_kwargs) == ((3,), {"offset": 1}), stage

        materialized = ri.logical_operators(ray.data.range(4).materialize().map_batches(self.Double))
        assert [op.kind for op in materialized] == ["input_data", "map_batches"], materialized

    # ---------------------------------------------------------------- progress logging

    def EXECUTOR_LOGGER(self):
        self._needs_run()
        logged = messages(self.records, ri.EXECUTOR_LOGGER)
        for start in ("Starting execution of Dataset", "Execution plan of Dataset"):
            assert any(m.startswith(start) for m in logged), f"no '{start}' from {ri.EXECUTOR_LOGGER}: {logged}"

    def PROGRESS_LOGGER(self):
        import importlib

        importlib.import_module(ri.PROGRESS_LOGGER)  # a logger name is its module's name
        assert ri.LOGGING_PROGRESS_LOGGER.startswith(ri.PROGRESS_LOGGER + "."), "quietening it must cover its child"

    def LOGGING_PROGRESS_LOGGER(self):
        self._needs_run()
        logged = messages(self.records, ri.LOGGING_PROGRESS_LOGGER)
        assert any(m.startswith("Total Progress") for m in logged), f"from {ri.LOGGING_PROGRESS_LOGGER}: {logged}"

    def hide_from_console(self):
        hidden = logging.LogRecord("ray.data.test", logging.INFO, __file__, 1, "a progress line", None, None)
        shown = logging.LogRecord("ray.data.test", logging.INFO, __file__, 1, "a progress line", None, None)
        ri.hide_from_console(hidden)
        handlers = logging.getLogger("ray.data").handlers
        assert any(h.filter(shown) and not h.filter(hidden) for h in handlers), f"no handler drops it: {handlers}"

    # ---------------------------------------------------------------- live operator view

    def operator_progress(self):
        self._needs_run()
        if self.seen.progress_error is not None:
            raise self.seen.progress_error
        steps = self.seen.progress
        assert steps and all(isinstance(op, ri.OperatorProgress) for step in steps for op in step), steps[:1]
        names = [op.name for op in steps[-1]]
        assert len(names) == 2 and "ReadRange" in names[0] and names[1] == "MapBatches(Double)", names
        assert "Input" not in names, names
        read, pool = steps[-1]
        assert (read.is_actor_pool, pool.is_actor_pool) == (False, True), steps[-1]
        assert (pool.rows_in, pool.rows_out, read.rows_out) == (8, 8, 8), steps[-1]
        assert pool.tasks_finished == 2 and read.done and pool.done, steps[-1]  # 8 rows, batch_size=4
        seen_actors = max(op.actors_running + op.actors_pending for step in steps for op in step[1:])
        assert seen_actors == 2, f"the pool of 2 actors was never seen with 2 actors: {steps}"
        assert any(op.tasks > 0 for step in steps for op in step[1:]), "no task in flight was ever seen"
        assert all(op.queued_blocks >= 0 and op.actors_restarting == 0 for step in steps for op in step), steps
        assert all(isinstance(op.backpressured, bool) for step in steps for op in step), steps

    # ---------------------------------------------------------------- file writes

    def file_datasink_class(self):
        import ray
        from ray.data.datasource import BlockBasedFileDatasink

        base = ri.file_datasink_class()
        assert isinstance(base, type) and issubclass(BlockBasedFileDatasink, base), base
        for hook in ("on_write_start", "on_write_complete", "on_write_failed"):
            assert callable(getattr(base, hook, None)), f"no {hook}"
        sink = BlockBasedFileDatasink(str(self.tmp_path / "out"), mode=ray.data.SaveMode.OVERWRITE)
        assert sink.path.rstrip("/").endswith("out"), sink.path
        assert callable(sink.filesystem.get_file_info), sink.filesystem
        assert sink.mode == ray.data.SaveMode.OVERWRITE, sink.mode

    def write_started(self):
        import ray
        from ray.data.datasource import BlockBasedFileDatasink

        sink = BlockBasedFileDatasink(str(self.tmp_path / "started"), mode=ray.data.SaveMode.OVERWRITE)
        assert ri.write_started(sink) is False
        sink.on_write_start()
        assert ri.write_started(sink) is True, "on_write_start did not mark the datasink"

    # ---------------------------------------------------------------- actors

    def job_actor_restarts(self):
        import ray

        @ray.remote(num_cpus=0, max_restarts=1, max_task_retries=-1)
        class Restartable:
            def pid(self):
                return os.getpid()

        actor = Restartable.remote()
        first = ray.get(actor.pid.remote(), timeout=60)
        ray.kill(actor, no_restart=False)
        deadline = time.monotonic() + 60
        while ray.get(actor.pid.remote(), timeout=60) == first and time.monotonic() < deadline:
            time.sleep(0.2)
        restarts = ri.job_actor_restarts(ray.get_runtime_context().get_job_id())
        ray.kill(actor)
        assert isinstance(restarts, int) and restarts >= 1, f"{restarts!r} restarts after one restart"

    def free_per_node(self):
        import ray

        free = ri.free_per_node()
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        assert set(free) == alive, f"{sorted(free)} are not the alive nodes {sorted(alive)}"
        assert all(isinstance(amount, float) for now in free.values() for amount in now.values()), free
        assert any("CPU" in now for now in free.values()), free

    def actor_holds(self):
        import ray

        @ray.remote(num_cpus=0.25)
        class Holder:
            def node(self):
                return ray.get_runtime_context().get_node_id()

        probe = Holder.remote()
        node = ray.get(probe.node.remote(), timeout=60)
        nowhere = Holder.options(resources={"workshop_nowhere": 1}).remote()  # no node has it: it waits for a place
        try:
            job = ray.get_runtime_context().get_job_id()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                mine = [hold for hold in ri.actor_holds() if hold.job_id == job and hold.class_name.endswith("Holder")]
                if len(mine) == 2:
                    break
                time.sleep(0.2)
        finally:
            ray.kill(probe)
            ray.kill(nowhere)
        assert len(mine) == 2, f"{len(mine)} Holder actors of this job"
        placed = next(hold for hold in mine if hold.placed)
        waiting = next(hold for hold in mine if not hold.placed)
        assert placed.resources == {"CPU": 0.25} and placed.node_id == node, placed
        assert waiting.resources == {"CPU": 0.25, "workshop_nowhere": 1.0}, waiting

    def job_drivers(self):
        import ray

        drivers = ri.job_drivers()
        me = drivers.get(ray.get_runtime_context().get_job_id())
        assert me is not None, f"this job is not among {drivers}"
        assert me.pid == os.getpid() and me.ip, me

    # ---------------------------------------------------------------- joining

    def use_token_auth(self):
        # In a process of its own: the switch is for the whole process, and this one runs a Ray without a token.
        code = (
            "import ray\n"
            "from ray._raylet import AuthenticationMode, get_authentication_mode\n"
            "from helpers.runtime.ray_internals import use_token_auth\n"
            "assert get_authentication_mode() != AuthenticationMode.TOKEN, 'token mode before the switch'\n"
            f"use_token_auth({str(self.tmp_path / 'token')!r})\n"
            "assert get_authentication_mode() == AuthenticationMode.TOKEN, 'Ray did not re-read RAY_AUTH_MODE'\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        env["RAY_AUTH_MODE"] = "disabled"
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]

    def auth_token(self):
        token = ri.auth_token()
        assert token is None or (isinstance(token, str) and token), f"not a token: {token!r}"

    def gcs_answer(self):
        import ray

        address = ray.get_runtime_context().gcs_address
        token = ri.auth_token() if os.environ.get("RAY_AUTH_MODE") == "token" else None
        assert ri.gcs_answer(address, token, 10) == "ok", "the GCS refused the token this process joined with"
        if token:  # this session's Ray uses token authentication (a local Ray 2.60 does by default)
            assert ri.gcs_answer(address, None, 10) == "unauthenticated", "no token, yet no UNAUTHENTICATED"
            wrong = ri.gcs_answer(address, "not-the-token", 10)
            assert wrong == "unauthenticated", "a wrong token, yet no UNAUTHENTICATED"

    # ---------------------------------------------------------------- shuffles

    def share_shuffle_workers(self):
        import ray

        ri.share_shuffle_workers()  # helpers.start() called it already: a second call must fit too
        joined = ray.data.range(6).join(ray.data.range(6), join_type="inner", num_partitions=2, on=("id",))
        assert sorted(row["id"] for row in joined.take_all()) == list(range(6))
        # Whether the join starts workers of its own: tests/test_join_workers.py


def test_every_private_ray_name_still_works(session, tmp_path, monkeypatch):
    """After a Ray upgrade: the accessors of helpers/runtime/ray_internals.py that broke, and what they read."""
    import ray

    # Only this test's own callback: helpers' resource check reads the same private names and would stop the run.
    monkeypatch.setattr(ray.data.DataContext.get_current(), "custom_execution_callback_classes", [])
    checks = Checks(tmp_path, monkeypatch)
    broken = {}
    for name in ri.PRIVATE_NAMES:  # in order: the execution runs first, the checks after it read what it saw
        try:
            getattr(checks, name)()
        except Exception as err:  # noqa: BLE001 - every breakage goes into the one message
            broken[name] = first_line(err)
    assert not broken, (
        f"Ray {ray.__version__} broke {len(broken)} private name(s) that helpers/runtime/ray_internals.py reads "
        f"(checked against Ray {ri.CHECKED_WITH}); fix these accessors there:\n"
        + "\n".join(f"- {name} ({ri.PRIVATE_NAMES[name]}): {why}" for name, why in broken.items())
    )


def test_every_accessor_is_listed_and_checked():
    """The table in the module's docstring, PRIVATE_NAMES and the checks above name the same accessors."""
    for name in ri.PRIVATE_NAMES:
        assert hasattr(ri, name), f"ray_internals has no {name}"
        assert callable(getattr(Checks, name, None)), f"no check for {name}"
        assert any(line.startswith(name + " ") for line in ri.__doc__.splitlines()), f"{name} not in the table"
