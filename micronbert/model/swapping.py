"""Blockwise swapping (pretraining only): replace a random fraction r of I_t's patches by the
co-located patches of I_{t+δ}. Vectorised over the batch: one rand + argsort, no per-sample loop.
"""
from __future__ import annotations

import torch


def swap_mask(batch: int, grid: int, ratio: float, block: int = 1, generator: torch.Generator | None = None,
              device=None) -> torch.Tensor:
    """Bool mask (B, grid²), True where a patch is swapped.

    Exactly round(ratio · number_of_blocks) blocks of block×block patches are chosen per sample, so the
    swapped fraction is exact whenever `block` divides `grid`.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"swap ratio must be in [0, 1], got {ratio}")
    if grid % block:
        raise ValueError(f"swap block {block} does not divide the patch grid {grid}")
    gb = grid // block
    n_blocks = gb * gb
    k = int(round(ratio * n_blocks))
    noise = torch.rand(batch, n_blocks, generator=generator, device=device)
    ranks = noise.argsort(dim=1).argsort(dim=1)  # rank of each block in a random order
    mask = ranks < k
    if block > 1:
        mask = mask.view(batch, gb, 1, gb, 1).expand(batch, gb, block, gb, block).reshape(batch, grid * grid)
    return mask


def apply_swap(frame_t: torch.Tensor, frame_tp: torch.Tensor, mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Ĩ_t: frame_t with the masked patches taken from frame_tp. Frames (B, C, H, W), mask (B, N)."""
    b, c, h, w = frame_t.shape
    gh, gw = h // patch, w // patch
    m = mask.view(b, 1, gh, 1, gw, 1).expand(b, 1, gh, patch, gw, patch).reshape(b, 1, h, w)
    return torch.where(m, frame_tp, frame_t)


def blockwise_swap(frame_t: torch.Tensor, frame_tp: torch.Tensor, patch: int, ratio: float, block: int = 1,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (Ĩ_t, mask) for a batch of frame pairs."""
    grid = frame_t.shape[-1] // patch
    mask = swap_mask(frame_t.shape[0], grid, ratio, block, generator, device=frame_t.device)
    return apply_swap(frame_t, frame_tp, mask, patch), mask
