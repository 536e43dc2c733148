"""The facial action of the synthetic benchmark: AUs as Gaussian displacement bumps on landmarks, their
placement on a face, the displacement field, the onset→apex→offset curve, and the map of where it moved."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from micronbert.errors import MicronbertError
from micronbert.faces.template import DEFAULT_MARGIN, DEFAULT_SIZE, template_landmarks

# Interocular distance of the template in the 224-px aligned crop: amplitudes are given at this scale.
_T224 = template_landmarks(DEFAULT_SIZE, DEFAULT_MARGIN)
IOD_224 = float(np.linalg.norm(_T224[36:42].mean(0) - _T224[42:48].mean(0)))


# ------------------------------------------------------------------------------------------ actions
# An action unit: bumps on landmark anchors. Anchor = landmark indices averaged (image-left side first),
# direction in the aligned face's axes (x right on the image, y down), sigma in 224-px crop pixels.
# side: "L" / "R" = the image's left / right half (the subject's right / left).
@dataclass(frozen=True)
class Bump:
    anchor: tuple[int, ...]
    direction: tuple[float, float]
    sigma: float
    side: str
    region: str


def _pair(left: tuple[int, ...], right: tuple[int, ...], dl, dr, sigma, region) -> tuple[Bump, Bump]:
    return Bump(left, dl, sigma, "L", region), Bump(right, dr, sigma, "R", region)


AUS: dict[str, tuple[Bump, ...]] = {
    "1": _pair((20, 21), (22, 23), (0, -1), (0, -1), 9.0, "brows"),                 # inner brow raiser
    "2": _pair((17, 18), (25, 26), (0, -1), (0, -1), 9.0, "brows"),                 # outer brow raiser
    "4": _pair((19, 20, 21), (22, 23, 24), (0.5, 1), (-0.5, 1), 9.0, "brows"),      # brow lowerer
    "5": _pair((37, 38), (43, 44), (0, -1), (0, -1), 5.0, "eyes"),                  # upper lid raiser
    "6": _pair((41, 31, 2), (46, 35, 14), (0, -1), (0, -1), 12.0, "cheeks"),        # cheek raiser
    "7": _pair((40, 41), (46, 47), (0, -1), (0, -1), 5.0, "eyes"),                  # lid tightener
    "9": _pair((31, 29), (35, 29), (0, -1), (0, -1), 8.0, "nose"),                  # nose wrinkler
    "10": _pair((50,), (52,), (0, -1), (0, -1), 7.0, "mouth"),                      # upper lip raiser
    "12": _pair((48,), (54,), (-0.8, -0.6), (0.8, -0.6), 8.0, "lip_corners"),       # lip corner puller
    "14": _pair((48,), (54,), (-1, 0), (1, 0), 7.0, "lip_corners"),                 # dimpler
    "15": _pair((48,), (54,), (0, 1), (0, 1), 8.0, "lip_corners"),                  # lip corner depressor
    "17": (Bump((57, 8), (0, -1), 10.0, "C", "chin"),),                             # chin raiser
    "20": _pair((48,), (54,), (-1, 0.4), (1, 0.4), 8.0, "lip_corners"),             # lip stretcher
    "45": _pair((37, 38), (43, 44), (0, 1), (0, 1), 5.0, "eyes"),                   # blink (distraction)
}

# Class -> variants; each variant is a list of AUs, "R"/"L" prefix = one side only (as FACS writes R12).
OTHERS = [["7"], ["L2"], ["R20"], ["10"], ["5"]]
VOCAB: dict[str, dict[str, list[list[str]]]] = {
    "casme2": {
        "happiness": [["6", "12"], ["12"], ["6", "12"]],
        "disgust": [["9"], ["4"], ["9", "10"], ["4", "7"]],
        "repression": [["15"], ["14"], ["15", "17"], ["17"]],
        "surprise": [["1", "2"], ["1", "2", "5"]],
        "others": OTHERS,
        "sadness": [["1", "4", "15"]],
        "fear": [["1", "2", "4", "20"]],
    },
    "samm": {
        "Happiness": [["6", "12"], ["12"]],
        "Anger": [["4"], ["4", "7"]],
        "Contempt": [["R14"], ["L14"], ["R12"]],
        "Surprise": [["1", "2"], ["1", "2", "5"]],
        "Disgust": [["9"], ["9", "10"]],
        "Sadness": [["1", "4", "15"]],
        "Fear": [["1", "2", "4", "20"]],
        "Other": OTHERS,
    },
    "smic": {
        "positive": [["6", "12"], ["12"]],
        "negative": [["4"], ["9"], ["15"], ["14", "17"]],
        "surprise": [["1", "2"], ["1", "2", "5"]],
    },
}
DEFAULT_CLASSES = {
    "casme2": ["happiness", "disgust", "repression", "surprise", "others"],
    "samm": ["Happiness", "Anger", "Contempt", "Surprise", "Other"],
    "smic": ["positive", "negative", "surprise"],
}


# ------------------------------------------------------------------------------------------ geometry
def similarity_matrix(scale: float, angle: float, src_c: np.ndarray, dst_c: np.ndarray) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = dst_c - m[:, :2] @ src_c
    return m


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


# iBUG 68 mirror permutation (image left <-> right), so a mirrored face keeps the landmark convention.
MIRROR_68 = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
                   + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
                   + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
                   + [64, 63, 62, 61, 60, 67, 66, 65])


def crop_transform(landmarks: np.ndarray, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Frame -> aligned crop transform that `prepare` fits on these landmarks."""
    from micronbert.faces.align import similarity_transform
    from micronbert.faces.template import FIT_WEIGHTS, fit_points

    return similarity_transform(fit_points(landmarks), fit_points(template_landmarks(size, margin)), FIT_WEIGHTS)


