"""Model families: which kind of model a name means, without touching the disk or torch.

A generation request names a model; its family decides which parameters exist
(common/schemas.py holds one typed schema per family). Built-in names and
`random:` names are known here, so the CLI and TUI can pick the right fields
offline. A local directory or an arbitrary hub id is only known to the daemon,
which looks at the files (daemon/engine/models.py): `family_for_name` answers
None for those.
"""

from __future__ import annotations

MUSICGEN = "musicgen"
ACE_STEP = "ace-step"
FAMILIES = (MUSICGEN, ACE_STEP)

#: Licence of each family's official weights, shown by `models` and `doctor`.
LICENCES = {MUSICGEN: "CC-BY-NC-4.0 (weights), MIT (code)", ACE_STEP: "MIT (weights and code)"}

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
