"""Every command the installer runs goes through one :class:`Runner`.

``--dry-run`` prints the commands instead of running them; tests read :attr:`Runner.calls`.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Result", "Runner"]


@dataclass(frozen=True, slots=True)
class Result:
    """Exit code and output of one command (``127`` when the program does not exist)."""

    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        """Exit code 0."""
        return self.returncode == 0


@dataclass
class Runner:
    """Runs (or, dry, only prints) external commands."""

    dry_run: bool = False
    echo: Callable[[str], None] = print
    calls: list[list[str]] = field(default_factory=list)
    timeout: float = 30.0

    def run(self, argv: Sequence[str], *, mutates: bool = True) -> Result:
        """Run ``argv``. In dry-run mode a command that changes something is only printed
        (and reported as successful); read-only probes (``mutates=False``) still run."""
        args = list(argv)
        self.calls.append(args)
        if self.dry_run and mutates:
            self.echo(f"would run: {shlex.join(args)}")
            return Result(0)
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            return Result(127, "", f"{args[0]}: command not found")
        except subprocess.TimeoutExpired:
            return Result(124, "", f"{shlex.join(args)} timed out after {self.timeout:g} s")
        return Result(proc.returncode, proc.stdout, proc.stderr)
