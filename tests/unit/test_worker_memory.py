"""A worker process keeps the buffers it frees (worker/memory.py ``keep_freed_memory``), run
in fresh interpreters since the setting is process-wide. The pattern is a sentence's: several
multi-megabyte buffers alive at once (Griffin-Lim's spectrograms), written, then all freed.
By default glibc trims that memory from its heap and the next sentence faults it in again.
Repeated Griffin-Lim calls show the same effect, but their fault counts under the default
vary too much from process to process to be asserted on."""

from __future__ import annotations

import subprocess
import sys

from harness.processes import REPO

SENTENCES = """
import resource, sys
import numpy as np
from worker.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def sentence():
    buffers = [np.ones((12 << 20) // 8) for _ in range(3)]
    del buffers
sentence()
sentence()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    sentence()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", SENTENCES, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(result.stdout.split()[-1])


def test_freed_buffers_are_reused_not_faulted_in_again() -> None:
    default, kept = page_faults("default"), page_faults("keep")
    # Measured here: 10,020 faults by default over the 10 sentences, 0 kept.
    assert kept < 100, kept
    assert default > 10 * (kept + 100), (default, kept)
