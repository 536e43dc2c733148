"""What `predict_clip` writes to its out folder: one figure per interval (onset/apex crops with the DMA
and PoI maps, and with directional DMA arrows for which way the most-changed patches moved), the
motion-signal timeline, predictions.csv/.json and, with --video, the annotated aligned clip. `result` is
a micronbert.infer.predict.PredictionResult, `src` the clip's FrameSource (re-read one frame at a time
for the video)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_outputs(result, mb, out_dir: Path, video: bool, src) -> None:
    from micronbert.infer.visualise import pair_figure, timeline_figure
    from micronbert.utils.io import atomic_write_json, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    clip, table = result.clip, result.table
    for j, iv in enumerate(result.intervals):
        name = f"interval{j:02d}_apex{clip.numbers[iv.apex]}.png"
        row = table.iloc[j]
        blank = np.zeros((mb.size, mb.size, 3), np.uint8)
        tag = " (below the spotting threshold: not a detection)" if row["below_threshold"] else ""
        pair_figure(result.crops.get(iv.onset, blank), result.crops.get(iv.apex, blank), result.maps[j]["dma_map"],
                    result.maps[j]["poi_map"] if mb.config.use_poi else None, out_dir / name,
                    title=f"{Path(clip.source).name}: onset {row['onset']}, apex {row['apex']} → "
                          f"{row['label']} ({row['confidence']:.2f}){tag}",
                    motion=result.maps[j].get("dma_motion"))
        table.loc[j, "image"] = name
    if result.signal is not None:
        timeline_figure(result.signal, clip.fps, result.threshold, result.intervals, table, out_dir / "timeline.png",
                        title=Path(clip.source).name, present=result.present)
        result.files["timeline"] = str(out_dir / "timeline.png")
    atomic_write_text(out_dir / "predictions.csv", table.to_csv(index=False))
    if video and result.face_found:
        from micronbert.faces.media import write_video_stream

        write_video_stream(out_dir / "predictions.mp4", annotate_frames(result, src), fps=clip.fps)
        result.files["video"] = str(out_dir / "predictions.mp4")
    missing = [clip.numbers[i] for i in np.flatnonzero(~np.asarray(result.present, bool))]
    doc = {"source": clip.source, "fps": clip.fps, "n_frames": clip.n_frames, "face_found": result.face_found,
           "frames_without_face": missing, "model": getattr(mb, "path", None), "classes": mb.classes,
           "input_size": mb.size, "notes": result.notes,
           "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
           "spotting_threshold": None if result.threshold is None else round(float(result.threshold), 6),
           "motion_signal": None if result.signal is None else [round(float(v), 4) for v in result.signal],
           "intervals": json.loads(table.to_json(orient="records"))}
    atomic_write_json(out_dir / "predictions.json", doc)
    result.files.update(csv=str(out_dir / "predictions.csv"), json=str(out_dir / "predictions.json"),
                        images=[str(out_dir / n) for n in table["image"] if n])


def annotate_frames(result, src, size: int = 256):
    """Aligned frames (re-read from `src`, one at a time) with frame number, the interval's label while
    inside it (DMA change map over the face) and the motion signal as a strip with a cursor."""
    import cv2

    from micronbert.infer.visualise import change_map, overlay

    t_len = result.clip.n_frames
    strip_h = 40
    sig = result.signal
    pts = None
    if sig is not None and len(sig) > 1:
        s = (sig - sig.min()) / max(float(np.ptp(sig)), 1e-9)
        pts = np.stack([np.linspace(0, size - 1, t_len), strip_h - 4 - s * (strip_h - 8)], 1).astype(np.int32)
    shape = result.frame_shape
    for t, (n, frame) in enumerate(src):
        if t >= t_len:
            break
        if frame is None or frame.shape != shape:
            img = np.zeros((size, size, 3), np.uint8)
        else:
            img = cv2.resize(_aligned(result, frame), (size, size), interpolation=cv2.INTER_LINEAR)
        label = ""
        for j, iv in enumerate(result.intervals):
            if iv.onset <= t <= iv.offset:
                img = overlay(img, change_map(result.maps[j]["dma_map"]), alpha=0.3)
                row = result.table.iloc[j]
                label = (f"{row['label']} {row['confidence']:.2f}" + (" APEX" if t == iv.apex else "")
                         + (" (weak)" if row["below_threshold"] else ""))
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
        yield np.concatenate([img, strip], 0)


def _aligned(result, frame: np.ndarray) -> np.ndarray:
    from micronbert.faces.align import warp

    return warp(frame, result.transform, result.size)
