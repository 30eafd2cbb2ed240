"""A disk memo of decoded input files, so that a run's start is not spent decompressing them.

Every grid run is a fresh process that reads the same slides again. A simulated slide's st file holds a
dense noise-free expectation (gzip: about 0.2 s a slide to decode, 3 s of a 16-slide fold) and a
slide's thumbnail is rebuilt from its gzip'd 224-px patches. The first run decodes and stores the
result uncompressed under ``<cache>/decoded/`` (:func:`stflib.paths.cache_root`); later runs load it
(pickle protocol 5: tens of milliseconds a slide).

An entry is keyed by everything it was computed from: the name of the computation, its arguments,
the absolute path, size and modification time of each source file, and the source text of the
modules that compute it. An edited input file or an edited reader is therefore never served stale;
deleting the folder only costs the next run its decoding. Warnings raised while computing (an
Ensembl-id section, say) are stored with the value and raised again on every hit, so a cached read
says what an uncached one says.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from stflib.io import atomic_write

FOLDER = "decoded"
DISABLE_ENV = "STFLIB_NO_DECODED_CACHE"  # set to 1 to always decode (e.g. to time the reader itself)


def _file_stamp(path: Path) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path.resolve()}:absent"
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _module_text(name: str) -> bytes:
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not file:
        raise ValueError(f"decoded cache: module {name!r} is not imported or has no source file")
    return Path(file).read_bytes()


def entry_key(name: str, args: tuple, sources: Iterable[str | os.PathLike], code: Iterable[str]) -> str:
    """The cache key of one value: its computation's name and arguments, its source files' stamps
    (path, size, modification time) and the text of the modules ``code`` that compute it."""
    h = hashlib.sha256()
    h.update(repr((name, args)).encode())
    for path in sources:
        h.update(_file_stamp(Path(path)).encode())
    for module in code:
        h.update(_module_text(module))
    return h.hexdigest()[:24]


def memo(name: str, compute: Callable[[], Any], args: tuple, sources: Iterable[str | os.PathLike],
         code: Iterable[str]) -> Any:
    """``compute()``, or the value an earlier process stored for the same key (:func:`entry_key`).

    ``sources`` are the files the value is decoded from, ``code`` the modules whose source decides
    it. With ``$STFLIB_NO_DECODED_CACHE`` set to 1 the cache is neither read nor written."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return compute()
    from stflib.paths import cache_root

    sources = list(sources)
    path = cache_root() / FOLDER / f"{name}-{entry_key(name, args, sources, code)}.pkl"
    if path.is_file():
        try:
            with open(path, "rb") as f:
                value, caught = pickle.load(f)
        except Exception:  # noqa: BLE001 - a truncated or foreign entry is decoded again and replaced
            path.unlink(missing_ok=True)
        else:
            for message, category in caught:
                warnings.warn(message, category, stacklevel=3)
            return value
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        value = compute()
    caught = [(str(r.message), r.category) for r in records]
    for message, category in caught:
        warnings.warn(message, category, stacklevel=3)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            pickle.dump((value, caught), f, protocol=5)

    atomic_write(path, write)
    return value


def read_sample(root: str | os.PathLike, sample_id: str, backbone: str | None = None, cache: bool = True):
    """:func:`stflib.data.hest.read_hest_sample` (without patches), decoded once per input and reader
    (``cache``; a one-off pass over a large cohort may skip it), naming the file when one cannot be read."""
    from stflib.data.hest import read_hest_sample

    root = Path(root)
    sources = [root / "st" / f"{sample_id}.h5ad", root / "metadata" / f"{sample_id}.json",
               root / "patches" / f"{sample_id}.h5"]
    if backbone is not None:
        sources.append(root / "features" / backbone / f"{sample_id}.h5")
    try:
        if not cache:
            return read_hest_sample(root, sample_id, backbone=backbone)
        return memo("sample", lambda: read_hest_sample(root, sample_id, backbone=backbone),
                    (str(root.resolve()), sample_id, backbone), sources, ["stflib.data.hest"])
    except OSError as e:
        broken = unreadable_hdf5(sources)
        if broken is None:
            raise
        raise OSError(f"sample {sample_id!r}: {broken} cannot be read ({e}); a truncated or partly copied file: "
                      "download or write it again") from e


def unreadable_hdf5(paths) -> Path | None:
    """The first existing HDF5 file (``.h5``, ``.h5ad``) of ``paths`` that h5py cannot open, or None.

    h5py's errors (``truncated file: eof = ...``) do not name the file; this does."""
    import h5py

    for path in map(Path, paths):
        if path.suffix not in (".h5", ".h5ad") or not path.is_file():
            continue
        try:
            with h5py.File(path, "r"):
                pass
        except OSError:
            return path
    return None
