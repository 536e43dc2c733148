"""Which pretraining change signal gives the demo's μ-BERT a better encoder?

For each finished demo folder, pretrains the demo's tiny model once per variant on that demo's own
pretraining frames (same seed, steps, batch), then runs the demo's LOSO (frozen recipe, clean pair only,
15 epochs) on each encoder with the same recognition model (cosine signal, grid head, registration).
Variants (what pretraining uses; recognition is the same for all):
  cosine-signal       cosine change map in DMA, identity term −log of that map (the default until 2026-12)
  cosine-contrastive  cosine change map in DMA, identity term on the softmax diagonal (InfoNCE)
  cosine-both         cosine change map in DMA, identity term on both (the sum of the two −log terms)
  paper               the softmax diagonal in DMA and in the identity term (`--dma-signal paper`)

Choose a default on DEVELOPMENT folders (`micronbert demo --seed 1/2`: other people, clips and draws);
the demo's own folder (seed 0) only reports the choice.

Usage: python benchmarks/demo_pretrain_signal.py runs/dev1 runs/dev2 [--variants ...] [--steps 150]
(run `micronbert demo --seed S --out runs/devS` first; prints one JSON object)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from _common import machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("demos", type=Path, nargs="+", help="finished `micronbert demo --out` folders")
    ap.add_argument("--variants", default="cosine-signal,cosine-contrastive,paper")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path("/tmp/signal_study"))
    args = ap.parse_args()

    from micronbert.config import PretrainConfig, preset
    from micronbert.data.report import ValidationReport
    from micronbert.model.checkpoint import load_model_dir
    from micronbert.train.cache_sources import frame_sources
    from micronbert.train.crossdata import plan
    from micronbert.train.loso import evaluate
    from micronbert.train.methods import MicronBertMethod, default_recipe
    from micronbert.train.pairdata import eval_table, pair_source
    from micronbert.train.pretrain import pretrain

    from micronbert.demo.pipeline import DemoConfig

    variants = {"cosine-signal": ("cosine", "signal"), "cosine-contrastive": ("cosine", "contrastive"),
                "paper": ("paper", "contrastive"),
                "cosine-both": ("cosine", "both")}
    rows = []
    for demo in args.demos:
        # the demo's pretraining sources, in the demo's order (the order is part of the pair schedule)
        pool = demo / "pretrain_frames"
        frames = [str(pool / "real" / Path(v).stem) for v in DemoConfig().real_videos] + [str(pool / "synthetic")]
        samples = demo / "samples.csv"
        for name in args.variants.split(","):
            signal, identity = variants[name]
            run = args.out / demo.name / f"pretrain-{name}"
            shutil.rmtree(run, ignore_errors=True)  # this script's own output of an earlier run
            t0 = time.perf_counter()
            pcfg = PretrainConfig(steps=args.steps, batch_size=args.batch, warmup_steps=max(1, args.steps // 10),
                                  log_every=max(1, args.steps // 30), ckpt_every=args.steps, fps=30.0, seed=0,
                                  identity_loss=identity)
            pretrain(frames, run, preset("tiny", dma_signal=signal), pcfg, fps=30.0,
                     sources=frame_sources(frames, 30.0), show_progress=False)
            t_pre = time.perf_counter() - t0
            state, cfg, _ = load_model_dir(str(run))
            cfg = dataclasses.replace(cfg, dma_signal="cosine")  # the same recognition model for every encoder
            report = ValidationReport()
            table, protocol = eval_table([str(samples)], "megc2019", report)
            recipe = default_recipe("micronbert", True, epochs=args.epochs, cached_views=0, train_blocks=0)
            method = MicronBertMethod(cfg, protocol.classes, recipe, state, device="cpu", name="micronbert")
            table, make_folds, mode, meta = plan(table)
            res = evaluate(table, pair_source(str(demo / "cache"), method.input_size), method,
                           args.out / demo.name / f"evaluate-{name}", classes=protocol.classes,
                           protocol=protocol.name, seed=0, val_subjects=recipe.val_subjects, report=report,
                           sample_files=[str(samples)], extra_config={}, overwrite=True, make_folds=make_folds,
                           mode=mode, extra_meta=meta)
            m = res["metrics"]
            rows.append({"demo": str(demo), "variant": name, "pretraining_signal": signal,
                         "identity_loss": identity, "uf1": round(m["uf1"], 4), "uar": round(m["uar"], 4),
                         "n_samples": m["n_samples"], "samples_sha256": m.get("samples_sha256"),
                         "pretrain_s": round(t_pre, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"benchmark": "demo_pretrain_signal", "machine": machine(), "steps": args.steps,
                      "batch": args.batch, "epochs": args.epochs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
