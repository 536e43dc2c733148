"""The writing side of the dataset layouts: what a clip to write is (ClipSpec) and how frames and
sheets are written. Each dataset's own layout (folders, frame names, sheet columns) lives in one module,
micronbert.data.readers.<dataset>, whose `write` lays clips out exactly as the dataset ships and whose
`read` reads them back; tests (micronbert.testing.fake) and the synthetic benchmark (micronbert.synth)
write through those modules, so the layouts cannot drift apart.

    ClipSpec(subject, clip, frame_numbers, onset, apex, offset, emotion, aus="", frames=None, ...)
    WRITERS[name](root, clips, **options)   (micronbert.data.readers)
    casme2.write(root, clips, sheet_version="20140508", cropped=False) -> sheet path
    samm.write(root, clips, preamble=True, padding=5)                   -> sheet path
    smic.write(root, clips, cropped=False)                              -> HS folder
    casme3.write(root, clips)                                           -> sheet path
    mmew.write(root, clips)                                             -> sheet path
    folder.write(root, clips)                                           -> annotations.csv path

Annotation values are written as given (None -> empty cell), so dirty rows can be made on purpose.
"""
from __future__ import annotations

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


def write_frames(folder: Path, clip: ClipSpec, name: Callable[[int], str]) -> None:
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


def write_xlsx(path: Path, header: Sequence[str | None], rows: Sequence[Sequence], preamble=()) -> Path:
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


def sheet_header(columns, layout: Sequence[str | None]) -> list[str | None]:
    """The header row of a sheet: each entry of `layout` is a reader Column's canonical name (written as
    that column's first alias, the header text the dataset ships), another header text, or None (an
    unnamed column)."""
    first = {c.name: c.aliases[0] for c in columns}
    return [first.get(k, k) if k else None for k in layout]


def sheet_row(clip: ClipSpec, header: Sequence[str | None], columns, layout: Sequence[str | None],
              others: dict | None = None) -> list:
    """One sheet row: the clip's annotation under its canonical columns, `others` under the dataset's
    other header texts, and the clip's extras (by header text) over both."""
    canonical = {"subject": clip.subject, "filename": clip.clip, "clip": clip.clip, "onset": clip.onset,
                 "apex": clip.apex, "offset": clip.offset, "aus": clip.aus, "emotion": clip.emotion}
    names = {c.name for c in columns}
    values = {h: (canonical[k] if k in names else (others or {}).get(k)) for k, h in zip(layout, header) if k}
    values.update({k: v for k, v in clip.extras.items() if k != "padding"})
    return [values.get(h) if h else None for h in header]
