"""Charts of the toy playground as Vega-Lite specs (for st.vega_lite_chart): a trainer's state is
copied into a ToyView under the trainers' lock, and the specs are built from the view after it is
released. No Streamlit here, so bench/toy_speed.py can time one refresh of the page.

Vega-Lite, not Plotly (measured in Chromium, bench/playground_browser.py, docs/performance.md):
a spec that never depends on the data lets the browser swap the named datasets in place and draw
on a canvas, where four Plotly figures were laid out and drawn as SVG again at every refresh."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.toy.trainer import ToyTrainer

# Orange real and green generated, as in gan_toy.py's plots.
REAL, FAKE, ARROW = "#f28e2b", "#2ca02c", "rgba(20,20,20,0.6)"
# The browser's cost per refresh grows with the items drawn: Streamlit runs Vega with its
# expression interpreter (no eval, for its content security policy), which evaluated every
# item's encodings and was most of the page's script time in a profile with a 48x48 grid and
# 400-row curves. So: a 32x32 critic grid (1,024 cells), curves thinned to 150 rows.
N_POINTS, GRID_RES, N_ARROWS, N_CURVE_ROWS = 256, 32, 48, 150
# A fixed height for every chart of a panel, so the two panels line up and nothing moves.
LANDSCAPE_PX, CURVES_PX = 340, 82
_CANVAS = {"embedOptions": {"renderer": "canvas"}}  # one bitmap, not thousands of SVG nodes


@dataclass
class ToyView:
    """What one refresh draws of one trainer, as plain arrays (copied under the trainers' lock).

    bounds (D, 2); fake, real (N, D) inside bounds; 2D: field (xs (R,), ys (R,), values (R, R))
    or None, arrows (points (M, 2), grads (M, 2)) or None; 1D: hist (edges (B+1,), real, fake
    densities (B,)) and curve (xs (C,), values (C,)); history: rows for the curves."""
    dim: int
    loss: str
    bounds: np.ndarray
    fake: np.ndarray
    real: np.ndarray
    history: list[dict]
    field: tuple | None = None
    arrows: tuple | None = None
    hist: tuple | None = None
    curve: tuple | None = None


def _inside(points: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.all((points >= bounds[:, 0]) & (points <= bounds[:, 1]), axis=1)


def _thin(rows: list[dict], n: int = N_CURVE_ROWS) -> list[dict]:
    # Evenly spaced rows, the newest always among them: the curves' shape at a fixed cost.
    if len(rows) <= n:
        return list(rows)
    return [rows[i] for i in np.linspace(0, len(rows) - 1, n).round().astype(int)]


def snapshot(trainer: ToyTrainer, heatmap: bool = True, arrows: bool = True,
             bounds: np.ndarray | None = None, n_points: int = N_POINTS,
             grid_res: int = GRID_RES) -> ToyView:
    """Copy what the charts need from `trainer` (call it under the lock that guards the
    trainer); `bounds` (D, 2) fixes the axes (side-by-side panels share them)."""
    # The trainer's thread count (1 on a busy machine), not the calling thread's default of one
    # per core: two OpenMP threads on a loaded 2-core machine made this copy 10x slower.
    with trainer.torch_threads():
        return _snapshot(trainer, heatmap, arrows, bounds, n_points, grid_res)


def _snapshot(trainer, heatmap, arrows, bounds, n_points, grid_res) -> ToyView:
    fake = trainer.sample(n_points)
    bounds = trainer.plot_bounds(fake) if bounds is None else np.asarray(bounds)
    view = ToyView(trainer.dim, trainer.config.loss, bounds, fake,
                   trainer.real_sample(n_points), _thin(trainer.history))
    if trainer.dim == 1:
        many = trainer.sample(4000)[:, 0]
        edges = np.linspace(bounds[0, 0], bounds[0, 1], 61)
        view.hist = (edges, np.histogram(trainer.real_sample(4000)[:, 0], edges, density=True)[0],
                     np.histogram(many, edges, density=True)[0])
        view.curve = trainer.critic_curve(200, bounds)
        return view
    if heatmap:
        view.field = trainer.critic_field(grid_res, bounds)
    if arrows:
        view.arrows = trainer.critic_gradients(fake[:N_ARROWS])
    return view


# ---------------------------------------------------------------------------------------------
# Specs: the same dict for the same settings whatever the numbers, the numbers in `datasets`.

def _x(field: str = "x", **axis) -> dict:
    return {"field": field, "type": "quantitative", "title": None,
            "scale": {"zero": False, "nice": False},
            "axis": {"tickCount": 5, "labelFlush": True, "grid": False, **axis}}


def _frame(bounds: np.ndarray, field) -> pd.DataFrame:
    """The plotted square: the heatmap's cells reach exactly to it, and it is drawn (as a thin
    border) with or without the heatmap, so it alone sets the axes' domains."""
    if field is not None:
        xs, ys = field[0], field[1]
        dx, dy = 0.6 * (xs[1] - xs[0]), 0.6 * (ys[1] - ys[0])  # as the cells
        box = [[xs[0] - dx, xs[-1] + dx], [ys[0] - dy, ys[-1] + dy]]
    else:
        box = bounds.tolist()
    return pd.DataFrame({"x": [box[0][0]], "x2": [box[0][1]], "y": [box[1][0]],
                         "y2": [box[1][1]]}, dtype="float32")


