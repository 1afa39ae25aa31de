"""Labs of lessons 04-06 (joins, PNG files, the parameterized Enhancer)."""

from __future__ import annotations

from helpers.labs import Lab, register  # noqa: F401
