"""``python -m helpers.bench``, as documented; the benchmark is :mod:`helpers.commands.bench`."""

import sys

from helpers.commands.bench import main

if __name__ == "__main__":
    sys.exit(main())
