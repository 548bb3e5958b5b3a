"""The library's table: a DataTable that asks for the next page as the view nears the end.

Only DataTable's public API is used here (no private members overridden), so a Textual
upgrade cannot silently break the table; tests/tui/test_views.py checks that it stays so.
"""

from __future__ import annotations

from textual.message import Message
from textual.widgets import DataTable


class LibraryTable(DataTable):
    """DataTable that posts `NearEnd` when the view scrolls within a screen of the last loaded row."""

    class NearEnd(Message):
        """The cursor came near the last loaded row: the library loads the next page."""

    def on_mount(self) -> None:
        self.watch(self, "scroll_y", self._scrolled, init=False)

    def _scrolled(self, new_value: float) -> None:
        if self.max_scroll_y and new_value >= self.max_scroll_y - self.size.height:
            self.post_message(self.NearEnd())
