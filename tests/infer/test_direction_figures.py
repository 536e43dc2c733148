"""Directional DMA in what users see: dma_motion from the API and the arrows on the pair figure."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from infer_helpers import make_classifier_dir


@pytest.fixture(scope="module")
def no_direction_dir(tmp_path_factory):
    return make_classifier_dir(tmp_path_factory.mktemp("nodir") / "model", dma_shift_px=0.0)


def _pair(seed=0, size=32):
    import cv2

    rng = np.random.default_rng(seed)
    onset = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3)).astype(np.uint8), (0, 0), 1.5)
    apex = onset.copy()
    apex[8:20, 10:24] = np.roll(onset[8:20, 10:24], 1, axis=1)  # a local move to the right
    return onset, apex


@pytest.fixture()
def quiver_calls(monkeypatch):
    """Records (args, kwargs) of every Axes.quiver call and the panel titles, still drawing them."""
    from matplotlib.axes import Axes

    calls, titles = [], []
    quiver, set_title = Axes.quiver, Axes.set_title

    def record_quiver(self, *args, **kwargs):
        calls.append((args, kwargs))
        return quiver(self, *args, **kwargs)

    def record_title(self, label, *args, **kwargs):
        titles.append(label)
        return set_title(self, label, *args, **kwargs)

    monkeypatch.setattr(Axes, "quiver", record_quiver)
    monkeypatch.setattr(Axes, "set_title", record_title)
    return calls, titles


def test_forward_batch_and_predict_pair_return_the_motion_of_a_directional_classifier(classifier_dir):
    from micronbert.infer.api import MicronBert
    from micronbert.model.mubert import normalise_images

    mb = MicronBert.from_pretrained(classifier_dir)
    assert mb.model.shift_px > 0  # the default config
    onset, apex = _pair()
    out = mb.forward_batch(np.stack([onset, apex]), np.stack([apex, onset]))
    assert out["dma_motion"].shape == (2, 4, 4, 2) and out["dma_map"].shape == (2, 4, 4)
    pair = mb.predict_pair(onset, apex)
    assert pair["dma_motion"].shape == (4, 4, 2)
    np.testing.assert_allclose(pair["dma_motion"], out["dma_motion"][0], atol=1e-5)
    # row-major patches: the model's (N, 2) motion, reshaped; registration off so the input is the raw pair
    mb.config = dataclasses.replace(mb.config, registration="none")
    a, b = (normalise_images(torch.from_numpy(x[None])) for x in (onset, apex))
    with torch.no_grad():
        ref = mb.model.forward_all(a, b)["dma_motion"][0].numpy()
    np.testing.assert_allclose(mb.predict_pair(onset, apex)["dma_motion"].reshape(16, 2), ref, atol=1e-5)


def test_no_motion_key_without_directional_dma(no_direction_dir):
    from micronbert.infer.api import MicronBert

    mb = MicronBert.from_pretrained(no_direction_dir)
    assert mb.model.shift_px == 0
    onset, apex = _pair()
    assert "dma_motion" not in mb.forward_batch(onset[None], apex[None])
    assert set(mb.predict_pair(onset, apex)) == {"probabilities", "label", "dma_map", "poi_map"}


@pytest.fixture(scope="module")
def early_direction_dir(tmp_path_factory):
    return make_classifier_dir(tmp_path_factory.mktemp("early") / "model", depth=2, dma_direction_blocks=1)


@pytest.mark.parametrize("folder", ["classifier_dir", "early_direction_dir"])
def test_pair_motion_of_the_backbone_is_the_classifiers(folder, request, no_direction_dir):
    """What the demo report and `dma-map` draw (the backbone alone) is what the classifier reads, also
    when the classifier reads direction before its last block."""
    from micronbert.infer.api import MicronBert
    from micronbert.infer.maps import load_backbone_any, pair_motion

    path = request.getfixturevalue(folder)
    mb = MicronBert.from_pretrained(path)
    mb.config = dataclasses.replace(mb.config, registration="none")  # pair_motion does not register
    onset, apex = _pair(1)
    backbone, _ = load_backbone_any(path)
    np.testing.assert_allclose(pair_motion(backbone, onset, apex), mb.predict_pair(onset, apex)["dma_motion"],
                               atol=1e-5)
    assert pair_motion(load_backbone_any(no_direction_dir)[0], onset, apex) is None


def test_pair_figure_draws_arrows_for_the_top_cells_only(tmp_path, quiver_calls):
    from micronbert.data.frames import read_image
    from micronbert.infer.visualise import change_map, pair_figure

    calls, titles = quiver_calls
    onset, apex = _pair()
    g = 4
    rng = np.random.default_rng(0)
    dma = rng.uniform(0.2, 1.0, (g, g))
    top = [(1, 2), (2, 1), (3, 3)]  # ceil(0.15 · 16) = 3 cells
    for k, (r, c) in enumerate(top):
        dma[r, c] = 0.01 * (k + 1)
    motion = rng.normal(size=(g, g, 2))
    motion[1, 2] = (3.0, -4.0)  # the longest: right and up
    motion[2, 1] = (0.0, 1.0)   # down
    motion[3, 3] = (-1.0, 0.0)  # left
    pair_figure(onset, apex, dma, None, tmp_path / "f.png", motion=motion)
    assert read_image(tmp_path / "f.png").ndim == 3
    assert len(calls) == 1 and "DMA change + direction" in titles
    (x, y, u, v), kwargs = calls[0]
    assert kwargs["angles"] == "xy" and kwargs["scale_units"] == "xy" and kwargs["scale"] == 1
    cell = 32 / g
    drawn = {(int(yy // cell), int(xx // cell)): (uu, vv) for xx, yy, uu, vv in zip(x, y, u, v)}
    brightest = np.argsort(change_map(dma).ravel())[-3:]
    assert set(drawn) == set(top) == {divmod(int(i), g) for i in brightest}
    np.testing.assert_allclose(np.sort(x), np.sort([(c + 0.5) * cell for _, c in top]))
    np.testing.assert_allclose(np.sort(y), np.sort([(r + 0.5) * cell for r, _ in top]))
    # the longest arrow is 1.5 cells; directions as given, y down in the image
    np.testing.assert_allclose(drawn[(1, 2)], (0.6 * 1.5 * cell, -0.8 * 1.5 * cell))
    np.testing.assert_allclose(drawn[(2, 1)], (0.0, 1.5 * cell / 5))
    np.testing.assert_allclose(drawn[(3, 3)], (-1.5 * cell / 5, 0.0))
    assert max(math.hypot(a, b) for a, b in drawn.values()) == pytest.approx(1.5 * cell)
    with pytest.raises(ValueError, match="motion"):
        pair_figure(onset, apex, dma, None, tmp_path / "g.png", motion=motion[:2])


def test_pair_figure_without_motion_draws_no_arrows(tmp_path, quiver_calls):
    from micronbert.infer.visualise import pair_figure

    calls, titles = quiver_calls
    onset, apex = _pair()
    pair_figure(onset, apex, np.random.default_rng(0).uniform(0.1, 1, (4, 4)), np.ones((4, 4)), tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
    assert calls == [] and "DMA change" in titles and "DMA change + direction" not in titles


def test_predict_figures_carry_the_motion(classifier_dir, no_direction_dir, face_frames_dir, tmp_path, quiver_calls):
    from micronbert.infer.api import MicronBert
    from micronbert.infer.predict import predict_clip

    calls, _ = quiver_calls
    result = predict_clip(MicronBert.from_pretrained(classifier_dir), face_frames_dir, onset=2, apex=9,
                          out_dir=tmp_path / "dir")
    assert result.maps[0]["dma_motion"].shape == (4, 4, 2) and len(calls) == 1
    assert (tmp_path / "dir" / result.table["image"][0]).is_file()
    result = predict_clip(MicronBert.from_pretrained(no_direction_dir), face_frames_dir, onset=2, apex=9,
                          out_dir=tmp_path / "nodir")
    assert "dma_motion" not in result.maps[0] and len(calls) == 1


def test_dma_map_command_draws_and_saves_the_motion_of_a_directional_config(tmp_path, face_frames_dir,
                                                                            quiver_calls):
    from micronbert.cli import main
    from micronbert.config import preset
    from micronbert.model.checkpoint import save_model
    from micronbert.model.mubert import MicronBertModel

    calls, _ = quiver_calls
    a, b = face_frames_dir / "img1.jpg", face_frames_dir / "img5.jpg"
    for name, shift in (("dir", 0.5), ("nodir", 0.0)):
        cfg = preset("test", dma_shift_px=shift)
        torch.manual_seed(0)
        save_model(tmp_path / name, MicronBertModel(cfg).state_dict(), cfg)
        assert main(["dma-map", "--weights", str(tmp_path / name), str(a), str(b), "--out",
                     str(tmp_path / f"{name}.png"), "--npz", str(tmp_path / f"{name}.npz")]) == 0
        maps = np.load(tmp_path / f"{name}.npz")
        assert ("dma_motion" in maps) == (shift > 0)
        if shift:
            assert maps["dma_motion"].shape == (cfg.grid, cfg.grid, 2)
    assert len(calls) == 1
