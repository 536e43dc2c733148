"""Batched random resized crops on tensors (one affine grid per sample, no Python loop)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_resized_crop(x: torch.Tensor, out_size: int, scale: tuple[float, float],
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), generator: torch.Generator | None = None
                        ) -> torch.Tensor:
    """Crop a random box of area fraction in `scale` and aspect in `ratio` from each image, resize to out_size."""
    b = x.shape[0]
    dev = x.device

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=generator, device=dev)

    area = uniform(*scale)
    log_r = uniform(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the full width/height
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = uniform(0, 1) * (1 - w) + w / 2  # centre so the box stays inside
    cy = uniform(0, 1) * (1 - h) + h / 2
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = w
    theta[:, 1, 1] = h
    theta[:, 0, 2] = cx * 2 - 1
    theta[:, 1, 2] = cy * 2 - 1
    grid = F.affine_grid(theta, (b, x.shape[1], out_size, out_size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
