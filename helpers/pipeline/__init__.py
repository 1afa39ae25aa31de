"""The workshop's final pipeline, as the lessons build it and as a command.

:mod:`.inputs` checks the two CSV files, :mod:`.stages` builds the pipeline
(``build_pipeline``: the lessons' stages on Ray Data), :mod:`.writer` writes
its Parquet and PNG files, :mod:`.command` is ``python -m helpers.pipeline``
(arguments, messages, the summary), and :mod:`.output` owns the output
folder: what may be replaced, the lock, and the atomic publish. The ``s3://``
publish is :mod:`.s3_publish`'s.
"""
