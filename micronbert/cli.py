"""The `micronbert` command: one entry point, one subcommand per module in micronbert.commands.

Errors are handled here, once for every command (exit codes in micronbert.errors, README "Exit status"):
- bad flags and values: argparse plus the rules of micronbert.utils.validate, one line, exit 2;
- MicronbertError: one line naming the file/row at fault, exit 1 (UsageError: 2);
- faults a user causes that surface as library exceptions (a file where a folder belongs, a full disk,
  weights of another shape, CUDA missing): one line, exit 1. Anything else is a bug and keeps its
  traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from micronbert import commands as _commands
from micronbert.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, MicronbertError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where the help does not already say it and X means something."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (the usage itself is one `--help` away), exit 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Help for common options a command left without any (one wording everywhere; a command's own help wins).
# "(default: ...)" is added by _Formatter where the default means something.
COMMON_HELP = {
    "seed": "random seed (runs with one seed repeat exactly)",
    "batch_size": "samples per optimizer step (default: the method's)",
    "eval_batch_size": "fine-tuning batch size of each evaluation (default: the method's)",
    "lr": "peak learning rate (default: the method's)",
    "eval_lr": "fine-tuning learning rate of each evaluation (default: the method's)",
    "weight_decay": "AdamW weight decay (default: the method's)",
    "warmup_steps": "linear learning-rate warm-up steps before the cosine decay (default: the method's)",
    "class_weights": "loss weights per class: balanced (inverse frequency) or none (default: the method's)",
    "steps": "optimizer steps",
    "log_every": "write a log.csv line every N steps",
    "ckpt_every": "save a resumable checkpoint every N steps",
    "subjects": "number of synthetic subjects (default: the preset's)",
    "clips_per_subject": "synthetic clips per subject (default: the preset's)",
    "pretrain_steps": "pretraining steps (default: the preset's)",
}


def _fill_help(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.option_strings and action.help is None and action.dest in COMMON_HELP:
            action.help = COMMON_HELP[action.dest]


def _command_modules():
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        yield info.name.replace("_", "-"), importlib.import_module(f"micronbert.commands.{info.name}")


EPILOG = ("Exit status (every command): 0 ok; 1 error (one line on stderr names the file or row); 2 bad flag "
          "or value; 3 finished but flagged (--strict found report entries, or no face found); 130 "
          "interrupted.")


def build_parser() -> argparse.ArgumentParser:
    from micronbert.utils.validate import apply_flag_rules

    parser = Parser(
        prog="micronbert",
        description="μ-BERT for facial micro-expression recognition: index datasets, align faces, "
        "pretrain, evaluate (LOSO), predict.",
        epilog=EPILOG,
    )
    from micronbert import __version__

    parser.add_argument("--version", action="version", version=f"micronbert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=_Formatter)
        module.configure(p)
        p.epilog = f"{p.epilog}\n\n{EPILOG}" if p.epilog else EPILOG
        apply_flag_rules(p)
        _fill_help(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def _check_common(args) -> None:
    """Checks that need several values or the machine: --delta MIN MAX, --device."""
    from micronbert.utils.validate import check_device, check_ordered_pair

    if getattr(args, "delta", None) is not None:
        check_ordered_pair(args.delta, "--delta")
    if getattr(args, "device", None) is not None:
        check_device(args.device)


def _user_fault(exc: BaseException) -> str | None:
    """One line for library exceptions that mean bad input or environment, None for bugs."""
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or exc}{where}"
    text = str(exc)
    if isinstance(exc, RuntimeError):
        if "Error(s) in loading state_dict" in text:
            lines = [ln.strip() for ln in text.splitlines() if "size mismatch" in ln or "Missing key" in ln]
            return "the weights do not fit the model: " + (lines[0] if lines else text.splitlines()[0])
        if "CUDA" in text and ("not compiled" in text or "no CUDA GPUs" in text or "driver" in text.lower()):
            return f"CUDA is not usable here ({text.splitlines()[0]}); use --device cpu"
    if isinstance(exc, AssertionError) and "CUDA" in text:
        return f"CUDA is not usable here ({text}); use --device cpu"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USAGE
    prog = f"micronbert {args.command}"
    try:
        _check_common(args)
    except argparse.ArgumentTypeError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        rc = args._run(args)
    except MicronbertError as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        line = _user_fault(exc)
        if line is None:
            raise
        print(f"{prog}: error: {_one_line(line)}", file=sys.stderr)
        return EXIT_ERROR
    return int(rc or 0)


def _one_line(msg) -> str:
    return " ".join(str(msg).split())


if __name__ == "__main__":
    sys.exit(main())
