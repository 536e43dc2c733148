"""Checked values at the boundary: argparse types and the rules every command's numeric flags obey.

Two ways in:
- `positive_int`, `fraction`, ... are argparse `type=` callables for new options;
- `FLAG_RULES` maps an option's dest name to its rule. `micronbert.cli` applies it to every plain
  `type=int` / `type=float` option of every command, so `--batch-size 0`, `--lr nan` or `--fps -5` give
  the same one-line usage error (exit 2) in all of them without each command repeating the checks.
Every float option must be finite whatever its rule.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

Check = tuple[str, Callable[[float], bool]]

POSITIVE: Check = ("> 0", lambda v: v > 0)
NON_NEGATIVE: Check = (">= 0", lambda v: v >= 0)
AT_LEAST_ONE: Check = (">= 1", lambda v: v >= 1)
FRACTION: Check = ("in [0, 1]", lambda v: 0 <= v <= 1)
OPEN_FRACTION: Check = ("in (0, 1]", lambda v: 0 < v <= 1)
PERCENT_QUALITY: Check = ("in [1, 100]", lambda v: 1 <= v <= 100)
ANY: Check = ("finite", lambda v: True)


def checked(base: type, check: Check = ANY, what: str = "") -> Callable[[str], float]:
    """An argparse type: convert with `base` (int or float), then require finiteness and `check`."""
    rule, ok = check

    def convert(text: str):
        try:
            value = base(text)
        except (TypeError, ValueError):
            kind = "an integer" if base is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}{' ' + what if what else ''}, got {text!r}")
        return value

    convert.__name__ = base.__name__  # argparse names the type in "invalid <name> value" messages
    convert.rule = rule
    return convert


positive_int = checked(int, AT_LEAST_ONE)
nonnegative_int = checked(int, NON_NEGATIVE)
positive_float = checked(float, POSITIVE)
nonnegative_float = checked(float, NON_NEGATIVE)
finite_float = checked(float, ANY)
fraction = checked(float, FRACTION)

# dest name -> rule, for plain int/float options of any command (see module doc).
FLAG_RULES: dict[str, Check] = {
    # sizes and counts
    "batch_size": AT_LEAST_ONE, "eval_batch_size": AT_LEAST_ONE, "accum_steps": AT_LEAST_ONE,
    "steps": AT_LEAST_ONE, "pretrain_steps": AT_LEAST_ONE, "epochs": POSITIVE, "eval_epochs": AT_LEAST_ONE,
    "warmup_steps": NON_NEGATIVE, "log_every": AT_LEAST_ONE, "ckpt_every": AT_LEAST_ONE,
    "keep_checkpoints": AT_LEAST_ONE, "workers": NON_NEGATIVE, "threads": AT_LEAST_ONE,
    "parallel": AT_LEAST_ONE, "size": AT_LEAST_ONE, "img_size": AT_LEAST_ONE, "subjects": AT_LEAST_ONE,
    "clips_per_subject": AT_LEAST_ONE, "frames": AT_LEAST_ONE, "val_subjects": NON_NEGATIVE,
    "max_intervals": AT_LEAST_ONE, "max_frames": AT_LEAST_ONE, "smooth": AT_LEAST_ONE, "seed": NON_NEGATIVE,
    "quality": PERCENT_QUALITY, "opset": AT_LEAST_ONE,
    # frame numbers
    "onset": NON_NEGATIVE, "apex": NON_NEGATIVE, "offset": NON_NEGATIVE,
    # rates, times, sizes in real units
    "lr": POSITIVE, "eval_lr": POSITIVE, "min_lr": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
    "layer_decay": OPEN_FRACTION, "fps": POSITIVE, "delta": POSITIVE, "max_duration": POSITIVE,
    "margin": NON_NEGATIVE, "amplitude_px": POSITIVE, "tolerance": POSITIVE,
    # ratios and loss weights
    "swap_ratio": FRACTION, "agreement_weight": NON_NEGATIVE, "identity_weight": NON_NEGATIVE,
    "dma_temperature": NON_NEGATIVE, "min_score": ANY,
}


def apply_flag_rules(parser: argparse.ArgumentParser, rules: dict[str, Check] = FLAG_RULES) -> None:
    """Give every plain int/float option of `parser` its rule (ANY for unknown names: still finite)."""
    for action in parser._actions:
        if action.type in (int, float):
            action.type = checked(action.type, rules.get(action.dest, ANY))


def check_device(name: str | None) -> str | None:
    """Refuse a --device this machine cannot run (one line), before any work. None: the default."""
    if name is None:
        return None
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {name!r} (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{name!r} asked but torch sees no CUDA GPU here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{name!r} asked but only {torch.cuda.device_count()} CUDA "
                                             f"device(s) are visible")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{name!r} asked but MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device {name!r} (cpu, cuda, cuda:N, mps)")
    return name


def check_ordered_pair(pair, flag: str) -> None:
    """A (low, high) pair such as --delta MIN MAX must have low <= high."""
    low, high = pair
    if low > high:
        raise argparse.ArgumentTypeError(f"argument {flag}: the first value must not exceed the second, "
                                         f"got {low:g} {high:g}")
