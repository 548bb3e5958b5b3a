"""sort=relevance: bm25 order, its pagination (kept rankings, keyset fallback), errors, safety."""

from __future__ import annotations

import base64
import json
import random

import pytest
from dgx_music.daemon.store import search as store_module
from dgx_music.daemon.store import LIST_SORTS, RELEVANCE, Store, StoreError, fts_query

from .conftest import track
from .test_library import NASTY, seed_library


def row(i: int | str, prompt: str, title: str | None = None, notes: str = "", tags: list[str] | None = None,
        **kw) -> dict:
    return {**track(f"r/{i}.flac"), "id": f"r{i}", "prompt": prompt, "title": title or f"Track {i}",
            "notes": notes, "tags": tags or [], **kw}


async def ids(store: Store, **kw) -> list[str]:
    return [t["id"] for t in (await store.list_tracks(sort=RELEVANCE, **kw))["tracks"]]


async def scores(store: Store, search: str) -> dict[str, float]:
    """Every match's relevance score as the store computes it now, by track id."""
    d = store._search_sql  # the backend's own scoring SQL (bm25 in SQLite, ts_rank in PostgreSQL)
    rows = await store._all(f"SELECT t.id, {d.rank_score} FROM {d.rank_from_joined} WHERE {d.rank_match}",
                            [d.query(search)])
    return {r[0]: r[1] for r in rows}


