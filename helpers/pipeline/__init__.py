"""The workshop's final pipeline, as the lessons build it and as a command.

:mod:`.inputs` checks the two CSV files, :mod:`.command` builds and runs the
pipeline (``python -m helpers.pipeline``), and :mod:`.output` owns the output
folder: what may be replaced, the lock, and the atomic publish. The ``s3://``
publish is :mod:`helpers.runtime.storage`'s.
"""
