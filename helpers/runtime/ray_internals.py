"""The one door to Ray's private APIs: every name Ray does not promise to keep.

Ray has no public API for a few things the workshop needs: the operators of an
execution before it starts (the resource check), the logical plan of a lazy
Dataset (the pipeline drawing and the lab checks), the operators of a running
execution and Ray Data's progress loggers (the notebook's live progress view), the file writers' base class (overwrites
that keep the earlier output) and the actor table without the dashboard (the
pipeline command's restart count). Everything else uses the public API:
``ray.data.ActorPoolStrategy``, ``ray.data.SaveMode``, ``ray.data.DataContext``,
the dashboard URL from the ``RayContext`` that ``ray.init`` returns.

Every private name is read here and nowhere else in ``helpers/``, each behind
one accessor that returns plain values. ``tests/test_ray_internals.py`` calls
each accessor against the installed Ray on a tiny Dataset and names every one
that broke, so after a Ray upgrade it says exactly what to fix.

Checked against Ray 2.60.0 (:data:`CHECKED_WITH`):

=========================  ==============================================  =============================================
accessor                   private name                                    why
=========================  ==============================================  =============================================
execution_callback_base    ray.data._internal.execution                    the resource check runs before each
                           .execution_callback.ExecutionCallback           execution: DataContext's public
                                                                           custom_execution_callback_classes takes
                                                                           subclasses of it, which inherit no-ops for
                                                                           the other hooks

execution_operators        StreamingExecutor._topology                     the physical operators of the execution about
                                                                           to start

operator_minimum           PhysicalOperator.min_scheduling_resources(),    what each operator needs before it makes
                           .get_autoscaling_actor_pools(), .name;          progress: resources per task or actor, actors
                           AutoscalingActorPool.min_size();                that must start, and the nodes it may use
                           MapOperator._ray_remote_args (its resources,    (custom resources, accelerator_type and
                           accelerator_type, label_selector,               label_selector, which
                           fallback_strategy), .data_context               min_scheduling_resources leaves out)
                           .execution_options.label_selector

shutdown_operator          PhysicalOperator.shutdown(timer, force);        a refused execution releases the actors that
                           ray.data._internal.stats.Timer                  did fit

logical_operators          Dataset._logical_plan.dag.post_order_iter();    the pipeline drawing and the lab checks read
                           the classes Read, Join, Repartition,            what each stage asks for, without running
                           StreamingRepartition, AbstractAllToAll, Write,  anything
                           InputData, MapBatches of
                           ray.data._internal.logical.operators; their
                           input_dependencies, compute, ray_remote_args,
                           batch_size, fn, fn_constructor_args,
                           fn_constructor_kwargs, join_type,
                           left_key_columns, num_partitions, num_outputs,
                           target_num_rows_per_block

EXECUTOR_LOGGER            the logger ray.data._internal.execution         it logs an execution's start, plan and end;
                           .streaming_executor                             the notebook's progress filter sits on it

PROGRESS_LOGGER            the logger ray.data._internal.progress          quietened ('Progress will be logged because
                                                                           ...')

LOGGING_PROGRESS_LOGGER    the logger ray.data._internal.progress          it logs 'Total Progress'; the progress filter
                           .logging_progress                               sits on it

operator_progress          StreamingExecutor._topology: each OpState's     the notebook's live view: one row per
                           op and total_enqueued_input_blocks();           operator with its state, tasks or actors,
                           PhysicalOperator.input_dependencies, .name,     rows in and out and the blocks queued in
                           num_active_tasks(), get_actor_info() (its       front of it, read by an execution callback
                           running, pending, restarting),                  as the run goes; no public API reports
                           has_completed(),                                operators while they run
                           get_autoscaling_actor_pools(), metrics
                           (num_row_inputs_received, row_outputs_taken,
                           num_tasks_finished),
                           _in_task_submission_backpressure,
                           _in_task_output_backpressure

hide_from_console          a log record's 'hide' attribute, which          progress records stay in ray-data.log and off
                           ray.data._internal.logging.HiddenRecordFilter   the screen
                           on Ray Data's console handler honours

file_datasink_class        ray.data.datasource.file_datasink               an overwrite writes into a sibling folder and
                           ._FileDatasink; its path, filesystem and mode;  replaces the output only once complete
                           Dataset.write_datasink calling on_write_start
                           before planning

write_started              _FileDatasink._write_started                    the sibling is chosen once, on the first
                                                                           on_write_start

job_actor_restarts         ray._private.state.actors(); its JobID and      the pipeline command reports actor restarts;
                           NumRestarts fields                              ray.util.state would need the dashboard,
                                                                           which is off there

free_per_node              ray._private.state                              why an actor pool waits: whether any node
                           .available_resources_per_node()                 has room for one of its actors now

actor_holds                GlobalState._connect_and_get_accessor()         ... and, when none has, which actors
                           .get_actor_table(None, None); the               hold what it needs (their
                           ActorTableData proto (ray.core.generated        required_resources, which the parsed actor
                           .gcs_pb2): job_id, class_name, state, pid,      table leaves out), and whether its own
                           required_resources, address.node_id             actors wait for a place (no pid yet)

job_drivers                ray._private.state.state.job_table(); its       ... and whose they are: the driver process of
                           JobID, DriverPid, DriverIPAddress, IsDead       each job (a notebook's kernel)

use_token_auth             ray._raylet.Config.initialize,                  a lesson joins the Ray the lessons share,
                           AuthenticationTokenLoader.reset_cache           whose token it learns after Ray was imported:
                                                                           Ray reads RAY_AUTH_MODE once, at import

auth_token                 ray._raylet.AuthenticationTokenLoader           the token this process would send, from where
                           .has_token / get_raw_token                      Ray looks: RAY_AUTH_TOKEN, the file
                                                                           RAY_AUTH_TOKEN_PATH names, ~/.ray/auth_token

gcs_answer                 the GCS's gRPC method                           a cluster with token authentication and a
                           /ray.rpc.NodeInfoGcsService/GetClusterId and    driver without its token: Ray retries for
                           its 'authorization: Bearer <token>' header      20 s and says only 'Failed to connect'; one
                                                                           call answers UNAUTHENTICATED at once (and
                                                                           a web server's port, no gRPC, at once too)

share_shuffle_workers      the runtime_envs Ray Data gives a shuffle's     a join's tasks run in the job's workers
                           tasks: ray.data._internal.execution.operators   instead of about ten new ones per driver
                           .hash_shuffle_v2._SHUFFLE_MAP_RUNTIME_ENV       (a driver's first join 7-10 s instead of 19
                           (RAY_DATA_SHUFFLE_MAP_WORKER), .shuffle_        s, a later one 1 s instead of 7 s, on 2
                           operators.shuffle_reduce_operator._SHUFFLE_     cores); the polars cap travels in the
                           REDUCE_RUNTIME_ENV                              environment of the Rays the workshop starts
                           (RAY_DATA_SHUFFLE_REDUCE_WORKER),
                           ray.data._internal.planner.planner
                           ._with_polars_thread_cap (POLARS_MAX_THREADS)
=========================  ==============================================  =============================================

Imports Ray lazily: the runtime package is imported on workers and by tools
that start without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: The Ray version every accessor here was checked against.
CHECKED_WITH = "2.60.0"

#: Each accessor and the private names it reads (for the upgrade test's message).
PRIVATE_NAMES = {
    "execution_callback_base": "ray.data._internal.execution.execution_callback.ExecutionCallback",
    "execution_operators": "StreamingExecutor._topology",
    "operator_minimum": (
        "PhysicalOperator.min_scheduling_resources / get_autoscaling_actor_pools / name, "
        "AutoscalingActorPool.min_size, MapOperator._ray_remote_args (resources, accelerator_type, label_selector, "
        "fallback_strategy), data_context.execution_options.label_selector"
    ),
    "shutdown_operator": "PhysicalOperator.shutdown(timer, force), ray.data._internal.stats.Timer",
    "logical_operators": (
        "Dataset._logical_plan.dag.post_order_iter, ray.data._internal.logical.operators "
        "(Read, Join, Repartition, StreamingRepartition, AbstractAllToAll, Write, InputData, MapBatches) "
        "and their attributes"
    ),
    "EXECUTOR_LOGGER": "logger ray.data._internal.execution.streaming_executor",
    "PROGRESS_LOGGER": "logger ray.data._internal.progress",
    "LOGGING_PROGRESS_LOGGER": "logger ray.data._internal.progress.logging_progress",
    "operator_progress": (
        "StreamingExecutor._topology, OpState.total_enqueued_input_blocks, PhysicalOperator.num_active_tasks / "
        "get_actor_info / has_completed / metrics / _in_task_*_backpressure"
    ),
    "hide_from_console": "the 'hide' record attribute (ray.data._internal.logging.HiddenRecordFilter)",
    "file_datasink_class": "ray.data.datasource.file_datasink._FileDatasink and its path, filesystem, mode",
    "write_started": "_FileDatasink._write_started",
    "job_actor_restarts": "ray._private.state.actors() and its JobID, NumRestarts fields",
    "free_per_node": "ray._private.state.available_resources_per_node",
    "actor_holds": (
        "GlobalState._connect_and_get_accessor().get_actor_table, gcs_pb2.ActorTableData (job_id, class_name, "
        "state, pid, required_resources, address.node_id)"
    ),
    "job_drivers": "ray._private.state.state.job_table() and its JobID, DriverPid, DriverIPAddress, IsDead fields",
    "use_token_auth": "ray._raylet.Config.initialize, ray._raylet.AuthenticationTokenLoader.reset_cache",
    "auth_token": "ray._raylet.AuthenticationTokenLoader.has_token / get_raw_token",
    "gcs_answer": "the GCS gRPC method /ray.rpc.NodeInfoGcsService/GetClusterId, its authorization header",
    "share_shuffle_workers": (
        "hash_shuffle_v2._SHUFFLE_MAP_RUNTIME_ENV, shuffle_reduce_operator._SHUFFLE_REDUCE_RUNTIME_ENV, "
        "planner._with_polars_thread_cap"
    ),
}


# ---------------------------------------------------------------- executions


def execution_callback_base() -> type:
    """The class a Ray Data execution callback subclasses (hooks before, during and after a run)."""
    from ray.data._internal.execution.execution_callback import ExecutionCallback

    return ExecutionCallback


def execution_operators(executor) -> list:
    """The physical operators of the execution that ``executor`` is about to run, sources first."""
    return list(executor._topology)


#: The resource name Ray turns ``accelerator_type="A100"`` into (0.001 of it per task or actor); a node
#: whose GPUs Ray detected has 1 of ``accelerator_type:<its type>`` (ray._common.utils.RESOURCE_CONSTRAINT_PREFIX).
ACCELERATOR_PREFIX = "accelerator_type:"
_ACCELERATOR_AMOUNT = 0.001
#: Resources every node has, which map_batches takes through num_cpus=, num_gpus= and memory=, never through
#: resources=; the rest are the nodes' custom resources.
BUILT_IN = ("CPU", "GPU", "memory", "object_store_memory")
Pairs = tuple  # tuple[tuple[str, float | str], ...]: a mapping that stays hashable


def _selector(mapping) -> Pairs:
    """A label selector as sorted pairs; a label without a value (None, which Ray accepts) constrains nothing."""
    return tuple(sorted((str(key), str(value)) for key, value in (mapping or {}).items() if value is not None))


def operator_minimum(op) -> dict[str, Any]:
    """The minimum resources of one physical operator, as Ray schedules it.

    The fields of :class:`helpers.runtime.stage_request.StageRequest`, which says what each one means.
    """
    per_unit = op.min_scheduling_resources()
    pools = op.get_autoscaling_actor_pools() if hasattr(op, "get_autoscaling_actor_pools") else []
    units = sum(pool.min_size() for pool in pools) if pools else 1
    launches = hasattr(op, "_ray_remote_args")  # map operators (reads too) launch tasks or actors; others do not
    args = (op._ray_remote_args or {}) if launches else {}
    custom = {str(name): float(amount) for name, amount in (args.get("resources") or {}).items()
              if amount and name not in BUILT_IN}  # Ray refuses CPU or GPU there itself, with its own message
    if args.get("accelerator_type"):
        custom[ACCELERATOR_PREFIX + str(args["accelerator_type"])] = _ACCELERATOR_AMOUNT
    labels = dict(op.data_context.execution_options.label_selector or {}) if launches else {}
    labels.update(args.get("label_selector") or {})  # the stage's own selector wins, as Ray Data merges them
    return {
        "name": op.name,
        "units": units,
        "cpus": float(per_unit.cpu or 0),
        "gpus": float(per_unit.gpu or 0),
        "is_actor_pool": bool(pools),
        "memory": float(per_unit.memory or 0),
        "custom": tuple(sorted(custom.items())),
        "labels": _selector(labels),
        "fallbacks": tuple(_selector(option.get("label_selector")) for option in args.get("fallback_strategy") or ()),
    }


def shutdown_operator(op) -> None:
    """Release what a started physical operator holds (its actors and tasks) at once."""
    from ray.data._internal.stats import Timer

    op.shutdown(Timer(), force=True)


# ---------------------------------------------------------------- logical plan


@dataclass(frozen=True)
class PlanOperator:
    """One operator of a lazy Dataset's logical plan, in plain values.

    ``kind`` is one of: ``read``, ``join``, ``repartition`` (all-to-all),
    ``streaming_repartition``, ``all_to_all`` (sort, shuffle, aggregate, ...),
    ``write``, ``input_data`` (materialized blocks), ``map_batches``, ``other``.
    """

    name: str  # Ray's operator name, e.g. "MapBatches(Model)"
    kind: str
    inputs: tuple[int, ...]  # indices (in the returned list) of the operators whose blocks flow in
    compute: Any = None  # ray.data.ActorPoolStrategy / TaskPoolStrategy for map operators, else None
    ray_remote_args: dict = field(default_factory=dict)  # num_gpus, num_cpus, memory, ...
    batch_size: int | str | None = None
    fn: Any = None  # map_batches: the function or callable class
    fn_constructor_args: tuple = ()
    fn_constructor_kwargs: dict = field(default_factory=dict)
    join_type: str | None = None  # join: "inner", "left_outer", ...
    join_keys: tuple[str, ...] = ()  # join: the left side's key columns
    num_partitions: int | None = None  # join
    num_outputs: int | None = None  # repartition
    target_num_rows_per_block: int | None = None  # streaming_repartition


def _operator_kind(op) -> str:
    from ray.data._internal.logical.operators.all_to_all_operator import AbstractAllToAll, Repartition
    from ray.data._internal.logical.operators.input_data_operator import InputData
    from ray.data._internal.logical.operators.join_operator import Join
    from ray.data._internal.logical.operators.map_operator import MapBatches, StreamingRepartition
    from ray.data._internal.logical.operators.read_operator import Read
    from ray.data._internal.logical.operators.write_operator import Write

    for cls, kind in (
        (Read, "read"),
        (Join, "join"),
        (Repartition, "repartition"),
        (StreamingRepartition, "streaming_repartition"),
        (AbstractAllToAll, "all_to_all"),
        (Write, "write"),
        (InputData, "input_data"),
        (MapBatches, "map_batches"),
    ):
        if isinstance(op, cls):
            return kind
    return "other"


def logical_operators(dataset) -> list[PlanOperator]:
    """The operators of ``dataset``'s logical plan, sources first, each once. Nothing runs."""
    operators = list(dataset._logical_plan.dag.post_order_iter())
    index = {id(op): i for i, op in enumerate(operators)}
    result = []
    for op in operators:
        kind = _operator_kind(op)
        join_type = getattr(op, "join_type", None) if kind == "join" else None
        result.append(
            PlanOperator(
                name=op.name,
                kind=kind,
                inputs=tuple(index[id(dep)] for dep in op.input_dependencies),
                compute=getattr(op, "compute", None),
                ray_remote_args=dict(getattr(op, "ray_remote_args", None) or {}),
                batch_size=getattr(op, "batch_size", None),
                fn=op.fn if kind == "map_batches" else None,
                fn_constructor_args=tuple(op.fn_constructor_args or ()) if kind == "map_batches" else (),
                fn_constructor_kwargs=dict(op.fn_constructor_kwargs or {}) if kind == "map_batches" else {},
                join_type=getattr(join_type, "value", join_type),
                join_keys=tuple(op.left_key_columns) if kind == "join" else (),
                num_partitions=op.num_partitions if kind == "join" else None,
                num_outputs=op.num_outputs if kind == "repartition" else None,
                target_num_rows_per_block=op.target_num_rows_per_block if kind == "streaming_repartition" else None,
            )
        )
    return result


