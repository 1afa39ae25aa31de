"""Command-line tools for set-up, instructors and maintainers; none of them runs on a Ray worker.

``python -m helpers.commands.setup_workshop`` (the Python half of ``setup.sh``),
``python -m helpers.bench`` (:mod:`.bench`) and ``python -m helpers.notebooks``
(:mod:`.notebooks`: build the student notebooks, run the solutions). The
pipeline command is :mod:`helpers.pipeline`.
"""
