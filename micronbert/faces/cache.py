"""The aligned-face cache: one uncompressed .npz per sample, written atomically.

Layout: <root>/<dataset>/<quoted sample id>.npz, where the sample id is percent-quoted so that
"sub01/EP02_01f" becomes "sub01%2FEP02_01f.npz" (reversible, safe on every filesystem). One root holds
several datasets. Each file holds:

    frames         (T, S, S, 3) uint8 RGB aligned crops
    frame_numbers  (T,) int64 frame numbers as in the sample table (not positions)
    landmarks      (68, 2) float64 reference-frame landmarks in source pixels (NaN when not detected)
    transform      (2, 3) float64 source pixel -> crop pixel
    meta           JSON text: dataset, sample_id, size, margin, detector, keyframes, already_cropped,
                   onset, apex, offset, reference (frame number), frames_dir, notes, version, and what
                   the entry was made from: requested_frames (frame numbers asked for), source_stamp
                   (names, sizes and mtimes of the source files), frames_crc32 (content check)

An entry is trusted only while it matches the sample row that asks for it (`FaceCache.problem`);
`prepare` rebuilds entries that disagree or fail the content check, and `load(..., expect=row)` refuses
them, so a corrected apex or another dataset's file never passes silently.

Uncompressed because training reads one sample per step: np.load of an uncompressed npz is a single
file open and a memcpy. Writers go through micronbert.utils.io.atomic_path (temp file + rename), so a
killed writer leaves at most a hidden ".<name>.npz.*.tmp" file, which is never listed or loaded and
is removed by `clean_temp()`.
"""
from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd

from micronbert.errors import MicronbertError
from micronbert.utils.io import atomic_path, atomic_write_json

CACHE_VERSION = 2  # 2: provenance (requested_frames, source_stamp) and frames_crc32
SETTINGS_FILE = "cache.json"
_SUFFIX = ".npz"


def _quote(name: str) -> str:
    q = quote(str(name), safe="")
    # A leading dot would hide the file (and clash with temp names); quote it too.
    return "%2E" + q[1:] if q.startswith(".") else q


@dataclass
class CachedSample:
    frames: np.ndarray
    frame_numbers: np.ndarray
    landmarks: np.ndarray
    transform: np.ndarray
    meta: dict = field(default_factory=dict)

    def position(self, number: int) -> int:
        """Position of frame `number`, or of the nearest cached frame (ties: the earlier one)."""
        nums = self.frame_numbers
        if len(nums) == 0:
            raise MicronbertError(f"cached sample {self.meta.get('sample_id', '?')} has no frames")
        d = np.abs(nums.astype(np.int64) - int(number))
        return int(np.lexsort((nums, d))[0])

    def frame(self, number: int) -> np.ndarray:
        """The aligned (S, S, 3) crop of frame `number` (nearest available frame if not cached)."""
        return self.frames[self.position(number)]

    def crop_landmarks(self) -> np.ndarray | None:
        """(68, 2) the reference frame's landmarks in crop pixels (x, y), None where none were detected."""
        lm, tf = np.asarray(self.landmarks, np.float64), np.asarray(self.transform, np.float64)
        if lm.shape != (68, 2) or tf.shape != (2, 3) or not (np.isfinite(lm).all() and np.isfinite(tf).all()):
            return None
        from micronbert.faces.align import apply_transform

        return apply_transform(tf, lm)

    @property
    def onset(self) -> np.ndarray:
        return self.frame(self.meta["onset"])

    @property
    def apex(self) -> np.ndarray:
        return self.frame(self.meta["apex"])


