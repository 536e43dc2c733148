"""Configuration: one dataclass for the model, one for pretraining, and named presets.

Configs are saved as JSON next to every checkpoint, so a weights file is never separated from the
architecture that reads it. Values the paper leaves open (swap ratio, δ, optimiser) are fields here
with the defaults stated in the README.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from micronbert.errors import MicronbertError

# ImageNet statistics: the authors' release normalises with them, so we do too (weights stay compatible).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What DMA's diagonal can measure (model/dma.py); the self-normalised ones need a temperature τ > 0.
DMA_SIGNALS = ("cosine", "distance", "relative", "paper")
SELF_NORMALISED_SIGNALS = ("cosine", "distance")
# Which encoder output DMA's Q and K compare (model/mubert.py): the final, per-token LayerNormed tokens,
# or the residual stream before that norm.
DMA_COMPARED = ("tokens", "residual")
# Where the PoI saliency may look (ModelConfig.poi_prior): nowhere in particular, the template face, the
# template's 68-point hull, each clip's own 68-point hull. Pretraining's frame pairs carry no landmarks.
POI_PRIORS = ("none", "face", "hull", "own")
PRETRAIN_POI_PRIORS = ("none", "face", "hull")


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
    # False: DMA's diagonal compares its inputs themselves (dma_compare), without the Q and K projections,
    # which pretraining can turn away from the directions a small motion changes (docs/motion.md §12).
    dma_project_qk: bool = True
    # > 0: logits cos(q_i, k_j)/τ instead of q_i·k_j/√d. Bounded logits keep the diagonal a same-place
    # similarity that pretraining cannot saturate; 0 gives the paper's scaled dot product exactly.
    dma_cosine_temperature: float = 0.1
    # What the diagonal measures (model/dma.py): "cosine" (self-normalised, needs τ > 0), "distance"
    # (the same with one normaliser per frame pair instead of per patch, needs τ > 0), "relative"
    # (softmax diagonal over its no-motion baseline) or "paper" (the raw softmax diagonal).
    # "distance" by default: on the localisation pairs pretraining erodes the cosine map (0.89 -> 0.82 over
    # 4 seeds) and keeps the distance map (0.89 -> 0.90); recognition ties (docs/motion.md §11).
    dma_signal: str = "distance"
    # What DMA's Q and K read (V always reads the tokens): "tokens", the encoder's output, or "residual",
    # the stream before its final LayerNorm, which rescales every token to unit spread (and so turns a
    # faint patch's noise into change, as the cosine signal did). "tokens" by default: reading the
    # residual finds the moved patch more often at initialisation, less often after pretraining
    # (docs/motion.md §12).
    dma_compare: str = "tokens"
    # Patch of Interest.
    use_poi: bool = True
    poi_variant: str = "mse"      # "mse" (paper: agreement of contextual tokens) or "dino" (release: self-distillation)
    # softmax temperature of the patch-to-context saliency; 0.1 put the weight on ~62 of 196 patches
    # (max/min 180x) without favouring the face (docs/motion.md), 0.5 keeps ~184 of them
    poi_temperature: float = 0.5
    # A face prior on the saliency (model/poi.py): "none" (the paper: the learned map alone), "face" (the
    # template's 68-landmark hull with the forehead above the brows, where alignment puts every face) or
    # "hull" (the 68-point hull alone) or "own" (each clip's own 68-landmark hull, given per sample with the
    # frames; the template hull where a pair comes without one); patches outside weigh POI_PRIOR_FLOOR.
    # poi_prior_margin is the crop margin the faces were aligned with (prepare --margin): commands given a
    # face cache set it from the cache (place_poi_prior).
    poi_prior: str = "none"
    poi_prior_margin: float = 0.15
    proj_dim: int = 256           # mse variant: projector/predictor width
    dino_out_dim: int = 128
    dino_hidden_dim: int = 2048
    dino_bottleneck_dim: int = 256
    # Recognition head: also embed the DMA change map (see model/heads.py).
    head_dma_map: bool = True
    # "grid": a small conv head over the patch grid with signed change; "paper": mean-pooled (release).
    head: str = "grid"
    # The grid head also takes the PoI-gated F_DMA tokens. Off by default: they carry the onset's
    # appearance (V comes from the onset), which fits the training subjects and not an unseen one
    # (docs/motion.md §10); the head keeps the diagonal's change map and direction and the token change.
    head_dma_features: bool = False
    # Directional DMA (model/direction.py): the grid head also gets which way each patch moved, from the
    # change maps of the apex shifted by ±dma_shift_px pixels in x and y (0: off; at most 1).
    dma_shift_px: float = 0.5
    # How many encoder blocks the onset and the shifted apexes go through before directional DMA compares
    # them (0: all, like the change map). Fewer is cheaper: a frozen-encoder recipe caches those frames, so
    # they never pass the trained block (1: about 2× faster; as accurate within the seed spread, no more:
    # docs/motion.md §16).
    dma_direction_blocks: int = 0
    # Fine registration of apex onto onset before the pair is compared (faces/register.py):
    # "translation", "euclidean" or "none" (the no-registration ablation, and the release).
    registration: str = "translation"
    # Decoder (pretraining only).
    decoder_embed_dim: int = 512
    decoder_depth: int = 4
    decoder_num_heads: int = 4
    norm_pix_loss: bool = False

    def __post_init__(self):
        check_fields(self, at_least_one=("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
                                         "dma_heads", "decoder_embed_dim", "decoder_num_heads", "proj_dim",
                                         "dino_out_dim", "dino_hidden_dim", "dino_bottleneck_dim"),
                     non_negative=("decoder_depth", "dma_chunk", "dma_cosine_temperature"),
                     positive=("mlp_ratio", "poi_temperature"))
        if self.patch_size > self.img_size:
            raise MicronbertError(f"patch_size {self.patch_size} is larger than img_size {self.img_size}")
        if self.img_size % self.patch_size:
            raise MicronbertError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads or self.embed_dim % self.dma_heads:
            raise MicronbertError("embed_dim must be divisible by num_heads and dma_heads")
        if self.poi_prior not in POI_PRIORS:
            raise MicronbertError(f"poi_prior must be one of {POI_PRIORS}, not {self.poi_prior!r}")
        if not 0.0 <= self.poi_prior_margin < 0.45:
            raise MicronbertError(f"poi_prior_margin is the aligned crop's margin, 0 <= margin < 0.45, "
                                  f"not {self.poi_prior_margin}")
        if self.poi_variant not in ("mse", "dino"):
            raise MicronbertError(f"poi_variant must be 'mse' or 'dino', not {self.poi_variant!r}")
        if self.dma_signal not in DMA_SIGNALS:
            raise MicronbertError(f"dma_signal must be one of {DMA_SIGNALS}, not {self.dma_signal!r}")
        if self.dma_signal in SELF_NORMALISED_SIGNALS and self.dma_cosine_temperature <= 0:
            raise MicronbertError(f"dma_signal {self.dma_signal!r} needs dma_cosine_temperature > 0 "
                                  "(the paper's dot-product logits go with dma_signal 'paper')")
        if self.dma_compare not in DMA_COMPARED:
            raise MicronbertError(f"dma_compare must be one of {DMA_COMPARED}, not {self.dma_compare!r}")
        if self.registration not in ("translation", "euclidean", "none"):
            raise MicronbertError(f"registration must be 'translation', 'euclidean' or 'none', not {self.registration!r}")
        if self.head not in ("grid", "paper"):
            raise MicronbertError(f"head must be 'grid' or 'paper', not {self.head!r}")
        if not 0.0 <= self.dma_shift_px <= 1.0:
            raise MicronbertError(f"dma_shift_px must be in [0, 1] (pixels), not {self.dma_shift_px}")
        if not 0 <= self.dma_direction_blocks <= self.depth:
            raise MicronbertError(f"dma_direction_blocks must be in [0, depth={self.depth}], "
                                  f"not {self.dma_direction_blocks}")
        if self.dma_query not in ("first", "second"):
            raise MicronbertError(f"dma_query must be 'first' or 'second', not {self.dma_query!r}")

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid ** 2

    @property
    def reads_face_mask(self) -> bool:
        """Whether PoI takes each clip's own face hull with the pair (poi_prior "own")."""
        return self.use_poi and self.poi_prior == "own"


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
    # What −log a_i is taken of: "contrastive": the softmax diagonal over all patches with the DMA's
    # logits (the same place must match better than every other place, InfoNCE); "signal": the change
    # map itself ("both": the sum). With the cosine signal, "signal" is (1 − cos(q_i, k_i))/τ with no
    # negatives: it pulls the two tokens together however it can, and on the development seeds the
    # encoder it left scored at chance (UF1 0.40/0.32 against 0.67/0.65, docs/motion.md §8).
    identity_loss: str = "contrastive"
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

    def __post_init__(self):
        check_fields(self, at_least_one=("steps", "batch_size", "accum_steps", "swap_block", "log_every", "ckpt_every",
                                         "keep_checkpoints"),
                     non_negative=("min_lr", "weight_decay", "warmup_steps", "grad_clip", "agreement_weight",
                                   "identity_weight", "local_crops", "num_workers", "seed"),
                     positive=("lr", "delta_min_s", "delta_max_s", "fps", "dino_teacher_temp", "dino_student_temp"),
                     fractions=("swap_ratio", "ema_decay", "dino_center_momentum"))
        for name in ("delta_min_s", "crop_scale", "local_crop_scale", "betas"):
            low, high = (self.delta_min_s, self.delta_max_s) if name == "delta_min_s" else getattr(self, name)
            if low > high:
                shown = "delta (delta_min_s, delta_max_s)" if name == "delta_min_s" else name
                raise MicronbertError(f"pretraining config: {shown} must be (low, high) with low <= high, "
                                      f"got ({low:g}, {high:g})")
        for name in ("crop_scale", "local_crop_scale", "betas"):
            if not all(0 <= v <= 1 for v in getattr(self, name)):
                raise MicronbertError(f"pretraining config: {name} values must lie in [0, 1], got {getattr(self, name)}")
        if self.identity_loss not in ("contrastive", "signal", "both"):
            raise MicronbertError(f"pretraining config: identity_loss must be 'contrastive', 'signal' or 'both', "
                                  f"not {self.identity_loss!r}")


