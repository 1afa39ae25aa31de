"""What each ``map_batches`` stage of a learner's pipeline asks for, read from its plan.

A Dataset is a plan until something runs it; reading that plan tells what each
stage requests (its function or class, GPUs, actors, constructor arguments)
without starting a model. Ray has no public API for the plan: Ray's private
names are read in :mod:`helpers.runtime.ray_internals`, never in the labs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MapStage:
    """One ``map_batches`` call of a pipeline, as declared (nothing has run)."""

    fn: object
    num_gpus: float
    max_actors: float | None  # None for a stateless (task) stage; math.inf for a pool without an upper bound
    constructor_args: tuple = ()
    constructor_kwargs: dict = field(default_factory=dict)

    @property
    def is_class(self) -> bool:
        return inspect.isclass(self.fn)

    @property
    def label(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)


def map_stages(dataset) -> list[MapStage]:
    """The ``map_batches`` stages of a Dataset, from source to sink, read from its logical plan.

    The plan is what Ray Data optimizes and runs; reading it tells what each
    stage asks for without running anything. Ray has no public API for it: the
    reading is :func:`helpers.runtime.ray_internals.logical_operators`'s.
    """
    from ray.data import ActorPoolStrategy

    from helpers.runtime.ray_internals import logical_operators

    stages = []
    for op in logical_operators(dataset):
        if op.kind != "map_batches":
            continue
        pool = op.compute if isinstance(op.compute, ActorPoolStrategy) else None
        stages.append(
            MapStage(
                fn=op.fn,
                num_gpus=float(op.ray_remote_args.get("num_gpus") or 0),
                max_actors=pool.max_size if pool else None,
                constructor_args=tuple(op.fn_constructor_args),
                constructor_kwargs=dict(op.fn_constructor_kwargs),
            )
        )
    return stages
