"""Import of the authors' released checkpoint: names, shapes, safety, numerical equivalence.

The real file is not available here, so each test writes a fake release from the documented names and
shapes (OFFICIAL_CHECKPOINT.md) and recomputes the forward pass from those raw tensors by hand.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from micronbert.errors import MicronbertError
from micronbert.model.checkpoint import load_model_dir, load_pretrained
from micronbert.model.official import (ConversionReport, config_from_args, convert_official, map_official_state)

# Small fake release: 32 px, patch 8 -> 16 patches.
D, DEPTH, HEADS, P, IMG = 64, 2, 4, 8, 32
DEC_D, DEC_DEPTH = 32, 1
HID, BOT, OUT = 48, 24, 16


def mae_sincos(dim: int, grid: int) -> torch.Tensor:
    """MAE's 2-D sin-cos table, written out independently: (1 + grid², dim), row 0 zeros."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    table = np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)
    return torch.from_numpy(np.concatenate([np.zeros((1, dim)), table])).float()[None]


def block_tensors(prefix: str, dim: int, hidden: int, g: torch.Generator) -> dict:
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    sd = {}
    sd[prefix + "norm1.weight"], sd[prefix + "norm1.bias"] = 1 + r(dim), r(dim)
    sd[prefix + "attn.qkv.weight"], sd[prefix + "attn.qkv.bias"] = r(3 * dim, dim), r(3 * dim)
    sd[prefix + "attn.proj.weight"], sd[prefix + "attn.proj.bias"] = r(dim, dim), r(dim)
    sd[prefix + "norm2.weight"], sd[prefix + "norm2.bias"] = 1 + r(dim), r(dim)
    sd[prefix + "mlp.fc1.weight"], sd[prefix + "mlp.fc1.bias"] = r(hidden, dim), r(hidden)
    sd[prefix + "mlp.fc2.weight"], sd[prefix + "mlp.fc2.bias"] = r(dim, hidden), r(dim)
    return sd


