"""Which change signal carries the micro-motion? Linear read-outs under LOSO, on development demo folders.

For each signal, a ridge classifier (closed form, class-balanced, features standardised on the training
fold) is fitted per LOSO fold on the demo's 48 (onset, apex) pairs, registered as μ-BERT registers them.
No network is trained, so the rows compare what each signal holds, not how well a head learns it:
  pixel-diff        |apex − onset| (grey), pooled to 14×14
  flow              the flow CNN's input (u, v, strain at 28×28), pooled to 7×7
  tokens            the encoder's token change (apex − onset), pooled to 4×4 × D
  dma-map           DMA's change map −log a_i, pooled to 7×7
  dma-direction     directional DMA (model/direction.py) at --shift px: the signed (x, y) pair, pooled to 7×7
  dma-map+direction the two above together
Every ridge strength in --lambdas is reported (none is chosen on the test subjects); "mean" is their mean.
Encoders: "pretrained" (the demo's tiny pretraining, `--steps` steps, reused from --out like
demo_limits.py) and "random" (the same architecture, never trained).

Run on folders of `micronbert demo --seed 1/2`, never the demo's own seed 0 (it guides design choices).
Usage: python benchmarks/change_probe.py runs/dev1 runs/dev2 [--shifts 0.5,1] [--out DIR]
Prints one JSON object.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import machine
from _demo_runs import pretrain_on_demo, study_parser


def ridge_loso(x: np.ndarray, y: np.ndarray, groups: np.ndarray, lam: float, n_classes: int) -> np.ndarray:
    """Leave-one-group-out predictions of a class-balanced ridge classifier (dual form: few samples)."""
    pred = np.zeros(len(y), dtype=int)
    for g in np.unique(groups):
        tr, te = groups != g, groups == g
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        a, b = (x[tr] - mu) / sd, (x[te] - mu) / sd
        counts = np.bincount(y[tr], minlength=n_classes).astype(float)
        weight = np.sqrt(len(y[tr]) / (n_classes * np.maximum(counts, 1)))[y[tr]]  # balanced classes
        target = (np.eye(n_classes)[y[tr]] - 1.0 / n_classes) * weight[:, None]
        aw = a * weight[:, None]
        alpha = np.linalg.solve(aw @ aw.T + lam * a.shape[1] / 100 * np.eye(len(aw)), target)
        pred[te] = (b @ (aw.T @ alpha)).argmax(1)
    return pred


def pooled(x: torch.Tensor, cells: int) -> np.ndarray:
    """(B, N, C) on a square grid -> (B, cells² · C)."""
    b, n, c = x.shape
    g = int(round(n ** 0.5))
    return F.adaptive_avg_pool2d(x.transpose(1, 2).reshape(b, c, g, g), cells).flatten(1).numpy()


def signals(demo: Path, encoder_dir: Path | None, shifts: list[float]) -> tuple[dict, np.ndarray, np.ndarray, list]:
    from micronbert.config import preset
    from micronbert.data.report import ValidationReport
    from micronbert.faces.register import register_pairs
    from micronbert.model.checkpoint import load_model_dir
    from micronbert.model.classifier import to_float
    from micronbert.model.flow_cnn import flow_features
    from micronbert.model.heads import MicronBertClassifier
    from micronbert.model.mubert import normalise_images
    from micronbert.train.pairdata import eval_table, load_pairs, pair_source

    report = ValidationReport()
    table, protocol = eval_table([str(demo / "samples.csv")], "megc2019", report)
    if encoder_dir is None:
        state, cfg = None, preset("tiny")
    else:
        state, cfg, _ = load_model_dir(encoder_dir)
    table, data = load_pairs(table, pair_source(str(demo / "cache"), cfg.img_size), report)
    apex = register_pairs(data.onset, data.apex, cfg.registration)
    out: dict[str, np.ndarray] = {}
    grey = (apex.astype(np.float32) - data.onset.astype(np.float32)).mean(-1)
    out["pixel-diff"] = pooled(torch.as_tensor(np.abs(grey)).flatten(1)[..., None], 14)
    flow = torch.as_tensor(np.stack([flow_features(o, a, 28) for o, a in zip(data.onset, apex)]))
    out["flow"] = F.adaptive_avg_pool2d(flow, 7).flatten(1).numpy()
    for px in shifts:
        torch.manual_seed(0)  # the random encoder: the same weights for every shift
        model = MicronBertClassifier(dataclasses.replace(cfg, dma_shift_px=px), len(protocol.classes)).eval()
        if state is not None:
            model.load_backbone(state)
        with torch.no_grad():
            micro = model.forward_all(normalise_images(to_float(data.onset, "cpu")),
                                      normalise_images(to_float(apex, "cpu")))
        change = -torch.log(micro["dma_map"].clamp_min(1e-8)).unsqueeze(-1)
        out["tokens"] = pooled(micro["tokens_second"] - micro["tokens_first"], 4)
        out["dma-map"] = pooled(change, 7)
        out[f"dma-direction@{px:g}px"] = pooled(micro["dma_motion"], 7)
        out[f"dma-map+direction@{px:g}px"] = pooled(torch.cat([change, micro["dma_motion"]], -1), 7)
    groups = np.array([f"{d}/{s}" for d, s in zip(table["dataset"], table["subject"])])
    return out, table["label"].to_numpy().astype(int), groups, list(protocol.classes)


def main() -> None:
    from micronbert.train.metrics import classification_metrics

    ap = study_parser(__doc__, "/tmp/demo_limits")
    ap.add_argument("--shifts", default="0.5,1", help="directional DMA shifts (px), comma-separated")
    ap.add_argument("--lambdas", default="1,10,100", help="ridge strengths (× features / 100)")
    ap.add_argument("--encoders", default="pretrained,random")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    shifts = [float(s) for s in args.shifts.split(",")]
    lambdas = [float(s) for s in args.lambdas.split(",")]
    rows = []
    for demo in args.demos:
        for enc in args.encoders.split(","):
            encoder_dir = None
            if enc == "pretrained":
                encoder_dir = args.out / demo.name / f"pretrain-{args.steps}"
                if not (encoder_dir / "model.safetensors").is_file():
                    pretrain_on_demo(demo, encoder_dir, args.steps, args.batch)
            feats, y, groups, classes = signals(demo, encoder_dir, shifts)
            for name, x in feats.items():
                if enc == "random" and name in ("pixel-diff", "flow"):
                    continue  # no encoder in these
                uf1 = {f"{lam:g}": round(classification_metrics(
                    y, ridge_loso(x.astype(np.float64), y, groups, lam, len(classes)), classes)["uf1"], 4)
                    for lam in lambdas}
                rows.append({"demo": str(demo), "encoder": enc if name not in ("pixel-diff", "flow") else None,
                             "signal": name, "features": int(x.shape[1]), "uf1_by_lambda": uf1,
                             "mean": round(float(np.mean(list(uf1.values()))), 4), "n_samples": int(len(y))})
    print(json.dumps({"benchmark": "change_probe", "machine": machine(), "steps": args.steps,
                      "lambdas": lambdas, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
