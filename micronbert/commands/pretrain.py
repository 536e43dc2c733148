"""`micronbert pretrain`: self-supervised μ-BERT pretraining on unlabeled face frame pairs."""
from __future__ import annotations

HELP = "pretrain μ-BERT on frame pairs from videos or frame folders (no labels); works under torchrun"


def configure(p):
    from micronbert.config import ModelConfig, PretrainConfig

    d, md = PretrainConfig(), ModelConfig()  # one place states the defaults: the config dataclasses
    p.add_argument("--frames", nargs="+", metavar="PATH",
                   help="videos, frame folders, or folders of those (default: the built-in real face videos); "
                        "or shard folders written by `micronbert shard` (streamed); or a face cache "
                        "written by `micronbert prepare` (its aligned clips)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, log.csv, model.safetensors)")
    p.add_argument("--preset", default="tiny", help="model preset: small (official), tiny, test")
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
    p.add_argument("--dma-temperature", type=float, default=md.dma_cosine_temperature,
                   help="cosine-logit temperature of DMA (0 = the paper's scaled dot product)")
    p.add_argument("--dma-signal", choices=["cosine", "relative", "paper"], default=None,
                   help=f"what the DMA diagonal measures (default {md.dma_signal}; 'paper' = the raw softmax "
                        f"diagonal, chosen by itself with --dma-temperature 0)")
    p.add_argument("--dma-tie-qk", action="store_true",
                   help="share DMA's query and key projections (to_k is then frozen: DDP needs every "
                        "trained parameter to get a gradient)")
    p.add_argument("--no-dma", action="store_true", help="ablation: plain cross-attention instead of DMA")
    p.add_argument("--no-poi", action="store_true", help="ablation: no PoI gating, no agreement loss")
    p.add_argument("--no-swap", action="store_true", help="ablation: no blockwise swapping")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--workers", type=int, default=d.num_workers, help="data loader worker processes")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the local GPU if any)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--cpu-bf16", action="store_true",
                   help="bf16 autocast on CPU (faster only on CPUs with AVX512-BF16/AMX; CUDA uses bf16 anyway)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest usable checkpoint in --out (same model, data and settings)")
    p.add_argument("--resume-force", action="store_true",
                   help="with --resume: continue even though model, data or training settings changed")
    p.add_argument("--shuffle-buffer", type=int, default=4096,
                   help="shards: pairs shuffled together (whole shards are read; at least one)")
    p.add_argument("--init", default=None, help="start from these weights (a model folder)")


def pretrain_configs(args):
    from micronbert.config import PretrainConfig, preset

    # --dma-temperature 0 (dot-product logits) alone means the paper's formulation, raw diagonal included
    signal = args.dma_signal or ("paper" if args.dma_temperature == 0 else None)
    model_cfg = preset(args.preset, use_dma=not args.no_dma, use_poi=not args.no_poi, poi_variant=args.poi,
                       dma_cosine_temperature=args.dma_temperature, dma_tie_qk=args.dma_tie_qk,
                       **({"dma_signal": signal} if signal else {}))
    pcfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, accum_steps=args.accum_steps, lr=args.lr,
                          warmup_steps=args.warmup_steps, swap_ratio=args.swap_ratio, use_swap=not args.no_swap,
                          delta_min_s=args.delta[0], delta_max_s=args.delta[1], fps=args.fps,
                          agreement_weight=args.agreement_weight,
                          identity_weight=args.identity_weight, seed=args.seed, log_every=args.log_every,
                          ckpt_every=args.ckpt_every, num_workers=args.workers, compile=args.compile)
    return model_cfg, pcfg


def run(args):
    from micronbert.data.builtin import face_videos
    from micronbert.train.pretrain import frame_sources, pretrain

    frames = args.frames or [str(p) for p in face_videos()]
    model_cfg, pcfg = pretrain_configs(args)
    sources = frame_sources(frames, args.fps)
    summary = pretrain(frames, args.out, model_cfg, pcfg, resume=args.resume or args.resume_force, init=args.init,
                       device=args.device, fps=args.fps, cpu_bf16=args.cpu_bf16, resume_force=args.resume_force,
                       shuffle_buffer=args.shuffle_buffer, sources=sources)
    if summary.get("interrupted"):
        print(f"interrupted at step {summary['start_step'] + summary['steps_run']}: checkpoint saved in "
              f"{args.out}/checkpoints; continue with --resume")
        return 130
    if summary["finished"]:
        print(f"pretrained {summary['steps_run']} steps on {summary['pairs']} anchor frames; "
              f"last log: {summary['last_log']}; model: {args.out}/model.safetensors")
    return 0
