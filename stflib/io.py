"""Atomic artefact writes: a file appears complete or not at all.

The grid resumes by the presence of a run's files (``metrics.json`` marks a finished run,
``checkpoint.pt`` a resumable one), so every artefact is written to a temporary file beside its target
and renamed over it; an interrupted write leaves only the temporary file.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on ``<path>.tmp-<pid>-<random>``, then rename it to ``path``; a write that
    raises leaves neither file behind (a killed process may leave the temporary one). The temporary name
    is the writer's own, so two processes writing the same target (two grid workers filling one cache
    entry) never write into each other's file: the last rename wins, and both wrote the same content."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def json_safe(x: Any) -> Any:
    """Plain-JSON form of ``x``: numpy scalars as Python numbers, non-finite floats as None, tuples as lists."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return x


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON (NaN -> null), atomically."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
