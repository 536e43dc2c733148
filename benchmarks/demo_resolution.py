"""Does input resolution limit μ-BERT? The demo's μ-BERT at 112 px (patch 8, the demo's) and at 224 px
(patch 16: the same 196 tokens and nearly the same compute, but each patch sees the face at twice the
resolution, so a 1.5 px action at 224 px is 1.5 px, not 0.75 px).

For each demo folder and each SIZE/PATCH: prepares the demo's samples at SIZE, aligns the two built-in
face videos at SIZE and writes the aligned synthetic clips as pretraining frames, pretrains the tiny
model with that input (150 steps, batch 16, seed 0), and runs the demo's LOSO with the shipped frozen CPU
recipe. Run on development folders (`micronbert demo --seed 1/2`), not on the demo's own.

Usage: python benchmarks/demo_resolution.py runs/dev1 runs/dev2 [--inputs 112/8,224/16] [--out DIR]
(prints one JSON line per run, then one JSON object)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from _common import machine
from _demo_runs import loso_on_demo, pretrain_on_demo, study_parser


def frames_at(demo: Path, size: int, root: Path) -> tuple[Path, list[str]]:
    """(face cache, pretraining sources) of a demo folder at `size`, built once under `root`."""
    import cv2

    from micronbert.data.builtin import face_videos
    from micronbert.demo.pipeline import DemoConfig
    from micronbert.demo.steps import align_video, prepare_cache
    from micronbert.faces.cache import FaceCache

    cache, pool = root / "cache", root / "pretrain_frames"
    if not cache.is_dir():
        prepare_cache(demo / "samples.csv", cache, size)
    sources = []
    for video in face_videos():
        if video.name in DemoConfig().real_videos:
            dst = pool / "real" / video.stem
            if dst.is_dir() or align_video(video, dst, size):
                sources.append(str(dst))
    synthetic = pool / "synthetic"
    if not synthetic.is_dir():
        faces = FaceCache(cache)
        for ds, sid in faces.keys():
            clip = faces.load(ds, sid)
            d = synthetic / sid.replace("/", "_")
            d.mkdir(parents=True, exist_ok=True)
            for num, img in zip(clip.frame_numbers, clip.frames):
                cv2.imwrite(str(d / f"{int(num)}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return cache, sources + [str(synthetic)]


def main() -> None:
    ap = study_parser(__doc__, "/tmp/demo_resolution")
    ap.add_argument("--inputs", default="112/8,224/16", help="SIZE/PATCH pairs")
    args = ap.parse_args()

    rows = []
    for demo in args.demos:
        for spec in args.inputs.split(","):
            size, patch = (int(v) for v in spec.split("/"))
            root = args.out / demo.name / f"{size}-{patch}"
            cache, frames = frames_at(demo, size, root)
            t0 = time.perf_counter()
            pretrain_on_demo(demo, root / "pretrain", args.steps, args.batch, frames=frames, img_size=size,
                             patch_size=patch)
            t_pre = time.perf_counter() - t0
            res = loso_on_demo(demo, root / "evaluate", init=root / "pretrain", cache=cache)
            rows.append({"demo": str(demo), "img_size": size, "patch_size": patch, **res,
                         "pretrain_s": round(t_pre, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"benchmark": "demo_resolution", "machine": machine(), "steps": args.steps,
                      "batch": args.batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
