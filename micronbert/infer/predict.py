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

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from micronbert.errors import MicronbertError
from micronbert.infer.spotting import Interval, spot_intervals

DEFAULT_FPS = 30.0


@dataclass
class Clip:
    frames: list[np.ndarray]
    fps: float
    numbers: list[int]   # the label of each frame in the user's numbering
    source: str


@dataclass
class PredictionResult:
    table: Any                   # pandas DataFrame, one row per interval
    intervals: list[Interval]
    face_found: bool
    notes: list[str]
    clip: Clip
    aligned: Any = None          # micronbert.faces.AlignedClip
    signal: np.ndarray | None = None
    maps: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)


def load_clip(video_or_frames, fps: float | None = None, max_frames: int | None = None) -> Clip:
    """A video file, a frame folder, a (T, H, W, 3) array or a list of RGB frames."""
    from micronbert.data.frames import is_video, list_frames, read_image, read_video

    if isinstance(video_or_frames, (str, os.PathLike)):
        p = Path(video_or_frames)
        if p.is_dir():
            listed = list_frames(p)[:max_frames] if max_frames else list_frames(p)
            if not listed:
                raise MicronbertError(f"no numbered image frames in {p}")
            return Clip([read_image(p / name) for _, name in listed], fps or DEFAULT_FPS,
                        [n for n, _ in listed], str(p))
        if not p.is_file():
            raise MicronbertError(f"input not found: {p}")
        if not is_video(p):
            raise MicronbertError(f"{p}: not a video file or a frame folder")
        frames, vfps = read_video(p, max_frames)
        return Clip(list(frames), fps or (vfps if vfps and vfps > 0 else DEFAULT_FPS), list(range(len(frames))), str(p))
    frames = [np.asarray(f) for f in video_or_frames]
    if not frames or any(f.ndim != 3 or f.shape[-1] != 3 for f in frames):
        raise MicronbertError("expected RGB frames (T, H, W, 3)")
    frames = frames[:max_frames] if max_frames else frames
    return Clip(frames, fps or DEFAULT_FPS, list(range(len(frames))), "<array>")


def _position(clip: Clip, number: int, what: str) -> int:
    try:
        return clip.numbers.index(int(number))
    except ValueError:
        raise MicronbertError(f"--{what} {number} is not a frame of {clip.source} "
                              f"(frames {clip.numbers[0]}..{clip.numbers[-1]})") from None


def _columns(classes: list[str]) -> list[str]:
    return (["interval", "onset", "apex", "offset", "onset_s", "apex_s", "offset_s", "score", "source", "label",
             "confidence"] + [f"p_{c}" for c in classes] + ["onset_face", "apex_face", "image"])


def predict_clip(mb, video_or_frames, onset: int | None = None, apex: int | None = None, offset: int | None = None,
                 out_dir: str | os.PathLike | None = None, video: bool = False, detector: str = "dlib",
                 margin: float | None = None, fps: float | None = None, max_intervals: int = 5,
                 max_duration_s: float = 0.5, min_score: float = 3.0, max_frames: int | None = None,
                 check_presence: bool = True, aligner=None) -> PredictionResult:
    """Run the whole prediction path for one clip with a loaded `MicronBert` (see module doc)."""
    import pandas as pd

    from micronbert.faces import FaceAligner
    from micronbert.faces.template import DEFAULT_MARGIN

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    clip = load_clip(video_or_frames, fps, max_frames)
    timings["decode_s"] = time.perf_counter() - t0
    if (onset is None) != (apex is None):
        raise MicronbertError("give both --onset and --apex, or neither (then the apex spotter proposes them)")

    t0 = time.perf_counter()
    if aligner is None:
        inp = mb.meta.get("input") if isinstance(mb.meta.get("input"), dict) else {}
        aligner = FaceAligner(size=mb.size, margin=margin if margin is not None else inp.get("margin", DEFAULT_MARGIN),
                              detector=detector)
    aligned = aligner.align_clip(clip.frames, check_presence=check_presence)
    timings["face_s"] = time.perf_counter() - t0
    notes = list(aligned.notes)
    present = np.asarray(aligned.present, bool)
    missing = [clip.numbers[i] for i in np.flatnonzero(~present)]
    result = PredictionResult(pd.DataFrame(columns=_columns(mb.classes)), [], bool(aligned.face_found), notes, clip,
                              aligned, timings=timings)
    if not aligned.face_found:
        notes.append(f"no face found in {clip.source}: nothing to predict")
        timings["model_s"] = 0.0
        if out_dir is not None:
            _write_outputs(result, mb, Path(out_dir), missing, video)
        return result

    t_len = len(clip.frames)
    if onset is not None:
        on, ap = _position(clip, onset, "onset"), _position(clip, apex, "apex")
        off = _position(clip, offset, "offset") if offset is not None else min(t_len - 1, ap + (ap - on))
        if not on <= ap <= off:
            raise MicronbertError(f"need onset <= apex <= offset, got {onset}, {apex}, "
                                  f"{offset if offset is not None else clip.numbers[off]}")
        intervals, source = [Interval(on, ap, off, float("nan"))], "given"
    else:
        t0 = time.perf_counter()
        intervals, signal = spot_intervals(aligned.frames, clip.fps, max_duration_s, present, min_score,
                                           max_intervals)
        timings["spot_s"] = time.perf_counter() - t0
        result.signal, source = signal, "spotted"
        if intervals and intervals[0].score < min_score:
            notes.append(f"no clear movement: the best spotted interval scores {intervals[0].score:.2f} "
                         f"(< {min_score:g})")
    result.intervals = intervals

    t0 = time.perf_counter()
    frames = aligned.frames
    out = mb.forward_batch(frames[[iv.onset for iv in intervals]], frames[[iv.apex for iv in intervals]])
    timings["model_s"] = time.perf_counter() - t0

    rows = []
    for j, iv in enumerate(intervals):
        p = out["probabilities"][j]
        row = {"interval": j, "onset": clip.numbers[iv.onset], "apex": clip.numbers[iv.apex],
               "offset": clip.numbers[iv.offset], "onset_s": iv.onset / clip.fps, "apex_s": iv.apex / clip.fps,
               "offset_s": iv.offset / clip.fps, "score": iv.score, "source": source,
               "label": mb.classes[int(p.argmax())], "confidence": float(p.max()),
               **{f"p_{c}": float(v) for c, v in zip(mb.classes, p)},
               "onset_face": bool(present[iv.onset]), "apex_face": bool(present[iv.apex]), "image": ""}
        if not (row["onset_face"] and row["apex_face"]):
            notes.append(f"interval {j}: no face found in the aligned onset/apex frame; the prediction is unreliable")
        rows.append(row)
        result.maps.append({"dma_map": out["dma_map"][j], "poi_map": out["poi_map"][j]})
    result.table = pd.DataFrame(rows, columns=_columns(mb.classes))
    if out_dir is not None:
        _write_outputs(result, mb, Path(out_dir), missing, video)
    return result


