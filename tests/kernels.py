"""Workshop kernels for the tests that watch what a cell does: started as JupyterLab starts a lesson's.

The kernel is the workshop's own kernelspec, the one every notebook names, so it
loads what a learner's kernel loads (``helpers.kernel``'s advice on a skipped
cell). It is shut down however the test ends: a kernel left behind keeps its
Ray and its actors, and the next test would wait for them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from helpers.kernel import KERNEL_NAME

#: The colours IPython puts in a traceback, which a test compares without.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@contextlib.contextmanager
def workshop_kernel(env: dict | None = None, cwd: str | None = None) -> Iterator[tuple]:
    """A ``(manager, client)`` of a fresh workshop kernel; ``env`` and ``cwd`` as JupyterLab would give them."""
    from jupyter_client.manager import start_new_kernel

    launch = {key: value for key, value in (("env", env), ("cwd", cwd)) if value is not None}
    manager, client = start_new_kernel(kernel_name=KERNEL_NAME, startup_timeout=120, **launch)
    try:
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run_cell(client, code: str, timeout: float = 300) -> dict:
    """Run ``code`` as a cell and return its reply (``status``, and ``ename``/``traceback`` on an error).

    What it shows is passed over: the tests that read it follow the kernel's messages themselves.
    """
    return client.execute_interactive(code, timeout=timeout, output_hook=lambda message: None)["content"]


def run_ok(client, code: str, timeout: float = 300) -> None:
    """Run ``code`` as a cell that must succeed."""
    reply = run_cell(client, code, timeout)
    assert reply["status"] == "ok", reply
