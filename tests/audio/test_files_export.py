"""Atomic writes, metadata round trips, export safety, FLAC tags, streaming chunks, pipeline keys."""

from __future__ import annotations

import os
from datetime import datetime

import numpy as np
import pytest
import soundfile as sf

import synth
from meters import ffprobe_tags, id3_frames, needs_ffmpeg
from dgx_music.common.audio import export, files, pipeline
from dgx_music.daemon.audio import stream

SR = synth.SR


@needs_ffmpeg
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_atomic_wav_content_and_metadata(tmp_path, subtype):
    x = synth.chords("A", "minor", 2) * 0.5
    meta = {"title": "Rainy Lofi – été", "comment": "lofi piano, rain, 80 bpm", "bpm": 81.6, "key": "A minor"}
    path = files.library_path(tmp_path, 42, meta["title"], datetime(2026, 3, 4))
    files.write_wav_atomic(path, x, SR, subtype, meta)
    assert path == tmp_path / "library" / "2026" / "03" / "42-rainy-lofi-ete.wav"
    assert os.listdir(path.parent) == [path.name]  # no temp file left
    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    assert sr == SR and np.allclose(y.T, x, atol=1e-4 if subtype == "PCM_16" else 1e-6)
    with sf.SoundFile(str(path)) as f:
        assert (f.title, f.comment) == (meta["title"], meta["comment"]) and f.software.startswith("DGX Music")
    tags = ffprobe_tags(path)
    assert tags["title"] == meta["title"] and tags["comment"] == meta["comment"] and "DGX Music" in tags["encoder"]
    assert id3_frames(path)["TBPM"] == "82" and id3_frames(path)["TKEY"] == "Am"


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        files.write_wav_atomic(tmp_path / "x.wav", np.zeros((1, 10)), SR, "PCM_8")
    with pytest.raises(Exception):
        files.write_wav_atomic(tmp_path / "x.wav", np.zeros((1, 10)), -5)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name,expected",
    [("CON", "_CON"), ("nul.txt", "_nul.txt"), ("a/b\\c", "a_b_c"), ("..", "untitled"), ("x\x00y\n", "x_y_"),
     ("what?*:<>|", "what______"), ("trailing. ", "trailing")],
)
def test_safe_filename(name, expected):
    assert files.safe_filename(name) == expected


def test_safe_filename_length_keeps_extension():
    out = files.safe_filename("é" * 300 + ".flac")
    assert out.endswith(".flac") and len(out.encode()) <= 120


@needs_ffmpeg
def test_export_flac_tags_resample_and_safety(tmp_path):
    src = tmp_path / "src.wav"
    files.write_wav_atomic(src, synth.chords("C", "major", 3), SR)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    tags = {"title": "Song", "bpm": 123.4, "key": "F# minor", "artist": "DGX"}
    p = export.export_track(src, out_dir, "Song: take/1", "flac", 48000, 24, tags=tags)
    assert p.parent == out_dir and p.name == "Song_ take_1.flac"
    info = sf.info(str(p))
    assert info.samplerate == 48000 and info.frames == 3 * 48000 and info.subtype == "PCM_24"
    t = ffprobe_tags(p)
    assert t["bpm"] == "123" and t["initialkey"] == "F#m" and t["title"] == "Song"
    with pytest.raises(FileExistsError):
        export.export_track(src, out_dir, "Song: take/1", "flac")
    assert export.export_track(src, out_dir, "Song: take/1", "flac", overwrite=True) == p
    w = export.export_track(src, out_dir, "../../escape", "wav", 44100, 16)
    assert w.parent == out_dir and w.name == "_.._escape.wav" and sf.info(str(w)).frames == 3 * 44100
    assert not (tmp_path / "escape.wav").exists()
    (out_dir / "link.wav").symlink_to(tmp_path / "elsewhere.wav")
    with pytest.raises(export.ExportError):
        export.export_track(src, out_dir, "link", "wav", overwrite=True)
    with pytest.raises(export.ExportError):
        export.export_track(src, out_dir, "x", "mp3")
    assert sorted(f for f in os.listdir(out_dir) if f.startswith(".")) == []


def test_stream_chunks_reassemble(tmp_path):
    p = tmp_path / "a.wav"
    files.write_wav_atomic(p, synth.chords("D", "major", 6), SR)
    data, off = b"", 0
    while chunk := stream.read_chunk(p, off, 10**9):
        assert len(chunk) <= stream.MAX_CHUNK
        data += chunk
        off += len(chunk)
    assert data == p.read_bytes()
    with pytest.raises(ValueError):
        stream.read_chunk(p, -1, 10)


def test_process_and_analyze_file_keys(tmp_path):
    x = synth.song(128, "E", "minor", seconds=12, stereo=True)
    res = pipeline.process(x, SR)
    assert tuple(res.analysis) == pipeline.ANALYSIS_KEYS
    assert res.analysis["channels"] == 2 and res.analysis["duration"] == 12.0 and len(res.analysis["peaks"]) == 256
    for fmt, sub in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")):
        p = tmp_path / f"a.{fmt.lower()}"
        sf.write(str(p), res.audio.T, SR, format=fmt, subtype=sub)
        info = pipeline.analyze_file(p)
        assert set(info) == {"duration", "sample_rate", "channels", "lufs", "true_peak", "bpm", "bpm_confidence",
                             "key", "key_confidence"}
        assert abs(info["bpm"] - 128) / 128 < 0.02 and info["key"] == "E minor"
        assert abs(info["lufs"] + 14.0) < 0.5
    with pytest.raises(ValueError):
        (tmp_path / "bad.wav").write_bytes(b"not audio")
        pipeline.analyze_file(tmp_path / "bad.wav")
