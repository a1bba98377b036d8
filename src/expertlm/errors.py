"""The one exception type for user errors.

An `ExpertlmError` is a problem with the user's input (a path, a file's content, an option):
the CLI prints its message on one line and exits with status 2, without a traceback. Anything
else that escapes is a bug in expertlm and keeps its traceback.
"""

from __future__ import annotations


class ExpertlmError(Exception):
    """A user-facing error; the message names the file, line or key at fault."""


def where(path: object, line: int | None = None) -> str:
    """`path` or `path:line`, the prefix every file error starts with."""
    return f"{path}:{line}" if line is not None else f"{path}"


def names(items) -> str:
    """Names from a user's file (columns, fields) for a one-line message: those with a line
    break or another unprintable character shown as Python literals."""
    return ", ".join(n if n.isprintable() else repr(n) for n in map(str, items))
