"""The library's table: a DataTable that pages on demand and draws its one-line cells from a cache.

Kept apart from the view (tui/library.py) because it is all rendering internals of
DataTable: the view only needs `NearEnd` and the table's ordinary API.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.widgets import DataTable


class LibraryTable(DataTable):
    """DataTable that asks for the next page as the view nears the end, and draws its cells cheaply.

    Every search refills the table, and DataTable then renders each visible cell
    afresh through Rich (Styled(Padding(Text)) -> Console.render_lines), ~270 cells
    for a 120x40 screen: most of the keystroke-to-screen time. Our cells are
    one-line Text in fixed-width columns, so `_render_cell` here keeps the cell's
    unstyled segments (padding included) in a cache keyed by content and width,
    shared by all rows and all queries (the same track, number or date looks the
    same in every result), and only applies the row/cursor styles per cell. Any
    other cell (header, row label, multi-line, spans, tabs) goes through
    DataTable's own path. `_update_dimensions` skips measuring cells when every
    column has a fixed width (their widths are not used then). Both give the
    same segments as DataTable's own code; tests/tui/test_views.py checks that.
    """

    class NearEnd(Message):
        """The cursor came near the last loaded row: the library loads the next page."""

    #: (plain, style, overflow, width) -> unstyled segments of one padded cell line
    _SEGMENTS_MAX = 4096

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._segments: dict[tuple, list[Segment]] = {}

    def _cell_segments(self, cell: Text, width: int) -> list[Segment] | None:
        """The unstyled segments of a one-line cell (padding included), as Rich draws it,
        or None where that takes Rich itself (wide or special characters, wrapping)."""
        key = (cell.plain, cell.style, cell.overflow, width)
        segs = self._segments.get(key)
        if segs is None:
            pad = self.cell_padding
            inner = width - 2 * pad
            plain = cell.plain
            if inner < 1 or not plain.isprintable() or cell_len(plain) != len(plain) or (
                    len(plain) > inner and cell.overflow != "ellipsis"):
                return None
            if not plain:  # Rich leaves an empty, unstyled segment here
                segs = [Segment(" " * pad), Segment(""), Segment(" " * inner), Segment(" " * pad)]
            else:  # one cell per character: pad, text (cropped with an ellipsis), pad
                if len(plain) > inner:
                    plain = plain[:inner - 1] + "…"
                style = self.app.console.get_style(cell.style) if cell.style else None
                segs = [Segment(" " * pad), Segment(plain, style)]
                if len(plain) < inner:
                    segs.append(Segment(" " * (inner - len(plain))))
                segs.append(Segment(" " * pad))
            if len(self._segments) >= self._SEGMENTS_MAX:
                self._segments.clear()
            self._segments[key] = segs
        return segs

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> Any:
        try:
            row_key = self._row_locations.get_key(row_index)
            column_key = self._column_locations.get_key(column_index)
            row = self.rows[row_key] if row_index >= 0 else None
            cell = self._data[row_key][column_key] if row is not None and column_index >= 0 else None
        except (KeyError, AttributeError):
            cell = row = None
        if (type(cell) is not Text or row is None or row.height != 1 or cell.spans
                or "\n" in cell.plain or "\t" in cell.plain or cell.justify not in (None, "default", "left")
                or self.fixed_rows or self.fixed_columns):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cache_key = (row_key, column_key, base_style, cursor, hover, self._show_hover_cursor,
                     self._update_count, self._pseudo_class_state)
        lines = self._cell_render_cache.get(cache_key)
        if lines is None:
            segs = self._cell_segments(cell, width)
            if segs is None:
                return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            component_style, post_style = self._get_styles_to_render_cell(
                False, False, False, hover, cursor, self.show_cursor, self._show_hover_cursor,
                self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
            pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
            lines = [list(Segment.apply_style(segs, pre_style, post_style))]
            self._cell_render_cache[cache_key] = lines
        return lines

    def _clear_caches(self) -> None:
        # Textual's LRUCache keeps its entries in a ring of [prev, next, key, value] lists;
        # dropped whole on clear() (every search), the ring is cyclic garbage that only the
        # cyclic GC frees, and its full collections then cost 20-50 ms in the middle of a
        # keystroke. Breaking the ring first lets reference counting free it at once.
        for cache in (self._row_render_cache, self._cell_render_cache, self._row_renderable_cache,
                      self._line_cache, self._offset_cache, self._ordered_row_cache):
            nodes = getattr(cache, "_cache", None) if isinstance(cache, LRUCache) else None
            if isinstance(nodes, dict):
                for node in nodes.values():
                    if type(node) is list:
                        node.clear()
        super()._clear_caches()

    # While one frame is drawn nothing can restyle the table, yet DataTable works out the same
    # styles again for every line (walking the DOM for each); keep them for the frame.
    _frame: dict[Any, Any] | None = None

    def render_lines(self, crop: Any) -> Any:
        self._frame = {}
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    @property
    def rich_style(self) -> Style:
        frame = self._frame
        if frame is None:
            return super().rich_style
        if "rich_style" not in frame:
            frame["rich_style"] = super().rich_style
        return frame["rich_style"]

    @property
    def background_colors(self) -> Any:
        frame = self._frame
        if frame is None:
            return super().background_colors
        if "background_colors" not in frame:
            frame["background_colors"] = super().background_colors
        return frame["background_colors"]

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        frame = self._frame
        if frame is None:
            return super()._get_row_style(row_index, base_style)
        key = ("row_style", row_index == -1, row_index < self.fixed_rows, row_index % 2, base_style)
        if key not in frame:
            frame[key] = super()._get_row_style(row_index, base_style)
        return frame[key]

    def _update_dimensions(self, new_rows: Any) -> None:
        columns = list(self.columns.values())
        if columns and not any(c.auto_width for c in columns) and not self._labelled_row_exists:
            rows = [self.rows.get(k) for k in new_rows]
            if all(r is not None and r.label is None and not r.auto_height for r in rows):
                width = sum(c.get_render_width(self) for c in columns) + self._row_label_column_width
                header = self.header_height if self.show_header else 0
                self.virtual_size = Size(width, self._total_row_height + header)
                return
        super()._update_dimensions(new_rows)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self.max_scroll_y and new_value >= self.max_scroll_y - self.size.height:
            self.post_message(self.NearEnd())
