"""Where and how should directional DMA read direction? Linear read-outs on a composite's development copy.

Directional DMA (micronbert/model/direction.py) matches the onset with the apex shifted by ±s px and
reads the motion from the central difference c(+s) − c(−s) of the change map c = −log a_i. This asks
three questions of it, with no network trained (class-balanced ridge, LOSO over every subject, every
ridge strength in --lambdas reported, none chosen on the test subjects):
- the shift: s = --shift and each of --other-shifts, alone and together;
- the depth: the onset and the shifted apexes matched after --blocks encoder blocks instead of all of
  them (ModelConfig.dma_direction_blocks); attention in the later blocks mixes patches;
- a texture-free displacement: the difference grows with the motion *and* with how steep the patch's
  texture is, so dividing by the diagonal's own curvature c(+s) + c(−s) − 2·c(0) (the vertex of a parabola
  through the three values, one Lucas–Kanade step with its structure term) gives pixels whatever the face;
  the curvature is floored at --floors × its per-sample median.
Rows: flow (the flow CNN's input; reference), direction (what the grid head gets by default), map+… (with
the change map c(0) of the last block, as the head gets it), each pooled to every --cells grid (14: every
patch at 112 px, what the grid head's convolution sees).
Input: a `benchmarks/motion.py --work W` folder (its samples, face cache and `pretrained_ours` encoder).
Reports the UF1 over all samples and the errors on the clips whose only action moves the lip corners
(where benchmarks/error_factors.py found most errors of both methods). Run it on a development copy
(another --data-seed), never on the benchmark that docs/motion.md's tables are scored on.

    python benchmarks/motion.py --data-seed 200 --seeds 0 --methods micronbert --shard 0/36 --work DEV
    python benchmarks/direction_probe.py DEV
Prints one JSON object; a table goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from change_probe import pooled, ridge_loso  # noqa: E402
from error_factors import clip_factors  # noqa: E402

from micronbert.model.direction import motion_from_changes  # noqa: E402


def composite_pairs(work: Path):
    """The composite's registered pairs, labels, LOSO groups, classes and sample keys."""
    from micronbert.data.report import ValidationReport
    from micronbert.faces.register import register_pairs
    from micronbert.model.checkpoint import load_model_dir
    from micronbert.train.pairdata import eval_table, load_pairs, pair_source

    report = ValidationReport()
    csvs = sorted(str(p) for p in work.glob("samples_*.csv") if not p.name.endswith(".report.csv"))
    table, protocol = eval_table(csvs, "megc2019", report)
    state, cfg, _ = load_model_dir(work / "pretrained_ours")
    table, data = load_pairs(table, pair_source(str(work / "cache"), cfg.img_size), report)
    apex = register_pairs(data.onset, data.apex, cfg.registration)
    groups = np.array([f"{d}/{s}" for d, s in zip(table["dataset"], table["subject"])])
    keys = [f"{d}/{s}" for d, s in zip(table["dataset"], table["sample_id"])]
    return state, cfg, data.onset, apex, table["label"].to_numpy().astype(int), groups, list(protocol.classes), keys


def changes(state, cfg, onset: np.ndarray, apex: np.ndarray, px: float, batch: int = 32,
            blocks: int | None = None) -> torch.Tensor:
    """(5, B, N): c(0), c(+x), c(−x), c(+y), c(−y) of the pretrained encoder (direction.SHIFTS order), the
    frames matched after `blocks` encoder blocks (all when None)."""
    from micronbert.model.classifier import to_float
    from micronbert.model.direction import shifted_views
    from micronbert.model.heads import MicronBertClassifier
    from micronbert.model.mubert import normalise_images

    model = MicronBertClassifier(cfg, 3).eval()
    model.load_backbone(state)
    bb = model.backbone
    out = []
    with torch.no_grad():
        for i in range(0, len(onset), batch):
            o = normalise_images(to_float(onset[i:i + batch], "cpu"))
            a = normalise_images(to_float(apex[i:i + batch], "cpu"))
            frames = [o, a, *shifted_views(a, px)]
            hid = bb.encoder.hidden(torch.cat(frames), blocks).chunk(len(frames))
            out.append(torch.stack([bb.change_map(hid[0], h) for h in hid[1:]]))
    return torch.cat(out, dim=1)


def vertex(c: torch.Tensor, px: float, floor: float) -> torch.Tensor:
    """(5, B, N) -> (B, N, 2) displacement in px: the parabola vertex through c(−s), c(0), c(+s) per axis;
    the curvature is floored at `floor` × its per-sample median, so flat patches do not blow up."""
    out = []
    for plus, minus in ((1, 2), (3, 4)):
        curv = c[plus] + c[minus] - 2 * c[0]
        ref = curv.median(dim=1, keepdim=True).values.clamp_min(1e-6)
        out.append(px * (c[plus] - c[minus]) / (2 * torch.maximum(curv, floor * ref)))
    return torch.stack(out, dim=-1)


