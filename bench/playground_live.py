"""The Playground as a user sees it, in headless Chromium: Play for --seconds in the default 2D
compare mode, then Pause; print the generator steps each trainer reached and how long Pause took
(click -> the button reads "Play" again), --repeat times. Needs Debian's chromium at
/usr/bin/chromium and the playwright package (both in requirements-test / .ci/run).

    python bench/playground_live.py --seconds 75 --repeat 1 --screenshot docs/playground.png

Numbers depend on the machine's load: run it on an idle machine, and compare runs made side by
side. Each repeat continues training where the previous one paused.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="Play this long before Pause")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--screenshot", help="save the page after the last Pause (PNG)")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {**os.environ, "XRAY_RUNS_DIR": tempfile.mkdtemp(prefix="bench-runs-")}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                          timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 1500})
            page.goto(f"http://127.0.0.1:{port}/playground")
            play = page.get_by_role("button", name="Play")
            play.wait_for(timeout=60_000)
            for i in range(args.repeat):
                play.click()
                time.sleep(args.seconds)
                t0 = time.perf_counter()
                page.get_by_role("button", name="Pause").click()
                play.wait_for(timeout=60_000)
                pause_s = time.perf_counter() - t0
                time.sleep(2)  # the last refresh draws
                steps = re.findall(r"(GAN|WGAN \(clip\)|WGAN-GP) · step (\d+)",
                                   page.inner_text("body"))
                print(f"repeat {i + 1}: Pause took {pause_s:.2f} s; generator steps "
                      + ", ".join(f"{loss} {n}" for loss, n in steps), flush=True)
            if args.screenshot:
                page.screenshot(path=args.screenshot, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
