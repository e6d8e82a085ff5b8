"""Train the demo voices' HiFi-GAN vocoder: ``python -m voice_model.vocoder --output RUN_DIR``.

One generator is shared by every member whose audio is under ``--data-root`` (the espeak-ng
renderings of ``voice_model.demo``, or one folder with ``wavs/`` and ``metadata.csv``). It is a
HiFi-GAN V3-shaped generator built by Coqui's own ``HifiganConfig``, on mels computed with exactly
the demo voices' audio settings, so the Synthesizer's ``vocoder_ap.normalize(tts_ap.denormalize())``
is the identity and the generator sees at inference what it saw in training.

On CPU it trains the generator alone on reconstruction losses (multi-resolution STFT + log-mel
L1), as Coqui's Parallel WaveGAN recipe pre-trains generators; a full GAN step costs 25-40 s here.
On CUDA, Coqui's HiFi-GAN discriminators and losses join after ``--adversarial-after`` steps.

Training state goes to ``--output`` (``state.pth``, written atomically every few minutes and at
exit), next to ``held_out.txt`` (utterances never trained on), ``train.log`` and the latest
inference checkpoint (``hifigan.pth`` + ``hifigan.json``, generator only, a few MB: the shape the
worker loads for a manifest's ``vocoder`` or a legacy ``hifigan-v2/`` folder). A run resumes from
``state.pth``; ``--export PATH`` writes the inference checkpoint from it without training.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from TTS.tts.configs.shared_configs import BaseAudioConfig
from TTS.utils.audio import AudioProcessor
from TTS.vocoder.configs.hifigan_config import HifiganConfig
from TTS.vocoder.layers.losses import DiscriminatorLoss, GeneratorLoss
from TTS.vocoder.models import setup_discriminator, setup_generator

from common.config import REPO_ROOT
from voice_model.dataset import METADATA, DatasetError
from voice_model.train import voice_config

_LOGGER = logging.getLogger("voice_model.vocoder")

STATE = "state.pth"
HELD_OUT_LIST = "held_out.txt"
EXPORT_CHECKPOINT = "hifigan.pth"
EXPORT_CONFIG = "hifigan.json"
LOG_FILE = "train.log"
EVAL_UTTERANCES = 4
"""Held-out utterances scored by the periodic quality line (a few seconds of compute)."""


@dataclass(frozen=True)
class VocoderOptions:
    """What one vocoder training run does."""

    data_root: Path
    output: Path
    minutes: float = 60.0
    steps: int = 0
    """Stop at this total step (0: only the time budget stops the run)."""
    batch_size: int = 8
    segment_samples: int = 8192
    threads: int = 0
    """torch intra-op threads (0: torch's default)."""
    channels: int = 256
    """The generator's ``upsample_initial_channel``."""
    lr: float = 2e-4
    save_minutes: float = 5.0
    eval_every: int = 250
    log_every: int = 50
    held_out_percent: float = 2.0
    mode: str = "auto"
    """``reconstruction``, ``adversarial``, or ``auto`` (adversarial on CUDA only)."""
    adversarial_after: int = 20000
    """Reconstruction-only steps before the discriminators join (adversarial mode)."""
    seed: int = 1
    init: Path | None = None
    """An exported generator checkpoint a new run starts from (its weights and step count)."""


class TrainingError(RuntimeError):
    """A run cannot start or resume (bad state file, mismatched options)."""


def vocoder_config(channels: int = 256, segment_samples: int = 8192) -> HifiganConfig:
    """A HiFi-GAN V3-shaped config whose audio settings are the demo voices' own.

    The audio section is copied from :func:`voice_model.train.voice_config` (what every demo
    ``glow.json`` holds), so mels mean the same thing on both sides of the Synthesizer. Upsample
    factors 8-8-4 multiply to the hop length (256); the loss settings are Coqui's, with the
    multi-resolution STFT loss switched on for generator-only training.
    """
    audio = BaseAudioConfig(**voice_config().audio.to_dict())
    hop = int(np.prod([8, 8, 4]))
    if hop != audio.hop_length:
        raise TrainingError(f"upsampling x{hop} does not match hop length {audio.hop_length}")
    return HifiganConfig(
        audio=audio,
        generator_model_params={
            "upsample_factors": [8, 8, 4],
            "upsample_kernel_sizes": [16, 16, 8],
            "upsample_initial_channel": channels,
            "resblock_kernel_sizes": [3, 5, 7],
            "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]],
            "resblock_type": "2",
        },
        seq_len=segment_samples,
        use_stft_loss=True,
        # Coqui weighs the log-mel L1 by 45; 20 on the STFT terms (magnitude + spectral
        # convergence) gives both about the same pull, so the fine time resolution of the
        # 512-point STFT keeps plosives sharp while the mel term fixes the spectral envelope.
        stft_loss_weight=20.0,
        l1_spec_loss_weight=45.0,
        l1_spec_loss_params={
            "use_mel": True,
            "sample_rate": audio.sample_rate,
            "n_fft": audio.fft_size,
            "hop_length": audio.hop_length,
            "win_length": audio.win_length,
            "n_mels": audio.num_mels,
            "mel_fmin": audio.mel_fmin,
            "mel_fmax": audio.mel_fmax,
        },
    )


# --- data -------------------------------------------------------------------------------------


def list_utterances(data_root: Path) -> list[str]:
    """Every utterance's WAV, relative to ``data_root`` and sorted, from each ``metadata.csv``.

    ``data_root`` is either one dataset or a folder of them (one per member, as ``render_all``
    writes). Rows whose WAV is missing are skipped (a rendering that was interrupted).
    """
    if (data_root / METADATA).is_file():
        datasets = [data_root]
    else:
        datasets = sorted(p.parent for p in data_root.glob(f"*/{METADATA}"))
    names: list[str] = []
    for dataset in datasets:
        with (dataset / METADATA).open(encoding="utf-8") as fh:
            for row in csv.reader(fh, delimiter="|"):
                if row and (dataset / "wavs" / row[0]).is_file():
                    names.append((dataset / "wavs" / row[0]).relative_to(data_root).as_posix())
    if not names:
        raise DatasetError(f"no utterance under {data_root} (expected */{METADATA} and wavs/)")
    return sorted(names)


def _hash_fraction(name: str) -> float:
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16) / 16**12


