"""Tracks keep their model family and what a song was asked to be; lyrics are searchable."""

from __future__ import annotations

import pytest

from dgx_music.daemon.store import RELEVANCE, SONG_FIELDS, Store, StoreError

from .conftest import make_job, track

SONG = {"family": "ace-step", "lyrics": "[verse]\nLanterns drift on the river\n[chorus]\nHold the light",
        "language": "en", "req_bpm": 96.0, "req_key": "A minor", "req_time_signature": 3}


def song(path: str, **kw) -> dict:
    return track(path, sample_rate=48000, channels=2, **{**SONG, **kw})


async def test_song_fields_round_trip(store: Store) -> None:
    job = await make_job(store, "dreamy folk ballad", tracks=[song("library/s.wav", bpm=95.7, key="A minor")])
    [tid] = job["track_ids"]
    for t in (await store.get_track(tid), (await store.list_tracks())["tracks"][0]):
        assert {f: t[f] for f in SONG_FIELDS} == SONG
        assert (t["sample_rate"], t["channels"]) == (48000, 2)
        assert (t["bpm"], t["key"]) == (95.7, "A minor")  # detected, beside what was asked


async def test_a_track_without_song_fields_is_musicgen_with_nulls(store: Store) -> None:
    job = await make_job(store)
    t = await store.get_track(job["track_ids"][0])
    assert t["family"] == "musicgen"
    assert all(t[f] is None for f in SONG_FIELDS if f != "family")


async def test_a_track_is_found_by_a_word_of_its_lyrics(store: Store) -> None:
    await make_job(store, "dreamy folk ballad", tracks=[song("library/s.wav")])
    await make_job(store, "lofi beats")
    found = await store.list_tracks(search="lanterns")
    assert [t["lyrics"] for t in found["tracks"]] == [SONG["lyrics"]]
    assert (await store.list_tracks(search="river", sort=RELEVANCE))["total"] == 1
    assert (await store.list_tracks(search="lanterns lofi"))["total"] == 0


async def test_lyrics_weigh_less_than_the_prompt_and_more_than_notes(store: Store) -> None:
    await store.import_tracks([
        {"id": "notes", "prompt": "ambient", "notes": "harbour at dawn", **track("a.wav")},
        {"id": "lyrics", "prompt": "ambient", **song("b.wav", lyrics="harbour at dawn")},
        {"id": "prompt", "prompt": "ambient harbour at dawn", **track("c.wav")},
    ])
    ranked = [t["id"] for t in (await store.list_tracks(search="harbour", sort=RELEVANCE))["tracks"]]
    assert ranked == ["prompt", "lyrics", "notes"]


@pytest.mark.parametrize("field,value", [("family", "jukebox"), ("lyrics", 5), ("lyrics", "x" * 20_001),
                                         ("req_bpm", 0), ("req_bpm", float("nan")),
                                         ("req_time_signature", 0), ("req_time_signature", 2.5),
                                         ("language", "x" * 36)])
async def test_bad_song_fields_are_refused_naming_the_field(store: Store, field: str, value) -> None:
    job = await store.add_job(prompt="p", params={}, count=1, seed=1, model=None)
    await store.mark_running(job["id"])
    with pytest.raises(StoreError) as err:
        await store.finish_job(job["id"], [song("library/s.wav", **{field: value})])
    assert err.value.code == "invalid" and err.value.field == field
    assert (await store.get_job(job["id"]))["state"] == "running"  # nothing written
