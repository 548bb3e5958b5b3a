"""`dgx-music doctor`: can this box run the model, and if not, why not.

Each check is a verdict line (ok / warn / fail) with a detail a person can act
on; `info` carries the raw facts for --json. It runs in the calling process
(it imports torch) and never touches the network.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any

from dgx_music.common.fmt import plural
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.models import hub_cache_dir, is_cached, known_models, resolve_model

GB = 1024**3


def _check(checks: list[dict[str, Any]], name: str, status: str, detail: str) -> None:
    checks.append({"name": name, "status": status, "detail": detail})


def doctor(*, model: str = "small", backend: str = "transformers", device: str = "auto",
           data_dir: str | Path | None = None, socket_path: str | Path | None = None,
           cache_dir: str | Path | None = None, offline: bool = False) -> dict[str, Any]:
    """Run every check; returns {"ok": bool, "checks": [...], "info": {...}}."""
    checks: list[dict[str, Any]] = []
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                            "machine": platform.machine()}

    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken torch install shows up here
        _check(checks, "torch", "fail", f"torch does not import: {exc}")
        return {"ok": False, "checks": checks, "info": info}
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version()
                if torch.backends.cudnn.is_available() else None)
    _check(checks, "torch", "ok", f"torch {torch.__version__}" + (f", built for CUDA {torch.version.cuda}"
                                                                    if torch.version.cuda else ", CPU build"))

    _gpu_checks(torch, checks, info, device)
    _backend_check(checks, info, backend)
    _families_check(checks, info, cache_dir)
    _model_check(checks, info, model, cache_dir, offline, backend)
    if data_dir is not None:
        _disk_check(checks, info, Path(data_dir))
    if socket_path is not None:
        _socket_check(checks, info, Path(socket_path))
    ok = all(c["status"] != "fail" for c in checks)
    return {"ok": ok, "checks": checks, "info": info}


def _gpu_checks(torch: Any, checks: list[dict[str, Any]], info: dict[str, Any], device: str) -> None:
    from dgx_music.daemon.engine.backend import pick_device, pick_dtype

    cuda = torch.cuda.is_available()
    info["cuda_available"] = cuda
    if cuda:
        n = torch.cuda.device_count()
        devs = []
        for i in range(n):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            devs.append({"index": i, "name": props.name, "capability": f"{props.major}.{props.minor}",
                         "memory_total": int(total), "memory_free": int(free),
                         "bf16": bool(torch.cuda.is_bf16_supported())})
        info["gpus"] = devs
        for d in devs:
            _check(checks, f"gpu{d['index']}", "ok",
                   f"{d['name']}, compute capability {d['capability']}, {d['memory_free'] / GB:.1f} of "
                   f"{d['memory_total'] / GB:.1f} GiB free, bf16 {'yes' if d['bf16'] else 'no (fp16 used)'}")
            if d["memory_free"] < 4 * GB:
                _check(checks, f"gpu{d['index']}-memory", "warn",
                       f"only {d['memory_free'] / GB:.1f} GiB free: musicgen-small needs ~2-4 GiB, large ~10+")
        arches = torch.cuda.get_arch_list()
        info["cuda_arch_list"] = arches
        for d in devs:
            sm = "sm_" + d["capability"].replace(".", "")
            major = d["capability"].split(".")[0]
            if arches and sm not in arches and not any(a.startswith(f"sm_{major}") or a.startswith("compute_")
                                                        for a in arches):
                _check(checks, f"gpu{d['index']}-arch", "fail",
                       f"this torch build has kernels for {', '.join(arches)} but not {sm}; install a torch "
                       f"wheel built for this GPU (on DGX Spark: the cu130 wheels)")
    else:
        mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        info["mps_available"] = mps
        _check(checks, "gpu", "warn" if not mps else "ok",
               "Apple MPS available" if mps else
               "no CUDA GPU visible: generation runs on the CPU (~20 s per 5 s of audio with small); check "
               "`nvidia-smi` and that torch is a CUDA build")
    try:
        dev = pick_device(device)
        dtype = pick_dtype(dev)
        info.update(device=dev, dtype=str(dtype).removeprefix("torch."))
        t0 = time.perf_counter()
        a = torch.randn(512, 512, device=dev, dtype=dtype)
        b = torch.randn(512, 512, device=dev, dtype=dtype)
        c = a @ b
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1000
        ref = a.float().cpu() @ b.float().cpu()
        err = float((c.float().cpu() - ref).abs().max() / (ref.abs().max() + 1e-9))
        info["matmul"] = {"ms": round(ms, 2), "relative_error": err}
        _check(checks, "matmul", "ok" if err < 0.05 else "fail",
               f"512x512 {info['dtype']} matmul on {dev}: {ms:.1f} ms, relative error {err:.1e}")
    except EngineError as exc:
        _check(checks, "device", "fail", exc.message)
    except Exception as exc:  # noqa: BLE001 - a driver/kernel problem is exactly what doctor is for
        _check(checks, "matmul", "fail", f"a matmul on {device} failed: {type(exc).__name__}: {exc}")


def _backend_check(checks: list[dict[str, Any]], info: dict[str, Any], backend: str) -> None:
    try:
        import transformers

        info["transformers"] = transformers.__version__
        has = hasattr(transformers, "MusicgenForConditionalGeneration")
        _check(checks, "transformers", "ok" if has else "fail",
               f"transformers {transformers.__version__}" + ("" if has else " has no MusicGen: upgrade it"))
    except Exception as exc:  # noqa: BLE001
        _check(checks, "transformers", "fail" if backend == "transformers" else "warn", f"does not import: {exc}")
    if backend == "audiocraft":
        try:
            import audiocraft  # type: ignore[import-not-found]

            info["audiocraft"] = audiocraft.__version__
            _check(checks, "audiocraft", "ok", f"audiocraft {audiocraft.__version__}")
        except Exception as exc:  # noqa: BLE001
            _check(checks, "audiocraft", "fail", f"backend audiocraft selected but it does not import ({exc}); "
                                                  "see docs/engine.md for its environment")


def _families_check(checks: list[dict[str, Any]], info: dict[str, Any], cache_dir: str | Path | None) -> None:
    """Both model families: does each one's library import, which of its named models are cached, licence."""
    from dgx_music.common.families import ALL_FAMILIES, LICENCES, family

    fams: dict[str, dict[str, Any]] = {}
    for m in known_models(cache_dir):
        if m["kind"] == "hub":
            fams.setdefault(m["family"], {"models": []})["models"].append(
                {"name": m["name"], "source": m["source"], "cached": m["cached"], "size_bytes": m["size_bytes"]})
    for fam in ALL_FAMILIES:
        entry = fams.setdefault(fam, {"models": []})
        entry["licence"] = LICENCES[fam]
        cached = [m["name"] for m in entry["models"] if m["cached"]]
        where = f"cached: {', '.join(cached)}" if cached else "no named model cached yet"
        decl = family(fam)
        ok, detail = decl.tool("doctor_libraries")(entry, info)
        entry["ok"] = ok
        _check(checks, f"family-{fam}", "ok" if ok else "fail" if decl.doctor_required else "warn",
               f"{detail}; {where}; licence {LICENCES[fam]}")
    info["families"] = fams