def _arrow_rows(points: np.ndarray, grads: np.ndarray, length: float,
                box: np.ndarray) -> pd.DataFrame:
    """Line segments (x, y, x2, y2) for arrows along `grads` at `points`, the longest `length`
    long: a shaft and two barbs each; arrows that would leave `box` (D, 2) are dropped, or they
    would widen the axes."""
    mag = np.linalg.norm(grads, axis=1, keepdims=True)                 # (N, 1)
    d = grads / (mag.max() + 1e-12) * length                          # (N, 2)
    tip = points + d
    # Two barbs at 25% of the arrow's length, rotated +-150 degrees from its direction.
    c, s = np.cos(np.radians(150)), np.sin(np.radians(150))
    b1 = tip + 0.25 * np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], 1)
    b2 = tip + 0.25 * np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1)
    keep = _inside(points, box) & _inside(tip, box) & _inside(b1, box) & _inside(b2, box)
    start = np.concatenate([points[keep], tip[keep], tip[keep]])      # (3K, 2)
    end = np.concatenate([tip[keep], b1[keep], b2[keep]])
    return pd.DataFrame({"x": start[:, 0], "y": start[:, 1], "x2": end[:, 0], "y2": end[:, 1]},
                        dtype="float32")


def _points(view: ToyView, box: np.ndarray) -> dict[str, pd.DataFrame]:
    """The generated and the real points inside the square (points outside would widen the
    axes); the real layer is drawn last: tight modes (8 Gaussians) stay visible over a spread
    generator."""
    out = {}
    for name, pts in (("generated", view.fake), ("real", view.real)):
        pts = pts[_inside(pts, box)]
        out[name] = pd.DataFrame({"x": pts[:, 0], "y": pts[:, 1]}, dtype="float32")
    return out


def _critic_title(loss: str) -> str:
    return "D(x)" if loss == "gan" else "critic"


def landscape_spec(view: ToyView) -> dict:
    """2D: the critic's heatmap, its gradient arrows at generated points, generated and real
    points, in a square at the chart's centre (equal aspect at any width)."""
    frame = _frame(view.bounds, view.field)
    box = frame[["x", "x2", "y", "y2"]].to_numpy()[0].reshape(2, 2).astype(float)
    # Equal aspect at a width only the browser knows: both axes get the square's side in pixels.
    # The axes move in to the square's edges (a negative offset moves an axis inwards).
    x = _x(offset={"expr": "(side - height) / 2"})
    x["scale"] = {"zero": False, "nice": False,
                  "range": [{"expr": "(width - side) / 2"}, {"expr": "(width + side) / 2"}]}
    y = _x("y", offset={"expr": "(side - width) / 2"})
    y["scale"] = {"zero": False, "nice": False,
                  "range": [{"expr": "(height + side) / 2"}, {"expr": "(height - side) / 2"}]}
    corners = {"x": x, "x2": {"field": "x2"}, "y": y, "y2": {"field": "y2"}}
    layers = []
    datasets = {"frame": frame, **_points(view, box)}
    if view.field is not None:
        xs, ys, values = view.field
        # Opaque cells that overlap by a fifth: abutting cells left hairline seams on the canvas.
        dx, dy = 0.6 * (xs[1] - xs[0]), 0.6 * (ys[1] - ys[0])
        gx, gy = np.meshgrid(xs, ys)  # values[i, j] is at (xs[j], ys[i])
        datasets["field"] = pd.DataFrame({"x": (gx - dx).ravel(), "x2": (gx + dx).ravel(),
                                          "y": (gy - dy).ravel(), "y2": (gy + dy).ravel(),
                                          "v": values.ravel()}, dtype="float32")
        layers.append({"data": {"name": "field"}, "mark": {"type": "rect"},
                       "encoding": {**corners, "color": {
                           "field": "v", "type": "quantitative",
                           "title": _critic_title(view.loss),
                           "scale": {"scheme": "redblue", "reverse": True},
                           "legend": {"orient": "right", "gradientThickness": 10,
                                      "gradientLength": 180, "tickCount": 4}}}})
    layers.append({"data": {"name": "frame"},
                   "mark": {"type": "rect", "fillOpacity": 0, "stroke": "#d0d0d0"},
                   "encoding": corners})
    if view.arrows is not None:
        # Every loss here pushes generated points uphill on the critic's score, so the arrows
        # are where the generator's next steps move them.
        pts, grads = view.arrows
        datasets["arrows"] = _arrow_rows(pts, grads, 0.08 * float(box[0, 1] - box[0, 0]), box)
        layers.append({"data": {"name": "arrows"},
                       "mark": {"type": "rule", "color": ARROW, "strokeWidth": 1},
                       "encoding": corners})
    # A constant colour per layer (a datum, so the legend still names it) and a fixed size:
    # fewer encodings for the browser to evaluate per point.
    color = {"type": "nominal", "title": None,
             "scale": {"domain": ["generated", "real"], "range": [FAKE, REAL]},
             "legend": {"orient": "top", "direction": "horizontal"}}
    # One nested layer: its two layers share one colour scale and legend (the heatmap's colour
    # scale is independent of theirs).
    layers.append({"layer": [
        {"data": {"name": name}, "mark": {"type": "circle", "opacity": 0.8, "size": size},
         "encoding": {"x": x, "y": y, "color": {**color, "datum": name}}}
        for name, size in (("generated", 14), ("real", 22))]})
    spec = {"height": LANDSCAPE_PX, "usermeta": _CANVAS,
            "params": [{"name": "side", "expr": "min(width, height)"}],
            "layer": layers, "datasets": datasets}
    if view.field is not None:  # the heatmap's colours and the points' colours: two legends
        spec["resolve"] = {"scale": {"color": "independent"}, "legend": {"color": "independent"}}
    return spec


