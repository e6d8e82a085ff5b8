"""Build the demo voices end to end: corpus -> espeak-ng audio -> Glow-TTS training -> yardstick.

``python -m voice_model.demo --minutes 30`` (resumable; see docs/voices.md, "Demo voices"). Member 1
is trained from scratch; the others start from its weights, since they share its language and only
their speaker differs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

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
        train(
            TrainOptions(
                data=data[member.member_id],
                out=out,
                work_dir=args.data_root / "train" / member.folder,
                member_id=member.member_id,
                name=member.name,
                init_from=None if is_base else args.voice_dir / "voices" / base.folder / "glow.pth",
                minutes=args.minutes if is_base else args.finetune_minutes,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
