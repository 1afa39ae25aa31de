"""The labs: the check framework (:mod:`.framework`) and each lesson's labs.

A notebook asks for its lab by name (``helpers.get_lab("ingest/take_batch")``);
the lesson modules register their labs when first needed.
"""

from helpers.labs.framework import Lab, Outcome, get_lab, register

__all__ = ["Lab", "Outcome", "get_lab", "register"]
