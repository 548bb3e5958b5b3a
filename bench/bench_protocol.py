"""Protocol benchmark: latency under a paced load and throughput back to back.

Runs a real daemon in a child process and drives it from this one, so the two
compete for the machine's cores the way a daemon and its clients do.

    .venv/bin/python bench/bench_protocol.py [--clients 64] [--interval 0.02] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dgx_music.common import protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def open_conn(sock: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(sock))


async def paced_client(sock: Path, interval: float, offset: float, until: float, lat: list[float]) -> None:
    r, w = await open_conn(sock)
    frame = protocol.pack(protocol.request(1, "status"))
    next_at = time.perf_counter() + offset  # independent clients are not phase-locked
    while True:
        now = time.perf_counter()
        if now >= until:
            break
        if next_at > now:
            await asyncio.sleep(next_at - now)
        t0 = time.perf_counter()
        w.write(frame)
        msg = await protocol.read_frame(r)
        assert msg is not None and "result" in msg, msg
        lat.append(time.perf_counter() - t0)
        next_at += interval
    w.close()


async def flood_client(sock: Path, window: int, until: float, counter: list[int]) -> None:
    r, w = await open_conn(sock)
    frame = protocol.pack(protocol.request(1, "status"))
    w.write(frame * window)
    done = 0
    while time.perf_counter() < until:
        msg = await protocol.read_frame(r)
        assert msg is not None and "result" in msg
        done += 1
        w.write(frame)
    counter.append(done)
    w.close()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--flood-clients", type=int, default=8)
    ap.add_argument("--window", type=int, default=16, help="requests in flight per flooding client")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to let the daemon finish starting")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="dgxm-bench-", dir="/tmp"))
    sock = root / "d.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    daemon = subprocess.Popen([sys.executable, "-m", "dgx_music", "daemon", "--socket", str(sock),
                               "--data-dir", str(root / "data"), "--log-level", "warning"], env=env)
    try:
        for _ in range(300):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.settle)  # start-up work (audio warm-up) is not steady state

        lat: list[float] = []
        until = time.perf_counter() + args.seconds
        await asyncio.gather(*(paced_client(sock, args.interval, i * args.interval / args.clients, until, lat)
                               for i in range(args.clients)))
        offered = args.clients / args.interval
        paced = {
            "clients": args.clients, "interval_ms": args.interval * 1000, "offered_rps": offered,
            "requests": len(lat), "achieved_rps": round(len(lat) / args.seconds),
            "p50_ms": round(pct(lat, 50) * 1000, 3), "p99_ms": round(pct(lat, 99) * 1000, 3),
            "max_ms": round(max(lat) * 1000, 3), "mean_ms": round(statistics.fmean(lat) * 1000, 3),
        }
        counter: list[int] = []
        until = time.perf_counter() + args.seconds
        await asyncio.gather(*(flood_client(sock, args.window, until, counter)
                               for _ in range(args.flood_clients)))
        flood = {"clients": args.flood_clients, "window": args.window,
                 "requests": sum(counter), "rps": round(sum(counter) / args.seconds)}
        report = {"paced": paced, "back_to_back": flood, "cpus": os.cpu_count()}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"paced: {args.clients} clients x status every {args.interval * 1000:g} ms "
                  f"({offered:.0f} req/s offered, {paced['achieved_rps']} achieved): "
                  f"p50 {paced['p50_ms']} ms, p99 {paced['p99_ms']} ms, max {paced['max_ms']} ms")
            print(f"back to back: {args.flood_clients} clients x {args.window} in flight: {flood['rps']} req/s")
    finally:
        daemon.terminate()
        daemon.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
