"""Patch of Interest (PoI).

Saliency: the similarity of each patch token to the frame's contextual token, S = N · softmax(cos/τ)
(mean 1), gates the DMA output so background and distractions weigh little (the paper's aim; on aligned
crops neither this map nor an oracle face mask changes recognition: docs/motion.md §15, §18). Learned on
aligned faces it does not favour the face; `poi_prior` multiplies it by where alignment puts the face, or
("own") by where each clip's own landmarks put it.

Agreement (pretraining): the contextual token of I_{t+δ} and of a random crop of it must agree, so the
contextual token describes the face, not the framing. Agreement losses collapse to a constant unless
the target is held still: both variants use an EMA teacher (a slowly moving copy of the encoder) whose
output is a stop-gradient target.
- "mse" (paper): student projector + predictor on the crop's token vs. the teacher's projection of the
  full frame, mean squared error of the l2-normalised vectors (BYOL-style; the predictor prevents
  collapse together with the EMA target).
- "dino" (the authors' release): DINO self-distillation with multi-crop, a centred, sharpened teacher
  and a weight-normalised prototype layer.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from micronbert.model.crops import random_resized_crop


# Weight of a patch outside the prior's face region: low enough that the template face holds over 0.9 of
# a uniform map's mass (0.89 at 0.05: the border patches count by their share), not zero, so a face
# aligned a little off the template still shows through.
POI_PRIOR_FLOOR = 0.02


def share_log_prior(share: torch.Tensor) -> torch.Tensor:
    """Per patch, its share inside the face (any shape) -> the prior's log-weight: log(FLOOR + (1 − FLOOR) share)."""
    return torch.log(POI_PRIOR_FLOOR + (1 - POI_PRIOR_FLOOR) * share.float())


# "own" weighs a patch by the square of its share inside the clip's own hull: the hull is exact there, and a
# patch straddling its edge shows mostly the jaw line against the background (at 112 px, 8-px patches: with
# the share itself the 7 built-in photos keep 0.87-0.93 of the mass in their own hull, squared 0.90-0.95).
OWN_PRIOR_POWER = 2


def own_log_prior(share: torch.Tensor) -> torch.Tensor:
    """(B, N) share of each patch inside the clip's own hull -> the "own" prior's log-weights."""
    return share_log_prior(share.float() ** OWN_PRIOR_POWER)


def mask_patch_share(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, H, W) face masks in [0, 1] -> (B, N): each patch's share inside the face."""
    return F.avg_pool2d(mask.float()[:, None], patch).flatten(1)


def face_log_prior(cfg) -> torch.Tensor | None:
    """(N,) log-weights of the PoI face prior (ModelConfig.poi_prior), None for "none": per patch,
    FLOOR + (1 − FLOOR) × its share inside the template face of an aligned crop (faces/template.py). On
    aligned crops the learned map alone does not favour the face (docs/motion.md §15, §18). For "own", the
    template's hull weighed as an own hull is (own_log_prior): where a pair comes without its clip's own."""
    if cfg.poi_prior == "none":
        return None
    from micronbert.faces.template import template_face_share

    share = torch.as_tensor(template_face_share(cfg.img_size, cfg.patch_size, cfg.poi_prior_margin,
                                                forehead=cfg.poi_prior == "face"), dtype=torch.float32)
    return own_log_prior(share) if cfg.poi_prior == "own" else share_log_prior(share)


def poi_saliency(tokens: torch.Tensor, temperature: float, log_prior: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 1+N, D) tokens -> (B, N) saliency with mean 1; `log_prior` (N,) or per sample (B, N) reweights
    the patches first."""
    cls = F.normalize(tokens[:, :1], dim=-1)
    patches = F.normalize(tokens[:, 1:], dim=-1)
    logits = (patches * cls).sum(-1) / temperature  # cosine / τ, (B, N)
    if log_prior is not None:
        logits = logits + log_prior.to(logits.dtype)
    return torch.softmax(logits, dim=-1) * logits.shape[1]


def _mlp(dim_in, hidden, dim_out):
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))


class DinoHead(nn.Module):
    """Linear-GELU-Linear-GELU-Linear, then a weight-normalised prototype layer (names as the release)."""

    def __init__(self, dim, hidden, bottleneck, out_dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class ContextAgreement(nn.Module):
    """The agreement loss with its EMA teacher. Holds its own copy of the encoder as the teacher."""

    def __init__(self, encoder: nn.Module, cfg):
        super().__init__()
        self.variant = cfg.poi_variant
        d = cfg.embed_dim
        if self.variant == "mse":
            self.student_head = _mlp(d, cfg.proj_dim * 2, cfg.proj_dim)
            self.predictor = _mlp(cfg.proj_dim, cfg.proj_dim * 2, cfg.proj_dim)
        else:
            self.student_head = DinoHead(d, cfg.dino_hidden_dim, cfg.dino_bottleneck_dim, cfg.dino_out_dim)
            self.register_buffer("center", torch.zeros(1, cfg.dino_out_dim))
        self.teacher_encoder = copy.deepcopy(encoder)
        self.teacher_head = copy.deepcopy(self.student_head)
        for p in list(self.teacher_encoder.parameters()) + list(self.teacher_head.parameters()):
            p.requires_grad_(False)

    @torch.no_grad()
    def update_teacher(self, encoder: nn.Module, momentum: float) -> None:
        student = list(encoder.parameters()) + list(self.student_head.parameters())
        teacher = list(self.teacher_encoder.parameters()) + list(self.teacher_head.parameters())
        torch._foreach_mul_(teacher, momentum)
        torch._foreach_add_(teacher, [s.detach() for s in student], alpha=1 - momentum)

    def forward(self, encoder: nn.Module, frame: torch.Tensor, pcfg, generator=None) -> torch.Tensor:
        """Agreement loss for a batch of full frames I_{t+δ} (B, 3, H, W)."""
        size = frame.shape[-1]
        with torch.no_grad():
            self.teacher_encoder.eval()
            t_cls = self.teacher_encoder(frame)[:, 0]
            t_out = self.teacher_head(t_cls)
        crop = random_resized_crop(frame, size, pcfg.crop_scale, generator=generator)
        if self.variant == "mse":
            s = self.predictor(self.student_head(encoder(crop)[:, 0]))
            return F.mse_loss(F.normalize(s, dim=-1), F.normalize(t_out, dim=-1)) * s.shape[-1]
        views = [crop]
        if pcfg.local_crops > 0:
            patch = encoder.patch_size
            small = max(patch, (size // 2) // patch * patch)
            views += [random_resized_crop(frame, small, pcfg.local_crop_scale, generator=generator)
                      for _ in range(pcfg.local_crops)]
        target = F.softmax((t_out - self.center) / pcfg.dino_teacher_temp, dim=-1)
        loss = 0.0
        for v in views:
            s_out = self.student_head(encoder(v)[:, 0])
            loss = loss + torch.sum(-target * F.log_softmax(s_out / pcfg.dino_student_temp, dim=-1), dim=-1).mean()
        self._update_center(t_out, pcfg.dino_center_momentum)
        return loss / len(views)

    @torch.no_grad()
    def _update_center(self, t_out, momentum):
        batch_center = t_out.mean(0, keepdim=True)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch_center)
            batch_center /= torch.distributed.get_world_size()
        self.center.mul_(momentum).add_(batch_center, alpha=1 - momentum)
