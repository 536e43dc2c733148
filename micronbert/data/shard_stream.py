"""Streaming frame pairs from tar shards (written by micronbert/data/shards.py) for pretraining.

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

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from micronbert.data.shards import iter_shard, load_manifest
from micronbert.errors import MicronbertError


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
