"""The resource check reads custom resources, accelerator types and label selectors.

``map_batches(..., resources=..., accelerator_type=..., label_selector=...)``
that no node can meet makes Ray 2.60 wait forever without a word. The first
tests are the check's arithmetic, without Ray; the last ones run each request
through a real Ray with the workshop's Data context (the ``session`` fixture:
the suite's Ray), where it must fail within the deadline, and a selector that
the node does match must still run.
"""

from __future__ import annotations

import pytest

from helpers.runtime.node_constraints import custom_resources, selector_matches
from helpers.runtime.packing import find_stranding
from helpers.runtime.resources import ResourceMismatchError, check_fits
from helpers.runtime.stage_request import NodeCapacity, StageRequest
from tests.conftest import deadline

READ = StageRequest("ReadCSV", 1, cpus=1, gpus=0, is_actor_pool=False)
#: A GPU node as Ray describes a detected H100 (``accelerator_type:H100``) in zone ``a``.
H100 = NodeCapacity(cpus=8, gpus=1, custom=(("accelerator_type:H100", 1.0),), labels=(("zone", "a"),))
A10G = NodeCapacity(cpus=8, gpus=1, custom=(("accelerator_type:A10G", 1.0),), labels=(("zone", "b"),))
CPU_HEAD = NodeCapacity(cpus=16, gpus=0, labels=(("role", "head"),))


def pool(name, actors, gpus, **constraints):
    return StageRequest(name, actors, cpus=1, gpus=gpus, is_actor_pool=True, **constraints)


def message(requests, nodes) -> str:
    with pytest.raises(ResourceMismatchError) as err:
        check_fits(requests, nodes)
    return str(err.value)


def test_label_selector_syntax_as_ray_reads_it():
    labels = {"zone": "a", "tier": "gpu"}
    assert selector_matches({"zone": "a"}, labels) and not selector_matches({"zone": "b"}, labels)
    assert selector_matches({"zone": "!b"}, labels) and not selector_matches({"zone": "!a"}, labels)
    assert selector_matches({"zone": "in(b, a)"}, labels) and not selector_matches({"zone": "in(b,c)"}, labels)
    assert selector_matches({"zone": "!in(b,c)"}, labels) and not selector_matches({"zone": "!in(a,c)"}, labels)
    # A missing label: never equal, always "not" (measured on Ray 2.60: {"zone": "!a"} runs on a node without zone).
    assert not selector_matches({"rack": "r1"}, labels) and not selector_matches({"rack": "in(r1)"}, labels)
    assert selector_matches({"rack": "!r1"}, labels) and selector_matches({"rack": "!in(r1,r2)"}, labels)
    assert selector_matches({"zone": "a", "tier": "gpu"}, labels) and not selector_matches(
        {"zone": "a", "tier": "cpu"}, labels)


def test_a_nodes_custom_resources_leave_out_the_built_in_ones():
    resources = {"CPU": 8.0, "GPU": 1.0, "memory": 1e10, "object_store_memory": 1e9, "node:10.0.0.2": 1.0,
                 "node:__internal_head__": 1.0, "accelerator_type:H100": 1.0, "fast_disk": 2.0}
    assert custom_resources(resources) == (("accelerator_type:H100", 1.0), ("fast_disk", 2.0))


def test_an_accelerator_type_the_cluster_lacks_names_the_types_it_has():
    wants_a100 = pool("MapBatches(ImageGen)", 1, 1.0, custom=(("accelerator_type:A100", 0.001),))
    text = message([READ, wants_a100], [CPU_HEAD, H100, A10G])
    assert text.startswith("MapBatches(ImageGen) asks for accelerator_type='A100' per actor, but the cluster's GPUs "
                           "are of type A10G, H100, so it would wait forever.")
    assert "Fix: remove accelerator_type= from its map_batches call, or use 'A10G'." in text
    # On a CPU machine (or GPUs declared with num_gpus) no node has a type at all.
    text = message([READ, wants_a100], [NodeCapacity(cpus=8, gpus=2)])
    assert "no node reports an accelerator type" in text and "Fix: remove accelerator_type=" in text
    check_fits([READ, pool("MapBatches(ImageGen)", 1, 1.0, custom=(("accelerator_type:H100", 0.001),))],
               [CPU_HEAD, H100, A10G])


