"""The rendered systemd unit and launchd plist (acceptance items 1 and 6 of issue 4).

The unit is checked by systemd itself, three ways: ``systemd-analyze verify`` in system and
user scope (rc 0 and *no* stderr: bad values and unknown keys are only warnings there), the
executable check of ``verify`` for interpreter paths with odd characters (it fails unless
systemd resolved the path to a file that exists), and the parsed command line that
``systemd --test --user`` dumps, compared with the argv sufd meant. A small decoder written
from systemd.syntax(7)/systemd.service(5) (``tests/fakebin.py``) checks the same quoting
without systemd. Golden files pin the whole text of both artifacts; they were generated once
and read against service-design §9.4/§9.5 before being frozen.

The plist is never seen by launchd here (this is Linux): it is checked by ``plistlib`` only.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sufd.daemon.lifecycle import HEARTBEAT_S
from sufd.service.templates import LABEL, render_plist, render_unit
from tests.fakebin import decode_exec_start, decode_systemd_dump, unit_environment, unit_value

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
FORMULA = REPO / "packaging" / "homebrew" / "sufd.rb"
SYSTEMD = Path("/lib/systemd/systemd")
NOBODY = 65534

# Every character systemd's command-line syntax treats specially, in one config path.
NASTY_CONFIG = "/tmp/x y/100%$HOME\"\\'.toml"
# The daemon's command line as `sufd install` builds it (sufd.service.install.service_argv).
TAIL = ["-m", "sufd", "run", "--foreground", "--config"]

GOLDEN_ARGV = ["/opt/sufd/venv/bin/python", *TAIL, "/home/alice/.config/sufd/config.toml"]
GOLDEN_MAC_ARGV = [
    "/Users/alice/.local/pipx/venvs/sufd/bin/python",
    *TAIL,
    "/Users/alice/Library/Application Support/sufd/config.toml",
]
GOLDEN_STATE = Path("/Users/alice/Library/Application Support/sufd")
GOLDEN_LOGS = Path("/Users/alice/Library/Logs/sufd")


def nasty_argv(exe: str = sys.executable) -> list[str]:
    return [exe, *TAIL, NASTY_CONFIG]


def sections(unit: str) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values]}}`` of a unit file (comments skipped)."""
    out: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = out.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key, []).append(value)
    return out


# -- systemd-analyze verify --------------------------------------------------------------


Verify = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def verify(tmp_path: Path) -> Verify:
    if shutil.which("systemd-analyze") is None:
        if sys.platform == "linux":
            pytest.fail("systemd-analyze is missing: apt-get install systemd (see .ci/run)")
        pytest.skip("systemd-analyze exists on Linux only")
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)

    def run(unit_text: str, *, user: bool) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "sufd.service"
        path.write_text(unit_text)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        scope = ["--user"] if user else []
        return subprocess.run(
            ["systemd-analyze", *scope, "verify", "--man=no", str(path)],
            env=env if user else os.environ,
            capture_output=True,
            text=True,
            timeout=30,
        )

    return run


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_unit_verifies_without_any_warning(verify: Verify, user: bool) -> None:
    result = verify(render_unit(nasty_argv(), version="0.1.0"), user=user)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_verify_catches_what_it_should(verify: Verify) -> None:
    """The check above can fail: a typo'd key only warns (rc 0), a missing program is rc 1."""
    unit = render_unit(nasty_argv(), version="0.1.0")
    typo = verify(unit.replace("Restart=on-failure", "Restartt=on-failure"), user=True)
    assert typo.returncode == 0 and "Unknown key" in typo.stderr
    missing = verify(render_unit(nasty_argv("/nonexistent/python3"), version="0"), user=True)
    assert missing.returncode != 0 and "not executable" in missing.stderr


