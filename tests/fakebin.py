"""Fake ``systemctl``, ``launchctl`` and ``loginctl`` on ``PATH`` for the service tests.

Why fakes: this Linux CI machine has no systemd user manager (there is no user bus, so the
real ``systemctl --user`` answers "Failed to connect to bus: No medium found") and no launchd
at all. The install flows can therefore only be observed from outside: every fake is a small
shell script that appends its arguments (``"$*"``) to ``<bin>/<name>.calls`` and then asks
this module, run as a script, how to answer. The answers come from ``<bin>/fakebin.json``,
written by :class:`FakeBin`: per program an ordered list of rules, the first whose glob
matches the argument string wins (exit code, stdout, stderr, and optionally a sequence of
answers for repeated calls). Unmatched calls exit 0 silently.

A rule can also carry *actions* that emulate just enough of a service manager for the flows
to be real rather than mocked: ``start`` launches the command of the unit file (decoded from
``ExecStart=`` exactly as systemd does, see :func:`decode_exec_start`) or of the plist
(``ProgramArguments``) as a detached background process, in the environment the service
manager would give it; for a ``Type=notify`` unit it waits for ``READY=1`` on a notify
socket of its own, as ``systemctl start`` does. ``stop`` sends SIGTERM and waits, ``restart``
does both, ``enable``/``disable``/``load``/``unload`` flip a state bit, and ``is-active``,
``is-enabled``, ``is-loaded`` answer from that state. So ``sufd install`` really waits for its
daemon's ``hello``, ``restart`` really changes the pid, and ``uninstall`` really stops it.

What the fakes cannot tell: whether a real systemd user manager or a real launchd accepts the
same commands. The unit text itself is checked by ``systemd-analyze verify`` and by systemd's
own parser (``test_service_render.py``); launchd is only ever exercised through the platform
seam on Linux.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import plistlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "UNIT_NAME",
    "ExecCommand",
    "FakeBin",
    "decode_exec_start",
    "decode_systemd_dump",
    "pid_alive",
    "unit_environment",
    "unit_value",
]

UNIT_NAME = "sufd.service"
CONFIG_NAME = "fakebin.json"
STATE_NAME = "fakebin-state.json"
NO_BUS = "Failed to connect to bus: No medium found"

# --------------------------------------------------------------------------------------
# systemd's command-line syntax, decoded independently of sufd's encoder
# (systemd.syntax(7) "Quoting", systemd.service(5) "Command lines", systemd.unit(5)
# "Specifiers").


@dataclass(frozen=True)
class ExecCommand:
    """What systemd executes for one ``ExecStart=``: the program path and its argv.

    They differ in one respect: ``$`` substitution (``$$`` -> ``$``) applies to the argv
    at exec time, but not to the path of the executable (systemd 252 ``config_parse_exec``
    resolves the path at load time with specifiers only).
    """

    path: str
    argv: list[str]


_C_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}


def _c_unescape(text: str, i: int) -> tuple[str, int]:
    """Decode the escape starting at ``text[i] == '\\'``; return (char, next index)."""
    if i + 1 >= len(text):
        raise ValueError("a trailing backslash is a line continuation, not expected here")
    c = text[i + 1]
    if c in _C_ESCAPES:
        return _C_ESCAPES[c], i + 2
    if c == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]):
        return chr(int(text[i + 2 : i + 4], 16)), i + 4
    if c == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
        return chr(int(text[i + 2 : i + 6], 16)), i + 6
    if c == "U" and re.fullmatch(r"[0-9a-fA-F]{8}", text[i + 2 : i + 10]):
        return chr(int(text[i + 2 : i + 10], 16)), i + 10
    if re.fullmatch(r"[0-7]{3}", text[i + 1 : i + 4]):
        return chr(int(text[i + 1 : i + 4], 8)), i + 4
    raise ValueError(f"invalid escape \\{c} in {text!r}")


def split_words(text: str) -> list[str]:
    """Split like systemd's ``extract_first_word(EXTRACT_UNQUOTE | EXTRACT_CUNESCAPE)``.

    Words are separated by whitespace; single or double quotes may open anywhere in a word
    and must close; C-style escapes are decoded inside and outside quotes.
    """
    words: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t\n":
            i += 1
        if i >= n:
            return words
        word: list[str] = []
        quote = ""
        while i < n:
            c = text[i]
            if quote:
                if c == quote:
                    quote = ""
                    i += 1
                elif c == "\\":
                    ch, i = _c_unescape(text, i)
                    word.append(ch)
                else:
                    word.append(c)
                    i += 1
            elif c in " \t\n":
                break
            elif c in "'\"":
                quote = c
                i += 1
            elif c == "\\":
                ch, i = _c_unescape(text, i)
                word.append(ch)
            else:
                word.append(c)
                i += 1
        if quote:
            raise ValueError(f"unterminated {quote} quote in {text!r}")
        words.append("".join(word))


def _specifiers(word: str) -> str:
    """Resolve ``%%``; any other specifier is unexpected in sufd's unit."""
    out, i = [], 0
    while i < len(word):
        if word[i] == "%":
            if word[i + 1 : i + 2] != "%":
                raise ValueError(f"unexpected specifier {word[i : i + 2]!r} in {word!r}")
            out.append("%")
            i += 2
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def _environment(word: str) -> str:
    """``$$`` -> ``$`` at exec time; a variable reference is unexpected in sufd's unit."""
    if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", word):
        raise ValueError(f"{word!r} would be replaced by an environment variable")
    out, i = [], 0
    while i < len(word):
        if word.startswith("$$", i):
            out.append("$")
            i += 2
        elif word.startswith("${", i):
            raise ValueError(f"{word!r} would be replaced by an environment variable")
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def decode_exec_start(value: str) -> ExecCommand:
    """Decode the value of ``ExecStart=`` into the path and argv systemd executes."""
    words = split_words(value)
    if not words:
        raise ValueError("empty ExecStart=")
    if ";" in words:
        raise ValueError("ExecStart= of a Type=notify service takes one command, not a list")
    if words[0][:1] in ("@", "-", ":", "+", "!"):
        raise ValueError(f"unexpected ExecStart= prefix in {words[0]!r}")
    expanded = [_specifiers(w) for w in words]
    return ExecCommand(path=expanded[0], argv=[_environment(w) for w in expanded])


