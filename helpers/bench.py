"""``python -m helpers.bench``, as documented: the pipeline benchmark (:mod:`helpers.commands.bench`);
``python -m helpers.bench lessons``: the lessons as a learner runs them (:mod:`helpers.commands.lessons_bench`);
``python -m helpers.bench pipeline``: the pipeline command's driver memory (:mod:`helpers.commands.pipeline_bench`)."""

import importlib
import sys

SUBCOMMANDS = {"lessons": "helpers.commands.lessons_bench", "pipeline": "helpers.commands.pipeline_bench"}

if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS:
        sys.exit(importlib.import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))
    from helpers.commands.bench import main

    sys.exit(main())
