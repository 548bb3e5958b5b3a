"""Separation models (HTDemucs, through demucs-infer): names, the on-disk format, downloads, test models.

A separation model on disk is a demucs "local repository": one or more `<signature>[-<sha256
prefix>].th` checkpoints (a pickled {klass, args, kwargs, state} package, demucs' own format) and
one `<name>.yaml` bag naming the checkpoints to average. demucs-infer's `get_model(name, repo=DIR)`
loads it and checks each file against the sha256 prefix in its name. Beside them, `dgx-music.json`
records the stems the model makes, so the daemon can tell how many tracks a job will write without
loading torch.

The named models (`htdemucs`, `htdemucs_ft`, `htdemucs_6s`) are Meta's published checkpoints,
downloaded on first use from the URLs demucs-infer pins (dl.fbaipublicfiles.com) into
<hub cache>/dgx-music--separation/<name>/, with byte progress, and read from there offline.

Only this module's `build_test_model` and the backend import torch; the rest is file work.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path
from typing import Any, Callable

from dgx_music.common.families import SEPARATION_ALIASES
from dgx_music.daemon.engine.errors import EngineError

ProgressCb = Callable[[float | None, str], None]

ROOT_URL = "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"
#: name -> the checkpoint files of its bag (demucs-infer 4.4.0's remote/*.yaml and files.txt).
CHECKPOINTS: dict[str, tuple[str, ...]] = {
    "htdemucs": ("955717e8-8726e21a.th",),
    "htdemucs_ft": ("f7e0c4bc-ba3fe64a.th", "d12395a8-e57c48e6.th", "92cfc3b6-ef3bcb9c.th",
                    "04573f0d-f3cf25b2.th"),
    "htdemucs_6s": ("5c90dfd2-34c22ccb.th",),
}
#: htdemucs_ft: one fine-tuned model per stem, each weighted only for its own (demucs' yaml).
BAG_WEIGHTS: dict[str, list[list[float]]] = {
    "htdemucs_ft": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
}
DESCRIPTIONS = {
    "htdemucs": "Hybrid Transformer Demucs v4: vocals, drums, bass, other (~80 MB download)",
    "htdemucs_ft": "HTDemucs fine-tuned per stem: a little better, 4x slower (~320 MB download)",
    "htdemucs_6s": "HTDemucs, six stems: adds guitar and piano (piano is weak upstream; ~55 MB download)",
}
INFO_FILE = "dgx-music.json"
DEFAULT_SOURCES = ("drums", "bass", "other", "vocals")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    from dgx_music.daemon.engine.models import hub_cache_dir

    return hub_cache_dir(cache_dir) / "dgx-music--separation"


def model_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / name


def is_separation_dir(path: str | Path) -> bool:
    """A demucs local repository: a bag (*.yaml) or checkpoints (*.th)."""
    p = Path(path)
    try:
        return any(f.suffix in (".th", ".yaml") for f in p.iterdir()) and not (p / "config.json").exists()
    except OSError:
        return False


def bag_name(path: str | Path) -> str:
    """The model a local repository holds: its one bag, else its one checkpoint's signature."""
    p = Path(path)
    bags = sorted(f.stem for f in p.glob("*.yaml"))
    if len(bags) == 1:
        return bags[0]
    sigs = sorted(f.stem.split("-")[0] for f in p.glob("*.th"))
    if not bags and len(sigs) == 1:
        return sigs[0]
    raise EngineError("bad_model", f"{p} holds {len(bags)} bags (*.yaml) and {len(sigs)} checkpoints (*.th); "
                                   "a separation model directory holds one bag, or one checkpoint")


def sources_of(name_or_dir: str) -> tuple[str, ...]:
    """The stems a model makes, in its order, without loading it (a directory's dgx-music.json)."""
    if name_or_dir in SEPARATION_ALIASES:
        return SEPARATION_ALIASES[name_or_dir]
    info = Path(name_or_dir).expanduser() / INFO_FILE
    try:
        sources = json.loads(info.read_text()).get("sources")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_SOURCES
    if isinstance(sources, list) and sources and all(isinstance(s, str) for s in sources):
        return tuple(sources)
    return DEFAULT_SOURCES


def is_cached(name: str, cache_dir: str | Path | None = None) -> bool:
    d = model_dir(name, cache_dir)
    return all((d / f).is_file() for f in CHECKPOINTS[name]) and (d / f"{name}.yaml").is_file()


