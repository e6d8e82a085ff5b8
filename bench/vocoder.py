"""``python -m bench.vocoder``: the vocoders side by side, measured in one run.

Compared: Coqui's own Griffin-Lim (60 plain iterations, NumPy), the fast Griffin-Lim the worker
runs for voices without a neural vocoder (:mod:`worker.griffin_lim`) and, when a checkpoint is
given or found, a trained HiFi-GAN generator (``python -m voice_model.vocoder``), alone and with
the mel-consistent refinement the demo voices use (:mod:`worker.refine`). Two tables:

- copy synthesis on held-out espeak-ng utterances the vocoder never trained on (reference mel ->
  vocoder -> waveform, compared with the reference): real-time factor with one torch thread,
  PESQ wide-band, STOI, and the repository's yardstick (:mod:`voice_model.yardstick`);
- end to end per demo member (text -> Glow-TTS -> vocoder): seconds for one sentence and for a
  ~500-character paragraph, and the yardstick mean over the held-out sentences.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile
import torch
from pesq import pesq
from pystoi import stoi
from TTS.utils.audio import AudioProcessor

from common.config import REPO_ROOT
from common.normalize import Normalizer
from common.repository import VoiceSpec, scan
from voice_model.corpus import HELD_OUT
from voice_model.dataset import pronounced
from voice_model.demo import DEMO_REFINE, DEMO_VOCODER, MEMBERS
from voice_model.vocoder import HELD_OUT_LIST, config_path_for, exported_step
from voice_model.yardstick import SR, distance, resample
from worker.synthesis import synthesize, vocode_mel
from worker.voices import LoadedVoice, load_voice

_LOGGER = logging.getLogger("bench.vocoder")

PESQ_RATE = 16_000  # PESQ's wide-band mode is defined at 16 kHz
PARAGRAPH_CHARS = 500

Vocode = Callable[[np.ndarray], np.ndarray]
"""A normalized mel ``[bands, frames]`` of the Glow-TTS voices' audio settings -> samples."""


@dataclass(frozen=True)
class Vocoder:
    """A candidate: its name, and how to make a loaded voice use it."""

    name: str
    key: str  # "coqui", "fast" or "hifigan"
    refine: int = 0


def coqui_griffin_lim(ap: AudioProcessor) -> Vocode:
    """Coqui's own inversion, whatever the voice's processor was given since."""
    return lambda mel: AudioProcessor.inv_melspectrogram(ap, mel)


def candidates(hifigan: Path | None) -> list[Vocoder]:
    found = [
        Vocoder("Griffin-Lim, Coqui's (60 iterations)", "coqui"),
        Vocoder("Griffin-Lim, fast (30 iterations, momentum 0.99)", "fast"),
    ]
    if hifigan:
        step = exported_step(hifigan)
        found.append(Vocoder(f"HiFi-GAN (step {step:,})", "hifigan"))
        found.append(
            Vocoder(
                f"HiFi-GAN (step {step:,}) + refinement ({DEMO_REFINE})", "hifigan", DEMO_REFINE
            )
        )
    return found


def voice_with(spec: VoiceSpec, vocoder: Vocoder, hifigan: Path | None) -> LoadedVoice:
    """``spec``'s Glow-TTS loaded the worker's way (:func:`worker.voices.load_voice`) with
    ``vocoder`` behind it."""
    if vocoder.key == "hifigan":
        assert hifigan is not None
        spec = replace(
            spec,
            vocoder_checkpoint=hifigan,
            vocoder_config=config_path_for(hifigan),
            vocoder_refine=vocoder.refine,
        )
    else:
        spec = replace(spec, vocoder_checkpoint=None, vocoder_config=None, vocoder_refine=0)
    voice = load_voice(spec, "cpu")
    if vocoder.key == "coqui":  # the worker installs the fast one; put Coqui's back
        ap = voice.synthesizer.tts_model.ap
        ap.inv_melspectrogram = coqui_griffin_lim(ap)
    return voice


def copy_synthesis(voice: LoadedVoice, references: list[Path]) -> dict[str, float]:
    """The voice's vocoder on each reference's mel, scored against the reference itself."""
    ap = voice.synthesizer.tts_model.ap
    seconds = audio = 0.0
    pesqs, stois, yards = [], [], []
    for path in references:
        reference, rate = soundfile.read(path, dtype="float32")
        reference = resample(reference, rate)
        mel = ap.melspectrogram(reference)
        started = time.perf_counter()
        wave = vocode_mel(voice, mel).reshape(-1)
        seconds += time.perf_counter() - started
        n = min(len(wave), len(reference))
        ref, out = reference[:n], wave[:n]
        audio += n / SR
        narrow = [librosa.resample(x, orig_sr=SR, target_sr=PESQ_RATE) for x in (ref, out)]
        pesqs.append(pesq(PESQ_RATE, narrow[0], narrow[1], "wb"))
        stois.append(stoi(ref, out, SR))
        yards.append(distance(ref, out))
    return {
        "rtf": seconds / audio,
        "pesq": float(np.mean(pesqs)),
        "stoi": float(np.mean(stois)),
        "yardstick": float(np.mean(yards)),
    }


def paragraph() -> str:
    """About :data:`PARAGRAPH_CHARS` characters of the held-out sentences, in turn."""
    text = ""
    index = 0
    while len(text) < PARAGRAPH_CHARS:
        text += (" " if text else "") + HELD_OUT[index % len(HELD_OUT)]
        index += 1
    return text


