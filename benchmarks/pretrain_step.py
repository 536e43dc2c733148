"""Benchmark: one μ-BERT pretraining step (forward, backward, clip, AdamW, EMA teacher), ours
(micronbert.train.pretrain.train_step) against a naive reference written the way the authors' release
writes its code (benchmarks/reference_mubert.py: per-sample swap loop, explicit attention matrices,
full N×N DMA, per-parameter AdamW). Same preset, same weights, same inputs, same run; the two are
timed alternately so load from other processes hits both alike.

`--reference` picks what the reference computes:
- `same-objective` (default): "same objective, naive implementation": OUR objective (softmax-diagonal
  DMA with cosine logits, identity term, `mse` PoI), and ours runs exactly that objective. Before
  timing, both compute the loss for the same weights and random draws: they must agree
  (`check.max_rel_diff` < 1e-4).
- `release`: the release's objective (DINO self-distillation with an EMA teacher, 2 global + 8 local
  crops at 96 px for 224, the decoder fed by the DMA output, the paper's dot-product softmax DMA, no
  identity term), against our `dino` variant set up the same way (local_crops 8, dma_signal "paper",
  dot-product logits, no identity term, query from the first frame). The two objectives still differ
  where no option of ours reaches (reference_mubert.py lists how), so they cannot compute the same loss:
  the equality check does not apply, and the benchmark checks instead that every loss term is of the
  same magnitude (within a factor of 2) for the same weights. Their FLOPs per pair differ too; each
  side's achieved FLOP/s uses its own count.
Figures: pairs/s, peak extra memory of one step, achieved FLOP/s from the analytic FLOP count
(micronbert.model.flops.pretrain_step_flops; reference_mubert.release_step_flops for the release)
and, on CUDA, MFU against the device's bf16 peak. Pairs/s and FLOP/s come from the fastest timed
step (load from other processes only adds time), medians beside them. `speedup` = ours pairs/s ÷
reference pairs/s, float32 both; `speedup_cpu_bf16` uses our step under CPU bf16 autocast where the
CPU has native bf16, `speedup_compiled*` our step under torch.compile.
Usage: python benchmarks/pretrain_step.py [--quick] [--preset small] [--batch 4] [--repeats 2] [--device cpu]
                                          [--reference same-objective|release]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


def main(argv=None) -> int:
    C.reexec_with_fixed_malloc()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="`test` preset, batch 2, one timed step each")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-bf16", action="store_true", help="skip the CPU bf16-autocast variant")
    ap.add_argument("--compile", action="store_true", help="also time our step under torch.compile")
    ap.add_argument("--reference", default="same-objective", choices=("same-objective", "release"),
                    help="same-objective: our objective, naive implementation (default); release: the "
                         "release's DINO objective against our dino variant set up the same way")
    args = ap.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: this torch sees no CUDA device")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from micronbert.model.mubert import MicronBertModel, normalise_images
    from micronbert.model.flops import device_peak_flops, pretrain_step_flops
    from micronbert.train import pretrain as P
    import reference_mubert as R

    name = "test" if args.quick else args.preset
    batch = 2 if args.quick else args.batch
    repeats = 1 if args.quick else args.repeats
    dev = torch.device(args.device)
    release = args.reference == "release"
    cfg, pcfg = R.configs(args.reference, name, batch)
    torch.manual_seed(0)
    ours = MicronBertModel(cfg).to(dev)
    ref = (R.ReleaseMicronBert if release else R.ReferenceMicronBert)(cfg).to(dev)
    ref.load_state_dict(ours.state_dict(), strict=True)
    misplaced = C.misplaced_tensors(ours, dev) + C.misplaced_tensors(ref, dev)
    if misplaced:
        C.emit({"benchmark": "pretrain_step", "error": f"tensors not on {dev}: {misplaced[:5]}"})
        return 1
    step_module = P.PretrainStep(ours, pcfg)
    gen = torch.Generator().manual_seed(1)
    frames_t = torch.randint(0, 256, (batch, cfg.img_size, cfg.img_size, 3), dtype=torch.uint8, generator=gen).to(dev)
    frames_tp = frames_t.clone()
    frames_tp[:, : cfg.img_size // 3] = torch.randint(0, 256, frames_tp[:, : cfg.img_size // 3].shape,
                                                     dtype=torch.uint8, generator=gen).to(dev)

    # Sanity check: same weights, same random draws -> same loss terms (release: same magnitude).
    with torch.no_grad():
        a, b = normalise_images(frames_t), normalise_images(frames_tp)
        lo = ours.pretrain_losses(a, b, pcfg, torch.Generator(device=dev).manual_seed(5))
        ref_losses = R.release_losses if release else R.reference_losses
        lr_ = ref_losses(ref, a, b, pcfg, torch.Generator(device=dev).manual_seed(5))
    terms = ("loss_rec", "loss_agg", "loss")
    if release:
        ratios = {k: float(lo[k]) / float(lr_[k]) for k in terms}
        check = {"equality_check": "does not apply: the objectives differ (crops, teacher views, decoder input)",
                 **{f"{k}_ours": round(float(lo[k]), 6) for k in terms},
                 **{f"{k}_reference": round(float(lr_[k]), 6) for k in terms},
                 "ratios_ours_to_reference": {k: round(v, 4) for k, v in ratios.items()},
                 "same_magnitude": all(0.5 <= v <= 2.0 for v in ratios.values())}
        ok = check["same_magnitude"]
    else:
        rel = max(abs(float(lo[k]) - float(lr_[k])) / max(abs(float(lr_[k])), 1e-12) for k in terms)
        check = {"loss_ours": round(float(lo["loss"]), 6), "loss_reference": round(float(lr_["loss"]), 6),
                 "max_rel_diff": rel, "same": rel < 1e-4}
        ok = check["same"]
    if not ok:
        C.emit({"benchmark": "pretrain_step", "reference_mode": args.reference,
                "error": "ours and the reference disagree", "check": check})
        return 1

    opt_ours = P.build_optimizer(ours, pcfg, dev)
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=pcfg.lr, betas=pcfg.betas, weight_decay=pcfg.weight_decay)
    counter = {"step": 0}
    bf16_ok = dev.type == "cpu" and P.cpu_has_bf16() and not args.no_bf16
    variants = {
        "reference": lambda: (R.release_step if release else R.reference_step)(
            ref, opt_ref, frames_t, frames_tp, pcfg, torch.Generator(device=dev).manual_seed(counter["step"])),
        "ours": lambda: P.train_step(step_module, ours, opt_ours, frames_t, frames_tp, pcfg, counter["step"],
                                     autocast=P.autocast_for(dev, pcfg)),
    }
    if bf16_ok:
        variants["ours_cpu_bf16"] = lambda: P.train_step(step_module, ours, opt_ours, frames_t, frames_tp, pcfg,
                                                         counter["step"], autocast=P.autocast_for(dev, pcfg, True))
    if args.compile:
        compiled = torch.compile(step_module)
        variants["ours_compiled"] = lambda: P.train_step(compiled, ours, opt_ours, frames_t, frames_tp, pcfg,
                                                         counter["step"], autocast=P.autocast_for(dev, pcfg))
        if bf16_ok:  # its own compiled graph: autocast changes what is traced
            compiled_bf16 = torch.compile(step_module)
            variants["ours_compiled_cpu_bf16"] = lambda: P.train_step(
                compiled_bf16, ours, opt_ours, frames_t, frames_tp, pcfg, counter["step"],
                autocast=P.autocast_for(dev, pcfg, True))

    def run(fn):
        counter["step"] += 1
        out = fn()
        if isinstance(out, dict):
            out = {k: v for k, v in out.items()}
        C.sync(args.device)
        return out

    times: dict[str, list[float]] = {k: [] for k in variants}
    for k, fn in variants.items():  # warm-up (oneDNN primitives, compile)
        run(fn)
    for _ in range(repeats):
        for k, fn in variants.items():  # interleaved: drift in machine load hits every variant alike
            t = time.perf_counter()
            run(fn)
            times[k].append(time.perf_counter() - t)
    flops = pretrain_step_flops(cfg, pcfg, batch)
    flops_ref = R.release_step_flops(cfg, pcfg, batch) if release else flops
    peak_flops = device_peak_flops(torch.cuda.get_device_name()) if dev.type == "cuda" else None
    results = {}
    for k, fn in variants.items():
        _, peak = C.peak_memory(lambda: run(fn), args.device)
        med = statistics.median(times[k])
        best = min(times[k])
        # Other jobs sharing the cores only ever add time: the fastest step is the robust figure,
        # the median is given beside it.
        f = flops_ref if k == "reference" else flops
        r = {"pairs_per_s": round(batch / best, 4), "pairs_per_s_median": round(batch / med, 4), **C.summary(times[k]),
             "peak_extra_mib": C.mib(peak), "achieved_tflops": round(f / best / 1e12, 5)}
        if peak_flops:
            r["mfu"] = round(f / best / peak_flops, 4)
        results[k] = r
    out = {"benchmark": "pretrain_step", "machine": C.machine(args.device), "commit": C.git_commit(),
           "preset": name, "batch_pairs": batch, "img_size": cfg.img_size, "tokens": cfg.num_patches,
           "quick": args.quick, "reference_mode": args.reference, "reference_is": R.MODES[args.reference],
           "flops_per_step": flops, "flops_per_step_reference": flops_ref,
           "gflops_per_pair": {"ours": round(flops / batch / 1e9, 4), "reference": round(flops_ref / batch / 1e9, 4)},
           "device_bf16_peak_flops": peak_flops,
           "memory_method": "CUDA max_memory_allocated" if dev.type == "cuda"
           else "peak RSS above the pre-step RSS (VmHWM reset; glibc mmap threshold 64 KiB)",
           "check": check,
           "speedup": round(results["ours"]["pairs_per_s"] / results["reference"]["pairs_per_s"], 3),
           "speedup_median": round(results["ours"]["pairs_per_s_median"] / results["reference"]["pairs_per_s_median"], 3),
           "results": results}
    if "ours_cpu_bf16" in results:
        out["speedup_cpu_bf16"] = round(results["ours_cpu_bf16"]["pairs_per_s"] / results["reference"]["pairs_per_s"], 3)
        out["speedup_cpu_bf16_median"] = round(results["ours_cpu_bf16"]["pairs_per_s_median"]
                                               / results["reference"]["pairs_per_s_median"], 3)
    if "ours_compiled" in results:
        out["speedup_compiled"] = round(results["ours_compiled"]["pairs_per_s"] / results["reference"]["pairs_per_s"], 3)
    if "ours_compiled_cpu_bf16" in results:
        out["speedup_compiled_cpu_bf16"] = round(results["ours_compiled_cpu_bf16"]["pairs_per_s"]
                                                 / results["reference"]["pairs_per_s"], 3)
    C.emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
