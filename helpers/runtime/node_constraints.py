"""Which nodes a stage may run on: its custom resources, accelerator type and label selector.

``map_batches`` passes ``resources=``, ``accelerator_type=`` and
``label_selector=`` to Ray as they are, and Ray 2.60 waits for a node that
meets them without a word when none does: ``resources={"x": 1}`` on a cluster
without ``x``, ``accelerator_type="A100"`` on H100s or on a CPU machine,
``label_selector={"zone": "a"}`` when no node carries that label (each was
measured to wait past 30 s with no error, and Ray retries forever). A
workshop attendee who copies such a call from Ray's documentation sees a frozen
notebook. The resource check (:mod:`helpers.runtime.resources`) asks this
module which nodes each stage may use, and what to say when there are none.

Ray turns ``accelerator_type="A100"`` into 0.001 of the resource
``accelerator_type:A100``, and a node whose GPUs Ray detected has 1 of
``accelerator_type:<their type>``; logical GPUs on a machine without any
(``ray.init(num_gpus=2)`` on a laptop, the workshop's CPU profile) have no type.
A label selector's value is ``v`` (the label equals v), ``!v`` (it is missing
or differs), ``in(a,b)`` (it is one of them) or ``!in(a,b)`` (it is missing or
none of them); a stage may use a node that matches its selector or one of its
``fallback_strategy`` selectors.
"""

from __future__ import annotations

from helpers.runtime.ray_internals import ACCELERATOR_PREFIX, BUILT_IN

#: Tolerance in resource comparisons: Ray rounds amounts to ten-thousandths, floats add their own error.
EPS = 1e-6
#: The label Ray gives every node: long, unique, and no help in a message about a missing label.
NODE_ID_LABEL = "ray.io/node-id"


def custom_resources(resources: dict) -> tuple:
    """A node's custom resources, as hashable pairs: all but the built-in ones and Ray's ``node:<ip>`` markers."""
    return tuple(sorted((name, float(amount)) for name, amount in resources.items()
                        if name not in BUILT_IN and not name.startswith("node:")))


def selector_matches(selector: dict, labels: dict) -> bool:
    """Whether a node with ``labels`` meets every ``label: value`` of ``selector``, in Ray's syntax."""
    for key, wanted in selector.items():
        negated = wanted.startswith("!")
        body = wanted[1:] if negated else wanted
        values = {part.strip() for part in body[3:-1].split(",")} if body.startswith("in(") and body.endswith(")") \
            else {body}
        found = key in labels and labels[key] in values
        if found == negated:
            return False
    return True


def labels_allow(stage, labels: dict) -> bool:
    """Whether the stage's label selector, or one of its fallbacks, matches a node with ``labels``."""
    return any(selector_matches(dict(option), labels) for option in (stage.labels, *stage.fallbacks))


def has_custom(stage, custom: dict) -> bool:
    return all(custom.get(name, 0.0) + EPS >= amount for name, amount in stage.custom)


def allows(node, stage) -> bool:
    """Whether ``stage`` may run on ``node`` at all (its CPUs, GPUs and memory aside)."""
    return labels_allow(stage, dict(node.labels)) and has_custom(stage, dict(node.custom))


def constrained(stage) -> bool:
    return bool(stage.custom or stage.labels or stage.fallbacks)


def what_it_asks(stage) -> str:
    """``accelerator_type='A100' and label_selector={'zone': 'a'}``: the constraints, as the call wrote them."""
    parts = []
    accelerators = [name[len(ACCELERATOR_PREFIX):] for name, _ in stage.custom if name.startswith(ACCELERATOR_PREFIX)]
    own = {name: amount for name, amount in stage.custom if not name.startswith(ACCELERATOR_PREFIX)}
    if own:
        parts.append("resources={" + ", ".join(f"{name!r}: {amount:g}" for name, amount in own.items()) + "}")
    parts += [f"accelerator_type={kind!r}" for kind in accelerators]
    if stage.labels:
        parts.append(f"label_selector={dict(stage.labels)}")
    if stage.fallbacks:
        parts.append(f"fallback_strategy with {len(stage.fallbacks)} selector(s)")
    return " and ".join(parts)


