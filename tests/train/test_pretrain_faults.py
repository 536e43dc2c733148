"""Pretraining under faults: changed settings on resume, damaged checkpoints, signals, corrupt frames,
and a `micronbert prepare` face cache as the frame source."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from micronbert.config import PretrainConfig, preset
from micronbert.errors import MicronbertError
from micronbert.train.pretrain import pretrain

BASE = dict(steps=3, batch_size=2, warmup_steps=1, log_every=1, ckpt_every=1, seed=1)


def _run(frames, out, **kw):
    pcfg = PretrainConfig(**{**BASE, **kw.pop("pcfg", {})})
    return pretrain([str(frames)], out, preset("test"), pcfg, show_progress=False, device="cpu", **kw)


def test_resume_refuses_changed_settings_unless_forced(tmp_path, face_frames_dir):
    _run(face_frames_dir, tmp_path / "r", stop_after=1)
    with pytest.raises(MicronbertError, match=r"differs \(lr: 0.00025 -> 0.001\).*--resume-force"):
        _run(face_frames_dir, tmp_path / "r", resume=True, pcfg={"lr": 1e-3})
    with pytest.raises(MicronbertError, match="batch_size"):
        _run(face_frames_dir, tmp_path / "r", resume=True, pcfg={"batch_size": 4})
    other = tmp_path / "other"
    other.mkdir()
    for f in sorted(face_frames_dir.iterdir())[:8]:
        (other / f.name).write_bytes(f.read_bytes())
    with pytest.raises(MicronbertError, match="data"):
        _run(other, tmp_path / "r", resume=True)
    s = _run(face_frames_dir, tmp_path / "r", resume=True, resume_force=True, pcfg={"lr": 1e-3})
    assert s["start_step"] == 1 and s["finished"]
    # how the work is split may change (accumulation): no refusal
    _run(face_frames_dir, tmp_path / "r2", stop_after=1)
    assert _run(face_frames_dir, tmp_path / "r2", resume=True, pcfg={"accum_steps": 2})["start_step"] == 1


@pytest.mark.parametrize("damage", ["truncated_pointer", "pointer_to_deleted", "corrupt_optimizer", "no_state"])
def test_resume_falls_back_to_the_newest_usable_checkpoint(tmp_path, face_frames_dir, damage, capsys):
    out = tmp_path / "run"
    _run(face_frames_dir, out, stop_after=2)  # checkpoints step-1 and step-2, latest.json -> step-2
    ck = out / "checkpoints"
    expect = 1
    if damage == "truncated_pointer":
        (ck / "latest.json").write_text('{"checkpoint": "step-00')
        expect = 2  # the newest folder is still complete
    elif damage == "pointer_to_deleted":
        import shutil

        shutil.rmtree(ck / "step-0000002")
    elif damage == "corrupt_optimizer":
        (ck / "step-0000002" / "optimizer.pt").write_bytes(b"\0" * 100)
    else:
        (ck / "step-0000002" / "state.json").unlink()
    s = _run(face_frames_dir, out, resume=True)
    assert s["start_step"] == expect and s["finished"]
    if expect == 1 and damage != "pointer_to_deleted":
        assert "step-0000002" in capsys.readouterr().err  # the skipped checkpoint is named


def test_resume_with_only_broken_checkpoints_is_an_error(tmp_path, face_frames_dir):
    out = tmp_path / "run"
    _run(face_frames_dir, out, stop_after=1)
    (out / "checkpoints" / "step-0000001" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(MicronbertError, match="no usable checkpoint"):
        _run(face_frames_dir, out, resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, face_frames_dir, sig):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MICRONBERT_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "micronbert", "pretrain", "--preset", "test", "--frames", str(face_frames_dir),
           "--steps", "100000", "--batch-size", "2", "--log-every", "1", "--ckpt-every", "100000",
           "--out", str(out), "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "log.csv").is_file() and
                                          len((out / "log.csv").read_text().splitlines()) >= 3):
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted at step" in stdout
    pointer = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert pointer["step"] >= 2 and (out / "checkpoints" / pointer["checkpoint"] / "optimizer.pt").is_file()
    s = pretrain([str(face_frames_dir)], out, preset("test"),
                 PretrainConfig(steps=100000, batch_size=2, log_every=1, ckpt_every=100000), resume=True,
                 stop_after=1, show_progress=False, device="cpu")
    assert s["start_step"] == pointer["step"]


def test_a_corrupt_frame_is_skipped_and_reported(tmp_path, face_frames_dir, capsys):
    clip = tmp_path / "clip"
    clip.mkdir()
    for f in face_frames_dir.iterdir():
        (clip / f.name).write_bytes(f.read_bytes())
    (clip / "img4.jpg").write_bytes(b"\xff\xd8 truncated")
    s = _run(clip, tmp_path / "run", pcfg={"steps": 4, "batch_size": 8})  # 32 pairs over 15 anchors
    assert s["finished"]
    err = capsys.readouterr().err
    assert "img4.jpg" in err and err.count("img4.jpg") == 1  # reported once


def _tiny_cache(root, clips=2, frames=6, size=32):
    from micronbert.faces.cache import FaceCache

    cache = FaceCache(root)
    rng = np.random.default_rng(0)
    for i in range(clips):
        base = rng.integers(0, 255, (1, size, size, 3), dtype=np.uint8)
        clip = np.clip(base.astype(int) + np.arange(frames)[:, None, None, None] * 3, 0, 255).astype(np.uint8)
        cache.save("toy", f"sub{i}/clip", clip, np.arange(10, 10 + frames), meta={"onset": 10, "apex": 12,
                                                                                     "offset": 15})
    return root


def test_pretrain_and_shard_read_a_prepare_cache(tmp_path):
    from micronbert.cli import main
    from micronbert.data.shards import load_manifest

    cache = _tiny_cache(tmp_path / "cache")
    assert main(["pretrain", "--preset", "test", "--frames", str(cache), "--steps", "2", "--batch-size", "2",
                 "--warmup-steps", "1", "--log-every", "1", "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data"]["frames"] == 12 and len(run["data"]["sources"]) == 2
    assert main(["shard", "--frames", str(cache), "--out", str(tmp_path / "s"), "--size", "5",
                 "--img-size", "32"]) == 0
    m = load_manifest(tmp_path / "s")
    assert m["samples"] == 12 and {s["path"].endswith(".npz") for s in m["sources"]} == {True}


def test_pretraining_on_a_cache_places_the_face_prior_by_the_cache_margin(tmp_path):
    from micronbert.cli import main
    from micronbert.faces.cache import FaceCache

    cache = _tiny_cache(tmp_path / "cache")
    FaceCache(cache).check_settings({"size": 32, "margin": 0.3})
    for prior in ("face", "none"):
        assert main(["pretrain", "--preset", "test", "--frames", str(cache), "--steps", "1", "--batch-size", "2",
                     "--warmup-steps", "1", "--poi-prior", prior, "--out", str(tmp_path / prior),
                     "--device", "cpu"]) == 0
    placed = json.loads((tmp_path / "face" / "config.json").read_text())["model"]
    assert placed["poi_prior"] == "face" and placed["poi_prior_margin"] == 0.3
    # without a prior the margin means nothing: the config (and a resume's check) stays as it was
    assert json.loads((tmp_path / "none" / "config.json").read_text())["model"]["poi_prior_margin"] == 0.15
