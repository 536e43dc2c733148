"""The DMA change map finds where a real face moved (issue: the raw diagonal measured distinctiveness).

Pairs differ only by a small smooth warp around a random point of a real face; both frames get
independent pixel noise. The patch with the largest change (lowest diagonal) must lie in the moved
region, at initialisation and after a short pretraining through the real `pretrain()` path. The
paper's raw softmax diagonal (−log a_i), evaluated on the same weights, must fail the same test: it
ranks patches by how distinctive they are, not by whether they moved.
"""
import copy
import dataclasses

import numpy as np
import pytest
import torch

from micronbert.config import PretrainConfig, preset
from micronbert.data.builtin import face_photos
from micronbert.data.frames import write_image
from micronbert.data.pairs import fit_square
from micronbert.model.checkpoint import load_pretrained
from micronbert.model.mubert import MicronBertModel
from micronbert.testing.pairs import local_warp, local_warp_pairs
from micronbert.train.pretrain import pretrain

SIZE, PATCH = 112, 8
AMP, NOISE = 1.5, 3.0  # a 1.5 px action, independent pixel noise σ = 3 on both frames


# (name, config changes, the least share of pairs the map must find). The default compares DMA's projected
# tokens: measured 0.875-0.896 at initialisation and 0.875-0.917 after pretraining (seeds 0-3), so it is held
# to 0.85. Comparing the residual stream without the Q/K projections (`--dma-compare residual
# --dma-no-projection`) meets the 0.9 at both points (0.917-0.979 and 0.917-0.958, docs/motion.md
# §12); it is not the default because it recognised no better on the development folders.
VARIANTS = [("default", {}, 0.85),
            ("residual-unprojected", {"dma_compare": "residual", "dma_project_qk": False}, 0.9)]


def tiny(changes):
    return dataclasses.replace(preset("tiny"), **changes)


@pytest.fixture(scope="module")
def faces():
    return [fit_square(img, SIZE) for img in face_photos().values()]


@pytest.fixture(scope="module")
def probe_pairs(faces):
    return local_warp_pairs(faces, 48, AMP, NOISE, seed=123, patch=PATCH)


def hit_rate(model, pairs, signal=None):
    """Share of pairs whose largest change (lowest DMA value) lies in the moved region; `signal`
    evaluates the same weights with another change signal (e.g. "paper")."""
    if signal is not None:
        model = copy.deepcopy(model)
        model.dma.signal = signal
    x, y, masks = pairs
    dma = model.eval().maps(x, y)["dma_map"].reshape(len(x), -1).numpy()
    return float(np.mean([masks[i][dma[i].argmin()] for i in range(len(x))])), float(masks.mean())


@pytest.mark.parametrize("name,changes,least", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_change_map_finds_the_moved_region_at_initialisation(probe_pairs, name, changes, least):
    torch.manual_seed(0)
    model = MicronBertModel(tiny(changes), with_decoder=False, with_agreement=False)
    hits, chance = hit_rate(model, probe_pairs)
    paper, _ = hit_rate(model, probe_pairs, "paper")
    print(f"init, {name}: change-map maximum in the moved region {hits:.3f}, paper's −log a_i {paper:.3f} "
          f"(chance {chance:.3f})")
    assert chance < 0.06
    # The default: 0.875-0.896 over init seeds 0-3, with the distance and the cosine signal alike (a per-patch
    # pixel difference scores 1.0 on these pairs: the encoder's final LayerNorm, per token like a cosine,
    # loses some of it to the noise; the residual stream keeps it).
    assert hits >= least, hits
    assert paper < 0.5, paper


@pytest.mark.slow
@pytest.mark.parametrize("name,changes,least", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_pretraining_sharpens_the_change_map(tmp_path, faces, probe_pairs, name, changes, least):
    rng = np.random.default_rng(0)
    root = tmp_path / "pairs"
    for k in range(64):  # one two-frame clip per pair: frame 1 = face, frame 2 = locally warped face
        img = faces[rng.integers(len(faces))]
        warped, _ = local_warp(img, rng)
        write_image(root / f"clip{k:03d}" / "img1.png", img)
        write_image(root / f"clip{k:03d}" / "img2.png", warped)
    pcfg = PretrainConfig(steps=100, batch_size=4, warmup_steps=10, lr=3e-4, log_every=20, ckpt_every=1000, seed=0)
    torch.manual_seed(0)
    pretrain([str(root)], tmp_path / "run", tiny(changes), pcfg, fps=30, show_progress=False)
    model, _ = load_pretrained(tmp_path / "run", with_decoder=False)
    hits, chance = hit_rate(model, probe_pairs)
    paper, _ = hit_rate(model, probe_pairs, "paper")
    print(f"pretrained, {name}: change-map maximum in the moved region {hits:.3f}, paper's −log a_i {paper:.3f} "
          f"(chance {chance:.3f})")
    # The default: 0.875 here (pretraining seeds 0-3: 0.875 / 0.917 / 0.917 / 0.896); the cosine signal,
    # normalised per patch, fell to 0.833 / 0.812 / 0.792 / 0.854 with the same pretraining (docs/motion.md
    # §11). Residual, unprojected: 0.917 / 0.958 / 0.917 / 0.917 (§12): pretraining cannot erode a
    # projection it does not have.
    assert hits >= least, hits
    assert paper < 0.5, paper
