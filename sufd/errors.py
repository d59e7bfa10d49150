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


class ControlError(SufdError):
    """The control socket cannot be reached or answered badly."""
