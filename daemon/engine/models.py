"""Model names: aliases, `random:<size>`, local directories and hub ids.

Resolution is pure string/file-system work (no torch import), so the daemon and
the CLI can list and check models cheaply. Downloading happens only in the
worker process, through `fetch_model`, which reports byte progress.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dgx_music.daemon.engine.errors import EngineError

ALIASES: dict[str, str] = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
}
DESCRIPTIONS: dict[str, str] = {
    "small": "MusicGen small, 300M decoder (~2.4 GB download)",
    "medium": "MusicGen medium, 1.5B decoder (~8 GB download)",
    "large": "MusicGen large, 3.3B decoder (~13 GB download)",
    "melody": "MusicGen melody, 1.5B decoder, text + melody conditioning (~8 GB download)",
}
RANDOM_SIZES = ("small", "medium", "large", "melody")

# Files each backend needs from a facebook/musicgen-* repository (they hold both formats).
ALLOW_PATTERNS: dict[str, list[str]] = {
    "transformers": ["*.json", "*.safetensors", "*.model", "*.txt"],
    "audiocraft": ["state_dict.bin", "compression_state_dict.bin", "*.json"],
}

ProgressCb = Callable[[float | None, str], None]


@dataclass(frozen=True)
class ModelSpec:
    """What a model name means: kind is "hub", "local" or "random"."""

    name: str  # as the user wrote it
    kind: str
    ref: str  # hub repo id, absolute directory, or random size

    @property
    def is_melody(self) -> bool:
        return "melody" in self.ref.lower()


def resolve_model(name: str) -> ModelSpec:
    """Map a user-facing model name to a ModelSpec without touching the network."""
    if not isinstance(name, str) or not name.strip():
        raise EngineError("model_not_found", "empty model name")
    name = name.strip()
    if name.startswith("random:"):
        size = name.split(":", 1)[1]
        if size not in RANDOM_SIZES:
            raise EngineError(
                "model_not_found",
                f"unknown random model size {size!r}; use one of {', '.join('random:' + s for s in RANDOM_SIZES)}",
            )
        return ModelSpec(name, "random", size)
    if name in ALIASES:
        return ModelSpec(name, "hub", ALIASES[name])
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSpec(name, "local", str(path.resolve()))
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name:
        raise EngineError("model_not_found", f"model directory {name} does not exist")
    parts = name.split("/")
    if len(parts) == 2 and all(parts):
        return ModelSpec(name, "hub", name)
    known = ", ".join([*ALIASES, *("random:" + s for s in RANDOM_SIZES)])
    raise EngineError(
        "model_not_found",
        f"unknown model {name!r}: use {known}, a hub id like facebook/musicgen-small, or a directory",
    )


def accepts_melody(spec: ModelSpec) -> bool:
    """Whether a model follows a melody (chroma) as well as text, decided without loading it."""
    if spec.kind == "random":
        return spec.ref == "melody"
    if spec.kind == "local":
        try:
            return json.loads((Path(spec.ref) / "config.json").read_text()).get("model_type") == "musicgen_melody"
        except (OSError, ValueError, AttributeError):
            return False
    return spec.is_melody


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The huggingface hub cache in effect (explicit dir, $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache)."""
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


# Files that must be in a cached snapshot for a backend to load it without the network.
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "transformers": ("config.json",),
    "audiocraft": ("state_dict.bin", "compression_state_dict.bin"),
}


