"""list_tracks' SQL for PostgreSQL: tsvector + GIN for the search, ts_rank for relevance.

The search text is split into the same tokens as SQLite's (codecs.search_tokens); each
token is one quoted tsquery operand, so operators (& | ! <-> : * parentheses) in the
user's text are plain text, never syntax; the operands are ANDed and the last one is
a prefix match (search as you type).  PostgreSQL's parser then splits an operand as it
split the indexed text ("hip-hop" -> a phrase), in the ``dgx`` configuration
(accents folded), so a search finds what SQLite's FTS5 finds.
"""

from __future__ import annotations

from ..codecs import search_tokens
from ..search import RELEVANCE_WEIGHTS, SearchSQL, bounded_count


def pg_tsquery(text: str | None) -> str | None:
    """Any user text -> a safe to_tsquery('dgx', ...) input, or None for "no search"."""
    tokens = search_tokens(text)
    if not tokens:
        return None
    parts = ["'" + tok.replace("\\", "\\\\").replace("'", "\\'") + "'" for tok in tokens]
    parts[-1] += ":*"
    return " & ".join(parts)


# ts_rank's weights are {D, C, B, A}: notes (D), lyrics (C), prompt (B), title and tags (A),
# SQLite's bm25 column weights scaled to A = 1.
_W = RELEVANCE_WEIGHTS
_WEIGHTS = "{" + ",".join(str(_W[k] / _W["title"]) for k in ("notes", "lyrics", "prompt", "title")) + "}"
_QUERY = "to_tsquery('dgx', ?)"
# A ranking matches with the query (every word) and scores with the same words ORed: ts_rank
# of an AND query goes by how close the words are, of an OR query by how often each occurs
# (with diminishing returns), which is what bm25 rewards.  Tokens hold no spaces, so " & "
# only ever joins operands.  Normalisation 1 divides by 1 + log(length): a word in a short
# title counts more than the same word in a long one, as bm25's length normalisation does.
_RANK_FROM = ("(SELECT ?::text AS s) m CROSS JOIN to_tsquery('dgx', m.s) q"
              " CROSS JOIN to_tsquery('dgx', replace(m.s, ' & ', ' | ')) qo CROSS JOIN tracks t")

PG_SEARCH = SearchSQL(
    query=pg_tsquery,
    sort_fields={
        "created": "t.created",
        "duration": "t.duration",
        "bpm": "coalesce(t.bpm, -1.0)",  # unknown BPM sorts below every real tempo
        "rating": "t.rating",
        "title": "lower(t.title)",
    },
    plus="",  # PostgreSQL has no unary + on text; its planner chooses by statistics
    match_filter=f"t.fts @@ {_QUERY}",
    match_count=bounded_count(f"FROM tracks t WHERE t.fts @@ {_QUERY}"),
    key_filter="lower(t.key) = lower(?)",
    rank_from=_RANK_FROM,
    rank_from_joined=_RANK_FROM,
    rank_match="t.fts @@ q",
    rank_seq="t.seq",
    rank_score=f"ts_rank('{_WEIGHTS}', t.fts, qo, 1)::float8",
    # The window is cut first and only its rows are scored (ts_rank in the inner SELECT would
    # run for every match before the sort, and carrying fts through the sort costs as much).
    # The inner query matches a constant tsquery, so the planner sees the word's frequency
    # (tsvector statistics): a rare word reads its GIN matches and keeps the newest, a word in
    # most tracks walks the primary key backwards and stops after the window.
    rank_window="SELECT t.seq AS seq, {score} AS score FROM "
                "(SELECT t.seq AS s FROM {source} WHERE {where} ORDER BY {order} DESC LIMIT {window}) c "
                "JOIN tracks t ON t.seq = c.s CROSS JOIN to_tsquery('dgx', replace(?::text, ' & ', ' | ')) qo",
    window_source="tracks t",
    window_match=f"t.fts @@ (SELECT {_QUERY})",  # parsed once, also for the bitmap's recheck
    window_seq="t.seq",
    window_trailing_match=True,
    # Each plan is forced, not left to estimates (asyncpg's prepared statements get
    # PostgreSQL's generic plan after five runs, which cannot see a word's frequency, and the
    # planner misjudges the walk: each row's @@ reads its tsvector, so a word in 8% of 100k
    # tracks walked 23k rows, 93 ms, where reading its 8.5k GIN matches takes ~6 ms).  Up to
    # TOTAL_EXACT_MAX matches: one read of them gives the count and the newest window; more:
    # ts_match_vq (@@ as a function, which no index serves) walks the primary key back and
    # stops after the window.
    rank_window_counted="WITH m AS MATERIALIZED "
                        "(SELECT t.seq FROM {source} WHERE {where} {m_order} LIMIT {bound}), "
                        "c AS (SELECT seq AS s FROM m ORDER BY seq DESC LIMIT {window}) "
                        "SELECT t.seq AS seq, {score} AS score, (SELECT count(*) FROM m) AS n FROM c "
                        "JOIN tracks t ON t.seq = c.s "
                        "CROSS JOIN to_tsquery('dgx', replace(?::text, ' & ', ' | ')) qo",
    # The choice between the two (search._window_by_walk) estimates the matches from the newest
    # few hundred tracks (~0.3 ms): for 'dar' (11.6k matches) reading them all once (~12 ms)
    # beats counting 10,001 and then walking ~17k rows (~25 ms); for a word in every track the
    # walk stops after 2,000 rows, and on the first page walks on to the 10,001st match for the
    # count (search._count_by_walk) instead of counting through a 100k-entry bitmap.
    window_probe="SELECT count(*) FILTER (WHERE ts_match_vq(p.fts, (SELECT to_tsquery('dgx', ?)))), "
                 "count(*), coalesce(max(p.seq), 0) "
                 "FROM (SELECT t.seq, t.fts FROM tracks t {below} ORDER BY t.seq DESC LIMIT {probe}) p",
    # The tsquery as an InitPlan: to_tsquery is only STABLE, so as a call in a filter it would
    # be parsed again for every row walked (~4 us each).
    window_walk_match=f"ts_match_vq(t.fts, (SELECT {_QUERY}))",
)
