"""remix_request: a track an operation made -> the same operation on the daemon's stored copy of its source."""

from __future__ import annotations

from typing import Any

import pytest

from dgx_music.common.operations import (ADD_PART, COVER, EXTEND, OPERATION_SCHEMAS, REPAINT, STEMS,
                                         remix_request, stored_params, validate_operation)

KEY = "0123456789abcdef"
ASKED = {REPAINT: {"start": 1.0, "end": 3.5, "lyrics": "[verse]\nla la", "language": "de", "steps": 4},
         COVER: {"prompt": "bossa nova", "strength": 0.8, "target_lufs": -12.0, "guidance": 3.0},
         STEMS: {"method": "generate", "parts": ["vocals", "strings"], "shift": 2.0},
         ADD_PART: {"part": "bass", "mix": True, "prompt": "walking upright"},
         EXTEND: {"by": 12.5, "before": True, "steps": 4}}


def track_of(operation: str, asked: dict[str, Any]) -> dict[str, Any]:
    """A track as the daemon keeps it: its job's params (stored_params plus the daemon's own keys)."""
    req = validate_operation(operation, {"source": "12-0", "seed": 7, "model": "acestep-v15-turbo", **asked})
    params = {**stored_params(req), "operation": operation, "source_key": KEY, "source_id": "12-0",
              "source_name": "a live take", "family": "ace-step", "duration": 6.0}
    return {"id": "40-0", "prompt": asked.get("prompt", "a live take"), "model": "acestep-v15-turbo", "seed": 7,
            "params": params}


@pytest.mark.parametrize("operation", [REPAINT, COVER, STEMS, ADD_PART, EXTEND])
def test_each_operation_track_gives_a_valid_request_on_the_stored_source_without_seed(operation: str) -> None:
    got = remix_request(track_of(operation, ASKED[operation]))
    assert got is not None
    op, params = got
    assert op == operation
    assert params["source"] == KEY and "seed" not in params
    assert set(params) <= set(OPERATION_SCHEMAS[operation].__struct_fields__)  # nothing daemon-internal
    req = validate_operation(op, params)
    assert req.seed is None and req.source == KEY and req.model == "acestep-v15-turbo"
    assert req.source_name == "a live take"  # the new tracks are named after the source, not its key
    for k, v in ASKED[operation].items():  # the operation's own settings come back as they were asked
        assert getattr(req, k) == v, k
    if operation in (REPAINT, STEMS, EXTEND):
        assert req.prompt == "a live take"


def test_a_text_to_music_track_is_not_remixed_as_an_operation() -> None:
    musicgen = {"id": "3-0", "prompt": "funky bass", "model": "facebook/musicgen-small", "seed": 4,
                "params": {"duration": 8.0, "temperature": 1.0, "top_k": 250, "cfg": 3.0}}
    assert remix_request(musicgen) is None
    assert remix_request({"id": "3-1", "prompt": "x", "params": None}) is None
    assert remix_request({"id": "3-2", "prompt": "x", "params": {"operation": "stems"}}) is None  # no stored source


def test_stems_made_before_separation_remix_as_acestep_extract() -> None:
    """A stems track stored without `method` was ACE-Step's extract: its remix stays one, and a
    separated stem's remix separates again (the default method is now a separation model)."""
    old = track_of(STEMS, ASKED[STEMS])
    del old["params"]["method"]
    op, params = remix_request(old) or ("", {})
    assert validate_operation(op, params).method == "generate"
    sep = track_of(STEMS, {"parts": ["vocals", "other"]})
    op, params = remix_request(sep) or ("", {})
    req = validate_operation(op, params)
    assert req.method == "separate" and req.parts == ["vocals", "other"]
