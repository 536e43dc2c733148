"""Similarity alignment of faces onto the canonical template, for single images and whole clips.

Clip mode (the default, and what `prepare` uses): landmarks are found on one reference frame (the
onset, or the first readable frame with a face) and the SAME transform is applied to every frame.
A micro-expression moves skin by a pixel or two; re-fitting per frame adds landmark jitter larger
than that, so per-frame alignment would drown the signal.

Frame mode, for long videos with head motion: landmarks on every frame, transforms smoothed over
time (centred moving average of crop centre, scale and angle), frames without a face flagged and
filled from their neighbours' transforms.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from micronbert.errors import MicronbertError
from micronbert.faces.detect import Detection, FaceDetector, get_detector
from micronbert.faces.template import (DEFAULT_MARGIN, DEFAULT_SIZE, FIT_WEIGHTS, check_geometry,
                                       fit_points, template_landmarks)

MODES = ("clip", "frame")


@dataclass
class AlignedFace:
    image: np.ndarray  # (S, S, 3) uint8 RGB
    transform: np.ndarray  # (2, 3) source pixel -> crop pixel
    landmarks: np.ndarray  # (68, 2) in source coordinates
    landmarks_aligned: np.ndarray  # (68, 2) in crop coordinates
    notes: list[str] = field(default_factory=list)


@dataclass
class AlignedClip:
    frames: np.ndarray  # (T, S, S, 3) uint8 RGB
    transform: np.ndarray  # clip mode: (2, 3); frame mode: (T, 2, 3)
    landmarks: np.ndarray  # clip mode: (68, 2) of the reference frame; frame mode: (T, 68, 2), NaN where absent
    face_found: bool
    present: np.ndarray  # (T,) bool: a face at the aligned place in this frame
    notes: list[str] = field(default_factory=list)
    reference: int | None = None  # position of the frame the clip transform was fitted on
    mode: str = "clip"

    def transforms(self) -> np.ndarray:
        """(T, 2, 3) whatever the mode."""
        if self.transform.ndim == 3:
            return self.transform
        return np.repeat(self.transform[None], len(self.frames), axis=0)


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping src
    points onto dst points (Umeyama 1991, weighted). Returns the (2, 3) matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (w * (xs ** 2).sum(1)).sum()
    if var_s <= 0:
        raise MicronbertError("degenerate landmarks: all fit points coincide")
    scale = (sig * d).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def apply_transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ m[:, :2].T + m[:, 2]


def warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Warp a source image into the (size, size) crop with the (2, 3) transform."""
    import cv2

    m = np.asarray(m, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        # Strong shrinking with bilinear sampling aliases; shrink with area averaging first.
        f = min(1.0, 2.0 * scale)
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        m = m.copy()
        m[:, :2] = m[:, :2] @ np.diag([w / nw, h / nh])
    return cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def centre_crop_transform(shape: tuple[int, ...], size: int) -> np.ndarray:
    """The transform of a centred square crop resized to `size` (the fallback without a face)."""
    h, w = shape[:2]
    side = min(h, w)
    s = size / side
    return np.array([[s, 0.0, -(w - side) / 2 * s], [0.0, s, -(h - side) / 2 * s]])


def resize_transform(shape: tuple[int, ...], size: int) -> np.ndarray:
    """The transform that stretches the whole image to (size, size) (for already-cropped faces)."""
    h, w = shape[:2]
    return np.array([[size / w, 0.0, 0.0], [0.0, size / h, 0.0]])


def _to_params(m: np.ndarray, size: int) -> np.ndarray:
    """(cx, cy, log scale, angle): the source point under the crop centre, scale and rotation."""
    a, b = m[0, 0], m[1, 0]
    inv = _invert(m)
    c = apply_transform(inv, np.array([[size / 2, size / 2]]))[0]
    return np.array([c[0], c[1], np.log(np.hypot(a, b)), np.arctan2(b, a)])


def _from_params(p: np.ndarray, size: int) -> np.ndarray:
    cx, cy, ls, ang = p
    s = np.exp(ls)
    a, b = s * np.cos(ang), s * np.sin(ang)
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = np.array([size / 2, size / 2]) - m[:, :2] @ np.array([cx, cy])
    return m


def _invert(m: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def smooth_transforms(transforms: Sequence[np.ndarray | None], size: int,
                      window: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing (None) transforms from their neighbours and smooth all with a centred moving
    average of (crop centre, log scale, angle). Returns ((T, 2, 3), present (T,) bool)."""
    present = np.array([t is not None for t in transforms], dtype=bool)
    n = len(transforms)
    if not present.any():
        raise ValueError("no transform to smooth")
    params = np.full((n, 4), np.nan)
    for i, t in enumerate(transforms):
        if t is not None:
            params[i] = _to_params(t, size)
    idx = np.flatnonzero(present)
    params[:, 3] = np.nan
    params[idx, 3] = np.unwrap([_to_params(transforms[i], size)[3] for i in idx])
    for k in range(4):  # linear interpolation across gaps, held at the ends
        params[:, k] = np.interp(np.arange(n), idx, params[idx, k])
    if window > 1 and n > 1:
        half = window // 2
        padded = np.concatenate([np.repeat(params[:1], half, 0), params, np.repeat(params[-1:], half, 0)])
        kernel = np.ones(2 * half + 1) / (2 * half + 1)
        params = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(4)], axis=1)
    return np.stack([_from_params(p, size) for p in params]), present


class FaceAligner:
    """Detect, landmark and align faces into a square crop.

    FaceAligner(size=224, margin=0.15, detector="dlib", mode="clip", smooth=5, max_side=640)
    """

    def __init__(self, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
                 detector: str | FaceDetector = "dlib", mode: str = "clip", smooth: int = 5,
                 max_side: int = 640):
        check_geometry(size, margin)
        if mode not in MODES:
            raise MicronbertError(f"alignment mode must be one of {MODES}, got {mode!r}")
        self.size = int(size)
        self.margin = float(margin)
        self.mode = mode
        self.smooth = int(smooth)
        self.detector = get_detector(detector, max_side=max_side) if isinstance(detector, str) else detector
        self.template = template_landmarks(self.size, self.margin)
        self._template_fit = fit_points(self.template)

    @property
    def detector_name(self) -> str:
        return getattr(self.detector, "name", type(self.detector).__name__)

    # -- single images -------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> Detection | None:
        return self.detector.detect(image)

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """(68, 2) float landmarks of the largest face in source pixels, or None."""
        det = self.detect(image)
        return None if det is None else det.landmarks

    def transform_from_landmarks(self, landmarks: np.ndarray) -> np.ndarray:
        return similarity_transform(fit_points(landmarks), self._template_fit, FIT_WEIGHTS)

    def warp(self, image: np.ndarray, transform: np.ndarray) -> np.ndarray:
        return warp(image, transform, self.size)

    def align_image(self, image: np.ndarray) -> AlignedFace:
        """Align the largest face of one image; raises MicronbertError when there is none."""
        det = self.detect(image)
        if det is None:
            raise MicronbertError("no face found in the image")
        m = self.transform_from_landmarks(det.landmarks)
        return AlignedFace(self.warp(image, m), m, det.landmarks, apply_transform(m, det.landmarks), list(det.notes))

    def face_present(self, aligned: np.ndarray) -> bool:
        """Is there a face in an aligned crop (cheap: the crop is small and the face fills it)."""
        return self.detector.detect(aligned) is not None

    # -- clips ---------------------------------------------------------------------------------
    def find_reference(self, frames: Sequence[np.ndarray | None],
                       reference: int = 0) -> tuple[int | None, Detection | None, list[str]]:
        """The first frame with a face, searching from `reference` forward, then backward.
        None entries (unreadable frames) are skipped."""
        n = len(frames)
        order = list(range(reference, n)) + list(range(reference - 1, -1, -1))
        notes: list[str] = []
        for i in order:
            if frames[i] is None:
                continue
            det = self.detect(frames[i])
            if det is not None:
                if i != reference:
                    notes.append(f"no face on reference frame {reference}, fitted on frame {i}")
                notes.extend(det.notes)
                return i, det, notes
        return None, None, notes

    def align_clip(self, frames: Sequence[np.ndarray], reference: int = 0,
                   check_presence: bool = False) -> AlignedClip:
        """Align all frames of a clip (a sequence of RGB uint8 images, positions 0..T-1).

        Clip mode fits one transform on frame `reference` (or the nearest later/earlier frame with a
        face) and applies it to all frames; `present` then says whether a face is still found in each
        aligned crop when check_presence is true, else it is all True. Frame mode landmarks every
        frame. Without any face, frames are centre crops, face_found is False and a note says so.
        """
        frames = list(frames)
        n = len(frames)
        if n == 0:
            raise MicronbertError("align_clip: no frames")
        if not 0 <= reference < n:
            raise MicronbertError(f"align_clip: reference {reference} outside 0..{n - 1}")
        if self.mode == "frame":
            return self._align_frames(frames)
        ref, det, notes = self.find_reference(frames, reference)
        if det is None:
            m = centre_crop_transform(frames[reference].shape, self.size)
            out = np.stack([self.warp(f, m) for f in frames])
            notes.append(f"no face found in any of the {n} frames")
            return AlignedClip(out, m, np.full((68, 2), np.nan), False, np.zeros(n, bool), notes, None, "clip")
        m = self.transform_from_landmarks(det.landmarks)
        out = np.stack([self.warp(f, m) for f in frames])
        if check_presence:
            present = np.array([self.face_present(a) for a in out], dtype=bool)
            present[ref] = True
            if not present.all():
                notes.append(f"no face in the aligned crop of {int((~present).sum())} of {n} frames")
        else:
            present = np.ones(n, dtype=bool)
        return AlignedClip(out, m, det.landmarks, True, present, notes, ref, "clip")

    def _align_frames(self, frames: list[np.ndarray]) -> AlignedClip:
        n = len(frames)
        lms = np.full((n, 68, 2), np.nan)
        transforms: list[np.ndarray | None] = []
        notes: list[str] = []
        for i, f in enumerate(frames):
            det = self.detect(f)
            if det is None:
                transforms.append(None)
                continue
            lms[i] = det.landmarks
            transforms.append(self.transform_from_landmarks(det.landmarks))
            if det.notes and not notes:
                notes.append(f"frame {i}: " + "; ".join(det.notes))
        if all(t is None for t in transforms):
            m = centre_crop_transform(frames[0].shape, self.size)
            out = np.stack([self.warp(f, m) for f in frames])
            notes.append(f"no face found in any of the {n} frames")
            return AlignedClip(out, np.repeat(m[None], n, 0), lms, False, np.zeros(n, bool), notes, None, "frame")
        ms, present = smooth_transforms(transforms, self.size, self.smooth)
        if not present.all():
            notes.append(f"no face found in {int((~present).sum())} of {n} frames (transform interpolated)")
        out = np.stack([self.warp(f, m) for f, m in zip(frames, ms)])
        return AlignedClip(out, ms, lms, True, present, notes, None, "frame")


def align_stills(aligner: FaceAligner, images: Iterable[np.ndarray]) -> list[AlignedFace | None]:
    """align_image over many images, None where no face was found."""
    out = []
    for img in images:
        try:
            out.append(aligner.align_image(img))
        except MicronbertError:
            out.append(None)
    return out
