"""`micronbert demo`: the whole pipeline on built-in data, ending in a self-contained HTML report."""
from __future__ import annotations

HELP = ("run the whole pipeline on built-in data (synthesise, index, prepare, pretrain, LOSO evaluate with "
        "ablation, baseline and shuffled control, predict) and write report.html")


def configure(p) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--quick", action="store_true", help="tiny settings that finish in about a minute "
                                                         "(checks the plumbing; the numbers mean nothing)")
    p.add_argument("--subjects", type=int, default=None)
    p.add_argument("--clips-per-subject", type=int, default=None)
    p.add_argument("--amplitude-px", type=float, default=None, help="action amplitude at the 224-px face scale")
    p.add_argument("--pretrain-steps", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs per fold")
    p.add_argument("--full-finetune", action="store_true",
                   help="fine-tune the encoder too (slower; default: the CPU recipe, the frozen encoder's last block, "
                        "DMA and the head trained)")
    p.add_argument("--parallel", type=int, default=None, help="evaluations run at once (one thread each)")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    import dataclasses

    from micronbert.demo.pipeline import DemoConfig, run_demo

    cfg = DemoConfig.quick() if args.quick else DemoConfig()
    overrides = {"subjects": args.subjects, "clips_per_subject": args.clips_per_subject,
                 "amplitude_px": args.amplitude_px, "pretrain_steps": args.pretrain_steps, "epochs": args.epochs,
                 "parallel": args.parallel, "seed": args.seed}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.full_finetune:
        cfg = dataclasses.replace(cfg, freeze_encoder=False)
    return run_demo(args.out, cfg)
