"""Self-supervised pretraining of μ-BERT on unlabeled frame pairs.

Single process, or `torchrun --nproc_per_node N micronbert pretrain ...` (DDP, gloo on CPU, nccl on
GPU). `batch_size` is the global batch per optimizer step, split over ranks and accumulation steps, so
the schedule (and a resume with a different number of ranks) does not depend on the hardware.
`--frames` takes videos/frame folders (exact, world-size independent PairSchedule) or shard folders
from `micronbert shard` (streamed, see micronbert/data/shard_stream.py). Swap masks and crops are drawn per
global micro-batch, so 1 rank × accumulation 2 and 2 ranks × accumulation 1 train identically.

Out folder:
    config.json, model.safetensors      the final model (what `--init`/`--weights` take)
    checkpoints/step-XXXXXXX/           model.safetensors, optimizer.pt (tensors only), state.json
    checkpoints/latest.json             pointer to the newest complete checkpoint (written last)
                                        (written, checked and resumed by micronbert/train/checkpoints.py)
    log.csv                             every logged step: losses, lr, pairs/s
"""
from __future__ import annotations

import contextlib
import csv
import gc
import io
import itertools
import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch import nn

from micronbert.config import ModelConfig, PretrainConfig, save_json, to_dict
from micronbert.data.pairs import FrameStore, PairBatches, PairSchedule, discover_sources
from micronbert.data.shard_stream import ShardPairStream
from micronbert.data.shards import is_shard_dir
from micronbert.errors import MicronbertError
from micronbert.model.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_model_dir, save_weights
from micronbert.model.mubert import MicronBertModel, normalise_images
from micronbert.train import distributed as D
from micronbert.train.checkpoints import resume_step, save_checkpoint
from micronbert.train.schedule import param_groups, warmup_cosine
from micronbert.utils.io import atomic_write_text
from micronbert.utils.progress import progress

LOG_FIELDS = ["step", "epoch", "lr", "loss", "loss_rec", "loss_rec_swapped", "loss_agg", "loss_identity", "pairs_per_s", "elapsed_s"]


class PretrainStep(nn.Module):
    """The module DDP wraps: uint8 pair batch in, loss terms out."""

    def __init__(self, model: MicronBertModel, pcfg: PretrainConfig):
        super().__init__()
        self.model, self.pcfg = model, pcfg

    def forward(self, frames_t: torch.Tensor, frames_tp: torch.Tensor, generator: torch.Generator):
        return self.model.pretrain_losses(normalise_images(frames_t), normalise_images(frames_tp), self.pcfg, generator)


def _step_generator(seed: int, step: int, rank: int, micro: int, device: torch.device) -> torch.Generator:
    # Swap masks and crops depend only on (seed, step, micro-batch): resume reproduces them. Callers pass
    # rank=0 and the GLOBAL micro-batch index (rank · accum_steps + m), which names the same samples
    # whatever the world size, so 1 rank × 2 accumulation steps and 2 ranks × 1 draw the same masks.
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 1009 + rank * 101 + micro) % (2**63))
    return g


def freeze_unused_parameters(model: MicronBertModel, cfg: ModelConfig) -> list[str]:
    """Parameters the loss never reaches get requires_grad=False, so DDP (which refuses parameters
    without a gradient) needs no find_unused_parameters scan, and AdamW's weight decay leaves them as
    they are. Today: with dma_tie_qk the DMA uses to_q for the keys, so to_k is unused; without
    dma_project_qk neither is used."""
    unused = ["to_q", "to_k"] if not cfg.dma_project_qk else ["to_k"] if cfg.dma_tie_qk else []
    frozen = []
    for part in unused:
        for name, p in getattr(model.dma, part).named_parameters():
            p.requires_grad_(False)
            frozen.append(f"dma.{part}.{name}")
    return frozen


