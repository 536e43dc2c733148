"""Diagonal Micro-Attention (DMA).

Cross-attention between the two frames' patch tokens, A = softmax(Q Kᵀ · scale) over all key
positions, of which only the diagonal a_i = A[i, i] is kept: how much patch i of one frame still
matches the same place in the other. F_DMA[i] = W_o(a_i · V[i]). A low a_i marks local change.

The change signal (`signal`) — what "a_i" is:
- "paper": the softmax diagonal exactly as above. Measured on real faces it mostly says how
  *distinctive* patch i is among all patches (the row's log-sum-exp), not whether it moved: the map of
  a 1 px warp correlates with the map of no motion at all at r = 0.999 (docs/motion.md).
- "relative": the same diagonal against its no-motion baseline a0_i (the key frame matched with
  itself), exp(−|log a_i − log a0_i|): the distinctiveness term cancels. Either direction counts: a
  change can make a patch less ambiguous, which raises a_i.
- "cosine": self-normalised: the diagonal logit is normalised by the score of a perfect match
  instead of by the sum over all patches, a_i = exp((cos(q_i, k_i) − 1)/τ). An unchanged patch scores
  1 whatever its texture. Needs cosine logits (τ > 0).
- "distance" (default): the cosine signal with one normaliser per frame pair instead of one per
  patch: q and k are divided by their pair's root-mean-square token norm s, a_i = exp(−‖q_i − k_i‖² /
  (2τ s²)) (for unit vectors this is exactly "cosine"). An unchanged patch still scores 1; a faint
  patch's small change no longer counts as much as a strong patch's (cosine turns a low-norm token's
  noise into large angles). Needs τ > 0; its softmax (the identity term's) uses the same
  frame-normalised logits. Why the default: pretraining keeps this map where cosine's erodes
  (docs/motion.md §11).
All four give a map in (0, 1], 1 = unchanged, so F_DMA = W_o(a_i · V[i]) keeps the paper's form.

a_i = exp(s_ii − logsumexp_j s_ij) needs only each row's log-sum-exp, so `diagonal_attention`
computes it in chunks of query rows and recomputes them in the backward pass: peak extra memory
O(chunk · N) instead of the O(N²) attention matrix (on CPU in float32/64 the same maths runs through
PyTorch's fused attention kernel, see `_DiagonalAttentionFlashCPU`). `diagonal_attention_naive` is
the reference; `diagonal_attention_traceable` is the same value in plain ops, for ONNX export.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from micronbert.config import DMA_SIGNALS, SELF_NORMALISED_SIGNALS


def diagonal_attention_naive(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Reference: build the full (…, N, N) softmax and take its diagonal. q, k: (…, N, d)."""
    attn = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
    return attn.diagonal(dim1=-2, dim2=-1)


def diagonal_attention_traceable(q: torch.Tensor, k: torch.Tensor, scale: float, chunk: int = 0) -> torch.Tensor:
    """Same value as the reference without a diagonal op or custom autograd (ONNX traces it)."""
    scores = (q @ k.transpose(-2, -1)) * scale
    self_scores = (q * k).sum(-1) * scale
    return torch.exp(self_scores - torch.logsumexp(scores, dim=-1))


