"""Train a member's Glow-TTS voice: ``python -m voice_model.train --data D --out D --member-id N``.

The same command trains the demo voices and a voice from your own recordings (a folder with
``wavs/`` and ``metadata.csv``). It shows progress, resumes from its last training state, uses
CUDA when present, and writes an inference-only checkpoint plus a ``voice.json`` manifest the
service loads. Training state (optimizer and all) stays in ``--work-dir``, never in the shipped
voice.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.normalize import CONJOINING_JAMO, Normalizer
from common.repository import GRIFFIN_LIM, MANIFEST_NAME
from voice_model.dataset import DatasetError, Utterance, load_dataset

_LOGGER = logging.getLogger("voice_model.train")

CONJOINING = CONJOINING_JAMO
PUNCTUATION = ".,!? "
CHECKPOINT = "glow.pth"
CONFIG = "glow.json"
STATE = "train_state.pth"


@dataclass(frozen=True)
class TrainOptions:
    """What one training run does."""

    data: Path
    out: Path
    work_dir: Path
    member_id: int
    name: str
    init_from: Path | None = None
    minutes: float = 30.0
    max_steps: int = 0
    batch_size: int = 16
    learning_rate: float = 1e-3
    save_every: int = 200
    seed: int = 1
    vocoder: dict[str, Any] | None = None
    """The manifest's ``vocoder`` entry (paths relative to ``out``); None: Griffin-Lim."""
    vocoder_version: str = ""
    """Appended to the voice's version with a vocoder, so audio made before it is not reused."""


def grapheme_characters(letters: str, punctuation: str = PUNCTUATION) -> Any:
    """Coqui's character config for a voice trained on ``letters`` (no phonemes)."""
    from TTS.tts.configs.shared_configs import CharactersConfig

    return CharactersConfig(
        characters_class="TTS.tts.utils.text.characters.Graphemes",
        characters=letters,
        punctuations=punctuation,
        pad="<PAD>",
        eos="<EOS>",
        bos="<BOS>",
        blank="<BLNK>",
    )


def voice_config() -> Any:
    """The Glow-TTS config of the demo voices: conjoining jamo, 22.05 kHz, 3.5 M parameters."""
    from TTS.tts.configs.glow_tts_config import GlowTTSConfig
    from TTS.tts.configs.shared_configs import BaseAudioConfig

    return GlowTTSConfig(
        audio=BaseAudioConfig(
            sample_rate=22050,
            fft_size=1024,
            win_length=1024,
            hop_length=256,
            num_mels=80,
            mel_fmin=0.0,
            # The full band up to 11,025 Hz: capping mels at 8 kHz doubles Griffin-Lim's
            # round-trip distance to espeak's audio (16.2 against 8.0).
            mel_fmax=None,
            # Griffin-Lim sounds closest to the source with power 1.0 (1.5 costs ~20 yardstick
            # points on the round trip alone: see docs/voices.md, "Demo voices").
            power=1.0,
            griffin_lim_iters=60,
            do_trim_silence=False,
        ),
        characters=grapheme_characters(CONJOINING),
        text_cleaner=None,
        use_phonemes=False,
        add_blank=True,
        hidden_channels_enc=96,
        hidden_channels_dec=96,
        hidden_channels_dp=96,
        num_flow_blocks_dec=6,
        encoder_params={
            "kernel_size": 3,
            "dropout_p": 0.1,
            "num_layers": 3,
            "num_heads": 2,
            "hidden_channels_ffn": 256,
            "input_length": None,
        },
        data_dep_init_steps=10,
    )


class Batches:
    """Length-sorted batches of (token ids, mel) pairs, reshuffled every epoch."""

    def __init__(self, items: list[tuple[np.ndarray, np.ndarray]], batch_size: int, seed: int):
        order = sorted(range(len(items)), key=lambda i: items[i][1].shape[1])
        self.items = items
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        self.rng = random.Random(seed)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import torch

        batches = self.batches[:]
        self.rng.shuffle(batches)
        for indices in batches:
            texts = [self.items[i][0] for i in indices]
            mels = [self.items[i][1] for i in indices]
            text_lengths = torch.tensor([len(t) for t in texts])
            mel_lengths = torch.tensor([m.shape[1] for m in mels])
            text_input = torch.zeros(len(indices), int(text_lengths.max()), dtype=torch.long)
            mel_input = torch.zeros(len(indices), int(mel_lengths.max()), mels[0].shape[0])
            for row, (t, m) in enumerate(zip(texts, mels, strict=True)):
                text_input[row, : len(t)] = torch.from_numpy(t)
                mel_input[row, : m.shape[1]] = torch.from_numpy(m.T)
            yield {
                "text_input": text_input,
                "text_lengths": text_lengths,
                "mel_input": mel_input,
                "mel_lengths": mel_lengths,
                "d_vectors": None,
                "speaker_ids": None,
            }


