"""Pixel decoder (pretraining only): tokens -> pixels of every patch, in (p, q, channel) order."""
from __future__ import annotations

import torch
from torch import nn

from micronbert.model.encoder import Block, sincos_2d


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p·p·C) with pixels ordered (p, q, c) like the release's decoder_pred."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int = 3) -> torch.Tensor:
    b, n, _ = patches.shape
    g = int(n ** 0.5)
    x = patches.reshape(b, g, g, patch, patch, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, channels, g * patch, g * patch)


class PixelDecoder(nn.Module):
    def __init__(self, enc_dim: int, dim: int, depth: int, heads: int, mlp_ratio: float, grid: int, patch: int,
                 channels: int = 3):
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.register_buffer("pos_embed", sincos_2d(dim, grid)[None], persistent=False)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch * patch * channels)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]  # drop the contextual token
