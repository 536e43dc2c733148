"""`micronbert prepare`: sample tables in, aligned face crops out, one cache file per sample.

Per sample: frames onset..offset (or onset and apex with keyframes), the face found on the onset frame
(or the first later frame with a face), one similarity transform fitted there and applied to all
frames (clip mode, see micronbert.faces.align), saved atomically to the FaceCache. Samples already in
the cache are skipped, so an interrupted run resumes where it stopped. Samples without a face or
without readable frames get a report entry and are left out; the run goes on.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from micronbert.data.report import ValidationReport
from micronbert.data.samples import COLUMNS, SampleFrames, check_unique, read_samples
from micronbert.errors import MicronbertError
from micronbert.faces.cache import FaceCache
from micronbert.faces.template import DEFAULT_MARGIN, DEFAULT_SIZE, check_geometry

REPORT_NAME = "prepare_report.csv"


@dataclass(frozen=True)
class PrepareConfig:
    size: int = DEFAULT_SIZE
    margin: float = DEFAULT_MARGIN
    detector: str = "dlib"
    keyframes: bool = False
    already_cropped: bool = False

    def settings(self) -> dict:
        return asdict(self)


@dataclass
class PrepareResult:
    cache: FaceCache
    done: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    report: ValidationReport = field(default_factory=ValidationReport)
    report_path: Path | None = None

    def summary(self) -> str:
        return (f"{len(self.done)} prepared, {len(self.skipped)} already cached, {len(self.failed)} without "
                f"a usable face; cache {self.cache.root}")


def load_tables(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate sample tables, remembering each row's file and CSV row for the report."""
    parts = []
    for p in paths:
        df = read_samples(p)
        df["_file"] = str(p)
        df["_row"] = np.arange(len(df)) + 2  # header is row 1
        parts.append(df)
    if not parts:
        raise MicronbertError("no sample table given")
    df = pd.concat(parts, ignore_index=True)
    check_unique(df)
    return df


def _positions(sf: SampleFrames, row: dict, keyframes: bool) -> list[int]:
    onset, apex, offset = int(row["onset"]), int(row["apex"]), int(row["offset"])
    if keyframes:
        return sorted({sf.position(onset), sf.position(apex)})
    span = sf.span(min(onset, offset), max(onset, offset))
    if not span:  # onset/offset fall between listed frames: take the nearest ones
        a, b = sorted((sf.position(onset), sf.position(offset)))
        span = list(range(a, b + 1))
    return span


def _frames_text(numbers: Sequence[int]) -> str:
    if not numbers:
        return "frames (none)"
    return f"frames {numbers[0]}-{numbers[-1]} ({len(numbers)} frames)" if len(numbers) > 1 else f"frame {numbers[0]}"


_ALIGNERS: dict = {}


def _aligner(cfg: PrepareConfig):
    from micronbert.faces.align import FaceAligner

    key = (cfg.size, cfg.margin, cfg.detector)
    if key not in _ALIGNERS:  # one per worker process: loading the landmark model takes ~0.5 s
        _ALIGNERS[key] = FaceAligner(size=cfg.size, margin=cfg.margin, detector=cfg.detector, mode="clip")
    return _ALIGNERS[key]


def expected_meta(row: dict, cfg: PrepareConfig) -> dict:
    """What a cache entry for `row` made with `cfg` must record (see FaceCache.problem)."""
    from micronbert.faces.media import source_stamp

    sf = SampleFrames.from_row(row)
    positions = _positions(sf, row, cfg.keyframes) if sf.numbers else []
    paths = sf.paths()
    return {"dataset": str(row["dataset"]), "sample_id": str(row["sample_id"]), "frames_dir": str(sf.frames_dir),
            "onset": int(row["onset"]), "apex": int(row["apex"]), "offset": int(row["offset"]),
            "requested_frames": [sf.numbers[p] for p in positions],
            "source_stamp": source_stamp([paths[p] for p in positions]),
            "size": cfg.size, "margin": cfg.margin, "detector": None if cfg.already_cropped else cfg.detector,
            "keyframes": cfg.keyframes, "already_cropped": cfg.already_cropped}


