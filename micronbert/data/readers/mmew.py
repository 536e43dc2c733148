"""MMEW's layout (micro part), read and written: `MMEW/Micro_Expression/happiness/S01-01-001/1.jpg` (emotion folder first, frames
numbered from 1 within the clip) and `MMEW_Micro_Exp.xlsx`.

The clip is looked up under the sheet's emotion folder (ignoring case); when it sits under another
emotion folder the sheet's label is kept and a warning names both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from micronbert.data.layouts import ClipSpec, sheet_header, sheet_row, write_frames, write_xlsx
from micronbert.data.readers._common import SampleBuilder, child_dirs, find_sheet, match_dir, require_root
from micronbert.data.readers._sheets import Column, as_text, load_sheet, to_int
from micronbert.data.report import ValidationReport
from micronbert.data.samples import make_table
from micronbert.errors import MicronbertError

NAME = "mmew"
EMOTIONS = ("happiness", "surprise", "anger", "disgust", "fear", "sadness", "others")
SHEETS = ("MMEW_Micro_Exp.xlsx",)
SHEET_GLOBS = ("MMEW*Micro*.xls*",)
COLUMNS = [
    Column("subject", ("Subject",)),
    Column("filename", ("Filename", "File name")),
    Column("onset", ("OnsetFrame", "Onset Frame", "Onset")),
    Column("apex", ("ApexFrame", "Apex Frame", "Apex")),
    Column("offset", ("OffsetFrame", "Offset Frame", "Offset")),
    Column("aus", ("Action Units", "AU", "AUs"), required=False),
    Column("emotion", ("Estimated Emotion", "Emotion")),
]
FRAMES_DIR = "MMEW/Micro_Expression"
FRAME_NAME = "{n}.jpg"   # numbered from 1 within the clip
SHEET_LAYOUT = ("subject", "filename", "onset", "apex", "offset", "aus", "emotion", "remarks")
HEADER = sheet_header(COLUMNS, SHEET_LAYOUT)


def frames_root(root: Path) -> Path:
    for d in (root / FRAMES_DIR, root / "Micro_Expression", root):
        if d.is_dir() and d.name.lower() == "micro_expression":
            return d
    raise MicronbertError(f"{root}: no MMEW Micro_Expression folder found "
                          f"(expected MMEW/Micro_Expression/happiness/S01-01-001/...)")


def subject_id(value) -> str | None:
    """'S01' as written; a bare number 1 becomes 'S01'."""
    n = to_int(value)
    if n is not None:
        return f"S{n:02d}"
    return as_text(value) or None


def read(root, annotations=None, report: ValidationReport | None = None, *, apex_policy: str = "exclude",
         check_images: bool = True) -> pd.DataFrame:
    report = report if report is not None else ValidationReport()
    root = require_root(root)
    sheet_path = Path(annotations) if annotations else find_sheet(
        [root, root / "MMEW", root.parent], SHEETS, SHEET_GLOBS, "MMEW")
    sheet = load_sheet(sheet_path, COLUMNS, anchors=("subject", "filename"))
    base = frames_root(root)
    emotion_dirs = child_dirs(base)
    builder = SampleBuilder(NAME, report, apex_policy, check_images, EMOTIONS)
    for row, cells in sheet.rows:
        subject = subject_id(cells["subject"])
        clip = as_text(cells["filename"])
        emotion = as_text(cells["emotion"])
        sid = f"{subject}/{clip}" if subject and clip else ""
        if subject is None or not clip:
            builder.exclude(sheet_path, row, sid, "subject or filename is empty")
            continue
        folder = match_dir(base, emotion) if emotion else None
        frames_dir = match_dir(folder, clip) if folder else None
        if frames_dir is None:
            elsewhere = [d / clip for d in emotion_dirs if (d / clip).is_dir()]
            if elsewhere:
                frames_dir = elsewhere[0]
                builder.report.add(sheet_path, row, sid, f"clip found under '{frames_dir.parent.name}' but "
                                                         f"the sheet says {emotion!r}; sheet label kept",
                                   "warning")
            else:
                frames_dir = base / (emotion or "?") / clip
        builder.add(file=sheet_path, row=row, subject=subject, sample_id=sid, clip=clip,
                    frames_dir=frames_dir, onset=cells["onset"], apex=cells["apex"], offset=cells["offset"],
                    emotion=emotion, aus=cells.get("aus"))
    df = make_table(builder.rows)
    df.attrs.update(annotations=str(sheet_path), frames_root=str(base))
    return df


def clip_folder(emotion: str, clip: str) -> str:
    """A clip's folder relative to the dataset root, as `write` lays it out (emotion folder first)."""
    return f"{FRAMES_DIR}/{emotion}/{clip}"


def write(root, clips: Sequence[ClipSpec]) -> Path:
    """MMEW/Micro_Expression/<emotion>/S01-01-001/1.jpg (emotion folder first, or extras["emotion_folder"])
    and MMEW_Micro_Exp.xlsx beside the MMEW folder (header on row 1)."""
    root = Path(root)
    rows = []
    for clip in clips:
        if clip.on_disk:
            emotion_dir = str(clip.extras.get("emotion_folder", clip.emotion))
            write_frames(root / clip_folder(emotion_dir, clip.dir_name), clip, lambda n: FRAME_NAME.format(n=n))
        if clip.in_sheet:
            rows.append(sheet_row(clip, HEADER, COLUMNS, SHEET_LAYOUT))
    return write_xlsx(root / SHEETS[0], HEADER, rows)
