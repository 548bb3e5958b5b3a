"""Engine subcommands. make-test-model, doctor and bench are local admin tools that run on the
GPU box itself, without the daemon (they import its engine, and torch only when run, so
`dgx-music --help` stays fast). `models` asks the daemon (`model.list`): over a forwarded socket
the models that matter are the daemon's, not the ones cached on the laptop.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from dgx_music.cli.extras import requires_extra
from dgx_music.common import families

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _add_common(p: argparse.ArgumentParser) -> None:
    """--socket/--config/--json via the shared helper when the framework provides it."""
    try:
        from dgx_music.cli.common import add_client_flags
    except ImportError:  # pragma: no cover - framework absent
        p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
        return
    add_client_flags(p)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "make-test-model", help="build a tiny random-weight MusicGen, ACE-Step or separation model for offline tests",
        description="Build a tiny model with random weights in the real on-disk format, then e.g. "
                    "`dgx-music daemon --model DIR`. MusicGen: tiny T5 + word-list tokenizer, tiny EnCodec, tiny "
                    "decoder. ACE-Step (--family ace-step): a diffusers AceStepPipeline with tiny widths but the "
                    "real 48 kHz stereo, 25 latents/s contract. Separation (--family separation): a tiny HTDemucs saved as a "
                    "demucs repository, for `dgx-music daemon --separator DIR` (its stems still add up to the source). "
                    "It makes noise, fast, and needs no download.\n\nexamples:\n  dgx-music make-test-model /tmp/tiny\n"
                    "  dgx-music make-test-model /tmp/tiny-ace --family ace-step\n"
                    "  dgx-music make-test-model /tmp/tiny-sep --family separation --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="directory to write the model into")
    p.add_argument("--family", choices=families.ALL_FAMILIES, default=families.DEFAULT_FAMILY,
                   help="model family (default: musicgen)")
    p.add_argument("--backend", choices=("transformers", "audiocraft"), default="transformers",
                   help="MusicGen on-disk format (default: transformers)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    p.add_argument("--melody", action="store_true",
                   help="build a MusicGen-melody (follows a melody as well as text; transformers only)")
    _add_common(p)
    p.set_defaults(func=make_test_model_cmd)
    requires_extra(p, modules=("torch", "transformers"))  # ace-step also diffusers: caught if missing

    p = subparsers.add_parser(
        "doctor", help="check torch, the GPU, the model cache, disk and socket permissions",
        description="Validate this machine for the engine: torch/CUDA versions, device name, compute capability, "
                    "memory, bf16, a matmul on the device, whether the configured model is cached, free disk in "
                    "the data directory and socket directory permissions. Exits 1 when something must be fixed.")
    _engine_flags(p)
    _add_common(p)
    p.set_defaults(func=doctor_cmd)
    requires_extra(p, modules=("torch",))

    p = subparsers.add_parser(
        "bench", help="measure load time, steps/s and real-time factor through the real worker",
        description="Load a model in a worker process and generate one batch, reporting load time, time to first "
                    "step, steps/s, seconds of compute per second of audio and peak memory. "
                    "`--model random:small` measures the real architecture without downloading it. "
                    "ACE-Step models (`--model random:ace-step`) are measured in this process, phase by phase: "
                    "load, text encoding, per-step time, VAE decode, real-time factor, peak RSS and CUDA memory.")
    _engine_flags(p, model_default="random:small")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds of audio (default 10)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="prompts generated together (default 1)")
    p.add_argument("--prompt", default=None, help="text prompt")
    p.add_argument("--lyrics", default=None, help="ACE-Step: lyrics to sing (default: a short verse and chorus)")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="ACE-Step: denoising steps (default: the variant's, 8 for turbo)")
    p.add_argument("--warmup", action="store_true",
                   help="warm up first (GPU kernels): a 1 s MusicGen clip, or one ACE-Step step")
    p.add_argument("--train", type=int, default=None, metavar="STEPS",
                   help="ACE-Step: measure LoRA training instead (STEPS steps on two clips of --duration s), "
                        "e.g. `dgx-music bench --model random:ace-step --train 3 --duration 10`")
    p.add_argument("--worker-python", default=None, metavar="PATH",
                   help="interpreter for the worker, e.g. .venv-audiocraft/bin/python for --backend audiocraft")
    p.add_argument("--decode", default=None, metavar="LOOP[,LOOP]",
                   help="MusicGen decode loop: fast, compiled or stock (default: engine.decode); several, "
                        "comma-separated, are measured in turn and shown side by side, e.g. "
                        "`dgx-music bench --model /tmp/tiny --duration 10 --decode stock,fast`")
    p.add_argument("--sampler", default=None, choices=("counter", "stock"),
                   help="sampler of the fast loops (default: engine.sampler): counter, or stock for transformers' "
                        "own draws (the same clip as stock for a seed)")
    _add_common(p)
    p.set_defaults(func=bench_cmd)
    requires_extra(p, modules=("torch", "transformers"))

    p = subparsers.add_parser("models", help="list the daemon's models and whether each is cached",
                              description="Ask the daemon which models it knows (small, medium, large, melody, "
                                          "random:*, the configured one), where they come from, whether each is "
                                          "in the daemon's model cache, which is configured and which is loaded.")
    _add_common(p)
    p.set_defaults(func=models_cmd)


def _engine_flags(p: argparse.ArgumentParser, model_default: str | None = None) -> None:
    p.add_argument("--model", default=model_default, help="model name, hub id or directory (default: config)")
    p.add_argument("--backend", choices=("transformers", "audiocraft"), default=None, help="default: config")
    p.add_argument("--device", default=None, help="auto, cuda, cuda:N, mps or cpu (default: config)")
    p.add_argument("--offline", action="store_true", default=None, help="never touch the network")
    p.add_argument("--cache-dir", type=Path, default=None, help="Hugging Face hub cache (default: HF_HUB_CACHE)")


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


def models_cmd(args: argparse.Namespace) -> int:
    from dgx_music.cli.common import run_client

    return run_client(args, _models)


async def _models(client: Any, args: argparse.Namespace) -> int:
    models: list[dict[str, Any]] = (await client.call("model.list", timeout=args.timeout))["models"]
    configured = next((m["name"] for m in models if m.get("configured")), None)
    if getattr(args, "json", False):
        _print_json({"models": models, "configured": configured})
        return EXIT_OK
    print(format_models(models))
    return EXIT_OK


def format_models(models: list[dict[str, Any]]) -> str:
    """One line per model: configured mark, cache state (loaded wins), description."""
    if not models:
        return "the daemon knows no models"
    width = max(len(m["name"]) for m in models)
    lines = []
    for m in models:
        mark = "*" if m.get("configured") else " "
        state = "cached" if m.get("cached") else "not cached"
        if m.get("kind") == "random":
            state = "no download"
        if m.get("loaded"):
            state = "loaded"
        lines.append(f"{mark} {m['name']:<{width}}  {state:<11}  {m.get('description') or ''}".rstrip())
    lines.append("(* = configured; set with --model or engine.model in the daemon's config)")
    return "\n".join(lines)
