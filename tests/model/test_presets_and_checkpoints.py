import json

import pytest
import torch

from micronbert.config import ModelConfig, PretrainConfig, from_dict, load_model_config, preset, save_json, to_dict
from micronbert.errors import MicronbertError
from micronbert.model.checkpoint import load_pretrained, save_model
from micronbert.model.mubert import MicronBertModel


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_small_preset_is_the_official_configuration():
    cfg = preset("small")
    assert (cfg.img_size, cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.dma_heads) == (224, 8, 512, 4, 4, 1)
    assert cfg.num_patches == 784
    model = MicronBertModel(cfg, with_agreement=False)
    assert abs(_count(model.encoder) - 12.7e6) / 12.7e6 < 0.01
    assert len(model.decoder.blocks) == 4 and model.decoder.pred.out_features == 8 * 8 * 3


def test_tiny_preset_is_small_enough_for_a_laptop():
    cfg = preset("tiny")
    assert _count(MicronBertModel(cfg, with_agreement=False)) < 2e6
    with pytest.raises(MicronbertError):
        preset("huge")


def test_config_round_trip(tmp_path):
    cfg = preset("tiny", use_dma=False, poi_variant="dino")
    pcfg = PretrainConfig(steps=7, delta_min_s=0.05)
    save_json(tmp_path / "c.json", model=cfg, pretrain=pcfg)
    assert load_model_config(tmp_path / "c.json") == cfg
    data = json.loads((tmp_path / "c.json").read_text())
    assert from_dict(PretrainConfig, data["pretrain"]) == pcfg
    with pytest.raises(MicronbertError, match="unknown"):
        from_dict(ModelConfig, {**to_dict(cfg), "embed_dimm": 3})


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    cfg = preset("test")
    model = MicronBertModel(cfg).eval()
    save_model(tmp_path / "m", model.state_dict(), cfg)
    loaded, loaded_cfg = load_pretrained(tmp_path / "m")
    assert loaded_cfg == cfg
    x, y = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    for k, v in model.maps(x, y).items():
        assert torch.equal(v, loaded.eval().maps(x, y)[k])
    assert not list(tmp_path.glob("m/.*tmp"))  # atomic writes leave no temp files


def test_loading_mismatched_weights_is_a_clear_error(tmp_path):
    save_model(tmp_path / "m", MicronBertModel(preset("test")).state_dict(), preset("tiny"))
    with pytest.raises(MicronbertError, match="do not fit"):
        load_pretrained(tmp_path / "m")
