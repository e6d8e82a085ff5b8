"""Operator commands: ``python -m worker voices list`` and ``python -m worker voices check``.

``check`` loads every voice the way a worker does, synthesizes a test sentence with each and
reports load time, memory and real-time factor; it exits 1 when any voice is broken.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from common.config import process_settings
from common.normalize import Normalizer
from common.repository import Repository, scan

TEST_SENTENCE = "안녕하세요. 목소리 점검 중입니다."


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _write(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def list_voices(repository: Repository) -> int:
    _write("| id | name | version | vocoder | sample rate | layout |")
    _write("|---|---|---|---|---|---|")
    for spec in repository.voices.values():
        _write(
            f"| {spec.member_id} | {spec.name} | {spec.version} | {spec.vocoder} "
            f"| {spec.sample_rate} | {spec.source} |"
        )
    for where, problem in repository.errors.items():
        _write(f"BROKEN {where}: {problem}")
    return 1 if repository.errors else 0


def check_voices(repository: Repository, device: str, text: str) -> int:
    import TTS.utils.synthesizer  # noqa: F401 - so memory per voice excludes the libraries

    from worker.synthesis import synthesize
    from worker.voices import load_voice, resolve_device

    device = resolve_device(device)
    normalizer = Normalizer()
    broken = len(repository.errors)
    for where, problem in repository.errors.items():
        _write(f"BROKEN {where}: {problem}")
    _write(f"| id | name | load s | memory MB | audio s | synthesis s | RTF |  ({device})")
    _write("|---|---|---|---|---|---|---|")
    for spec in repository.voices.values():
        before = _rss_mb()
        try:
            voice = load_voice(spec, device)
            sentences = normalizer.sentences(text, spec.characters)
            started = time.perf_counter()
            samples = synthesize(voice, sentences, pause_s=0.25)
            elapsed = time.perf_counter() - started
        except Exception as exc:  # report every broken voice, not just the first
            broken += 1
            _write(f"BROKEN member {spec.member_id} ({spec.name}): {type(exc).__name__}: {exc}")
            continue
        audio = samples.size / voice.sample_rate
        _write(
            f"| {spec.member_id} | {spec.name} | {voice.load_seconds:.2f} "
            f"| {_rss_mb() - before:.0f} | {audio:.2f} | {elapsed:.3f} "
            f"| {elapsed / audio if audio else float('nan'):.3f} |"
        )
    return 1 if broken or not repository.voices else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    voices = sub.add_parser("voices", help="inspect the voice repository")
    voices.add_argument("action", choices=["list", "check"])
    voices.add_argument("--voice-dir", type=Path, help="default: MOKSORI_VOICE_DIR")
    voices.add_argument("--text", default=TEST_SENTENCE, help="sentence for `check`")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("TTS").setLevel(logging.ERROR)
    settings = process_settings()
    repository = scan(args.voice_dir or settings.voice_dir)
    if args.action == "list":
        return list_voices(repository)
    return check_voices(repository, settings.device, args.text)


if __name__ == "__main__":
    sys.exit(main())
