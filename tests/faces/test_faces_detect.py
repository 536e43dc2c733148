"""Detection and landmark backends on real photos."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from micronbert.errors import MicronbertError
from micronbert.faces import detect as D


def test_model_file_found_without_importing_the_package():
    p = D.model_path()
    assert p.is_file() and p.name == "shape_predictor_68_face_landmarks.dat"
    assert "face_recognition_models" not in sys.modules


def test_dlib_finds_one_face_in_every_photo(photos):
    det = D.get_detector("dlib")
    for name, img in photos.items():
        r = det.detect(img)
        assert r is not None, name
        assert r.landmarks.shape == (68, 2) and r.landmarks.dtype == np.float64
        assert r.n_faces == 1 and r.notes == []
        h, w = img.shape[:2]
        inside = (r.landmarks[:, 0] > -w * 0.1) & (r.landmarks[:, 0] < w * 1.1) & (r.landmarks[:, 1] < h * 1.1)
        assert inside.all(), name


def test_haar_backend_agrees_with_dlib(frontal_photos):
    dl, haar = D.get_detector("dlib"), D.get_detector("haar")
    for name, img in frontal_photos.items():
        a, b = dl.detect(img), haar.detect(img)
        assert b is not None, name
        iod = np.linalg.norm(a.landmarks[36:42].mean(0) - a.landmarks[42:48].mean(0))
        assert np.abs(a.landmarks - b.landmarks).mean() < 0.1 * iod, name


def test_several_faces_take_the_largest_and_say_so():
    from micronbert.data.builtin import feat_data_dir
    from micronbert.data.frames import read_image

    img = read_image(feat_data_dir() / "multi_face.jpg")
    det = D.get_detector("dlib")
    boxes = det.boxes(img)
    r = det.detect(img)
    assert len(boxes) > 1 and r.n_faces == len(boxes)
    assert any("using the largest" in n for n in r.notes)
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    assert (r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) == pytest.approx(max(areas))


def test_downscaled_detection_maps_back(photos):
    img = photos["grace_hopper"]
    full = D.DlibDetector(max_side=0).detect(img)
    small = D.DlibDetector(max_side=300).detect(img)
    iod = np.linalg.norm(full.landmarks[36:42].mean(0) - full.landmarks[42:48].mean(0))
    assert np.abs(full.landmarks - small.landmarks).mean() < 0.1 * iod


def test_no_face_in_noise(noise_frames):
    assert D.get_detector("dlib").detect(noise_frames[0]) is None
    assert D.get_detector("haar").detect(noise_frames[0]) is None


def test_registry():
    class Fixed:
        name = "fixed"

        def __init__(self, **kw):
            pass

        def detect(self, image):
            return D.Detection(np.array([0, 0, 10, 10.0]), np.zeros((68, 2)))

    D.register_detector("fixed-test", Fixed)
    try:
        assert "fixed-test" in D.detector_names()
        assert D.get_detector("fixed-test").detect(None).box[2] == 10
    finally:
        D._REGISTRY.pop("fixed-test")
    with pytest.raises(MicronbertError, match="unknown face detector"):
        D.get_detector("nope")


def test_fallback_chain(photos, noise_frames):
    class Never:
        name = "never"

        def detect(self, image):
            return None

    chain = D.FallbackDetector(Never(), D.get_detector("haar"))
    r = chain.detect(photos["astronaut"])
    assert r is not None and any("fallback detector haar" in n for n in r.notes)
    assert chain.detect(noise_frames[0]) is None
    assert D.get_detector("dlib+haar").name == "dlib+haar"
