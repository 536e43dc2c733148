"""Pretraining teaches the DMA diagonal to mark local change (issue: the release's maps lit up the whole face).

Pairs differ only by a small smooth warp (≈2.5 px) around a random point of a real face. After a short
pretraining through the real `pretrain()` path, the lowest DMA value of unseen pairs must fall in the
warped region far more often than chance.
"""
import numpy as np
import pytest
import torch

from micronbert.config import PretrainConfig, preset
from micronbert.data.builtin import face_photos
from micronbert.data.frames import write_image
from micronbert.data.pairs import fit_square
from micronbert.model.checkpoint import load_pretrained
from micronbert.model.mubert import normalise_images
from micronbert.train.pretrain import pretrain

SIZE, PATCH = 112, 8
GRID = SIZE // PATCH


def local_warp(img, rng, amp=2.5, sigma=6.0):
    """Displace pixels around a random centre by a Gaussian bump; returns the image and the patch mask."""
    import cv2

    cy, cx = rng.integers(24, SIZE - 24, size=2)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    angle = rng.uniform(0, 2 * np.pi)
    map_x = (xx - amp * np.cos(angle) * bump).astype(np.float32)
    map_y = (yy - amp * np.sin(angle) * bump).astype(np.float32)
    out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = (bump > 0.3).reshape(GRID, PATCH, GRID, PATCH).any(axis=(1, 3))
    return out, moved.reshape(-1)


@pytest.fixture(scope="module")
def faces():
    return [fit_square(img, SIZE) for img in face_photos().values()]


def argmin_hit_rate(model, faces, seed=123, n=48):
    rng = np.random.default_rng(seed)
    a, b, masks = [], [], []
    for _ in range(n):
        img = faces[rng.integers(len(faces))]
        warped, mask = local_warp(img, rng)
        a.append(img)
        b.append(warped)
        masks.append(mask)
    x, y = normalise_images(torch.from_numpy(np.stack(a))), normalise_images(torch.from_numpy(np.stack(b)))
    dma = model.eval().maps(x, y)["dma_map"].reshape(n, -1).numpy()
    masks = np.stack(masks)
    hits = np.mean([masks[i][dma[i].argmin()] for i in range(n)])
    return hits, masks.mean()


@pytest.mark.slow
def test_pretraining_makes_the_dma_minimum_find_the_moved_region(tmp_path, faces):
    rng = np.random.default_rng(0)
    root = tmp_path / "pairs"
    for k in range(64):  # one two-frame clip per pair: frame 1 = face, frame 2 = locally warped face
        img = faces[rng.integers(len(faces))]
        warped, _ = local_warp(img, rng)
        write_image(root / f"clip{k:03d}" / "img1.png", img)
        write_image(root / f"clip{k:03d}" / "img2.png", warped)
    pcfg = PretrainConfig(steps=60, batch_size=4, warmup_steps=10, lr=3e-4, log_every=20, ckpt_every=1000, seed=0)
    torch.manual_seed(0)
    pretrain([str(root)], tmp_path / "run", preset("tiny"), pcfg, fps=30, show_progress=False)
    model, _ = load_pretrained(tmp_path / "run", with_decoder=False)
    hits, chance = argmin_hit_rate(model, faces)
    print(f"DMA argmin in the moved region: {hits:.3f} (chance {chance:.3f})")
    assert chance < 0.06
    assert hits >= 6 * chance, (hits, chance)