def histogram_spec(view: ToyView) -> dict:
    """1D: histograms of real and generated samples, the critic's curve on its own axis."""
    edges, real_h, fake_h = view.hist
    bars = pd.DataFrame({"x": edges[:-1], "x2": edges[1:], "real": real_h,
                         "generated": fake_h}, dtype="float32")
    xs, values = view.curve
    gan = view.loss == "gan"
    curve = pd.DataFrame({"x": xs, "v": values}, dtype="float32")
    lo, hi = _value_range(values) if not gan else (0.0, 1.0)
    # Two invisible points span the critic axis: a nearly flat critic (a WGAN early on) would
    # otherwise get ticks 0.4925, 0.493, 0.4935...
    span = pd.DataFrame({"x": [xs[0], xs[0]], "v": [lo, hi]}, dtype="float32")
    x = _x()
    name = _critic_title(view.loss)
    critic_y = {"field": "v", "type": "quantitative", "title": name,
                "scale": {"zero": False, "nice": False}, "axis": {"orient": "right",
                                                                   "tickCount": 5}}
    return {
        "height": LANDSCAPE_PX, "usermeta": _CANVAS,
        "layer": [
            {"data": {"name": "bars"},
             "transform": [{"fold": ["real", "generated"], "as": ["set", "density"]}],
             "mark": {"type": "rect", "opacity": 0.6},
             "encoding": {"x": x, "x2": {"field": "x2"},
                          "y": {"field": "density", "type": "quantitative", "title": "density",
                                "axis": {"tickCount": 5}},
                          "y2": {"datum": 0},
                          "color": {"field": "set", "type": "nominal", "title": None,
                                    "scale": {"domain": ["real", "generated"],
                                              "range": [REAL, FAKE]},
                                    "legend": {"orient": "top", "direction": "horizontal"}}}},
            {"layer": [  # the critic's curve and its axis span share one scale
                {"data": {"name": "curve"}, "mark": {"type": "line", "color": "#1f77b4",
                                                     "strokeWidth": 2},
                 "encoding": {"x": x, "y": critic_y}},
                {"data": {"name": "span"}, "mark": {"type": "point", "opacity": 0},
                 "encoding": {"x": x, "y": critic_y}}]}],
        "resolve": {"scale": {"y": "independent"}},
        "datasets": {"bars": bars, "curve": curve, "span": span}}


