"""Frame pairs (I_t, I_{t+δ}) for pretraining, from videos, frame folders, or folders of those.

The schedule is a pure function of (seed, step, rank): every global batch is drawn from an epoch-wise
permutation of all anchor frames, and each rank takes its own contiguous share of it. So a resumed run
sees exactly the batches an uninterrupted one would, and a run resumed with a different number of
ranks continues the same global schedule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from micronbert.data.frames import is_video, list_frames, read_image, video_info, iter_video
from micronbert.errors import MicronbertError


@dataclass
class FrameSource:
    kind: str                 # "video" or "folder"
    path: Path
    fps: float
    n_frames: int
    files: list[str] = field(default_factory=list)  # folder: frame file names in number order


def discover_sources(paths, fps: float = 30.0) -> list[FrameSource]:
    """Expand the user's PATHs into frame sources; a folder of folders/videos is searched recursively."""
    sources: list[FrameSource] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise MicronbertError(f"frames path not found: {p}")
        before = len(sources)
        _collect(p, fps, sources)
        if len(sources) == before:
            raise MicronbertError(f"no videos or frame folders with at least 2 frames under {p}")
    return sources


def _collect(p: Path, fps: float, out: list[FrameSource]) -> None:
    if p.is_file():
        if is_video(p):
            info = video_info(p)
            if info.n_frames >= 2:
                out.append(FrameSource("video", p, info.fps, info.n_frames))
        return
    frames = list_frames(p)
    if len(frames) >= 2:
        out.append(FrameSource("folder", p, fps, len(frames), [name for _, name in frames]))
    for child in sorted(p.iterdir()):
        if child.is_dir() or is_video(child):
            _collect(child, fps, out)


def fit_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to `size` and centre-crop to size×size (aligned faces pass unchanged)."""
    import cv2

    h, w = img.shape[:2]
    if (h, w) != (size, size):
        s = size / min(h, w)
        img = cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        h, w = img.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        img = img[top:top + size, left:left + size]
    return np.ascontiguousarray(img)


@lru_cache(maxsize=8)
def _decoded_video(path: str, size: int) -> np.ndarray:
    # Short face videos are decoded once per process; long ones belong in shards (`micronbert shard`).
    return np.stack([fit_square(f, size) for f in iter_video(path)])


class FrameStore:
    """Reads frame t of a source as uint8 (size, size, 3)."""

    def __init__(self, sources: list[FrameSource], size: int):
        self.sources, self.size = sources, size

    def get(self, src: int, t: int) -> np.ndarray:
        s = self.sources[src]
        if s.kind == "video":
            frames = _decoded_video(str(s.path), self.size)
            return frames[min(t, len(frames) - 1)]
        return fit_square(read_image(s.path / s.files[t]), self.size)


class PairSchedule:
    """Deterministic (seed, step, rank) -> list of (source, t, t+δ, hflip) pair specs."""

    def __init__(self, sources: list[FrameSource], batch_size: int, delta_s: tuple[float, float], seed: int,
                 hflip: bool = True):
        self.sources, self.batch_size, self.seed, self.hflip = sources, batch_size, seed, hflip
        anchors, lo, hi = [], [], []
        for i, s in enumerate(sources):
            dmin = max(1, int(round(delta_s[0] * s.fps)))
            dmax = max(dmin, int(round(delta_s[1] * s.fps)))
            dmin = min(dmin, s.n_frames - 1)
            for t in range(s.n_frames - dmin):
                anchors.append((i, t))
            lo.append(dmin)
            hi.append(dmax)
        if not anchors:
            raise MicronbertError("no frame pairs: every source is shorter than the smallest δ")
        self.anchors = np.array(anchors, dtype=np.int64)
        self.dmin, self.dmax = np.array(lo), np.array(hi)

    def __len__(self) -> int:
        return len(self.anchors)

    @lru_cache(maxsize=4)
    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.anchors))

    def epoch_of(self, step: int) -> float:
        return step * self.batch_size / len(self.anchors)

    def specs(self, step: int, rank: int = 0, world: int = 1) -> list[tuple[int, int, int, bool]]:
        if self.batch_size % world:
            raise MicronbertError(f"batch size {self.batch_size} is not divisible by {world} ranks")
        local = self.batch_size // world
        out = []
        for g in range(step * self.batch_size + rank * local, step * self.batch_size + (rank + 1) * local):
            epoch, pos = divmod(g, len(self.anchors))
            src, t = self.anchors[self._perm(epoch)[pos]]
            rng = np.random.default_rng([self.seed, epoch, pos, 1])
            n = self.sources[src].n_frames
            hi = min(self.dmax[src], n - 1 - t)
            d = int(rng.integers(self.dmin[src], max(self.dmin[src], hi) + 1))
            flip = bool(self.hflip and rng.random() < 0.5)
            out.append((int(src), int(t), int(t + d), flip))
        return out


class PairBatches(torch.utils.data.Dataset):
    """Item i = the i-th step's batch for this rank: (frames_t, frames_tp) uint8 (b, H, W, 3)."""

    def __init__(self, schedule: PairSchedule, store: FrameStore, start_step: int, steps: int, rank: int = 0,
                 world: int = 1):
        self.schedule, self.store = schedule, store
        self.start_step, self.steps, self.rank, self.world = start_step, steps, rank, world

    def __len__(self) -> int:
        return self.steps - self.start_step

    def __getitem__(self, i: int):
        a, b = [], []
        for src, t, t2, flip in self.schedule.specs(self.start_step + i, self.rank, self.world):
            fa, fb = self.store.get(src, t), self.store.get(src, t2)
            if flip:
                fa, fb = fa[:, ::-1], fb[:, ::-1]
            a.append(fa)
            b.append(fb)
        return torch.from_numpy(np.stack(a)), torch.from_numpy(np.stack(b))
