"""Benchmark: the pretraining data index at 1 M and 8 M frames, simulated (no real 8 M images).

Frame folders: synthetic directory listings of 500-frame clips (the entry names os.listdir returns,
in arbitrary order: img00001.jpg ... plus a non-frame file) go through the same number_names +
FrameNames + PairSchedule the run uses; timed separately: the file-name index (from entry names to the
stored pattern, every check included), the schedule, and the memory they keep (RSS growth with the
listings freed). Beside it: the per-name check at the smallest size, os.listdir on real folders (the
system-call part, per million names), and the previous index (one Python tuple per anchor, from git
commit e3ec364) at 1 M frames. `specs_per_s`: pair specs the index hands out per second (batches of 512); resume:
the time to the first batch spec at step 100 000.

Shards: a synthetic 8 M-frame manifest (8 000 shards × 1 000 frames; the skipping never opens a tar)
gives the resume time of ShardPairStream at step 100 000 × 512 pairs, and real 224-px frame shards
(from the built-in face videos) give decoded pairs/s per DataLoader worker (one process, no workers).
Usage: python benchmarks/pair_index.py [--frames 1000000 8000000] [--skip-old]
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

CLIP = 500
OLD_COMMIT = "e3ec364"


def listings(n_frames: int):
    """What os.listdir returns for each 500-frame clip folder: img00001.jpg ... in directory order
    (shuffled here, as file systems do), plus one non-frame file."""
    import random

    rng = random.Random(0)
    for c in range(n_frames // CLIP):
        names = [f"img{n:05d}.jpg" for n in range(1, CLIP + 1)] + ["info.txt"]
        rng.shuffle(names)
        yield c, names


def new_index(n_frames: int) -> dict:
    from pathlib import Path

    import numpy as np

    from micronbert.data.frames import number_names
    from micronbert.data.pairs import FrameNames, FrameSource, PairSchedule

    gc.collect()
    before = C.rss()
    t_names = 0.0
    sources = []
    for c, listing in listings(n_frames):
        t0 = time.perf_counter()  # from the directory's entry names to the stored index, all checks included
        names = FrameNames(number_names(listing))
        t_names += time.perf_counter() - t0
        sources.append(FrameSource("folder", Path(f"/data/clip{c:06d}"), 30.0, len(names), names))
    t0 = time.perf_counter()
    sched = PairSchedule(sources, 512, (0.04, 0.25), seed=0)
    t_sched = time.perf_counter() - t0
    gc.collect()
    kept = C.rss() - before
    t0 = time.perf_counter()
    steps = 40
    for i in range(steps):
        sched.spec_arrays(np.arange((1000 + i) * 512, (1001 + i) * 512))
    specs_s = steps * 512 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    sched.specs(100_000)
    resume = time.perf_counter() - t0
    return {"frames": n_frames, "anchors": len(sched), "sources": len(sources), "names_build_s": round(t_names, 2),
            "schedule_build_s": round(t_sched, 4), "index_build_s": round(t_names + t_sched, 2),
            "memory_per_rank_mib": C.mib(kept), "index_arrays_mib": C.mib(sched.nbytes() + sum(
                s.names.nbytes() for s in sources)), "specs_per_s": round(specs_s), "resume_to_step_100k_s":
                round(resume, 5)}


def name_by_name(n_frames: int) -> dict:
    """The previous check (each name parsed on its own, as list_frames did), same listings."""
    from micronbert.data.frames import _numbered_slowly

    t = 0.0
    for _, listing in listings(n_frames):
        t0 = time.perf_counter()
        _numbered_slowly(listing)
        t += time.perf_counter() - t0
    return {"frames": n_frames, "names_build_s": round(t, 2), "note": "per-name parse, same listings"}


def directory_reads(folders: int = 20) -> dict:
    """os.listdir on real folders of 500 empty frame files: the system-call part the simulation leaves
    out, per million names (file-system dependent; a local disk here)."""
    tmp = tempfile.mkdtemp()
    for c in range(folders):
        d = os.path.join(tmp, f"clip{c}")
        os.mkdir(d)
        for n in range(1, CLIP + 1):
            open(os.path.join(d, f"img{n:05d}.jpg"), "wb").close()
    t0 = time.perf_counter()
    for c in range(folders):
        os.listdir(os.path.join(tmp, f"clip{c}"))
    per_m = (time.perf_counter() - t0) / (folders * CLIP) * 1e6
    return {"names": folders * CLIP, "listdir_s_per_million_names": round(per_m, 3)}


def old_index(n_frames: int) -> dict | None:
    """The tuple-per-anchor index of commit e3ec364, loaded from git into a throwaway module."""
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:micronbert/data/pairs.py"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    if src.returncode:
        return None
    # only the schedule is needed; its frame-reading imports are replaced by what it used at the time
    code = src.stdout.replace("from micronbert.data.frames import is_video, list_frames, read_image, video_info, "
                              "iter_video", "from micronbert.data.frames import is_video, list_frames, read_image")
    path = os.path.join(tempfile.mkdtemp(), "old_pairs.py")
    with open(path, "w") as fh:
        fh.write(code)
    spec = importlib.util.spec_from_file_location("old_pairs", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_pairs"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    from pathlib import Path

    gc.collect()
    before = C.rss()
    t0 = time.perf_counter()
    sources = [mod.FrameSource("folder", Path(f"/data/clip{c:06d}"), 30.0, CLIP, sorted(listing)[:CLIP])
               for c, listing in listings(n_frames)]
    t_src = time.perf_counter() - t0
    t0 = time.perf_counter()
    sched = mod.PairSchedule(sources, 512, (0.04, 0.25), 0)
    t_sched = time.perf_counter() - t0
    sched.specs(1000)  # the first call materialises the epoch permutation (cached)
    gc.collect()
    kept = C.rss() - before
    return {"frames": n_frames, "names_build_s": round(t_src, 2), "schedule_build_s": round(t_sched, 2),
            "memory_per_rank_mib": C.mib(kept), "note": f"tuple-per-anchor index of commit {OLD_COMMIT}"}


def shard_resume(n_frames: int, shard_size: int = 1000) -> dict:
    from micronbert.data.shard_stream import ShardPairStream
    from micronbert.data.shards import FORMAT, MANIFEST

    tmp = tempfile.mkdtemp()
    n = n_frames // shard_size
    manifest = {"format": FORMAT, "kind": "frames", "img_size": 224, "samples": n_frames,
                "shards": [{"name": f"shard-{i:06d}.tar", "count": shard_size, "pairs": shard_size,
                            "sources": []} for i in range(n)]}
    with open(os.path.join(tmp, MANIFEST), "w") as fh:
        json.dump(manifest, fh)
    gc.collect()
    before = C.rss()
    t0 = time.perf_counter()
    stream = ShardPairStream([tmp], batch=512, img_size=224, start_step=100_000, buffer=4096)
    t_open = time.perf_counter() - t0
    kept = C.rss() - before
    t0 = time.perf_counter()
    gen = stream.spec_batches(0, 1, skip=100_000)
    try:
        next(gen)  # stops at the first tar it must read: none exists here
    except (FileNotFoundError, OSError):
        pass
    t_skip = time.perf_counter() - t0
    return {"frames": n_frames, "shards": n, "manifest_load_s": round(t_open, 3), "memory_mib": C.mib(kept),
            "resume_to_step_100k_s": round(t_skip, 3), "resumed_at_epoch": stream.located[0] if stream.located else None}


SUPPLY_BASELINE = "01d621a"  # shards.py before in-place batch decoding and header-parsed tars


def _module_at(commit: str, path: str, name: str):
    src = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    if src.returncode:
        return None
    file = os.path.join(tempfile.mkdtemp(), f"{name}.py")
    with open(file, "w") as fh:
        fh.write(src.stdout)
    spec = importlib.util.spec_from_file_location(name, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def shard_supply(img_size: int = 224, batches: int = 12, batch: int = 64, rounds: int = 3) -> dict:
    """Decoded pairs/s of one worker (this process, cv2 single-threaded as in a DataLoader worker), ours
    and the baseline reader alternated on the same shards so both see the same machine load."""
    import cv2

    from micronbert.data.builtin import face_videos
    from micronbert.data.shard_stream import ShardPairStream
    from micronbert.data.shards import write_shards

    cv2.setNumThreads(1)
    tmp = tempfile.mkdtemp()
    t0 = time.perf_counter()
    m = write_shards([str(p) for p in face_videos()], os.path.join(tmp, "s"), size=100, img_size=img_size,
                     chunk=32)
    write_s = time.perf_counter() - t0
    readers = {"ours": ShardPairStream}
    old = _module_at(SUPPLY_BASELINE, "micronbert/data/shards.py", "old_shards")
    if old is not None:
        readers["baseline"] = old.ShardPairStream
    rates = {k: [] for k in readers}
    for _ in range(rounds):
        for name, cls in readers.items():
            it = iter(cls([os.path.join(tmp, "s")], batch=batch, img_size=img_size, buffer=200))
            next(it)  # start-up: first window read
            t0 = time.perf_counter()
            for _ in range(batches):
                next(it)
            rates[name].append(batches * batch / (time.perf_counter() - t0))
    best = {k: max(v) for k, v in rates.items()}
    out = {"img_size": img_size, "frames_written": m["samples"], "write_s": round(write_s, 2),
           "decoded_pairs_per_s_per_worker": round(best["ours"], 1),
           "workers_per_gpu_for_1600_pairs_s": int(-(-1600 // best["ours"])), "rounds": rounds,
           "all_rates": {k: [round(r, 1) for r in v] for k, v in rates.items()}}
    if "baseline" in best:
        out["baseline_pairs_per_s"] = round(best["baseline"], 1)
        out["speedup_vs_baseline"] = round(best["ours"] / best["baseline"], 2)
        out["baseline"] = f"micronbert/data/shards.py of commit {SUPPLY_BASELINE}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[1_000_000, 8_000_000])
    ap.add_argument("--skip-old", action="store_true", help="leave out the previous index (1 M frames, slow)")
    ap.add_argument("--skip-supply", action="store_true", help="leave out the 224-px shard decoding")
    args = ap.parse_args(argv)
    C.reexec_with_fixed_malloc()
    out = {"benchmark": "pair_index", "commit": C.git_commit(), "machine": C.machine("cpu"),
           "frame_folders": [new_index(n) for n in args.frames],
           "shard_resume": [shard_resume(n) for n in args.frames],
           "name_by_name_frame_folders": [name_by_name(min(args.frames))], "directory_reads": directory_reads()}
    if not args.skip_old:
        out["baseline_frame_folders"] = [old_index(min(args.frames))]
    if not args.skip_supply:
        out["shard_supply"] = shard_supply()
    out["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    C.emit(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
