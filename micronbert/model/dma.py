"""Diagonal Micro-Attention (DMA).

Cross-attention between the two frames' patch tokens, A = softmax(Q Kᵀ · scale) over all key
positions, of which only the diagonal a_i = A[i, i] is kept: how much patch i of one frame still
matches the same place in the other. F_DMA[i] = W_o(a_i · V[i]). A low a_i marks local change.

a_i = exp(s_ii − logsumexp_j s_ij) needs only each row's log-sum-exp, so `diagonal_attention`
computes it in chunks of query rows and recomputes them in the backward pass: peak extra memory
O(chunk · N) instead of the O(N²) attention matrix. `diagonal_attention_naive` is the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def diagonal_attention_naive(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Reference: build the full (…, N, N) softmax and take its diagonal. q, k: (…, N, d)."""
    attn = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
    return attn.diagonal(dim1=-2, dim2=-1)


class _DiagonalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, scale, chunk):
        n = q.shape[-2]
        acc = torch.promote_types(q.dtype, torch.float32)  # bf16/fp16 inputs accumulate in fp32
        lse = q.new_empty(q.shape[:-1], dtype=acc)
        for s in range(0, n, chunk):
            scores = (q[..., s:s + chunk, :] @ k.transpose(-2, -1)).to(acc) * scale
            lse[..., s:s + chunk] = torch.logsumexp(scores, dim=-1)
        self_scores = (q.to(acc) * k.to(acc)).sum(-1) * scale
        diag = torch.exp(self_scores - lse)
        ctx.save_for_backward(q, k, lse, diag)
        ctx.scale, ctx.chunk = scale, chunk
        return diag.to(q.dtype)

    @staticmethod
    def backward(ctx, grad_diag):
        # d a_i / d s_ij = a_i (δ_ij − p_ij); with w_i = g_i a_i:
        #   dq_i = scale (w_i k_i − w_i Σ_j p_ij k_j),   dk_j = scale (w_j q_j − Σ_i w_i p_ij q_i)
        q, k, lse, diag = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        acc = diag.dtype
        w = grad_diag.to(acc) * diag  # (…, N)
        qf, kf = q.to(acc), k.to(acc)
        dq = torch.empty_like(qf)
        dk = w.unsqueeze(-1) * qf
        for s in range(0, q.shape[-2], chunk):
            e = min(s + chunk, q.shape[-2])
            p = torch.exp((qf[..., s:e, :] @ kf.transpose(-2, -1)) * scale - lse[..., s:e, None])  # (…, c, N)
            wp = w[..., s:e, None] * p
            dq[..., s:e, :] = w[..., s:e, None] * kf[..., s:e, :] - wp @ kf
            dk = dk - wp.transpose(-2, -1) @ qf[..., s:e, :]
        return (dq * scale).to(q.dtype), (dk * scale).to(k.dtype), None, None


def diagonal_attention(q: torch.Tensor, k: torch.Tensor, scale: float, chunk: int = 256) -> torch.Tensor:
    """diag(softmax(q kᵀ · scale)) without materialising the N×N matrix. q, k: (…, N, d)."""
    if chunk <= 0:
        return diagonal_attention_naive(q, k, scale)
    return _DiagonalAttention.apply(q, k, scale, chunk)


class DiagonalMicroAttention(nn.Module):
    """F_DMA = W_o(a ⊙ V) with a = diag(softmax(Q Kᵀ/√d)). Names follow the release (att.to_q, ...).

    With `diagonal=False` it is the plain cross-attention softmax(Q Kᵀ/√d) V (the no-DMA ablation,
    and the release's `diag_att=False`); the map it returns is then still the diagonal, for display.
    """

    def __init__(self, dim: int, heads: int = 1, diagonal: bool = True, chunk: int = 256, tie_qk: bool = False):
        super().__init__()
        self.heads = heads
        self.tie_qk = tie_qk
        self.diagonal = diagonal
        self.chunk = chunk
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        # Start Q and K as one projection, so at initialisation a_i is largest where the two frames'
        # tokens agree: the diagonal means "still the same here" from step 0, and training refines it.
        with torch.no_grad():
            self.to_k.weight.copy_(self.to_q.weight)
            self.to_k.bias.copy_(self.to_q.bias)

    def _split(self, x):
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # (B, H, N, dh)

    def forward(self, x_query: torch.Tensor, x_key: torch.Tensor, x_value: torch.Tensor):
        """Patch tokens (B, N, D) each -> (features (B, N, D), diagonal map (B, N) averaged over heads)."""
        to_k = self.to_q if self.tie_qk else self.to_k
        q, k, v = self._split(self.to_q(x_query)), self._split(to_k(x_key)), self._split(self.to_v(x_value))
        scale = q.shape[-1] ** -0.5
        if self.diagonal:
            diag = diagonal_attention(q, k, scale, self.chunk)  # (B, H, N)
            out = diag.unsqueeze(-1) * v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
            with torch.no_grad():
                diag = diagonal_attention(q, k, scale, self.chunk)
        b, h, n, dh = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * dh)), diag.mean(1)
