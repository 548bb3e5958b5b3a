"""The command palette's entries (ctrl+p): every action by name, with its key.

A plain list kept apart from app.py, which only chains it after Textual's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from textual.app import SystemCommand

if TYPE_CHECKING:
    from dgx_music.tui.app import DgxMusicApp


def palette(app: DgxMusicApp) -> Iterable[SystemCommand]:
    """The app's own commands, after Textual's (theme, quit, keys…)."""
    cv, qv, lv = app.compose_view, app.queue_view, app.library_view
    yield SystemCommand("Generate", "Submit the prompt in the composer", cv.action_generate)
    yield SystemCommand("Compose", "Go to the composer (F2)", lambda: app.action_show_tab("compose"))
    yield SystemCommand("Queue", "Go to the live queue (F3)", lambda: app.action_show_tab("queue"))
    yield SystemCommand("Library", "Go to the library (F4)", lambda: app.action_show_tab("library"))
    yield SystemCommand("Play / stop", "Play or stop the selected track (space)", app.action_toggle_play)
    yield SystemCommand("Lock seed", "Lock or unlock the composer's seed (ctrl+l)", cv.action_toggle_lock)
    yield SystemCommand("Advanced sampling", "Show or hide temperature, top-k, top-p, guidance",
                        cv.action_toggle_advanced)
    yield SystemCommand("Cancel job", "Cancel the selected job in the queue (c)", qv.action_cancel)
    yield SystemCommand("Retry job", "Retry the selected failed or cancelled job (r)", qv.action_retry)
    yield SystemCommand("Move job up", "Move the selected queued job up (K)", lambda: qv.action_move("up"))
    yield SystemCommand("Move job down", "Move the selected queued job down (J)",
                        lambda: qv.action_move("down"))
    yield SystemCommand("Move job to top", "Move the selected queued job to the top (T)",
                        lambda: qv.action_move("top"))
    yield SystemCommand("Search library", "Full-text search (/)",
                        lambda: (app.action_show_tab("library"), lv.action_focus_search()))
    yield SystemCommand("Filters", "Show or hide the library filters (F)", lv.action_toggle_filters)
    yield SystemCommand("Sort", "Next library sort field (s)", lv.action_next_sort)
    yield SystemCommand("Flip order", "Ascending / descending (o)", lv.action_flip_order)
    yield SystemCommand("Favourite", "Toggle favourite on the selected track (f)", lv.action_favorite)
    yield SystemCommand("Tags", "Edit the selected track's tags (t)", lv.action_tags)
    yield SystemCommand("Rename", "Rename the selected track (e)", lv.action_rename)
    yield SystemCommand("Notes", "Edit the selected track's notes (n)", lv.action_notes)
    yield SystemCommand("Remix", "Composer with this track's prompt and parameters, new seed (m)",
                        lv.action_remix)
    yield SystemCommand("Mark track", "Mark or unmark the selected track for export (v)",
                        lv.action_toggle_mark)
    yield SystemCommand("Unmark all", "Clear every mark in the library (V)", lv.action_clear_marks)
    yield SystemCommand("Export", "Export the marked tracks, else the selected one (x)", lv.action_export)
    yield SystemCommand("Repaint", "Regenerate a span of the selected track (R)",
                        lambda: lv.action_operation("repaint"))
    yield SystemCommand("Cover", "The selected track in a new style (C)", lambda: lv.action_operation("cover"))
    yield SystemCommand("Stems", "Split the selected track into stems (S)", lambda: lv.action_operation("stems"))
    yield SystemCommand("Add a part", "A new part played against the selected track (A)",
                        lambda: lv.action_operation("add_part"))
    yield SystemCommand("Fit", "The selected track at another tempo and key (T)", lambda: lv.action_operation("fit"))
    yield SystemCommand("Loop", "A bar-exact loop cut from the selected track (B)",
                        lambda: lv.action_operation("loop"))
    yield SystemCommand("Family", "The selected track's source and the tracks made from it (L)",
                        lv.action_lineage)
    yield SystemCommand("Delete track", "Delete the selected track, after asking (delete)", lv.action_delete)
    yield SystemCommand("Reconnect", "Try to reach the daemon now (ctrl+r)", app.action_reconnect)
    yield SystemCommand("Help", "Keys and tips (F1)", app.action_help)
