"""The fine-tuning recipe, the same for every LOSO fold and for the final `finetune` model.

Class-weighted cross-entropy (the datasets are imbalanced), paired augmentation (one random crop, flip,
small rotation and colour jitter drawn per sample and applied to *both* frames, so the onset→apex
difference is the signal), AdamW with optional layer-wise lr decay, warm-up + cosine, a fixed number of
epochs. With `freeze_encoder` the encoder's first blocks run once per sample on the clean pair and on
`cached_views` paired-augmented views (drawn once, reused every epoch), for every frame the model compares
(onset, apex and, with directional DMA, the apex's four shifted copies); the last `train_blocks` blocks,
DMA and the head train on that cache. PoI has no parameters of its own.

`FinetuneConfig`'s field defaults are the full fine-tuning recipe; `RECIPE_FAMILIES` states only how the
other families differ from them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from micronbert.config import to_dict
from micronbert.errors import MicronbertError


@dataclass
class FinetuneConfig:
    epochs: int = 20
    max_steps: int = 0             # >0: at most this many optimisation steps, in whole epochs (large training sets)
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
    # Frozen (CPU) recipe: the frozen part of the encoder runs once per sample and view, then is reused.
    cached_views: int = 0          # augmented views per sample cached besides the clean one (0: clean only)
    train_blocks: int = 0          # the encoder's last blocks (and final norm) that still train on the cache
    val_subjects: int = 0          # >0: keep the epoch with the best UF1 on this many *training* subjects
    # At prediction, average the class probabilities over more views of a test pair (PairData.prediction_views):
    # its mirror image (the classes do not change under the flip the recipe trains with) and the pairs of the
    # onset with the frames just before and after the apex. False here so that classifier folders saved
    # before the fields keep predicting from the pair alone; every family sets both (docs/motion.md §17).
    test_flip: bool = False
    test_neighbours: bool = False
    eval_batch_size: int = 64

    def __post_init__(self):
        if self.class_weights not in ("balanced", "none"):
            raise MicronbertError(f"class_weights must be 'balanced' or 'none', not {self.class_weights!r}")
        if self.cached_views < 0 or self.train_blocks < 0 or self.max_steps < 0:
            raise MicronbertError("cached_views, train_blocks and max_steps must be >= 0")
        if self.epochs < 1 or self.batch_size < 1:
            raise MicronbertError("epochs and batch_size must be >= 1")


# How each family's recipe differs from FinetuneConfig's defaults (the full fine-tuning of μ-BERT).
# Every family predicts from the pair, the apex's neighbouring frames and their mirror images (chosen on a
# development copy, docs/motion.md §17).
_VIEWS = dict(test_flip=True, test_neighbours=True)
RECIPE_FAMILIES = {
    "full": dict(_VIEWS),
    # the CPU recipe: 4 augmented views + the clean one cached, the last encoder block, DMA and head train;
    # 30 epochs, but at most 160 steps: a MEGC2019-sized fold (~290 training pairs) gets 8 epochs, so the
    # 36-fold LOSO fits in about half an hour on 2 cores (docs/motion.md §13); the demo's 42 pairs keep 30
    "frozen": dict(epochs=30, max_steps=160, lr=1e-3, freeze_encoder=True, cached_views=4, train_blocks=1, **_VIEWS),
    "flow": dict(epochs=40, lr=1e-3, weight_decay=1e-4, crop_scale=(1.0, 1.0), rotate_deg=0.0, jitter=0.0, **_VIEWS),
}


def family_recipe(family: str, **overrides) -> FinetuneConfig:
    """The recipe of a family; `overrides` with value None are ignored (unset CLI flags)."""
    base = dict(RECIPE_FAMILIES[family])
    base.update({k: v for k, v in overrides.items() if v is not None})
    return FinetuneConfig(**base)


def epochs_for(cfg: FinetuneConfig, n_train: int) -> int:
    """The epochs a training set of `n_train` samples gets: `cfg.epochs`, or fewer whole epochs when that
    would pass `cfg.max_steps` optimisation steps (at least one epoch)."""
    if not cfg.max_steps:
        return cfg.epochs
    steps_per_epoch = max(1, math.ceil(n_train / cfg.batch_size))
    return max(1, min(cfg.epochs, cfg.max_steps // steps_per_epoch))


def recipe_dict(cfg: FinetuneConfig) -> dict:
    return to_dict(cfg)


def class_weights(labels: np.ndarray, num_classes: int, mode: str = "balanced") -> torch.Tensor:
    """N / (C * n_c) per class on the training labels; a class absent from training gets weight 0."""
    if mode == "none":
        return torch.ones(num_classes)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(num_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(w, dtype=torch.float32)


def paired_augment(onset: torch.Tensor, apex: torch.Tensor, cfg: FinetuneConfig, generator: torch.Generator,
                   face: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """float (B, 3, H, W) in [0, 1], twice -> the same random crop/flip/rotation/jitter applied to both; the
    clips' face masks (B, H, W) in [0, 1], when given, go through the same crop/flip/rotation (else None)."""
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
    if face is not None:  # no random draw of its own: every other draw stays as without it
        face = F.grid_sample(face[:, None].to(onset), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)[:, 0]
    bright = uniform(1 - cfg.jitter, 1 + cfg.jitter).to(onset).view(b, 1, 1, 1).repeat(2, 1, 1, 1)
    contrast = uniform(1 - cfg.jitter, 1 + cfg.jitter).to(onset).view(b, 1, 1, 1).repeat(2, 1, 1, 1)
    mean = onset.mean(dim=(1, 2, 3), keepdim=True).repeat(2, 1, 1, 1)  # the onset's mean for both frames
    out = ((warped - mean) * contrast + mean) * bright
    onset, apex = out.clamp(0, 1).chunk(2, 0)
    return onset, apex, face


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
