"""One exception type for problems a user can fix (bad path, bad sheet, bad weights).

The CLI prints these as a single line naming the file (and row) at fault, without a traceback.
"""


class MicronbertError(Exception):
    """A user-facing error: the message must name the path/row and say what is wrong."""
