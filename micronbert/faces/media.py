"""Media checks shared by every command that reads a clip (prepare, faces, predict).

- Frames of one clip must share one size: a clip-wide transform fitted on a 640x480 frame turns a
  320x240 frame into a black or shifted crop. Frames of another size are left out and reported.
- Frame counts come from decoding, not the container header; a shortfall (truncated file) is noted.
- Unreadable frames are skipped, never fatal, and reported with one wording everywhere (`FrameSkips`).
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from micronbert.errors import MicronbertError


def _numbers_text(numbers: Sequence[int], most: int = 12) -> str:
    shown = " ".join(str(n) for n in numbers[:most])
    return shown + (f" … ({len(numbers)} in all)" if len(numbers) > most else "")


def size_text(shape) -> str:
    return f"{shape[1]}x{shape[0]}"


@dataclass
class FrameSkips:
    """Frames left out of a clip, and why; `notes()` gives the report lines (one wording everywhere)."""

    source: str
    unreadable: list[int] = field(default_factory=list)
    odd_size: list[int] = field(default_factory=list)
    odd_shapes: dict[int, tuple] = field(default_factory=dict)
    clip_shape: tuple | None = None
    decode_note: str | None = None

    def __len__(self) -> int:
        return len(self.unreadable) + len(self.odd_size)

    @property
    def left_out(self) -> set[int]:
        return set(self.unreadable) | set(self.odd_size)

    def notes(self) -> list[str]:
        out = []
        if self.unreadable:
            out.append(f"unreadable frames of {self.source} left out: {_numbers_text(self.unreadable)}")
        if self.odd_size:
            sizes = sorted({size_text(s) for s in self.odd_shapes.values()})
            out.append(f"frames of {self.source} whose size ({', '.join(sizes)}) differs from the clip's "
                       f"{size_text(self.clip_shape)} left out: {_numbers_text(self.odd_size)}")
        if self.decode_note:
            out.append(self.decode_note)
        return out


def clip_shape(shapes: Iterable[tuple | None]) -> tuple | None:
    """The clip's frame size: the most common one (ties: the first seen)."""
    counts = Counter(s for s in shapes if s is not None)
    return counts.most_common(1)[0][0] if counts else None


def check_sizes(numbers: Sequence[int], images: Sequence[np.ndarray | None], skips: FrameSkips) -> list[bool]:
    """Mark unreadable (None) and odd-sized frames in `skips`; True where a frame is usable."""
    shape = clip_shape(None if im is None else im.shape for im in images)
    skips.clip_shape = shape
    usable = []
    for n, im in zip(numbers, images):
        if im is None:
            skips.unreadable.append(int(n))
            usable.append(False)
        elif im.shape != shape:
            skips.odd_size.append(int(n))
            skips.odd_shapes[int(n)] = im.shape
            usable.append(False)
        else:
            usable.append(True)
    return usable


def source_stamp(paths: Sequence[str | os.PathLike]) -> str:
    """A cheap fingerprint of source files (name, size, mtime): changes when a frame is replaced."""
    h = hashlib.sha1()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{Path(p).name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{Path(p).name}\0missing\n".encode())
    return h.hexdigest()[:16]


@dataclass
class VideoStream:
    """Decodes a video one frame at a time; after iteration `n_decoded`, `header_frames`, `note`."""

    path: Path
    max_frames: int | None = None
    fps: float = 0.0
    header_frames: int = 0
    n_decoded: int = 0
    note: str | None = None

    def __post_init__(self):
        import av

        self.path = Path(self.path)
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                self.fps = float(stream.average_rate or stream.guessed_rate or 0.0)
                self.header_frames = int(stream.frames or 0)
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise MicronbertError(f"unreadable video: {self.path} ({exc})") from exc

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        self.n_decoded, self.note = 0, None
        try:
            with av.open(str(self.path)) as container:
                container.streams.video[0].thread_type = "AUTO"
                for frame in container.decode(video=0):
                    if self.max_frames is not None and self.n_decoded >= self.max_frames:
                        return
                    img = frame.to_ndarray(format="rgb24")
                    self.n_decoded += 1
                    yield img
        except (av.error.FFmpegError, OSError) as exc:
            # a damaged tail: keep what decoded, say where it stopped
            self.note = f"{self.path}: decoding stopped after frame {self.n_decoded - 1} ({exc})"
            if self.n_decoded == 0:
                raise MicronbertError(f"unreadable video: {self.path} ({exc})") from exc
            return
        self._check_count()

    def _check_count(self) -> None:
        short = self.header_frames - self.n_decoded
        if self.max_frames is None and self.header_frames and short > max(2, 0.01 * self.header_frames):
            self.note = (f"{self.path}: the header says {self.header_frames} frames but only {self.n_decoded} "
                         f"decoded (truncated or damaged file?); using the {self.n_decoded} decoded frames")


def write_video_stream(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 25.0) -> int:
    """Write RGB uint8 frames as an H.264 (or MPEG-4) MP4 as they come, atomically; returns the count.
    Unlike collecting a list first, memory holds one frame whatever the length."""
    import av

    from micronbert.utils.io import atomic_path

    n = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = None
            for f in frames:
                if stream is None:
                    h, w = f.shape[:2]
                    h2, w2 = h - h % 2, w - w % 2
                    try:
                        stream = out.add_stream("libx264", rate=max(1, round(fps)))
                    except Exception:  # encoder not built into this PyAV
                        stream = out.add_stream("mpeg4", rate=max(1, round(fps)))
                    stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h2, :w2]), format="rgb24")
                for packet in stream.encode(vf):
                    out.mux(packet)
                n += 1
            if stream is None:
                raise MicronbertError(f"no frames to write to {path}")
            for packet in stream.encode():
                out.mux(packet)
    return n
