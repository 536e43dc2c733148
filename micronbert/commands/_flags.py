"""Flag groups shared by `evaluate`, `finetune`, `pretrain` and `scaling`, and the small adapters from their
flags to the library (defaults live in the library: the recipe in `train.recipe`, the models in
`train.methods`, pretraining in `config.ModelConfig`/`PretrainConfig`)."""
from __future__ import annotations

import sys


def add_data_args(p):
    p.add_argument("--samples", nargs="+", required=True, metavar="CSV", help="sample tables from `micronbert index`")
    p.add_argument("--protocol", default="megc2019", help="protocol name (see `micronbert protocols`) or a YAML path")
    p.add_argument("--cache", default=None,
                   help="face cache from `micronbert prepare` (aligned faces); without it the raw frames are "
                        "resized and centre-cropped, unaligned (a warning is printed)")
    p.add_argument("--size", type=int, default=None, help="face side in px (default: the model's input size)")


def add_recipe_args(p):
    from micronbert.train.methods import METHODS

    p.add_argument("--model", default="micronbert", choices=sorted(METHODS),
                   help="; ".join(f"{k}: {v.description}" for k, v in METHODS.items()))
    p.add_argument("--init", default=None, help="pretrained μ-BERT (a `micronbert pretrain --out` folder)")
    p.add_argument("--preset", default="tiny", help="model preset when no --init is given (small, tiny, test)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="the CPU recipe: the encoder's first blocks run once per sample and cached view; its last "
                        "block(s), DMA and the head train on that cache (PoI has no parameters)")
    p.add_argument("--epochs", type=int, default=None, help="fixed number of epochs (no per-subject selection)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="at most this many optimisation steps per model, in whole epochs: a large training set "
                        "gets fewer epochs (default: the recipe's; the CPU recipe's keeps MEGC2019-sized LOSO "
                        "in about half an hour on 2 cores; 0 = always --epochs)")
    p.add_argument("--cached-views", type=int, default=None,
                   help="with --freeze-encoder: augmented views per sample cached besides the clean pair "
                        "(default: the recipe's, 4; 0 = the clean pair only, several times faster)")
    p.add_argument("--train-blocks", type=int, default=None,
                   help="with --freeze-encoder: the encoder's last blocks that still train (default: the recipe's, 1)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--layer-decay", type=float, default=None, help="layer-wise lr decay (1.0 = off; e.g. 0.75)")
    p.add_argument("--class-weights", choices=["balanced", "none"], default=None)
    p.add_argument("--no-augment", action="store_true", help="no paired augmentation")
    p.add_argument("--no-test-flip", action="store_true",
                   help="at prediction, leave out the mirror images (default: class probabilities are averaged over "
                        "each test pair and its mirror image; docs/motion.md §17)")
    p.add_argument("--no-test-neighbours", action="store_true",
                   help="at prediction, leave out the pairs of the onset with the frames just before and after the "
                        "apex (default: averaged in where the clip has them between onset and offset)")
    p.add_argument("--val-subjects", type=int, default=None,
                   help="choose the epoch on this many subjects drawn from each fold's training subjects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the local GPU if any)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is best on a busy machine)")


def recipe_from_args(args):
    from micronbert.train.methods import default_recipe

    return default_recipe(args.model, args.freeze_encoder, epochs=args.epochs, max_steps=args.max_steps,
                          batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, layer_decay=args.layer_decay,
                          class_weights=args.class_weights, augment=False if args.no_augment else None,
                          val_subjects=args.val_subjects, cached_views=args.cached_views,
                          train_blocks=args.train_blocks, test_flip=False if args.no_test_flip else None,
                          test_neighbours=False if args.no_test_neighbours else None)


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


def load_eval_table(args, report):
    """(evaluation table, Protocol) for --samples/--protocol; every dropped row is in `report`."""
    from micronbert.train.pairdata import eval_table

    return eval_table(args.samples, args.protocol, report)


def warn_untrained(args):
    from micronbert.train.methods import METHODS

    spec = METHODS[args.model]
    if spec.family == "mubert" and spec.uses_init and not args.init:
        print(f"warning: --model {args.model} without --init starts from random weights (what no-pretrain "
              f"measures); pass a pretrained folder for the paper's setting", file=sys.stderr)


def warn_unaligned(args):
    if not args.cache:
        print("warning: no --cache: faces are not aligned (raw frames resized and centre-cropped)", file=sys.stderr)


