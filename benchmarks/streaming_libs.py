"""Benchmark: our shard reader against webdataset on the same shards (one worker, this process).

Frame shards of 224-px JPEGs from the built-in face videos, written once with `write_shards`. Both
readers decode with the same OpenCV call (single-threaded, as in a DataLoader worker), so the figure
compares what differs: tar reading, shuffling and pairing. Ours yields decoded *pairs* (two frames
each); webdataset yields decoded *frames* (it has no notion of a pair: pairing would sit on top of it),
so the comparison is in frames decoded per second. Rounds alternate the readers so both see the same
machine load. Resume: ours skips consumed windows by the manifest's counts; webdataset 1.x has no
stream state, so continuing at sample k means reading k samples again (timed here without decoding).
Memory: RSS growth while each reader runs (shuffle buffers of the same size).

mosaicml-streaming and litdata are not measured: both require torchvision, which this project never
installs (torch is pinned; see the README), and mosaicml-streaming also pins numpy < 2.2.
Usage: python benchmarks/streaming_libs.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


def _decode(data: bytes):
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def ours(shards: str, frames: int, buffer: int) -> tuple[float, int]:
    from micronbert.data.shard_stream import ShardPairStream

    before = C.rss()
    it = iter(ShardPairStream([shards], batch=32, img_size=224, buffer=buffer))
    next(it)
    t0 = time.perf_counter()
    done = 0
    while done < frames:
        a, _ = next(it)
        done += 2 * len(a)
    return done / (time.perf_counter() - t0), C.rss() - before


def webdataset_frames(shards: str, frames: int, buffer: int) -> tuple[float, int]:
    import webdataset as wds

    urls = sorted(os.path.join(shards, f) for f in os.listdir(shards) if f.endswith(".tar"))
    before = C.rss()
    ds = (wds.WebDataset(urls, shardshuffle=len(urls), empty_check=False).repeat().shuffle(buffer)
          .map(lambda s: _decode(s["jpg"])))
    it = iter(ds)
    for _ in range(32):
        next(it)
    t0 = time.perf_counter()
    for _ in range(frames):
        next(it)
    return frames / (time.perf_counter() - t0), C.rss() - before


def resume(shards: str, samples: int) -> dict:
    """Time to the first batch after `samples` consumed: ours by counts, webdataset by re-reading."""
    import webdataset as wds

    from micronbert.data.shard_stream import ShardPairStream

    batch = 32
    t0 = time.perf_counter()
    next(iter(ShardPairStream([shards], batch=batch, img_size=224, buffer=200, start_step=samples // batch)))
    t_ours = time.perf_counter() - t0
    urls = sorted(os.path.join(shards, f) for f in os.listdir(shards) if f.endswith(".tar"))
    t0 = time.perf_counter()
    it = iter(wds.WebDataset(urls, shardshuffle=False, empty_check=False).repeat())
    for _ in range(samples):
        next(it)
    t_wds = time.perf_counter() - t0
    return {"samples_consumed": samples, "ours_s": round(t_ours, 3), "webdataset_replay_s": round(t_wds, 3),
            "webdataset_replay_us_per_sample": round(t_wds / samples * 1e6, 1)}


def mixing(shards: str, batches: int = 12, batch: int = 32, buffer: int = 200) -> dict:
    """Mean distinct sources (videos) per batch of `batch`, same shuffle buffer size."""
    import json

    import webdataset as wds

    from micronbert.data.shard_stream import ShardPairStream

    gen = ShardPairStream([shards], batch=batch, img_size=224, buffer=buffer).spec_batches()
    ours = [len({sp.source for sp in next(gen)}) for _ in range(batches)]
    urls = sorted(os.path.join(shards, f) for f in os.listdir(shards) if f.endswith(".tar"))
    it = iter(wds.WebDataset(urls, shardshuffle=len(urls), empty_check=False).repeat().shuffle(buffer))
    theirs = [len({json.loads(next(it)["json"])["source_id"] for _ in range(batch)}) for _ in range(batches)]
    return {"batch": batch, "buffer": buffer, "ours_mean_sources": round(sum(ours) / batches, 2),
            "webdataset_mean_sources": round(sum(theirs) / batches, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=768, help="frames decoded per reader and round")
    args = ap.parse_args(argv)
    C.reexec_with_fixed_malloc()
    import cv2
    import webdataset

    from micronbert.data.builtin import face_videos
    from micronbert.data.shards import write_shards

    cv2.setNumThreads(1)
    tmp = tempfile.mkdtemp()
    shards = os.path.join(tmp, "s")
    m = write_shards([str(p) for p in face_videos()], shards, size=100, img_size=224, chunk=32)
    rates = {"ours": [], "webdataset": []}
    memory = {"ours": [], "webdataset": []}
    for _ in range(args.rounds):
        for name, fn in (("ours", ours), ("webdataset", webdataset_frames)):
            gc.collect()
            r, mem = fn(shards, args.frames, 200)
            rates[name].append(round(r, 1))
            memory[name].append(C.mib(mem))
    best = {k: max(v) for k, v in rates.items()}
    out = {"benchmark": "streaming_libs", "commit": C.git_commit(), "machine": C.machine("cpu"),
           "webdataset": webdataset.__version__, "frames_in_shards": m["samples"], "shards": len(m["shards"]),
           "decoded_frames_per_s_per_worker": best, "all_rates": rates, "rss_growth_mib": memory,
           "ours_vs_webdataset": round(best["ours"] / best["webdataset"], 2),
           "resume": resume(shards, 5 * m["samples"]), "sources": len(face_videos()),
           "sources_per_batch": mixing(shards),
           "not_measured": {"mosaicml-streaming": "requires torchvision and numpy<2.2",
                            "litdata": "requires torchvision"}}
    out["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    C.emit(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
