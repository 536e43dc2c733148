"""What `evaluate`, `finetune` and `scaling` load before training: the protocol's evaluation table and
every row's aligned (onset, apex) pair, in memory (`PairData`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from micronbert.data.report import ValidationReport
from micronbert.errors import MicronbertError
from micronbert.utils.progress import progress

PairSource = Callable[[pd.Series], tuple[np.ndarray, np.ndarray]]


@dataclass
class PairData:
    """All samples' aligned (onset, apex) frames in memory, uint8 (N, S, S, 3) each."""
    onset: np.ndarray
    apex: np.ndarray

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def size(self) -> int:
        return int(self.onset.shape[1])


def eval_table(samples: list, protocol_name: str, report: ValidationReport):
    """(evaluation table, Protocol) for sample tables under a protocol; every dropped row is in `report`."""
    from micronbert.data.protocol import load_protocol
    from micronbert.data.samples import read_sample_tables

    protocol = load_protocol(protocol_name)
    table_in = read_sample_tables(samples)
    table = protocol.apply(table_in, report)
    if len(table) == 0:
        raise MicronbertError(f"protocol {protocol.name} keeps 0 of the {len(table_in)} samples in "
                              f"{', '.join(map(str, samples))} (datasets there: "
                              f"{sorted(set(table_in['dataset']))}; the protocol covers {sorted(protocol.datasets)})")
    return table, protocol


def pair_source(cache: str | None, size: int) -> PairSource:
    """row -> (onset, apex) uint8 (size, size, 3): aligned faces from the cache, or raw frames."""
    from micronbert.data.pairs import fit_square

    def resized(img):
        return img if img.shape[0] == size and img.shape[1] == size else fit_square(img, size)

    if cache:
        from micronbert.faces.cache import FaceCache

        fc = FaceCache(cache)

        def from_cache(row):
            if not fc.has(row["dataset"], row["sample_id"]):
                raise KeyError(f"not in the face cache {cache} (run `micronbert prepare`)")
            s = fc.load(row["dataset"], row["sample_id"])
            return resized(s.frame(int(row["onset"]))), resized(s.frame(int(row["apex"])))
        return from_cache

    from micronbert.data.frames import read_image
    from micronbert.data.samples import SampleFrames

    def from_frames(row):
        frames = SampleFrames.from_row(row)
        return (resized(read_image(frames.path_of(int(row["onset"])))),
                resized(read_image(frames.path_of(int(row["apex"])))))
    return from_frames


def load_pairs(table: pd.DataFrame, source: PairSource, report: ValidationReport | None = None
               ) -> tuple[pd.DataFrame, PairData]:
    """Fetch every row's (onset, apex); rows the source cannot serve are excluded with a report entry."""
    report = report if report is not None else ValidationReport()
    keep, onsets, apexes = [], [], []
    shape = None
    for i in progress(range(len(table)), desc="load pairs", unit="sample", leave=False):
        row = table.iloc[i]
        try:
            onset, apex = source(row)
        except (MicronbertError, KeyError, FileNotFoundError, OSError, ValueError) as exc:
            report.add(*_where(row), f"{row['dataset']}/{row['sample_id']}", f"no (onset, apex) pair: {exc}")
            continue
        onset, apex = np.asarray(onset, np.uint8), np.asarray(apex, np.uint8)
        if shape is None:
            shape = onset.shape
        if onset.shape != shape or apex.shape != shape or onset.ndim != 3 or onset.shape[-1] != 3:
            report.add(*_where(row), f"{row['dataset']}/{row['sample_id']}",
                       f"frames of shape {onset.shape}/{apex.shape}, expected {shape} RGB")
            continue
        keep.append(i)
        onsets.append(onset)
        apexes.append(apex)
    kept = table.iloc[keep].reset_index(drop=True)
    if not keep:
        return kept, PairData(np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0, 1, 1, 3), np.uint8))
    return kept, PairData(np.stack(onsets), np.stack(apexes))


def _where(row) -> tuple[str, int | None]:
    """(file, row) of a sample's annotation: the sample table's "file:row" source, split."""
    text = str(row.get("source", "") or row.get("frames_dir", "") or row.get("dataset", ""))
    head, sep, tail = text.rpartition(":")
    return (head, int(tail)) if sep and tail.isdigit() else (text, None)
