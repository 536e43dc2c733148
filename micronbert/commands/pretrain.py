"""`micronbert pretrain`: self-supervised μ-BERT pretraining on unlabeled face frame pairs."""
from __future__ import annotations

from micronbert.commands._flags import add_pretrain_args, pretrain_configs

HELP = "pretrain μ-BERT on frame pairs from videos or frame folders (no labels); works under torchrun"


def configure(p):
    p.add_argument("--frames", nargs="+", metavar="PATH",
                   help="videos, frame folders, or folders of those (default: the built-in real face videos); "
                        "or shard folders written by `micronbert shard` (streamed); or a face cache "
                        "written by `micronbert prepare` (its aligned clips)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, log.csv, model.safetensors)")
    add_pretrain_args(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the local GPU if any)")
    p.add_argument("--cpu-bf16", action="store_true",
                   help="bf16 autocast on CPU (faster only on CPUs with AVX512-BF16/AMX; CUDA uses bf16 anyway)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest usable checkpoint in --out (same model, data and settings)")
    p.add_argument("--resume-force", action="store_true",
                   help="with --resume: continue even though model, data or training settings changed")
    p.add_argument("--shuffle-buffer", type=int, default=4096,
                   help="shards: pairs shuffled together (whole shards are read; at least one)")
    p.add_argument("--init", default=None, help="start from these weights (a model folder)")


def run(args):
    from micronbert.config import place_poi_prior
    from micronbert.data.builtin import face_videos
    from micronbert.faces.cache import frames_margin
    from micronbert.train.cache_sources import frame_sources
    from micronbert.train.pretrain import pretrain

    frames = args.frames or [str(p) for p in face_videos()]
    model_cfg, pcfg = pretrain_configs(args)
    model_cfg = place_poi_prior(model_cfg, frames_margin(frames))
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
