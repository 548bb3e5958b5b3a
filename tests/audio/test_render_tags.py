"""Library files carry their prompt and parameters: written by render (as the daemon does after a
job), read back by an independent reader (ffprobe), not by the writer's own code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import synth
from meters import ffprobe_tags, id3_frames, needs_ffmpeg
from dgx_music import __version__
from dgx_music.common.audio import files
from dgx_music.daemon import render

SR = synth.SR


@needs_ffmpeg
def test_rendered_library_file_carries_prompt_and_parameters(tmp_path: Path) -> None:
    prompt = "dusty lofi piano over rain, 80 bpm – été"
    job = {"id": 7, "prompt": prompt, "seed": 1234,
           "params": {"duration": 3.0, "temperature": 0.9, "top_k": 250, "guidance": 3.0}}
    audio = np.stack([synth.chords("A", "minor", 3)[0], synth.chords("C", "major", 3)[0]]) * 0.5
    rows = render.render_tracks(tmp_path, job, audio, SR, render.RenderOptions(model="small", backend="transformers"))
    assert [r["index"] for r in rows] == [0, 1]
    for row in rows:
        path = tmp_path / row["path"]
        tags = ffprobe_tags(path)
        assert tags["comment"] == prompt  # the prompt, where players show a comment
        # libsndfile appends its own name to ISFT
        assert tags["encoder"].startswith(f"DGX Music {__version__} (small, transformers, seed 1234)")
        id3 = id3_frames(path)  # what DJ software reads: prompt, tempo, key and the full parameters
        assert id3["COMM"] == prompt
        assert id3.get("TBPM") == (str(int(round(row["bpm"]))) if row["bpm"] else None)
        params = json.loads(id3[f"TXXX:{files.PARAMS_DESC}"])
        assert params == {"model": "small", "seed": 1234, "duration": 3.0, "temperature": 0.9, "top_k": 250,
                          "guidance": 3.0}
        assert tags["title"].startswith("dusty lofi piano") and tags["title"].endswith(f"({row['index'] + 1})")
        # the date it was made, as the library layout files it (library/YYYY/MM/)
        assert tags["date"].startswith(f"{path.parent.parent.name}-{path.parent.name}-")
        assert sf.info(str(path)).samplerate == SR


def test_writer_refuses_metadata_it_would_ignore(tmp_path: Path) -> None:
    """A key the writer does not know (like render's old `prompt`) is an error, not a silent loss."""
    with pytest.raises(ValueError, match="prompt"):
        files.write_wav_atomic(tmp_path / "x.wav", np.zeros((1, SR), np.float32), SR, metadata={"prompt": "p"})
    assert not list(tmp_path.iterdir())
