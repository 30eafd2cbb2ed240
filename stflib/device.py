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


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the next allocation (``mallopt``: no mmap'd blocks,
    M_MMAP_MAX = 0; never trim the heap, M_TRIM_THRESHOLD = -1, i.e. SIZE_MAX) instead of returning
    every block over 32 MB to the kernel on free. A training step on a large slide frees and
    re-allocates the same large activations every step; returned, each comes back as fresh pages
    that the kernel maps and zeroes one page fault at a time (at 64k spots ~2.5 million faults, a
    third of a CPU step). The price: the process keeps its peak heap (and some fragmentation) until it
    exits. Affects allocations made after the call; False where malloc is not glibc's."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, -1))
    except (OSError, AttributeError):
        return False
