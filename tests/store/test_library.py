"""Track library: search safety and matching, pagination, filters, sorts, edits."""

from __future__ import annotations

import random

import pytest

from dgx_music.daemon.store import search as store_module
from dgx_music.daemon.store import SORT_FIELDS, Store, StoreError, fts_query

from .conftest import make_job, track

NASTY = [
    "", " ", "\t\n", '"', '""', '"""', "'", "''", "*", "**", "a*", "*a", "-", "--", "-a", "a-b",
    "NEAR", "NEAR(", "NEAR(a b)", "NEAR/2", "a NEAR b", "AND", "OR", "NOT", "a AND", "OR b",
    "a OR b", "NOT a", "a NOT b", "(", ")", "()", "(a", "a)", "((a OR b) AND c)", "^", "^a",
    "a:b", "title:a", "prompt: x", "{a b}", "{prompt}: x", "+", "+a", "a + b", "\\", "\\\"",
    "'; DROP TABLE tracks; --", "\" OR 1=1 --", "1' OR '1'='1", "%", "_", "%_%", "?", "?1", ":a",
    "$x", "@a", "\x00", "a\x00b", "\x1b[31m", "\u200b", "\ufeff", "日本語", "café", "🎵🎶", "🎵 lofi",
    "Ω≈ç√", "ﷺ", "ǅ", "x" * 5000, "a " * 500, '"lofi', 'lofi"', "lo\"fi", "lofi*", "lofi -",
    "NEAR(lofi piano, 2)", "lofi OR", "lofi AND NOT", "rowid", "tracks_fts", "MATCH", "*:*",
]


@pytest.fixture
async def lib(store: Store) -> Store:
    """A small library with known text in prompt, title, tags and notes."""
    await make_job(store, "warm lofi beats with vinyl crackle", tracks=[
        track("t/1.flac", tags=["chill", "Keeper"], bpm=84.0, key="A minor",
              peaks=[[-0.5, 0.5], [-0.25, 0.75]]),
        track("t/2.flac", index=1, bpm=90.0, key="C major")], count=2,
        model="facebook/musicgen-small")
    await make_job(store, "epic orchestral trailer, brass and choir", tracks=[
        track("t/3.flac", title="Mountain Dawn", bpm=120.0, key="D minor", duration=20.0)],
        model="facebook/musicgen-medium")
    await make_job(store, "dark techno 130 bpm", tracks=[
        track("t/4.flac", bpm=130.0, key="a MINOR", duration=30.0, tags=["club"])],
        model="facebook/musicgen-small")
    await make_job(store, "café jazz piano trio", tracks=[track("t/5.flac", duration=4.0)])
    await store.update_track("1-1", notes="use as the INTRO for the podcast", rating=3)
    await store.update_track("2-0", favorite=True, rating=5)
    return store


async def ids(store: Store, **kw) -> list[str]:
    return [t["id"] for t in (await store.list_tracks(**kw))["tracks"]]


@pytest.mark.parametrize("text", NASTY)
async def test_search_any_text_is_safe(lib: Store, text: str) -> None:
    page = await lib.list_tracks(search=text)
    assert isinstance(page["tracks"], list)
    assert page["total"] == len(page["tracks"])  # no error, nothing odd


async def test_injection_does_nothing(lib: Store) -> None:
    await lib.list_tracks(search="'); DELETE FROM tracks; --")
    await lib.list_tracks(tag="x'); DROP TABLE tags; --")
    await lib.list_tracks(model="' OR 1=1 --", key="' OR ''='")
    assert (await lib.list_tracks())["total"] == 5


def test_fts_query_quotes_every_token() -> None:
    assert fts_query("") is None and fts_query("  ") is None and fts_query("-- ** ()") is None
    assert fts_query("lofi piano") == '"lofi" "piano"*'
    assert fts_query('say "hi" NEAR(x)') == '"say" """hi""" "NEAR(x)"*'
    assert fts_query("a\x00b") == '"a" "b"*'