def decode_systemd_dump(line: str) -> list[str]:
    """Decode a ``Command Line:`` of ``systemd --test`` (``quote_command_line()``).

    systemd prints a word as is unless it needs quoting; then it is double-quoted with
    ``\\ " ` $`` backslash-escaped and control characters C-escaped.
    """
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        word: list[str] = []
        if line[i] == '"':
            i += 1
            while line[i] != '"':
                if line[i] == "\\":
                    if line[i + 1] in '"\\`$':
                        word.append(line[i + 1])
                        i += 2
                    else:
                        ch, i = _c_unescape(line, i)
                        word.append(ch)
                else:
                    word.append(line[i])
                    i += 1
            i += 1
        else:
            while i < n and line[i] != " ":
                word.append(line[i])
                i += 1
        words.append("".join(word))
    return words


def unit_value(unit_text: str, key: str) -> str:
    """The value of the one ``key=`` line of a unit (continuation lines are not used)."""
    values = [
        line.split("=", 1)[1]
        for line in unit_text.splitlines()
        if line.split("=", 1)[0].strip() == key and "=" in line
    ]
    if len(values) != 1:
        raise ValueError(f"expected exactly one {key}= line, found {len(values)}")
    return values[0]


def unit_environment(unit_text: str) -> dict[str, str]:
    """``Environment=`` assignments (systemd.exec(5): quoted words of ``VAR=value``)."""
    env: dict[str, str] = {}
    for line in unit_text.splitlines():
        if line.startswith("Environment="):
            for word in split_words(line.split("=", 1)[1]):
                name, _, value = word.partition("=")
                env[name] = _specifiers(value)
    return env


# --------------------------------------------------------------------------------------
# The fake binaries


_SCRIPT = """\
#!/bin/sh
# Fake {name} written by tests/fakebin.py (no systemd user manager / launchd on this machine):
# record the arguments, then answer as configured in {config}.
printf '%s\\n' "$*" >> {calls}
exec {python} {module} {bindir} {name} "$@"
"""


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(") ", 1)[1][:1] not in ("Z", "X")


