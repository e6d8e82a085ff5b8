"""The intelligibility yardstick: DTW-aligned mel-cepstral distance to espeak-ng's rendering.

:func:`cepstra` and :func:`distance` are the project's shared definition (80 mel bands -> 25 MFCC
with c0 dropped, DTW-aligned, scaled like mel-cepstral distortion), reproduced exactly so the
numbers match it. ``python -m voice_model.yardstick`` scores every demo member on the held-out
sentences, next to the round-trip floor of its vocoder, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

SR = 22050


def cepstra(y: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=256, n_mels=80)
    return librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=25)[1:]  # c0 (energy) dropped


def distance(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Lower is closer: ~12 for a Griffin-Lim copy of the reference, ~52 for another sentence."""
    import librosa

    a, b = cepstra(reference), cepstra(candidate)
    _, path = librosa.sequence.dtw(a, b, metric="euclidean")
    steps = np.array([np.sqrt(2.0 * np.sum((a[:, i] - b[:, j]) ** 2)) for i, j in path])
    return float((10.0 / np.log(10.0)) * steps.mean() / 10.0)


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    import librosa

    samples = np.asarray(samples, dtype=np.float32)
    return samples if rate == SR else librosa.resample(samples, orig_sr=rate, target_sr=SR)


def score_members(voice_dir: Path, sentences: tuple[str, ...]) -> list[dict[str, object]]:
    """One row per demo member: mean and worst distance, and the vocoder's own floor."""
    from common.normalize import Normalizer
    from common.repository import scan
    from voice_model.dataset import pronounced
    from voice_model.demo import MEMBERS
    from worker.synthesis import synthesize, vocode_mel
    from worker.voices import load_voice

    normalizer = Normalizer()
    specs = scan(voice_dir).voices
    rows = []
    for member in MEMBERS:
        spec = specs.get(member.member_id)
        if spec is None:
            logging.getLogger(__name__).warning("member %s has no voice", member.member_id)
            continue
        voice = load_voice(spec, "cpu")
        ap = voice.synthesizer.tts_model.ap
        scores, floors = [], []
        for sentence in sentences:
            reference, rate = member.espeak.render(pronounced(normalizer, sentence))
            reference = resample(reference, rate)
            spoken = normalizer.sentences(sentence, spec.characters)
            candidate = synthesize(voice, spoken, pause_s=0.0)
            scores.append(distance(reference, resample(candidate, voice.sample_rate)))
            copy = vocode_mel(voice, ap.melspectrogram(resample(reference, SR)))
            floors.append(distance(reference, copy))
        rows.append(
            {
                "member": f"{spec.member_id} {spec.name}",
                "version": spec.version,
                "vocoder": spec.vocoder,
                "mean": float(np.mean(scores)),
                "worst": float(np.max(scores)),
                "floor": float(np.mean(floors)),
                "scores": scores,
            }
        )
    return rows


def table(rows: list[dict[str, object]], sentences: int) -> str:
    lines = [
        f"| member | version | vocoder | mean over {sentences} held-out sentences | worst "
        "| vocoder round-trip floor |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['member']} | {row['version']} | {row['vocoder']} | {row['mean']:.1f} "
            f"| {row['worst']:.1f} | {row['floor']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from common.config import REPO_ROOT
    from voice_model.corpus import HELD_OUT

    parser = argparse.ArgumentParser(prog="python -m voice_model.yardstick", description=__doc__)
    parser.add_argument("--voice-dir", type=Path, default=REPO_ROOT / "voice_model")
    parser.add_argument("--target-mean", type=float, default=22.0)
    parser.add_argument("--target-worst", type=float, default=25.0)
    parser.add_argument("files", nargs="*", type=Path, help="REFERENCE.wav CANDIDATE.wav")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.files:
        import librosa

        ref, _ = librosa.load(args.files[0], sr=SR)
        cand, _ = librosa.load(args.files[1], sr=SR)
        sys.stdout.write(f"{distance(ref, cand):.2f}\n")
        return 0
    rows = score_members(args.voice_dir, HELD_OUT)
    sys.stdout.write(table(rows, len(HELD_OUT)) + "\n")
    ok = rows and all(
        r["mean"] <= args.target_mean and r["worst"] <= args.target_worst for r in rows
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
