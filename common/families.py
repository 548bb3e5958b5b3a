"""Model families: which kind of model a name means, without touching the disk or torch.

A generation request names a model; its family decides which parameters exist
(common/schemas.py holds one typed schema per family). Built-in names and
`random:` names are known here, so the CLI and TUI can pick the right fields
offline. A local directory or an arbitrary hub id is only known to the daemon,
which looks at the files (daemon/engine/models.py): `family_for_name` answers
None for those.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping

MUSICGEN = "musicgen"
ACE_STEP = "ace-step"
SEPARATION = "separation"
#: The generative families (a prompt -> music; common/schemas.py has one request schema each).
FAMILIES = (MUSICGEN, ACE_STEP)
#: The family of a job row or model that names none (every row stored before families existed).
DEFAULT_FAMILY = MUSICGEN

#: Tasks a family's backends run. Generation from a prompt is `text2music`; `continue` extends a
#: track, `melody` follows one; the rest are ACE-Step's task types on a source (acestep_tasks.py).
TEXT2MUSIC, CONTINUE, MELODY = "text2music", "continue", "melody"
REPAINT_TASK, COVER_TASK, EXTRACT_TASK, LEGO_TASK = "repaint", "cover", "extract", "lego"
#: Source separation: a mix -> its stems (vocals, drums, bass, other...), by a separation model.
SEPARATE_TASK = "separate"

#: Training a LoRA (a style) on your own audio, in the worker (daemon/engine/acestep_train.py).
TRAIN = "train"


@dataclass(frozen=True)
class AudioInput:
    """A named audio input a family's worker takes: its channel count and rate (None: the model's)."""

    channels: int
    sample_rate: int | None = None


@dataclass(frozen=True)
class Family:
    """What a model family can do, declared once: everything outside this registry asks it instead
    of comparing family names, so adding a family adds an entry here and its backend, nothing else."""

    name: str
    title: str  # as people write it
    licence: str
    #: Backend name -> "module:Class" (imported in the worker only: backends import torch).
    backends: Mapping[str, str]
    tasks: tuple[str, ...] = (TEXT2MUSIC,)
    #: Backends whose audio can be heard while it is made (job.listen); empty: none, `why_no_stream` says why.
    streaming_backends: tuple[str, ...] = ()
    why_no_stream: str = ""
    audio_inputs: Mapping[str, AudioInput] = field(default_factory=dict)
    #: Tracks keep the request's lyrics, vocal language and asked tempo/key/metre.
    song_fields: bool = False
    #: Parameter defaults (steps, guidance...) follow the model variant: a job row names its model.
    model_defaults: bool = False
    #: Named models to suggest for the family's operations (tasks on a source), in refusals.
    operation_models: tuple[str, ...] = ()
    # The per-family tools, each "module:function" (imported by the tool only, see `tool`: they
    # import torch, which the light client never loads).
    #: Writes a tiny random model: (directory, *, backend, seed, python, melody) -> Path.
    test_model: str = ""
    #: `dgx-music bench`: (**options) -> result dict, and result dict -> text.
    bench: str = ""
    bench_format: str = ""
    #: `doctor`: (entry, info) -> (ok, detail) for the family's libraries; `doctor_required`: a
    #: family whose libraries are missing fails the doctor (else it warns: the family is optional).
    doctor_libraries: str = ""
    doctor_required: bool = False
    #: The model picker's group label (TUI and web page), and the CSS class the TUI compose form takes
    #: for the family's fields ("": none).
    label: str = ""
    css_class: str = ""
    #: count x duration: the most audio one job of the family makes (bounds memory and result size).
    job_audio: float = 480.0
    #: `make-test-model`: what it builds ({backend}: the MusicGen backend), and the libraries whose
    #: hub logging it quiets while building.
    test_model_what: str = ""
    #: The daemon flag that picks a model of the family (`make-test-model` says how to try one).
    daemon_flag: str = "--model"
    quiet_libraries: tuple[str, ...] = ("transformers",)
    #: Tasks upstream trains only on the family's base model (`base_model`); a distilled variant
    #: (`distilled_names`) is swapped for it when the request names no model, else refused.
    base_only_tasks: tuple[str, ...] = ()
    base_model: str = ""
    distilled_names: tuple[str, ...] = ()

    def needs_base(self, task: str, model: str) -> bool:
        """Whether `model` is a distilled variant that cannot run `task` (the base model must)."""
        return task in self.base_only_tasks and model.strip() in self.distilled_names

    def backend_for(self, name: str) -> str:
        """The "module:Class" for backend `name`; a family with one backend ignores the name."""
        if len(self.backends) == 1:
            return next(iter(self.backends.values()))
        return self.backends[name]

    def tool(self, which: str) -> Any:
        """The callable a per-family tool field (`test_model`, `bench`, ...) names, imported now."""
        module, _, attr = getattr(self, which).partition(":")
        return getattr(importlib.import_module(module), attr)

    def does(self, task: str) -> bool:
        return task in self.tasks


_ENGINE = "dgx_music.daemon.engine."
REGISTRY: dict[str, Family] = {
    MUSICGEN: Family(
        name=MUSICGEN, title="MusicGen", licence="CC-BY-NC-4.0 (weights), MIT (code)",
        backends={"transformers": _ENGINE + "transformers_backend:TransformersBackend",
                  "audiocraft": _ENGINE + "audiocraft_backend:AudiocraftBackend"},
        tasks=(TEXT2MUSIC, CONTINUE, MELODY), streaming_backends=("transformers",),
        audio_inputs={"melody": AudioInput(1), "prefix": AudioInput(1)},
        test_model=_ENGINE + "testmodel:build_musicgen_test_model",
        bench=_ENGINE + "bench:bench_musicgen", bench_format=_ENGINE + "bench:format_musicgen",
        doctor_libraries=_ENGINE + "doctor:musicgen_libraries", doctor_required=True,
        label="MusicGen (instrumental)", job_audio=480.0,  # what 16 clips of 30 s cost
        test_model_what="{backend} MusicGen"),
    ACE_STEP: Family(
        name=ACE_STEP, title="ACE-Step", licence="MIT (weights and code)",
        backends={"diffusers": _ENGINE + "acestep_backend:AceStepBackend"},
        tasks=(TEXT2MUSIC, REPAINT_TASK, COVER_TASK, EXTRACT_TASK, LEGO_TASK, TRAIN),
        why_no_stream="ACE-Step is a diffusion model: it makes the whole clip at once",
        audio_inputs={"source": AudioInput(2, 48000)}, song_fields=True, model_defaults=True,
        operation_models=("ace-step", "ace-step-base"),
        test_model=_ENGINE + "acestep_testmodel:build_test_model",
        bench=_ENGINE + "acestep_bench:bench", bench_format=_ENGINE + "acestep_bench:format_acestep",
        doctor_libraries=_ENGINE + "doctor:acestep_libraries",
        label="ACE-Step (songs, lyrics)", css_class="-ace-step",
        job_audio=1200.0,  # two 10-minute songs; latents and decode grow with both
        test_model_what="ACE-Step pipeline", quiet_libraries=("transformers", "diffusers"),
        base_only_tasks=(EXTRACT_TASK, LEGO_TASK), base_model="ace-step-base",
        distilled_names=("ace-step", "ace-step-xl", "random:ace-step", "ACE-Step/acestep-v15-xl-turbo-diffusers")),
    SEPARATION: Family(
        name=SEPARATION, title="Demucs", licence="MIT (weights and code)",
        backends={"demucs": _ENGINE + "separation_backend:SeparationBackend"},
        tasks=(SEPARATE_TASK,), why_no_stream="a separation model splits a whole track; it makes no new music",
        audio_inputs={"source": AudioInput(2, 48000)}, operation_models=("htdemucs", "htdemucs_6s"),
        test_model=_ENGINE + "separation_models:build_test_model",
        doctor_libraries=_ENGINE + "separation_models:doctor_libraries",
        label="Demucs (stems)", job_audio=600.0 * 6,  # six 10-minute stems
        test_model_what="HTDemucs separation model", daemon_flag="--separator", quiet_libraries=()),
}
#: Every family, the separation models' included (a track's `family` is one of these).
ALL_FAMILIES = tuple(REGISTRY)
assert tuple(f for f in REGISTRY if REGISTRY[f].does(TEXT2MUSIC)) == FAMILIES


def family(name: str | None) -> Family:
    """The registry entry of a family name (None: the default family); KeyError for an unknown one."""
    return REGISTRY[name or DEFAULT_FAMILY]


def with_task(task: str) -> list[str]:
    """The families that run `task`."""
    return [f.name for f in REGISTRY.values() if f.does(task)]

#: Licence of each family's official weights, shown by `models` and `doctor`.
LICENCES = {name: f.licence for name, f in REGISTRY.items()}

MUSICGEN_ALIASES: dict[str, str] = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
}

# Official diffusers-format repositories (the id diffusers' own AceStepPipeline docs load).
ACE_STEP_ALIASES: dict[str, str] = {
    "ace-step": "ACE-Step/acestep-v15-xl-turbo-diffusers",  # turbo: 8 steps, no CFG; the recommended one
    "ace-step-xl": "ACE-Step/acestep-v15-xl-turbo-diffusers",
    "ace-step-base": "ACE-Step/acestep-v15-xl-base-diffusers",  # base: CFG, more steps, all task types
}

#: Separation models (demucs-infer's HTDemucs checkpoints, daemon/engine/separation_models.py):
#: name -> the stems it makes, in the order it makes them.
SEPARATION_ALIASES: dict[str, tuple[str, ...]] = {
    "htdemucs": ("drums", "bass", "other", "vocals"),
    "htdemucs_ft": ("drums", "bass", "other", "vocals"),  # four fine-tuned models, one per stem: 4x slower
    "htdemucs_6s": ("drums", "bass", "other", "vocals", "guitar", "piano"),
}
DEFAULT_SEPARATOR = "htdemucs"

MUSICGEN_RANDOM = ("small", "medium", "large", "melody")
ACE_STEP_RANDOM = ("ace-step", "ace-step-base")


def family_for_name(name: str | None) -> str | None:
    """The family of a model name when the name alone tells; None for a local dir or unknown hub id."""
    if not name:
        return MUSICGEN  # the default model is MusicGen small
    n = name.strip()
    if n in MUSICGEN_ALIASES:
        return MUSICGEN
    if n in ACE_STEP_ALIASES:
        return ACE_STEP
    if n in SEPARATION_ALIASES:
        return SEPARATION
    if n.startswith("random:"):
        size = n.split(":", 1)[1]
        return ACE_STEP if size in ACE_STEP_RANDOM else MUSICGEN if size in MUSICGEN_RANDOM else None
    low = n.lower()
    if "/" in n and not n.startswith(("/", ".", "~")):
        if "musicgen" in low:
            return MUSICGEN
        if "ace-step" in low or "acestep" in low:
            return ACE_STEP
    return None


def is_builtin_name(name: str) -> bool:
    """A built-in model name (an alias or a `random:` size of any family): never a path, whether or
    not this engine version can load it yet."""
    n = name.strip()
    if n in MUSICGEN_ALIASES or n in ACE_STEP_ALIASES or n in SEPARATION_ALIASES:
        return True
    return n.startswith("random:") and n.split(":", 1)[1] in MUSICGEN_RANDOM + ACE_STEP_RANDOM
