"""The fail-fast check's arithmetic: what fits on which cluster, in every placement Ray may choose.

Only the last test starts Ray: it checks the check's premise, that Ray 2.60 really puts two 0.4 actors
that come first on one GPU.
"""

from __future__ import annotations

import pytest

from helpers.errors import SettingsError
from helpers.pipeline.stages import shared_gpu_settings
from helpers.runtime.packing import find_stranding
from helpers.runtime.resources import ResourceMismatchError, check_fits
from helpers.runtime.settings import load_settings
from helpers.runtime.settings_fit import check_settings_fit, lesson_pools
from helpers.runtime.stage_request import NodeCapacity, StageRequest

READ = StageRequest("ReadCSV", 1, cpus=1, gpus=0, is_actor_pool=False)


def pool(name, actors, gpus, cpus=1.0):
    return StageRequest(name, actors, cpus=cpus, gpus=gpus, is_actor_pool=True)


ONE_NODE_TWO_GPUS = [NodeCapacity(cpus=8, gpus=2)]
ONE_GPU = [NodeCapacity(cpus=8, gpus=1)]
TWO_WORKERS = [NodeCapacity(cpus=2, gpus=0), NodeCapacity(cpus=2, gpus=1), NodeCapacity(cpus=2, gpus=1)]


def message(requests, nodes) -> str:
    with pytest.raises(ResourceMismatchError) as err:
        check_fits(requests, nodes)
    return str(err.value)


