"""Fine-tuning μ-BERT for recognition on (onset, apex) pairs, and the deployable classifier folder.

The recipe (`FinetuneConfig`), the same for every LOSO fold and for the final `finetune` model:
class-weighted cross-entropy (the datasets are imbalanced), paired augmentation (one random crop,
flip, small rotation and colour jitter drawn per sample and applied to *both* frames, so the onset→apex
difference is the signal), AdamW with optional layer-wise lr decay, warm-up + cosine, a fixed number
of epochs. With `freeze_encoder` the encoder's tokens are computed once per sample (no augmentation:
the cache would be stale) and only DMA, PoI gating and the head train.

Classifier folder (what `predict` loads):
    model.safetensors  state dict (MicronBertClassifier: backbone.*, head.*; flow-cnn: its own keys)
    config.json        {"model_type": "micronbert" | "flow-cnn", "model": {...}, "classes": [...],
                        "protocol": name, "finetune": {recipe}, "input": {"size": S, "aligned": bool}}
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from micronbert.config import ModelConfig, from_dict, to_dict
from micronbert.errors import MicronbertError
from micronbert.utils.progress import progress

MODEL_TYPES = ("micronbert", "flow-cnn")


@dataclass
class FinetuneConfig:
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-4               # base lr of the head; the encoder gets lr * layer_decay^depth_from_top
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    layer_decay: float = 1.0       # 1.0 = off; e.g. 0.75 for layer-wise lr decay
    freeze_encoder: bool = False
    class_weights: str = "balanced"  # "balanced": N / (C * n_c) on the training fold; "none"
    label_smoothing: float = 0.0
    dropout: float = 0.1
    grad_clip: float = 1.0
    augment: bool = True
    crop_scale: tuple[float, float] = (0.85, 1.0)  # side of the random crop, as a fraction of the face
    rotate_deg: float = 5.0
    hflip: bool = True
    jitter: float = 0.1            # brightness and contrast ±jitter, the same for both frames
    val_subjects: int = 0          # >0: keep the epoch with the best UF1 on this many *training* subjects
    eval_batch_size: int = 64

    def __post_init__(self):
        if self.class_weights not in ("balanced", "none"):
            raise MicronbertError(f"class_weights must be 'balanced' or 'none', not {self.class_weights!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise MicronbertError("epochs and batch_size must be >= 1")


def recipe_dict(cfg: FinetuneConfig) -> dict:
    return to_dict(cfg)


# -- pieces of the recipe ------------------------------------------------------------------------------
def class_weights(labels: np.ndarray, num_classes: int, mode: str = "balanced") -> torch.Tensor:
    """N / (C * n_c) per class on the training labels; a class absent from training gets weight 0."""
    if mode == "none":
        return torch.ones(num_classes)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(num_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(w, dtype=torch.float32)


def paired_augment(onset: torch.Tensor, apex: torch.Tensor, cfg: FinetuneConfig,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """float (B, 3, H, W) in [0, 1], twice -> the same random crop/flip/rotation/jitter applied to both."""
    b = onset.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    scale = uniform(*cfg.crop_scale)
    angle = uniform(-cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
    # translation keeps the crop inside the face: at most (1 - scale) in normalised coordinates
    tx = uniform(-1, 1) * (1 - scale)
    ty = uniform(-1, 1) * (1 - scale)
    flip = (torch.rand(b, generator=generator) < 0.5) if cfg.hflip else torch.zeros(b, dtype=torch.bool)
    sx = scale * torch.where(flip, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([sx * cos, -scale * sin, tx], -1),
                         torch.stack([sx * sin, scale * cos, ty], -1)], 1).to(onset)
    grid = F.affine_grid(theta, list(onset.shape), align_corners=False)
    both = torch.cat([onset, apex], 0)
    warped = F.grid_sample(both, torch.cat([grid, grid], 0), mode="bilinear", padding_mode="border",
                           align_corners=False)
    bright = uniform(1 - cfg.jitter, 1 + cfg.jitter).to(onset).view(b, 1, 1, 1).repeat(2, 1, 1, 1)
    contrast = uniform(1 - cfg.jitter, 1 + cfg.jitter).to(onset).view(b, 1, 1, 1).repeat(2, 1, 1, 1)
    mean = onset.mean(dim=(1, 2, 3), keepdim=True).repeat(2, 1, 1, 1)  # the onset's mean for both frames
    out = ((warped - mean) * contrast + mean) * bright
    return out.clamp(0, 1).chunk(2, 0)


def to_float(images: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    x = torch.as_tensor(images).to(device)
    return x.permute(0, 3, 1, 2).float() / 255.0


def layer_id(name: str, depth: int) -> int:
    """Layer index for layer-wise lr decay: 0 = patch embedding, 1..depth = blocks, depth+1 = DMA/head."""
    if name.startswith("backbone.encoder."):
        rest = name[len("backbone.encoder."):]
        if rest.startswith(("patch_embed", "cls_token", "pos_embed")):
            return 0
        if rest.startswith("blocks."):
            return int(rest.split(".")[1]) + 1
        return depth  # final norm
    return depth + 1


def classifier_param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0,
                            depth: int | None = None) -> list[dict]:
    """AdamW groups with `lr_scale` (layer-wise decay) and no decay on 1-d parameters."""
    depth = depth if depth is not None else getattr(getattr(model, "cfg", None), "depth", 0)
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = layer_id(name, depth) if layer_decay != 1.0 else depth + 1
        scale = layer_decay ** (depth + 1 - lid)
        wd = 0.0 if (p.ndim <= 1 or p.shape[0] == 1) else weight_decay
        g = groups.setdefault((scale, wd), {"params": [], "weight_decay": wd, "lr_scale": scale})
        g["params"].append(p)
    return list(groups.values())


def warmup_cosine_lr(step: int, total: int, base: float, warmup: int, min_lr: float) -> float:
    from micronbert.train.schedule import warmup_cosine

    return warmup_cosine(step, total, base, warmup, min_lr)


# -- the generic training loop (μ-BERT and the flow baseline share it) --------------------------------
BatchLogits = Callable[[np.ndarray, bool, torch.Generator], torch.Tensor]


def train_loop(model: nn.Module, batch_logits: BatchLogits, train_idx: np.ndarray, labels: np.ndarray,
               num_classes: int, cfg: FinetuneConfig, groups: list[dict], generator: torch.Generator,
               device, desc: str = "train", val: Callable[[nn.Module], float] | None = None) -> dict:
    """Fixed-epoch training. `batch_logits(sample_indices, train, gen)` -> logits for those samples.
    With `val` (a score on held-out *training* subjects), the best-scoring epoch's weights are kept."""
    train_idx = np.asarray(train_idx)
    y_all = torch.tensor(np.asarray(labels), dtype=torch.long)
    weight = class_weights(labels[train_idx], num_classes, cfg.class_weights).to(device)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))
    steps_per_epoch = max(1, math.ceil(len(train_idx) / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    step, history = 0, []
    best = (-math.inf, None, -1)
    for epoch in progress(range(cfg.epochs), desc=desc, unit="epoch", leave=False):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        losses = []
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            lr = warmup_cosine_lr(step, total, cfg.lr, warmup, cfg.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            logits = batch_logits(batch, True, generator)
            loss = F.cross_entropy(logits, y_all[batch].to(device), weight=weight,
                                   label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if val is not None:
            entry["val_uf1"] = score = float(val(model))
            if score > best[0]:
                best = (score, copy.deepcopy(model.state_dict()), epoch + 1)
        history.append(entry)
    if val is not None and best[1] is not None:
        model.load_state_dict(best[1])
    return {"history": history, "best_epoch": best[2] if val is not None else cfg.epochs,
            "final_loss": history[-1]["loss"]}


@torch.no_grad()
def predict_proba(model: nn.Module, batch_logits: BatchLogits, idx: np.ndarray, batch_size: int) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(idx), batch_size):
        out.append(torch.softmax(batch_logits(np.asarray(idx[start:start + batch_size]), False, None).float(), -1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


# -- μ-BERT as an evaluation method --------------------------------------------------------------------
@dataclass
class PairData:
    """All samples' aligned (onset, apex) frames in memory, uint8 (N, S, S, 3) each."""
    onset: np.ndarray
    apex: np.ndarray

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def size(self) -> int:
        return int(self.onset.shape[1])


class TrainedMethod:
    """What every method shares: seeded fit with the recipe's loop, batched predict, save.
    A method provides build(), batch_logits(model) and param_groups(model)."""

    def fit(self, train_idx, labels, seed: int, val_idx=None, desc: str = "train") -> tuple[nn.Module, dict]:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = self.build()
        val = _val_scorer(self, model, val_idx, labels) if val_idx is not None and len(val_idx) else None
        info = train_loop(model, self.batch_logits(model), train_idx, labels, len(self.classes), self.recipe,
                          self.param_groups(model), gen, self.device, desc, val)
        return model, info

    def predict(self, model, idx) -> np.ndarray:
        return predict_proba(model, self.batch_logits(model), np.asarray(idx), self.recipe.eval_batch_size)

    def save(self, model, out_dir, protocol: str, aligned: bool = True, **extra) -> Path:
        return save_classifier(out_dir, model, self.classes, protocol, self.recipe, aligned=aligned, **extra)


class MicronBertMethod(TrainedMethod):
    """Builds, trains and applies a MicronBertClassifier with the recipe; one instance per evaluation."""

    model_type = "micronbert"

    def __init__(self, model_cfg: ModelConfig, classes: Sequence[str], recipe: FinetuneConfig,
                 init_state: dict[str, torch.Tensor] | None = None, device: str | torch.device = "cpu",
                 name: str = "micronbert"):
        self.cfg = model_cfg
        self.classes = list(classes)
        self.recipe = recipe
        self.init_state = init_state
        self.device = torch.device(device)
        self.name = name
        self.data: PairData | None = None
        self.tokens: tuple[torch.Tensor, torch.Tensor] | None = None

    def describe(self) -> dict:
        return {"model_type": self.model_type, "name": self.name, "model": to_dict(self.cfg),
                "pretrained_init": self.init_state is not None, "finetune": recipe_dict(self.recipe)}

    def build(self) -> nn.Module:
        from micronbert.model.heads import MicronBertClassifier

        model = MicronBertClassifier(self.cfg, len(self.classes), self.recipe.dropout)
        if self.init_state is not None:
            missing = model.load_backbone(self.init_state)
            enc_missing = [k for k in missing if k.startswith("encoder.")]
            if enc_missing:
                raise MicronbertError(f"the --init weights lack encoder keys {enc_missing[:3]}")
        if self.recipe.freeze_encoder:
            for p in model.backbone.encoder.parameters():
                p.requires_grad_(False)
        return model.to(self.device)

    def prepare(self, data: PairData, seed: int = 0) -> None:
        """Keep the frames; with a frozen encoder, encode every sample once (reused by every fold)."""
        if data.size != self.cfg.img_size:
            raise MicronbertError(f"faces are {data.size} px but the model expects {self.cfg.img_size} px "
                                  f"(preset/--init and the cache disagree)")
        self.data = data
        if self.recipe.freeze_encoder:
            from micronbert.model.mubert import normalise_images

            torch.manual_seed(seed)  # only matters for a random (no-pretrain) frozen encoder
            encoder = self.build().backbone.encoder.eval()
            keep = torch.float16 if self.device.type == "cuda" else torch.float32
            outs = ([], [])
            with torch.no_grad():
                for start in progress(range(0, len(data), 32), desc="encode (frozen)", unit="batch", leave=False):
                    for j, frames in enumerate((data.onset, data.apex)):
                        x = normalise_images(to_float(frames[start:start + 32], self.device))
                        outs[j].append(encoder(x).to(keep))
            self.tokens = (torch.cat(outs[0]), torch.cat(outs[1]))

    def batch_logits(self, model) -> BatchLogits:
        from micronbert.model.mubert import normalise_images

        def fn(idx: np.ndarray, train: bool, gen):
            if self.tokens is not None:
                t = torch.as_tensor(idx, device=self.tokens[0].device)
                return model.from_tokens(self.tokens[0][t].float(), self.tokens[1][t].float())["logits"]
            onset, apex = to_float(self.data.onset[idx], self.device), to_float(self.data.apex[idx], self.device)
            if train and self.recipe.augment:
                onset, apex = paired_augment(onset, apex, self.recipe, gen)
            return model(normalise_images(onset), normalise_images(apex))
        return fn

    def param_groups(self, model):
        return classifier_param_groups(model, self.recipe.weight_decay, self.recipe.layer_decay, self.cfg.depth)


def _val_scorer(method, model, val_idx, labels):
    from micronbert.train.metrics import classification_metrics

    def score(_model) -> float:
        probs = method.predict(_model, val_idx)
        uf1 = classification_metrics(labels[val_idx], probs.argmax(1), method.classes)["uf1"]
        return -1.0 if uf1 is None else uf1
    return score


# -- the deployable classifier folder ------------------------------------------------------------------
def save_classifier(out_dir, model: nn.Module, classes: Sequence[str], protocol: str,
                    recipe: FinetuneConfig | dict, aligned: bool = True, **extra) -> Path:
    """Write model.safetensors + config.json (see the module doc) atomically."""
    from micronbert.model.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_weights
    from micronbert.utils.io import atomic_write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_type = getattr(model, "model_type", "micronbert")
    cfg = model.cfg
    cfg_dict = to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    size = cfg_dict.get("img_size") or cfg_dict.get("input_size")
    recipe = recipe_dict(recipe) if dataclasses.is_dataclass(recipe) else dict(recipe)
    save_weights(out_dir / WEIGHTS_NAME, model.state_dict())
    atomic_write_json(out_dir / CONFIG_NAME, {
        "model_type": model_type, "model": cfg_dict, "classes": list(classes), "protocol": protocol,
        "finetune": recipe, "input": {"size": int(size), "aligned": bool(aligned)}, **extra})
    return out_dir


def load_classifier(path, device: str | torch.device = "cpu") -> tuple[nn.Module, list[str], dict]:
    """(model in eval mode, class names in label order, the whole config.json) of a classifier folder.
    Dispatches on config["model_type"] ("micronbert" when absent)."""
    from micronbert.model.checkpoint import load_weights, read_config, resolve_weights

    weights, config_path = resolve_weights(path)
    config = read_config(config_path)
    for key in ("model", "classes"):
        if key not in config:
            raise MicronbertError(f"{config_path}: not a fine-tuned classifier (no {key!r}); a pretrained μ-BERT "
                                  f"folder is an --init for evaluate/finetune, and gives maps with `micronbert dma-map`")
    model_type = config.get("model_type", "micronbert")
    classes = [str(c) for c in config["classes"]]
    if model_type == "micronbert":
        from micronbert.model.heads import MicronBertClassifier

        cfg = from_dict(ModelConfig, config["model"], str(config_path))
        model = MicronBertClassifier(cfg, len(classes), float(config.get("finetune", {}).get("dropout", 0.1)))
    elif model_type == "flow-cnn":
        from micronbert.train.flow_baseline import FlowCNN, FlowConfig

        model = FlowCNN(from_dict(FlowConfig, config["model"], str(config_path)), len(classes))
    else:
        raise MicronbertError(f"{config_path}: unknown model_type {model_type!r} (known: {MODEL_TYPES})")
    state = load_weights(weights)
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        raise MicronbertError(f"{weights}: weights do not fit config.json (saved vs expected): {wrong[:3]}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MicronbertError(f"{weights}: weights do not match config.json: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    return model.to(device).eval(), classes, config


@torch.no_grad()
def predict_pairs(model: nn.Module, onset: np.ndarray, apex: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities (B, C) for aligned uint8 (B, S, S, 3) onset/apex frames, for either model type."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(onset), batch_size):
        o, a = onset[s:s + batch_size], apex[s:s + batch_size]
        if getattr(model, "model_type", "micronbert") == "flow-cnn":
            from micronbert.train.flow_baseline import flow_features

            x = torch.as_tensor(np.stack([flow_features(oi, ai, model.cfg.flow_size) for oi, ai in zip(o, a)]))
            logits = model(x.to(device))
        else:
            from micronbert.model.mubert import normalise_images

            logits = model(normalise_images(to_float(o, device)), normalise_images(to_float(a, device)))
        out.append(torch.softmax(logits.float(), -1).cpu())
    return torch.cat(out).numpy()


# -- methods by name (evaluate/finetune --model) -------------------------------------------------------
MODELS = {
    "micronbert": "μ-BERT: pretrained encoder (--init), DMA, PoI",
    "no-dma": "μ-BERT with plain cross-attention in place of DMA",
    "no-poi": "μ-BERT without PoI gating",
    "no-pretrain": "μ-BERT from random initialisation (architecture of --init or --preset, its weights unused)",
    "flow-cnn": "optical-flow baseline: 3-stream CNN on onset→apex (u, v, strain), STSTNet-style",
}


def default_recipe(model: str, freeze_encoder: bool = False, **overrides) -> FinetuneConfig:
    """The recipe per model family; `overrides` with value None are ignored (unset CLI flags)."""
    if model == "flow-cnn":
        base = dict(epochs=40, lr=1e-3, batch_size=16, weight_decay=1e-4, crop_scale=(1.0, 1.0), rotate_deg=0.0,
                    jitter=0.0, freeze_encoder=False)
    elif freeze_encoder:
        base = dict(epochs=30, lr=1e-3, freeze_encoder=True, augment=False)
    else:
        base = dict(epochs=20, lr=1e-4)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return FinetuneConfig(**base)


def build_method(model: str, classes: Sequence[str], recipe: FinetuneConfig, init: str | None = None,
                 preset_name: str = "tiny", device: str | torch.device = "cpu", size: int | None = None):
    """A method object (fit/predict/prepare/save/describe) for one row of a results table."""
    if model not in MODELS:
        raise MicronbertError(f"unknown --model {model!r}; choose from {sorted(MODELS)}")
    if model == "flow-cnn":
        from micronbert.train.flow_baseline import FlowCNNMethod, FlowConfig

        return FlowCNNMethod(classes, recipe, FlowConfig(input_size=size or 112), device=device)
    from micronbert.config import preset

    state = None
    if init:
        from micronbert.model.checkpoint import load_model_dir

        state, cfg, _ = load_model_dir(init)
    else:
        cfg = preset(preset_name, **({"img_size": size} if size else {}))
    switches = {"no-dma": {"use_dma": False}, "no-poi": {"use_poi": False}}.get(model, {})
    cfg = dataclasses.replace(cfg, **switches)
    if model == "no-pretrain":
        state = None
    return MicronBertMethod(cfg, classes, recipe, state, device=device, name=model)


def resolve_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    if torch.cuda.is_available():  # under torchrun each rank takes its own GPU
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
