"""The device a run's tensors live on and the mixed precision used there (training and feature extraction).

``resolve_device("auto")`` picks CUDA, then Apple's MPS, then the CPU; an explicit ``cuda`` without
CUDA is an error rather than a silent fall-back. On CUDA, matrix products run under autocast in
bf16 where the GPU has it (fp16 elsewhere, which needs a gradient scaler when training); on other
devices everything stays fp32.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> cuda when available, then mps, else cpu; otherwise the named device."""
    if str(name) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(name)!r} requested but CUDA is not available; allowed here: auto, cpu")
    return device


def autocast_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """bf16 (or fp16 where the GPU lacks bf16) on CUDA with ``amp``; None (fp32) otherwise."""
    if device.type != "cuda" or not amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, amp: bool = True) -> AbstractContextManager:
    """The autocast context of :func:`autocast_dtype` (a no-op context in fp32)."""
    dtype = autocast_dtype(device, amp)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
