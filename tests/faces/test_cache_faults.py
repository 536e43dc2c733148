"""Damaged and stale cache entries are rebuilt or refused, never trusted; odd-sized frames never make
black or shifted crops. `already_cropped` keeps these fast (no face detection)."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from micronbert.errors import MicronbertError
from micronbert.faces import FaceCache
from micronbert.faces import prepare as P

CFG = P.PrepareConfig(size=32, already_cropped=True)


def _noise(n, shape=(40, 40, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(30, 226, shape, dtype=np.uint8) for _ in range(n)]


def _run(rows, out):
    return P.prepare(pd.DataFrame(rows), out, CFG)


def test_stale_and_corrupt_entries_are_rebuilt(tmp_path, sample_writer):
    row = sample_writer(tmp_path / "clip", _noise(6), onset=1, apex=3, offset=6)
    out = tmp_path / "cache"
    assert len(_run([row], out).done) == 1
    cache = FaceCache(out)
    assert len(_run([row], out).skipped) == 1  # unchanged row: reused

    # the apex corrected in the table: the entry is stale, load(expect=row) refuses it, prepare rebuilds
    fixed = {**row, "apex": 4}
    with pytest.raises(MicronbertError, match="stale: apex 3 in the cache, 4 expected"):
        cache.load("demo", "s1", expect=fixed)
    res = _run([fixed], out)
    assert res.done == [("demo", "s1")] and "rebuilt" in res.report.lines()[0]
    assert cache.load("demo", "s1", expect=fixed).meta["apex"] == 4

    # another dataset's clip under the same dataset name and sample id: other frames_dir, rebuilt
    other = sample_writer(tmp_path / "other", _noise(6, seed=1), onset=1, apex=4, offset=6)
    res = _run([other], out)
    assert res.done == [("demo", "s1")] and "frames_dir" in res.report.lines()[0]

    # a frame replaced on disk after prepare: the source stamp changes, rebuilt
    (tmp_path / "other" / "img2.jpg").write_bytes((tmp_path / "clip" / "img2.jpg").read_bytes())
    res = _run([other], out)
    assert res.done == [("demo", "s1")] and "source_stamp differs" in res.report.lines()[0]

    # truncated file: never loaded, rebuilt by prepare
    path = cache.path("demo", "s1")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MicronbertError, match="corrupt face cache file"):
        cache.load("demo", "s1")
    res = _run([other], out)
    assert res.done == [("demo", "s1")] and "corrupt" in res.report.lines()[0]

    # one flipped byte inside the frames: the content check catches it
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MicronbertError, match="corrupt face cache file"):
        cache.load("demo", "s1")
    assert len(_run([other], out).done) == 1
    cache.load("demo", "s1", expect=other)


def test_frames_of_another_size_are_left_out_not_warped(tmp_path, sample_writer):
    images = _noise(6)
    images[4] = _noise(1, shape=(20, 30, 3), seed=5)[0]  # frame 5 is smaller
    row = sample_writer(tmp_path / "clip", images, onset=1, apex=3, offset=6)
    res = _run([row], tmp_path / "cache")
    assert res.done == [("demo", "s1")]
    (entry,) = res.report.lines()
    assert "size (30x20) differs from the clip's 40x40 left out: 5" in entry
    s = FaceCache(tmp_path / "cache").load("demo", "s1")
    assert s.frame_numbers.tolist() == [1, 2, 3, 4, 6]
    assert all(f.mean() > 20 for f in s.frames)  # no black crop

    images[2] = _noise(1, shape=(20, 30, 3), seed=6)[0]  # now the apex (frame 3) is odd-sized too
    row = sample_writer(tmp_path / "clip2", images, onset=1, apex=3, offset=6)
    res = _run([row], tmp_path / "cache2")
    assert res.failed == [("demo", "s1")]
    assert "apex frame 3 unusable" in res.report.lines()[0]


def test_outputs_honour_the_umask(tmp_path):
    from micronbert.utils.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
