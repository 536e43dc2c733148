"""The flow baseline's two flows (TV-L1 and Farnebäck): both measure a known local shift, they are not
the same computation, the choice is kept in the classifier folder, and old folders read as Farnebäck."""
from __future__ import annotations

import numpy as np
import pytest

from micronbert.errors import MicronbertError
from micronbert.model.flow_cnn import (FLOW_METHODS, LEGACY_FLOW, FlowCNN, FlowConfig, dense_flow,
                                       flow_config_from_saved, flow_features)

SIZE = 112


def textured(seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (SIZE, SIZE, 3)).astype(np.uint8), (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def shifted_patch(img, dx, dy, centre=(70, 40), sigma=12.0):
    """img with its content around `centre` (x, y) moved by (dx, dy) px, smoothly fading out (a facial action)."""
    import cv2

    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    bump = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma ** 2)).astype(np.float32)
    return cv2.remap(img, xx - dx * bump, yy - dy * bump, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("method", FLOW_METHODS)
@pytest.mark.parametrize("dx,dy", [(1.5, 0.0), (-1.5, 0.0), (0.0, 2.0), (0.0, -2.0)])
def test_each_flow_measures_a_known_local_shift(method, dx, dy):
    import cv2

    img = textured()
    g0 = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(shifted_patch(img, dx, dy), cv2.COLOR_RGB2GRAY)
    flow = dense_flow(g0, g1, method)
    assert flow.shape == (SIZE, SIZE, 2)
    centre = flow[36:45, 66:75].reshape(-1, 2).mean(0)        # where the shift is full
    far = np.abs(flow[85:105, 5:30]).mean()                    # where nothing moved
    for got, want in zip(centre, (dx, dy)):
        if want:
            assert np.sign(got) == np.sign(want) and abs(got - want) < 0.3 * abs(want), (method, centre)
        else:
            assert abs(got) < 0.25, (method, centre)
    assert far < 0.1, (method, far)


def test_the_two_flows_are_different_computations():
    import cv2

    img = textured(1)
    g0 = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(shifted_patch(img, 1.5, -1.0), cv2.COLOR_RGB2GRAY)
    tv, fb = dense_flow(g0, g1, "tvl1"), dense_flow(g0, g1, "farneback")
    assert np.abs(tv - fb).mean() > 0.02
    feats = {m: flow_features(img, shifted_patch(img, 1.5, -1.0), 28, m) for m in FLOW_METHODS}
    assert feats["tvl1"].shape == feats["farneback"].shape == (3, 28, 28)
    assert not np.allclose(feats["tvl1"], feats["farneback"], atol=1e-3)


def test_unknown_flow_is_a_clear_error():
    with pytest.raises(MicronbertError, match="unknown flow method"):
        FlowConfig(flow="lucas-kanade")
    with pytest.raises(MicronbertError, match="unknown flow method"):
        dense_flow(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), "horn")


def test_saved_config_keeps_the_flow_and_old_folders_read_as_farneback():
    assert LEGACY_FLOW == "farneback"
    assert flow_config_from_saved({"flow_size": 28, "input_size": 112, "channels": [3, 5, 8]}).flow == "farneback"
    assert flow_config_from_saved({"flow": "tvl1"}).flow == "tvl1"
    assert flow_config_from_saved({"flow": "farneback"}).flow == "farneback"


def test_classifier_folder_round_trip_keeps_the_flow(tmp_path):
    from micronbert.model.classifier import load_classifier, predict_pairs, save_classifier

    img = textured(2)
    onset, apex = img[None], shifted_patch(img, 1.5, 0.0)[None]
    for method in FLOW_METHODS:
        model = FlowCNN(FlowConfig(flow=method), 3).eval()
        folder = save_classifier(tmp_path / method, model, ["a", "b", "c"], "megc2019", {}, aligned=True)
        loaded, classes, config = load_classifier(folder)
        assert loaded.cfg.flow == method and config["model"]["flow"] == method
        probs = predict_pairs(loaded, onset, apex)
        assert probs.shape == (1, 3) and np.isclose(probs.sum(), 1.0, atol=1e-5)


def test_methods_table_names_each_flow():
    from micronbert.train.methods import build_method, default_recipe

    for name, flow in (("flow-cnn-tvl1", "tvl1"), ("flow-cnn-farneback", "farneback"),
                       ("flow-cnn", FlowConfig().flow)):
        m = build_method(name, ["a", "b"], default_recipe(name))
        assert m.cfg.flow == flow and m.describe()["flow"] == flow


def test_registered_flow_baseline_removes_head_drift_in_training_and_in_the_saved_classifier(tmp_path):
    """flow-cnn-registered: a pair whose apex is the onset moved 2 px as a whole (head drift) gives near-zero
    flow once registered, and about 2 px without; a saved classifier registers at prediction as it trained."""
    import torch

    from micronbert.model.classifier import load_classifier, predict_pairs, save_classifier
    from micronbert.train.methods import build_method, default_recipe
    from micronbert.train.pairdata import PairData

    img = textured(3)
    drifted = np.roll(img, 2, axis=1)  # the whole face 2 px to the right
    data = PairData(img[None], drifted[None])
    u_mid = {}
    for name in ("flow-cnn", "flow-cnn-registered"):
        method = build_method(name, ["a", "b", "c"], default_recipe(name))
        method.prepare(data)
        u_mid[name] = float(method.features[0, 0, 6:22, 6:22].median()) * SIZE / 28  # u, px at 112
    assert abs(u_mid["flow-cnn"] - 2.0) < 0.4
    assert abs(u_mid["flow-cnn-registered"]) < 0.3
    with pytest.raises(MicronbertError, match="registration must be one of"):
        FlowConfig(registration="affine")

    torch.manual_seed(0)
    weights = FlowCNN(FlowConfig(), 3).state_dict()
    gap = {}  # how far apart the drifted pair's and an unmoved pair's probabilities are, per registration
    for reg in ("none", "translation"):
        model = FlowCNN(FlowConfig(registration=reg), 3).eval()
        model.load_state_dict(weights)  # the same weights for both
        folder = save_classifier(tmp_path / reg, model, ["a", "b", "c"], "megc2019", {}, aligned=True)
        loaded, _, config = load_classifier(folder)
        assert loaded.cfg.registration == reg == config["model"]["registration"]
        moved, still = predict_pairs(loaded, img[None], drifted[None]), predict_pairs(loaded, img[None], img[None])
        gap[reg] = np.abs(moved - still).max()
    # registered, the drifted pair reads (nearly) as no motion at all; np.roll's wrapped edge is all that is left
    assert gap["translation"] < 1e-3 and gap["none"] > 10 * gap["translation"], gap
