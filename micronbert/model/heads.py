"""Recognition: μ-BERT on (onset, apex) with a pooled classification head."""
from __future__ import annotations

import torch
from torch import nn

from micronbert.config import ModelConfig
from micronbert.model.mubert import MicronBertModel


class RecognitionHead(nn.Module):
    """Mean of the PoI-gated DMA tokens, concatenated with the apex frame's contextual token -> logits.

    With `num_patches`, the DMA change map (−log a_i, standardised per sample) is embedded too: on
    aligned faces *where* the face changed says which action it was, independent of who it is.
    """

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.1, num_patches: int = 0):
        super().__init__()
        width = dim * (3 if num_patches else 2)
        self.map_embed = nn.Linear(num_patches, dim) if num_patches else None
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        nn.init.zeros_(self.fc.bias)
        nn.init.normal_(self.fc.weight, std=0.01)

    def forward(self, features: torch.Tensor, cls: torch.Tensor, dma_map: torch.Tensor | None = None) -> torch.Tensor:
        parts = [features.mean(1), cls]
        if self.map_embed is not None:
            change = -torch.log(dma_map.float().clamp_min(1e-8))
            change = (change - change.mean(1, keepdim=True)) / (change.std(1, keepdim=True) + 1e-6)
            parts.append(self.map_embed(change.to(features.dtype)))
        return self.fc(self.drop(self.norm(torch.cat(parts, dim=-1))))


class MicronBertClassifier(nn.Module):
    """Two normalised frames (onset, apex) -> class logits, plus DMA/PoI maps on request."""

    def __init__(self, cfg: ModelConfig, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.backbone = MicronBertModel(cfg, with_decoder=False, with_agreement=False)
        self.head = RecognitionHead(cfg.embed_dim, num_classes, dropout,
                                    num_patches=cfg.num_patches if cfg.head_dma_map else 0)

    def from_tokens(self, tok_onset: torch.Tensor, tok_apex: torch.Tensor) -> dict[str, torch.Tensor]:
        """From encoder tokens (so a frozen encoder's outputs can be cached and reused)."""
        micro = self.backbone.micro_features(tok_onset, tok_apex)
        micro["logits"] = self.head(micro["features"], micro["cls_second"], micro["dma_map"])
        return micro

    def forward_all(self, onset: torch.Tensor, apex: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.from_tokens(*self.backbone.encode_pair(onset, apex))

    def forward(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        return self.forward_all(onset, apex)["logits"]

    def load_backbone(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Load pretrained μ-BERT weights (decoder/teacher keys ignored); returns the missing keys."""
        own = self.backbone.state_dict()
        usable = {k: v for k, v in state.items() if k in own}
        bad = [k for k, v in usable.items() if v.shape != own[k].shape]
        if bad:
            raise ValueError(f"shape mismatch for {bad[:5]} (different preset?)")
        missing, _ = self.backbone.load_state_dict(usable, strict=False)
        return list(missing)