def musicgen_libraries(entry: dict[str, Any], info: dict[str, Any]) -> tuple[bool, str]:
    """transformers is needed (the family's `doctor_libraries`; _backend_check imported it)."""
    return "transformers" in info, f"transformers {info.get('transformers', 'missing')}"


def acestep_libraries(entry: dict[str, Any], info: dict[str, Any]) -> tuple[bool, str]:
    """The family's `doctor_libraries`: diffusers with AceStepPipeline is needed; accelerate (fast loading) and peft (--lora) are advised."""
    try:
        import diffusers
    except Exception as exc:  # noqa: BLE001
        return False, f"diffusers does not import ({exc}): ACE-Step models cannot load"
    entry["diffusers"] = diffusers.__version__
    if not hasattr(diffusers, "AceStepPipeline"):
        return False, f"diffusers {diffusers.__version__} has no AceStepPipeline: upgrade it (0.42 or later)"
    parts = [f"diffusers {diffusers.__version__}"]
    ok = True
    for mod, why in (("accelerate", "slower loads, more memory"), ("peft", "no --lora")):
        try:
            entry[mod] = __import__(mod).__version__
            parts.append(f"{mod} {entry[mod]}")
        except Exception:  # noqa: BLE001
            parts.append(f"{mod} missing ({why})")
            ok = False
    return ok, ", ".join(parts)


