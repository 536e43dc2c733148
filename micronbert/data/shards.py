"""Tar shards of aligned face frames (or ready frame pairs) for pretraining at scale.

Layout (WebDataset-style: one tar per shard, the files of a sample share a key; readable by the
`webdataset` package or by `iter_shard` here):

    SHARDS/shard-000000.tar      {key}.jpg + {key}.json   (frames: source, source_id, frame, fps)
                                 {key}.t.jpg + {key}.tp.jpg + {key}.json   (pairs: ... frame_tp, delta)
    SHARDS/manifest.json         kind, img_size, shard names and sample counts; written last, atomically

Frames mode keeps each source's frames contiguous and in order, so pairs (I_t, I_{t+δ}) are built
from frames of one source within one shard at read time: δ stays a training-time choice and storage is
one copy of each frame, but a pair never crosses a shard boundary (a source cut by the boundary loses
the pairs across it: at most δ_max anchors per cut). Pairs mode (`--pairs`) stores one ready pair per
anchor frame with δ drawn when sharding: twice the bytes and δ fixed, but every sample is independent.

Streaming (`ShardPairStream`): every epoch the shard order is permuted by (seed, epoch); rank r of W,
DataLoader worker w of K, takes the shards at positions p with p % (W·K) == r·K + w, so ranks and
workers read disjoint shards. Samples pass through a shuffle buffer and are grouped into this rank's
batches; one tar is opened per shard and read sequentially (no file per frame in the hot path). JPEG
decoding happens when a pair leaves the buffer, so the buffer holds compressed bytes.

Resume: the stream is a pure function of (seed, rank, world, worker, workers). Resuming at step s,
each worker replays its own part of the first s batches without decoding a single JPEG (tar reads
and random draws only) and continues from there, so an interrupted run and an uninterrupted one see
the same batches when world size and worker count are unchanged. With a changed world size the
stream restarts from the same epoch position with the new split (pairs/step and the learning-rate
schedule are unchanged, the exact pairs are not); the frame-folder/video pipeline (PairSchedule) is
the one that is exact across world sizes.
"""
from __future__ import annotations

import io
import json
import os
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


class _ShardWriter:
    """Writes shard-NNNNNN.tar files of at most `size` samples, each atomically (tmp name, then rename)."""

    def __init__(self, out: Path, size: int):
        self.out, self.size = out, size
        self.shards: list[dict] = []
        self._tar = None
        self._count = 0
        self._sources: list[int] = []

    def _open(self):
        name = f"shard-{len(self.shards):06d}.tar"
        self._tmp = self.out / f".{name}.tmp"
        self._name = name
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)
        self._count = 0
        self._sources = []

    def _add(self, name: str, data: bytes):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0  # reproducible bytes
        self._tar.addfile(info, io.BytesIO(data))

    def write(self, key: str, files: dict[str, bytes], source_id: int):
        if self._tar is None:
            self._open()
        for ext, data in files.items():
            self._add(f"{key}.{ext}", data)
        self._count += 1
        if not self._sources or self._sources[-1] != source_id:
            self._sources.append(source_id)
        if self._count >= self.size:
            self.close()

    def close(self):
        if self._tar is None:
            return
        self._tar.close()
        with open(self._tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp, self.out / self._name)
        self.shards.append({"name": self._name, "count": self._count, "sources": self._sources})
        self._tar = None


