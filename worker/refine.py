"""Mel-consistent refinement of a neural vocoder's output (a voice's ``vocoder.refine``).

A small HiFi-GAN trained without its discriminators (all a CPU affords,
:mod:`voice_model.vocoder`) draws the harmonics and a plausible phase well, but its spectral
envelope drifts from the mel it was given, and listeners and PESQ hear that. Griffin-Lim has
the opposite trouble: its magnitude is the mel basis's pseudo-inverse, which smears every
harmonic across its band. This stage keeps what each does well:

1. **magnitude**: the generator's STFT magnitude is pulled onto the input mel by multiplicative
   updates (those of non-negative matrix factorisation for ``mel_basis @ S = mel``), which
   rescale each band while keeping the harmonic structure inside it;
2. **phase**: a few fast Griffin-Lim iterations (momentum 0.99) make that magnitude consistent,
   starting from the generator's own phase instead of from nothing.

``python -m bench.vocoder`` measures it against the generator alone and against Griffin-Lim
(docs/performance.md, "Vocoders"). This module imports torch: only the worker's voice loading
uses it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

MOMENTUM = 0.99
_FLOOR = 1e-10


class MelRefinement:
    """Refines a batch of generator outputs against the mels they were made from."""

    def __init__(self, ap: Any, iterations: int, momentum: float = MOMENTUM) -> None:
        if iterations < 1:
            raise ValueError(f"refinement needs at least one iteration, not {iterations}")
        self._ap = ap
        self.iterations = iterations
        self.momentum = momentum
        self._basis = torch.from_numpy(ap.mel_basis).float()  # [bands, bins]
        self._window = torch.hann_window(ap.win_length)

    def _to(self, device: torch.device) -> None:
        """Keep the mel basis and window where the audio is (a GPU worker refines on its GPU)."""
        if self._window.device != device:
            self._basis, self._window = self._basis.to(device), self._window.to(device)

    def _stft(self, samples: torch.Tensor) -> torch.Tensor:
        ap = self._ap
        return torch.stft(
            samples,
            ap.fft_size,
            ap.hop_length,
            ap.win_length,
            self._window,
            return_complex=True,
        )

    def _istft(self, spectrum: torch.Tensor, length: int) -> torch.Tensor:
        ap = self._ap
        return torch.istft(
            spectrum, ap.fft_size, ap.hop_length, ap.win_length, self._window, length=length
        )

    def target(self, mels: torch.Tensor) -> torch.Tensor:
        """Normalized mels ``[batch, bands, frames]`` (the vocoder's input) -> amplitudes."""
        ap = self._ap
        normalized = mels.detach().float().cpu().numpy()
        decibels = torch.from_numpy(np.stack([ap.denormalize(mel) for mel in normalized]))
        amplitude = torch.pow(float(ap.base), decibels / float(ap.spec_gain))
        return amplitude ** (1.0 / float(ap.power))

    def magnitude(self, magnitude: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``magnitude`` ``[batch, bins, frames]`` rescaled, band by band, towards ``target``."""
        self._to(magnitude.device)
        basis = self._basis
        norm = (basis.T @ torch.ones_like(target)).clamp(min=_FLOOR)
        for _ in range(self.iterations):
            ratio = target / (basis @ magnitude).clamp(min=_FLOOR)
            magnitude = magnitude * (basis.T @ ratio) / norm
        return magnitude

    def __call__(self, waves: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """Generator output ``[batch, 1, frames * hop]`` -> refined, same shape and device."""
        samples = waves.detach().reshape(waves.shape[0], -1).float()
        self._to(samples.device)
        length = samples.shape[1]
        spectrum = self._stft(samples)  # one frame more than the mel (centred STFT)
        frames = min(spectrum.shape[2], mels.shape[2])
        magnitude = spectrum.abs()
        angles = spectrum / magnitude.clamp(min=_FLOOR)  # the generator's phase, before rescaling
        magnitude[..., :frames] = self.magnitude(
            magnitude[..., :frames].clamp(min=_FLOOR),
            self.target(mels)[..., :frames].to(samples.device),
        )
        previous = torch.zeros_like(angles)
        keep = self.momentum / (1.0 + self.momentum)
        for _ in range(self.iterations):
            rebuilt = self._stft(self._istft(magnitude * angles, length))
            angles = rebuilt - keep * previous
            angles = angles / angles.abs().clamp(min=_FLOOR)
            previous = rebuilt
        refined = self._istft(magnitude * angles, length)
        return refined.reshape(waves.shape).to(dtype=waves.dtype)


def install(synthesizer: Any, iterations: int) -> None:
    """Make a Coqui ``Synthesizer`` with a vocoder refine every output of it.

    Coqui's synthesis (and :func:`worker.synthesis.vocode_batch`) call the vocoder model's
    ``inference`` with the normalized mels, so wrapping that one method covers single and
    batched paths alike."""
    model = synthesizer.vocoder_model
    refine = MelRefinement(synthesizer.vocoder_ap, iterations)
    generate = model.inference
    # The generator pads its input at both ends (repeating the edge frames) and voices those
    # frames too: the output matches the input padded the same way.
    pad = int(getattr(model.model_g, "inference_padding", 0))

    def inference(mels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            waves = generate(mels)
            padded = torch.nn.functional.pad(mels.float(), (pad, pad), "replicate")
            return refine(waves, padded)

    model.inference = inference
