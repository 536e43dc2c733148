"""`micronbert scaling`: UF1/UAR against the amount of pretraining data (nested fractions of a frame pool).

Its pretraining flags are `micronbert pretrain`'s own group (commands._flags.add_pretrain_args) minus the
budget and the seed (scaling's --steps/--epochs and its one --seed). Precedence, lowest first: those flags
and their defaults, then the ablation switches of --model (--no-dma, --no-poi: they can only be turned on),
then --pretrain-args, parsed by the same group over those values, so a flag given there wins.
"""
from __future__ import annotations

HELP = ("pretraining-data scaling study: pretrain on nested fractions of the frames, evaluate each (and no "
        "pretraining) under one protocol and seed; writes scaling.csv/.md/.png")


def pretrainable_models() -> list[str]:
    """The --model names that pretraining can take: μ-BERT and its ablations that start from --init."""
    from micronbert.train.methods import METHODS

    return sorted(name for name, spec in METHODS.items() if spec.family == "mubert" and spec.uses_init)


def pretrain_switches(model: str) -> list[str]:
    """`micronbert pretrain` flags for a model's config switches (no-dma -> --no-dma, no-poi -> --no-poi,
    hull-poi -> --poi-prior hull); the recognition defaults (methods.RECOGNITION_DEFAULTS) are not pretrained
    with, as `micronbert pretrain` does not."""
    from micronbert.config import PRETRAIN_POI_PRIORS
    from micronbert.train.methods import METHODS

    flags = {"use_dma": "--no-dma", "use_poi": "--no-poi"}
    valued = {"poi_prior": "--poi-prior"}
    out = []
    for k, v in METHODS[model].switches.items():
        if k in flags and v is False:
            out.append(flags[k])
        elif k in valued and not (k == "poi_prior" and v not in PRETRAIN_POI_PRIORS):  # own hulls: recognition only
            out += [valued[k], str(v)]
    return out


def configure(p):
    from micronbert.commands._flags import add_data_args, add_mode_args, add_pretrain_args

    p.add_argument("--frames", nargs="+", required=True, metavar="PATH",
                   help="the pretraining pool: videos, frame folders, folders of those, or shard folders "
                        "(then each shard folder is one unit of the fractions)")
    p.add_argument("--fractions", default="0.1,0.3,1.0",
                   help="comma-separated fractions of the pool's frames, in (0, 1]; sets are nested")
    p.add_argument("--out", required=True, help="study folder (pretrain-<f>/, eval-<f>/, eval-none/, scaling.*)")
    p.add_argument("--stage", choices=["all", "pretrain", "evaluate"], default="all",
                   help="pretrain: only the pretraining runs (e.g. under torchrun, one fraction per launch); "
                        "evaluate: only the evaluations (pretraining must be finished)")
    g = p.add_argument_group("pretraining (as `micronbert pretrain`)")
    budget = g.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None,
                        help="same steps: every fraction gets this many optimizer steps (default 1000)")
    budget.add_argument("--epochs", type=float, default=None,
                        help="same epochs: every fraction gets this many passes over its own anchor frames")
    add_pretrain_args(g, budget=False, seed=False)
    g.add_argument("--pretrain-args", default="", metavar="'FLAGS'",
                   help="`micronbert pretrain` flags, quoted (e.g. '--poi dino --swap-ratio 0.3'); they win over "
                        "the flags above")
    e = p.add_argument_group("evaluation (as `micronbert evaluate`)")
    add_data_args(e)
    add_mode_args(e)
    e.add_argument("--model", default="micronbert", choices=pretrainable_models(),
                   help="μ-BERT or an ablation; the ablation applies to pretraining and fine-tuning")
    e.add_argument("--freeze-encoder", action="store_true",
                   help="the CPU recipe (as `evaluate --freeze-encoder`): the last block, DMA and the head train")
    e.add_argument("--eval-epochs", type=int, default=None, help="fine-tuning epochs per fold")
    e.add_argument("--eval-batch-size", type=int, default=None)
    e.add_argument("--eval-lr", type=float, default=None)
    e.add_argument("--val-subjects", type=int, default=None,
                   help="choose the epoch on this many subjects drawn from each fold's training subjects")
    e.add_argument("--shard", default=None, help="evaluation folds: k/K or auto (torchrun's RANK/WORLD_SIZE)")
    p.add_argument("--seed", type=int, default=0, help="one seed for the subsets, pretraining and evaluation")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the local GPU if any)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def pretrain_setup(args):
    """(model config, pretrain config) exactly as `micronbert pretrain` would build them from these flags, in
    the precedence of the module docstring."""
    import argparse
    import shlex

    from micronbert.commands._flags import add_pretrain_args, pretrain_configs
    from micronbert.config import PretrainConfig

    parser = argparse.ArgumentParser(prog="micronbert scaling --pretrain-args", add_help=False)
    add_pretrain_args(parser)
    ours = {k: getattr(args, k) for k in vars(parser.parse_args([])) if hasattr(args, k)}
    parser.set_defaults(**{**ours, "steps": args.steps or PretrainConfig().steps})
    return pretrain_configs(parser.parse_args(pretrain_switches(args.model) + shlex.split(args.pretrain_args or "")))


