"""The `micronbert` command: one entry point, one subcommand per module in micronbert.commands."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from micronbert import commands as _commands
from micronbert.errors import MicronbertError


def _command_modules():
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        yield info.name.replace("_", "-"), importlib.import_module(f"micronbert.commands.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="micronbert",
        description="μ-BERT for facial micro-expression recognition: index datasets, align faces, "
        "pretrain, evaluate (LOSO), predict.",
    )
    from micronbert import __version__

    parser.add_argument("--version", action="version", version=f"micronbert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        rc = args._run(args)
    except MicronbertError as exc:
        print(f"micronbert {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"micronbert {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
