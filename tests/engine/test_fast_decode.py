"""The fast decode loop (daemon/engine/fast_decode.py) against transformers' own generate.

Parity is the gate: with fp32 on the CPU and the stock-compatible sampler (`sampler="stock"`), the fast
loop must give exactly the codes stock `generate` gives for the same seed. Codes are taken where both
hand them to EnCodec (`audio_encoder.decode`), so nothing downstream can hide a difference. The lean
sampler (the default) draws differently; tests/engine/test_counter_sampler.py shows its draws follow
the same distribution, and here it is checked for determinism, hooks and the compiled path's graph.
Everything runs the tiny random-weight models through the real loaders.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch

from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.fast_decode import FastDecoder, Sampling, logits_close
from dgx_music.daemon.engine.transformers_backend import TransformersBackend

STOCK_SAMPLING = dict(do_sample=True, temperature=1.0, top_k=250, top_p=1.0, guidance_scale=3.0)
#: bf16 teacher-forced logits may differ from fp32 by at most this many standard deviations of the
#: fp32 logits (max over every logit of every step); measured 0.032 on the tiny model (24 steps, batch 2).
BF16_BOUND = 0.1


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Two shared cores: one intra-op thread keeps the long parity runs from spinning."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _load(path: Path, mode: str = "fast") -> TransformersBackend:
    b = TransformersBackend()
    b.load(str(path), "cpu", "auto", lambda *a: None)
    b.set_decode(mode)
    return b


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> TransformersBackend:
    return _load(tiny_model)


class CodeTap:
    """Records the codes handed to EnCodec (what both loops produce) on a loaded model."""

    def __init__(self, model: Any) -> None:
        self.codes: list[torch.Tensor] = []
        self._orig = model.audio_encoder.decode
        self._model = model

        def tap(codes: torch.Tensor, *a: Any, **kw: Any) -> Any:
            self.codes.append(codes.detach().clone())
            return self._orig(codes, *a, **kw)

        model.audio_encoder.decode = tap

    def close(self) -> None:
        self._model.audio_encoder.decode = self._orig


@pytest.fixture
def tap(backend: TransformersBackend) -> Iterator[CodeTap]:
    t = CodeTap(backend.model)
    yield t
    t.close()


def _both(b: TransformersBackend, run: Callable[[], Any], tap: CodeTap) -> tuple[Any, Any]:
    """Run once with stock generate and once with the fast loop (stock sampler); return (codes, result) pairs."""
    out = []
    for mode in ("stock", "fast"):
        b.set_decode(mode, sampler="stock")
        tap.codes.clear()
        res = run()
        out.append((torch.cat(tap.codes, dim=-1) if tap.codes else None, res))
    b.set_decode("fast")
    return out[0], out[1]


@pytest.mark.parametrize("prompts,steps,sampling,seed", [
    (["warm pads"], 40, STOCK_SAMPLING, 1),
    (["warm pads"], 40, STOCK_SAMPLING, 2),
    (["a much longer prompt about a slow jazz ballad with brushed drums and upright bass"], 60, STOCK_SAMPLING, 3),
    # a padded batch of 2 (prompt lengths differ), top-p instead of top-k, a temperature
    (["drums", "a long prompt that needs padding in the batch"], 80,
     dict(do_sample=True, temperature=0.7, top_k=0, top_p=0.9, guidance_scale=3.0), 4),
    # guidance off (cfg <= 1 passes None), top-k 50, hot
    (["bass"], 50, dict(do_sample=True, temperature=1.3, top_k=50, top_p=1.0, guidance_scale=None), 5),
])
def test_codes_equal_stock_generate(backend: TransformersBackend, tap: CodeTap, prompts: list[str], steps: int,
                                    sampling: dict[str, Any], seed: int) -> None:
    m = backend.model
    inputs = backend.processor(text=prompts, padding=True, return_tensors="pt")
    tap.codes.clear()
    torch.manual_seed(seed)
    stock_audio = m.generate(**inputs, **sampling, max_new_tokens=steps)
    stock = tap.codes[-1]
    tap.codes.clear()
    torch.manual_seed(seed)
    fast_audio = FastDecoder(m, sampler="stock").generate(dict(inputs), steps, Sampling.from_kwargs(m, sampling))
    fast = tap.codes[-1]
    assert stock.shape == fast.shape == (1, len(prompts), 4, steps - 3)
    assert torch.equal(stock, fast)
    assert torch.equal(stock_audio, fast_audio)
    # and the seed matters: another seed gives other codes
    tap.codes.clear()
    torch.manual_seed(seed + 100)
    FastDecoder(m, sampler="stock").generate(dict(inputs), steps, Sampling.from_kwargs(m, sampling))
    assert not torch.equal(tap.codes[-1], fast)


def test_30s_clip_padded_batch_equals_stock(backend: TransformersBackend, tap: CodeTap) -> None:
    """A whole 30 s window (1503 steps), batch of 2 differently long prompts, through the backend."""
    prompts = ["lofi", "an energetic drum and bass track with a rolling bassline"]
    (c_stock, (a_stock, sr)), (c_fast, (a_fast, _)) = _both(
        backend, lambda: backend.generate(prompts, 30.0, 1.0, 250, 0.0, 3.0, 7, lambda s, t: None), tap)
    assert c_stock.shape == (1, 2, 4, 1500)
    assert torch.equal(c_stock, c_fast)
    assert a_stock.shape == a_fast.shape == (2, 1, 30 * sr)
    assert np.array_equal(a_stock, a_fast)


def test_continuation_window_equals_stock(backend: TransformersBackend, tap: CodeTap) -> None:
    """An audio prompt (music to continue: EnCodec encodes it into the decoder's prompt)."""
    rng = np.random.default_rng(0)
    prefix = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    (c_stock, (a_stock, _)), (c_fast, (a_fast, _)) = _both(
        backend, lambda: backend.generate(["go on"] * 2, 1.0, 1.0, 250, 0.0, 3.0, 11, lambda s, t: None,
                                          prefix=prefix), tap)
    assert c_stock.shape[-1] == 50 + 50  # the re-decoded 1 s prompt and 1 s of new frames
    assert torch.equal(c_stock, c_fast)
    assert np.array_equal(a_stock, a_fast)


def test_melody_model_equals_stock(tiny_melody_model: Path) -> None:
    b = _load(tiny_melody_model)
    tap = CodeTap(b.model)
    try:
        t = np.arange(2 * 32000) / 32000
        melody = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        (c_stock, (a_stock, _)), (c_fast, (a_fast, _)) = _both(
            b, lambda: b.generate(["hummed tune", "a longer hummed tune prompt"], 1.0, 1.0, 250, 0.0, 3.0, 3,
                                  lambda s, t: None, melody=melody), tap)
        assert b.fast is not None and b.fast.melody
        assert c_stock.shape[-1] == 50
        assert torch.equal(c_stock, c_fast)
        assert np.array_equal(a_stock, a_fast)
    finally:
        tap.close()


def test_hooks_see_what_stock_processors_see(backend: TransformersBackend) -> None:
    """A per-step hook (progress, cancel, streaming) gets the same ids and logits in both loops, once per step."""
    m = backend.model
    inputs = backend.processor(text=["x", "longer prompt"], padding=True, return_tensors="pt")

    def recorder(seen: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
        from transformers import LogitsProcessor

        class Rec(LogitsProcessor):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                seen.append((input_ids.clone(), scores.clone()))
                return scores

        return Rec()

    stock: list[tuple[torch.Tensor, torch.Tensor]] = []
    fast: list[tuple[torch.Tensor, torch.Tensor]] = []
    torch.manual_seed(0)
    m.generate(**inputs, **STOCK_SAMPLING, max_new_tokens=12, logits_processor=[recorder(stock)])
    torch.manual_seed(0)
    FastDecoder(m, sampler="stock").generate(dict(inputs), 12, Sampling.from_kwargs(m, STOCK_SAMPLING),
                                             [recorder(fast)])
    assert len(stock) == len(fast) == 12
    for (ids_s, sc_s), (ids_f, sc_f) in zip(stock, fast):
        assert torch.equal(ids_s, ids_f)
        assert torch.equal(sc_s, sc_f)


def test_hook_raising_cancels(backend: TransformersBackend) -> None:
    steps: list[int] = []

    def on_step(step: int, total: int) -> None:
        steps.append(step)
        if step == 5:
            raise EngineError("cancelled", "stop")

    with pytest.raises(EngineError):
        backend.generate(["x"], 2.0, 1.0, 250, 0.0, 3.0, 1, on_step)
    assert steps == [1, 2, 3, 4, 5]


def test_bf16_teacher_forced_logits_close_to_fp32(backend: TransformersBackend) -> None:
    m32 = backend.model
    m16 = copy.deepcopy(m32).to(torch.bfloat16)
    inputs = backend.processor(text=["warm pads", "a longer prompt here"], padding=True, return_tensors="pt")
    s = Sampling.from_kwargs(m32, STOCK_SAMPLING)
    tokens = torch.randint(0, 2048, (24, 2 * 4), generator=torch.Generator().manual_seed(0))
    want = FastDecoder(m32).teacher_forced_logits(dict(inputs), tokens, s)
    got = FastDecoder(m16).teacher_forced_logits(dict(inputs), tokens, s)
    assert got.shape == want.shape == (24, 2 * 2 * 4, 2048)
    ok, rel = logits_close(got, want, BF16_BOUND)
    assert ok, f"bf16 logits off by {rel:.3g} std (bound {BF16_BOUND})"
    # The bound is meaningful: logits of other tokens are far outside it.
    other = FastDecoder(m32).teacher_forced_logits(dict(inputs), tokens.roll(1, dims=0), s)
    assert not logits_close(other, want, BF16_BOUND)[0]


def _compiled_once(backend: TransformersBackend, fd: FastDecoder) -> tuple[Any, Sampling]:
    """Compile `fd`'s step on a 10-step job: exactly one graph, no graph break; counters then reset."""
    import torch._dynamo.utils as dyn

    inputs = backend.processor(text=["compiled"], padding=True, return_tensors="pt")
    s = Sampling.from_kwargs(backend.model, STOCK_SAMPLING)
    dyn.counters.clear()
    fd.generate(dict(inputs), 10, s)
    assert dyn.counters["stats"]["unique_graphs"] == 1
    assert not dyn.counters["graph_break"]
    dyn.counters.clear()
    return inputs, s


def _assert_nothing_compiled() -> None:
    """Since `_compiled_once`: no graph break, no new graph, no recompilation."""
    import torch._dynamo.utils as dyn

    assert not dyn.counters["graph_break"]
    assert dyn.counters["stats"].get("unique_graphs", 0) == 0
    assert dyn.counters["stats"].get("calls_captured", 0) == 0


def test_compiled_stock_sampler_30s_clip_same_codes(backend: TransformersBackend, tap: CodeTap) -> None:
    """The compiled step with the stock-compatible sampler (one step per call): compiled once on a
    10-step job, then a whole 30 s clip without a graph break or a recompilation, with stock's codes."""
    m = backend.model
    fd = FastDecoder(m, compile=True, sampler="stock")
    assert fd.compile and not fd.exact and fd.unroll == 1
    inputs, s = _compiled_once(backend, fd)
    tap.codes.clear()
    torch.manual_seed(21)
    fd.generate(dict(inputs), 1503, s)
    fast = tap.codes[-1]
    _assert_nothing_compiled()
    tap.codes.clear()
    torch.manual_seed(21)
    m.generate(**inputs, **STOCK_SAMPLING, max_new_tokens=1503)
    assert torch.equal(tap.codes[-1], fast)


def test_compiled_lean_30s_clip_one_graph_hooks_per_step_and_self_check(backend: TransformersBackend,
                                                                         tap: CodeTap) -> None:
    """The default compiled path (counter sampler, several steps per call): one graph, compiled on a
    10-step job, serves a 30 s clip with no graph break or recompilation; hooks still see every step
    once, in order, with stock's shapes; the same seed gives the same clip; and its teacher-forced
    logits match the eager exact step (the check the worker runs at load on CUDA)."""
    from dgx_music.daemon.engine.fast_decode import self_check

    m = backend.model
    fd = FastDecoder(m, compile=True)
    assert fd.sampler == "counter" and fd.unroll > 1
    inputs, s = _compiled_once(backend, fd)
    lengths: list[int] = []
    rows: list[tuple[int, ...]] = []
    finite: list[bool] = []

    def hook(ids: torch.Tensor, scores: torch.Tensor) -> None:
        lengths.append(ids.shape[1])
        rows.append(tuple(scores.shape))
        finite.append(bool(torch.isfinite(scores).all()))

    tap.codes.clear()
    torch.manual_seed(21)
    fd.generate(dict(inputs), 1503, s, [hook])
    first = tap.codes[-1]
    _assert_nothing_compiled()
    assert lengths == list(range(1, 1504)) and set(rows) == {(2 * 4, 2048)}
    assert all(finite)  # CFG's unconditional rows attend to no text: zeros, not NaN
    assert first.shape == (1, 1, 4, 1500)
    tap.codes.clear()
    torch.manual_seed(21)
    fd.generate(dict(inputs), 1503, s)
    assert torch.equal(tap.codes[-1], first)
    ok, why = self_check(fd, backend.processor)
    assert ok, why
    _assert_nothing_compiled()  # teacher forcing reuses the same graph
    # The same draws as the eager loop (its logits agree to float rounding): the same codes.
    tap.codes.clear()
    torch.manual_seed(22)
    fd.generate(dict(inputs), 40, s)
    torch.manual_seed(22)
    FastDecoder(m).generate(dict(inputs), 40, s)
    assert torch.equal(tap.codes[0], tap.codes[1])


def test_lean_sampler_reproducible_and_seeded(backend: TransformersBackend, tap: CodeTap) -> None:
    """The default loop (eager, counter sampler) through the backend: a seed gives the same clip every
    time, another seed another clip, and each row of a batch its own codes."""
    assert backend.fast is not None and backend.fast.sampler == "counter"

    def codes(seed: int) -> torch.Tensor:
        tap.codes.clear()
        backend.generate(["warm pads", "warm pads"], 1.0, 1.0, 250, 0.0, 3.0, seed, lambda s, t: None)
        return tap.codes[-1]

    a, b, c = codes(5), codes(5), codes(6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0, 0], a[0, 1])  # the same prompt twice in a batch: two different clips


def test_decode_mode_setting(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgx_music.common.config import OPTIONS

    opt = next(o for o in OPTIONS if o.key == "engine.decode")
    assert opt.default == "fast" and set(opt.choices) == {"fast", "compiled", "stock"}
    assert opt.env_name == "DGX_MUSIC_DECODE"
    monkeypatch.setenv("DGX_MUSIC_DECODE", "stock")
    b = TransformersBackend()
    b.load(str(tiny_model), "cpu", "auto", lambda *a: None)
    assert b.decode == "stock" and b.fast is None
    monkeypatch.delenv("DGX_MUSIC_DECODE")
    b.load(str(tiny_model), "cpu", "auto", lambda *a: None)
    assert b.decode == "fast" and b.fast is not None and not b.fast.compile  # eager on the CPU by default
    assert b.fast.sampler == "counter"
    with pytest.raises(EngineError) as err:
        b.set_decode("turbo")
    assert err.value.code == "bad_request"
    sampler = next(o for o in OPTIONS if o.key == "engine.sampler")
    assert sampler.default == "counter" and set(sampler.choices) == {"counter", "stock"}
    assert sampler.env_name == "DGX_MUSIC_SAMPLER"
    monkeypatch.setenv("DGX_MUSIC_SAMPLER", "stock")
    b.load(str(tiny_model), "cpu", "auto", lambda *a: None)
    assert b.fast is not None and b.fast.sampler == "stock"
    with pytest.raises(EngineError) as err:
        b.set_decode("fast", "dice")
    assert err.value.code == "bad_request" and "dice" in str(err.value)


def test_cli_bench_compares_decode_loops(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dgx-music bench --decode stock,fast`: each loop in its own worker, per-step time side by side."""
    from dgx_music.cli.main import main

    assert main(["bench", "--model", str(tiny_model), "--duration", "1", "--device", "cpu",
                 "--decode", "stock,fast", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    runs = r["decode_compare"]
    assert [x["decode"] for x in runs] == ["stock", "fast"]
    for x in runs:
        assert x["steps"] == 53 and x["output_shape"] == [1, 1, 32000]
        assert x["step_ms"] > 0 and x["steps_per_second"] > 0
    assert main(["bench", "--model", str(tiny_model), "--duration", "1", "--decode", "stock,turbo"]) == 2
    assert "turbo" in capsys.readouterr().err


def test_stream_is_the_same_with_either_loop(backend: TransformersBackend, tap: CodeTap) -> None:
    """The streaming hook (streaming.py's CodeStream, fed per step through the backend's hook) gets the
    same ids from the fast loop, so a listener hears exactly what stock would stream."""
    def run() -> tuple[list[tuple[int, np.ndarray]], np.ndarray]:
        chunks: list[tuple[int, np.ndarray]] = []
        audio, _ = backend.generate(["stream me", "and me too please"], 3.0, 1.0, 250, 0.0, 3.0, 9,
                                    lambda s, t: None, on_audio=lambda off, a: chunks.append((off, np.array(a))))
        return chunks, audio

    (_, (c_stock, a_stock)), (_, (c_fast, a_fast)) = _both(backend, run, tap)
    assert len(c_stock) > 1 and len(c_stock) == len(c_fast)
    for (o1, x1), (o2, x2) in zip(c_stock, c_fast):
        assert o1 == o2 and np.array_equal(x1, x2)
    assert np.array_equal(a_stock, a_fast)
