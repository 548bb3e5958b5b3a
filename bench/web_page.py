"""The listening room: page load to first paint on loopback, in the system's headless Chromium.

Starts a real daemon in a child process (HTTP on 127.0.0.1, an empty library in a temp dir, no
model loaded), then opens the page N times, each in a fresh browser context (no cache), and reads
the browser's own paint timing (`first-paint`, `first-contentful-paint`) and the moment the page's
scripts had wired everything (`performance.mark('dgx:ready')`: library, queue and compose form
read from the API). Prints medians as JSON. Goal (issue 19): first paint under 300 ms.

    .venv/bin/python bench/web_page.py                 # 7 loads
    .venv/bin/python bench/web_page.py --loads 15
    .venv/bin/python bench/web_page.py --url 'http://127.0.0.1:8765/?token=...'   # a running daemon
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("DGX_MUSIC_TEST_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_daemon(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A daemon with HTTP on a free loopback port; the page's URL (with its token) once it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    env["XDG_CONFIG_HOME"] = str(root / "config")  # a token the daemon makes lands here, not in yours
    proc = subprocess.Popen([sys.executable, "-m", "dgx_music", "daemon", "--socket", str(root / "d.sock"),
                             "--data-dir", str(root / "data"), "--http", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(root / "daemon.log", "wb"), env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited: {(root / 'daemon.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                token_file = root / "config" / "dgx-music" / "http-token"
                if token_file.is_file():  # the daemon made a token: the page's URL carries it once
                    url += f"?token={token_file.read_text().strip()}"
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("daemon did not start in 60 s")


async def measure(url: str, loads: int) -> dict[str, Any]:
    """Median paint timings of `loads` cold loads. A `?token=` in `url` is given to each fresh
    context as the cookie the daemon would have set, so the timing is of a page load, not of the
    one-time cookie exchange (a 303) before it."""
    from urllib.parse import parse_qs, urlsplit

    from playwright.async_api import async_playwright

    parts = urlsplit(url)
    token = parse_qs(parts.query).get("token", [None])[0]
    url = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        rows: list[dict[str, float]] = []
        try:
            for i in range(loads + 1):  # the first load warms the daemon's file cache: not counted
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                if token:
                    await context.add_cookies([{"name": "dgx_music_token", "value": token, "url": url}])
                page = await context.new_page()
                await page.goto(url)
                await page.wait_for_selector("html[data-ready]", timeout=30000)
                timing = await page.evaluate("""() => {
                    const out = {};
                    for (const e of performance.getEntriesByType('paint')) out[e.name] = e.startTime;
                    const nav = performance.getEntriesByType('navigation')[0];
                    out.dom_content_loaded = nav.domContentLoadedEventEnd;
                    const ready = performance.getEntriesByName('dgx:ready')[0];
                    if (ready) out.ready = ready.startTime;
                    return out; }""")
                await context.close()
                if i:
                    rows.append(timing)
        finally:
            await browser.close()

    def med(key: str) -> float | None:
        vals = [r[key] for r in rows if key in r]
        return round(statistics.median(vals), 1) if vals else None

    return {"loads": loads, "first_paint_ms": med("first-paint"),
            "first_contentful_paint_ms": med("first-contentful-paint"),
            "dom_content_loaded_ms": med("dom_content_loaded"), "ready_ms": med("ready"),
            "first_paint_max_ms": round(max(r.get("first-paint", 0) for r in rows), 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
                       f"load average {os.getloadavg()[0]:.1f}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loads", type=int, default=7, help="page loads to take the median of")
    ap.add_argument("--url", help="measure the page of a daemon already running here")
    args = ap.parse_args()
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    if args.url:
        print(json.dumps(asyncio.run(measure(args.url, args.loads)), indent=2))
        return
    with tempfile.TemporaryDirectory(prefix="dgxm-bench-", dir="/tmp") as tmp:
        proc, url = start_daemon(Path(tmp))
        try:
            print(json.dumps(asyncio.run(measure(url, args.loads)), indent=2))
        finally:
            proc.terminate()
            proc.wait(20)


if __name__ == "__main__":
    main()
