"""Which pretraining change signal gives the demo's μ-BERT a better encoder?

For each finished demo folder, pretrains the demo's tiny model once per variant on that demo's own
pretraining frames (same seed, steps, batch), then runs the demo's LOSO (frozen recipe, clean pair only,
15 epochs) on each encoder with the same recognition model (cosine signal, grid head, registration).
Variants (what pretraining uses; recognition is the same for all):
  cosine-signal       cosine change map in DMA, identity term −log of that map (the default until 2026-12)
  cosine-contrastive  cosine change map in DMA, identity term on the softmax diagonal (InfoNCE)
  cosine-both         cosine change map in DMA, identity term on both (the sum of the two −log terms)
  paper               the softmax diagonal in DMA and in the identity term (`--dma-signal paper`)

Choose a default on DEVELOPMENT folders (`micronbert demo --seed 1/2`: other draws of the built-in
people, clips, actions and distractors);
the demo's own folder (seed 0) only reports the choice.

Usage: python benchmarks/demo_pretrain_signal.py runs/dev1 runs/dev2 [--variants ...] [--steps 150]
(run `micronbert demo --seed S --out runs/devS` first; prints one JSON object)
"""
from __future__ import annotations

import json

from _common import machine
from _demo_runs import loso_on_demo, pretrain_on_demo, study_parser

VARIANTS = {"cosine-signal": ("cosine", "signal"), "cosine-contrastive": ("cosine", "contrastive"),
            "paper": ("paper", "contrastive"), "cosine-both": ("cosine", "both")}


def main() -> None:
    ap = study_parser(__doc__, "/tmp/signal_study")
    ap.add_argument("--variants", default="cosine-signal,cosine-contrastive,paper")
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()

    rows = []
    for demo in args.demos:
        for name in args.variants.split(","):
            signal, identity = VARIANTS[name]
            run = args.out / demo.name / f"pretrain-{name}"
            t_pre = pretrain_on_demo(demo, run, args.steps, args.batch, signal, identity)
            # the same recognition model (cosine signal, grid head, registration) for every encoder
            res = loso_on_demo(demo, args.out / demo.name / f"evaluate-{name}", init=run, epochs=args.epochs,
                               cached_views=0, train_blocks=0)
            rows.append({"demo": str(demo), "variant": name, "pretraining_signal": signal,
                         "identity_loss": identity, **res, "pretrain_s": round(t_pre, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"benchmark": "demo_pretrain_signal", "machine": machine(), "steps": args.steps,
                      "batch": args.batch, "epochs": args.epochs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
