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

# row -> (onset, apex), (onset, apex, [frame before the apex or None, frame after it or None]) or those and
# the clip's face mask ((S, S) uint8, 1 inside its own 68-landmark hull, or None)
PairSource = Callable[[pd.Series], tuple]


@dataclass
class PairData:
    """All samples' aligned (onset, apex) frames in memory, uint8 (N, S, S, 3) each; optionally the frames
    just before and after each apex (`neighbours`, (N, 2, S, S, 3); `has_neighbour` (N, 2) says which the
    clip has strictly after its onset and up to its offset; a missing one holds a copy of the apex);
    optionally each clip's face mask (`face`, (N, S, S) uint8, 1 inside its own 68-landmark hull in the
    aligned crop: the PoI prior "own")."""
    onset: np.ndarray
    apex: np.ndarray
    neighbours: np.ndarray | None = None
    has_neighbour: np.ndarray | None = None
    face: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def size(self) -> int:
        return int(self.onset.shape[1])

    def registered(self, method: str) -> "PairData":
        """Each apex registered onto its onset (faces/register.py; "none": these pairs as they are). The
        neighbours are not: a prediction view registers its own pair."""
        if method == "none":
            return self
        from micronbert.faces.register import register_pairs

        return PairData(self.onset, register_pairs(self.onset, self.apex, method), self.neighbours, self.has_neighbour,
                        self.face)

    def mirrored(self) -> "PairData":
        """Every frame flipped left-right, and the face masks with them."""
        flip = lambda x, axis: None if x is None else np.ascontiguousarray(np.flip(x, axis))  # noqa: E731
        return PairData(flip(self.onset, 2), flip(self.apex, 2), flip(self.neighbours, 3), self.has_neighbour,
                        flip(self.face, 2))

    def prediction_views(self, flip: bool, neighbours: bool) -> list[tuple["PairData", np.ndarray]]:
        """The pairs a prediction averages over, each with a per-sample bool weight: the pair itself; with
        `neighbours`, (onset, apex − 1) and (onset, apex + 1) where the clip has those frames (a
        micro-expression is held for several frames, each with its own sensor noise); with `flip`, the
        mirror image of each of those (the classes do not change under a left-right flip)."""
        views = [(self, np.ones(len(self), bool))]
        if neighbours and self.neighbours is not None:
            views += [(PairData(self.onset, self.neighbours[:, k], face=self.face), self.has_neighbour[:, k])
                      for k in range(self.neighbours.shape[1])]
        if flip:
            views += [(v.mirrored(), w) for v, w in views]
        return views


def apex_neighbours(numbers, onset: int, apex: int, offset: int) -> list[int | None]:
    """The frame numbers just before and after the apex in a clip's ordered frame numbers, each None unless
    it lies strictly after the onset and not after the offset (an offset of 0 or below the apex: unknown,
    so no frame after the apex)."""
    numbers = sorted(int(n) for n in numbers)
    if apex not in numbers:
        return [None, None]
    i = numbers.index(apex)
    out = []
    for j in (i - 1, i + 1):
        n = numbers[j] if 0 <= j < len(numbers) else None
        out.append(n if n is not None and onset < n <= max(offset, apex) else None)
    return out


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
    """row -> (onset, apex, [apex − 1, apex + 1]) uint8 (size, size, 3): aligned faces from the cache, or raw
    frames; a neighbour the clip lacks (`apex_neighbours`) is None. From the cache, also the clip's face mask
    (faces/template.own_hull_mask of its reference frame's landmarks)."""
    from micronbert.data.pairs import fit_square

    def resized(img):
        return img if img.shape[0] == size and img.shape[1] == size else fit_square(img, size)

    if cache:
        from micronbert.faces.cache import FaceCache, cache_margin
        from micronbert.faces.template import own_hull_mask

        fc = FaceCache(cache)
        margin = cache_margin(cache)

        def from_cache(row):
            if not fc.has(row["dataset"], row["sample_id"]):
                raise KeyError(f"not in the face cache {cache} (run `micronbert prepare`)")
            s = fc.load(row["dataset"], row["sample_id"])
            near = apex_neighbours(s.frame_numbers, int(row["onset"]), int(row["apex"]), int(row["offset"]))
            return (resized(s.frame(int(row["onset"]))), resized(s.frame(int(row["apex"]))),
                    [None if n is None else resized(s.frame(n)) for n in near],
                    own_hull_mask(s.crop_landmarks(), size, margin, scale=size / s.frames.shape[1]))
        return from_cache

    from micronbert.data.frames import read_image
    from micronbert.data.samples import SampleFrames

    def from_frames(row):
        frames = SampleFrames.from_row(row)
        near = apex_neighbours(frames.numbers, int(row["onset"]), int(row["apex"]), int(row["offset"]))
        return (resized(read_image(frames.path_of(int(row["onset"])))),
                resized(read_image(frames.path_of(int(row["apex"])))),
                [None if n is None else resized(read_image(frames.path_of(n))) for n in near])
    return from_frames


def load_pairs(table: pd.DataFrame, source: PairSource, report: ValidationReport | None = None
               ) -> tuple[pd.DataFrame, PairData]:
    """Fetch every row's (onset, apex) and, when the source gives them, the apex's neighbouring frames;
    rows the source cannot serve are excluded with a report entry."""
    report = report if report is not None else ValidationReport()
    keep, onsets, apexes, nears, faces = [], [], [], [], []
    shape = None
    for i in progress(range(len(table)), desc="load pairs", unit="sample", leave=False):
        row = table.iloc[i]
        try:
            onset, apex, *rest = source(row)
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
        nears.append([None if f is None or np.shape(f) != shape else np.asarray(f, np.uint8)
                      for f in (rest[0] if rest else [])])
        faces.append(rest[1] if len(rest) > 1 else None)
    kept = table.iloc[keep].reset_index(drop=True)
    if not keep:
        return kept, PairData(np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0, 1, 1, 3), np.uint8))
    data = PairData(np.stack(onsets), np.stack(apexes))
    if all(f is not None and np.shape(f) == shape[:2] for f in faces):
        data.face = np.stack(faces).astype(np.uint8)
    k = max(len(n) for n in nears)
    if k:  # a missing neighbour holds the apex and weight 0
        data.has_neighbour = np.array([[j < len(n) and n[j] is not None for j in range(k)] for n in nears])
        data.neighbours = np.stack([np.stack([n[j] if j < len(n) and n[j] is not None else a for j in range(k)])
                                    for n, a in zip(nears, apexes)])
    return kept, data


def _where(row) -> tuple[str, int | None]:
    """(file, row) of a sample's annotation: the sample table's "file:row" source, split."""
    text = str(row.get("source", "") or row.get("frames_dir", "") or row.get("dataset", ""))
    head, sep, tail = text.rpartition(":")
    return (head, int(tail)) if sep and tail.isdigit() else (text, None)
