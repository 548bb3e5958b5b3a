"""The library's actions on tracks: each key posts a LibraryView.TrackAction (or ExportTracks) for the
App to carry out (tui/track_actions.py), on the track under the cursor or, for export, the marked ones.

Marks are kept by id in LibraryView.marked; marking a row redraws its title and steps down.
"""

from __future__ import annotations

from typing import Any


class LibraryTrackActions:
    """Mixed into LibraryView (whose BINDINGS name these actions): needs its selected(), selected_id(),
    tracks, marked, table, _redraw_title() and _update_count()."""

    def _need(self) -> dict[str, Any] | None:
        t = self.selected()
        if t is None:
            self.app.notify("No track selected.", severity="warning")
        return t

    def action_train_style(self) -> None:
        """Train a style (a LoRA) on the marked tracks, or the one under the cursor (tui/styles.py)."""
        from dgx_music.tui.styles import train_from_marked

        ids = list(self.marked) or ([str(t["id"])] if (t := self._need()) is not None else [])
        if ids:
            train_from_marked(self.app, ids)

    def action_favorite(self) -> None:
        if (t := self._need()) is not None:
            self.post_message(self.TrackAction("favorite", t))

    def action_rate(self, n: int) -> None:
        if (t := self._need()) is not None:
            self.post_message(self.TrackAction(f"rate:{n}", t))

    def action_tags(self) -> None:
        if (t := self._need()) is not None:
            self.post_message(self.TrackAction("tags", t))

    def action_rename(self) -> None:
        if (t := self._need()) is not None:
            self.post_message(self.TrackAction("rename", t))

    def action_notes(self) -> None:
        if (t := self._need()) is not None:
            self.post_message(self.TrackAction("notes", t))

    def action_remix(self) -> None:
        if (t := self._need()) is not None:
            self.post_message(self.TrackAction("remix", t))

    def action_extend(self) -> None:
        if (t := self._need()) is not None:
            self.post_message(self.TrackAction("extend", t))

    def action_use_melody(self) -> None:
        if (t := self._need()) is not None:
            self.post_message(self.TrackAction("use_melody", t))

    def action_export(self) -> None:
        """The marked tracks when there are any (like a file manager), else the one under the cursor."""
        if self.marked:
            self.post_message(self.ExportTracks(list(self.marked.values())))
        elif (t := self._need()) is not None:
            self.post_message(self.ExportTracks([t]))

    def action_toggle_mark(self) -> None:
        """Mark or unmark the row under the cursor, then step down so runs of rows mark quickly."""
        tid = self.selected_id()
        if tid is None or tid not in self.tracks:
            self.app.notify("No track selected.", severity="warning")
            return
        if self.marked.pop(tid, None) is None:
            self.marked[tid] = self.tracks[tid]
        self._redraw_title(tid)
        self._marks_changed()
        self.table.action_cursor_down()

    def action_clear_marks(self) -> None:
        marked, self.marked = self.marked, {}
        for tid in marked:
            self._redraw_title(tid)
        self._marks_changed()

    def _marks_changed(self) -> None:
        self._update_count()
        self.refresh_bindings()  # "Unmark all" shows in the footer only while something is marked

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_marks":
            return bool(self.marked)
        return True

    def action_operation(self, operation: str) -> None:
        if t := self._need():
            self.post_message(self.TrackAction(operation, t))

    def action_lineage(self) -> None:
        if t := self._need():
            self.post_message(self.TrackAction("lineage", t))

    def action_delete(self) -> None:
        if (t := self._need()) is not None:
            self.post_message(self.TrackAction("delete", t))
