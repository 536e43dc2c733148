"""Shared helpers for the benchmark scripts: machine description, timing, peak memory, JSON output.

Peak memory
    CUDA: torch.cuda.max_memory_allocated() above the allocation before the call (exact, allocator-level).
    CPU:  the process's peak resident set (VmHWM) above its resident set before the call, after
          resetting the peak through /proc/self/clear_refs. glibc would otherwise keep freed tensors
          in its heap (its mmap threshold grows after large frees), hiding later allocations, so the
          scripts re-execute themselves once with MALLOC_MMAP_THRESHOLD_ fixed at 64 KiB: every tensor
          larger than that is mmapped and returned to the OS when freed. The figure is then the peak
          of live tensor bytes plus allocator/page slack (a few MiB), not an estimate from shapes.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def reexec_with_fixed_malloc() -> None:
    """Re-run this script with glibc's mmap threshold fixed (see the module docstring); no-op when set."""
    if sys.platform != "linux" or all(os.environ.get(k) == v for k, v in _MALLOC_ENV.items()):
        return
    env = {**os.environ, **_MALLOC_ENV}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2")))
    except OSError:
        pass
    return []


def machine(device: str = "cpu") -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_flags": cpu_flags(), "device": device}
    try:  # other processes sharing the cores make timings slower; say so in the figures
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def misplaced_tensors(module, device) -> list[str]:
    """Names of the module's parameters and buffers not on `device` ("cuda" means any CUDA device): a
    step would fail on them, or copy them every call."""
    import torch

    want = torch.device(device)
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    return [name for name, t in tensors
            if t.device.type != want.type or (want.index is not None and t.device.index != want.index)]


def _read_status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def rss() -> int:
    """This process's resident memory now, in bytes."""
    return _read_status("VmRSS")


def peak_memory(fn, device: str = "cpu") -> tuple[object, int | None]:
    """Run fn() once; return (its result, peak bytes allocated above the level before the call)."""
    import torch

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        return out, torch.cuda.max_memory_allocated() - base
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        base = _read_status("VmRSS")
    except OSError:
        return fn(), None
    out = fn()
    return out, max(0, _read_status("VmHWM") - base)


def time_calls(fn, repeats: int, device: str = "cpu", warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return times


def summary(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 6), "min_s": round(min(times), 6), "runs": len(times)}


def mib(nbytes: int | None) -> float | None:
    return None if nbytes is None else round(nbytes / 2**20, 2)


def emit(obj: dict) -> None:
    print(json.dumps(obj, indent=2, default=str))


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    except OSError:
        return None
