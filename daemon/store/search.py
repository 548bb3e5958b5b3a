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
# Relevance scores a bounded window of matches, not every match: the _RANK_WINDOW newest
# (highest seq) matches are ranked best first; older matches follow in further windows of the
# same size, each best first.  A search that matches up to _RANK_WINDOW tracks (nearly every
# specific search) is ranked whole, exactly as before.  Why: scoring is ~1.7 us a match plus
# a sort (a word in every one of 100k tracks: 130-320 ms a page), and among thousands of
# matches of a one- or two-letter prefix the best-scored few are not much better than the
# newest; the window is found without scoring (FTS5 walks its doclist by rowid descending and
# stops, PostgreSQL reads the newest seqs of the GIN match), so its cost stops growing with
# the matches.  The reply says how many were ranked (``ranked``).
_RANK_WINDOW = 2000
# ``total`` is exact up to this many matches and then reported as this bound with
# total_exact False ("10,000+"), as Elasticsearch's track_total_hits does: counting every one
# of 100k matches costs more than finding the page (15-30 ms, docs/benchmarks.md).
TOTAL_EXACT_MAX = 10_000
# Where the backend can read a search's matches through its index in one pass (PostgreSQL's GIN
# bitmap: ~1 us a match, for the count and the newest window together), it does that for up to
# _GIN_READ_MAX matches, unless _window_by_walk says walking the seq index back is cheaper; the
# choice comes from the share of matches in the newest _PROBE_ROWS tracks (one cheap walk).
_PROBE_ROWS = 500
_GIN_READ_MAX = 3 * TOTAL_EXACT_MAX


def _window_by_walk(est: float, span: int) -> bool:
    """Whether to count (at most TOTAL_EXACT_MAX + 1 reads) and walk the newest ``span`` seqs
    back for the window (about _RANK_WINDOW * span / est rows) rather than read all ``est``
    estimated matches once.  Only a plan choice: both plans give the same window and total."""
    if est <= TOTAL_EXACT_MAX:
        return False  # one pass reads them all anyway, and the count needs no more
    return TOTAL_EXACT_MAX + 1 + _RANK_WINDOW * span / est < est


def _count_by_walk(est: float, span: int) -> bool:
    """With the walk chosen and a count wanted: whether to walk on to the TOTAL_EXACT_MAX + 1-th
    match (about that many * span / est rows; one query gives the count and the window) rather
    than count through the index and then walk for the window (a word in every track: ~5 ms
    against ~14 ms)."""
    return (TOTAL_EXACT_MAX + 1) * span / est < TOTAL_EXACT_MAX + 1 + _RANK_WINDOW * span / est


def _list_count_by_walk(est: float, span: int) -> bool:
    """A search listed by a sort field, first page: whether to count by walking the newest seqs
    back to the TOTAL_EXACT_MAX + 1-th match (at most twice that many rows when the word is in
    most tracks) rather than through the index, which for such a word first builds a bitmap of
    every match (a word in every one of 100k tracks: ~10 ms).  Only a plan choice: both give
    the same count."""
    return est > TOTAL_EXACT_MAX and 2 * est > span


def bounded_count(sql_from_where: str) -> str:
    """count(*) of a FROM ... WHERE ... that stops after {bound} rows (see with_bound)."""
    return f"SELECT count(*) FROM (SELECT 1 {sql_from_where} LIMIT {{bound}}) b"


def with_bound(sql: str) -> str:
    """A bounded_count's SQL with its bound: one row past TOTAL_EXACT_MAX tells "more"."""
    return sql.replace("{bound}", str(TOTAL_EXACT_MAX + 1))


def capped_total(n: int) -> tuple[int, bool]:
    """(total, total_exact) from a bounded count."""
    return (TOTAL_EXACT_MAX, False) if n > TOTAL_EXACT_MAX else (n, True)


