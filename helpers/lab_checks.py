"""The workshop's labs, one class each, registered by name for ``get_lab``.

Each check inspects what the learner actually produced (files on storage, a
dataset, a class) and accepts every correct answer, not only the solution's.
Labs of lessons 01-03 live here; lessons 04-06 in :mod:`helpers.lab_checks_late`.
"""

from __future__ import annotations

from helpers.labs import Lab, register  # noqa: F401

# Labs of lessons 01-03 go below.


# Imported last so that its labs register too when ``get_lab`` loads this module.
from helpers import lab_checks_late  # noqa: E402, F401
