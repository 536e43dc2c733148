"""Recognition heads and ablations: each ablation removes exactly its component."""
import pytest
import torch

from micronbert.config import preset
from micronbert.model import dma as dma_module
from micronbert.model import mubert as mubert_module
from micronbert.model.heads import MicronBertClassifier, MotionGridHead, RecognitionHead


def _pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    onset = torch.randn(2, 3, 32, 32, generator=g)
    return onset, onset + 0.1 * torch.randn(2, 3, 32, 32, generator=g)


def _classifier(**switches):
    torch.manual_seed(0)
    return MicronBertClassifier(preset("test", **switches), num_classes=3, dropout=0.0).eval()


def _perturbed_diagonal(monkeypatch):
    original = dma_module.DiagonalMicroAttention.change_diagonal

    def noisy(self, q, k, scale, key_tokens):
        return original(self, q, k, scale, key_tokens) * torch.rand(q.shape[:-1]).clamp_min(0.05)
    monkeypatch.setattr(dma_module.DiagonalMicroAttention, "change_diagonal", noisy)


@pytest.mark.parametrize("head", ["grid", "paper"])
def test_no_dma_logits_ignore_the_dma_diagonal_and_the_full_model_does_not(monkeypatch, head):
    onset, apex = _pair()
    full, no_dma = _classifier(head=head), _classifier(head=head, use_dma=False)
    before = (full(onset, apex), no_dma(onset, apex))
    _perturbed_diagonal(monkeypatch)
    after = (full(onset, apex), no_dma(onset, apex))
    assert not torch.allclose(before[0], after[0], atol=1e-6)
    assert torch.equal(before[1], after[1])


def test_no_poi_logits_ignore_the_saliency_and_the_full_model_does_not(monkeypatch):
    onset, apex = _pair()
    full, no_poi = _classifier(), _classifier(use_poi=False)
    no_poi.load_state_dict(full.state_dict())
    before = (full(onset, apex), no_poi(onset, apex))
    real = mubert_module.poi_saliency
    monkeypatch.setattr(mubert_module, "poi_saliency", lambda tok, t, prior: real(tok, t, prior) * torch.rand(tok.shape[0], tok.shape[1] - 1))
    after = (full(onset, apex), no_poi(onset, apex))
    assert not torch.allclose(before[0], after[0], atol=1e-6)
    assert torch.equal(before[1], after[1])
    # same weights, PoI is the only difference between the two models
    with monkeypatch.context() as m:
        m.setattr(mubert_module, "poi_saliency", lambda tok, t, prior: torch.ones(tok.shape[0], tok.shape[1] - 1))
        assert torch.allclose(full(onset, apex), no_poi(onset, apex), atol=1e-6)


def test_grid_head_keeps_where_and_which_way_and_sees_context_only_as_a_difference():
    torch.manual_seed(0)
    head = MotionGridHead(16, 3, grid=4, width=8, dropout=0.0).eval()
    n = 16
    first = torch.randn(1, n, 16)
    second = first.clone()
    move = torch.randn(16)
    second[:, 2] += move
    dma_map = torch.ones(1, n)
    dma_map[:, 2] = 0.5

    def micro(second, dma_map, cls_shift=0.0):
        cls = torch.randn(1, 16, generator=torch.Generator().manual_seed(1))
        return {"tokens_first": first, "tokens_second": second, "dma_map": dma_map, "poi_map": torch.ones(1, n),
                "features": torch.zeros(1, n, 16), "cls_first": cls + cls_shift, "cls_second": cls + 0.3 + cls_shift}

    base = head(micro(second, dma_map))
    elsewhere = first.clone()
    elsewhere[:, 13] += move
    moved_map = torch.ones(1, n)
    moved_map[:, 13] = 0.5
    opposite = first.clone()
    opposite[:, 2] -= move
    assert not torch.allclose(base, head(micro(elsewhere, moved_map)), atol=1e-5)  # where
    assert not torch.allclose(base, head(micro(opposite, dma_map)), atol=1e-5)     # which way
    assert torch.allclose(base, head(micro(second, dma_map, cls_shift=5.0)), atol=1e-5)  # who: cancelled
    assert torch.allclose(head(micro(first.clone(), torch.ones(1, n))),
                          head(micro(first.clone(), torch.ones(1, n), cls_shift=-2.0)), atol=1e-5)


def test_head_is_selectable_and_the_paper_head_is_the_release_style_one():
    assert isinstance(_classifier().head, MotionGridHead)
    assert isinstance(_classifier(head="paper").head, RecognitionHead)
    assert _classifier(head="paper", use_dma=False).head.map_embed is None
    onset, apex = _pair()
    for head in ("grid", "paper"):
        out = _classifier(head=head).forward_all(onset, apex)
        assert out["logits"].shape == (2, 3) and out["dma_map"].shape == (2, 16)


