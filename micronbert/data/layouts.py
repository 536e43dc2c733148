"""Writers that lay clips out exactly as each micro-expression dataset ships: folder tree, frame file
names and the annotation sheet with its columns and header layout. The readers in
micronbert.data.readers read these trees back; tests and synthetic datasets are built with them.

    ClipSpec(subject, clip, frame_numbers, onset, apex, offset, emotion, aus="", frames=None, ...)
    write_casme2(root, clips, sheet_version="20140508", cropped=False) -> sheet path
    write_samm(root, clips, preamble=True, padding=5)                   -> sheet path
    write_smic(root, clips, cropped=False)                              -> HS folder
    write_casme3(root, clips)                                           -> sheet path
    write_mmew(root, clips)                                             -> sheet path
    write_folder(root, clips)                                           -> annotations.csv path

Annotation values are written as given (None -> empty cell), so dirty rows can be made on purpose.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np

from micronbert.errors import MicronbertError

FrameSource = Union[Sequence[np.ndarray], Callable[[int], np.ndarray], None]


@dataclass
class ClipSpec:
    """One annotated clip (one sheet row) and the frames to write for it.

    subject        as the dataset writes it: CASME II 1 (int), SAMM "006" (or 6), SMIC "s1", CAS(ME)^3
                   "spNO.1", MMEW "S01", folder: any text
    clip           CASME II "EP02_01f", SAMM "006_1_2", SMIC "s1_ne_01", CAS(ME)^3 the clip letter as the
                   sheet writes it ("b", "J"), MMEW "S01-01-001", folder: the clip path relative to root
    frame_numbers  numbers of the frame files to write (absolute, or from 1 for MMEW)
    onset, apex, offset, emotion, aus   the sheet cells (any value; None -> empty cell)
    frames         RGB uint8 arrays aligned with frame_numbers, or a callable frame(number) -> array;
                   None writes a small grey image
    folder         on-disk clip folder name when it differs from `clip` (CAS(ME)^3 'j' for sheet 'J')
    in_sheet       False: frames only, no sheet row; on_disk: False: sheet row only, no folder
    extras         further sheet cells by column name (e.g. {"Inducement Code": 1, "Notes": ""}),
                   and for SAMM {"padding": 4} to override the frame-number padding of this clip
    """

    subject: Any
    clip: str
    frame_numbers: Sequence[int]
    onset: Any = None
    apex: Any = None
    offset: Any = None
    emotion: Any = ""
    aus: Any = ""
    frames: FrameSource = None
    folder: str | None = None
    in_sheet: bool = True
    on_disk: bool = True
    extras: dict = field(default_factory=dict)

    def image(self, index: int, number: int) -> np.ndarray:
        if self.frames is None:
            return np.full((16, 16, 3), 128, np.uint8)
        if callable(self.frames):
            return self.frames(number)
        return self.frames[index]

    @property
    def dir_name(self) -> str:
        return self.folder if self.folder is not None else str(self.clip)


def _write_frames(folder: Path, clip: ClipSpec, name: Callable[[int], str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not callable(clip.frames) and clip.frames is not None and len(clip.frames) != len(clip.frame_numbers):
        raise ValueError(f"clip {clip.clip}: {len(clip.frames)} frames for {len(clip.frame_numbers)} numbers")
    for i, n in enumerate(clip.frame_numbers):
        img = np.asarray(clip.image(i, n))
        if img.dtype != np.uint8 or img.ndim not in (2, 3):
            raise ValueError(f"clip {clip.clip} frame {n}: expected a uint8 image, got {img.dtype} {img.shape}")
        _write_image(folder / name(n), img)


def _write_image(path: Path, rgb: np.ndarray) -> None:
    # Plain write, not frames.write_image: its per-file fsync makes trees of thousands of frames slow,
    # and a half-written tree is simply rewritten.
    import cv2

    img = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix.lower(), img, params)
    if not ok:
        raise MicronbertError(f"cannot encode image for {path}")
    path.write_bytes(buf.tobytes())


def _write_xlsx(path: Path, header: Sequence[str | None], rows: Sequence[Sequence], preamble=()) -> Path:
    """A one-sheet workbook: preamble rows of free text, the header row, then the data rows."""
    import openpyxl

    from micronbert.utils.io import atomic_save

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Sheet1")
    for line in preamble:
        ws.append(list(line) if isinstance(line, (list, tuple)) else [line])
    ws.append(list(header))
    for r in rows:
        ws.append(list(r))
    atomic_save(path, wb.save)
    return path


def _cells(clip: ClipSpec, header: Sequence[str | None], base: dict) -> list:
    values = {**base, **{k: v for k, v in clip.extras.items() if k != "padding"}}
    return [values.get(h) if h else None for h in header]


# ------------------------------------------------------------------------------------------ CASME II
CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                 "Action Units", "Estimated Emotion"]
CASME2_SHEETS = {"20140508": "CASME2-coding-20140508.xlsx", "20190701": "CASME2-coding-20190701.xlsx",
                 "updated": "CASME2-coding-updated.xlsx"}


def write_casme2(root, clips: Sequence[ClipSpec], sheet_version: str = "20140508", cropped=False) -> Path:
    """CASME2_RAW_selected/sub01/EP02_01f/img46.jpg, or with cropped=True Cropped/sub01/EP02_01f/reg_img46.jpg
    (cropped="updated": Cropped-updated/Cropped/...), and the coding sheet CASME2-coding-<version>.xlsx
    (header on row 1; the two unnamed columns stay blank)."""
    root = Path(root)
    if sheet_version not in CASME2_SHEETS:
        raise MicronbertError(f"CASME II sheet version must be one of {sorted(CASME2_SHEETS)} (the .xls "
                              f"'_label_Ver_2' sheet cannot be written without xlwt); got {sheet_version!r}")
    if cropped:
        base, prefix = root / ("Cropped-updated/Cropped" if cropped == "updated" else "Cropped"), "reg_img"
    else:
        base, prefix = root / "CASME2_RAW_selected", "img"
    rows = []
    for clip in clips:
        if clip.on_disk:
            subject_dir = f"sub{int(clip.subject):02d}" if str(clip.subject).isdigit() else str(clip.subject)
            _write_frames(base / subject_dir / clip.dir_name, clip, lambda n: f"{prefix}{n}.jpg")
        if clip.in_sheet:
            rows.append(_cells(clip, CASME2_HEADER, {
                "Subject": clip.subject, "Filename": clip.clip, "OnsetFrame": clip.onset,
                "ApexFrame": clip.apex, "OffsetFrame": clip.offset, "Action Units": clip.aus,
                "Estimated Emotion": clip.emotion}))
    return _write_xlsx(root / CASME2_SHEETS[sheet_version], CASME2_HEADER, rows)


# ------------------------------------------------------------------------------------------ SAMM
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
               "Duration", "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]
SAMM_SHEET = "SAMM_Micro_FACS_Codes_v2.xlsx"
# Thirteen rows of free text before the header, as in the v2 sheet (content made up here).
SAMM_PREAMBLE = ["SAMM: Spontaneous Actions and Micro-Movements", "", "FACS codes of the micro-movements",
                 "Frame numbers refer to the image file names", "", "Columns:",
                 "Subject - participant", "Filename - clip folder", "Onset/Apex/Offset - frame numbers",
                 "Duration - frames", "Estimated Emotion - label", "", "Notes follow the table"]


def write_samm(root, clips: Sequence[ClipSpec], preamble: bool = True, padding: int = 5) -> Path:
    """SAMM/006/006_1_2/006_05562.jpg ({subject}_{frame padded to `padding` digits, or the clip's
    extras["padding"]}) and SAMM_Micro_FACS_Codes_v2.xlsx with the 13-row preamble (preamble=False: the
    2018 re-release layout, header on row 1)."""
    root = Path(root)
    rows = []
    for clip in clips:
        subject = str(clip.subject).zfill(3) if str(clip.subject).isdigit() else str(clip.subject)
        pad = int(clip.extras.get("padding", padding))
        if clip.on_disk:
            _write_frames(root / "SAMM" / subject / clip.dir_name, clip, lambda n: f"{subject}_{n:0{pad}d}.jpg")
        if clip.in_sheet:
            duration = (clip.offset - clip.onset + 1
                        if isinstance(clip.onset, int) and isinstance(clip.offset, int) else None)
            rows.append(_cells(clip, SAMM_HEADER, {
                "Subject": clip.subject, "Filename": clip.clip, "Inducement Code": 1,
                "Onset Frame": clip.onset, "Apex Frame": clip.apex, "Offset Frame": clip.offset,
                "Duration": duration, "Micro": "Micro - 1/2", "Action Units": clip.aus,
                "Estimated Emotion": clip.emotion, "Objective Classes": None, "Notes": None}))
    return _write_xlsx(root / SAMM_SHEET, SAMM_HEADER, rows, SAMM_PREAMBLE if preamble else ())


# ------------------------------------------------------------------------------------------ SMIC
def write_smic(root, clips: Sequence[ClipSpec], cropped: bool = False) -> Path:
    """HS/s1/micro/<emotion>/s1_ne_01/image060436.bmp (cropped: reg_image060436.bmp). The emotion is the
    folder (negative, positive, surprise, or "non_micro" to write HS/s1/non_micro/<clip>/); onset/apex/
    offset are not written anywhere because SMIC has no sheet."""
    base = Path(root) / "HS"
    prefix = "reg_image" if cropped else "image"
    for clip in clips:
        if not clip.on_disk:
            continue
        subject_dir = base / str(clip.subject)
        folder = (subject_dir / "non_micro" / clip.dir_name if clip.emotion == "non_micro"
                  else subject_dir / "micro" / str(clip.emotion) / clip.dir_name)
        _write_frames(folder, clip, lambda n: f"{prefix}{n:06d}.bmp")
    base.mkdir(parents=True, exist_ok=True)
    return base


# ------------------------------------------------------------------------------------------ CAS(ME)^3
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
CASME3_SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"


def write_casme3(root, clips: Sequence[ClipSpec]) -> Path:
    """part_A/spNO.1/b/color/166.jpg and cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx (header on row 1).
    Clips sharing (subject, folder) share one folder: each writes its own frame numbers into it, so
    leaving numbers out makes gaps."""
    root = Path(root)
    rows = []
    for clip in clips:
        if clip.on_disk:
            folder = root / "part_A" / str(clip.subject) / (clip.folder or str(clip.clip).lower()) / "color"
            _write_frames(folder, clip, lambda n: f"{n}.jpg")
        if clip.in_sheet:
            rows.append(_cells(clip, CASME3_HEADER, {
                "Subject": clip.subject, "Filename": clip.clip, "Onset": clip.onset, "Apex": clip.apex,
                "Offset": clip.offset, "AU": clip.aus, "Objective class": None, "emotion": clip.emotion}))
    return _write_xlsx(root / CASME3_SHEET, CASME3_HEADER, rows)


# ------------------------------------------------------------------------------------------ MMEW
MMEW_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
               "Estimated Emotion", "remarks"]
MMEW_SHEET = "MMEW_Micro_Exp.xlsx"


def write_mmew(root, clips: Sequence[ClipSpec]) -> Path:
    """MMEW/Micro_Expression/<emotion>/S01-01-001/1.jpg (emotion folder first, or extras["emotion_folder"])
    and MMEW_Micro_Exp.xlsx beside the MMEW folder (header on row 1)."""
    root = Path(root)
    rows = []
    for clip in clips:
        if clip.on_disk:
            emotion_dir = str(clip.extras.get("emotion_folder", clip.emotion))
            _write_frames(root / "MMEW" / "Micro_Expression" / emotion_dir / clip.dir_name, clip,
                          lambda n: f"{n}.jpg")
        if clip.in_sheet:
            rows.append(_cells(clip, MMEW_HEADER, {
                "Subject": clip.subject, "Filename": clip.clip, "OnsetFrame": clip.onset,
                "ApexFrame": clip.apex, "OffsetFrame": clip.offset, "Action Units": clip.aus,
                "Estimated Emotion": clip.emotion, "remarks": clip.extras.get("remarks")}))
    return _write_xlsx(root / MMEW_SHEET, MMEW_HEADER, rows)


# ------------------------------------------------------------------------------------------ folder
FOLDER_HEADER = ["subject", "clip", "onset", "apex", "offset", "label", "aus"]


def write_folder(root, clips: Sequence[ClipSpec], name_pattern: str = "img{n}.jpg") -> Path:
    """<root>/<clip>/img46.jpg for each clip and <root>/annotations.csv with the columns
    subject, clip, onset, apex, offset, label, aus (the generic `folder` reader's layout)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for clip in clips:
        if clip.on_disk:
            _write_frames(root / clip.dir_name, clip, lambda n: name_pattern.format(n=n))
        if clip.in_sheet:
            rows.append(["" if v is None else v for v in
                         (clip.subject, clip.clip, clip.onset, clip.apex, clip.offset, clip.emotion, clip.aus)])
    path = root / "annotations.csv"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(FOLDER_HEADER)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path
