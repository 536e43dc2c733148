"""Reading frames: images from folders (sorted by the number in the name) and videos through PyAV.

Images come back as RGB uint8 arrays of shape (H, W, 3); grayscale sources (SAMM) are replicated to
three channels.

Kept over 350 lines: image folders and videos are the two kinds of frame source and their callers
(data, faces, synth, tests) take both from here; a video module would split one concept in two.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from micronbert.errors import MicronbertError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in the stem


def frame_number(name: str) -> int | None:
    """The integer in a frame file name: img46.jpg -> 46, 006_05562.jpg -> 5562, reg_image060436.bmp -> 60436."""
    m = _NUMBER.search(os.path.splitext(os.path.basename(name))[0])  # the stem (os.path: no Path per name)
    return int(m.group(1)) if m else None


def is_image(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class FrameListing:
    """The numbered images of one folder in number order, and the folder's other entries.

    `pattern` = (prefix, width, suffix) when every frame's name is prefix + number (zero-padded to
    width; 0: not padded) + suffix; the names are then made from it on demand, not stored."""

    numbers: np.ndarray                      # int64, ascending, unique
    pattern: tuple[str, int, str] | None
    _names: list[str] | None
    others: list[str]                        # entries that are not numbered images (sub-folders, videos, ...)

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def names(self) -> list[str]:
        if self._names is None:
            prefix, width, suffix = self.pattern
            self._names = [f"{prefix}{n:0{width}d}{suffix}" for n in self.numbers.tolist()]
        return self._names


def _numbered_slowly(names: list[str]) -> tuple[list[tuple[int, str]], list[str]]:
    """Name by name: (number, name) of the images (the first by name wins a shared number), others."""
    found: dict[int, str] = {}
    others = []
    for name in sorted(names):
        n = frame_number(name) if is_image(name) and not name.startswith(".") else None
        if n is None:
            others.append(name)
        elif n not in found:
            found[n] = name
    return sorted(found.items()), others


def _numbered_by_columns(names: list[str]):
    """Names of one length checked as a byte matrix (no Python per name): when all share the first
    name's prefix and suffix around a run of digits, (numbers, prefix, digits, suffix, zero-padded);
    otherwise None (the caller checks them name by name)."""
    first = names[0]
    if first.startswith(".") or not is_image(first):
        return None
    m = _NUMBER.search(os.path.splitext(first)[0])
    if m is None or m.end() - m.start() > 18:  # int64
        return None
    p, w = m.start(), m.end() - m.start()
    blob = "".join(names)
    if not blob.isascii():
        return None
    rows = np.frombuffer(blob.encode("ascii"), np.uint8).reshape(len(names), len(first))
    digits = rows[:, p:p + w] - np.uint8(48)  # wraps above 9 for anything but '0'-'9'
    if not ((rows[:, :p] == rows[0, :p]).all() and (rows[:, p + w:] == rows[0, p + w:]).all()
            and (digits <= 9).all()):
        return None
    numbers = digits.astype(np.int64) @ (10 ** np.arange(w - 1, -1, -1, dtype=np.int64))
    return numbers, first[:p], w, first[p + w:], bool(w > 1 and (digits[:, 0] == 0).any())


def number_names(names: list[str], prefix: str | None = None) -> FrameListing:
    """The numbered images among a folder's entry names (any order), sorted by number (img2 before
    img10). `prefix` keeps only names starting with it (e.g. "reg_" for official crops next to raw
    frames). Files without a number are ignored; two files with one number keep the first by name.

    Fast at millions of names: names are grouped by length and each group is verified as one byte
    matrix (same prefix and suffix around the digits); only groups that fail that go name by name."""
    if prefix is not None:
        names = [n for n in names if n.startswith(prefix)]
    names = sorted(names, key=len)  # groups of one length become slices
    lengths = np.fromiter(map(len, names), np.int64, len(names))
    cuts = [0, *(np.flatnonzero(lengths[1:] != lengths[:-1]) + 1).tolist(), len(names)]
    parts, others, patterns, leftovers = [], [], set(), []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        group = names[lo:hi]
        fast = _numbered_by_columns(group) if hi > lo else None
        if fast is None:
            leftovers.extend(group)
            continue
        numbers, pre, width, suf, padded = fast
        parts.append((numbers, group))
        patterns.add((pre, suf, width, padded))
    if leftovers:
        found, others = _numbered_slowly(leftovers)
        if found:
            parts.append((np.array([n for n, _ in found], np.int64), [name for _, name in found]))
            patterns.add(None)
    if not parts:
        return FrameListing(np.zeros(0, np.int64), None, [], others)
    numbers = np.concatenate([nums for nums, _ in parts])
    order = np.argsort(numbers, kind="stable")
    numbers = numbers[order]
    if len(numbers) > 1 and (numbers[1:] == numbers[:-1]).any():  # one number in two names: rare
        found, others = _numbered_slowly(names)
        return FrameListing(np.array([n for n, _ in found], np.int64), None, [n for _, n in found], others)
    pattern = _common_pattern(patterns)
    ordered = None
    if pattern is None:
        every = [name for _, group in parts for name in group]
        ordered = [every[i] for i in order.tolist()]
    return FrameListing(numbers, pattern, ordered, others)


def _common_pattern(groups: set) -> tuple[str, int, str] | None:
    """One (prefix, width, suffix) that spells every group's names, if any: f"{n:0{width}d}" gives
    back a group's w digits when w == width, or when w > width and no name has a leading zero."""
    if None in groups or len({(pre, suf) for pre, suf, _, _ in groups}) != 1:
        return None
    padded = {w for _, _, w, zero in groups if zero}
    if len(padded) > 1:
        return None
    width = padded.pop() if padded else min(w for _, _, w, _ in groups)
    if any(w < width or (zero and w != width) for _, _, w, zero in groups):
        return None
    pre, suf, _, _ = next(iter(groups))
    return pre, width, suf