@pytest.mark.parametrize("text, expected", [
    ("lofi", {"1-0", "1-1"}),                    # prompt
    ("LOFI VINYL", {"1-0", "1-1"}),              # case, AND
    ("mountain", {"2-0"}),                       # title
    ("keeper", {"1-0"}),                         # tag
    ("intro podcast", {"1-1"}),                  # notes
    ("lof", {"1-0", "1-1"}),                     # prefix (search as you type)
    ("jazz pi", {"4-0"}),                        # last token is the prefix
    ("cafe", {"4-0"}), ("CAFÉ", {"4-0"}),        # diacritics folded
    ("pi jazz", set()),                          # only the LAST token is a prefix
    ("lofi techno", set()),                      # AND, not OR
    ('"lofi"', {"1-0", "1-1"}),                  # user quotes are just text
    ("lofi -vinyl", {"1-0", "1-1"}),             # '-' is not NOT
    ("130", {"3-0"}),
    ("trailer,", {"2-0"}),
])
async def test_search_matches(lib: Store, text: str, expected: set[str]) -> None:
    assert set(await ids(lib, search=text)) == expected


async def test_fts_stays_in_sync(lib: Store) -> None:
    await lib.update_track("3-0", title="Neon Rain", notes="sidechain pump", tags_add=["dance"])
    assert await ids(lib, search="neon") == ["3-0"]
    assert await ids(lib, search="sidechain") == ["3-0"]
    assert await ids(lib, search="dance") == ["3-0"]
    assert await ids(lib, search="club") == ["3-0"]
    await lib.update_track("3-0", tags_remove=["club"], notes="")
    assert await ids(lib, search="club") == []
    assert await ids(lib, search="sidechain") == []
    await lib.delete_track("3-0")
    assert await ids(lib, search="neon") == []
    assert await ids(lib, search="techno") == []


async def test_filters(lib: Store) -> None:
    assert set(await ids(lib, tag="CHILL")) == {"1-0"}
    assert set(await ids(lib, tag="nope")) == set()
    assert set(await ids(lib, favorite=True)) == {"2-0"}
    assert set(await ids(lib, favorite=False)) == {"1-0", "1-1", "3-0", "4-0"}
    assert set(await ids(lib, model="facebook/musicgen-small")) == {"1-0", "1-1", "3-0"}
    assert set(await ids(lib, bpm_min=85, bpm_max=125)) == {"1-1", "2-0"}
    assert set(await ids(lib, bpm_min=120)) == {"2-0", "3-0"}
    assert set(await ids(lib, bpm_max=89)) == {"1-0"}  # unknown BPM is not "below 89"
    assert set(await ids(lib, key="a minor")) == {"1-0", "3-0"}
    assert set(await ids(lib, key="a minor", search="techno", bpm_min=100)) == {"3-0"}
    page = await lib.list_tracks(model="facebook/musicgen-small", limit=1)
    assert page["total"] == 3 and len(page["tracks"]) == 1 and page["next_cursor"]


async def test_sorts(lib: Store) -> None:
    def check(tracks: list[dict], key, reverse: bool) -> None:
        vals = [key(t) for t in tracks]
        assert vals == sorted(vals, reverse=reverse), vals

    for order in ("asc", "desc"):
        rev = order == "desc"
        tracks = (await lib.list_tracks(sort="duration", order=order))["tracks"]
        check(tracks, lambda t: t["duration"], rev)
        tracks = (await lib.list_tracks(sort="bpm", order=order))["tracks"]
        check(tracks, lambda t: -1 if t["bpm"] is None else t["bpm"], rev)
        tracks = (await lib.list_tracks(sort="rating", order=order))["tracks"]
        check(tracks, lambda t: t["rating"], rev)
        tracks = (await lib.list_tracks(sort="title", order=order))["tracks"]
        check(tracks, lambda t: t["title"].lower(), rev)
        tracks = (await lib.list_tracks(sort="created", order=order))["tracks"]
        check(tracks, lambda t: t["created"], rev)
    assert (await ids(lib))[0] == "4-0"  # default: newest first


async def test_bad_arguments_name_the_problem(lib: Store) -> None:
    cases = [
        ({"sort": "prompt"}, "sort"), ({"order": "up"}, "order"), ({"limit": 0}, "limit"),
        ({"limit": 10**6}, "limit"), ({"cursor": "garbage"}, "cursor"), ({"cursor": ""}, "cursor"),
        ({"bpm_min": 130, "bpm_max": 120}, "bpm_min"), ({"bpm_min": float("nan")}, "bpm_min"),
        ({"favorite": "yes"}, "favorite"), ({"tag": ""}, "tag"), ({"search": 5}, "search"),
    ]
    for kw, field in cases:
        with pytest.raises(StoreError) as e:
            await lib.list_tracks(**kw)
        assert e.value.code == "invalid" and field in str(e.value), (kw, str(e.value))
    cursor = (await lib.list_tracks(limit=1))["next_cursor"]
    for kw in ({"sort": "title"}, {"order": "asc"}, {"search": "lofi"}, {"favorite": True}):
        with pytest.raises(StoreError) as e:
            await lib.list_tracks(limit=1, cursor=cursor, **kw)
        assert e.value.code == "invalid" and "cursor" in str(e.value)


