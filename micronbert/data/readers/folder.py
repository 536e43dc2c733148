"""Generic folder dataset: one folder of numbered frame images per clip, plus a CSV (or .xlsx) with one
row per sample. Columns (header on row 1; names compared ignoring case, spaces, '_' and '-'):

    subject   subject id (aliases: subj, participant, person)
    clip      clip folder relative to --root (aliases: filename, folder, video, path)
    onset     onset frame number as in the file names (aliases: onset_frame, start)
    apex      apex frame number (aliases: apex_frame, peak); optional column: when absent every apex
              is the middle listed frame between onset and offset (apex_source "middle")
    offset    offset frame number (aliases: offset_frame, end)
    label     emotion as text (aliases: emotion, estimated_emotion, class)
    aus       action units, optional (aliases: au, action_units)

The dataset column holds `dataset_name` (CLI: --name; default "folder").
Default annotation file: annotations.csv (or labels.csv) in --root. Sample ids are "subject/clip",
with "/onsetN" appended when several rows share a clip folder.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from micronbert.data.layouts import ClipSpec, sheet_header, sheet_row, write_frames
from micronbert.data.readers._common import SampleBuilder, find_sheet, require_root
from micronbert.data.readers._sheets import Column, as_text, load_sheet, to_int
from micronbert.data.report import ValidationReport
from micronbert.data.samples import make_table
from micronbert.errors import MicronbertError

NAME = "folder"
SHEETS = ("annotations.csv", "labels.csv", "annotations.xlsx")
COLUMNS = [
    Column("subject", ("subject", "subj", "participant", "person")),
    Column("clip", ("clip", "filename", "folder", "video", "path")),
    Column("onset", ("onset", "onset_frame", "start")),
    Column("apex", ("apex", "apex_frame", "peak"), required=False),
    Column("offset", ("offset", "offset_frame", "end")),
    Column("emotion", ("label", "emotion", "estimated_emotion", "class")),
    Column("aus", ("aus", "au", "action_units"), required=False),
]
SHEET_LAYOUT = ("subject", "clip", "onset", "apex", "offset", "emotion", "aus")
HEADER = sheet_header(COLUMNS, SHEET_LAYOUT)


def read(root, annotations=None, report: ValidationReport | None = None, *, dataset_name: str = NAME,
         apex_policy: str = "exclude", check_images: bool = True, variant: str = "auto") -> pd.DataFrame:
    report = report if report is not None else ValidationReport()
    root = require_root(root)
    if not dataset_name or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", dataset_name):
        raise MicronbertError(f"dataset name {dataset_name!r} must be letters, digits, '_', '-' or '.'")
    sheet_path = Path(annotations) if annotations else find_sheet([root], SHEETS, (), "folder-dataset")
    sheet = load_sheet(sheet_path, COLUMNS, anchors=("subject", "clip"))
    has_apex = "apex" in sheet.headers
    builder = SampleBuilder(dataset_name, report, apex_policy, check_images, None)
    for row, cells in sheet.rows:
        subject, clip = as_text(cells["subject"]), as_text(cells["clip"]).strip("/")
        sid = f"{subject}/{clip}" if subject and clip else ""
        if not subject or not clip:
            builder.exclude(sheet_path, row, sid, "subject or clip is empty")
            continue
        frames_dir = root / clip
        apex, source = cells.get("apex"), "annotated"
        if not has_apex:
            on, off = to_int(cells["onset"]), to_int(cells["offset"])
            apex, source = None, "middle"
            if on is not None and off is not None and frames_dir.is_dir():
                span = [n for n, _ in builder.listing(frames_dir, variant) if on <= n <= off]
                apex = span[(len(span) - 1) // 2] if span else None
        onset = to_int(cells["onset"])
        builder.add(file=sheet_path, row=row, subject=subject, sample_id=sid, clip=clip,
                    frames_dir=frames_dir, onset=cells["onset"], apex=apex, offset=cells["offset"],
                    emotion=cells["emotion"], aus=cells.get("aus"), variant=variant, apex_source=source,
                    id_fallbacks=[f"{sid}/onset{onset}"] if onset is not None else [])
    df = make_table(builder.rows)
    df.attrs.update(annotations=str(sheet_path), frames_root=str(root))
    return df


def write(root, clips: Sequence[ClipSpec], name_pattern: str = "img{n}.jpg") -> Path:
    """<root>/<clip>/img46.jpg for each clip and <root>/annotations.csv with the columns
    subject, clip, onset, apex, offset, label, aus (the generic `folder` reader's layout)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for clip in clips:
        if clip.on_disk:
            write_frames(root / clip.dir_name, clip, lambda n: name_pattern.format(n=n))
        if clip.in_sheet:
            rows.append(["" if v is None else v for v in sheet_row(clip, HEADER, COLUMNS, SHEET_LAYOUT)])
    path = root / SHEETS[0]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path
