"""Score finished LOSO runs again with test-time views: does averaging a test sample's class
probabilities over several views of its pair change what the trained models get right?

Each RUN must have been evaluated with `--keep-fold-models` (benchmarks/motion.py --keep-fold-models), so
every fold's trained classifier is on disk: nothing is trained here, and every variant is scored with the
very models and samples of the run. Views of a test pair (onset, apex):

    clean       the pair itself
    flip        clean + both frames mirrored (the flip both recipes train with)
    temporal    clean + (onset, apex - 1) + (onset, apex + 1): the apex's neighbouring frames, where the
                clip has them between onset and offset (a micro-expression is held for several frames;
                each frame has its own sensor noise)
    temporal+flip  the three temporal pairs and their mirrors: what every recipe predicts since
                docs/motion.md §17 (test_flip and test_neighbours)
    augment     clean + K paired-augmented views drawn with the run's recipe (μ-BERT only; K = --views)

The variant the run itself predicted with (by its recipe's test_flip / test_neighbours) must reproduce
the run's own probabilities: checked, `reproduced_max_prob_diff`. Probabilities are averaged (not logits), then the class is the argmax, as `evaluate` does. Every variant
is scored on the same samples (samples_sha256) with pooled UF1/UAR.

    python benchmarks/prediction_views.py W/runs/micronbert-seed0-kept W/runs/flow-cnn-seed0-kept
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, git_commit, machine  # noqa: E402

VARIANTS = ("clean", "flip", "temporal", "temporal+flip", "augment")
# the variant a run predicted with, by its recipe's (test_flip, test_neighbours)
OWN = {(False, False): "clean", (True, False): "flip", (False, True): "temporal", (True, True): "temporal+flip"}


def neighbour_frame(sample, step: int) -> np.ndarray | None:
    """The aligned frame just before (step -1) or after (+1) the apex, where the clip has it
    (train.pairdata.apex_neighbours, as evaluation loads it); else None."""
    from micronbert.train.pairdata import apex_neighbours

    m = sample.meta
    n = apex_neighbours(sample.frame_numbers, int(m["onset"]), int(m["apex"]), int(m["offset"]))[(step + 1) // 2]
    return None if n is None else sample.frame(n)


def augmented_probs(model, onset: np.ndarray, apex: np.ndarray, recipe: dict, views: int, seed: int) -> list:
    """Class probabilities of `views` paired-augmented copies of registered pairs (μ-BERT classifiers)."""
    import torch

    from micronbert.faces.register import register_pairs
    from micronbert.model.classifier import to_float
    from micronbert.model.mubert import normalise_images
    from micronbert.train.recipe import FinetuneConfig, paired_augment

    cfg = FinetuneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe.items()
                            if k in FinetuneConfig.__dataclass_fields__})
    if model.cfg.registration != "none":
        apex = register_pairs(onset, apex, model.cfg.registration)
    gen = torch.Generator().manual_seed(seed)
    o, a = to_float(onset, "cpu"), to_float(apex, "cpu")
    out = []
    with torch.no_grad():
        for _ in range(views):
            oa, aa = paired_augment(o, a, cfg, gen)
            out.append(torch.softmax(model(normalise_images(oa), normalise_images(aa)).float(), -1).numpy())
    return out


def view_probs(model, samples: list, recipe: dict, views: int, seed: int) -> tuple[dict, int]:
    """({variant: (B, C) class probabilities averaged over its views}, neighbour frames missing) for cached
    samples (faces.cache.CachedSample) and one trained classifier."""
    from micronbert.model.classifier import predict_pairs

    onset = np.stack([s.onset for s in samples])
    apex = np.stack([s.apex for s in samples])
    mirror = lambda x: np.ascontiguousarray(x[:, :, ::-1])  # noqa: E731
    clean = predict_pairs(model, onset, apex)
    flipped = predict_pairs(model, mirror(onset), mirror(apex))
    temporal, temporal_flip = [clean], [clean, flipped]
    count, missing = np.ones(len(samples)), 0
    for step in (-1, 1):
        found = [neighbour_frame(s, step) for s in samples]
        have = np.array([f is not None for f in found])
        missing += int((~have).sum())
        if have.any():
            nb = np.stack([f for f in found if f is not None])
            p, pf = np.zeros_like(clean), np.zeros_like(clean)
            p[have] = predict_pairs(model, onset[have], nb)
            pf[have] = predict_pairs(model, mirror(onset[have]), mirror(nb))
            temporal.append(p)
            temporal_flip += [p, pf]
            count += have
    out = {"clean": clean, "flip": (clean + flipped) / 2, "temporal": sum(temporal) / count[:, None],
           "temporal+flip": sum(temporal_flip) / (2 * count[:, None])}
    if getattr(model, "model_type", "micronbert") == "micronbert":
        out["augment"] = (clean + sum(augmented_probs(model, onset, apex, recipe, views, seed))) / (1 + views)
    return out, missing


def score_run(run: Path, views: int) -> dict:
    import pandas as pd

    from micronbert.faces.cache import FaceCache
    from micronbert.model.classifier import load_classifier
    from micronbert.train.loso import samples_sha256
    from micronbert.train.metrics import classification_metrics

    config = json.loads((run / "config.json").read_text())
    cache = FaceCache(Path(config["sample_files"][0]).parent / "cache")  # benchmarks/motion.py's work folder
    classes = list(config["classes"])
    fold_csvs = sorted(p for p in (run / "folds").glob("*.csv") if (run / "folds" / p.stem).is_dir())
    if not fold_csvs:
        raise SystemExit(f"{run}: no kept fold models (evaluate it with --keep-fold-models)")
    tables, probs = [], {v: [] for v in VARIANTS}
    diff, missing = 0.0, 0
    for csv in fold_csvs:
        preds = pd.read_csv(csv, dtype={"sample_id": str, "subject": str})
        model, _, saved = load_classifier(run / "folds" / csv.stem)
        samples = [cache.load(d, s) for d, s in zip(preds["dataset"], preds["sample_id"])]
        got, miss = view_probs(model, samples, saved.get("finetune", {}), views, int(config["seed"]))
        missing += miss
        own = got[OWN[(bool(saved.get("finetune", {}).get("test_flip")),
                       bool(saved.get("finetune", {}).get("test_neighbours")))]]
        diff = max(diff, float(np.abs(own - preds[[f"prob_{c}" for c in classes]].to_numpy()).max()))
        for name, p in got.items():
            probs[name].append(p)
        tables.append(preds)
    table = pd.concat(tables, ignore_index=True)
    labels = table["label"].to_numpy()
    key = (table["dataset"] + "/" + table["sample_id"]).to_numpy()
    out = {"run": str(run), "n_folds": len(fold_csvs), "n_samples": int(len(table)),
           "samples_sha256": samples_sha256(table), "reproduced_max_prob_diff": round(diff, 6),
           "neighbour_frames_missing": missing, "variants": {}}
    clean_pred = np.concatenate(probs["clean"]).argmax(1)
    for name, parts in probs.items():
        if not parts:
            continue
        pred = np.concatenate(parts).argmax(1)
        m = classification_metrics(labels, pred, classes)
        out["variants"][name] = {"uf1": round(m["uf1"], 4), "uar": round(m["uar"], 4),
                                 "wrong": int((pred != labels).sum()),
                                 "differ_from_clean": int((pred != clean_pred).sum()),
                                 "wrong_samples": sorted(key[pred != labels].tolist())}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="evaluate output folders with kept fold models")
    p.add_argument("--views", type=int, default=4, help="augmented views for the 'augment' variant")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    emit({"benchmark": "prediction_views", "commit": git_commit(), "machine": machine(), "views": args.views,
          "runs": [score_run(r, args.views) for r in args.runs]})


if __name__ == "__main__":
    main()
