"""Would a face-selective PoI help recognition? Linear read-outs gated by each clip's own landmark mask.

PoI's saliency is meant to damp the background. docs/motion.md §15 found the learned map does not favour
the face (its mass in the 68-landmark hull equals the hull's area share) and that removing PoI changes
nothing measurable. This asks the question from the other side, with an oracle: gate the grid head's inputs
by where the face is, taken from each clip's own landmarks in the face cache (the reference frame's 68
points mapped into the crop), and see whether a linear read-out gets better. No network is trained
(class-balanced ridge, LOSO over every subject, every --lambdas entry reported, none chosen).

Gates, per patch (mean 1 is not needed: the ridge standardises each feature):
    none             every patch as it is (what no-PoI gives the head)
    learned PoI      the pretrained encoder's saliency of the apex (what `--model learned-poi` gates with)
    learned PoI, face / hull prior   the same map times the template's face region (ModelConfig.poi_prior):
                     what `--model micronbert` (the default) / `hull-poi` gate with
    learned PoI, own prior   the same map times each clip's own hull (`own-poi`; model/poi.py own_log_prior)
    hull             the share of the patch inside the landmarks' convex hull
    hull+forehead    the same hull with the brows raised by the brow-to-eye distance (AU1/2/4 wrinkle
                     above the brows, outside the 68 points)
and two selections: only the patches inside hull+forehead on average, only those outside it in every clip.
Signals (the grid head's inputs): "map+direction" (the change map and directional DMA per patch, pooled to
14 and 7 cells) and "token change" ((apex − onset) tokens × (1 − a_i), the channel PoI gates in the head;
pooled to 7 and 4 cells).

Input: a `benchmarks/motion.py --work W` folder; run it on a development copy (another --data-seed), never
on the benchmark that docs/motion.md's tables are scored on.

    python benchmarks/face_mask_probe.py DEV
    python benchmarks/face_mask_probe.py W --mass-only   # where the saliency goes, no read-out: labels unused
Prints one JSON object; a table goes to stderr.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from change_probe import pooled, ridge_loso  # noqa: E402
from direction_probe import central, changes, composite_pairs  # noqa: E402

from micronbert.faces.template import face_outline, hull_patch_share  # noqa: E402
from micronbert.model.poi import face_log_prior, own_log_prior  # noqa: E402


def face_regions(landmarks: np.ndarray, size: int, patch: int) -> dict[str, np.ndarray]:
    """(68, 2) landmarks in crop pixels -> per-patch share inside the hull, and inside it with the forehead."""
    return {"hull": hull_patch_share(landmarks, size, patch),
            "hull+forehead": hull_patch_share(face_outline(landmarks), size, patch)}


def crop_landmarks(work: Path, keys: list[str], size: int) -> np.ndarray:
    """(B, 68, 2): each clip's reference landmarks mapped into its aligned crop, scaled to `size` pixels."""
    from micronbert.faces.cache import FaceCache

    cache = FaceCache(work / "cache")
    out = []
    for key in keys:
        dataset, sample_id = key.split("/", 1)
        s = cache.load(dataset, sample_id)
        lm = s.crop_landmarks()
        if lm is None:
            raise SystemExit(f"{cache.path(dataset, sample_id)}: no landmarks in the face cache (no face found "
                             "by prepare, or an already-cropped clip); this probe needs them for every clip")
        out.append(lm * size / s.frames.shape[1])
    return np.stack(out)


def grid_inputs(state, cfg, onset: np.ndarray, apex: np.ndarray, batch: int = 32):
    """The learned PoI saliency of the apex (B, N) and the token change (B, N, D) the grid head gates with it."""
    from micronbert.model.classifier import to_float
    from micronbert.model.heads import MicronBertClassifier
    from micronbert.model.mubert import normalise_images

    model = MicronBertClassifier(cfg, 3).eval()
    model.load_backbone(state)
    sal, delta = [], []
    with torch.no_grad():
        for i in range(0, len(onset), batch):
            hid = model.backbone.encode_pair(normalise_images(to_float(onset[i:i + batch], "cpu")),
                                             normalise_images(to_float(apex[i:i + batch], "cpu")))
            micro = model.backbone.micro_features(*hid)
            sal.append(micro["poi_map"])
            delta.append((micro["tokens_second"] - micro["tokens_first"]) * (1 - micro["dma_map"]).unsqueeze(-1))
    return torch.cat(sal), torch.cat(delta)


