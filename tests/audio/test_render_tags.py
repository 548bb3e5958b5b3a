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
from dgx_music.common.audio import confidence, export, files, tags
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


def test_low_confidence_is_said_in_the_file_tags(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    files.write_wav_atomic(path, np.zeros((1, 8000), np.float32), 8000, metadata={
        "bpm": 95.2, "key": "B minor", "analysis": confidence.tag_text(95.2, 0.2, "B minor", 0.8)})
    frames = id3_frames(path)
    assert frames[f"TXXX:{files.ANALYSIS_DESC}"] == ("tempo 95.2 BPM (low confidence 0.20); "
                                                     "key B minor (confidence 0.80)")
    assert (frames["TBPM"], frames["TKEY"]) == ("95", "Bm")
    assert confidence.describe("key", 0.1) == "low confidence 0.10"
    assert confidence.describe("bpm", 0.9) == "confidence 0.90"


META = {"title": "Neon rivers – été", "artist": "DGX", "comment": "dream pop, rain", "date": "2026-12-06",
        "bpm": 95.6, "key": "F# minor", "params": {"seed": 7, "model": "small"}, "analysis": "tempo 95.6 BPM"}
# What an independent reader (ffprobe) calls each value, by the container's tag convention.
EXPECTED = {"title": META["title"], "artist": "DGX", "comment": "dream pop, rain", "date": "2026-12-06",
            files.PARAMS_DESC.lower(): '{"model":"small","seed":7}', files.ANALYSIS_DESC.lower(): "tempo 95.6 BPM"}
ID3_NAMES = {"tbpm": "96", "tkey": "F#m", "encoder": "DGX Music"}
VORBIS_NAMES = {"bpm": "96", "initialkey": "F#m", "encoder": "DGX Music"}


@needs_ffmpeg
@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_every_export_format_carries_its_tags(tmp_path: Path, fmt: str) -> None:
    """What `dgx-music export` writes (export.FORMATS), read back by ffprobe (WAV's ID3 chunk, which
    ffprobe hides behind the INFO chunk, by the independent parser in meters.py)."""
    assert set(export.FORMATS) == {"flac", "wav"}  # a new export format needs its row here
    src = tmp_path / "src.wav"
    files.write_wav_atomic(src, synth.chords("A", "minor", 2)[0], SR)
    out = export.export_track(src, tmp_path, "take", fmt, tags=META)
    got = ffprobe_tags(out)
    if fmt == "flac":
        assert got == {**EXPECTED, **VORBIS_NAMES}
    else:  # RIFF INFO (libsndfile) for players that read only that, ID3 for the rest
        assert {k: got[k] for k in ("title", "artist", "comment", "date")} == {
            k: EXPECTED[k] for k in ("title", "artist", "comment", "date")}
        id3 = id3_frames(out)
        assert (id3["TIT2"], id3["TPE1"], id3["COMM"], id3["TDRC"]) == (
            META["title"], "DGX", "dream pop, rain", "2026-12-06")
        assert (id3["TBPM"], id3["TKEY"], id3["TSSE"]) == ("96", "F#m", "DGX Music")
        assert json.loads(id3[f"TXXX:{files.PARAMS_DESC}"]) == META["params"]


@needs_ffmpeg
@pytest.mark.parametrize("fmt, names", [("mp3", ID3_NAMES), ("ogg", VORBIS_NAMES), ("flac", VORBIS_NAMES)])
def test_the_tag_writer_covers_mp3_and_ogg(tmp_path: Path, fmt: str, names: dict[str, str]) -> None:
    """ID3 in MP3, Vorbis comments in Ogg: what the encoder wrote is replaced, not added to."""
    path = tmp_path / f"x.{fmt}.tmp"  # a temp file's suffix does not say the format: the argument does
    kind = {"mp3": {"format": "MP3"}, "ogg": {"format": "OGG", "subtype": "VORBIS"}, "flac": {"format": "FLAC"}}
    sf.write(str(path), synth.chords("C", "major", 2)[0], SR, **kind[fmt])
    tags.write_tags(path, fmt, {"title": "first"})
    tags.write_tags(path, fmt, META)
    assert ffprobe_tags(path, streams=fmt == "ogg") == {**EXPECTED, **names}
    assert sf.info(str(path)).duration == pytest.approx(2.0, abs=0.1)  # still decodes
    with pytest.raises(ValueError, match="cannot tag"):
        tags.write_tags(path, "aiff", META)
