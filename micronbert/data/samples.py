"""The sample table: one row per micro-expression sample, the contract between the dataset readers
(`micronbert index`), face preparation (`prepare`) and evaluation.

Columns (all readers write all of them, in this order):
    dataset        reader name: casme2, samm, smic, casme3, mmew, or the user's name for `folder`
    subject        normalised subject id string (e.g. "sub01", "006", "s01", "spNO.1")
    sample_id      unique within the dataset (e.g. "sub01/EP02_01f"); (dataset, sample_id) is global
    clip           the clip folder name as on disk
    onset, apex, offset   frame numbers as in the frame file names (not positions)
    apex_source    "annotated", "middle" (not annotated, e.g. SMIC), "repaired" (missing or out of range in
                   the sheet: the middle frame) or "spotted" (missing or out of range: found by the apex
                   spotter, `index --missing-apex spot`); the report says which frame a row got
    emotion        the emotion label exactly as written in the dataset
    aus            action units as written ("" when absent)
    n_frames       number of frame files listed for the clip
    frames_dir     absolute folder holding the frames
    frame_numbers  space-separated frame numbers, ascending (parsed from the names, never a pattern)
    frame_files    space-separated file names in the same order
    source         where the annotation came from, "file:row" (or the folder for label-by-folder sets)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from micronbert.errors import MicronbertError
from micronbert.utils.io import atomic_save

COLUMNS = [
    "dataset", "subject", "sample_id", "clip", "onset", "apex", "offset", "apex_source", "emotion",
    "aus", "n_frames", "frames_dir", "frame_numbers", "frame_files", "source",
]
_STR_COLUMNS = ["dataset", "subject", "sample_id", "clip", "apex_source", "emotion", "aus", "frames_dir",
                "frame_numbers", "frame_files", "source"]
_INT_COLUMNS = ["onset", "apex", "offset", "n_frames"]


def make_table(rows: Iterable[dict]) -> pd.DataFrame:
    """Build a sample table from dicts, checking columns and types."""
    df = pd.DataFrame(list(rows), columns=COLUMNS)
    return _coerce(df, "<in memory>")


def write_samples(df: pd.DataFrame, path: str | os.PathLike) -> None:
    df = _coerce(df.copy(), str(path))
    atomic_save(path, lambda tmp: df.to_csv(tmp, index=False))


def read_samples(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise MicronbertError(f"sample table not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types for a bad CSV
        raise MicronbertError(f"cannot read sample table {path}: {exc}") from exc
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise MicronbertError(f"{path}: not a micronbert sample table, missing columns {missing} "
                              f"(make one with `micronbert index`)")
    return _coerce(df, str(path))


def read_sample_tables(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate several tables; (dataset, sample_id) must stay unique."""
    frames = [read_samples(p) for p in paths]
    df = pd.concat(frames, ignore_index=True) if frames else make_table([])
    check_unique(df)
    return df


def check_unique(df: pd.DataFrame) -> None:
    """(dataset, sample_id) must be unique; names the file and row when the table carries _file/_row."""
    dup = df.duplicated(["dataset", "sample_id"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        where = f"{first['_file']}:{first['_row']}: " if "_file" in df.columns and "_row" in df.columns else ""
        raise MicronbertError(f"{where}sample ({first.dataset}, {first.sample_id}) appears more than once "
                              f"across the given sample tables")


def _coerce(df: pd.DataFrame, where: str) -> pd.DataFrame:
    for c in _STR_COLUMNS:
        df[c] = df[c].fillna("").astype(str)
    for i, c in enumerate(_INT_COLUMNS):
        try:
            df[c] = pd.to_numeric(df[c], errors="raise").astype("int64")
        except (ValueError, TypeError) as exc:
            bad = df[pd.to_numeric(df[c], errors="coerce").isna()].index[0]
            raise MicronbertError(f"{where}: row {bad + 2}: column {c!r} is not an integer "
                                  f"({df.loc[bad, c]!r})") from exc
    return df[COLUMNS]


@dataclass(frozen=True)
class SampleFrames:
    """The ordered frames of one sample, with helpers to find onset/apex/offset positions."""

    frames_dir: Path
    numbers: list[int]
    files: list[str]

    @classmethod
    def from_row(cls, row) -> "SampleFrames":
        numbers = [int(x) for x in str(row["frame_numbers"]).split()]
        files = str(row["frame_files"]).split()
        return cls(Path(row["frames_dir"]), numbers, files)

    def paths(self) -> list[Path]:
        return [self.frames_dir / f for f in self.files]

    def position(self, number: int) -> int:
        """Position of frame `number`; the nearest listed frame if it is missing (gaps exist)."""
        if not self.numbers:
            raise MicronbertError(f"no frames listed for {self.frames_dir}")
        best = min(range(len(self.numbers)), key=lambda i: (abs(self.numbers[i] - number), self.numbers[i]))
        return best

    def path_of(self, number: int) -> Path:
        return self.frames_dir / self.files[self.position(number)]

    def span(self, start: int, end: int) -> list[int]:
        """Positions of the listed frames with start <= number <= end."""
        return [i for i, n in enumerate(self.numbers) if start <= n <= end]


def fold_key(dataset: str, subject: str) -> str:
    """LOSO folds are keyed by (dataset, subject); this is their printable form."""
    return f"{dataset}/{subject}"
