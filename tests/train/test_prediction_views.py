"""benchmarks/prediction_views.py: it scores a run's kept fold models again; its clean view reproduces the run's
own predictions, and each variant averages exactly its views (apex neighbours only inside the clip)."""
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import prediction_views as tv  # noqa: E402

from micronbert.config import preset  # noqa: E402
from micronbert.faces.cache import FaceCache  # noqa: E402
from micronbert.model.classifier import predict_pairs, save_classifier  # noqa: E402
from micronbert.model.heads import MicronBertClassifier  # noqa: E402

CLASSES = ["negative", "positive", "surprise"]


def _samples(cache: FaceCache, n: int = 3):
    """Clips of 6 frames (numbers 10..15), onset 10; the last clip's apex is its offset (no apex + 1)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        frames = rng.integers(0, 255, (6, 32, 32, 3)).astype(np.uint8)
        apex = 15 if i == n - 1 else 12
        cache.save("casme2", f"sub0{i}/c{i}", frames, np.arange(10, 16),
                   meta={"onset": 10, "apex": apex, "offset": 15})
        out.append(cache.load("casme2", f"sub0{i}/c{i}"))
    return out


def _model():
    torch.manual_seed(0)
    return MicronBertClassifier(preset("test", registration="none"), len(CLASSES)).eval()


def test_each_variant_averages_its_own_views(tmp_path):
    samples = _samples(FaceCache(tmp_path / "cache"))
    model = _model()
    got, missing = tv.view_probs(model, samples, {}, views=2, seed=0)
    assert missing == 1  # the last clip has no frame after its apex
    mirror = lambda x: np.ascontiguousarray(x[:, :, ::-1])  # noqa: E731
    for i, s in enumerate(samples):
        pairs = [(s.onset, s.frame(n)) for n in (s.meta["apex"] + d for d in (0, -1, 1))
                 if s.meta["onset"] < n <= s.meta["offset"]]
        assert len(pairs) == (2 if i == 2 else 3)
        each = [predict_pairs(model, o[None], a[None])[0] for o, a in pairs]
        each_mirrored = [predict_pairs(model, mirror(o[None]), mirror(a[None]))[0] for o, a in pairs]
        np.testing.assert_allclose(got["clean"][i], each[0], atol=1e-6)
        np.testing.assert_allclose(got["flip"][i], (each[0] + each_mirrored[0]) / 2, atol=1e-6)
        np.testing.assert_allclose(got["temporal"][i], np.mean(each, 0), atol=1e-6)
        np.testing.assert_allclose(got["temporal+flip"][i], np.mean(each + each_mirrored, 0), atol=1e-6)
    # augment: clean + 2 paired-augmented views, not the clean view alone
    assert got["augment"].shape == got["clean"].shape
    assert not np.allclose(got["augment"], got["clean"])
    np.testing.assert_allclose(got["augment"].sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("test_flip", [False, True])
def test_score_run_reproduces_the_runs_predictions_and_scores_every_variant(tmp_path, test_flip):
    """A run made with the recipe's prediction views off (clean) or with test_flip only (flip)."""
    work = tmp_path / "work"
    samples = _samples(FaceCache(work / "cache"))
    (work / "samples_casme2.csv").write_text("")
    run = tmp_path / "run"
    model = _model()
    save_classifier(run / "folds" / "000_casme2-sub00", model, CLASSES, "megc2019", {"test_flip": test_flip})
    onset, apex = np.stack([s.onset for s in samples]), np.stack([s.apex for s in samples])
    probs = predict_pairs(model, onset, apex)
    if test_flip:  # the run predicted with its mirror images averaged in
        probs = (probs + predict_pairs(model, onset[:, :, ::-1].copy(), apex[:, :, ::-1].copy())) / 2
    rows = pd.DataFrame({"dataset": "casme2", "subject": [f"sub0{i}" for i in range(3)],
                         "sample_id": [f"sub0{i}/c{i}" for i in range(3)], "label": [0, 1, 2]})
    for c, name in enumerate(CLASSES):
        rows[f"prob_{name}"] = probs[:, c].round(6)
    rows["pred"] = probs.argmax(1)
    rows.to_csv(run / "folds" / "000_casme2-sub00.csv", index=False)
    (run / "config.json").write_text(json.dumps({"classes": CLASSES, "seed": 0,
                                                 "sample_files": [str(work / "samples_casme2.csv")]}))
    out = tv.score_run(run, views=1)
    assert out["n_samples"] == 3 and out["neighbour_frames_missing"] == 1
    assert out["reproduced_max_prob_diff"] < 1e-5
    assert set(out["variants"]) == set(tv.VARIANTS)
    own = out["variants"]["flip" if test_flip else "clean"]
    assert own["wrong"] == int((rows["pred"] != rows["label"]).sum())
