"""ViT encoder with a contextual (CLS) token and fixed 2-D sin-cos positions.

Module and parameter names follow the authors' release (patch_embed.proj, blocks.i.attn.qkv, ...),
so its weights map onto ours one to one.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sincos_2d(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position table (1 + grid², dim); row 0 (the CLS position) is zeros.

    Half the channels encode the row, half the column, as in MAE. Computed for any grid, so a
    different image size needs no interpolation of learned tables.
    """
    if dim % 4:
        raise ValueError("sin-cos positions need a width divisible by 4")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    coords = np.arange(grid, dtype=np.float64)
    gw, gh = np.meshgrid(coords, coords)  # gw varies along columns: w first, as in MAE

    def encode(pos):
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([encode(gw), encode(gh)], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return torch.from_numpy(table).float()


def resize_pos_table(table: torch.Tensor, new_grid: int) -> torch.Tensor:
    """Bicubic resize of a (1, 1+g², D) position table to a new grid (for loaded, non-sin-cos tables)."""
    cls, grid_tab = table[:, :1], table[:, 1:]
    g = int(math.isqrt(grid_tab.shape[1]))
    if g == new_grid:
        return table
    grid_tab = grid_tab.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid_tab = F.interpolate(grid_tab, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    return torch.cat([cls, grid_tab.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, -1)], dim=1)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention (flash/mem-efficient kernels)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        # unbind, not qkv[0..2]: indexing's backward fills a zero tensor of qkv's size per index (the profiler
        # put those fills at ~11 % of a CPU-recipe training step)
        out = F.scaled_dot_product_attention(*qkv.unbind(0))
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Images (B, 3, H, W) -> normalised tokens (B, 1 + N, D); token 0 is the contextual token."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, dim: int, depth: int, num_heads: int,
                 mlp_ratio: float):
        super().__init__()
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Fixed, not learned: a buffer, recomputed for other grids.
        self.register_buffer("pos_embed", sincos_2d(dim, self.grid)[None], persistent=False)
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self):
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        if grid_h == grid_w == self.grid:
            return self.pos_embed
        if grid_h != grid_w:
            raise ValueError("only square inputs are supported")
        return sincos_2d(self.pos_embed.shape[-1], grid_h)[None].to(self.pos_embed)

    def hidden(self, x: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """Images -> the residual stream after the first `blocks` blocks (all when None), not normalised."""
        gh, gw = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        pos = self.positions(gh, gw)
        tokens = self.patch_embed(x) + pos[:, 1:]
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks[:blocks]:
            x = block(x)
        return x

    def hidden_from(self, hidden: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
        """`hidden(x, stop)` from `hidden(x, start)`: blocks start..stop (all when None; not normalised). A
        recipe can cache the frozen part and train only the last blocks."""
        for block in self.blocks[start:stop]:
            hidden = block(hidden)
        return hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.hidden(x))
