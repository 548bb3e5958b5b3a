"""Streaming preview for MusicGen: audio of the first seconds while the rest is generated.

MusicGen samples 4 codebooks per step in a delay pattern (codebook k lags k steps), so
frame f is final once step f + K has run. EnCodec's decoder is not causal, so decoding a
growing prefix again and again costs O(n^2). Instead, each chunk decodes a fixed span:
`context` already-emitted frames on the left (the decoder's LSTM and convolutions warm up
on them), the new frames, and `holdback` frames on the right that are decoded but not yet
sent (the convolutions near the right edge see padding, not music). The next chunk
crossfades into that held-back audio over a short seam. At the end of each generation
window the rest comes from the window's own full decode, so once a job ends the stream
matches the final audio except inside the seams.

The interface the decode loops call (stock `generate` through a logits processor, and the
fast loop) is `CodeStream`:

    stream.begin_window(base, prompt_codes)   # before a window's first step
    stream.on_ids(ids)                        # each step: delayed-pattern ids seen so far
    stream.on_frames(frames)                  # or: newly final frames, undelayed [B, K, n]
    stream.end_window(window_audio, last)     # the window's full decode, once it is made

`on_ids` and `on_frames` are two doors to the same thing; a loop that keeps its own
undelayed buffer calls `on_frames`. Everything runs in the worker's generating thread.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

__all__ = ["Assembler", "CodeStream", "EmitCb", "MusicgenCodec", "StreamSettings"]

#: emit(offset, audio): float32 [batch, channels, samples] starting at sample `offset` of the clip.
EmitCb = Callable[[int, np.ndarray], None]


class StreamSettings:
    """Chunk sizes in codec frames (MusicGen: 50 per second). The first chunk is small, so the
    first audio comes early; later ones are larger, so the left context is decoded less often."""

    def __init__(self, first: int = 10, chunk: int = 50, context: int = 50, holdback: int = 5,
                 seam: int = 320) -> None:
        self.first = first  # new frames in the first chunk of a window
        self.chunk = chunk  # new frames in each later chunk
        self.context = context  # already-decoded frames re-decoded on the left
        self.holdback = holdback  # frames decoded on the right but not sent yet
        self.seam = seam  # crossfade between chunks, in samples


class Assembler:
    """Joins overlapping decoded pieces into one emitted stream, in clip sample coordinates.

    It holds the last samples it has (`pending`) back; the next piece starts where they start,
    its first `fade` samples are crossfaded with them and the rest of the piece replaces them.
    With `pending` = the end of a finished window and `fade` = the join's crossfade, this is
    exactly what backend.join_windows does, so the stream stays equal to the final audio
    across window joins."""

    def __init__(self, emit: EmitCb) -> None:
        self.emit = emit
        self.emitted = 0  # samples sent; pending starts here
        self.pending: np.ndarray | None = None

    @property
    def made(self) -> int:
        """Samples known so far, sent or held back."""
        return self.emitted + (0 if self.pending is None else self.pending.shape[-1])

    def put(self, start: int, audio: np.ndarray, keep: int, fade: int) -> None:
        """`audio` covers [start, start + n); emit all of it but the last `keep` samples."""
        if start > self.emitted:
            raise ValueError(f"a gap in the stream: piece at {start}, stream at {self.emitted}")
        audio = audio[..., self.emitted - start:]
        pending = self.pending
        if pending is not None and pending.shape[-1]:
            n = min(fade, pending.shape[-1], audio.shape[-1])
            if n > 0:
                ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
                head = pending[..., :n] * (1.0 - ramp) + audio[..., :n] * ramp
                audio = np.concatenate([head, audio[..., n:]], axis=-1)
            if audio.shape[-1] < pending.shape[-1]:  # a short piece: the rest of pending stays as it was
                audio = np.concatenate([audio, pending[..., audio.shape[-1]:]], axis=-1)
        keep = max(0, min(keep, audio.shape[-1]))
        out, self.pending = audio[..., :audio.shape[-1] - keep], audio[..., audio.shape[-1] - keep:]
        if out.shape[-1]:
            self.emit(self.emitted, np.ascontiguousarray(out, dtype=np.float32))
            self.emitted += out.shape[-1]

    def flush(self) -> None:
        """Send what is held back (the end of the clip)."""
        if self.pending is not None and self.pending.shape[-1]:
            self.put(self.emitted, self.pending, 0, 0)
        self.pending = None


class MusicgenCodec:
    """EnCodec decode (and encode, for a continuation's prompt) of a transformers MusicGen."""

    def __init__(self, model: Any) -> None:
        self.model = model
        cfg = model.config
        self.channels = int(getattr(cfg.decoder, "audio_channels", 1) or 1)
        self.num_codebooks = int(cfg.decoder.num_codebooks)
        self.sample_rate = int(cfg.audio_encoder.sampling_rate)
        self.hop = int(round(self.sample_rate / float(cfg.audio_encoder.frame_rate)))
        # Row r of the delayed ids lags r steps (mono) or r // 2 steps (stereo: left/right interleaved).
        self.delays = [r // self.channels for r in range(self.num_codebooks)]

    def decode(self, codes: Any) -> np.ndarray:
        """Codes [B, K, n] -> float32 [B, channels, n * hop]."""
        import torch

        with torch.no_grad():
            enc = self.model.audio_encoder
            scales = [None] * codes.shape[0]
            if self.channels == 1:
                audio = enc.decode(codes[None], audio_scales=scales).audio_values
            else:
                left = enc.decode(codes[None, :, ::2], audio_scales=scales).audio_values
                right = enc.decode(codes[None, :, 1::2], audio_scales=scales).audio_values
                audio = torch.cat([left, right], dim=1)
        out = audio.detach().to(torch.float32).cpu().numpy()
        return out[:, None, :] if out.ndim == 2 else out

    def encode(self, input_values: Any, padding_mask: Any = None) -> Any:
        """A continuation's audio prompt -> its codes [B, K, L], as generate encodes it (mono only)."""
        import torch

        with torch.no_grad():
            kwargs = {"padding_mask": padding_mask} if padding_mask is not None else {}
            out = self.model.audio_encoder.encode(input_values=input_values, return_dict=True, **kwargs)
        return out.audio_codes[0]


class CodeStream:
    """Turns codes made step by step into emitted audio chunks (see the module docstring)."""

    def __init__(self, codec: MusicgenCodec, emit: EmitCb, settings: StreamSettings | None = None,
                 join_fade: int = 0) -> None:
        self.codec = codec
        self.s = settings or StreamSettings()
        self.asm = Assembler(emit)
        self.hop = codec.hop
        self.join_fade = join_fade  # backend.join_windows' crossfade, in samples
        self._frames: Any = None  # torch [B, K, n] undelayed, this window
        self._base = 0  # clip sample of this window's frame 0
        self._cursor = 0  # window frames whose audio is in the assembler (sent or pending)
        self._prompt = 0  # frames of the window that came as its prompt
        self._fade = 0  # crossfade of the window's next piece
        self.first_chunk_at: float | None = None  # perf_counter of the first emitted chunk
        self.decode_seconds = 0.0

    def begin_window(self, base: int, prompt_codes: Any = None) -> None:
        """A window starts at clip sample `base`; `prompt_codes` [B, K, L] are its prompt frames
        (a continuation re-encodes the tail of what is made; None from nothing)."""
        self._frames = prompt_codes
        self._base = base
        self._prompt = 0 if prompt_codes is None else int(prompt_codes.shape[-1])
        self._cursor = self._prompt
        self._fade = self.join_fade if self._prompt else self.s.seam

    def on_ids(self, ids: Any) -> None:
        """`ids` [B * K, t]: the delayed-pattern ids so far (position 0 is the start token)."""
        k = self.codec.num_codebooks
        ids = ids.reshape(-1, k, ids.shape[-1])
        t = ids.shape[-1]
        have = 0 if self._frames is None else int(self._frames.shape[-1])
        final = t - 1 - max(self.codec.delays)  # frame f of row r sits at position f + delay(r) + 1
        if final <= have:
            return
        import torch

        rows = [ids[:, r, have + d + 1:final + d + 1] for r, d in enumerate(self.codec.delays)]
        self.on_frames(torch.stack(rows, dim=1))

    def on_frames(self, frames: Any) -> None:
        """Newly final frames [B, K, n], in order; decodes a chunk when enough have come."""
        import torch

        self._frames = frames if self._frames is None else torch.cat([self._frames, frames], dim=-1)
        while True:
            size = self.s.first if self._cursor == self._prompt else self.s.chunk
            if self._frames.shape[-1] < self._cursor + size + self.s.holdback:
                return
            self._decode(self._cursor + size)

    def _decode(self, upto: int) -> None:
        """Decode frames up to `upto` (+ holdback), with left context; send up to `upto` less the seam."""
        hi = min(self._frames.shape[-1], upto + self.s.holdback)
        first_needed = (self.asm.emitted - self._base) // self.hop  # the piece starts where pending starts
        lo = max(0, min(first_needed, self._cursor) - self.s.context)
        t0 = time.perf_counter()
        audio = self.codec.decode(self._frames[..., lo:hi])
        self.decode_seconds += time.perf_counter() - t0
        keep = (hi - upto) * self.hop + self.s.seam
        self.asm.put(self._base + lo * self.hop, audio, keep, self._fade)
        self._fade = self.s.seam
        self._cursor = upto
        if self.first_chunk_at is None and self.asm.emitted:
            self.first_chunk_at = time.perf_counter()

    def end_window(self, window_audio: np.ndarray, last: bool) -> None:
        """The window's full decode [B, C, S] (prompt included): send the rest from it. A window
        that is not the last keeps `join_fade` samples back for the next window's crossfade."""
        self.asm.put(self._base, window_audio, 0 if last else self.join_fade, self._fade)
        if last:
            self.asm.flush()
        if self.first_chunk_at is None and self.asm.emitted:
            self.first_chunk_at = time.perf_counter()
        self._frames = None
