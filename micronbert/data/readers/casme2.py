"""CASME II's layout, read and written: `CASME2_RAW_selected/sub01/EP02_01f/img46.jpg` or the official
crops `Cropped/sub01/EP02_01f/reg_img46.jpg` (also `Cropped-updated/Cropped`), with one of the coding
sheets (-20140508.xlsx, -20190701.xlsx, -updated.xlsx, _label_Ver_2.xls).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from micronbert.data.layouts import ClipSpec, sheet_header, sheet_row, write_frames, write_xlsx
from micronbert.data.readers._common import CROP_PREFIX, SampleBuilder, check_variant, child_dirs, find_sheet, \
    require_root, subject_clip_rows
from micronbert.data.readers._sheets import Column, as_text, load_sheet, to_int
from micronbert.data.report import ValidationReport
from micronbert.data.samples import make_table
from micronbert.errors import MicronbertError

NAME = "casme2"
EMOTIONS = ("happiness", "disgust", "repression", "surprise", "others", "sadness", "fear")
# When several sheets sit in the root, the 2014-05-08 one wins: it is the one the MEGC2019 counts and
# most papers use. Pass --annotations to pick another.
SHEETS = ("CASME2-coding-20140508.xlsx", "CASME2-coding-20190701.xlsx", "CASME2-coding-updated.xlsx",
          "CASME2_label_Ver_2.xls")
SHEET_GLOBS = ("CASME2*coding*.xls*", "*CASME2*label*.xls*", "CASME2*.xls*")
RAW_DIR, CROPPED_DIR, UPDATED_CROPPED_DIR = "CASME2_RAW_selected", "Cropped", "Cropped-updated/Cropped"
RAW_DIRS = (f"{RAW_DIR}/{RAW_DIR}", RAW_DIR, "CASME2_RAW")
CROPPED_DIRS = (UPDATED_CROPPED_DIR, CROPPED_DIR, "Cropped-updated", "CASME2_Cropped")
FRAME_NAME = "img{n}.jpg"   # crops: CROP_PREFIX + FRAME_NAME
COLUMNS = [
    Column("subject", ("Subject",)),
    Column("filename", ("Filename", "File name")),
    Column("onset", ("OnsetFrame", "Onset")),
    Column("apex", ("ApexFrame", "Apex")),
    Column("offset", ("OffsetFrame", "Offset")),
    Column("aus", ("Action Units", "AU", "AUs"), required=False),
    Column("emotion", ("Estimated Emotion", "Emotion")),
]
# The sheet as written: canonical columns (header text = the Column's first alias) and two unnamed ones.
SHEET_LAYOUT = ("subject", "filename", None, "onset", "apex", "offset", None, "aus", "emotion")
HEADER = sheet_header(COLUMNS, SHEET_LAYOUT)
SHEET_VERSIONS = {"20140508": SHEETS[0], "20190701": SHEETS[1], "updated": SHEETS[2]}
_SUBJECT_DIR = re.compile(r"^sub\d+$", re.IGNORECASE)


def _has_subjects(folder: Path) -> bool:
    return folder.is_dir() and any(_SUBJECT_DIR.match(p.name) for p in child_dirs(folder))


def frames_root(root: Path, variant: str) -> tuple[Path, str]:
    """The folder holding sub01.. for the chosen variant, and the variant actually used."""
    order = {"raw": [("raw", RAW_DIRS)], "cropped": [("cropped", CROPPED_DIRS)],
             "auto": [("raw", RAW_DIRS), ("cropped", CROPPED_DIRS)]}[variant]
    for name, dirs in order:
        for d in dirs:
            if _has_subjects(root / d):
                return root / d, name
    if _has_subjects(root):  # the user pointed --root at the sub01.. folder itself
        return root, variant
    wanted = {"raw": RAW_DIRS[1], "cropped": CROPPED_DIRS[1], "auto": f"{RAW_DIRS[1]} or {CROPPED_DIRS[1]}"}
    raise MicronbertError(f"{root}: no CASME II frame folders found (expected {wanted[variant]}/sub01/...)")


def subject_id(value) -> str | None:
    n = to_int(value)
    if n is not None:
        return f"sub{n:02d}"
    text = as_text(value)
    return text.lower() if _SUBJECT_DIR.match(text) else None


def read(root, annotations=None, report: ValidationReport | None = None, *, variant: str = "auto",
         apex_policy: str = "exclude", check_images: bool = True) -> pd.DataFrame:
    report = report if report is not None else ValidationReport()
    root = require_root(root)
    check_variant(variant)
    sheet_path = Path(annotations) if annotations else find_sheet([root, root.parent], SHEETS, SHEET_GLOBS,
                                                                   "CASME II")
    sheet = load_sheet(sheet_path, COLUMNS, anchors=("subject", "filename"))
    base, used = frames_root(root, variant)
    builder = SampleBuilder(NAME, report, apex_policy, check_images, EMOTIONS)
    for row, cells, subject, clip, sid in subject_clip_rows(sheet, sheet_path, builder, subject_id):
        builder.add(file=sheet_path, row=row, subject=subject, sample_id=sid, clip=clip,
                    frames_dir=base / subject / clip, onset=cells["onset"], apex=cells["apex"],
                    offset=cells["offset"], emotion=cells["emotion"], aus=cells.get("aus"),
                    variant="auto" if used == "auto" else used)
    df = make_table(builder.rows)
    df.attrs.update(annotations=str(sheet_path), frames_root=str(base), variant=used)
    return df


def frames_folder(cropped=False) -> str:
    """Where `write` puts the sub01.. folders: raw frames, or cropped=True / "updated" for the crops."""
    return UPDATED_CROPPED_DIR if cropped == "updated" else CROPPED_DIR if cropped else RAW_DIR


def clip_folder(subject, clip: str, cropped=False) -> str:
    """A clip's folder relative to the dataset root, as `write` lays it out."""
    return f"{frames_folder(cropped)}/{subject_id(subject) or subject}/{clip}"


def frame_name(number: int, cropped=False) -> str:
    return (CROP_PREFIX if cropped else "") + FRAME_NAME.format(n=number)


def write(root, clips: Sequence[ClipSpec], sheet_version: str = "20140508", cropped=False) -> Path:
    """CASME2_RAW_selected/sub01/EP02_01f/img46.jpg, or with cropped=True Cropped/sub01/EP02_01f/reg_img46.jpg
    (cropped="updated": Cropped-updated/Cropped/...), and the coding sheet CASME2-coding-<version>.xlsx
    (header on row 1; the two unnamed columns stay blank)."""
    root = Path(root)
    if sheet_version not in SHEET_VERSIONS:
        raise MicronbertError(f"CASME II sheet version must be one of {sorted(SHEET_VERSIONS)} (the .xls "
                              f"'_label_Ver_2' sheet cannot be written without xlwt); got {sheet_version!r}")
    rows = []
    for clip in clips:
        if clip.on_disk:
            write_frames(root / clip_folder(clip.subject, clip.dir_name, cropped), clip,
                         lambda n: frame_name(n, cropped))
        if clip.in_sheet:
            rows.append(sheet_row(clip, HEADER, COLUMNS, SHEET_LAYOUT))
    return write_xlsx(root / SHEET_VERSIONS[sheet_version], HEADER, rows)
