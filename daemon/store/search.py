"""Listing and searching the library: filters, sorts, keyset pagination, relevance."""

from __future__ import annotations

import hashlib
import json
import secrets
from array import array
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .base import Row
from .codecs import RELEVANCE, _decode_cursor, _encode_cursor, _track_dict, fts_query
from .tracks import _PEAKS_COL, _TRACK_COLS, TracksMixin
from .validate import _bool, _float, _int, _invalid, _text, normalise_tag

MAX_LIST_LIMIT = 1000
_DRIVE_MAX = 2000  # list_tracks: at most this many matches -> the filter drives the query

# sort field -> SQL expression.  Each has a matching index (schema.py), and
# the expression is NOT NULL so that keyset pagination needs no NULL cases.
SORT_FIELDS = {
    "created": "t.created",
    "duration": "t.duration",
    "bpm": "ifnull(t.bpm, -1.0)",  # unknown BPM sorts below every real tempo
    "rating": "t.rating",
    "title": "t.title COLLATE NOCASE",
}

# sort=relevance: best match first, only with a search.  FTS5's bm25() with a
# weight per tracks_fts column (prompt, title, tags, notes, lyrics: the table's order):
# a word in the title or a tag counts most, then the prompt, the lyrics, the notes.
# bm25() is lower for better matches; the sort key is its negation, so "desc" is
# best first like every other sort, and ties go by seq.  No index can serve it:
# every match is scored and sorted (~1.7 us a match end to end, docs/benchmarks.md).
RELEVANCE_WEIGHTS = {"prompt": 4.0, "title": 10.0, "tags": 10.0, "notes": 2.0, "lyrics": 3.0}
_RELEVANCE_EXPR = f"-bm25(tracks_fts, {', '.join(map(str, RELEVANCE_WEIGHTS.values()))})"
LIST_SORTS = (*SORT_FIELDS, RELEVANCE)
# bm25 scores move whenever the library changes (they depend on how many tracks
# hold each word and on the average length), so relevance pages come from the
# ranking made for the first page, kept in memory: the last _RANKINGS_MAX of them,
# at most _RANKING_ROWS_MAX rows in all (16 bytes a row).
_RANKINGS_MAX = 64
_RANKING_ROWS_MAX = 1_000_000
# A ranking keeps the best _RANKING_CAP matches: SQLite's top-N sort is ~40% cheaper than
# sorting and fetching every match of a broad search (48k: 69 -> 42 ms). Pages past the cap
# go on by keyset from the last kept row, as when a ranking is no longer kept.
_RANKING_CAP = 2000


@dataclass(frozen=True)
class SearchSQL:
    """The SQL fragments of list_tracks that differ between backends (the logic is shared).

    ``?`` is the one placeholder; a search is the backend's query string from ``query``, and
    in a ranking its ``?`` comes before the filters' (in rank_from or as rank_match's first)."""

    query: Callable[[str | None], str | None]  # user text -> the backend's match query, None: no search
    sort_fields: dict[str, str]  # sort name -> a NOT NULL SQL expression on tracks t
    plus: str  # the unary + that keeps a filter off its index ("" where the backend has no such trick)
    match_filter: str  # WHERE term: track t matches the query (one ?)
    match_count: str  # how many tracks match the query alone (one ?)
    key_filter: str  # WHERE term: t.key equals ? ignoring case
    rank_from: str  # FROM of a relevance ranking when only the search filters
    rank_from_joined: str  # ... when other filters on t apply too
    rank_match: str  # WHERE term of a relevance ranking
    rank_seq: str  # the matched track's seq in a ranking
    rank_score: str  # its score, higher is better


SQLITE_SEARCH = SearchSQL(
    query=fts_query,
    sort_fields=SORT_FIELDS,
    plus="+",
    match_filter="t.seq IN (SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ?)",
    match_count="SELECT count(*) FROM tracks_fts WHERE tracks_fts MATCH ?",
    key_filter="t.key = ? COLLATE NOCASE",
    # The search drives (CROSS JOIN keeps the FTS table outer, "+" keeps the
    # filters off their indexes): every match has to be scored anyway.
    rank_from="tracks_fts",
    rank_from_joined="tracks_fts CROSS JOIN tracks t ON t.seq = tracks_fts.rowid",
    rank_match="tracks_fts MATCH ?",
    rank_seq="tracks_fts.rowid",
    rank_score=_RELEVANCE_EXPR,
)


