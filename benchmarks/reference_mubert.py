"""Naive references for benchmarks/pretrain_step.py to measure our pretraining step against. Two modes:

"same-objective" (the default; same objective, naive implementation): OUR pretraining objective
(cosine or dot-product DMA logits, the identity term when the config has it, the `mse` PoI agreement)
written the way the authors' release writes its code:
- blockwise swapping with a Python loop over the samples and over the swapped patches;
- ViT blocks with explicit attention matrices: softmax(q kᵀ·scale) materialised, then @ v;
- DMA as the full N×N softmax followed by its diagonal;
- each frame encoded by its own encoder call;
- torch.optim.AdamW with its defaults (the per-parameter loop on CPU).
Module and parameter names are ours (which are the release's), so `load_state_dict(ours.state_dict())`
gives both the same weights, and `reference_losses` consumes a generator exactly as
MicronBertModel.pretrain_losses does: the two compute the same loss for the same weights and random
draws (benchmarks/pretrain_step.py checks this before timing). Only the `mse` PoI variant.

"release" (`ReleaseMicronBert`, `release_losses`, `release_step`): the objective of the authors'
release (models/mae.py of uark-cviu/Micron-BERT, read for the method only), coded the same naive way:
- Ĩ_t made by replacing patches of I_t with I_{t+δ}'s, one Python iteration per sample;
- both frames through the encoder; DMA with the paper's dot-product logits (no cosine, no identity
  term), query and value from Ĩ_t, key from I_{t+δ}, the full N×N softmax, then its diagonal;
- the decoder fed by the DMA output alone (N tokens, no contextual token, no residual from Ĩ_t's
  tokens, no PoI gating); L_rec = mean squared error against I_t's patches;
- DINO self-distillation on I_{t+δ}: 2 global crops (img_size) and 8 local crops (96 px at 224,
  `local_crop_size`); the student (the same encoder) runs once per crop resolution on the crops of
  that size concatenated, the EMA teacher on the 2 global crops; the teacher's centred, sharpened
  softmax against the student's log-softmax over every (teacher crop, student crop) pair but the same
  crop (2 × 10 − 2 = 18 terms), centre updated from the teacher's batch mean; L = L_rec + L_dino;
- DINO head with the weight-normalised last layer's gain frozen at 1 (the release's norm_last_layer);
- the EMA teacher updated one parameter at a time; torch.optim.AdamW with its defaults.
Not the release's code: its training script and data pipeline are not public. Its crops are made in
the data loader (per image, PIL); here each crop is one batched `random_resized_crop` on the device,
as ours makes them, so neither side's time includes per-image augmentation. Its teacher-temperature
warm-up and cosine EMA schedule are constants here (one step is timed). Its DINO centre is all-reduced
across ranks (it needs torch.distributed); here it is all-reduced only when a process group exists.

Our `dino` variant (micronbert/model/poi.py) cannot be set up to compute this objective, so the two
do not compute the same loss and the equality check does not apply (pretrain_step.py checks that the
loss terms are of the same magnitude instead). Differences that no config option removes:
- ours gives the student ONE global crop (plus the local crops) and the teacher the uncropped frame
  I_{t+δ}; every student view is scored against that one teacher output (1 + local_crops terms);
- our local crops are img_size // 2 (112 px at 224: 196 tokens), not 96 px (144 tokens);
- our decoder input is Ĩ_t's tokens (with the contextual token) plus the PoI-gated DMA output;
- the gain of our DINO head's last layer is trained;
- our crops and swap mask come from different random draws than these.
`release_step_flops` counts this objective's matrix-product FLOPs with micronbert.model.flops' rules.
"""
from __future__ import annotations

import copy

import torch
import torch.distributed
import torch.nn.functional as F
from torch import nn

from micronbert.config import ModelConfig, PretrainConfig, preset
from micronbert.model.crops import random_resized_crop
from micronbert.model.encoder import resize_pos_table, sincos_2d
from micronbert.model.flops import _vit_forward_flops
from micronbert.model.poi import DinoHead as OurDinoHead

MODES = {"same-objective": "same objective, naive implementation",
         "release": "the release's objective (DINO, 2 global + 8 local crops, decoder fed by the DMA output), "
                    "naive implementation"}
RELEASE_LOCAL_CROPS = 8  # the released checkpoint's local_crops_number


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
        x = self.patch_embed(x)
        pos = self.pos_embed
        if x.shape[1] != pos.shape[1] - 1:  # a smaller crop: the release resizes the table bicubically
            pos = resize_pos_table(pos, int(round(x.shape[1] ** 0.5)))
        x = x + pos[:, 1:]
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
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


def frozen_teacher(encoder: nn.Module, head: nn.Module) -> tuple[nn.Module, nn.Module]:
    """Copies of the student's encoder and head that take no gradient (the EMA teacher)."""
    teacher_encoder, teacher_head = copy.deepcopy(encoder), copy.deepcopy(head)
    for p in list(teacher_encoder.parameters()) + list(teacher_head.parameters()):
        p.requires_grad_(False)
    return teacher_encoder, teacher_head


