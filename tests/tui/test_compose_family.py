"""The composer follows the chosen model's family: ACE-Step gets lyrics, language, bpm, key and time
signature (checked with the daemon's schema, errors inline), MusicGen its sampling and melody."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Input, Select, Static, TextArea

from tests.tui.fakes import FakeDaemon
from tests.tui.test_views import make_app, wait_for

LYRICS = "[verse]\nneon rain on the window\n\n[chorus]\nwe run, we run"


class AceFake(FakeDaemon):
    def answer(self, method: str, p: dict[str, Any]) -> Any:
        if method == "model.list":
            return {"models": [{"name": "small", "cached": True, "loaded": True},
                               {"name": "ace-step", "cached": True, "loaded": False},
                               {"name": "my-song-model", "cached": True, "loaded": False, "family": "ace-step"},
                               {"name": "htdemucs", "cached": False, "loaded": False, "family": "separation"}]}
        return super().answer(method, p)


def error_text(app: Any) -> str:
    return str(app.query_one("#form-error").render())


async def test_composer_switches_fields_with_the_model(tmp_path: Path) -> None:
    fake = AceFake()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected)
        compose = app.compose_view
        await wait_for(pilot, lambda: "ace-step" in {v for _, v in compose._model_opts})
        assert "htdemucs" not in {v for _, v in compose._model_opts}  # a separation model makes no music
        lyrics, top_k = app.query_one("#lyrics", TextArea), app.query_one("#top-k", Input)
        assert not lyrics.is_on_screen and not top_k.is_on_screen  # MusicGen: no lyrics editor
        await pilot.press(*"synthwave")

        app.query_one("#model", Select).value = "ace-step"
        await wait_for(pilot, lambda: compose.family == "ace-step")
        await pilot.pause(0.05)
        assert lyrics.is_on_screen and app.query_one("#bpm", Input).is_on_screen
        assert not app.query_one("#melody", Input).is_on_screen and not top_k.is_on_screen
        assert app.query_one("#duration", Input).value == "30"  # the family's default duration

        # Inline errors name the field, and nothing is sent.
        app.query_one("#bpm", Input).value = "0"
        await pilot.press("ctrl+g")
        await pilot.pause(0.1)
        assert "bpm must be between 30 and 300" in error_text(app)
        assert app.query_one("#bpm").has_class("-invalid")
        app.query_one("#bpm", Input).value = "96"
        app.query_one("#key", Input).value = "H major"
        await pilot.pause(0.05)
        assert "key must be one of the 24 keys" in error_text(app)
        app.query_one("#key", Input).value = "Am"
        lyrics.text = "x" * 5000
        await pilot.pause(0.05)
        assert "lyrics are 5000 characters" in error_text(app) and lyrics.has_class("-invalid")
        assert fake.methods_called("job.submit") == []

        lyrics.text = LYRICS
        assert (0, 7, "heading") in lyrics._highlights[0]  # [verse] is highlighted
        app.query_one("#time-signature", Input).value = "4"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: bool(fake.methods_called("job.submit")))
        sent = fake.methods_called("job.submit")[0]
        assert sent["model"] == "ace-step" and sent["lyrics"] == LYRICS  # section tags and blank lines kept
        assert (sent["bpm"], sent["key"], sent["time_signature"], sent["steps"]) == (96, "A minor", 4, 8)
        assert "top_k" not in sent and "temperature" not in sent

        # Back to MusicGen: its fields return, the ACE-Step ones go, the default duration follows.
        app.query_one("#model", Select).value = "small"
        await wait_for(pilot, lambda: compose.family == "musicgen")
        await pilot.pause(0.05)
        assert app.query_one("#advanced").is_on_screen  # MusicGen's sampling panel is back
        assert app.query_one("#melody", Input).is_on_screen and not lyrics.is_on_screen
        assert app.query_one("#duration", Input).value == "8"
        # A directory the daemon says is an ACE-Step model gets the ACE-Step fields too.
        app.query_one("#model", Select).value = "my-song-model"
        await wait_for(pilot, lambda: compose.family == "ace-step")


async def test_remix_of_a_song_fills_the_ace_step_fields(tmp_path: Path) -> None:
    fake = AceFake()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected)
        compose = app.compose_view
        await wait_for(pilot, lambda: "ace-step" in {v for _, v in compose._model_opts})
        compose.prefill({"id": "9-0", "prompt": "indie folk", "model": "ace-step", "duration": 60.0,
                         "params": {"family": "ace-step", "lyrics": LYRICS, "language": "de", "bpm": 120,
                                    "key": "F# major", "time_signature": 3, "steps": 8, "duration": 60.0}})
        await pilot.pause(0.05)
        assert compose.family == "ace-step" and app.query_one("#lyrics", TextArea).text == LYRICS
        assert app.query_one("#language", Input).value == "de" and app.query_one("#key", Input).value == "F# major"
        assert app.query_one("#duration", Input).value == "60"
        params = compose.validate(show_empty_prompt=True)
        assert params is not None and params["time_signature"] == 3 and params["bpm"] == 120


async def test_library_detail_shows_lyrics(tmp_path: Path) -> None:
    from rich.console import Console

    from dgx_music.tui.library import DetailPane

    fake = AceFake()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected)
        # The library shows its first track on its own; show ours after that.
        await wait_for(pilot, lambda: app.library_view.detail is not None and not app.library_view._detail_inflight)
        pane = app.query_one(DetailPane)
        pane.show({"id": "9-0", "title": "night run", "prompt": "synthwave", "model": "ace-step", "duration": 60.0,
                   "sample_rate": 48000, "channels": 2,
                   "params": {"family": "ace-step", "lyrics": LYRICS, "language": "en", "bpm": 96, "key": "A minor"}})
        await pilot.pause(0.05)
        grid = app.query_one("#detail-meta", Static).content
        console = Console(width=100, record=True)
        console.print(grid)
        text = console.export_text()
        assert "lyrics (en)" in text and "[chorus]" in text and "we run, we run" in text
        assert "96 BPM, A minor" in text
