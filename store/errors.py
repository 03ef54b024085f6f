"""The store's errors: one root, picklable, each saying what was wrong and how to fix it. The CLI
maps the root to its exit code (langspec.errors.ERROR_ROOTS)."""

from __future__ import annotations


class StoreError(Exception):
    """Root of the store's errors; raised itself when the store cannot be used: not writable, in use
    by another process, another schema version."""

    exit_code = 2


class QueryError(StoreError):
    """A query the store cannot answer: bad SQL, or SQL that would write (the store is read-only there)."""

    exit_code = 2