class FaceCache:
    """FaceCache(root): has / load / save / keys / index over <root>/<dataset>/<sample>.npz."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, dataset: str, sample_id: str) -> Path:
        return self.root / _quote(dataset) / (_quote(sample_id) + _SUFFIX)

    def has(self, dataset: str, sample_id: str) -> bool:
        return self.path(dataset, sample_id).is_file()

    def save(self, dataset: str, sample_id: str, frames: np.ndarray, frame_numbers, landmarks=None,
             transform=None, meta: dict | None = None) -> Path:
        frames = np.ascontiguousarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"frames must be uint8 (T, S, S, 3), got {frames.dtype} {frames.shape}")
        numbers = np.asarray(frame_numbers, dtype=np.int64)
        if numbers.shape != (len(frames),):
            raise ValueError(f"frame_numbers must have shape ({len(frames)},), got {numbers.shape}")
        lm = np.full((68, 2), np.nan) if landmarks is None else np.asarray(landmarks, dtype=np.float64)
        tf = np.full((2, 3), np.nan) if transform is None else np.asarray(transform, dtype=np.float64)
        info = dict(meta or {})
        info.update(dataset=str(dataset), sample_id=str(sample_id), size=int(frames.shape[1]),
                    n_frames=int(len(frames)), version=CACHE_VERSION, frames_crc32=frames_crc32(frames))
        text = np.array(json.dumps(info, default=_json_default))
        target = self.path(dataset, sample_id)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
                np.savez(fh, frames=frames, frame_numbers=numbers, landmarks=lm, transform=tf, meta=text)
        return target

    def load(self, dataset: str, sample_id: str, expect: dict | None = None) -> CachedSample:
        """The cached sample; with `expect` (a sample row, or any of onset/apex/offset/frames_dir),
        refuse an entry made from other frames (MicronbertError naming the difference)."""
        path = self.path(dataset, sample_id)
        if not path.is_file():
            raise MicronbertError(f"sample ({dataset}, {sample_id}) is not in the face cache {self.root} "
                                  f"(expected {path}; run `micronbert prepare`)")
        sample = self.load_path(path)
        if expect is not None:
            diff = meta_mismatch(sample.meta, expect)
            if diff:
                raise MicronbertError(f"face cache file {path} is stale: {diff} (run `micronbert prepare` again)")
        return sample

    @staticmethod
    def load_path(path: str | os.PathLike) -> CachedSample:
        try:
            with np.load(path, allow_pickle=False) as z:  # reading a member checks the zip's CRC
                sample = CachedSample(z["frames"], z["frame_numbers"], z["landmarks"], z["transform"],
                                      json.loads(str(z["meta"])))
        except Exception as exc:  # BadZipFile, truncated arrays, bad JSON: all mean "rewrite it"
            raise MicronbertError(f"corrupt face cache file {path}: {exc} (delete it and run prepare again)") from exc
        want = sample.meta.get("frames_crc32")
        if want is not None and frames_crc32(sample.frames) != want:
            raise MicronbertError(f"corrupt face cache file {path}: frames fail their content check "
                                  f"(delete it and run prepare again)")
        return sample

    def problem(self, dataset: str, sample_id: str, expect: dict) -> str | None:
        """Why the entry cannot be trusted for `expect` (missing, corrupt, stale), or None when it can.
        Reads the whole entry: the content check covers every frame."""
        path = self.path(dataset, sample_id)
        if not path.is_file():
            return "not cached"
        try:
            sample = self.load_path(path)
        except MicronbertError as exc:
            return str(exc)
        if sample.meta.get("version") != CACHE_VERSION:
            return f"made by cache version {sample.meta.get('version')}, this is {CACHE_VERSION}"
        return meta_mismatch(sample.meta, expect)

    def meta(self, dataset: str, sample_id: str) -> dict:
        """Only the metadata (reads one small member of the file)."""
        with np.load(self.path(dataset, sample_id), allow_pickle=False) as z:
            return json.loads(str(z["meta"]))

    def datasets(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(unquote(p.name) for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def keys(self, dataset: str | None = None) -> list[tuple[str, str]]:
        """(dataset, sample_id) of every cached sample, sorted."""
        out = []
        for ds in ([dataset] if dataset is not None else self.datasets()):
            folder = self.root / _quote(ds)
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.name.endswith(_SUFFIX) and not p.name.startswith("."):
                    out.append((ds, unquote(p.name[: -len(_SUFFIX)])))
        return sorted(out)

    def index(self, dataset: str | None = None) -> pd.DataFrame:
        """One row per cached sample: dataset, sample_id, n_frames, size, detector, keyframes, path."""
        rows = []
        for ds, sid in self.keys(dataset):
            m = self.meta(ds, sid)
            rows.append({"dataset": ds, "sample_id": sid, "n_frames": m.get("n_frames"), "size": m.get("size"),
                         "detector": m.get("detector"), "keyframes": m.get("keyframes"),
                         "path": str(self.path(ds, sid))})
        return pd.DataFrame(rows, columns=["dataset", "sample_id", "n_frames", "size", "detector", "keyframes", "path"])

    def __contains__(self, key) -> bool:
        return self.has(*key)

    def __len__(self) -> int:
        return len(self.keys())

    def temp_files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.rglob(".*.tmp") if p.is_file())

    def clean_temp(self) -> int:
        """Remove leftovers of killed writers; call only while no writer runs."""
        found = self.temp_files()
        for p in found:
            p.unlink(missing_ok=True)
        return len(found)

    # -- settings shared by all samples of the cache ---------------------------------------------
    def settings(self) -> dict | None:
        p = self.root / SETTINGS_FILE
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MicronbertError(f"unreadable cache settings {p}: {exc}") from exc

    def check_settings(self, settings: dict) -> None:
        """Record the alignment settings of a new cache, or refuse to mix different ones."""
        old = self.settings()
        if old is None:
            atomic_write_json(self.root / SETTINGS_FILE, settings)
            return
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            what = ", ".join(f"{k}: cache has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
            raise MicronbertError(f"face cache {self.root} was made with other settings ({what}); "
                                  f"use another --out folder or the same settings")


def cache_margin(path: str | os.PathLike | None) -> float | None:
    """The crop margin a face cache's clips were aligned with (`prepare --margin`); None for anything that is
    not a face cache with recorded settings (raw frames, videos, shards)."""
    if path is None or not Path(path).is_dir():
        return None
    settings = FaceCache(path).settings() or {}
    return None if settings.get("margin") is None else float(settings["margin"])


def frames_margin(paths) -> float | None:
    """The crop margin shared by the face caches among pretraining frame sources (None: no face cache);
    caches aligned with different margins cannot share one PoI face prior."""
    margins = {m: p for p in paths for m in [cache_margin(p)] if m is not None}
    if len(margins) > 1:
        raise MicronbertError("face caches aligned with different margins: " + ", ".join(
            f"{p} ({m:g})" for m, p in margins.items()) + "; a PoI face prior fits one margin (prepare them alike)")
    return next(iter(margins), None)


def frames_crc32(frames: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(frames).data) & 0xFFFFFFFF


# Row fields an entry must agree with; frames_dir compared as resolved paths.
_PROVENANCE = ("dataset", "sample_id", "frames_dir", "onset", "apex", "offset", "requested_frames", "source_stamp",
               "size", "margin", "detector", "keyframes", "already_cropped")


def meta_mismatch(meta: dict, expect: dict) -> str | None:
    """Which provenance fields of a cache entry differ from `expect` (only keys present in it)."""
    diffs = []
    for key in _PROVENANCE:
        if key not in expect:
            continue
        want, have = expect[key], meta.get(key)
        if key == "frames_dir":
            same = have is not None and os.path.abspath(str(have)) == os.path.abspath(str(want))
        elif key in ("onset", "apex", "offset", "size"):
            try:
                same = have is not None and int(have) == int(want)
            except (TypeError, ValueError):
                same = False
        elif key == "margin":
            same = have is not None and abs(float(have) - float(want)) < 1e-9
        elif key == "requested_frames":
            same = have is not None and [int(x) for x in have] == [int(x) for x in want]
        else:
            same = have == want
        if not same:
            shown = "…" if key in ("requested_frames", "source_stamp") else ""
            diffs.append(f"{key} {shown or repr(have)} in the cache, {shown or repr(want)} expected"
                         if not shown else f"{key} differs")
    return "; ".join(diffs) or None


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
