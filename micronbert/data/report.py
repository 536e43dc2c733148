"""Validation report: every excluded, repaired or suspicious input gets one line naming file and row.

Readers, `prepare` and `evaluate` add entries; the CLI prints the report and writes it beside its
output as CSV. Nothing is dropped without an entry here.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import pandas as pd

from micronbert.utils.io import atomic_save

ACTIONS = ("excluded", "repaired", "warning")


@dataclass
class ReportEntry:
    file: str
    row: int | None  # 1-based spreadsheet/CSV row as a user sees it, or None
    sample_id: str
    reason: str
    action: str = "excluded"

    def line(self) -> str:
        where = self.file if self.row is None else f"{self.file}:{self.row}"
        sid = f" [{self.sample_id}]" if self.sample_id else ""
        return f"{self.action}: {where}{sid}: {self.reason}"


@dataclass
class ValidationReport:
    entries: list[ReportEntry] = field(default_factory=list)

    def add(self, file, row, sample_id, reason, action="excluded") -> ReportEntry:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        entry = ReportEntry(str(file), None if row is None else int(row), str(sample_id or ""), reason, action)
        self.entries.append(entry)
        return entry

    def extend(self, other: "ValidationReport") -> None:
        self.entries.extend(other.entries)

    def count(self, action: str | None = None) -> int:
        return sum(1 for e in self.entries if action is None or e.action == action)

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:  # a report object is truthy even when empty
        return True

    def lines(self) -> list[str]:
        return [e.line() for e in self.entries]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(e) for e in self.entries], columns=["file", "row", "sample_id", "reason", "action"])

    def write(self, path: str | os.PathLike) -> None:
        df = self.to_frame()
        atomic_save(path, lambda tmp: df.to_csv(tmp, index=False))

    def summary(self) -> str:
        return (f"{self.count('excluded')} excluded, {self.count('repaired')} repaired, "
                f"{self.count('warning')} warnings")
