"""ModelConfig.dma_compare: DMA's Q and K read the encoder's normalised tokens ("tokens") or its residual
stream before the final LayerNorm ("residual"); everything else reads the tokens either way."""
from __future__ import annotations

import math

import pytest
import torch

from micronbert.config import preset, to_dict
from micronbert.errors import MicronbertError
from micronbert.model.checkpoint import model_config_from_dict
from micronbert.model.mubert import MicronBertModel

PATCH = 5  # the patch index the tests change


def _models(compare="residual"):
    torch.manual_seed(0)
    tokens = MicronBertModel(preset("test"), with_decoder=False, with_agreement=False).eval()
    other = MicronBertModel(preset("test", dma_compare=compare), with_decoder=False, with_agreement=False).eval()
    other.load_state_dict(tokens.state_dict())  # the same weights: only what Q and K read differs
    return tokens, other


def _streams(model):
    x = torch.randn(2, 3, model.cfg.img_size, model.cfg.img_size, generator=torch.Generator().manual_seed(1))
    first = model.encoder.hidden(x)
    second = first.clone()
    # a token scaled and offset: the final LayerNorm removes exactly this, the residual stream keeps it
    second[:, 1 + PATCH] = 3.0 * first[:, 1 + PATCH] + 0.7
    return first, second


@torch.no_grad()
def test_the_residual_sees_a_change_that_the_final_norm_hides():
    tokens, residual = _models()
    first, second = _streams(tokens)
    hidden_by_norm = tokens.change_map(first, second)
    seen = residual.change_map(first, second)
    assert hidden_by_norm.abs().max() < 1e-3
    assert (seen.argmax(1) == PATCH).all() and (seen[:, PATCH] > 0.1).all()
    # every other patch is identical in both frames, so both maps say "unchanged" there
    others = torch.ones(seen.shape[1], dtype=torch.bool)
    others[PATCH] = False
    assert seen[:, others].abs().max() < 1e-5


@torch.no_grad()
def test_values_poi_and_tokens_read_the_normalised_tokens_either_way():
    tokens, residual = _models()
    first, second = _streams(tokens)
    a, b = tokens.micro_features(first, second), residual.micro_features(first, second)
    for key in ("poi_map", "tokens_first", "tokens_second", "cls_first", "cls_second"):
        assert torch.equal(a[key], b[key])
    assert torch.allclose(a["tokens_first"], tokens.encoder.norm(first)[:, 1:])
    assert not torch.allclose(a["dma_map"], b["dma_map"])


@torch.no_grad()
def test_the_default_compares_the_encoder_output_as_before():
    tokens, _ = _models()
    g = torch.Generator().manual_seed(2)
    x, y = (torch.randn(2, 3, 32, 32, generator=g) for _ in range(2))
    hid_x, hid_y = tokens.encode_pair(x, y)
    # DMA applied to the encoder's output itself (query: the second frame)
    direct = -torch.log(tokens.dma.change_map(tokens.encoder(y)[:, 1:], tokens.encoder(x)[:, 1:]).clamp_min(1e-8))
    assert torch.allclose(tokens.change_map(hid_x, hid_y), direct, atol=1e-6)


def test_the_setting_is_checked_and_saved():
    with pytest.raises(MicronbertError, match="dma_compare"):
        preset("test", dma_compare="pixels")
    cfg = preset("test", dma_compare="residual")
    assert model_config_from_dict(to_dict(cfg), "x").dma_compare == "residual"
    assert preset("test").dma_compare == "tokens"


@torch.no_grad()
def test_without_projection_the_map_compares_the_inputs_themselves():
    torch.manual_seed(0)
    cfg = preset("test", dma_compare="residual", dma_project_qk=False)
    model = MicronBertModel(cfg, with_decoder=False, with_agreement=False).eval()
    first, second = _streams(model)
    before = model.change_map(first, second)
    model.dma.to_q.weight.mul_(-3.0)  # the projections play no part
    model.dma.to_k.weight.normal_()
    assert torch.equal(model.change_map(first, second), before)
    # the distance signal on the residual streams themselves: one pair scale s, −log a = ‖Δ‖²/(2τs²)
    a, b = first[:, 1:], second[:, 1:]
    s2 = 0.5 * (a.pow(2).sum(-1).mean(-1) + b.pow(2).sum(-1).mean(-1))
    expected = (b - a).pow(2).sum(-1) / (2 * cfg.dma_cosine_temperature * s2[:, None])
    expected = expected.clamp(max=-math.log(1e-8))  # change_map's floor on a_i
    assert torch.allclose(before, expected, rtol=1e-4, atol=1e-5)
    projected = MicronBertModel(preset("test", dma_compare="residual"), with_decoder=False, with_agreement=False)
    projected.load_state_dict(model.state_dict())
    assert not torch.allclose(projected.change_map(first, second), before)


def test_pretraining_freezes_the_unused_projections(tmp_path, face_frames_dir):
    from safetensors.torch import load_file

    from micronbert.config import PretrainConfig
    from micronbert.train.pretrain import pretrain

    cfg = preset("test", dma_compare="residual", dma_project_qk=False)
    pcfg = PretrainConfig(steps=2, batch_size=2, warmup_steps=1, log_every=1, ckpt_every=2, seed=3, lr=1e-3)
    pretrain([str(face_frames_dir)], tmp_path / "run", cfg, pcfg, show_progress=False, device="cpu")
    torch.manual_seed(3)
    init = MicronBertModel(cfg).state_dict()
    w = load_file(str(tmp_path / "run" / "model.safetensors"))
    for name in ("dma.to_q.weight", "dma.to_k.weight"):
        assert torch.equal(w[name], init[name])
    assert not torch.equal(w["dma.to_v.weight"], init["dma.to_v.weight"])