# ---------------------------------------------------------------- progress logging

#: Ray Data's loggers: the executor's (start, plan, finish) ...
EXECUTOR_LOGGER = "ray.data._internal.execution.streaming_executor"
#: ... the progress managers' parent (e.g. "Progress will be logged because ...") ...
PROGRESS_LOGGER = "ray.data._internal.progress"
#: ... and the one that logs ``Total Progress`` when stdout is not a terminal.
LOGGING_PROGRESS_LOGGER = "ray.data._internal.progress.logging_progress"

def hide_from_console(record) -> None:
    """Mark a Ray Data log record so that its console handler drops it; ``ray-data.log`` keeps it."""
    record.hide = True


# ---------------------------------------------------------------- live operator view


@dataclass(frozen=True)
class OperatorProgress:
    """Where one physical operator of a running execution stands, in plain values."""

    name: str  # e.g. "ReadCSV->SplitBlocks(2)", "MapBatches(ImageGen)"
    is_actor_pool: bool
    tasks: int  # tasks (or actor calls) in flight
    tasks_finished: int
    actors_running: int
    actors_pending: int  # asked for, not started yet (an actor's __init__ still loading its model counts here)
    actors_restarting: int
    rows_in: int  # rows received from the operators before it (for a read: its read tasks)
    rows_out: int  # rows it handed on (to the next operator or to the caller)
    queued_blocks: int  # blocks waiting in front of it, not yet handed to a task
    backpressured: bool  # Ray holds back its tasks or outputs (too much data in flight downstream)
    done: bool