class Agreement(nn.Module):
    def __init__(self, encoder, cfg):
        super().__init__()
        self.student_head = _mlp(cfg.embed_dim, cfg.proj_dim * 2, cfg.proj_dim)
        self.predictor = _mlp(cfg.proj_dim, cfg.proj_dim * 2, cfg.proj_dim)
        self.teacher_encoder, self.teacher_head = frozen_teacher(encoder, self.student_head)


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
    ema_loop(model, pcfg.ema_decay)
    return float(losses["loss"].detach())


@torch.no_grad()
def ema_loop(model, momentum):
    """EMA teacher, one parameter at a time."""
    ag = model.agreement
    for t, s in zip(list(ag.teacher_encoder.parameters()) + list(ag.teacher_head.parameters()),
                    list(model.encoder.parameters()) + list(ag.student_head.parameters())):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


# -- the release's objective ---------------------------------------------------------------------------
def configs(mode: str, preset_name: str, batch: int) -> tuple[ModelConfig, PretrainConfig]:
    """OUR model and pretraining configs for a reference mode, set up like the objective it computes."""
    if mode == "same-objective":  # the softmax-diagonal objective the reference codes (cosine logits, identity term)
        return preset(preset_name, dma_signal="paper"), PretrainConfig(batch_size=batch, seed=0)
    if mode == "release":  # our dino variant as close to the release as its options go (see the module doc)
        cfg = preset(preset_name, poi_variant="dino", dma_signal="paper", dma_cosine_temperature=0.0, dma_query="first")
        return cfg, PretrainConfig(batch_size=batch, seed=0, local_crops=RELEASE_LOCAL_CROPS, identity_weight=0.0)
    raise ValueError(f"reference mode must be one of {sorted(MODES)}, not {mode!r}")


def local_crop_size(cfg: ModelConfig) -> int:
    """DINO's local crop side, 96 px at 224, scaled with img_size to a multiple of the patch."""
    return max(cfg.patch_size, round(cfg.img_size * 96 / 224 / cfg.patch_size) * cfg.patch_size)


class ReleaseDecoder(Decoder):
    """The release's decoder: the N DMA output tokens in, no contextual token."""

    def forward(self, x):
        x = self.embed(x) + self.pos_embed[:, 1:]
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))


class DinoHead(OurDinoHead):
    """Our DINO head (the release's layers and names) with the prototype layer's gain frozen at 1, as
    the release trains it."""

    def __init__(self, dim, hidden, bottleneck, out_dim):
        super().__init__(dim, hidden, bottleneck, out_dim)
        self.last_layer.parametrizations.weight.original0.requires_grad_(False)


class DinoAgreement(nn.Module):
    def __init__(self, encoder, cfg):
        super().__init__()
        self.student_head = DinoHead(cfg.embed_dim, cfg.dino_hidden_dim, cfg.dino_bottleneck_dim, cfg.dino_out_dim)
        self.register_buffer("center", torch.zeros(1, cfg.dino_out_dim))
        self.teacher_encoder, self.teacher_head = frozen_teacher(encoder, self.student_head)


