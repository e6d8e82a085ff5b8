"""A worker process keeps the buffers it frees (worker/runtime.py ``keep_freed_memory``): run in
fresh interpreters, since the setting is process-wide, on the real Griffin-Lim of torchaudio
that the demo voices use, counting the page faults of repeated inversions."""

from __future__ import annotations

import subprocess
import sys

from harness.processes import REPO

INVERSIONS = """
import resource, sys
import torch, torchaudio
from worker.runtime import keep_freed_memory
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    assert keep_freed_memory()
spec = torch.rand(513, 860) + 0.01  # a 10 s sentence's linear spectrogram (22 kHz, hop 256)
window = torch.hann_window(1024)
def invert():
    torchaudio.functional.griffinlim(spec, window, 1024, 256, 1024, 1.0, 8, 0.99, None, False)
invert()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    invert()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", INVERSIONS, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(result.stdout.split()[-1])


def test_freed_buffers_are_reused_not_faulted_in_again() -> None:
    default, kept = page_faults("default"), page_faults("keep")
    # Measured here: ~30,000-40,000 faults by default, ~2,000 kept.
    assert kept * 5 < default, (kept, default)
