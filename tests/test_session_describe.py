"""What ``helpers.start()`` prints about the Ray it found: GPUs are called logical only where they are.

Unit tests: the node count comes from a stub of ``cluster._alive_nodes`` (no Ray
runs here); the Session is built as ``start()`` builds it, with the settings of
each profile.
"""

from __future__ import annotations

import dataclasses

import pytest

from helpers.runtime import cluster
from helpers.runtime.settings import load_settings


def _first_line(profile: str, resources: dict, monkeypatch) -> str:
    monkeypatch.setattr(cluster, "_alive_nodes", lambda: [{"NodeID": "stub"}])
    settings = dataclasses.replace(load_settings(), profile=profile)
    session = cluster.Session(settings=settings, address="local", started_here=True, resources=resources,
                              dashboard_url=None, seconds=1.0)
    return session.describe().splitlines()[0]


def test_cpu_profile_says_its_gpus_are_logical(monkeypatch):
    line = _first_line("cpu", {"CPU": 8, "GPU": 2}, monkeypatch)
    assert "2 GPUs (logical on a CPU machine), 1 node(s)" in line, line


@pytest.mark.parametrize("resources", [{"CPU": 16, "GPU": 1}, {"CPU": 16}])
def test_gpu_profile_or_no_gpus_says_nothing_of_logical_gpus(resources, monkeypatch):
    line = _first_line("gpu" if "GPU" in resources else "cpu", resources, monkeypatch)
    assert "logical" not in line, line
    assert f"{resources.get('GPU', 0):g} GPUs, 1 node(s)" in line, line
