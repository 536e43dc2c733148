"""The demo's work, as calls of the library with the demo's fixed settings (what the matching
`micronbert` command would do with those flags): index, prepare, align the real face videos, pretrain,
evaluate one run (a function for a process pool: one torch thread each), fine-tune on all samples and
predict on a video. Each raises MicronbertError/RuntimeError on failure; `demo.pipeline` orders them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROTOCOL = "megc2019"
PRESET = "tiny"


def index_strict(dataset: str, root: Path, samples: Path) -> int:
    """`micronbert index --strict`: the sample table and its report; any report entry is a failure."""
    from micronbert.data.readers import index_dataset
    from micronbert.data.samples import write_samples

    df, report = index_dataset(dataset, root)
    write_samples(df, samples)
    report_csv = samples.with_name(f"{samples.stem}.report.csv")
    report.write(report_csv)
    for line in report.lines():
        print(line)
    if df.empty or len(report):
        raise RuntimeError(f"index --strict: {len(df)} samples, {len(report)} report entries (see {report_csv})")
    return len(df)


def prepare_cache(samples: Path, cache: Path, size: int) -> None:
    """`micronbert prepare`: the aligned whole clips of every sample."""
    from micronbert.faces.prepare import run_prepare

    res = run_prepare([str(samples)], str(cache), size=size)
    print(res.summary())


def align_video(video: Path, out: Path, size: int) -> bool:
    """`micronbert faces`: the aligned face of every frame; False when no frame has a face."""
    from micronbert.errors import MicronbertError
    from micronbert.faces.extract import extract_faces

    try:
        res = extract_faces(video, out, size=size)
    except MicronbertError as exc:
        print(f"{video}: {exc}")
        return False
    print(f"{res.n_frames} frames aligned into {res.out}, face present in {res.n_present}")
    return res.face_found


def pretrain_tiny(frames: list[Path], out: Path, steps: int, batch: int, seed: int, fps: float = 30.0) -> dict:
    """`micronbert pretrain --preset tiny`: every other setting at its config default."""
    from micronbert.config import PretrainConfig, preset
    from micronbert.train.cache_sources import frame_sources
    from micronbert.train.pretrain import pretrain

    paths = [str(p) for p in frames]
    pcfg = PretrainConfig(steps=steps, batch_size=batch, warmup_steps=max(1, steps // 10),
                          log_every=max(1, steps // 30), ckpt_every=steps, fps=fps, seed=seed)
    return pretrain(paths, out, preset(PRESET), pcfg, fps=fps, sources=frame_sources(paths, fps))


# The demo runs the frozen CPU recipe as shipped (4 cached augmented views + the clean pair, the last
# encoder block, DMA and head train). On development demo folders (seeds 1, 2) it scored UF1 0.81/0.82
# where caching the clean pair only and training no block scored 0.67/0.65 (benchmarks/demo_limits.py).


def _method(model: str, samples: Path, cache: Path, init: Path | None, epochs: int, freeze_encoder: bool, report):
    """(evaluation table, protocol, recipe, method) as `evaluate`/`finetune` build them."""
    from micronbert.faces.cache import cache_margin
    from micronbert.train.methods import build_method, default_recipe, resolve_device
    from micronbert.train.pairdata import eval_table

    table, protocol = eval_table([str(samples)], PROTOCOL, report)
    recipe = default_recipe(model, freeze_encoder, epochs=epochs)
    method = build_method(model, protocol.classes, recipe, None if init is None else str(init), PRESET,
                          resolve_device(None), margin=cache_margin(cache))
    return table, protocol, recipe, method


@dataclass(frozen=True)
class EvalJob:
    run: str                 # the results folder's name (micronbert, no-dma, flow-cnn, shuffled...)
    model: str
    samples: Path
    cache: Path
    out: Path
    init: Path | None
    epochs: int
    freeze_encoder: bool
    seed: int
    log: Path


def one_thread() -> None:
    """Process-pool initializer: one torch/OpenMP thread and no progress bars per evaluation process."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MICRONBERT_PROGRESS"] = "0"
    import torch

    torch.set_num_threads(1)


