"""Configuration: one dataclass for the model, one for pretraining, and named presets.

Configs are saved as JSON next to every checkpoint, so a weights file is never separated from the
architecture that reads it. Values the paper leaves open (swap ratio, δ, optimiser) are fields here
with the defaults stated in the README.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from micronbert.errors import MicronbertError

# ImageNet statistics: the authors' release normalises with them, so we do too (weights stay compatible).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    img_size: int = 224
    patch_size: int = 8
    in_chans: int = 3
    embed_dim: int = 512
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    # Diagonal Micro-Attention between the two frames' patch tokens.
    dma_heads: int = 1
    use_dma: bool = True          # False: plain softmax cross-attention (ablation, and the release's diag_att=False)
    dma_query: str = "second"     # "second": Q from I_{t+δ}/apex, K,V from Ĩ_t/onset (paper); "first": Q from the first frame (release)
    dma_chunk: int = 256          # query rows per chunk in the O(N)-memory DMA; 0 = naive N×N reference
    dma_tie_qk: bool = False      # share the Q and K projections (a_i then stays a same-place similarity)
    # > 0: logits cos(q_i, k_j)/τ instead of q_i·k_j/√d. Bounded logits keep the diagonal a same-place
    # similarity that pretraining cannot saturate; 0 gives the paper's scaled dot product exactly.
    dma_cosine_temperature: float = 0.1
    # Patch of Interest.
    use_poi: bool = True
    poi_variant: str = "mse"      # "mse" (paper: agreement of contextual tokens) or "dino" (release: self-distillation)
    poi_temperature: float = 0.1  # softmax temperature of the patch-to-context saliency
    proj_dim: int = 256           # mse variant: projector/predictor width
    dino_out_dim: int = 128
    dino_hidden_dim: int = 2048
    dino_bottleneck_dim: int = 256
    # Recognition head: also embed the DMA change map (see model/heads.py).
    head_dma_map: bool = True
    # Decoder (pretraining only).
    decoder_embed_dim: int = 512
    decoder_depth: int = 4
    decoder_num_heads: int = 4
    norm_pix_loss: bool = False

    def __post_init__(self):
        if self.img_size % self.patch_size:
            raise MicronbertError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads or self.embed_dim % self.dma_heads:
            raise MicronbertError("embed_dim must be divisible by num_heads and dma_heads")
        if self.poi_variant not in ("mse", "dino"):
            raise MicronbertError(f"poi_variant must be 'mse' or 'dino', not {self.poi_variant!r}")
        if self.dma_query not in ("first", "second"):
            raise MicronbertError(f"dma_query must be 'first' or 'second', not {self.dma_query!r}")

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid ** 2


@dataclass
class PretrainConfig:
    steps: int = 1000
    batch_size: int = 16           # global batch per optimizer step (split over ranks and accumulation)
    accum_steps: int = 1
    lr: float = 2.5e-4             # the release's lr (per 256-pair batch it is scaled linearly: lr * batch/256 is NOT applied)
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 50
    grad_clip: float = 1.0
    swap_ratio: float = 0.5        # fraction r of I_t's patches replaced by I_{t+δ}'s (paper: unstated)
    swap_block: int = 1            # swapped block side, in patches
    use_swap: bool = True          # False: ablation, Ĩ_t = I_t
    delta_min_s: float = 0.04      # δ range in seconds (paper: unstated)
    delta_max_s: float = 0.25
    fps: float = 30.0              # frame rate for frame folders (videos use their own)
    agreement_weight: float = 1.0  # λ in L = L_rec + λ·L_agg
    # Weight of −log a_i on swapped patches, where Ĩ_t equals I_{t+δ} exactly: teaches the diagonal that
    # "identical" means high, so local change is what makes it low (0 = the paper's losses only).
    identity_weight: float = 0.1
    crop_scale: tuple[float, float] = (0.4, 1.0)
    local_crops: int = 2           # dino variant: extra small crops for the student
    local_crop_scale: tuple[float, float] = (0.1, 0.4)
    ema_decay: float = 0.996       # EMA teacher momentum
    dino_teacher_temp: float = 0.04
    dino_student_temp: float = 0.1
    dino_center_momentum: float = 0.9
    hflip: bool = True             # flip both frames of a pair together
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 200
    keep_checkpoints: int = 2
    bf16: bool = True              # autocast on CUDA only
    compile: bool = False
    num_workers: int = 0


PRESETS: dict[str, dict[str, Any]] = {
    # The official configuration of the authors' release (mae_vit_small_patch8).
    "small": dict(img_size=224, patch_size=8, embed_dim=512, depth=4, num_heads=4, mlp_ratio=4.0, dma_heads=1,
                  decoder_embed_dim=512, decoder_depth=4, decoder_num_heads=4),
    # Trains in minutes on 2 CPU cores: 112 px, patch 8 -> 196 tokens.
    "tiny": dict(img_size=112, patch_size=8, embed_dim=128, depth=3, num_heads=4, mlp_ratio=4.0, dma_heads=1,
                 decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, proj_dim=64, dino_out_dim=64,
                 dino_hidden_dim=256, dino_bottleneck_dim=64),
    # For unit tests: seconds, not minutes.
    "test": dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0, dma_heads=1,
                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, proj_dim=16, dino_out_dim=16,
                 dino_hidden_dim=32, dino_bottleneck_dim=16),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise MicronbertError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict, where: str = "config"):
    """Build a config dataclass from a dict; unknown keys are an error naming them (typos matter)."""
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise MicronbertError(f"{where}: unknown {cls.__name__} keys {unknown}")
    kwargs = {}
    for k, v in data.items():
        if isinstance(v, list):  # JSON has no tuples
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


def save_json(path: str | os.PathLike, **sections) -> None:
    from micronbert.utils.io import atomic_write_json

    atomic_write_json(path, {k: (to_dict(v) if dataclasses.is_dataclass(v) else v) for k, v in sections.items()})


def load_model_config(path: str | os.PathLike) -> ModelConfig:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MicronbertError(f"cannot read config {path}: {exc}") from exc
    if "model" not in data:
        raise MicronbertError(f"{path}: no 'model' section")
    return from_dict(ModelConfig, data["model"], str(path))