def _unit(stage) -> str:
    return "actor" if stage.is_actor_pool else "task"


def _accelerator_problem(stage, kind: str, nodes) -> str:
    kinds = sorted({name[len(ACCELERATOR_PREFIX):] for node in nodes for name, _ in node.custom
                    if name.startswith(ACCELERATOR_PREFIX)})
    if kinds:
        have, other = f"the cluster's GPUs are of type {', '.join(kinds)}", f", or use {kinds[0]!r}"
    else:
        have = ("no node reports an accelerator type (Ray names the type of the GPUs it detects; logical GPUs "
                "on a machine without any have none)")
        other = ""
    return (f"{stage.name} asks for accelerator_type={kind!r} per {_unit(stage)}, but {have}, so it would wait "
            f"forever. Fix: remove accelerator_type= from its map_batches call{other}.")


def _resource_problem(stage, name: str, amount: float, nodes) -> str:
    most = max((dict(node.custom).get(name, 0.0) for node in nodes), default=0.0)
    if most:
        have = f"no node has more than {most:g} of it"
    else:
        offered = sorted({resource for node in nodes for resource, _ in node.custom
                          if not resource.startswith(ACCELERATOR_PREFIX)})
        have = f"no node has a resource {name!r} (custom resources here: {', '.join(offered) or 'none'})"
    return (
        f"{stage.name} asks for resources={{{name!r}: {amount:g}}} per {_unit(stage)}, but {have}, so it would wait "
        f"forever. Fix: remove resources= from its map_batches call or ask for less, or start nodes that have it "
        f"(ray start --resources='{{\"{name}\": {max(amount, 1):g}}}'; ray.init(resources=...) on one machine)."
    )


def _label_problem(stage, nodes) -> str:
    keys = list(dict.fromkeys(key for option in (stage.labels, *stage.fallbacks) for key, _ in option))
    shown = [key for key in keys if key != NODE_ID_LABEL] or keys

    def node_labels(i: int, node) -> str:
        labels = dict(node.labels)
        found = ", ".join(f"{key}={labels[key]}" for key in shown if key in labels)
        return f"node {i + 1}: {found or 'none of them'}"

    selector = dict(stage.labels) if stage.labels else dict(stage.fallbacks[0])
    example = ",".join(f"{key}={value}" for key, value in selector.items()
                       if not value.startswith("!") and not value.startswith("in("))
    start = f" (ray start --labels={example})" if example else ""
    return (
        f"{stage.name} asks for nodes with {what_it_asks(stage)}, but no node's labels match "
        f"({'; '.join(node_labels(i, node) for i, node in enumerate(nodes))}), so it would wait forever. "
        f"Fix: remove label_selector= from its map_batches call (and any DataContext "
        f"execution_options.label_selector), or start a node with those labels{start}."
    )


def constraint_problem(stage, nodes) -> str | None:
    """Why no node of ``nodes`` may run ``stage``, with the fix; None when some node may."""
    if not constrained(stage) or any(allows(node, stage) for node in nodes):
        return None
    for name, amount in stage.custom:
        if not any(dict(node.custom).get(name, 0.0) + EPS >= amount for node in nodes):
            if name.startswith(ACCELERATOR_PREFIX):
                return _accelerator_problem(stage, name[len(ACCELERATOR_PREFIX):], nodes)
            return _resource_problem(stage, name, amount, nodes)
    if not any(labels_allow(stage, dict(node.labels)) for node in nodes):
        return _label_problem(stage, nodes)
    return (
        f"{stage.name} asks for {what_it_asks(stage)} per {_unit(stage)}: some nodes meet each part, but no node "
        f"meets them all, so it would wait forever. Fix: ask for less in its map_batches call, or start a node "
        "that has all of them."
    )