class FakeBin:
    """A directory of fake binaries and their configuration (see the module docstring)."""

    def __init__(self, bindir: Path, *names: str) -> None:
        self.bindir = bindir
        bindir.mkdir(parents=True, exist_ok=True)
        self.rules: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        """Write the fake ``name`` (answers 0 to everything until given rules)."""
        script = self.bindir / name
        script.write_text(
            _SCRIPT.format(
                name=name,
                config=CONFIG_NAME,
                calls=shlex.quote(str(self.bindir / f"{name}.calls")),
                python=shlex.quote(sys.executable),
                module=shlex.quote(str(Path(__file__).resolve())),
                bindir=shlex.quote(str(self.bindir)),
            )
        )
        script.chmod(0o755)
        self.rules.setdefault(name, [])
        self._save()

    def rule(
        self,
        name: str,
        match: str,
        *,
        rc: int = 0,
        stdout: str = "",
        stderr: str = "",
        actions: list[str] | None = None,
        seq: list[dict[str, Any]] | None = None,
        first: bool = True,
    ) -> None:
        """Answer calls of ``name`` whose argument string matches the glob ``match``.

        ``seq``: one answer (dict of rc/stdout/stderr/actions) per call; the last repeats.
        ``first``: put the rule before the existing ones (it wins over presets).
        """
        answer = {"rc": rc, "stdout": stdout, "stderr": stderr, "actions": actions or []}
        entry = {"match": match, "seq": seq or [answer], "id": f"{name}-{len(self.rules[name])}"}
        if first:
            self.rules[name].insert(0, entry)
        else:
            self.rules[name].append(entry)
        self._save()

    def systemd_unreachable(self) -> None:
        """Every ``systemctl --user`` call fails as it does without a user bus."""
        self.rule("systemctl", "--user *", rc=1, stderr=NO_BUS + "\n")

    def systemd_user(self, unit_path: Path) -> None:
        """A working ``systemctl --user`` that runs ``unit_path`` (see module docstring)."""
        unit = str(unit_path)
        ok = self._rule_later
        ok("systemctl", "--user show-environment", stdout="HOME=/home/fake\nLANG=C.UTF-8\n")
        ok("systemctl", f"--user is-enabled {UNIT_NAME}", actions=["is-enabled"])
        ok("systemctl", f"--user is-active {UNIT_NAME}", actions=["is-active"])
        ok("systemctl", f"--user enable --now {UNIT_NAME}", actions=["enable", f"start:{unit}"])
        ok("systemctl", f"--user enable {UNIT_NAME}", actions=["enable"])
        ok("systemctl", f"--user disable --now {UNIT_NAME}", actions=["disable", "stop"])
        ok("systemctl", f"--user start {UNIT_NAME}", actions=[f"start:{unit}"])
        ok("systemctl", f"--user stop {UNIT_NAME}", actions=["stop"])
        ok("systemctl", f"--user restart {UNIT_NAME}", actions=["stop", f"start:{unit}"])

    def launchd(self, plist_path: Path, target: str, domain: str) -> None:
        """A launchd that loads ``plist_path`` as ``target`` in ``domain``."""
        plist = str(plist_path)
        ok = self._rule_later
        ok("launchctl", f"print {target}", actions=["is-loaded"])
        ok("launchctl", f"print {domain}", stdout=f"{domain} = {{\n\ttype = login\n}}\n")
        ok("launchctl", f"enable {target}")
        ok("launchctl", f"bootstrap {domain} {plist}", actions=["load", f"start:{plist}"])
        ok("launchctl", f"bootout {target}", actions=["unload", "stop"])
        ok("launchctl", f"kickstart -k {target}", actions=["stop", f"start:{plist}"])
        ok("launchctl", f"kickstart {target}", actions=[f"start:{plist}"])
        ok("launchctl", f"kill SIGTERM {target}", actions=["stop"])

    def _rule_later(self, name: str, match: str, **kw: Any) -> None:
        if name not in self.rules:
            self.add(name)
        self.rule(name, match, first=False, **kw)

    def _save(self) -> None:
        (self.bindir / CONFIG_NAME).write_text(json.dumps({"rules": self.rules}, indent=1))

    # -- what happened -------------------------------------------------------------------

    def calls(self, name: str) -> list[str]:
        """The argument strings ``name`` was called with, in order."""
        log = self.bindir / f"{name}.calls"
        return log.read_text().splitlines() if log.exists() else []

    def clear_calls(self) -> None:
        """Forget the calls so far."""
        for log in self.bindir.glob("*.calls"):
            log.unlink()

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with the fakes first on ``PATH``."""
        return {**base, "PATH": f"{self.bindir}{os.pathsep}{base.get('PATH', os.defpath)}"}

    @property
    def service_pid(self) -> int | None:
        """The pid of the service the fake manager started, while it runs."""
        state = _load_state(self.bindir)
        pid = state.get("pid")
        return pid if isinstance(pid, int) and pid_alive(pid) else None

    @property
    def service_log(self) -> str:
        """Output of the services the fake manager ran (for failure messages)."""
        log = self.bindir / "service.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def kill_services(self) -> None:
        """SIGKILL whatever the fake managers started (test teardown)."""
        for pid in _load_state(self.bindir).get("pids", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------
# The answering side: ``python tests/fakebin.py <bindir> <name> ARGS...``


def _load_state(bindir: Path) -> dict[str, Any]:
    path = bindir / STATE_NAME
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(bindir: Path, state: dict[str, Any]) -> None:
    tmp = bindir / (STATE_NAME + ".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(bindir / STATE_NAME)


def _service_command(path: Path) -> tuple[ExecCommand, dict[str, str], str | None, bool, str]:
    """(command, environment, working dir, notify, stdout/stderr) of a unit or plist."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k in ("HOME", "USER", "LOGNAME", "LANG", "TZ", "XDG_RUNTIME_DIR")
    }
    if path.suffix == ".plist":
        data = plistlib.loads(path.read_bytes())
        argv = list(data["ProgramArguments"])
        env = {**base, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "XPC_SERVICE_NAME": data["Label"]}
        env.update(data.get("EnvironmentVariables", {}))
        env.pop("XDG_RUNTIME_DIR", None)  # launchd has no such thing
        return (
            ExecCommand(argv[0], argv),
            env,
            data.get("WorkingDirectory"),
            False,
            data.get("StandardErrorPath", ""),
        )
    text = path.read_text()
    command = decode_exec_start(unit_value(text, "ExecStart"))
    env = {**base, "PATH": os.environ.get("PATH", os.defpath)}
    env["INVOCATION_ID"] = os.urandom(16).hex()
    env.update(unit_environment(text))
    return command, env, None, unit_value(text, "Type") == "notify", ""