def choose_held_out(names: list[str], percent: float) -> list[str]:
    """The utterances never trained on: ``percent`` of the sentences, chosen by hash.

    The key is the file name without its member folder, so a held-out sentence is held out in
    every member's voice, and adding utterances never moves an old one across the split. At
    least one utterance is held out (for the quality line) and one is left to train on.
    """
    if len(names) < 2:
        raise DatasetError(f"{len(names)} utterance(s): need at least 2 (one is held out)")
    held = [n for n in names if _hash_fraction(Path(n).name) < percent / 100]
    if not held:
        held = [min(names, key=lambda n: _hash_fraction(Path(n).name))]
    if len(held) == len(names):
        raise DatasetError("every utterance would be held out; lower --held-out-percent")
    return held


def split(names: list[str], output: Path, percent: float) -> tuple[list[str], list[str]]:
    """(training, held-out) names; the held-out list in ``output`` wins once it exists.

    A resumed run keeps its first split even if the data changed, so nothing it held out is ever
    trained on.
    """
    listing = output / HELD_OUT_LIST
    if listing.is_file():
        held = [line for line in listing.read_text(encoding="utf-8").splitlines() if line]
    else:
        held = choose_held_out(names, percent)
        output.mkdir(parents=True, exist_ok=True)
        tmp = listing.with_suffix(".tmp")
        tmp.write_text("\n".join(held) + "\n", encoding="utf-8")
        os.replace(tmp, listing)
    held_set, present = set(held), set(names)
    training = [n for n in names if n not in held_set]
    if not training:
        raise DatasetError(f"no training utterance left beside {listing}")
    return training, [n for n in held if n in present]


