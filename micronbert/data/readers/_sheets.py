"""Annotation sheets: loading the first sheet of a .xlsx/.xls/.csv file with its header row found by
anchor columns, and parsing cells (frame numbers, text). Shared by the dataset modules' readers; the
writers (micronbert.data.layouts) name their header cells after the same Column aliases.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from micronbert.errors import MicronbertError

HEADER_SCAN_ROWS = 50  # SAMM v2 has 13 rows of free text before its header

# ----------------------------------------------------------------------------------------- cells
def clean(value):
    """None for empty cells; integral floats become ints (xlrd gives 46.0); strings are stripped."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


_INT_TEXT = re.compile(r"^[+]?\d+(\.0*)?$")


def to_int(value) -> int | None:
    """A frame number from a cell, or None when missing or not a plain non-negative integer."""
    value = clean(value)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return None
    text = str(value)
    if _INT_TEXT.match(text):
        return int(float(text))
    return None


def as_text(value) -> str:
    value = clean(value)
    return "" if value is None else str(value)


def norm_header(text) -> str:
    return re.sub(r"[\s_\-.]+", "", str(text)).lower()


# ----------------------------------------------------------------------------------------- sheets
@dataclass
class Column:
    name: str                     # canonical name used by the reader
    aliases: tuple[str, ...]      # header texts accepted (compared ignoring case, spaces, _ - .)
    required: bool = True


def _raw_rows(path: Path) -> Iterator[tuple[int, list]]:
    """(1-based row number, cell values) for the first sheet of a .xlsx/.xls/.csv file."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            import openpyxl

            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                ws = wb.worksheets[0]
                rows = [list(r) for r in ws.iter_rows(min_row=1, values_only=True)]
            finally:
                wb.close()
            yield from enumerate(rows, start=1)
        elif suffix == ".xls":
            import xlrd

            book = xlrd.open_workbook(str(path))
            sheet = book.sheet_by_index(0)
            for r in range(sheet.nrows):
                yield r + 1, sheet.row_values(r)
        elif suffix in (".csv", ".tsv", ".txt"):
            with open(path, newline="", encoding="utf-8-sig") as fh:
                sample = fh.read(4096)
                fh.seek(0)
                delimiter = "\t" if suffix == ".tsv" or ("\t" in sample and "," not in sample) else ","
                for i, row in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
                    yield i, row
        else:
            raise MicronbertError(f"{path}: unsupported annotation file type {suffix!r} "
                                  f"(use .xlsx, .xls or .csv)")
    except MicronbertError:
        raise
    except Exception as exc:  # openpyxl/xlrd/csv raise many types for damaged files
        raise MicronbertError(f"cannot read annotation sheet {path}: {exc}") from exc


@dataclass
class Sheet:
    path: Path
    header_row: int
    headers: dict[str, str]                 # canonical name -> header text found
    rows: list[tuple[int, dict]] = field(default_factory=list)  # (row number, canonical -> cell)


def load_sheet(path, columns: Sequence[Column], anchors: Sequence[str]) -> Sheet:
    """Load the first sheet; the header is the first row holding all `anchors` (canonical names).

    Missing required columns raise a MicronbertError naming the file, the header row and the columns.
    Fully blank rows are skipped (spreadsheets keep formatted empty rows); any other row is returned.
    """
    path = Path(path)
    if not path.is_file():
        raise MicronbertError(f"annotation file not found: {path}")
    by_name = {c.name: c for c in columns}
    rows = list(_raw_rows(path))
    def found_in(cells) -> set[str]:
        present = {norm_header(c) for c in cells if clean(c) is not None}
        return {c.name for c in columns if any(norm_header(a) in present for a in c.aliases)}

    header_at, header_cells, best = None, None, (0, None, None)
    for number, cells in rows[:HEADER_SCAN_ROWS]:
        found = found_in(cells)
        if all(k in found for k in anchors):
            header_at, header_cells = number, cells
            break
        if len(found) > best[0]:
            best = (len(found), number, cells)
    if header_at is None:
        if best[0] >= 2:  # a header with a renamed anchor column: report against that row
            header_at, header_cells = best[1], best[2]
        else:
            wanted = " and ".join(repr(by_name[k].aliases[0]) for k in anchors)
            raise MicronbertError(f"{path}: no header row with columns {wanted} in the first "
                                  f"{HEADER_SCAN_ROWS} rows; expected columns "
                                  f"{[c.aliases[0] for c in columns if c.required]}")
    index: dict[str, int] = {}
    headers: dict[str, str] = {}
    normed = [norm_header(c) if clean(c) is not None else "" for c in header_cells]
    for col in columns:
        for alias in col.aliases:
            key = norm_header(alias)
            if key in normed:
                index[col.name] = normed.index(key)
                headers[col.name] = str(clean(header_cells[index[col.name]]))
                break
    missing = [c.aliases[0] for c in columns if c.required and c.name not in index]
    if missing:
        present = [str(clean(c)) for c in header_cells if clean(c) is not None]
        raise MicronbertError(f"{path}: header row {header_at}: missing column(s) {missing}; "
                              f"found {present}")
    sheet = Sheet(path, header_at, headers)
    for number, cells in rows:
        if number <= header_at:
            continue
        values = {name: clean(cells[j]) if j < len(cells) else None for name, j in index.items()}
        if all(v is None for v in values.values()):
            continue
        sheet.rows.append((number, values))
    return sheet
