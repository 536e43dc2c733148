"""Diagnosis: which pretraining change signal gives the demo's μ-BERT a better encoder?

Pretrains the demo's tiny model twice on the demo's own pretraining frames (same seed, steps, batch),
once with the default cosine change signal in the identity term and once with the softmax diagonal
(`--dma-signal paper`), then runs the demo's LOSO (frozen recipe, clean pair only, 15 epochs) on both
encoders with the same recognition model (cosine signal, grid head, registration). It scores on the
demo's own test subjects: a diagnosis to guide a development-split study, not a way to pick a default.

Usage: python benchmarks/demo_pretrain_signal.py runs/demo [--steps 150] [--out /tmp/signal_study]
(run `make demo` first; prints one JSON object)
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
    ap.add_argument("demo", type=Path, help="a finished `micronbert demo --out` folder")
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

    # the demo's pretraining sources: each aligned real video, and the aligned synthetic clips
    pool = args.demo / "pretrain_frames"
    from micronbert.demo.pipeline import DemoConfig

    # in the demo's order (the order of the sources is part of the pair schedule)
    frames = [str(pool / "real" / Path(v).stem) for v in DemoConfig().real_videos] + [str(pool / "synthetic")]
    samples = args.demo / "samples.csv"
    rows = []
    for signal in ("cosine", "paper"):
        run = args.out / f"pretrain-{signal}"
        shutil.rmtree(run, ignore_errors=True)  # this script's own output of an earlier run
        t0 = time.perf_counter()
        pcfg = PretrainConfig(steps=args.steps, batch_size=args.batch, warmup_steps=max(1, args.steps // 10),
                              log_every=max(1, args.steps // 30), ckpt_every=args.steps, fps=30.0, seed=0)
        pretrain(frames, run, preset("tiny", dma_signal=signal), pcfg, fps=30.0, sources=frame_sources(frames, 30.0),
                 show_progress=False)
        t_pre = time.perf_counter() - t0
        state, cfg, _ = load_model_dir(str(run))
        cfg = dataclasses.replace(cfg, dma_signal="cosine")  # the same recognition model for both encoders
        report = ValidationReport()
        table, protocol = eval_table([str(samples)], "megc2019", report)
        recipe = default_recipe("micronbert", True, epochs=args.epochs, cached_views=0, train_blocks=0)
        method = MicronBertMethod(cfg, protocol.classes, recipe, state, device="cpu", name="micronbert")
        table, make_folds, mode, meta = plan(table)
        res = evaluate(table, pair_source(str(args.demo / "cache"), method.input_size), method,
                       args.out / f"evaluate-{signal}", classes=protocol.classes, protocol=protocol.name, seed=0,
                       val_subjects=recipe.val_subjects, report=report, sample_files=[str(samples)],
                       extra_config={}, overwrite=True, make_folds=make_folds, mode=mode, extra_meta=meta)
        m = res["metrics"]
        rows.append({"pretraining_signal": signal, "uf1": round(m["uf1"], 4), "uar": round(m["uar"], 4),
                     "n_samples": m["n_samples"], "samples_sha256": m.get("samples_sha256"),
                     "pretrain_s": round(t_pre, 1)})
    print(json.dumps({"benchmark": "demo_pretrain_signal", "machine": machine(), "steps": args.steps,
                      "batch": args.batch, "epochs": args.epochs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