async def seed_library(store: Store, n: int, rng: random.Random) -> None:
    words = ["lofi", "jazz", "ambient", "piano", "drums", "dark", "warm"]
    rows = []
    for i in range(n):
        rows.append({**track(f"s/{i}.flac", duration=float(rng.choice([4, 8, 8, 12]))),
                     "id": f"s{i}", "prompt": " ".join(rng.sample(words, 3)),
                     "title": rng.choice(["Alpha", "beta", "Gamma", "delta", "Alpha"]),
                     "bpm": rng.choice([None, 90.0, 120.0, 120.0]),
                     "rating": rng.randrange(6), "created": 1000.0 + rng.randrange(20),
                     "favorite": rng.random() < 0.3, "tags": rng.sample(["a", "b", "c"], 1)})
    await store.import_tracks(rows)


@pytest.mark.parametrize("sort", list(SORT_FIELDS))
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("filters", [{}, {"search": "lofi pi"}, {"favorite": True, "tag": "a"}])
@pytest.mark.parametrize("plan", ["drive", "scan"])
async def test_pagination_stable_while_adding(store: Store, sort: str, order: str,
                                              filters: dict, plan: str, monkeypatch) -> None:
    """Pages never repeat nor skip a row that existed at the first page, while rows
    with colliding and interleaved sort keys are inserted between pages.  Both
    query plans (filter-driven, sort-index scan) are exercised."""
    monkeypatch.setattr(store_module, "_DRIVE_MAX", 10**9 if plan == "drive" else 0)
    rng = random.Random(f"{sort}{order}{filters}")
    await seed_library(store, 120, rng)
    before = (await store.list_tracks(limit=1000, sort=sort, order=order, **filters))
    expected = [t["id"] for t in before["tracks"]]
    assert before["total"] == len(expected)
    seen: list[str] = []
    cursor = None
    extra = 0
    while True:
        page = await store.list_tracks(sort=sort, order=order, limit=7, cursor=cursor, **filters)
        assert (page["total"] is None) == (cursor is not None)
        seen += [t["id"] for t in page["tracks"] if not t["id"].startswith("x")]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        rows = []
        for _ in range(3):  # new rows with the same kinds of keys as the old ones
            extra += 1
            rows.append({**track(f"x/{extra}.flac", duration=float(rng.choice([4, 8, 12]))),
                         "id": f"x{extra}", "prompt": "lofi piano jazz",
                         "title": rng.choice(["Alpha", "beta", "zeta", "Aardvark"]),
                         "bpm": rng.choice([None, 120.0, 60.0]), "rating": rng.randrange(6),
                         "created": 1000.0 + rng.randrange(25), "favorite": True,
                         "tags": ["a"]})
        await store.import_tracks(rows)
        if extra % 6 == 0:  # deleting rows between pages must not break it either
            victim = rng.choice([i for i in expected if i not in seen] or [None])
            if victim:
                await store.delete_track(victim)
                expected.remove(victim)
    assert len(seen) == len(set(seen)), "duplicates across pages"
    assert seen == expected, "pages skipped or reordered rows that existed at the start"


async def test_peaks_round_trip(lib: Store) -> None:
    t = await lib.get_track("1-0")
    assert t["peaks"] == [[-0.5, 0.5], [-0.25, 0.75]]
    assert (await lib.get_track("1-1"))["peaks"] is None
    assert "peaks" not in (await lib.list_tracks())["tracks"][0]
    page = await lib.list_tracks(with_peaks=True, tag="keeper")
    assert page["tracks"][0]["peaks"] == [[-0.5, 0.5], [-0.25, 0.75]]
    rng = random.Random(1)
    peaks = [[-rng.random(), rng.random()] for _ in range(2000)]
    await lib.set_analysis("1-1", peaks=peaks, bpm=99.5, key="F# minor", loudness_note="ok")
    back = (await lib.get_track("1-1"))["peaks"]
    assert len(back) == 2000
    assert all(abs(a - b) <= 1e-3 for p, q in zip(peaks, back) for a, b in zip(p, q))
    t = await lib.get_track("1-1")
    assert (t["bpm"], t["key"], t["loudness_note"]) == (99.5, "F# minor", "ok")
    await lib.set_analysis("1-1", peaks=None)
    assert (await lib.get_track("1-1"))["peaks"] is None
    with pytest.raises(StoreError):
        await lib.set_analysis("1-1", tempo=3)


