"""Figure builders for the pages, pure functions of data frames: Plotly for class counts and run
comparison; Vega-Lite specs for the live training panel, which must update in place every second
(see training_panels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.gan import live

# (metric, panel title) of the live panel, in reading order (2 rows x 3 columns). The last
# panel draws both held-out check metrics (HELDOUT_LINES); images/s is in the progress line.
# Titles of at most 14 characters in 13 px type: at 1024 px with the sidebar open a chart is
# about 125 px wide, and "Wasserstein estimate" was cut to "Wasserstei…", "Gradient pen…".
TRAINING_PANELS = [
    ("loss/critic", "Critic loss"),
    ("loss/gen", "Generator loss"),
    ("wgan/w_estimate", "W estimate"),
    ("wgan/grad_norm_mean", "‖∇D‖, target 1"),
    ("wgan/gp", "Penalty (GP)"),
    ("heldout/w_heldout", "Held-out check"),
]
TITLE_PX = 13
# The held-out check's lines (core.gan.job._HeldOutCheck): metric, legend label, colour. Short
# labels: two side by side must fit under a 125 px chart ("held-out images" was cut).
HELDOUT_LINES = [("heldout/w_train", "seen", "#4c78a8"),
                 ("heldout/w_heldout", "unseen", "#f58518")]
_LINE = "#4c78a8"
_MARK = "#e45756"
LABEL_LINES, LABEL_LINE_PX = 4, 13  # control-change labels: lines, and their spacing


def _layout(fig: go.Figure, height: int) -> go.Figure:
    # uirevision keeps a user's zoom when a rerun redraws the same figure.
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=False,
                      uirevision="keep", template="plotly_white")
    return fig


def class_counts_html(counts: dict[str, int], title: str = "Images per class") -> str:
    """A horizontal bar per class with its count, as plain HTML. The Data page's first chart:
    measured in Chromium (bench/page_render.py), loading a charting bundle for three bars cost
    the page's first render 0.3 s (Vega-Lite) to 0.8 s (Plotly)."""
    import html

    top = max(counts.values(), default=0) or 1
    # Name and count above a full-width bar: side by side, a narrow column (1024 px) left the
    # bar no room.
    rows = "".join(
        f'<div style="margin:0 0 0.6rem 0"><div style="display:flex;justify-content:space-between;'
        f'font-size:0.875rem"><span>{html.escape(str(k))}</span><span>{v:,}</span></div>'
        f'<div style="height:0.9rem;width:{100 * v / top:.1f}%;min-width:2px;'
        f'background:{_LINE}"></div></div>'
        for k, v in counts.items())
    return (f'<div role="figure" aria-label="{html.escape(title)}"><div style="font-weight:600;'
            f'margin-bottom:0.5rem">{html.escape(title)}</div>{rows}</div>')


def balance_counts(before: dict[str, int], after: dict[str, int]) -> dict:
    """Grouped bars, original and after balancing, per class (Vega-Lite, as class_counts)."""
    values = [{"class": k, "images": int(d.get(k, 0)), "set": name}
              for name, d in (("original", before), ("after balancing", after)) for k in after]
    return {"title": "Before and after balancing", "height": 240, "data": {"values": values},
            "mark": "bar",
            "encoding": {"x": {"field": "class", "type": "nominal", "sort": None, "title": None,
                               "axis": {"labelAngle": 0}},
                         "xOffset": {"field": "set", "sort": ["original", "after balancing"]},
                         "y": {"field": "images", "type": "quantitative"},
                         "color": {"field": "set", "sort": ["original", "after balancing"],
                                   "scale": {"range": [_LINE, "#f58518"]},
                                   "legend": {"orient": "bottom", "title": None}}}}


def _who(recorded: str, me: str | None) -> str:
    if recorded == me:
        return "you"
    if recorded.startswith("browser "):
        return recorded.split(" ", 1)[1][:6]       # a short tag per browser, as on the Runs page
    return "CLI" if recorded == "command line" else recorded[:12]


