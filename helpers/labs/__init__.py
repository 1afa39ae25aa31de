"""The labs: the check engine, the shapes labs declare, and each lesson's labs.

* :mod:`.framework`: ``Lab``, the three outcomes, hints, the registry and ``get_lab``;
* :mod:`.shapes`: the declared shapes of a variable (a value, a folder of written files, a pipeline, a class);
* :mod:`.solutions`: ``lab.solution()``'s code, read from the lesson's solution notebook;
* :mod:`.data` and :mod:`.plans`: the workshop data and a pipeline's plan, as the checks read them;
* :mod:`.lesson01` ... :mod:`.lesson07`: each lesson's labs.

A notebook asks for its lab by name (``helpers.get_lab("04_png")``); the
lesson module named by its prefix registers it when first needed.
"""

from helpers.labs.framework import Lab, Outcome, get_lab, register

__all__ = ["Lab", "Outcome", "get_lab", "register"]