async def test_track_fields(lib: Store) -> None:
    t = await lib.get_track("1-0")
    assert t["tags"] == ["chill", "keeper"] and t["favorite"] is False and t["rating"] == 0
    assert t["title"] == "warm lofi beats with vinyl crackle" and t["index"] == 0
    assert t["seed"] == 42 and t["params"] == {"duration": 8.0} and t["job_id"] == 1
    assert t["model"] == "facebook/musicgen-small" and t["path"] == "t/1.flac"
    long = await make_job(lib, "a " * 30 + "very long prompt that keeps going and going and going")
    title = (await lib.get_track(long["track_ids"][0]))["title"]
    assert len(title) <= 61 and title.endswith("…")


async def test_update_track(lib: Store) -> None:
    t = await lib.update_track("1-0", title="  Rainy  ", rating=4, favorite=True,
                               notes="nice", tags_add=["Lo Fi", "keeper"], tags_remove="chill")
    assert t["title"] == "Rainy" and t["rating"] == 4 and t["favorite"] is True
    assert t["tags"] == ["keeper", "lo-fi"] and t["notes"] == "nice"
    for kw in [{"rating": 6}, {"rating": -1}, {"rating": 2.5}, {"rating": True},
               {"favorite": "no"}, {"title": ""}, {"title": "x" * 201}, {"notes": 3},
               {"tags_add": ["+x"]}, {"tags_add": [""]}, {"tags_add": ["a" * 49]},
               {"tags_add": ["x"], "tags_remove": ["X"]}]:
        with pytest.raises(StoreError) as e:
            await lib.update_track("1-0", **kw)
        assert e.value.code == "invalid", kw
    assert (await lib.get_track("1-0"))["rating"] == 4  # nothing half-applied
    with pytest.raises(StoreError) as e:
        await lib.update_track("nope", rating=1)
    assert e.value.code == "not_found"


async def test_delete_and_paths(lib: Store) -> None:
    assert await lib.track_paths() == {f"t/{i}.flac" for i in range(1, 6)}
    gone = await lib.delete_track("1-0")
    assert gone["path"] == "t/1.flac" and gone["tags"] == ["chill", "keeper"]
    assert "t/1.flac" not in await lib.track_paths()
    with pytest.raises(StoreError) as e:
        await lib.get_track("1-0")
    assert e.value.code == "not_found"
    with pytest.raises(StoreError) as e:
        await lib.delete_track("1-0")
    assert e.value.code == "not_found"
    assert await ids(lib, tag="keeper") == []
    assert (await lib.get_job(1))["track_ids"] == ["1-1"]


