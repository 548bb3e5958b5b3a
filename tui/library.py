"""The library: a paged table over `track.list`, live search, filters, sort, and the detail pane (tui/detail.py);
the table widget itself (a DataTable that asks for the next page) is in tui/library_table.py.

Only pages the user scrolls to are fetched (PAGE rows at a time, keyset cursor
from the daemon), so 100,000 tracks open as fast as 100. Search runs as you
type with at most one request in flight: a keystroke while a query runs marks
the query dirty, and the newest text is sent as soon as the running one
returns (stale answers are dropped). That keeps keystroke-to-table latency at
one round trip and never floods the daemon.

While a search is active the table sorts by relevance (best match first) and
relevance joins the sort choices; another sort picked during a search holds
until the search is cleared, which brings back the sort the list had before.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Checkbox, DataTable, Input, Label, Select
from textual.widgets.data_table import CellDoesNotExist

from dgx_music.common.client import DaemonUnavailable, RemoteError, RequestTimeout
from dgx_music.common.fmt import plural, plural_total, stale_note
from dgx_music.tui import fmt
from dgx_music.tui.detail import DetailPane
from dgx_music.tui.library_actions import LibraryTrackActions
from dgx_music.tui.library_table import LibraryTable

PAGE = 100
SORTS = ("created", "title", "duration", "bpm", "rating")
#: Only with a search (the daemon refuses it without one); the default while searching.
RELEVANCE = "relevance"
KEYS = [f"{n} {m}" for m in ("major", "minor")
        for n in ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")]
#: column key -> (label, width); title's width follows the table's.
COLUMNS: list[tuple[str, str, int]] = [
    ("title", "Title", 30), ("duration", "Dur", 5), ("bpm", "BPM", 4), ("key", "Key", 8),
    ("lufs", "LUFS", 5), ("rating", "Rating", 6), ("favorite", "♥", 1), ("created", "Created", 16),
]
#: Under this table width LUFS and Created are left out so the title stays readable.
NARROW = 100
NARROW_DROP = {"lufs", "created"}
#: Drawn before a marked track's title: a glyph, not a column, so 80 columns lose nothing.
MARK = "● "
SORT_COLUMN = {"title": "title", "duration": "duration", "bpm": "bpm", "rating": "rating", "created": "created"}


def searching(text: str) -> bool:
    """Whether search text searches at all: the daemon ignores text without a letter or digit."""
    return any(c.isalnum() for c in text)


def track_cells(t: dict[str, Any]) -> list[Any]:
    title = fmt.one_line(t.get("title") or t.get("prompt") or t.get("id"), 200)
    # Text, not str: a str cell is parsed as markup on every render.
    return [
        Text(title, no_wrap=True, overflow="ellipsis"),
        Text(fmt.number(t.get("duration"), "{:.1f}").rjust(5), no_wrap=True),
        Text(fmt.number(t.get("bpm")).rjust(4), no_wrap=True),
        Text(str(t.get("key") or "-"), no_wrap=True),
        Text(fmt.number(t.get("lufs"), "{:.1f}").rjust(5), no_wrap=True),
        Text(fmt.stars(t.get("rating")), style="yellow", no_wrap=True),
        Text("♥" if t.get("favorite") else "", style="bold red", no_wrap=True),
        Text(fmt.timestamp(t.get("created")), no_wrap=True),
    ]


class LibraryView(LibraryTrackActions, Vertical):
    BINDINGS = [
        Binding("slash", "focus_search", "Search", id="library.search"),
        Binding("F", "toggle_filters", "Filters", id="library.filters"),
        Binding("s", "next_sort", "Sort", id="library.sort"),
        Binding("o", "flip_order", "Order", id="library.order", show=False),
        Binding("f", "favorite", "Fav", id="library.favorite"),
        Binding("t", "tags", "Tags", id="library.tags", show=False),
        Binding("e", "rename", "Rename", id="library.rename", show=False),
        Binding("n", "notes", "Notes", id="library.notes", show=False),
        Binding("m", "remix", "Remix", id="library.remix"),
        Binding("u", "use_melody", "Use as melody", id="library.use_melody", show=False),
        Binding("plus", "extend", "Extend", id="library.extend", show=False),
        Binding("x", "export", "Export", id="library.export"),
        # after Export: in 80 columns the footer keeps Export in sight while marking
        Binding("v", "toggle_mark", "Mark", id="library.mark"),
        Binding("V", "clear_marks", "Unmark", id="library.clear_marks"),
        Binding("R", "operation('repaint')", "Repaint", id="library.repaint", show=False),
        Binding("C", "operation('cover')", "Cover", id="library.cover", show=False),
        Binding("S", "operation('stems')", "Stems", id="library.stems", show=False),
        Binding("A", "operation('add_part')", "Add part", id="library.add_part", show=False),
        Binding("M", "operation('midi')", "MIDI", id="library.midi", show=False),
        Binding("T", "operation('fit')", "Fit tempo/key", id="library.fit", show=False),
        Binding("B", "operation('loop')", "Loop", id="library.loop", show=False),
        Binding("L", "lineage", "Family", id="library.lineage"),
        Binding("Y", "train_style", "Train style", id="library.train_style", show=False),
        Binding("d", "details", "Details", id="library.details", show=False),
        Binding("delete", "delete", "Delete", id="library.delete"),
        *[Binding(str(i), f"rate({i})", f"Rate {i}", show=False, id=f"library.rate_{i}") for i in range(6)],
    ]

    class TrackAction(Message):
        """Ask the App to do something with a track (remix, delete, export…)."""

        def __init__(self, action: str, track: dict[str, Any]) -> None:
            super().__init__()
            self.action = action
            self.track = track

    class ExportTracks(Message):
        """Ask the App to export these tracks (the marked ones, or the one under the cursor)."""

        def __init__(self, tracks: list[dict[str, Any]]) -> None:
            super().__init__()
            self.tracks = tracks

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.tracks: dict[str, dict[str, Any]] = {}
        self.detail: dict[str, Any] | None = None
        #: Marked tracks by id, in the order marked. Kept by id, not by row, so a mark outlives
        #: paging, a new search or filter (the count says how many); only deleting drops it.
        self.marked: dict[str, dict[str, Any]] = {}
        self.sort = "created"
        self.order = "desc"
        self._searching = False  # a search is active: relevance is offered, and the default
        self._list_sort = ("created", "desc")  # sort and order to go back to when it is cleared
        self.total: int | None = None
        self.total_exact: bool | None = None  # False: total is a lower bound ("10,000+")
        self.last_query: dict[str, Any] = {}
        self._cursor: str | None = None
        self._params: dict[str, Any] = {}
        self._dirty = False
        self._inflight = False
        self._loading_more = False
        self._detail_want: str | None = None
        self._detail_inflight = False
        self._detail_timer: Any = None
        self._columns: tuple = ()
        self._count_text: Text | None = None
        self.queries = 0  # count of first-page queries answered (tests, benchmarks)
        self.stale: str | None = None  # the stale note of the page shown, None when it is fresh

    def compose(self) -> ComposeResult:
        with Horizontal(id="lib-bar"):
            yield Input(placeholder="search prompts, titles, tags, notes… ( / )", id="search", compact=True)
            yield Label("", id="lib-count")
        # Shown while the daemon answers from what it last saw because its database is away (issue 21).
        yield Label("", id="lib-stale")
        with Vertical(id="filters"):
            with Horizontal(classes="form-row"):
                yield Label("Tag", classes="form-label-s")
                yield Input(id="f-tag", compact=True, classes="num-l")
                yield Checkbox("♥ only", id="f-fav", compact=True)
                yield Label("BPM", classes="form-label2")
                yield Input(id="f-bpm-min", placeholder="min", compact=True, classes="num-s")
                yield Label("-")
                yield Input(id="f-bpm-max", placeholder="max", compact=True, classes="num-s")
                yield Label("Key", classes="form-label2")
                yield Select([(k, k) for k in KEYS], prompt="any", id="f-key", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Model", classes="form-label-s")
                yield Select([], prompt="any", id="f-model", compact=True)
                yield Label("Sort", classes="form-label2")
                yield Select([(s, s) for s in SORTS], value="created", allow_blank=False, id="f-sort", compact=True)
                yield Select([("desc", "desc"), ("asc", "asc")], value="desc", allow_blank=False, id="f-order",
                             compact=True)
        with Horizontal(id="lib-main"):
            yield LibraryTable(id="lib-table", cursor_type="row", zebra_stripes=True)
            yield DetailPane(id="detail")

    @property
    def table(self) -> LibraryTable:
        return self.query_one("#lib-table", LibraryTable)

    # ---------------------------------------------------------------- reading the details
    def action_details(self) -> None:
        """Read the selected track's details: the pane takes the focus (arrows and page keys scroll it)
        and, at 80 columns where it sits under the table, most of the height. Again (or escape): back."""
        scroll = self.query_one("#detail-scroll")
        if scroll.has_focus:
            self._leave_details()
            return
        self.add_class("-details")
        scroll.focus()

    @on(DetailPane.Leave)
    def _leave_details(self) -> None:
        self.remove_class("-details")
        self.table.focus()

    @on(events.DescendantFocus)
    def _details_lose_focus(self, event: events.DescendantFocus) -> None:
        if event.widget.id != "detail-scroll":
            self.remove_class("-details")

    def on_mount(self) -> None:
        self.query_one("#filters").display = False
        self.relayout(self.app.size.width)

    # ---------------------------------------------------------------- query

    def query_params(self) -> dict[str, Any]:
        search = self.query_one("#search", Input).value.strip()
        self._sync_search_sort(searching(search))
        q: dict[str, Any] = {"sort": self.sort, "order": self.order}
        if search:
            q["search"] = search
        tag = self.query_one("#f-tag", Input).value.strip()
        if tag:
            q["tag"] = tag
        if self.query_one("#f-fav", Checkbox).value:
            q["favorite"] = True
        for fid, key in (("#f-bpm-min", "bpm_min"), ("#f-bpm-max", "bpm_max")):
            w = self.query_one(fid, Input)
            w.remove_class("-invalid")
            if w.value.strip():
                try:
                    q[key] = float(w.value)
                except ValueError:
                    w.add_class("-invalid")
        for fid, key in (("#f-key", "key"), ("#f-model", "model")):
            v = self.query_one(fid, Select).value
            if isinstance(v, str) and v:
                q[key] = v
        return q

    def request_query(self) -> None:
        """Run the query for the current search/filters: at most one in flight, newest wins."""
        self._dirty = True
        if not self._inflight:
            self._start_query()

    def _start_query(self) -> None:
        self._dirty = False
        self._inflight = True
        params = self.query_params()
        self.run_worker(self._fetch_first(params), group="library-query", exit_on_error=False)

    async def _fetch_first(self, params: dict[str, Any]) -> None:
        try:
            res = await self.app.call("track.list", {**params, "limit": PAGE})
            if not self._dirty:
                self._fill(params, res)
        except RemoteError as exc:
            if not self._dirty:
                self._show_count(Text(f"✗ {exc.message}", style="red"))
        except (DaemonUnavailable, RequestTimeout):
            pass
        finally:
            self._inflight = False
            if self._dirty and self.is_attached:
                self._start_query()

    def _fill(self, params: dict[str, Any], res: dict[str, Any]) -> None:
        table = self.table
        selected = self.selected_id()
        tracks = list(res.get("tracks") or [])
        self._params = params
        self.last_query = params
        self._cursor = res.get("next_cursor")
        self.total = res.get("total")
        self.total_exact = res.get("total_exact")
        with self.app.batch_update():
            table.clear()
            self.tracks = {}
            self._add_rows(tracks)
            if selected in self.tracks:
                table.move_cursor(row=table.get_row_index(selected), animate=False)
            elif tracks:
                table.move_cursor(row=0, animate=False)
        self.queries += 1
        self._update_count()
        self._show_stale(res)
        if not tracks:
            self.detail = None
            self.query_one(DetailPane).show(None)

    def _add_rows(self, tracks: list[dict[str, Any]]) -> None:
        table = self.table
        for t in tracks:
            tid = str(t.get("id"))
            if tid in self.tracks:
                continue
            self.tracks[tid] = t
            if tid in self.marked:
                self.marked[tid] = t
            table.add_row(*self._cells(t), key=tid)

    def _show_stale(self, res: dict[str, Any]) -> None:
        """Say so, visibly, when the page is what the daemon last saw (its database is away); a fresh
        page takes the note away."""
        note = stale_note(res)
        if note == self.stale:
            return
        self.stale = note
        label = self.query_one("#lib-stale", Label)
        label.update(Text(f"⚠ {note} (read only until it is back)", style="bold") if note else "")
        label.set_class(note is not None, "-shown")

    def _update_count(self) -> None:
        n = len(self.tracks)
        total = self.total
        arrow = "↓" if self.order == "desc" else "↑"
        if total is not None:
            what = plural_total(total, self.total_exact, "track")
        else:
            what = f"{n:,}+ tracks" if self._cursor else plural(n, "track")
        marked = f" · {len(self.marked):,} marked" if self.marked else ""
        self._show_count(Text(f"{what}{marked} · {self.sort} {arrow}", style="dim"))

    def _show_count(self, text: Text) -> None:
        # Most keystrokes leave the count as it was ("8,488 tracks" for "pia", "pian"…);
        # and a new count of the same width needs no layout of the whole screen.
        label = self.query_one("#lib-count", Label)
        old = self._count_text
        if old is not None and old.plain == text.plain and old.style == text.style and old.spans == text.spans:
            return
        self._count_text = text
        label.update(text, layout=old is None or old.cell_len != text.cell_len)

    @on(LibraryTable.NearEnd)
    def load_more(self) -> None:
        if self._cursor and not self._loading_more and not self._inflight:
            self._loading_more = True
            self.run_worker(self._fetch_more(self._params, self._cursor), group="library-more",
                            exit_on_error=False)

    async def _fetch_more(self, params: dict[str, Any], cursor: str) -> None:
        try:
            res = await self.app.call("track.list", {**params, "limit": PAGE, "cursor": cursor})
            if params == self._params and cursor == self._cursor:
                self._cursor = res.get("next_cursor")
                with self.app.batch_update():
                    self._add_rows(list(res.get("tracks") or []))
                self._update_count()
        except (RemoteError, DaemonUnavailable, RequestTimeout):
            pass
        finally:
            self._loading_more = False

    @on(Input.Changed, "#search, #f-tag, #f-bpm-min, #f-bpm-max")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        # The detail pane waits for a pause in typing: a detail that was on its way is
        # dropped rather than laid out in the middle of the next keystroke.
        if self._detail_timer is not None:
            self._detail_timer.stop()
            self._detail_timer = None
        self._detail_want = None
        self.request_query()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    @on(Checkbox.Changed, "#f-fav")
    def _fav_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.request_query()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "f-sort" and isinstance(event.value, str):
            self.sort = event.value
        elif event.select.id == "f-order" and isinstance(event.value, str):
            self.order = event.value
        self.request_query()

    @on(DataTable.HeaderSelected, "#lib-table")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key in SORT_COLUMN:
            if self.sort == key:
                self.action_flip_order()
            else:
                self.set_sort(key)

    def set_sort(self, sort: str) -> None:
        self.sort = sort
        with self.prevent(Select.Changed):
            self.query_one("#f-sort", Select).value = sort
        self.request_query()

    def sorts(self) -> tuple[str, ...]:
        """The sorts on offer now: relevance (first) only while a search is active."""
        return (RELEVANCE, *SORTS) if self._searching else SORTS

    def _sync_search_sort(self, active: bool) -> None:
        """A search starts: best match first; it is cleared: the list's own sort again."""
        if active == self._searching:
            return
        self._searching = active
        if active:
            self._list_sort = (self.sort, self.order)
            self.sort, self.order = RELEVANCE, "desc"
        else:
            self.sort, self.order = self._list_sort
        with self.prevent(Select.Changed):
            sort_select = self.query_one("#f-sort", Select)
            sort_select.set_options([(s, s) for s in self.sorts()])
            sort_select.value = self.sort
            self.query_one("#f-order", Select).value = self.order

    def set_models(self, models: list[str]) -> None:
        sel = self.query_one("#f-model", Select)
        current = sel.value
        with self.prevent(Select.Changed):
            sel.set_options([(m.removeprefix("facebook/"), m) for m in models])
            if isinstance(current, str) and current in models:
                sel.value = current

    def relayout(self, width: int) -> None:
        """Pick the columns for the table's width; the title takes what the others leave."""
        cols = [c for c in COLUMNS if not (width < NARROW and c[0] in NARROW_DROP)]
        fixed = sum(w + 2 for k, _, w in cols if k != "title")
        cols = [(k, label, max(14, width - fixed - 4) if k == "title" else w) for k, label, w in cols]
        if tuple(cols) == self._columns:
            return
        self._columns = tuple(cols)
        table = self.table
        selected = self.selected_id()
        with self.app.batch_update():
            table.clear(columns=True)
            for key, label, w in cols:
                table.add_column(label, key=key, width=w)
            tracks = list(self.tracks.values())
            self.tracks = {}
            self._add_rows(tracks)
            if selected in self.tracks:
                table.move_cursor(row=table.get_row_index(selected), animate=False)

    def _cells(self, t: dict[str, Any]) -> list[Any]:
        keys = {c[0] for c in self._columns}
        cells = [v for (k, _, _), v in zip(COLUMNS, track_cells(t)) if k in keys]
        if cells and str(t.get("id")) in self.marked:  # title is always the first column
            cells[0] = Text(MARK + cells[0].plain, style="bold magenta", no_wrap=True, overflow="ellipsis")
        return cells

    def _redraw_title(self, tid: str) -> None:
        """Show or hide a row's mark: only its title cell changes."""
        if tid in self.tracks:
            try:
                self.table.update_cell(tid, "title", self._cells(self.tracks[tid])[0])
            except CellDoesNotExist:  # the row went away meanwhile
                pass

    # ---------------------------------------------------------------- events from the daemon

    def on_track_event(self, name: str, data: dict[str, Any]) -> None:
        tid = str(data.get("id"))
        if name == "track.added":
            self.request_query()
        elif name == "track.updated":
            if tid in self.marked:
                self.marked[tid] = {**self.marked[tid], **data}
            if tid in self.tracks:
                self.tracks[tid] = {**self.tracks[tid], **data}
                for (key, _, _), value in zip(self._columns, self._cells(self.tracks[tid])):
                    try:
                        self.table.update_cell(tid, key, value)
                    except Exception:
                        pass
            if self.detail and self.detail.get("id") == tid:
                self.detail = {**self.detail, **data}
                self.query_one(DetailPane).show(self.detail)
        elif name == "track.deleted":
            if self.marked.pop(tid, None) is not None:
                self._marks_changed()
            if tid in self.tracks:
                del self.tracks[tid]
                try:
                    self.table.remove_row(tid)
                except Exception:
                    pass
                if self.total and self.total_exact is not False:  # "10,000+" stays true
                    self.total -= 1
                self._update_count()
            if self.detail and self.detail.get("id") == tid:
                self.detail = None
                self.query_one(DetailPane).show(None)

    # ---------------------------------------------------------------- detail pane

    def selected_id(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return None if key.value is None else str(key.value)

    def selected(self) -> dict[str, Any] | None:
        tid = self.selected_id()
        if tid is None:
            return None
        if self.detail and self.detail.get("id") == tid:
            return self.detail
        return self.tracks.get(tid)

    @on(DataTable.RowHighlighted, "#lib-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        tid = None if event.row_key.value is None else str(event.row_key.value)
        if tid is None:
            return
        if event.cursor_row >= self.table.row_count - 20:
            self.load_more()
        if self._detail_timer is not None:
            self._detail_timer.stop()
            self._detail_timer = None
        if self.table.has_focus:
            self._show_detail(tid)
        else:  # typing in the search box: keep the detail pane out of the way until typing pauses
            self._detail_timer = self.set_timer(0.25, lambda: self._show_detail(tid))

    def _show_detail(self, tid: str) -> None:
        self._detail_timer = None
        if tid in self.tracks:
            self.query_one(DetailPane).show(self.tracks[tid])
        self._detail_want = tid
        if not self._detail_inflight:
            self._detail_inflight = True
            self.run_worker(self._fetch_detail(), group="library-detail", exit_on_error=False)

    async def _fetch_detail(self) -> None:
        try:
            while self._detail_want is not None:
                tid = self._detail_want
                try:
                    track = await self.app.call("track.get", {"id": tid})
                except (RemoteError, DaemonUnavailable, RequestTimeout):
                    track = None
                if self._detail_want == tid:
                    self._detail_want = None
                    if track is not None:
                        self.detail = track
                        self.query_one(DetailPane).show(track)
        finally:
            self._detail_inflight = False

    # ---------------------------------------------------------------- actions (on tracks: tui/library_actions.py)

    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_toggle_filters(self) -> None:
        f = self.query_one("#filters")
        f.display = not f.display
        if f.display:
            self.query_one("#f-tag", Input).focus()

    def action_next_sort(self) -> None:
        sorts = self.sorts()
        self.set_sort(sorts[(sorts.index(self.sort) + 1) % len(sorts)] if self.sort in sorts else sorts[0])

    def action_flip_order(self) -> None:
        self.order = "asc" if self.order == "desc" else "desc"
        with self.prevent(Select.Changed):
            self.query_one("#f-order", Select).value = self.order
        self.request_query()

    async def focus_track(self, tid: str) -> bool:
        """Move the cursor to a track (from the lineage view), loading further pages of the list
        shown while it may still come; False when the list shown does not hold it (a search or
        filter hides it): its details are shown all the same."""
        for _ in range(50):  # at most 50 pages (5,000 rows) down
            if tid in self.tracks:
                table = self.table
                table.move_cursor(row=table.get_row_index(tid), animate=False)
                table.focus()
                self._show_detail(tid)
                return True
            if not self._cursor:
                break
            cursor = self._cursor
            await self._fetch_more(self._params, cursor)
            if self._cursor == cursor:
                break
        self._show_detail(tid)
        return False
