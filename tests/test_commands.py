"""core.commands: every command in the table names a module that imports and has the two
functions `python -m core` calls, whose parser builds and whose --help works."""

from __future__ import annotations

import argparse
import importlib

import pytest

from core.commands import COMMANDS


def test_the_table_is_plain_data():
    for name, (module, help_text) in COMMANDS.items():
        assert name == name.strip().lower() and " " not in name
        assert module.startswith("core.") and help_text.strip()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_imports_and_parses(name, capsys):
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(getattr(module, "add_arguments", None)), f"{name}: no add_arguments"
    assert callable(getattr(module, "main", None)), f"{name}: no main"
    parser = argparse.ArgumentParser(prog=f"python -m core {name}")
    module.add_arguments(parser)
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["--help"])
    assert done.value.code == 0 and f"python -m core {name}" in capsys.readouterr().out
