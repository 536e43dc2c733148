"""`micronbert shard`: pack aligned face frames (or ready frame pairs) into tar shards for pretraining."""
from __future__ import annotations

HELP = "write face frames or frame pairs into tar shards (WebDataset-style) that pretraining streams"


def configure(p):
    p.add_argument("--frames", nargs="+", required=True, metavar="PATH",
                   help="videos, frame folders, or folders of those (aligned faces, e.g. from `micronbert faces`), "
                        "or a face cache from `micronbert prepare`")
    p.add_argument("--out", required=True, help="output folder for shard-NNNNNN.tar and manifest.json")
    p.add_argument("--size", type=int, default=1000, help="samples (frames, or pairs with --pairs) per shard")
    p.add_argument("--img-size", type=int, default=224, help="stored side in pixels (112 for tiny, 224 for small)")
    p.add_argument("--pairs", action="store_true",
                   help="store one ready (I_t, I_t+δ) pair per anchor frame instead of single frames")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate assumed for frame folders")
    p.add_argument("--delta", type=float, nargs=2, default=(0.04, 0.25), metavar=("MIN_S", "MAX_S"),
                   help="with --pairs: range of the frame gap δ in seconds")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    p.add_argument("--seed", type=int, default=0, help="seed of the source mixing (and, with --pairs, of the δ draws)")
    p.add_argument("--chunk", type=int, default=64,
                   help="consecutive frames kept together when sources are mixed (each shard holds about "
                        "size/chunk chunks from as many sources)")
    p.add_argument("--workers", type=int, default=1, help="processes writing shards in parallel")


def run(args):
    from micronbert.data.shards import write_shards
    from micronbert.train.cache_sources import frame_sources

    sources = frame_sources(args.frames, args.fps)  # face caches from `micronbert prepare`, else None
    m = write_shards(None if sources else args.frames, args.out, sources=sources, size=args.size,
                     img_size=args.img_size, pairs=args.pairs, fps=args.fps,
                     delta_s=tuple(args.delta), seed=args.seed, quality=args.quality, show_progress=True,
                     chunk=args.chunk, workers=args.workers)
    print(f"wrote {m['samples']} {m['kind']} from {len(m['sources'])} sources into {len(m['shards'])} shards "
          f"in {args.out} ({m['seconds']} s)")
    return 0