def _start(bindir: Path, state: dict[str, Any], unit: Path) -> tuple[int, str]:
    if isinstance(state.get("pid"), int) and pid_alive(state["pid"]):
        return 0, ""
    command, env, cwd, notify, errlog = _service_command(unit)
    sock_dir = tempfile.mkdtemp(prefix="fakenotify")
    sock_path = os.path.join(sock_dir, "n")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    if notify:
        env["NOTIFY_SOCKET"] = sock_path
    out = open(errlog or bindir / "service.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            command.argv,
            executable=command.path,
            env=env,
            cwd=cwd or "/",
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    finally:
        out.close()
    state["pid"] = proc.pid
    state.setdefault("pids", []).append(proc.pid)
    _save_state(bindir, state)
    try:
        if not notify:
            return 0, ""
        # Like systemctl start of a Type=notify unit: block until READY=1 (TimeoutStartSec).
        deadline = time.monotonic() + 20
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return 1, f"Job for {UNIT_NAME} failed: the process exited {proc.returncode}.\n"
            with contextlib.suppress(TimeoutError):
                if b"READY=1" in sock.recv(4096).split(b"\n"):
                    return 0, ""
        return 1, f"Job for {UNIT_NAME} failed because a timeout was exceeded.\n"
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(sock_path)
            os.rmdir(sock_dir)


def _stop(bindir: Path, state: dict[str, Any]) -> None:
    pid = state.get("pid")
    if isinstance(pid, int) and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    state["pid"] = None
    _save_state(bindir, state)


def _act(bindir: Path, action: str, answer: dict[str, Any]) -> dict[str, Any]:
    state = _load_state(bindir)
    verb, _, arg = action.partition(":")
    if verb in ("enable", "disable", "load", "unload"):
        key = "enabled" if verb in ("enable", "disable") else "loaded"
        state[key] = verb in ("enable", "load")
        _save_state(bindir, state)
    elif verb == "start":
        rc, err = _start(bindir, state, Path(arg))
        if rc:
            return {**answer, "rc": rc, "stderr": err}
    elif verb == "stop":
        _stop(bindir, state)
    elif verb == "is-enabled":
        on = bool(state.get("enabled"))
        return {**answer, "rc": 0 if on else 1, "stdout": "enabled\n" if on else "disabled\n"}
    elif verb == "is-active":
        on = isinstance(state.get("pid"), int) and pid_alive(state["pid"])
        return {**answer, "rc": 0 if on else 3, "stdout": "active\n" if on else "inactive\n"}
    elif verb == "is-loaded":
        if not state.get("loaded"):
            return {**answer, "rc": 113, "stderr": "Could not find service in domain\n"}
        running = isinstance(state.get("pid"), int) and pid_alive(state["pid"])
        return {**answer, "stdout": f"state = {'running' if running else 'not running'}\n"}
    else:
        raise ValueError(f"unknown fake action {action!r}")
    return answer


def _respond(bindir: Path, name: str, args: list[str]) -> int:
    config = json.loads((bindir / CONFIG_NAME).read_text())
    joined = " ".join(args)
    for rule in config["rules"].get(name, []):
        if not fnmatch.fnmatchcase(joined, rule["match"]):
            continue
        counter = bindir / f"{rule['id']}.count"
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        answer = dict(rule["seq"][min(n, len(rule["seq"]) - 1)])
        for action in answer.get("actions", []):
            answer = _act(bindir, action, answer)
            if answer.get("rc", 0):
                break
        sys.stdout.write(answer.get("stdout", ""))
        sys.stderr.write(answer.get("stderr", ""))
        return int(answer.get("rc", 0))
    return 0


if __name__ == "__main__":
    raise SystemExit(_respond(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
