"""Pretraining and LOSO runs on a finished `micronbert demo` folder, shared by the demo studies
(demo_pretrain_signal.py, demo_limits.py): the demo's own pretraining frames, samples and face cache."""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def study_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The arguments every demo study takes: the demo folders, the pretraining budget, the output folder."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("demos", type=Path, nargs="+", help="finished `micronbert demo --out` folders")
    ap.add_argument("--steps", type=int, default=150, help="pretraining steps")
    ap.add_argument("--batch", type=int, default=16, help="pretraining batch")
    ap.add_argument("--out", type=Path, default=Path(out))
    return ap


def demo_frames(demo: Path) -> list[str]:
    """The demo's pretraining sources in the demo's order (the order is part of the pair schedule)."""
    from micronbert.demo.pipeline import DemoConfig

    pool = demo / "pretrain_frames"
    return [str(pool / "real" / Path(v).stem) for v in DemoConfig().real_videos] + [str(pool / "synthetic")]


def pretrain_on_demo(demo: Path, run: Path, steps: int, batch: int, signal: str = "cosine",
                     identity_loss: str | None = None, frames: list[str] | None = None, **model) -> float:
    """The demo's tiny pretraining (seed 0) into `run`; seconds taken. `frames`: other pretraining
    sources than the demo's (e.g. aligned at another size); `model`: preset overrides."""
    from micronbert.config import PretrainConfig, preset
    from micronbert.train.cache_sources import frame_sources
    from micronbert.train.pretrain import pretrain

    frames = frames or demo_frames(demo)
    shutil.rmtree(run, ignore_errors=True)  # the calling script's own output of an earlier run
    t0 = time.perf_counter()
    pcfg = PretrainConfig(steps=steps, batch_size=batch, warmup_steps=max(1, steps // 10),
                          log_every=max(1, steps // 30), ckpt_every=steps, fps=30.0, seed=0,
                          **({"identity_loss": identity_loss} if identity_loss else {}))
    pretrain(frames, run, preset("tiny", dma_signal=signal, **model), pcfg, fps=30.0, sources=frame_sources(frames, 30.0),
             show_progress=False)
    return time.perf_counter() - t0


def loso_on_demo(demo: Path, out: Path, model: str = "micronbert", init: Path | None = None,
                 freeze_encoder: bool = True, recognition_signal: str | None = "cosine", cache: Path | None = None,
                 switches: dict | None = None, **recipe) -> dict:
    """The demo's LOSO (megc2019, seed 0) of one model; `recipe` overrides the family's recipe; `cache`:
    a face cache of the demo's samples other than its own (e.g. at another size).
    `recognition_signal` sets the recognition model's change signal whatever the encoder was pretrained
    with (None: as its config says); `switches`: other ModelConfig fields set for recognition (e.g.
    dma_shift_px on an encoder saved before it existed)."""
    import dataclasses

    from micronbert.data.report import ValidationReport
    from micronbert.train.crossdata import plan
    from micronbert.train.loso import evaluate
    from micronbert.train.methods import build_method, default_recipe
    from micronbert.train.pairdata import eval_table, pair_source

    samples = demo / "samples.csv"
    report = ValidationReport()
    table, protocol = eval_table([str(samples)], "megc2019", report)
    fit = default_recipe(model, freeze_encoder, **recipe)
    method = build_method(model, protocol.classes, fit, None if init is None else str(init), "tiny", "cpu")
    if recognition_signal and hasattr(method, "cfg") and hasattr(method.cfg, "dma_signal"):
        method.cfg = dataclasses.replace(method.cfg, dma_signal=recognition_signal)
    if switches:
        method.cfg = dataclasses.replace(method.cfg, **switches)
    table, make_folds, mode, meta = plan(table)
    t0 = time.perf_counter()
    res = evaluate(table, pair_source(str(cache or demo / "cache"), method.input_size), method, out,
                   classes=protocol.classes, protocol=protocol.name, seed=0, val_subjects=fit.val_subjects,
                   report=report, sample_files=[str(samples)], extra_config={}, overwrite=True,
                   make_folds=make_folds, mode=mode, extra_meta=meta)
    m = res["metrics"]
    return {"uf1": round(m["uf1"], 4), "uar": round(m["uar"], 4), "n_samples": m["n_samples"],
            "samples_sha256": m.get("samples_sha256"), "evaluate_s": round(time.perf_counter() - t0, 1)}
