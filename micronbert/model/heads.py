"""Recognition: μ-BERT on (onset, apex) with a classification head.

Two heads (ModelConfig.head):
- "grid" (default): keeps *where* and *which way*. Per patch, on the token grid: the signed change of
  the encoder tokens (apex − onset), gated by DMA (how much the patch changed, 1 − a_i) and PoI (how much
  the patch matters); the change map −log a_i; and (directional DMA) which way each patch moved. A small
  convolution over the grid pools to a coarse layout (4×4 at 112 px), so the place of the motion
  survives. F_DMA = W_o(a_i · V_i) joins only with `head_dma_features`: its values come from the onset,
  so it carries who the subject is, and it cost 0.04-0.23 UF1 on unseen subjects (docs/motion.md §10).
  The contextual tokens enter only as their difference (apex − onset): the apex token alone describes
  who it is, a shortcut that does not transfer to an unseen subject.
- "paper": mean of the PoI-gated DMA tokens over all patches + the apex contextual token (+ the change
  map embedded, with `head_dma_map`), as before.
Without DMA (the ablation, `use_dma=False`) neither head sees the DMA diagonal at all: F_DMA comes from
plain cross-attention (which the grid head reads only with `head_dma_features`), the grid head's gate is
PoI alone and it has no change-map or direction channel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from micronbert.config import ModelConfig
from micronbert.model.direction import SHIFTS, direction_blocks, direction_px, shifted_views
from micronbert.model.mubert import MicronBertModel


class RecognitionHead(nn.Module):
    """Release-style ("paper"): mean of the PoI-gated DMA tokens, concatenated with the apex frame's
    contextual token -> logits. With `num_patches`, the DMA change map (−log a_i, standardised per
    sample) is embedded too."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.1, num_patches: int = 0):
        super().__init__()
        width = dim * (3 if num_patches else 2)
        self.map_embed = nn.Linear(num_patches, dim) if num_patches else None
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        nn.init.zeros_(self.fc.bias)
        nn.init.normal_(self.fc.weight, std=0.01)

    def forward(self, micro: dict[str, torch.Tensor]) -> torch.Tensor:
        features = micro["features"]
        parts = [features.mean(1), micro["cls_second"]]
        if self.map_embed is not None:
            change = -torch.log(micro["dma_map"].float().clamp_min(1e-8))
            change = (change - change.mean(1, keepdim=True)) / (change.std(1, keepdim=True) + 1e-6)
            parts.append(self.map_embed(change.to(features.dtype)))
        return self.fc(self.drop(self.norm(torch.cat(parts, dim=-1))))


