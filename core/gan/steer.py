"""`python -m core control RUN`: steer a running job from a terminal, as the pages' sliders and
buttons do (live hyperparameters as core.gan.live defines them, pause, resume, stop, a sample
grid now). It writes the run's control.json; the job applies it at its next step."""

from __future__ import annotations

import json

from core.errors import UserError
from core.gan import live
from core.runs.store import RunStore


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="the run directory of a running job")
    live.add_flags(parser)
    parser.add_argument("--pause", action="store_true")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop", action="store_true")
    parser.add_argument("--sample-now", action="store_true", help="write a sample grid at the next step")


def main(args) -> int:
    store = RunStore(args.run_dir)
    changes = {k: getattr(args, k) for k in live.NAMES}
    for key, value in changes.items():
        if value is not None:
            try:
                live.check(key, value)   # the job checks again; this says it where it was typed
            except ValueError as exc:
                raise UserError(str(exc)) from None
    if args.pause or args.resume:
        changes["paused"] = bool(args.pause)
    if args.stop:
        changes["stop"] = True
    changes["sample_now"] = args.sample_now
    control = store.send_control(**changes)
    print(json.dumps(control))
    return 0
