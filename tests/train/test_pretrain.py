import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from micronbert.config import PretrainConfig, preset
from micronbert.data.pairs import PairSchedule, discover_sources
from micronbert.errors import MicronbertError
from micronbert.train.pretrain import pretrain
from torchrun_helper import run_torchrun


def _log(out):
    with open(out / "log.csv") as fh:
        return list(csv.DictReader(fh))


def test_tiny_pretraining_on_real_faces_reduces_reconstruction_loss(tmp_path, face_video):
    # The tiny preset at 64 px (64 patches, not 196): 0.29 of the FLOPs of 112 px, and the loss still
    # falls to ~0.3 of its first value in 30 steps (seeds 0-2), well past the bar below.
    pcfg = PretrainConfig(steps=30, batch_size=4, warmup_steps=5, lr=5e-4, log_every=5, ckpt_every=100, seed=0)
    summary = pretrain([str(face_video)], tmp_path / "run", preset("tiny", img_size=64), pcfg, show_progress=False)
    assert summary["finished"]
    rows = _log(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20, 25, 30]
    first, last = float(rows[0]["loss_rec"]), float(rows[-1]["loss_rec"])
    assert last < 0.6 * first, (first, last)
    assert all(float(r["loss_agg"]) >= 0 for r in rows)  # every term is logged
    assert (tmp_path / "run" / "model.safetensors").is_file() and (tmp_path / "run" / "config.json").is_file()


def _weights(path):
    return load_file(str(path))


def test_resume_gives_the_uninterrupted_result(tmp_path, face_frames_dir):
    cfg = preset("test")
    pcfg = PretrainConfig(steps=12, batch_size=4, warmup_steps=2, log_every=2, ckpt_every=4, seed=3)
    pretrain([str(face_frames_dir)], tmp_path / "a", cfg, pcfg, show_progress=False)
    part = pretrain([str(face_frames_dir)], tmp_path / "b", cfg, pcfg, stop_after=6, show_progress=False)
    assert not part["finished"] and not (tmp_path / "b" / "model.safetensors").exists()
    with pytest.raises(MicronbertError, match="--resume"):
        pretrain([str(face_frames_dir)], tmp_path / "b", cfg, pcfg, show_progress=False)
    rest = pretrain([str(face_frames_dir)], tmp_path / "b", cfg, pcfg, resume=True, show_progress=False)
    assert rest["start_step"] == 6 and rest["finished"]
    a, b = _weights(tmp_path / "a" / "model.safetensors"), _weights(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la, lb = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    # only complete checkpoints are kept, no temp folders
    names = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert names == ["latest.json", "step-0000008", "step-0000012"]


def test_schedule_splits_the_global_batch_across_ranks(face_frames_dir):
    sources = discover_sources([face_frames_dir], fps=30)
    sched = PairSchedule(sources, batch_size=8, delta_s=(0.04, 0.25), seed=1)
    for step in (0, 5):
        whole = sched.specs(step)
        halves = sched.specs(step, rank=0, world=2) + sched.specs(step, rank=1, world=2)
        assert halves == whole  # disjoint shares that add up to the same global batch
        for src, t, t2, _ in whole:
            assert 1 <= t2 - t <= round(0.25 * 30)
    assert sched.specs(3) == PairSchedule(sources, 8, (0.04, 0.25), seed=1).specs(3)
    assert sched.specs(3) != PairSchedule(sources, 8, (0.04, 0.25), seed=2).specs(3)


def test_sources_from_videos_folders_and_nested_folders(tmp_path, face_video, face_frames_dir):
    nested = tmp_path / "nest"
    (nested / "clipA").mkdir(parents=True)
    for f in sorted(face_frames_dir.iterdir())[:3]:
        (nested / "clipA" / f.name).write_bytes(f.read_bytes())
    sources = discover_sources([face_video, face_frames_dir, nested], fps=25)
    kinds = [(s.kind, s.n_frames) for s in sources]
    assert kinds[0][0] == "video" and kinds[0][1] == 72
    assert ("folder", 16) in kinds and ("folder", 3) in kinds
    assert sources[1].files[:3] == ["img1.jpg", "img2.jpg", "img3.jpg"]  # numeric, not lexicographic order
    assert sources[1].files[9] == "img10.jpg"
    with pytest.raises(MicronbertError, match="not found"):
        discover_sources([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MicronbertError, match="no videos or frame folders"):
        discover_sources([tmp_path / "empty"])


@pytest.mark.slow
def test_two_process_gloo_ddp_pretraining(tmp_path, face_frames_dir):
    out = tmp_path / "ddp"
    run_torchrun(["pretrain", "--preset", "test", "--frames", str(face_frames_dir), "--steps", "4", "--batch-size",
                  "4", "--log-every", "2", "--warmup-steps", "1", "--out", str(out), "--device", "cpu"])
    import json

    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    rows = _log(out)
    assert [r["step"] for r in rows] == ["2", "4"]
    assert np.isfinite([float(r["loss"]) for r in rows]).all()
    assert (out / "model.safetensors").is_file()