def operator_progress(executor) -> list[OperatorProgress]:
    """The operators of ``executor``'s running execution, sources first; Ray's input buffers left out.

    Meant for an execution callback's ``on_execution_step``, which runs in the
    executor's own thread, between two steps, so the values are consistent.
    """
    result = []
    for op, state in executor._topology.items():
        if not op.input_dependencies:  # an InputDataBuffer: the blocks or read tasks the execution starts from
            continue
        actors = op.get_actor_info()
        metrics = op.metrics
        result.append(
            OperatorProgress(
                name=op.name,
                is_actor_pool=bool(op.get_autoscaling_actor_pools()),
                tasks=int(op.num_active_tasks()),
                tasks_finished=int(metrics.num_tasks_finished),
                actors_running=int(actors.running),
                actors_pending=int(actors.pending),
                actors_restarting=int(actors.restarting),
                rows_in=int(metrics.num_row_inputs_received),
                rows_out=int(metrics.row_outputs_taken),
                queued_blocks=int(state.total_enqueued_input_blocks()),
                backpressured=bool(op._in_task_submission_backpressure or op._in_task_output_backpressure),
                done=bool(op.has_completed()),
            )
        )
    return result


# ---------------------------------------------------------------- file writes


def file_datasink_class() -> type:
    """The base class of every Ray file writer (``write_parquet``, ``write_images``, ...).

    Its instances have ``path`` (the output folder), ``filesystem`` (pyarrow)
    and ``mode`` (a ``ray.data.SaveMode``).
    """
    from ray.data.datasource.file_datasink import _FileDatasink

    return _FileDatasink