def process_sample(row: dict, cfg: PrepareConfig, root: str) -> tuple[str, list[tuple]]:
    """Align and cache one sample. Returns (status, report entries as (file, row, id, reason, action)).
    status: "done" or "failed". Runs in worker processes: everything in and out is picklable."""
    from micronbert.data.frames import read_image
    from micronbert.faces.align import resize_transform, warp
    from micronbert.faces.media import FrameSkips, check_sizes

    file, line, sid, ds = row["_file"], row["_row"], row["sample_id"], row["dataset"]
    entries: list[tuple] = []
    sf = SampleFrames.from_row(row)
    if not sf.numbers:
        return "failed", [(file, line, sid, f"no frames listed for {sf.frames_dir}", "excluded")]
    positions = _positions(sf, row, cfg.keyframes)
    paths = sf.paths()
    numbers = [sf.numbers[p] for p in positions]

    def read(pos):
        try:
            return read_image(paths[pos])
        except MicronbertError:
            return None

    # Read the clip once; leave out unreadable frames and frames of another size than the clip's (one
    # transform for frames of different sizes would give black or shifted crops).
    images = [read(pos) for pos in positions]
    skips = FrameSkips(str(sf.frames_dir))
    usable = check_sizes(numbers, images, skips)
    key = {"onset": sf.numbers[sf.position(int(row["onset"]))], "apex": sf.numbers[sf.position(int(row["apex"]))]}
    lost = [f"{what} frame {n}" for what, n in key.items() if n in skips.left_out]
    if not any(usable):
        reason = f"no readable frame in {sf.frames_dir}, {_frames_text(numbers)}"
        return "failed", [(file, line, sid, reason, "excluded")]
    if lost:
        why = "; ".join(skips.notes())
        return "failed", [(file, line, sid, f"{' and '.join(lost)} unusable ({why})", "excluded")]

    notes: list[str] = []
    if cfg.already_cropped:
        m, lm, ref_number, aligner = None, None, None, None
    else:
        aligner = _aligner(cfg)
        det, ref_number = None, None
        for n, img, ok in zip(numbers, images, usable):  # the onset frame, else the first later frame with a face
            if not ok:
                continue
            det = aligner.detect(img)
            if det is not None:
                ref_number = n
                break
        if det is None:
            reason = f"no face found in {sf.frames_dir}, {_frames_text(numbers)}"
            return "failed", [(file, line, sid, reason, "excluded")]
        if ref_number != numbers[0]:
            notes.append(f"no face on onset frame {numbers[0]}, aligned on frame {ref_number}")
        notes.extend(det.notes)
        lm = det.landmarks
        m = aligner.transform_from_landmarks(lm)

    crops, kept = [], []
    for n, img, ok in zip(numbers, images, usable):
        if not ok:
            continue
        if cfg.already_cropped:
            t = resize_transform(img.shape, cfg.size)
            m = t if m is None else m
            crops.append(warp(img, t, cfg.size))
        else:
            crops.append(aligner.warp(img, m))
        kept.append(n)
    for text in skips.notes():
        entries.append((file, line, sid, text, "warning"))
    for n in notes:
        entries.append((file, line, sid, f"{n} ({sf.frames_dir})", "warning"))
    meta = {**expected_meta(row, cfg), "mode": "clip", "reference": ref_number, "notes": notes + skips.notes(),
            "subject": row.get("subject", ""), "emotion": row.get("emotion", "")}
    FaceCache(root).save(ds, sid, np.stack(crops), np.array(kept), lm, m, meta)
    return "done", entries


def _work(args):
    row, cfg, root = args
    try:
        return row["dataset"], row["sample_id"], *process_sample(row, cfg, root)
    except MicronbertError as exc:
        entry = (row["_file"], row["_row"], row["sample_id"], str(exc), "excluded")
        return row["dataset"], row["sample_id"], "failed", [entry]


def _check_out_of_frames(out, df: pd.DataFrame) -> None:
    """The cache must not sit among the frames it is made from (a later `index` would read the crops)."""
    from micronbert.utils.paths import check_output

    check_output(out, "dir", sorted(set(df["frames_dir"].astype(str))))


def prepare(tables: Sequence[str | os.PathLike] | pd.DataFrame, out: str | os.PathLike,
            cfg: PrepareConfig = PrepareConfig(), workers: int = 1, write_report: bool = True) -> PrepareResult:
    """Prepare every sample of the tables into the cache at `out`; see the module docstring."""
    from micronbert.utils.progress import progress

    check_geometry(cfg.size, cfg.margin)
    if not cfg.already_cropped:
        from micronbert.faces.detect import detector_names

        if cfg.detector not in detector_names():
            raise MicronbertError(f"unknown face detector {cfg.detector!r}; choose one of {detector_names()}")
    df = tables.copy() if isinstance(tables, pd.DataFrame) else load_tables(tables)
    if "_file" not in df.columns:
        df["_file"], df["_row"] = "<table>", np.arange(len(df)) + 2
    _check_out_of_frames(out, df)
    cache = FaceCache(out)
    cache.root.mkdir(parents=True, exist_ok=True)
    cache.check_settings(cfg.settings())
    cache.clean_temp()  # leftovers of a killed run; no writer runs yet
    result = PrepareResult(cache)
    todo = []
    for rec in df[COLUMNS + ["_file", "_row"]].to_dict("records"):
        rec["_row"] = int(rec["_row"])
        ds, sid = rec["dataset"], rec["sample_id"]
        if not cache.has(ds, sid):
            todo.append(rec)
            continue
        # an existing entry is reused only if it was made from this row's frames with these settings
        stale = cache.problem(ds, sid, expected_meta(rec, cfg))
        if stale is None:
            result.skipped.append((ds, sid))
        else:
            result.report.add(rec["_file"], rec["_row"], sid, f"cache entry {cache.path(ds, sid)} rebuilt: {stale}",
                              "warning")
            todo.append(rec)
    jobs = [(r, cfg, str(cache.root)) for r in todo]
    bar = progress(total=len(jobs), desc="prepare", unit="sample")
    pool = None
    try:
        if workers > 1 and len(jobs) > 1:
            # spawn: fork after dlib/OpenCV threads exist can deadlock, and spawn works everywhere.
            pool = mp.get_context("spawn").Pool(min(workers, len(jobs)))
            results = pool.imap_unordered(_work, jobs, chunksize=1)
        else:
            results = map(_work, jobs)
        for ds, sid, status, entries in results:
            (result.done if status == "done" else result.failed).append((ds, sid))
            for e in entries:
                result.report.add(*e)
            bar.update(1)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
        if write_report:
            result.report_path = cache.root / REPORT_NAME
            result.report.write(result.report_path)
    return result


def run_prepare(samples: Iterable[str], out: str, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
                workers: int = 1, keyframes: bool = False, already_cropped: bool = False,
                detector: str = "dlib") -> PrepareResult:
    cfg = PrepareConfig(size=int(size), margin=float(margin), detector=detector, keyframes=bool(keyframes),
                        already_cropped=bool(already_cropped))
    return prepare(list(samples), out, cfg, workers=workers)
