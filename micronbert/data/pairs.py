"""Frame pairs (I_t, I_{t+δ}) for pretraining, from videos, frame folders, or folders of those.

The schedule is a pure function of (seed, step, rank): every global batch is drawn from an epoch-wise
permutation of all anchor frames, and each rank takes its own contiguous share of it. So a resumed run
sees exactly the batches an uninterrupted one would, and a run resumed with a different number of
ranks continues the same global schedule.

The index stays flat at millions of frames: anchors are implicit (per-source counts and their
cumulative offsets, O(sources) memory), the epoch permutation is a keyed bijection computed on demand
(a Feistel network: nothing materialised, resume at any step is O(1)), δ and the flip are hashes of
(seed, epoch, position), and a frame folder's file names are one pattern (prefix, number, suffix)
instead of one string per frame.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from micronbert.data.frames import FrameListing, VideoReader, is_video, number_names, read_image, scan_frames, video_info
from micronbert.errors import MicronbertError


class FrameNames:
    """The file names of one frame folder in number order, stored compactly: `prefix + number (zero-
    padded to width) + suffix` with the numbers a range (O(1)) or an int32 array; names that follow no
    single pattern are kept in one bytes blob with offsets (still no Python string per frame).
    Built from a FrameListing (scan_frames) or a list of (number, name) in number order."""

    def __init__(self, listing: FrameListing | list[tuple[int, str]]):
        if not isinstance(listing, FrameListing):
            listing = number_names([name for _, name in listing])
        self.n = len(listing)
        self.prefix = self.suffix = ""
        self.width, self.start, self.numbers, self.blob, self.offsets = 0, 0, None, None, None
        if not self.n:
            return
        if listing.pattern is not None:
            self.prefix, self.width, self.suffix = listing.pattern
            numbers = listing.numbers
            if numbers[-1] - numbers[0] + 1 == self.n:
                self.start = int(numbers[0])  # contiguous numbers: nothing per frame
            else:
                small = numbers[-1] <= np.iinfo(np.int32).max and numbers[0] >= 0
                self.numbers = numbers.astype(np.int32 if small else np.int64)
            return
        encoded = [name.encode() for name in listing.names]
        self.blob = b"".join(encoded)
        self.offsets = np.zeros(self.n + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, t: int) -> str:
        if not 0 <= t < self.n:
            raise IndexError(t)
        if self.blob is not None:
            return self.blob[self.offsets[t]:self.offsets[t + 1]].decode()
        num = self.start + t if self.numbers is None else int(self.numbers[t])
        return f"{self.prefix}{num:0{self.width}d}{self.suffix}"  # the pattern verified at build

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.numbers, self.offsets) if a is not None) + len(self.blob or b"")


@dataclass
class FrameSource:
    kind: str                 # "video", "folder", or another reader's kind (e.g. "cache")
    path: Path
    fps: float
    n_frames: int
    names: FrameNames | None = None  # folder: frame file names in number order
    # Any other kind: a picklable object with .frame(t) -> RGB uint8 (H, W, 3), e.g. a face-cache clip
    # (built by the layer that knows that format: data never imports faces).
    reader: object | None = None

    @property
    def files(self) -> list[str]:
        return [self.names[t] for t in range(len(self.names))] if self.names is not None else []


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
    listing = scan_frames(p)
    if len(listing) >= 2:
        out.append(FrameSource("folder", p, fps, len(listing), FrameNames(listing)))
    for name in sorted(listing.others):  # never a stat per frame file: only the non-frame entries
        child = p / name
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


class FrameStore:
    """Reads frame t of a source as uint8 (size, size, 3). Videos are read by seeking to the frame
    (PyAV, a few open files per process), never decoded whole; a frame that cannot be decoded raises
    MicronbertError naming the file (never a clamped neighbour)."""

    def __init__(self, sources: list[FrameSource], size: int, open_videos: int = 4):
        self.sources, self.size = sources, size
        self._videos: dict[str, VideoReader] = {}
        self._open_videos = open_videos

    def _video(self, path: Path) -> VideoReader:
        key = str(path)
        reader = self._videos.pop(key, None)
        if reader is None:
            reader = VideoReader(path)
            if len(self._videos) >= self._open_videos:  # close the least recently used
                self._videos.pop(next(iter(self._videos))).close()
        self._videos[key] = reader
        return reader

    def get(self, src: int, t: int) -> np.ndarray:
        s = self.sources[src]
        if s.kind == "video":
            return fit_square(self._video(s.path).frame(t), self.size)
        if s.reader is not None:
            return fit_square(s.reader.frame(t), self.size)
        return fit_square(read_image(s.path / s.names[t]), self.size)

    def __getstate__(self):  # DataLoader workers open their own video files
        return {**self.__dict__, "_videos": {}}


_M64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic): a fast, well-spread hash."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _key(*parts: int) -> np.uint64:
    h = np.array([0x5EED], np.uint64)
    for v in parts:
        h = _mix64(h ^ np.array([int(v) & _M64], np.uint64))
    return h[0]


def keyed_permutation(pos: np.ndarray, n: int, key: int) -> np.ndarray:
    """The images of positions `pos` under a pseudo-random bijection of [0, n) chosen by `key`: a
    4-round balanced Feistel network on the smallest even-bit domain ≥ n, with cycle walking back into
    [0, n). O(len(pos)) time, no memory per element of the permutation."""
    bits = max(2, int(n - 1).bit_length())
    bits += bits % 2
    half = bits // 2
    mask = np.uint64((1 << half) - 1)
    keys = [_key(key, r) for r in range(4)]
    x = np.asarray(pos, dtype=np.uint64).copy()
    todo = np.ones(len(x), bool)
    while todo.any():
        v = x[todo]
        left, right = v >> np.uint64(half), v & mask
        for k in keys:
            left, right = right, left ^ (_mix64(right ^ k) & mask)
        v = (left << np.uint64(half)) | right
        x[todo] = v
        todo[todo] = v >= np.uint64(n)
    return x.astype(np.int64)


def _uniform(key: np.uint64, pos: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from (key, position): 53 bits of a hash."""
    return (_mix64(np.asarray(pos, np.uint64) ^ key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class PairSchedule:
    """Deterministic (seed, step, rank) -> (source, t, t+δ, hflip) pair specs, over an implicit anchor
    index: anchor a of source i is frame a; source i owns global anchors [offsets[i], offsets[i+1])."""

    def __init__(self, sources: list[FrameSource], batch_size: int, delta_s: tuple[float, float], seed: int,
                 hflip: bool = True):
        self.sources, self.batch_size, self.seed, self.hflip = sources, batch_size, seed, hflip
        self.n_frames = np.array([s.n_frames for s in sources], np.int64)
        fps = np.array([s.fps for s in sources], np.float64)
        dmin = np.maximum(1, np.round(delta_s[0] * fps)).astype(np.int64)
        self.dmax = np.maximum(dmin, np.round(delta_s[1] * fps)).astype(np.int64)
        self.dmin = np.minimum(dmin, np.maximum(self.n_frames - 1, 1))
        counts = np.maximum(self.n_frames - self.dmin, 0)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self.offsets[-1] == 0:
            raise MicronbertError("no frame pairs: every source is shorter than the smallest δ")

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.n_frames, self.dmin, self.dmax, self.offsets))

    def epoch_of(self, step: int) -> float:
        return step * self.batch_size / len(self)

    def spec_arrays(self, positions: np.ndarray) -> tuple[np.ndarray, ...]:
        """(source, t, t+δ, flip) arrays for global sample positions (step · batch + i)."""
        n = len(self)
        positions = np.asarray(positions, np.int64)
        epochs, pos = np.divmod(positions, n)
        src = np.empty(len(positions), np.int64)
        t = np.empty(len(positions), np.int64)
        u_delta = np.empty(len(positions))
        u_flip = np.empty(len(positions))
        for e in np.unique(epochs):
            sel = epochs == e
            anchor = keyed_permutation(pos[sel], n, int(_key(self.seed, e, 11)))
            s = np.searchsorted(self.offsets, anchor, side="right") - 1
            src[sel], t[sel] = s, anchor - self.offsets[s]
            u_delta[sel] = _uniform(_key(self.seed, e, 1), pos[sel])
            u_flip[sel] = _uniform(_key(self.seed, e, 2), pos[sel])
        lo = self.dmin[src]
        hi = np.maximum(lo, np.minimum(self.dmax[src], self.n_frames[src] - 1 - t))
        d = lo + np.minimum((u_delta * (hi - lo + 1)).astype(np.int64), hi - lo)
        flip = (u_flip < 0.5) & self.hflip
        return src, t, t + d, flip

    def specs(self, step: int, rank: int = 0, world: int = 1) -> list[tuple[int, int, int, bool]]:
        if self.batch_size % world:
            raise MicronbertError(f"batch size {self.batch_size} is not divisible by {world} ranks")
        local = self.batch_size // world
        first = step * self.batch_size + rank * local
        src, t, t2, flip = self.spec_arrays(np.arange(first, first + local))
        return [(int(a), int(b), int(c), bool(f)) for a, b, c, f in zip(src, t, t2, flip)]


