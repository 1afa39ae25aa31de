"""Ray's log lines about what the lessons do on purpose stay out of the notebook."""

from __future__ import annotations

import io

from helpers.runtime.progress import KNOWN_NOISE, hide_known_noise, without_noise

NOISE = (
    "[2026-11-24 12:01:13,084 E 19877 19877] core_worker.cc:2465: Actor with class name: 'MapWorker(MapBatches(P))'"
    f" and ID: 'a7e9' {KNOWN_NOISE[0]}. If the arguments in the object store go out of scope ...\n"
)


def test_only_the_noise_lines_are_dropped():
    assert without_noise("before\n" + NOISE + "after\n") == "before\nafter\n"
    assert without_noise("a warning the learner needs\n") == "a warning the learner needs\n"
    assert without_noise(NOISE) == ""


def test_a_stream_keeps_everything_but_the_noise_and_is_wrapped_once():
    stream = io.StringIO()
    hide_known_noise(stream)
    hide_known_noise(stream)  # helpers.start() may run again in the same kernel
    stream.write("Ray Data: ReadCSV -> MapBatches(ImageGen)\n")
    stream.write(NOISE)
    stream.write("UserWarning: something to read\n" + NOISE)
    assert stream.getvalue() == "Ray Data: ReadCSV -> MapBatches(ImageGen)\nUserWarning: something to read\n"