def scan_frames(folder: str | os.PathLike, prefix: str | None = None) -> FrameListing:
    """number_names over the entries of `folder` (one directory read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MicronbertError(f"frame folder not found: {folder}")
    return number_names(os.listdir(folder), prefix)


def list_frames(folder: str | os.PathLike, prefix: str | None = None) -> list[tuple[int, str]]:
    """(number, file name) of the numbered images in `folder`, sorted by number (img2 before img10).

    `prefix` keeps only names starting with it (e.g. "reg_" for official crops next to raw frames).
    Files without a number are ignored; two files with one number keep the first by name.
    """
    listing = scan_frames(folder, prefix)
    return list(zip(listing.numbers.tolist(), listing.names))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 (H, W, 3); raises MicronbertError naming the file when it cannot be decoded."""
    import cv2

    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise MicronbertError(f"image not found: {path}")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise MicronbertError(f"unreadable image: {path}")
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def write_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> None:
    """Write an RGB uint8 image atomically (format from the extension)."""
    import cv2

    from micronbert.utils.io import atomic_write_bytes

    path = Path(path)
    img = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    ok, buf = cv2.imencode(path.suffix.lower() or ".png", img, params)
    if not ok:
        raise MicronbertError(f"cannot encode image for {path}")
    atomic_write_bytes(path, buf.tobytes())


@dataclass
class VideoInfo:
    path: Path
    fps: float
    n_frames: int  # best estimate; some containers do not store it (then counted by decoding)
    width: int
    height: int