@dataclass(frozen=True)
class SearchSQL:
    """The SQL fragments of list_tracks that differ between backends (the logic is shared).

    ``?`` is the one placeholder; a search is the backend's query string from ``query``, and
    in a ranking its ``?`` comes before the filters' (in rank_from or as rank_match's first)."""

    query: Callable[[str | None], str | None]  # user text -> the backend's match query, None: no search
    sort_fields: dict[str, str]  # sort name -> a NOT NULL SQL expression on tracks t
    plus: str  # the unary + that keeps a filter off its index ("" where the backend has no such trick)
    match_filter: str  # WHERE term: track t matches the query (one ?)
    match_count: str  # how many tracks match the query alone, bounded_count (one ?)
    key_filter: str  # WHERE term: t.key equals ? ignoring case
    rank_from: str  # FROM of a relevance ranking when only the search filters
    rank_from_joined: str  # ... when other filters on t apply too
    rank_match: str  # WHERE term of a relevance ranking
    rank_seq: str  # the matched track's seq in a ranking
    rank_score: str  # its score, higher is better
    # The newest {window} matches, scored: {seq} AS seq, {score} AS score from {source} where
    # {where}; the backend decides whether scoring can wait until the window is cut.
    rank_window: str = ("SELECT {seq} AS seq, {score} AS score FROM {source} WHERE {where} "
                        "ORDER BY {order} DESC LIMIT {window}")
    # Where set: the window from the first {bound} matches, with their count as a third column
    # ({m_order} is "" or, when {where} walks the seq index, its ORDER BY); rank_window (with
    # window_walk_match) when more match, or when window_probe says walking is cheaper.
    rank_window_counted: str = ""
    # (matches, rows, highest seq) among the newest {probe} tracks {below} (the query's ? first,
    # then the seq bound where {below} is set): the estimate behind _window_by_walk.
    window_probe: str = ""
    window_walk_match: str = ""  # the search term as no index serves it (walks the seq index)
    window_source: str = ""  # FROM of rank_window's {source} ("": rank_from / rank_from_joined)
    window_match: str = ""  # its WHERE term for the search ("": rank_match)
    window_seq: str = ""  # its {seq} ("": rank_seq)
    window_trailing_match: bool = False  # the query's ? is passed once more after the WHERE's
    # Where set: the {limit} matches with the highest (or lowest, {dir} ASC) seq, {bound} the seq
    # range ("AND ... ?" or ""), the query's ? first; see SearchMixin._newest_page.
    newest_matches: str = ""


SQLITE_SEARCH = SearchSQL(
    query=fts_query,
    sort_fields=SORT_FIELDS,
    plus="+",
    match_filter="t.seq IN (SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ?)",
    match_count=bounded_count("FROM tracks_fts WHERE tracks_fts MATCH ?"),
    key_filter="t.key = ? COLLATE NOCASE",
    # The search drives (CROSS JOIN keeps the FTS table outer, "+" keeps the
    # filters off their indexes): every match has to be scored anyway.
    rank_from="tracks_fts",
    rank_from_joined="tracks_fts CROSS JOIN tracks t ON t.seq = tracks_fts.rowid",
    rank_match="tracks_fts MATCH ?",
    rank_seq="tracks_fts.rowid",
    rank_score=_RELEVANCE_EXPR,
    newest_matches="SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ?{bound} "
                   "ORDER BY rowid {dir} LIMIT {limit}",
)