def write_shards(frames: list[str], out: str | os.PathLike, size: int = 1000, img_size: int = 224,
                 pairs: bool = False, fps: float = 30.0, delta_s: tuple[float, float] = (0.04, 0.25),
                 seed: int = 0, quality: int = 95, show_progress: bool = False) -> dict:
    """Write the frames of every source under `frames` (videos, frame folders, folders of those) into
    tar shards of `size` samples at img_size×img_size; returns the manifest."""
    from micronbert.data.frames import iter_video, read_image
    from micronbert.data.pairs import PairSchedule, discover_sources, fit_square
    from micronbert.utils.io import atomic_write_json
    from micronbert.utils.progress import progress

    if size < 1:
        raise MicronbertError("--size must be at least 1")
    out = Path(out)
    if (out / MANIFEST).exists() or any(out.glob("shard-*.tar")):
        raise MicronbertError(f"{out} already holds shards; choose an empty --out")
    out.mkdir(parents=True, exist_ok=True)
    sources = discover_sources(frames, fps)
    writer = _ShardWriter(out, size)
    t0 = time.perf_counter()
    total = 0
    bar = progress(total=sum(s.n_frames for s in sources), desc="shard", unit="frame",
                   disable_override=not show_progress)
    sched = PairSchedule(sources, 1, delta_s, seed, hflip=False) if pairs else None
    try:
        for sid, src in enumerate(sources):
            def frames_of(src=src):
                if src.kind == "video":
                    yield from iter_video(src.path)
                else:
                    for name in src.files:
                        yield read_image(src.path / name)

            meta = {"source": str(src.path), "source_id": sid, "fps": src.fps, "n_frames": src.n_frames}
            if not pairs:
                for t, frame in enumerate(frames_of()):
                    jpg = _encode_jpeg(fit_square(frame, img_size), quality)
                    writer.write(f"s{sid:06d}_f{t:06d}", {"jpg": jpg, "json": json.dumps({**meta, "frame": t}).encode()},
                                 sid)
                    total += 1
                    bar.update(1)
                continue
            # pairs: one per anchor frame, δ drawn reproducibly from (seed, source, frame)
            encoded = [_encode_jpeg(fit_square(f, img_size), quality) for f in frames_of()]
            bar.update(len(encoded))
            n = len(encoded)
            dmin, dmax = int(sched.dmin[sid]), int(sched.dmax[sid])
            for t in range(max(0, n - dmin)):
                rng = np.random.default_rng([seed, sid, t])
                d = int(rng.integers(dmin, max(dmin, min(dmax, n - 1 - t)) + 1))
                writer.write(f"s{sid:06d}_f{t:06d}",
                             {"t.jpg": encoded[t], "tp.jpg": encoded[t + d],
                              "json": json.dumps({**meta, "frame": t, "frame_tp": t + d, "delta": d}).encode()}, sid)
                total += 1
        writer.close()
    finally:
        bar.close()
        if writer._tar is not None:  # an error mid-shard: leave no partial tar behind
            writer._tar.close()
            Path(writer._tmp).unlink(missing_ok=True)
    manifest = {"format": FORMAT, "kind": "pairs" if pairs else "frames", "img_size": img_size,
                "samples": total, "shard_size": size, "delta_s": list(delta_s), "seed": seed,
                "sources": [{"path": str(s.path), "fps": s.fps, "n_frames": s.n_frames} for s in sources],
                "shards": writer.shards, "seconds": round(time.perf_counter() - t0, 2)}
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