@pytest.mark.parametrize(
    "name",
    [
        "with space/python",
        "100%/python",
        "odd&chars~+=,@#[]{}/python",
        "dollar$HOME/python",
        "quote'/python",
    ],
    ids=["space", "percent", "punctuation", "dollar", "apostrophe"],
)
def test_interpreter_path_is_found_by_systemd(verify: Verify, tmp_path: Path, name: str) -> None:
    """``verify`` fails unless the ExecStart path resolves to an executable that exists, so
    a symlink to this interpreter under an odd name shows how systemd decoded argv[0].

    systemd refuses quotes and backslashes in an executable path outright ("Executable name
    contains special characters"); sufd must then refuse to write the unit (ValueError)
    rather than install one that can never start.
    """
    link = tmp_path / "venv" / name
    link.parent.mkdir(parents=True)
    link.symlink_to(sys.executable)
    try:
        unit = render_unit(nasty_argv(str(link)), version="0.1.0")
    except ValueError:
        assert re.search(r"[\"'\\\x00-\x1f]", str(link)), f"{link} is a valid systemd path"
        return
    result = verify(unit, user=True)
    assert result.returncode == 0 and result.stderr == "", (
        f"systemd cannot run the interpreter {link}:\n{unit_value(unit, 'ExecStart')}\n"
        f"{result.stderr}"
    )


def test_values_are_filled_in_verbatim(tmp_path: Path) -> None:
    """A path may contain anything, including the template's own ``@@SLOT@@`` markers."""
    odd = tmp_path / "@@STATE_DIR@@" / "a@@b"
    argv = [sys.executable, *TAIL, str(odd / "config.toml")]
    unit = render_unit(argv, version="0.1.0")
    assert decode_exec_start(unit_value(unit, "ExecStart")).argv == argv
    plist = render_plist(argv, version="0.1.0", state_dir=odd, log_dir=odd / "log")
    data = plistlib.loads(plist.encode())
    assert data["ProgramArguments"] == argv and data["WorkingDirectory"] == str(odd)


# -- the command line, decoded -----------------------------------------------------------


def test_exec_start_decodes_to_the_exact_argv() -> None:
    argv = nasty_argv()
    unit = render_unit(argv, version="0.1.0")
    command = decode_exec_start(unit_value(unit, "ExecStart"))
    assert command.argv == argv
    assert command.path == sys.executable
    assert unit_environment(unit) == {
        "PYTHONUNBUFFERED": "1",
        "PYTHONUTF8": "1",
        "SUFD_SERVICE_MANAGER": "systemd",
    }


HANDWRITTEN = r"""/bin/echo "a b" 'c d' "%%" "$$X" x"y z"w "\x41\101\"" '\'q' \s "tab\there" """


def test_decoder_follows_systemd_rules() -> None:
    """The decoder is independent of sufd's encoder: hand-written cases from the man pages."""
    cmd = decode_exec_start(HANDWRITTEN)
    assert cmd.argv == [
        "/bin/echo",
        "a b",
        "c d",
        "%",
        "$X",
        "xy zw",
        'AA"',
        "'q",
        " ",
        "tab\there",
    ]
    assert decode_exec_start('"/a$$b/%%c" x').path == "/a$$b/%c"
    bad = ('"/bin/echo', "/bin/echo $HOME", "/bin/echo ${HOME}", "/bin/echo %h", "-/x", r"a\ b")
    for line in bad:
        with pytest.raises(ValueError):
            decode_exec_start(line)


def test_decoder_agrees_with_systemd() -> None:
    """... and it decodes the hand-written line exactly as systemd's own parser does."""
    dump = _systemd_dump(f"[Service]\nExecStart={HANDWRITTEN}\n")
    (line,) = re.findall(r"-> ExecStart:\n\s+Command Line: (.*)\n", dump)
    parsed = decode_systemd_dump(line)
    assert [parsed[0]] + [a.replace("$$", "$") for a in parsed[1:]] == decode_exec_start(
        HANDWRITTEN
    ).argv


