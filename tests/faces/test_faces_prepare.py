"""`micronbert prepare` on tiny sample tables built from real faces: caching, reports for samples
without a face, --strict, keyframes, already-cropped, workers, and resume after a crash or a kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from micronbert.cli import main
from micronbert.data.samples import make_table, write_samples
from micronbert.faces import FaceCache
from micronbert.faces import prepare as P


@pytest.fixture(scope="module")
def table(tmp_path_factory, video_frames, photos, noise_frames, sample_writer):
    from micronbert.data.builtin import no_face_video
    from micronbert.data.frames import iter_video

    root = tmp_path_factory.mktemp("prep_frames")
    rows = [
        sample_writer(root / "vid", list(video_frames[:8]), sample_id="sub01/vid", onset=2, apex=5, offset=7),
        sample_writer(root / "still", [photos["astronaut"]] * 3, sample_id="sub01/still"),
        sample_writer(root / "bad", [photos["grace_hopper"]] * 4, sample_id="sub02/bad", bad=(3,)),
        sample_writer(root / "noface", list(iter_video(no_face_video(), max_frames=4)), sample_id="sub02/noface"),
        sample_writer(root / "noise", noise_frames, sample_id="sub03/noise"),
    ]
    path = root / "samples.csv"
    write_samples(make_table(rows), path)
    return path, {r["sample_id"]: r for r in rows}


def _report(out):
    return pd.read_csv(Path(out) / P.REPORT_NAME, keep_default_na=False)


def test_prepare_caches_faces_and_reports_the_rest(table, tmp_path, capsys):
    path, rows = table
    out = tmp_path / "cache"
    assert main(["prepare", "--samples", str(path), "--out", str(out)]) == 0
    cache = FaceCache(out)
    assert cache.keys() == [("demo", "sub01/still"), ("demo", "sub01/vid"), ("demo", "sub02/bad")]
    vid = cache.load("demo", "sub01/vid")
    assert vid.frames.shape == (6, 224, 224, 3) and vid.frame_numbers.tolist() == [2, 3, 4, 5, 6, 7]
    assert vid.meta["detector"] == "dlib" and vid.meta["keyframes"] is False and vid.meta["reference"] == 2
    assert vid.transform.shape == (2, 3) and np.isfinite(vid.landmarks).all()
    still = cache.load("demo", "sub01/still")
    assert all(np.array_equal(f, still.frames[0]) for f in still.frames)
    assert cache.load("demo", "sub02/bad").frame_numbers.tolist() == [1, 2, 4]

    rep = _report(out)
    by_id = {sid: g for sid, g in rep.groupby("sample_id")}
    for sid in ("sub02/noface", "sub03/noise"):
        (reason,) = by_id[sid].reason
        assert reason.startswith(f"no face found in {rows[sid]['frames_dir']}, frames 1-4")
        assert by_id[sid].action.tolist() == ["excluded"] and by_id[sid].file.iloc[0] == str(path)
    assert by_id["sub02/bad"].action.tolist() == ["warning"] and "unreadable" in by_id["sub02/bad"].reason.iloc[0]
    assert by_id["sub03/noise"].row.iloc[0] == 6  # CSV row as a user sees it
    err = capsys.readouterr()
    assert "no face found in" in err.err and "3 prepared" in err.out

    # Run again with --strict: finished samples are skipped, the faceless ones are reported again.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    assert main(["prepare", "--samples", str(path), "--out", str(out), "--strict"]) == 3  # EXIT_FLAGGED, as index --strict
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")} == mtimes
    assert "3 already cached" in capsys.readouterr().out
    # Other settings into the same cache are refused, with one line, no traceback.
    assert main(["prepare", "--samples", str(path), "--out", str(out), "--size", "112"]) == 1
    assert "other settings" in capsys.readouterr().err


def test_keyframes_and_already_cropped(table, tmp_path):
    path, rows = table
    res = P.run_prepare([path], tmp_path / "k", keyframes=True, size=112)
    s = FaceCache(tmp_path / "k").load("demo", "sub01/vid")
    assert s.frame_numbers.tolist() == [2, 5] and s.frames.shape == (2, 112, 112, 3) and s.meta["keyframes"]
    assert len(res.done) == 3 and len(res.failed) == 2

    res = P.run_prepare([path], tmp_path / "c", already_cropped=True, size=64)
    assert len(res.done) == 5 and not res.failed  # no detection: every readable sample is kept
    s = FaceCache(tmp_path / "c").load("demo", "sub03/noise")
    assert s.frames.shape == (4, 64, 64, 3) and s.meta["detector"] is None and s.meta["already_cropped"]
    assert np.isnan(s.landmarks).all()


def test_two_workers_give_the_same_crops(table, tmp_path):
    path, _ = table
    a = P.run_prepare([path], tmp_path / "w1", workers=1, keyframes=True)
    b = P.run_prepare([path], tmp_path / "w2", workers=2, keyframes=True)
    assert sorted(a.done) == sorted(b.done) and sorted(a.failed) == sorted(b.failed)
    for ds, sid in a.done:
        assert np.array_equal(FaceCache(tmp_path / "w1").load(ds, sid).frames,
                              FaceCache(tmp_path / "w2").load(ds, sid).frames)


def test_resume_after_a_crash(table, tmp_path, monkeypatch):
    path, _ = table
    out = tmp_path / "crash"
    real, calls = P.process_sample, []

    def crash_after_two(row, cfg, root):
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        calls.append(row["sample_id"])
        return real(row, cfg, root)

    monkeypatch.setattr(P, "process_sample", crash_after_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        P.run_prepare([path], out, keyframes=True)
    monkeypatch.setattr(P, "process_sample", real)
    cache = FaceCache(out)
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    assert len(first) == 2 and not cache.temp_files()

    res = P.run_prepare([path], out, keyframes=True)
    assert sorted(res.skipped) == sorted(("demo", s) for s in calls)
    assert len(res.done) == 1 and len(res.failed) == 2
    assert all(p.stat().st_mtime_ns == m for p, m in first.items())
    for ds, sid in cache.keys():
        assert cache.load(ds, sid).frames.shape[1:] == (224, 224, 3)


def test_resume_after_kill(tmp_path, video_frames, sample_writer):
    """SIGKILL a real `micronbert prepare` once it has cached a sample, then run it again."""
    rows = [sample_writer(tmp_path / f"clip{i}", list(video_frames[i * 6:i * 6 + 12]), sample_id=f"s{i}")
            for i in range(6)]
    path = tmp_path / "samples.csv"
    write_samples(make_table(rows), path)
    out = tmp_path / "cache"
    env = dict(os.environ, MICRONBERT_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "micronbert", "prepare", "--samples", str(path), "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not list(out.rglob("*.npz")):
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_early = proc.returncode == -signal.SIGKILL
    (out / "demo" / ".s9.npz.abc.tmp").write_bytes(b"half a file")  # as a kill mid-write leaves it
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    assert 1 <= len(first)

    res = P.run_prepare([path], out)
    cache = FaceCache(out)
    assert len(res.skipped) == len(first) and len(res.done) == 6 - len(first) and not res.failed
    assert all(p.stat().st_mtime_ns == m for p, m in first.items())
    assert cache.keys() == [("demo", f"s{i}") for i in range(6)] and not cache.temp_files()
    for ds, sid in cache.keys():
        assert cache.load(ds, sid).frames.shape == (12, 224, 224, 3)
    if not killed_early:
        pytest.skip("prepare finished before it could be killed; resume checked without a kill")