def write_started(datasink) -> bool:
    """Whether ``on_write_start`` has already run for this file datasink."""
    return bool(getattr(datasink, "_write_started", False))


# ---------------------------------------------------------------- actors


def job_actor_restarts(job_id: str) -> int:
    """How many times Ray restarted the actors of job ``job_id`` (hex), from the GCS's actor table."""
    from ray._private import state

    actors = state.actors() or {}
    return sum(int(a.get("NumRestarts", 0)) for a in actors.values() if a.get("JobID") == job_id)


class ActorHold(NamedTuple):
    """One actor that lives or waits to, and what it holds (or will hold) while it lives."""

    job_id: str  # hex, as ray.get_runtime_context().get_job_id() writes it
    class_name: str
    resources: dict  # e.g. {"CPU": 1.0, "GPU": 0.5}
    node_id: str  # hex; a waiting actor is already queued on a node
    placed: bool = True  # it has a worker process, so it holds its resources (its __init__ may still run)


class JobDriver(NamedTuple):
    """The process that runs a Ray job: a notebook's kernel, a script."""

    pid: int
    ip: str


def free_per_node() -> dict[str, dict[str, float]]:
    """What each alive node has free now, by node id (hex)."""
    from ray._private import state

    return state.available_resources_per_node()


def actor_holds() -> list[ActorHold]:
    """Every actor of the cluster that lives or waits to, each job's, with the resources it asks for.

    Ray 2.60 reports an actor that is still being created as PENDING_CREATION both while it waits for
    resources and while its ``__init__`` runs; only the second has a worker process (a pid).
    """
    from ray._private import state
    from ray.core.generated import gcs_pb2

    accessor = state.state._connect_and_get_accessor()
    holds = []
    for raw in accessor.get_actor_table(None, None):
        data = gcs_pb2.ActorTableData.FromString(raw)
        kind = gcs_pb2.ActorTableData.ActorState.Name(data.state)
        if kind == "DEAD":
            continue
        holds.append(ActorHold(data.job_id.hex(), data.class_name, dict(data.required_resources),
                               data.address.node_id.hex(), placed=kind == "ALIVE" or data.pid > 0))
    return holds


