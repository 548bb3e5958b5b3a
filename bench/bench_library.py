"""Library benchmark: 100,000 synthetic tracks, search and first-page list latency.

    .venv/bin/python bench/bench_library.py [--tracks 100000] [--runs 200] [--db PATH]

Builds the library through the real Store API (Store.import_tracks, in batches,
so it is a fast bulk insert but still goes through validation, the triggers and
the FTS index), then times Store.list_tracks calls end to end (validation, SQL,
row -> dict conversion, tags; first page = what the TUI asks for, total
included) and prints p50/p99 per query.  With --db pointing at an existing file
of the right size the build is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgx_music.daemon.store import Store  # noqa: E402

GENRES = ["lofi", "ambient", "synthwave", "jazz", "techno", "house", "drum and bass", "orchestral",
          "hip hop", "funk", "rock", "metal", "folk", "reggae", "trap", "dubstep", "chillout",
          "cinematic", "bossa nova", "blues", "disco", "trance", "garage", "soul", "country"]
MOODS = ["dreamy", "dark", "uplifting", "melancholic", "energetic", "calm", "epic", "groovy",
         "mysterious", "happy", "sad", "aggressive", "nostalgic", "warm", "cold", "hypnotic"]
INSTR = ["piano", "guitar", "bass", "drums", "strings", "synth", "saxophone", "trumpet", "flute",
         "violin", "cello", "organ", "rhodes", "808", "choir", "pads", "arpeggio", "vinyl crackle",
         "rain sounds", "tabla", "sitar", "harp", "marimba", "kalimba"]
EXTRA = ["with a catchy melody", "slow build", "in the style of the 80s", "for a video game",
         "at night", "on a rainy day", "driving on the highway", "for studying", "with heavy reverb",
         "minimal", "lush", "retro", "futuristic", "live recording feel", "tape saturation"]
TAGS = ["keeper", "chill", "loop", "intro", "outro", "demo", "draft", "favourite-set", "bright",
        "dark", "vocal-free", "short", "long", "game", "podcast", "sleep", "workout", "focus",
        "sample", "remix-me", "archive", "client-a", "client-b", "wip", "final", "lo-fi",
        "cinematic", "retro", "test", "todo"]
KEYS = [f"{n} {m}" for n in ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
        for m in ("major", "minor")]
MODELS = ["facebook/musicgen-small"] * 6 + ["facebook/musicgen-medium"] * 3 + ["facebook/musicgen-large"]


def synthetic(i: int, rng: random.Random, t0: float) -> dict:
    prompt = (f"{rng.choice(MOODS)} {rng.choice(GENRES)} with {rng.choice(INSTR)} and "
              f"{rng.choice(INSTR)} {rng.choice(EXTRA)}")
    job, idx = divmod(i, 4)
    n_peaks = 400
    peaks = [[-(p := rng.random()), p] for _ in range(n_peaks)]
    return {
        "id": f"{job + 1}-{idx}",
        "index": idx,
        "path": f"tracks/{job + 1:06d}/{idx}.flac",
        "prompt": prompt,
        "title": prompt[:60] if rng.random() < 0.8 else f"Take {i} {rng.choice(MOODS)}",
        "model": rng.choice(MODELS),
        "backend": "transformers",
        "seed": rng.randrange(2**32),
        "params": {"duration": 8.0, "temperature": 1.0, "top_k": 250, "cfg": 3.0},
        "duration": round(rng.uniform(4, 30), 2),
        "sample_rate": 32000,
        "channels": 1,
        "created": t0 + i * 7.0 + rng.random(),
        "lufs_before": rng.uniform(-30, -8),
        "lufs": -14.0,
        "true_peak": rng.uniform(-3, -1),
        "gain_db": rng.uniform(-10, 10),
        "bpm": None if rng.random() < 0.05 else round(rng.uniform(60, 180), 1),
        "bpm_confidence": rng.random(),
        "key": rng.choice(KEYS),
        "key_confidence": rng.random(),
        "peaks": peaks,
        "tags": rng.sample(TAGS, rng.choice([0, 0, 1, 1, 2, 3])),
        "rating": rng.choice([0, 0, 0, 1, 2, 3, 3, 4, 5]),
        "favorite": rng.random() < 0.05,
        "notes": "" if rng.random() < 0.9 else f"{rng.choice(MOODS)} idea, try with {rng.choice(INSTR)}",
    }


async def build(store: Store, n: int, batch: int = 2000) -> None:
    rng = random.Random(42)
    t0 = time.time() - n * 7.0
    start = time.perf_counter()
    for lo in range(0, n, batch):
        rows = [synthetic(i, rng, t0) for i in range(lo, min(n, lo + batch))]
        await store.import_tracks(rows)
        done = lo + len(rows)
        rate = done / (time.perf_counter() - start)
        print(f"\rbuilding library: {done:,}/{n:,} tracks ({rate:,.0f}/s)", end="", flush=True)
    print(f"\nbuilt {n:,} tracks in {time.perf_counter() - start:.1f} s")


QUERIES: list[tuple[str, dict]] = [
    # search (FTS5; the last token is a prefix match)
    ("search 'lofi'", {"search": "lofi"}),
    ("search 'piano ambient'", {"search": "piano ambient"}),
    ("search prefix 'synthw'", {"search": "synthw"}),
    ("search prefix 'dark jazz sax'", {"search": "dark jazz sax"}),
    ("search rare 'kalimba reggae highway'", {"search": "kalimba reggae highway"}),
    ("search no hit 'zzzqqq'", {"search": "zzzqqq"}),
    ("search tag word 'keeper'", {"search": "keeper"}),
    ("search hostile '\"NEAR(a* -b) OR'", {"search": '"NEAR(a* -b) OR'}),
    ("search 'piano' + favorite", {"search": "piano", "favorite": True}),
    ("search broad 'with' (every track)", {"search": "with"}),
    # search, best match first (bm25 over every match: cost grows with the matches)
    ("relevance 'lofi'", {"search": "lofi", "sort": "relevance"}),
    ("relevance 'piano ambient'", {"search": "piano ambient", "sort": "relevance"}),
    ("relevance prefix 'synthw'", {"search": "synthw", "sort": "relevance"}),
    ("relevance prefix 'dark jazz sax'", {"search": "dark jazz sax", "sort": "relevance"}),
    ("relevance rare 'kalimba reggae highway'", {"search": "kalimba reggae highway", "sort": "relevance"}),
    ("relevance tag word 'keeper'", {"search": "keeper", "sort": "relevance"}),
    ("relevance 'piano' + favorite", {"search": "piano", "favorite": True, "sort": "relevance"}),
    ("relevance prefix 'pi' (typing)", {"search": "pi", "sort": "relevance"}),
    ("relevance prefix 'dar' (typing)", {"search": "dar", "sort": "relevance"}),
    ("relevance broad 'with' (every track)", {"search": "with", "sort": "relevance"}),
    # first page lists
    ("list default (created desc)", {}),
    ("list title asc", {"sort": "title", "order": "asc"}),
    ("list bpm desc", {"sort": "bpm", "order": "desc"}),
    ("list duration asc", {"sort": "duration", "order": "asc"}),
    ("list rating desc", {"sort": "rating", "order": "desc"}),
    ("list favorite", {"favorite": True}),
    ("list tag 'keeper'", {"tag": "keeper"}),
    ("list model medium", {"model": "facebook/musicgen-medium"}),
    ("list model large, rating desc", {"model": "facebook/musicgen-large", "sort": "rating"}),
    ("list bpm 120-124", {"bpm_min": 120, "bpm_max": 124}),
    ("list key 'A minor', bpm sort", {"key": "A minor", "sort": "bpm"}),
    ("list tag+favorite+bpm", {"tag": "chill", "favorite": True, "bpm_min": 80, "bpm_max": 140}),
]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def measure(store: Store, runs: int) -> list[tuple[str, float, float, int | None]]:
    results = []
    for name, kw in QUERIES:
        for _ in range(3):  # warm the page cache
            await store.list_tracks(**kw)
        times = []
        total = None
        for _ in range(runs):
            t = time.perf_counter()
            page = await store.list_tracks(**kw)
            times.append((time.perf_counter() - t) * 1000)
            total = page["total"]
        results.append((name, statistics.median(times), pct(times, 99), total))
    # a later page (cursor): the default sort; relevance from its kept ranking, and by
    # keyset when the ranking is no longer kept (daemon restarted, or many newer searches)
    for name, kw, forget in (("list default, page 5 (cursor)", {}, False),
                             ("relevance 'lofi', page 5 (cursor)", {"search": "lofi", "sort": "relevance"}, False),
                             ("relevance 'lofi', page 5, ranking gone", {"search": "lofi", "sort": "relevance"}, True)):
        page = await store.list_tracks(**kw)
        for _ in range(3):
            page = await store.list_tracks(cursor=page["next_cursor"], **kw)
        times = []
        for _ in range(runs):
            if forget:
                store._rankings.clear()
            t = time.perf_counter()
            await store.list_tracks(cursor=page["next_cursor"], **kw)
            times.append((time.perf_counter() - t) * 1000)
        results.append((name, statistics.median(times), pct(times, 99), None))
    return results


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--db", type=Path, help="database file to build/reuse (default: a temp dir)")
    args = ap.parse_args()

    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="dgx-bench-")
        args.db = Path(tmp.name) / "library.sqlite"
    t = time.perf_counter()
    store = await Store.open(args.db)
    print(f"open (quick_check + migrations): {(time.perf_counter() - t) * 1000:.0f} ms")
    have = (await store.list_tracks(limit=1))["total"]
    if have != args.tracks:
        if have:
            sys.exit(f"{args.db} has {have} tracks, not {args.tracks}; use a fresh --db")
        await build(store, args.tracks)
        await store.close()  # PRAGMA optimize on close gathers planner statistics
        t = time.perf_counter()
        store = await Store.open(args.db)
        print(f"reopen (quick_check) of the built library: {(time.perf_counter() - t) * 1000:.0f} ms")
    size = args.db.stat().st_size / 1e6
    print(f"database: {size:.0f} MB, {args.runs} runs per query\n")
    results = await measure(store, args.runs)
    await store.close()
    width = max(len(r[0]) for r in results)
    print(f"{'query':<{width}}  {'p50 ms':>7}  {'p99 ms':>7}  total")
    for name, p50, p99, total in results:
        flag = "" if p99 < 20 else "   <-- over 20 ms"
        print(f"{name:<{width}}  {p50:7.2f}  {p99:7.2f}  {'' if total is None else total}{flag}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