async def test_total_is_exact_up_to_the_bound_then_flagged(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """``total`` counts exactly up to TOTAL_EXACT_MAX matches; past it, it is the bound with
    total_exact False (a lower bound: "10+"), for a search, a filter and the whole library;
    later pages carry neither, and paging still reaches every match once."""
    from dgx_music.daemon.store import search as search_module

    monkeypatch.setattr(search_module, "TOTAL_EXACT_MAX", 10)
    await store.import_tracks([{**track(f"b/{i}.flac"), "id": f"b{i}", "prompt": "lofi beat" if i < 12 else "dub",
                                "tags": ["keeper"] if i < 10 else []} for i in range(14)])
    for kw, n in (({}, 14), ({"search": "lofi"}, 12), ({"search": "dub"}, 2), ({"tag": "keeper"}, 10),
                  ({"search": "lofi", "favorite": False}, 12)):
        page = await store.list_tracks(limit=5, **kw)
        assert (page["total"], page["total_exact"]) == ((10, False) if n > 10 else (n, True)), kw
        seen = [t["id"] for t in page["tracks"]]
        while page["next_cursor"]:
            page = await store.list_tracks(limit=5, cursor=page["next_cursor"], **kw)
            assert page["total"] is None and page["total_exact"] is None
            seen += [t["id"] for t in page["tracks"]]
        assert len(seen) == len(set(seen)) == n, kw


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("dates", ["in seq order", "some out of seq order"])
async def test_broad_search_by_date_from_the_newest_matches(store: Store, order: str, dates: str,
                                                            monkeypatch) -> None:
    """A search matching many tracks, sorted by date, takes its pages from the matches with the
    highest (ascending: lowest) seq where that is exact (SQLite): every page is the one the
    date order gives, also when tracks imported later carry older or newer dates."""
    monkeypatch.setattr(store_module, "_DRIVE_MAX", 0)  # as with many matches
    rng = random.Random(f"newest{order}{dates}")
    rows = []
    for i in range(200):
        created = 1000.0 + i // 3  # ties too
        if dates != "in seq order" and rng.random() < 0.06:
            created = rng.choice([500.0, 2000.0, 1000.0 + rng.randrange(67)])
        rows.append({**track(f"n/{i}.flac"), "id": f"n{i}", "created": created,
                     "prompt": rng.choice(["lofi piano", "lofi", "jazz", "lofi jazz"])})
    await store.import_tracks(rows)
    seq = {r[0]: r[1] for r in await store._all("SELECT id, seq FROM tracks")}
    by_id = {r["id"]: r for r in rows}
    expected = sorted((i for i in by_id if "lofi" in by_id[i]["prompt"]),
                      key=lambda i: (by_id[i]["created"], seq[i]), reverse=order == "desc")
    used: list[bool] = []
    real = store._newest_page

    async def spy(*a, **kw):
        page = await real(*a, **kw)
        used.append(page is not None)
        return page

    monkeypatch.setattr(store, "_newest_page", spy)
    for limit in (3, 7, 10):
        used.clear()
        seen: list[str] = []
        cursor = None
        while True:
            assert len(seen) < 1000, "paging never ends"
            page = await store.list_tracks(search="lofi", order=order, limit=limit, cursor=cursor)
            if cursor is None:
                assert (page["total"], page["total_exact"]) == (len(expected), True)
            seen += [t["id"] for t in page["tracks"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert seen == expected, limit
        if not store._search_sql.newest_matches:
            continue
        # the new plan served pages, falling back where it could not be sure
        if dates == "in seq order":
            assert all(used[:-1]) and not used[-1]  # the last page is short: the usual plan
        else:
            assert any(used) and not all(used[:-1])


@pytest.mark.parametrize("sort", ["created", "duration"])
@pytest.mark.parametrize("bound", [20, 1000])
async def test_count_plans_give_the_same_total_and_pages(store: Store, sort: str, bound: int,
                                                         monkeypatch) -> None:
    """PostgreSQL counts a search's first page either through its index or, when the estimate
    says the word is in most tracks, by walking the newest tracks back to the bound's match
    (_list_count_by_walk).  Either way the total, total_exact and every page are the same."""
    monkeypatch.setattr(store_module, "_DRIVE_MAX", 0)  # as with many matches
    monkeypatch.setattr(store_module, "TOTAL_EXACT_MAX", bound)
    rng = random.Random(f"count{sort}{bound}")
    rows = [{**track(f"c/{i}.flac", duration=float(rng.choice([4, 8, 12]))), "id": f"c{i}",
             "created": 1000.0 + rng.randrange(50), "prompt": rng.choice(["lofi piano", "lofi", "jazz", "lofi jazz"])}
            for i in range(200)]
    await store.import_tracks(rows)
    chosen: list[bool] = []
    real = store_module._list_count_by_walk

    def spy(est: float, span: int) -> bool:
        chosen.append(real(est, span))
        return chosen[-1]

    results = {}
    for search in ("lofi", "piano"):
        n = sum(search in r["prompt"] for r in rows)
        for plan, choice in [("chosen", None), ("index", False), ("walk", True)]:
            monkeypatch.setattr(store_module, "_list_count_by_walk",
                                spy if choice is None else (lambda e, s, c=choice: c))
            seen: list[str] = []
            cursor = None
            total = None
            while True:
                page = await store.list_tracks(search=search, sort=sort, limit=7, cursor=cursor)
                total = total or (page["total"], page["total_exact"])
                seen += [t["id"] for t in page["tracks"]]
                if (cursor := page["next_cursor"]) is None:
                    break
            results[search, plan] = (total, seen)
        assert results[search, "chosen"] == results[search, "index"] == results[search, "walk"], search
        assert results[search, "index"][0] == ((bound, False) if n > bound else (n, True))
        assert sorted(results[search, "index"][1]) == sorted(r["id"] for r in rows if search in r["prompt"])
    if store._search_sql.window_probe:  # PostgreSQL: 'lofi' (3/4 of tracks) walks past a bound of 20
        assert chosen == [bound == 20, False], chosen
    else:
        assert chosen == []