def job_drivers() -> dict[str, JobDriver]:
    """The driver of each running job, by job id (hex)."""
    from ray._private import state

    return {job["JobID"]: JobDriver(int(job["DriverPid"]), job["DriverIPAddress"])
            for job in state.state.job_table() if not job["IsDead"]}


# ---------------------------------------------------------------- joining


def use_token_auth(token_path: str) -> None:
    """Join the next cluster with token authentication and the token in ``token_path``.

    Sets ``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN_PATH`` (for this process and
    the ones it starts) and makes Ray, already imported, read them again.
    """
    import os

    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = token_path
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def auth_token() -> str | None:
    """The token Ray would send when token authentication is on; None when it finds none."""
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token(ignore_auth_mode=True):
        return None
    return loader.get_raw_token(ignore_auth_mode=True)


def gcs_answer(address: str, token: str | None, timeout: float) -> str:
    """What the GCS at ``host:port`` answers to one request that carries ``token`` (None: no token).

    ``"ok"``; ``"unauthenticated"`` (it wants another token, or one); ``"not-grpc"``
    (something answers at that port but does not speak gRPC: a web server such
    as the Ray dashboard's port 8265, where ``ray.init`` would wait minutes); or
    ``"other"`` (no answer in time, another error), left to ``ray.init``.
    """
    import grpc

    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")  # an empty request is a valid one
        metadata = [("authorization", f"Bearer {token}")] if token else None
        try:
            call(b"", timeout=timeout, metadata=metadata)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                return "unauthenticated"
            if err.code() == grpc.StatusCode.UNAVAILABLE and "HTTP/2" in (err.details() or ""):
                return "not-grpc"  # grpc's "Failed parsing HTTP/2": an HTTP/1 server (or another protocol) answered
            return "other"
    return "ok"


