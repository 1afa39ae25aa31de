"""``python -m helpers.bench``, as documented: the pipeline benchmark (:mod:`helpers.commands.bench`),
or ``python -m helpers.bench lessons``, the lessons as a learner runs them (:mod:`helpers.commands.lessons_bench`)."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["lessons"]:
        from helpers.commands.lessons_bench import main

        sys.exit(main(sys.argv[2:]))
    from helpers.commands.bench import main

    sys.exit(main())
