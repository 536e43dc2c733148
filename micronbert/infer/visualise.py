"""Heat-maps over faces: DMA (where the two frames stopped matching) and PoI (where the model looks).

A low DMA diagonal a_i marks local change, so `change_map` turns it into "bright = moved":
per-image min-max of −log a_i.
"""
from __future__ import annotations

import os

import numpy as np


def change_map(dma_map: np.ndarray) -> np.ndarray:
    """(g, g) DMA diagonal -> (g, g) in [0, 1], 1 where the diagonal is lowest (most change)."""
    m = -np.log(np.clip(np.asarray(dma_map, dtype=np.float64), 1e-12, None))
    lo, hi = m.min(), m.max()
    return ((m - lo) / (hi - lo)) if hi > lo else np.zeros_like(m)


def scale01(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def overlay(image: np.ndarray, heat01: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] grid map (upsampled smoothly) over an RGB uint8 image."""
    import cv2
    from matplotlib import colormaps

    h, w = image.shape[:2]
    up = cv2.resize(np.asarray(heat01, dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    colour = (colormaps[cmap](up)[..., :3] * 255).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colour * alpha).clip(0, 255).astype(np.uint8)


def difference_image(onset: np.ndarray, apex: np.ndarray, gain: float | None = None) -> np.ndarray:
    """|apex − onset| amplified to be visible (micro-movements are a pixel or two)."""
    d = np.abs(apex.astype(np.float32) - onset.astype(np.float32)).mean(-1)
    gain = gain or (255.0 / max(np.percentile(d, 99.5), 1.0))
    g = np.clip(d * gain, 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def pair_figure(onset: np.ndarray, apex: np.ndarray, dma_map: np.ndarray, poi_map: np.ndarray | None,
                path: str | os.PathLike, title: str = "") -> None:
    """One PNG: onset, apex, |difference|, DMA change over apex, PoI over apex. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from micronbert.utils.io import atomic_save

    panels = [("onset", onset), ("apex", apex), ("|apex − onset|", difference_image(onset, apex)),
              ("DMA change", overlay(apex, change_map(dma_map)))]
    if poi_map is not None:
        panels.append(("PoI saliency", overlay(apex, scale01(poi_map))))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for ax, (name, img) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
