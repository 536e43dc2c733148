"""μ-BERT: the encoder, DMA, PoI and decoder put together.

Pretraining (`pretrain_losses`): Ĩ_t = blockwise_swap(I_t, I_{t+δ}); both Ĩ_t and I_{t+δ} are encoded
by one shared encoder; DMA between them (paper: Q from I_{t+δ}, K and V from Ĩ_t) gives F_DMA and the
diagonal map; PoI saliency of I_{t+δ} gates F_DMA; the decoder reconstructs I_t from Ĩ_t's tokens plus
the gated DMA features. Loss = L_rec + λ·L_agg (+ the identity term on swapped patches, see
PretrainConfig.identity_loss).

Recognition uses `micro_features` on (onset, apex) in place of (Ĩ_t, I_{t+δ}).
"""
from __future__ import annotations

import torch
from torch import nn

from micronbert.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, PretrainConfig
from micronbert.model.decoder import PixelDecoder, patchify
from micronbert.model.direction import SHIFTS, motion_from_changes
from micronbert.model.dma import DiagonalMicroAttention
from micronbert.model.encoder import ViTEncoder
from micronbert.model.poi import ContextAgreement, face_log_prior, own_log_prior, poi_saliency
from micronbert.model.swapping import blockwise_swap


def normalise_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (B, 3, H, W) / float in [0, 1] -> ImageNet-normalised float (B, 3, H, W)."""
    x = images
    if x.dtype == torch.uint8:
        if x.shape[-1] == 3 and x.shape[1] != 3:
            x = x.permute(0, 3, 1, 2)
        x = x.float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class MicronBertModel(nn.Module):
    def __init__(self, cfg: ModelConfig, with_decoder: bool = True, with_agreement: bool = True):
        super().__init__()
        self.cfg = cfg
        self.encoder = ViTEncoder(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim, cfg.depth,
                                  cfg.num_heads, cfg.mlp_ratio)
        self.dma = DiagonalMicroAttention(cfg.embed_dim, cfg.dma_heads, diagonal=cfg.use_dma, chunk=cfg.dma_chunk,
                                          tie_qk=cfg.dma_tie_qk, cosine_temperature=cfg.dma_cosine_temperature,
                                          signal=cfg.dma_signal, project_qk=cfg.dma_project_qk)
        self.decoder = (PixelDecoder(cfg.embed_dim, cfg.decoder_embed_dim, cfg.decoder_depth, cfg.decoder_num_heads,
                                     cfg.mlp_ratio, cfg.grid, cfg.patch_size, cfg.in_chans)
                        if with_decoder else None)
        self.agreement = ContextAgreement(self.encoder, cfg) if (with_agreement and cfg.use_poi) else None
        # derived from the config (None without a prior), so not saved: older checkpoints load unchanged
        self.register_buffer("poi_log_prior", face_log_prior(cfg), persistent=False)

    # -- shared by pretraining and recognition -------------------------------------------------------
    # The pair pipeline carries each frame's residual stream (encoder.hidden, before the final norm):
    # the final norm gives the tokens that PoI, the values and the heads read; DMA's Q and K read what
    # dma_compare says (`_compared`).
    def _query_key(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch inputs of the two frames -> (DMA's query inputs, key inputs), as `dma_query` orders them."""
        return (second, first) if self.cfg.dma_query == "second" else (first, second)

    def _compared(self, hidden: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """What DMA's Q and K read of one frame's patches (dma_compare): its normalised tokens (`tokens`
        when already computed), or its residual stream."""
        if self.cfg.dma_compare == "residual":
            return hidden[:, 1:]
        return (self.encoder.norm(hidden) if tokens is None else tokens)[:, 1:]

    def _change(self, compared_first: torch.Tensor, compared_second: torch.Tensor) -> torch.Tensor:
        return -torch.log(self.dma.change_map(*self._query_key(compared_first, compared_second)).clamp_min(1e-8))

    def micro_features(self, hid_first: torch.Tensor, hid_second: torch.Tensor, match: bool = False,
                       face_share: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Residual streams of the first (Ĩ_t / onset) and second (I_{t+δ} / apex) frame -> gated DMA
        features, maps and the normalised tokens (match=True: also DMA's softmax diagonal, "match_map").
        `face_share` (B, N): each patch's share inside the clip's own face hull, read with poi_prior "own"
        only (without it, or with any other prior, the config's fixed prior applies)."""
        tok_first, tok_second = self.encoder.norm(hid_first), self.encoder.norm(hid_second)
        compared = self._query_key(self._compared(hid_first, tok_first), self._compared(hid_second, tok_second))
        feats, dma_map, *softmax_diag = self.dma(*compared, tok_first[:, 1:], match=match)
        if self.cfg.use_poi:
            own = face_share is not None and self.cfg.reads_face_mask
            sal = poi_saliency(tok_second, self.cfg.poi_temperature,
                               own_log_prior(face_share) if own else self.poi_log_prior)
        else:
            sal = torch.ones_like(dma_map)
        out = {"features": feats * sal.unsqueeze(-1), "dma_map": dma_map, "poi_map": sal,
               "cls_first": tok_first[:, 0], "cls_second": tok_second[:, 0],
               "tokens_first": tok_first[:, 1:], "tokens_second": tok_second[:, 1:]}
        if match:
            out["match_map"] = softmax_diag[0]
        return out

    def change_map(self, hid_first: torch.Tensor, hid_second: torch.Tensor) -> torch.Tensor:
        """−log a_i (B, N): DMA's change map alone (0 = unchanged), without features or PoI, from the two
        frames' residual streams."""
        return self._change(self._compared(hid_first), self._compared(hid_second))

    def motion(self, hid_first: torch.Tensor, hid_shifted) -> torch.Tensor:
        """Directional DMA (model/direction.py): (B, N, 2) from the first frame's residual stream and those
        of the second frame's shifted copies (direction.SHIFTS order)."""
        if len(hid_shifted) != len(SHIFTS):
            raise ValueError(f"directional DMA needs the residual streams of {len(SHIFTS)} shifted apexes, "
                             f"got {len(hid_shifted)}")
        first = self._compared(hid_first)  # once, not once per shifted apex
        return motion_from_changes(torch.stack([self._change(first, self._compared(h)) for h in hid_shifted]))

    def encode_pair(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two frames' residual streams, from one encoder pass (concatenated on the batch axis)."""
        hidden = self.encoder.hidden(torch.cat([first, second], dim=0))
        return hidden.chunk(2, dim=0)

    @torch.no_grad()
    def maps(self, first: torch.Tensor, second: torch.Tensor,
             face_share: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """DMA and PoI maps (B, grid, grid) for normalised frames (B, 3, H, W) (`face_share`: as micro_features)."""
        out = self.micro_features(*self.encode_pair(first, second), face_share=face_share)
        g = first.shape[-1] // self.cfg.patch_size
        return {"dma_map": out["dma_map"].view(-1, g, g), "poi_map": out["poi_map"].view(-1, g, g)}

    # -- pretraining ---------------------------------------------------------------------------------
    def pretrain_losses(self, frame_t: torch.Tensor, frame_tp: torch.Tensor, pcfg: PretrainConfig,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Normalised frame pairs (B, 3, H, W) -> dict of loss terms (`loss` is the total)."""
        if self.decoder is None:
            raise RuntimeError("this model was built without a decoder")
        p = self.cfg.patch_size
        if pcfg.use_swap:
            swapped, mask = blockwise_swap(frame_t, frame_tp, p, pcfg.swap_ratio, pcfg.swap_block, generator)
        else:
            swapped = frame_t
            mask = torch.zeros(frame_t.shape[0], self.cfg.num_patches, dtype=torch.bool, device=frame_t.device)
        hid_s, hid_b = self.encode_pair(swapped, frame_tp)
        identity = pcfg.identity_weight > 0 and pcfg.use_swap and self.cfg.use_dma
        micro = self.micro_features(hid_s, hid_b, match=identity and pcfg.identity_loss != "signal")
        dec_in = torch.cat([micro["cls_first"][:, None], micro["tokens_first"] + micro["features"]], dim=1)
        pred = self.decoder(dec_in)
        target = patchify(frame_t, p)
        if self.cfg.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred.float() - target.float()) ** 2).mean(-1)  # (B, N)
        loss_rec = per_patch.mean()
        maskf = mask.float()
        losses = {"loss_rec": loss_rec,
                  # reconstruction error where the patch was swapped: what the network had to undo
                  "loss_rec_swapped": (per_patch * maskf).sum() / maskf.sum().clamp(min=1.0)}
        total = loss_rec
        if identity:
            # Swapped patches are identical in both frames: a free "unchanged" label for the diagonal.
            # "contrastive": the softmax diagonal (InfoNCE); "signal": the change map; "both": their sum
            # (with the paper's signal the two are one map, taken once).
            targets = [micro["dma_map"]] if pcfg.identity_loss == "signal" else [micro["match_map"]]
            if pcfg.identity_loss == "both" and self.cfg.dma_signal != "paper":
                targets.append(micro["dma_map"])
            log_a = sum(torch.log(t.float().clamp_min(1e-12)) for t in targets)
            loss_id = -(log_a * maskf).sum() / maskf.sum().clamp(min=1.0)
            losses["loss_identity"] = loss_id
            total = total + pcfg.identity_weight * loss_id
        if self.agreement is not None:
            loss_agg = self.agreement(self.encoder, frame_tp, pcfg, generator)
            losses["loss_agg"] = loss_agg
            total = total + pcfg.agreement_weight * loss_agg
        losses["loss"] = total
        return losses
