"""`micronbert evaluate`: leave-one-subject-out (or cross-dataset) evaluation of μ-BERT, its ablations and
a flow baseline."""
from __future__ import annotations

HELP = ("LOSO or cross-dataset evaluation under a protocol (pooled UF1/UAR); resumable, shardable over "
        "processes/GPUs")


def add_data_args(p):
    p.add_argument("--samples", nargs="+", required=True, metavar="CSV", help="sample tables from `micronbert index`")
    p.add_argument("--protocol", default="megc2019", help="protocol name (see `micronbert protocols`) or a YAML path")
    p.add_argument("--cache", default=None,
                   help="face cache from `micronbert prepare` (aligned faces); without it the raw frames are "
                        "resized and centre-cropped, unaligned (a warning is printed)")
    p.add_argument("--size", type=int, default=None, help="face side in px (default: the model's input size)")


def add_recipe_args(p):
    from micronbert.train.finetune import MODELS

    p.add_argument("--model", default="micronbert", choices=sorted(MODELS),
                   help="; ".join(f"{k}: {v}" for k, v in MODELS.items()))
    p.add_argument("--init", default=None, help="pretrained μ-BERT (a `micronbert pretrain --out` folder)")
    p.add_argument("--preset", default="tiny", help="model preset when no --init is given (small, tiny, test)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="train DMA/PoI/head only; the encoder's tokens are computed once per sample")
    p.add_argument("--epochs", type=int, default=None, help="fixed number of epochs (no per-subject selection)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--layer-decay", type=float, default=None, help="layer-wise lr decay (1.0 = off; e.g. 0.75)")
    p.add_argument("--class-weights", choices=["balanced", "none"], default=None)
    p.add_argument("--no-augment", action="store_true", help="no paired augmentation")
    p.add_argument("--val-subjects", type=int, default=None,
                   help="choose the epoch on this many subjects drawn from each fold's training subjects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the local GPU if any)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is best on a busy machine)")


def recipe_from_args(args):
    from micronbert.train.finetune import default_recipe

    return default_recipe(args.model, args.freeze_encoder, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, layer_decay=args.layer_decay,
                          class_weights=args.class_weights, augment=False if args.no_augment else None,
                          val_subjects=args.val_subjects)


def add_mode_args(p):
    p.add_argument("--mode", choices=["loso", "cross", "lodo"], default=None,
                   help="loso: leave one subject out; cross: train on --train-datasets, test on --test-datasets; "
                        "lodo: leave one dataset out, each dataset held out in turn (default: cross when "
                        "--test-datasets is given, else loso)")
    p.add_argument("--train-datasets", default=None, metavar="A,B",
                   help="cross: training datasets (default: every dataset of the protocol not tested)")
    p.add_argument("--test-datasets", default=None, metavar="C",
                   help="cross: held-out test datasets, never seen in training or model selection; "
                        "lodo: hold out only these, in turn")


def plan_mode(args, table):
    """(table, make_folds, mode label, metrics extras) for the --mode/--train-datasets/--test-datasets flags."""
    from micronbert.train.crossdata import plan

    return plan(table, getattr(args, "mode", None), getattr(args, "train_datasets", None),
                getattr(args, "test_datasets", None))


def configure(p):
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


def load_eval_table(args, report):
    """(evaluation table, Protocol) for --samples/--protocol; every dropped row is in `report`."""
    from micronbert.data.protocol import load_protocol
    from micronbert.data.samples import read_sample_tables
    from micronbert.errors import MicronbertError

    protocol = load_protocol(args.protocol)
    samples = read_sample_tables(args.samples)
    table = protocol.apply(samples, report)
    if len(table) == 0:
        raise MicronbertError(f"protocol {protocol.name} keeps 0 of the {len(samples)} samples in "
                              f"{', '.join(map(str, args.samples))} (datasets there: "
                              f"{sorted(set(samples['dataset']))}; the protocol covers {sorted(protocol.datasets)})")
    return table, protocol


def pair_source(cache: str | None, size: int):
    """row -> (onset, apex) uint8 (size, size, 3): aligned faces from the cache, or raw frames."""
    from micronbert.data.pairs import fit_square

    def resized(img):
        return img if img.shape[0] == size and img.shape[1] == size else fit_square(img, size)

    if cache:
        from micronbert.faces.cache import FaceCache

        fc = FaceCache(cache)

        def from_cache(row):
            if not fc.has(row["dataset"], row["sample_id"]):
                raise KeyError(f"not in the face cache {cache} (run `micronbert prepare`)")
            s = fc.load(row["dataset"], row["sample_id"])
            return resized(s.frame(int(row["onset"]))), resized(s.frame(int(row["apex"])))
        return from_cache

    from micronbert.data.frames import read_image
    from micronbert.data.samples import SampleFrames

    def from_frames(row):
        frames = SampleFrames.from_row(row)
        return (resized(read_image(frames.path_of(int(row["onset"])))),
                resized(read_image(frames.path_of(int(row["apex"])))))
    return from_frames


def warn_untrained(args):
    import sys

    if args.model in ("micronbert", "no-dma", "no-poi") and not args.init:
        print(f"warning: --model {args.model} without --init starts from random weights (what no-pretrain "
              f"measures); pass a pretrained folder for the paper's setting", file=sys.stderr)


def setup_threads(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def run(args):
    import sys

    from micronbert.data.report import ValidationReport
    from micronbert.train.finetune import build_method, resolve_device
    from micronbert.train.loso import evaluate, parse_shard
    from micronbert.train.metrics import fmt

    setup_threads(args)
    warn_untrained(args)
    report = ValidationReport()
    table, protocol = load_eval_table(args, report)
    table, make_folds, mode, mode_meta = plan_mode(args, table)
    recipe = recipe_from_args(args)
    device = resolve_device(args.device)
    method = build_method(args.model, protocol.classes, recipe, args.init, args.preset, device, args.size)
    size = args.size or (method.cfg.img_size if args.model != "flow-cnn" else 112)
    if not args.cache:
        print("warning: no --cache: faces are not aligned (raw frames resized and centre-cropped)", file=sys.stderr)
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