def _rewrite_as_older(folder, *keys):
    """Drop `keys` from a saved config.json's model section, as an older micronbert wrote it."""
    import json

    data = json.loads((folder / "config.json").read_text())
    for key in keys:
        del data["model"][key]
    (folder / "config.json").write_text(json.dumps(data))


def test_a_config_saved_before_the_change_signal_existed_keeps_the_paper_formulation(tmp_path):
    from micronbert.config import to_dict
    from micronbert.model.checkpoint import load_model_dir, save_model
    from micronbert.model.mubert import MicronBertModel

    cfg = preset("test", dma_cosine_temperature=0.0, dma_signal="paper")
    save_model(tmp_path, MicronBertModel(cfg).state_dict(), cfg)
    _rewrite_as_older(tmp_path, "dma_signal", "head", "registration", "dma_shift_px", "head_dma_features")
    _, old, _ = load_model_dir(tmp_path)
    assert (old.dma_signal, old.head, old.registration) == ("paper", "paper", "none")
    assert to_dict(preset("test"))["dma_signal"] == "distance"  # new configs get the new default
    assert to_dict(preset("test"))["dma_shift_px"] == 0.5
    assert not to_dict(preset("test"))["head_dma_features"]


def test_an_older_encoder_gets_todays_head_and_an_older_classifier_keeps_its_own(tmp_path):
    """The head fields have no encoder weights: an encoder pretrained before they existed is fine-tuned with
    today's head (direction on, no F_DMA); a classifier saved before them keeps the head it was trained with."""
    from micronbert.model.checkpoint import load_model_dir, save_model
    from micronbert.model.classifier import load_classifier, save_classifier
    from micronbert.model.mubert import MicronBertModel
    from micronbert.train.methods import build_method
    from micronbert.train.recipe import family_recipe

    cfg = preset("test")
    encoder = tmp_path / "encoder"
    save_model(encoder, MicronBertModel(cfg).state_dict(), cfg)
    _rewrite_as_older(encoder, "dma_shift_px", "head_dma_features")
    _, enc_cfg, _ = load_model_dir(encoder)
    assert (enc_cfg.dma_shift_px, enc_cfg.head_dma_features) == (cfg.dma_shift_px, cfg.head_dma_features)
    method = build_method("micronbert", ["a", "b", "c"], family_recipe("frozen"), init=str(encoder), preset_name="test")
    assert (method.cfg.dma_shift_px, method.cfg.head_dma_features) == (0.5, False)

    onset, apex = _pair()
    legacy = _classifier(dma_shift_px=0.0, head_dma_features=True)
    save_classifier(tmp_path / "classifier", legacy, ["a", "b", "c"], "megc2019", {})
    _rewrite_as_older(tmp_path / "classifier", "dma_shift_px", "head_dma_features")
    restored = load_classifier(tmp_path / "classifier")[0]
    assert (restored.cfg.dma_shift_px, restored.cfg.head_dma_features) == (0.0, True)
    assert torch.allclose(restored(onset, apex), legacy(onset, apex), atol=1e-6)
    _, maps_cfg, _ = load_model_dir(tmp_path / "classifier")  # dma-map reads a classifier folder the same way
    assert maps_cfg.dma_shift_px == 0.0


def test_the_grid_head_ignores_f_dma_unless_asked_and_a_legacy_head_loads(tmp_path):
    """F_DMA's values come from the onset (its appearance); the default grid head reads only the change."""
    import json

    from micronbert.model.classifier import load_classifier, save_classifier

    onset, apex = _pair()
    for use_features in (False, True):
        model = _classifier(head_dma_features=use_features)
        micro = model.forward_all(onset, apex)
        other = {**micro, "features": micro["features"] + torch.randn_like(micro["features"])}
        same = torch.allclose(model.head(micro), model.head(other), atol=1e-6)
        assert same != use_features, use_features
    legacy = _classifier(head_dma_features=True)
    save_classifier(tmp_path, legacy, ["a", "b", "c"], "megc2019", {})
    data = json.loads((tmp_path / "config.json").read_text())
    del data["model"]["head_dma_features"]  # as an older micronbert wrote it
    (tmp_path / "config.json").write_text(json.dumps(data))
    restored = load_classifier(tmp_path)[0]
    assert restored.head.feat is not None
    assert torch.allclose(restored(onset, apex), legacy(onset, apex), atol=1e-6)
