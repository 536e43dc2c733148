"""Fine registration of the apex frame onto the onset frame of an aligned face crop.

Clip alignment fixes one similarity transform per clip (per-frame landmarks jitter more than a
micro-expression moves), so any head motion between onset and apex stays in the pair: 1-3 px of
global drift, as large as the expression itself. A patch comparison (DMA, a pixel difference) then
sees the whole face "move". Registration removes the global part and leaves the local one.

- "translation": phase correlation of the two grey crops (Hann window) finds the shift to about a
  pixel, ECC (enhanced correlation coefficient, translation only) refines it from there. A local
  expression moves few pixels and barely moves the global optimum.
- "euclidean": the same with rotation + translation in the ECC step.
Both fall back to the phase-correlation shift when ECC fails or wanders more than 2 px from it.
- "none": the apex as it is.
The apex is resampled (bilinear, edges replicated); the onset is never touched.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micronbert.errors import MicronbertError

METHODS = ("translation", "euclidean", "none")


@dataclass
class Registration:
    transform: np.ndarray  # (2, 3): apex pixel -> onset pixel
    method: str
    converged: bool = True

    @property
    def shift(self) -> tuple[float, float]:
        """(dx, dy): how far the apex content lies from the onset's (apex = onset moved by this)."""
        return float(-self.transform[0, 2]), float(-self.transform[1, 2])


def _grey(img: np.ndarray) -> np.ndarray:
    import cv2

    img = np.asarray(img)
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    return img.astype(np.float32)


def phase_shift(onset: np.ndarray, apex: np.ndarray) -> tuple[float, float]:
    """Sub-pixel (dx, dy) such that apex ≈ onset translated by (dx, dy)."""
    import cv2

    a, b = _grey(onset), _grey(apex)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
    return float(dx), float(dy)


def estimate(onset: np.ndarray, apex: np.ndarray, method: str = "translation") -> Registration:
    """The transform that maps the apex onto the onset (see the module doc for the methods)."""
    if method not in METHODS:
        raise MicronbertError(f"registration method must be one of {METHODS}, not {method!r}")
    if np.shape(onset) != np.shape(apex):
        raise MicronbertError(f"onset {np.shape(onset)} and apex {np.shape(apex)} differ in size")
    if method == "none":
        return Registration(np.array([[1, 0, 0], [0, 1, 0]], np.float64), method)
    import cv2

    dx, dy = phase_shift(onset, apex)
    coarse = np.array([[1, 0, -dx], [0, 1, -dy]], np.float64)
    # ECC finds W with onset(x) ≈ apex(W x): W maps onset pixels to apex pixels, its inverse maps the
    # apex onto the onset. Started from the phase-correlation shift, it refines it below a tenth of a pixel.
    motion = cv2.MOTION_TRANSLATION if method == "translation" else cv2.MOTION_EUCLIDEAN
    warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    try:
        _, warp = cv2.findTransformECC(_grey(onset), _grey(apex), warp, motion, criteria, None, 5)
    except cv2.error:
        return Registration(coarse, method, converged=False)
    if np.hypot(warp[0, 2] - dx, warp[1, 2] - dy) > 2.0:  # ECC wandered off: trust the correlation peak
        return Registration(coarse, method, converged=False)
    return Registration(cv2.invertAffineTransform(warp).astype(np.float64), method)


def apply(apex: np.ndarray, reg: Registration) -> np.ndarray:
    """The apex resampled into the onset's frame (same size and dtype)."""
    import cv2

    if reg.method == "none":
        return np.asarray(apex)
    h, w = np.shape(apex)[:2]
    return cv2.warpAffine(np.ascontiguousarray(apex), reg.transform, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def register_pair(onset: np.ndarray, apex: np.ndarray, method: str = "translation") -> tuple[np.ndarray, Registration]:
    """(apex registered onto the onset, the registration). Images: (H, W) or (H, W, 3), any dtype cv2 warps."""
    reg = estimate(onset, apex, method)
    return apply(apex, reg), reg


def register_pairs(onsets: np.ndarray, apexes: np.ndarray, method: str = "translation") -> np.ndarray:
    """Batched (N, H, W, 3) -> registered apexes (N, H, W, 3)."""
    return np.stack([register_pair(o, a, method)[0] for o, a in zip(onsets, apexes)]) if len(apexes) else apexes
