import numpy as np
import torch

from micronbert.config import preset
from micronbert.model.encoder import ViTEncoder, resize_pos_table, sincos_2d


def _encoder(cfg):
    return ViTEncoder(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio)


def test_tokens_shape_and_contextual_token():
    cfg = preset("test")
    enc = _encoder(cfg)
    out = enc(torch.randn(3, 3, cfg.img_size, cfg.img_size))
    assert out.shape == (3, 1 + cfg.num_patches, cfg.embed_dim)


def test_sincos_table_is_fixed_and_distinct_per_position():
    t = sincos_2d(32, 4)
    assert t.shape == (17, 32)
    assert torch.all(t[0] == 0)  # the contextual token's row
    # every grid position gets its own code
    assert torch.cdist(t[1:], t[1:]).fill_diagonal_(1.0).min() > 1e-3
    # first half encodes the column: positions in the same column share it
    assert torch.allclose(t[1, :16], t[1 + 4, :16])
    assert not torch.allclose(t[1, 16:], t[1 + 4, 16:])


def test_other_input_size_uses_its_own_positions():
    cfg = preset("test")
    enc = _encoder(cfg)
    bigger = enc(torch.randn(2, 3, cfg.img_size * 2, cfg.img_size * 2))
    assert bigger.shape[1] == 1 + (cfg.grid * 2) ** 2
    # resizing a table to its own grid is the identity; to another grid keeps the cls row
    table = sincos_2d(32, 4)[None]
    assert torch.equal(resize_pos_table(table, 4), table)
    assert resize_pos_table(table, 8).shape == (1, 65, 32)


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    cfg = preset("test")
    enc = _encoder(cfg)
    attn = enc.blocks[0].attn
    x = torch.randn(2, 5, cfg.embed_dim)
    b, n, d = x.shape
    h = attn.num_heads
    q, k, v = attn.qkv(x).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
    a = torch.softmax(q @ k.transpose(-2, -1) * (d // h) ** -0.5, dim=-1)
    ref = attn.proj((a @ v).transpose(1, 2).reshape(b, n, d))
    assert torch.allclose(attn(x), ref, atol=1e-5)
    assert np.isfinite(ref.detach().numpy()).all()