def _chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    # Even chunks (784 rows at chunk 256 -> 4 × 196, not 3 × 256 + 16): same peak, no ragged tail call.
    count = -(-n // chunk)
    size = -(-n // count)
    return [(s, min(s + size, n)) for s in range(0, n, size)]


class _DiagonalAttention(torch.autograd.Function):
    """Works on (B·H, N, d) views in row chunks of (B·H, c, N): few, large batched products (small
    per-tile ops lose to thread start-up on a few cores), elementwise work done in place on the one
    score buffer, and no float copies of q and k for float32/64 inputs. Low-precision inputs multiply
    in their dtype (tensor cores) and sum in fp32."""

    @staticmethod
    def forward(ctx, q, k, scale, chunk):
        shape = q.shape
        q3, k3 = q.reshape(-1, shape[-2], shape[-1]), k.reshape(-1, shape[-2], shape[-1])
        acc = torch.promote_types(q.dtype, torch.float32)  # bf16/fp16 inputs accumulate in fp32
        kt = k3.transpose(1, 2)
        lse = q3.new_empty(q3.shape[:-1], dtype=acc)
        self_scores = q3.new_empty(q3.shape[:-1], dtype=acc)
        for s, e in _chunks(shape[-2], chunk):
            scores = torch.bmm(q3[:, s:e], kt).to(acc).mul_(scale)  # (BH, c, N)
            lse[:, s:e] = torch.logsumexp(scores, dim=-1)
            # s_ii lies in this chunk's columns s..e: take it from the same product the naive version uses
            self_scores[:, s:e] = scores[:, :, s:e].diagonal(dim1=-2, dim2=-1)
            del scores
        diag = torch.exp(self_scores.sub_(lse))
        ctx.save_for_backward(q, k, lse, diag)
        ctx.scale, ctx.chunk = scale, chunk
        return diag.view(shape[:-1]).to(q.dtype)

    @staticmethod
    def backward(ctx, grad_diag):
        # d a_i / d s_ij = a_i (δ_ij − p_ij); with w_i = g_i a_i:
        #   dq_i = scale (w_i k_i − Σ_j w_i p_ij k_j),   dk_j = scale (w_j q_j − Σ_i w_i p_ij q_i)
        q, k, lse, diag = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        shape = q.shape
        q3, k3 = q.reshape(-1, shape[-2], shape[-1]), k.reshape(-1, shape[-2], shape[-1])
        acc = diag.dtype
        w = (grad_diag.reshape(diag.shape).to(acc) * diag).unsqueeze(-1)  # (BH, N, 1)
        same = q.dtype == acc
        dq = torch.mul(k3, w) if same else k3.to(acc) * w
        dk = torch.mul(q3, w) if same else q3.to(acc) * w
        kt = k3.transpose(1, 2)
        for s, e in _chunks(shape[-2], chunk):
            qc = q3[:, s:e]
            # wp = w ⊙ exp(scale·q kᵀ − lse) in one (BH, c, N) buffer, updated in place
            wp = torch.bmm(qc, kt).to(acc).mul_(scale).sub_(lse[:, s:e, None]).exp_().mul_(w[:, s:e])
            if not same:
                wp = wp.to(q.dtype)
            dq[:, s:e] -= torch.bmm(wp, k3).to(acc)
            dk -= torch.bmm(wp.transpose(1, 2), qc).to(acc)
            del wp
        dq.mul_(scale)
        dk.mul_(scale)
        return dq.view(shape).to(q.dtype), dk.view(shape).to(k.dtype), None, None


_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


class _DiagonalAttentionFlashCPU(torch.autograd.Function):
    """float32/64 on CPU: the same maths through PyTorch's fused, tiled CPU attention kernel, which
    returns each row's log-sum-exp. Two kernel calls in all instead of dozens of chunk-sized ops:
        forward   (P K, lse) = attention(q, k, v=k)          P = softmax(scale·q kᵀ), never stored
        backward  Pᵀ(w⊙q) = attention(k, q, v=w⊙q, bias −lse over keys) · exp(its own lse)
    (the transposed call normalises column j of P by Z_j = Σ_i p_ij; multiplying by exp(log Z_j)
    undoes that). Memory O(N): the kernel works in query/key blocks; P K is (N, d) like q."""

    @staticmethod
    def forward(ctx, q, k, scale):
        pk, lse = _FLASH_CPU(q, k, k, scale=scale)
        self_scores = (q * k).sum(-1).mul_(scale)
        diag = torch.exp(self_scores.sub_(lse))
        ctx.save_for_backward(q, k, lse, diag, pk)
        ctx.scale = scale
        return diag

    @staticmethod
    def backward(ctx, grad_diag):
        # dq_i = scale·w_i (k_i − (P k)_i),   dk_j = scale (w_j q_j − (Pᵀ (w⊙q))_j),   w = g ⊙ a
        q, k, lse, diag, pk = ctx.saved_tensors
        scale = ctx.scale
        w = (grad_diag * diag).unsqueeze(-1)
        wq = q * w
        col, log_z = _FLASH_CPU(k, q, wq, attn_mask=lse.neg().unsqueeze(-2), scale=scale)
        dq = torch.sub(k, pk).mul_(w).mul_(scale)
        dk = wq.sub_(col.mul_(log_z.exp().unsqueeze(-1))).mul_(scale)
        return dq, dk, None


def diagonal_attention(q: torch.Tensor, k: torch.Tensor, scale: float, chunk: int = 256) -> torch.Tensor:
    """diag(softmax(q kᵀ · scale)) without materialising the N×N matrix. q, k: (…, N, d).

    chunk <= 0: the naive reference. float32/64 on CPU with gradients: the fused kernel path (chunk
    unused; the kernel picks its own blocks). Otherwise (CUDA, bf16/fp16, and inference, where the
    fused path's P k product would be wasted): `chunk` query rows at a time.
    """
    if chunk <= 0:
        return diagonal_attention_naive(q, k, scale)
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
    if (needs_grad and _FLASH_CPU is not None and q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64)
            and k.dtype == q.dtype and q.dim() == 4 and q.is_contiguous() and k.is_contiguous()):
        return _DiagonalAttentionFlashCPU.apply(q, k, scale)
    return _DiagonalAttention.apply(q, k, scale, chunk)


class DiagonalMicroAttention(nn.Module):
    """F_DMA = W_o(a ⊙ V) with a the diagonal change signal (see the module doc). Names follow the
    release (att.to_q, ...).

    With `diagonal=False` it is the plain cross-attention softmax(Q Kᵀ/√d) V (the no-DMA ablation,
    and the release's `diag_att=False`); the map it returns is then still the diagonal, for display
    only (detached: nothing downstream may learn from it). `traceable=True` computes the diagonal
    with plain ops (ONNX export) instead of the O(N)-memory autograd Function. `project_qk=False`: Q and
    K are the inputs themselves, split into heads (to_q and to_k are then unused).
    """

    def __init__(self, dim: int, heads: int = 1, diagonal: bool = True, chunk: int = 256, tie_qk: bool = False,
                 cosine_temperature: float = 0.0, signal: str = "paper", traceable: bool = False,
                 project_qk: bool = True):
        super().__init__()
        if signal not in DMA_SIGNALS:
            raise ValueError(f"DMA signal must be one of {DMA_SIGNALS}, not {signal!r}")
        if signal in SELF_NORMALISED_SIGNALS and cosine_temperature <= 0:
            raise ValueError(f"the {signal} DMA signal needs a temperature > 0")
        self.heads = heads
        self.tie_qk = tie_qk
        self.project_qk = project_qk
        self.cosine_temperature = cosine_temperature
        self.signal = signal
        self.diagonal = diagonal
        self.chunk = chunk
        self.traceable = traceable
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

    def _logits(self, q: torch.Tensor, k: torch.Tensor):
        if self.signal == "distance":
            # one scale for the pair (per head): an unchanged patch (q_i = k_i) stays exactly unchanged
            s2 = 0.5 * (q.pow(2).sum(-1).mean(-1) + k.pow(2).sum(-1).mean(-1))  # (B, H)
            s = s2.clamp_min(1e-12).sqrt()[..., None, None]
            return q / s, k / s, 1.0 / self.cosine_temperature
        if self.cosine_temperature > 0:
            # Cosine logits: an unchanged token matches itself with the largest possible score.
            return F.normalize(q, dim=-1), F.normalize(k, dim=-1), 1.0 / self.cosine_temperature
        return q, k, q.shape[-1] ** -0.5

    def _softmax_diagonal(self, q, k, scale):
        if self.traceable:
            return diagonal_attention_traceable(q, k, scale)
        return diagonal_attention(q, k, scale, self.chunk)

    def change_diagonal(self, q, k, scale, key_tokens):
        """(B, H, N) map in (0, 1], 1 = unchanged. q, k: the (normalised, for cosine logits) projections;
        key_tokens: the key frame's tokens (B, N, D), whose self-match is the "relative" baseline."""
        if self.signal == "cosine":
            # exp((cos − 1)/τ): the softmax's normaliser replaced by the score of a perfect match
            return torch.exp(((q * k).sum(-1).clamp(max=1.0) - 1.0) * scale)
        if self.signal == "distance":
            return torch.exp(-0.5 * scale * (q - k).pow(2).sum(-1))
        diag = self._softmax_diagonal(q, k, scale)
        if self.signal == "paper":
            return diag
        q0 = self._split(self.to_q(key_tokens) if self.project_qk else key_tokens)
        q0, _, _ = self._logits(q0, q0)
        base = self._softmax_diagonal(q0, k, scale)
        # a / a0 in log space, either way: a change can also make a patch *less* ambiguous (a_i rises)
        log_ratio = torch.log(diag.float().clamp_min(1e-30)) - torch.log(base.float().clamp_min(1e-30))
        return torch.exp(-log_ratio.abs()).to(diag.dtype)

    def _query_key(self, x_query: torch.Tensor, x_key: torch.Tensor):
        """(q, k, scale): the projected, split (and for cosine logits normalised) queries and keys."""
        if not self.project_qk:
            # the inputs themselves: pretraining cannot weight away the directions a small motion changes
            return self._logits(self._split(x_query), self._split(x_key))
        to_k = self.to_q if self.tie_qk else self.to_k
        return self._logits(self._split(self.to_q(x_query)), self._split(to_k(x_key)))

    def change_map(self, x_query: torch.Tensor, x_key: torch.Tensor) -> torch.Tensor:
        """The diagonal map (B, N) alone, averaged over heads (no values, no features)."""
        return self.change_diagonal(*self._query_key(x_query, x_key), x_key).mean(1)

    def forward(self, x_query: torch.Tensor, x_key: torch.Tensor, x_value: torch.Tensor, match: bool = False):
        """Patch tokens (B, N, D) each -> (features (B, N, D), diagonal map (B, N) averaged over heads).
        match=True adds a third map: the softmax diagonal on the same logits whatever `signal` is (how much
        better patch i matches the same place than any other), the target of pretraining's contrastive
        identity term (a self-normalised signal alone has no negatives)."""
        q, k, scale = self._query_key(x_query, x_key)
        v = self._split(self.to_v(x_value))
        if self.diagonal:
            diag = self.change_diagonal(q, k, scale, x_key)  # (B, H, N)
            out = diag.unsqueeze(-1) * v
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)
            with torch.no_grad():
                diag = self.change_diagonal(q, k, scale, x_key)
        b, h, n, dh = out.shape
        result = (self.proj(out.transpose(1, 2).reshape(b, n, h * dh)), diag.mean(1))
        if match:
            softmax_diag = diag if self.signal == "paper" and self.diagonal else self._softmax_diagonal(q, k, scale)
            return (*result, softmax_diag.mean(1))
        return result