def cached_snapshot(repo_id: str, cache_dir: str | Path | None = None,
                    backend: str | None = None) -> Path | None:
    """The local snapshot folder of a hub repo if one is complete enough to use, else None.

    With `backend`, the files that backend reads must be there (the facebook
    repos hold both formats, and each backend downloads only its own).

    Reads the cache layout directly (refs/main -> snapshots/<hash>) so it costs no
    import of huggingface_hub and never touches the network.
    """
    root = hub_cache_dir(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    ref = root / "refs" / "main"
    snap: Path | None = None
    if ref.is_file():
        snap = root / "snapshots" / ref.read_text().strip()
    elif (root / "snapshots").is_dir():
        snaps = sorted((root / "snapshots").iterdir())
        snap = snaps[-1] if snaps else None
    if snap is None:
        return None
    if backend is not None:
        return snap if all((snap / f).exists() for f in REQUIRED_FILES[backend]) else None
    if not (snap / "config.json").exists() and not (snap / "state_dict.bin").exists():
        return None
    return snap


def is_cached(spec: ModelSpec, cache_dir: str | Path | None = None, backend: str | None = None) -> bool:
    """Whether loading `spec` needs no download (random and local models never do)."""
    if spec.kind == "random":
        return True
    if spec.kind == "local":
        return Path(spec.ref).is_dir()
    return cached_snapshot(spec.ref, cache_dir, backend) is not None


def known_models(cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The named models, each with whether it is already cached (for `dgx-music models`)."""
    out: list[dict[str, Any]] = []
    for alias, repo in ALIASES.items():
        snap = cached_snapshot(repo, cache_dir)
        out.append({"name": alias, "source": repo, "kind": "hub", "cached": snap is not None,
                    "path": str(snap) if snap else None, "description": DESCRIPTIONS[alias]})
    for size in RANDOM_SIZES:
        out.append({"name": f"random:{size}", "source": f"architecture of {ALIASES[size]}", "kind": "random",
                    "cached": True, "path": None,
                    "description": f"{size} architecture with random weights (noise; for benchmarks, no download)"})
    return out


def _byte_tqdm(progress_cb: ProgressCb) -> type:
    """A tqdm class for snapshot_download that forwards byte counts instead of drawing a bar."""
    from tqdm import tqdm

    class _Reporter(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)

        def display(self, *args: Any, **kwargs: Any) -> bool:
            if self.unit == "B" and "transfer" not in str(self.desc).lower() and self.total:
                progress_cb(min(1.0, self.n / self.total),
                            f"downloading {self.n / 1e6:.0f} / {self.total / 1e6:.0f} MB")
            return True

    return _Reporter


def fetch_model(spec: ModelSpec, backend: str, *, offline: bool, cache_dir: str | Path | None = None,
                progress_cb: ProgressCb | None = None) -> Path:
    """Return a local directory for a hub or local model, downloading on first use.

    Offline, only the cache is consulted (HF_HUB_OFFLINE is set by the worker too)
    and a missing model is a `model_not_found` error that says how to fix it.
    """
    if spec.kind == "local":
        return Path(spec.ref)
    if spec.kind != "hub":
        raise EngineError("internal", f"{spec.name} is not a downloadable model")
    cb = progress_cb or (lambda p, m: None)
    snap = cached_snapshot(spec.ref, cache_dir, backend if backend in REQUIRED_FILES else None)
    if offline:
        if snap is None:
            raise EngineError(
                "model_not_found",
                f"model {spec.name} ({spec.ref}) is not in the cache at {hub_cache_dir(cache_dir)} and offline "
                f"mode forbids downloading it; run once without --offline on a machine with internet, copy the "
                f"cache, or pass a local model directory",
            )
        return snap
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    cb(0.0, f"fetching {spec.ref}")
    try:
        path = snapshot_download(
            spec.ref, cache_dir=str(cache_dir) if cache_dir else None,
            allow_patterns=ALLOW_PATTERNS.get(backend), tqdm_class=_byte_tqdm(cb),
        )
    except RepositoryNotFoundError:
        raise EngineError("model_not_found", f"no model {spec.ref} on the Hugging Face hub") from None
    except Exception as exc:  # network errors come in many types
        if snap is not None:
            cb(None, f"could not check {spec.ref} for updates ({exc.__class__.__name__}); using the cached copy")
            return snap
        raise EngineError("model_not_found", f"could not download {spec.ref}: {exc}") from None
    cb(1.0, "download complete")
    return Path(path)
