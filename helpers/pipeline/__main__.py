"""``python -m helpers.pipeline``: see :mod:`helpers.pipeline.command`."""

import sys

from helpers.pipeline.command import main

sys.exit(main())
