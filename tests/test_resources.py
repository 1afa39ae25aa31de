"""The fail-fast check's arithmetic: what fits on which cluster (no Ray needed)."""

from __future__ import annotations

import pytest

from helpers.runtime.resources import NodeCapacity, ResourceMismatchError, StageRequest, check_fits

READ = StageRequest("ReadCSV", 1, cpus=1, gpus=0, is_actor_pool=False)


def pool(name, actors, gpus, cpus=1.0):
    return StageRequest(name, actors, cpus=cpus, gpus=gpus, is_actor_pool=True)


ONE_NODE_TWO_GPUS = [NodeCapacity(cpus=8, gpus=2)]
TWO_WORKERS = [NodeCapacity(cpus=2, gpus=0), NodeCapacity(cpus=2, gpus=1), NodeCapacity(cpus=2, gpus=1)]


def test_lessons_requests_fit_the_lessons_cluster():
    check_fits([READ, pool("ImageGen", 2, 1.0)], ONE_NODE_TWO_GPUS)
    # Lesson 05: 4 GPU actors on 2 GPUs, 0.6 + 0.4 share one GPU.
    check_fits([READ, pool("Enhancer", 2, 0.6), pool("ImageGen", 2, 0.4)], ONE_NODE_TWO_GPUS)
    check_fits([READ, pool("Enhancer", 2, 0.6), pool("ImageGen", 2, 0.4)], TWO_WORKERS)


def test_too_many_whole_gpus_names_stage_numbers_and_fix():
    with pytest.raises(ResourceMismatchError) as err:
        check_fits([READ, pool("MapBatches(ImageGen)", 3, 1.0)], ONE_NODE_TWO_GPUS)
    message = str(err.value)
    assert "MapBatches(ImageGen)" in message
    assert "3 GPUs" in message and "2 GPUs" in message
    assert "ActorPoolStrategy(size=3)" in message


def test_fractions_that_sum_below_total_but_cannot_pack():
    # 3 x 0.6 = 1.8 <= 2 GPUs, yet only one 0.6 fits per GPU.
    with pytest.raises(ResourceMismatchError, match="would wait forever"):
        check_fits([READ, pool("Enhancer", 3, 0.6)], ONE_NODE_TWO_GPUS)


def test_gpu_request_larger_than_any_node():
    with pytest.raises(ResourceMismatchError, match="no node has that many"):
        check_fits([READ, pool("ImageGen", 1, 2.0)], TWO_WORKERS)


def test_no_gpus_at_all():
    with pytest.raises(ResourceMismatchError, match="GPU"):
        check_fits([READ, pool("ImageGen", 2, 1.0)], [NodeCapacity(cpus=2, gpus=0)])


def test_actors_that_take_every_cpu_would_starve_the_reads():
    # Measured: on 2 CPUs, two GPU actors with 1 CPU each hang read_csv forever.
    with pytest.raises(ResourceMismatchError, match="no CPU would be left"):
        check_fits([READ, pool("ImageGen", 2, 0.4, cpus=1)], [NodeCapacity(cpus=2, gpus=2)])
    check_fits([READ, pool("ImageGen", 2, 0.4, cpus=1)], [NodeCapacity(cpus=8, gpus=2)])
