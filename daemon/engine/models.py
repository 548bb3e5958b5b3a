"""Model names: aliases, `random:<size>`, local directories and hub ids, for both families.

Resolution is pure string/file-system work (no torch import), so the daemon and
the CLI can list and check models cheaply. Downloading happens only in the
worker process, through `fetch_model`, which reports byte progress.

Each name resolves to a family (common/families.py): `musicgen` (transformers or
audiocraft format) or `ace-step` (a diffusers `AceStepPipeline`, recognised by
`_class_name` in its model_index.json).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dgx_music.common import families
from dgx_music.common.families import (ACE_STEP, ACE_STEP_ALIASES, ACE_STEP_RANDOM, LICENCES, MUSICGEN,
                                       MUSICGEN_ALIASES, SEPARATION, SEPARATION_ALIASES, family_for_name)
from dgx_music.common.fmt import with_article
from dgx_music.daemon.engine.errors import EngineError

ALIASES: dict[str, str] = dict(MUSICGEN_ALIASES)
DESCRIPTIONS: dict[str, str] = {
    "small": "MusicGen small, 300M decoder (~2.4 GB download)",
    "medium": "MusicGen medium, 1.5B decoder (~8 GB download)",
    "large": "MusicGen large, 3.3B decoder (~13 GB download)",
    "melody": "MusicGen melody, 1.5B decoder, text + melody conditioning (~8 GB download)",
    "ace-step": "ACE-Step 1.5 XL turbo: songs with sung lyrics, 10 s-10 min, 8 steps (recommended ACE-Step)",
    "ace-step-xl": "ACE-Step 1.5 XL turbo (same weights as ace-step)",
    "ace-step-base": "ACE-Step 1.5 XL base: classifier-free guidance, more steps, slower",
}
RANDOM_SIZES = ("small", "medium", "large", "melody")
#: The class diffusers writes into model_index.json for an ACE-Step pipeline.
ACE_STEP_CLASS = "AceStepPipeline"

# Files each backend needs from a facebook/musicgen-* repository (they hold both formats),
# and from a diffusers-format ACE-Step repository (model_index.json + one folder per component;
# fnmatch's * crosses "/", so these reach the component folders; *.bin/*.pt duplicates are skipped).
ALLOW_PATTERNS: dict[str, list[str]] = {
    "transformers": ["*.json", "*.safetensors", "*.model", "*.txt"],
    "audiocraft": ["state_dict.bin", "compression_state_dict.bin", "*.json"],
    ACE_STEP: ["model_index.json", "*.json", "*.safetensors", "*.txt", "*.model", "LICENSE*", "README.md"],
}

ProgressCb = Callable[[float | None, str], None]


@dataclass(frozen=True)
class ModelSpec:
    """What a model name means: kind is "hub", "local" or "random"; family is "musicgen" or "ace-step"."""

    name: str  # as the user wrote it
    kind: str
    ref: str  # hub repo id, absolute directory, or random size ("small", ..., "ace-step", "ace-step-base")
    family: str = MUSICGEN

    @property
    def is_melody(self) -> bool:
        return "melody" in self.ref.lower()


def resolve_model(name: str) -> ModelSpec:
    """Map a user-facing model name to a ModelSpec (with its family) without touching the network."""
    if not isinstance(name, str) or not name.strip():
        raise EngineError("model_not_found", "empty model name")
    name = name.strip()
    if name.startswith("random:"):
        size = name.split(":", 1)[1]
        if size in ACE_STEP_RANDOM:
            return ModelSpec(name, "random", size, ACE_STEP)
        if size not in RANDOM_SIZES:
            choices = ", ".join("random:" + s for s in (*RANDOM_SIZES, *ACE_STEP_RANDOM))
            raise EngineError("model_not_found", f"unknown random model size {size!r}; use one of {choices}")
        return ModelSpec(name, "random", size)
    if name in ALIASES:
        return ModelSpec(name, "hub", ALIASES[name])
    if name in ACE_STEP_ALIASES:
        return ModelSpec(name, "hub", ACE_STEP_ALIASES[name], ACE_STEP)
    if name in SEPARATION_ALIASES:  # Meta's checkpoints (separation_models.py), not a hub repository
        return ModelSpec(name, "hub", name, SEPARATION)
    try:
        path = Path(name).expanduser()
    except RuntimeError:  # "~user" for a user that does not exist: no such directory, not a daemon bug
        raise EngineError("model_not_found", f"model directory {name} does not exist (no such user's home)") \
            from None
    if path.is_dir():
        return ModelSpec(name, "local", str(path.resolve()), dir_family(path))
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name:
        raise EngineError("model_not_found", f"model directory {name} does not exist")
    parts = name.split("/")
    if len(parts) == 2 and all(parts):
        return ModelSpec(name, "hub", name, _hub_family(name))
    known = ", ".join([*ALIASES, *ACE_STEP_ALIASES, *SEPARATION_ALIASES,
                       *("random:" + s for s in (*RANDOM_SIZES, *ACE_STEP_RANDOM))])
    raise EngineError(
        "model_not_found",
        f"unknown model {name!r}: use {known}, a hub id like facebook/musicgen-small, or a directory",
    )


def dir_family(path: str | Path) -> str:
    """The family of a model directory: a diffusers AceStepPipeline is ace-step, anything else MusicGen.

    A directory with some other diffusers pipeline is refused here, naming the class it holds; a demucs
    repository (*.th checkpoints, a *.yaml bag) is a separation model."""
    from dgx_music.daemon.engine import separation_models

    index = Path(path) / "model_index.json"
    if not index.is_file():
        return SEPARATION if separation_models.is_separation_dir(path) else MUSICGEN
    try:
        cls = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError) as exc:
        raise EngineError("bad_model", f"cannot read {index}: {exc}") from None
    if cls == ACE_STEP_CLASS:
        return ACE_STEP
    raise EngineError("bad_model", f"{path} holds a diffusers {cls!r}, not {with_article(ACE_STEP_CLASS)} or a MusicGen")


def _hub_family(repo_id: str) -> str:
    """A hub id's family: from its name when that tells, else from a cached snapshot's model_index.json."""
    fam = family_for_name(repo_id)
    if fam is not None:
        return fam
    root = hub_cache_dir() / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    try:
        for snap in root.iterdir():
            if (snap / "model_index.json").is_file():
                return dir_family(snap)
    except (OSError, EngineError):
        pass
    return MUSICGEN


def accepts_melody(spec: ModelSpec) -> bool:
    """Whether a model follows a melody (chroma) as well as text, decided without loading it."""
    if not families.family(spec.family).does(families.MELODY):
        return False
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
    ACE_STEP: ("model_index.json",),
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
    if not any((snap / f).exists() for f in ("config.json", "state_dict.bin", "model_index.json")):
        return None
    return snap


def is_cached(spec: ModelSpec, cache_dir: str | Path | None = None, backend: str | None = None) -> bool:
    """Whether loading `spec` needs no download (random and local models never do)."""
    if spec.kind == "random":
        return True
    if spec.kind == "local":
        return Path(spec.ref).is_dir()
    if spec.ref in SEPARATION_ALIASES:
        from dgx_music.daemon.engine import separation_models

        return separation_models.is_cached(spec.ref, cache_dir)
    return cached_snapshot(spec.ref, cache_dir, _files_key(spec, backend)) is not None


def _files_key(spec: ModelSpec, backend: str | None) -> str | None:
    """Which file set a spec needs: a one-backend family's own (named by the family: ace-step), else
    the backend's (MusicGen's transformers and audiocraft read different files of one repo)."""
    return _family_files(spec.family, backend)


def _family_files(family: str, backend: str | None) -> str | None:
    return family if len(families.family(family).backends) == 1 else backend


def size_on_disk(path: str | Path | None) -> int | None:
    """Bytes a model directory or hub snapshot takes (hub snapshots link to shared blobs: each counted once)."""
    if path is None or not Path(path).is_dir():
        return None
    seen: set[tuple[int, int]] = set()
    total = 0
    for f in Path(path).rglob("*"):
        try:
            st = f.stat()  # follows the snapshot's symlinks into blobs/
        except OSError:
            continue
        if f.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def known_models(cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The named models of both families, each with its family, licence, whether it is cached and its
    size on disk (for `dgx-music models` and `doctor`)."""
    out: list[dict[str, Any]] = []
    for family, aliases in ((MUSICGEN, ALIASES), (ACE_STEP, ACE_STEP_ALIASES)):
        for alias, repo in aliases.items():
            snap = cached_snapshot(repo, cache_dir, _family_files(family, None))
            out.append({"name": alias, "family": family, "source": repo, "kind": "hub", "cached": snap is not None,
                        "path": str(snap) if snap else None, "size_bytes": size_on_disk(snap),
                        "licence": LICENCES[family], "description": DESCRIPTIONS[alias]})
    for size in RANDOM_SIZES:
        out.append({"name": f"random:{size}", "family": MUSICGEN, "source": f"architecture of {ALIASES[size]}",
                    "kind": "random", "cached": True, "path": None, "size_bytes": None,
                    "licence": LICENCES[MUSICGEN],
                    "description": f"{size} architecture with random weights (noise; for benchmarks, no download)"})
    for size in ACE_STEP_RANDOM:
        variant = "base" if size.endswith("base") else "turbo"
        out.append({"name": f"random:{size}", "family": ACE_STEP, "source": f"ACE-Step 1.5 {variant} architecture",
                    "kind": "random", "cached": True, "path": None, "size_bytes": None,
                    "licence": LICENCES[ACE_STEP],
                    "description": f"ACE-Step 1.5 {variant} architecture (3.2 B parameters) with random weights "
                                   "(noise; for benchmarks, no download)"})
    from dgx_music.daemon.engine import separation_models

    for name in SEPARATION_ALIASES:
        d = separation_models.model_dir(name, cache_dir)
        cached = separation_models.is_cached(name, cache_dir)
        out.append({"name": name, "family": SEPARATION, "source": separation_models.ROOT_URL, "kind": "hub",
                    "cached": cached, "path": str(d) if cached else None,
                    "size_bytes": size_on_disk(d) if cached else None, "licence": LICENCES[SEPARATION],
                    "description": separation_models.DESCRIPTIONS[name]})
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
    files = _files_key(spec, backend)
    snap = cached_snapshot(spec.ref, cache_dir, files if files in REQUIRED_FILES else None)
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
            allow_patterns=ALLOW_PATTERNS.get(files or ""), tqdm_class=_byte_tqdm(cb),
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
