"""The track library's rows: finishing a job into tracks, imports, user edits,
analysis results, deletion, and reading tracks back."""

from __future__ import annotations

from typing import Any, Iterable

from dgx_music.common.fmt import noun, plural

from . import clock
from .base import StoreBase
from .lineage import lineage_row
from .codecs import _track_dict, pack_peaks
from .errors import StoreError
from .validate import (MAX_COUNT, MAX_NOTES_CHARS, MAX_PROMPT_CHARS, MAX_SEED, MAX_TAGS_PER_TRACK,
                       MAX_TITLE_CHARS, _analysis_float, _bool, _float, _int, _invalid, _job_id,
                       _json_dict, _rel_path, _tag_list, _text, _track_id, default_title)

_ANALYSIS_FLOATS = (
    "lufs_before",
    "lufs",
    "true_peak",
    "gain_db",
    "bpm",
    "bpm_confidence",
    "key_confidence",
)
_ANALYSIS_TEXT = ("loudness_note", "key")
ANALYSIS_FIELDS = _ANALYSIS_FLOATS + _ANALYSIS_TEXT

try:  # the model families a track can come from (common/families.py)
    from dgx_music.common.families import ALL_FAMILIES as FAMILIES, MUSICGEN
except Exception:  # pragma: no cover - store used stand-alone
    FAMILIES, MUSICGEN = ("musicgen", "ace-step"), "musicgen"

# What a song was asked to be (ACE-Step): kept beside the detected bpm/key.  All optional.
SONG_FIELDS = ("family", "lyrics", "language", "req_bpm", "req_key", "req_time_signature")
MAX_LYRICS_CHARS = 20_000  # the store's bound; requests have their own, tighter one

_PEAKS_COL = "(SELECT p.peaks FROM track_peaks p WHERE p.seq = t.seq) AS peaks"
_TRACK_COLS = (
    "seq, id, job_id, path, prompt, title, model, backend, seed, idx, params, duration,"
    " sample_rate, channels, created, lufs_before, lufs, true_peak, gain_db,"
    " loudness_note, bpm, bpm_confidence, key, key_confidence, rating, favorite, notes,"
    " family, lyrics, language, req_bpm, req_key, req_time_signature, midi_path"
)


def _song_fields(t: dict) -> dict[str, Any]:
    """The family and what the song was asked to be; absent -> a MusicGen track, NULLs."""
    family = _text("family", t.get("family"), max_chars=50, optional=True) or MUSICGEN
    if family not in FAMILIES:
        raise _invalid("family", f"unknown model family {family!r}; one of {', '.join(FAMILIES)}")
    bpm = _float("req_bpm", t.get("req_bpm"), lo=1.0, hi=1000.0, optional=True)
    sig = t.get("req_time_signature")
    return {
        "family": family,
        "lyrics": _text("lyrics", t.get("lyrics"), max_chars=MAX_LYRICS_CHARS, optional=True),
        "language": _text("language", t.get("language"), max_chars=35, optional=True),
        "req_bpm": bpm,
        "req_key": _text("req_key", t.get("req_key"), max_chars=100, optional=True),
        "req_time_signature": None if sig is None else _int("req_time_signature", sig, 1, 64),
    }


