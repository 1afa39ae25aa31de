"""``python -m helpers.workshop_ray status|stop``: the Ray the lessons share (:mod:`helpers.runtime.shared_ray`)."""

import sys

from helpers.runtime.shared_ray import main

if __name__ == "__main__":
    sys.exit(main())
