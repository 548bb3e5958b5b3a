"""MusicGen's decode loop written on the model's own weights: static KV buffers, no host syncs.

transformers' `generate` for MusicGen grows a dynamic cache, rebuilds masks, walks a Python
logits-processor chain and calls `torch.multinomial` per step; on a GPU a 300M-parameter step is
launch-bound, so most of a step is that overhead. This loop keeps transformers for loading, the
T5 / chroma conditioning, the prefill (one forward over the prompt, through the stock modules) and
the EnCodec decode, and replaces only the per-step part:

* self-attention K/V live in buffers allocated for the whole window; cross-attention K/V are
  taken from the prefill once per job;
* CFG, temperature, top-k, top-p and sampling are tensor ops (no `.item()`, no data-dependent
  Python branches); with `sampler="stock"` they are the same ops, in the same order, on the same
  random generator as transformers' `_sample` + logits processors, so with fp32 on the CPU the
  codes equal stock `generate`'s for the same seed (tests/engine/test_fast_decode.py);
* `compile=True`: the step (embeddings, layers, heads, sampling, delay pattern, position
  counters) is one `torch.compile(fullgraph=True)` graph over fixed shapes (the position is a
  device tensor, attention runs over the whole buffer with a mask), so a clip never recompiles;
  on CUDA that graph is also captured in a CUDA graph per batch bucket and replayed per step.

Two samplers. `sampler="stock"` draws exactly as stock does (`torch.multinomial` on the global
generator): the parity mode. `sampler="counter"` (the lean one) takes the argmax of the top-k (or
top-p) scores plus Gumbel noise made by a counter-based hash of (the row's key, the step's column,
the token): the same distribution as softmax + multinomial (tests/engine/test_counter_sampler.py
checks it with chi-square tests) from one fused kernel instead of 8,192 exponentials and a search per
step. A draw is a pure function of (key, column, token), so it is the same on any device and however
many steps a call runs: the compiled CPU loop runs `UNROLL` steps per call (the host's per-call cost
paid once for several steps) and the hooks see each of those steps afterwards. The lean loop also
runs the codebook heads as one batched matmul and, compiled on the CPU, attends with plain matmuls.

Per-step hooks (`LogitsProcessor`-like callables, e.g. the backend's progress/cancel hook or a
streamer) are called once per step with the same data stock `generate` gives its processors:
the ids so far `[batch*codebooks, length]` and the raw float32 logits `[rows, vocab]`; they
observe (their return value is ignored) and may raise to abort.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from dgx_music.daemon.engine.sampling import SAMPLERS, Sampling, mix32, sample_counter, sample_stock

__all__ = ["FastDecoder", "Sampling", "SAMPLERS", "self_check", "logits_close"]

log = logging.getLogger(__name__)

Hook = Callable[[torch.Tensor, torch.Tensor], Any]

#: Positions of the longest window: 30 s at 50 frames/s, + 3 delay steps + the start token.
LONGEST_WINDOW = 1504
#: Static shapes are rounded up to these quanta so few graphs cover all jobs.
CAPACITY_QUANTUM = 256
ENCODER_QUANTUM = 64
#: Decode steps the host may run ahead of the GPU.
PACE = 4
#: Steps per compiled call with the counter sampler on the CPU (a CUDA graph replay is already one call).
#: Tiny model, CPU: 4 steps cost 50 s of cold compile; 8 steps twice that for 2% less per step.
UNROLL = 4
#: Inductor options for the step: its inputs are our own fixed buffers, so the per-call size checks
#: are dead weight (on a tiny step they are a tenth of its host time).
INDUCTOR_OPTIONS: dict[str, Any] = {"size_asserts": False}
#: On the CPU the graph's kernels are called from generated C++, not Python (tiny model: 0.22 -> 0.19 ms/step).
CPU_INDUCTOR_OPTIONS: dict[str, Any] = {"cpp_wrapper": True}
#: CUDA graph batch buckets (rows before CFG doubling); a batch is padded up to the next one.
BATCH_BUCKETS = (1, 2, 4, 8, 16)


def _round_up(n: int, q: int) -> int:
    return max(q, -(-n // q) * q)


class _State(nn.Module):
    """Everything one decode step reads or writes, as buffers with fixed addresses (CUDA graphs)."""

    def __init__(self, *, layers: int, rows: int, heads: int, head_dim: int, capacity: int, enc_len: int,
                 cross: bool, codebooks: int, batch: int, vocab: int, dtype: torch.dtype,
                 device: torch.device, unroll: int = 1) -> None:
        super().__init__()
        # One buffer per layer, not a [layers, ...] stack: a compiled step writes a graph input in place
        # only when it is the whole input; writing into a slice of a stack copies the whole stack.
        kv = (rows, heads, capacity, head_dim)
        ck = (rows, heads, enc_len if cross else 1, head_dim)
        self.k, self.v, self.ck, self.cv = [], [], [], []
        for name, shape in (("k", kv), ("v", kv), ("ck", ck), ("cv", ck)):
            for i in range(layers):
                t = torch.zeros(shape, dtype=dtype, device=device)
                self.register_buffer(f"{name}{i}", t)
                getattr(self, name).append(t)
        self.register_buffer("enc_mask", torch.zeros((rows, 1, 1, ck[2]), dtype=torch.bool, device=device))
        self.register_buffer("tok", torch.zeros((rows, codebooks), dtype=torch.long, device=device))
        # Codes made so far (columns = token positions) and the delay pattern, both [batch*K, capacity].
        self.register_buffer("ids", torch.zeros((batch * codebooks, capacity), dtype=torch.long, device=device))
        self.register_buffer("pattern", torch.zeros((batch * codebooks, capacity), dtype=torch.long, device=device))
        self.register_buffer("pos", torch.zeros((1,), dtype=torch.long, device=device))   # KV position fed next
        self.register_buffer("col", torch.zeros((1,), dtype=torch.long, device=device))   # its column in `ids`
        # The raw logits of each step of one call (UNROLL with the counter sampler, else 1), for the hooks.
        self.register_buffer("ring", torch.zeros((unroll, rows * codebooks, vocab), dtype=torch.float32, device=device))
        # The counter sampler's key per decoded row (batch * codebooks), drawn per window from the seed.
        self.register_buffer("keys", torch.zeros((batch * codebooks,), dtype=torch.long, device=device))
        self.register_buffer("temperature", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("guidance", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("top_p_floor", torch.zeros((), dtype=torch.float32, device=device))
        self.shape_key = (layers, rows, heads, head_dim, capacity, ck[2], cross, codebooks, batch, vocab, unroll)


class FastDecoder:
    """The decode loop for one loaded `MusicgenForConditionalGeneration` / `...Melody...`.

    `compile`: None = on CUDA only. `cuda_graphs`: None = with `compile` on CUDA.
    `exact=True` (the default when not compiling) attends over exactly the positions made so far,
    like the stock cache, which keeps fp32 CPU results bit-identical to stock `generate` with
    `sampler="stock"`. `sampler="counter"` is the lean sampler (see the module docstring)."""

    def __init__(self, model: Any, *, compile: bool | None = None, cuda_graphs: bool | None = None,
                 sampler: str = "counter") -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}: use {', '.join(SAMPLERS)}")
        self.sampler = sampler
        self.model = model.eval()
        dec = model.decoder
        self.melody = getattr(model.config, "model_type", "") == "musicgen_melody"
        self.layers = list(dec.model.decoder.layers)
        self.cross = hasattr(self.layers[0], "encoder_attn") and not self.melody
        self.embed = list(dec.model.decoder.embed_tokens)
        self.pos_weights_module = dec.model.decoder.embed_positions
        self.final_norm = dec.model.decoder.layer_norm
        self.heads_out = list(dec.lm_heads)
        self.codebooks = int(dec.num_codebooks)
        attn = self.layers[0].self_attn
        self.n_heads, self.head_dim, self.scaling = attn.num_heads, attn.head_dim, attn.scaling
        self.act = self.layers[0].activation_fn
        self.vocab = int(self.heads_out[0].out_features)
        self.device = next(model.parameters()).device
        self.dtype = next(dec.parameters()).dtype
        on_cuda = self.device.type == "cuda"
        self.compile = on_cuda if compile is None else bool(compile)
        self.cuda_graphs = (self.compile and on_cuda) if cuda_graphs is None else bool(cuda_graphs and on_cuda)
        self.exact = not self.compile
        # Steps per call: several only where draws do not depend on how many steps were run (counter),
        # and on the CPU, where each call pays the host's wrapper cost (on CUDA a graph replay is one call).
        self.unroll = UNROLL if (self.compile and sampler == "counter" and not self.cuda_graphs) else 1
        # The lean sampler need not reproduce stock's arithmetic op for op: the codebook heads run as
        # one batched matmul over a stacked copy of their weights ([K, D, V], a few MB to tens of MB).
        self.head_stack: torch.Tensor | None = None
        if sampler == "counter":
            self.head_stack = torch.stack([hd.weight.detach().t() for hd in self.heads_out]).contiguous()
        # ... and the compiled CPU loop attends with plain matmuls (CUDA keeps SDPA's fused kernels).
        self.matmul_attention = sampler == "counter" and self.compile and self.device.type == "cpu"
        self._compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._graphs: dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, _State]] = {}
        self._states: dict[tuple[Any, ...], _State] = {}
        if self.compile and self.device.type == "cpu":
            import torch._inductor.config as inductor_config

            # Random ops through the eager kernels: the compiled sampler then draws from the same
            # generator stream as stock generate (exact parity on the CPU).
            inductor_config.fallback_random = True

    # ------------------------------------------------------------------ conditioning + prefill

    def _prepare(self, inputs: dict[str, Any], steps: int, s: Sampling) -> dict[str, Any]:
        """Text/audio conditioning, decoder prompt and delay pattern, exactly as stock generate builds them."""
        m = self.model
        gc = m.generation_config
        kwargs = {k: v for k, v in inputs.items() if k != "input_ids"}
        input_ids = inputs["input_ids"]
        batch = input_ids.shape[0]
        gconf = copy.deepcopy(gc)
        gconf.guidance_scale = s.guidance
        gconf.output_attentions = False
        gconf.output_hidden_states = False
        if self.melody:
            kw = m._prepare_encoder_hidden_states_kwargs_for_generation(input_ids, dict(kwargs), "input_ids", gconf)
            enc, enc_mask = kw["encoder_hidden_states"], None
        else:
            kw = m._prepare_text_encoder_kwargs_for_generation(input_ids, dict(kwargs), "input_ids", gconf)
            enc = kw["encoder_outputs"].last_hidden_state
            enc_mask = kw.get("attention_mask")
            if "input_values" in kw:
                kw = m._prepare_audio_encoder_kwargs_for_generation(kw["input_values"], kw)
            # What MusicgenForConditionalGeneration.forward does to encoder outputs before the decoder.
            if (m.text_encoder.config.hidden_size != m.decoder.config.hidden_size
                    and m.decoder.config.cross_attention_hidden_size is None):
                enc = m.enc_to_dec_proj(enc)
            if enc_mask is not None:
                enc = enc * enc_mask[..., None]
        start = gc.decoder_start_token_id if gc.decoder_start_token_id is not None else gc.bos_token_id
        ids, kw = m._prepare_decoder_input_ids_for_generation(batch_size=batch, model_input_name="input_ids",
                                                             model_kwargs=kw, decoder_start_token_id=start,
                                                             bos_token_id=gc.bos_token_id, device=input_ids.device)
        max_length = ids.shape[-1] + steps
        prefix, pattern = m.decoder.build_delay_pattern_mask(ids, pad_token_id=start, max_length=max_length)
        return {"enc": enc, "enc_mask": enc_mask, "prefix": prefix, "pattern": pattern, "batch": batch,
                "max_length": max_length, "audio_scales": kw.get("audio_scales"), "pad": gc.pad_token_id}

    def _prefill(self, p: dict[str, Any], s: Sampling) -> tuple[torch.Tensor, Any]:
        """One forward over the (delay-masked) prompt through the stock decoder: logits + its cache."""
        m = self.model
        ids = m.decoder.apply_delay_pattern_mask(p["prefix"], p["pattern"])
        if s.cfg:
            ids = ids.repeat((2, 1))
        if self.melody:
            out = m.decoder(input_ids=ids, encoder_hidden_states=p["enc"], use_cache=True)
        else:
            out = m.decoder(input_ids=ids, encoder_hidden_states=p["enc"], encoder_attention_mask=p["enc_mask"],
                            use_cache=True)
        return out.logits[:, -1].to(copy=True, dtype=torch.float32), out.cache

    # ------------------------------------------------------------------ the step

    def _self_mask(self, st: _State) -> torch.Tensor:
        cap = st.k[0].shape[2]
        return (torch.arange(cap, device=st.pos.device) <= st.pos).view(1, 1, 1, cap)

    def _forward_one(self, st: _State, exact_len: int | None) -> torch.Tensor:
        """Decoder forward for the one position `st.pos` with input tokens `st.tok`: [rows*K, V] fp32."""
        tok = st.tok
        rows = tok.shape[0]
        h: Any = 0
        for k in range(self.codebooks):  # the stock order: sum() starts from 0
            h = h + self.embed[k](tok[:, k:k + 1])
        h = h + self.pos_weights_module.weights.index_select(0, st.pos)
        mask = None if exact_len is not None else self._self_mask(st)
        shape = (rows, 1, self.n_heads, self.head_dim)
        for i, layer in enumerate(self.layers):
            res = h
            x = layer.self_attn_layer_norm(h)
            sa = layer.self_attn
            q = sa.q_proj(x).view(shape).transpose(1, 2)
            st.k[i].index_copy_(2, st.pos, sa.k_proj(x).view(shape).transpose(1, 2))
            st.v[i].index_copy_(2, st.pos, sa.v_proj(x).view(shape).transpose(1, 2))
            if exact_len is not None:
                kk, vv = st.k[i][:, :, :exact_len], st.v[i][:, :, :exact_len]
            else:
                kk, vv = st.k[i], st.v[i]
            h = res + sa.out_proj(self._attend(q, kk, vv, mask, sa.scaling, rows, exact_len is not None))
            if self.cross:
                res = h
                x = layer.encoder_attn_layer_norm(h)
                ca = layer.encoder_attn
                q = ca.q_proj(x).view(shape).transpose(1, 2)
                h = res + ca.out_proj(self._attend(q, st.ck[i], st.cv[i], st.enc_mask, ca.scaling, rows,
                                                   exact_len is not None))
            res = h
            x = layer.final_layer_norm(h)
            h = res + layer.fc2(self.act(layer.fc1(x)))
        h = self.final_norm(h)
        if self.head_stack is not None:  # lean: the K heads as one batched matmul
            logits = torch.bmm(h.view(1, rows, -1).expand(self.codebooks, rows, h.shape[-1]), self.head_stack)
            return logits.transpose(0, 1).reshape(rows * self.codebooks, -1).to(dtype=torch.float32)
        logits = torch.stack([head(h) for head in self.heads_out], dim=1)  # [rows, K, 1, V]
        return logits.reshape(-1, 1, logits.shape[-1])[:, -1].to(dtype=torch.float32)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float,
                rows: int, exact: bool = False) -> torch.Tensor:
        """One query position's attention: transformers' sdpa_attention_forward op for op, or (lean
        compiled CPU loop) the same math as plain matmuls and a float32 softmax, which inductor fuses:
        the CPU flash-attention kernel costs more than the whole rest of a small step."""
        if self.matmul_attention and not exact:
            w = torch.matmul(q, k.transpose(-1, -2)).float() * scale
            if mask is not None:
                w = w.masked_fill(~mask, -float("inf"))
            p = w.softmax(dim=-1)
            if mask is not None:  # a fully masked row (CFG's unconditional text) attends to nothing: 0, as SDPA
                p = p.masked_fill(~mask, 0.0)
            out = torch.matmul(p.to(v.dtype), v)
            return out.transpose(1, 2).reshape(rows, 1, -1)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0,
                                                               scale=scale, is_causal=False)
        out = out.reshape(out.shape[0], -1, 1, v.shape[-1]).transpose(1, 2).contiguous()
        return out.reshape(rows, 1, -1).contiguous()

    def _sample(self, st: _State, logits: torch.Tensor, s: Sampling) -> torch.Tensor:
        """CFG and temperature as transformers' processors apply them, then the configured sampler: [B*K] codes."""
        scores = logits
        if s.cfg:
            cond, uncond = scores.split(scores.shape[0] // 2, dim=0)
            scores = uncond + (cond - uncond) * st.guidance
        if s.do_sample and s.temperature != 1.0:
            scores = scores / st.temperature
        if s.do_sample and self.sampler == "counter":
            return sample_counter(scores, st.keys, st.col + 1, s.top_k, s.top_p)
        return sample_stock(scores, s, st.top_p_floor)

    def _advance(self, st: _State, nxt: torch.Tensor, cfg: bool) -> None:
        """Write the sampled codes at column col+1, build the next input (delay pattern applied), move on."""
        col1 = st.col + 1
        st.ids.index_copy_(1, col1, nxt[:, None])
        m = st.pattern.index_select(1, col1).squeeze(1)
        tok = torch.where(m == -1, nxt, m).view(-1, self.codebooks)
        st.tok.copy_(torch.cat([tok, tok], dim=0) if cfg else tok)
        st.pos.add_(1)
        st.col.add_(1)

    def _step(self, st: _State, s: Sampling, exact_len: int | None = None, slot: int = 0) -> None:
        logits = self._forward_one(st, exact_len)
        st.ring[slot].copy_(logits)
        self._advance(st, self._sample(st, logits, s), s.cfg)

    def _steps(self, st: _State, s: Sampling, n: int) -> None:
        """`n` steps in one call (one compiled graph): the raw logits of step i land in `st.ring[i]`."""
        for i in range(n):
            self._step(st, s, slot=i)

    # ------------------------------------------------------------------ driver

    def _state(self, p: dict[str, Any], s: Sampling, rows: int, prefill_len: int) -> _State:
        # conditioning prefix (melody) + window + the steps an unrolled call may run past the window's end
        need = prefill_len - p["prefix"].shape[-1] + p["max_length"] + self.unroll
        if self.exact:
            capacity, enc_len = _round_up(need, CAPACITY_QUANTUM), (p["enc"].shape[1] if self.cross else 1)
        else:
            capacity = _round_up(max(need, LONGEST_WINDOW), CAPACITY_QUANTUM)
            enc_len = _round_up(p["enc"].shape[1], ENCODER_QUANTUM) if self.cross else 1
        key = (rows, capacity, enc_len, p["batch"])
        st = self._states.get(key)
        if st is None:
            st = _State(layers=len(self.layers), rows=rows, heads=self.n_heads, head_dim=self.head_dim,
                        capacity=capacity, enc_len=enc_len, cross=self.cross, codebooks=self.codebooks,
                        batch=p["batch"], vocab=self.vocab, dtype=self.dtype, device=self.device,
                        unroll=self.unroll)
            # The last two sets of buffers stay (a compiled one and the eager one the load check uses).
            self._states = {**dict(list(self._states.items())[-1:]), key: st}
        return st

    @torch.no_grad()
    def generate(self, inputs: dict[str, Any], max_new_tokens: int, sampling: Sampling,
                 hooks: Sequence[Hook] = ()) -> torch.Tensor:
        """Like `model.generate(**inputs, max_new_tokens=..., <sampling>)`: audio [B, C, N]."""
        codes, p = self.generate_codes(inputs, max_new_tokens, sampling, hooks)
        return self.decode_audio(codes, p)

    @torch.no_grad()
    def generate_codes(self, inputs: dict[str, Any], max_new_tokens: int, sampling: Sampling,
                       hooks: Sequence[Hook] = ()) -> tuple[torch.Tensor, dict[str, Any]]:
        """The un-delayed codes [B, K, frames] (what stock hands EnCodec) and the job's prepared inputs."""
        s = sampling
        batch = int(inputs["input_ids"].shape[0])
        if self.cuda_graphs:  # one CUDA graph per batch bucket: pad with copies of the last prompt
            bucket = next((b for b in BATCH_BUCKETS if b >= batch), batch)
            inputs = {k: _pad_rows(v, batch, bucket) for k, v in inputs.items()}
        p = self._prepare(inputs, max_new_tokens, s)
        logits0, cache = self._prefill(p, s)
        prefix = p["prefix"]
        rows = logits0.shape[0] // self.codebooks
        self_cache = getattr(cache, "self_attention_cache", cache)
        prefill_len = int(self_cache.layers[0].keys.shape[2])
        st = self._state(p, s, rows, prefill_len)
        self._load_state(st, p, s, cache, prefill_len)
        st.col.fill_(prefix.shape[1] - 1)
        st.pos.fill_(prefill_len - 1)
        # First sample from the prefill's logits (stock: the first loop iteration).
        for hook in hooks:
            hook(*self._hook_view(st, prefix.shape[1], batch, s.cfg, logits0))
        self._advance(st, self._sample(st, logits0, s), s.cfg)
        run = self._runner(st, s)
        length = prefix.shape[1] + 1
        kv_len = prefill_len + 1
        # On CUDA the loop would run ahead of the GPU (replays are asynchronous): keep at most PACE calls
        # in flight, so progress and cancel follow the GPU, without a sync per step.
        pace: list[Any] = []
        while length < p["max_length"]:
            run(kv_len)
            if self.device.type == "cuda":
                ev = torch.cuda.Event()
                ev.record()
                pace.append(ev)
                if len(pace) > PACE:
                    pace.pop(0).synchronize()
            for i in range(self.unroll):  # steps past the window's end are made but never shown or kept
                if length >= p["max_length"]:
                    break
                for hook in hooks:
                    hook(*self._hook_view(st, length, batch, s.cfg, st.ring[i]))
                length += 1
                kv_len += 1
        n = p["max_length"]
        out = self.model.decoder.apply_delay_pattern_mask(st.ids[:, :n], st.pattern[:, :n])
        out = out[out != p["pad"]].reshape(p["batch"], self.codebooks, -1)
        if p["batch"] != batch:
            out, p = out[:batch], {**p, "batch": batch, "audio_scales": _unpad(p.get("audio_scales"), batch)}
        return out, p

    def _hook_view(self, st: _State, length: int, batch: int, cfg: bool,
                   logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What stock hands its processors: ids [batch*K, length] and logits; the rows of a CUDA
        batch bucket's padding are left out."""
        n = batch * self.codebooks
        if st.ids.shape[0] == n:
            return st.ids[:, :length], logits
        half = logits.shape[0] // 2
        rows = torch.cat([logits[:n], logits[half:half + n]]) if cfg else logits[:n]
        return st.ids[:n, :length], rows

    def decode_audio(self, codes: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
        """EnCodec decode, as stock generate ends."""
        m = self.model
        scales = p.get("audio_scales")
        if scales is None:
            scales = [None] * p["batch"]
        codes = codes[None, ...]
        if int(getattr(m.decoder.config, "audio_channels", 1)) == 1:
            return m.audio_encoder.decode(codes, audio_scales=scales).audio_values
        left = m.audio_encoder.decode(codes[:, :, ::2, :], audio_scales=scales).audio_values
        right = m.audio_encoder.decode(codes[:, :, 1::2, :], audio_scales=scales).audio_values
        return torch.cat([left, right], dim=1)

    def _load_state(self, st: _State, p: dict[str, Any], s: Sampling, cache: Any, prefill_len: int) -> None:
        """Copy the prefill's K/V into the static buffers; set the sampling scalars."""
        sc = getattr(cache, "self_attention_cache", cache)
        for i in range(len(self.layers)):
            st.k[i].zero_()
            st.v[i].zero_()
            st.k[i][:, :, :prefill_len].copy_(sc.layers[i].keys)
            st.v[i][:, :, :prefill_len].copy_(sc.layers[i].values)
        if self.cross:
            cc = cache.cross_attention_cache
            n = cc.layers[0].keys.shape[2]
            for i in range(len(self.layers)):
                st.ck[i].zero_()
                st.cv[i].zero_()
                st.ck[i][:, :, :n].copy_(cc.layers[i].keys)
                st.cv[i][:, :, :n].copy_(cc.layers[i].values)
            st.enc_mask.zero_()
            st.enc_mask[..., :n].copy_(self._stock_cross_mask(p, st.tok.shape[0], n))
        st.ids.zero_()
        st.ids[:, :p["prefix"].shape[1]].copy_(p["prefix"])
        st.pattern.fill_(p["pad"])
        st.pattern[:, :p["max_length"]].copy_(p["pattern"])
        if self.sampler == "counter":
            # One key per batch row from the global generator (seeded per job), spread over its codebooks.
            job = torch.randint(0, 1 << 31, (st.keys.shape[0] // self.codebooks, 1), dtype=torch.long)
            st.keys.copy_(mix32(job * self.codebooks + torch.arange(self.codebooks)).flatten())
        st.temperature.fill_(s.temperature)
        st.guidance.fill_(s.guidance if s.cfg else 1.0)
        st.top_p_floor.fill_(1 - s.top_p)

    def _stock_cross_mask(self, p: dict[str, Any], rows: int, n: int) -> torch.Tensor:
        """The boolean cross-attention mask stock builds for a one-position step (all True if unmasked)."""
        from transformers.masking_utils import create_bidirectional_mask

        emb = torch.zeros((rows, 1, 1), dtype=self.dtype, device=self.device)
        mask = create_bidirectional_mask(config=self.model.decoder.config, inputs_embeds=emb,
                                         attention_mask=p["enc_mask"], encoder_hidden_states=p["enc"])
        if mask is None:
            return torch.ones((rows, 1, 1, n), dtype=torch.bool, device=self.device)
        if mask.dtype != torch.bool:
            mask = mask == 0
        return mask.expand(rows, 1, 1, n)

    def _runner(self, st: _State, s: Sampling) -> Callable[[int], None]:
        """The per-call callable (`self.unroll` steps): exact eager, compiled, or a CUDA graph replay."""
        if self.exact:
            return lambda kv_len: self._step(st, s, exact_len=kv_len)
        n = self.unroll
        key = (st.shape_key, s.cfg, s.do_sample, s.temperature != 1.0, s.top_k, s.top_p < 1.0, n)
        fn = self._compiled.get(key)
        if fn is None:
            opts = {**INDUCTOR_OPTIONS, **(CPU_INDUCTOR_OPTIONS if self.device.type == "cpu" else {})}
            fn = torch.compile(self._steps, fullgraph=True, dynamic=False, options=opts)
            self._compiled[key] = fn
        if not self.cuda_graphs:
            return lambda kv_len: fn(st, s, n)
        graph = self._graphs.get(key)
        if graph is None or graph[1] is not st:
            graph = (self._capture(lambda: fn(st, s, n), st), st)
            self._graphs[key] = graph
        g = graph[0]
        return lambda kv_len: g.replay()

    def _capture(self, fn: Callable[[], Any], st: _State) -> "torch.cuda.CUDAGraph":
        """Warm the compiled step up on a side stream and capture it; the state it touched is put back.

        K/V and `ids` writes land at the position the next real step overwrites before reading, so only
        the counters, the next input and the RNG need restoring (a seed gives the same clip whether or
        not this job paid for the capture)."""
        saved = [t.clone() for t in (st.pos, st.col, st.tok, st.ring)]
        rng = torch.cuda.get_rng_state(self.device)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                for t, v in zip((st.pos, st.col, st.tok, st.ring), saved):
                    t.copy_(v)
                fn()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        for t, v in zip((st.pos, st.col, st.tok, st.ring), saved):
            t.copy_(v)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        for t, v in zip((st.pos, st.col, st.tok, st.ring), saved):
            t.copy_(v)
        torch.cuda.set_rng_state(rng, self.device)
        return graph

    # ------------------------------------------------------------------ checks

    @torch.no_grad()
    def teacher_forced_logits(self, inputs: dict[str, Any], tokens: torch.Tensor, sampling: Sampling,
                              *, exact: bool | None = None) -> torch.Tensor:
        """Logits of the fast step for forced input tokens [steps, B*K] after the prompt: [steps, rows*K, V].

        `exact` picks the eager exact step (True) or this decoder's configured step (None)."""
        s = sampling
        p = self._prepare(inputs, tokens.shape[0] + 1, s)
        _, cache = self._prefill(p, s)
        sc = getattr(cache, "self_attention_cache", cache)
        prefill_len = int(sc.layers[0].keys.shape[2])
        was = self.exact
        self.exact = was if exact is None else exact
        try:
            rows = sc.layers[0].keys.shape[0]
            st = self._state(p, s, rows, prefill_len)
            self._load_state(st, p, s, cache, prefill_len)
            # Forcing goes through the delay-pattern buffer: a column whose pattern holds a token feeds
            # that token next, whatever was sampled; so the configured (unrolled, compiled) call is used.
            col0, n = p["prefix"].shape[1], tokens.shape[0]
            st.pos.fill_(prefill_len)
            st.col.fill_(col0)
            t = tokens[0].view(-1, self.codebooks)
            st.tok.copy_(torch.cat([t, t], dim=0) if s.cfg else t)
            st.pattern[:, col0 + 1:col0 + n].copy_(tokens[1:].T)
            run = self._runner(st, s)
            per = 1 if self.exact else self.unroll
            out: list[torch.Tensor] = []
            kv_len = prefill_len + 1
            while len(out) < n:
                run(kv_len)
                out.extend(st.ring[j].clone() for j in range(per))
                kv_len += per
            return torch.stack(out[:n])
        finally:
            self.exact = was


def _pad_rows(v: Any, batch: int, bucket: int) -> Any:
    if bucket == batch or not isinstance(v, torch.Tensor) or v.ndim == 0 or v.shape[0] != batch:
        return v
    return torch.cat([v, v[-1:].expand(bucket - batch, *v.shape[1:])], dim=0)


def _unpad(scales: Any, batch: int) -> Any:
    return scales[:batch] if isinstance(scales, (list, tuple, torch.Tensor)) else scales


#: The compiled step's teacher-forced logits may differ from the eager step's by at most this much
#: (max |difference| over the logits' standard deviation) at load time on CUDA, else stock is used.
SELF_CHECK_BOUND = 0.05


def self_check(fast: FastDecoder, processor: Any, steps: int = 4, bound: float = SELF_CHECK_BOUND) -> tuple[bool, str]:
    """Teacher-force a few steps through the configured (compiled) step and the eager one; compare."""
    try:
        device = fast.device
        inputs = processor(text=["warm analog synth arpeggio"], padding=True, return_tensors="pt").to(device)
        s = Sampling(do_sample=True, temperature=1.0, top_k=250, guidance=3.0)
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, fast.vocab, (steps, fast.codebooks), generator=g).to(device)
        got = fast.teacher_forced_logits(dict(inputs), tokens, s)
        want = fast.teacher_forced_logits(dict(inputs), tokens, s, exact=True)
        ok, rel = logits_close(got, want, bound)
        if not ok:
            return False, (f"compiled step disagrees with eager over {steps} teacher-forced steps: max |diff| "
                           f"{rel:.3g} x std > {bound}")
        return True, f"compiled step matches eager within {rel:.3g} x std"
    except Exception as exc:  # noqa: BLE001 - any failure to compile/capture means: use stock
        return False, f"compiled step failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def logits_close(a: torch.Tensor, b: torch.Tensor, bound: float) -> tuple[bool, float]:
    """Largest absolute logit difference, relative to the logits' spread: (within bound, value)."""
    diff = (a.float() - b.float()).abs().max()
    spread = b.float().std().clamp_min(1e-6)
    rel = float(diff / spread)
    return (math.isfinite(rel) and rel <= bound), rel
