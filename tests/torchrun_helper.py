"""Launching `torchrun ... -m micronbert` from a test without leaving stray ranks or a silent failure.

subprocess.run(timeout=...) kills only torchrun itself on a timeout: its rank processes keep running
(and keep the shared machine loaded), and the test fails with no rank output. Here the launch gets its
own process group, a timeout kills the whole group, and every failure reports what the ranks printed,
how long they ran and the machine's load."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


def run_torchrun(args: list[str], *, nproc: int = 2, timeout: float = 300, env: dict | None = None):
    """`torchrun --standalone --nproc_per_node=N -m micronbert ARGS` -> (stdout, stderr); a failure or a
    timeout fails the test with the ranks' output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "micronbert", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MICRONBERT_PROGRESS": "0", **(env or {})}
    return run_group(cmd, timeout=timeout, env=env, what="torchrun")


def run_group(cmd: list[str], *, timeout: float, env: dict | None = None, what: str = "command"):
    """Run `cmd` in its own process group; on a timeout kill the whole group (children included)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every process it started
        out, err = proc.communicate()
        pytest.fail(f"{what} ran past {timeout:g} s (load average {os.getloadavg()[0]:.1f}); "
                    f"its output:\n{out[-2000:]}\n{err[-4000:]}")
    if proc.returncode != 0:
        pytest.fail(f"{what} exited {proc.returncode} after {time.monotonic() - t0:.0f} s "
                    f"(load average {os.getloadavg()[0]:.1f}):\n{out[-2000:]}\n{err[-4000:]}")
    return out, err