def make_evaluator(args, model_cfg):
    """evaluate_fn(init folder | None, results folder) -> metrics | None, on one table loaded once."""

    from micronbert.commands._flags import load_eval_table, plan_mode, warn_unaligned
    from micronbert.data.report import ValidationReport
    from micronbert.errors import MicronbertError
    from micronbert.faces.cache import cache_margin
    from micronbert.train.loso import evaluate, parse_shard
    from micronbert.train.methods import MicronBertMethod, default_recipe, recognition_config, resolve_device
    from micronbert.train.pairdata import load_pairs, pair_source

    if args.size and args.size != model_cfg.img_size:
        raise MicronbertError(f"--size {args.size}: the preset's models take {model_cfg.img_size} px faces")
    report = ValidationReport()
    table, protocol = load_eval_table(args, report)
    table, make_folds, mode, mode_meta = plan_mode(args, table)
    recipe = default_recipe(args.model, args.freeze_encoder, epochs=args.eval_epochs, batch_size=args.eval_batch_size,
                            lr=args.eval_lr, val_subjects=args.val_subjects)
    device = resolve_device(args.device)
    warn_unaligned(args)
    table, data = load_pairs(table, pair_source(args.cache, model_cfg.img_size), report)
    margin = cache_margin(args.cache)
    if len(table) == 0:
        raise MicronbertError(f"protocol {protocol.name}: none of the samples could be loaded")
    info = {"protocol": protocol.name, "mode": mode, "model": args.model, **mode_meta}

    def evaluate_fn(init, out_dir):
        from micronbert.model.checkpoint import load_model_dir

        state, cfg = (None, model_cfg) if init is None else load_model_dir(init)[:2]
        cfg = recognition_config(args.model, cfg)  # e.g. the face prior, which pretraining does not use
        method = MicronBertMethod(cfg, protocol.classes, recipe, state, device=device, name=args.model,
                                  margin=margin)
        result = evaluate(table, None, method, out_dir, classes=protocol.classes, protocol=protocol.name,
                          seed=args.seed, shard=parse_shard(args.shard), val_subjects=recipe.val_subjects,
                          report=report, sample_files=args.samples, data=data, make_folds=make_folds, mode=mode,
                          extra_config={"cache": args.cache, "aligned": bool(args.cache),
                                        "input_size": cfg.img_size, "init": init, **mode_meta},
                          extra_meta=mode_meta)
        return result["metrics"]
    return evaluate_fn, info, table


def warn_overlap(table, frames) -> None:
    """Pretraining is label-free, but frames of evaluated clips in the pool weaken an 'unseen data' claim."""
    import sys
    from pathlib import Path

    pool = [Path(p).resolve() for p in frames]
    dirs = {Path(str(d)).resolve() for d in table.get("frames_dir", []) if isinstance(d, str) and d}
    inside = sorted(str(d) for d in dirs if any(d == p or p in d.parents for p in pool))
    if inside:
        print(f"warning: {len(inside)} evaluated clip folder(s) lie inside the pretraining pool (e.g. {inside[0]}); "
              f"pretraining then sees (unlabelled) test frames", file=sys.stderr)


def run(args):
    import os

    import torch

    from micronbert.config import place_poi_prior
    from micronbert.errors import MicronbertError
    from micronbert.faces.cache import frames_margin
    from micronbert.train.metrics import fmt
    from micronbert.train.scaling import parse_fractions, run_scaling

    if args.threads:
        torch.set_num_threads(args.threads)
    fractions = parse_fractions(args.fractions)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and args.stage == "all":
        raise MicronbertError("under torchrun run `--stage pretrain` (one fraction per launch), then `--stage "
                              "evaluate` (optionally with --shard auto)")
    if world > 1 and args.stage == "pretrain" and len(fractions) > 1:
        raise MicronbertError("under torchrun pretrain one fraction per launch (--fractions 0.1, then 0.3, ...)")
    model_cfg, pcfg = pretrain_setup(args)
    model_cfg = place_poi_prior(model_cfg, frames_margin(args.frames))
    budget = "epochs" if args.epochs is not None else "steps"
    evaluate_fn, info = None, {}
    if args.stage != "pretrain":
        evaluate_fn, info, table = make_evaluator(args, model_cfg)
        warn_overlap(table, args.frames)
    result = run_scaling(args.frames, fractions, args.out, model_cfg, pcfg, evaluate_fn, budget=budget,
                         epochs=args.epochs, seed=args.seed, fps=args.fps, device=args.device, stage=args.stage,
                         info=info, show_progress=True)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # torchrun: rank 0 reports
    for f, plan in sorted(result["plans"].items()):
        print(f"fraction {f:g}: {plan['n_frames']} frames in {plan['n_sources']} sources, {plan['steps']} steps "
              f"({plan['epochs_seen']} epochs){' (already pretrained)' if plan.get('skipped') else ''}")
    if args.stage == "pretrain":
        print(f"pretraining done; evaluate with: micronbert scaling ... --stage evaluate --out {args.out}")
        return 0
    if not result["complete"]:
        print("not all evaluation folds are finished yet: re-run once the other shards are done")
        return 0
    table = result["table"]
    print(f"same {budget}:")
    for _, r in table.iterrows():
        print(f"  {r['fraction']:>6}  {int(r['n_frames']):>9} frames  UF1 {fmt(r['uf1'])}  UAR {fmt(r['uar'])}")
    print(f"results: {args.out}/scaling.csv, scaling.md, scaling.png")
    return 0
