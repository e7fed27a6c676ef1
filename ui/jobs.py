"""Launching jobs from the dashboard through the queue (core.runs.queue), who started a run, listing
and deleting runs. A job is `python -m core <command>` in its own process; pages only read the
run directory it writes."""

from __future__ import annotations

import shutil

from core.errors import UserError
from core.runs import queue as jobqueue
from core.runs.store import ACTIVE_STATES, RunStore, list_runs, runs_root
from ui import identity


def run_command(store: RunStore) -> str:
    """The CLI command that made a run ("train-gan", "train-classifier", ...), or ""."""
    return store.header().command


def gan_runs() -> list[RunStore]:
    """GAN training runs, newest first."""
    return [r for r in list_runs() if run_command(r) == "train-gan"]


def active_runs() -> list[RunStore]:
    return [r for r in list_runs() if r.status().get("state") in ACTIVE_STATES]


def default_run(runs: list[RunStore]) -> RunStore | None:
    """The newest active run, else the newest run (runs come newest first)."""
    for r in runs:
        if r.is_active():
            return r
    return runs[0] if runs else None


def pick_run(runs: list[RunStore], chosen: str, label: str = "Run",
             follow: str | None = None) -> RunStore:
    """A selectbox over `runs` (newest first) whose choice lives in st.session_state[chosen], so
    other pages can set it and it survives reruns; with none chosen (or one deleted since), the
    newest active run, else the newest. `follow`: another page's choice (a session key) that
    becomes this one whenever it changes. The widget's key is chosen + "_pick"."""
    import streamlit as st

    ss, names, widget = st.session_state, [r.name for r in runs], f"{chosen}_pick"
    if follow:
        if ss.get(follow) in names and ss.get(follow) != ss.get(f"{chosen}_followed"):
            ss[chosen] = ss[follow]
        ss[f"{chosen}_followed"] = ss.get(follow)
    if ss.get(chosen) not in names:
        if ss.get(chosen):   # it was shown here: say so rather than quietly show another
            ss[f"{chosen}_gone"] = ss[chosen]
        ss[chosen] = default_run(runs).name
    if ss.get(f"{chosen}_gone"):
        st.warning(f"**{ss[f'{chosen}_gone']}** is no longer in the runs folder: it was deleted "
                   "(or moved) in another session. Showing the newest run instead.",
                   icon=":material/delete:")
    if ss.get(widget) != ss[chosen]:
        ss[widget] = ss[chosen]
    # Plain names: a state in the label ("· running") stayed stale in the browser after the run
    # paused or ended, since a keyed selectbox keeps the label it drew; the pages show it.
    st.selectbox(label, names, key=widget, on_change=_picked, args=(chosen, widget))
    return runs[names.index(ss[chosen])]


def _picked(chosen: str, widget: str) -> None:
    import streamlit as st

    st.session_state[chosen] = st.session_state[widget]
    st.session_state.pop(f"{chosen}_gone", None)


# How often a page looks at an active run. A refresh takes 0.05-0.2 s on the server plus the
# browser's redraw, so a 1.0 s timer updated a panel only 0.75-1 times a second on a busy
# 2-core machine.
REFRESH_S = 0.5


def watch(store: RunStore, body, every: float = REFRESH_S) -> None:
    """The one poller for any job's progress on a page: `body(status)` redrawn in place every
    `every` seconds while the run is active; the whole page redrawn once it ends, or leaves the
    queue (what the page shows around it changes then)."""
    import streamlit as st

    waiting_at_render = jobqueue.is_waiting(store.status())

    @st.fragment(run_every=every)
    def progress() -> None:
        status = store.status()
        if status.get("state") not in ACTIVE_STATES or jobqueue.is_waiting(status) != waiting_at_render:
            st.rerun(scope="app")
        body(status)

    progress()


def owner_note(store: RunStore) -> str | None:
    """Whose run this is when it is not this browser's ("another browser (3fa2c1d0)", "the
    command line"), for a confirmation before pausing or stopping it; None for one's own run."""
    note = identity.who(store.status().get("owner"))
    return None if note == "you" else note


def start(command: str, args: list[str], kind: str, header=None, request: str | None = None) -> RunStore:
    """Queue `python -m core <command> <args> --run-dir NEW` for this browser; it starts at once
    when a CPU or GPU slot is free (core.runs.queue). With a `header` (core.runs.header) the job
    starts from the configs it holds; with a `request` (start_key) a repeated click or an
    interrupted rerun returns the same run. Returns the new run's store."""
    return jobqueue.submit(command, args, kind, owner=identity.owner(), header=header,
                           request=request)


def start_key(name: str) -> tuple[str, str]:
    """(widget key, request id) for a start button: the key changes once a start went through,
    so a second click that the browser sent before it redrew the page lands on a button that no
    longer exists, and the request id makes a rerun that repeats the first click a no-op."""
    import uuid

    import streamlit as st

    request = st.session_state.setdefault(f"_{name}_request", uuid.uuid4().hex)
    return f"{name}_{request[:8]}", request