def test_a_custom_resource_no_node_has_is_named_with_what_the_nodes_have():
    text = message([READ, pool("MapBatches(Enhancer)", 1, 0, custom=(("fast_disk", 1.0),))],
                   [NodeCapacity(cpus=8, gpus=0, custom=(("ssd", 4.0),))])
    assert "MapBatches(Enhancer) asks for resources={'fast_disk': 1} per actor, but no node has a resource " \
           "'fast_disk' (custom resources here: ssd)" in text
    assert "ray start --resources='{\"fast_disk\": 1}'" in text
    text = message([READ, pool("MapBatches(Enhancer)", 1, 0, custom=(("ssd", 8.0),))],
                   [NodeCapacity(cpus=8, gpus=0, custom=(("ssd", 4.0),))])
    assert "asks for resources={'ssd': 8} per actor, but no node has more than 4 of it" in text


def test_a_pool_that_wants_more_of_a_custom_resource_than_the_cluster_has():
    nodes = [NodeCapacity(cpus=8, gpus=0, custom=(("ssd", 1.0),)), NodeCapacity(cpus=8, gpus=0, custom=(("ssd", 1.0),))]
    check_fits([READ, pool("MapBatches(Writer)", 2, 0, custom=(("ssd", 1.0),))], nodes)
    text = message([READ, pool("MapBatches(Writer)", 3, 0, custom=(("ssd", 1.0),))], nodes)
    assert "ask for 3 of the resource 'ssd' in all (MapBatches(Writer): 3 x 1), but the cluster has 2" in text
    # A task stage that needs it too must find some left beside the pools.
    task = StageRequest("MapBatches(index)", 1, cpus=1, gpus=0, is_actor_pool=False, custom=(("ssd", 0.5),))
    text = message([READ, pool("MapBatches(Writer)", 2, 0, custom=(("ssd", 1.0),)), task], nodes)
    assert "2.5 of the resource 'ssd' in all (MapBatches(Writer): 2 x 1, a task of MapBatches(index): 0.5)" in text


def test_a_custom_resource_on_nodes_without_the_pools_gpus_does_not_count():
    # Two of x in all, but one sits on the CPU node: only one actor that needs a GPU and x can start.
    gpu_node = NodeCapacity(cpus=8, gpus=2, custom=(("x", 1.0),))
    cpu_node = NodeCapacity(cpus=8, gpus=0, custom=(("x", 1.0),))
    text = message([READ, pool("MapBatches(ImageGen)", 2, 1.0, custom=(("x", 1.0),))], [gpu_node, cpu_node])
    assert "MapBatches(ImageGen) needs 2 actors at once, each with 1 CPUs, 1 GPU(s) and resources={'x': 1}, but " \
           "the nodes hold only 1 of them (node 1: 1)" in text
    check_fits([READ, pool("MapBatches(ImageGen)", 2, 0.5, custom=(("x", 0.5),))], [gpu_node, cpu_node])


def test_whole_gpu_actors_take_their_gpus_on_one_node():
    # 3 + 1 GPUs: the second two-GPU actor would need one GPU of each node, which Ray never gives it.
    text = message([READ, pool("MapBatches(Trainer)", 2, 2.0)],
                   [NodeCapacity(cpus=8, gpus=3), NodeCapacity(cpus=8, gpus=1)])
    assert "ask for 4 GPUs in all (MapBatches(Trainer): 2 x 2)" in text and "would wait forever" in text