def build_optimizer(model: nn.Module, pcfg: PretrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel over all parameters where this torch supports it (CUDA, and CPU from
    torch 2.4), else the multi-tensor (foreach) version: never the per-parameter Python loop."""
    groups = param_groups(model, pcfg.weight_decay)
    kw = dict(lr=pcfg.lr, betas=tuple(pcfg.betas))
    try:
        return torch.optim.AdamW(groups, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(param_groups(model, pcfg.weight_decay), foreach=True, **kw)


def cpu_has_bf16() -> bool:
    """Native bf16 matrix units (AVX512-BF16 or AMX): only then is CPU autocast faster than float32."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_for(device: torch.device, pcfg: PretrainConfig, cpu_bf16: bool = False):
    if pcfg.bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_bf16 and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(wrapped: nn.Module, model: MicronBertModel, optimizer, fa: torch.Tensor, fb: torch.Tensor,
               pcfg: PretrainConfig, step: int, *, rank: int = 0, distributed: bool = False,
               autocast=None) -> dict[str, torch.Tensor]:
    """One optimizer step on this rank's share (fa, fb) of the global batch: accumulation over
    pcfg.accum_steps micro-batches, clipping, AdamW, EMA teacher. Returns the detached loss terms
    averaged over the micro-batches, still on the device: no host-device sync happens here."""
    micro = fa.shape[0] // pcfg.accum_steps
    totals: dict[str, torch.Tensor] = {}
    for m in range(pcfg.accum_steps):
        sl = slice(m * micro, (m + 1) * micro)
        sync = (m == pcfg.accum_steps - 1) or not distributed
        gen = _step_generator(pcfg.seed, step, 0, rank * pcfg.accum_steps + m, fa.device)
        # One no_sync() context around both forward and backward: a context manager object can be
        # entered only once, and DDP skips the all-reduce only when both happen inside it.
        with (contextlib.nullcontext() if sync else wrapped.no_sync()):
            with (autocast or contextlib.nullcontext()):
                losses = wrapped(fa[sl], fb[sl], gen)
            (losses["loss"] / pcfg.accum_steps).backward()
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + v.detach() / pcfg.accum_steps
    if pcfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), pcfg.grad_clip, foreach=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if model.agreement is not None:
        model.agreement.update_teacher(model.encoder, pcfg.ema_decay)
    return totals


def _rewrite_log(path: Path, upto_step: int) -> None:
    """On resume, drop log rows past the checkpoint (they will be logged again)."""
    if not path.is_file():
        return
    rows = list(csv.DictReader(path.open()))
    keep = [r for r in rows if int(r["step"]) <= upto_step]
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=LOG_FIELDS)
    w.writeheader()
    w.writerows(keep)
    atomic_write_text(path, text.getvalue())