class ReleaseMicronBert(nn.Module):
    """Parameter names as ours (the dino variant), so `load_state_dict(ours.state_dict())` works."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.poi_variant != "dino" or not (cfg.use_dma and cfg.use_poi) or cfg.dma_cosine_temperature > 0:
            raise ValueError("the release reference is the dino variant with DMA on dot-product logits")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.dma = DMA(cfg.embed_dim, cfg.dma_heads, 0.0)
        self.decoder = ReleaseDecoder(cfg)
        self.agreement = DinoAgreement(self.encoder, cfg)


def unpatchify(x, p, c=3):
    b, n, _ = x.shape
    g = int(round(n ** 0.5))
    x = x.reshape(b, g, g, p, p, c)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, c, g * p, g * p)


def replace_loop(frame_t, frame_tp, patch, ratio, generator):
    """The release's patch replacement: per sample (a Python loop), the patches past the first
    int(N·(1 − ratio)) of a random order are taken from I_{t+δ}."""
    x, x_ref = patchify(frame_t, patch).clone(), patchify(frame_tp, patch)
    b, n, _ = x.shape
    keep = int(n * (1 - ratio))
    noise = torch.rand(b, n, generator=generator, device=frame_t.device)
    ids_replace = torch.argsort(noise, dim=1)[:, keep:]
    mask = torch.zeros(b, n, device=frame_t.device)
    for i in range(b):
        x[i][ids_replace[i]] = x_ref[i][ids_replace[i]]
        mask[i][ids_replace[i]] = 1
    return unpatchify(x, patch, frame_t.shape[1]), mask


def release_crops(frame, cfg: ModelConfig, pcfg: PretrainConfig, generator=None) -> list[torch.Tensor]:
    """2 global crops (img_size) then pcfg.local_crops local ones (`local_crop_size`), of I_{t+δ}."""
    size, small = frame.shape[-1], local_crop_size(cfg)
    return ([random_resized_crop(frame, size, pcfg.crop_scale, generator=generator) for _ in range(2)]
            + [random_resized_crop(frame, small, pcfg.local_crop_scale, generator=generator)
               for _ in range(pcfg.local_crops)])


def multicrop(encoder, head, crops):
    """One encoder call per run of equal-size crops (concatenated), the head on all contextual tokens."""
    outs, start = [], 0
    while start < len(crops):
        end = start
        while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
            end += 1
        outs.append(encoder(torch.cat(crops[start:end]))[:, 0])
        start = end
    return head(torch.cat(outs))


def dino_loss(agreement, student_out, teacher_out, n_crops, pcfg):
    """Cross-entropy of every student crop against every teacher crop but itself; then the centre moves."""
    student = (student_out / pcfg.dino_student_temp).chunk(n_crops)
    teacher = F.softmax((teacher_out - agreement.center) / pcfg.dino_teacher_temp, dim=-1).detach().chunk(2)
    total, terms = 0.0, 0
    for iq, q in enumerate(teacher):
        for v in range(len(student)):
            if v == iq:
                continue
            total = total + torch.sum(-q * F.log_softmax(student[v], dim=-1), dim=-1).mean()
            terms += 1
    with torch.no_grad():
        batch_center = torch.sum(teacher_out, dim=0, keepdim=True)
        world = 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch_center)
            world = torch.distributed.get_world_size()
        batch_center = batch_center / (len(teacher_out) * world)
        m = pcfg.dino_center_momentum
        agreement.center = agreement.center * m + batch_center * (1 - m)
    return total / terms


def release_losses(model: ReleaseMicronBert, frame_t, frame_tp, pcfg: PretrainConfig, generator=None):
    cfg = model.cfg
    swapped, _ = replace_loop(frame_t, frame_tp, cfg.patch_size, pcfg.swap_ratio, generator)
    x = model.encoder(swapped)[:, 1:]
    x_ref = model.encoder(frame_tp)[:, 1:]
    latent, _ = model.dma(x, x_ref, x)  # query and value from Ĩ_t, key from I_{t+δ}
    pred = model.decoder(latent)
    loss_rec = ((pred - patchify(frame_t, cfg.patch_size)) ** 2).mean()
    crops = release_crops(frame_tp, cfg, pcfg, generator)
    ag = model.agreement
    with torch.no_grad():
        t_out = multicrop(ag.teacher_encoder, ag.teacher_head, crops[:2])
    s_out = multicrop(model.encoder, ag.student_head, crops)
    loss_agg = dino_loss(ag, s_out, t_out, len(crops), pcfg)
    return {"loss_rec": loss_rec, "loss_agg": loss_agg, "loss": loss_rec + pcfg.agreement_weight * loss_agg}


def release_step(model, optimizer, frames_t, frames_tp, pcfg, generator):
    """One optimizer step of the release's objective: uint8 (B, H, W, 3) batches in, the loss out."""
    losses = release_losses(model, normalise(frames_t), normalise(frames_tp), pcfg, generator)
    optimizer.zero_grad()
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), pcfg.grad_clip)
    optimizer.step()
    ema_loop(model, pcfg.ema_decay)
    return float(losses["loss"].detach())


def release_step_flops(cfg: ModelConfig, pcfg: PretrainConfig, pairs: int) -> float:
    """Matrix-product FLOPs of one `release_step` over `pairs` pairs, by the rules of
    micronbert.model.flops.pretrain_step_flops (backward = 2 × forward for trained parts, the teacher
    forward only, no input gradient for the patch embedding, the DMA as the naive N×N softmax)."""
    n, d, c, p = cfg.num_patches, cfg.embed_dim, cfg.in_chans, cfg.patch_size
    ns = (local_crop_size(cfg) // p) ** 2

    def embed(tokens):
        return 2 * tokens * c * p * p * d

    def enc(tokens):
        return embed(tokens) + _vit_forward_flops(tokens + 1, d, cfg.depth, cfg.mlp_ratio)

    h, bn, o = cfg.dino_hidden_dim, cfg.dino_bottleneck_dim, cfg.dino_out_dim
    head = 2 * (d * h + h * h + h * bn + bn * o)
    dma = 4 * 2 * n * d * d + 2 * n * n * d  # q, k, v, out projections and q kᵀ (a_i · v is elementwise)
    de = cfg.decoder_embed_dim
    dec = 2 * n * d * de + _vit_forward_flops(n, de, cfg.decoder_depth, cfg.mlp_ratio) + 2 * n * de * p * p * c
    crops = pcfg.local_crops
    trained = 2 * enc(n) + dma + dec + 2 * (enc(n) + head) + crops * (enc(ns) + head)
    teacher = 2 * (enc(n) + head)
    no_input_grad = 4 * embed(n) + crops * embed(ns)
    return float(pairs * (3 * trained + teacher - no_input_grad))