class TracksMixin(StoreBase):
    """Tracks: writes (finish_job, import, edits, analysis, delete) and reads by id."""

    # ------------------------------------------------------------ tracks: writes

    _TRACK_KEYS = frozenset({"path", "duration", "sample_rate", "channels", "index", "title",
                             "model", "backend", "peaks", "tags", "lineage", *ANALYSIS_FIELDS, *SONG_FIELDS})
    _IMPORT_KEYS = _TRACK_KEYS | {"id", "job_id", "prompt", "seed", "params", "created",
                                  "rating", "favorite", "notes"}

    def _track_row(self, t: Any, *, allowed: frozenset, pos: int) -> dict:
        if not isinstance(t, dict):
            raise _invalid(f"tracks[{pos}]", f"must be a dict, got {type(t).__name__}")
        unknown = set(t) - allowed
        if unknown:
            raise _invalid(f"tracks[{pos}]", f"unknown {noun(len(unknown), 'field')}: {', '.join(sorted(unknown))}")
        missing = {"path", "duration", "sample_rate", "channels"} - set(t)
        if missing:
            raise _invalid(f"tracks[{pos}]", f"missing {noun(len(missing), 'field')}: {', '.join(sorted(missing))}")
        r: dict[str, Any] = {
            "path": _rel_path(t["path"]),
            "duration": _float("duration", t["duration"], lo=0.0, hi=86_400.0),
            "sample_rate": _int("sample_rate", t["sample_rate"], 1, 1_000_000),
            "channels": _int("channels", t["channels"], 1, 64),
            "title": _text("title", t.get("title"), max_chars=MAX_TITLE_CHARS, optional=True),
            "model": _text("model", t.get("model"), max_chars=500, optional=True),
            "backend": _text("backend", t.get("backend"), max_chars=100, optional=True),
            "peaks": pack_peaks(t.get("peaks")),
            "tags": _tag_list("tags", t.get("tags")),
            **_song_fields(t),
            "lineage": lineage_row(t.get("lineage")),
        }
        if len(r["tags"]) > MAX_TAGS_PER_TRACK:
            raise _invalid("tags", f"at most {MAX_TAGS_PER_TRACK} tags per track")
        for f in _ANALYSIS_FLOATS:
            r[f] = _analysis_float(f, t.get(f))
        for f in _ANALYSIS_TEXT:
            r[f] = _text(f, t.get(f), max_chars=1000, optional=True)
        return r

    async def _insert_track(self, r: dict) -> int:
        try:
            seq = await self._scalar(
                "INSERT INTO tracks (id, job_id, path, prompt, title, model, backend, seed, idx,"
                " params, duration, sample_rate, channels, created, lufs_before, lufs, true_peak,"
                " gain_db, loudness_note, bpm, bpm_confidence, key, key_confidence, rating,"
                " favorite, notes, family, lyrics, language, req_bpm, req_key, req_time_signature)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING seq",
                (r["id"], r["job_id"], r["path"], r["prompt"], r["title"], r["model"],
                 r["backend"], r["seed"], r["idx"], r["params"], r["duration"],
                 r["sample_rate"], r["channels"], r["created"], r["lufs_before"], r["lufs"],
                 r["true_peak"], r["gain_db"], r["loudness_note"], r["bpm"],
                 r["bpm_confidence"], r["key"], r["key_confidence"],
                 r.get("rating", 0), int(r.get("favorite", False)), r.get("notes", ""),
                 r["family"], r["lyrics"], r["language"], r["req_bpm"], r["req_key"],
                 r["req_time_signature"]))
        except Exception as e:
            if self._is_unique_violation(e, "tracks", "id"):
                raise StoreError("conflict", f"track {r['id']} already exists") from None
            raise
        if r["peaks"] is not None:
            await self._exec("INSERT INTO track_peaks (seq, peaks) VALUES (?, ?)",
                                     (seq, r["peaks"]))
        await self._add_tags(seq, r["tags"])
        if r.get("lineage") is not None:
            await self._insert_lineage(seq, r["lineage"])
        return seq

    async def _add_tags(self, seq: int, tags: list[str]) -> None:
        for tag in tags:
            await self._exec("INSERT INTO tags (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (tag,))
            await self._exec(
                "INSERT INTO track_tags (tag_id, track_seq) "
                "SELECT id, ? FROM tags WHERE name = ? ON CONFLICT DO NOTHING", (seq, tag))

    async def finish_job(self, job_id: int, tracks: list[dict]) -> list[dict]:
        """ONE transaction: insert every track (+ tags + FTS) and mark the job done.

        ``tracks``: 1..count dicts with path (relative to the data dir), duration,
        sample_rate, channels; optional index (default: position in the list),
        title (default: the prompt's first 60 chars), model/backend (default: the
        job's), tags, peaks ([[min, max], ...]), the analysis fields, and what a
        song was asked to be: family (default "musicgen"), lyrics, language,
        req_bpm, req_key, req_time_signature (default None).  Prompt,
        seed and params come from the job.  Track ids are "<job_id>-<index>", so a
        second finish_job for the same job is a conflict and writes nothing.
        """
        job_id = _job_id(job_id)
        if not isinstance(tracks, (list, tuple)) or not tracks:
            raise _invalid("tracks", "must be a non-empty list of track dicts")
        rows = [self._track_row(t, allowed=self._TRACK_KEYS, pos=i) for i, t in enumerate(tracks)]
        indexes = [_int("index", t.get("index", i), 0, MAX_COUNT * 64)
                   for i, t in enumerate(tracks)]
        if len(set(indexes)) != len(indexes):
            raise _invalid("tracks", f"duplicate track index in {indexes}")

        async def op() -> list[dict]:
            job = await self._job_row(job_id)
            if job["state"] == "done":
                raise StoreError("conflict", f"job {job_id} is already done; its tracks exist")
            if job["state"] not in ("running", "processing"):
                raise StoreError("conflict", f"job {job_id} is {job['state']}, not running")
            await self._check_held(job_id, job["state"])
            if len(rows) > job["count"] or max(indexes) >= job["count"]:
                raise _invalid("tracks", f"job {job_id} has count {job['count']}: got "
                                         f"{plural(len(rows), 'track')} with indexes {indexes}")
            now = clock.now()
            for r, idx in zip(rows, indexes):
                r.update(id=f"{job_id}-{idx}", job_id=job_id, prompt=job["prompt"],
                         seed=job["seed"], idx=idx, params=job["params"], created=now,
                         title=r["title"] or default_title(job["prompt"]),
                         model=r["model"] or job["model"], backend=r["backend"] or job["backend"])
                await self._insert_track(r)
            await self._mark_done(job_id, now)
            return await self._tracks_by_ids([r["id"] for r in rows], with_peaks=False)

        return await self._write(op)

    async def _mark_done(self, job_id: int, now: float | None = None) -> None:
        """Inside a write: a running job is done. A kind whose result is not tracks (a MIDI file,
        a style) calls this from its own store method, in the transaction that stores the result."""
        job = await self._job_row(job_id)
        if job["state"] not in ("running", "processing"):
            raise StoreError("conflict", f"job {job_id} is {job['state']}, not running")
        await self._check_held(job_id, job["state"])
        await self._exec(
            "UPDATE jobs SET state = 'done', finished = ?, error = NULL, lease_until = NULL WHERE id = ?",
            (clock.now() if now is None else now, job_id))

    async def finish_job_bare(self, job_id: int) -> list[dict]:
        """A running job is done and made no tracks (its result was stored elsewhere, or there is
        none). Returns [] like finish_job with no tracks would."""
        job_id = _job_id(job_id)

        async def op() -> list[dict]:
            await self._mark_done(job_id)
            return []

        return await self._write(op)

    async def attach_midi(self, job_id: int, track_id: str, path: str) -> tuple[dict, str | None]:
        """ONE transaction: the track's MIDI is the file at `path` (written before) and the job is
        done. Returns the track and the MIDI path it had before (the caller moves that file to the
        trash), so a crash leaves either the old file in use or the new one, never a row without a file."""
        job_id = _job_id(job_id)
        track_id = _track_id(track_id)
        rel = _rel_path(path)

        async def op() -> tuple[dict, str | None]:
            track = await self._track(track_id, with_peaks=False)
            await self._exec("UPDATE tracks SET midi_path = ? WHERE id = ?", (rel, track_id))
            await self._mark_done(job_id)
            old = track.get("midi_path")
            return {**track, "midi_path": rel}, (old if old != rel else None)

        return await self._write(op)

    async def import_tracks(self, tracks: list[dict]) -> int:
        """Bulk insert of complete track rows in one transaction (library import,
        benchmarks).  Each dict has finish_job's fields plus id, prompt and
        optionally job_id, seed, params, created, rating, favorite, notes."""
        if not isinstance(tracks, (list, tuple)):
            raise _invalid("tracks", "must be a list of track dicts")
        rows = []
        for i, t in enumerate(tracks):
            r = self._track_row(t, allowed=self._IMPORT_KEYS, pos=i)
            prompt = _text("prompt", t.get("prompt"), max_chars=MAX_PROMPT_CHARS, allow_empty=False)
            r.update(
                id=_track_id(t.get("id")),
                job_id=None if t.get("job_id") is None else _job_id(t["job_id"]),
                prompt=prompt,
                title=r["title"] or default_title(prompt),
                seed=None if t.get("seed") is None else _int("seed", t["seed"], 0, MAX_SEED),
                idx=_int("index", t.get("index", 0), 0),
                params=_json_dict("params", t.get("params", {})),
                created=_float("created", t.get("created", clock.now())),
                rating=_int("rating", t.get("rating", 0), 0, 5),
                favorite=_bool("favorite", t.get("favorite", False)),
                notes=_text("notes", t.get("notes", ""), max_chars=MAX_NOTES_CHARS),
            )
            rows.append(r)

        async def op() -> int:
            for r in rows:
                await self._insert_track(r)
            return len(rows)

        return await self._write(op)

    async def update_track(self, track_id: str, *, title: str | None = None,
                           rating: int | None = None, favorite: bool | None = None,
                           notes: str | None = None, tags_add: Iterable[str] = (),
                           tags_remove: Iterable[str] = ()) -> dict:
        """Change user fields; None/empty leaves a field alone.  Returns the track."""
        track_id = _track_id(track_id)
        sets: dict[str, Any] = {}
        if title is not None:
            sets["title"] = _text("title", title, max_chars=MAX_TITLE_CHARS,
                                  allow_empty=False).strip()  # type: ignore[union-attr]
        if rating is not None:
            sets["rating"] = _int("rating", rating, 0, 5)
        if favorite is not None:
            sets["favorite"] = int(_bool("favorite", favorite))
        if notes is not None:
            sets["notes"] = _text("notes", notes, max_chars=MAX_NOTES_CHARS)
        add = _tag_list("tags_add", tags_add)
        remove = _tag_list("tags_remove", tags_remove)
        both = set(add) & set(remove)
        if both:
            raise _invalid("tags", f"both added and removed: {', '.join(sorted(both))}")

        async def op() -> dict:
            seq = await self._seq(track_id)
            if sets:
                cols = ", ".join(f"{k} = ?" for k in sets)
                await self._exec(f"UPDATE tracks SET {cols} WHERE seq = ?",
                                         (*sets.values(), seq))
            if add:
                have = await self._scalar("SELECT count(*) FROM track_tags WHERE track_seq = ?",
                                          (seq,))
                if have + len(add) > MAX_TAGS_PER_TRACK:
                    raise _invalid("tags", f"at most {MAX_TAGS_PER_TRACK} tags per track")
                await self._add_tags(seq, add)
            for tag in remove:
                await self._exec(
                    "DELETE FROM track_tags WHERE track_seq = ? AND tag_id = "
                    "(SELECT id FROM tags WHERE name = ?)", (seq, tag))
            if remove:
                await self._drop_unused_tags()
            return await self._track(track_id, with_peaks=False)

        return await self._write(op)

    async def set_analysis(self, track_id: str, **fields: Any) -> dict:
        """Store (re-)analysis results: any of ANALYSIS_FIELDS and ``peaks``."""
        track_id = _track_id(track_id)
        unknown = set(fields) - set(ANALYSIS_FIELDS) - {"peaks"}
        if unknown:
            raise _invalid("fields", f"unknown analysis {noun(len(unknown), 'field')}: {', '.join(sorted(unknown))}")
        sets: dict[str, Any] = {}
        for f, v in fields.items():
            if f == "peaks":
                sets[f] = pack_peaks(v)
            elif f in _ANALYSIS_FLOATS:
                sets[f] = _analysis_float(f, v)
            else:
                sets[f] = _text(f, v, max_chars=1000, optional=True)

        async def op() -> dict:
            seq = await self._seq(track_id)
            if "peaks" in sets:
                peaks = sets.pop("peaks")
                if peaks is None:
                    await self._exec("DELETE FROM track_peaks WHERE seq = ?", (seq,))
                else:
                    await self._exec(
                        "INSERT INTO track_peaks (seq, peaks) VALUES (?, ?) "
                        "ON CONFLICT (seq) DO UPDATE SET peaks = excluded.peaks", (seq, peaks))
            if sets:
                cols = ", ".join(f"{k} = ?" for k in sets)
                await self._exec(f"UPDATE tracks SET {cols} WHERE seq = ?",
                                         (*sets.values(), seq))
            return await self._track(track_id, with_peaks=False)

        return await self._write(op)

    async def delete_track(self, track_id: str) -> dict:
        """Delete the row (and its tag links and FTS entry); returns it as it was.

        Recommended order: call this FIRST, then move the file to trash.  A crash
        in between leaves an orphan file (detected at start via track_paths() and
        kept aside), never a row whose file is gone."""
        track_id = _track_id(track_id)

        async def op() -> dict:
            track = await self._track(track_id, with_peaks=False)
            await self._exec("DELETE FROM tracks WHERE id = ?", (track_id,))
            await self._drop_unused_tags()
            return track

        return await self._write(op)

    async def _drop_unused_tags(self) -> None:
        await self._exec(
            "DELETE FROM tags WHERE NOT EXISTS (SELECT 1 FROM track_tags WHERE tag_id = tags.id)")

    # ------------------------------------------------------------ tracks: reads

    async def _seq(self, track_id: str) -> int:
        seq = await self._scalar("SELECT seq FROM tracks WHERE id = ?", (track_id,))
        if seq is None:
            raise StoreError("not_found", f"no track {track_id!r}")
        return seq

    async def _tags_for(self, seqs: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {s: [] for s in seqs}
        if not seqs:
            return out
        q = ",".join("?" * len(seqs))
        for r in await self._all(
                f"SELECT tt.track_seq, g.name FROM track_tags tt JOIN tags g ON g.id = tt.tag_id "
                f"WHERE tt.track_seq IN ({q}) ORDER BY g.name", seqs):
            out[r[0]].append(r[1])
        return out

    async def _track(self, track_id: str, *, with_peaks: bool = True) -> dict:
        cols = _TRACK_COLS + (", " + _PEAKS_COL if with_peaks else "")
        row = await self._one(f"SELECT {cols} FROM tracks t WHERE id = ?", (track_id,))
        if row is None:
            raise StoreError("not_found", f"no track {track_id!r}")
        tags = (await self._tags_for([row["seq"]]))[row["seq"]]
        return _track_dict(row, tags, row["peaks"] if with_peaks else False)

    async def _tracks_by_ids(self, ids: list[str], *, with_peaks: bool) -> list[dict]:
        return [await self._track(i, with_peaks=with_peaks) for i in ids]

    async def get_track(self, track_id: str) -> dict:
        """One track by exact id, with tags and peaks."""
        track_id = _track_id(track_id)
        return await self._run(lambda: self._track(track_id, with_peaks=True))

    async def track_paths(self) -> set[str]:
        async def op() -> set[str]:
            rows = await self._all("SELECT path FROM tracks UNION SELECT midi_path FROM tracks "
                                   "WHERE midi_path IS NOT NULL")
            return {r[0] for r in rows}

        return await self._run(op)

