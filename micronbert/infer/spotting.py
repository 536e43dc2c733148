"""Apex spotting in an aligned face clip: where did a brief, local facial movement peak?

Motion signal (per frame t): the aligned face is cut into blocks; each block's mean absolute difference
between frame t and the average of frames t−k and t+k (k ≈ half the longest micro-expression) is
taken. A movement that rises and falls within 2k frames peaks at its apex, while slow drifts (head
motion, lighting) that are roughly linear over 2k frames cancel. Micro-expressions are local, so the
per-frame value is the mean of the strongest blocks minus the median block (camera noise, global
flicker). The signal is lightly smoothed.

Proposals: a sliding window of the longest expected duration moves over the signal; each window's
maximum is a candidate apex, its onset and offset are where the signal falls back to a quarter of its
height above the clip's baseline (within the window's reach). Candidates are scored by height over the
baseline in units of the clip's robust spread, then non-maximum suppression keeps the strongest
non-overlapping intervals.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Interval:
    onset: int   # positions in the clip (0-based)
    apex: int
    offset: int
    score: float  # peak height over the baseline, in robust standard deviations of the signal

    def to_dict(self) -> dict:
        return asdict(self)


def _gray_one(frame: np.ndarray, max_side: int = 128) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    s = min(1.0, max_side / max(h, w))
    g = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    if s < 1.0:
        g = cv2.resize(g, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(g.astype(np.float32), (3, 3), 0)


class MotionStream:
    """The motion signal computed while frames arrive: memory holds 2k+1 small gray frames, whatever
    the clip's length (predict streams long videos through it).

    push(frame, present) per frame in order, then finish() -> (T,) signal. A frame without a face is
    replaced by the last frame with one (at the start: the first one) so it serves as nobody's
    reference, and its own value is 0.
    """

    def __init__(self, k: int = 6, blocks: int = 8, top: float = 0.1, smooth: int = 3):
        self.k, self.blocks, self.top, self.smooth = max(1, int(k)), blocks, top, smooth
        self.gray: dict[int, np.ndarray | None] = {}   # position -> gray; None until a face frame is seen
        self.ok: list[bool] = []
        self.values: list[float] = []
        self._last_good: np.ndarray | None = None

    def push(self, frame: np.ndarray | None, present: bool = True) -> None:
        t = len(self.ok)
        good = frame is not None and bool(present)
        if good:
            g = _gray_one(np.asarray(frame))
            if self._last_good is None:  # leading faceless frames take the first face frame
                for p in self.gray:
                    self.gray[p] = g
            self._last_good = g
        self.gray[t] = g if good else self._last_good
        self.ok.append(good)
        ready = t - self.k  # its reach min(k, ready) is available now
        if ready >= 0:
            self._emit(ready, min(self.k, ready))
        for p in [p for p in self.gray if p < t - 2 * self.k]:
            del self.gray[p]

    def _emit(self, t: int, reach: int) -> None:
        g, a, b = self.gray[t], self.gray[t - reach], self.gray[t + reach]
        if not self.ok[t] or g is None:
            self.values.append(0.0)  # no face: no movement to report
            return
        diff = np.abs(g - 0.5 * (a + b))
        h, w = diff.shape
        bh, bw = h // self.blocks, w // self.blocks
        d = diff[:bh * self.blocks, :bw * self.blocks].reshape(self.blocks, bh, self.blocks, bw).mean((1, 3)).ravel()
        n_top = max(1, int(round(self.top * d.size)))
        self.values.append(float(np.sort(d)[-n_top:].mean() - np.median(d)))

    def finish(self) -> np.ndarray:
        t_len = len(self.ok)
        for t in range(len(self.values), t_len):
            # symmetric reach, shrunk near the ends: a one-sided reference would turn drift into a peak
            self._emit(t, min(self.k, t, t_len - 1 - t))
        sig = np.asarray(self.values, dtype=np.float64)
        if self.smooth > 1 and t_len >= self.smooth:
            sig = np.convolve(np.pad(sig, self.smooth // 2, mode="edge"), np.ones(self.smooth) / self.smooth,
                              mode="valid")
        return sig


def motion_signal(frames: np.ndarray, k: int = 6, blocks: int = 8, top: float = 0.1,
                  present: np.ndarray | None = None, smooth: int = 3) -> np.ndarray:
    """(T, S, S, 3) uint8 aligned frames -> (T,) float motion signal (see module doc and MotionStream)."""
    stream = MotionStream(k, blocks, top, smooth)
    ok = np.ones(len(frames), bool) if present is None else np.asarray(present, bool)
    for f, p in zip(frames, ok):
        stream.push(f, bool(p))
    return stream.finish()


def robust_baseline(sig: np.ndarray) -> tuple[float, float]:
    """(baseline, spread) of a motion signal: median and scaled MAD, floored away from zero."""
    sig = np.asarray(sig, dtype=np.float64)
    baseline = float(np.median(sig))
    spread = 1.4826 * float(np.median(np.abs(sig - baseline)))
    return baseline, max(spread, 1e-3 * max(float(np.abs(sig).max()), 1e-6), 1e-9)


def threshold_level(sig: np.ndarray, min_score: float) -> float:
    """The signal value a peak must reach to score `min_score` (the line on the timeline plot)."""
    baseline, spread = robust_baseline(sig)
    return baseline + min_score * spread


def _extent(sig: np.ndarray, apex: int, level: float, reach: int) -> tuple[int, int]:
    lo, hi = max(0, apex - reach), min(len(sig) - 1, apex + reach)
    onset = apex
    while onset > lo and sig[onset - 1] > level:
        onset -= 1
    offset = apex
    while offset < hi and sig[offset + 1] > level:
        offset += 1
    # the crossing is inside the movement; step one frame out to its start/end
    return max(lo, onset - 1), min(hi, offset + 1)


def _iou(a: Interval, b: Interval) -> float:
    inter = min(a.offset, b.offset) - max(a.onset, b.onset) + 1
    if inter <= 0:
        return 0.0
    return inter / (max(a.offset, b.offset) - min(a.onset, b.onset) + 1)


def propose_intervals(sig: np.ndarray, window: int, min_score: float = 3.0, max_intervals: int = 5,
                      iou: float = 0.3, always_one: bool = True) -> list[Interval]:
    """Sliding-window candidates over a motion signal + non-maximum suppression, strongest first.

    With `always_one`, the best candidate is returned even below `min_score` (its score says how weak).
    """
    sig = np.asarray(sig, dtype=np.float64)
    t_len = len(sig)
    if t_len == 0:
        return []
    window = max(3, min(int(window), t_len))
    baseline, spread = robust_baseline(sig)
    apexes = set()
    for start in range(0, max(1, t_len - window + 1), max(1, window // 4)):
        apexes.add(start + int(np.argmax(sig[start:start + window])))
    apexes.add(int(np.argmax(sig)))
    candidates = []
    for a in sorted(apexes):
        # a window maximum on a slope is not a peak: keep local maxima only
        if (a > 0 and sig[a - 1] > sig[a]) or (a < t_len - 1 and sig[a + 1] > sig[a]):
            continue
        height = sig[a] - baseline
        onset, offset = _extent(sig, a, baseline + 0.25 * height, window // 2 + 1)
        candidates.append(Interval(onset, a, offset, float(height / spread)))
    candidates.sort(key=lambda c: -c.score)
    kept: list[Interval] = []
    for c in candidates:
        if len(kept) >= max_intervals:
            break
        if c.score < min_score and not (always_one and not kept):
            continue
        # within half a window of a kept apex is its echo (the apex frame served as reference t±k there)
        if all(_iou(c, k) < iou and abs(c.apex - k.apex) > window // 2 + 1 for k in kept):
            kept.append(c)
    return kept


def spotting_window(fps: float, max_duration_s: float) -> tuple[int, int]:
    """(window, k) in frames for the longest expected movement at this frame rate."""
    window = max(3, int(round(max_duration_s * fps)))
    return window, max(1, window // 2)


def spot_intervals(frames: np.ndarray, fps: float = 30.0, max_duration_s: float = 0.5,
                   present: np.ndarray | None = None, min_score: float = 3.0,
                   max_intervals: int = 5) -> tuple[list[Interval], np.ndarray]:
    """Aligned frames -> (intervals strongest first, the motion signal). Durations in seconds use `fps`."""
    window, k = spotting_window(fps, max_duration_s)
    sig = motion_signal(frames, k=k, present=present)
    return propose_intervals(sig, window, min_score, max_intervals), sig