class AudioClips:
    """Audio of the training utterances and (mel, waveform) segments cut from them.

    A segment's mel is computed from the segment plus half a window of real context on each
    side, so it equals the same frames of the whole utterance's mel; the waveform starts at the
    first frame's centre. Batches depend only on (seed, step): a resumed run continues the
    sequence it would have seen.
    """

    def __init__(self, data_root: Path, names: list[str], ap: AudioProcessor, seed: int) -> None:
        self.data_root = data_root
        self.names = names
        self.ap = ap
        self.seed = seed
        self.hop = ap.hop_length
        self.context = ap.fft_size // 2
        if self.context % self.hop:
            raise TrainingError("fft_size / 2 must be a multiple of the hop length")

    def load(self, name: str) -> np.ndarray:
        """One utterance as float32 at the model's sample rate."""
        samples, rate = soundfile.read(self.data_root / name, dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
        if rate != self.ap.sample_rate:
            samples = librosa.resample(samples, orig_sr=rate, target_sr=self.ap.sample_rate)
        return samples

    def segment(self, samples: np.ndarray, frames: int, rng: np.random.Generator) -> tuple:
        """A random ``frames``-frame (mel, waveform) pair from one utterance."""
        length = frames * self.hop
        if samples.size < length:
            samples = np.pad(samples, (0, length - samples.size))
        start = int(rng.integers(0, (samples.size - length) // self.hop + 1)) * self.hop
        padded = np.pad(samples, (self.context, self.context))
        mel = self.ap.melspectrogram(padded[start : start + length + 2 * self.context])
        skip = self.context // self.hop
        return mel[:, skip : skip + frames], samples[start : start + length]

    def batch(self, step: int, batch_size: int, segment_samples: int) -> tuple[Any, Any]:
        """Mels [B, n_mels, F] and waveforms [B, 1, F * hop] for training step ``step``."""
        rng = np.random.default_rng([self.seed, step])
        frames = segment_samples // self.hop
        mels, wavs = [], []
        for index in rng.integers(0, len(self.names), batch_size):
            mel, wav = self.segment(self.load(self.names[int(index)]), frames, rng)
            mels.append(mel)
            wavs.append(wav)
        return torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(wavs)).unsqueeze(1)


# --- models, state, export --------------------------------------------------------------------


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def config_path_for(checkpoint: Path) -> Path:
    """Where an exported checkpoint's config goes: ``hifigan.pth`` -> ``hifigan.json``."""
    name = checkpoint.name
    for suffix in (".pth.tar", ".pth", ".pt"):
        if name.endswith(suffix):
            return checkpoint.with_name(name[: -len(suffix)] + ".json")
    return checkpoint.with_name(name + ".json")


def export_generator(
    generator: torch.nn.Module, config: HifiganConfig, step: int, path: Path
) -> Path:
    """Write the generator-only inference checkpoint and its config; returns the config path.

    The ``model_disc`` key makes Coqui's ``GAN.load_checkpoint`` load the generator alone
    (without it, it expects discriminator weights too).
    """
    weights = {k: v.detach().to("cpu", copy=True) for k, v in generator.state_dict().items()}
    _atomic_save(
        {"model": weights, "model_disc": {}, "config": config.to_dict(), "step": step}, path
    )
    config_path = config_path_for(path)
    tmp = config_path.with_name(config_path.name + ".tmp")
    config.save_json(str(tmp))
    os.replace(tmp, config_path)
    return config_path


def load_state(output: Path) -> dict[str, Any] | None:
    path = output / STATE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn or foreign file: say which and stop
        raise TrainingError(f"{path} is not a readable training state: {exc}") from exc


def export_from_state(output: Path, path: Path) -> tuple[int, Path]:
    """``--export``: the inference checkpoint from ``output``'s latest training state."""
    state = load_state(output)
    if state is None:
        raise TrainingError(f"no {STATE} in {output}: nothing trained yet")
    config = HifiganConfig()
    config.from_dict(state["config"])
    generator = setup_generator(config)
    generator.load_state_dict(state["generator"])
    export_generator(generator, config, state["step"], path)
    return state["step"], path


def exported_step(path: Path) -> int:
    """The training step an exported generator checkpoint was written at."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False).get("step", 0))
    except Exception as exc:
        raise TrainingError(f"{path} is not an exported generator checkpoint: {exc}") from exc


def start_from_export(generator: torch.nn.Module, path: Path, channels: int) -> int:
    """``--init``: load an exported generator's weights into ``generator``; returns its step.

    The optimizer starts afresh: an export carries no optimizer state, which is what lets a
    shipped checkpoint (a few MB) be trained further without its run folder."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        saved = checkpoint["config"]["generator_model_params"]["upsample_initial_channel"]
        weights = checkpoint["model"]
    except Exception as exc:
        raise TrainingError(f"{path} is not an exported generator checkpoint: {exc}") from exc
    if saved != channels:
        raise TrainingError(f"{path} is a {saved}-channel generator: pass --channels {saved}")
    generator.load_state_dict(weights)
    return int(checkpoint.get("step", 0))


class Adversary:
    """Coqui's HiFi-GAN discriminators (MPD + MSD), their optimizer and losses."""

    def __init__(self, config: HifiganConfig, device: str, lr: float) -> None:
        self.model = setup_discriminator(config).to(device).train()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.0
        )
        self.loss = DiscriminatorLoss(config)

    def step(self, y_hat: torch.Tensor, y: torch.Tensor) -> float:
        """One discriminator update on real ``y`` and detached generated ``y_hat``."""
        scores_fake, _ = self.model(y_hat.detach())
        scores_real, _ = self.model(y)
        loss = self.loss(scores_fake, scores_real)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1000.0)
        self.optimizer.step()
        return float(loss.item())

    def judge(self, y_hat: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """The generator's adversarial inputs: scores and features of fake and real audio."""
        scores_fake, feats_fake = self.model(y_hat)
        with torch.no_grad():
            _, feats_real = self.model(y)
        return {"scores_fake": scores_fake, "feats_fake": feats_fake, "feats_real": feats_real}


# --- training ---------------------------------------------------------------------------------


@torch.no_grad()
def held_out_mel_l1(
    generator: torch.nn.Module, clips: AudioClips, names: list[str], criterion: GeneratorLoss
) -> float:
    """Mean log-mel L1 between held-out utterances and their reconstruction (lower is better).

    The same measure as the training loss's mel term, on whole utterances never trained on.
    """
    generator.eval()
    device = next(generator.parameters()).device
    total = 0.0
    for name in names:
        samples = clips.load(name)
        mel = torch.from_numpy(clips.ap.melspectrogram(samples)).unsqueeze(0).to(device)
        y_hat = generator(mel)
        y = torch.zeros_like(y_hat)
        n = min(samples.size, y.shape[-1])
        y[..., :n] = torch.from_numpy(samples[:n]).to(device)
        total += float(criterion.l1_spec_loss(y_hat, y).item())
    generator.train()
    return total / max(1, len(names))


def eval_subset(names: list[str], count: int = EVAL_UTTERANCES) -> list[str]:
    """A fixed few held-out utterances, taken in turn from each member's folder."""
    by_folder: dict[str, list[str]] = {}
    for name in names:
        by_folder.setdefault(name.split("/", 1)[0], []).append(name)
    chosen: list[str] = []
    while len(chosen) < min(count, len(names)):
        for group in by_folder.values():
            if group and len(chosen) < count:
                chosen.append(group.pop(0))
    return chosen


def adversarial_wanted(mode: str, device: str) -> bool:
    if mode not in {"auto", "reconstruction", "adversarial"}:
        raise TrainingError(f"--mode must be auto, reconstruction or adversarial, not {mode!r}")
    return mode == "adversarial" or (mode == "auto" and device == "cuda")


def train(opts: VocoderOptions, stop: threading.Event | None = None) -> int:
    """Run (or resume) training until the step or time budget, or ``stop``; returns the step."""
    stop = stop or threading.Event()
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    adversarial = adversarial_wanted(opts.mode, device)
    state = load_state(opts.output)
    config = vocoder_config(opts.channels, opts.segment_samples)
    if state is not None:
        saved = state["config"]["generator_model_params"]["upsample_initial_channel"]
        if saved != opts.channels:
            raise TrainingError(
                f"{opts.output / STATE} has a {saved}-channel generator, not {opts.channels}: "
                "pass the same --channels or another --output"
            )
    names = list_utterances(opts.data_root)
    training, held_out = split(names, opts.output, opts.held_out_percent)
    _LOGGER.info(
        "%d utterances from %s: %d to train on, %d held out (%s)",
        len(names),
        opts.data_root,
        len(training),
        len(held_out),
        opts.output / HELD_OUT_LIST,
    )
    ap = AudioProcessor(config.audio)
    clips = AudioClips(opts.data_root, training, ap, opts.seed)
    scoring = AudioClips(opts.data_root, held_out, ap, opts.seed)
    probe = eval_subset(held_out)
    if not probe:
        raise DatasetError(f"none of the utterances in {opts.output / HELD_OUT_LIST} is left")

    torch.manual_seed(opts.seed)
    generator = setup_generator(config).to(device).train()
    optimizer = torch.optim.AdamW(
        generator.parameters(), lr=opts.lr, betas=(0.8, 0.99), weight_decay=0.0
    )
    criterion = GeneratorLoss(config).to(device)
    adversary: Adversary | None = None
    step = 0
    if state is not None:
        generator.load_state_dict(state["generator"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # --lr applies to a resumed run too
            group["lr"] = opts.lr
        step = int(state["step"])
        _LOGGER.info("resuming from step %d (%s)", step, opts.output / STATE)
    elif opts.init is not None:
        step = start_from_export(generator, opts.init, opts.channels)
        _LOGGER.info("starting from step %d of %s", step, opts.init)
    n_params = count_parameters(generator)
    _LOGGER.info(
        "HiFi-GAN generator (%d channels) with %.2f M parameters on %s, %d thread(s), %s",
        opts.channels,
        n_params / 1e6,
        device,
        torch.get_num_threads(),
        f"adversarial after step {opts.adversarial_after}" if adversarial else "reconstruction",
    )

    def ensure_adversary() -> Adversary:
        nonlocal adversary
        if adversary is None:
            adversary = Adversary(config, device, opts.lr)
            if state is not None and "discriminator" in state:
                adversary.model.load_state_dict(state["discriminator"])
                adversary.optimizer.load_state_dict(state["optimizer_d"])
            _LOGGER.info(
                "discriminators on: %.1f M parameters", count_parameters(adversary.model) / 1e6
            )
        return adversary

    def save() -> None:
        snapshot = {
            "generator": generator.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "config": config.to_dict(),
        }
        if adversary is not None:
            snapshot["discriminator"] = adversary.model.state_dict()
            snapshot["optimizer_d"] = adversary.optimizer.state_dict()
        _atomic_save(snapshot, opts.output / STATE)
        export_generator(generator, config, step, opts.output / EXPORT_CHECKPOINT)
        _LOGGER.info("checkpoint at step %d in %s", step, opts.output)

    started = time.monotonic()
    deadline = started + opts.minutes * 60
    next_save = started + opts.save_minutes * 60
    first_step = step
    running: dict[str, float] = {}

    def finished() -> bool:
        return (
            stop.is_set() or time.monotonic() >= deadline or bool(opts.steps and step >= opts.steps)
        )

    bar = tqdm(
        total=opts.steps or None, initial=step, unit="step", disable=None, dynamic_ncols=True
    )
    with bar, logging_redirect_tqdm():
        while not finished():
            mel, y = (
                t.to(device) for t in clips.batch(step, opts.batch_size, opts.segment_samples)
            )
            y_hat = generator(mel)
            adv: dict[str, Any] = {}
            d_loss = None
            if adversarial and step >= opts.adversarial_after:
                judge = ensure_adversary()
                d_loss = judge.step(y_hat, y)
                adv = judge.judge(y_hat, y)
            losses = criterion(y_hat, y, **adv)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(generator.parameters(), 1000.0)
            optimizer.step()
            step += 1
            values = {
                "loss": losses["loss"].item(),
                "mel": losses["G_l1_spec_loss"].item(),
                "stft": (losses["G_stft_loss_mg"] + losses["G_stft_loss_sc"]).item(),
            }
            if d_loss is not None:
                values["disc"] = d_loss
            for key, value in values.items():
                if not math.isfinite(value):
                    raise TrainingError(f"{key} loss is {value} at step {step}")
                running[key] = 0.95 * running.get(key, value) + 0.05 * value
            bar.update(1)
            bar.set_postfix(loss=f"{running['loss']:.3f}", mel=f"{running['mel']:.3f}")
            if step % opts.log_every == 0:
                elapsed = time.monotonic() - started
                _LOGGER.info(
                    "step %d  %s  %.2f s/step  %.1f of %.1f min",
                    step,
                    "  ".join(f"{k} {v:.4f}" for k, v in running.items()),
                    elapsed / max(1, step - first_step),
                    elapsed / 60,
                    opts.minutes,
                )
            if step % opts.eval_every == 0:
                _LOGGER.info(
                    "step %d  held-out mel L1 %.4f (%d utterances)",
                    step,
                    held_out_mel_l1(generator, scoring, probe, criterion),
                    len(probe),
                )
            if time.monotonic() >= next_save:
                save()
                next_save = time.monotonic() + opts.save_minutes * 60
    if step > first_step or state is None:
        save()
    _LOGGER.info(
        "stopped at step %d; held-out mel L1 %.4f; inference checkpoint %s",
        step,
        held_out_mel_l1(generator, scoring, probe, criterion),
        opts.output / EXPORT_CHECKPOINT,
    )
    return step


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m voice_model.vocoder", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add("--data-root", type=Path, help="a dataset, or a folder of them (default: var/demo-data)")
    add("--output", type=Path, required=True, help="run folder: state, held-out list, log")
    add("--minutes", type=float, default=60.0, help="time budget of this run")
    add("--steps", type=int, default=0, help="stop at this total step (0: no limit)")
    add("--batch-size", type=int, default=8)
    add("--segment-samples", type=int, default=8192, help="audio per training example")
    add("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add("--channels", type=int, default=256, help="generator upsample_initial_channel")
    add("--lr", type=float, default=2e-4)
    add("--save-minutes", type=float, default=5.0, help="checkpoint interval (wall time)")
    add("--eval-every", type=int, default=250, help="steps between held-out quality lines")
    add("--log-every", type=int, default=50, help="steps between loss lines")
    add("--held-out-percent", type=float, default=2.0)
    add("--mode", choices=("auto", "reconstruction", "adversarial"), default="auto")
    add("--adversarial-after", type=int, default=20000, help="generator-only steps first")
    add("--export", type=Path, metavar="PATH", help="only write the inference checkpoint")
    add("--init", type=Path, metavar="PATH", help="a new run starts from this exported generator")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.export:
        try:
            step, path = export_from_state(args.output, args.export)
        except TrainingError as exc:
            _LOGGER.error("cannot export: %s", exc)
            return 2
        _LOGGER.info("exported step %d to %s and %s", step, path, config_path_for(path))
        return 0

    args.output.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(args.output / LOG_FILE, encoding="utf-8")
    log_file.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(log_file)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        _LOGGER.info("%s: saving and stopping after this step", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    opts = VocoderOptions(
        data_root=args.data_root or REPO_ROOT / "var" / "demo-data",
        output=args.output,
        minutes=args.minutes,
        steps=args.steps,
        batch_size=args.batch_size,
        segment_samples=args.segment_samples,
        threads=args.threads,
        channels=args.channels,
        lr=args.lr,
        save_minutes=args.save_minutes,
        eval_every=args.eval_every,
        log_every=args.log_every,
        held_out_percent=args.held_out_percent,
        mode=args.mode,
        adversarial_after=args.adversarial_after,
        init=args.init,
    )
    try:
        train(opts, stop)
    except (DatasetError, TrainingError) as exc:
        _LOGGER.error("cannot train: %s (earlier checkpoints are untouched)", exc)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
