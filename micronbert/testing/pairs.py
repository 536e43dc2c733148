"""Labelled onset/apex pairs with a learnable local-motion signal, built from the built-in real face photos,
for the training and evaluation tests (tests/train/conftest.py serves them as the `synthetic` fixture).

Each subject is one real face photo; each sample is that face with a small random crop/brightness
change (onset) and the same face with a class-specific local warp (apex): class 0 raises both brows,
class 1 pulls the mouth down, class 2 pulls the mouth corners apart (mirror-symmetric, like real ones).
Only the onset→apex difference tells the classes apart; appearance (the subject) carries no label
information.

Kept apart from micronbert.synth on purpose: the tests' learnability thresholds were set on these exact
pixels (square photo crops warped in face-crop coordinates), and micronbert.synth's clips (bumps placed on
detected landmarks in a dataset-sized frame, rendered per frame) are other pixels and far slower to make.
The shared piece is the faces: micronbert.data.builtin.face_photos.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# Per class: local motions ((centre x, centre y) in [0, 1] face coordinates, (dx, dy) direction).
# Mirror-symmetric, like real expressions, so a horizontal flip (a paired augmentation) keeps the label.
_MOTIONS = [
    [((0.33, 0.38), (0.0, -1.0)), ((0.67, 0.38), (0.0, -1.0))],   # brows raised
    [((0.5, 0.75), (0.0, 1.0))],                                   # mouth pulled down
    [((0.35, 0.72), (-1.0, 0.0)), ((0.65, 0.72), (1.0, 0.0))],     # mouth corners pulled apart
]


def face_crops() -> list[np.ndarray]:
    """The centre squares of the built-in face photos, in name order."""
    from micronbert.data.builtin import face_photos

    photos = face_photos(required=False)
    crops = []
    for name in sorted(photos):
        img = photos[name]
        h, w = img.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        crops.append(img[y0:y0 + side, x0:x0 + side])
    return crops


def warp_face(img: np.ndarray, cls: int, amp: float) -> np.ndarray:
    """`img` with class `cls`'s local motions; amp: displacement as a fraction of the image side."""
    import cv2

    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sigma = 0.12 * w
    mx, my = xx.copy(), yy.copy()
    for (cx, cy), (dx, dy) in _MOTIONS[cls]:
        bump = np.exp(-((xx - cx * w) ** 2 + (yy - cy * h) ** 2) / (2 * sigma ** 2))
        # remap samples the source at (x - d): content moves by +d
        mx -= amp * w * dx * bump
        my -= amp * h * dy * bump
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def motion_pairs(size: int = 32, n_subjects: int = 6, per_class: int = 4, n_classes: int = 3,
                   amp: float = 0.06, seed: int = 0, work: int = 128):
    """(evaluation table, {sample_id: (onset, apex)}) with uint8 (size, size, 3) frames."""
    import cv2

    rng = np.random.default_rng(seed)
    crops = face_crops()
    rows, pairs = [], {}
    for s in range(n_subjects):
        base = cv2.resize(crops[s % len(crops)], (work + 16, work + 16), interpolation=cv2.INTER_AREA)
        if s >= len(crops):  # more subjects than photos: mirror to make a different "person"
            base = base[:, ::-1]
        for c in range(n_classes):
            for k in range(per_class):
                ox, oy = rng.integers(0, 17, size=2)
                face = base[oy:oy + work, ox:ox + work].astype(np.float32) * rng.uniform(0.85, 1.15)
                face = np.clip(face, 0, 255).astype(np.uint8)
                apex = warp_face(face, c, amp * rng.uniform(0.8, 1.2))
                small = lambda im: cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
                sid = f"s{s:02d}/c{c}_{k}"
                pairs[sid] = (small(face), small(apex))
                rows.append({"dataset": "synth", "subject": f"s{s:02d}", "sample_id": sid, "onset": 0, "apex": 1,
                             "label": c, "class_name": f"class{c}", "fold": f"synth/s{s:02d}",
                             "source": f"synthetic:{len(rows) + 2}"})
    return pd.DataFrame(rows), pairs


def local_warp(img: np.ndarray, rng: np.random.Generator, amp: float = 2.5, sigma: float = 6.0,
               patch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Displace the pixels of a square face around a random centre by a Gaussian bump of `amp` px in a
    random direction -> (warped image, flat mask of the patch cells that moved)."""
    import cv2

    size = img.shape[0]
    cy, cx = rng.integers(24, size - 24, size=2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    angle = rng.uniform(0, 2 * np.pi)
    map_x = (xx - amp * np.cos(angle) * bump).astype(np.float32)
    map_y = (yy - amp * np.sin(angle) * bump).astype(np.float32)
    out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    grid = size // patch
    moved = (bump > 0.3).reshape(grid, patch, grid, patch).any(axis=(1, 3))
    return out, moved.reshape(-1)


def add_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Independent Gaussian pixel noise of σ `sigma` (none at 0)."""
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8) if sigma else img


def local_warp_pairs(faces: list[np.ndarray], n: int, amp: float, noise: float, seed: int = 123, patch: int = 8):
    """n (onset, apex) pairs that differ only by a local warp of `amp` px at a random place, independent
    noise on both frames -> (normalised onsets, normalised apexes, (n, cells) moved-cell masks)."""
    import torch

    from micronbert.model.mubert import normalise_images

    rng = np.random.default_rng(seed)
    onsets, apexes, masks = [], [], []
    for _ in range(n):
        img = faces[rng.integers(len(faces))]
        warped, mask = local_warp(img, rng, amp=amp, patch=patch)
        onsets.append(add_noise(img, rng, noise))
        apexes.append(add_noise(warped, rng, noise))
        masks.append(mask)
    return (normalise_images(torch.from_numpy(np.stack(onsets))), normalise_images(torch.from_numpy(np.stack(apexes))),
            np.stack(masks))
