"""The μ-BERT ablations in the methods table each change exactly their component."""
import dataclasses

import numpy as np

from micronbert.config import to_dict
from micronbert.faces.register import register_pairs
from micronbert.train.methods import build_method, default_recipe
from micronbert.train.pairdata import PairData

EXPECTED = {
    "no-dma": {"use_dma"},
    "no-poi": {"use_poi"},
    "learned-poi": {"poi_prior"},  # the paper's PoI: the learned saliency alone
    "hull-poi": {"poi_prior"},
    "own-poi": {"poi_prior"},  # each clip's own landmark hull
    "no-registration": {"registration"},
    "no-direction": {"dma_shift_px"},
    "with-fdma": {"head_dma_features"},  # not an ablation: the earlier head, for comparison
    "no-pretrain": set(),  # same architecture, no --init weights (checked below)
    "paper": {"dma_signal", "dma_cosine_temperature", "head", "head_dma_map", "registration", "dma_shift_px",
              "poi_prior"},
}


def _method(name, classes3):
    return build_method(name, classes3, default_recipe(name, epochs=1), preset_name="test", size=32)


def test_each_ablation_changes_only_its_config_fields(classes3):
    full = to_dict(_method("micronbert", classes3).cfg)
    for name, fields in EXPECTED.items():
        cfg = to_dict(_method(name, classes3).cfg)
        assert {k for k in full if cfg[k] != full[k]} == fields, name
    paper = _method("paper", classes3).cfg
    assert (paper.dma_signal, paper.dma_cosine_temperature, paper.head, paper.registration) == ("paper", 0.0, "paper",
                                                                                                "none")
    assert (_method("micronbert", classes3).cfg.poi_prior, paper.poi_prior,
            _method("learned-poi", classes3).cfg.poi_prior) == ("face", "none", "none")


def test_recognition_confines_poi_to_the_face_over_an_encoder_pretrained_without_the_prior(tmp_path, classes3):
    """Pretraining keeps the learned map (config poi_prior none); every μ-BERT row but learned-poi/paper/hull-poi
    recognises with the face prior on top of it, and the model it builds holds that prior."""
    import torch

    from micronbert.config import preset
    from micronbert.model.checkpoint import save_model
    from micronbert.model.mubert import MicronBertModel

    cfg = preset("test")
    assert cfg.poi_prior == "none"
    save_model(tmp_path / "init", MicronBertModel(cfg).state_dict(), cfg)
    built = {}
    for name in ("micronbert", "no-dma", "no-registration", "no-pretrain", "learned-poi", "paper", "hull-poi"):
        m = build_method(name, classes3, default_recipe(name), init=str(tmp_path / "init"))
        built[name] = m.cfg.poi_prior
        if name == "micronbert":
            weights = m.build().backbone.poi_log_prior
            assert weights is not None and torch.isfinite(weights).all() and float(weights.std()) > 0
    assert built == {"micronbert": "face", "no-dma": "face", "no-registration": "face", "no-pretrain": "face",
                     "learned-poi": "none", "paper": "none", "hull-poi": "hull"}


def test_no_pretrain_ignores_the_init_weights(tmp_path, classes3):
    from micronbert.config import preset
    from micronbert.model.checkpoint import save_model
    from micronbert.model.mubert import MicronBertModel

    cfg = preset("test")
    save_model(tmp_path / "init", MicronBertModel(cfg).state_dict(), cfg)
    with_init = build_method("micronbert", classes3, default_recipe("micronbert"), init=str(tmp_path / "init"))
    without = build_method("no-pretrain", classes3, default_recipe("no-pretrain"), init=str(tmp_path / "init"))
    assert with_init.init_state is not None and without.init_state is None
    assert dataclasses.asdict(with_init.cfg) == dataclasses.asdict(without.cfg)


def test_registration_is_the_only_difference_in_the_pairs_the_model_sees(synthetic, classes3):
    import cv2

    table, pairs, _ = synthetic(size=32, n_subjects=2, per_class=1)
    onset = np.stack([pairs[s][0] for s in table["sample_id"]])
    apex = np.stack([pairs[s][1] for s in table["sample_id"]])
    drift = np.float32([[1, 0, 1.5], [0, 1, -1.0]])  # head drift between onset and apex
    apex = np.stack([cv2.warpAffine(a, drift, (32, 32), borderMode=cv2.BORDER_REPLICATE) for a in apex])
    seen = {}
    for name in ("micronbert", "no-registration"):
        m = _method(name, classes3)
        m.prepare(PairData(onset, apex))
        seen[name] = m.data
        assert np.array_equal(m.data.onset, onset)
    assert np.array_equal(seen["no-registration"].apex, apex)
    np.testing.assert_array_equal(seen["micronbert"].apex, register_pairs(onset, apex, "translation"))
    # registration undoes most of the drift: the registered apex is closer to the onset
    assert (np.abs(seen["micronbert"].apex.astype(float) - onset).mean()
            < np.abs(apex.astype(float) - onset).mean())