class _Ranking:
    """A relevance ranking kept for later pages: track seqs best first, and their scores."""

    __slots__ = ("capped", "fingerprint", "order", "scores", "seqs")

    def __init__(self, fingerprint: str, order: str, seqs: array, scores: array, capped: bool = False) -> None:
        self.fingerprint, self.order, self.seqs, self.scores = fingerprint, order, seqs, scores
        self.capped = capped  # more matches than the ranking holds (_RANKING_CAP)




class SearchMixin(TracksMixin):
    """list_tracks: one page of the library for a search, filters and a sort."""

    _search_sql: SearchSQL = SQLITE_SEARCH

    async def list_tracks(self, *, search: str | None = None, tag: str | None = None,
                          favorite: bool | None = None, model: str | None = None,
                          bpm_min: float | None = None, bpm_max: float | None = None,
                          key: str | None = None, source: str | None = None,
                          sort: str = "created", order: str = "desc",
                          limit: int = 50, cursor: str | None = None,
                          with_peaks: bool = False, job_id: int | None = None) -> dict:
        """One page of tracks: {"tracks": [...], "next_cursor": str | None, "total": int | None}.

        ``search`` is free text (any text is safe, see fts_query) matched against
        prompt, title, tags, notes and lyrics; the filters AND together.  Keyset
        pagination on (sort key, insertion seq): pages never repeat or skip a row
        that existed when the first page was read, whatever is added or removed
        in between.  ``sort="relevance"`` (best match first; needs a search)
        pages through the ranking made for the first page instead, see
        _list_by_relevance.  ``total`` counts all matches and is given on the
        first page (cursor None); it is None on later pages.  A cursor only works with the
        same sort, order, search and filters (StoreError "invalid" otherwise).

        Plan choice (the planner alone gets it wrong in both directions): with
        few matches (<= _DRIVE_MAX) the filter drives and the page is sorted in
        memory; with many, the sort index is walked and rows are filtered, which
        finds a page after about limit * N / total index entries.  The choice is
        made from the first page's count and carried in the cursor.
        """
        if sort not in LIST_SORTS:
            raise _invalid("sort", f"unknown sort field {sort!r}; one of {', '.join(LIST_SORTS)}")
        if order not in ("asc", "desc"):
            raise _invalid("order", f"must be 'asc' or 'desc', got {order!r}")
        limit = _int("limit", limit, 1, MAX_LIST_LIMIT)
        dialect = self._search_sql
        match = dialect.query(search)
        if sort == RELEVANCE and match is None:
            raise _invalid("sort", "relevance needs a search with at least one letter or digit; "
                                   "sort by created, duration, bpm, rating or title without one")
        tag_n = None if tag is None else normalise_tag(tag)
        if favorite is not None:
            favorite = _bool("favorite", favorite)
        model = _text("model", model, max_chars=500, optional=True)
        bpm_min = _float("bpm_min", bpm_min, lo=0.0, optional=True)
        bpm_max = _float("bpm_max", bpm_max, lo=0.0, optional=True)
        if bpm_min is not None and bpm_max is not None and bpm_min > bpm_max:
            raise _invalid("bpm_min", f"{bpm_min} is above bpm_max {bpm_max}")
        key = _text("key", key, max_chars=100, optional=True)
        if job_id is not None and (type(job_id) is not int or not 1 <= job_id < 2**63):
            raise _invalid("job_id", f"must be a job id (an integer >= 1), got {job_id!r}")
        source = _text("source", source, max_chars=64, optional=True)
        with_peaks = _bool("with_peaks", with_peaks)

        # Each filter as (SQL with "{p}" where a unary + may go to keep the
        # planner from driving the query by that filter's index, args).
        filters: list[tuple[str, list[Any]]] = []
        if match is not None:
            filters.append(("{p}" + dialect.match_filter, [match]))
        if tag_n is not None:
            filters.append(("{p}t.seq IN (SELECT tt.track_seq FROM track_tags tt JOIN tags g "
                            "ON g.id = tt.tag_id WHERE g.name = ?)", [tag_n]))
        if favorite is not None:  # a literal, so the partial index on favourites applies
            filters.append((f"{{p}}t.favorite = {int(favorite)}", []))
        if model is not None:
            filters.append(("{p}t.model = ?", [model]))
        if bpm_min is not None or bpm_max is not None:
            # On the indexed expression; a lower bound >= 0 also drops unknown BPM (-1).
            filters.append(("{p}" + dialect.sort_fields["bpm"] + " >= ?", [bpm_min or 0.0]))
        if bpm_max is not None:
            filters.append(("{p}" + dialect.sort_fields["bpm"] + " <= ?", [bpm_max]))
        if key is not None:
            filters.append(("{p}" + dialect.key_filter, [key.strip()]))
        if job_id is not None:  # the tracks one job made (indexed: tracks_job)
            filters.append(("{p}t.job_id = ?", [job_id]))
        if source is not None:  # tracks derived from that track (repaints, covers, stems, parts)
            filters.append(("{p}t.seq IN (SELECT l.track_seq FROM track_lineage l WHERE l.source_id = ?)",
                            [source]))

        def where_sql(plus: str, extra: list[str] = ()) -> tuple[str, list[Any]]:
            terms = [f.format(p=plus) for f, _ in filters] + list(extra)
            params = [a for _, fa in filters for a in fa]
            return (" WHERE " + " AND ".join(terms)) if terms else "", params

        fingerprint = hashlib.sha1(json.dumps(
            [match, tag_n, favorite, model, bpm_min, bpm_max, key]
            + ([job_id] if job_id is not None else [])
            + (["source", source] if source is not None else [])).encode()).hexdigest()[:12]
        if sort == RELEVANCE:
            return await self._list_by_relevance(match, filters[1:], order, limit, cursor,  # type: ignore[arg-type]
                                                 fingerprint, with_peaks)
        expr = dialect.sort_fields[sort]
        keyset: list[str] = []
        keyset_args: list[Any] = []
        drive = None
        if cursor is not None:
            value, seq, drive, _ = _decode_cursor(cursor, sort, order, fingerprint)
            cmp = "<" if order == "desc" else ">"
            # The single-column bound is redundant but lets SQLite use an
            # expression index as a range (it does not for the row value alone).
            keyset = [f"{expr} {cmp}= ?", f"({expr}, t.seq) {cmp} (?, ?)"]
            keyset_args = [value, value, seq]
        direction = order.upper()
        cols = _TRACK_COLS + (", " + _PEAKS_COL if with_peaks else "")
        if match is not None and len(filters) == 1:
            count_sql, count_args = dialect.match_count, [match]
        else:
            w, count_args = where_sql("")
            count_sql = "SELECT count(*) FROM tracks t" + w

        async def op() -> dict:
            nonlocal drive
            total = None
            if cursor is None:
                total = await self._scalar(count_sql, count_args)
                drive = total <= _DRIVE_MAX
            w, params = where_sql("" if drive else dialect.plus, keyset)
            sql = (f"SELECT {cols}, {expr} AS sort_value FROM tracks t{w} "
                   f"ORDER BY {expr} {direction}, t.seq {direction} LIMIT ?")
            rows = await self._all(sql, (*params, *keyset_args, limit + 1))
            more = len(rows) > limit
            rows = rows[:limit]
            tags = await self._tags_for([r["seq"] for r in rows])
            tracks = []
            for r in rows:
                t = _track_dict(r, tags[r["seq"]], r["peaks"] if with_peaks else False)
                del t["sort_value"]
                tracks.append(t)
            next_cursor = None
            if more:
                last = rows[-1]
                next_cursor = _encode_cursor(sort, order, fingerprint, last["sort_value"],
                                             last["seq"], bool(drive))
            return {"tracks": tracks, "next_cursor": next_cursor, "total": total}

        return await self._run(op)

    async def _list_by_relevance(self, match: str, filters: list[tuple[str, list[Any]]], order: str,
                                 limit: int, cursor: str | None, fingerprint: str,
                                 with_peaks: bool) -> dict:
        """list_tracks for sort=relevance; ``filters`` are the ones besides the search.

        The first page scores every match (bm25 needs them all anyway) and keeps
        the best _RANKING_CAP of the ranking in memory under a random id that the
        cursor carries; past its end, pages go on by keyset as described below.
        Later pages walk that ranking, so they cannot shift when scores move
        (any added, edited or removed track changes every bm25 score): no track
        that matched at the first page is repeated or skipped.  Each page checks
        that its tracks still exist and still match; tracks added since are not
        in the ranking.  A cursor whose ranking is gone (daemon restarted, or
        _RANKINGS_MAX newer rankings since) goes on by keyset on (score, seq)
        under the current scores: exact only if the library has not changed.
        """
        ranking_id, pos, after = None, 0, None
        if cursor is not None:
            value, seq, _, (ranking_id, pos) = _decode_cursor(cursor, RELEVANCE, order, fingerprint)
            after = [value, seq]
        direction = order.upper()
        cmp = "<" if order == "desc" else ">"
        cols = _TRACK_COLS + (", " + _PEAKS_COL if with_peaks else "")
        d = self._search_sql
        source = d.rank_from_joined if filters else d.rank_from
        seq, score = d.rank_seq, d.rank_score
        terms = [d.rank_match, *(f.format(p=d.plus) for f, _ in filters)]
        filter_args = [a for _, fa in filters for a in fa]
        args = [match, *filter_args]  # the query's ? comes first either way: FROM or the first term

        async def rank() -> _Ranking:
            t, a = terms, args
            if after is not None:
                t = [*terms, f"({score}, {seq}) {cmp} (?, ?)"]
                a = [*args, *after]
            rows = await self._all(
                f"SELECT {seq} AS seq, {score} AS score FROM {source} "
                f"WHERE {' AND '.join(t)} ORDER BY score {direction}, {seq} {direction} "
                f"LIMIT {_RANKING_CAP}", a)
            return _Ranking(fingerprint, order, array("q", [r[0] for r in rows]),
                            array("d", [r[1] for r in rows]), capped=len(rows) == _RANKING_CAP)

        async def count() -> int:
            return int(await self._scalar(f"SELECT count(*) FROM {source} WHERE {' AND '.join(terms)}",
                                          args))

        async def rows_of(seqs: Iterable[int], recheck: bool) -> dict[int, Row]:
            seqs = list(seqs)
            if not seqs:
                return {}
            sql = f"SELECT {cols} FROM tracks t WHERE t.seq IN ({','.join('?' * len(seqs))})"
            a: list[Any] = seqs
            if recheck:  # a kept ranking: drop tracks deleted or edited out of the match since
                sql += " AND " + d.match_filter
                sql += "".join(" AND " + f.format(p="") for f, _ in filters)
                a = [*seqs, match, *filter_args]
            return {r["seq"]: r for r in await self._all(sql, a)}

        async def op() -> dict:
            total = None
            ranking = self._rankings.get(ranking_id) if ranking_id is not None else None
            if ranking is not None and (ranking.fingerprint, ranking.order) == (fingerprint, order) \
                    and pos <= len(ranking.seqs):
                self._rankings.move_to_end(ranking_id)  # type: ignore[arg-type]
                rid = ranking_id
                page: list[tuple[int, Row]] = []  # (position in the ranking, row)
                i = pos
                while len(page) <= limit and i < len(ranking.seqs):
                    chunk = ranking.seqs[i:i + limit + 1 - len(page)]
                    found = await rows_of(chunk, recheck=True)
                    page += [(j, found[s]) for j, s in enumerate(chunk, i) if s in found]
                    i += len(chunk)
                # Past a capped ranking's end there are more matches: the cursor goes on by keyset.
                more = len(page) > limit or (ranking.capped and i >= len(ranking.seqs) and bool(page))
            else:  # the first page, or a ranking no longer kept: rank (after the cursor's point)
                ranking = await rank()
                if cursor is None:
                    total = await count() if ranking.capped else len(ranking.seqs)
                more = len(ranking.seqs) > limit or ranking.capped
                rid = self._keep_ranking(ranking) if len(ranking.seqs) > limit else None
                found = await rows_of(ranking.seqs[:limit], recheck=False)
                page = [(j, found[s]) for j, s in enumerate(ranking.seqs[:limit]) if s in found]
            page = page[:limit]
            tags = await self._tags_for([r["seq"] for _, r in page])
            tracks = [_track_dict(r, tags[r["seq"]], r["peaks"] if with_peaks else False) for _, r in page]
            next_cursor = None
            if more and page:
                j, last = page[-1]
                next_cursor = _encode_cursor(RELEVANCE, order, fingerprint, ranking.scores[j], last["seq"],
                                             False, rid if j + 1 < len(ranking.seqs) else None, j + 1)
            return {"tracks": tracks, "next_cursor": next_cursor, "total": total}

        return await self._run(op)

    def _keep_ranking(self, ranking: _Ranking) -> str:
        """Keep a relevance ranking for its next pages; the least recently used go first."""
        rid = secrets.token_urlsafe(9)
        self._rankings[rid] = ranking
        rows = sum(len(r.seqs) for r in self._rankings.values())
        while self._rankings and (len(self._rankings) > _RANKINGS_MAX or rows > _RANKING_ROWS_MAX):
            rows -= len(self._rankings.popitem(last=False)[1].seqs)
        return rid