def fetch(name: str, *, offline: bool, cache_dir: str | Path | None = None,
          progress_cb: ProgressCb | None = None, root_url: str | None = None) -> Path:
    """The local repository of a named model, downloading its checkpoints on first use (checked
    against the sha256 prefix in their names, written to a .part file and renamed)."""
    cb = progress_cb or (lambda p, m: None)
    d = model_dir(name, cache_dir)
    if is_cached(name, cache_dir):
        return d
    if offline:
        raise EngineError("model_not_found", f"separation model {name} is not in the cache at {d} and offline mode "
                                             "forbids downloading it; run once without --offline, copy the cache, "
                                             "or pass a model directory (--separator DIR)")
    d.mkdir(parents=True, exist_ok=True)
    url_root = root_url or os.environ.get("DGX_MUSIC_DEMUCS_URL") or ROOT_URL
    files = CHECKPOINTS[name]
    for i, fname in enumerate(files):
        target = d / fname
        if target.is_file():
            continue
        _download(url_root + fname, target, fname.split("-")[1].split(".")[0],
                  lambda done, total, i=i: cb(min(1.0, (i + (done / total if total else 0)) / len(files)),
                                              f"downloading {name}: {done / 1e6:.0f} / {total / 1e6:.0f} MB"
                                              + (f" (file {i + 1} of {len(files)})" if len(files) > 1 else "")))
    bag = {"models": [f.split("-")[0] for f in files]}
    if name in BAG_WEIGHTS:
        bag["weights"] = BAG_WEIGHTS[name]
    _write_text(d / f"{name}.yaml", json.dumps(bag) + "\n")  # JSON is YAML
    _write_text(d / INFO_FILE, json.dumps({"name": name, "sources": list(SEPARATION_ALIASES[name])}) + "\n")
    cb(1.0, "download complete")
    return d


def _download(url: str, target: Path, sha_prefix: str, on_bytes: Callable[[int, int], None]) -> None:
    part = target.with_name(target.name + ".part")
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
            total, done = int(resp.headers.get("Content-Length") or 0), 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                on_bytes(done, total)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise EngineError("model_not_found", f"could not download {url}: {exc}") from None
    if not sha.hexdigest().startswith(sha_prefix):
        part.unlink(missing_ok=True)
        raise EngineError("bad_model", f"{url} does not match its checksum (sha256 {sha_prefix}...)")
    os.replace(part, target)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ tools
#: The tiny test model: HTDemucs with the real architecture (STFT + waveform branches, cross-domain
#: transformer) at toy widths; 44.1 kHz stereo like the real ones.
TINY = dict(channels=4, depth=2, nfft=512, t_layers=1, t_heads=2, t_hidden_scale=1.0, dconv_comp=2, segment=2)


def build_test_model(directory: str | Path, *, backend: str = "demucs", seed: int = 0, python: str | None = None,
                     melody: bool = False, sources: tuple[str, ...] = DEFAULT_SOURCES) -> Path:
    """Write a tiny random HTDemucs as a demucs local repository (`test.yaml` + one checkpoint named
    with its sha256 prefix, as Meta's are); return the directory."""
    import torch
    from demucs_infer.htdemucs import HTDemucs

    if melody:
        raise ValueError("--melody is a MusicGen option; a separation model follows no melody")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = HTDemucs(sources=list(sources), **TINY)
    args, kwargs = model._init_args_kwargs
    tmp = out / "test.th.tmp"
    torch.save({"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": model.state_dict()}, tmp)
    prefix = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    for old in out.glob("*.th"):
        old.unlink()
    os.replace(tmp, out / f"{seed:08x}-{prefix}.th")
    _write_text(out / "test.yaml", json.dumps({"models": [f"{seed:08x}"]}) + "\n")
    _write_text(out / INFO_FILE, json.dumps({"name": "test", "sources": list(sources)}) + "\n")
    return out


def doctor_libraries(entry: dict[str, Any], info: dict[str, Any]) -> tuple[bool, str]:
    """The family's `doctor_libraries`: demucs-infer is needed for `stems --method separate`."""
    try:
        from importlib.metadata import version

        return True, f"demucs-infer {version('demucs-infer')}"
    except Exception:  # noqa: BLE001 - not installed, whatever the metadata error
        return False, "demucs-infer missing (pip install 'dgx-music[daemon]')"
