"""`micronbert faces`: aligned crops of every frame of a video or frame folder, streamed.

Two passes over the source so long videos never sit in memory: the first finds the reference face
(clip mode) or every frame's landmarks (frame mode), the second warps and writes. Output: numbered
images in the folder plus faces.csv with per-frame presence and the (2, 3) transform.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from micronbert.errors import MicronbertError
from micronbert.faces.align import FaceAligner, smooth_transforms

CSV_NAME = "faces.csv"


@dataclass
class ExtractResult:
    out: Path
    n_frames: int
    n_present: int
    face_found: bool
    csv: Path
    notes: list[str] = field(default_factory=list)


def frame_source(path: str | os.PathLike) -> tuple[Callable[[], Iterator[tuple[int, str, np.ndarray | None]]], str]:
    """A re-startable iterator factory over (frame number, name, RGB image or None if unreadable)."""
    from micronbert.data.frames import is_video, list_frames, read_image

    path = Path(path)
    if path.is_dir():
        listed = list_frames(path)
        if not listed:
            raise MicronbertError(f"no numbered image frames in {path}")

        def folder_iter():
            for n, name in listed:
                try:
                    yield n, name, read_image(path / name)
                except MicronbertError:
                    yield n, name, None
        return folder_iter, "folder"
    if path.is_file() and is_video(path):
        from micronbert.faces.media import VideoStream

        stream = VideoStream(path)  # counts decoded frames; notes a header that promised more

        def video_iter():
            for i, img in enumerate(stream):
                yield i, f"{path.name}#{i}", img
        video_iter.stream = stream
        return video_iter, "video"
    if not path.exists():
        raise MicronbertError(f"not found: {path}")
    raise MicronbertError(f"{path}: not a video ({', '.join(sorted(_video_exts()))}) nor a folder of frames")


def _video_exts():
    from micronbert.data.frames import VIDEO_EXTENSIONS

    return VIDEO_EXTENSIONS


def extract_faces(source: str | os.PathLike, out: str | os.PathLike, size: int = 224, margin: float | None = None,
                  mode: str = "clip", detector: str = "dlib", fmt: str = "png", smooth: int = 5) -> ExtractResult:
    from micronbert.data.frames import write_image
    from micronbert.faces.template import DEFAULT_MARGIN
    from micronbert.utils.io import atomic_save
    from micronbert.utils.progress import progress

    if fmt not in ("png", "jpg"):
        raise MicronbertError(f"image format must be png or jpg, got {fmt!r}")
    aligner = FaceAligner(size=size, margin=DEFAULT_MARGIN if margin is None else margin, detector=detector,
                          mode=mode, smooth=smooth)
    frames, _kind = frame_source(source)
    out = Path(out)
    notes: list[str] = []

    from micronbert.faces.media import FrameSkips, clip_shape

    # Pass 0: every frame's size (one transform for frames of several sizes gives black crops).
    shapes = [None if img is None else img.shape for _, _, img in progress(frames(), desc="faces: read",
                                                                            unit="frame")]
    shape = clip_shape(shapes)
    skips = FrameSkips(str(source), clip_shape=shape)
    # Pass 1: where is the face.
    numbers, names, readable = [], [], []
    ref_transform, transforms = None, []
    for i, (n, name, img) in enumerate(progress(frames(), desc="faces: detect", unit="frame")):
        if i >= len(shapes):
            break
        numbers.append(n)
        names.append(name)
        if img is None:
            skips.unreadable.append(n)
        elif img.shape != shape:
            skips.odd_size.append(n)
            skips.odd_shapes[n] = img.shape
            img = None
        readable.append(img is not None)
        if mode == "clip":
            if ref_transform is None and img is not None:
                det = aligner.detect(img)
                if det is not None:
                    ref_transform = aligner.transform_from_landmarks(det.landmarks)
                    notes.append(f"reference frame {n}" + ("; " + "; ".join(det.notes) if det.notes else ""))
        else:
            det = aligner.detect(img) if img is not None else None
            transforms.append(None if det is None else aligner.transform_from_landmarks(det.landmarks))
    if not numbers:
        raise MicronbertError(f"no frames decoded from {source}")
    stream = getattr(frames, "stream", None)
    skips.decode_note = stream.note if stream is not None else None
    notes.extend(skips.notes())
    n_total = len(numbers)
    found = ref_transform is not None if mode == "clip" else any(t is not None for t in transforms)
    csv = out / CSV_NAME
    cols = ["frame", "source", "image", "present"] + [f"m{i}{j}" for i in range(2) for j in range(3)]
    if not found:
        notes.append(f"no face found in {source}, frames {numbers[0]}-{numbers[-1]} ({n_total} frames)")
        df = pd.DataFrame({"frame": numbers, "source": names, "image": "", "present": 0}, columns=cols)
        out.mkdir(parents=True, exist_ok=True)
        atomic_save(csv, lambda tmp: df.to_csv(tmp, index=False))
        return ExtractResult(out, n_total, 0, False, csv, notes)
    if mode == "frame":
        ms, present = smooth_transforms(transforms, aligner.size, aligner.smooth)
    else:
        ms, present = np.repeat(ref_transform[None], n_total, 0), None

    # Pass 2: warp and write.
    out.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(max(numbers))))
    rows = []
    for i, (n, name, img) in enumerate(progress(frames(), total=n_total, desc="faces: align", unit="frame")):
        if i >= n_total:
            break
        m = ms[i]
        if img is None or not readable[i]:
            rows.append([n, name, "", 0, *m.ravel()])
            continue
        crop = aligner.warp(img, m)
        ok = bool(present[i]) if present is not None else aligner.face_present(crop)
        fname = f"{n:0{width}d}.{fmt}"
        write_image(out / fname, crop)
        rows.append([n, name, fname, int(ok), *m.ravel()])
    df = pd.DataFrame(rows, columns=cols)
    atomic_save(csv, lambda tmp: df.to_csv(tmp, index=False))
    n_present = int(df["present"].sum())
    if n_present < n_total:
        notes.append(f"no face in {n_total - n_present} of {n_total} frames (see {csv})")
    return ExtractResult(out, n_total, n_present, True, csv, notes)
