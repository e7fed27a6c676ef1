"""Plotly figures of the toy playground: a ToyTrainer in, go.Figure out, no Streamlit, so
bench/toy_speed.py can time one refresh of the page."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.toy.trainer import ToyTrainer

# Orange real and green generated, as in gan_toy.py's plots.
REAL, FAKE, ARROW = "#f28e2b", "#2ca02c", "rgba(20,20,20,0.55)"
# 256 points per set, not 512: plotly.js styles every SVG marker one by one, about a quarter
# of the browser's plotting time per live refresh with 512 real + 512 generated per landscape.
N_POINTS, GRID_RES, N_ARROWS = 256, 64, 48


def _margin(left: int, right: int, top: int, bottom: int) -> dict:
    # Fixed margins, and no axis may push them (Streamlit's plotly theme sets automargin on
    # every axis): otherwise a tick label or colorbar that changes width between refreshes makes
    # plotly.js lay the figure out and draw it a second time, about half of the browser's time
    # per refresh in a profile of the playing page.
    return dict(l=left, r=right, t=top, b=bottom, autoexpand=False)


def _axis(**kw) -> dict:
    return dict(automargin=False, **kw)


# Above the plot, in a top margin that holds two rows, with two entries at most (a line alone
# in its panel is named by its axis title): a horizontal legend wraps at the plot's width,
# 160-200 px at 1024 px with two panels side by side, and the rows beyond the fixed margin were
# cut off ("critic gradient", "critic loss" and "generator loss" missing).
_LEGEND = dict(orientation="h", y=1.0, yanchor="bottom", x=0)
_LEGEND_ROWS_PX = 50


def _arrow_segments(points: np.ndarray, grads: np.ndarray, length: float):
    """x, y arrays of line segments (with None gaps) for arrows along `grads` at `points`,
    the longest `length` long; one trace draws them all (faster than create_quiver)."""
    mag = np.linalg.norm(grads, axis=1, keepdims=True)                 # (N, 1)
    d = grads / (mag.max() + 1e-12) * length                          # (N, 2)
    tip = points + d
    # Two barbs at 25% of the arrow's length, rotated +-150 degrees from its direction.
    c, s = np.cos(np.radians(150)), np.sin(np.radians(150))
    b1 = tip + 0.25 * np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], 1)
    b2 = tip + 0.25 * np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1)
    gap = np.full_like(points, np.nan)
    seq = np.stack([points, tip, gap, b1, tip, b2, gap], 1).reshape(-1, 2)  # (7N, 2)
    return seq[:, 0], seq[:, 1]


def landscape_figure(trainer: ToyTrainer, heatmap: bool = True, arrows: bool = True,
                     n_points: int = N_POINTS, grid_res: int = GRID_RES,
                     bounds: np.ndarray | None = None) -> go.Figure:
    """2D: critic heatmap with contours, real and generated points, gradient arrows; `bounds`
    (2, 2) fixes the axes (side-by-side panels share them)."""
    fake = trainer.sample(n_points)
    real = trainer.real_sample(n_points)
    bounds = trainer.plot_bounds(fake) if bounds is None else bounds
    traces = []
    if heatmap:
        xs, ys, values = trainer.critic_field(grid_res, bounds)
        title = "D(x)" if trainer.config.loss == "gan" else "critic"
        traces.append(go.Contour(x=xs, y=ys, z=values, colorscale="RdBu_r", ncontours=16,
                                 contours=dict(coloring="heatmap", showlines=True),
                                 line=dict(width=0.5, color="rgba(0,0,0,0.35)"), opacity=0.8,
                                 colorbar=dict(title=dict(text=title), thickness=10, len=0.8),
                                 hoverinfo="skip", name=title))
    if arrows:  # drawn first so the points stay visible on top
        pts, grads = trainer.critic_gradients(fake[:N_ARROWS])
        # Every loss here pushes generated points uphill on the critic's score, so these arrows
        # are where the generator's next steps move them.
        ax, ay = _arrow_segments(pts, grads, 0.08 * float(bounds[0, 1] - bounds[0, 0]))
        # Not in the legend (the page's caption explains the arrows): with it the legend needed
        # three rows at 1024 px, since wrapped entries all take the widest one's width.
        traces.append(go.Scatter(x=ax, y=ay, mode="lines", name="critic gradient",
                                 line=dict(color=ARROW, width=1), hoverinfo="skip",
                                 showlegend=False))
    traces.append(go.Scatter(x=fake[:, 0], y=fake[:, 1], mode="markers", name="generated",
                             marker=dict(color=FAKE, size=4, opacity=0.8)))
    # Real points last: tight modes (8 Gaussians) stay visible under a spread generator.
    traces.append(go.Scatter(x=real[:, 0], y=real[:, 1], mode="markers", name="real",
                             marker=dict(color=REAL, size=5, opacity=0.7)))
    # Layout passed to the constructor: ~3x faster than update_layout (magic-underscore parsing).
    return go.Figure(traces, layout=dict(
        height=430, margin=_margin(40, 70, _LEGEND_ROWS_PX, 30), uirevision="keep",
        legend=_LEGEND,  # above: ticks stay clear
        xaxis=_axis(range=list(bounds[0]), constrain="domain"),
        yaxis=_axis(range=list(bounds[1]), scaleanchor="x", scaleratio=1, constrain="domain")))


def histogram_figure(trainer: ToyTrainer, n_points: int = 4000, bins: int = 60,
                     bounds: np.ndarray | None = None) -> go.Figure:
    """1D: histograms of real and generated samples with the critic's curve on a second axis;
    `bounds` (1, 2) fixes the x axis (side-by-side panels share it)."""
    fake = trainer.sample(n_points)[:, 0]
    bounds = trainer.plot_bounds(fake[:, None]) if bounds is None else bounds
    edges = np.linspace(bounds[0, 0], bounds[0, 1], bins + 1)
    centers, width = 0.5 * (edges[1:] + edges[:-1]), edges[1] - edges[0]
    real_h = np.histogram(trainer.real_sample(n_points)[:, 0], edges, density=True)[0]
    fake_h = np.histogram(fake, edges, density=True)[0]
    xs, values = trainer.critic_curve(200, bounds)
    gan = trainer.config.loss == "gan"
    name = "D(x)" if gan else "critic"
    return go.Figure([
        go.Bar(x=centers, y=real_h, width=width, name="real", marker_color=REAL, opacity=0.6),
        go.Bar(x=centers, y=fake_h, width=width, name="generated", marker_color=FAKE,
               opacity=0.6),
        go.Scatter(x=xs, y=values, mode="lines", name=name, yaxis="y2",  # named by its axis
                   line=dict(color="#1f77b4", width=2), showlegend=False),
    ], layout=dict(barmode="overlay", height=430, margin=_margin(55, 60, _LEGEND_ROWS_PX, 30),
                   uirevision="keep", legend=_LEGEND,
                   xaxis=_axis(range=[float(edges[0]), float(edges[-1])]),
                   yaxis=_axis(title=dict(text="density")),
                   # tickmode "auto": an overlaying axis defaults to "sync", ticks at the
                   # density axis's positions labelled 0.49287, 0.48878, -0.0285.
                   yaxis2=_axis(title=dict(text=name), overlaying="y", side="right",
                                showgrid=False, tickmode="auto",
                                range=[0.0, 1.0] if gan else _value_range(values))))


def _value_range(values: np.ndarray) -> list[float]:
    """An axis range around `values`, spanning at least a tenth of their magnitude: a nearly
    flat critic (a WGAN early on) would otherwise get ticks 0.4925, 0.493, 0.4935..."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return [-1.0, 1.0]
    span = max(hi - lo, 0.1 * max(abs(lo), abs(hi)), 1e-6)
    mid = 0.5 * (lo + hi)
    return [mid - 0.55 * span, mid + 0.55 * span]