async def all_pages(store: Store, limit: int, **kw) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        assert len(seen) < 5000, "paging never ends"
        page = await store.list_tracks(sort=RELEVANCE, limit=limit, cursor=cursor, **kw)
        assert (page["total"] is None) == (cursor is not None)
        assert len(page["tracks"]) <= limit
        seen += [t["id"] for t in page["tracks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_relevance_is_a_list_sort() -> None:
    assert RELEVANCE in LIST_SORTS and RELEVANCE not in store_module.SORT_FIELDS
    weights = store_module.RELEVANCE_WEIGHTS
    assert list(weights) == ["prompt", "title", "tags", "notes", "lyrics"]  # tracks_fts's column order
    assert weights["title"] > weights["prompt"] > weights["lyrics"] > weights["notes"]
    assert weights["tags"] > weights["prompt"]


async def test_title_beats_notes_and_more_matches_rank_higher(store: Store) -> None:
    # Added oldest first, so newest-first order would be the reverse of the expected one.
    await store.import_tracks([
        row(1, "slow ambient pads", title="Nightfall"),
        row(2, "slow ambient pads", tags=["nightfall"]),
        row(3, "nightfall over the city, slow ambient pads"),
        row(4, "slow ambient pads", notes="nightfall would be a good name for this one"),
    ])
    assert await ids(store, search="nightfall") == ["r1", "r2", "r3", "r4"]
    assert await ids(store, search="nightfall", order="asc") == ["r4", "r3", "r2", "r1"]

    await store.import_tracks([
        row(5, "piano and strings"),
        row(6, "piano and pizzicato strings"),    # the prefix "pi" matches two words here
        row(7, "piano piano piano and strings"),  # the same word three times
        row(8, "guitar and strings"),
    ])
    ranked = await ids(store, search="strings pi")
    if store.backend == "sqlite":  # bm25 counts the prefix's hits; ts_rank each word it matched
        assert ranked == ["r7", "r6", "r5"]
    else:
        assert set(ranked[:2]) == {"r7", "r6"} and ranked[2:] == ["r5"]
    # Every search word is still required (AND), whatever the sort.
    assert set(await ids(store, search="pads nightfall")) == {"r1", "r2", "r3", "r4"}


async def test_equal_scores_go_by_insertion_order(store: Store) -> None:
    await store.import_tracks([row(i, "same words", title="Same") for i in range(5)])
    assert await ids(store, search="same") == ["r4", "r3", "r2", "r1", "r0"]
    assert await ids(store, search="same", order="asc") == ["r0", "r1", "r2", "r3", "r4"]


async def test_relevance_needs_a_search(store: Store) -> None:
    await store.import_tracks([row(1, "lofi")])
    for kw in ({}, {"search": ""}, {"search": "   "}, {"search": "-- ** ()"}, {"tag": "x"}):
        with pytest.raises(StoreError) as e:
            await store.list_tracks(sort=RELEVANCE, **kw)
        assert e.value.code == "invalid" and e.value.field == "sort", kw
        assert str(e.value).startswith("sort: relevance needs a search"), str(e.value)
    with pytest.raises(StoreError) as e:
        await store.list_tracks(sort="best")
    assert e.value.field == "sort" and "relevance" in str(e.value)  # the error lists it


@pytest.mark.parametrize("text", NASTY)
async def test_hostile_search_is_safe_with_relevance(store: Store, text: str) -> None:
    await store.import_tracks([row(1, "lofi piano"), row(2, 'say "hi" NEAR(x) title:a OR b', notes="日本語 café")])
    try:
        page = await store.list_tracks(search=text, sort=RELEVANCE)
    except StoreError as e:  # only ever the "no usable search" answer
        assert fts_query(text) is None and e.code == "invalid" and e.field == "sort"
        return
    assert fts_query(text) is not None
    assert page["total"] == len(page["tracks"])
    assert (await store.list_tracks())["total"] == 2  # nothing changed


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("filters", [{"search": "lofi pi"}, {"search": "jazz"},
                                     {"search": "lofi", "favorite": True}, {"search": "jazz", "tag": "a"}])
async def test_relevance_pages_cover_every_match_once_in_order(store: Store, order: str, filters: dict) -> None:
    await seed_library(store, 150, random.Random(f"rel{order}{filters}"))
    everything = await store.list_tracks(sort=RELEVANCE, order=order, limit=1000, **filters)
    assert everything["next_cursor"] is None and everything["total"] == len(everything["tracks"]) > 4
    expected = [t["id"] for t in everything["tracks"]]
    seen = await all_pages(store, 4, order=order, **filters)
    assert seen == expected and len(set(seen)) == len(seen)
    score = await scores(store, filters["search"])
    vals = [score[i] for i in seen]
    assert vals == sorted(vals, reverse=order == "desc")
    # the same with no kept ranking at all: keyset on (score, seq) gives the same pages
    store._rankings.clear()
    cursor, seen2 = None, []
    while True:
        page = await store.list_tracks(sort=RELEVANCE, order=order, limit=4, cursor=cursor, **filters)
        store._rankings.clear()
        seen2 += [t["id"] for t in page["tracks"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen2 == expected


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_many_matches_rank_in_windows_of_the_newest(store: Store, order: str, monkeypatch) -> None:
    """With more matches than _RANK_WINDOW, the first page ranks only the newest _RANK_WINDOW
    (the reply says how many: ``ranked``); pages go on window by window, newest window first,
    each best first, and together give every match exactly once, also when the kept rankings
    are forgotten between pages (each window is ranked again and resumed by keyset)."""
    monkeypatch.setattr(store_module, "_RANK_WINDOW", 7)
    await seed_library(store, 150, random.Random(f"cap{order}"))
    score = await scores(store, "lofi")
    seq = {r[0]: r[1] for r in await store._all("SELECT id, seq FROM tracks")}
    newest = sorted(score, key=lambda i: -seq[i])
    expected: list[str] = []
    for k in range(0, len(newest), 7):
        expected += sorted(newest[k:k + 7], key=lambda i: (score[i], seq[i]), reverse=order == "desc")
    first = await store.list_tracks(sort=RELEVANCE, order=order, limit=3, search="lofi")
    assert first["ranked"] == 7 and first["total"] == len(expected) > 14 and first["total_exact"] is True
    assert [t["id"] for t in first["tracks"]] == expected[:3]
    for limit in (3, 4, 7, 10):
        store._rankings.clear()
        assert await all_pages(store, limit, order=order, search="lofi") == expected
    seen: list[str] = []
    cursor = None
    while True:
        assert len(seen) < 5000, "paging never ends"
        store._rankings.clear()
        page = await store.list_tracks(sort=RELEVANCE, order=order, limit=4, search="lofi", cursor=cursor)
        seen += [t["id"] for t in page["tracks"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == expected
    # Past the counting bound: the total is flagged as a lower bound (PostgreSQL also takes its
    # other window plan then, walking the seq index), and the pages are the same.
    monkeypatch.setattr(store_module, "TOTAL_EXACT_MAX", 10)
    store._rankings.clear()
    first = await store.list_tracks(sort=RELEVANCE, order=order, limit=3, search="lofi")
    assert (first["total"], first["total_exact"], first["ranked"]) == (10, False, 7)
    assert await all_pages(store, 4, order=order, search="lofi") == expected


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("search", ["lofi", "jazz lofi"])
@pytest.mark.parametrize("filters", [{}, {"favorite": True}])
async def test_window_plans_give_the_same_pages(store: Store, order: str, search: str, filters: dict,
                                                monkeypatch) -> None:
    """PostgreSQL gets a window either by reading every match once (count and newest window
    together) or by counting and walking the seq index back; _window_by_walk picks one from an
    estimate (and, walking, whether to count by walking on too).  A choice either way, or a read
    that finds more than _GIN_READ_MAX, only costs time: the total, ``ranked`` and every page
    are the same."""
    monkeypatch.setattr(store_module, "_RANK_WINDOW", 7)
    monkeypatch.setattr(store_module, "TOTAL_EXACT_MAX", 10)
    await seed_library(store, 150, random.Random(f"plans{order}{search}"))
    chosen: list[bool] = []
    real = store_module._window_by_walk

    def spy(est: float, span: int) -> bool:
        chosen.append(real(est, span))
        return chosen[-1]

    results = {}
    for plan, choice, read_max, count_walk in [
            ("chosen", None, 30, None), ("read", False, 10**6, None),
            ("walk, count by index", True, 10**6, False), ("walk, count by walk", True, 10**6, True),
            ("read past its bound, below the count's", False, 5, None),
            ("read past its bound, past the count's", False, 12, None)]:
        monkeypatch.setattr(store_module, "_GIN_READ_MAX", read_max)
        monkeypatch.setattr(store_module, "_window_by_walk", spy if choice is None else (lambda e, s, c=choice: c))
        if count_walk is not None:
            monkeypatch.setattr(store_module, "_count_by_walk", lambda e, s, c=count_walk: c)
        store._rankings.clear()
        first = await store.list_tracks(sort=RELEVANCE, order=order, limit=3, search=search, **filters)
        results[plan] = ((first["total"], first["total_exact"], first["ranked"]),
                         await all_pages(store, 4, order=order, search=search, **filters))
    assert all(r == results["read"] for r in results.values()), results
    if not filters:  # the expected pages, from every match's score: newest windows, each best first
        score = await scores(store, search)
        seq = {r[0]: r[1] for r in await store._all("SELECT id, seq FROM tracks")}
        newest = sorted(score, key=lambda i: -seq[i])
        expected: list[str] = []
        for k in range(0, len(newest), 7):
            expected += sorted(newest[k:k + 7], key=lambda i: (score[i], seq[i]), reverse=order == "desc")
        total = (10, False) if len(expected) > 10 else (len(expected), True)
        assert results["read"] == ((*total, min(7, len(expected))), expected)
    if store._search_sql.window_probe:  # PostgreSQL: a word in ~43% of tracks walks, ~14% reads
        assert chosen[0] is (search == "lofi"), chosen
    else:
        assert chosen == []


async def test_few_matches_are_ranked_whole(store: Store) -> None:
    """Up to _RANK_WINDOW matches (any library below it): every match is ranked, best first."""
    await seed_library(store, 60, random.Random("whole"))
    score = await scores(store, "lofi")
    first = await store.list_tracks(sort=RELEVANCE, limit=1000, search="lofi")
    assert first["ranked"] == first["total"] == len(score) and first["total_exact"] is True
    got = [t["id"] for t in first["tracks"]]
    assert [score[i] for i in got] == sorted(score.values(), reverse=True)


def varied_library(rng: random.Random, n: int) -> list[dict]:
    """Tracks whose search words come in different numbers, columns and text lengths, so
    that their bm25 order depends on the corpus statistics."""
    filler = ["warm", "dark", "slow", "drums", "bass", "tape", "rain", "night", "city", "synth"]
    rows = []
    for i in range(n):
        words = rng.sample(filler, rng.randint(0, 8)) + ["lofi"] * rng.randint(1, 3) + ["piano"] * rng.randint(0, 3)
        rng.shuffle(words)
        rows.append(row(i, " ".join(words), title=rng.choice(["Piano Sketch", "Untitled", "Night Lofi", "Take"]),
                        tags=rng.sample(["piano", "lofi", "keeper", "draft"], rng.randint(0, 2)),
                        notes=rng.choice(["", "", "more piano please", "lofi lofi"])))
    return rows


async def test_relevance_pages_stable_while_the_library_changes(store: Store) -> None:
    """Adding, editing and deleting tracks moves every bm25 score; pages follow the
    ranking of the first page anyway: no track that matched then is repeated or
    skipped; deleted ones, and ones edited so they no longer match, drop out."""
    rng = random.Random(5)
    await store.import_tracks(varied_library(rng, 90))
    search = "lofi pi"
    before = await store.list_tracks(sort=RELEVANCE, search=search, limit=1000)
    expected = [t["id"] for t in before["tracks"]]
    assert len(expected) > 40
    first_scores = await scores(store, search)
    seen: list[str] = []
    cursor = None
    n = 0
    while True:
        page = await store.list_tracks(sort=RELEVANCE, search=search, limit=6, cursor=cursor)
        got = [t["id"] for t in page["tracks"]]
        assert not any(i.startswith("rx") for i in got), "a track added after the first page"
        seen += got
        if (cursor := page["next_cursor"]) is None:
            break
        n += 1  # between pages: new tracks (matching, and full of one search word), an edit or a delete
        await store.import_tracks([row(f"x{n}-0", "lofi piano " * rng.randint(1, 4), title="Lofi Piano"),
                                   row(f"x{n}-1", "lofi " * 12, tags=["lofi"]),
                                   row(f"x{n}-2", "lofi tape")])
        unseen = [i for i in expected if i not in seen]
        if unseen and n % 3 == 0:
            victim = rng.choice(unseen)
            await store.delete_track(victim)
            expected.remove(victim)
        elif unseen and n % 3 == 1:
            victim = rng.choice(unseen)
            await store.update_track(victim, title="Other", notes="", tags_remove=["piano", "lofi"])
            await store._write(lambda v=victim: store._exec(  # no API edits a prompt
                "UPDATE tracks SET prompt = 'drums only' WHERE id = ?", (v,)))
            expected.remove(victim)
    assert len(seen) == len(set(seen)), "duplicates across pages"
    assert seen == expected, "pages skipped or reordered tracks that matched at the first page"
    if store.backend != "sqlite":
        return  # ts_rank scores a track by its own text alone: nothing else moves them
    # The test means something: today's scores order the same tracks differently.
    now = await scores(store, search)
    assert all(now[i] != first_scores[i] for i in expected)
    assert sorted(expected, key=lambda i: (-now[i], -int(i[1:]))) != expected


async def test_a_forgotten_ranking_falls_back_to_keyset(store: Store, monkeypatch, opener) -> None:
    monkeypatch.setattr(store_module, "_RANKINGS_MAX", 2)
    await seed_library(store, 120, random.Random(9))
    expected = [t["id"] for t in (await store.list_tracks(sort=RELEVANCE, search="jazz", limit=1000))["tracks"]]
    page = await store.list_tracks(sort=RELEVANCE, search="jazz", limit=5)
    seen = [t["id"] for t in page["tracks"]]
    for other in ("lofi", "piano", "drums"):  # three newer rankings push this one out
        await store.list_tracks(sort=RELEVANCE, search=other, limit=5)
    assert len(store._rankings) == 2
    page = await store.list_tracks(sort=RELEVANCE, search="jazz", limit=5, cursor=page["next_cursor"])
    seen += [t["id"] for t in page["tracks"]]
    # ... and across a restart of the store (the daemon's)
    await store.close()
    store2 = await opener()
    try:
        cursor = page["next_cursor"]
        while cursor:
            page = await store2.list_tracks(sort=RELEVANCE, search="jazz", limit=5, cursor=cursor)
            seen += [t["id"] for t in page["tracks"]]
            cursor = page["next_cursor"]
    finally:
        await store2.close()
    assert seen == expected


async def test_kept_rankings_are_bounded(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "_RANKING_ROWS_MAX", 80)
    await seed_library(store, 120, random.Random(3))
    for word in ("lofi", "jazz", "ambient", "piano", "drums"):
        await store.list_tracks(sort=RELEVANCE, search=word, limit=2)
        assert 0 < sum(len(r.seqs) for r in store._rankings.values()) <= 80
    # a ranking bigger than the whole budget is not kept, and paging still works
    everything = [t["id"] for t in (await store.list_tracks(sort=RELEVANCE, search="a", limit=1000))["tracks"]]
    assert len(everything) > 80
    await store.list_tracks(sort=RELEVANCE, search="a", limit=40)
    assert not store._rankings
    assert await all_pages(store, 40, search="a") == everything


async def test_relevance_cursors_are_checked(store: Store) -> None:
    await seed_library(store, 60, random.Random(1))
    cursor = (await store.list_tracks(sort=RELEVANCE, search="lofi", limit=2))["next_cursor"]
    assert cursor
    for kw in ({"sort": "created", "search": "lofi"}, {"sort": RELEVANCE, "search": "jazz"},
               {"sort": RELEVANCE, "search": "lofi", "order": "asc"}):
        with pytest.raises(StoreError) as e:
            await store.list_tracks(limit=2, cursor=cursor, **kw)
        assert e.value.field == "cursor", kw
    created = (await store.list_tracks(search="lofi", limit=2))["next_cursor"]
    with pytest.raises(StoreError) as e:
        await store.list_tracks(sort=RELEVANCE, search="lofi", limit=2, cursor=created)
    assert e.value.field == "cursor"
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for bad in (raw[:7], [*raw[:7], "x" * 40, 1], [*raw[:7], None, -1], [*raw[:7], None, True],
                [*raw[:7], 5, 1], [*raw, 1]):
        forged = base64.urlsafe_b64encode(json.dumps(bad).encode()).decode()
        with pytest.raises(StoreError) as e:
            await store.list_tracks(sort=RELEVANCE, search="lofi", limit=2, cursor=forged)
        assert e.value.field == "cursor", bad
    # an unknown ranking id or a position past the end is harmless: keyset from the cursor's point
    for extra in (["nope", raw[8]], [raw[7], 10**6]):
        forged = base64.urlsafe_b64encode(json.dumps([*raw[:7], *extra]).encode()).decode()
        page = await store.list_tracks(sort=RELEVANCE, search="lofi", limit=2, cursor=forged)
        assert isinstance(page["tracks"], list)
