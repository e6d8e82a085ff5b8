"""``python -m bench.allocator``: what a worker gains by keeping the buffers it frees
(:func:`worker.memory.keep_freed_memory`). Fresh processes, one after the other, synthesize
the bench's paragraphs in-process (the worker's normalize + synthesize stages, one torch
thread), half of them with glibc's default malloc and half set as a worker sets it; prints a
markdown table of the time, the kernel's share and the page faults per paragraph."""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import Floor, choose_voices
from bench.paragraphs import Paragraphs
from worker.memory import keep_freed_memory

_LOGGER = logging.getLogger("bench")

MODES = {"default": "glibc's default", "kept": "freed buffers kept (as a worker)"}


def child(mode: str, paragraphs: int) -> None:
    """One process's measurements, a JSON line per paragraph on stdout."""
    if mode == "kept" and not keep_freed_memory():
        raise SystemExit("malloc here is not glibc's: nothing to compare")
    voice_dir, _kind = choose_voices("auto", Path(tempfile.mkdtemp(prefix="moksori-alloc-")))
    floor = Floor(voice_dir, 1, 1)
    source = Paragraphs()
    floor.measure("준비 운동입니다.", 0.25)
    for _ in range(paragraphs):
        text = " ".join(source.new())
        before = resource.getrusage(resource.RUSAGE_SELF)
        wall, _cpu = floor.measure(text, 0.25)
        after = resource.getrusage(resource.RUSAGE_SELF)
        line = {
            "wall": wall,
            "kernel": after.ru_stime - before.ru_stime,
            "faults": after.ru_minflt - before.ru_minflt,
        }
        sys.stdout.write(json.dumps(line) + "\n")


def run(mode: str, paragraphs: int) -> list[dict[str, float]]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.allocator", "--child", mode, "--paragraphs", str(paragraphs)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.allocator", description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="processes per setting")
    parser.add_argument("--paragraphs", type=int, default=4, help="per process")
    parser.add_argument("--child", choices=sorted(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="bench | %(message)s", stream=sys.stderr)
    logging.getLogger("TTS").setLevel(logging.ERROR)
    if args.child:
        child(args.child, args.paragraphs)
        return 0
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode in MODES if round_ % 2 == 0 else reversed(MODES):
            started = time.monotonic()
            runs[mode] += run(mode, args.paragraphs)
            _LOGGER.info("%s, process %d: %.0f s", mode, round_ + 1, time.monotonic() - started)
    sys.stdout.write(
        f"{args.rounds} process(es) per setting, {args.paragraphs} paragraphs each "
        "(9 sentences, 511 characters), medians and ranges:\n\n"
        "| malloc | seconds per paragraph | in the kernel | page faults | vs default |\n"
        "|---|---|---|---|---|\n"
    )
    base = statistics.median(r["wall"] for r in runs["default"])
    for mode, label in MODES.items():
        walls = [r["wall"] for r in runs[mode]]
        kernel = [r["kernel"] for r in runs[mode]]
        faults = [r["faults"] for r in runs[mode]]
        sys.stdout.write(
            f"| {label} | {statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f}) "
            f"| {statistics.median(kernel):.2f} s ({min(kernel):.2f}-{max(kernel):.2f}) "
            f"| {statistics.median(faults):,.0f} ({min(faults):,.0f}-{max(faults):,.0f}) "
            f"| {statistics.median(walls) / base:.2f}x |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
