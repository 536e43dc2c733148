"""A naive implementation of OUR pretraining objective (same objective, naive implementation: not the
authors' release, which trains DINO with 2 global + 8 local crops and a teacher), written the way the
release writes its code, for benchmarks/pretrain_step.py to measure ours against:

- blockwise swapping with a Python loop over the samples and over the swapped patches;
- ViT blocks with explicit attention matrices: softmax(q kᵀ·scale) materialised, then @ v;
- DMA as the full N×N softmax followed by its diagonal;
- each frame encoded by its own encoder call;
- torch.optim.AdamW with its defaults (the per-parameter loop on CPU).

Module and parameter names are ours (which are the release's), so `load_state_dict(ours.state_dict())`
gives both the same weights; the objective is our model's (cosine DMA logits and the identity term
when the config has them), and `reference_losses` consumes a generator exactly as
MicronBertModel.pretrain_losses does, so the two compute the same loss for the same weights and
random draws (benchmarks/pretrain_step.py checks this before timing). Only the `mse` PoI variant.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from micronbert.config import ModelConfig, PretrainConfig
from micronbert.model.crops import random_resized_crop
from micronbert.model.encoder import sincos_2d


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patch_size = cfg.patch_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.register_buffer("pos_embed", sincos_2d(cfg.embed_dim, cfg.grid)[None], persistent=False)
        self.blocks = nn.ModuleList([Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed(x) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class DMA(nn.Module):
    def __init__(self, dim, heads, cosine_temperature=0.0):
        super().__init__()
        self.heads, self.cosine_temperature = heads, cosine_temperature
        self.to_q, self.to_k, self.to_v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, xq, xk, xv):
        b, n, d = xq.shape
        h = self.heads
        q, k, v = (t.reshape(b, n, h, d // h).transpose(1, 2) for t in (self.to_q(xq), self.to_k(xk), self.to_v(xv)))
        scale = (d // h) ** -0.5
        if self.cosine_temperature > 0:  # our model's default logits (the release uses the dot product)
            q, k, scale = F.normalize(q, dim=-1), F.normalize(k, dim=-1), 1.0 / self.cosine_temperature
        attn = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)  # full N×N
        diag = torch.diagonal(attn, dim1=-2, dim2=-1)
        out = (diag.unsqueeze(-1) * v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out), diag.mean(1)


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.decoder_embed_dim
        self.embed = nn.Linear(cfg.embed_dim, dim)
        self.register_buffer("pos_embed", sincos_2d(dim, cfg.grid)[None], persistent=False)
        self.blocks = nn.ModuleList([Block(dim, cfg.decoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, cfg.patch_size ** 2 * cfg.in_chans)

    def forward(self, x):
        x = self.embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))[:, 1:]


def _mlp(a, hidden, b):
    return nn.Sequential(nn.Linear(a, hidden), nn.GELU(), nn.Linear(hidden, b))


class Agreement(nn.Module):
    def __init__(self, encoder, cfg):
        super().__init__()
        self.student_head = _mlp(cfg.embed_dim, cfg.proj_dim * 2, cfg.proj_dim)
        self.predictor = _mlp(cfg.proj_dim, cfg.proj_dim * 2, cfg.proj_dim)
        self.teacher_encoder = copy.deepcopy(encoder)
        self.teacher_head = copy.deepcopy(self.student_head)
        for p in list(self.teacher_encoder.parameters()) + list(self.teacher_head.parameters()):
            p.requires_grad_(False)


class ReferenceMicronBert(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.poi_variant != "mse" or not (cfg.use_dma and cfg.use_poi):
            raise ValueError("the reference covers the default model (DMA, PoI with the mse agreement)")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.dma = DMA(cfg.embed_dim, cfg.dma_heads, getattr(cfg, "dma_cosine_temperature", 0.0))
        self.decoder = Decoder(cfg)
        self.agreement = Agreement(self.encoder, cfg)


def swap_loop(frame_t, frame_tp, patch, ratio, generator):
    """Per sample, per swapped patch: copy the patch of I_{t+δ} into a copy of I_t."""
    b, _, h, w = frame_t.shape
    g = w // patch
    noise = torch.rand(b, g * g, generator=generator, device=frame_t.device)  # same draw as ours
    k = int(round(ratio * g * g))
    out = frame_t.clone()
    mask = torch.zeros(b, g * g, dtype=torch.bool, device=frame_t.device)
    for i in range(b):
        for idx in noise[i].argsort()[:k].tolist():
            r, c = divmod(idx, g)
            out[i, :, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = \
                frame_tp[i, :, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch]
            mask[i, idx] = True
    return out, mask


def patchify(imgs, p):
    b, c, h, w = imgs.shape
    x = imgs.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def reference_losses(model: ReferenceMicronBert, frame_t, frame_tp, pcfg: PretrainConfig, generator=None):
    cfg = model.cfg
    swapped, mask = swap_loop(frame_t, frame_tp, cfg.patch_size, pcfg.swap_ratio, generator)
    tok_s = model.encoder(swapped)
    tok_b = model.encoder(frame_tp)
    feats, dma_map = model.dma(tok_b[:, 1:], tok_s[:, 1:], tok_s[:, 1:])
    cls = F.normalize(tok_b[:, :1], dim=-1)
    sim = (F.normalize(tok_b[:, 1:], dim=-1) * cls).sum(-1)
    sal = torch.softmax(sim / cfg.poi_temperature, dim=-1) * sim.shape[1]
    dec_in = torch.cat([tok_s[:, :1], tok_s[:, 1:] + feats * sal.unsqueeze(-1)], dim=1)
    pred = model.decoder(dec_in)
    loss_rec = ((pred - patchify(frame_t, cfg.patch_size)) ** 2).mean(-1).mean()
    total = loss_rec
    if getattr(pcfg, "identity_weight", 0) > 0:  # our model's extra term: −log a_i on swapped patches
        maskf = mask.float()
        loss_id = -(torch.log(dma_map.clamp_min(1e-12)) * maskf).sum() / maskf.sum().clamp(min=1.0)
        total = total + pcfg.identity_weight * loss_id
    ag = model.agreement
    with torch.no_grad():
        t_out = ag.teacher_head(ag.teacher_encoder(frame_tp)[:, 0])
    crop = random_resized_crop(frame_tp, frame_tp.shape[-1], pcfg.crop_scale, generator=generator)
    s = ag.predictor(ag.student_head(model.encoder(crop)[:, 0]))
    loss_agg = F.mse_loss(F.normalize(s, dim=-1), F.normalize(t_out, dim=-1)) * s.shape[-1]
    return {"loss_rec": loss_rec, "loss_agg": loss_agg, "loss": total + pcfg.agreement_weight * loss_agg}


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> ImageNet-normalised float32 (B, 3, H, W) on the frames' device (the
    statistics are created there: CPU tensors would make `--device cuda` fail)."""
    mean = torch.tensor([0.485, 0.456, 0.406], device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=frames.device).view(1, 3, 1, 1)
    return (frames.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def reference_step(model, optimizer, frames_t, frames_tp, pcfg, generator):
    """One optimizer step: uint8 (B, H, W, 3) batches in, the loss (a float) out."""
    a, b = normalise(frames_t), normalise(frames_tp)
    losses = reference_losses(model, a, b, pcfg, generator)
    optimizer.zero_grad()
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), pcfg.grad_clip)
    optimizer.step()
    with torch.no_grad():  # EMA teacher, one parameter at a time
        ag = model.agreement
        for t, s in zip(list(ag.teacher_encoder.parameters()) + list(ag.teacher_head.parameters()),
                        list(model.encoder.parameters()) + list(ag.student_head.parameters())):
            t.mul_(pcfg.ema_decay).add_(s.detach(), alpha=1 - pcfg.ema_decay)
    return float(losses["loss"].detach())
