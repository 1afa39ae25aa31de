"""``python -m helpers.notebooks``, as documented; the notebook tool is :mod:`helpers.commands.notebooks`."""

import sys

from helpers.commands.notebooks import main

if __name__ == "__main__":
    sys.exit(main())
