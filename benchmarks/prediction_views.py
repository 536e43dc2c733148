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


def cached_pairs(samples: list):
    """PairData of cached samples (faces.cache.CachedSample) with the apex's neighbouring frames, as
    evaluation loads them (train.pairdata.apex_neighbours; a missing one holds the apex, weight 0)."""
    from micronbert.train.pairdata import PairData, apex_neighbours

    near = [apex_neighbours(s.frame_numbers, int(s.meta["onset"]), int(s.meta["apex"]), int(s.meta["offset"]))
            for s in samples]
    return PairData(np.stack([s.onset for s in samples]), np.stack([s.apex for s in samples]),
                    np.stack([[s.apex if n is None else s.frame(n) for n in ns] for s, ns in zip(samples, near)]),
                    np.array([[n is not None for n in ns] for ns in near]))


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
            oa, aa, _ = paired_augment(o, a, cfg, gen)
            out.append(torch.softmax(model(normalise_images(oa), normalise_images(aa)).float(), -1).numpy())
    return out


def view_probs(model, samples: list, recipe: dict, views: int, seed: int) -> tuple[dict, int]:
    """({variant: (B, C) class probabilities averaged over its views}, neighbour frames missing) for cached
    samples and one trained classifier. The views are evaluation's own (PairData.prediction_views: the
    pair, apex - 1, apex + 1, then the mirror image of each); each is predicted once and every variant
    averages a subset of them."""
    from micronbert.model.classifier import predict_pairs

    data = cached_pairs(samples)
    pairs = data.prediction_views(flip=True, neighbours=True)
    weights = [w for _, w in pairs]
    probs = [predict_pairs(model, data.onset, data.apex)]
    for v, w in pairs[1:]:  # zeros where a sample lacks the view (weight 0)
        p = np.zeros_like(probs[0])
        if w.any():
            p[w] = predict_pairs(model, v.onset[w], v.apex[w])
        probs.append(p)

    def mean(chosen):
        return sum(probs[i] for i in chosen) / sum(weights[i] for i in chosen)[:, None]

    out = {"clean": probs[0], "flip": mean([0, 3]), "temporal": mean([0, 1, 2]),
           "temporal+flip": mean(range(6))}
    if getattr(model, "model_type", "micronbert") == "micronbert":
        out["augment"] = (probs[0] + sum(augmented_probs(model, data.onset, data.apex, recipe, views, seed))) \
            / (1 + views)
    return out, int((~data.has_neighbour).sum())


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
