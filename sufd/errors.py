"""Exceptions raised by sufd's library code; only the entry points turn them into exit codes."""

__all__ = ["ConfigError", "ControlError", "SourceError", "StoreError", "SufdError"]


class SufdError(Exception):
    """Base class of every error sufd raises on purpose."""


class ConfigError(SufdError):
    """The configuration (file, environment or flags) is invalid."""


class StoreError(SufdError):
    """The ledger database cannot be opened, migrated or written."""


class SourceError(SufdError):
    """A source file or root cannot be read."""


class SourceBusy(SourceError):
    """A source database is locked or changed under the read: try again shortly.

    The lock may end without a write to the database, so no change notice would come."""


class ControlError(SufdError):
    """The control socket cannot be reached or answered badly."""
