"""Benchmark: Diagonal Micro-Attention, naive (full N×N softmax, then its diagonal) against ours
(row log-sum-exp in chunks, recomputed in the backward pass; micronbert.model.dma).

For each N: forward+backward time (median of --repeats after a warm-up) and the peak extra memory of
one forward+backward (see benchmarks/_common.py for how it is measured), batch --batch, one head of
width --dim (the `small` preset's DMA: 1 head × 512), float32 on CPU, and bf16 as well on CUDA.
Prints one JSON object; `speedup` = naive time ÷ ours at each N (higher is better).
Usage: python benchmarks/dma.py [--quick] [--device cpu|cuda] [--ns 196 784 3136]
This is the softmax diagonal of the `paper` and `relative` change signals; the default `cosine` signal
(model/dma.py) takes no softmax over keys at all: O(N·d) time and memory.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


def main(argv=None) -> int:
    C.reexec_with_fixed_malloc()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one timed repeat (CI smoke run)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ns", type=int, nargs="+", default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=None, help="rows per chunk (default: the model's default)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    from micronbert.config import ModelConfig
    from micronbert.model.dma import diagonal_attention, diagonal_attention_naive

    ns = args.ns or ([64, 196] if args.quick else [196, 784, 3136])
    batch = 2 if args.quick else args.batch
    dim = 64 if args.quick else args.dim
    repeats = 1 if args.quick else args.repeats
    chunk = args.chunk or ModelConfig().dma_chunk
    dtypes = [torch.float32] + ([torch.bfloat16] if args.device.startswith("cuda") else [])
    dh = dim // args.heads
    scale = dh ** -0.5
    results = []
    for dtype in dtypes:
        for n in ns:
            g = torch.Generator().manual_seed(n)
            q0 = torch.randn(batch, args.heads, n, dh, generator=g).to(args.device, dtype)
            k0 = torch.randn(batch, args.heads, n, dh, generator=g).to(args.device, dtype)
            up = torch.randn(batch, args.heads, n, generator=g).to(args.device, dtype)
            row = {"n": n, "dtype": str(dtype).replace("torch.", "")}
            for name, fn in (("naive", lambda q, k: diagonal_attention_naive(q, k, scale)),
                             ("ours", lambda q, k: diagonal_attention(q, k, scale, chunk))):
                q = q0.clone().requires_grad_(True)
                k = k0.clone().requires_grad_(True)

                def step():
                    q.grad = k.grad = None
                    (fn(q, k) * up).sum().backward()

                times = C.time_calls(step, repeats, args.device)
                q.grad = k.grad = None
                _, peak = C.peak_memory(step, args.device)
                row[name] = {**C.summary(times), "peak_extra_mib": C.mib(peak)}
            row["speedup"] = round(row["naive"]["median_s"] / row["ours"]["median_s"], 3)
            results.append(row)
    # Growth of the peak extra memory between successive N: ~x for linear, ~x² for quadratic.
    growth = []
    for a, b in zip(results, results[1:]):
        if a["dtype"] == b["dtype"] and a["naive"]["peak_extra_mib"] and a["ours"]["peak_extra_mib"]:
            growth.append({"from_n": a["n"], "to_n": b["n"], "n_ratio": round(b["n"] / a["n"], 2),
                           "naive_mem_ratio": round(b["naive"]["peak_extra_mib"] / a["naive"]["peak_extra_mib"], 2),
                           "ours_mem_ratio": round(b["ours"]["peak_extra_mib"] / a["ours"]["peak_extra_mib"], 2)})
    C.emit({"benchmark": "dma", "machine": C.machine(args.device), "commit": C.git_commit(),
            "batch": batch, "heads": args.heads, "dim": dim, "chunk": chunk, "quick": args.quick,
            "memory_method": "CUDA max_memory_allocated" if args.device.startswith("cuda")
            else "peak RSS above the pre-call RSS (VmHWM reset; glibc mmap threshold 64 KiB)",
            "speedup": {f"{r['dtype']}_n{r['n']}": r["speedup"] for r in results},
            "results": results, "memory_growth": growth})
    return 0


if __name__ == "__main__":
    sys.exit(main())
