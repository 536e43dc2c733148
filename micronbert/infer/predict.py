"""Prediction on a user's clip: frames -> aligned faces -> (onset, apex) given or spotted -> classes + maps.

One similarity transform per clip (fitted on the first frame with a face) aligns all frames, so the
subtle motion between onset and apex is not drowned in per-frame alignment jitter. Frames whose
aligned crop shows no face are reported (column/notes), never fatal; a clip without any face gives an
empty table and a note.

Frame numbering in the outputs: 0-based positions for videos and arrays; for frame folders the number
in each file name (img46.jpg -> 46), which is what dataset annotations use. `--onset/--apex` take the
same numbering.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from micronbert.errors import MicronbertError
from micronbert.infer.predict_outputs import write_outputs
from micronbert.infer.spotting import Interval, spot_intervals
from micronbert.train.pairdata import apex_neighbours

DEFAULT_FPS = 30.0


@dataclass
class Clip:
    """What was read: frame rate, each frame's number in the user's numbering, the source. Frames are
    not kept (they are streamed); `frames` holds them only when the caller passed an array."""
    fps: float
    numbers: list[int]
    source: str
    frames: list[np.ndarray] | None = None

    @property
    def n_frames(self) -> int:
        return len(self.numbers)


@dataclass
class PredictionResult:
    table: Any                   # pandas DataFrame, one row per interval
    intervals: list[Interval]
    face_found: bool
    notes: list[str]
    clip: Clip
    present: np.ndarray | None = None   # (T,) face found in the aligned crop
    crops: dict[int, np.ndarray] = field(default_factory=dict)   # aligned onset/apex crops by position
    signal: np.ndarray | None = None
    threshold: float | None = None      # the spotting threshold in signal units
    maps: list[dict] = field(default_factory=list)  # per interval: dma_map, poi_map (+ dma_motion)
    transform: np.ndarray | None = None  # source pixel -> aligned crop pixel (one per clip)
    size: int = 0                        # aligned crop side
    frame_shape: tuple | None = None     # the clip's frame shape (frames of another size are left out)
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)


class FrameSource:
    """Re-iterable (number, RGB frame or None if unreadable) over a video, frame folder or array; one
    frame in memory at a time for files (a second pass decodes again)."""

    def __init__(self, video_or_frames, fps: float | None = None, max_frames: int | None = None):
        from micronbert.data.frames import is_video, list_frames
        from micronbert.faces.media import VideoStream

        self.video = None
        self.array = None
        self.listed = None
        if isinstance(video_or_frames, (str, os.PathLike)):
            p = Path(video_or_frames)
            self.source = str(p)
            if p.is_dir():
                listed = list_frames(p)
                self.listed = listed[:max_frames] if max_frames else listed
                if not self.listed:
                    raise MicronbertError(f"no numbered image frames in {p}")
                self.folder, self.fps = p, fps or DEFAULT_FPS
            elif not p.is_file():
                raise MicronbertError(f"input not found: {p}")
            elif not is_video(p):
                raise MicronbertError(f"{p}: not a video file or a frame folder")
            else:
                self.video = VideoStream(p, max_frames)
                self.fps = fps or (self.video.fps if self.video.fps > 0 else DEFAULT_FPS)
        else:
            frames = [np.asarray(f) for f in video_or_frames]
            frames = frames[:max_frames] if max_frames else frames
            if not frames or any(f.ndim != 3 or f.shape[-1] != 3 for f in frames):
                raise MicronbertError("expected RGB frames (T, H, W, 3)")
            self.array, self.source, self.fps = frames, "<array>", fps or DEFAULT_FPS

    def __iter__(self):
        from micronbert.data.frames import read_image

        if self.array is not None:
            yield from enumerate(self.array)
        elif self.listed is not None:
            for n, name in self.listed:
                try:
                    yield n, read_image(self.folder / name)
                except MicronbertError:
                    yield n, None
        else:
            yield from enumerate(self.video)

    def note(self) -> str | None:
        return self.video.note if self.video is not None else None


def load_clip(video_or_frames, fps: float | None = None, max_frames: int | None = None) -> Clip:
    """All frames of a short clip in memory (for callers that want them; predict_clip streams)."""
    src = FrameSource(video_or_frames, fps, max_frames)
    numbers, frames = [], []
    for n, img in src:
        if img is None:
            raise MicronbertError(f"unreadable frame {n} of {src.source}")
        numbers.append(n)
        frames.append(img)
    if not frames:
        raise MicronbertError(f"no frames decoded from {src.source}")
    return Clip(src.fps, numbers, src.source, frames)


def _position(clip: Clip, number: int, what: str) -> int:
    try:
        return clip.numbers.index(int(number))
    except ValueError:
        raise MicronbertError(f"--{what} {number} is not a frame of {clip.source} "
                              f"(frames {clip.numbers[0]}..{clip.numbers[-1]})") from None


def _columns(classes: list[str]) -> list[str]:
    return (["interval", "onset", "apex", "offset", "onset_s", "apex_s", "offset_s", "score", "source",
             "below_threshold", "label", "confidence"] + [f"p_{c}" for c in classes]
            + ["onset_face", "apex_face", "image"])


# Face presence is checked on a crop at least this large: detectors find nothing in a 32-px crop, and a
# small model input must not make every frame "faceless".
CHECK_SIDE = 128


def predict_clip(mb, video_or_frames, onset: int | None = None, apex: int | None = None, offset: int | None = None,
                 out_dir: str | os.PathLike | None = None, video: bool = False, detector: str = "dlib",
                 margin: float | None = None, fps: float | None = None, max_intervals: int = 5,
                 max_duration_s: float = 0.5, min_score: float = 3.0, max_frames: int | None = None,
                 check_presence: bool = True, aligner=None, show_progress: bool = True) -> PredictionResult:
    """Run the whole prediction path for one clip with a loaded `MicronBert` (see module doc).

    Frames are streamed: pass 1 finds each frame's size and the reference face, pass 2 aligns, checks
    presence and feeds the spotter, pass 3 fetches the onset/apex crops (and pass 4 writes --video);
    memory does not grow with the clip's length."""
    import pandas as pd

    from micronbert.faces import FaceAligner
    from micronbert.faces.align import apply_transform
    from micronbert.faces.media import FrameSkips, clip_shape
    from micronbert.faces.template import DEFAULT_MARGIN, own_hull_mask
    from micronbert.infer.spotting import MotionStream, propose_intervals, spotting_window, threshold_level
    from micronbert.utils.progress import progress

    if (onset is None) != (apex is None):
        raise MicronbertError("give both --onset and --apex, or neither (then the apex spotter proposes them)")
    if max_intervals < 1:
        raise MicronbertError(f"max_intervals must be at least 1, got {max_intervals}")
    timings: dict[str, float] = {}
    src = FrameSource(video_or_frames, fps, max_frames)
    if aligner is None:
        inp = mb.meta.get("input") if isinstance(mb.meta.get("input"), dict) else {}
        aligner = FaceAligner(size=mb.size, margin=margin if margin is not None else inp.get("margin", DEFAULT_MARGIN),
                              detector=detector)
    checker = FaceAligner(size=max(aligner.size, CHECK_SIDE), margin=aligner.margin, detector=aligner.detector)

    # Pass 1: numbering, each frame's size, the first frame with a face (of the clip's size).
    t0 = time.perf_counter()
    numbers, shapes = [], []
    for n, img in progress(src, desc="predict: read", unit="frame", disable_override=not show_progress):
        numbers.append(n)
        shapes.append(None if img is None else img.shape)
    if not numbers:
        raise MicronbertError(f"no frames decoded from {src.source}")
    clip = Clip(src.fps, numbers, src.source, src.array)
    shape = clip_shape(shapes)
    skips = FrameSkips(src.source, clip_shape=shape, decode_note=src.note())
    for n, sh in zip(numbers, shapes):
        if sh is None:
            skips.unreadable.append(n)
        elif sh != shape:
            skips.odd_size.append(n)
            skips.odd_shapes[n] = sh
    usable = np.array([sh is not None and sh == shape for sh in shapes])
    ref, det = None, None
    for i, (n, img) in enumerate(src):
        if usable[i]:
            det = aligner.detect(img)
            if det is not None:
                ref = i
                break
    timings["decode_s"] = time.perf_counter() - t0
    notes = skips.notes()
    t_len = len(numbers)
    result = PredictionResult(pd.DataFrame(columns=_columns(mb.classes)), [], det is not None, notes, clip,
                              np.zeros(t_len, bool), timings=timings)
    if det is None:
        notes.append(f"no face found in {clip.source}: nothing to predict")
        timings["face_s"] = timings["model_s"] = 0.0
        if out_dir is not None:
            write_outputs(result, mb, Path(out_dir), video, src)
        return result
    if ref:
        notes.append(f"no face on the first frame; aligned on frame {numbers[ref]}")
    notes.extend(det.notes)
    m = aligner.transform_from_landmarks(det.landmarks)
    result.transform, result.size, result.frame_shape = m, aligner.size, shape
    m_check = checker.transform_from_landmarks(det.landmarks)

    given = onset is not None
    if given:
        on, ap = _position(clip, onset, "onset"), _position(clip, apex, "apex")
        off = _position(clip, offset, "offset") if offset is not None else min(t_len - 1, ap + (ap - on))
        if not on <= ap <= off:
            raise MicronbertError(f"need onset <= apex <= offset, got {onset}, {apex}, "
                                  f"{offset if offset is not None else clip.numbers[off]}")
        for what, pos in (("onset", on), ("apex", ap)):
            if not usable[pos]:
                raise MicronbertError(f"the {what} frame {numbers[pos]} of {clip.source} is unusable "
                                      f"({'; '.join(skips.notes())})")
    window, k = spotting_window(clip.fps, max_duration_s)
    motion = None if given else MotionStream(k=k)
    # the frames just before and after the apex, averaged in when the classifier was evaluated so
    near_given = [p for p in apex_neighbours(range(t_len), on, ap, off) if p is not None] if given else []

    # Pass 2: align, check presence, feed the spotter (one frame at a time).
    t0 = time.perf_counter()
    present = result.present
    for i, (n, img) in enumerate(progress(src, total=t_len, desc="predict: align", unit="frame",
                                          disable_override=not show_progress)):
        if i >= t_len:
            break
        big = checker.warp(img, m_check) if usable[i] else None
        if big is not None:
            present[i] = (i == ref) or not check_presence or checker.face_present(big)
        if motion is not None:
            motion.push(big, bool(present[i]))
        if given and i in (on, ap, *near_given) and usable[i]:
            result.crops[i] = aligner.warp(img, m)
    timings["face_s"] = time.perf_counter() - t0
    if not present.all():
        notes.append(f"no face in the aligned crop of {int((~present).sum())} of {t_len} frames")

    if given:
        intervals, source = [Interval(on, ap, off, float("nan"))], "given"
    else:
        t0 = time.perf_counter()
        result.signal = motion.finish()
        intervals = propose_intervals(result.signal, window, min_score, max_intervals)
        result.threshold = threshold_level(result.signal, min_score)
        timings["spot_s"] = time.perf_counter() - t0
        source = "spotted"
        if intervals and intervals[0].score < min_score:
            notes.append(f"no movement above the spotting threshold: the strongest candidate scores "
                         f"{intervals[0].score:.2f} (< {min_score:g}); it is reported as below_threshold, "
                         f"not as a detection")
        # Pass 3: only the crops the model needs (onset, apex and the frames around the apex).
        wanted = {p for iv in intervals for p in (iv.onset, iv.apex, *apex_neighbours(range(t_len), iv.onset,
                                                                                         iv.apex, iv.offset))
                  if p is not None}
        for i, (n, img) in enumerate(src):
            if i > max(wanted):
                break
            if i in wanted and usable[i]:
                result.crops[i] = aligner.warp(img, m)
    result.intervals = intervals

    t0 = time.perf_counter()
    blank = np.zeros((aligner.size, aligner.size, 3), np.uint8)  # stands in for an unusable frame
    firsts = np.stack([result.crops.get(iv.onset, blank) for iv in intervals])
    seconds = np.stack([result.crops.get(iv.apex, blank) for iv in intervals])
    near = [apex_neighbours(range(t_len), iv.onset, iv.apex, iv.offset) for iv in intervals]
    has_near = np.array([[p is not None and p in result.crops for p in ps] for ps in near])
    thirds = np.stack([[result.crops[p] if h else blank for p, h in zip(ps, hs)] for ps, hs in zip(near, has_near)])
    # a classifier with PoI prior "own" reads the reference face's own hull in the crop, as prepare caches it
    face = (np.repeat(own_hull_mask(apply_transform(m, det.landmarks), aligner.size)[None], len(intervals), 0)
            if mb.config.reads_face_mask else None)
    out = mb.forward_batch(firsts, seconds, neighbours=thirds, has_neighbour=has_near, face=face)
    timings["model_s"] = time.perf_counter() - t0

    rows = []
    for j, iv in enumerate(intervals):
        p = out["probabilities"][j]
        below = bool(not given and iv.score < min_score)
        row = {"interval": j, "onset": clip.numbers[iv.onset], "apex": clip.numbers[iv.apex],
               "offset": clip.numbers[iv.offset], "onset_s": iv.onset / clip.fps, "apex_s": iv.apex / clip.fps,
               "offset_s": iv.offset / clip.fps, "score": iv.score, "source": source, "below_threshold": below,
               "label": mb.classes[int(p.argmax())], "confidence": float(p.max()),
               **{f"p_{c}": float(v) for c, v in zip(mb.classes, p)},
               "onset_face": bool(present[iv.onset]), "apex_face": bool(present[iv.apex]), "image": ""}
        if not (row["onset_face"] and row["apex_face"]):
            notes.append(f"interval {j}: no face found in the aligned onset/apex frame; the prediction is unreliable")
        rows.append(row)
        result.maps.append({"dma_map": out["dma_map"][j], "poi_map": out["poi_map"][j],
                            **({"dma_motion": out["dma_motion"][j]} if "dma_motion" in out else {})})
    result.table = pd.DataFrame(rows, columns=_columns(mb.classes))
    if out_dir is not None:
        write_outputs(result, mb, Path(out_dir), video, src)
    return result