def started(name: str) -> None:
    """The start behind `name` went through: the next click is a new start."""
    import streamlit as st

    st.session_state.pop(f"_{name}_request", None)


def data_overrides(cfg) -> dict:
    """The data config fields a classifier job or an ablation takes from the Data page's choice
    (a DataConfig): the rest keep the job's defaults (its patient split among them)."""
    return {"source": cfg.source, "size": cfg.size, "channels": cfg.channels,
            "phantom_per_class": cfg.phantom_per_class,
            "keep_extra_classes": cfg.keep_extra_classes, "seed": cfg.seed}


def gan_generators() -> dict[str, tuple[str | None, int | None, str | None]]:
    """{GAN run name: (the class it was trained on or None, its image size, its loss)} of the
    runs that have a readable generator; others are not offered."""
    from core.checkpoint import read_meta
    from core.gan.runs import run_checkpoint, run_class

    out = {}
    for r in gan_runs():
        try:
            meta = read_meta(run_checkpoint(r.path))
        except UserError:
            continue
        gen = meta.get("generator") if isinstance(meta.get("generator"), dict) else {}
        out[r.name] = run_class(meta), gen.get("size"), meta.get("loss")
    return out


def queue_line(store: RunStore) -> str | None:
    """"Queued: 2nd in line, ..." for a waiting run, else None."""
    where = jobqueue.position(store)
    if where is None:
        return None
    ahead = where["ahead"]
    line = (f"Queued, number {where['position']} in line: waiting for one of the "
            f"{where['running']} running job(s) to finish"
            + (f" and {ahead} queued before it" if ahead else ""))
    eta = where["start_in_s"]
    if eta is not None:
        line += f"; expected to start in about {format_duration(eta)}"
    return line + "."


def machine_line(idle_s: float, what: str) -> str:
    """What this machine is doing now, and what that means for a job that takes `idle_s` on it
    when idle: its cores, the load average, the app's own running jobs. A job gets about
    cores / (runnable processes) of a core each, so a load of 6 on 2 cores runs it about 3x
    slower; said as a range, since the load moves."""
    import os

    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    running = sum(1 for r in active_runs() if r.status().get("state") == "running")
    busy = f", {running} of them this app's job(s)" if running else ""
    line = (f"This machine: {cores} core(s), load average {load:.1f} (processes wanting a core"
            f"{busy}). {what} takes about {format_duration(idle_s)} here when it is idle")
    slowdown = (load + 1) / cores   # the job itself joins the queue for a core
    if slowdown > 1.5:
        line += f"; now expect about {format_duration(idle_s * slowdown)} or more"
    return line + "."


def format_duration(seconds: float) -> str:
    """"40 s", "3 min", "1 h 5 min"."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def delete_run(store: RunStore) -> None:
    """Delete a finished, stopped or failed run directory; refuse an active one."""
    if store.is_active():
        raise UserError(f"{store.name} is still {store.status().get('state')}; stop it before "
                        "deleting it.")
    root, path = runs_root().resolve(), store.path.resolve()
    if root not in path.parents:
        raise UserError(f"{store.path} is not inside the runs folder {root}; not deleting it.")
    store.close()
    shutil.rmtree(path)


def gan_presets() -> dict[str, dict]:
    """core.gan.runs.PRESETS flattened for the form: {"cpu-tiny": {"size", "steps",
    "batch_size", "lr_critic", ...}, ...} (train fields, plus the data size)."""
    from core.gan.runs import PRESETS

    return {name: {**p.get("train", {}), **({"size": p["data"]["size"]} if "size" in p.get("data", {}) else {})}
            for name, p in PRESETS.items()}


def start_gan(preset: str, overrides: dict, kind: str, request: str | None = None) -> RunStore:
    """Queue a GAN run built as the command line builds it (core.gan.job.build_configs: the
    preset, then `overrides`); its config.json holds the configs before it starts."""
    from core.gan import job as gan_train

    return start("train-gan", [], kind, request=request,
                 header=gan_train.header(gan_train.build_configs(preset, overrides)))


def gan_overrides(data, loss: str, size: int, steps: int, batch_size: int,
                  live: dict | None = None, klass: str | None = None, log_every: int | None = None,
                  sample_every: int | None = None, train_split_only: bool = False,
                  holdout: float | None = None) -> dict:
    """The Train GAN form's choices over its preset, for a DataConfig from the Data page."""
    data_fields = {"source": data.source, "size": size, "seed": data.seed}
    if data.source.startswith("phantom"):
        data_fields["phantom_per_class"] = data.phantom_per_class
    if data.keep_extra_classes:
        data_fields["keep_extra_classes"] = True
    if klass:
        data_fields["classes"] = (klass,)
    if train_split_only:  # train-classifier's default patient split (core.data.splits.PatientSplit)
        data_fields["split"] = "train"
    train = {"loss": loss, "steps": steps, "batch_size": batch_size, **(live or {})}
    if log_every:
        train["log_every"] = log_every
    if sample_every:
        train["sample_every"] = sample_every
    if holdout is not None:
        train["holdout"] = holdout
    return {"data": data_fields, "train": train}