def pretrain(frames: list[str], out: str | os.PathLike, model_cfg: ModelConfig, pcfg: PretrainConfig, *,
             resume: bool = False, init: str | None = None, device: str | None = None, fps: float | None = None,
             stop_after: int | None = None, show_progress: bool = True, cpu_bf16: bool = False,
             resume_force: bool = False, shuffle_buffer: int = 4096, sources=None) -> dict:
    """Run pretraining; returns a summary dict. `stop_after` ends the run early after that many steps
    (as if interrupted; used to test resume). `--resume` refuses a run whose model, data or training
    settings differ from the checkpoint's unless `resume_force`. SIGINT/SIGTERM end the run after the
    current step with a checkpoint (summary["interrupted"]). `sources`: ready FrameSource objects
    (e.g. face-cache clips) used instead of discovering `frames`."""
    info = D.setup(device)
    out = Path(out)
    torch.manual_seed(pcfg.seed)
    shard_dirs = [] if sources is not None else [str(f) for f in frames if is_shard_dir(f)]
    if shard_dirs and len(shard_dirs) != len(frames):
        raise MicronbertError("--frames: give either shard folders (with manifest.json) or videos/frame folders, "
                              "not both")
    if shard_dirs:
        sources, schedule = [], None
        data_info = {"shards": shard_dirs, "shuffle_buffer": shuffle_buffer}
    else:
        sources = sources if sources is not None else discover_sources(frames, fps or pcfg.fps)
        schedule = PairSchedule(sources, pcfg.batch_size, (pcfg.delta_min_s, pcfg.delta_max_s), pcfg.seed,
                                pcfg.hflip)
        data_info = {"sources": [str(s.path) for s in sources], "anchors": len(schedule),
                     "frames": sum(s.n_frames for s in sources)}
    if pcfg.batch_size % (info.world * pcfg.accum_steps):
        raise MicronbertError(f"batch size {pcfg.batch_size} must be divisible by ranks × accumulation steps "
                              f"({info.world} × {pcfg.accum_steps})")

    model = MicronBertModel(model_cfg).to(info.device)
    freeze_unused_parameters(model, model_cfg)
    if init:
        state, init_cfg, _ = load_model_dir(init)
        if to_dict(init_cfg) != to_dict(model_cfg):
            raise MicronbertError(f"--init {init}: its config differs from this run's model config")
        model.load_state_dict(state)
    step_module = PretrainStep(model, pcfg)
    optimizer = build_optimizer(model, pcfg, info.device)
    start = resume_step(out, model, optimizer, info.device, model_cfg, pcfg, data_info, resume=resume,
                        resume_force=resume_force, is_main=info.is_main)

    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_json(out / "run.json", model=model_cfg, pretrain=pcfg,
                  data=data_info,
                  world_size=info.world)
        _rewrite_log(out / "log.csv", start)

    wrapped: nn.Module = step_module
    if info.enabled:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            step_module, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    if pcfg.compile:
        wrapped = torch.compile(wrapped)

    last_step = pcfg.steps if stop_after is None else min(pcfg.steps, start + stop_after)
    if shard_dirs:
        trace = os.environ.get("MICRONBERT_TRACE_SHARDS")
        local_batches = ShardPairStream(shard_dirs, pcfg.batch_size // info.world, model_cfg.img_size,
                                        (pcfg.delta_min_s, pcfg.delta_max_s), pcfg.seed, pcfg.hflip, info.rank,
                                        info.world, start_step=start, buffer=shuffle_buffer, trace=trace)
        n_pairs = local_batches.samples
    else:
        local_batches = PairBatches(schedule, FrameStore(sources, model_cfg.img_size), start, last_step,
                                    info.rank, info.world)
        n_pairs = len(schedule)
    loader = torch.utils.data.DataLoader(local_batches, batch_size=None, shuffle=False,
                                         num_workers=pcfg.num_workers, pin_memory=info.device.type == "cuda",
                                         persistent_workers=False)
    autocast = autocast_for(info.device, pcfg, cpu_bf16)
    log_path = out / "log.csv"
    log_file = None
    if info.is_main:
        new = not log_path.is_file() or log_path.stat().st_size == 0
        log_file = log_path.open("a", newline="")
        writer = csv.DictWriter(log_file, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()

    bar = progress(total=last_step - start, desc="pretrain", unit="step", disable_override=not (show_progress and info.is_main))
    t0 = time.perf_counter()
    last_log_t, last_log_step = t0, start
    logged: dict[str, float] = {}
    model.train()
    completed = start
    stop = _StopSignals()
    for step_i, (fa, fb) in enumerate(itertools.islice(loader, last_step - start)):
        step = start + step_i
        lr = warmup_cosine(step, pcfg.steps, pcfg.lr, pcfg.warmup_steps, pcfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        fa = fa.to(info.device, non_blocking=True)
        fb = fb.to(info.device, non_blocking=True)
        totals = train_step(wrapped, model, optimizer, fa, fb, pcfg, step, rank=info.rank,
                            distributed=info.enabled, autocast=autocast)
        done = completed = step + 1
        bar.update(1)
        if done % pcfg.log_every == 0 or done == last_step:
            # The only host-device sync of the step, and only on logging steps.
            vals = {k: float(D.mean_across(v, info)) for k, v in totals.items()}
            now = time.perf_counter()
            pairs_s = (done - last_log_step) * pcfg.batch_size / max(now - last_log_t, 1e-9)
            last_log_t, last_log_step = now, done
            logged = {"step": done, "epoch": round(done * pcfg.batch_size / n_pairs, 4), "lr": lr,
                      **{k: round(vals.get(k, float("nan")), 6) for k in ("loss", "loss_rec", "loss_rec_swapped", "loss_agg", "loss_identity")},
                      "pairs_per_s": round(pairs_s, 2), "elapsed_s": round(now - t0, 2)}
            if info.is_main:
                writer.writerow(logged)
                log_file.flush()
                bar.set_postfix(loss=f"{vals['loss']:.4f}", pairs_s=f"{pairs_s:.1f}")
        interrupted = stop.agreed(info)
        if done % pcfg.ckpt_every == 0 or done == last_step or interrupted:
            if info.is_main:
                save_checkpoint(out, done, model, optimizer,
                                 {"step": done, "model": to_dict(model_cfg), "pretrain": to_dict(pcfg),
                                  "data": data_info, "world_size": info.world}, pcfg.keep_checkpoints)
            D.barrier(info)
        if interrupted:
            break
    stop.restore()
    bar.close()
    if log_file:
        log_file.close()
    finished = completed >= pcfg.steps
    if info.is_main and finished:
        save_weights(out / WEIGHTS_NAME, model.state_dict())
        save_json(out / CONFIG_NAME, model=model_cfg, pretrain=pcfg)
    D.barrier(info)
    # The DDP wrapper (its reducer holds the process group) and the loader go before the group does: a gloo
    # group torn down under a live reducer aborted one rank at exit, once, on a loaded machine.
    del wrapped, loader
    gc.collect()  # in case the wrapper sits in a reference cycle
    D.cleanup(info)
    return {"out": str(out), "start_step": start, "steps_run": completed - start,
            "finished": finished, "last_log": logged, "pairs": n_pairs, "interrupted": stop.signal is not None}


class _StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current step (with a checkpoint) instead of dying
    mid-step; a second signal of the same kind falls back to the default (immediate) behaviour."""

    def __init__(self):
        self.signal = None
        self._old = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._old = {}

    def _handle(self, signum, frame):
        if self.signal is not None:
            self.restore()
            signal.raise_signal(signum)
            return
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint",
              file=sys.stderr)

    def agreed(self, info) -> bool:
        """Whether any rank was asked to stop (all ranks then stop at the same step)."""
        flag = torch.tensor([0.0 if self.signal is None else 1.0])
        if info.enabled:
            flag = flag.to(info.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
