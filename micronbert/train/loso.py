"""Honest cross-validation: folds, the split guard, resumable per-fold runs, sharding and pooling.

A *fold* is a (train rows, test rows) pair of positions in the evaluation table. `loso_folds` makes the
leave-one-subject-out folds of a protocol, keyed by (dataset, subject); other modes (e.g. cross-dataset)
only need to produce Fold objects. Every fold goes through `assert_disjoint` before any training: no
subject of the test rows may appear in the training (or validation) rows.

Model selection never looks at the test subject: the default is a fixed number of epochs; with
`val_subjects` > 0 the epoch is chosen on that many subjects drawn from the fold's *training* subjects.

On disk (RESULTS/):
    run.json                 the run's fingerprint (config, samples hash); a re-run must match it
    folds/NNN_<name>.csv     one fold's predictions, written atomically; then
    folds/NNN_<name>.json    its meta (n_train, history, seconds): the completion marker for resume
Re-running skips folds whose .json exists. Several processes may share one RESULTS folder, each taking a
disjoint set of folds (`--folds`, `--shard k/K`, or torchrun's RANK/WORLD_SIZE); whichever finds all
folds done pools them (or run `--merge`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from micronbert.data.report import ValidationReport
from micronbert.errors import MicronbertError
from micronbert.train.pairdata import PairData, PairSource, load_pairs
from micronbert.utils.io import atomic_save, atomic_write_json
from micronbert.utils.progress import progress

REQUIRED = ["dataset", "subject", "sample_id", "label", "fold"]


class SplitLeakError(MicronbertError):
    """A subject (or sample) is on both sides of a split: the result would be meaningless."""


@dataclass
class Fold:
    index: int
    name: str
    train: np.ndarray
    test: np.ndarray
    # Extra split check of other fold generators (e.g. crossdata's dataset-level guard), called as
    # guard(table, train_idx, test_idx, what, fold_name) on the training and the validation side.
    guard: Callable | None = None

    @property
    def stem(self) -> str:
        return f"{self.index:03d}_{re.sub(r'[^A-Za-z0-9._-]+', '-', self.name)}"


def subject_keys(table: pd.DataFrame, idx) -> np.ndarray:
    """The (dataset, subject) key of each row: the unit that must never straddle a split."""
    rows = table.iloc[np.asarray(idx, dtype=np.int64)]
    return (rows["dataset"].astype(str) + "/" + rows["subject"].astype(str)).to_numpy()


def assert_disjoint(table: pd.DataFrame, train_idx, test_idx, what: str = "test", fold: str = "") -> None:
    """Raise SplitLeakError if any subject or sample is in both index sets."""
    train_idx, test_idx = np.asarray(train_idx, np.int64), np.asarray(test_idx, np.int64)
    where = f"fold {fold}: " if fold else ""
    both_rows = np.intersect1d(train_idx, test_idx)
    if both_rows.size:
        ids = table.iloc[both_rows]["sample_id"].tolist()[:5]
        raise SplitLeakError(f"{where}split leak: samples {ids} are in both training and {what}")
    leak = sorted(set(subject_keys(table, train_idx)) & set(subject_keys(table, test_idx)))
    if leak:
        raise SplitLeakError(f"{where}split leak: subject(s) {leak[:5]} in both training and {what} "
                             f"({len(leak)} in all); refusing to train")
    sid = lambda idx: set(table.iloc[idx]["dataset"].astype(str) + "/" + table.iloc[idx]["sample_id"].astype(str))
    dup = sorted(sid(train_idx) & sid(test_idx))
    if dup:
        raise SplitLeakError(f"{where}split leak: sample id(s) {dup[:5]} in both training and {what}")


def loso_folds(table: pd.DataFrame) -> list[Fold]:
    """Leave-one-subject-out over the table's `fold` keys (dataset/subject), in sorted order."""
    keys = table["fold"].astype(str).to_numpy()
    folds = []
    for i, name in enumerate(sorted(set(keys))):
        test = np.flatnonzero(keys == name)
        train = np.flatnonzero(keys != name)
        folds.append(Fold(i, name, train, test))
    return folds


