"""The single CLI: `python -m core <command> ...`. Each command lives in the module that owns
its concept (functions `add_arguments(parser)` and `main(args) -> int`); modules load lazily so
`python -m core phantom` does not import torch's training stack."""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys

from core.commands import COMMANDS
from core.errors import SHOWN, UserError, environment_reason



def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):   # a name that is not UTF-8 prints as \xe9, never raises
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=SHOWN)
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    cmd_parser = argparse.ArgumentParser(prog=f"python -m core {argv[0]}",
                                         description=COMMANDS[argv[0]][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, MemoryError, sqlite3.DatabaseError) as exc:
        reason = environment_reason(exc)
        if reason is None:
            raise
        print(f"error: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if os.environ.get("XRAY_QUEUED") == "1":   # a queued job frees its slot: start the next
            _start_next()


def _start_next() -> None:
    from core.runs.queue import schedule

    try:
        schedule()
    except Exception as exc:  # noqa: BLE001 - the pages schedule too; never fail a job over it
        print(f"note: could not start the next queued job ({exc})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
