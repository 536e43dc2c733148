"""Pretraining checkpoints: writing them atomically, finding the newest usable one, and deciding
whether a run may resume from it.

    OUT/checkpoints/step-XXXXXXX/   model.safetensors, optimizer.pt (tensors only), state.json
    OUT/checkpoints/latest.json     pointer to the newest complete checkpoint (written last)

A damaged checkpoint (truncated, missing file, latest.json naming a deleted folder) is passed over
for the next older one; `--resume` refuses a run whose model, data or training settings differ from
the checkpoint's unless forced.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from micronbert.config import ModelConfig, PretrainConfig, to_dict
from micronbert.errors import MicronbertError
from micronbert.model.checkpoint import WEIGHTS_NAME, load_weights, save_weights
from micronbert.utils.io import atomic_write_json


def checkpoint_candidates(out: Path) -> list[Path]:
    """Checkpoints to try, best first: the one latest.json names, then every step-* folder, newest first
    (latest.json may be missing, truncated, or name a deleted folder)."""
    ckdir = out / "checkpoints"
    found = sorted((p for p in ckdir.glob("step-*") if p.is_dir()), reverse=True)
    try:
        named = ckdir / json.loads((ckdir / "latest.json").read_text())["checkpoint"]
        if named in found:
            found.remove(named)
            found.insert(0, named)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return found


def latest_checkpoint(out: Path) -> Path | None:
    found = checkpoint_candidates(out)
    return found[0] if found else None


def load_checkpoint(out: Path, model: nn.Module, optimizer, device) -> tuple[Path, dict] | None:
    """Load the newest checkpoint that loads completely (state, weights, optimizer); say which ones
    were passed over and why. None when there is none; an error when all are unusable."""
    tried = []
    for path in checkpoint_candidates(out):
        try:
            state = json.loads((path / "state.json").read_text())
            weights = load_weights(path / WEIGHTS_NAME)
            opt_state = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
            model.load_state_dict(weights)
            optimizer.load_state_dict(opt_state)
            int(state["step"])
        except Exception as exc:  # any damage means "not this one": try the next older checkpoint
            tried.append(f"{path.name} ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
            continue
        if tried:
            print(f"warning: unusable checkpoints skipped: {'; '.join(tried)}; resuming from {path.name}",
                  file=sys.stderr)
        return path, state
    if tried:
        raise MicronbertError(f"no usable checkpoint in {out / 'checkpoints'}: {'; '.join(tried)}")
    return None


# Pretraining settings that may change on resume: how the work is split and reported, not what is learnt.
RESUMABLE_CHANGES = {"accum_steps", "num_workers", "log_every", "ckpt_every", "keep_checkpoints", "compile"}


def settings_differences(state: dict, model_cfg: ModelConfig, pcfg: PretrainConfig, data_info: dict) -> list[str]:
    """What differs between a checkpoint's run and this one (model, data, pretraining settings)."""
    diffs = []
    old, new = state.get("model") or {}, to_dict(model_cfg)
    # a field missing from the checkpoint is one added to ModelConfig since: not a change of this run
    diffs += [f"model.{k}: {old[k]!r} -> {new[k]!r}" for k in new if k in old and _norm(old[k]) != _norm(new[k])]
    old, new = state.get("pretrain") or {}, to_dict(pcfg)
    for k in new:
        if k not in RESUMABLE_CHANGES and k in old and _norm(old[k]) != _norm(new[k]):
            diffs.append(f"{k}: {old[k]!r} -> {new[k]!r}")
    if "data" in state and _norm(state["data"]) != _norm(data_info):
        diffs.append("data: other frames/shards than the run being resumed")
    return diffs


def _norm(v):
    return json.loads(json.dumps(v))  # tuples and lists compare equal


def resume_step(out: Path, model: nn.Module, optimizer, device, model_cfg: ModelConfig, pcfg: PretrainConfig,
                data_info: dict, *, resume: bool, resume_force: bool, is_main: bool) -> int:
    """The step this run starts at: that of the newest usable checkpoint (loaded into model and
    optimizer) with --resume, else 0. Refuses to resume changed settings unless `resume_force`, and
    to start afresh over an existing run."""
    loaded = load_checkpoint(out, model, optimizer, device) if resume else None
    if loaded is not None:
        latest, state = loaded
        if "data" not in state and (out / "run.json").is_file():  # checkpoints written before state had it
            try:
                state["data"] = json.loads((out / "run.json").read_text()).get("data")
            except (OSError, ValueError):
                pass
            if state.get("data") is None:
                state.pop("data")
        diffs = settings_differences(state, model_cfg, pcfg, data_info)
        if diffs and not resume_force:
            raise MicronbertError(f"cannot resume {latest}: this run differs ({'; '.join(diffs)}); use the "
                                  f"same settings, another --out, or --resume-force to continue anyway")
        if diffs and is_main:
            print(f"warning: resuming with changed settings ({'; '.join(diffs)})", file=sys.stderr)
        return int(state["step"])
    if resume and is_main:
        print(f"no checkpoint in {out / 'checkpoints'}; starting from step 0")
    elif not resume and latest_checkpoint(out) is not None:
        raise MicronbertError(f"{out} already holds a pretraining run; pass --resume to continue it "
                              f"or choose another --out")
    return 0


def save_checkpoint(out: Path, step: int, model: nn.Module, optimizer, state: dict, keep: int) -> None:
    """Write step-XXXXXXX atomically (the folder appears complete or not at all), point latest.json
    at it, and keep only the newest `keep` checkpoints."""
    ckdir = out / "checkpoints"
    name = f"step-{step:07d}"
    tmp = ckdir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(tmp / WEIGHTS_NAME, model.state_dict())
    buf = io.BytesIO()
    torch.save(optimizer.state_dict(), buf)
    (tmp / "optimizer.pt").write_bytes(buf.getvalue())
    atomic_write_json(tmp / "state.json", state)
    final = ckdir / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)  # the folder appears complete or not at all
    atomic_write_json(ckdir / "latest.json", {"checkpoint": name, "step": step})
    done = sorted(p for p in ckdir.glob("step-*") if p.is_dir())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