def _systemd_dump(unit_text: str) -> str:
    """What ``systemd --test --user`` parsed from ``unit_text`` (its dump of the unit)."""
    if not SYSTEMD.exists():
        pytest.skip(f"{SYSTEMD} is missing (Linux with the systemd package only)")
    root = Path(tempfile.mkdtemp(prefix="sufd-systemd-test-"))
    try:
        root.chmod(0o755)
        units = root / "units"
        units.mkdir(mode=0o755)
        (units / "sufd.service").write_text(unit_text)
        (units / "sufd.service").chmod(0o644)
        runtime = root / "runtime"
        runtime.mkdir(mode=0o700)
        prefix: list[str] = []
        if os.geteuid() == 0:  # "Don't run test mode as root."
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv to drop privileges")
            os.chown(runtime, NOBODY, NOBODY)
            prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(root),
            "XDG_RUNTIME_DIR": str(runtime),
            "SYSTEMD_UNIT_PATH": f"{units}:",
        }
        proc = subprocess.run(
            [*prefix, str(SYSTEMD), "--test", "--user", "--no-pager", "--unit=sufd.service"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(
        r"^\t-> Unit sufd\.service:\n(.*?)(?=^\t-> Unit |\Z)", proc.stdout, re.M | re.S
    )
    assert match, proc.stdout[:2000]
    return match.group(1)


def test_systemd_parses_exec_start_back_to_the_exact_argv() -> None:
    argv = nasty_argv()
    dump = _systemd_dump(render_unit(argv, version="0.1.0"))
    assert "Unit Load State: loaded" in dump
    lines = re.findall(r"-> ExecStart:\n\s+Command Line: (.*)\n", dump)
    assert len(lines) == 1, dump
    parsed = decode_systemd_dump(lines[0])
    # The dump is taken after specifiers (%%) but before $-substitution, which happens at
    # exec time on the arguments: $$ -> $ (systemd.service(5), "Command lines").
    executed = [parsed[0]] + [a.replace("$$", "$") for a in parsed[1:]]
    assert executed == argv
    assert re.findall(r"Environment: (\S+)", dump) == [
        "PYTHONUNBUFFERED=1",
        "PYTHONUTF8=1",
        "SUFD_SERVICE_MANAGER=systemd",
    ]
    assert "Type: notify" in dump or "Service Type: notify" in dump


# -- golden files ------------------------------------------------------------------------


def test_unit_matches_golden_file() -> None:
    assert render_unit(GOLDEN_ARGV, version="1.2.3") == (GOLDEN / "sufd.service").read_text()


def test_plist_matches_golden_file() -> None:
    text = render_plist(
        GOLDEN_MAC_ARGV, version="1.2.3", state_dir=GOLDEN_STATE, log_dir=GOLDEN_LOGS
    )
    assert text == (GOLDEN / "io.github.sufd.plist").read_text()


# -- unit semantics (service-design §9.4) ------------------------------------------------


def test_unit_semantics() -> None:
    unit = render_unit(GOLDEN_ARGV, version="1.2.3")
    s = sections(unit)
    assert set(s) == {"Unit", "Service", "Install"}
    service = s["Service"]
    assert s["Install"] == {"WantedBy": ["default.target"]}  # multi-user.target: not per-user
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert service["Restart"] == ["on-failure"]  # a clean `sufd stop` stays stopped
    assert service["RestartPreventExitStatus"] == ["78"]  # EX_CONFIG: no restart loop
    command = decode_exec_start(unit_value(unit, "ExecStart"))
    assert os.path.isabs(command.path)
    assert command.argv == GOLDEN_ARGV
    assert command.argv[1:5] == ["-m", "sufd", "run", "--foreground"]
    assert "--daemon" not in command.argv
    # Namespacing options are ignored or fatal in user units; the *Directory= options map
    # to the wrong places there (service-design §3.5).
    for forbidden in (
        "ProtectHome",
        "ProtectSystem",
        "PrivateTmp",
        "StateDirectory",
        "LogsDirectory",
        "RuntimeDirectory",
        "MemoryDenyWriteExecute",
    ):
        assert forbidden not in service, forbidden
    assert unit_environment(unit)["SUFD_SERVICE_MANAGER"] == "systemd"


def test_watchdog_is_fed_well_within_its_timeout() -> None:
    """The daemon sends WATCHDOG=1 on every heartbeat; systemd.service(5) asks for a ping
    at least every WatchdogSec/2. Pinging at a quarter or less leaves room for a slow tick."""
    watchdog_s = float(unit_value(render_unit(GOLDEN_ARGV, version="1"), "WatchdogSec"))
    assert watchdog_s > 0
    assert watchdog_s >= 4 * HEARTBEAT_S, (HEARTBEAT_S, watchdog_s)


# -- plist (service-design §9.5) ---------------------------------------------------------


def test_plist_keys_and_types(tmp_path: Path) -> None:
    weird = tmp_path / "A & B <c> 'd' \"e\" ü"
    argv = [sys.executable, *TAIL, str(weird / "config.toml")]
    state, logs = weird / "state", weird / "Logs"
    data = plistlib.loads(
        render_plist(argv, version="1.2.3", state_dir=state, log_dir=logs).encode()
    )
    expected_types = {
        "Label": str,
        "ProgramArguments": list,
        "RunAtLoad": bool,
        "KeepAlive": dict,
        "ThrottleInterval": int,
        "ExitTimeOut": int,
        "ProcessType": str,
        "LowPriorityIO": bool,
        "Nice": int,
        "WorkingDirectory": str,
        "EnvironmentVariables": dict,
        "StandardOutPath": str,
        "StandardErrorPath": str,
    }
    assert set(data) == set(expected_types)
    for key, typ in expected_types.items():
        assert type(data[key]) is typ, (key, data[key])
    assert data["Label"] == LABEL
    assert data["ProgramArguments"] == argv  # & < > ' " and non-ASCII survive
    assert all(isinstance(a, str) for a in data["ProgramArguments"])
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}  # not `true`: stop must stick
    assert data["ThrottleInterval"] == 10 and data["ExitTimeOut"] == 15
    assert data["ProcessType"] == "Background"
    assert data["LowPriorityIO"] is True
    assert data["Nice"] == 5
    assert data["WorkingDirectory"] == str(state)
    assert data["EnvironmentVariables"] == {
        "PYTHONUNBUFFERED": "1",
        "PYTHONUTF8": "1",
        "SUFD_SERVICE_MANAGER": "launchd",
    }
    for key in ("StandardOutPath", "StandardErrorPath"):
        path = Path(data[key])
        assert path.is_absolute() and path.parent == logs, (key, path)
    assert data["StandardOutPath"] != data["StandardErrorPath"]


# -- Homebrew formula (acceptance item 6) ------------------------------------------------


def _ruby_list(text: str) -> list[str]:
    """Split the inside of a Ruby ``[...]`` literal at top-level commas."""
    items, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            current += ch
            if ch == quote and not current.endswith("\\" + quote):
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        items.append(current.strip())
    return items


def formula_run_lists() -> list[list[str]]:
    text = FORMULA.read_text()
    service = re.search(r"^  service do\n(.*?)^  end\n", text, re.M | re.S)
    assert service, "the formula has no `service do ... end` block"
    lists = re.findall(r"\brun \[(.*?)\]\s*$", service.group(1), re.M | re.S)
    assert lists, "no `run [...]` in the service block"
    return [_ruby_list(body) for body in lists]


def test_homebrew_service_runs_the_plist_command_line() -> None:
    """Same module, subcommand and flags as ProgramArguments; interpreter from the formula's
    own virtualenv (opt_libexec, stable across upgrades); an absolute or ~ config path."""
    plist = plistlib.loads(
        render_plist(
            GOLDEN_MAC_ARGV, version="1", state_dir=GOLDEN_STATE, log_dir=GOLDEN_LOGS
        ).encode()
    )
    program = plist["ProgramArguments"]
    for run in formula_run_lists():
        assert len(run) == len(program), run
        assert run[0] == 'opt_libexec/"bin/python"', run[0]
        assert [s.strip('"') for s in run[1:-1]] == program[1:-1]
        assert all(re.fullmatch(r'"[^"#]*"', s) for s in run[1:-1]), run
        config = run[-1].strip('"')
        assert config.endswith("/sufd/config.toml") and config.startswith(("~/", "/")), config


def test_homebrew_service_mirrors_the_plist_policy() -> None:
    text = FORMULA.read_text()
    service = re.search(r"^  service do\n(.*?)^  end\n", text, re.M | re.S)
    assert service
    body = service.group(1)
    assert re.search(r"^\s+keep_alive successful_exit: false$", body, re.M)
    assert re.search(r"^\s+process_type :background$", body, re.M)
    assert re.search(r"^\s+log_path ", body, re.M) and re.search(r"^\s+error_log_path ", body, re.M)
    assert re.search(r'SUFD_SERVICE_MANAGER: "launchd"', body)
    assert "include Language::Python::Virtualenv" in text
    assert "virtualenv_install_with_resources" in text


def test_homebrew_formula_is_valid_ruby() -> None:
    """``ruby -c`` (``.ci/run`` installs ruby) accepts the formula."""
    proc = subprocess.run(["ruby", "-c", str(FORMULA)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