def lip_corner_only(work: Path, keys: list[str]) -> np.ndarray:
    """Per sample key (dataset/sample_id): whether its only action moves the lip corners (synth's actions.csv)."""
    factors = clip_factors([str(a) for a in sorted(work.glob("*/actions.csv"))])
    regions = dict(zip(factors["dataset"] + "/" + factors["sample_id"], factors["regions"]))
    return np.array([regions.get(k, "") == "lip_corners" for k in keys])


def central(c: torch.Tensor) -> torch.Tensor:
    """(5, B, N) -> (B, N, 2): c(+x) − c(−x), c(+y) − c(−y), what the grid head receives as dma_motion."""
    return motion_from_changes(c[1:])


def main() -> None:
    from micronbert.model.flow_cnn import flow_features
    from micronbert.train.metrics import classification_metrics

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", type=Path, help="a benchmarks/motion.py --work folder (development copy)")
    ap.add_argument("--shift", type=float, default=0.5, help="the model's shift (px; ModelConfig.dma_shift_px)")
    ap.add_argument("--other-shifts", default="0.25,1", help="other shifts (px): alone and beside --shift's")
    ap.add_argument("--floors", default="0.05,0.2,0.5", help="curvature floors of the vertex (× per-sample median)")
    ap.add_argument("--blocks", default="0,1,2", help="also read direction after these many encoder blocks "
                    "(0: the patch embeddings) instead of after all of them")
    ap.add_argument("--cells", default="7,14", help="pooled grid cells per side (14: every patch at 112 px)")
    ap.add_argument("--lambdas", default="1,10,100")
    args = ap.parse_args()
    lists = {k: [float(s) for s in getattr(args, k).split(",") if s] for k in ("other_shifts", "floors", "lambdas")}
    state, cfg, onset, apex, y, groups, classes, keys = composite_pairs(args.work)
    lips = lip_corner_only(args.work, keys)
    c = changes(state, cfg, onset, apex, args.shift)
    raw, c0 = central(c), c[0].unsqueeze(-1)
    flow = torch.as_tensor(np.stack([flow_features(o, a, 28) for o, a in zip(onset, apex)]))
    grid = {"direction": raw, "map+direction": torch.cat([c0, raw], -1)}  # name -> (B, N, C) on the token grid
    for px in lists["other_shifts"]:
        other = central(changes(state, cfg, onset, apex, px))
        grid[f"direction@{px:g}px"] = other
        grid[f"direction+direction@{px:g}px"] = torch.cat([raw, other], -1)
    for k in (int(s) for s in args.blocks.split(",") if s):
        early = central(changes(state, cfg, onset, apex, args.shift, blocks=k))
        grid[f"direction@block{k}"] = early
        grid[f"map+direction@block{k}"] = torch.cat([c0, early], -1)  # what dma_direction_blocks=k gives the head
    for fl in lists["floors"]:
        v = vertex(c, args.shift, fl)
        grid[f"vertex@{fl:g}"] = v
        grid[f"map+vertex@{fl:g}"] = torch.cat([c0, v], -1)
        grid[f"map+direction+vertex@{fl:g}"] = torch.cat([c0, raw, v], -1)
    rows = []
    for cells in (int(s) for s in args.cells.split(",")):
        feats = {"flow": F.adaptive_avg_pool2d(flow, cells).flatten(1).numpy(),
                 **{name: pooled(x, cells) for name, x in grid.items()}}
        for name, x in feats.items():
            res = {}
            for lam in lists["lambdas"]:
                pred = ridge_loso(x.astype(np.float64), y, groups, lam, len(classes))
                res[f"{lam:g}"] = {"uf1": round(classification_metrics(y, pred, classes)["uf1"], 4),
                                   "lip_corner_errors": int((pred[lips] != y[lips]).sum())}
            rows.append({"signal": name, "cells": cells, "features": int(x.shape[1]), "by_lambda": res,
                         "uf1_mean": round(float(np.mean([r["uf1"] for r in res.values()])), 4),
                         "lip_corner_errors_mean": round(float(np.mean([r["lip_corner_errors"]
                                                                        for r in res.values()])), 1)})
            print(f"{cells:2d} {name:30s} UF1 {rows[-1]['uf1_mean']:.3f}  lip-corner errors "
                  f"{rows[-1]['lip_corner_errors_mean']} of {int(lips.sum())}", file=sys.stderr)
    print(json.dumps({"benchmark": "direction_probe", "machine": machine(), "work": str(args.work),
                      "shift_px": args.shift, "n_samples": int(len(y)), "n_lip_corner_only": int(lips.sum()),
                      "lambdas": lists["lambdas"], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
