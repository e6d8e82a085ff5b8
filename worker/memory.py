"""How a worker process hands memory back to the kernel (glibc's malloc; elsewhere these do
nothing and say so)."""

from __future__ import annotations

import ctypes

# glibc's mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Allocations below this come from the heap (glibc's largest allowed value)."""
TRIM_THRESHOLD = 512 << 20
"""Free memory at the top of the heap beyond this goes back to the kernel."""


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed buffers for reuse instead of returning them to the kernel.

    Every sentence allocates and frees the same multi-megabyte tensors (Griffin-Lim's
    spectrograms, the vocoder's activations). By default glibc maps buffers over 128 KiB
    afresh and unmaps them when freed, or trims the heap, so each sentence faults its memory in
    again, in some processes for a tenth of the synthesis time (docs/performance.md). Fixed
    thresholds keep the buffers mapped; the process holds on to its peak heap, at most
    ``TRIM_THRESHOLD`` of it unused. False where malloc is not glibc's.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def release_freed_memory() -> bool:
    """Give every whole free page of the heap back to the kernel now (``malloc_trim(0)``).

    For the one-off frees that :func:`keep_freed_memory`'s thresholds would otherwise keep for
    good: loading a voice frees hundreds of MB (Coqui builds HiFi-GAN's discriminators even for
    a generator-only checkpoint; :func:`worker.voices.load_voice` drops them). False where
    malloc is not glibc's."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True