class PairBatches(torch.utils.data.Dataset):
    """Item i = the i-th step's batch for this rank: (frames_t, frames_tp) uint8 (b, H, W, 3).

    A pair whose frame cannot be read is reported on stderr (once per file) and replaced by the pair at
    the same position of a later epoch: the batch keeps its size and stays a function of the step."""

    max_replacements = 8

    def __init__(self, schedule: PairSchedule, store: FrameStore, start_step: int, steps: int, rank: int = 0,
                 world: int = 1):
        self.schedule, self.store = schedule, store
        self.start_step, self.steps, self.rank, self.world = start_step, steps, rank, world
        self.reported: set[str] = set()

    def __len__(self) -> int:
        return self.steps - self.start_step

    def _pair(self, position: int):
        import cv2

        n = len(self.schedule)
        for attempt in range(self.max_replacements + 1):
            src, t, t2, flip = (int(a[0]) if a.dtype != bool else bool(a[0])
                                for a in self.schedule.spec_arrays(np.array([position + attempt * n])))
            try:
                fa, fb = self.store.get(src, t), self.store.get(src, t2)
            except MicronbertError as exc:
                where = str(self.schedule.sources[src].path)
                if where not in self.reported:
                    self.reported.add(where)
                    print(f"warning: skipped a pair with an unreadable frame: {exc}", file=sys.stderr)
                continue
            # cv2.flip copies with SIMD; a reversed numpy view would make np.stack copy byte by byte
            return (cv2.flip(fa, 1), cv2.flip(fb, 1)) if flip else (fa, fb)
        raise MicronbertError(f"{self.max_replacements + 1} pairs in a row had unreadable frames "
                              f"(last: {where}); check the data")

    def __getitem__(self, i: int):
        local = self.schedule.batch_size // self.world
        first = (self.start_step + i) * self.schedule.batch_size + self.rank * local
        a, b = zip(*(self._pair(first + j) for j in range(local)))
        return torch.from_numpy(np.stack(a)), torch.from_numpy(np.stack(b))
