"""SMIC-HS: `HS/s1/micro/{negative,positive,surprise}/s1_ne_01/image060436.bmp` (official crops:
`reg_image060436.bmp`). No sheet: the label is the folder, the clip spans onset..offset, and the apex is
not annotated, so it is the middle listed frame (apex_source "middle"). `non_micro/` is ignored.

Subject ids are canonical "s01" whether the disk says s1 or s01 (the literature's lists write s01 and
s01_ne_01); sample ids are "s01/s01_ne_01" while `clip` keeps the folder name as on disk.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from micronbert.data.readers._common import SampleBuilder, check_variant, child_dirs, require_root
from micronbert.data.report import ValidationReport
from micronbert.data.samples import make_table
from micronbert.errors import MicronbertError

NAME = "smic"
EMOTIONS = ("negative", "positive", "surprise")
ROOT_DIRS = ("HS", "SMIC_all_raw/HS", "SMIC_all_cropped/HS", "SMIC/HS")
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
