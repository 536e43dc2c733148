"""benchmarks/face_mask_probe.py: the face region is each clip's own landmarks mapped into its crop, the hull
share is per patch, the forehead extension reaches above the brows, and the token change is what the grid
head's PoI gate multiplies."""
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import face_mask_probe as fmp  # noqa: E402

from micronbert.config import preset  # noqa: E402
from micronbert.faces.cache import FaceCache  # noqa: E402
from micronbert.faces.template import hull_patch_share  # noqa: E402
from micronbert.model.classifier import to_float  # noqa: E402
from micronbert.model.heads import MicronBertClassifier  # noqa: E402
from micronbert.model.mubert import normalise_images  # noqa: E402


def test_hull_patch_share_counts_the_pixels_of_each_patch_inside():
    # a square from (8, 4) to (16, 12) in a 32-px crop of 8-px patches: patch (row 0, col 1) half inside,
    # patch (row 1, col 1) half inside (rows 4..11 straddle the patch border at 8), the rest outside
    share = hull_patch_share([(8, 4), (16, 4), (16, 12), (8, 12)], 32, 8).reshape(4, 4)
    assert share[0, 1] > 0.4 and share[1, 1] > 0.4
    assert share[:, 0].sum() == 0 and share[:, 2:].sum() < 0.2 and share[2:].sum() == 0


def _face(size=64):
    """A plausible 68-point layout: every point on a ring, brows (17-26) and eyes (36-47) placed."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    lm = np.stack([32 + 14 * np.cos(t), 36 + 16 * np.sin(t)], 1)
    lm[17:27] = np.stack([np.linspace(20, 44, 10), np.full(10, 26.0)], 1)   # brows at y = 26
    lm[36:48] = np.stack([np.linspace(22, 42, 12), np.full(12, 32.0)], 1)   # eyes at y = 32
    return lm * size / 64


def test_the_forehead_reaches_a_brow_to_eye_distance_above_the_brows():
    regions = fmp.face_regions(_face(), 64, 8)
    hull, fore = (regions[k].reshape(8, 8) for k in ("hull", "hull+forehead"))
    assert (fore >= hull - 1e-9).all()
    # the ring's top is at y = 20; brows raised by 6 px reach y = 20 too, the brow row itself spans x 20..44:
    # the forehead region adds area in rows 2 (y 16..23) beside the ring's top
    assert fore[2].sum() > hull[2].sum()
    assert fore[:2].sum() == 0  # nothing above y = 16


def test_crop_landmarks_maps_each_clips_reference_landmarks_into_its_crop(tmp_path):
    cache = FaceCache(tmp_path / "cache")
    src = _face() * 2 + 100  # landmarks in a larger source frame
    tf = np.array([[0.5, 0.0, -50.0], [0.0, 0.5, -50.0]])  # source -> 64-px crop
    cache.save("casme2", "sub01/c0", np.zeros((2, 64, 64, 3), np.uint8), [10, 14], landmarks=src, transform=tf)
    got = fmp.crop_landmarks(tmp_path, ["casme2/sub01/c0"], 32)  # the model's size is half the cache's
    np.testing.assert_allclose(got[0], _face() / 2)


def test_grid_inputs_are_what_the_grid_head_gates():
    cfg = preset("test", depth=2)
    torch.manual_seed(0)
    model = MicronBertClassifier(cfg, 3).eval()
    rng = np.random.default_rng(0)
    onset = rng.integers(0, 255, (3, 32, 32, 3)).astype(np.uint8)
    apex = np.roll(onset, 1, axis=2)
    sal, delta = fmp.grid_inputs(model.backbone.state_dict(), cfg, onset, apex, batch=2)
    with torch.no_grad():
        micro = model.forward_all(normalise_images(to_float(onset, "cpu")), normalise_images(to_float(apex, "cpu")))
    torch.testing.assert_close(sal, micro["poi_map"])
    torch.testing.assert_close(delta, (micro["tokens_second"] - micro["tokens_first"])
                               * (1 - micro["dma_map"]).unsqueeze(-1))


def test_a_clip_without_landmarks_is_named_not_a_geometry_error(tmp_path):
    cache = FaceCache(tmp_path / "cache")
    cache.save("casme2", "sub01/c0", np.zeros((2, 64, 64, 3), np.uint8), [10, 14])  # no landmarks: NaN
    with pytest.raises(SystemExit, match=r"sub01%2Fc0\.npz: no landmarks"):
        fmp.crop_landmarks(tmp_path, ["casme2/sub01/c0"], 32)