def _change_label(payload: dict, me: str | None = None) -> str:
    """"λ=5 (you)": the values a control change set, and who set them (events from before the
    job recorded who have no name)."""
    names = {s.name: s.marker for s in live.SPECS}
    parts = [f"{names.get(k, k)}={v:g}" if isinstance(v, float) else f"{names.get(k, k)}={v}"
             for k, v in payload.items() if k not in ("seq", "sample_now", "by")]
    by = payload.get("by") if isinstance(payload.get("by"), dict) else {}
    who = sorted({_who(str(v), me) for v in by.values()})
    return (", ".join(parts) or "control") + (f" ({', '.join(who)})" if who else "")


def _field(metric: str) -> str:
    # Vega-Lite reads '.' and '[' in field names as paths; keep names plain.
    return metric.replace("/", "_")


def training_panels(wide: pd.DataFrame, events: pd.DataFrame | None = None,
                    me: str | None = None) -> list[dict]:
    """The live charts as Vega-Lite specs (for st.vega_lite_chart), one per TRAINING_PANELS
    metric, from `wide` (index step, one column per metric): a dashed target line at 1 and a
    +-1 std band on the gradient norm, and a dotted red rule on every panel at each control change
    in `events`, labelled on the first panel with who made it (`me`: this browser, "you").

    Vega-Lite, not Plotly, for these: Streamlit re-mounts a Plotly chart whenever its data change
    (its element id hashes the figure), which blanks it for a frame at each refresh; a Vega-Lite
    chart whose spec stays the same takes new data in place. So the spec here never depends on
    the data, which travels in named datasets. Plain dicts, not Altair: building and validating
    six Altair charts took longer than the one-second refresh on a busy 2-core machine."""
    data = pd.DataFrame({"step": wide.index.to_numpy() if len(wide) else []})
    for m in [m for m, _ in TRAINING_PANELS] + ["wgan/grad_norm_std"]:
        data[_field(m)] = wide[m].to_numpy() if m in wide else float("nan")
    data["gn_lo"] = data["wgan_grad_norm_mean"] - data["wgan_grad_norm_std"]
    data["gn_hi"] = data["wgan_grad_norm_mean"] + data["wgan_grad_norm_std"]
    changes = pd.DataFrame({"step": events["step"].astype(int).to_numpy(),
                            "change": [_change_label(p, me) for p in events["payload"]]}) \
        if events is not None and len(events) else pd.DataFrame({"step": [], "change": []})
    # Labels for the newest LABEL_LINES changes only, each a line below the one before: changes a
    # few steps apart (a slider moved twice) printed on top of each other, and eleven were
    # unreadable. Older changes keep their rule and tooltip.
    n = len(changes)
    changes["label"] = [c if i >= n - LABEL_LINES else "" for i, c in enumerate(changes["change"])]
    changes["label_y"] = np.maximum(np.arange(n) - max(n - LABEL_LINES, 0), 0) * LABEL_LINE_PX
    # A label in the right part of the chart goes left of its rule, or the plot edge cuts it.
    last = max([changes["step"].max() if n else 0, data["step"].max() if len(data) else 0, 1])
    changes["left_of_rule"] = changes["step"] > 0.6 * last

    # labelFlush: the last step label ("1,500") was clipped at the chart's right edge.
    x = {"field": "step", "type": "quantitative", "title": None,
         "axis": {"tickCount": 5, "labelFlush": True}}
    # Named, so the browser test can tell these rules from the axis grid (also rules).
    rule = {"name": "control_changes", "data": {"name": "changes"},
            "mark": {"type": "rule", "color": _MARK, "strokeDash": [3, 3], "strokeWidth": 1.5},
            "encoding": {"x": x, "tooltip": [{"field": "step", "type": "quantitative"},
                                             {"field": "change", "type": "nominal"}]}}
    specs = []
    heldout = _heldout_long(wide)
    for k, (metric, title) in enumerate(TRAINING_PANELS):
        y = {"field": _field(metric), "type": "quantitative", "title": None, "scale": {"zero": False}}
        layers = [{"data": {"name": "metrics"}, "mark": {"type": "line", "color": _LINE, "strokeWidth": 1.6},
                   "encoding": {"x": x, "y": y}}, rule]
        if metric == "heldout/w_heldout":
            layers[0] = _heldout_layer(x)
        if metric == "wgan/grad_norm_mean":
            layers.insert(0, {"data": {"name": "metrics"}, "mark": {"type": "area", "opacity": 0.18, "color": _LINE},
                              "encoding": {"x": x, "y": {"field": "gn_lo", "type": "quantitative"},
                                           "y2": {"field": "gn_hi"}}})
            layers.append({"data": {"values": [{"target": 1.0}]},
                           "mark": {"type": "rule", "color": "#54a24b", "strokeDash": [6, 4]},
                           "encoding": {"y": {"field": "target", "type": "quantitative"}}})
        if k == 0:  # labels beside their rules, clipped to the plot (never over the y axis)
            for left in (False, True):
                layers.append({
                    "data": {"name": "changes"},
                    "transform": [{"filter": f"{'' if left else '!'}datum.left_of_rule"}],
                    "mark": {"type": "text", "align": "right" if left else "left", "dx": -3 if left else 3,
                             "baseline": "top", "dy": 2, "color": _MARK, "fontSize": 11, "clip": True},
                    "encoding": {"x": x, "text": {"field": "label"},
                                 "y": {"field": "label_y", "type": "quantitative",
                                       "scale": None}}})  # pixels from the top
        # Only the datasets its layers read: the browser's in-place update of a dataset that no
        # layer uses fails ("Unrecognized data set"), and with it the whole chart's update.
        main = {"heldout": heldout} if metric == "heldout/w_heldout" else {"metrics": data}
        specs.append({"title": {"text": title, "fontSize": TITLE_PX}, "height": 210, "layer": layers,
                      "datasets": {**main, "changes": changes}})
    return specs


