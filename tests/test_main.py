"""The single CLI entry: help lists every command; a user error is one line, not a traceback."""

import subprocess
import sys

from core.__main__ import main
from core.commands import COMMANDS


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_fails():
    assert main(["no-such-command"]) == 2


def test_user_error_is_a_message_not_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "core", "control", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "run directory not found" in proc.stderr and "Traceback" not in proc.stderr
