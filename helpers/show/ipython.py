"""Whether code runs under IPython, and in a notebook kernel: the one check every display uses."""

from __future__ import annotations


def ipython_shell():
    """The running IPython shell, or None (plain Python, a Ray worker, IPython not installed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def in_notebook() -> bool:
    """True in a Jupyter kernel (where rich displays render), False in a terminal IPython or plain Python."""
    shell = ipython_shell()
    return shell is not None and hasattr(shell, "kernel")
