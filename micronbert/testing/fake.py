"""Tiny fake dataset trees in the exact shipped layouts (written by each dataset's module in
micronbert.data.readers, the same module that reads them back), for tests,
benchmarks and demos. Frames are 16x16 noise images; only a few frames per clip are written.

Two kinds of generator:
- fake_<dataset>(root, ...): a handful of clips exercising every quirk of that dataset (switchable) plus
  dirty rows; the returned FakeDataset says which sample ids must come back and which rows must be
  reported (with a fragment of the reason).
- realistic_casme2/samm/smic(root) and megc2019_fixture(root): the per-emotion and per-subject counts of
  the real CASME II 2014-05-08 sheet (255 samples, 26 subjects), SAMM v2 (159, 29) and SMIC-HS (164, 16),
  so that protocol counts (MEGC2019: 145/133/164) can be checked without the real data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from micronbert.data.layouts import ClipSpec
from micronbert.data.readers import casme2, casme3, folder, mmew, samm, smic


@dataclass
class FakeDataset:
    name: str
    root: Path
    sheet: Path | None
    valid: list[str] = field(default_factory=list)       # sample ids the reader must return
    dirty: dict = field(default_factory=dict)            # sheet row (SMIC: clip folder) -> reason fragment
    warnings: dict = field(default_factory=dict)         # sheet row -> warning fragment (sample kept)
    clips: list[ClipSpec] = field(default_factory=list)


def noise_frames(seed: int, size: int = 16, gray: bool = False):
    """A callable frame(number) -> small deterministic noise image (RGB, or 2-D grayscale like SAMM)."""
    def frame(number: int) -> np.ndarray:
        rng = np.random.default_rng(seed * 100003 + number)
        shape = (size, size) if gray else (size, size, 3)
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return frame


def corrupt(path: Path) -> None:
    """Overwrite an image with bytes no decoder accepts."""
    Path(path).write_bytes(b"this is not an image")


def _rows(clips: Sequence[ClipSpec], first_row: int) -> dict[int, ClipSpec]:
    """Sheet row number of each clip written to the sheet (data starts at `first_row`)."""
    in_sheet = [c for c in clips if c.in_sheet]
    return {id(c): first_row + i for i, c in enumerate(in_sheet)}


# ------------------------------------------------------------------------------------------ CASME II
def fake_casme2(root, *, dirty: bool = True, sheet_version: str = "20140508", cropped=False) -> FakeDataset:
    """Clean clips (one with img2..img10 to check numeric ordering, one with a three-part filename and a
    bare-int AU) and, with dirty=True, one row per kind of dirt."""
    root = Path(root)
    c = []
    c.append(ClipSpec(1, "EP02_01f", [2, 3, 9, 10], 2, 9, 10, "happiness", "12", noise_frames(1)))
    c.append(ClipSpec(1, "EP06_02_01", [40, 46, 52], 40, 46, 52, "disgust", 4, noise_frames(2)))
    c.append(ClipSpec(2, "EP03_02", [100, 105, 120], 100, 105, 120, "others", "4+L10", noise_frames(3)))
    c.append(ClipSpec(3, "EP09_01", [5, 6, 7], 5, 6, 7, "repression", "R12", noise_frames(4)))
    valid = ["sub01/EP02_01f", "sub01/EP06_02_01", "sub02/EP03_02", "sub03/EP09_01"]
    dirt: list[tuple[ClipSpec, str]] = []
    warn: list[tuple[ClipSpec, str]] = []
    if dirty:
        dirt += [
            (ClipSpec(4, "EP01_01", [1, 5, 9], 1, None, 9, "surprise", "1+2", noise_frames(5)), "apex is missing"),
            (ClipSpec(4, "EP01_02", [1, 5, 9], 1, "/", 9, "surprise", "1+2", noise_frames(6)), "not a frame number"),
            (ClipSpec(5, "EP02_03", [1, 5, 9], 1, 30, 9, "fear", "4", noise_frames(7)), "outside onset..offset"),
            (ClipSpec(5, "EP02_04", [1, 5, 9], 9, 5, 1, "fear", "4", noise_frames(8)), "after offset"),
            (ClipSpec(6, "EP04_01", [1, 5, 9], 1, 5, 9, "sadness", "", noise_frames(9), on_disk=False),
             "clip folder not found"),
            (ClipSpec(6, "EP04_02", [], 1, 5, 9, "sadness", "", noise_frames(10)), "no frame images"),
            (ClipSpec(7, "EP05_01", [1, 5, 9], 1, 5, 9, "happiness", "", noise_frames(11)), "unreadable image"),
            (ClipSpec(7, "EP05_02", [1, 5, 9], 1, 5, 9, "", "", noise_frames(12)), "emotion is empty"),
            (ClipSpec(8, "EP06_01", [20, 25, 30], 1, 5, 30, "disgust", "", noise_frames(13)), "is not in"),
        ]
        warn += [(ClipSpec(8, "EP07_01", [1, 5, 9], 1, 5, 9, "hapiness", "", noise_frames(14)), "unknown emotion")]
        valid.append("sub08/EP07_01")
    clips = c + [d for d, _ in dirt] + [w for w, _ in warn]
    sheet = casme2.write(root, clips, sheet_version=sheet_version, cropped=cropped)
    if dirty:
        corrupt(root / casme2.clip_folder(7, "EP05_01", cropped) / casme2.frame_name(5, cropped))
    rows = _rows(clips, 2)
    return FakeDataset("casme2", root, sheet, valid, {rows[id(d)]: r for d, r in dirt},
                       {rows[id(w)]: r for w, r in warn}, clips)


# ------------------------------------------------------------------------------------------ SAMM
def fake_samm(root, *, preamble: bool = True, mixed_padding: bool = True, int_subjects: bool = True,
              dirty: bool = True) -> FakeDataset:
    """Grayscale frames; subject 006 padded to 5 digits, 007 to 4 (mixed_padding); subject cells as the
    number 6 (int_subjects) or the text '006'."""
    root = Path(root)
    subj = (lambda s: int(s)) if int_subjects else (lambda s: s)
    pad7 = {"padding": 4} if mixed_padding else {}
    c = [
        ClipSpec(subj("006"), "006_1_2", [5562, 5570, 5580], 5562, 5570, 5580, "Anger", "4+7",
                 noise_frames(21, gray=True)),
        ClipSpec(subj("006"), "006_1_3", [9, 10, 11], 9, 10, 11, "Happiness", "(R6 or R12)+R15",
                 noise_frames(22, gray=True)),
        ClipSpec(subj("007"), "007_3_1", [998, 1000, 1002], 998, 1000, 1002, "Other", "ref(7B)+43",
                 noise_frames(23, gray=True), extras=pad7),
        ClipSpec("011", "011_2_1", [300, 310, 320], 300, 310, 320, "Surprise", "1+2", noise_frames(24, gray=True)),
    ]
    valid = ["006/006_1_2", "006/006_1_3", "007/007_3_1", "011/011_2_1"]
    dirt = []
    if dirty:
        dirt = [
            (ClipSpec("014", "014_1_1", [10, 20, 30], 10, "-", 30, "Fear", "", noise_frames(25, gray=True)),
             "not a frame number"),
            # the known kind of offset typo: offset smaller than onset
            (ClipSpec("014", "014_1_2", [10, 20, 30], 10, 20, 3, "Fear", "", noise_frames(26, gray=True)),
             "after offset"),
        ]
    clips = c + [d for d, _ in dirt]
    sheet = samm.write(root, clips, preamble=preamble, padding=5)
    rows = _rows(clips, len(samm.PREAMBLE) + 2 if preamble else 2)  # preamble rows + header
    return FakeDataset("samm", root, sheet, valid, {rows[id(d)]: r for d, r in dirt}, {}, clips)


# ------------------------------------------------------------------------------------------ SMIC
def fake_smic(root, *, subject_style: str = "mixed", cropped: bool = False, dirty: bool = True) -> FakeDataset:
    """subject_style: "s1" (as on the disks), "s01" (as in the literature) or "mixed" (s1 and s02)."""
    root = Path(root)

    def subj(n: int) -> str:
        if subject_style == "s01" or (subject_style == "mixed" and n % 2 == 0):
            return f"s{n:02d}"
        return f"s{n}"

    c = [
        ClipSpec(subj(1), f"{subj(1)}_ne_01", [60436, 60440, 60450], emotion="negative", frames=noise_frames(31)),
        ClipSpec(subj(1), f"{subj(1)}_po_01", [9, 10, 11, 12, 100], emotion="positive", frames=noise_frames(32)),
        ClipSpec(subj(2), f"{subj(2)}_sur_01", [1, 2, 3], emotion="surprise", frames=noise_frames(33)),
        ClipSpec(subj(2), f"{subj(2)}_ne_01", [7, 8, 9], emotion="non_micro", frames=noise_frames(34)),
    ]
    valid = ["s01/s01_ne_01", "s01/s01_po_01", "s02/s02_sur_01"]
    dirt = {}
    if dirty:
        c.append(ClipSpec(subj(3), f"{subj(3)}_ne_02", [], emotion="negative"))
        dirt[f"{subj(3)}_ne_02"] = "no frame images"
        c.append(ClipSpec(subj(3), f"{subj(3)}_po_02", [1, 2, 3], emotion="positive", frames=noise_frames(35)))
        dirt[f"{subj(3)}_po_02"] = "unreadable image"
    smic.write(root, c, cropped=cropped)
    if dirty:
        corrupt(root / smic.clip_folder(subj(3), f"{subj(3)}_po_02", "positive") / smic.frame_name(1, cropped))
    return FakeDataset("smic", root, None, valid, dirt, {}, c)


# ------------------------------------------------------------------------------------------ CAS(ME)^3
def fake_casme3(root, *, dirty: bool = True) -> FakeDataset:
    """Two samples in one clip folder, a gap in the frames (apex frame missing, offset frame missing),
    an upper-case 'J' in the sheet for folder 'j', 'Others' capitalised, and dirty rows."""
    root = Path(root)
    f = noise_frames(41)
    c = [
        ClipSpec("spNO.1", "b", [166, 167, 168, 170], 166, 168, 170, "disgust", "4", f),
        ClipSpec("spNO.1", "b", [200, 201, 203, 205], 200, 202, 206, "happy", "12", f),  # gap: 202, 206 missing
        ClipSpec("spNO.1", "J", [10, 11, 12], 10, 11, 12, "Others", "", f, folder="j"),
        ClipSpec("spNO.2", "a", [1, 2, 3], 1, 2, 3, "surprise", "1+2", noise_frames(42)),
    ]
    valid = ["spNO.1/b/onset166", "spNO.1/b/onset200", "spNO.1/j/onset10", "spNO.2/a/onset1"]
    warnings = {3: "apex frame 202 missing"}
    dirt = []
    if dirty:
        dirt = [
            (ClipSpec("spNO.2", "a", [20, 21, 22], 22, 20, 25, "fear", "", f), "outside onset..offset"),
            (ClipSpec("spNO.2", "a", [30, 31], 30, 31, 0, "anger", "", f), "offset is 0"),
        ]
    clips = c + [d for d, _ in dirt]
    sheet = casme3.write(root, clips)
    rows = _rows(clips, 2)
    return FakeDataset("casme3", root, sheet, valid, {rows[id(d)]: r for d, r in dirt}, warnings, clips)


# ------------------------------------------------------------------------------------------ MMEW
def fake_mmew(root, *, dirty: bool = True) -> FakeDataset:
    root = Path(root)
    c = [
        ClipSpec("S01", "S01-01-001", [1, 2, 3, 10], 1, 3, 10, "happiness", "12", noise_frames(51)),
        ClipSpec("S01", "S01-02-001", [1, 2, 3], 1, 2, 3, "surprise", "1+2", noise_frames(52)),
        ClipSpec(2, "S02-01-001", [1, 2, 3], 1, 2, 3, "others", "", noise_frames(53)),
    ]
    valid = ["S01/S01-01-001", "S01/S01-02-001", "S02/S02-01-001"]
    dirt = []
    if dirty:
        dirt = [(ClipSpec("S02", "S02-02-001", [1, 2, 3], 1, None, 3, "disgust", "", noise_frames(54)),
                 "apex is missing")]
    clips = c + [d for d, _ in dirt]
    sheet = mmew.write(root, clips)
    rows = _rows(clips, 2)
    return FakeDataset("mmew", root, sheet, valid, {rows[id(d)]: r for d, r in dirt}, {}, clips)


# ------------------------------------------------------------------------------------------ folder
def fake_folder(root, *, dirty: bool = True) -> FakeDataset:
    root = Path(root)
    c = [
        ClipSpec("p1", "p1/take1", [2, 10, 11], 2, 10, 11, "happy", "", noise_frames(61)),
        ClipSpec("p2", "p2/take1", [1, 2, 3], 1, 2, 3, "sad", "", noise_frames(62)),
    ]
    valid = ["p1/p1/take1", "p2/p2/take1"]
    dirt = []
    if dirty:
        dirt = [(ClipSpec("p2", "p2/take2", [1, 2, 3], 1, 7, 3, "sad", "", noise_frames(63)), "outside")]
    clips = c + [d for d, _ in dirt]
    sheet = folder.write(root, clips)
    rows = _rows(clips, 2)
    return FakeDataset("folder", root, sheet, valid, {rows[id(d)]: r for d, r in dirt}, {}, clips)


# ------------------------------------------------------------------------------------------ realistic counts
CASME2_COUNTS = {"happiness": 32, "disgust": 63, "repression": 27, "surprise": 25, "others": 99,
                 "sadness": 7, "fear": 2}
SAMM_COUNTS = {"Anger": 57, "Contempt": 12, "Happiness": 26, "Surprise": 15, "Other": 26, "Disgust": 9,
               "Fear": 8, "Sadness": 6}
SMIC_COUNTS = {"negative": 70, "positive": 51, "surprise": 43}
SMIC_SUBJECTS = (1, 2, 3, 4, 6, 8, 9, 11, 12, 13, 14, 15, 16, 18, 19, 20)


def _spread(counts: dict[str, int], core: set[str], n_core: int, n_all: int) -> list[tuple[int, str]]:
    """(subject index, emotion): `core` emotions round-robin over the first n_core subjects, the rest
    over all n_all starting from the last subject, so the subjects beyond n_core hold only non-core
    samples (as in the real sheets)."""
    out, i_core, i_rest = [], 0, 0
    for emotion, n in counts.items():
        for _ in range(n):
            if emotion in core:
                out.append((i_core % n_core, emotion))
                i_core += 1
            else:
                out.append(((n_all - 1 - i_rest) % n_all, emotion))  # the extra subjects first
                i_rest += 1
    return out


def realistic_casme2(root, frames_per_clip: int = 3) -> FakeDataset:
    """255 samples over 26 subjects with the 2014-05-08 per-emotion counts; the MEGC2019 exclusions
    sub04/EP12_01f (disgust) and sub24/EP02_07 (repression) exist; sub25 and sub26 hold only others,
    sadness and fear, so 24 subjects remain under MEGC2019."""
    counts = dict(CASME2_COUNTS)
    counts["disgust"] -= 1
    counts["repression"] -= 1
    clips = [ClipSpec(4, "EP12_01f", _numbers(frames_per_clip), 10, 12, 14, "disgust", "4+L10", noise_frames(0)),
             ClipSpec(24, "EP02_07", _numbers(frames_per_clip), 10, 12, 14, "repression", "R12", noise_frames(0))]
    per_subject: dict[int, int] = {}
    for k, (s, emotion) in enumerate(_spread(counts, {"happiness", "disgust", "repression", "surprise"}, 24, 26)):
        subject = s + 1
        per_subject[subject] = per_subject.get(subject, 0) + 1
        clips.append(ClipSpec(subject, f"EP{19 + per_subject[subject]:02d}_01f", _numbers(frames_per_clip),
                              10, 12, 14, emotion, "4", noise_frames(k % 7)))
    sheet = casme2.write(root, clips)
    return FakeDataset("casme2", Path(root), sheet, [f"{casme2.subject_id(c.subject)}/{c.clip}" for c in clips], {},
                       {}, clips)


def realistic_samm(root, frames_per_clip: int = 3) -> FakeDataset:
    """159 samples over 29 subjects with the v2 per-emotion counts; the 29th subject holds only 'Other'."""
    clips = []
    subjects = [f"{n:03d}" for n in range(6, 6 + 29)]
    per_subject: dict[str, int] = {}
    core = set(SAMM_COUNTS) - {"Other"}
    for k, (s, emotion) in enumerate(_spread(SAMM_COUNTS, core, 28, 29)):
        subject = subjects[s]
        per_subject[subject] = per_subject.get(subject, 0) + 1
        clips.append(ClipSpec(subject, f"{subject}_{per_subject[subject]}_1", _numbers(frames_per_clip, 1000),
                              1000, 1002, 1004, emotion, "4+7", noise_frames(k % 7, gray=True),
                              extras={"padding": 4 if s % 3 == 0 else 5}))
    sheet = samm.write(root, clips, preamble=True)
    return FakeDataset("samm", Path(root), sheet, [f"{c.subject}/{c.clip}" for c in clips], {}, {}, clips)


def realistic_smic(root, frames_per_clip: int = 3) -> FakeDataset:
    """164 clips over 16 subjects (negative 70, positive 51, surprise 43), written as s1..s20 on disk with
    one subject (s5) holding only non_micro clips."""
    short = {"negative": "ne", "positive": "po", "surprise": "sur"}
    clips = []
    per: dict[tuple[int, str], int] = {}
    for k, (s, emotion) in enumerate(_spread(SMIC_COUNTS, set(SMIC_COUNTS), 16, 16)):
        n = SMIC_SUBJECTS[s]
        per[(n, emotion)] = per.get((n, emotion), 0) + 1
        clips.append(ClipSpec(f"s{n}", f"s{n}_{short[emotion]}_{per[(n, emotion)]:02d}",
                              _numbers(frames_per_clip, 60436), emotion=emotion, frames=noise_frames(k % 7)))
    clips.append(ClipSpec("s5", "s5_ne_01", _numbers(frames_per_clip), emotion=smic.NON_MICRO,
                          frames=noise_frames(0)))
    smic.write(root, clips)
    valid = [f"{smic.canonical_subject(c.subject)}/{smic.canonical_clip(c.clip)}"
             for c in clips if c.emotion != smic.NON_MICRO]
    return FakeDataset("smic", Path(root), None, valid, {}, {}, clips)


def megc2019_fixture(root, frames_per_clip: int = 3) -> dict[str, FakeDataset]:
    """root/casme2, root/samm and root/smic with the realistic counts (MEGC2019: 145 + 133 + 164 = 442)."""
    root = Path(root)
    return {"casme2": realistic_casme2(root / "casme2", frames_per_clip),
            "samm": realistic_samm(root / "samm", frames_per_clip),
            "smic": realistic_smic(root / "smic", frames_per_clip)}


def _numbers(n: int, start: int = 10) -> list[int]:
    """Frame numbers for a realistic clip whose onset, apex, offset are start, start+2, start+4: those three
    always (the readers check they exist), plus the consecutive frames start..start+n-1 when n > 3."""
    key = {start, start + 2, start + 4}
    return sorted(key | set(range(start, start + n))) if n > 3 else sorted(key)


# reader name -> quirky fake generator
FAKES = {"casme2": fake_casme2, "samm": fake_samm, "smic": fake_smic, "casme3": fake_casme3, "mmew": fake_mmew,
         "folder": fake_folder}
