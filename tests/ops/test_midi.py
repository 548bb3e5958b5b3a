"""`op.midi`: a track (or an uploaded file) transcribed by the real Basic Pitch model into a MIDI
file stored with the track. Checked with an independent reader (mido) and mir_eval's onset F1
against the notes the audio was rendered from (fluidsynth, the analysis set's soundfont)."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path
from typing import Any, Callable

import mido
import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.client import Client, RemoteError
from dgx_music.daemon.audio import transcribe as bp
from tests.audio import songbook
from tests.conftest import wait_event

pytestmark = pytest.mark.skipif(songbook.missing() is not None, reason=str(songbook.missing()))

SONG = "groove_72_Bm"  # the analysis set's first song: a lead line at 72 bpm
SECONDS = 8.0
BPM = 72.0


@pytest.fixture(scope="session")
def melody(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float, int]]]:
    """The song's melody alone, rendered at 48 kHz: (wav, its notes)."""
    d = tmp_path_factory.mktemp("midi-melody")
    notes = songbook.melody_midi(songbook.SONGS / f"{SONG}.mid", SECONDS, d / "m.mid")
    songbook.render_midi(d / "m.mid", d / "m.wav", 48000)
    return d / "m.wav", notes


async def import_melody(daemon: Any, wav: Path, track_id: str = "900-0", bpm: float | None = BPM,
                        lineage: dict[str, Any] | None = None, title: str = "Lead line") -> dict[str, Any]:
    rel = f"library/imported/{track_id}.wav"
    dest = daemon.data_dir / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(wav.read_bytes())
    info = sf.info(str(dest))
    await daemon.store.import_tracks([{"id": track_id, "prompt": "a melody", "title": title, "path": rel,
                                       "duration": info.duration, "sample_rate": info.samplerate,
                                       "channels": info.channels, "bpm": bpm, "lineage": lineage}])
    return await daemon.store.get_track(track_id)


def read_notes(data: bytes) -> tuple[list[tuple[float, float, int]], list[int]]:
    """(notes in seconds, tempos) as mido reads the file: an independent parse of what we wrote."""
    mid = mido.MidiFile(file=io.BytesIO(data))
    tempos = [m.tempo for t in mid.tracks for m in t if m.type == "set_tempo"]
    now, on, notes = 0.0, {}, []
    for msg in mid:  # iterating a MidiFile yields messages with time in seconds
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            on[msg.note] = now
        elif msg.type in ("note_off", "note_on") and msg.note in on:
            notes.append((on.pop(msg.note), now, msg.note))
    return sorted(notes), tempos


def onset_f1(ref: list[tuple[float, float, int]], est: list[tuple[float, float, int]]) -> float:
    import mir_eval

    def arrays(notes: list[tuple[float, float, int]]) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([[a, max(b, a + 0.01)] for a, b, _ in notes]).reshape(-1, 2),
                np.array([440.0 * 2 ** ((p - 69) / 12) for *_, p in notes]))

    return mir_eval.transcription.precision_recall_f1_overlap(*arrays(ref), *arrays(est), onset_tolerance=0.05,
                                                              offset_ratio=None)[2]


