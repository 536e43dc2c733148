"""CAS(ME)^3 Part A's layout, read and written: `part_A/spNO.1/b/color/166.jpg` (absolute frame numbers; frames can be missing
inside a clip) and `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`.

A clip folder holds a whole recording with several micro-expressions, so sample ids carry the onset
("spNO.1/b/onset166", "..._apex170" if two share an onset) and each sample lists only its frames
onset..offset. The sheet's clip letter is matched to the folder ignoring case (one row says 'J').
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from micronbert.data.layouts import ClipSpec, sheet_header, sheet_row, write_frames, write_xlsx
from micronbert.data.readers._common import SampleBuilder, child_dirs, find_sheet, match_dir, require_root
from micronbert.data.readers._sheets import Column, as_text, load_sheet, to_int
from micronbert.data.report import ValidationReport
from micronbert.data.samples import make_table
from micronbert.errors import MicronbertError

NAME = "casme3"
EMOTIONS = ("happy", "disgust", "fear", "anger", "sad", "surprise", "others")
SHEETS = ("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", "cas(me)3_part_A_ME_label_JpgIndex.xlsx")
SHEET_GLOBS = ("*part_A*ME*label*.xls*", "*part_A*label*.xls*", "cas*me*3*.xls*")
COLUMNS = [
    Column("subject", ("Subject", "sub")),
    Column("filename", ("Filename", "File name", "clip")),
    Column("onset", ("Onset", "OnsetFrame", "Onset Frame")),
    Column("apex", ("Apex", "ApexFrame", "Apex Frame")),
    Column("offset", ("Offset", "OffsetFrame", "Offset Frame")),
    Column("aus", ("AU", "Action Units", "AUs"), required=False),
    Column("emotion", ("emotion", "Estimated Emotion")),
]
FRAMES_DIR = "part_A"
FRAME_NAME = "{n}.jpg"
SHEET_LAYOUT = ("subject", "filename", "onset", "apex", "offset", "aus", "Objective class", "emotion")
HEADER = sheet_header(COLUMNS, SHEET_LAYOUT)
_SUBJECT_DIR = re.compile(r"^spNO\.\d+$", re.IGNORECASE)


def frames_root(root: Path) -> Path:
    for d in (root / FRAMES_DIR, root / "Part_A", root):
        if d.is_dir() and any(_SUBJECT_DIR.match(p.name) for p in child_dirs(d)):
            return d
    raise MicronbertError(f"{root}: no CAS(ME)^3 subject folders found (expected part_A/spNO.1/a/color/...)")


def subject_id(value) -> str | None:
    """'spNO.1' as written; a bare number 1 becomes 'spNO.1'."""
    n = to_int(value)
    if n is not None:
        return f"spNO.{n}"
    text = as_text(value)
    m = re.match(r"^spno\.?(\d+)$", text, re.IGNORECASE)
    return f"spNO.{int(m.group(1))}" if m else None


def clip_frames_dir(base: Path, subject: str, letter: str) -> tuple[Path | None, str]:
    subject_dir = match_dir(base, subject)
    clip_dir = match_dir(subject_dir, letter) if subject_dir else None
    if clip_dir is None:
        return None, letter.lower()
    color = match_dir(clip_dir, "color")
    return (color if color is not None else clip_dir), clip_dir.name


def read(root, annotations=None, report: ValidationReport | None = None, *, apex_policy: str = "exclude",
         check_images: bool = True) -> pd.DataFrame:
    report = report if report is not None else ValidationReport()
    root = require_root(root)
    sheet_path = Path(annotations) if annotations else find_sheet(
        [root, root / FRAMES_DIR, root.parent], SHEETS, SHEET_GLOBS, "CAS(ME)^3 part A")
    sheet = load_sheet(sheet_path, COLUMNS, anchors=("subject", "filename"))
    base = frames_root(root)
    builder = SampleBuilder(NAME, report, apex_policy, check_images, EMOTIONS)
    for row, cells in sheet.rows:
        subject = subject_id(cells["subject"])
        letter = as_text(cells["filename"])
        if subject is None:
            builder.exclude(sheet_path, row, "", f"subject {cells['subject']!r} is not a CAS(ME)^3 subject")
            continue
        if not letter:
            builder.exclude(sheet_path, row, "", "filename (clip letter) is empty")
            continue
        frames_dir, clip = clip_frames_dir(base, subject, letter)
        onset = to_int(cells["onset"])
        sid = f"{subject}/{clip}/onset{onset if onset is not None else as_text(cells['onset'])}"
        apex = to_int(cells["apex"])
        builder.add(file=sheet_path, row=row, subject=subject, sample_id=sid, clip=clip,
                    frames_dir=frames_dir, onset=cells["onset"], apex=cells["apex"], offset=cells["offset"],
                    emotion=cells["emotion"], aus=cells.get("aus"), restrict_to_span=True,
                    id_fallbacks=[f"{sid}_apex{apex}"] if apex is not None else [])
    df = make_table(builder.rows)
    df.attrs.update(annotations=str(sheet_path), frames_root=str(base))
    return df


def clip_folder(subject, folder: str) -> str:
    """A clip folder's frames relative to the dataset root, as `write` lays it out."""
    return f"{FRAMES_DIR}/{subject}/{folder}/color"


def write(root, clips: Sequence[ClipSpec]) -> Path:
    """part_A/spNO.1/b/color/166.jpg and cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx (header on row 1).
    Clips sharing (subject, folder) share one folder: each writes its own frame numbers into it, so
    leaving numbers out makes gaps."""
    root = Path(root)
    rows = []
    for clip in clips:
        if clip.on_disk:
            write_frames(root / clip_folder(clip.subject, clip.folder or str(clip.clip).lower()), clip,
                         lambda n: FRAME_NAME.format(n=n))
        if clip.in_sheet:
            rows.append(sheet_row(clip, HEADER, COLUMNS, SHEET_LAYOUT))
    return write_xlsx(root / SHEETS[0], HEADER, rows)
