"""The augmentation ablation (`ablation`): the same classifier trained on real images only, real +
Augmentor copies, and real + samples of WGAN-GP / GAN / WGAN-clip runs, at several fractions of
the training patients with the same seeds and split; one table of test accuracy, macro-F1 and
COVID-19 sensitivity, overall and by source."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from core.runs import header as runheader
from core.classify.model import ClassifierConfig
from core.classify.config import ClassifierTrainConfig
from core.classify.synthetic import synthetic_fraction
from core.classify.train import train_classifier
from core.config import add_arguments as add_config_arguments
from core.config import given, ranged, refuse_beside, save_json, to_dict
from core.errors import UserError

# Arm name -> the GAN loss whose runs feed it (None: no generated images).
# arm -> the loss of the GAN runs whose samples it adds (None: no samples). A GAN arm is named
# after its loss; "wgan-clip", the WGAN arm's first name, is still read (flags, old tables).
ARMS = {"real": None, "augmentor": None, "wgan-gp": "wgan-gp", "gan": "gan", "wgan": "wgan"}
ALIASES = {"wgan-clip": "wgan"}
METRICS = ("accuracy", "macro_f1", "covid_sensitivity")


@dataclass
class AblationConfig:
    """What the ablation crosses: training-patient fractions x arms x seeds, and the GAN runs
    that feed the generated arms ("[ARM:][CLASS=]RUN_DIR", see parse_runs)."""

    fractions: tuple[float, ...] = ranged(1e-6, 1.0, (0.25, 1.0))
    seeds: tuple[int, ...] = ranged(0, 2**31 - 1, (0,))
    arms: tuple[str, ...] = tuple(ARMS)
    runs: tuple[str, ...] = ()


def header(data_config, model_config, train_config, ablation: AblationConfig,
           augment_config=None) -> runheader.RunHeader:
    """config.json of an ablation: the classifier's configs, and what it crosses."""
    return runheader.new("ablation", {
        "data": to_dict(data_config), "model": to_dict(model_config), "train": to_dict(train_config),
        "augment": to_dict(augment_config) if augment_config else None,
        "ablation": to_dict(ablation)})


def parse_runs(specs: list[str]) -> dict[str, list[str]]:
    """`[ARM:][CLASS=]RUN_DIR` specs -> {arm: ["[CLASS=]RUN_DIR", ...]}. Without ARM the arm comes
    from the run's generator checkpoint ("loss": gan / wgan / wgan-gp)."""
    from core.checkpoint import read_meta
    from core.gan.runs import run_checkpoint

    out: dict[str, list[str]] = {}
    for spec in specs:
        head, sep, rest = spec.partition(":")
        arm = ALIASES.get(head, head) if sep and ALIASES.get(head, head) in ARMS else None
        body = rest if arm else spec
        if arm is None:
            run = body.split("=", 1)[-1]
            loss = read_meta(run_checkpoint(run)).get("loss")
            arm = next((a for a, l in ARMS.items() if l == loss), None)
            if arm is None:
                raise UserError(f"cannot tell which arm GAN run {run} belongs to (its loss is "
                                f"{loss!r}); write it as wgan-gp:{spec}, gan:{spec} or wgan:{spec}")
        if ARMS[arm] is None:
            raise UserError(f"the {arm} arm takes no GAN runs ({spec})")
        out.setdefault(arm, []).append(body)
    return out


def _rows(result: dict, arm: str, fraction: float, seed: int, split: str, summary: dict) -> list[dict]:
    rows = []
    for source, r in [("all", result)] + sorted((result.get("by_source") or {}).items()):
        rows.append({"arm": arm, "fraction": fraction, "seed": seed, "split": split,
                     "source": source, "n": r["n"],
                     **{m: r.get(m) for m in METRICS},
                     "n_train": summary["training_data"]["n_train_real"],
                     "n_augmented": summary["training_data"]["n_augmented"],
                     "n_synthetic": summary["training_data"]["n_synthetic"],
                     "best_epoch": summary["best_epoch"], "seconds": summary["seconds"]})
    return rows