def _heldout_long(wide: pd.DataFrame) -> pd.DataFrame:
    """The held-out check as (step, images, w) rows, only where it was measured: it is logged
    with each sample grid, and in the wide table's other rows a line would break at every gap."""
    parts = [pd.DataFrame({"step": wide.index[wide[m].notna()].to_numpy(), "images": label,
                           "w": wide[m].dropna().to_numpy()})
             for m, label, _ in HELDOUT_LINES if m in wide]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"step": [], "images": [], "w": []})


def _heldout_layer(x: dict) -> dict:
    labels, colours = [label for _, label, _ in HELDOUT_LINES], [c for _, _, c in HELDOUT_LINES]
    return {"data": {"name": "heldout"}, "mark": {"type": "line", "point": {"size": 14}, "strokeWidth": 1.6},
            "encoding": {"x": x, "y": {"field": "w", "type": "quantitative", "title": None,
                                       "scale": {"zero": False}},
                         "color": {"field": "images", "type": "nominal",
                                   "scale": {"domain": labels, "range": colours},
                                   "legend": {"orient": "bottom", "direction": "horizontal", "title": None,
                                              "labelFontSize": 11, "symbolSize": 40, "padding": 0,
                                              "columnPadding": 8}},
                         "tooltip": [{"field": "step", "type": "quantitative"},
                                     {"field": "images", "type": "nominal"},
                                     {"field": "w", "type": "quantitative", "format": ".3f",
                                      "title": "W estimate"}]}}


