"""sufd: an exact, always-fresh ledger of what your AI coding agents cost."""

__version__ = "0.1.0"

__all__ = ["__version__"]
