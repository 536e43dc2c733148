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

Streaming the pairs of shards for training (shuffle windows, ranks and workers, resume): see
micronbert/data/shard_stream.py.
"""
from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

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
