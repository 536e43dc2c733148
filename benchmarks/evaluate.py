"""Benchmark: the whole evaluation path on a synthetic dataset from real faces, real vs shuffled labels.

`micronbert synth` (CASME II layout) -> index -> prepare (aligned 112-px key frames) -> `evaluate`
(LOSO, casme2-5) for each --models entry, once with the true labels and once with the emotions of the
sample table shuffled. Prints one JSON object: UF1/UAR per model for both, and wall-clock seconds.
With real labels a model that sees the motion scores well above chance (1/5); shuffled, it must not.

    python benchmarks/evaluate.py --subjects 8 --clips 6 --models flow-cnn no-pretrain --threads 1
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--clips", type=int, default=6, help="clips per subject")
    p.add_argument("--models", nargs="+", default=["flow-cnn", "no-pretrain"])
    p.add_argument("--epochs", type=int, default=None, help="override every model's default epochs")
    p.add_argument("--freeze-encoder", action="store_true", help="μ-BERT variants with a frozen encoder")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = p.parse_args()

    import numpy as np

    from micronbert.cli import main as cli
    from micronbert.data.samples import read_samples, write_samples

    work = Path(args.work or tempfile.mkdtemp(prefix="mb-eval-bench-"))
    t0 = time.time()
    quiet = lambda argv: _run(cli, argv)
    quiet(["synth", "--format", "casme2", "--out", str(work / "ds"), "--subjects", str(args.subjects),
           "--clips-per-subject", str(args.clips)])
    quiet(["index", "--dataset", "casme2", "--root", str(work / "ds"), "--out", str(work / "samples.csv")])
    quiet(["prepare", "--samples", str(work / "samples.csv"), "--out", str(work / "cache"), "--size", "112",
           "--keyframes"])
    table = read_samples(work / "samples.csv")
    table["emotion"] = np.random.default_rng(0).permutation(table["emotion"].to_numpy())
    write_samples(table, work / "shuffled.csv")
    prep_s = time.time() - t0

    results = {}
    for model in args.models:
        for name, samples in (("real", "samples.csv"), ("shuffled", "shuffled.csv")):
            out = work / f"{model}-{name}"
            argv = ["evaluate", "--samples", str(work / samples), "--protocol", "casme2-5", "--cache",
                    str(work / "cache"), "--model", model, "--threads", str(args.threads), "--out", str(out)]
            if args.epochs:
                argv += ["--epochs", str(args.epochs)]
            if args.freeze_encoder and model != "flow-cnn":
                argv += ["--freeze-encoder"]
            t = time.time()
            quiet(argv)
            m = json.loads((out / "metrics.json").read_text())
            results.setdefault(model, {})[name] = {"uf1": m["uf1"], "uar": m["uar"], "accuracy": m["accuracy"],
                                                   "seconds": round(time.time() - t, 1)}
    emit({"benchmark": "evaluate", "machine": machine(), "work": str(work), "n_samples": int(len(table)),
          "subjects": args.subjects, "protocol": "casme2-5", "chance_uf1": 0.2, "prepare_seconds": round(prep_s, 1),
          "freeze_encoder": args.freeze_encoder, "results": results})


def _run(cli, argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli(argv)
    if rc:
        raise SystemExit(f"`micronbert {' '.join(argv)}` failed ({rc}):\n{buf.getvalue()}")


if __name__ == "__main__":
    main()
