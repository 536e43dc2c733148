"""Peak memory of `predict` on long videos: streamed (now) against all frames held in memory (before).

Synthetic 640x360 videos of a real face (a still photo gently moving, so the detector finds it) are
written for each duration; each measurement runs in a fresh process and reports its peak RSS
(ru_maxrss). "streamed" is predict_clip (spotting, tiny model); "all_in_memory" only decodes every
frame into a list, which is what predict did before and is a lower bound of its old peak.

    python benchmarks/predict_memory.py            # 20 s and 120 s
    python benchmarks/predict_memory.py --quick    # 4 s and 24 s
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FPS = 30


def make_video(path: Path, seconds: float, width: int = 640, height: int = 360) -> None:
    import cv2
    import numpy as np

    from micronbert.data.builtin import face_photos
    from micronbert.faces.media import write_video_stream

    face = cv2.resize(face_photos(required=False)["grace_hopper"], (240, 300))

    def frames():
        for t in range(int(seconds * FPS)):
            img = np.full((height, width, 3), 90, np.uint8)
            dx = int(20 + 10 * np.sin(t / 25.0))
            img[30:330, 200 + dx:440 + dx] = face
            yield img

    write_video_stream(path, frames(), fps=FPS)


def child(mode: str, video: str, model: str) -> None:
    t0 = time.perf_counter()
    if mode == "streamed":
        from micronbert.infer.api import MicronBert
        from micronbert.infer.predict import predict_clip

        res = predict_clip(MicronBert.from_pretrained(model), video, show_progress=False)
        n = res.clip.n_frames
    else:
        from micronbert.data.frames import iter_video

        frames = list(iter_video(video))
        n = len(frames)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"frames": n, "peak_rss_mb": round(peak_mb, 1), "seconds": round(time.perf_counter() - t0, 1)}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 s and 24 s instead of 20 s and 120 s")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    durations = (4, 24) if args.quick else (20, 120)
    out = {"benchmark": "predict_memory", "resolution": "640x360", "fps": FPS, "model": "tiny preset", "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "infer"))
        from infer_helpers import make_classifier_dir

        model = make_classifier_dir(Path(tmp) / "model", "tiny")
        for seconds in durations:
            video = Path(tmp) / f"v{seconds}.mp4"
            make_video(video, seconds)
            for mode in ("streamed", "all_in_memory"):
                proc = subprocess.run([sys.executable, __file__, "--child", mode, str(video), str(model)],
                                      capture_output=True, text=True, check=True)
                out["runs"][f"{seconds}s_{mode}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    s = [out["runs"][f"{d}s_streamed"]["peak_rss_mb"] for d in durations]
    m = [out["runs"][f"{d}s_all_in_memory"]["peak_rss_mb"] for d in durations]
    out["streamed_growth_mb"] = round(s[1] - s[0], 1)
    out["all_in_memory_growth_mb"] = round(m[1] - m[0], 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
