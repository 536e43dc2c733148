import csv
import json
import os
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from micronbert.config import PretrainConfig, preset
from micronbert.data.shards import write_shards
from micronbert.model.flops import pretrain_step_flops
from micronbert.train.pretrain import pretrain
from torchrun_helper import run_torchrun


def _log(out):
    with open(out / "log.csv") as fh:
        return list(csv.DictReader(fh))


def _assert_close(a_dir, b_dir, atol):
    a, b = load_file(str(a_dir / "model.safetensors")), load_file(str(b_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, worst
    return worst


def test_accumulation_of_two_half_batches_equals_one_full_batch(tmp_path, face_frames_dir):
    # No swap and no crops: the loss is then a deterministic function of the pairs, so 2 × (B/2) with
    # accumulation must give the step that B gives (up to float summation order).
    cfg = preset("test", use_poi=False)
    base = dict(steps=3, batch_size=4, warmup_steps=1, log_every=1, ckpt_every=100, seed=2, use_swap=False)
    pretrain([str(face_frames_dir)], tmp_path / "one", cfg, PretrainConfig(**base), show_progress=False)
    pretrain([str(face_frames_dir)], tmp_path / "acc", cfg, PretrainConfig(**base, accum_steps=2), show_progress=False)
    _assert_close(tmp_path / "one", tmp_path / "acc", 1e-5)
    la, lb = _log(tmp_path / "one"), _log(tmp_path / "acc")
    for ra, rb in zip(la, lb):
        assert ra["lr"] == rb["lr"] and abs(float(ra["loss"]) - float(rb["loss"])) < 1e-5


def _cli_configs(extra):
    from micronbert.cli import build_parser
    from micronbert.commands.pretrain import pretrain_configs

    return pretrain_configs(build_parser().parse_args(["pretrain", "--out", "x", *extra]))


def _live_members(group: int) -> list[int]:
    """Processes (not zombies) of a process group, from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def test_a_launch_past_its_time_is_killed_with_all_its_children(monkeypatch):
    # A torchrun that outlives its limit must not leave its ranks loading the machine for the next
    # tests, and must fail saying so (a bare subprocess timeout kills the launcher only, silently).
    from torchrun_helper import run_group

    seen = {}
    real_killpg = os.killpg

    def killpg(group, sig):
        seen["before"] = _live_members(group)
        real_killpg(group, sig)
        seen["group"] = group

    monkeypatch.setattr(os, "killpg", killpg)
    script = "sleep 60 & sleep 60 & echo started; wait"  # a launcher with two children, like torchrun
    with pytest.raises(pytest.fail.Exception, match=r"(?s)ran past 1 s .*started"):
        run_group(["bash", "-c", script], timeout=1, what="launch")
    assert len(seen["before"]) == 3  # bash and its two children were running
    time.sleep(0.5)  # SIGKILL is delivered asynchronously
    assert _live_members(seen["group"]) == []


@pytest.mark.slow
def test_resume_on_two_ranks_continues_a_one_rank_run(tmp_path, face_frames_dir):
    """1 rank × accumulation 2 for 4 steps, then resumed under torchrun on 2 gloo ranks × accumulation 1
    to step 8: the same global batches, swap masks and crops (drawn per global micro-batch), the same
    learning rate at every step, so the same weights as an uninterrupted 1-rank run up to float error."""
    common = ["--preset", "test", "--steps", "8", "--batch-size", "4", "--warmup-steps", "2", "--log-every", "1",
              "--ckpt-every", "4", "--seed", "5", "--lr", "1e-3"]
    cfg, pcfg1 = _cli_configs([*common, "--accum-steps", "2"])
    frames = [str(face_frames_dir)]
    pretrain(frames, tmp_path / "whole", cfg, pcfg1, show_progress=False, device="cpu")
    part = pretrain(frames, tmp_path / "moved", cfg, pcfg1, stop_after=4, show_progress=False, device="cpu")
    assert part["steps_run"] == 4 and not part["finished"]

    run_torchrun(["pretrain", *common, "--accum-steps", "1", "--frames", *frames, "--out", str(tmp_path / "moved"),
                  "--device", "cpu", "--resume"])
    assert json.loads((tmp_path / "moved" / "run.json").read_text())["world_size"] == 2

    whole, moved = _log(tmp_path / "whole"), _log(tmp_path / "moved")
    assert [r["step"] for r in moved] == [str(s) for s in range(1, 9)]  # steps 1-4 kept, 5-8 from the 2-rank run
    assert [r["lr"] for r in moved] == [r["lr"] for r in whole]  # the schedule continues where it stopped
    assert [r["epoch"] for r in moved] == [r["epoch"] for r in whole]  # same pairs consumed per step
    for a, b in zip(whole, moved):
        assert abs(float(a["loss"]) - float(b["loss"])) < 1e-4, (a, b)
    worst = _assert_close(tmp_path / "whole", tmp_path / "moved", 1e-4)
    assert worst < 1e-4


@pytest.mark.slow
def test_two_ranks_with_accumulation_equal_one_rank_with_the_same_global_batch(tmp_path, face_frames_dir):
    """torchrun, 2 gloo ranks × accumulation 2 (each no_sync() context entered once) against 1 rank ×
    accumulation 4: the same four global micro-batches, masks and crops, so the same weights. DMA's Q
    and K are tied, so to_k gets no gradient: DDP must still run (to_k is frozen, not left unused)."""
    common = ["--preset", "test", "--steps", "2", "--batch-size", "4", "--warmup-steps", "1", "--log-every", "1",
              "--seed", "3", "--lr", "1e-3", "--dma-tie-qk"]
    cfg, pcfg = _cli_configs([*common, "--accum-steps", "4"])
    assert cfg.dma_tie_qk
    frames = [str(face_frames_dir)]
    pretrain(frames, tmp_path / "one", cfg, pcfg, show_progress=False, device="cpu")

    run_torchrun(["pretrain", *common, "--accum-steps", "2", "--frames", *frames, "--out", str(tmp_path / "two"),
                  "--device", "cpu"])
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["world_size"] == 2 and run["pretrain"]["accum_steps"] == 2
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["lr"] for r in one] == [r["lr"] for r in two]
    for a, b in zip(one, two):
        assert abs(float(a["loss"]) - float(b["loss"])) < 1e-5, (a, b)
    _assert_close(tmp_path / "one", tmp_path / "two", 1e-4)  # all-reduce sums in another order
    # the tied key projection kept its initial value while to_q trained
    from micronbert.model.mubert import MicronBertModel

    torch.manual_seed(3)
    init = MicronBertModel(cfg).state_dict()
    w = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert torch.equal(w["dma.to_k.weight"], init["dma.to_k.weight"])
    assert not torch.equal(w["dma.to_q.weight"], init["dma.to_q.weight"])


def test_pretraining_on_shards_resumes_exactly(tmp_path, face_frames_dir):
    shards = tmp_path / "shards"
    write_shards([str(face_frames_dir)], shards, size=4, img_size=32)
    cfg = preset("test")
    pcfg = PretrainConfig(steps=6, batch_size=2, warmup_steps=1, log_every=3, ckpt_every=3, seed=1)
    s = pretrain([str(shards)], tmp_path / "a", cfg, pcfg, show_progress=False)
    assert s["finished"] and s["pairs"] == 16
    pretrain([str(shards)], tmp_path / "b", cfg, pcfg, stop_after=3, show_progress=False)
    pretrain([str(shards)], tmp_path / "b", cfg, pcfg, resume=True, show_progress=False)
    _assert_close(tmp_path / "a", tmp_path / "b", 0.0)  # the stream skipped to step 3 exactly
    assert [r["loss"] for r in _log(tmp_path / "a")] == [r["loss"] for r in _log(tmp_path / "b")]


@pytest.mark.parametrize("use_poi,signal,use_dma", [(True, "cosine", True), (False, "cosine", True),
                                                    (False, "paper", True), (True, "relative", True),
                                                    (False, "paper", False)])
def test_analytic_step_flops_match_a_counted_step(use_poi, signal, use_dma):
    # every DMA change signal does different N×N work (none for "cosine"): the count follows the model
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from micronbert.model.mubert import MicronBertModel

    cfg = preset("test", dma_chunk=0, use_poi=use_poi, dma_signal=signal, use_dma=use_dma)  # naive DMA: the counter sees the model's products
    pcfg = PretrainConfig()
    model = MicronBertModel(cfg)
    x = torch.randn(1, 3, cfg.img_size, cfg.img_size)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.pretrain_losses(x, x.flip(-1), pcfg)["loss"].backward()
    analytic = pretrain_step_flops(cfg, pcfg, 1)
    assert abs(analytic / counter.get_total_flops() - 1) < 0.01
    assert pretrain_step_flops(cfg, pcfg, 8) == 8 * analytic


def test_every_dma_path_matches_the_naive_one():
    # The fused CPU path (training), the chunked path (CUDA, bf16, inference) and the naive reference.
    from micronbert.model.dma import _DiagonalAttention, diagonal_attention, diagonal_attention_naive

    torch.manual_seed(0)
    q = torch.randn(2, 2, 70, 16, requires_grad=True)
    k = torch.randn(2, 2, 70, 16, requires_grad=True)
    up = torch.randn(2, 2, 70)
    grads = []
    for fn in (lambda: diagonal_attention(q, k, 0.3, 32), lambda: _DiagonalAttention.apply(q, k, 0.3, 32),
               lambda: diagonal_attention_naive(q, k, 0.3)):
        q.grad = k.grad = None
        out = fn()
        (out * up).sum().backward()
        grads.append((out.detach(), q.grad.clone(), k.grad.clone()))
    for got in grads[:2]:
        for a, b in zip(got, grads[2]):
            assert torch.allclose(a, b, atol=1e-5, rtol=0)
    with torch.no_grad():  # inference takes the chunked path
        assert torch.allclose(diagonal_attention(q, k, 0.3, 32), grads[2][0], atol=1e-5, rtol=0)
    # bf16 inputs take the chunked path with fp32 sums
    qb, kb = q.detach().bfloat16().requires_grad_(), k.detach().bfloat16().requires_grad_()
    (diagonal_attention(qb, kb, 0.3, 32).float() * up).sum().backward()
    assert torch.allclose(qb.grad.float(), grads[2][1], atol=0.05) and torch.allclose(kb.grad.float(), grads[2][2], atol=0.05)
