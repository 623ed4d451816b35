"""The CLI's one error path: a user's mistake is one line on stderr and exit code 2."""

import subprocess
import sys

import pytest

from edgewise.cli.app import app, run_app
from edgewise.errors import DataError


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgewise", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("data", "models", "demo"):
        assert command in result.stdout


def test_unknown_command_is_one_line_exit_2():
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_user_error_becomes_one_line_exit_2(capsys):
    @app.command("explode-for-test", hidden=True)
    def explode() -> None:
        raise DataError("bad.idx: expected magic 2051, got 0x1f8b")

    with pytest.raises(SystemExit) as info:
        run_app(["explode-for-test"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.idx" in err[0] and err[0].startswith("error:")
