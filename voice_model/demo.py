"""Build the demo voices end to end: corpus -> espeak-ng audio -> Glow-TTS training -> yardstick.

``python -m voice_model.demo --minutes 30`` (resumable; see docs/voices.md, "Demo voices"). Member 1
is trained from scratch; the others start from its weights, since they share its language and only
their speaker differs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import REPO_ROOT
from common.normalize import Normalizer
from voice_model.corpus import build_corpus
from voice_model.dataset import DatasetError, EspeakVoice, render_dataset

_LOGGER = logging.getLogger("voice_model.demo")


@dataclass(frozen=True)
class DemoMember:
    member_id: int
    name: str
    folder: str
    espeak: EspeakVoice


MEMBERS = (
    DemoMember(1, "Haneul", "haneul", EspeakVoice("ko", pitch=50, speed=165)),
    DemoMember(2, "Minji", "minji", EspeakVoice("ko+f2", pitch=72, speed=155)),
    DemoMember(3, "Jihun", "jihun", EspeakVoice("ko+m3", pitch=30, speed=175)),
)
DEMO_VOCODER = REPO_ROOT / "voice_model" / "checkpoints" / "demo-vocoder" / "hifigan.pth"
"""The HiFi-GAN the three demo voices share (``python -m voice_model.vocoder``, docs/voices.md)."""
DEMO_REFINE = 16
"""Mel-consistent refinement iterations behind it (:mod:`worker.refine`): in copy synthesis of
the held-out utterances, 24 or 32 gained at most 0.02 PESQ more, at 10-20 % more time."""


def vocoder_entry(
    voice_folder: Path, checkpoint: Path, config: Path, step: int
) -> tuple[dict[str, Any], str]:
    """A manifest's ``vocoder`` entry for ``checkpoint`` and ``config`` seen from
    ``voice_folder``, and the suffix its step and refinement add to the voice's version."""
    entry = {
        "checkpoint": os.path.relpath(checkpoint, voice_folder),
        "config": os.path.relpath(config, voice_folder),
        "refine": DEMO_REFINE,
    }
    return entry, f"h{step}r{DEMO_REFINE}"


def render_all(data_root: Path, corpus_size: int) -> dict[int, Path]:
    """Render the corpus once per member (files already there are reused)."""
    sentences = build_corpus(corpus_size)
    normalizer = Normalizer()
    return {
        m.member_id: render_dataset(data_root / m.folder, sentences, m.espeak, normalizer)
        for m in MEMBERS
    }


def main(argv: list[str] | None = None) -> int:
    from voice_model.train import TrainOptions, train
    from voice_model.vocoder import config_path_for, exported_step

    parser = argparse.ArgumentParser(prog="python -m voice_model.demo", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="budget for member 1")
    parser.add_argument("--finetune-minutes", type=float, default=12.0, help="for the others")
    parser.add_argument("--corpus-size", type=int, default=3000)
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "var" / "demo-data")
    parser.add_argument("--voice-dir", type=Path, default=REPO_ROOT / "voice_model")
    parser.add_argument("--only", type=int, action="append", help="member ids to train")
    parser.add_argument(
        "--render-only", action="store_true", help="render the data (e.g. for a vocoder) and stop"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        data = render_all(args.data_root, args.corpus_size)
    except DatasetError as exc:
        _LOGGER.error("cannot build the demo data: %s", exc)
        return 2
    if args.render_only:
        return 0
    base = MEMBERS[0]
    for member in MEMBERS:
        if args.only and member.member_id not in args.only:
            continue
        out = args.voice_dir / "voices" / member.folder
        is_base = member is base
        vocoder, vocoder_version = None, ""
        if DEMO_VOCODER.is_file():
            vocoder, vocoder_version = vocoder_entry(
                out, DEMO_VOCODER, config_path_for(DEMO_VOCODER), exported_step(DEMO_VOCODER)
            )
        train(
            TrainOptions(
                data=data[member.member_id],
                out=out,
                work_dir=args.data_root / "train" / member.folder,
                member_id=member.member_id,
                name=member.name,
                init_from=None if is_base else args.voice_dir / "voices" / base.folder / "glow.pth",
                minutes=args.minutes if is_base else args.finetune_minutes,
                vocoder=vocoder,
                vocoder_version=vocoder_version,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
