"""`micronbert evaluate`: leave-one-subject-out (or cross-dataset) evaluation of μ-BERT, its ablations and
a flow baseline."""
from __future__ import annotations

HELP = ("LOSO or cross-dataset evaluation under a protocol (pooled UF1/UAR); resumable, shardable over "
        "processes/GPUs")


def configure(p):
    from micronbert.commands._flags import add_data_args, add_mode_args, add_recipe_args

    add_data_args(p)
    add_recipe_args(p)
    add_mode_args(p)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--folds", default=None,
                   help="run only these folds: indices, ranges or names, comma-separated (e.g. 0-9,casme2/sub01)")
    p.add_argument("--shard", default=None,
                   help="k/K: run every K-th fold starting at k; 'auto': torchrun's RANK/WORLD_SIZE")
    p.add_argument("--merge", action="store_true", help="train nothing: pool the finished folds into the reports")
    p.add_argument("--overwrite", action="store_true", help="discard finished folds of a different earlier run")
    p.add_argument("--keep-fold-models", action="store_true", help="save each fold's classifier under folds/")


def run(args):
    import sys

    from micronbert.commands._flags import (load_eval_table, plan_mode, recipe_from_args, setup_threads,
                                            warn_unaligned, warn_untrained)
    from micronbert.data.report import ValidationReport
    from micronbert.faces.cache import cache_margin
    from micronbert.train.loso import evaluate, parse_shard
    from micronbert.train.methods import build_method, resolve_device
    from micronbert.train.metrics import fmt
    from micronbert.train.pairdata import pair_source

    setup_threads(args)
    warn_untrained(args)
    report = ValidationReport()
    table, protocol = load_eval_table(args, report)
    table, make_folds, mode, mode_meta = plan_mode(args, table)
    recipe = recipe_from_args(args)
    device = resolve_device(args.device)
    method = build_method(args.model, protocol.classes, recipe, args.init, args.preset, device, args.size,
                          margin=cache_margin(args.cache))
    size = args.size or method.input_size
    warn_unaligned(args)
    source = pair_source(args.cache, size)
    result = evaluate(table, source, method, args.out, classes=protocol.classes, protocol=protocol.name,
                      seed=args.seed, folds_spec=args.folds, shard=parse_shard(args.shard),
                      val_subjects=recipe.val_subjects, report=report, sample_files=args.samples,
                      extra_config={"cache": args.cache, "aligned": bool(args.cache), "input_size": size,
                                    "init": args.init, **mode_meta},
                      keep_models=args.keep_fold_models, overwrite=args.overwrite, merge_only=args.merge,
                      make_folds=make_folds, mode=mode, extra_meta=mode_meta)
    for line in report.lines()[:20]:
        print(line, file=sys.stderr)
    if len(report) > 20:
        print(f"... {len(report) - 20} more in {args.out}/excluded.csv", file=sys.stderr)
    print(f"folds: ran {len(result['ran'])}, skipped {len(result['skipped'])} (already done), "
          f"{result['n_done']}/{result['n_folds']} finished")
    m = result["metrics"]
    if m is None:
        print("not all folds are finished yet: re-run (or --merge) once they are to pool the results")
        return 0
    if mode_meta:
        print(f"{mode}: trained on {', '.join(mode_meta['train_datasets'])}; "
              f"tested on {', '.join(mode_meta['test_datasets'])}")
    print(f"{m['model']} on {m['protocol']}: UF1 {fmt(m['uf1'])}  UAR {fmt(m['uar'])}  "
          f"accuracy {fmt(m['accuracy'])}  ({m['n_samples']} samples, {m['n_folds']} folds)")
    for ds, d in m["per_dataset"].items():
        print(f"  {ds}: UF1 {fmt(d['uf1'])}  UAR {fmt(d['uar'])}  (n={d['n_samples']})")
    if m["absent_classes"]:
        print(f"  classes absent from the pool (left out of the means): {', '.join(m['absent_classes'])}")
    print(f"results: {args.out}/metrics.json, predictions.csv, folds.csv, confusion.png, summary.md")
    return 0