def split_validation(table: pd.DataFrame, train_idx: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `k` subjects drawn (seeded) from the training subjects only."""
    if k <= 0:
        return train_idx, np.zeros(0, np.int64)
    subjects = np.array(sorted(set(subject_keys(table, train_idx))))
    if k >= len(subjects):
        raise MicronbertError(f"--val-subjects {k}: the training side has only {len(subjects)} subjects")
    rng = np.random.default_rng(seed)
    held = set(rng.choice(subjects, size=k, replace=False))
    keys = subject_keys(table, train_idx)
    mask = np.array([key in held for key in keys])
    return train_idx[~mask], train_idx[mask]


def select_folds(folds: Sequence[Fold], spec: str | None = None, shard: tuple[int, int] | None = None) -> list[Fold]:
    """`spec`: comma-separated fold indices, index ranges (3-7) or names (casme2/sub01); `shard` (k, K):
    every K-th fold starting at k (torchrun: k = RANK, K = WORLD_SIZE)."""
    chosen = list(folds)
    if spec:
        by_name = {f.name: f for f in folds}
        picked: dict[int, Fold] = {}
        for item in (s.strip() for s in spec.split(",") if s.strip()):
            if item in by_name:
                picked[by_name[item].index] = by_name[item]
            elif re.fullmatch(r"\d+(-\d+)?", item):
                lo, _, hi = item.partition("-")
                for i in range(int(lo), int(hi or lo) + 1):
                    if i >= len(folds):
                        raise MicronbertError(f"--folds {item}: there are only {len(folds)} folds (0..{len(folds) - 1})")
                    picked[i] = folds[i]
            else:
                raise MicronbertError(f"--folds: {item!r} is neither a fold index nor a fold name "
                                      f"(names look like {folds[0].name if folds else 'dataset/subject'})")
        chosen = [picked[i] for i in sorted(picked)]
    if shard:
        k, n = shard
        if not (0 <= k < n):
            raise MicronbertError(f"shard {k}/{n}: need 0 <= k < K")
        chosen = [f for f in chosen if f.index % n == k]
    return chosen


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'k/K' -> (k, K); 'auto' -> torchrun's (RANK, WORLD_SIZE) when set; None -> no sharding."""
    if not text:
        return None
    if text == "auto":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else None
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m:
        raise MicronbertError(f"--shard {text!r}: expected k/K (e.g. 0/4) or auto")
    return int(m.group(1)), int(m.group(2))


# -- data ---------------------------------------------------------------------------------------------
def samples_sha256(table: pd.DataFrame) -> str:
    """Hash of the sorted evaluated sample ids ("dataset/sample_id"): equal hashes = same sample list."""
    ids = sorted(table["dataset"].astype(str) + "/" + table["sample_id"].astype(str))
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


# -- the fold loop ------------------------------------------------------------------------------------
def fold_done(out_dir: Path, fold: Fold) -> bool:
    return (out_dir / "folds" / f"{fold.stem}.json").is_file() and fold_damage(out_dir, fold) is None


def fold_damage(out_dir: Path, fold: Fold) -> str | None:
    """Why a finished fold's predictions cannot be pooled (missing, unreadable, not one row per test
    sample), or None. A fold damaged outside is then run again, never pooled with rows missing."""
    path = out_dir / "folds" / f"{fold.stem}.csv"
    try:
        n = len(pd.read_csv(path))
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return f"{path}: unreadable ({exc})"
    if n != len(fold.test):
        return f"{path}: {n} rows for {len(fold.test)} test samples"
    return None


def run_fold(table: pd.DataFrame, method, fold: Fold, out_dir: Path, seed: int, val_subjects: int = 0,
             classes: Sequence[str] = (), keep_model: bool = False, protocol: str = "") -> dict:
    """Train on fold.train, predict fold.test, write the fold's files atomically (predictions, then meta)."""
    if fold.guard is not None:  # first: its message names the kind of leak (e.g. a whole dataset)
        fold.guard(table, fold.train, fold.test, "test", fold.name)
    assert_disjoint(table, fold.train, fold.test, "test", fold.name)
    fold_seed = seed + fold.index
    train_idx, val_idx = split_validation(table, fold.train, val_subjects, fold_seed)
    if len(val_idx):
        if fold.guard is not None:
            fold.guard(table, val_idx, fold.test, "test (validation side)", fold.name)
        assert_disjoint(table, val_idx, fold.test, "test (validation side)", fold.name)
    labels = table["label"].to_numpy(np.int64)
    t0 = time.time()
    model, info = method.fit(train_idx, labels, seed=fold_seed, val_idx=val_idx if len(val_idx) else None,
                             desc=f"fold {fold.index} {fold.name}")
    probs = method.predict(model, fold.test)
    seconds = time.time() - t0
    preds = prediction_rows(table, fold, probs, classes)
    folder = out_dir / "folds"
    atomic_save(folder / f"{fold.stem}.csv", lambda tmp: preds.to_csv(tmp, index=False))
    if keep_model:
        method.save(model, folder / fold.stem, protocol, fold=fold.name)
    meta = {"index": fold.index, "fold": fold.name, "seed": fold_seed, "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)), "n_test": int(len(fold.test)),
            "train_subjects": int(len(set(subject_keys(table, train_idx)))),
            "epochs_used": info.get("best_epoch"), "final_loss": info.get("final_loss"),
            "history": info.get("history"), "seconds": round(seconds, 3),
            "fold_accuracy": float((preds["pred"] == preds["label"]).mean())}
    atomic_write_json(folder / f"{fold.stem}.json", meta)
    return meta


def prediction_rows(table: pd.DataFrame, fold: Fold, probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    rows = table.iloc[fold.test]
    pred = probs.argmax(1)
    out = pd.DataFrame({
        "dataset": rows["dataset"].to_numpy(), "subject": rows["subject"].to_numpy(),
        "sample_id": rows["sample_id"].to_numpy(), "fold": fold.name, "fold_index": fold.index,
        "label": rows["label"].to_numpy(np.int64), "true_class": [classes[i] for i in rows["label"]],
        "pred": pred, "pred_class": [classes[i] for i in pred]})
    for c, name in enumerate(classes):
        out[f"prob_{name}"] = np.round(probs[:, c].astype(np.float64), 6)
    return out


def check_run(out_dir: Path, fingerprint: dict, overwrite: bool = False) -> None:
    """RESULTS/run.json pins what is being computed; resuming into a folder of a different run is an error."""
    path = out_dir / "run.json"
    if path.is_file() and not overwrite:
        old = json.loads(path.read_text())
        if old.get("fingerprint") != fingerprint_hash(fingerprint):
            diff = sorted(k for k in set(old.get("run", {})) | set(fingerprint)
                          if old.get("run", {}).get(k) != json.loads(json.dumps(fingerprint, default=str)).get(k))
            raise MicronbertError(f"{out_dir} holds results of a different run (differs in {diff}); "
                                  f"use another --out, or --overwrite to start over")
        return
    if overwrite and (out_dir / "folds").is_dir():
        for p in (out_dir / "folds").iterdir():
            if p.is_file():
                p.unlink()
    atomic_write_json(path, {"fingerprint": fingerprint_hash(fingerprint), "run": fingerprint})


def fingerprint_hash(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()


def pooled_predictions(out_dir: Path, folds: Sequence[Fold]) -> pd.DataFrame | None:
    """All folds' predictions in fold order, or None while any fold is unfinished."""
    if not all(fold_done(out_dir, f) for f in folds):
        return None
    parts = [pd.read_csv(out_dir / "folds" / f"{f.stem}.csv", dtype={"subject": str, "sample_id": str,
                                                                       "dataset": str})
             for f in folds]
    return pd.concat(parts, ignore_index=True)


def fold_table(out_dir: Path, folds: Sequence[Fold]) -> pd.DataFrame:
    rows = []
    for f in folds:
        meta = json.loads((out_dir / "folds" / f"{f.stem}.json").read_text())
        meta.pop("history", None)
        dataset, _, subject = f.name.partition("/")
        rows.append({"fold_index": f.index, "fold": f.name, "dataset": dataset, "subject": subject, **meta})
    return pd.DataFrame(rows).drop(columns=["index"], errors="ignore")


def evaluate(table: pd.DataFrame, source: PairSource | None, method, out_dir, *, classes: Sequence[str],
             protocol: str, seed: int = 0, folds_spec: str | None = None, shard: tuple[int, int] | None = None,
             val_subjects: int = 0, make_folds: Callable[[pd.DataFrame], list[Fold]] = loso_folds,
             mode: str = "loso", report: ValidationReport | None = None, sample_files: Iterable[str] = (),
             extra_config: dict | None = None, keep_models: bool = False, overwrite: bool = False,
             merge_only: bool = False, data: PairData | None = None, extra_meta: dict | None = None) -> dict:
    """Run (the selected) folds of `method` on `table` into `out_dir`; pool and report when all are done.

    table: evaluation table (dataset, subject, sample_id, label, fold, ...); source: row -> (onset, apex)
    uint8 (S, S, 3) (or pass `data` aligned with `table`). Returns {"complete": bool, "ran": [...],
    "skipped": [...], "metrics": dict | None, "excluded": n}. `extra_meta` (e.g. train/test datasets of a
    cross-dataset run) is added to metrics.json.
    """
    from micronbert.train.report import write_reports

    out_dir = Path(out_dir)
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise MicronbertError(f"evaluation table lacks columns {missing}")
    if len(table) == 0:
        raise MicronbertError(f"protocol {protocol}: no samples to evaluate")
    report = report if report is not None else ValidationReport()
    table = table.reset_index(drop=True)
    if data is None:
        if source is None:
            raise MicronbertError("evaluate needs a pair source or preloaded data")
        table, data = load_pairs(table, source, report)
        if len(table) == 0:
            raise MicronbertError(f"protocol {protocol}: none of the samples could be loaded "
                                  f"(first reason: {report.entries[0].line() if report.entries else 'unknown'})")
    folds = make_folds(table)
    if len(folds) < 2 and mode == "loso":
        raise MicronbertError(f"protocol {protocol}: LOSO needs at least 2 subjects, found {len(folds)}")
    for fold in folds:  # guarded generators are checked in full before anything trains
        if fold.guard is not None:
            fold.guard(table, fold.train, fold.test, "test", fold.name)
    n_classes_seen = len(set(table["label"]))
    sha = samples_sha256(table)
    config = {"protocol": protocol, "mode": mode, "classes": list(classes), "seed": seed,
              "val_subjects": val_subjects, "method": method.describe(), **(extra_config or {})}
    fingerprint = {**config, "samples_sha256": sha, "n_samples": int(len(table)), "n_folds": len(folds)}
    out_dir.mkdir(parents=True, exist_ok=True)
    check_run(out_dir, fingerprint, overwrite)
    atomic_write_json(out_dir / "config.json", {**fingerprint, "sample_files": list(map(str, sample_files))})
    if len(report):
        atomic_save(out_dir / "excluded.csv", lambda tmp: report.to_frame().to_csv(tmp, index=False))

    chosen = [] if merge_only else select_folds(folds, folds_spec, shard)
    todo = [f for f in chosen if not fold_done(out_dir, f)]
    skipped = [f.name for f in chosen if fold_done(out_dir, f)]
    if todo:
        method.prepare(data, seed)
    for fold in progress(todo, desc="folds", unit="fold"):
        run_fold(table, method, fold, out_dir, seed, val_subjects, classes, keep_models, protocol)

    pooled = pooled_predictions(out_dir, folds)
    result = {"complete": pooled is not None, "ran": [f.name for f in todo], "skipped": skipped,
              "metrics": None, "excluded": len(report), "n_folds": len(folds),
              "n_done": sum(fold_done(out_dir, f) for f in folds), "classes_present": n_classes_seen}
    if pooled is not None:
        meta = {"protocol": protocol, "model": method.name, "mode": mode, "config": config,
                "samples_sha256": sha, "sample_files": list(map(str, sample_files)), "n_folds": len(folds),
                "excluded": report.lines()}
        result["metrics"] = write_reports(out_dir, pooled, list(classes), meta, fold_table(out_dir, folds))
        if extra_meta:
            result["metrics"].update(extra_meta)
            atomic_write_json(out_dir / "metrics.json", result["metrics"])
    elif merge_only:
        damaged = [d for f in folds if (out_dir / "folds" / f"{f.stem}.json").is_file()
                   for d in [fold_damage(out_dir, f)] if d]
        why = f" (damaged, run these folds again: {'; '.join(damaged[:3])})" if damaged else ""
        raise MicronbertError(f"{out_dir}: {result['n_done']} of {len(folds)} folds finished; nothing to merge "
                              f"yet{why}")
    return result