def _model_check(checks: list[dict[str, Any]], info: dict[str, Any], model: str,
                 cache_dir: str | Path | None, offline: bool, backend: str) -> None:
    try:
        spec = resolve_model(model)
    except EngineError as exc:
        _check(checks, "model", "fail", exc.message)
        return
    cached = is_cached(spec, cache_dir, backend)
    info["model"] = {"name": model, "kind": spec.kind, "ref": spec.ref, "family": spec.family, "cached": cached,
                     "hub_cache": str(hub_cache_dir(cache_dir))}
    if spec.kind == "random":
        _check(checks, "model", "ok", f"{model}: random weights, nothing to download (noise; for benchmarks)")
    elif cached:
        _check(checks, "model", "ok", f"{model} ({spec.ref}) is available locally")
    elif offline:
        _check(checks, "model", "fail", f"{model} ({spec.ref}) is not cached in {hub_cache_dir(cache_dir)} and "
                                        "offline mode is on: it cannot load")
    else:
        _check(checks, "model", "warn", f"{model} ({spec.ref}) is not cached yet: the first job downloads it")


def _disk_check(checks: list[dict[str, Any]], info: dict[str, Any], data_dir: Path) -> None:
    probe = data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    info["disk"] = {"path": str(data_dir), "free": usage.free, "total": usage.total}
    free = usage.free / GB
    status = "ok" if free >= 10 else "warn" if free >= 2 else "fail"
    _check(checks, "disk", status, f"{free:.1f} GiB free for {data_dir}" +
           ("" if status == "ok" else " (a 30 s WAV is ~2-6 MB; models need 2-13 GB)"))


def _socket_check(checks: list[dict[str, Any]], info: dict[str, Any], socket_path: Path) -> None:
    d = socket_path.parent
    if not d.exists():
        _check(checks, "socket-dir", "ok", f"{d} does not exist yet; the daemon creates it owner-only")
        return
    st = os.lstat(d)
    mode = stat.S_IMODE(st.st_mode)
    info["socket_dir"] = {"path": str(d), "mode": oct(mode), "uid": st.st_uid}
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        _check(checks, "socket-dir", "fail", f"{d} is not a plain directory")
    elif st.st_uid != os.getuid():
        _check(checks, "socket-dir", "fail", f"{d} is owned by uid {st.st_uid}, not you (uid {os.getuid()})")
    elif mode & 0o022:
        _check(checks, "socket-dir", "fail", f"{d} is writable by others (mode {oct(mode)}): chmod 700 {d}")
    elif mode & 0o077:
        _check(checks, "socket-dir", "warn", f"{d} is readable by others (mode {oct(mode)}); 0700 is safer")
    else:
        _check(checks, "socket-dir", "ok", f"{d} is private (mode {oct(mode)})")


def format_report(report: dict[str, Any]) -> str:
    """Verdict lines for people: one per check, then an overall verdict."""
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = [f"[{marks[c['status']]}] {c['name']}: {c['detail']}" for c in report["checks"]]
    fails = sum(c["status"] == "fail" for c in report["checks"])
    warns = sum(c["status"] == "warn" for c in report["checks"])
    if fails:
        lines.append(f"verdict: NOT READY ({plural(fails, 'problem')} above must be fixed)")
    elif warns:
        lines.append(f"verdict: ready, with {plural(warns, 'warning')}")
    else:
        lines.append("verdict: ready")
    return "\n".join(lines)