@pytest.fixture
def lesson_settings(monkeypatch, tmp_path):
    """The lessons' settings with nothing set by the learner."""
    for name in ("WORKSHOP_IMAGE_ACTORS", "WORKSHOP_LLM_ACTORS", "WORKSHOP_IMAGE_GPUS", "WORKSHOP_LLM_GPUS",
                 "WORKSHOP_ACTOR_CPUS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    return lambda cluster_gpus: load_settings(profile="cpu", cluster_gpus=cluster_gpus)


def test_the_lessons_defaults_fit_every_placement(lesson_settings):
    for cluster, gpus, share in ((ONE_NODE_TWO_GPUS, 2, 0.5), (TWO_WORKERS, 2, 0.5), (ONE_GPU, 1, 0.25)):
        pools = lesson_pools(lesson_settings(gpus))
        assert [s.gpus for s in pools["lessons 05-06"] if s.is_actor_pool] == [share, share]
        for requests in pools.values():
            check_fits(requests, cluster)
            assert find_stranding([s for s in requests if s.is_actor_pool], cluster) is None


def test_the_pipeline_command_gives_the_image_actors_lesson_05s_share(lesson_settings, monkeypatch):
    """What the check admits is what runs: the command and the bench size the image actors as lesson 05 does."""
    for gpus, share in ((2, 0.5), (1, 0.25)):
        settings = lesson_settings(gpus)
        checked = [s.gpus for s in lesson_pools(settings)["lessons 05-06"] if s.name == "image"]
        assert checked == [shared_gpu_settings(settings).image.num_gpus] == [share]
    monkeypatch.setenv("WORKSHOP_IMAGE_GPUS", "0.3")
    monkeypatch.setenv("WORKSHOP_LLM_GPUS", "0.1")
    assert shared_gpu_settings(lesson_settings(1)).image.num_gpus == 0.2  # a learner's own shares: the same rule


def test_shares_that_fit_only_when_the_llm_actors_come_first_are_refused():
    # 2 x 0.6 + 2 x 0.4 = 2.0 on 2 GPUs: Ray places them well when the 0.6 actors come first, but two
    # 0.4 actors that come first share a GPU, and then only one 0.6 actor finds room.
    text = message([READ, pool("MapBatches(Enhancer)", 2, 0.6), pool("MapBatches(ImageGen)", 2, 0.4)],
                   ONE_NODE_TWO_GPUS)
    assert "fit only with a lucky placement" in text
    assert "2 x MapBatches(ImageGen) (0.8 used)" in text
    assert "the next MapBatches(Enhancer) actor (0.6 GPU) finds no GPU with room and waits forever" in text
    assert text.endswith("Fix: num_gpus=0.5 for MapBatches(Enhancer) and MapBatches(ImageGen): 2 equal shares "
                         "fill a GPU, so they fit whatever GPU Ray picks (or fewer actors).")


def test_the_stranding_found_is_the_one_with_fewest_actors_placed():
    stranding = find_stranding([pool("Enhancer", 2, 0.6), pool("ImageGen", 2, 0.4)], ONE_NODE_TWO_GPUS)
    assert stranding.stage.name == "Enhancer"
    placed = sorted(tuple(s.name for s in actors) for _, actors, _ in stranding.slots)
    assert placed == [("Enhancer",), ("ImageGen", "ImageGen")]


def test_fractions_that_sum_below_total_but_cannot_pack():
    # 3 x 0.6 = 1.8 <= 2 GPUs, yet only one 0.6 fits per GPU, however Ray places them.
    text = message([READ, pool("Enhancer", 3, 0.6)], ONE_NODE_TWO_GPUS)
    assert "ask for 1.8 GPUs in all" in text and "would wait forever" in text
    assert "ActorPoolStrategy(size=3) or num_gpus=0.6" in text


def test_whole_gpu_pools():
    check_fits([READ, pool("ImageGen", 2, 1.0)], ONE_NODE_TWO_GPUS)
    text = message([READ, pool("MapBatches(ImageGen)", 3, 1.0)], ONE_NODE_TWO_GPUS)
    assert "MapBatches(ImageGen)" in text and "3 GPUs" in text and "2 GPUs" in text
    assert "ActorPoolStrategy(size=3)" in text
    # One whole GPU next to two halves fits in every order: Ray puts the second half beside the first
    # (the GPU it fills most), never one half on each GPU, which would leave the whole-GPU actor none.
    check_fits([READ, pool("Trainer", 1, 1.0), pool("Enhancer", 2, 0.5)], ONE_NODE_TWO_GPUS)
    check_fits([READ, pool("Trainer", 1, 1.0), pool("Enhancer", 2, 0.5)], [NodeCapacity(cpus=8, gpus=3)])


def test_one_gpu():
    check_fits([READ, pool("Enhancer", 2, 0.3), pool("ImageGen", 2, 0.2)], ONE_GPU)  # one of lab 05's answers
    assert "ask for 1.2 GPUs in all" in message([READ, pool("Enhancer", 2, 0.6)], ONE_GPU)
    assert "no node has that many" in message([READ, pool("ImageGen", 1, 2.0)], ONE_GPU)


def test_gpus_on_different_nodes_do_not_pool():
    check_fits([READ, pool("Enhancer", 2, 0.5), pool("ImageGen", 2, 0.5)], TWO_WORKERS)
    text = message([READ, pool("Enhancer", 2, 0.6), pool("ImageGen", 2, 0.4)], TWO_WORKERS)
    assert "node 3 GPU 1: 2 x ImageGen (0.8 used)" in text or "node 2 GPU 1: 2 x ImageGen (0.8 used)" in text
    # Two GPUs in all, one per node: an actor asking for both has no node to run on.
    assert "no node has that many" in message([READ, pool("ImageGen", 1, 2.0)], TWO_WORKERS)
    # A two-GPU actor needs both GPUs of one node; halves on both nodes leave it none.
    two_nodes = [NodeCapacity(cpus=8, gpus=2), NodeCapacity(cpus=8, gpus=2)]
    text = message([READ, pool("Trainer", 1, 2.0), pool("Enhancer", 2, 0.5)], two_nodes)
    assert "node 1 GPU 1: 1 x Enhancer (0.5 used), node 2 GPU 1: 1 x Enhancer (0.5 used)" in text


def test_an_actor_needs_its_cpus_and_gpus_on_one_node():
    """A CPU-only head with many CPUs beside GPU workers with few: each resource exists somewhere,
    but no node has both, and Ray would wait for one forever."""
    head_and_small_workers = [NodeCapacity(cpus=32, gpus=0), NodeCapacity(cpus=4, gpus=1), NodeCapacity(cpus=4, gpus=1)]
    check_fits([READ, pool("ImageGen", 2, 1.0, cpus=4)], head_and_small_workers)
    text = message([READ, pool("ImageGen", 1, 1.0, cpus=8)], head_and_small_workers)
    assert "ImageGen asks for 8 CPUs and 1 GPU(s) per actor on one node, but no node has both" in text
    assert "32 CPUs and 0 GPUs, 4 CPUs and 1 GPUs" in text
    big_head = [NodeCapacity(cpus=32, gpus=0, memory=64 * 2**30), NodeCapacity(cpus=4, gpus=1, memory=8 * 2**30)]
    needs_memory = StageRequest("ImageGen", 1, cpus=1, gpus=1, is_actor_pool=True, memory=16 * 2**30)
    text = message([READ, needs_memory], big_head)
    assert "asks for 1 CPUs and 1 GPU(s) and memory=16.0 GiB per actor on one node, but no node has all of them" in text
    assert "4 CPUs and 1 GPUs and 8.0 GiB" in text


def test_no_gpus_at_all():
    with pytest.raises(ResourceMismatchError, match="GPU"):
        check_fits([READ, pool("ImageGen", 2, 1.0)], [NodeCapacity(cpus=2, gpus=0)])


def test_actors_that_take_every_cpu_would_starve_the_reads():
    # Measured: on 2 CPUs, two GPU actors with 1 CPU each hang read_csv forever.
    with pytest.raises(ResourceMismatchError, match="no CPU would be left"):
        check_fits([READ, pool("ImageGen", 2, 0.4, cpus=1)], [NodeCapacity(cpus=2, gpus=2)])
    check_fits([READ, pool("ImageGen", 2, 0.4, cpus=1)], [NodeCapacity(cpus=8, gpus=2)])


def test_pools_that_take_every_cpu_of_the_gpu_node_leave_the_next_pool_no_actor():
    """A CPU-only head's CPUs do not help actors on a GPU worker. Measured on Ray 2.60 with a head of 8 CPUs
    and a worker of 2 CPUs and 2 GPUs: two pools of 2 x (1 CPU, 0.5 GPU) over 3,000 rows of 512 KiB waited
    past 150 s (the first pool took both CPUs; the second got no actor); with 4 CPUs on the worker, 11.9 s."""
    head_and_worker = [NodeCapacity(cpus=8, gpus=0), NodeCapacity(cpus=2, gpus=2)]
    text = message([READ, pool("MapBatches(A)", 2, 0.5), pool("MapBatches(B)", 2, 0.5)], head_and_worker)
    assert "do not fit in every order Ray may start them (each actor needs its GPU share and its 1 CPUs on one " \
           "node)" in text
    assert "Ray may place node 2: 2 x MapBatches(A) (2 of 2 CPUs used), and then the next MapBatches(B) actor " \
           "(1 CPUs) finds no node with 1 CPUs left" in text
    assert "start the GPU nodes with more CPUs" in text
    check_fits([READ, pool("MapBatches(A)", 2, 0.5), pool("MapBatches(B)", 2, 0.5)],
               [NodeCapacity(cpus=8, gpus=0), NodeCapacity(cpus=4, gpus=2)])


def test_actors_without_gpus_are_packed_per_node_too():
    text = message([READ, pool("Tokenizer", 3, 0.0, cpus=3)], [NodeCapacity(cpus=5, gpus=0)] * 2)
    assert "each actor needs its 3 CPUs on one node" in text and "start nodes with more CPUs" in text
    check_fits([READ, pool("Tokenizer", 2, 0.0, cpus=3)], [NodeCapacity(cpus=5, gpus=0)] * 2)


def test_a_node_shortfall_is_told_as_a_placement_ray_may_choose():
    """First-fit (largest share first) puts A on the 3-CPU node and strands B, though B there and A on the
    2-CPU node would fit: the message shows what Ray may do, not a claim that nothing fits."""
    nodes = [NodeCapacity(cpus=3, gpus=1), NodeCapacity(cpus=2, gpus=1), NodeCapacity(cpus=4, gpus=0)]
    text = message([READ, pool("A", 1, 0.5, cpus=2), pool("B", 1, 0.4, cpus=3)], nodes)
    assert "do not fit in every order Ray may start them" in text
    assert "Ray may place node 1: 1 x A (2 of 3 CPUs used), and then the next B actor (3 CPUs) finds no node " \
           "with 3 CPUs left" in text


def test_an_actor_on_two_gpus_counts_its_cpus_once():
    check_fits([READ, pool("Trainer", 2, 2.0, cpus=3)], [NodeCapacity(cpus=8, gpus=4)])
    check_fits([READ, pool("Trainer", 1, 2.0, cpus=4)], [NodeCapacity(cpus=8, gpus=2)])


def test_cpus_that_fit_only_in_a_lucky_order_are_refused():
    # Two workers of 3 CPUs and 1 GPU: A's 2-CPU actors first fit (one per node, B's beside them), but
    # an A actor on one worker and B's two 1-CPU actors on the other leave 1 CPU on each: no room for A's second.
    workers = [NodeCapacity(cpus=8, gpus=0), NodeCapacity(cpus=3, gpus=1), NodeCapacity(cpus=3, gpus=1)]
    text = message([READ, pool("A", 2, 0.2, cpus=2), pool("B", 2, 0.2, cpus=1)], workers)
    assert "The actor pools' actors fit only with a lucky placement" in text
    assert "Ray may place node 2: 1 x A (2 of 3 CPUs used), node 3: 2 x B (2 of 3 CPUs used), and then the next " \
           "A actor (2 CPUs) finds no node with 2 CPUs left" in text
    assert "Fix: lower compute=ActorPoolStrategy(size=2) or num_cpus=2 for this stage" in text


def test_a_gpu_task_beside_pools_that_hold_every_gpu_is_refused():
    """Measured on Ray 2.60 (one node, 2 logical GPUs, 3,000 rows of 512 KiB, a 150 MB object store): a pool of
    2 x 1 GPU followed by map_batches(fn, num_gpus=0.5) waited past 150 s; with a pool of 1 x 1 GPU, 53 s."""
    gpu_task = StageRequest("MapBatches(<lambda>)", 1, cpus=1, gpus=0.5, is_actor_pool=False)
    text = message([READ, pool("MapBatches(A)", 2, 1.0), gpu_task], ONE_NODE_TWO_GPUS)
    assert text.startswith("Once the actor pools (MapBatches(A)) have their actors, no node has room for a "
                           "MapBatches(<lambda>) task (0.5 GPU(s) and 1 CPUs)")
    check_fits([READ, pool("MapBatches(A)", 1, 1.0), gpu_task], ONE_NODE_TWO_GPUS)


def test_an_image_share_beside_the_llm_that_ray_refuses_names_both_variables(lesson_settings, monkeypatch):
    """WORKSHOP_IMAGE_GPUS=2 beside the LLM's 0.5 gives lesson 05's image actors 1.5 GPUs, which Ray refuses
    only when the first actor starts."""
    monkeypatch.setenv("WORKSHOP_IMAGE_GPUS", "2")
    with pytest.raises(SettingsError) as err:
        check_settings_fit(lesson_settings(8), [NodeCapacity(cpus=32, gpus=8)])
    assert "WORKSHOP_IMAGE_GPUS=2 and WORKSHOP_LLM_GPUS=0.5" in str(err.value)
    assert "e.g. WORKSHOP_LLM_GPUS=1." in str(err.value)
    monkeypatch.setenv("WORKSHOP_LLM_GPUS", "1")
    check_settings_fit(lesson_settings(8), [NodeCapacity(cpus=32, gpus=8)])


def test_a_setting_that_takes_every_cpu_of_the_gpu_node_names_the_variable(lesson_settings, monkeypatch):
    monkeypatch.setenv("WORKSHOP_ACTOR_CPUS", "2")
    head_and_worker = [NodeCapacity(cpus=32, gpus=0), NodeCapacity(cpus=4, gpus=2)]
    with pytest.raises(SettingsError) as err:
        check_settings_fit(lesson_settings(2), head_and_worker)
    assert "WORKSHOP_ACTOR_CPUS=2 cannot fit this cluster" in str(err.value)
    assert "Use WORKSHOP_ACTOR_CPUS=1" in str(err.value)


def test_a_cluster_without_gpus_is_told_what_gives_it_gpus(lesson_settings, monkeypatch):
    """WORKSHOP_NUM_GPUS sizes only a Ray the workshop starts: a cluster it joined needs GPU nodes."""
    for name in ("WORKSHOP_IMAGE_GPUS", "WORKSHOP_LLM_GPUS", "WORKSHOP_IMAGE_ACTORS", "WORKSHOP_LLM_ACTORS"):
        monkeypatch.delenv(name, raising=False)
    no_gpus = [NodeCapacity(cpus=4, gpus=0)]
    with pytest.raises(SettingsError) as ours:
        check_settings_fit(lesson_settings(2), no_gpus)
    assert "Give it more GPUs (WORKSHOP_NUM_GPUS on this machine, read when the workshop's Ray starts)" in str(
        ours.value)
    with pytest.raises(SettingsError) as joined:
        check_settings_fit(lesson_settings(2), no_gpus, sized_here=False)
    assert ("Give it more GPUs (add GPU nodes, or on an autoscaling cluster give its GPU workers a minimum that "
            "has them and start again once they have joined; WORKSHOP_NUM_GPUS sizes only a Ray the workshop "
            "starts)") in str(joined.value)
    assert "WORKSHOP_IMAGE_GPUS=0 and WORKSHOP_LLM_GPUS=0" in str(joined.value)


@pytest.mark.slow
def test_a_gpu_task_beside_a_pool_on_every_gpu_fails_fast(session):
    import ray

    from tests.conftest import deadline

    class Passthrough:
        def __call__(self, batch):
            return batch

    gpus = int(ray.cluster_resources()["GPU"])
    ds = (ray.data.range(4)
          .map_batches(Passthrough, compute=ray.data.ActorPoolStrategy(size=gpus), num_gpus=1, batch_size=2)
          .map_batches(lambda batch: batch, num_gpus=0.5, batch_size=2))
    with deadline(60, "the resource check"), pytest.raises(ResourceMismatchError, match="no node has room for a"):
        ds.count()


@pytest.mark.slow
def test_ray_puts_two_fractional_actors_that_come_first_on_one_gpu(session):
    """The placement the check refuses happens: Ray 2.60 gives a fractional actor the GPU it fills most."""
    import ray

    @ray.remote(num_cpus=0)
    class Probe:
        def gpu_ids(self):
            return ray.get_gpu_ids()

    images = [Probe.options(num_gpus=0.4).remote() for _ in range(2)]
    first_images = ray.get([actor.gpu_ids.remote() for actor in images])
    llm = Probe.options(num_gpus=0.6).remote()
    first_llm = ray.get(llm.gpu_ids.remote())
    for actor in (*images, llm):
        ray.kill(actor)
    assert first_images[0] == first_images[1] and len(first_images[0]) == 1
    assert first_llm != first_images[0]  # 0.2 left beside the images, 1.0 on the other: no room for a second 0.6


def test_an_llm_share_that_can_strand_an_actor_names_the_variable_and_a_share_that_fits(lesson_settings, monkeypatch):
    monkeypatch.setenv("WORKSHOP_LLM_GPUS", "0.6")
    with pytest.raises(SettingsError) as err:
        check_settings_fit(lesson_settings(2), ONE_NODE_TWO_GPUS)
    text = str(err.value)
    assert text.startswith("WORKSHOP_LLM_GPUS=0.6 cannot fit this cluster: lessons 05-06 run 2 LLM actor(s) of 0.6 GPU")
    assert ("GPU 1: 2 x image (0.8 used), GPU 2: 1 x LLM (0.6 used), and then the next LLM actor (0.6 GPU) "
            "finds no GPU with room") in text
    assert text.endswith("Use WORKSHOP_LLM_GPUS=0.5 or less.")
