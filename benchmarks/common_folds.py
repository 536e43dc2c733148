"""Score LOSO runs on the folds they all finished: compare a sharded or interrupted run with a full one.

`micronbert evaluate` pools its results only when every fold is done. A long comparison on a CPU (e.g. one
recipe against another on a MEGC2019-sized composite) often runs a shard (`--shard 0/4`) or stops early;
this reads each RESULTS folder's finished folds (`folds/NNN_<fold>.csv/.json`), keeps the folds that every
folder finished, and scores each run on exactly those samples (pooled UF1/UAR as the protocol does), with
the sample list's hash, the samples each run got wrong, how many of its predicted classes differ from the
first run's (two runs can score the same UF1 with different predictions) and the mean seconds and epochs
per fold.

    python benchmarks/common_folds.py results/capped results/uncapped results/flow
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402


def finished_folds(run: Path) -> dict[str, Path]:
    """fold file stem -> predictions CSV, for folds whose CSV and meta JSON are both written."""
    return {p.stem: p for p in sorted((run / "folds").glob("*.csv")) if p.with_suffix(".json").is_file()}


def common_predictions(runs: list[Path]) -> tuple[list[str], dict[Path, pd.DataFrame], dict[Path, dict]]:
    """The folds every run finished, per run its predictions on exactly those folds, and per run all its
    finished folds (`finished_folds`)."""
    done = {r: finished_folds(r) for r in runs}
    common = sorted(set.intersection(*(set(f) for f in done.values())))
    if not common:
        raise SystemExit("no fold is finished in every run: " + ", ".join(map(str, runs)))
    preds = {r: pd.concat([pd.read_csv(f[c], dtype={"sample_id": str, "subject": str}) for c in common],
                          ignore_index=True) for r, f in done.items()}
    return common, preds, done


def score_on_common_folds(runs: list[Path]) -> dict:
    """{"folds": the folds every run finished, "runs": {run: scores on exactly those samples}}."""
    from micronbert.train.loso import samples_sha256
    from micronbert.train.metrics import classification_metrics

    common, all_preds, finished = common_predictions(runs)
    out = {"folds": common, "runs": {}}
    first = None  # the first run's predicted class per sample
    for run, preds in all_preds.items():
        done = finished[run]
        predicted = dict(zip(preds["dataset"] + "/" + preds["sample_id"], preds["pred"]))
        first = predicted if first is None else first
        metas = [json.loads(done[f].with_suffix(".json").read_text()) for f in common]
        classes = [c[len("prob_"):] for c in preds.columns if c.startswith("prob_")]
        m = classification_metrics(preds["label"].to_numpy(), preds["pred"].to_numpy(), classes)
        wrong = preds[preds["label"] != preds["pred"]]
        out["runs"][str(run)] = {
            "n_samples": len(preds), "samples_sha256": samples_sha256(preds),
            "uf1": m["uf1"], "uar": m["uar"], "accuracy": m["accuracy"],
            "wrong": [f"{r.dataset}/{r.sample_id}: {r.true_class} -> {r.pred_class}" for r in wrong.itertuples()],
            "predictions_differing_from_first_run": sum(first[k] != v for k, v in predicted.items()),
            "epochs_used": sorted({meta.get("epochs_used") for meta in metas}),
            "seconds_per_fold": round(sum(meta["seconds"] for meta in metas) / len(metas), 1),
            "folds_finished": len(done)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="RESULTS folders of `micronbert evaluate` (the same samples and protocol)")
    args = p.parse_args()
    emit({"benchmark": "common_folds", "machine": machine(), **score_on_common_folds([Path(r) for r in args.runs])})


if __name__ == "__main__":
    main()
