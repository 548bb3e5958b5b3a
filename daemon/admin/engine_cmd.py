"""The box-side engine tools behind `dgx-music make-test-model`, `doctor` and `bench` (their flags are
in cli/engine_commands.py). They run on the GPU box without the daemon and import its engine (torch
only when run); the CLI reaches them through its one bridge, cli/daemon_cmd.py."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from typing import Any

from dgx_music.common import families

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> Any:
    """The daemon's effective settings (config file, environment), or None if unreadable."""
    try:
        from dgx_music.cli.common import settings_from

        return settings_from(args)
    except Exception:  # noqa: BLE001 - engine tools must work even with a broken or absent config
        return None


def _opt(args: argparse.Namespace, settings: Any, name: str, key: str, default: Any) -> Any:
    value = getattr(args, name, None)
    if value is not None:
        return value
    if settings is not None:
        try:
            return settings[key]
        except Exception:  # noqa: BLE001
            pass
    return default


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _fail(args: argparse.Namespace, code: str, message: str) -> int:
    if getattr(args, "json", False):
        _print_json({"error": {"code": code, "message": message}})
    else:
        print(f"dgx-music: {message}", file=sys.stderr)
    return EXIT_FAILED


def make_test_model_cmd(args: argparse.Namespace) -> int:
    from dgx_music.daemon.engine.testmodel import build_test_model

    tty = sys.stderr.isatty() and not getattr(args, "json", False)
    fam = families.family(args.family)
    backend = args.backend if args.backend in fam.backends else next(iter(fam.backends))
    what = fam.test_model_what.format(backend=args.backend)
    if tty:
        print(f"building a tiny {what} in {args.dir} ...", file=sys.stderr)
    for library in fam.quiet_libraries:
        with contextlib.suppress(ImportError):
            # The tiny model's token ids sit outside its vocabulary on purpose (as in the real
            # checkpoints); transformers warns about it, and draws a bar for a 4 MB file (diffusers:
            # the bars of save_pretrained for a 1 MB pipeline).
            logging = importlib.import_module(f"{library}.utils.logging")
            logging.set_verbosity_error()
            logging.disable_progress_bar()
    try:
        out = build_test_model(args.dir, backend=args.backend, seed=args.seed, melody=args.melody,
                               family=args.family)
    except (RuntimeError, ValueError, OSError) as exc:
        return _fail(args, "failed", str(exc))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    data = {"path": str(out.resolve()), "family": args.family, "backend": backend,
            "melody": args.melody, "bytes": size}
    if getattr(args, "json", False):
        _print_json(data)
    else:
        flag = " --backend audiocraft" if backend == "audiocraft" else ""
        print(f"tiny {what} written to {data['path']} ({size / 1e6:.1f} MB)\n"
              f"try it: dgx-music daemon {fam.daemon_flag} {data['path']}{flag}")
    return EXIT_OK


def doctor_cmd(args: argparse.Namespace) -> int:
    from dgx_music.daemon.engine.doctor import doctor, format_report

    s = _settings(args)
    report = doctor(
        model=_opt(args, s, "model", "engine.model", "small"),
        backend=_opt(args, s, "backend", "engine.backend", "transformers"),
        device=_opt(args, s, "device", "engine.device", "auto"),
        offline=bool(_opt(args, s, "offline", "engine.offline", False)),
        cache_dir=args.cache_dir,
        data_dir=s.data_dir if s is not None else None,
        socket_path=s.socket if s is not None else None,
    )
    if getattr(args, "json", False):
        _print_json(report)
    else:
        print(format_report(report))
    return EXIT_OK if report["ok"] else EXIT_FAILED


def bench_cmd(args: argparse.Namespace) -> int:
    from dgx_music.common.params import ParamError
    from dgx_music.daemon.engine.bench import DEFAULT_PROMPT, bench, check_decode, format_bench
    from dgx_music.daemon.engine.errors import EngineError

    s = _settings(args)
    tty = sys.stderr.isatty() and not getattr(args, "json", False)
    last = [""]

    def progress(kind: str, data: dict[str, Any]) -> None:
        if not tty:
            return
        if kind == "model.loading":
            p = data.get("progress")
            line = f"loading: {data.get('message') or ''}" + (f" {p:.0%}" if isinstance(p, float) else "")
        elif kind == "model.loaded":
            line = f"loaded on {data.get('device')} in {data.get('load_seconds')} s"
        elif kind == "progress":
            line = f"step {data['step']}/{data['total']} ({data['elapsed']:.1f} s)"
        else:
            return
        sys.stderr.write("\r" + line[:100].ljust(len(last[0])))
        sys.stderr.flush()
        last[0] = line[:100]

    try:
        decode = check_decode(_opt(args, s, "decode", "engine.decode", "fast"))
    except ValueError as exc:
        print(f"dgx-music: --decode: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = bench(model=args.model or "random:small", decode=decode,
                       sampler=_opt(args, s, "sampler", "engine.sampler", "counter"),
                       backend=_opt(args, s, "backend", "engine.backend", "transformers"),
                       device=_opt(args, s, "device", "engine.device", "auto"),
                       offline=bool(_opt(args, s, "offline", "engine.offline", False)), cache_dir=args.cache_dir,
                       duration=args.duration, batch=args.batch, prompt=args.prompt or DEFAULT_PROMPT,
                       warmup=args.warmup, python=args.worker_python, progress_cb=progress,
                       lyrics=args.lyrics, steps=args.steps, train=args.train)
    except ParamError as exc:
        if tty:
            sys.stderr.write("\n")
        print(f"dgx-music: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:
        if tty:
            sys.stderr.write("\n")
        return _fail(args, exc.code, exc.message)
    if tty:
        sys.stderr.write("\n")
    if getattr(args, "json", False):
        _print_json(result)
    else:
        print(format_bench(result))
    return EXIT_OK