def main() -> None:
    from micronbert.train.metrics import classification_metrics

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", type=Path, help="a benchmarks/motion.py --work folder (development copy)")
    ap.add_argument("--lambdas", default="1,10,100")
    ap.add_argument("--mass-only", action="store_true",
                    help="only where the saliency goes (no read-out, labels unused: may run on the test benchmark)")
    args = ap.parse_args()
    lambdas = [float(s) for s in args.lambdas.split(",") if s]
    state, cfg, onset, apex, y, groups, classes, keys = composite_pairs(args.work)
    regions = [face_regions(lm, cfg.img_size, cfg.patch_size) for lm in crop_landmarks(args.work, keys, cfg.img_size)]
    masks = {name: torch.as_tensor(np.stack([r[name] for r in regions]), dtype=torch.float32)
             for name in ("hull", "hull+forehead")}
    sal, delta = grid_inputs(state, cfg, onset, apex)
    # the same map with the face priors (model/poi.py): softmax(logits + log w) is the learned map times w,
    # renormalised to mean 1, so no second pass through the encoder
    priors = {}
    for p in ("face", "hull"):
        gated = sal * face_log_prior(dataclasses.replace(cfg, poi_prior=p)).exp()
        priors[f"learned PoI, {p} prior"] = gated / gated.mean(1, keepdim=True)
    gated = sal * own_log_prior(masks["hull"]).exp()
    priors["learned PoI, own prior"] = gated / gated.mean(1, keepdim=True)
    rows = []
    face = masks["hull+forehead"].mean(0) >= 0.5
    background = (masks["hull+forehead"] == 0).all(0)
    if not args.mass_only:
        c = changes(state, cfg, onset, apex, cfg.dma_shift_px)
        signals = {"map+direction": (torch.cat([c[0].unsqueeze(-1), central(c)], -1), (14, 7)),
                   "token change": (delta, (7, 4))}
        gates = {"none": torch.ones_like(sal), "learned PoI": sal, **priors, **masks}

        def score(signal, gate, cells, x):
            res = {}
            for lam in lambdas:
                pred = ridge_loso(x.astype(np.float64), y, groups, lam, len(classes))
                res[f"{lam:g}"] = {"uf1": round(classification_metrics(y, pred, classes)["uf1"], 4),
                                   "wrong": int((pred != y).sum())}
            rows.append({"signal": signal, "gate": gate, "cells": cells, "features": int(x.shape[1]),
                         "by_lambda": res, "uf1_mean": round(float(np.mean([r["uf1"] for r in res.values()])), 4),
                         "wrong_mean": round(float(np.mean([r["wrong"] for r in res.values()])), 1)})
            print(f"{signal:14s} {gate:22s} {cells:3d} cells  UF1 {rows[-1]['uf1_mean']:.3f}  "
                  f"wrong {rows[-1]['wrong_mean']:5.1f} of {len(y)}", file=sys.stderr)

        for signal, (x, cell_list) in signals.items():
            for cells in cell_list:
                for gate, g in gates.items():
                    score(signal, gate, cells, pooled(x * g.unsqueeze(-1), cells))
        x = signals["map+direction"][0].numpy()
        score("map+direction", "only face patches", 14, x[:, face.numpy()].reshape(len(y), -1))
        score("map+direction", "only background patches", 14, x[:, background.numpy()].reshape(len(y), -1))

    def spread(saliency):
        s = (saliency / saliency.sum(1, keepdim=True)).numpy()
        return {"temperature": cfg.poi_temperature,
                **{f"mass_in_{k}": round(float((s * m.numpy()).sum(1).mean()), 3) for k, m in masks.items()},
                "mass_in_hull_min": round(float((s * masks["hull"].numpy()).sum(1).min()), 3),
                "effective_patches": round(float((1 / (s ** 2).sum(1)).mean()), 1)}

    poi = spread(sal)
    with_priors = {k: spread(v) for k, v in priors.items()}
    for k, v in {"learned PoI": poi, **with_priors}.items():
        print(f"{k:24s} mass in hull {v['mass_in_hull']:.3f} (min {v['mass_in_hull_min']:.3f}), hull+forehead "
              f"{v['mass_in_hull+forehead']:.3f}, effective patches {v['effective_patches']}", file=sys.stderr)
    print(json.dumps({"benchmark": "face_mask_probe", "machine": machine(), "work": str(args.work),
                      "n_samples": int(len(y)), "lambdas": lambdas,
                      "area_share": {k: round(float(m.mean()), 3) for k, m in masks.items()},
                      "face_patches": int(face.sum()), "background_patches": int(background.sum()),
                      "learned_poi": poi, "learned_poi_with_priors": with_priors, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
