"""How an exception is told in one line (a server's error text runs over several: DETAIL, HINT, CONTEXT)."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of the exception's text, or its type's name when it has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class BackupError(RuntimeError):
    """A backup could not be taken, verified, decrypted or restored. Says what and what to do.

    Lives here so that backup.py and encryption.py (its encryption at rest) share it without importing each other."""
