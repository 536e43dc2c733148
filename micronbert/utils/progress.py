"""Progress bars for anything long. Quiet when not attached to a terminal unless asked."""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress(iterable=None, *, desc: str = "", total: int | None = None, unit: str = "it", leave: bool = True,
             disable_override: bool = False, **kw):
    """tqdm with our defaults; MICRONBERT_PROGRESS=0 disables, =1 forces on."""
    env = os.environ.get("MICRONBERT_PROGRESS")
    disable = disable_override or (env == "0") or (env is None and not sys.stderr.isatty())
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, dynamic_ncols=True, **kw)
