"""Tar shards of aligned face frames (or ready frame pairs) for pretraining at scale.

Layout (WebDataset-style: one tar per shard, the files of a sample share a key; readable by the
`webdataset` package or by `iter_shard` here):

    SHARDS/shard-000000.tar      {key}.jpg + {key}.json   (frames: source, source_id, frame, fps)
                                 {key}.t.jpg + {key}.tp.jpg + {key}.json   (pairs: ... frame_tp, delta)
    SHARDS/manifest.json         kind, img_size, per shard: name, samples, pairs, sources; written last

Writing mixes sources: every source is cut into chunks of `chunk` consecutive frames (anchors, in
pairs mode), the chunks of all sources are put in one seeded random order, and that sequence is cut
into shards of `size` samples. A shard then holds about size/chunk chunks from as many sources, while
a frame's neighbours (its pair partners) stay in its shard. Shards are independent jobs, written in
parallel by `workers` processes, each tar atomically (temporary name, then rename).

Pairs: in frames mode every frame whose source has another frame in the same shard is one anchor; its
partner is a later frame of that source within [δmin, δmax] (else an earlier one, the pair ordered in
time; else the nearest one), drawn from (seed, epoch, shard). So the number of pairs of a shard is a
fact of the manifest, known without reading the tar. Pairs mode stores one ready pair per anchor.

Streaming (`ShardPairStream`): every epoch the shard order is permuted by (seed, epoch); rank r of W,
DataLoader worker w of K, takes the shards at positions p with p % (W·K) == r·K + w (disjoint shards
for ranks and workers). A worker reads its shards a window at a time (enough shards to hold
`buffer` samples), shuffles all pairs of the window together, and cuts its stream into batches. JPEGs
are decoded only when a batch is built.

Resume: the stream is a pure function of (seed, rank, world, worker, workers), and the pair count of
every window comes from the manifest, so resuming at step s skips whole windows by arithmetic: only
the window the run stopped in is read again (its first pairs dropped undecoded). Resume time does not
grow with the tars consumed, and the batches equal an uninterrupted run's when world size and worker
count are unchanged. With a changed world size the stream restarts the epoch position with the new
split (pairs/step and the learning-rate schedule are unchanged, the exact pairs are not); the frame-
folder/video pipeline (PairSchedule) is the one that is exact across world sizes.
"""
from __future__ import annotations

import io
import json
import os
import io
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from micronbert.errors import MicronbertError

MANIFEST = "manifest.json"
FORMAT = "micronbert-shards/1"


def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MicronbertError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MicronbertError("unreadable JPEG in a shard")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    """One shard, atomically: a killed writer leaves a hidden .tmp file, never a partial tar."""
    tmp = path.parent / f".{path.name}.tmp"
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, files in samples:
                for ext, data in files.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    info.mtime = 0  # reproducible bytes
                    tar.addfile(info, io.BytesIO(data))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _plan(sources, size: int, chunk: int, pairs: bool, dmin: np.ndarray, seed: int) -> list[list[tuple[int, int, int]]]:
    """Shards as lists of (source, first, end) segments of samples: chunks of every source in one
    seeded random order, cut into blocks of `size` samples."""
    chunks = []
    for sid, src in enumerate(sources):
        n = max(0, src.n_frames - int(dmin[sid])) if pairs else src.n_frames
        starts = list(range(0, n, chunk))
        if len(starts) > 1 and n - starts[-1] < 2:
            starts.pop()  # a 1-frame tail joins the chunk before it (a lone frame has no partner)
        chunks += [(sid, a, starts[i + 1] if i + 1 < len(starts) else n) for i, a in enumerate(starts)]
    order = np.random.default_rng([seed, 9]).permutation(len(chunks))
    shards: list[list[tuple[int, int, int]]] = [[]]
    room = size
    for i in order:
        sid, a, e = chunks[i]
        while a < e:
            take = min(room, e - a)
            shards[-1].append((sid, a, a + take))
            a, room = a + take, room - take
            if room == 0:
                shards.append([])
                room = size
    return [sh for sh in shards if sh]


