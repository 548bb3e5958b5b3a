"""Engine subcommands. make-test-model, doctor and bench are local admin tools that run on the
GPU box itself, without the daemon (they import its engine, and torch only when run, so
`dgx-music --help` stays fast). `models` asks the daemon (`model.list`): over a forwarded socket
the models that matter are the daemon's, not the ones cached on the laptop.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dgx_music.cli.daemon_cmd import box_command
from dgx_music.cli.extras import requires_extra
from dgx_music.common import families

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: The box-side tools (daemon/admin/engine_cmd.py), imported when one runs.
make_test_model_cmd = box_command("engine_cmd", "make_test_model_cmd")
doctor_cmd = box_command("engine_cmd", "doctor_cmd")
bench_cmd = box_command("engine_cmd", "bench_cmd")


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


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


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