def end_to_end(
    voice: LoadedVoice, member_index: int, sentences: tuple[str, ...], long: bool
) -> dict[str, float]:
    """Seconds for one sentence (the median of 3; and a paragraph when ``long``) through the
    worker's synthesis with a warm normalizer, as a worker has, and the yardstick mean of text ->
    Glow-TTS -> vocoder against espeak-ng's rendering."""
    normalizer = Normalizer()
    normalizer.warm_up()  # its first call loads g2pK's dictionary (~0.5 s): the worker's start
    member = MEMBERS[member_index]
    chars = voice.spec.characters

    def timed(text: str) -> tuple[float, np.ndarray]:
        started = time.perf_counter()
        wave = synthesize(voice, normalizer.sentences(text, chars), pause_s=0.25)
        return time.perf_counter() - started, wave

    row = {"sentence_s": float(np.median([timed(HELD_OUT[1])[0] for _ in range(3)]))}
    row["paragraph_s"] = timed(paragraph())[0] if long else float("nan")
    scores = []
    for sentence in sentences:
        reference, rate = member.espeak.render(pronounced(normalizer, sentence))
        wave = synthesize(voice, normalizer.sentences(sentence, chars), pause_s=0.0)
        scores.append(distance(resample(reference, rate), resample(wave, voice.sample_rate)))
    row["yardstick"] = float(np.mean(scores))
    return row


def find_hifigan(given: Path | None) -> Path | None:
    """The checkpoint to measure: the one given, else the demo vocoder kept in the repository
    (docs/voices.md), else a local run's."""
    if given:
        return given
    for candidate in (DEMO_VOCODER, REPO_ROOT / "var" / "vocoder" / DEMO_VOCODER.name):
        if candidate.exists():
            return candidate
    return None


def held_out_references(held_out: Path, data_root: Path, count: int) -> list[Path]:
    """``count`` held-out utterances, taken in turn from each speaker's folder."""
    names = held_out.read_text(encoding="utf-8").split()
    by_speaker: dict[str, list[str]] = {}
    for name in names:
        by_speaker.setdefault(name.split("/")[0], []).append(name)
    chosen: list[Path] = []
    while len(chosen) < count and any(by_speaker.values()):
        for speaker in sorted(by_speaker):
            if by_speaker[speaker] and len(chosen) < count:
                chosen.append(data_root / by_speaker[speaker].pop(0))
    return chosen


def markdown(copy_rows: list[dict[str, Any]], e2e_rows: list[dict[str, Any]], n: int) -> str:
    lines = [
        f"Copy synthesis of {n} held-out espeak-ng utterances (one torch thread):",
        "",
        "| vocoder | real-time factor | PESQ (wide-band) | STOI | yardstick (lower is closer) |",
        "|---|---|---|---|---|",
    ]
    for row in copy_rows:
        lines.append(
            f"| {row['vocoder']} | {row['rtf']:.3f} | {row['pesq']:.2f} | {row['stoi']:.3f} "
            f"| {row['yardstick']:.1f} |"
        )
    lines += [
        "",
        f"End to end (text -> Glow-TTS -> vocoder; the paragraph is {len(paragraph())} "
        "characters):",
        "",
        "| member | vocoder | one sentence | paragraph | yardstick mean |",
        "|---|---|---|---|---|",
    ]
    for row in e2e_rows:
        para = "-" if np.isnan(row["paragraph_s"]) else f"{row['paragraph_s']:.2f} s"
        lines.append(
            f"| {row['member']} | {row['vocoder']} | {row['sentence_s']:.2f} s | {para} "
            f"| {row['yardstick']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vocoder", description=__doc__)
    parser.add_argument("--voice-dir", type=Path, default=REPO_ROOT / "voice_model")
    parser.add_argument("--hifigan", type=Path, help="generator checkpoint (default: found)")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "var" / "demo-data")
    parser.add_argument("--held-out", type=Path, help=f"default: the checkpoint's {HELD_OUT_LIST}")
    parser.add_argument("--utterances", type=int, default=12, help="copy-synthesis references")
    parser.add_argument("--sentences", type=int, default=len(HELD_OUT), help="end to end")
    parser.add_argument("--output", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    hifigan = find_hifigan(args.hifigan)
    held_out = args.held_out or (hifigan.parent / HELD_OUT_LIST if hifigan else None)
    if held_out is None or not held_out.exists():
        parser.error("no held-out list: pass --held-out (a vocoder run's held_out.txt)")
    references = held_out_references(held_out, args.data_root, args.utterances)
    specs = scan(args.voice_dir).voices
    copy_rows, e2e_rows = [], []
    for vocoder in candidates(hifigan):
        for index, member in enumerate(MEMBERS):
            spec = specs.get(member.member_id)
            if spec is None:
                continue
            voice = voice_with(spec, vocoder, hifigan)
            if index == 0:
                copy_rows.append({"vocoder": vocoder.name, **copy_synthesis(voice, references)})
            row = end_to_end(voice, index, HELD_OUT[: args.sentences], long=index == 0)
            e2e_rows.append(
                {"member": f"{spec.member_id} {spec.name}", "vocoder": vocoder.name, **row}
            )
            _LOGGER.info("end to end: %s", e2e_rows[-1])
    text = markdown(copy_rows, e2e_rows, len(references))
    sys.stdout.write(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
