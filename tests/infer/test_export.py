"""ONNX export: the graph runs in onnxruntime and agrees with torch."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from micronbert.errors import MicronbertError
from micronbert.infer.export import _traceable_diagonal, export_onnx
from micronbert.model.dma import diagonal_attention, diagonal_attention_naive

from infer_helpers import CLASSES, make_classifier_dir

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def test_traceable_diagonal_matches_reference():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 40, 16, generator=g), torch.randn(2, 1, 40, 16, generator=g)
    ref = diagonal_attention_naive(q, k, 0.25)
    assert torch.allclose(_traceable_diagonal(q, k, 0.25), ref, atol=1e-6)
    assert torch.allclose(diagonal_attention(q, k, 0.25, chunk=7), ref, atol=1e-6)


def test_export_command_runs_in_onnxruntime(classifier_dir, tmp_path, capsys):
    from micronbert.cli import main

    out = tmp_path / "model.onnx"
    assert main(["export", "--weights", str(classifier_dir), "--onnx", str(out)]) == 0
    printed = capsys.readouterr().out
    diff = float(re.search(r"max abs difference ([0-9.e+-]+)", printed).group(1))
    assert diff < 1e-4

    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    assert m.opset_import[0].version >= 17
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["classes"]) == CLASSES and json.loads(meta["input"])["dtype"] == "uint8"

    # a batch size other than the exported one, real-looking input: compare with the torch model directly
    from micronbert.infer.api import MicronBert

    mb = MicronBert.from_pretrained(classifier_dir)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    # the graph takes the apex registered onto the onset, as its metadata says; forward_batch registers itself
    from micronbert.faces.register import register_pairs

    assert json.loads(meta["input"])["apex_registration"] == mb.config.registration == "translation"
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "dma_map", "poi_map", "dma_motion"]
    probs, dma, poi, motion = sess.run(None, {"onset": a, "apex": register_pairs(a, b, mb.config.registration)})
    ref = mb.forward_batch(a, b)
    assert probs.shape == (5, 3) and dma.shape == (5, 4, 4) and poi.shape == (5, 4, 4)
    assert motion.shape == (5, 4, 4, 2) and np.abs(motion).max() > 0
    np.testing.assert_allclose(motion, ref["dma_motion"], atol=1e-4)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(probs, ref["probabilities"], atol=1e-4)
    np.testing.assert_allclose(dma, ref["dma_map"], atol=1e-4)
    np.testing.assert_allclose(poi, ref["poi_map"], atol=1e-4)


def test_export_plain_cross_attention_variant(tmp_path):
    folder = make_classifier_dir(tmp_path / "m", use_dma=False, dma_query="first", seed=3)
    res = export_onnx(folder, tmp_path / "m.onnx")
    assert max(res["max_abs_diff"].values()) < 1e-4
    assert "dma_motion" not in res["max_abs_diff"]  # no diagonal, so no direction to read from it


def test_a_model_without_direction_exports_no_motion_output(tmp_path):
    folder = make_classifier_dir(tmp_path / "m", dma_shift_px=0.0, seed=4)
    res = export_onnx(folder, tmp_path / "m.onnx")
    assert sorted(res["max_abs_diff"]) == ["dma_map", "poi_map", "probabilities"]
    assert max(res["max_abs_diff"].values()) < 1e-4


@pytest.mark.parametrize("overrides", [{"dma_compare": "residual"},
                                       {"dma_compare": "residual", "dma_project_qk": False},
                                       {"depth": 2, "dma_direction_blocks": 1}])
def test_export_follows_what_dma_compares_and_where_direction_is_read(tmp_path, overrides):
    folder = make_classifier_dir(tmp_path / "m", seed=5, **overrides)
    res = export_onnx(folder, tmp_path / "m.onnx")
    assert sorted(res["max_abs_diff"]) == ["dma_map", "dma_motion", "poi_map", "probabilities"]
    assert max(res["max_abs_diff"].values()) < 1e-4


def test_a_face_prior_classifier_exports_its_prior_and_loads_for_prediction(tmp_path):
    """The face prior is not in the weights file: it is rebuilt from config.json wherever the folder loads."""
    from micronbert.faces.template import template_face_share
    from micronbert.infer.api import MicronBert

    folder = make_classifier_dir(tmp_path / "m", seed=6, poi_prior="hull", margin=0.15)
    res = export_onnx(folder, tmp_path / "m.onnx")
    assert max(res["max_abs_diff"].values()) < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["input"])["margin"] == 0.15  # a deployment must align faces as training did
    mb = MicronBert.from_pretrained(folder)
    plain = MicronBert.from_pretrained(make_classifier_dir(tmp_path / "plain", seed=6))  # the same weights
    assert (mb.config.poi_prior, plain.config.poi_prior) == ("hull", "none")
    faces = np.random.default_rng(0).integers(0, 255, (2, 2, mb.size, mb.size, 3), dtype=np.uint8)
    ratio = mb.forward_batch(faces[0], faces[1])["poi_map"] / plain.forward_batch(faces[0], faces[1])["poi_map"]
    share = template_face_share(mb.size, mb.config.patch_size, forehead=False)
    ratio = ratio.reshape(2, -1) / ratio.reshape(2, -1)[:, share.argmax()][:, None]
    # the prior's weight per patch, FLOOR outside the template hull, 1 for a patch wholly inside
    np.testing.assert_allclose(ratio, np.broadcast_to(0.02 + 0.98 * share, ratio.shape), rtol=1e-3)


def test_a_classifier_evaluated_with_test_flip_exports_the_mirror_average(tmp_path):
    """The graph averages the pair's and its mirror image's probabilities, as forward_batch does."""
    from micronbert.infer.api import MicronBert

    folder = make_classifier_dir(tmp_path / "m", seed=6, registration="none",
                                 finetune={"test_flip": True, "test_neighbours": True})
    res = export_onnx(folder, tmp_path / "m.onnx")
    assert max(res["max_abs_diff"].values()) < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["probabilities"].startswith("mean of the pair and its mirror image; evaluated as the mean")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    probs = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(
        ["probabilities"], {"onset": a, "apex": b})[0]
    np.testing.assert_allclose(probs, MicronBert.from_pretrained(folder).forward_batch(a, b)["probabilities"],
                               atol=1e-4)


def test_export_refuses_a_backbone_only_folder(tmp_path):
    from micronbert.config import preset
    from micronbert.model.checkpoint import save_model
    from micronbert.model.mubert import MicronBertModel

    cfg = preset("test")
    save_model(tmp_path / "bb", MicronBertModel(cfg, with_decoder=False, with_agreement=False).state_dict(), cfg)
    with pytest.raises(MicronbertError, match="not a fine-tuned classifier"):
        export_onnx(tmp_path / "bb", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_an_own_hull_classifier_takes_each_face_s_mask_in_torch_and_in_onnx(tmp_path):
    """PoI prior "own": the graph has a face_mask input; ONNX and forward_batch agree given the same masks
    (mirror view included), the mask changes the prediction, and without one the template's hull is used."""
    from micronbert.faces.template import own_hull_mask, template_landmarks
    from micronbert.infer.api import MicronBert

    folder = make_classifier_dir(tmp_path / "m", seed=6, poi_prior="own", registration="none",
                                 finetune={"test_flip": True})
    res = export_onnx(folder, tmp_path / "m.onnx")
    assert max(res["max_abs_diff"].values()) < 1e-4
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["onset", "apex", "face_mask"]
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert "face_mask" in json.loads(meta["input"])
    mb = MicronBert.from_pretrained(folder)
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (2, mb.size, mb.size, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    left = np.stack([own_hull_mask(template_landmarks(mb.size) * 0.6, mb.size)] * 2)  # a small face, top left
    got = {}
    for name, mask in (("left", left), ("template", np.stack([own_hull_mask(None, mb.size)] * 2))):
        onnx_out = sess.run(["probabilities", "poi_map"], {"onset": a, "apex": b, "face_mask": mask})
        torch_out = mb.forward_batch(a, b, face=mask)
        np.testing.assert_allclose(onnx_out[0], torch_out["probabilities"], atol=1e-4)
        np.testing.assert_allclose(onnx_out[1], torch_out["poi_map"], rtol=1e-3, atol=1e-4)
        got[name] = torch_out
    assert np.abs(got["left"]["poi_map"] - got["template"]["poi_map"]).max() > 0.1
    one = mb.predict_pair(a[0], b[0], landmarks=template_landmarks(mb.size) * 0.6)  # the API builds the mask
    np.testing.assert_allclose(list(one["probabilities"].values()), got["left"]["probabilities"][0], atol=1e-6)
    # no mask: the template's hull, as the "hull" prior's fixed weights
    np.testing.assert_allclose(mb.forward_batch(a, b)["poi_map"], got["template"]["poi_map"], atol=1e-5)