def _value_range(values: np.ndarray) -> tuple[float, float]:
    """An axis range around `values`, spanning at least a tenth of their magnitude."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return -1.0, 1.0
    span = max(hi - lo, 0.1 * max(abs(lo), abs(hi)), 1e-6)
    mid = 0.5 * (lo + hi)
    return mid - 0.55 * span, mid + 0.55 * span


# The curves' series: (history key, column, label).
_SERIES = [("loss/critic", "critic", "critic loss"), ("loss/gen", "gen", "generator loss"),
           ("wgan/w_estimate", "w", "W estimate"), ("wgan/grad_norm_mean", "gn", "‖∇D‖")]


def curves_spec(view: ToyView) -> dict:
    """Losses, the Wasserstein estimate and the critic's gradient norm against generator steps:
    three bands of one chart on one x axis, each with its own y scale (one chart, not a
    vconcat: a vconcat's axes came on top of the width Streamlit gave it, and overflowed); a
    dotted line marks ‖∇D‖ = 1, where WGAN-GP's penalty pulls it."""
    rows = view.history
    data = pd.DataFrame({"step": [r["gen_step"] for r in rows],
                         **{col: [r.get(key, np.nan) for r in rows] for key, col, _ in _SERIES}},
                        dtype="float32")
    x = {"field": "step", "type": "quantitative", "title": "generator step",
         "axis": {"tickCount": 5, "labelFlush": True}}

    def y(field: str, title: str, top: float, bottom: float) -> dict:
        # A band of the chart's height, from `top` to `bottom` (shares of it).
        return {"field": field, "type": "quantitative", "title": title,
                "scale": {"zero": False, "range": [{"expr": f"height * {bottom}"},
                                                   {"expr": f"height * {top}"}]},
                "axis": {"orient": "left", "tickCount": 3, "titlePadding": 4}}

    def line(field: str, color: str, enc_y: dict) -> dict:
        return {"data": {"name": "curves"}, "mark": {"type": "line", "strokeWidth": 1.5,
                                                     "color": color},
                "encoding": {"x": x, "y": enc_y}}

    losses = {"data": {"name": "curves"}, "mark": {"type": "line", "strokeWidth": 1.5},
              "transform": [{"fold": ["critic", "gen"], "as": ["series", "value"]}],
              "encoding": {"x": x, "y": y("value", "loss", 0.0, 0.28),
                           "color": {"field": "series", "type": "nominal", "title": None,
                                     "scale": {"domain": ["critic", "gen"],
                                               "range": ["#d62728", "#2ca02c"]},
                                     "legend": {"orient": "top", "direction": "horizontal",
                                                "labelExpr": "datum.label == 'critic' ? "
                                                             "'critic loss' : 'generator loss'"}}}}
    gn_y = y("gn", "‖∇D‖", 0.72, 1.0)
    # The axis always reaches 1 (the rule is part of its domain), or the line falls outside.
    one = {"data": {"values": [{"gn": 1.0}]},
           "mark": {"type": "rule", "strokeDash": [2, 2], "color": "gray"},
           "encoding": {"y": gn_y}}
    return {"height": 3 * CURVES_PX, "usermeta": _CANVAS,
            "layer": [losses, line("w", "#9467bd", y("w", "W est.", 0.36, 0.64)),
                      {"layer": [line("gn", "#1f77b4", gn_y), one]}],
            "resolve": {"scale": {"y": "independent"}, "axis": {"y": "independent"}},
            "datasets": {"curves": data}}


def refresh_specs(trainers: list[ToyTrainer], heatmap: bool = True, arrows: bool = True,
                  bounds: np.ndarray | None = None) -> list[dict]:
    """Every chart one refresh of the live panel draws (two per trainer). Panels of the same
    data share their axes (`bounds`, else shared_bounds of these trainers), so two losses are
    compared on one scale."""
    bounds = shared_bounds(trainers) if bounds is None else bounds
    specs = []
    for t in trainers:
        view = snapshot(t, heatmap, arrows, bounds)
        specs += [landscape_spec(view) if view.dim == 2 else histogram_spec(view),
                  curves_spec(view)]
    return specs


def shared_bounds(trainers: list[ToyTrainer], n_points: int = N_POINTS) -> np.ndarray | None:
    """The union of the trainers' plot bounds (square in 2D), or None for one trainer or
    different data."""
    if len(trainers) < 2 or len({t.dim for t in trainers}) > 1 or not all(
            np.array_equal(t.data_bounds, trainers[0].data_bounds) for t in trainers):
        return None
    with trainers[0].torch_threads():  # as in snapshot
        each = np.stack([t.plot_bounds(t.sample(n_points)) for t in trainers])  # (T, D, 2)
    bounds = np.stack([each[:, :, 0].min(0), each[:, :, 1].max(0)], 1)      # (D, 2)
    if len(bounds) == 2:
        center, half = bounds.mean(1), (bounds[:, 1] - bounds[:, 0]).max() / 2
        bounds = np.stack([center - half, center + half], 1)
    return bounds
