"""Run `dgx-music bench` over a matrix and write one table: the issue-3 GPU measurement in one go.

Each cell is its own `dgx-music bench --json` process (a fresh worker, so no cell inherits
another's CUDA cache), with a 1 s warm-up generation first unless --no-warmup.

    .venv/bin/python bench/engine_matrix.py                      # random:small, batch 1 and 8, 10 s and 30 s
    .venv/bin/python bench/engine_matrix.py --backends transformers audiocraft \\
        --audiocraft-python .venv-audiocraft/bin/python --out /tmp/matrix
    .venv/bin/python bench/engine_matrix.py --model random:melody --batches 1 --durations 10
    .venv/bin/python bench/engine_matrix.py --model random:ace-step --batches 1 4 --durations 30 120
    .venv/bin/python bench/engine_matrix.py --decodes stock fast --batches 1 8 16 --durations 10 30  # issue 14

ACE-Step models (any name of that family; the backend column reads "diffusers") add the phases:
text encoding, seconds per denoising step and VAE decode.

Writes OUT/results.json (every bench result, plus failures with their stderr) and OUT/table.md,
and prints the table. A failed cell is recorded and the matrix goes on.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def run_cell(model: str, backend: str, batch: int, duration: float, *, warmup: bool, python: str | None,
             device: str, timeout: float, decode: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "dgx_music", "bench", "--model", model, "--backend", backend,
           "--batch", str(batch), "--duration", f"{duration:g}", "--device", device, "--json"]
    if decode:
        cmd += ["--decode", decode]
    if warmup:
        cmd.append("--warmup")
    if python:
        cmd += ["--worker-python", python]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s", "command": cmd}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}", "stderr": proc.stderr[-4000:], "command": cmd}
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        return {"error": "no JSON on stdout", "stdout": proc.stdout[-2000:], "command": cmd}
    return {**result, "wall_seconds": round(wall, 2), "command": cmd}


def _gib(n: int | None) -> str:
    return "-" if not n else f"{n / 1024**3:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| backend | decode | batch | seconds | device, dtype | load s | first step s | steps/s | text enc s | "
            "s/step | VAE decode s | generate s | RTF (batch) | RTF per clip | peak RSS GiB | peak CUDA GiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r.get('decode') or '-'} | {r['batch']} | {r['duration']:g} | "
                         f"failed: {r['error']} "
                         "| | | | | | | | | | | |")
            continue
        ace = r.get("family") == "ace-step"  # per-phase figures exist for ACE-Step only
        phases = (f"{r['text_encoding_seconds']} | {r['step_seconds']} | {r['vae_decode_seconds']}"
                  if ace else "- | - | -")
        lines.append(f"| {r.get('backend', '-')} | {r.get('decode') or '-'} | {r['batch']} | {r['duration']:g} | "
                     f"{r['device']}, {r['dtype']} | "
                     f"{r['load_seconds']:.1f} | {r['time_to_first_step']} | {r['steps_per_second']} | {phases} | "
                     f"{r['generate_seconds']:.1f} | {r['rtf']:.3f} | {r['rtf_per_clip']:.3f} | "
                     f"{_gib(r.get('peak_rss'))} | {_gib(r.get('peak_cuda'))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="random:small")
    ap.add_argument("--backends", nargs="+", default=["transformers"], choices=["transformers", "audiocraft"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--durations", nargs="+", type=float, default=[10.0, 30.0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--audiocraft-python", default=None, metavar="PATH",
                    help="worker interpreter for the audiocraft backend (e.g. .venv-audiocraft/bin/python)")
    ap.add_argument("--decodes", nargs="+", default=[None], choices=["fast", "compiled", "stock"],
                    help="MusicGen decode loops to compare (transformers backend; default: the configured one)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per cell (default 900)")
    ap.add_argument("--out", type=Path, default=None, help="directory for results.json and table.md")
    args = ap.parse_args(argv)

    rows: list[dict[str, Any]] = []
    for backend in args.backends:
        python = args.audiocraft_python if backend == "audiocraft" else None
        for batch in args.batches:
            for duration in args.durations:
                for decode in (args.decodes if backend == "transformers" else [None]):
                    print(f"{backend}, decode {decode or 'default'}, batch {batch}, {duration:g} s ...",
                          file=sys.stderr, flush=True)
                    cell = run_cell(args.model, backend, batch, duration, warmup=not args.no_warmup,
                                    python=python, device=args.device, timeout=args.timeout, decode=decode)
                    rows.append({"backend": backend, "batch": batch, "duration": duration, **cell,
                                 "decode": cell.get("decode", decode)})
        if any(r.get("family") == "ace-step" for r in rows):
            break  # the backend flag means nothing to ACE-Step: one pass is enough
    md = (f"`{' '.join(['bench/engine_matrix.py', *(argv if argv is not None else sys.argv[1:])])}` "
          f"on {platform.machine()}, model {args.model}\n\n{table(rows)}\n")
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        (args.out / "table.md").write_text(md)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
