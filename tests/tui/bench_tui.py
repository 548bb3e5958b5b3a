"""TUI benchmarks: launch-to-first-paint, and library search latency with 100,000 tracks.

    .venv/bin/python tests/tui/bench_tui.py [--tracks 100000] [--data-dir DIR] [--runs 5]

1. First paint: `dgx-music tui` is started in a pseudo-terminal (80x24) and timed
   from exec to the first frame on the terminal that shows the tab bar (the
   whole screen is drawn in one frame). Measured with no daemon (the TUI paints
   before it connects) and with the daemon below running.
2. Search latency: a daemon (its own process) serves a library of --tracks
   synthetic tracks built with bench/bench_library.py's generator through the
   real Store API; the TUI runs headless in this process on the real socket.
   Each keystroke in the search box is timed until the table holds the new
   first page (DataTable cleared and refilled, `LibraryView._fill` returned),
   then until the screen refresh after it has run (`call_after_refresh`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>]")


def first_paint(sock: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
        env.update(TERM="xterm-256color", COLUMNS="80", LINES="24")
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(sys.executable, [sys.executable, "-m", "dgx_music", "tui", "--socket", str(sock)], env)
        import fcntl
        import struct
        import termios
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        t0 = time.perf_counter()
        buf = b""
        painted = None
        while time.perf_counter() - t0 < 20:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                buf += chunk
                plain = ANSI.sub(b"", buf)
                if b"Compose F2" in plain and b"Library F4" in plain:
                    painted = time.perf_counter() - t0
                    break
        os.kill(pid, signal.SIGTERM)
        try:
            while True:
                r, _, _ = select.select([fd], [], [], 0.5)
                if not r or not os.read(fd, 65536):
                    break
        except OSError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
        if painted is None:
            raise SystemExit("no first paint seen in 20 s")
        times.append(painted)
    return times


async def build_library(data_dir: Path, n: int) -> None:
    from bench_library import build  # bench/bench_library.py: the store helper's generator

    from dgx_music.daemon.store import Store

    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "dgx-music.db"
    store = await Store.open(db)
    have = (await store.list_tracks(limit=1))["total"]
    if have != n:
        if have:
            raise SystemExit(f"{db} has {have} tracks, not {n}")
        await build(store, n)
    await store.close()


def start_daemon(root: Path, data_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    sock = root / "d.sock"
    cfg = root / "config.toml"
    cfg.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    log = open(root / "daemon.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "dgx_music", "daemon", "--socket", str(sock), "--data-dir",
                             str(data_dir), "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env)
    for _ in range(600):
        if sock.exists():
            break
        time.sleep(0.05)
    time.sleep(0.5)
    return proc, sock


async def search_latency(sock: Path, words: list[str]) -> list[tuple[str, float, float, int | None]]:
    from dgx_music.tui.app import DgxMusicApp
    from dgx_music.tui.library import LibraryView

    app = DgxMusicApp(sock, poll_model=False)
    results = []
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(400):
            if app.connected and app.library_view.queries > 0:
                break
            await pilot.pause(0.05)
        lib: LibraryView = app.library_view
        print(f"library open: {lib.total:,} tracks, {len(lib.tracks)} rows loaded")
        await pilot.press("f4", "slash")
        await pilot.pause(0.2)
        done: list[float] = []
        painted: list[float] = []
        orig = lib._fill

        def fill(params, res):  # type: ignore[no-untyped-def]
            orig(params, res)
            done.append(time.perf_counter())
            app.call_after_refresh(lambda: painted.append(time.perf_counter()))

        lib._fill = fill  # type: ignore[method-assign]
        for word in words:
            lib.query_one("#search").value = ""
            await pilot.pause(0.3)
            typed = ""
            for ch in word:
                typed += ch
                before = len(done)
                t0 = time.perf_counter()
                await pilot.press(ch)
                while len(done) == before:
                    await asyncio.sleep(0.0005)
                t_table = done[-1] - t0
                while len(painted) < len(done):
                    await asyncio.sleep(0.0005)
                t_frame = painted[-1] - t0
                results.append((typed, t_table * 1000, t_frame * 1000, lib.total))
                await pilot.pause(0.15)
    return results


def p95(xs: list[float]) -> float:
    """95th percentile, nearest rank."""
    xs = sorted(xs)
    return xs[max(0, -(-95 * len(xs) // 100) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--data-dir", type=Path, help="reuse/build the library here (default: a temp dir)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dgxtui-", dir="/tmp"))
    data_dir = args.data_dir or root / "data"

    t = first_paint(root / "none.sock", args.runs)
    print(f"first paint, no daemon: median {statistics.median(t) * 1000:.0f} ms "
          f"(min {min(t) * 1000:.0f}, max {max(t) * 1000:.0f}, {args.runs} runs)")

    asyncio.run(build_library(data_dir, args.tracks))
    proc, sock = start_daemon(root, data_dir)
    try:
        t = first_paint(sock, args.runs)
        print(f"first paint, daemon with {args.tracks:,} tracks: median {statistics.median(t) * 1000:.0f} ms "
              f"(min {min(t) * 1000:.0f}, max {max(t) * 1000:.0f})")
        res = asyncio.run(search_latency(sock, ["piano", "lofi", "dark jazz", "kalimba", "zzz"]))
        print(f"\n{'search text':<12} {'table ms':>9} {'frame ms':>9}  matches")
        for typed, tt, tf, total in res:
            print(f"{typed:<12} {tt:9.1f} {tf:9.1f}  {total if total is not None else '-'}")
        tts = [r[1] for r in res]
        tfs = [r[2] for r in res]
        print(f"\nkeystroke -> table: median {statistics.median(tts):.1f} ms, p95 {p95(tts):.1f} ms, "
              f"max {max(tts):.1f} ms; -> frame composed: median {statistics.median(tfs):.1f} ms, "
              f"p95 {p95(tfs):.1f} ms, max {max(tfs):.1f} ms ({len(res)} keystrokes)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()