def curves_figure(trainer: ToyTrainer) -> go.Figure:
    """Losses, the Wasserstein estimate and the critic's gradient norm against generator steps,
    three stacked panels on one x axis (manual domains: make_subplots is slow per frame)."""
    rows = trainer.history
    step = [r["gen_step"] for r in rows]
    series = [("loss/critic", "critic loss", "y", "#d62728"),
              ("loss/gen", "generator loss", "y", "#2ca02c"),
              ("wgan/w_estimate", "W estimate", "y2", "#9467bd"),
              ("wgan/grad_norm_mean", "||grad D||", "y3", "#1f77b4")]
    traces = [go.Scatter(x=step, y=[r.get(k, np.nan) for r in rows], name=label, yaxis=axis,
                         mode="lines", line=dict(color=color, width=1.5), showlegend=axis == "y")
              for k, label, axis, color in series]
    # The dotted line marks ||grad|| = 1, the norm WGAN-GP's penalty pulls towards.
    one = dict(type="line", xref="x domain", x0=0, x1=1, yref="y3", y0=1, y1=1,
               line=dict(dash="dot", width=1, color="gray"))
    return go.Figure(traces, layout=dict(
        height=340, margin=_margin(65, 10, _LEGEND_ROWS_PX, 45), uirevision="keep",
        legend=dict(_LEGEND, y=1.02), shapes=[one],
        xaxis=_axis(anchor="y3", title=dict(text="generator step")),
        yaxis=_axis(domain=[0.7, 1.0], title=dict(text="loss")),
        yaxis2=_axis(domain=[0.37, 0.65], title=dict(text="W est.")),
        # The axis always reaches 1, or the dotted line falls outside its panel (a GAN's
        # gradient norm can stay far below 1).
        yaxis3=_axis(domain=[0.0, 0.32], title=dict(text="‖∇D‖"),
                     autorangeoptions={"include": [1]})))


def refresh_figures(trainers: list[ToyTrainer], heatmap: bool = True, arrows: bool = True,
                    bounds: np.ndarray | None = None) -> list[go.Figure]:
    """Every figure one refresh of the live panel draws (two per trainer). Panels of the same
    data share their axes (`bounds`, else shared_bounds of these trainers), so two losses are
    compared on one scale."""
    bounds = shared_bounds(trainers) if bounds is None else bounds
    figs = []
    for t in trainers:
        figs.append(landscape_figure(t, heatmap, arrows, bounds=bounds) if t.dim == 2
                    else histogram_figure(t, bounds=bounds))
        figs.append(curves_figure(t))
    return figs


def shared_bounds(trainers: list[ToyTrainer], n_points: int = N_POINTS) -> np.ndarray | None:
    """The union of the trainers' plot bounds (square in 2D), or None for one trainer or
    different data."""
    if len(trainers) < 2 or len({t.dim for t in trainers}) > 1 or not all(
            np.array_equal(t.data_bounds, trainers[0].data_bounds) for t in trainers):
        return None
    each = np.stack([t.plot_bounds(t.sample(n_points)) for t in trainers])   # (T, D, 2)
    bounds = np.stack([each[:, :, 0].min(0), each[:, :, 1].max(0)], 1)      # (D, 2)
    if len(bounds) == 2:
        center, half = bounds.mean(1), (bounds[:, 1] - bounds[:, 0]).max() / 2
        bounds = np.stack([center - half, center + half], 1)
    return bounds