def evaluate_run(job: EvalJob) -> dict:
    """`micronbert evaluate` (LOSO) of one run into job.out, its output in job.log; its pooled UF1/UAR."""
    import time
    from contextlib import redirect_stderr, redirect_stdout

    from micronbert.data.report import ValidationReport
    from micronbert.train.crossdata import plan
    from micronbert.train.loso import evaluate
    from micronbert.train.pairdata import pair_source

    t0 = time.perf_counter()
    with open(job.log, "w") as log, redirect_stdout(log), redirect_stderr(log):
        report = ValidationReport()
        table, protocol, recipe, method = _method(job.model, job.samples, job.cache, job.init, job.epochs,
                                                  job.freeze_encoder, report)
        table, make_folds, mode, mode_meta = plan(table)
        size = method.input_size
        result = evaluate(table, pair_source(str(job.cache), size), method, job.out, classes=protocol.classes,
                          protocol=protocol.name, seed=job.seed, val_subjects=recipe.val_subjects, report=report,
                          sample_files=[str(job.samples)],
                          extra_config={"cache": str(job.cache), "aligned": True, "input_size": size,
                                        "init": None if job.init is None else str(job.init), **mode_meta},
                          overwrite=True, make_folds=make_folds, mode=mode, extra_meta=mode_meta)
        m = result["metrics"]
        print(f"{m['model']} on {m['protocol']}: UF1 {m['uf1']:.3f}  UAR {m['uar']:.3f}  ({m['n_samples']} samples)")
    return {"ok": True, "seconds": time.perf_counter() - t0, "uf1": m["uf1"], "uar": m["uar"]}


def finetune_all(samples: Path, cache: Path, init: Path, out: Path, epochs: int, freeze_encoder: bool,
                 seed: int) -> None:
    """`micronbert finetune`: μ-BERT trained on all samples, saved as a classifier folder."""
    import numpy as np

    from micronbert.data.report import ValidationReport
    from micronbert.train.loso import samples_sha256, split_validation
    from micronbert.train.pairdata import load_pairs, pair_source

    model_name, report = "micronbert", ValidationReport()
    table, protocol, recipe, method = _method(model_name, samples, cache, init, epochs, freeze_encoder, report)
    table, data = load_pairs(table, pair_source(str(cache), method.input_size), report)
    if len(table) == 0:
        raise RuntimeError(f"protocol {protocol.name}: none of the samples could be loaded")
    method.prepare(data, seed)
    train_idx, val_idx = split_validation(table, np.arange(len(table)), recipe.val_subjects, seed)
    model, info = method.fit(train_idx, table["label"].to_numpy(np.int64), seed=seed,
                             val_idx=val_idx if len(val_idx) else None, desc="finetune")
    method.save(model, out, protocol.name, aligned=True,
                training={"n_samples": int(len(table)), "samples_sha256": samples_sha256(table),
                          "sample_files": [str(samples)], "seed": seed, "epochs_used": info["best_epoch"],
                          "final_loss": info["final_loss"], "init": str(init), "model_name": model_name,
                          "n_excluded": len(report)})
    print(f"trained {model_name} on {len(table)} samples; final loss {info['final_loss']:.4f}; model: {out}")


def predict_video(weights: Path, video: Path, out: Path, max_frames: int | None):
    """`micronbert predict`: the predictions table; a failure when no interval has a face."""
    from micronbert.infer.api import MicronBert
    from micronbert.infer.predict import predict_clip

    res = predict_clip(MicronBert.from_pretrained(str(weights)), str(video), out_dir=str(out), max_frames=max_frames)
    for note in res.notes:
        print(f"note: {note}")
    if not res.face_found or not (res.table["onset_face"] & res.table["apex_face"]).any():
        raise RuntimeError(f"predict: no interval of {video.name} has a face in its onset and apex frames")
    return res.table
