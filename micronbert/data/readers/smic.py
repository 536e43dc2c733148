"""SMIC-HS's layout, read and written: `HS/s1/micro/{negative,positive,surprise}/s1_ne_01/image060436.bmp` (official crops:
`reg_image060436.bmp`). No sheet: the label is the folder, the clip spans onset..offset, and the apex is
not annotated, so it is the middle listed frame (apex_source "middle"). `non_micro/` is ignored.

Subject ids are canonical "s01" whether the disk says s1 or s01 (the literature's lists write s01 and
s01_ne_01); sample ids are "s01/s01_ne_01" while `clip` keeps the folder name as on disk.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from micronbert.data.layouts import ClipSpec, write_frames
from micronbert.data.readers._common import CROP_PREFIX, SampleBuilder, check_variant, child_dirs, require_root
from micronbert.data.report import ValidationReport
from micronbert.data.samples import make_table
from micronbert.errors import MicronbertError

NAME = "smic"
EMOTIONS = ("negative", "positive", "surprise")
FRAMES_DIR = "HS"
FRAME_NAME = "image{n:06d}.bmp"   # crops: CROP_PREFIX + FRAME_NAME
NON_MICRO = "non_micro"
ROOT_DIRS = (FRAMES_DIR, "SMIC_all_raw/HS", "SMIC_all_cropped/HS", "SMIC/HS")
_SUBJECT = re.compile(r"^s0*(\d+)", re.IGNORECASE)


def canonical_subject(name: str) -> str | None:
    """'s1', 's01', 'S001' -> 's01'; None when the name is not a subject folder."""
    m = _SUBJECT.match(name)
    return f"s{int(m.group(1)):02d}" if m and m.end() == len(name) else None


def canonical_clip(name: str) -> str:
    """'s1_ne_01' -> 's01_ne_01' (only the leading subject part changes)."""
    m = _SUBJECT.match(name)
    return f"s{int(m.group(1)):02d}{name[m.end():]}" if m else name


def frames_root(root: Path) -> Path:
    for d in [root / r for r in ROOT_DIRS] + [root]:
        if d.is_dir() and any(canonical_subject(p.name) for p in child_dirs(d)):
            return d
    raise MicronbertError(f"{root}: no SMIC subject folders found (expected HS/s1/micro/...)")


def read(root, annotations=None, report: ValidationReport | None = None, *, variant: str = "auto",
         check_images: bool = True) -> pd.DataFrame:
    report = report if report is not None else ValidationReport()
    root = require_root(root)
    check_variant(variant)
    if annotations:
        raise MicronbertError("SMIC has no annotation sheet (labels come from the folders); "
                              "drop --annotations")
    base = frames_root(root)
    builder = SampleBuilder(NAME, report, "exclude", check_images, EMOTIONS)
    subjects = sorted((canonical_subject(p.name), p) for p in child_dirs(base) if canonical_subject(p.name))
    for subject, subject_dir in subjects:
        micro = subject_dir / "micro"
        if not micro.is_dir():
            continue  # subjects without micro-expressions ship only non_micro/
        for emotion_dir in child_dirs(micro):
            for clip_dir in child_dirs(emotion_dir):
                sid = f"{subject}/{canonical_clip(clip_dir.name)}"
                listing = builder.listing(clip_dir, variant)
                if not listing:
                    builder.exclude(clip_dir, None, sid, f"clip folder has no frame images: {clip_dir}")
                    continue
                numbers = [n for n, _ in listing]
                builder.add(file=clip_dir, row=None, subject=subject, sample_id=sid, clip=clip_dir.name,
                            frames_dir=clip_dir, onset=numbers[0], apex=numbers[(len(numbers) - 1) // 2],
                            offset=numbers[-1], emotion=emotion_dir.name, variant=variant,
                            apex_source="middle")
    df = make_table(builder.rows)
    df.attrs.update(frames_root=str(base), variant=variant)
    return df


def clip_folder(subject, clip: str, emotion: str) -> str:
    """A clip's folder relative to the dataset root, as `write` lays it out (emotion "non_micro": the
    subject's non_micro/ folder)."""
    kind = NON_MICRO if emotion == NON_MICRO else f"micro/{emotion}"
    return f"{FRAMES_DIR}/{subject}/{kind}/{clip}"


def frame_name(number: int, cropped: bool = False) -> str:
    return (CROP_PREFIX if cropped else "") + FRAME_NAME.format(n=number)


def write(root, clips: Sequence[ClipSpec], cropped: bool = False) -> Path:
    """HS/s1/micro/<emotion>/s1_ne_01/image060436.bmp (cropped: reg_image060436.bmp). The emotion is the
    folder (negative, positive, surprise, or "non_micro" to write HS/s1/non_micro/<clip>/); onset/apex/
    offset are not written anywhere because SMIC has no sheet."""
    root = Path(root)
    for clip in clips:
        if clip.on_disk:
            write_frames(root / clip_folder(clip.subject, clip.dir_name, str(clip.emotion)), clip,
                         lambda n: frame_name(n, cropped))
    (root / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
    return root / FRAMES_DIR
