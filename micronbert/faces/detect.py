"""Face detection and 68-point landmarks behind one interface, with a registry of backends.

Backends:
- "dlib": dlib's HOG frontal face detector + the 68-point shape predictor.
- "haar": OpenCV's Haar cascade (cv2.data.haarcascades) as the detector, the same dlib shape
  predictor for the landmarks (its box is re-scaled to look like a dlib box).
- "dlib+haar": dlib first, the Haar cascade when dlib finds nothing.
More backends: register_detector(name, factory).

The model files come from the `face_recognition_models` package, found with importlib's find_spec:
importing that package fails on recent setuptools (it imports pkg_resources), so we never import it.

Licence note: the 68-point landmark model (shape_predictor_68_face_landmarks.dat) was trained on the
iBUG 300-W data set, whose licence excludes commercial use; the landmark model is therefore for
non-commercial use only.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from micronbert.errors import MicronbertError

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"


def model_path(name: str = LANDMARKS_68) -> Path:
    """Path of a model file shipped in face_recognition_models (found, not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        p = Path(loc) / "models" / name
        if p.is_file():
            return p
    raise MicronbertError(f"{name} not found: install face_recognition_models "
                          f"(pip install face_recognition_models); it holds dlib's landmark models")


@lru_cache(maxsize=None)
def _shape_predictor():
    import dlib

    return dlib.shape_predictor(str(model_path(LANDMARKS_68)))


@dataclass
class Detection:
    """The chosen face in one image: box (x0, y0, x1, y1) and landmarks (68, 2), source pixel coords."""

    box: np.ndarray
    landmarks: np.ndarray
    n_faces: int = 1
    notes: list[str] = field(default_factory=list)


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> Detection | None:
        """The largest face of an RGB uint8 image with its 68 landmarks, or None."""


def _largest(boxes: list[tuple[float, float, float, float]]) -> tuple[int, list[str]]:
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    i = int(np.argmax(areas))
    notes = [f"{len(boxes)} faces found, using the largest"] if len(boxes) > 1 else []
    return i, notes


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A smaller copy for detection (HOG cost grows with pixels) and the factor back to source."""
    import cv2

    h, w = image.shape[:2]
    s = max(h, w)
    if max_side <= 0 or s <= max_side:
        return image, 1.0
    f = max_side / s
    small = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return small, 1.0 / f


def landmarks_in_box(image: np.ndarray, box) -> np.ndarray:
    """Run the 68-point predictor inside `box` (x0, y0, x1, y1) on the full-resolution image."""
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = _shape_predictor()(_gray_or_rgb(image), dlib.rectangle(x0, y0, x1, y1))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def _gray_or_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise MicronbertError(f"face detection needs uint8 images, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


class _BoxDetector:
    """A detector defined by its `boxes(image)`: the largest box gets the 68 landmarks."""

    def detect(self, image: np.ndarray) -> Detection | None:
        boxes = self.boxes(image)
        if not boxes:
            return None
        i, notes = _largest(boxes)
        box = np.array(boxes[i], dtype=np.float64)
        return Detection(box, landmarks_in_box(image, box), len(boxes), notes)


class DlibDetector(_BoxDetector):
    """dlib HOG frontal detector; faces smaller than ~80 px (after downscaling) are missed, so
    a miss at the downscaled size is retried once with upsampling when the image is small."""

    name = "dlib"

    def __init__(self, max_side: int = 640, upsample: int = 0):
        import dlib

        self.max_side = max_side
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()

    def boxes(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        image = _gray_or_rgb(image)
        small, back = _downscale(image, self.max_side)
        rects = self._detector(small, self.upsample)
        if len(rects) == 0 and self.upsample == 0 and max(small.shape[:2]) <= 400:
            rects = self._detector(small, 1)
        return [(r.left() * back, r.top() * back, r.right() * back, r.bottom() * back) for r in rects]



class HaarDetector(_BoxDetector):
    """OpenCV Haar cascade (frontal face) with dlib landmarks: a fallback when dlib's HOG misses."""

    name = "haar"
    # Haar boxes are larger than dlib's and start higher (forehead); these factors map one onto
    # the other so the shape predictor starts from the box shape it was trained with (measured on
    # the six frontal photos in micronbert.data.builtin: median width ratio 0.92, centre 0.11 lower).
    _SCALE = 0.92
    _SHIFT_Y = 0.11

    def __init__(self, max_side: int = 640, cascade: str = "haarcascade_frontalface_default.xml"):
        import cv2

        path = Path(cv2.data.haarcascades) / cascade
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise MicronbertError(f"cannot load the Haar cascade {path} (opencv-python-headless<5 ships it)")
        self.max_side = max_side

    def boxes(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        import cv2

        small, back = _downscale(_gray_or_rgb(image), self.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
        out = []
        for x, y, w, h in (found if len(found) else []):
            cx, cy = (x + w / 2) * back, (y + h / 2 + self._SHIFT_Y * h) * back
            half = w * self._SCALE * back / 2
            out.append((cx - half, cy - half, cx + half, cy + half))
        return out



class FallbackDetector:
    """Try detectors in order; the first that finds a face wins (e.g. dlib, then Haar for faces
    HOG misses: strong lighting, slight profile)."""

    def __init__(self, *detectors: FaceDetector):
        self.detectors = detectors
        self.name = "+".join(getattr(d, "name", type(d).__name__) for d in detectors)

    def detect(self, image: np.ndarray) -> Detection | None:
        for i, d in enumerate(self.detectors):
            r = d.detect(image)
            if r is not None:
                if i > 0:
                    r.notes.append(f"found by the fallback detector {d.name}")
                return r
        return None


_REGISTRY: dict[str, Callable[..., FaceDetector]] = {
    "dlib": DlibDetector,
    "haar": HaarDetector,
    "dlib+haar": lambda **kw: FallbackDetector(DlibDetector(**kw), HaarDetector(**kw)),
}


def register_detector(name: str, factory: Callable[..., FaceDetector]) -> None:
    """Add a backend: `factory(**kwargs)` returns an object with `.name` and `.detect(image)`."""
    _REGISTRY[name] = factory


def detector_names() -> list[str]:
    return sorted(_REGISTRY)


def get_detector(name: str | FaceDetector = "dlib", **kwargs) -> FaceDetector:
    if not isinstance(name, str):
        return name  # already a detector object
    if name not in _REGISTRY:
        raise MicronbertError(f"unknown face detector {name!r}; choose one of {detector_names()}")
    return _REGISTRY[name](**kwargs)
