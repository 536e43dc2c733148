"""One module per subcommand. Each module defines:

    HELP: str                      one-line description shown by `micronbert --help`
    def configure(parser) -> None  adds its arguments (keep imports here light)
    def run(args) -> int | None    does the work (import heavy modules inside)

`micronbert/cli.py` discovers the modules in this package, so adding a command is adding a file.
The module name with `_` replaced by `-` is the subcommand name (convert_official -> convert-official).
"""
