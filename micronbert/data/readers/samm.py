"""SAMM's layout, read and written: `SAMM/006/006_1_2/006_05562.jpg` (frame padding 4 or 5 digits depending on the recording) and
`SAMM_Micro_FACS_Codes_v2.xlsx` (13 rows of free text before the header; the 2018 re-release has the
header on row 1; the header row is found by its 'Subject' and 'Filename' cells).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from micronbert.data.layouts import ClipSpec, sheet_header, sheet_row, write_frames, write_xlsx
from micronbert.data.readers._common import SampleBuilder, child_dirs, find_sheet, require_root, subject_clip_rows
from micronbert.data.readers._sheets import Column, load_sheet, to_int
from micronbert.data.report import ValidationReport
from micronbert.data.samples import make_table
from micronbert.errors import MicronbertError

NAME = "samm"
EMOTIONS = ("Anger", "Contempt", "Happiness", "Surprise", "Other", "Disgust", "Fear", "Sadness")
SHEETS = ("SAMM_Micro_FACS_Codes_v2.xlsx", "SAMM_Micro_FACS_Codes.xlsx")
SHEET_GLOBS = ("SAMM*FACS*.xls*", "SAMM*.xls*")
COLUMNS = [
    Column("subject", ("Subject",)),
    Column("filename", ("Filename", "File name")),
    Column("onset", ("Onset Frame", "Onset")),
    Column("apex", ("Apex Frame", "Apex")),
    Column("offset", ("Offset Frame", "Offset")),
    Column("aus", ("Action Units", "AU", "AUs"), required=False),
    Column("emotion", ("Estimated Emotion", "Emotion")),
]
FRAMES_DIR = "SAMM"
FRAME_NAME = "{subject}_{n:0{pad}d}.jpg"   # padding 4 or 5 digits, per recording
SHEET_LAYOUT = ("subject", "filename", "Inducement Code", "onset", "apex", "offset", "Duration", "Micro", "aus",
                "emotion", "Objective Classes", "Notes")
HEADER = sheet_header(COLUMNS, SHEET_LAYOUT)
# Thirteen rows of free text before the header, as in the v2 sheet (content made up here).
PREAMBLE = ["SAMM: Spontaneous Actions and Micro-Movements", "", "FACS codes of the micro-movements",
            "Frame numbers refer to the image file names", "", "Columns:",
            "Subject - participant", "Filename - clip folder", "Onset/Apex/Offset - frame numbers",
            "Duration - frames", "Estimated Emotion - label", "", "Notes follow the table"]
_SUBJECT_DIR = re.compile(r"^\d{2,3}$")


def frames_root(root: Path) -> Path:
    for d in (root / "SAMM", root):
        if d.is_dir() and any(_SUBJECT_DIR.match(p.name) for p in child_dirs(d)):
            return d
    raise MicronbertError(f"{root}: no SAMM subject folders found (expected SAMM/006/006_1_2/...)")


def subject_id(value) -> str | None:
    """'006' whether the sheet cell holds the text '006' or the number 6."""
    n = to_int(value)
    return None if n is None else f"{n:03d}"


def read(root, annotations=None, report: ValidationReport | None = None, *, apex_policy: str = "exclude",
         check_images: bool = True) -> pd.DataFrame:
    report = report if report is not None else ValidationReport()
    root = require_root(root)
    sheet_path = Path(annotations) if annotations else find_sheet([root, root.parent], SHEETS, SHEET_GLOBS,
                                                                   "SAMM")
    sheet = load_sheet(sheet_path, COLUMNS, anchors=("subject", "filename"))
    base = frames_root(root)
    builder = SampleBuilder(NAME, report, apex_policy, check_images, EMOTIONS)
    for row, cells, subject, clip, sid in subject_clip_rows(sheet, sheet_path, builder, subject_id):
        subject_dir = base / subject
        if not subject_dir.is_dir() and (base / subject.lstrip("0")).is_dir():
            subject_dir = base / subject.lstrip("0")
        builder.add(file=sheet_path, row=row, subject=subject, sample_id=sid, clip=clip,
                    frames_dir=subject_dir / clip, onset=cells["onset"], apex=cells["apex"],
                    offset=cells["offset"], emotion=cells["emotion"], aus=cells.get("aus"))
    df = make_table(builder.rows)
    df.attrs.update(annotations=str(sheet_path), frames_root=str(base))
    return df


def subject_folder(subject) -> str:
    """'006' for the sheet's 6 or '006'; other text as written."""
    return str(subject).zfill(3) if str(subject).isdigit() else str(subject)


def clip_folder(subject, clip: str) -> str:
    """A clip's folder relative to the dataset root, as `write` lays it out."""
    return f"{FRAMES_DIR}/{subject_folder(subject)}/{clip}"


def write(root, clips: Sequence[ClipSpec], preamble: bool = True, padding: int = 5) -> Path:
    """SAMM/006/006_1_2/006_05562.jpg ({subject}_{frame padded to `padding` digits, or the clip's
    extras["padding"]}) and SAMM_Micro_FACS_Codes_v2.xlsx with the 13-row preamble (preamble=False: the
    2018 re-release layout, header on row 1)."""
    root = Path(root)
    rows = []
    for clip in clips:
        subject, pad = subject_folder(clip.subject), int(clip.extras.get("padding", padding))
        if clip.on_disk:
            write_frames(root / clip_folder(clip.subject, clip.dir_name), clip,
                         lambda n: FRAME_NAME.format(subject=subject, n=n, pad=pad))
        if clip.in_sheet:
            duration = (clip.offset - clip.onset + 1
                        if isinstance(clip.onset, int) and isinstance(clip.offset, int) else None)
            rows.append(sheet_row(clip, HEADER, COLUMNS, SHEET_LAYOUT,
                                  {"Inducement Code": 1, "Duration": duration, "Micro": "Micro - 1/2"}))
    return write_xlsx(root / SHEETS[0], HEADER, rows, PREAMBLE if preamble else ())