def encoder_tensors(prefix: str, g) -> dict:
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    sd = {prefix + "cls_token": r(1, 1, D), prefix + "pos_embed": mae_sincos(D, IMG // P),
          prefix + "patch_embed.proj.weight": r(D, 3, P, P), prefix + "patch_embed.proj.bias": r(D)}
    for i in range(DEPTH):
        sd.update(block_tensors(f"{prefix}blocks.{i}.", D, 4 * D, g))
    sd[prefix + "norm.weight"], sd[prefix + "norm.bias"] = 1 + r(D), r(D)
    return sd


def dino_head_tensors(prefix: str, g, new_names: bool = False) -> dict:
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    sd = {prefix + "mlp.0.weight": r(HID, D), prefix + "mlp.0.bias": r(HID),
          prefix + "mlp.2.weight": r(HID, HID), prefix + "mlp.2.bias": r(HID),
          prefix + "mlp.4.weight": r(BOT, HID), prefix + "mlp.4.bias": r(BOT)}
    wg, wv = 1 + r(OUT, 1).abs(), r(OUT, BOT)
    if new_names:
        sd[prefix + "last_layer.parametrizations.weight.original0"] = wg
        sd[prefix + "last_layer.parametrizations.weight.original1"] = wv
    else:
        sd[prefix + "last_layer.weight_g"], sd[prefix + "last_layer.weight_v"] = wg, wv
    return sd


def fake_release(dino: bool = True, seed: int = 0, new_wn_names: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    sd = encoder_tensors("backbone.", g)
    for n in ("to_q", "to_k", "to_v", "proj"):
        sd[f"att.{n}.weight"], sd[f"att.{n}.bias"] = r(D, D), r(D)
    sd["decoder_embed.weight"], sd["decoder_embed.bias"] = r(DEC_D, D), r(DEC_D)
    sd["decoder_pos_embed"] = mae_sincos(DEC_D, IMG // P)
    for j in range(DEC_DEPTH):
        sd.update(block_tensors(f"decoder_blocks.{j}.", DEC_D, 4 * DEC_D, g))
    sd["decoder_norm.weight"], sd["decoder_norm.bias"] = 1 + r(DEC_D), r(DEC_D)
    sd["decoder_pred.weight"], sd["decoder_pred.bias"] = r(P * P * 3, DEC_D), r(P * P * 3)
    if dino:
        sd.update({"student." + k: v.clone() for k, v in sd.items() if k.startswith("backbone.")})
        sd.update(encoder_tensors("teacher.backbone.", g))
        sd.update(dino_head_tensors("student.head.", g, new_wn_names))
        sd.update(dino_head_tensors("teacher.head.", g, new_wn_names))
        sd["dino_loss_fn.center"] = r(1, OUT)
    return sd


def release_args(dino: bool = True) -> argparse.Namespace:
    return argparse.Namespace(model_name="mae_vit_small_patch8", img_size=IMG, patch_size=P, embed_dim=D,
                              depth=DEPTH, num_heads=HEADS, decoder_embed_dim=DEC_D, decoder_depth=DEC_DEPTH,
                              decoder_num_heads=4, has_decoder=True, diag_att=False, enable_dino=dino,
                              out_dim=OUT, local_crops_number=8, lr=0.00025, batch_size_per_gpu=16,
                              ema_decay=0.997, output_dir="/data/out", crop_scale=(0.4, 1.0))


def save_release(path, state, args=None, **extra):
    obj = {"model": state, "args": args if args is not None else release_args(), "epoch": 199, **extra}
    torch.save(obj, path)
    return path


# -- the documented forward pass, from raw tensors -------------------------------------------------
def ref_block(sd, pre, x, heads):
    b, n, d = x.shape
    dh = d // heads
    h = F.layer_norm(x, (d,), sd[pre + "norm1.weight"], sd[pre + "norm1.bias"], eps=1e-6)
    qkv = h @ sd[pre + "attn.qkv.weight"].T + sd[pre + "attn.qkv.bias"]
    q, k, v = (t.reshape(b, n, heads, dh).transpose(1, 2) for t in qkv.split(d, dim=-1))
    a = torch.softmax(q @ k.transpose(-2, -1) * dh ** -0.5, dim=-1)
    o = (a @ v).transpose(1, 2).reshape(b, n, d)
    x = x + o @ sd[pre + "attn.proj.weight"].T + sd[pre + "attn.proj.bias"]
    h = F.layer_norm(x, (d,), sd[pre + "norm2.weight"], sd[pre + "norm2.bias"], eps=1e-6)
    m = F.gelu(h @ sd[pre + "mlp.fc1.weight"].T + sd[pre + "mlp.fc1.bias"])
    return x + m @ sd[pre + "mlp.fc2.weight"].T + sd[pre + "mlp.fc2.bias"]


def ref_encoder(sd, pre, img):
    pos = sd[pre + "pos_embed"]
    t = F.conv2d(img, sd[pre + "patch_embed.proj.weight"], sd[pre + "patch_embed.proj.bias"], stride=P)
    t = t.flatten(2).transpose(1, 2) + pos[:, 1:]
    cls = (sd[pre + "cls_token"] + pos[:, :1]).expand(img.shape[0], -1, -1)
    x = torch.cat([cls, t], dim=1)
    for i in range(DEPTH):
        x = ref_block(sd, f"{pre}blocks.{i}.", x, HEADS)
    return F.layer_norm(x, (D,), sd[pre + "norm.weight"], sd[pre + "norm.bias"], eps=1e-6)


def ref_cross(sd, tok_first, tok_second):
    lin = lambda x, n: x @ sd[f"att.{n}.weight"].T + sd[f"att.{n}.bias"]  # noqa: E731
    first, second = tok_first[:, 1:], tok_second[:, 1:]  # cls dropped
    q, k, v = lin(first, "to_q"), lin(second, "to_k"), lin(first, "to_v")
    a = torch.softmax(q @ k.transpose(-2, -1) * D ** -0.5, dim=-1)
    return lin(a @ v, "proj")


def ref_dino_head(sd, pre, x):
    h = F.gelu(x @ sd[pre + "mlp.0.weight"].T + sd[pre + "mlp.0.bias"])
    h = F.gelu(h @ sd[pre + "mlp.2.weight"].T + sd[pre + "mlp.2.bias"])
    h = F.normalize(h @ sd[pre + "mlp.4.weight"].T + sd[pre + "mlp.4.bias"], dim=-1)
    v = sd[pre + "last_layer.weight_v"]
    w = sd[pre + "last_layer.weight_g"] * v / v.norm(dim=1, keepdim=True)
    return h @ w.T


# -- tests -------------------------------------------------------------------------------------------
def test_converted_model_matches_documented_forward(tmp_path):
    sd = fake_release()
    ckpt = save_release(tmp_path / "release.pth", sd)
    report = convert_official(ckpt, tmp_path / "model")
    assert report.unknown == [] and report.missing == []
    assert report.epoch == 199
    # pos tables are MAE's formula: our recomputed sin-cos must agree
    assert report.checks["backbone.pos_embed vs sin-cos (max abs diff)"] < 1e-6
    assert report.checks["decoder_pos_embed vs sin-cos (max abs diff)"] < 1e-6
    assert report.warnings == []

    model, cfg = load_pretrained(tmp_path / "model")
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.img_size, cfg.patch_size) == (D, DEPTH, HEADS, IMG, P)
    assert cfg.use_dma is False and cfg.dma_query == "first" and cfg.poi_variant == "dino" and cfg.dino_out_dim == OUT
    model.eval()
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 3, IMG, IMG, generator=g), torch.randn(2, 3, IMG, IMG, generator=g)
    with torch.no_grad():
        hid_a, hid_b = model.encode_pair(a, b)
        tok_a, tok_b = model.encoder.norm(hid_a), model.encoder.norm(hid_b)
        ref_a, ref_b = ref_encoder(sd, "backbone.", a), ref_encoder(sd, "backbone.", b)
        assert torch.allclose(tok_a, ref_a, atol=1e-5) and torch.allclose(tok_b, ref_b, atol=1e-5)
        micro = model.micro_features(hid_a, hid_b)
        cross = ref_cross(sd, ref_a, ref_b)
        assert torch.allclose(model.dma(tok_a[:, 1:], tok_b[:, 1:], tok_a[:, 1:])[0], cross, atol=1e-5)
        # through the model's own routing (dma_query="first"), gated by its PoI map
        assert torch.allclose(micro["features"], cross * micro["poi_map"].unsqueeze(-1), atol=1e-5)
        # the teacher encoder and the DINO heads came across too
        assert torch.allclose(model.agreement.teacher_encoder(a), ref_encoder(sd, "teacher.backbone.", a), atol=1e-5)
        x = torch.randn(3, D, generator=g)
        assert torch.allclose(model.agreement.student_head(x), ref_dino_head(sd, "student.head.", x), atol=1e-5)
        assert torch.allclose(model.agreement.teacher_head(x), ref_dino_head(sd, "teacher.head.", x), atol=1e-5)
        assert torch.equal(model.agreement.center, sd["dino_loss_fn.center"])
        assert torch.equal(model.decoder.pred.weight, sd["decoder_pred.weight"])

    data = json.loads((tmp_path / "model" / "config.json").read_text())
    assert data["source"]["epoch"] == 199 and data["source"]["official"].endswith("release.pth")
    assert data["source"]["args"]["model_name"] == "mae_vit_small_patch8"
    assert data["source"]["args"]["crop_scale"] == [0.4, 1.0]
    rep = json.loads((tmp_path / "model" / "conversion_report.json").read_text())
    assert rep["dropped"]["student.backbone.norm.weight"].startswith("duplicate")
    # the folder serves the map tools (dma-map) like a model pretrained here
    from micronbert.infer.maps import load_backbone_any

    backbone, _ = load_backbone_any(tmp_path / "model")
    assert torch.equal(backbone.dma.to_q.weight, sd["att.to_q.weight"])


def test_module_prefix_new_weight_norm_names_and_no_dino(tmp_path):
    sd = {"module." + k: v for k, v in fake_release(new_wn_names=True).items()}
    convert_official(save_release(tmp_path / "a.pth", sd), tmp_path / "a")
    state, cfg, _ = load_model_dir(tmp_path / "a")
    assert "agreement.student_head.last_layer.parametrizations.weight.original1" in state
    assert not any(k.startswith("module.") for k in state)

    plain = fake_release(dino=False)
    report = convert_official(save_release(tmp_path / "b.pth", plain, release_args(dino=False)), tmp_path / "b")
    assert report.unknown == [] and report.missing == []
    model, cfg = load_pretrained(tmp_path / "b")
    assert cfg.use_poi is False and model.agreement is None


def test_unknown_keys_listed_and_pos_mismatch_reported(tmp_path, capsys):
    from micronbert.cli import main

    sd = fake_release()
    sd["mask_token"] = torch.zeros(1, 1, DEC_D)
    sd["backbone.pos_embed"] = sd["backbone.pos_embed"] + 0.01
    sd["student.backbone.norm.bias"] = sd["student.backbone.norm.bias"] + 1.0
    ckpt = save_release(tmp_path / "r.pth", sd, optimizer={"state": {}})
    assert main(["convert-official", str(ckpt), "--out", str(tmp_path / "m")]) == 0
    printed = capsys.readouterr().out
    assert "mask_token" in printed and "optimizer" in printed
    rep = json.loads((tmp_path / "m" / "conversion_report.json").read_text())
    assert rep["unknown"] == ["mask_token"]
    assert rep["checks"]["backbone.pos_embed vs sin-cos (max abs diff)"] == pytest.approx(0.01, rel=1e-3)
    assert any("backbone.pos_embed" in w for w in rep["warnings"])
    assert any("student.backbone.norm.bias" in w for w in rep["warnings"])


def test_wrong_shape_names_key_expected_and_got(tmp_path):
    sd = fake_release()
    sd["att.to_k.weight"] = torch.zeros(D, D + 1)
    with pytest.raises(MicronbertError, match=r"att\.to_k\.weight.*expected shape \[64, 64\], got \[64, 65\]"):
        convert_official(save_release(tmp_path / "r.pth", sd), tmp_path / "m")
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_missing_keys_are_an_error_unless_allowed(tmp_path):
    sd = fake_release()
    del sd["backbone.blocks.1.mlp.fc2.weight"], sd["att.proj.bias"]
    ckpt = save_release(tmp_path / "r.pth", sd)
    with pytest.raises(MicronbertError, match=r"lacks 2 tensor.*dma\.proj\.bias"):
        convert_official(ckpt, tmp_path / "m")
    report = convert_official(ckpt, tmp_path / "m", allow_missing=True)
    assert report.missing == ["dma.proj.bias", "encoder.blocks.1.mlp.fc2.weight"]
    load_pretrained(tmp_path / "m")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_pickle_importing_os_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = save_release(tmp_path / "evil.pth", fake_release(), args=_Evil(marker))
    with pytest.raises(MicronbertError, match=r"evil\.pth: refusing to unpickle os\.system"):
        convert_official(ckpt, tmp_path / "m")
    assert not marker.exists()


@pytest.mark.parametrize("content,match", [
    ([1, 2, 3], "expected a dict"),
    ({"state_dict": {}, "epoch": 3}, "no 'model' entry"),
    ({"model": {"a": 1}}, "not a state dict"),
])
def test_malformed_containers(tmp_path, content, match):
    torch.save(content, tmp_path / "bad.pth")
    with pytest.raises(MicronbertError, match=match):
        convert_official(tmp_path / "bad.pth", tmp_path / "m")


def test_garbage_file_and_missing_file(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(MicronbertError, match="junk.pth"):
        convert_official(tmp_path / "junk.pth", tmp_path / "m")
    with pytest.raises(MicronbertError, match="not found"):
        convert_official(tmp_path / "nope.pth", tmp_path / "m")


# The exact documented shapes of the released small model (OFFICIAL_CHECKPOINT.md), checked without data.
SMALL_ENCODER = {"cls_token": [1, 1, 512], "pos_embed": [1, 785, 512], "patch_embed.proj.weight": [512, 3, 8, 8],
                 "patch_embed.proj.bias": [512], "norm.weight": [512], "norm.bias": [512]}
SMALL_BLOCK = {"norm1.weight": [512], "norm1.bias": [512], "attn.qkv.weight": [1536, 512], "attn.qkv.bias": [1536],
               "attn.proj.weight": [512, 512], "attn.proj.bias": [512], "norm2.weight": [512], "norm2.bias": [512],
               "mlp.fc1.weight": [2048, 512], "mlp.fc1.bias": [2048], "mlp.fc2.weight": [512, 2048],
               "mlp.fc2.bias": [512]}
SMALL_HEAD = {"mlp.0.weight": [2048, 512], "mlp.0.bias": [2048], "mlp.2.weight": [2048, 2048], "mlp.2.bias": [2048],
              "mlp.4.weight": [256, 2048], "mlp.4.bias": [256], "last_layer.weight_g": [128, 1],
              "last_layer.weight_v": [128, 256]}


def small_release_shapes() -> dict[str, list[int]]:
    shapes = {}
    for enc in ("backbone.", "student.backbone.", "teacher.backbone."):
        shapes.update({enc + k: v for k, v in SMALL_ENCODER.items()})
        for i in range(4):
            shapes.update({f"{enc}blocks.{i}.{k}": v for k, v in SMALL_BLOCK.items()})
    for n in ("to_q", "to_k", "to_v", "proj"):
        shapes[f"att.{n}.weight"], shapes[f"att.{n}.bias"] = [512, 512], [512]
    shapes.update({"decoder_embed.weight": [512, 512], "decoder_embed.bias": [512], "decoder_pos_embed": [1, 785, 512],
                   "decoder_norm.weight": [512], "decoder_norm.bias": [512], "decoder_pred.weight": [192, 512],
                   "decoder_pred.bias": [192], "dino_loss_fn.center": [1, 128]})
    for j in range(4):
        shapes.update({f"decoder_blocks.{j}.{k}": v for k, v in SMALL_BLOCK.items()})
    for h in ("student.head.", "teacher.head."):
        shapes.update({h + k: v for k, v in SMALL_HEAD.items()})
    return shapes


def test_documented_small_release_maps_completely():
    state = {k: torch.empty(v, device="meta") for k, v in small_release_shapes().items()}
    args = dict(model_name="mae_vit_small_patch8", img_size=224, patch_size=8, embed_dim=512, depth=4, num_heads=4,
                decoder_embed_dim=512, decoder_depth=4, decoder_num_heads=4, has_decoder=True, diag_att=False,
                enable_dino=True, out_dim=128)
    report = ConversionReport(source="small")
    cfg = config_from_args(args, state, report)
    from micronbert.config import preset

    small = preset("small")
    for f in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "decoder_embed_dim",
              "decoder_depth", "decoder_num_heads", "dino_hidden_dim", "dino_bottleneck_dim"):
        assert getattr(cfg, f) == getattr(small, f), f
    assert cfg.dino_out_dim == 128 and cfg.grid == 28
    mapped = map_official_state(state, cfg, report)
    assert report.unknown == [] and report.missing == []
    # every release key is either kept or dropped with a reason
    assert len(mapped) + len(report.dropped) == len(state)
    assert mapped["agreement.teacher_head.last_layer.parametrizations.weight.original0"].shape == (128, 1)
