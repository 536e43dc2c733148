"""The deployable classifier folder: save, load and apply it, for every model type.

    model.safetensors  state dict (MicronBertClassifier: backbone.*, head.*; flow-cnn: its own keys)
    config.json        {"model_type": "micronbert" | "flow-cnn", "model": {...}, "classes": [...],
                        "protocol": name, "finetune": {recipe}, "input": {"size": S, "aligned": bool, "margin": crop
                        margin of the aligned faces it was trained on, when known}}

Inference needs only this module (and the model modules it builds): it never imports training code.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from micronbert.config import to_dict
from micronbert.errors import MicronbertError
from micronbert.model.checkpoint import (CONFIG_NAME, WEIGHTS_NAME, load_state_checked, load_weights,
                                         model_config_from_dict, read_config, resolve_weights, save_weights)
from micronbert.utils.io import atomic_write_json

MODEL_TYPES = ("micronbert", "flow-cnn")


def to_float(images: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    x = torch.as_tensor(images).to(device)
    return x.permute(0, 3, 1, 2).float() / 255.0


def save_classifier(out_dir, model: nn.Module, classes: Sequence[str], protocol: str,
                    recipe, aligned: bool = True, margin: float | None = None, **extra) -> Path:
    """Write model.safetensors + config.json (see the module doc) atomically; `recipe` is the fine-tuning
    recipe (a dataclass or its dict); `margin` the crop margin of the training faces (prediction aligns
    new faces with it)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_type = getattr(model, "model_type", "micronbert")
    cfg = model.cfg
    cfg_dict = to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    size = cfg_dict.get("img_size") or cfg_dict.get("input_size")
    recipe = to_dict(recipe) if dataclasses.is_dataclass(recipe) else dict(recipe)
    inp = {"size": int(size), "aligned": bool(aligned), **({} if margin is None else {"margin": float(margin)})}
    save_weights(out_dir / WEIGHTS_NAME, model.state_dict())
    atomic_write_json(out_dir / CONFIG_NAME, {
        "model_type": model_type, "model": cfg_dict, "classes": list(classes), "protocol": protocol,
        "finetune": recipe, "input": inp, **extra})
    return out_dir


def build_classifier(config: dict, source: str) -> nn.Module:
    """An untrained classifier of the architecture a classifier config.json describes."""
    model_type = config.get("model_type", "micronbert")
    n_classes = len(config["classes"])
    if model_type == "micronbert":
        from micronbert.model.heads import MicronBertClassifier

        cfg = model_config_from_dict(config["model"], source)
        return MicronBertClassifier(cfg, n_classes, float(config.get("finetune", {}).get("dropout", 0.1)))
    if model_type == "flow-cnn":
        from micronbert.model.flow_cnn import FlowCNN, flow_config_from_saved

        return FlowCNN(flow_config_from_saved(config["model"], source), n_classes)
    raise MicronbertError(f"{source}: unknown model_type {model_type!r} (known: {MODEL_TYPES})")


def load_classifier(path, device: str | torch.device = "cpu",
                    model_types: Sequence[str] = MODEL_TYPES) -> tuple[nn.Module, list[str], dict]:
    """(model in eval mode, class names in label order, the whole config.json) of a classifier folder.
    Dispatches on config["model_type"] ("micronbert" when absent); a type outside `model_types` is refused
    before any weights are read."""
    weights, config_path = resolve_weights(path)
    config = read_config(config_path)
    for key in ("model", "classes"):
        if key not in config:
            raise MicronbertError(f"{config_path}: not a fine-tuned classifier (no {key!r}); a pretrained μ-BERT "
                                  f"folder is an --init for evaluate/finetune, and gives maps with `micronbert dma-map`")
    model_type = config.get("model_type", "micronbert")
    if model_type in MODEL_TYPES and model_type not in model_types:
        raise MicronbertError(f"{path}: a {model_type!r} classifier; this needs model_type "
                              f"{' or '.join(repr(t) for t in model_types)}")
    classes = [str(c) for c in config["classes"]]
    model = build_classifier(config, str(config_path))
    load_state_checked(model, load_weights(weights), weights)
    return model.to(device).eval(), classes, config


@torch.no_grad()
def predict_pairs(model: nn.Module, onset: np.ndarray, apex: np.ndarray, batch_size: int = 32,
                  face: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities (B, C) for aligned uint8 (B, S, S, 3) onset/apex frames, for either model type;
    `face` (B, S, S): each clip's own face mask, read by a μ-BERT with the PoI prior "own"."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(onset), batch_size):
        o, a = onset[s:s + batch_size], apex[s:s + batch_size]
        if getattr(model.cfg, "registration", "none") != "none":  # as the model was trained (PairData.registered)
            from micronbert.faces.register import register_pairs

            a = register_pairs(o, a, model.cfg.registration)
        if getattr(model, "model_type", "micronbert") == "flow-cnn":
            from micronbert.model.flow_cnn import flow_features

            x = torch.as_tensor(np.stack([flow_features(oi, ai, model.cfg.flow_size, model.cfg.flow)
                                          for oi, ai in zip(o, a)]))
            logits = model(x.to(device))
        else:
            from micronbert.model.mubert import normalise_images
            from micronbert.model.poi import mask_patch_share

            share = (None if face is None else
                     mask_patch_share(torch.as_tensor(face[s:s + batch_size], device=device), model.cfg.patch_size))
            logits = model(normalise_images(to_float(o, device)), normalise_images(to_float(a, device)), share)
        out.append(torch.softmax(logits.float(), -1).cpu())
    return torch.cat(out).numpy()

