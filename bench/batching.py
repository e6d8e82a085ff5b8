"""``python -m bench.batching``: is one batched model call faster than the same sentences one by
one? Measured in-process on this machine's voices (demo voices when present, else tiny ones),
with :func:`worker.synthesis.synthesize_batch` against Coqui's per-sentence ``tts()``; prints a
markdown table. This is the number behind ``MOKSORI_BATCH_SIZE``'s default."""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import Texts, choose_voices
from common.repository import scan

_LOGGER = logging.getLogger("bench")


def measure(voice_dir: Path, batch: int, rounds: int, threads: int) -> list[str]:
    import torch

    from common.normalize import Normalizer
    from worker.synthesis import normalize, synthesize_batch
    from worker.voices import load_bank

    torch.set_num_threads(threads)
    normalizer = Normalizer()
    texts = Texts()
    rows = []
    for member_id, voice in load_bank(scan(voice_dir), "cpu").voices.items():
        spec = voice.spec
        sentences = [normalize(normalizer, t, voice)[0] for t in texts.take(batch)]
        one_by_one, batched = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            for sentence in sentences:
                voice.synthesizer.tts(sentence, split_sentences=False)
            one_by_one.append(time.perf_counter() - started)
            started = time.perf_counter()
            synthesize_batch(voice, sentences)
            batched.append(time.perf_counter() - started)
        single, together = statistics.median(one_by_one), statistics.median(batched)
        rows.append(
            f"| {member_id} ({spec.name}, {spec.vocoder}) | {batch} | {single * 1000:.0f} ms | "
            f"{together * 1000:.0f} ms | {single / together:.2f}x |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__)
    parser.add_argument("--voices", choices=["auto", "demo", "tiny"], default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="bench | %(message)s", stream=sys.stderr)
    logging.getLogger("TTS").setLevel(logging.ERROR)
    voice_dir, kind = choose_voices(args.voices, Path(tempfile.mkdtemp(prefix="moksori-batch-")))
    rows = measure(voice_dir, args.batch, args.rounds, args.threads)
    sys.stdout.write(
        f"Voices: **{kind}**, CPU, {args.threads} torch thread(s), median of {args.rounds}.\n\n"
        "| voice | sentences | one by one | one batched call | speed-up |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
