"""Playground smoothness as a viewer sees it: visible redraws per second of the page's charts in
headless Chromium while both trainers play (2D compare mode, start settings), for this tree and,
with --before REF, for the tree at git REF too, in alternating rounds on the same machine.

    python bench/playground_browser.py --before b9f6386 --seconds 20 --rounds 2

A redraw is a burst of changes to one chart's drawing (SVG mutations or canvas drawing calls,
seen once per animation frame) after at least GAP_MS without any; a blank frame is one in which a
chart had nothing drawn (a re-mount). Also: generator steps per second, the CPU seconds per wall
second of the server and of the browser, and the load average (`uptime`) before and after each
round. Needs Debian's chromium at /usr/bin/chromium and playwright.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GAP_MS = 80   # changes closer than this are one redraw (a redraw spans a few frames)
CHARTS = '[data-testid="stPlotlyChart"], [data-testid="stVegaLiteChart"], ' \
         '[data-testid="stArrowVegaLiteChart"]'

# Installed before the page's own scripts: marks a chart dirty on any SVG/DOM mutation inside it
# or any drawing call on a canvas inside it, and once per animation frame logs (chart, time) for
# each dirty chart and counts frames in which a chart shows nothing drawn.
PROBE = """
(() => {
  const SEL = %r;
  const r = window.__redraws = {on: false, events: [], blank: 0, frames: 0, dirty: new Set()};
  const chartOf = (node) => {
    const el = node && (node.nodeType === 1 ? node : node.parentElement);
    return el ? el.closest(SEL) : null;
  };
  const C2D = CanvasRenderingContext2D.prototype;
  for (const name of ['clearRect', 'fillRect', 'fill', 'stroke', 'drawImage', 'putImageData',
                      'fillText']) {
    const orig = C2D[name];
    C2D[name] = function (...args) {
      if (r.on) { const c = chartOf(this.canvas); if (c) r.dirty.add(c); }
      return orig.apply(this, args);
    };
  }
  new MutationObserver((records) => {
    if (!r.on) return;
    for (const m of records) { const c = chartOf(m.target); if (c) r.dirty.add(c); }
  }).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  const frame = (now) => {
    if (r.on) {
      r.frames++;
      const charts = Array.from(document.querySelectorAll(SEL)).filter(
        (c) => c.getBoundingClientRect().height > 0);
      for (const c of r.dirty) {
        const i = charts.indexOf(c);
        if (i >= 0) r.events.push([i, now]);
      }
      for (const c of charts) {
        const drawn = Array.from(c.querySelectorAll('canvas, svg.main-svg')).some(
          (e) => e.getBoundingClientRect().height > 0);
        if (!drawn) { r.blank++; break; }
      }
    }
    r.dirty.clear();
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
})();
""" % CHARTS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds (processes gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _export(ref: str) -> Path:
    """The tree at git `ref` in a temporary folder (git archive: no worktree, no checkout)."""
    dest = Path(tempfile.mkdtemp(prefix="playground-before-"))
    archive = dest / "tree.tar"
    subprocess.run(["git", "archive", "-o", str(archive), ref], cwd=REPO, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "tree", filter="data")
    archive.unlink()
    return dest / "tree"


def _server(tree: Path, port: int, compile_: bool) -> subprocess.Popen:
    env = {**os.environ, "XRAY_RUNS_DIR": tempfile.mkdtemp(prefix="bench-runs-"),
           "XRAY_TOY_COMPILE": "1" if compile_ else "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                      timeout=2).read() == b"ok":
                return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the server in {tree} did not start")


def _steps(page) -> list[int]:
    return [int(n) for n in re.findall(r"· step (\d+)", page.inner_text("body"))]


def _redraws(events: list, n_charts: int, seconds: float) -> tuple[list[float], list[float]]:
    """(redraws per second per chart, longest gap in seconds per chart)."""
    rates, gaps = [], []
    for i in range(n_charts):
        times = sorted(t for c, t in events if c == i)
        starts = [t for k, t in enumerate(times) if k == 0 or t - times[k - 1] > GAP_MS]
        rates.append(len(starts) / seconds)
        gaps.append(max((b - a for a, b in zip(starts, starts[1:])), default=seconds * 1e3) / 1e3)
    return rates, gaps


def measure(p, tree: Path, label: str, args) -> dict:
    port = _free_port()
    server = _server(tree, port, args.compile)
    browser = None
    try:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.add_init_script(PROBE)
        page.goto(f"http://127.0.0.1:{port}/playground")
        play = page.get_by_role("button", name="Play")
        play.wait_for(timeout=120_000)
        if args.light:  # the smallest width and batch: each sidebar slider to its first option
            for name in ("Hidden width", "Batch size"):
                page.get_by_role("slider", name=name).press("Home")
                time.sleep(3)
        play.click(timeout=120_000)
        # The compiled critic step (built in the background) is what a presenter sees after
        # the first minute; measure from then on.
        end = time.monotonic() + args.warmup_timeout
        while args.compile and time.monotonic() < end:
            if page.inner_text("body").count("compiled critic step") >= 2:
                break
            time.sleep(1)
        time.sleep(args.settle)
        chromium = [pid for pid in _descendants(os.getpid()) if pid != server.pid]
        # The page's main thread: what it spent on tasks, scripts, layout and style (CDP).
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")

        def main_thread() -> dict:
            return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        main0 = main_thread()
        load0 = os.getloadavg()
        steps0, t0 = _steps(page), time.perf_counter()
        cpu0 = (_cpu_s([server.pid]), _cpu_s(chromium))
        page.evaluate("() => { const r = window.__redraws; r.events = []; r.blank = 0; "
                      "r.frames = 0; r.on = true; }")
        time.sleep(args.seconds)
        probe = page.evaluate("() => { const r = window.__redraws; r.on = false; "
                              "return {events: r.events, blank: r.blank, frames: r.frames, "
                              "charts: document.querySelectorAll(%r).length}; }" % CHARTS)
        wall = time.perf_counter() - t0
        cpu1 = (_cpu_s([server.pid]), _cpu_s(chromium))
        main1 = main_thread()
        busy = {k: main1[k] - main0[k] for k in ("TaskDuration", "ScriptDuration",
                                                 "LayoutDuration", "RecalcStyleDuration")}
        steps1 = _steps(page)
        if args.screenshot:  # the panels' headers and their charts, as they train
            page.evaluate("(sel) => { const c = document.querySelector(sel); if (c) "
                          "{ c.scrollIntoView({block: 'start'}); "
                          "c.closest('[data-testid=\"stMain\"]').scrollBy(0, -200); } }",
                          CHARTS)
            time.sleep(1)
            page.screenshot(path=f"{args.screenshot}-{label}-{args.width}.png")
        page.get_by_role("button", name="Pause").click()
        rates, gaps = _redraws(probe["events"], probe["charts"], wall)
        return {"rates": rates, "gaps": gaps, "blank": probe["blank"], "frames": probe["frames"],
                "steps_s": [(b - a) / wall for a, b in zip(steps0, steps1)],
                "server_cpu": (cpu1[0] - cpu0[0]) / wall, "browser_cpu": (cpu1[1] - cpu0[1]) / wall,
                "load": (load0[0], os.getloadavg()[0]), "main": busy,
                "updates": len(probe["events"]) and sum(rates) * wall}
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="git ref of the tree to compare with (exported to /tmp)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per round")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of each tree")
    ap.add_argument("--width", type=int, default=1440, help="viewport width (height 900)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds of play before measuring")
    ap.add_argument("--warmup-timeout", type=float, default=120.0,
                    help="wait at most this long for both compiled critic steps")
    ap.add_argument("--light", action="store_true",
                    help="hidden width 32 and batch 16 before Play: training then changes the "
                         "charts' data faster than they can be drawn, even on a loaded machine, "
                         "so the numbers measure drawing, not training")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="XRAY_TOY_COMPILE=0 (eager critic steps, no background compiler)")
    ap.add_argument("--screenshot", help="save each tree's page at the end of its last round "
                                         "as PREFIX-before.png / PREFIX-after.png")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    trees = {"after": REPO}
    if args.before:
        trees = {"before": _export(args.before), **trees}
    print(f"{os.cpu_count()} CPUs; viewport {args.width}x900; {args.seconds:g} s per round "
          f"{'(hidden width 32, batch 16) ' if args.light else ''}"
          f"after {args.settle:g} s of play; redraw = changes after a {GAP_MS} ms gap", flush=True)
    with sync_playwright() as p:
        for r in range(args.rounds):
            for label, tree in trees.items():
                m = measure(p, tree, label, args)
                rates = " ".join(f"{x:.2f}" for x in m["rates"])
                print(f"round {r + 1} {label:>6}: redraws/s per chart [{rates}] min "
                      f"{min(m['rates'], default=0):.2f}; longest gap per chart "
                      f"{max(m['gaps'], default=0):.1f} s; blank frames {m['blank']}/"
                      f"{m['frames']}; generator steps/s "
                      f"{', '.join(f'{s:.1f}' for s in m['steps_s'])}; CPU s per s: server "
                      f"{m['server_cpu']:.2f}, browser {m['browser_cpu']:.2f}; load average "
                      f"{m['load'][0]:.2f} -> {m['load'][1]:.2f}", flush=True)
                # Costs per chart redraw: these hardly depend on how much CPU the machine's
                # other jobs leave, so they compare fairly on a loaded machine.
                n = max(m["updates"], 1)
                main = m["main"]
                print(f"    per chart redraw: page main thread {1e3 * main['TaskDuration'] / n:.0f} "
                      f"ms (script {1e3 * main['ScriptDuration'] / n:.0f}, layout "
                      f"{1e3 * main['LayoutDuration'] / n:.0f}, style "
                      f"{1e3 * main['RecalcStyleDuration'] / n:.0f}); server CPU "
                      f"{1e3 * m['server_cpu'] * args.seconds / n:.0f} ms; browser CPU, all "
                      f"processes {1e3 * m['browser_cpu'] * args.seconds / n:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
