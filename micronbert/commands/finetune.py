"""`micronbert finetune`: the deployable classifier, trained on all of a protocol's samples."""
from __future__ import annotations

HELP = "train the deployable classifier on all of a protocol's samples (same recipe as evaluate)"


def configure(p):
    from micronbert.commands._flags import add_data_args, add_recipe_args

    add_data_args(p)
    add_recipe_args(p)
    p.add_argument("--out", required=True, help="model folder: model.safetensors + config.json (for predict)")


def run(args):
    import sys

    import numpy as np

    from micronbert.commands._flags import (load_eval_table, recipe_from_args, setup_threads, warn_unaligned,
                                            warn_untrained)
    from micronbert.data.report import ValidationReport
    from micronbert.errors import MicronbertError
    from micronbert.faces.cache import cache_margin
    from micronbert.train.loso import samples_sha256, split_validation
    from micronbert.train.methods import build_method, resolve_device
    from micronbert.train.pairdata import load_pairs, pair_source

    setup_threads(args)
    warn_untrained(args)
    report = ValidationReport()
    table, protocol = load_eval_table(args, report)
    recipe = recipe_from_args(args)
    method = build_method(args.model, protocol.classes, recipe, args.init, args.preset, resolve_device(args.device),
                          args.size, margin=cache_margin(args.cache))
    size = args.size or method.input_size
    warn_unaligned(args)
    table, data = load_pairs(table, pair_source(args.cache, size), report)
    for line in report.lines()[:20]:
        print(line, file=sys.stderr)
    if len(table) == 0:
        raise MicronbertError(f"protocol {protocol.name}: none of the samples could be loaded")
    method.prepare(data, args.seed)
    train_idx, val_idx = split_validation(table, np.arange(len(table)), recipe.val_subjects, args.seed)
    labels = table["label"].to_numpy(np.int64)
    model, info = method.fit(train_idx, labels, seed=args.seed, val_idx=val_idx if len(val_idx) else None,
                             desc="finetune")
    method.save(model, args.out, protocol.name, aligned=bool(args.cache),
                training={"n_samples": int(len(table)), "samples_sha256": samples_sha256(table),
                          "sample_files": list(map(str, args.samples)), "seed": args.seed,
                          "epochs_used": info["best_epoch"], "final_loss": info["final_loss"],
                          "init": args.init, "model_name": args.model, "n_excluded": len(report)})
    print(f"trained {args.model} on {len(table)} samples ({protocol.name}: {', '.join(protocol.classes)}), "
          f"final loss {info['final_loss']:.4f}; model: {args.out}")
    return 0