# Names a person reads for the metrics the jobs log (the Runs page shows both).
_METRIC_NAMES = {
    **dict(TRAINING_PANELS), "wgan/w_estimate": "Wasserstein estimate",
    "wgan/grad_norm_mean": "Gradient norm ‖∇D‖", "wgan/gp": "Gradient penalty",
    "wgan/grad_norm_std": "Gradient norm, spread",
    "throughput/img_s": "Images / s", "heldout/w_train": "Held-out check: W estimate, seen images",
    "heldout/w_heldout": "Held-out check: W estimate, unseen images",
    "heldout/gap": "Held-out check: seen minus unseen",
    "time/step_s": "Seconds per step", "time/epoch_s": "Seconds per epoch",
    **{s.metric: s.title for s in live.SPECS},
    "train/loss": "Training loss", "train/acc": "Training accuracy",
    "val/loss": "Validation loss", "val/acc": "Validation accuracy",
    "d/real_mean": "Critic score, real images", "d/fake_mean": "Critic score, generated images"}
_SPLIT_NAMES = {"val": "validation", "test": "test"}
_RATES = ("accuracy", "acc", "macro_f1", "ece", "ece_scaled")
_FINAL_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "ece": "ECE",
                "ece_scaled": "ECE (temperature-scaled)"}


def metric_label(name: str, key: bool = True) -> str:
    """'Wasserstein estimate (wgan/w_estimate)' for a known metric (without the bracket when not
    `key`), else the name itself."""
    split, _, what = name.partition("/")
    if name in _METRIC_NAMES:
        nice = _METRIC_NAMES[name]
    elif split in _SPLIT_NAMES and what in _FINAL_NAMES:  # a classifier's final evaluation
        nice = _FINAL_NAMES[what]
        nice = f"{nice[0].upper()}{nice[1:]}, {_SPLIT_NAMES[split]} split"
    else:
        return name
    return f"{nice} ({name})" if key else nice