def video_info(path: str | os.PathLike, count: bool = True) -> VideoInfo:
    """Frame rate, size and frame count. With `count`, the count is that of the video packets actually
    present (a demux pass, no decoding), not the header's: a truncated file reports what it holds."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 30.0)
            n = int(stream.frames or 0)
            if count or n <= 0:
                n = sum(1 for packet in container.demux(stream) if packet.size > 0)
            return VideoInfo(path, fps, n, stream.codec_context.width, stream.codec_context.height)
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise MicronbertError(f"unreadable video: {path} ({exc})") from exc


class VideoReader:
    """Random access to frames of one video by seeking (PyAV): memory holds one GOP's worth of decoding,
    not the video. Reading t then t+δ (a pair) decodes forward without a second seek."""

    _forward_window = 32  # frames ahead of the last decoded one that are cheaper to decode than to seek

    def __init__(self, path: str | os.PathLike):
        import av

        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise MicronbertError(f"unreadable video: {self.path} ({exc})") from exc
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate or 30
        self._fps = float(rate)
        self._tb = float(self._stream.time_base)
        self._start = int(self._stream.start_time or 0)
        self._iter = None
        self._next = 0          # index of the frame the open decoder yields next
        self._recent: dict[int, np.ndarray] = {}

    def _index(self, frame) -> int:
        if frame.pts is None:
            return self._next
        return int(round((frame.pts - self._start) * self._tb * self._fps))

    def _seek(self, t: int) -> None:
        target = self._start + int(t / self._fps / self._tb)
        self._container.seek(max(target, self._start), stream=self._stream, backward=True, any_frame=False)
        self._iter = self._container.decode(self._stream)
        self._next = -1  # unknown until the first frame's pts

    def frame(self, t: int) -> np.ndarray:
        """RGB uint8 frame t (0-based); MicronbertError if the video does not hold it."""
        import av

        if t in self._recent:
            return self._recent[t]
        if t < 0:
            raise MicronbertError(f"frame {t} not in video {self.path}")
        if self._iter is None or not (self._next >= 0 and self._next <= t <= self._next + self._forward_window):
            self._seek(t)
        try:
            for frame in self._iter:
                idx = self._index(frame)
                self._next = idx + 1
                if idx < t:
                    continue
                img = frame.to_ndarray(format="rgb24")
                self._recent = {idx: img} if idx != t else {**{k: v for k, v in self._recent.items()
                                                              if k >= t - 8}, idx: img}
                if idx == t:
                    return img
                break  # the stream skipped frame t: seeking lands past it
        except (av.error.FFmpegError, OSError) as exc:
            self._iter = None
            raise MicronbertError(f"unreadable frame {t} of video {self.path} ({exc})") from exc
        self._iter = None
        raise MicronbertError(f"frame {t} not decodable in video {self.path} (truncated or damaged?)")

    def close(self) -> None:
        self._container.close()


def iter_video(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video to RGB uint8 frames in order."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            container.streams.video[0].thread_type = "AUTO"
            for i, frame in enumerate(container.decode(video=0)):
                if max_frames is not None and i >= max_frames:
                    break
                yield frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise MicronbertError(f"unreadable video: {path} ({exc})") from exc


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """All frames (T, H, W, 3) uint8 and the frame rate."""
    info = video_info(path, count=False)
    frames = list(iter_video(path, max_frames))
    if not frames:
        raise MicronbertError(f"no frames decoded from video: {path}")
    return np.stack(frames), info.fps


def write_video(path: str | os.PathLike, frames, fps: float = 25.0) -> None:
    """Write RGB uint8 frames as an H.264 (or MPEG-4 fallback) MP4, atomically."""
    import av

    from micronbert.utils.io import atomic_path

    frames = list(frames)
    if not frames:
        raise MicronbertError(f"no frames to write to {path}")
    h, w = frames[0].shape[:2]
    h2, w2 = h - h % 2, w - w % 2
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            try:
                stream = out.add_stream("libx264", rate=round(fps))
            except Exception:  # encoder not built into this PyAV
                stream = out.add_stream("mpeg4", rate=round(fps))
            stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
            for f in frames:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h2, :w2]), format="rgb24")
                for packet in stream.encode(vf):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
