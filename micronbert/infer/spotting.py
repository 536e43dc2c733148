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


def _gray(frames: np.ndarray, max_side: int = 128) -> np.ndarray:
    import cv2

    t, h, w = frames.shape[:3]
    s = min(1.0, max_side / max(h, w))
    out = []
    for f in frames:
        g = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
        if s < 1.0:
            g = cv2.resize(g, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        out.append(cv2.GaussianBlur(g.astype(np.float32), (3, 3), 0))
    return np.stack(out)


def motion_signal(frames: np.ndarray, k: int = 6, blocks: int = 8, top: float = 0.1,
                  present: np.ndarray | None = None, smooth: int = 3) -> np.ndarray:
    """(T, S, S, 3) uint8 aligned frames -> (T,) float motion signal (see module doc)."""
    g = _gray(np.asarray(frames))
    t_len, h, w = g.shape
    ok = np.ones(t_len, bool) if present is None else np.asarray(present, bool)
    if 0 < ok.sum() < t_len:
        # a faceless frame must not serve as anyone's reference: stand in the nearest frame with a face
        have = np.flatnonzero(ok)
        nearest = have[np.abs(np.arange(t_len)[:, None] - have[None]).argmin(1)]
        g = g[nearest]
    k = max(1, int(k))
    idx = np.arange(t_len)
    # symmetric reach, shrunk near the ends: a one-sided reference would turn any drift into a peak there
    reach = np.minimum(k, np.minimum(idx, t_len - 1 - idx))
    ref = 0.5 * (g[idx - reach] + g[idx + reach])
    diff = np.abs(g - ref)
    bh, bw = h // blocks, w // blocks
    diff = diff[:, :bh * blocks, :bw * blocks].reshape(t_len, blocks, bh, blocks, bw).mean((2, 4))
    diff = diff.reshape(t_len, -1)
    n_top = max(1, int(round(top * diff.shape[1])))
    strongest = np.sort(diff, axis=1)[:, -n_top:].mean(1)
    sig = strongest - np.median(diff, axis=1)
    sig = np.where(ok, sig, 0.0)  # no face: no movement to report
    if smooth > 1 and t_len >= smooth:
        sig = np.convolve(np.pad(sig, smooth // 2, mode="edge"), np.ones(smooth) / smooth, mode="valid")
    return sig.astype(np.float64)


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
    baseline = float(np.median(sig))
    spread = 1.4826 * float(np.median(np.abs(sig - baseline)))
    spread = max(spread, 1e-3 * max(float(np.abs(sig).max()), 1e-6), 1e-9)
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


def spot_intervals(frames: np.ndarray, fps: float = 30.0, max_duration_s: float = 0.5,
                   present: np.ndarray | None = None, min_score: float = 3.0,
                   max_intervals: int = 5) -> tuple[list[Interval], np.ndarray]:
    """Aligned frames -> (intervals strongest first, the motion signal). Durations in seconds use `fps`."""
    window = max(3, int(round(max_duration_s * fps)))
    k = max(1, window // 2)
    sig = motion_signal(frames, k=k, present=present)
    return propose_intervals(sig, window, min_score, max_intervals), sig