def iter_shard(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of one tar, read sequentially (streaming mode)."""
    key, files = None, {}
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            base = os.path.basename(member.name)
            k, _, ext = base.partition(".")
            if k != key and key is not None:
                yield key, files
                files = {}
            key = k
            files[ext] = tar.extractfile(member).read()
    if key is not None:
        yield key, files


@dataclass
class _Spec:
    a: bytes
    b: bytes
    flip: bool


class ShardPairStream(torch.utils.data.IterableDataset):
    """Endless stream of this rank's batches (frames_t, frames_tp), uint8 (b, H, W, 3), from shards.

    `batch` is the per-rank batch (global batch / world). `start_step` skips the batches a run already
    consumed (see the module docstring). `trace` (a folder) records which shards each rank/worker read.
    """

    def __init__(self, dirs: list[str | os.PathLike], batch: int, img_size: int, delta_s=(0.04, 0.25),
                 seed: int = 0, hflip: bool = True, rank: int = 0, world: int = 1, start_step: int = 0,
                 buffer: int = 512, trace: str | os.PathLike | None = None):
        super().__init__()
        self.shards: list[tuple[str, dict]] = []
        self.kind = None
        for d in dirs:
            m = load_manifest(d)
            if self.kind not in (None, m["kind"]):
                raise MicronbertError("cannot mix frame shards and pair shards in one run")
            self.kind = m["kind"]
            self.shards += [(str(Path(d) / s["name"]), m) for s in m["shards"]]
        if not self.shards:
            raise MicronbertError(f"no shards in {[str(d) for d in dirs]}")
        self.samples = sum(s["count"] for m in {id(m): m for _, m in self.shards}.values() for s in m["shards"])
        self.batch, self.img_size, self.delta_s = batch, img_size, tuple(delta_s)
        self.seed, self.hflip, self.rank, self.world = seed, hflip, rank, world
        self.start_step, self.buffer = start_step, max(buffer, batch)
        self.trace = Path(trace) if trace else None

    def _worker(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        return (info.id, info.num_workers) if info else (0, 1)

    def _my_shards(self, epoch: int, worker: int, workers: int) -> list[tuple[str, dict]]:
        slots = self.world * workers
        if len(self.shards) < slots:
            raise MicronbertError(f"{len(self.shards)} shards cannot be split over {self.world} ranks × "
                                  f"{workers} workers; write smaller shards (--size) or use fewer workers")
        order = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.shards))
        mine = self.rank * workers + worker
        return [self.shards[i] for p, i in enumerate(order) if p % slots == mine]

    def _pairs_of_shard(self, path: str, manifest: dict, rng: np.random.Generator) -> Iterator[_Spec]:
        if manifest["kind"] == "pairs":
            for _, f in iter_shard(path):
                yield _Spec(f["t.jpg"], f["tp.jpg"], bool(self.hflip and rng.random() < 0.5))
            return
        # frames: group by source (contiguous), pair frames of one source within [δmin, δmax]
        by_source: dict[int, list[tuple[int, bytes]]] = {}
        fps: dict[int, float] = {}
        for _, f in iter_shard(path):
            meta = json.loads(f["json"])
            sid = int(meta["source_id"])
            by_source.setdefault(sid, []).append((int(meta["frame"]), f["jpg"]))
            fps[sid] = float(meta["fps"])
        for sid, items in by_source.items():
            nums = np.array([t for t, _ in items])
            dmin = max(1, int(round(self.delta_s[0] * fps[sid])))
            dmax = max(dmin, int(round(self.delta_s[1] * fps[sid])))
            for i, (t, jpg) in enumerate(items):
                # partners: later frames of this source in this shard within [t+δmin, t+δmax]
                lo, hi = np.searchsorted(nums, t + dmin), np.searchsorted(nums, t + dmax, side="right")
                if lo >= hi:
                    continue
                j = int(rng.integers(lo, hi))
                yield _Spec(jpg, items[j][1], bool(self.hflip and rng.random() < 0.5))

    def _decode(self, data: bytes) -> np.ndarray:
        from micronbert.data.pairs import fit_square

        return fit_square(decode_jpeg(data), self.img_size)

    def _spec_batches(self, worker: int, workers: int) -> Iterator[list[_Spec]]:
        """This worker's batches as undecoded pair specs: tar reads and random draws only."""
        rng = np.random.default_rng([self.seed, self.rank, self.world, worker, workers])
        buf: list[_Spec] = []
        out: list[_Spec] = []
        epoch = 0
        while True:
            produced = 0
            for path, manifest in self._my_shards(epoch, worker, workers):
                if self.trace is not None:
                    self.trace.mkdir(parents=True, exist_ok=True)
                    with open(self.trace / f"rank{self.rank}-worker{worker}.txt", "a") as fh:
                        fh.write(f"{epoch} {Path(path).name}\n")
                for spec in self._pairs_of_shard(path, manifest, rng):
                    produced += 1
                    if len(buf) < self.buffer:  # fill the shuffle buffer first
                        buf.append(spec)
                        continue
                    i = int(rng.integers(len(buf)))
                    out.append(buf[i])
                    buf[i] = spec
                    if len(out) == self.batch:
                        yield out
                        out = []
            if not produced:
                raise MicronbertError(f"rank {self.rank} worker {worker}: its shards hold no frame pairs within δ")
            epoch += 1

    def _collate(self, specs: list[_Spec]):
        a, b = [], []
        for s in specs:
            fa, fb = self._decode(s.a), self._decode(s.b)
            if s.flip:
                fa, fb = fa[:, ::-1], fb[:, ::-1]
            a.append(fa)
            b.append(fb)
        return torch.from_numpy(np.stack(a)), torch.from_numpy(np.stack(b))

    def __iter__(self):
        worker, workers = self._worker()
        # The DataLoader hands out batches round-robin: batch i comes from worker i % K. In a run resumed
        # at step s, worker w must continue the stream that produced global batches s+w, s+w+K, ...:
        # that of worker (s+w) % K, past its first (s+w) // K batches, skipped undecoded.
        role = (worker + self.start_step) % workers
        skip = (worker + self.start_step) // workers
        for i, specs in enumerate(self._spec_batches(role, workers)):
            if i >= skip:
                yield self._collate(specs)
