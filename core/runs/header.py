"""What a run directory's config.json says: one fixed layout for every job, typed readers, and
the one function that reads the layouts of older runs.

    {"command": "train-gan", "version": 2,
     "configs": {"data": {...}, "generator": {...}, "critic": {...}, "train": {...}},
     "info": {"classes": [...], "world_size": 1}}

`configs` holds the dataclass configs the job ran with (as core.config.to_dict writes them),
`info` what the job found out while starting (the classes it loaded, its processes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

VERSION = 2
# A job's configs, by command; anything else a job keeps goes under "info".
SECTIONS = {"train-gan": ("data", "generator", "critic", "train"),
            "train-classifier": ("data", "model", "train", "augment"),
            "ablation": ("data", "model", "train", "augment", "ablation")}


@dataclass(frozen=True)
class RunHeader:
    command: str = ""               # the `python -m core` command that made the run; "" unknown
    version: int = VERSION
    configs: dict = field(default_factory=dict)   # section -> config dict (may be {} or None)
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"command": self.command, "version": self.version, "configs": self.configs,
                "info": self.info}

    def section(self, name: str) -> dict:
        """One config as a dict ({} when missing or not an object)."""
        value = self.configs.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def started(self) -> bool:
        """Whether a GAN or classifier job itself wrote this (it adds "info" once it has loaded
        its data); the dashboard writes the configs alone when it queues a run. Older runs'
        jobs wrote all."""
        return bool(self.info) or (self.version < VERSION and bool(self.configs))

    @property
    def loss(self) -> str | None:
        """A GAN run's loss (gan, wgan, wgan-gp) as its train config says, else None."""
        loss = self.section("train").get("loss")
        return loss if isinstance(loss, str) else None

    @property
    def classes(self) -> list[str]:
        """The classes the run trained on: those it loaded, else those its data config asked
        for ([] when it does not say: every class of its data)."""
        for classes in (self.info.get("classes"), self.section("data").get("classes")):
            if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
                return list(classes)
        return []

    @property
    def data_source(self) -> str | None:
        source = self.section("data").get("source")
        return source if isinstance(source, str) else None


def new(command: str, configs: dict, **info) -> RunHeader:
    return RunHeader(command=command, configs=dict(configs), info=info)


def read(raw: dict, launched: list | None = None, name: str = "") -> RunHeader:
    """The header of a config.json as read (`raw`, {} when missing or unreadable), in every
    layout runs have had: the current one; train-gan's {"kind": "gan", "data", "generator",
    "critic", "train", "classes", "world_size"} and train-classifier's and ablation's
    {"command", "data", "model", ...} of version 1. `launched` is the argv the app queued the
    run with (status.json "command") and `name` the run's folder name: for a run whose job has
    not written its config yet, they say what it is (pages name GAN runs ...-gan-<loss>-...)."""
    raw = raw if isinstance(raw, dict) else {}
    command = raw.get("command") if isinstance(raw.get("command"), str) else ""
    if isinstance(raw.get("configs"), dict):
        version = raw.get("version")
        info = raw.get("info")
        return RunHeader(command=command or _launched(launched, name),
                         version=version if isinstance(version, int) else VERSION,
                         configs=raw["configs"], info=info if isinstance(info, dict) else {})
    if not command:
        kind = raw.get("kind")
        command = {"gan": "train-gan", "classifier": "train-classifier"}.get(kind, "") \
            if isinstance(kind, str) else ""
    command = command or _launched(launched, name)
    sections = SECTIONS.get(command, ("data", "generator", "critic", "model", "train", "augment"))
    configs = {k: raw[k] for k in sections if k in raw}
    info = {k: v for k, v in raw.items() if k not in configs and k not in ("command", "kind")}
    if command == "ablation":   # version 1 kept its own settings at the top
        configs["ablation"] = {k: info.pop(k) for k in ("fractions", "seeds", "arms") if k in info}
    return RunHeader(command=command, version=1 if raw else VERSION, configs=configs, info=info)


def _launched(launched: list | None, name: str) -> str:
    if isinstance(launched, list) and launched and isinstance(launched[0], str):
        return launched[0]
    return "train-gan" if "-gan-" in name else ""