class _SourceFrames:
    """Frames [a, e) of one source, read in order (videos: one seek, then decoding forward)."""

    def __init__(self, src):
        self.src = src

    def read(self, t: int) -> np.ndarray:
        from micronbert.data.frames import VideoReader, read_image

        s = self.src
        if s.reader is not None:
            return s.reader.frame(t)
        if s.kind == "video":
            if getattr(self, "_video", None) is None:
                self._video = VideoReader(s.path)
            return self._video.frame(t)
        return read_image(s.path / s.names[t])

    def close(self):
        if getattr(self, "_video", None) is not None:
            self._video.close()


def _write_one(job) -> dict:
    """Worker job: encode and write one shard; unreadable frames are skipped and listed."""
    from micronbert.data.pairs import fit_square

    index, segments, sources, out, img_size, quality, pairs, dmin, dmax, seed = job
    samples, skipped, per_source = [], [], {}
    for sid, a, e in segments:
        src = sources[sid]
        reader = _SourceFrames(src)
        meta = {"source": str(src.path), "source_id": sid, "fps": src.fps, "n_frames": src.n_frames}
        cache: dict[int, bytes | None] = {}

        def jpeg(t):
            if t not in cache:
                try:
                    cache[t] = _encode_jpeg(fit_square(reader.read(t), img_size), quality)
                except MicronbertError as exc:
                    cache[t] = None
                    skipped.append(f"{src.path} frame {t}: {exc}")
            return cache[t]

        try:
            for t in range(a, e):
                if not pairs:
                    data = jpeg(t)
                    if data is not None:
                        samples.append((f"s{sid:06d}_f{t:06d}",
                                        {"jpg": data, "json": json.dumps({**meta, "frame": t}).encode()}))
                        per_source[sid] = per_source.get(sid, 0) + 1
                    continue
                rng = np.random.default_rng([seed, sid, t])
                d = int(rng.integers(dmin[sid], max(dmin[sid], min(dmax[sid], src.n_frames - 1 - t)) + 1))
                ta, tb = jpeg(t), jpeg(t + d)
                if ta is None or tb is None:
                    continue
                samples.append((f"s{sid:06d}_f{t:06d}", {"t.jpg": ta, "tp.jpg": tb, "json": json.dumps(
                    {**meta, "frame": t, "frame_tp": t + d, "delta": d}).encode()}))
                per_source[sid] = per_source.get(sid, 0) + 1
                for old in [k for k in cache if k < t]:  # keep only frames still ahead
                    del cache[old]
        finally:
            reader.close()
    name = f"shard-{index:06d}.tar"
    if samples:
        _write_tar(Path(out) / name, samples)
    n_pairs = len(samples) if pairs else sum(c for c in per_source.values() if c >= 2)
    return {"name": name, "count": len(samples), "pairs": n_pairs, "sources": sorted(per_source),
            "skipped": skipped}


