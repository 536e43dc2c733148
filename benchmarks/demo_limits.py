"""What limits μ-BERT on the demo's benchmark? One row per change, on development demo folders.

Rows (each LOSO on the demo's 48 samples, the same samples and seed for every row):
  flow-cnn             the optical-flow CNN baseline
  no-pretrain          μ-BERT's recognition model on a random encoder (frozen, clean pair only)
  pretrained           the same on the encoder pretrained `--steps` steps
  pretrained-cpu       the CPU recipe as shipped (4 cached augmented views, last block trained, 30 epochs),
                       without directional DMA (dma_shift_px 0, as before it existed)
  pretrained-cpu-direction  the same with directional DMA (dma_shift_px 0.5)
  pretrained-cpu-direction-nofdma  the same, the grid head without the F_DMA channel (head_dma_features
                       off): the shipped default. Every other μ-BERT row keeps F_DMA in its head, as before.
  pretrained-cpu-distance  as pretrained-cpu-direction-nofdma with the "distance" change signal (one
                       normaliser per frame pair instead of per patch) in pretraining and recognition; its
                       encoder is pretrained separately (DIR/<demo>/pretrain-<steps>-distance)
  pretrained-cpu-distance-residual  the same with DMA's Q and K reading the residual stream before the
                       encoder's final LayerNorm (dma_compare "residual") in pretraining and recognition
                       (DIR/<demo>/pretrain-<steps>-distance-residual)
  pretrained-cpu-distance-residual-unprojected  the same with DMA comparing the residual streams
                       themselves, without its Q and K projections (dma_project_qk off)
  pretrained-cpu-distance-unprojected  pretrained-cpu-distance with DMA comparing the normalised tokens
                       themselves, without its Q and K projections
  pretrained-long      as "pretrained", on an encoder pretrained 4 × `--steps` steps
  pretrained-full      full fine-tuning of the pretrained encoder (the "full" recipe as shipped, 20 epochs)
`--epochs` (15) is that of the flow-cnn, no-pretrain, pretrained and pretrained-long rows; the -cpu and
-full rows train their recipes' own epochs.
Run on folders of `micronbert demo --seed 1/2` (not the demo's own seed 0): it guides the next
change, so it must not see the subjects the demo reports on.

Usage: python benchmarks/demo_limits.py runs/dev1 runs/dev2 [--rows flow-cnn,no-pretrain,...] [--out DIR]
An existing DIR/<demo>/pretrain-<steps> with weights is reused (delete it to pretrain again).
Prints one JSON line per finished run, then one JSON object.
"""
from __future__ import annotations

import json
from pathlib import Path

from _common import machine
from _demo_runs import loso_on_demo, pretrain_on_demo, study_parser

ROWS = ("flow-cnn", "no-pretrain", "pretrained", "pretrained-cpu", "pretrained-cpu-direction",
        "pretrained-cpu-direction-nofdma", "pretrained-cpu-distance", "pretrained-cpu-distance-residual",
        "pretrained-cpu-distance-residual-unprojected", "pretrained-cpu-distance-unprojected", "pretrained-long",
        "pretrained-full")


def main() -> None:
    ap = study_parser(__doc__, "/tmp/demo_limits")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--epochs", type=int, default=15, help="epochs of the rows that do not use a shipped recipe")
    args = ap.parse_args()

    def encoder(demo: Path, steps: int, signal: str = "cosine", compare: str = "tokens",
                project: bool = True) -> tuple[Path, bool]:
        run = args.out / demo.name / (f"pretrain-{steps}" + ("" if signal == "cosine" else f"-{signal}")
                                      + ("" if compare == "tokens" else f"-{compare}")
                                      + ("" if project else "-unprojected"))
        if (run / "model.safetensors").is_file():
            return run, True
        pretrain_on_demo(demo, run, steps, args.batch, signal=signal, dma_compare=compare, dma_project_qk=project)
        return run, False

    rows = []
    for row in args.rows.split(","):  # row by row, so an interrupted run still has whole rows
        if row not in ROWS:
            raise SystemExit(f"unknown row {row!r}; rows: {', '.join(ROWS)}")
        for demo in args.demos:
            out = args.out / demo.name / f"evaluate-{row}"
            extra = {}
            # each row's head set explicitly, so a row means the same whatever today's defaults are
            # the -direction-nofdma head, distance signal
            distance_row = row.startswith("pretrained-cpu-distance")
            shift = {"dma_shift_px": 0.5 if ("-direction" in row or distance_row) else 0.0,
                     "head_dma_features": not (row.endswith("-nofdma") or distance_row)}
            signal = "distance" if distance_row else "cosine"
            compare = "residual" if "-residual" in row else "tokens"
            project = not row.endswith("-unprojected")
            if row == "flow-cnn":
                res = loso_on_demo(demo, out, "flow-cnn", freeze_encoder=False, recognition_signal=None,
                                   epochs=args.epochs)
            elif row == "no-pretrain":
                res = loso_on_demo(demo, out, "no-pretrain", epochs=args.epochs, cached_views=0, train_blocks=0,
                                   switches=shift)
            else:
                steps = args.steps * (4 if row == "pretrained-long" else 1)
                init, reused = encoder(demo, steps, signal, compare, project)
                extra = {"pretrain_steps": steps, "encoder_reused": reused, "dma_signal": signal,
                         "dma_compare": compare, "dma_project_qk": project, **shift}
                if row in ("pretrained", "pretrained-long"):
                    res = loso_on_demo(demo, out, init=init, epochs=args.epochs, cached_views=0, train_blocks=0,
                                       switches=shift)
                elif row.startswith("pretrained-cpu"):
                    res = loso_on_demo(demo, out, init=init, recognition_signal=signal, switches=shift)
                else:
                    res = loso_on_demo(demo, out, init=init, freeze_encoder=False, switches=shift)
            rows.append({"demo": str(demo), "row": row, **extra, **res})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"benchmark": "demo_limits", "machine": machine(), "steps": args.steps, "batch": args.batch,
                      "epochs": args.epochs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