class MotionGridHead(nn.Module):
    """Per-patch signed change on the grid -> strided convs -> coarse layout -> logits (see the module doc)."""

    def __init__(self, dim: int, num_classes: int, grid: int, width: int = 32, dropout: float = 0.1,
                 use_change: bool = True, use_direction: bool = False, use_features: bool = False):
        super().__init__()
        self.grid = grid
        self.use_change = use_change
        self.use_direction = use_direction
        self.diff = nn.Linear(dim, width)   # signed token change, apex − onset
        self.feat = nn.Linear(dim, width) if use_features else None  # PoI-gated F_DMA
        in_ch = (2 if use_features else 1) * width + (1 if use_change else 0) + (2 if use_direction else 0)
        # two stride-2 convolutions: 14×14 (tiny) -> 4×4, 28×28 (small) -> 7×7; plain ops, ONNX exports them
        self.conv = nn.Sequential(nn.Conv2d(in_ch, width, 3, stride=2, padding=1), nn.GELU(),
                                  nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GELU())
        pooled = ((grid + 1) // 2 + 1) // 2
        self.cls_diff = nn.Linear(dim, width)
        out = width * pooled ** 2 + width
        self.norm = nn.LayerNorm(out)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(out, num_classes)
        nn.init.zeros_(self.fc.bias)
        nn.init.normal_(self.fc.weight, std=0.01)

    def forward(self, micro: dict[str, torch.Tensor]) -> torch.Tensor:
        sal = micro["poi_map"].unsqueeze(-1)
        delta = micro["tokens_second"] - micro["tokens_first"]
        if self.use_change:
            change = -torch.log(micro["dma_map"].clamp_min(1e-8)).unsqueeze(-1)  # 0 = unchanged
            gate = sal * (1.0 - micro["dma_map"].unsqueeze(-1))
        else:
            gate = sal
        parts = [self.diff(delta) * gate]
        if self.feat is not None:
            parts.append(self.feat(micro["features"]))
        if self.use_change:
            parts.append(change)
        if self.use_direction:
            parts.append(micro["dma_motion"])
        x = torch.cat(parts, dim=-1)  # (B, N, C)
        b, n, c = x.shape
        x = self.conv(x.transpose(1, 2).reshape(b, c, self.grid, self.grid)).flatten(1)
        ctx = self.cls_diff(micro["cls_second"] - micro["cls_first"])
        return self.fc(self.drop(self.norm(torch.cat([x, F.gelu(ctx)], dim=-1))))


class MicronBertClassifier(nn.Module):
    """Two normalised frames (onset, apex) -> class logits, plus DMA/PoI maps on request."""

    def __init__(self, cfg: ModelConfig, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.backbone = MicronBertModel(cfg, with_decoder=False, with_agreement=False)
        self.shift_px = direction_px(cfg)
        if cfg.head == "grid":
            self.head = MotionGridHead(cfg.embed_dim, num_classes, cfg.grid, dropout=dropout, use_change=cfg.use_dma,
                                       use_direction=self.shift_px > 0, use_features=cfg.head_dma_features)
        else:
            use_map = cfg.head_dma_map and cfg.use_dma  # the no-DMA ablation never sees the diagonal
            self.head = RecognitionHead(cfg.embed_dim, num_classes, dropout,
                                        num_patches=cfg.num_patches if use_map else 0)

    @property
    def direction_blocks(self) -> int:
        """How many encoder blocks the onset and the shifted apexes go through for directional DMA (the
        encoder's depth when direction is off or read at the end)."""
        return direction_blocks(self.cfg) if self.shift_px else self.cfg.depth

    @property
    def frame_depths(self) -> list[int]:
        """How many encoder blocks each frame of pair_frames goes through."""
        depth, k = self.cfg.depth, self.direction_blocks
        return [depth, depth] + ([k] * len(SHIFTS) if self.shift_px else []) + ([k] if k < depth else [])

    @property
    def frames_per_pair(self) -> int:
        """How many frames the encoder sees per pair (pair_frames' length)."""
        return len(self.frame_depths)

    def pair_frames(self, onset: torch.Tensor, apex: torch.Tensor) -> list[torch.Tensor]:
        """The frames the encoder sees for a pair: onset, apex, then (directional DMA) the shifted apexes and,
        when direction is read before the last block, the onset again (to be matched at that depth)."""
        shifted = shifted_views(apex, self.shift_px) if self.shift_px else []
        return [onset, apex] + shifted + ([onset] if self.direction_blocks < self.cfg.depth else [])

    def advance(self, hidden: list[torch.Tensor], starts: list[int]) -> list[torch.Tensor]:
        """Residual streams of pair_frames after `starts` blocks each -> after frame_depths blocks each
        (frames with the same start and stop go through the blocks together)."""
        out = list(hidden)
        spans = list(zip(starts, self.frame_depths))
        for start, stop in dict.fromkeys(spans):
            if start == stop:
                continue
            idx = [j for j, span in enumerate(spans) if span == (start, stop)]
            moved = self.backbone.encoder.hidden_from(torch.cat([hidden[j] for j in idx]), start, stop)
            for j, h in zip(idx, moved.chunk(len(idx))):
                out[j] = h
        return out

    def from_frames(self, hidden: list[torch.Tensor] | tuple[torch.Tensor, ...],
                    face_share: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """From the residual streams of pair_frames, each after its frame_depths blocks."""
        n = len(SHIFTS) if self.shift_px else 0
        early_onset = hidden[2 + n] if self.direction_blocks < self.cfg.depth else None
        return self.from_hidden(hidden[0], hidden[1], hidden[2:2 + n], early_onset, face_share)

    def from_hidden(self, hid_onset: torch.Tensor, hid_apex: torch.Tensor,
                    hid_shifted: tuple[torch.Tensor, ...] | list[torch.Tensor] = (),
                    hid_onset_direction: torch.Tensor | None = None,
                    face_share: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """From the encoder's residual streams (so a frozen encoder's outputs can be cached and reused);
        `hid_shifted`: the shifted apexes' in pair_frames order (needed with directional DMA);
        `hid_onset_direction`: the onset's after direction_blocks blocks, when that is fewer than all;
        `face_share` (B, N): the clip's own face hull per patch (`micro_features`; poi_prior "own")."""
        micro = self.backbone.micro_features(hid_onset, hid_apex, face_share=face_share)
        if self.shift_px:
            if (hid_onset_direction is None) != (self.direction_blocks == self.cfg.depth):
                raise ValueError(f"directional DMA reads the onset after {self.direction_blocks} blocks: pass "
                                 "hid_onset_direction exactly when that is fewer than the encoder's depth")
            micro["dma_motion"] = self.backbone.motion(
                hid_onset if hid_onset_direction is None else hid_onset_direction, hid_shifted)
        micro["logits"] = self.head(micro)
        return micro

    def forward_all(self, onset: torch.Tensor, apex: torch.Tensor,
                    face_share: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        frames = self.pair_frames(onset, apex)
        embedded = self.backbone.encoder.hidden(torch.cat(frames, dim=0), 0).chunk(len(frames), dim=0)
        return self.from_frames(self.advance(list(embedded), [0] * len(frames)), face_share)

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, face_share: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_all(onset, apex, face_share)["logits"]

    def load_backbone(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Load pretrained μ-BERT weights (decoder/teacher keys ignored); returns the missing keys."""
        own = self.backbone.state_dict()
        usable = {k: v for k, v in state.items() if k in own}
        bad = [k for k, v in usable.items() if v.shape != own[k].shape]
        if bad:
            raise ValueError(f"shape mismatch for {bad[:5]} (different preset?)")
        missing, _ = self.backbone.load_state_dict(usable, strict=False)
        return list(missing)
