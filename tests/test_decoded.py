"""The disk memo of decoded slides (stflib.data.decoded): same values as the reader, never stale."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from conftest import write_fake_hest_sample
from stflib.data import decoded, read_hest_sample


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STFLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(decoded.DISABLE_ENV, raising=False)
    return tmp_path / "cache" / decoded.FOLDER


def _same(a, b):
    assert a.sample_id == b.sample_id
    np.testing.assert_array_equal(a.counts.toarray(), b.counts.toarray())
    np.testing.assert_array_equal(a.genes, b.genes)
    np.testing.assert_array_equal(a.barcodes, b.barcodes)
    np.testing.assert_array_equal(a.coords, b.coords)
    np.testing.assert_array_equal(a.features, b.features)
    assert sorted(a.truth) == sorted(b.truth)
    for k in a.truth:
        np.testing.assert_array_equal(a.truth[k], b.truth[k])
    assert a.metadata == b.metadata


def test_cached_read_equals_the_reader_and_is_stored_once(tmp_path, cache):
    info = write_fake_hest_sample(tmp_path / "hest", truth=True)
    direct = read_hest_sample(info["root"], "FAKE1", backbone="resnet50")
    first = decoded.read_sample(info["root"], "FAKE1", backbone="resnet50")
    assert len(list(cache.glob("sample-*.pkl"))) == 1
    second = decoded.read_sample(info["root"], "FAKE1", backbone="resnet50")
    assert len(list(cache.glob("sample-*.pkl"))) == 1
    _same(direct, first)
    _same(direct, second)
    # another backbone (or none) is another entry
    decoded.read_sample(info["root"], "FAKE1")
    assert len(list(cache.glob("sample-*.pkl"))) == 2


def test_an_edited_input_file_is_decoded_again(tmp_path, cache):
    root = tmp_path / "hest"
    write_fake_hest_sample(root, seed=0)
    before = decoded.read_sample(root, "FAKE1", backbone="resnet50")
    st = root / "st" / "FAKE1.h5ad"
    mtime = st.stat().st_mtime_ns
    write_fake_hest_sample(root, seed=1)  # new counts, same file names
    os.utime(st, ns=(mtime + 10**9, mtime + 10**9))  # a new modification time even on a coarse clock
    after = decoded.read_sample(root, "FAKE1", backbone="resnet50")
    _same(read_hest_sample(root, "FAKE1", backbone="resnet50"), after)
    assert not np.array_equal(before.counts.toarray(), after.counts.toarray())


def test_warnings_are_raised_on_a_hit_too(tmp_path, cache):
    calls = []

    def compute():
        calls.append(1)
        warnings.warn("genes are Ensembl ids", UserWarning)
        return 42

    src = tmp_path / "x.txt"
    src.write_text("x")
    for _ in range(2):
        with pytest.warns(UserWarning, match="Ensembl"):
            assert decoded.memo("t", compute, ("a",), [src], ["stflib.data.decoded"]) == 42
    assert len(calls) == 1  # the second value came from the cache


def test_a_broken_entry_is_replaced_and_the_switch_turns_the_cache_off(tmp_path, cache, monkeypatch):
    src = tmp_path / "x.txt"
    src.write_text("x")
    assert decoded.memo("t", lambda: [1, 2], (), [src], ["stflib.data.decoded"]) == [1, 2]
    (entry,) = cache.glob("t-*.pkl")
    entry.write_bytes(b"not a pickle")
    assert decoded.memo("t", lambda: [1, 2], (), [src], ["stflib.data.decoded"]) == [1, 2]
    monkeypatch.setenv(decoded.DISABLE_ENV, "1")
    for p in cache.glob("*.pkl"):
        p.unlink()
    assert decoded.memo("t", lambda: 3, (), [src], ["stflib.data.decoded"]) == 3
    assert not list(cache.glob("*.pkl"))


def test_errors_of_the_reader_pass_through_and_store_nothing(tmp_path, cache):
    with pytest.raises(FileNotFoundError, match="HEST root folder not found"):
        decoded.read_sample(tmp_path / "absent", "X")
    assert not cache.exists() or not list(cache.glob("*.pkl"))


def test_a_truncated_file_is_named(tmp_path, cache):
    info = write_fake_hest_sample(tmp_path / "hest")
    feats = info["root"] / "features" / "resnet50" / "FAKE1.h5"
    data = feats.read_bytes()
    feats.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match=r"FAKE1\.h5 cannot be read .*truncated"):
        decoded.read_sample(info["root"], "FAKE1", backbone="resnet50")


def test_the_command_line_reports_a_truncated_file_in_one_line(tmp_path):
    import subprocess
    import sys

    import pandas as pd

    info = write_fake_hest_sample(tmp_path / "hest")
    st = info["root"] / "st" / "FAKE1.h5ad"
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    pd.DataFrame({"id": ["FAKE1"], "patient": ["P1"]}).to_csv(info["root"] / "metadata.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k != "STFLIB_TRACEBACK"}
    done = subprocess.run([sys.executable, "-m", "stflib", "reliability", "--data-dir", str(info["root"])],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr, done.stderr
    assert "FAKE1.h5ad cannot be read" in lines[0] and "truncated" in lines[0]
