"""The fields every operation form shares (lyrics and language where the operation sings, seed, steps,
model), against the scripted fake daemon: what they send, what they refuse before sending, and that
a form stays usable on an 80x24 terminal (its fields scroll, its buttons stay on screen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.geometry import Region
from textual.widgets import Input, Select, TextArea

from dgx_music.tui.app import DgxMusicApp
from dgx_music.tui.ops_screens import AddPartScreen, CoverScreen, ExtendScreen, RepaintScreen, SpanPicker, StemsScreen
from tests.tui.fakes import FakeDaemon
from tests.tui.test_track_operations import error_text, library, make_app, wait_for

SONG = "[verse]\nneon rain on the boulevard\n[chorus]\nhold the night"


def _inside(inner: Region, outer: Region) -> bool:
    return inner.area > 0 and outer.contains_region(inner)


async def go(pilot: Any, app: DgxMusicApp) -> None:
    """Click the form's submit button as a user would: a Button ignores a click while its press
    effect (0.2 s) from the last one still shows."""
    button = app.screen.query_one("#op-go")
    await wait_for(pilot, lambda: not button.has_class("-active"), what="the button ready again")
    await pilot.click("#op-go")


async def test_repaint_on_80x24_sends_new_lyrics_seed_steps_and_model(tmp_path: Path) -> None:
    fake = FakeDaemon()
    src = fake.track("30-1")
    src.update(family="ace-step", lyrics=SONG, language="de")
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await library(pilot, app)
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, RepaintScreen), what="the repaint form")
        scr = app.screen
        # The source's own words and language to start from.
        lyrics = scr.query_one("#op-lyrics", TextArea)
        assert lyrics.text == SONG
        assert scr.query_one("#op-language", Input).value == "de"
        # On 80x24 the buttons are on screen, inside the box, whatever the fields' length.
        await pilot.pause()
        screen_region = Region(0, 0, 80, 24)
        box = scr.query_one(".op-box").region
        for bid in ("#op-go", "#op-cancel", "#op-error"):
            assert _inside(scr.query_one(bid).region, box) and _inside(scr.query_one(bid).region, screen_region), bid
        fields = scr.query_one(".op-fields")
        assert fields.max_scroll_y > 0  # the fields do not fit: they scroll rather than push the buttons off
        # The last field is reached by focusing it (tab), scrolled into view.
        seed = scr.query_one("#op-seed", Input)
        seed.focus()
        await pilot.pause()
        await wait_for(pilot, lambda: _inside(seed.region, fields.region), what="seed scrolled into view")
        await pilot.press(*"42", "tab", *"30")
        assert scr.query_one("#op-steps", Input).value == "30"
        scr.query_one("#op-model", Select).value = "ace-step-base"
        lyrics.text = "[verse]\nbrand new words\n"
        picker = scr.query_one(SpanPicker)
        picker.focus()
        await pilot.press("shift+right", "i", "shift+right", "o")  # 5.0 .. 10.0
        await go(pilot, app)  # a real click on the visible button
        await wait_for(pilot, lambda: bool(fake.methods_called("op.repaint")), what="op.repaint sent")
        assert fake.methods_called("op.repaint") == [{
            "source": "30-1", "start": 5.0, "end": 10.0, "prompt": None, "lyrics": "[verse]\nbrand new words\n", "language": "de",
            "seed": 42, "steps": 30, "model": "ace-step-base"}]
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")


async def test_bad_seed_steps_language_are_refused_naming_the_field(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        tid = await library(pilot, app)
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, CoverScreen), what="cover form")
        scr = app.screen
        assert scr.query_one("#op-lyrics", TextArea).text == ""  # the source has no lyrics
        await pilot.press(*"bossa nova")
        seed, steps = scr.query_one("#op-seed", Input), scr.query_one("#op-steps", Input)
        for s, st, field, words in (("abc", "", "seed", "whole number"), ("-1", "", "seed", "between"),
                                    ("7", "0", "steps", "between 1 and 200"), ("7", "2.5", "steps", "whole")):
            seed.value, steps.value = s, st
            await go(pilot, app)
            await wait_for(pilot, lambda: f"{field}:" in error_text(app) and words in error_text(app),
                           what=f"{field}={s or st} refused: {error_text(app)!r}")
            assert isinstance(app.screen, CoverScreen), "refused: the form stays"
            bad = scr.query_one(f"#op-{field}")
            assert bad.has_class("-invalid") and bad.has_focus  # marked and scrolled to
        # Lyrics bring their language, checked by the same schema.
        steps.value = ""
        scr.query_one("#op-lyrics", TextArea).text = "[verse]\nsaudade"
        scr.query_one("#op-language", Input).value = "xx"
        await go(pilot, app)
        await wait_for(pilot, lambda: "language:" in error_text(app), what="language refused")
        for bid in ("#op-go", "#op-error"):  # a long refusal leaves the buttons on screen
            assert _inside(scr.query_one(bid).region, Region(0, 0, 80, 24)), bid
        assert fake.methods_called("op.cover") == []
        scr.query_one("#op-language", Input).value = "PT"
        await go(pilot, app)
        await wait_for(pilot, lambda: bool(fake.methods_called("op.cover")), what="op.cover sent")
        assert fake.methods_called("op.cover") == [{"source": tid, "prompt": "bossa nova", "strength": 0.5,
                                                    "seed": 7, "lyrics": "[verse]\nsaudade", "language": "PT"}]


class AceFake(FakeDaemon):
    """A daemon that also offers a local ACE-Step model directory (its family told by the daemon)."""

    def answer(self, method: str, p: dict[str, Any]) -> Any:
        out = super().answer(method, p)
        if method == "model.list":
            out = {"models": [*out["models"], {"name": "/models/my-ace", "family": "ace-step", "cached": True}]}
        return out


async def test_stems_has_seed_steps_and_the_daemons_models_but_no_lyrics_add_part_sings(tmp_path: Path) -> None:
    fake = AceFake()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        tid = await library(pilot, app)
        await pilot.press("S")
        await wait_for(pilot, lambda: isinstance(app.screen, StemsScreen), what="stems form")
        assert not app.screen.query("#op-lyrics") and not app.screen.query("#op-language")
        app.screen.query_one("#op-method", Select).value = "generate"  # steps: ACE-Step's sampler
        app.screen.query_one("#op-seed", Input).value = "123"
        app.screen.query_one("#op-steps", Input).value = "50"
        model = app.screen.query_one("#op-model", Select)
        offered = [v for _, v in model._options]
        assert offered[:2] == ["", "/models/my-ace"] and "ace-step" in offered
        assert "facebook/musicgen-small" not in offered  # operations run on ACE-Step only
        model.value = "/models/my-ace"
        await go(pilot, app)
        await wait_for(pilot, lambda: bool(fake.methods_called("op.stems")), what="op.stems sent")
        assert fake.methods_called("op.stems") == [{"source": tid, "method": "generate",
                                                    "parts": ["vocals", "drums", "bass"], "seed": 123, "steps": 50, "model": "/models/my-ace"}]
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        app.library_view.table.focus()
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, AddPartScreen), what="add part form")
        app.screen.query_one("#addpart-part", Select).value = "vocals"
        app.screen.query_one("#op-lyrics", TextArea).text = "[chorus]\nla la"
        await go(pilot, app)
        await wait_for(pilot, lambda: bool(fake.methods_called("op.add_part")), what="op.add_part sent")
        assert fake.methods_called("op.add_part") == [{"source": tid, "part": "vocals", "prompt": None, "mix": False,
                                                       "lyrics": "[chorus]\nla la", "language": "en"}]


async def test_plus_on_an_ace_step_track_extends_before_it_on_80x24(tmp_path: Path) -> None:
    fake = FakeDaemon()
    src = fake.track("30-1")
    src.update(family="ace-step", lyrics=SONG)
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await library(pilot, app)
        await pilot.press("plus")
        await wait_for(pilot, lambda: isinstance(app.screen, ExtendScreen), what="the extend form")
        scr = app.screen
        await pilot.pause()
        box, screen_region = scr.query_one(".op-box").region, Region(0, 0, 80, 24)
        for wid in ("#extend-by", "#extend-where", "#op-go", "#op-cancel"):
            assert _inside(scr.query_one(wid).region, box) and _inside(scr.query_one(wid).region, screen_region), wid
        await go(pilot, app)  # no seconds yet: refused here, naming the field
        await wait_for(pilot, lambda: "by" in error_text(app), what="the refusal")
        assert not fake.methods_called("op.extend")
        scr.query_one("#extend-by", Input).value = "700"
        await go(pilot, app)  # past what the schema takes
        await wait_for(pilot, lambda: "by" in error_text(app) and "600" in error_text(app), what="the limit")
        scr.query_one("#extend-by", Input).value = "12.5"
        scr.query_one("#extend-where", Select).value = "before"
        await go(pilot, app)
        await wait_for(pilot, lambda: bool(fake.methods_called("op.extend")), what="op.extend sent")
        sent = fake.methods_called("op.extend")[0]
        assert (sent["source"], sent["by"], sent["before"]) == ("30-1", 12.5, True)
        assert sent["lyrics"] == SONG  # the track's own words, editable in the form
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        assert app.query_one("TabbedContent").active != "compose"  # not the MusicGen composer hand-off


async def test_a_style_goes_with_an_operation_and_not_with_a_separation(tmp_path: Path) -> None:
    fake = FakeDaemon()
    src = fake.track("30-1")
    src.update(family="ace-step", lyrics=SONG)
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await library(pilot, app)
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, CoverScreen), what="cover form")
        scr = app.screen
        await pilot.press(*"dub techno")
        scr.query_one("#op-lyrics", TextArea).text = ""
        scr.query_one("#op-lora", Input).value = "warm-tape:9"  # scale above 4
        await go(pilot, app)
        await wait_for(pilot, lambda: "lora" in error_text(app), what=f"a bad scale refused: {error_text(app)!r}")
        assert scr.query_one("#op-lora", Input).has_class("-invalid") and fake.methods_called("op.cover") == []
        scr.query_one("#op-lora", Input).value = "warm-tape:0.6"
        await go(pilot, app)
        await wait_for(pilot, lambda: bool(fake.methods_called("op.cover")), what="op.cover sent")
        assert fake.methods_called("op.cover")[0]["lora"] == "warm-tape:0.6"
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        app.library_view.table.focus()
        await pilot.press("S")
        await wait_for(pilot, lambda: isinstance(app.screen, StemsScreen), what="stems form")
        scr = app.screen
        row = scr.query_one("#op-lora-row")
        assert not row.display  # separation (the default method) takes no style
        scr.query_one("#op-lora", Input).value = "warm-tape"
        scr.query_one("#op-method", Select).value = "generate"
        await wait_for(pilot, lambda: bool(row.display), what="the style row shown for generate")
        await go(pilot, app)
        await wait_for(pilot, lambda: bool(fake.methods_called("op.stems")), what="op.stems sent")
        assert fake.methods_called("op.stems")[0]["lora"] == "warm-tape"