# ---------------------------------------------------------------- shuffles

def _without_thread_cap(ray_remote_args: dict | None) -> dict:
    return dict(ray_remote_args or {})


def share_shuffle_workers() -> None:
    """Let a shuffle's tasks (a join's, a sort's, ...) run in the job's worker processes. Driver only.

    Ray Data 2.60 gives a shuffle's map and reduce tasks runtime_envs of their
    own (``RAY_DATA_SHUFFLE_MAP_WORKER=1``, ``RAY_DATA_SHUFFLE_REDUCE_WORKER=1``,
    and ``POLARS_MAX_THREADS=1`` on a join's reduce). Nothing reads the first
    two: they only keep those tasks in worker pools of their own, so that a big
    shuffle's memory-mapped pages do not stay in the workers of other tasks.
    A worker serves one job, so every lesson's kernel started about ten workers
    for its first join. The lessons' joins are a few hundred rows: here they
    take the job's workers. The polars cap is set instead in the environment of
    the Rays the workshop starts, which every worker inherits (a runtime_env on
    the job would cost each of its workers another Python start), so
    ``helpers.start()`` calls this on those Rays only.
    """
    from ray.data._internal.execution.operators.hash_shuffle_v2 import _SHUFFLE_MAP_RUNTIME_ENV
    from ray.data._internal.execution.operators.shuffle_operators.shuffle_reduce_operator import (
        _SHUFFLE_REDUCE_RUNTIME_ENV,
    )
    from ray.data._internal.planner import planner

    if not hasattr(planner, "_with_polars_thread_cap"):  # else the join would keep its own workers
        raise AttributeError("ray.data._internal.planner.planner has no _with_polars_thread_cap")
    # Emptied in place: every planner module holds these same dicts. {"env_vars": {}} is an empty runtime_env.
    _SHUFFLE_MAP_RUNTIME_ENV["env_vars"].clear()
    _SHUFFLE_REDUCE_RUNTIME_ENV["env_vars"].clear()
    planner._with_polars_thread_cap = _without_thread_cap