def setup_threads(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def add_pretrain_args(p, budget: bool = True, seed: bool = True):
    """The pretraining flags (model preset and ablations, PretrainConfig), defaults from the config dataclasses.
    budget/seed: also --steps and --seed (`scaling` states its own budget and one seed for everything)."""
    from micronbert.config import DMA_COMPARED, DMA_SIGNALS, PRETRAIN_POI_PRIORS, ModelConfig, PretrainConfig

    d, md = PretrainConfig(), ModelConfig()  # one place states the defaults: the config dataclasses
    p.add_argument("--preset", default="tiny", help="model preset: small (official), tiny, test")
    if budget:
        p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global pairs per optimizer step")
    p.add_argument("--accum-steps", type=int, default=d.accum_steps, help="gradient accumulation steps")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--swap-ratio", type=float, default=d.swap_ratio, help="fraction of patches swapped")
    p.add_argument("--delta", type=float, nargs=2, default=(d.delta_min_s, d.delta_max_s), metavar=("MIN_S", "MAX_S"),
                   help="range of the frame gap δ in seconds")
    p.add_argument("--fps", type=float, default=d.fps, help="frame rate assumed for frame folders")
    p.add_argument("--poi", choices=["mse", "dino"], default=md.poi_variant, help="PoI agreement variant")
    p.add_argument("--agreement-weight", type=float, default=d.agreement_weight, help="λ in L_rec + λ·L_agg")
    p.add_argument("--identity-weight", type=float, default=d.identity_weight,
                   help="weight of −log a_i on swapped patches (0 = the paper's losses only)")
    p.add_argument("--identity-loss", choices=["contrastive", "signal", "both"], default=d.identity_loss,
                   help="what the identity term takes −log of: the softmax diagonal over all patches "
                        "('contrastive'), the change map itself ('signal'), or the sum of the two")
    p.add_argument("--dma-temperature", type=float, default=md.dma_cosine_temperature,
                   help="temperature τ of DMA's logits (cosine and distance signals; 0 = the paper's scaled "
                        "dot product)")
    p.add_argument("--dma-signal", choices=list(DMA_SIGNALS), default=None,
                   help=f"what the DMA diagonal measures (default {md.dma_signal}; 'paper' = the raw softmax "
                        f"diagonal, chosen by itself with --dma-temperature 0)")
    p.add_argument("--dma-compare", choices=list(DMA_COMPARED), default=md.dma_compare,
                   help="what DMA's query and key read: the encoder's normalised tokens, or its residual "
                        "stream before the final LayerNorm (docs/motion.md §12)")
    p.add_argument("--dma-no-projection", action="store_true",
                   help="DMA's change map compares its inputs themselves, without the query and key "
                        "projections (frozen then; docs/motion.md §12)")
    p.add_argument("--dma-tie-qk", action="store_true",
                   help="share DMA's query and key projections (to_k is then frozen: DDP needs every "
                        "trained parameter to get a gradient)")
    p.add_argument("--no-dma", action="store_true", help="ablation: plain cross-attention instead of DMA")
    p.add_argument("--no-poi", action="store_true", help="ablation: no PoI gating, no agreement loss")
    p.add_argument("--poi-prior", choices=list(PRETRAIN_POI_PRIORS), default=md.poi_prior,
                   help="confine PoI's saliency to where alignment puts the face while pretraining: 'face' "
                        "(landmark hull and forehead), 'hull' (the 68-point hull); 'none' = the paper's learned "
                        "map alone (recognition adds the face prior anyway: evaluate --model micronbert; each "
                        "clip's own hull, --model own-poi, is for recognition only: frame pairs carry no landmarks)")
    p.add_argument("--no-swap", action="store_true", help="ablation: no blockwise swapping")
    if seed:
        p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--workers", type=int, default=d.num_workers, help="data loader worker processes")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")


def pretrain_configs(args):
    """(ModelConfig, PretrainConfig) from the add_pretrain_args flags."""
    from micronbert.config import PretrainConfig, preset

    # --dma-temperature 0 (dot-product logits) alone means the paper's formulation, raw diagonal included
    signal = args.dma_signal or ("paper" if args.dma_temperature == 0 else None)
    model_cfg = preset(args.preset, use_dma=not args.no_dma, use_poi=not args.no_poi, poi_variant=args.poi,
                       poi_prior=args.poi_prior,
                       dma_cosine_temperature=args.dma_temperature, dma_tie_qk=args.dma_tie_qk,
                       dma_compare=args.dma_compare, dma_project_qk=not args.dma_no_projection,
                       **({"dma_signal": signal} if signal else {}))
    pcfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, accum_steps=args.accum_steps, lr=args.lr,
                          warmup_steps=args.warmup_steps, swap_ratio=args.swap_ratio, use_swap=not args.no_swap,
                          delta_min_s=args.delta[0], delta_max_s=args.delta[1], fps=args.fps,
                          agreement_weight=args.agreement_weight,
                          identity_weight=args.identity_weight, identity_loss=args.identity_loss, seed=args.seed, log_every=args.log_every,
                          ckpt_every=args.ckpt_every, num_workers=args.workers, compile=args.compile)
    return model_cfg, pcfg
