"""Benchmark: the flow CNN baseline on TV-L1 vs Farnebäck flow, same data, protocol, epochs and seeds.

For each --amplitudes entry: `micronbert synth` (the demo's setting: CASME II layout, 8 subjects x 6
clips of 12 frames, the demo's class mix) -> `index` -> `prepare --size 112 --keyframes` -> `evaluate
--protocol megc2019` (LOSO) with `--model flow-cnn-farneback` and `--model flow-cnn-tvl1` for every
--seeds entry (the demo's 30 epochs). Then the cost of one pair's flow features (u, v, strain at 28 px
from two aligned 112-px faces), per method, on one OpenCV thread. Prints one JSON object.

    python benchmarks/flow_methods.py                       # demo amplitude 3.0 px and a harder 1.5 px
    python benchmarks/flow_methods.py --amplitudes 3 --seeds 0
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, git_commit, machine  # noqa: E402

METHODS = ("farneback", "tvl1")
# the demo's six clips per subject (micronbert.demo.pipeline.CLASSES): 2 positive, 2 negative, 2 surprise
DEMO_CLASSES = "happiness,disgust,surprise,happiness,repression,surprise"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--amplitudes", type=float, nargs="+", default=[3.0, 1.5],
                   help="action amplitudes in px at 224 (the demo uses 3.0)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="evaluate --seed values")
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--clips", type=int, default=6, help="clips per subject")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--epochs", type=int, default=30, help="the demo's flow-cnn epochs")
    p.add_argument("--timing-repeats", type=int, default=3)
    p.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = p.parse_args()

    import cv2

    from micronbert.cli import main as cli

    cv2.setNumThreads(1)  # the evaluation runs below use one thread too (--threads 1)
    work = Path(args.work or tempfile.mkdtemp(prefix="mb-flow-bench-"))
    out = {"benchmark": "flow_methods", "commit": git_commit(), "machine": machine(), "work": str(work),
           "protocol": "megc2019", "chance_uf1": round(1 / 3, 3), "epochs": args.epochs, "seeds": args.seeds,
           "settings": []}
    timing_cache = None
    for amp in args.amplitudes:
        root = work / f"amp{amp:g}"
        t0 = time.time()
        _run(cli, ["synth", "--format", "casme2", "--out", str(root / "ds"), "--subjects", str(args.subjects),
                   "--clips-per-subject", str(args.clips), "--frames", str(args.frames), "--amplitude-px", str(amp),
                   "--classes", DEMO_CLASSES, "--seed", "0"])
        _run(cli, ["index", "--dataset", "casme2", "--root", str(root / "ds"), "--out", str(root / "samples.csv"),
                   "--strict"])
        _run(cli, ["prepare", "--samples", str(root / "samples.csv"), "--out", str(root / "cache"), "--size", "112",
                   "--keyframes"])
        setting = {"amplitude_px224": amp, "data_seconds": round(time.time() - t0, 1), "results": {}}
        for method in METHODS:
            runs = []
            for seed in args.seeds:
                res = root / f"{method}-seed{seed}"
                t = time.time()
                _run(cli, ["evaluate", "--samples", str(root / "samples.csv"), "--protocol", "megc2019", "--cache",
                           str(root / "cache"), "--model", f"flow-cnn-{method}", "--epochs", str(args.epochs),
                           "--seed", str(seed), "--threads", "1", "--out", str(res), "--overwrite"])
                m = json.loads((res / "metrics.json").read_text())
                runs.append({"seed": seed, "uf1": m["uf1"], "uar": m["uar"], "accuracy": m["accuracy"],
                             "n_samples": m["n_samples"], "n_folds": m["n_folds"],
                             "samples_sha256": m["samples_sha256"], "seconds": round(time.time() - t, 1)})
            setting["results"][method] = {
                "uf1_mean": round(statistics.mean(r["uf1"] for r in runs), 4),
                "uar_mean": round(statistics.mean(r["uar"] for r in runs), 4), "runs": runs}
        out["settings"].append(setting)
        timing_cache = timing_cache or root
    out["ms_per_pair"] = flow_cost(timing_cache / "samples.csv", timing_cache / "cache", args.timing_repeats)
    emit(out)


def flow_cost(samples: Path, cache: Path, repeats: int) -> dict:
    """Median over repeats of the mean ms per pair of flow_features, each method on the same aligned pairs."""
    from micronbert.data.report import ValidationReport
    from micronbert.model.flow_cnn import flow_features
    from micronbert.train.pairdata import eval_table, load_pairs, pair_source

    table, _ = eval_table([str(samples)], "megc2019", ValidationReport())
    _, data = load_pairs(table, pair_source(str(cache), 112))
    res = {"n_pairs": len(data), "face_px": data.size, "opencv_threads": 1}
    for method in METHODS:
        flow_features(data.onset[0], data.apex[0], 28, method)  # warm-up
        wall, cpu = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            for o, a in zip(data.onset, data.apex):
                flow_features(o, a, 28, method)
            wall.append((time.perf_counter() - t) * 1000 / len(data))
            cpu.append((time.process_time() - c) * 1000 / len(data))
        # CPU time is the steadier figure on a shared machine (wall time includes waiting for a core)
        res[method] = {"median_ms": round(statistics.median(wall), 2), "min_ms": round(min(wall), 2),
                       "cpu_median_ms": round(statistics.median(cpu), 2)}
    res["tvl1_over_farneback"] = round(res["tvl1"]["median_ms"] / res["farneback"]["median_ms"], 1)
    res["tvl1_over_farneback_cpu"] = round(res["tvl1"]["cpu_median_ms"] / res["farneback"]["cpu_median_ms"], 1)
    return res


def _run(cli, argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = cli(argv)
    if rc:
        raise SystemExit(f"`micronbert {' '.join(argv)}` failed ({rc}):\n{buf.getvalue()}")


if __name__ == "__main__":
    main()