def test_a_label_selector_no_node_matches_shows_the_nodes_labels():
    text = message([READ, pool("MapBatches(ImageGen)", 1, 1.0, labels=(("zone", "c"),))], [CPU_HEAD, H100, A10G])
    assert "asks for nodes with label_selector={'zone': 'c'}, but no node's labels match (node 1: none of them; " \
           "node 2: zone=a; node 3: zone=b)" in text
    assert "start a node with those labels (ray start --labels=zone=c)" in text
    # A fallback selector that matches lets the stage run.
    check_fits([READ, pool("MapBatches(ImageGen)", 1, 1.0, labels=(("zone", "c"),), fallbacks=((("zone", "b"),),))],
               [CPU_HEAD, H100, A10G])


def test_the_nodes_a_stage_may_use_must_hold_one_of_its_actors():
    # The head matches the selector but has no GPU.
    text = message([READ, pool("MapBatches(ImageGen)", 1, 1.0, labels=(("role", "head"),))], [CPU_HEAD, H100])
    assert "asks for 1 GPU(s) per actor, but no node that meets its label_selector={'role': 'head'} has that many" \
           in text


def test_gpu_packing_counts_only_the_gpus_a_pool_may_use():
    # Two GPUs in all, but the pool's selector allows one of them: the second actor waits forever.
    check_fits([READ, pool("MapBatches(ImageGen)", 2, 1.0)], [H100, A10G])
    text = message([READ, pool("MapBatches(ImageGen)", 2, 1.0, labels=(("zone", "a"),))], [H100, A10G])
    assert "MapBatches(ImageGen) may use only the 1 GPU(s) of the 1 node(s) that meet its label_selector=" \
           "{'zone': 'a'}, so MapBatches(ImageGen) would wait forever" in text
    # Shares: two 0.6 actors fit two GPUs, not the one GPU their accelerator type allows.
    h100_only = pool("MapBatches(Enhancer)", 2, 0.6, custom=(("accelerator_type:H100", 0.001),))
    check_fits([READ, pool("MapBatches(Enhancer)", 2, 0.6)], [H100, A10G])
    assert "would wait forever" in message([READ, h100_only], [H100, A10G])
    # Across pools: 0.5 on either GPU next to 0.6 on the H100 only strands the 0.6 when a 0.5 comes first there.
    either = pool("MapBatches(ImageGen)", 1, 0.5)
    stranding = find_stranding([either, pool("MapBatches(Enhancer)", 1, 0.6, labels=(("zone", "a"),))], [H100, A10G])
    assert stranding is not None and stranding.stage.name == "MapBatches(Enhancer)"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("asks", "said"),
    [
        ({"resources": {"workshop_missing": 1}}, "no node has a resource 'workshop_missing'"),
        ({"accelerator_type": "A100"}, "accelerator_type='A100'"),
        ({"label_selector": {"workshop-zone": "a"}}, "label_selector={'workshop-zone': 'a'}, but no node's labels"),
    ],
    ids=["resources", "accelerator_type", "label_selector"],
)
def test_a_request_no_node_meets_fails_fast_instead_of_waiting(session, asks, said):
    """Each of these waited past 30 s without a word before the check read them (Ray 2.60)."""
    import ray

    class Passthrough:
        def __call__(self, batch):
            return batch

    ds = ray.data.range(4).map_batches(Passthrough, compute=ray.data.ActorPoolStrategy(size=1), **asks)
    with deadline(60, "the resource check"), pytest.raises(ResourceMismatchError) as err:
        ds.count()
    assert said in str(err.value) and "Fix:" in str(err.value)


@pytest.mark.slow
def test_a_selector_the_nodes_meet_still_runs(session):
    import ray

    class Passthrough:
        def __call__(self, batch):
            return batch

    ds = ray.data.range(4).map_batches(
        Passthrough, compute=ray.data.ActorPoolStrategy(size=1), label_selector={"workshop-zone": "!a"})
    with deadline(120, "a pipeline whose selector every node meets"):
        assert ds.count() == 4
