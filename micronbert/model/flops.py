"""Model FLOPs of a pretraining step, counted analytically, and the device peaks that turn achieved
FLOP/s into model FLOP utilisation (as nanoGPT's estimate_mfu: the count lives beside the model it
describes, so a change to the model's shapes and to its count are reviewed together)."""
from __future__ import annotations

import os

from micronbert.config import ModelConfig, PretrainConfig

# Dense bf16 tensor-core peaks (FLOP/s, no sparsity) by device-name substring, most specific first.
# MICRONBERT_PEAK_TFLOPS overrides (e.g. for a device missing here or a clock-limited part).
BF16_PEAK_FLOPS = [("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12),
                   ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12),
                   ("L4", 121e12), ("A10G", 70e12), ("A10", 125e12), ("RTX 4090", 165e12),
                   ("RTX 3090", 71e12), ("A6000", 155e12)]


def device_peak_flops(device_name: str) -> float | None:
    env = os.environ.get("MICRONBERT_PEAK_TFLOPS")
    if env:
        return float(env) * 1e12
    for key, peak in BF16_PEAK_FLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


def _vit_forward_flops(tokens: int, dim: int, depth: int, mlp_ratio: float) -> float:
    hidden = int(dim * mlp_ratio)
    per_block = (2 * tokens * dim * 3 * dim      # qkv
                 + 2 * 2 * tokens * tokens * dim  # q kᵀ and attn · v
                 + 2 * tokens * dim * dim         # output projection
                 + 2 * 2 * tokens * dim * hidden)  # MLP
    return depth * per_block


def pretrain_step_flops(cfg: ModelConfig, pcfg: PretrainConfig, pairs: int) -> float:
    """Model FLOPs of one pretraining step over `pairs` frame pairs, counted analytically: matrix
    products only (norms, softmax, GELU and the optimizer are left out, as usual for MFU), backward =
    2 × forward for trained parts, the EMA teacher forward only. The DMA counts what the naive N×N
    version computes (our O(N)-memory version recomputes; recomputation is not useful work)."""
    n, t, d = cfg.num_patches, cfg.num_patches + 1, cfg.embed_dim
    embed = 2 * n * cfg.in_chans * cfg.patch_size ** 2 * d
    enc = embed + _vit_forward_flops(t, d, cfg.depth, cfg.mlp_ratio)
    dma, display = _dma_flops(cfg)
    dma += _identity_flops(cfg, pcfg)
    de = cfg.decoder_embed_dim
    dec = 2 * t * d * de + _vit_forward_flops(t, de, cfg.decoder_depth, cfg.mlp_ratio) \
        + 2 * t * de * cfg.patch_size ** 2 * cfg.in_chans
    trained = 2 * enc + dma + dec  # Ĩ_t and I_{t+δ} through the student, DMA, decoder
    no_input_grad = 0.0  # the patch embedding's input is an image: its backward has no input gradient
    teacher = 0.0
    if cfg.use_poi:
        if cfg.poi_variant == "mse":
            p = cfg.proj_dim
            heads = 2 * (d * 2 * p + 2 * p * p) + 2 * (p * 2 * p + 2 * p * p)
            trained += enc + heads
            teacher = enc + heads / 2
            no_input_grad = 3 * embed
        else:
            h, bn, o = cfg.dino_hidden_dim, cfg.dino_bottleneck_dim, cfg.dino_out_dim
            head = 2 * (d * h + h * h + h * bn + bn * o)
            small = max(cfg.patch_size, (cfg.img_size // 2) // cfg.patch_size * cfg.patch_size)
            ns = (small // cfg.patch_size) ** 2
            embed_small = 2 * ns * cfg.in_chans * cfg.patch_size ** 2 * d
            enc_small = embed_small + _vit_forward_flops(ns + 1, d, cfg.depth, cfg.mlp_ratio)
            trained += enc + head + pcfg.local_crops * (enc_small + head)
            teacher = enc + head
            no_input_grad = 3 * embed + pcfg.local_crops * embed_small
    else:
        no_input_grad = 2 * embed
    return float(pairs * (3 * trained + teacher + display - no_input_grad))


def _identity_flops(cfg: ModelConfig, pcfg: PretrainConfig) -> float:
    """The contrastive identity term's own forward work for one pair: one softmax diagonal on DMA's
    logits (model/dma.py, match=True); none where the change map already is that diagonal."""
    if not (pcfg.identity_weight > 0 and pcfg.use_swap and cfg.use_dma) or pcfg.identity_loss == "signal" \
            or cfg.dma_signal == "paper":
        return 0.0
    n, d = cfg.num_patches, cfg.embed_dim
    return 2 * n * n * d


def _dma_flops(cfg: ModelConfig) -> tuple[float, float]:
    """(trained, forward-only) matrix-product FLOPs of DMA for one pair. The change signal decides the
    N×N work: "cosine" and "distance" compare each token with itself only (no N×N product), "paper" one
    softmax diagonal (the naive QKᵀ), "relative" two of them plus a projection of the key frame. The
    no-DMA ablation trains a full cross-attention (QKᵀ and AV) and computes the diagonal for display
    only, without gradient."""
    n, d = cfg.num_patches, cfg.embed_dim
    projections = 4 * 2 * n * d * d
    signal = {"cosine": 0, "distance": 0, "paper": 2 * n * n * d,
              "relative": 2 * (2 * n * n * d) + 2 * n * d * d}[cfg.dma_signal]
    if cfg.use_dma:
        return projections + signal, 0.0
    return projections + 4 * n * n * d, signal