# ------------------------------------------------------------------------------------------ actions
@dataclass
class PlacedBump:
    au: str
    region: str
    centre: np.ndarray      # frame pixels
    vector: np.ndarray      # frame pixels at full intensity (amplitude included)
    sigma: float            # frame pixels

    def to_dict(self, to_crop: np.ndarray) -> dict:
        s = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))
        c = apply_affine(to_crop, self.centre[None])[0]
        v = to_crop[:, :2] @ self.vector
        return {"au": self.au, "region": self.region, "x": round(float(self.centre[0]), 2),
                "y": round(float(self.centre[1]), 2), "dx": round(float(self.vector[0]), 3),
                "dy": round(float(self.vector[1]), 3), "sigma": round(self.sigma, 2),
                "x224": round(float(c[0]), 2), "y224": round(float(c[1]), 2), "dx224": round(float(v[0]), 3),
                "dy224": round(float(v[1]), 3), "sigma224": round(self.sigma * s, 2)}


def place_aus(aus: Sequence[str], landmarks: np.ndarray, amplitude224: float, rng: np.random.Generator,
              jitter224: float = 3.0, asymmetry: float = 0.35) -> list[PlacedBump]:
    """Bumps of these AUs on a face with `landmarks` (frame pixels). amplitude224: peak displacement at
    the 224-px crop scale. Random per call: left/right gains, centre jitter."""
    to_crop = crop_transform(landmarks)
    s = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))  # crop px per frame px
    rot = to_crop[:, :2] / s                                  # frame -> crop rotation
    gains = {"L": 1.0 + rng.uniform(-asymmetry, asymmetry), "R": 1.0 + rng.uniform(-asymmetry, asymmetry), "C": 1.0}
    out = []
    for code in aus:
        only = code[0] if code[0] in "LR" else None
        au = code[1:] if only else code
        if au not in AUS:
            raise MicronbertError(f"unknown action unit {code!r}; known: {sorted(AUS)}")
        for b in AUS[au]:
            if only and b.side != only:
                continue
            centre = landmarks[list(b.anchor)].mean(0) + rng.normal(0, jitter224, 2) / s
            d = np.asarray(b.direction, np.float64)
            d = rot.T @ (d / np.linalg.norm(d))  # crop axes -> frame axes
            out.append(PlacedBump(au, b.region, centre, d * amplitude224 * gains[b.side] / s, b.sigma / s))
    return out


def displacement_field(bumps: Sequence[PlacedBump], height: int, width: int) -> np.ndarray:
    """(H, W, 2) float32 displacement at full intensity: sum of Gaussian bumps times their vectors."""
    field_ = np.zeros((height, width, 2), np.float32)
    for b in bumps:
        r = int(math.ceil(4 * b.sigma))
        x0, x1 = max(0, int(b.centre[0]) - r), min(width, int(b.centre[0]) + r + 1)
        y0, y1 = max(0, int(b.centre[1]) - r), min(height, int(b.centre[1]) + r + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        g = np.exp(-((xs - b.centre[0]) ** 2 + (ys - b.centre[1]) ** 2) / (2 * b.sigma ** 2))
        field_[y0:y1, x0:x1] += g[..., None] * b.vector.astype(np.float32)
    return field_


def intensity(t: np.ndarray, onset: float, apex: float, offset: float) -> np.ndarray:
    """Raised cosine: 0 at onset, 1 at apex, 0 at offset (positions), 0 outside."""
    t = np.asarray(t, np.float64)
    up = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - onset) / max(apex - onset, 1e-9), 0, 1))
    down = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - apex) / max(offset - apex, 1e-9), 0, 1))
    return np.where(t <= apex, up, down) * ((t >= onset) & (t <= offset))


def action_map(bumps: Sequence[dict], size: int, crop_size: int = DEFAULT_SIZE,
               to_crop: np.ndarray | None = None) -> np.ndarray:
    """|displacement| at apex over a (size, size) grid covering the aligned crop, from actions.csv bumps.
    to_crop: the frame->crop transform actually used (e.g. the cache's); default the synth's own."""
    f = size / crop_size
    ys, xs = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / f
    total = np.zeros((size, size, 2))
    for b in bumps:
        if to_crop is not None:
            s = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))
            cx, cy = apply_affine(to_crop, np.array([[b["x"], b["y"]]]))[0]
            v, sig = to_crop[:, :2] @ np.array([b["dx"], b["dy"]]), b["sigma"] * s
        else:
            cx, cy, v, sig = b["x224"], b["y224"], np.array([b["dx224"], b["dy224"]]), b["sigma224"]
        g = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sig ** 2))
        total += g[..., None] * v
    return np.linalg.norm(total, axis=-1)