def _write_outputs(result: PredictionResult, mb, out_dir: Path, missing: list[int], video: bool) -> None:
    from micronbert.infer.visualise import pair_figure
    from micronbert.utils.io import atomic_write_json, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    clip, table = result.clip, result.table
    frames = result.aligned.frames if result.aligned is not None else None
    for j, iv in enumerate(result.intervals):
        name = f"interval{j:02d}_apex{clip.numbers[iv.apex]}.png"
        row = table.iloc[j]
        pair_figure(frames[iv.onset], frames[iv.apex], result.maps[j]["dma_map"],
                    result.maps[j]["poi_map"] if mb.config.use_poi else None, out_dir / name,
                    title=f"{Path(clip.source).name}: onset {row['onset']}, apex {row['apex']} → "
                          f"{row['label']} ({row['confidence']:.2f})")
        table.loc[j, "image"] = name
    atomic_write_text(out_dir / "predictions.csv", table.to_csv(index=False))
    if video and result.face_found:
        from micronbert.data.frames import write_video

        write_video(out_dir / "predictions.mp4", annotate_frames(result), fps=clip.fps)
        result.files["video"] = str(out_dir / "predictions.mp4")
    doc = {"source": clip.source, "fps": clip.fps, "n_frames": len(clip.frames), "face_found": result.face_found,
           "frames_without_face": missing, "model": getattr(mb, "path", None), "classes": mb.classes,
           "input_size": mb.size, "notes": result.notes,
           "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
           "motion_signal": None if result.signal is None else [round(float(v), 4) for v in result.signal],
           "intervals": json.loads(table.to_json(orient="records"))}
    atomic_write_json(out_dir / "predictions.json", doc)
    result.files.update(csv=str(out_dir / "predictions.csv"), json=str(out_dir / "predictions.json"),
                        images=[str(out_dir / n) for n in table["image"] if n])


def annotate_frames(result: PredictionResult, size: int = 256) -> list[np.ndarray]:
    """Aligned frames with frame number, the interval's label while inside it (DMA change map over the
    face) and the motion signal as a strip with a cursor."""
    import cv2

    from micronbert.infer.visualise import change_map, overlay

    frames = result.aligned.frames
    t_len = len(frames)
    strip_h = 40
    sig = result.signal
    pts = None
    if sig is not None and len(sig) > 1:
        s = (sig - sig.min()) / max(float(np.ptp(sig)), 1e-9)
        pts = np.stack([np.linspace(0, size - 1, t_len), strip_h - 4 - s * (strip_h - 8)], 1).astype(np.int32)
    out = []
    for t in range(t_len):
        img = cv2.resize(frames[t], (size, size), interpolation=cv2.INTER_LINEAR)
        label = ""
        for j, iv in enumerate(result.intervals):
            if iv.onset <= t <= iv.offset:
                img = overlay(img, change_map(result.maps[j]["dma_map"]), alpha=0.3)
                row = result.table.iloc[j]
                label = f"{row['label']} {row['confidence']:.2f}" + (" APEX" if t == iv.apex else "")
                cv2.rectangle(img, (1, 1), (size - 2, size - 2), (255, 40, 40), 3)
                break
        cv2.putText(img, f"frame {result.clip.numbers[t]}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
        if label:
            cv2.putText(img, label, (6, size - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 0), 1, cv2.LINE_AA)
        strip = np.zeros((strip_h, size, 3), np.uint8)
        if pts is not None:
            cv2.polylines(strip, [pts], False, (0, 200, 255), 1, cv2.LINE_AA)
            x = int(pts[t, 0])
            cv2.line(strip, (x, 0), (x, strip_h - 1), (255, 255, 255), 1)
        out.append(np.concatenate([img, strip], 0))
    return out
