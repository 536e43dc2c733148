"""`micronbert prepare` face caches as frame sources for pretraining and `micronbert shard`: one
FrameSource per cached (aligned) clip, its frames read through the cache's public loader."""
from __future__ import annotations

import sys
from pathlib import Path

from micronbert.errors import MicronbertError


class CacheClip:
    """Frames of one face-cache entry (aligned clip), read through the cache's public loader. Picklable:
    DataLoader and shard-writer processes each keep their own most recent clip in memory."""

    def __init__(self, path: str):
        self.path = path
        self._frames = None

    def frame(self, t: int):
        if self._frames is None:
            from micronbert.faces.cache import FaceCache

            self._frames = FaceCache.load_path(self.path).frames  # corrupt entries raise MicronbertError
        if not 0 <= t < len(self._frames):
            raise MicronbertError(f"frame {t} not in face cache entry {self.path}")
        return self._frames[t]

    def __getstate__(self):
        return {"path": self.path, "_frames": None}


def is_face_cache(path) -> bool:
    from micronbert.faces.cache import FaceCache

    cache = FaceCache(path)
    return Path(path).is_dir() and (cache.settings() is not None or bool(cache.keys()))


def face_cache_sources(path, fps: float) -> list:
    """One source per cached clip of a `micronbert prepare` cache (frames in cached order)."""
    from micronbert.data.pairs import FrameSource
    from micronbert.faces.cache import FaceCache

    cache = FaceCache(path)
    out = []
    for dataset, sample_id in cache.keys():
        try:
            meta = cache.meta(dataset, sample_id)
        except Exception as exc:  # a damaged entry: skipped and reported, the rest still trains
            print(f"warning: skipped face cache entry {cache.path(dataset, sample_id)}: {exc}", file=sys.stderr)
            continue
        n = int(meta.get("n_frames") or 0)
        if n >= 2:
            entry = str(cache.path(dataset, sample_id))
            out.append(FrameSource("cache", Path(entry), float(meta.get("fps") or fps), n, reader=CacheClip(entry)))
    if not out:
        raise MicronbertError(f"face cache {path} holds no clip with at least 2 frames")
    return out


def frame_sources(paths, fps: float) -> list | None:
    """FrameSources for face-cache folders among `paths` (None when none is a cache; then the paths are
    videos/frame folders or shards); a cache mixed with other kinds of path is refused."""
    caches = [p for p in paths if is_face_cache(p)]
    if not caches:
        return None
    if len(caches) != len(paths):
        raise MicronbertError("--frames: give either face caches (from `micronbert prepare`) or other paths, not both")
    return [s for p in caches for s in face_cache_sources(p, fps)]