def run_ablation(data_config, model_config: ClassifierConfig, train_config: ClassifierTrainConfig,
                 out_dir: str | Path, fractions=(0.25, 1.0), seeds=(0,),
                 runs: dict[str, list[str]] | None = None, arms=tuple(ARMS),
                 synthetic_per_class: int = 200, augment_config=None, progress=None,
                 download: bool = True) -> dict:
    """Train every arm x fraction x seed into out_dir/<arm>-f<fraction>-s<seed>/ and collect the
    held-out test metrics (val when there is no test split). The patient split is the same for
    all (train_config.split_seed); a fraction keeps the same patients in every arm. An arm of
    generated images without runs is skipped and listed in "skipped". Returns {"rows",
    "skipped"} and writes ablation.csv, ablation.json and ablation.md in out_dir."""
    from core.data.augment import AugmentConfig
    from core.data.sources import load_dataset
    from core.runs.store import RunStore

    runs = runs or {}
    arms = tuple(ALIASES.get(a, a) for a in arms)   # an old config.json may name "wgan-clip"
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise UserError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # `download`: the spec is the user's --data, not one read from config.json
    dataset = load_dataset(data_config, progress, download=download)
    rows, skipped = [], {}
    # A GAN run feeds the fraction whose training patients it was trained on (another source's
    # run feeds every fraction); a run that saw held-out patients stops the ablation here,
    # before anything trains.
    full = replace(train_config, train_fraction=1.0)
    run_fraction = {spec: synthetic_fraction(spec, data_config, full)
                    for arm in arms for spec in runs.get(arm, ())}
    todo = []
    for fraction in fractions:
        for arm in arms:
            if ARMS[arm] is None:
                todo += [(fraction, seed, arm, ()) for seed in seeds]
                continue
            specs = tuple(s for s in runs.get(arm, ()) if run_fraction[s] in (None, fraction))
            if specs:
                todo += [(fraction, seed, arm, specs) for seed in seeds]
            elif runs.get(arm):
                flag = f" --data-split-train-fraction {fraction:g}" if fraction < 1 else ""
                skipped[f"{arm} at {fraction:g}"] = (
                    f"none of its runs was trained on this fraction's patients (train one with "
                    f"--data-split train{flag})")
            else:
                skipped[arm] = f"no {ARMS[arm]} GAN runs given (--runs {arm}:CLASS=RUN_DIR)"
    for i, (fraction, seed, arm, specs) in enumerate(todo):
        tc = replace(train_config, train_fraction=float(fraction), seed=int(seed),
                     synthetic_runs=specs,
                     synthetic_per_class=synthetic_per_class if ARMS[arm] else 0)
        augment = None
        if arm == "augmentor":
            tc = replace(tc, balance="augment")
            augment = augment_config or AugmentConfig()
        name = f"{arm}-f{fraction:g}-s{seed}"
        if progress:
            progress(i / len(todo), f"training {name} ({i + 1}/{len(todo)})")
        store = RunStore(out_dir / name, create=True)
        summary = train_classifier(store, data_config, model_config, tc, augment, dataset=dataset)
        if summary.get("state") != "finished":
            raise UserError(f"ablation run {name} did not finish: {summary.get('reason')}")
        evaluation = store.evaluation()
        if not evaluation:
            raise UserError(f"ablation run {name} finished without an evaluation (eval.json)")
        split = "test" if "test" in evaluation else "val"
        rows += _rows(evaluation[split], arm, float(fraction), int(seed), split, summary)
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "ablation.csv", index=False)
    save_json(out_dir / "ablation.json", {"rows": rows, "skipped": skipped,
                                          "data": to_dict(data_config), "model": to_dict(model_config),
                                          "train": to_dict(train_config), "runs": runs,
                                          "synthetic_per_class": synthetic_per_class})
    (out_dir / "ablation.md").write_text(markdown(table, skipped))
    return {"rows": rows, "skipped": skipped, "out_dir": str(out_dir)}


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (fraction, arm, source) of an ablation table (one row per run and source):
    "seeds" (runs averaged), "n" (test images), and the mean and the spread over seeds
    ("<metric>", "<metric>_sd", population sd; NaN with one seed) of every metric the table has.
    Ordered by fraction, then arm in ARMS order, then "all" before the sources."""
    table = table.copy()
    table["arm"] = table["arm"].replace(ALIASES)   # tables written before the rename
    if "source" not in table:
        table["source"] = "all"
    metrics = [m for m in METRICS if m in table]
    order = {a: i for i, a in enumerate(ARMS)}
    rows = []
    for (fraction, arm, source), g in table.groupby(["fraction", "arm", "source"], sort=False):
        row = {"fraction": fraction, "arm": arm, "source": source, "seeds": len(g),
               "n": int(g["n"].iloc[0]) if "n" in g else None}
        for m in metrics:
            v = pd.to_numeric(g[m], errors="coerce").dropna()
            row[m] = v.mean() if len(v) else float("nan")
            row[f"{m}_sd"] = v.std(ddof=0) if len(v) > 1 else float("nan")
        rows.append(row)
    rows.sort(key=lambda r: (r["fraction"], order.get(r["arm"], 99), r["source"] != "all",
                             r["source"]))
    columns = ["fraction", "arm", "source", "seeds", "n"] + [
        c for m in metrics for c in (m, f"{m}_sd")]
    return pd.DataFrame(rows, columns=columns)  # the columns even when there are no rows


def markdown(table: pd.DataFrame, skipped: dict[str, str] | None = None) -> str:
    """Mean (and spread over seeds) of each metric per arm, fraction and source, as markdown."""
    def pct(row, metric: str) -> str:
        mean, sd = row.get(metric), row.get(f"{metric}_sd")
        if mean is None or pd.isna(mean):
            return "n/a"
        return f"{100 * mean:.1f}%" + ("" if pd.isna(sd) else f" ± {100 * sd:.1f}")

    lines = []
    if not table.empty:
        lines += ["| arm | train fraction | source | n test | accuracy | macro-F1 | COVID-19 sensitivity |",
                  "|---|---:|---|---:|---:|---:|---:|"]
        for row in summarise(table).to_dict("records"):
            lines.append(f"| {row['arm']} | {row['fraction']:g} | {row['source']} | {row['n']} | "
                         f"{pct(row, 'accuracy')} | {pct(row, 'macro_f1')} | "
                         f"{pct(row, 'covid_sensitivity')} |")
    for arm, why in (skipped or {}).items():
        lines.append(f"\n{arm}: skipped, {why}.")
    return "\n".join(lines) + "\n"


# ---- `python -m core ablation` ------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.data.config import DataConfig

    parser.add_argument("--data", help="data source")
    parser.add_argument("--from-config", action="store_true",
                        help="start from the configs already in --run-dir's config.json (how the "
                             "dashboard queues an ablation)")
    parser.add_argument("--fractions", help="training-patient fractions (default 0.25,1.0)")
    parser.add_argument("--seeds", help="training seeds, e.g. 0,1,2 (default 0)")
    parser.add_argument("--arms", help=f"arms to run (default {','.join(ARMS)})")
    parser.add_argument("--runs", nargs="*", default=[], metavar="[ARM:][CLASS=]RUN_DIR",
                        help="GAN runs for the generated arms (wgan-gp, gan, wgan)")
    parser.add_argument("--augment", metavar="CONFIG.json", help="Augmentor settings for that arm")
    # --synthetic-per-class (generated images per GAN run's class) defaults to 200 here.
    parser.add_argument("--out", "--run-dir", dest="out",
                        help="output folder, a run directory (default: a new one under runs/)")
    add_config_arguments(parser, ClassifierConfig)
    add_config_arguments(parser, ClassifierTrainConfig)
    add_config_arguments(parser, DataConfig, prefix="data_")


def _from_flags(args: argparse.Namespace):
    from core.classify.train import _augment_from_arg, build_configs
    from core.data.config import DataConfig

    default = AblationConfig()
    try:
        fractions = tuple(float(x) for x in args.fractions.split(",") if x) \
            if args.fractions is not None else default.fractions
        seeds = tuple(int(x) for x in args.seeds.split(",") if x) \
            if args.seeds is not None else default.seeds
    except ValueError:
        raise UserError("--fractions and --seeds take comma-separated numbers") from None
    arms = tuple(ALIASES.get(a.strip(), a.strip()) for a in args.arms.split(",") if a.strip()) \
        if args.arms is not None else default.arms
    # The classifier's own defaults, not a preset; the data at the model's size.
    data = {**given(args, DataConfig, "data_"), "source": args.data}
    data.pop("size", None)
    data_config, model_config, train_config = build_configs(None, {
        "data": data, "model": given(args, ClassifierConfig),
        "train": given(args, ClassifierTrainConfig)})
    return (data_config, model_config, train_config, _augment_from_arg(args.augment),
            AblationConfig(fractions, seeds, arms, tuple(args.runs)))


def _from_config(args: argparse.Namespace, store):
    from core.classify.train import saved_configs
    from core.config import checked

    refuse_beside(args, "--from-config", allowed=("out",))
    try:
        return (*saved_configs(store.header()),
                checked(AblationConfig, store.header().section("ablation")))
    except ValueError as exc:
        raise UserError(f"{store.path}: cannot start from its config.json: {exc}") from None


def main(args: argparse.Namespace) -> int:
    from core.errors import environment_reason
    from core.runs.store import RunStore, new_run_dir

    if args.from_config:
        if not args.out:
            raise UserError("--from-config starts from --run-dir's config.json; give --run-dir")
        store = RunStore(args.out)
        store.refuse_links()
        data_config, model_config, train_config, augment, abl = _from_config(args, store)
    else:
        if not args.data:
            raise UserError("give --data (or --from-config with a run directory)")
        data_config, model_config, train_config, augment, abl = _from_flags(args)
        # The folder is a run directory like any other: the pages and the queue follow its
        # status (one "step" per percent of the sub-runs done).
        store = RunStore(Path(args.out) if args.out else new_run_dir("ablation"), create=True)
    out = store.path
    store.write_header(header(data_config, model_config, train_config, abl, augment))
    store.set_status("running", step=0, total_steps=100, phase="loading data")

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", flush=True)
        store.set_status("running", step=int(100 * fraction), total_steps=100, phase=message)

    try:
        result = run_ablation(data_config, model_config, train_config, out, abl.fractions,
                              abl.seeds, parse_runs(list(abl.runs)), abl.arms,
                              train_config.synthetic_per_class or 200, augment, progress,
                              download=not args.from_config)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, UserError) else \
            environment_reason(exc, str(out)) or f"{type(exc).__name__}: {exc}"
        store.set_status("failed" if not isinstance(exc, KeyboardInterrupt) else "stopped",
                         reason=reason)
        raise
    store.set_status("finished", step=100, total_steps=100, phase="done")
    print((Path(result["out_dir"]) / "ablation.md").read_text())
    return 0
