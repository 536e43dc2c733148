"""Where outputs may go: never onto an input, never inside a folder being read, the right kind.

Every command calls `check_outputs` before doing any work, so a mistyped `--out` fails in a second
instead of overwriting an annotation sheet or dropping crops among a dataset's raw frames.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from micronbert.errors import UsageError

PathLike = str | os.PathLike


def _resolved(p: PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(p)))).resolve()


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:  # hard links, case-insensitive filesystems
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    return child != folder and folder in child.parents


def check_output(out: PathLike, kind: str, inputs: Iterable[PathLike | None] = (), flag: str = "--out") -> Path:
    """Refuse (UsageError, exit 2) an output that is an input, lies inside an input folder, or is of the
    wrong kind: `kind` "file" (an existing folder is refused) or "dir" (an existing file is refused).
    Returns the output as given (a Path)."""
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', not {kind!r}")
    given = Path(out)
    target = _resolved(out)
    if kind == "file" and target.is_dir():
        raise UsageError(f"{flag} {given} is an existing folder; give a file name")
    if kind == "dir" and target.exists() and not target.is_dir():
        raise UsageError(f"{flag} {given} is an existing file; give a folder")
    for parent in target.parents:  # mkdir would fail half-way with a traceback
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {given}: {parent} is a file, not a folder")
            break
    for inp in inputs:
        if inp is None:
            continue
        src = _resolved(inp)
        if _same(target, src):
            raise UsageError(f"{flag} {given} is the input {inp}: it would be overwritten; choose another path")
        if src.is_dir() and _inside(target, src):
            raise UsageError(f"{flag} {given} lies inside the input folder {inp}: outputs would mix with the "
                             f"data being read; choose a path outside it")
        if kind == "dir" and src.is_dir() and _inside(src, target):
            # writing numbered files into a folder that holds the frames being read
            raise UsageError(f"{flag} {given} contains the input folder {inp}; choose a separate folder")
    return given


def check_outputs(outputs: Iterable[tuple[PathLike | None, str, str]], inputs: Iterable[PathLike | None]) -> None:
    """check_output for several (path, kind, flag) outputs against the same inputs; None paths skipped."""
    inputs = list(inputs)
    for path, kind, flag in outputs:
        if path is not None:
            check_output(path, kind, inputs, flag)


def check_not_clobbering(out: PathLike, folder: PathLike, own_header: str, flag: str = "--out") -> None:
    """Inside a folder being read, an output may only replace a file this program wrote before (its
    first line starts with `own_header`); anything else there is data (a sheet, a frame) to keep."""
    target = _resolved(out)
    if not (target.is_file() and _inside(target, _resolved(folder))):
        return
    try:
        with open(target, "rb") as fh:
            first = fh.readline(4096).decode("utf-8", "replace").lstrip("\ufeff")
    except OSError:
        first = ""
    if not first.startswith(own_header):
        raise UsageError(f"{flag} {out} is a file of the dataset in {folder} (not a table written by "
                         f"micronbert): it would be overwritten; choose another path")
