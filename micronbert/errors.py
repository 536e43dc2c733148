"""Exceptions for problems a user can fix (bad path, bad sheet, bad weights, bad flag).

The CLI prints these as a single line naming the file (and row) at fault, without a traceback, and
exits with the error's `exit_code` (see EXIT_CODES and the README's "Exit status").
"""

# One exit-status convention for every command.
EXIT_OK = 0          # finished, result complete
EXIT_ERROR = 1       # stopped: bad input file, missing data, fault (one line on stderr says which)
EXIT_USAGE = 2       # stopped before any work: bad flag or flag value (argparse and our validators)
EXIT_FLAGGED = 3     # finished and wrote its outputs, but flagged a problem: --strict found report
#                      entries, or no face was found (faces, predict)
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT

EXIT_CODES = {EXIT_OK: "ok", EXIT_ERROR: "error", EXIT_USAGE: "usage error (bad flag or value)",
              EXIT_FLAGGED: "finished with problems flagged (--strict, no face found)",
              EXIT_INTERRUPTED: "interrupted"}


class MicronbertError(Exception):
    """A user-facing error: the message must name the path/row and say what is wrong."""

    exit_code = EXIT_ERROR


class UsageError(MicronbertError):
    """A flag or flag combination that cannot work; raised before any work is done."""

    exit_code = EXIT_USAGE