def check_fields(cfg, at_least_one=(), non_negative=(), positive=(), fractions=()) -> None:
    """Type and range of every field of a config dataclass, one line naming the field (configs come
    from JSON/YAML files and flags: "112" for 112, 0 for a depth, nan for a rate all end up here)."""
    where = "model config" if type(cfg).__name__ == "ModelConfig" else "pretraining config"
    for f in fields(cfg):
        value, kind = getattr(cfg, f.name), f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if kind == "bool" and not isinstance(value, bool):
            raise MicronbertError(f"{where}: {f.name} must be true or false, got {value!r}")
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise MicronbertError(f"{where}: {f.name} must be an integer, got {value!r}")
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise MicronbertError(f"{where}: {f.name} must be a finite number, got {value!r}")
        if kind == "str" and not isinstance(value, str):
            raise MicronbertError(f"{where}: {f.name} must be a string, got {value!r}")
        if kind.startswith("tuple") and (not isinstance(value, (tuple, list)) or len(value) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
            raise MicronbertError(f"{where}: {f.name} must be two finite numbers, got {value!r}")
    rules = [(at_least_one, lambda v: v >= 1, ">= 1"), (non_negative, lambda v: v >= 0, ">= 0"),
             (positive, lambda v: v > 0, "> 0"), (fractions, lambda v: 0 <= v <= 1, "in [0, 1]")]
    for names, ok, text in rules:
        for name in names:
            if not ok(getattr(cfg, name)):
                raise MicronbertError(f"{where}: {name} must be {text}, got {getattr(cfg, name)!r}")


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


def place_poi_prior(cfg: ModelConfig, margin: float | None) -> ModelConfig:
    """`cfg` with its PoI face prior placed for faces aligned with crop margin `margin` (the face cache's):
    the prior marks where alignment puts the face, which moves with the margin. Unchanged without a prior
    or a known margin."""
    if margin is None or cfg.poi_prior == "none" or abs(cfg.poi_prior_margin - margin) < 1e-9:
        return cfg
    return dataclasses.replace(cfg, poi_prior_margin=float(margin))


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
