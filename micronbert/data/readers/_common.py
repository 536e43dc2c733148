"""Machinery shared by the dataset readers: finding files, listing clip folders, and turning one
annotation row into one validated sample row (sheets and cells: micronbert.data.readers._sheets).

Every problem with a row ends up in the ValidationReport with the sheet path and the 1-based row number
as a spreadsheet program shows it; nothing is dropped silently.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from micronbert.data.frames import frame_number, is_image, read_image
from micronbert.data.readers._sheets import as_text, clean, to_int
from micronbert.data.report import ValidationReport
from micronbert.errors import MicronbertError

APEX_POLICIES = ("exclude", "middle")
VARIANTS = ("auto", "raw", "cropped")
CROP_PREFIX = "reg_"


# ----------------------------------------------------------------------------------------- files
def require_root(root) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise MicronbertError(f"dataset root not found: {root}")
    if not root.is_dir():
        raise MicronbertError(f"dataset root is not a folder: {root}")
    return root


def find_sheet(dirs: Sequence[Path], names: Sequence[str], globs: Sequence[str], what: str) -> Path:
    """The first existing file among `names` (in preference order), then `globs`, searched in `dirs`."""
    dirs = [d for d in dict.fromkeys(dirs) if d.is_dir()]
    for name in names:
        for d in dirs:
            if (d / name).is_file():
                return d / name
    for pattern in globs:
        for d in dirs:
            hits = sorted(p for p in d.glob(pattern) if p.is_file() and not p.name.startswith((".", "~$")))
            if hits:
                return hits[0]
    looked = ", ".join(str(d) for d in dirs) or "(no folder)"
    raise MicronbertError(f"no {what} annotation sheet found in {looked} (expected e.g. {names[0]}); "
                          f"pass --annotations FILE")


def child_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def match_dir(parent: Path, name: str) -> Path | None:
    """`parent/name`, or the one child folder whose name equals `name` ignoring case (CAS(ME)^3 'J' vs 'j')."""
    exact = parent / name
    if exact.is_dir():
        return exact
    lowered = [p for p in child_dirs(parent) if p.name.lower() == name.lower()]
    return lowered[0] if len(lowered) == 1 else None


# ----------------------------------------------------------------------------------------- frames
def list_clip(folder: Path, variant: str = "auto") -> list[tuple[int, str]]:
    """(number, name) of a clip's frames sorted by number.

    raw: names without the official-crop prefix "reg_"; cropped: "reg_" names (all names when a crop
    folder does not use the prefix); auto: raw names if there are any, else the "reg_" names.
    """
    raw: dict[int, str] = {}
    reg: dict[int, str] = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or not is_image(name):
            continue
        n = frame_number(name)
        if n is None:
            continue
        target = reg if name.startswith(CROP_PREFIX) else raw
        target.setdefault(n, name)
    if variant == "raw":
        chosen = raw
    elif variant == "cropped":
        chosen = reg or raw
    else:
        chosen = raw or reg
    return sorted(chosen.items())


def subject_clip_rows(sheet, sheet_path, builder, subject_id):
    """(row, cells, subject, clip, sample id) of the sheet rows that name a subject and a clip; the
    others are excluded with their row number (sheets keyed by Subject + Filename: CASME II, SAMM)."""
    for row, cells in sheet.rows:
        subject = subject_id(cells["subject"])
        clip = as_text(cells["filename"])
        sid = f"{subject}/{clip}" if subject and clip else ""
        if subject is None:
            builder.exclude(sheet_path, row, sid, f"subject {cells['subject']!r} is not a subject number")
            continue
        if not clip:
            builder.exclude(sheet_path, row, sid, "filename is empty")
            continue
        yield row, cells, subject, clip, sid


def _check_option(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise MicronbertError(f"{name} must be one of {list(allowed)}, not {value!r}")
    return value


# ----------------------------------------------------------------------------------------- samples
@dataclass
class SampleBuilder:
    """Validates annotation rows against the clip folders and collects sample-table rows."""

    dataset: str
    report: ValidationReport
    apex_policy: str = "exclude"
    check_images: bool = True
    known_emotions: Iterable[str] | None = None
    rows: list[dict] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict)
    _listings: dict[tuple[str, str], list] = field(default_factory=dict)

    def __post_init__(self):
        _check_option("apex policy", self.apex_policy, APEX_POLICIES)
        self._known = None if self.known_emotions is None else {e.casefold() for e in self.known_emotions}

    def listing(self, folder: Path, variant: str) -> list[tuple[int, str]]:
        key = (str(folder), variant)
        if key not in self._listings:  # CAS(ME)^3 clips are shared by several samples
            self._listings[key] = list_clip(folder, variant)
        return self._listings[key]

    def exclude(self, file, row, sample_id, reason):
        self.report.add(file, row, sample_id, reason, "excluded")

    def unique_id(self, candidates: Sequence[str]) -> str | None:
        for sid in candidates:
            if sid not in self._seen:
                return sid
        return None

    def add(self, *, file, row, subject: str, sample_id: str, clip: str, frames_dir: Path | None,
            onset, apex, offset, emotion, aus="", variant="auto", apex_source="annotated",
            restrict_to_span=False, id_fallbacks: Sequence[str] = ()) -> dict | None:
        """Validate one annotation and append its sample row; returns the row or None when excluded.

        onset/apex/offset are raw cells; restrict_to_span keeps only frames onset..offset (for folders
        holding a whole recording with several samples, as in CAS(ME)^3).
        """
        source = f"{file}:{row}" if row is not None else str(file)
        emotion = as_text(emotion)
        if not emotion:
            return self.exclude(file, row, sample_id, "emotion is empty")
        on, off = to_int(onset), to_int(offset)
        if on is None:
            return self.exclude(file, row, sample_id, _bad_number("onset", onset))
        if off is None:
            return self.exclude(file, row, sample_id, _bad_number("offset", offset))
        if off == 0:
            return self.exclude(file, row, sample_id, "offset is 0 (not annotated)")
        if on > off:
            return self.exclude(file, row, sample_id, f"onset {on} is after offset {off}")
        if frames_dir is None or not frames_dir.is_dir():
            return self.exclude(file, row, sample_id, f"clip folder not found: {frames_dir}")
        listing = self.listing(frames_dir, variant)
        if not listing:
            return self.exclude(file, row, sample_id, f"clip folder has no frame images: {frames_dir}")
        if restrict_to_span:
            listing = [(n, f) for n, f in listing if on <= n <= off]
            if not listing:
                return self.exclude(file, row, sample_id,
                                    f"no frame images numbered {on}..{off} in {frames_dir}")
        numbers = [n for n, _ in listing]
        first, last = numbers[0], numbers[-1]

        ap = to_int(apex)
        problem = None
        if clean(apex) is None:
            problem = "apex is missing"
        elif ap is None:
            problem = f"apex {clean(apex)!r} is not a frame number"
        elif not on <= ap <= off:
            side = "onset is after apex" if ap < on else "apex is after offset"
            problem = f"apex {ap} is outside onset..offset {on}..{off} ({side})"
        if problem:
            if self.apex_policy == "exclude":
                return self.exclude(file, row, sample_id, problem)
            span = [n for n in numbers if on <= n <= off]
            ap = span[(len(span) - 1) // 2] if span else (on + off) // 2
            apex_source = "repaired"
            self.report.add(file, row, sample_id, f"{problem}; set to the middle frame {ap}", "repaired")

        # Key frames: outside the listed frames is an annotation/folder mismatch (exclude); inside but
        # absent is a gap, and the nearest listed frame is used (SampleFrames.position does the same).
        for what, n in (("onset", on), ("apex", ap)):
            if n < first or n > last:
                return self.exclude(file, row, sample_id, f"{what} frame {n} is not in {frames_dir} "
                                                           f"(frames {first}..{last})")
        for what, n in (("onset", on), ("apex", ap), ("offset", off)):
            if n not in numbers:
                near = numbers[min(range(len(numbers)), key=lambda i: (abs(numbers[i] - n), numbers[i]))]
                self.report.add(file, row, sample_id, f"{what} frame {n} missing in {frames_dir}; "
                                                      f"nearest frame {near} used", "warning")

        if self.check_images:
            names = dict(listing)
            for what, n in (("onset", on), ("apex", ap)):
                near = min(numbers, key=lambda m: (abs(m - n), m))
                try:
                    read_image(frames_dir / names[near])
                except MicronbertError as exc:
                    return self.exclude(file, row, sample_id, f"{what} frame: {exc}")

        if self._known is not None and emotion.casefold() not in self._known:
            self.report.add(file, row, sample_id, f"unknown emotion {emotion!r} for {self.dataset} "
                                                  f"(kept; protocols decide)", "warning")

        final_id = self.unique_id([sample_id, *id_fallbacks])
        if final_id is None:
            return self.exclude(file, row, sample_id, f"duplicate sample (same as {self._seen[sample_id]})")
        self._seen[final_id] = source
        out = {
            "dataset": self.dataset, "subject": subject, "sample_id": final_id, "clip": clip,
            "onset": on, "apex": ap, "offset": off, "apex_source": apex_source, "emotion": emotion,
            "aus": as_text(aus), "n_frames": len(listing), "frames_dir": str(frames_dir.resolve()),
            "frame_numbers": " ".join(str(n) for n in numbers),
            "frame_files": " ".join(f for _, f in listing), "source": source,
        }
        self.rows.append(out)
        return out


def _bad_number(what: str, value) -> str:
    value = clean(value)
    if value is None:
        return f"{what} is missing"
    return f"{what} {value!r} is not a frame number"


def check_variant(value: str) -> str:
    return _check_option("variant", value, VARIANTS)
