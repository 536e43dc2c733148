"""Heat-maps over faces: DMA (where the two frames stopped matching) and PoI (where the model looks).

A low DMA diagonal a_i marks local change, so `change_map` turns it into "bright = moved":
per-image min-max of −log a_i. With directional DMA (model/direction.py) the pair figure also draws
which way the most-changed patches moved, as arrows over the change panel.
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


def motion_arrows(change: np.ndarray, motion: np.ndarray, image_shape: tuple[int, int], top: float = 0.15,
                  longest_cells: float = 1.5) -> tuple[np.ndarray, ...]:
    """Arrows for the most-changed cells: (x, y, u, v) in image pixels (y down, like the motion).

    `change` (g, g) in [0, 1], `motion` (g, g, 2) signed (x, y); only the ceil(top · g²) cells with the
    most change get an arrow (so the picture stays readable), at the cell centre, scaled so that the
    longest drawn arrow is `longest_cells` cells long (the motion's units are DMA's, not pixels: only
    directions and relative lengths within one pair mean anything).
    """
    g = change.shape[0]
    if motion.shape != (*change.shape, 2):
        raise ValueError(f"motion must be (g, g, 2) = {(*change.shape, 2)}, got {motion.shape}")
    h, w = image_shape
    cell_h, cell_w = h / g, w / g
    n = change.size
    idx = np.argsort(change.ravel(), kind="stable")[::-1][:max(1, int(np.ceil(top * n)))]
    rows, cols = np.divmod(idx, g)
    vec = np.asarray(motion, dtype=np.float64).reshape(n, 2)[idx]
    longest = float(np.hypot(vec[:, 0], vec[:, 1]).max())
    scale = longest_cells * min(cell_h, cell_w) / longest if longest > 0 else 0.0
    return (cols + 0.5) * cell_w, (rows + 0.5) * cell_h, vec[:, 0] * scale, vec[:, 1] * scale


def pair_figure(onset: np.ndarray, apex: np.ndarray, dma_map: np.ndarray, poi_map: np.ndarray | None,
                path: str | os.PathLike, title: str = "", motion: np.ndarray | None = None) -> None:
    """One PNG: onset, apex, |difference|, DMA change over apex, PoI over apex. Written atomically.

    `motion` (g, g, 2), the directional-DMA motion (x, y; positive = right / down) of each patch: drawn
    as arrows on the change panel for the top ~15% changed cells (see motion_arrows).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from micronbert.utils.io import atomic_save

    change = change_map(dma_map)
    arrows = motion_arrows(change, np.asarray(motion), apex.shape[:2]) if motion is not None else None
    # heat-map panels carry a colour bar: min-max scaled per image, so 0/1 mean "least/most in this pair"
    panels = [("onset", onset, None), ("apex", apex, None),
              ("|apex − onset|", difference_image(onset, apex), ("gray", "difference (amplified)")),
              ("DMA change" if arrows is None else "DMA change + direction", overlay(apex, change),
               ("jet", "change (0 = none, 1 = most)"))]
    if poi_map is not None:
        panels.append(("PoI saliency", overlay(apex, scale01(poi_map)), ("jet", "saliency (scaled 0-1)")))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 3.3))
    for ax, (name, img, bar) in zip(axes, panels):
        ax.imshow(img)
        if name.startswith("DMA change") and arrows is not None:
            # data units with the image's y axis (down), so an arrow ends where the patch moved to
            ax.quiver(*arrows, angles="xy", scale_units="xy", scale=1, color="white", edgecolor="black",
                      linewidth=0.5, width=0.012, headwidth=3.5, headlength=4, headaxislength=3.5)
            ax.set_xlim(-0.5, img.shape[1] - 0.5)
            ax.set_ylim(img.shape[0] - 0.5, -0.5)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        if bar is not None:
            mappable = plt.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=bar[0])
            cb = fig.colorbar(mappable, ax=ax, orientation="horizontal", fraction=0.06, pad=0.04)
            cb.set_label(bar[1], fontsize=7)
            cb.ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def timeline_figure(signal: np.ndarray, fps: float, threshold: float | None, intervals, table, path,
                    title: str = "", present: np.ndarray | None = None) -> None:
    """One PNG: the motion score over the whole clip (seconds), the spotting threshold, each spotted
    interval shaded with its label; intervals below the threshold are drawn grey and hatched and
    labelled as such. Frames without a face are marked along the bottom. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from micronbert.utils.io import atomic_save

    sig = np.asarray(signal, dtype=np.float64)
    t = np.arange(len(sig)) / fps
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(t, sig, color="#1f5fa8", lw=1.2, label="motion score")
    if threshold is not None:
        ax.axhline(threshold, color="#c0392b", ls="--", lw=1, label="spotting threshold")
    top = float(sig.max()) if len(sig) else 1.0
    for j, iv in enumerate(intervals):
        row = table.iloc[j]
        below = bool(row.get("below_threshold", False))
        a, b = iv.onset / fps, (iv.offset + 1) / fps
        ax.axvspan(a, b, color="0.7" if below else "#f5b041", alpha=0.35, hatch="//" if below else None, lw=0)
        ax.axvline(iv.apex / fps, color="0.4" if below else "#d35400", lw=1)
        text = f"{row['label']} {row['confidence']:.2f}" + ("\n(below threshold)" if below else "")
        ax.text(iv.apex / fps, top, text, fontsize=7, ha="center", va="bottom", color="0.3" if below else "black")
    if present is not None and not np.all(present):
        gone = np.flatnonzero(~np.asarray(present, bool))
        ax.plot(gone / fps, np.full(len(gone), float(sig.min()) if len(sig) else 0.0), "|", color="0.5",
                ms=6, label="no face")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("motion score")
    ax.set_xlim(0, max(len(sig) / fps, 1e-3))
    ax.margins(y=0.25)
    ax.legend(loc="upper right", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