def write_shards(frames: list[str] | None, out: str | os.PathLike, size: int = 1000, img_size: int = 224,
                 pairs: bool = False, fps: float = 30.0, delta_s: tuple[float, float] = (0.04, 0.25),
                 seed: int = 0, quality: int = 95, show_progress: bool = False, chunk: int = 64,
                 workers: int = 1, sources=None) -> dict:
    """Write the frames of every source under `frames` (videos, frame folders, folders of those; or
    ready FrameSource objects in `sources`) into tar shards of `size` samples at img_size×img_size,
    sources mixed in chunks of `chunk` frames (see the module docstring); returns the manifest."""
    from micronbert.data.pairs import PairSchedule, discover_sources
    from micronbert.utils.io import atomic_write_json
    from micronbert.utils.progress import progress

    if size < 1 or chunk < 2 or workers < 1:
        raise MicronbertError("--size and --workers must be at least 1, --chunk at least 2")
    out = Path(out)
    if (out / MANIFEST).exists() or any(out.glob("shard-*.tar")):
        raise MicronbertError(f"{out} already holds shards; choose an empty --out")
    out.mkdir(parents=True, exist_ok=True)
    sources = list(sources) if sources is not None else discover_sources(frames, fps)
    sched = PairSchedule(sources, 1, delta_s, seed, hflip=False)
    dmin, dmax = sched.dmin.astype(int).tolist(), sched.dmax.astype(int).tolist()
    plan = _plan(sources, size, chunk, pairs, sched.dmin, seed)
    t0 = time.perf_counter()
    jobs = [(i, seg, sources, str(out), img_size, quality, pairs, dmin, dmax, seed) for i, seg in enumerate(plan)]
    bar = progress(total=len(jobs), desc="shard", unit="shard", disable_override=not show_progress)
    records = []
    try:
        if workers > 1 and len(jobs) > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
                for rec in pool.imap(_write_one, jobs):
                    records.append(rec)
                    bar.update(1)
        else:
            for job in jobs:
                records.append(_write_one(job))
                bar.update(1)
    finally:
        bar.close()
    skipped = [line for r in records for line in r.pop("skipped")]
    for line in skipped[:20]:
        print(f"warning: skipped unreadable frame {line}", file=sys.stderr)
    if len(skipped) > 20:
        print(f"warning: ... {len(skipped) - 20} more unreadable frames skipped (listed in the manifest)",
              file=sys.stderr)
    shards = [r for r in records if r["count"]]
    manifest = {"format": FORMAT, "kind": "pairs" if pairs else "frames", "img_size": img_size,
                "samples": sum(r["count"] for r in shards), "shard_size": size, "chunk": chunk,
                "delta_s": list(delta_s), "seed": seed,
                "sources": [{"path": str(s.path), "fps": s.fps, "n_frames": s.n_frames} for s in sources],
                "shards": shards, "skipped": skipped, "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def is_shard_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_manifest(path: str | os.PathLike) -> dict:
    p = Path(path) / MANIFEST
    try:
        m = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MicronbertError(f"cannot read shard manifest {p}: {exc}") from exc
    if m.get("format") != FORMAT:
        raise MicronbertError(f"{p}: not a {FORMAT} manifest")
    return m


def _ustar_members(data: bytes) -> Iterator[tuple[str, bytes]] | None:
    """(name, contents) of each regular file of a plain USTAR tar held in memory (what write_shards
    writes), read from the 512-byte headers directly: tarfile's per-member objects cost more than
    decoding. None when the tar uses anything else (PAX/GNU headers, links): the caller uses tarfile."""
    members, off = [], 0
    while off + 512 <= len(data):
        head = data[off:off + 512]
        if head == bytes(512):
            return iter(members)
        kind = head[156:157]
        try:
            size = int(head[124:136].rstrip(b"\0 ").decode() or "0", 8)
        except ValueError:
            return None
        if kind not in (b"0", b"\0", b"5") or head[257:262] not in (b"ustar", bytes(5)):
            return None
        name = head[:100].split(b"\0", 1)[0]
        prefix = head[345:500].split(b"\0", 1)[0]
        start, off = off + 512, off + 512 + (size + 511) // 512 * 512
        if start + size > len(data):
            return None  # truncated: tarfile says so in its own words
        if kind != b"5":
            full = (prefix + b"/" + name) if prefix else name
            members.append((full.decode("utf-8", "surrogateescape"), data[start:start + size]))
    return None


def iter_shard(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of one tar, in order (one sequential read)."""
    with open(path, "rb") as fh:
        data = fh.read()
    members = _ustar_members(data)
    if members is None:
        members = _tarfile_members(io.BytesIO(data))
    key, files = None, {}
    for name, contents in members:
        k, _, ext = os.path.basename(name).partition(".")
        if k != key and key is not None:
            yield key, files
            files = {}
        key = k
        files[ext] = contents
    if key is not None:
        yield key, files


def _tarfile_members(fh) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=fh, mode="r|") as tar:
        for member in tar:
            if member.isfile():
                yield member.name, tar.extractfile(member).read()


@dataclass
class _Spec:
    a: bytes
    b: bytes
    flip: bool
    source: int = -1


class ShardPairStream(torch.utils.data.IterableDataset):
    """Endless stream of this rank's batches (frames_t, frames_tp), uint8 (b, H, W, 3), from shards.

    `batch` is the per-rank batch (global batch / world). `start_step` skips the batches a run already
    consumed (see the module docstring). `buffer`: pairs shuffled together (whole shards, at least one).
    `trace` (a folder) records which shards each rank/worker read.
    """

    def __init__(self, dirs: list[str | os.PathLike], batch: int, img_size: int, delta_s=(0.04, 0.25),
                 seed: int = 0, hflip: bool = True, rank: int = 0, world: int = 1, start_step: int = 0,
                 buffer: int = 4096, trace: str | os.PathLike | None = None):
        super().__init__()
        self.shards: list[tuple[str, dict]] = []
        self.kind = None
        pairs = []
        for d in dirs:
            m = load_manifest(d)
            if self.kind not in (None, m["kind"]):
                raise MicronbertError("cannot mix frame shards and pair shards in one run")
            self.kind = m["kind"]
            for s in m["shards"]:
                self.shards.append((str(Path(d) / s["name"]), m))
                pairs.append(int(s.get("pairs", s["count"])))
        if not self.shards:
            raise MicronbertError(f"no shards in {[str(d) for d in dirs]}")
        self.pairs_per_shard = np.array(pairs, np.int64)
        self.samples = int(self.pairs_per_shard.sum())
        if batch < 1 or buffer < 1:
            raise MicronbertError("batch and shuffle buffer must be at least 1")
        self.batch, self.img_size, self.delta_s = batch, img_size, tuple(delta_s)
        self.seed, self.hflip, self.rank, self.world = seed, hflip, rank, world
        self.start_step, self.buffer = start_step, buffer
        mean = max(1.0, self.samples / len(self.shards))
        self.window = max(1, int(np.ceil(buffer / mean)))  # shards whose pairs are shuffled together
        self.trace = Path(trace) if trace else None
        self.reported: set[str] = set()
        self.located = None  # (epoch, window, pairs skipped in it) where the stream started reading

    def _worker(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        return (info.id, info.num_workers) if info else (0, 1)

    def _my_shard_ids(self, epoch: int, worker: int, workers: int) -> list[int]:
        slots = self.world * workers
        if len(self.shards) < slots:
            raise MicronbertError(f"{len(self.shards)} shards cannot be split over {self.world} ranks × "
                                  f"{workers} workers; write smaller shards (--size) or use fewer workers")
        order = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.shards))
        mine = self.rank * workers + worker
        return [int(i) for p, i in enumerate(order) if p % slots == mine]

    def _my_shards(self, epoch: int, worker: int, workers: int) -> list[tuple[str, dict]]:
        return [self.shards[i] for i in self._my_shard_ids(epoch, worker, workers)]

    def _pairs_of_shard(self, index: int, epoch: int) -> list[_Spec]:
        path, manifest = self.shards[index]
        if self.trace is not None:
            self.trace.mkdir(parents=True, exist_ok=True)
            with open(self.trace / f"rank{self.rank}-worker{self._worker()[0]}.txt", "a") as fh:
                fh.write(f"{epoch} {Path(path).name}\n")
        rng = np.random.default_rng([self.seed, epoch, index, 3])
        if manifest["kind"] == "pairs":
            return [_Spec(f["t.jpg"], f["tp.jpg"], False, int(json.loads(f["json"])["source_id"]))
                    for _, f in iter_shard(path)]
        by_source: dict[int, list[tuple[int, bytes]]] = {}
        fps: dict[int, float] = {}
        for _, f in iter_shard(path):
            meta = json.loads(f["json"])
            sid = int(meta["source_id"])
            by_source.setdefault(sid, []).append((int(meta["frame"]), f["jpg"]))
            fps[sid] = float(meta["fps"])
        out = []
        for sid in sorted(by_source):
            items = sorted(by_source[sid], key=lambda x: x[0])
            if len(items) < 2:
                continue
            nums = np.array([t for t, _ in items])
            dmin = max(1, int(round(self.delta_s[0] * fps[sid])))
            dmax = max(dmin, int(round(self.delta_s[1] * fps[sid])))
            for i, (t, jpg) in enumerate(items):
                lo, hi = np.searchsorted(nums, t + dmin), np.searchsorted(nums, t + dmax, side="right")
                if lo < hi:  # a later partner within δ
                    j = int(rng.integers(lo, hi))
                    out.append(_Spec(jpg, items[j][1], False, sid))
                    continue
                lo, hi = np.searchsorted(nums, t - dmax), np.searchsorted(nums, t - dmin, side="right")
                if lo < hi:  # else an earlier one, the pair in time order
                    j = int(rng.integers(lo, hi))
                else:  # else the nearest frame of the source in this shard
                    j = i - 1 if i + 1 == len(items) or (i > 0 and t - nums[i - 1] <= nums[i + 1] - t) else i + 1
                a, b = (items[j][1], jpg) if j < i else (jpg, items[j][1])
                out.append(_Spec(a, b, False, sid))
        return out

    def _windows(self, worker: int, workers: int):
        """(epoch, shard ids, pair count) of this worker's windows, forever, without reading a tar."""
        epoch = 0
        while True:
            ids = self._my_shard_ids(epoch, worker, workers)
            if not self.pairs_per_shard[ids].sum():
                raise MicronbertError(f"rank {self.rank} worker {worker}: its shards hold no frame pairs")
            for k in range(0, len(ids), self.window):
                win = ids[k:k + self.window]
                yield epoch, win, int(self.pairs_per_shard[win].sum())
            epoch += 1

    def spec_batches(self, worker: int = 0, workers: int = 1, skip: int = 0) -> Iterator[list[_Spec]]:
        """This worker's batches as undecoded pair specs, from its `skip`-th on: windows wholly before
        the skipped pairs are passed over by their manifest counts, never read."""
        to_skip = skip * self.batch
        out: list[_Spec] = []
        for epoch, win, count in self._windows(worker, workers):
            if to_skip >= count:
                to_skip -= count
                continue
            if self.located is None:
                self.located = (epoch, list(win), to_skip)
            specs = [sp for i in win for sp in self._pairs_of_shard(i, epoch)]
            if len(specs) != count:
                raise MicronbertError(f"shards {[Path(self.shards[i][0]).name for i in win]} hold {len(specs)} "
                                      f"pairs, their manifest says {count}: the shards were changed after writing")
            rng = np.random.default_rng([self.seed, epoch, win[0], 5])
            flips = rng.random(len(specs)) < 0.5
            for pos in rng.permutation(len(specs))[to_skip:]:
                sp = specs[pos]
                out.append(_Spec(sp.a, sp.b, bool(self.hflip and flips[pos]), sp.source))
                if len(out) == self.batch:
                    yield out
                    out = []
            to_skip = 0

    def _decode_into(self, data, slot: np.ndarray, flip: bool) -> None:
        """Decode one JPEG into its row of the batch: BGR decode, then flip and RGB conversion by
        OpenCV (vectorised) writing straight into the batch; a flipped numpy view would make the
        stacking copy byte by byte (the main cost before)."""
        import cv2

        from micronbert.data.pairs import fit_square

        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise MicronbertError("unreadable JPEG in a shard")
        if img.shape[:2] != slot.shape[:2]:
            img = fit_square(img, self.img_size)
        if flip:
            img = cv2.flip(img, 1)
        cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=slot)

    def _collate(self, specs: list[_Spec]):
        size = self.img_size
        a = np.empty((len(specs), size, size, 3), np.uint8)
        b = np.empty_like(a)
        good = 0
        for s in specs:
            try:
                self._decode_into(s.a, a[good], s.flip)
                self._decode_into(s.b, b[good], s.flip)
            except MicronbertError as exc:  # a damaged JPEG: report once, reuse a good pair of the batch
                if "jpeg" not in self.reported:
                    self.reported.add("jpeg")
                    print(f"warning: skipped a pair in shards: {exc}", file=sys.stderr)
                continue
            good += 1
        if not good:
            raise MicronbertError("a whole batch of shard pairs was unreadable; check the shards")
        for i in range(good, len(specs)):
            a[i], b[i] = a[i % good], b[i % good]
        return torch.from_numpy(a), torch.from_numpy(b)

    def __iter__(self):
        worker, workers = self._worker()
        # The DataLoader hands out batches round-robin: batch i comes from worker i % K. In a run resumed
        # at step s, worker w must continue the stream that produced global batches s+w, s+w+K, ...:
        # that of worker (s+w) % K, past its first (s+w) // K batches (skipped by counts).
        role = (worker + self.start_step) % workers
        skip = (worker + self.start_step) // workers
        for specs in self.spec_batches(role, workers, skip):
            yield self._collate(specs)
