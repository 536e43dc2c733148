"""Benchmark: indexing 10,000 annotated samples (SAMM-style sheet with its 13-row preamble, 3 frames per
clip). Prints one JSON object with the time of each stage:

    sheet     parsing the annotation sheet only (header detection, cell cleaning)
    index     the whole reader without image decoding (sheet + folder listing + validation)
    index_img the whole reader with the default onset/apex decode check

Frames are tiny JPEG bytes copied into place (writing them is not measured); the fixture is built in
/dev/shm when it exists (--dir to change).
Usage: python benchmarks/index_annotations.py [--samples 10000]
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


def build(root: Path, n: int) -> Path:
    import cv2

    from micronbert.data.layouts import ClipSpec
    from micronbert.data.readers import samm

    ok, jpg = cv2.imencode(".jpg", np.full((16, 16, 3), 127, np.uint8))
    data = jpg.tobytes()
    emotions = ["Anger", "Contempt", "Happiness", "Surprise", "Other", "Disgust", "Fear", "Sadness"]
    clips = []
    for i in range(n):
        subject = f"{i % 100:03d}"
        clip = f"{subject}_{i // 100}_1"
        folder = root / samm.clip_folder(subject, clip)
        folder.mkdir(parents=True)
        for f in (1000, 1002, 1004):
            (folder / samm.FRAME_NAME.format(subject=subject, n=f, pad=5)).write_bytes(data)
        clips.append(ClipSpec(subject, clip, [], 1000, 1002, 1004, emotions[i % 8], "4+7", on_disk=False))
    return samm.write(root, clips, preamble=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="where to build the fixture (default: RAM disk when present, so the figures "
                             "measure the reader rather than a slow disk)")
    args = parser.parse_args(argv)

    from importlib.metadata import version

    from micronbert.data.readers import index_dataset, samm
    from micronbert.data.readers._sheets import load_sheet

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        sheet_path = build(root, args.samples)
        build_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        sheet = load_sheet(sheet_path, samm.COLUMNS, anchors=("subject", "filename"))
        sheet_s = time.perf_counter() - t0
        assert len(sheet.rows) == args.samples

        timings = {}
        for label, check in (("index", False), ("index_img", True)):
            t0 = time.perf_counter()
            df, report = index_dataset("samm", root, check_images=check)
            timings[label] = time.perf_counter() - t0
            assert len(df) == args.samples and len(report) == 0, report.lines()[:3]

    n = args.samples
    result = {
        "benchmark": "index_annotations",
        "samples": n,
        "seconds": round(timings["index"], 3),
        "samples_per_s": round(n / timings["index"], 1),
        "stages": {
            "sheet_parse_s": round(sheet_s, 3), "sheet_samples_per_s": round(n / sheet_s, 1),
            "index_no_image_check_s": round(timings["index"], 3),
            "index_with_image_check_s": round(timings["index_img"], 3),
            "index_with_image_check_samples_per_s": round(n / timings["index_img"], 1),
            "fixture_build_s": round(build_s, 3),
        },
        "machine": {
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "torch": version("torch"),
            "numpy": np.__version__, "fixture_dir": args.dir or tempfile.gettempdir(),
        },
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