async def test_a_track_is_transcribed_and_its_midi_stored_with_it(daemon_factory: Callable[..., Any],
                                                                  melody: Any) -> None:
    wav, truth = melody
    d = await daemon_factory()
    track = await import_melody(d, wav)
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        await c.subscribe("track")
        seen: list[Any] = []
        job = await c.call("op.midi", {"source": track["id"]})
        assert job["state"] == "queued" and job["params"]["kind"] == "midi" and job["model"] == "basic-pitch"
        done = await wait_event(c, "job.finished", job["id"], timeout=60, seen=seen)
        assert done.data["track_ids"] == []
        assert any(e.name == "job.progress" and e.data["id"] == job["id"] for e in seen)
        assert d.engine.worker is None, "transcription must not start the model worker"
        got = await c.call("track.get", {"id": track["id"]})
        assert got["midi_path"] and got["midi_path"].endswith(".mid")
        assert (d.data_dir / got["midi_path"]).is_file()
        by_track = await c.call("track.midi", {"id": track["id"]})
        by_job = await c.call("track.midi", {"job": job["id"]})
        assert by_track["data"] == by_job["data"] == (d.data_dir / got["midi_path"]).read_bytes()
        notes, tempos = read_notes(by_track["data"])
        assert tempos == [mido.bpm2tempo(BPM)], "the file's tempo is the track's analysed bpm"
        f1 = onset_f1(truth, notes)
        assert f1 >= 0.8, f"onset F1 {f1:.3f} on {len(truth)} notes, found {len(notes)}"

        # again: the new file replaces the old one, which goes to the trash
        first = got["midi_path"]
        job2 = await c.call("op.midi", {"source": track["id"], "bpm": 144})
        await wait_event(c, "job.finished", job2["id"], timeout=60)
        again = await c.call("track.get", {"id": track["id"]})
        assert again["midi_path"] != first and not (d.data_dir / first).exists()
        assert read_notes((await c.call("track.midi", {"id": track["id"]}))["data"])[1] == [mido.bpm2tempo(144)]
        assert any(p.name.endswith(Path(first).name) for p in (d.data_dir / "trash").iterdir())
    await d.close()

    # backup --with-audio carries the MIDI, restore brings it back into another data dir
    from dgx_music.daemon import backup

    saved = d.data_dir / again["midi_path"]
    report = backup.backup(d.data_dir, d.data_dir.parent / "bk", with_audio=True)
    assert report.files == 2 and (d.data_dir.parent / "bk" / again["midi_path"]).read_bytes() == saved.read_bytes()
    elsewhere = d.data_dir.parent / "restored"
    backup.restore(d.data_dir.parent / "bk", elsewhere)
    assert (elsewhere / again["midi_path"]).read_bytes() == saved.read_bytes()

    # the orphan scan at start keeps the MIDI (a row names it); deleting the track takes it along
    d = await daemon_factory()
    midi_file = d.data_dir / again["midi_path"]
    assert midi_file.is_file(), "the daemon set the track's MIDI aside as an orphan"
    async with await Client.connect(d.server.path) as c:
        await c.call("track.delete", {"id": track["id"]})
    assert not midi_file.exists()
    assert any(p.name.endswith(midi_file.name) for p in (d.data_dir / "trash").iterdir())


