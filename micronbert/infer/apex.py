"""Apex frames the annotation lacks, found by the project's spotter between the annotated onset and offset.

Real CASME II sheets have "/" for some apex frames. A reader told to repair such rows (apex_policy
"middle") keeps them with the middle frame and apex_source "repaired". `spot_repaired_apexes` then
replaces that guess: the clip's frames onset..offset are aligned (one similarity transform fitted on
the onset frame, as `prepare` does), the motion signal of `micronbert.infer.spotting` is computed over
them with reference frames t ± span/3, and the strongest peak is the apex. (The reach was chosen on
synthetic clips of seed 0 among span/2, /3, /4, /6: span/2 pulls the apex towards the middle, short
reaches lose the slow rise; benchmarks/spot_apex.py reports other seeds.) The row gets apex_source "spotted", and its report entry says which
frame was found and how strongly. benchmarks/spot_apex.py measures the frames off on synthetic clips.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from micronbert.data.frames import read_image
from micronbert.data.report import ValidationReport
from micronbert.data.samples import SampleFrames
from micronbert.errors import MicronbertError
from micronbert.infer.spotting import motion_signal, propose_intervals
from micronbert.utils.progress import progress

SPOT_SIZE = 112          # aligned face side the spotter looks at (it works on ≤128-px gray frames)
# the reader's wording for a middle-frame repair (micronbert.data.readers._common.SampleBuilder)
_MIDDLE_NOTE = "; set to the middle frame"


def spot_apex(aligned: np.ndarray) -> tuple[int, float]:
    """(position, score) of the apex in aligned frames covering exactly onset..offset (T >= 3).

    The score is the peak's height over the clip's baseline in robust standard deviations (spotting.py).
    """
    t_len = len(aligned)
    if t_len < 3:
        raise MicronbertError(f"an apex needs at least 3 frames between onset and offset, found {t_len}")
    sig = motion_signal(aligned, k=max(1, t_len // 3))
    best = propose_intervals(sig, window=t_len, max_intervals=1, always_one=True)[0]
    return int(best.apex), float(best.score)


def _load_span(row, frames: SampleFrames) -> tuple[list[int], list[np.ndarray]]:
    positions = frames.span(int(row["onset"]), int(row["offset"]))
    return [frames.numbers[p] for p in positions], [read_image(frames.frames_dir / frames.files[p])
                                                    for p in positions]


def _rewrite_entry(report: ValidationReport, row, text: str, action: str = "repaired") -> None:
    """Say in the row's repair entry how the apex was found (or add an entry when there is none)."""
    sid = str(row["sample_id"])
    for e in report.entries:
        if e.sample_id == sid and e.action == "repaired" and _MIDDLE_NOTE in e.reason:
            e.reason, e.action = e.reason.split(_MIDDLE_NOTE)[0] + "; " + text, action
            return
    file, _, line = str(row.get("source", "")).rpartition(":")
    report.add(file or row.get("source", ""), int(line) if line.isdigit() else None, sid, text, action)


def spot_repaired_apexes(table: pd.DataFrame, report: ValidationReport, aligner=None,
                         size: int = SPOT_SIZE) -> pd.DataFrame:
    """Rows with apex_source "repaired" get the spotted apex and apex_source "spotted"; a row whose span
    cannot be spotted (fewer than 3 frames, unreadable frames) is dropped with an "excluded" entry.
    Returns the new table (the input is not changed)."""
    todo = table.index[table["apex_source"].astype(str) == "repaired"]
    if len(todo) == 0:
        return table
    if aligner is None:
        from micronbert.faces.align import FaceAligner

        aligner = FaceAligner(size=size)
    out = table.copy()
    drop = []
    for i in progress(todo, desc="spot missing apexes", unit="clip", leave=False):
        row = out.loc[i]
        try:
            numbers, images = _load_span(row, SampleFrames.from_row(row))
            if len(numbers) < 3:
                raise MicronbertError(f"only {len(numbers)} frames between onset {row['onset']} and offset "
                                      f"{row['offset']}")
            clip = aligner.align_clip(images)
            pos, score = spot_apex(clip.frames)
        except MicronbertError as exc:
            _rewrite_entry(report, row, f"apex could not be spotted: {exc}", "excluded")
            drop.append(i)
            continue
        out.loc[i, "apex"] = numbers[pos]
        out.loc[i, "apex_source"] = "spotted"
        where = "" if clip.face_found else " (no face found: spotted on the centre of the frames)"
        _rewrite_entry(report, row, f"apex spotted at frame {numbers[pos]} between onset {numbers[0]} and "
                                    f"offset {numbers[-1]} (peak score {score:.1f}){where}")
    return out.drop(index=drop).reset_index(drop=True)