def compare_runs(series: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """One line per run: {run name: frame with columns step, value}. A metric logged once per
    run (a classifier's test/accuracy) is a bar per run instead: a one-point line is not drawn."""
    fig = go.Figure()
    if all(len(df) <= 1 for df in series.values()):
        names = list(series)
        values = [float(df["value"].iloc[-1]) if len(df) else None for df in series.values()]
        rate = metric.rsplit("/", 1)[-1] in _RATES  # in percent, as on the Classifier page
        fig.add_trace(go.Bar(x=names, y=values, marker_color=_LINE, cliponaxis=False,
                             text=["" if v is None else f"{100 * v:.1f}%" if rate else f"{v:.4g}"
                                   for v in values], textposition="outside"))
        fig.update_layout(title=f"{metric_label(metric)}, logged once per run",
                          yaxis_title=metric_label(metric, key=False))
        if rate:
            fig.update_yaxes(tickformat=".0%")
        return _layout(fig, 420)
    for name, df in series.items():
        # Markers where points are sparse (per-epoch curves), so short series stay visible.
        fig.add_trace(go.Scatter(x=df["step"], y=df["value"], name=name,
                                 mode="lines+markers" if len(df) <= 50 else "lines"))
    fig.update_layout(title=metric_label(metric), xaxis_title="step",
                      yaxis_title=metric_label(metric, key=False))
    _layout(fig, 420).update_layout(showlegend=True, legend={"orientation": "h", "y": -0.2})
    return fig


# ---- classifier (Classifier and Diagnose pages) --------------------------------------------

def epoch_curves(wide: pd.DataFrame) -> go.Figure:
    """Loss and accuracy per epoch, train and validation (wide: index epoch, CURVES columns)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["Loss", "Accuracy"], horizontal_spacing=0.08)
    for col, (name, color, dash) in enumerate([("train", "#4c78a8", None), ("val", "#f58518", "dot")]):
        for panel, metric in ((1, "loss"), (2, "acc")):
            key = f"{name}/{metric}"
            if key in wide:
                fig.add_trace(go.Scatter(x=wide.index, y=wide[key], mode="lines+markers",
                                         name=name if name == "train" else "validation",
                                         legendgroup=name, showlegend=panel == 1,
                                         line=dict(color=color, dash=dash)), row=1, col=panel)
    n = int(wide.index.max()) if len(wide) else 1
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, -(-n // 10)))  # whole epochs
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), uirevision="keep",
                      template="plotly_white", legend=dict(orientation="h", y=-0.22, x=0.5, xanchor="center"))
    return fig


def confusion(matrix, classes: list[str], normalised: bool) -> go.Figure:
    """Heatmap of a confusion matrix (rows: true class, columns: predicted), counts or row shares."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    if normalised:
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
        text = [[f"{v:.0%}" for v in row] for row in m]
    else:
        text = [[f"{int(v)}" for v in row] for row in m]
    fig = go.Figure(go.Heatmap(z=m, x=classes, y=classes, text=text, texttemplate="%{text}",
                               colorscale="Blues", showscale=False, zmin=0,
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    fig.update_layout(title="Row-normalised (recall on the diagonal)" if normalised else "Counts",
                      xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=340, margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig


def roc(curves: dict, aucs: dict) -> go.Figure:
    fig = go.Figure()
    for name, c in curves.items():
        auc = aucs.get(name)
        fig.add_trace(go.Scatter(x=c["fpr"], y=c["tpr"], mode="lines",
                                 name=f"{name} (AUC {auc:.3f})" if auc is not None else name))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="gray"),
                             name="chance", hoverinfo="skip"))
    fig.update_layout(title="ROC, one class vs the rest", xaxis_title="false positive rate",
                      yaxis_title="true positive rate", height=340, template="plotly_white",
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def probabilities(probs: dict[str, float], predicted: str, muted: bool = False) -> go.Figure:
    """Horizontal bars, the predicted class in red; all gray when `muted` (an image flagged as
    unlike the training data, whose probabilities mean little)."""
    names = list(probs)
    colour = {True: "#bab0ac", False: "#4c78a8"}[muted]
    fig = go.Figure(go.Bar(x=[probs[n] for n in names], y=names, orientation="h",
                           marker_color=["#e45756" if n == predicted and not muted else colour
                                         for n in names],
                           text=[f"{probs[n]:.1%}" for n in names], textposition="outside",
                           cliponaxis=False))
    fig.update_layout(title="Class probabilities" + (" (not meaningful for this image)" * muted),
                      xaxis=dict(range=[0, 1.15], tickformat=".0%"),
                      yaxis=dict(autorange="reversed"), height=240, template="plotly_white",
                      margin=dict(l=10, r=30, t=40, b=10), showlegend=False)
    return fig


_ARM_COLORS = {"real": "#9d9d9d", "augmentor": "#f58518", "wgan-gp": "#4c78a8", "gan": "#e45756",
               "wgan": "#72b7b2"}


def ablation_bars(summary: pd.DataFrame, metric: str, title: str) -> go.Figure:
    """Grouped bars of one metric (mean over seeds, error bar: its spread) per training fraction
    and arm, from core.studies.ablation.summarise rows of one source."""
    fig = go.Figure()
    for arm, g in summary.groupby("arm", sort=False):
        sd = g.get(f"{metric}_sd")
        fig.add_trace(go.Bar(
            name=arm, x=[f"{f:.0%} of training patients" for f in g["fraction"]], y=g[metric],
            marker_color=_ARM_COLORS.get(arm),
            error_y=dict(type="data", array=sd.fillna(0).tolist(), visible=bool(sd.notna().any()))
            if sd is not None else None,
            text=[f"{v:.1%}" if pd.notna(v) else "n/a" for v in g[metric]], textposition="outside",
            cliponaxis=False,
            hovertemplate=f"{arm}<br>%{{x}}<br>{title} %{{y:.1%}}<extra></extra>"))
    fig.update_layout(barmode="group", title=title, yaxis=dict(range=[0, 1.1], tickformat=".0%"))
    _layout(fig, 340).update_layout(showlegend=True, legend=dict(orientation="h", y=-0.15))
    return fig