class _Ranking:
    """A relevance ranking kept for later pages: track seqs best first, and their scores."""

    __slots__ = ("capped", "fingerprint", "floor", "order", "scores", "seqs", "size")

    def __init__(self, fingerprint: str, order: str, seqs: array, scores: array, capped: bool = False,
                 floor: int | None = None, size: int = 0) -> None:
        self.fingerprint, self.order, self.seqs, self.scores = fingerprint, order, seqs, scores
        self.capped = capped  # its window was full: older matches may follow in the next window
        self.floor = floor  # the lowest seq in its window: the next window is below it
        self.size = size  # how many matches its window ranked


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
        """One page of tracks: {"tracks": [...], "next_cursor": str | None, "total": int | None,
        "total_exact": bool | None} (and "ranked" with sort=relevance).

        ``search`` is free text (any text is safe, see fts_query) matched against
        prompt, title, tags, notes and lyrics; the filters AND together.  Keyset
        pagination on (sort key, insertion seq): pages never repeat or skip a row
        that existed when the first page was read, whatever is added or removed
        in between.  ``sort="relevance"`` (best match first; needs a search)
        pages through the ranking made for the first page instead, see
        _list_by_relevance.  ``total`` counts the matches and is given on the
        first page (cursor None), exact up to TOTAL_EXACT_MAX: beyond it ``total``
        is that bound and ``total_exact`` False (show it as "10,000+"); both are
        None on later pages.  A cursor only works with the
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
            count_sql = bounded_count("FROM tracks t" + w)

        async def op() -> dict:
            nonlocal drive
            total = exact = None
            if cursor is None:
                sql = count_sql
                if match is not None and len(filters) == 1 and dialect.window_probe:
                    est, span = await self._estimate_matches(match, None)
                    if _list_count_by_walk(est, span):
                        sql = bounded_count(f"FROM tracks t WHERE {dialect.window_walk_match} "
                                            f"ORDER BY t.seq DESC")
                total, exact = capped_total(int(await self._scalar(with_bound(sql), count_args)))
                drive = total <= _DRIVE_MAX
            rows = None
            if not drive and sort == "created" and dialect.newest_matches and match is not None \
                    and len(filters) == 1:
                rows = await self._newest_page(match, cols, order, limit, keyset, keyset_args)
            if rows is None:
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
            return {"tracks": tracks, "next_cursor": next_cursor, "total": total, "total_exact": exact}

        return await self._run(op)

    async def _newest_page(self, match: str, cols: str, order: str, limit: int, keyset: list[str],
                           keyset_args: list[Any]) -> list[Row] | None:
        """A search's page by date from its newest matches by seq, or None: use the usual plan.

        Why: a search matching most of the library sorted by date walked the date index against
        the IN list of every match (100k rowids built for one page, ~12 ms).  Tracks get their
        seq as they are added, so the newest matches by seq (FTS5 reads its doclist backwards and
        stops) are nearly always the newest by date.  Exact whatever the dates: the page is used
        only when no track that sorts before its last row lies outside the seq range that was
        read (one probe of the date index over that short range); otherwise None."""
        desc = order == "desc"
        lt, gt = ("<", ">") if desc else (">", "<")
        bound, bargs = "", []
        if keyset_args:  # a later page: below (above, ascending) the cursor's seq first
            bound, bargs = f" AND rowid {lt} ?", [keyset_args[2]]
        want = limit + 1
        seqs = [r[0] for r in await self._all(
            self._search_sql.newest_matches.format(bound=bound, dir=order.upper(), limit=want), [match, *bargs])]
        if not seqs:
            return None
        expr = "t.created"
        w = " AND ".join([f"t.seq IN ({','.join('?' * len(seqs))})", *keyset])
        rows = await self._all(f"SELECT {cols}, {expr} AS sort_value FROM tracks t WHERE {w} "
                               f"ORDER BY {expr} {order}, t.seq {order} LIMIT ?", [*seqs, *keyset_args, want])
        if len(rows) < want:
            return None
        last = rows[-1]
        # A track that sorts before the last row but whose seq was not in the range read.
        outside = [f"t.seq {lt} ?"] if len(seqs) == want else []  # the read stopped: older seqs unread
        outside_args: list[Any] = [seqs[-1]] if outside else []
        if bargs:
            outside.append(f"t.seq {gt}= ?")
            outside_args.append(bargs[0])
        if not outside:
            return rows
        probe = " AND ".join([f"{expr} {gt}= ?", f"({expr}, t.seq) {gt} (?, ?)", *keyset,
                              "(" + " OR ".join(outside) + ")"])
        hit = await self._all(f"SELECT 1 FROM tracks t WHERE {probe} LIMIT 1",
                              [last["sort_value"], last["sort_value"], last["seq"], *keyset_args, *outside_args])
        return None if hit else rows

    async def _list_by_relevance(self, match: str, filters: list[tuple[str, list[Any]]], order: str,
                                 limit: int, cursor: str | None, fingerprint: str,
                                 with_peaks: bool) -> dict:
        """list_tracks for sort=relevance; ``filters`` are the ones besides the search.

        The first page scores the newest _RANK_WINDOW matches (all of them in a library
        where fewer match) and keeps that ranking in memory under a random id that the
        cursor carries.  Later pages walk that ranking, so they cannot shift when scores
        move (any added, edited or removed track changes every bm25 score): no track that
        matched at the first page is repeated or skipped.  Each page checks that its tracks
        still exist and still match; tracks added since are not in the ranking.  When a
        full window has been paged through, the next window (the _RANK_WINDOW newest matches
        below its lowest seq) is ranked the same way, so every match still comes once.  A
        cursor whose ranking is gone (daemon restarted, or _RANKINGS_MAX newer rankings
        since) ranks its window again and goes on after its (score, seq) under the current
        scores: exact only if the library has not changed.
        """
        ranking_id, pos, after, below = None, 0, None, None
        if cursor is not None:
            value, seq, _, extra = _decode_cursor(cursor, RELEVANCE, order, fingerprint)
            ranking_id, pos = extra[0], extra[1]
            below = extra[2] if len(extra) > 2 else None
            if pos > 0:  # pos 0 starts a window: nothing of it has been shown yet
                after = (value, seq)
        desc = order == "desc"
        cols = _TRACK_COLS + (", " + _PEAKS_COL if with_peaks else "")
        d = self._search_sql
        source = d.rank_from_joined if filters else d.rank_from
        seq_col, score = d.rank_seq, d.rank_score
        terms = [d.rank_match, *(f.format(p=d.plus) for f, _ in filters)]
        filter_args = [a for _, fa in filters for a in fa]
        args = [match, *filter_args]  # the query's ? comes first either way: FROM or the first term

        wseq = d.window_seq or seq_col
        wsource = d.window_source or source
        wterms = [d.window_match or d.rank_match, *terms[1:]]

        async def count(t: list[str] = wterms, a: list[Any] = args) -> int:
            return int(await self._scalar(with_bound(bounded_count(f"FROM {wsource} WHERE {' AND '.join(t)}")), a))

        async def rank() -> tuple[_Ranking, int | None]:
            """The window below ``below`` ranked best first (after ``after``, if set), and the
            bounded count of the matches below ``below`` where the backend counted them."""
            t, a = wterms, list(args)
            if below is not None:
                t, a = [*t, f"{wseq} < ?"], [*a, below]
            fmt = dict(seq=wseq, order=wseq, score=score, source=wsource, where=" AND ".join(t),
                       window=_RANK_WINDOW, bound=TOTAL_EXACT_MAX + 1)
            trail = [match] if d.window_trailing_match else []
            n = None
            rows: list[Any] = []
            walk = not d.rank_window_counted
            walk_where = " AND ".join([d.window_walk_match or t[0], *t[1:]])
            if d.rank_window_counted and d.window_probe:
                est, top = await self._estimate_matches(match, below)
                walk = bool(top) and _window_by_walk(est, top)
                if walk and cursor is None and _count_by_walk(est, top):
                    # The count (at most TOTAL_EXACT_MAX + 1 matches) and the window in one walk.
                    rows = await self._all(d.rank_window_counted.format(
                        **{**fmt, "where": walk_where, "bound": TOTAL_EXACT_MAX + 1,
                           "m_order": f"ORDER BY {wseq} DESC"}), [*a, *trail])
                    n = int(rows[0][2]) if rows else 0
                    walk = False
            if not walk and n is None:
                # One pass over at most _GIN_READ_MAX + 1 matches gives both the count and,
                # when that is all of them, the window; a broader search walks instead.
                rows = await self._all(d.rank_window_counted.format(
                    **{**fmt, "bound": _GIN_READ_MAX + 1, "m_order": ""}), [*a, *trail])
                n = int(rows[0][2]) if rows else 0
                if n > _GIN_READ_MAX:  # more than the estimate said: walk (and count, if not yet past)
                    walk, n = True, (n if n > TOTAL_EXACT_MAX else None)
            if walk:
                if d.rank_window_counted:
                    fmt["where"] = walk_where
                rows = await self._all(d.rank_window.format(**fmt), [*a, *trail])
            floor = min((r[0] for r in rows), default=None)
            # Best first: score, then seq, both in the order asked for (the window is at most
            # _RANK_WINDOW rows, so sorting it here costs well under a millisecond).
            ranked = sorted(((float(r[1]), int(r[0])) for r in rows), reverse=desc)
            if after is not None:
                key = (float(after[0]), int(after[1]))
                ranked = [x for x in ranked if (x < key if desc else x > key)]
            return _Ranking(fingerprint, order, array("q", [x[1] for x in ranked]),
                            array("d", [x[0] for x in ranked]), capped=len(rows) == _RANK_WINDOW,
                            floor=floor, size=len(rows)), n

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
            total = exact = ranked = None
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
            else:  # the first page, a new window, or a ranking no longer kept: rank the window
                ranking, n = await rank()
                if cursor is None:
                    ranked = ranking.size
                    total, exact = (capped_total(n if n is not None else await count()) if ranking.capped
                                    else (len(ranking.seqs), True))
                rid = self._keep_ranking(ranking) if len(ranking.seqs) > limit else None
                found = await rows_of(ranking.seqs[:limit + 1], recheck=False)
                page = [(j, found[s]) for j, s in enumerate(ranking.seqs[:limit + 1]) if s in found]
                i = min(len(ranking.seqs), limit + 1)
            goes_on = len(page) > limit  # a row of this window past this page
            page = page[:limit]
            tags = await self._tags_for([r["seq"] for _, r in page])
            tracks = [_track_dict(r, tags[r["seq"]], r["peaks"] if with_peaks else False) for _, r in page]
            next_cursor = None
            if goes_on:
                j, last = page[-1]
                next_cursor = _encode_cursor(RELEVANCE, order, fingerprint, ranking.scores[j], last["seq"],
                                             False, rid, j + 1, below)
            elif ranking.capped and ranking.floor is not None:  # a full window is done: older matches
                next_cursor = _encode_cursor(RELEVANCE, order, fingerprint, 0.0, 0, False,
                                             None, 0, ranking.floor)
            reply = {"tracks": tracks, "next_cursor": next_cursor, "total": total, "total_exact": exact}
            if cursor is None:
                reply["ranked"] = ranked
            return reply

        return await self._run(op)

    async def _estimate_matches(self, match: str, below: int | None) -> tuple[float, int]:
        """(estimated matches, highest seq) below ``below`` (None: all), from the share of
        matches among the newest _PROBE_ROWS tracks there (window_probe: one short walk)."""
        probe = self._search_sql.window_probe.format(
            probe=_PROBE_ROWS, below="" if below is None else f"WHERE {self._search_sql.window_seq} < ?")
        hits, seen, top = (await self._all(probe, [match, *([] if below is None else [below])]))[0]
        return (int(hits) * int(top) / int(seen) if seen else 0.0), (int(top) if seen else 0)

    def _keep_ranking(self, ranking: _Ranking) -> str:
        """Keep a relevance ranking for its next pages; the least recently used go first."""
        rid = secrets.token_urlsafe(9)
        self._rankings[rid] = ranking
        rows = sum(len(r.seqs) for r in self._rankings.values())
        while self._rankings and (len(self._rankings) > _RANKINGS_MAX or rows > _RANKING_ROWS_MAX):
            rows -= len(self._rankings.popitem(last=False)[1].seqs)
        return rid

