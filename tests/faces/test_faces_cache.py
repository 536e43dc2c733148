"""The per-sample crop cache: round trip, nearest frame, listing, atomicity, corrupt files."""
from __future__ import annotations

import numpy as np
import pytest

from micronbert.errors import MicronbertError
from micronbert.faces import FaceCache


def _frames(t=4, s=32):
    return (np.arange(t * s * s * 3) % 251).astype(np.uint8).reshape(t, s, s, 3)


def test_round_trip_and_nearest_frame(tmp_path):
    cache = FaceCache(tmp_path)
    frames = _frames()
    lm = np.random.default_rng(0).normal(size=(68, 2))
    tf = np.array([[1.0, 0, 2], [0, 1, 3]])
    p = cache.save("casme2", "sub01/EP02_01f", frames, [10, 12, 15, 20], lm, tf,
                   {"onset": 10, "apex": 16, "offset": 20, "keyframes": False, "detector": "dlib"})
    assert p.parent.name == "casme2" and p.name == "sub01%2FEP02_01f.npz"
    assert cache.has("casme2", "sub01/EP02_01f") and not cache.has("casme2", "sub01")
    s = cache.load("casme2", "sub01/EP02_01f")
    assert s.frames.dtype == np.uint8 and np.array_equal(s.frames, frames)
    assert s.frame_numbers.tolist() == [10, 12, 15, 20]
    assert np.array_equal(s.landmarks, lm) and np.array_equal(s.transform, tf)
    assert s.meta["size"] == 32 and s.meta["detector"] == "dlib" and s.meta["keyframes"] is False
    assert np.array_equal(s.frame(12), frames[1])
    assert np.array_equal(s.frame(16), frames[2])  # nearest: 15
    assert np.array_equal(s.frame(11), frames[0])  # tie 10/12: the earlier
    assert np.array_equal(s.frame(999), frames[3])
    assert np.array_equal(s.apex, frames[2]) and np.array_equal(s.onset, frames[0])


def test_keys_index_several_datasets_and_odd_ids(tmp_path):
    cache = FaceCache(tmp_path)
    ids = [("casme2", "sub01/EP02_01f"), ("samm", "006_1_2"), ("smic", ".hidden id?"), ("my set", "a b")]
    for ds, sid in ids:
        cache.save(ds, sid, _frames(2), [1, 2], meta={"keyframes": True, "detector": "haar"})
    assert cache.keys() == sorted(ids)
    assert cache.keys("samm") == [("samm", "006_1_2")]
    assert cache.datasets() == sorted({d for d, _ in ids})
    idx = cache.index()
    assert len(idx) == 4 and set(idx.columns) >= {"dataset", "sample_id", "n_frames", "size", "path"}
    assert (idx.n_frames == 2).all() and idx.keyframes.all()
    assert ("smic", ".hidden id?") in cache and len(cache) == 4
    assert cache.load("smic", ".hidden id?").frames.shape == (2, 32, 32, 3)


def test_temp_files_are_never_listed_and_are_cleaned(tmp_path):
    cache = FaceCache(tmp_path)
    cache.save("d", "a", _frames(1), [1])
    leftover = tmp_path / "d" / ".b.npz.x1y2.tmp"  # what a killed writer leaves
    leftover.write_bytes(b"partial")
    assert cache.keys() == [("d", "a")] and not cache.has("d", "b")
    assert cache.temp_files() == [leftover]
    assert cache.clean_temp() == 1 and not leftover.exists()


def test_corrupt_file_and_missing_sample_give_clear_errors(tmp_path):
    cache = FaceCache(tmp_path)
    p = cache.save("d", "a", _frames(1), [1])
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(MicronbertError, match="corrupt face cache file"):
        cache.load("d", "a")
    with pytest.raises(MicronbertError, match="not in the face cache"):
        cache.load("d", "zzz")


def test_settings_cannot_be_mixed(tmp_path):
    cache = FaceCache(tmp_path)
    cache.check_settings({"size": 224, "margin": 0.15})
    cache.check_settings({"size": 224, "margin": 0.15})
    with pytest.raises(MicronbertError, match="other settings"):
        cache.check_settings({"size": 112, "margin": 0.15})


def test_the_margin_a_cache_was_aligned_with_is_read_back_and_caches_must_agree(tmp_path, face_frames_dir):
    from micronbert.faces.cache import cache_margin, frames_margin

    a, b, c = FaceCache(tmp_path / "a"), FaceCache(tmp_path / "b"), FaceCache(tmp_path / "c")
    a.check_settings({"size": 112, "margin": 0.25})
    b.check_settings({"size": 112, "margin": 0.25})
    c.check_settings({"size": 112, "margin": 0.15})
    assert cache_margin(a.root) == 0.25 and cache_margin(c.root) == 0.15
    # not a cache, or a cache whose settings were never recorded: unknown
    assert cache_margin(face_frames_dir) is None and cache_margin(tmp_path / "missing") is None
    assert cache_margin(None) is None
    assert frames_margin([a.root, face_frames_dir, b.root]) == 0.25
    assert frames_margin([face_frames_dir]) is None
    with pytest.raises(MicronbertError, match="different margins") as err:
        frames_margin([a.root, c.root])
    assert str(a.root) in str(err.value) and str(c.root) in str(err.value)


def test_save_checks_shapes(tmp_path):
    with pytest.raises(ValueError):
        FaceCache(tmp_path).save("d", "a", _frames(2).astype(np.float32), [1, 2])
    with pytest.raises(ValueError):
        FaceCache(tmp_path).save("d", "a", _frames(2), [1])
