"""How long each page takes to render for a new visitor, and what an idle open page costs the
server, measured in headless Chromium (Debian's /usr/bin/chromium) against a server of this
checkout on an empty runs folder.

For each page: the median over N cold sessions (a new browser context each, the server warm)
of the time from navigation until the app script has finished (Streamlit's running indicator
gone, no skeleton left). Then one page is left open for a while and the server process's CPU
time over that window is reported as a share of one core.

    python bench/page_render.py --sessions 5 --idle-s 30 [--pages data,home]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = {"home": "", "data": "data", "train_gan": "train_gan", "samples": "samples",
         "classifier": "classifier", "diagnose": "diagnose", "playground": "playground",
         "runs": "runs"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rendered(page, timeout: float = 120.0) -> float:
    """Seconds until the page's title is drawn and the script has finished, staying finished
    for 0.5 s (that 0.5 s is subtracted)."""
    t0 = time.monotonic()
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout * 1000)
    quiet = None
    while time.monotonic() - t0 < timeout:
        busy = page.locator('[data-testid="stStatusWidget"]').count() or \
            page.locator('[data-testid="stSkeleton"]').count()
        now = time.monotonic()
        if busy:
            quiet = None
        elif quiet is None:
            quiet = now
        elif now - quiet > 0.5:
            return quiet - t0
        time.sleep(0.05)
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--pages", default=",".join(PAGES), help="pages to time, e.g. data,home")
    args = parser.parse_args()
    timed = [name for name in args.pages.split(",") if name in PAGES]
    from playwright.sync_api import sync_playwright

    port, runs = _port(), tempfile.mkdtemp(prefix="page-render-runs-")
    env = {**os.environ, "XRAY_RUNS_DIR": runs, "XRAY_TOY_COMPILE": "0"}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                              "--server.headless", "true", "--server.port", str(port),
                              "--server.address", "127.0.0.1"], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if urllib.request.urlopen(base + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            # Warm the server: every page once (imports, caches), as a running app would be.
            warm = browser.new_page(viewport={"width": 1440, "height": 900})
            for path in PAGES.values():
                warm.goto(f"{base}/{path}")
                _rendered(warm)
            warm.close()
            print("| page | median first render (s) | all sessions (s) |\n|---|---:|---|")
            for name in timed:
                path, times = PAGES[name], []
                for _ in range(args.sessions):
                    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
                    page = ctx.new_page()
                    page.goto(f"{base}/{path}")
                    times.append(_rendered(page))
                    ctx.close()
                print(f"| {name} | {statistics.median(times):.2f} | "
                      f"{', '.join(f'{t:.2f}' for t in times)} |", flush=True)
            idle = browser.new_page(viewport={"width": 1440, "height": 900})
            idle.goto(f"{base}/train_gan")
            _rendered(idle)
            c0, t0 = _cpu_s(server.pid), time.monotonic()
            time.sleep(args.idle_s)
            share = (_cpu_s(server.pid) - c0) / (time.monotonic() - t0)
            print(f"\nidle Train GAN page (no run) open {args.idle_s:.0f} s: server CPU "
                  f"{100 * share:.1f}% of a core")
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