async def test_an_uploaded_file_cancel_retry_and_refusals(daemon_factory: Callable[..., Any], melody: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    wav, truth = melody
    gate, started = threading.Event(), threading.Event()
    real = bp._session

    class Held:  # the model's second batch waits until the test opens the gate (the first reports progress)
        def __init__(self, s: Any) -> None:
            self.s = s

        def run(self, *a: Any) -> Any:
            if started.is_set():
                gate.wait(30)
            started.set()
            return self.s.run(*a)

    monkeypatch.setattr(bp, "BATCH", 1)
    monkeypatch.setattr(bp, "_session", lambda threads: Held(real(threads)))
    d = await daemon_factory()
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        job = await c.call("op.midi", {"source_audio": wav.read_bytes(), "source_name": "lead.wav"})
        await wait_event(c, "job.progress", job["id"], timeout=60)
        await c.call("job.cancel", {"id": job["id"]})
        gate.set()
        await wait_event(c, "job.cancelled", job["id"], timeout=60)
        assert not (d.data_dir / "midi" / f"{job['id']}.mid").exists()
        with pytest.raises(RemoteError) as err:
            await c.call("track.midi", {"job": job["id"]})
        assert err.value.code == "not_found" and err.value.data.get("field") == "job"

        await c.call("job.retry", {"id": job["id"]})  # the stored copy of the upload is transcribed
        await wait_event(c, "job.finished", job["id"], timeout=60)
        got = await c.call("track.midi", {"job": job["id"]})
        notes, tempos = read_notes(got["data"])
        assert tempos == [mido.bpm2tempo(120)] and got["name"] == "lead.wav"
        assert onset_f1(truth, notes) >= 0.8
        assert (await c.call("track.list", {}))["tracks"] == [], "a file's MIDI makes no library track"
        result = d.data_dir / "midi" / f"{job['id']}.mid"
        assert result.is_file()
        pruned = await c.call("job.prune", {"older_than_days": 0})
        assert pruned["removed"] == 1 and not result.exists(), "a pruned job's MIDI goes with it"

        for params, field, code in [({"source": "77-0"}, "source", "not_found"),
                                    ({"source": "1-0", "program": 128}, "program", "invalid_params"),
                                    ({}, "source", "invalid_params"),
                                    ({"source_audio": b"not audio"}, "source_audio", "invalid_params")]:
            with pytest.raises(RemoteError) as err:
                await c.call("op.midi", params)
            assert (err.value.code, err.value.data.get("field")) == (code, field), (params, err.value)


async def test_cli_midi_writes_the_file_and_show_lists_it(daemon_factory: Callable[..., Any], melody: Any,
                                                          tmp_path: Path) -> None:
    import asyncio
    import json

    from tests.ops.conftest import cli

    wav, truth = melody
    d = await daemon_factory()
    track = await import_melody(d, wav)
    sock = ["--socket", str(d.server.path)]
    out = tmp_path / "lead.mid"
    r = await asyncio.to_thread(cli, "midi", track["id"], "--to", str(out), "--json", *sock)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["state"] == "done" and doc["midi"]["file"] == str(out.resolve())
    assert doc["midi"]["track_id"] == track["id"]
    notes, tempos = read_notes(out.read_bytes())
    assert tempos == [mido.bpm2tempo(BPM)] and onset_f1(truth, notes) >= 0.8
    r = await asyncio.to_thread(cli, "show", track["id"], *sock)
    assert r.returncode == 0 and f"midi      {doc['midi']['path']}" in r.stdout, r.stdout

    # a file: uploaded, its MIDI written here; nothing added to the library
    upload = tmp_path / "riff.mid"
    r = await asyncio.to_thread(cli, "midi", str(wav), "--to", str(upload), "--program", "33", *sock)
    assert r.returncode == 0, r.stderr
    assert f"MIDI of m.wav: {upload.resolve()}" in r.stdout
    programs = [m.program for t in mido.MidiFile(upload).tracks for m in t if m.type == "program_change"]
    assert programs == [33]

    r = await asyncio.to_thread(cli, "job", str(doc["id"]), *sock)
    assert r.returncode == 0 and f"midi      of {track['id']}, 72.0 BPM, GM program 0" in r.stdout, r.stdout
    r = await asyncio.to_thread(cli, "midi", "77-0", "--json", *sock)
    assert r.returncode == 1 and json.loads(r.stdout)["error"]["code"] == "not_found"
    r = await asyncio.to_thread(cli, "midi", track["id"], "--program", "300", "--json", *sock)
    assert r.returncode == 2 and json.loads(r.stdout)["error"]["field"] == "program"
    assert "--program" in json.loads(r.stdout)["error"]["message"]


async def test_http_midi_queue_download_and_openapi(daemon_factory: Callable[..., Any], melody: Any) -> None:
    import base64

    import aiohttp

    from tests.conftest import start_http
    from tests.ops.conftest import bearer

    wav, truth = melody
    d = await daemon_factory(http__listen="127.0.0.1:0")
    api = await start_http(d)
    track = await import_melody(d, wav)
    async with aiohttp.ClientSession(api.url, headers=bearer(api)) as s:
        async with s.get(f"/api/v1/tracks/{track['id']}/midi") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        async with s.post("/api/v1/ops/midi", json={"source": track["id"]}) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        async with s.get(f"/api/v1/jobs/{job['id']}", params={"wait": "60"}) as r:
            assert (await r.json())["state"] == "done"
        async with s.get(f"/api/v1/tracks/{track['id']}/midi") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "audio/midi"
            assert r.headers["Content-Disposition"] == 'attachment; filename="Lead line.mid"'
            data = await r.read()
        notes, tempos = read_notes(data)
        assert tempos == [mido.bpm2tempo(BPM)] and onset_f1(truth, notes) >= 0.8
        async with s.get(f"/api/v1/jobs/{job['id']}/midi") as r:
            assert r.status == 200 and await r.read() == data

        buf = io.BytesIO()  # the HTTP body limit is 1 MiB: the file as Ogg Vorbis, as a user would send it
        sf.write(buf, sf.read(str(wav))[0], 48000, format="OGG", subtype="VORBIS")
        upload = {"source_audio": base64.b64encode(buf.getvalue()).decode(), "source_name": "lead.ogg"}
        async with s.post("/api/v1/ops/midi", json=upload) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        async with s.get(f"/api/v1/jobs/{job['id']}", params={"wait": "60"}) as r:
            assert (await r.json())["state"] == "done"
        async with s.get(f"/api/v1/jobs/{job['id']}/midi") as r:
            assert r.status == 200 and r.headers["Content-Disposition"] == 'attachment; filename="lead.ogg.mid"'
            assert onset_f1(truth, read_notes(await r.read())[0]) >= 0.8
        async with s.post("/api/v1/ops/midi", json={"source": track["id"], "program": -1}) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "program"
        async with s.get("/openapi.json") as r:
            doc = await r.json()
    assert doc["paths"]["/api/v1/ops/midi"]["post"]["requestBody"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/MidiRequest"}
    assert doc["components"]["schemas"]["MidiRequest"]["properties"]["program"]["maximum"] == 127
    assert "audio/midi" in doc["paths"]["/api/v1/tracks/{id}/midi"]["get"]["responses"]["200"]["content"]


LUA = shutil.which("ardour7-lua")


@pytest.mark.slow
@pytest.mark.skipif(LUA is None, reason="ardour7-lua not installed (apt-get install -y ardour)")
async def test_export_with_midi_opens_in_ardour_with_midi_regions(daemon_factory: Callable[..., Any], melody: Any,
                                                                  tmp_path: Path) -> None:
    """`export --ardour DIR --with-stems --with-midi`: the mix, its stem, then a MIDI track for each that
    has a transcription, region at 0 holding every note of the file, as real Ardour loads it."""
    import asyncio
    import json
    import subprocess

    from tests.ops.conftest import cli

    wav, _truth = melody
    d = await daemon_factory()
    mix = await import_melody(d, wav, "900-0")
    stem = await import_melody(d, wav, "900-1", title="Lead line (bass)",
                               lineage={"source_id": "900-0", "source_name": "Lead line", "operation": "stems",
                                        "part": "bass"})
    plain = await import_melody(d, wav, "901-0", title="No MIDI")
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        for t in (mix, stem):
            job = await c.call("op.midi", {"source": t["id"]})
            await wait_event(c, "job.finished", job["id"], timeout=60)
        notes = [len(read_notes((await c.call("track.midi", {"id": t["id"]}))["data"])[0]) for t in (mix, stem)]
    sock = ["--socket", str(d.server.path)]
    r = await asyncio.to_thread(cli, "export", mix["id"], "--ardour", str(tmp_path / "parts"), "--with-stems",
                                "--with-midi", "--json", *sock)
    assert r.returncode == 0, r.stderr + r.stdout
    res = json.loads(r.stdout)
    assert [m["name"] for m in res["midi_tracks"]] == ["mix MIDI", "bass MIDI"] and res["without_midi"] == []
    session = Path(res["session"])
    assert len(list((session / "interchange" / "parts" / "midifiles").glob("*.mid"))) == 2
    script = tmp_path / "check.lua"
    script.write_text(f'''
load_session("{session}", "parts")
for t in Session:get_tracks():iter() do
  for r in t:to_track():playlist():region_list():iter() do
    local mr = r:to_midiregion()
    if mr:isnil() then
      print("AUDIO", t:name(), r:position():samples(), r:length():samples())
    else
      print("MIDI", t:name(), r:position():samples(), r:length():samples(), ARDOUR.LuaAPI.note_list(mr:model()):size())
    end
  end
end
''')
    out = await asyncio.to_thread(subprocess.run, ["stdbuf", "-oL", str(LUA), str(script)], capture_output=True,
                                  text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line.split("\t") if "\t" in line else line.split() for line in out.stdout.splitlines()
            if line.startswith(("AUDIO", "MIDI"))]
    kinds = [(row[0], " ".join(row[1:-3] if row[0] == "MIDI" else row[1:-2])) for row in rows]
    assert kinds == [("AUDIO", "mix"), ("AUDIO", "bass"), ("MIDI", "mix MIDI"), ("MIDI", "bass MIDI")], out.stdout
    midi_rows = [row for row in rows if row[0] == "MIDI"]
    assert [int(row[-1]) for row in midi_rows] == notes, "Ardour sees every note of each file"
    assert all(int(row[-3]) == 0 and int(row[-2]) > 48000 for row in midi_rows)

    # a track with no MIDI yet is listed, and --with-midi without --ardour is a usage error
    r = await asyncio.to_thread(cli, "export", plain["id"], "--ardour", str(tmp_path / "none"), "--with-midi",
                                *sock)
    assert r.returncode == 0 and "no MIDI yet for 901-0" in r.stderr
    r = await asyncio.to_thread(cli, "export", mix["id"], "--to", str(tmp_path / "x"), "--with-midi", *sock)
    assert r.returncode == 2 and "--with-midi needs --ardour" in r.stderr


async def test_kill_9_between_the_file_and_its_row_loses_and_duplicates_nothing(
        daemon_process: Callable[..., Any], melody: Any) -> None:
    """The daemon dies right after writing the .mid, before the transaction that attaches it: on
    restart the file is set aside as an orphan, the job runs again and attaches exactly one MIDI."""
    import asyncio

    from dgx_music.daemon.backup import db_path
    from dgx_music.daemon.store import Store

    wav, _truth = melody
    p = daemon_process(env={"DGX_MUSIC_FAILPOINT": "after_files"})
    rel = "library/imported/900-0.wav"
    (p.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    (p.data_dir / rel).write_bytes(wav.read_bytes())
    info = sf.info(str(p.data_dir / rel))
    store = await Store.open(db_path(p.data_dir))
    await store.import_tracks([{"id": "900-0", "prompt": "a melody", "title": "Lead line", "path": rel,
                                "duration": info.duration, "sample_rate": info.samplerate, "channels": info.channels,
                                "bpm": BPM}])
    await store.close()
    await asyncio.to_thread(p.start)
    async with await Client.connect(p.socket) as c:
        job = await c.call("op.midi", {"source": "900-0"})
    assert await asyncio.to_thread(p.proc.wait, 60) == -9, p.logs()
    written = list((p.data_dir / "library").rglob("*.mid"))
    assert len(written) == 1, "the failpoint is after the file is written"

    p.env = {}
    await asyncio.to_thread(p.start)
    async with await Client.connect(p.socket) as c:
        deadline = asyncio.get_running_loop().time() + 60
        while (j := await c.call("job.get", {"id": job["id"]}))["state"] != "done":
            assert j["state"] in ("queued", "running", "processing"), j
            assert asyncio.get_running_loop().time() < deadline, j
            await asyncio.sleep(0.1)
        track = await c.call("track.get", {"id": "900-0"})
    in_library = list((p.data_dir / "library").rglob("*.mid"))
    assert [str(f.relative_to(p.data_dir)) for f in in_library] == [track["midi_path"]]
    assert len(list((p.data_dir / "orphans").rglob("*.mid"))) == 1, "the first file was set aside, not lost"
    assert read_notes(in_library[0].read_bytes())[1] == [mido.bpm2tempo(BPM)]
