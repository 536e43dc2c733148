"""Directional DMA: which way each patch moved, read from DMA's own diagonal.

The change map c_i = −log a_i (onset vs apex) says *how much* patch i changed, never which way. Shifting
the apex by a fraction of a pixel before matching tells the way: if patch i's content moved right,
moving the apex content left brings it back (c_i falls) and moving it right takes it further (c_i
rises). The central differences c_i(+x) − c_i(−x) and c_i(+y) − c_i(−y) are a per-patch motion vector
measured in DMA's own feature space (one Lucas–Kanade step on tokens instead of pixels); positive means
right / down. The shifts are sub-pixel blends with the 1-px shifted image (plain ops: ONNX exports them).
Why: on the development demo folders a linear read-out of the signed pair scores about 0.9 UF1 where
the unsigned map alone scores about 0.75 (docs/motion.md §9).
"""
from __future__ import annotations

import torch

# content shifts (dx, dy) in units of `px`, in the order motion_from_changes expects
SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def direction_px(cfg) -> float:
    """The shift a ModelConfig reads direction with: its dma_shift_px for the grid head with DMA on, else 0
    (the paper head has no place for it; without DMA there is no diagonal to read it from)."""
    return float(cfg.dma_shift_px) if (cfg.use_dma and cfg.head == "grid") else 0.0


def direction_blocks(cfg) -> int:
    """How many encoder blocks the frames directional DMA compares go through (dma_direction_blocks; 0 = all)."""
    return cfg.dma_direction_blocks or cfg.depth


def shift_content(images: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """(B, C, H, W) with its content moved by (dx, dy) pixels, |dx|, |dy| <= 1 (linear interpolation,
    edges repeated)."""
    if abs(dx) > 1 or abs(dy) > 1:
        raise ValueError(f"shift ({dx}, {dy}) px: at most one pixel each way")
    out = images
    if dx:
        one = (torch.cat([out[..., :1], out[..., :-1]], -1) if dx > 0
               else torch.cat([out[..., 1:], out[..., -1:]], -1))
        out = out + abs(dx) * (one - out)
    if dy:
        one = (torch.cat([out[..., :1, :], out[..., :-1, :]], -2) if dy > 0
               else torch.cat([out[..., 1:, :], out[..., -1:, :]], -2))
        out = out + abs(dy) * (one - out)
    return out


def shifted_views(images: torch.Tensor, px: float) -> list[torch.Tensor]:
    """The four shifted copies of `images` (SHIFTS order: right, left, down, up by `px` pixels)."""
    return [shift_content(images, sx * px, sy * px) for sx, sy in SHIFTS]


def motion_from_changes(changes: torch.Tensor) -> torch.Tensor:
    """(4, B, N) change maps −log a_i of the apex shifted as SHIFTS -> (B, N, 2) signed motion (x, y)."""
    return torch.stack([changes[0] - changes[1], changes[2] - changes[3]], dim=-1)