def prepare(
    utterances: list[Utterance], config: Any, cache: Path
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Token ids and normalized mel spectrograms for every utterance (mels cached as .npy)."""
    import librosa
    from TTS.tts.utils.text.tokenizer import TTSTokenizer
    from TTS.utils.audio import AudioProcessor

    ap = AudioProcessor(config.audio)
    tokenizer, _ = TTSTokenizer.init_from_config(config)
    cache.mkdir(parents=True, exist_ok=True)
    items = []
    for utt in utterances:
        mel_path = cache / f"{utt.wav.stem}.npy"
        if mel_path.exists():
            mel = np.load(mel_path)
        else:
            wav, _ = librosa.load(utt.wav, sr=config.audio.sample_rate)
            mel = ap.melspectrogram(wav).astype(np.float32)
            np.save(mel_path, mel)
        ids = np.asarray(tokenizer.text_to_ids(utt.transcript), dtype=np.int64)
        items.append((ids, mel))
    return items


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export_voice(model: Any, config: Any, opts: TrainOptions, step: int) -> None:
    """Write the inference-only checkpoint, its config and the manifest into ``opts.out``.

    Weights are stored as float16 (half the size; loading copies them back into the float32
    model), so three demo voices fit well under 40 MB.
    """
    opts.out.mkdir(parents=True, exist_ok=True)
    weights = {
        name: tensor.detach().to("cpu", copy=True).half() if tensor.is_floating_point() else tensor
        for name, tensor in model.state_dict().items()
    }
    _atomic_save(
        {"model": weights, "config": config.to_dict(), "step": step}, opts.out / CHECKPOINT
    )
    config.save_json(str(opts.out / CONFIG))
    version = f"s{step}" + (f"-{opts.vocoder_version}" if opts.vocoder else "")
    manifest = {
        "id": opts.member_id,
        "name": opts.name,
        "version": version,
        "tts": {"checkpoint": CHECKPOINT, "config": CONFIG},
        "vocoder": opts.vocoder or GRIFFIN_LIM,
    }
    tmp = opts.out / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, opts.out / MANIFEST_NAME)


def train(opts: TrainOptions) -> int:
    """Run (or resume) training until the time or step budget; returns the last step."""
    import torch
    from TTS.tts.models.glow_tts import GlowTTS

    config = voice_config()
    utterances = load_dataset(opts.data, CONJOINING + PUNCTUATION, Normalizer())
    _LOGGER.info("%d utterances from %s", len(utterances), opts.data)
    items = prepare(utterances, config, opts.work_dir / "mels")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(opts.seed)
    model = GlowTTS(config).to(device)
    optimizer = torch.optim.RAdam(model.parameters(), lr=opts.learning_rate, weight_decay=1e-6)
    criterion = model.get_criterion()
    step = 0
    state_path = opts.work_dir / STATE
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        _LOGGER.info("resuming from step %d (%s)", step, state_path)
    elif opts.init_from:
        state = torch.load(opts.init_from, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        _LOGGER.info("starting from the weights in %s", opts.init_from)
    fresh = step == 0 and opts.init_from is None
    n_params = sum(p.numel() for p in model.parameters())
    _LOGGER.info("Glow-TTS with %.2f M parameters on %s", n_params / 1e6, device)

    batches = Batches(items, opts.batch_size, opts.seed + step)
    started = time.monotonic()
    deadline = started + opts.minutes * 60
    first_step = step
    model.train()

    def save() -> None:
        opts.work_dir.mkdir(parents=True, exist_ok=True)
        _atomic_save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
            state_path,
        )
        export_voice(model, config, opts, step)

    running = None
    while True:
        for batch in batches:
            batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
            model.run_data_dep_init = fresh and step < config.data_dep_init_steps
            _, losses = model.train_step(batch, criterion)
            step += 1
            if losses is not None:
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimizer.step()
                value = losses["loss"].item()
                running = value if running is None else 0.95 * running + 0.05 * value
            if step % 20 == 0:
                elapsed = time.monotonic() - started
                _LOGGER.info(
                    "step %d  loss %.3f  %.2f s/step  %.1f of %.1f min",
                    step,
                    running or 0.0,
                    elapsed / max(1, step - first_step),
                    elapsed / 60,
                    opts.minutes,
                )
            if step % opts.save_every == 0:
                save()
            done = time.monotonic() > deadline or (opts.max_steps and step >= opts.max_steps)
            if done:
                save()
                _LOGGER.info("stopped at step %d; voice written to %s", step, opts.out)
                return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voice_model.train", description=__doc__)
    parser.add_argument(
        "--data", type=Path, required=True, help="folder with wavs/ and metadata.csv"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="voice folder to write (voice.json, glow.pth)"
    )
    parser.add_argument("--member-id", type=int, required=True)
    parser.add_argument("--name", default="")
    parser.add_argument(
        "--work-dir", type=Path, help="training state (default: <out>/../.train/<folder>)"
    )
    parser.add_argument("--init-from", type=Path, help="start from another voice's glow.pth")
    parser.add_argument("--minutes", type=float, default=30.0, help="time budget of this run")
    parser.add_argument(
        "--max-steps", type=int, default=0, help="stop at this total step (0: no limit)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    opts = TrainOptions(
        data=args.data,
        out=args.out,
        work_dir=args.work_dir or args.out.parent.parent / ".train" / args.out.name,
        member_id=args.member_id,
        name=args.name or f"member-{args.member_id}",
        init_from=args.init_from,
        minutes=args.minutes,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
    )
    try:
        train(opts)
    except DatasetError as exc:
        _LOGGER.error("cannot train: %s (earlier checkpoints are untouched)", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
