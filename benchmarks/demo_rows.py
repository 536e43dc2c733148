"""More rows for a finished `make demo`'s table, evaluated exactly as the demo evaluated its own.

Each row is the demo's own evaluation job (`Demo.eval_job`: the demo's samples, face cache, pretrained
encoder, epochs, frozen recipe and seed, the same protocol and folds) with another `--model`, e.g. `learned-poi`
(PoI without the face prior, as in the paper) or `no-poi`, run side by side as the demo runs its rows. The JSON puts them beside
the demo's own rows (read from DEMO/results/*/metrics.json) and says whether every row scored the same
samples.

    python benchmarks/demo_rows.py runs/demo --models learned-poi no-poi --out runs/demo_rows

Each row takes about as long as the demo's μ-BERT row (a few minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, git_commit, machine  # noqa: E402


def row_job(demo: Path, model: str, out: Path):
    """The demo's evaluation job of its μ-BERT row with `model` instead, writing under `out`."""
    from micronbert.demo.pipeline import Demo, DemoConfig

    job = Demo(demo, DemoConfig()).eval_job("micronbert")
    return dataclasses.replace(job, run=model, model=model, out=out / model, log=out / f"evaluate-{model}.log")


def summary(run: Path) -> dict:
    """UF1, UAR, samples and errors of one finished run folder."""
    import pandas as pd

    m = json.loads((run / "metrics.json").read_text())
    pred = pd.read_csv(run / "predictions.csv")
    return {"uf1": round(m["uf1"], 4), "uar": round(m["uar"], 4), "n_samples": m["n_samples"],
            "wrong": int((pred["label"] != pred["pred"]).sum()), "samples_sha256": m.get("samples_sha256")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("demo", type=Path, help="a finished `micronbert demo --out` folder")
    ap.add_argument("--models", nargs="+", default=["learned-poi", "no-poi"], help="evaluate/finetune --model names")
    ap.add_argument("--out", type=Path, default=Path("runs/demo_rows"))
    ap.add_argument("--parallel", type=int, default=2, help="rows evaluated side by side (one thread each)")
    args = ap.parse_args()
    if not (args.demo / "results" / "micronbert" / "metrics.json").is_file():
        ap.error(f"{args.demo} is not a finished demo (no results/micronbert/metrics.json)")
    from micronbert.demo import steps

    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [row_job(args.demo, model, args.out) for model in args.models]
    with ProcessPoolExecutor(max(1, args.parallel), multiprocessing.get_context("spawn"),
                             initializer=steps.one_thread) as pool:
        seconds = {job.model: res["seconds"] for job, res in zip(jobs, pool.map(steps.evaluate_run, jobs))}
    rows = {model: {**summary(args.out / model), "seconds": round(seconds[model], 1)} for model in args.models}
    demo_rows = {run.name: summary(run) for run in sorted((args.demo / "results").iterdir())
                 if (run / "metrics.json").is_file()}
    base = demo_rows["micronbert"]["samples_sha256"]
    emit({"benchmark": "demo_rows", "commit": git_commit(), "machine": machine(), "demo": str(args.demo),
          "recipe": "the demo's own evaluation job (Demo.eval_job of its micronbert row) with another --model",
          "rows": rows, "demo_rows": demo_rows,
          # the shuffled controls score permuted labels, so only the μ-BERT row is the reference
          "same_samples_as_demo_micronbert": all(r["samples_sha256"] == base for r in rows.values())})


if __name__ == "__main__":
    main()
