"""MusicGen's sampling settings and the fast decode loop's two samplers (daemon/engine/fast_decode.py).

`Sampling` holds the settings as stock `generate` resolves them from its kwargs. `sample_stock` is
transformers' own processors + `torch.multinomial`, op for op: the parity mode. `sample_counter` is
the lean sampler: the argmax of the candidates' scores plus Gumbel noise `-log(-log(u))`, where `u`
is a counter-based hash of (row key, step column, token id). That is a draw from the softmax over the
candidates (stock's distribution; tests/engine/test_counter_sampler.py checks it with chi-square
tests) from one fused kernel, and a pure function of its inputs: the same on any device and however
many steps a compiled call runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: Samplers: "stock" = stock generate's draws (parity), "counter" = Gumbel-max on a counter-based hash (lean).
SAMPLERS = ("stock", "counter")
_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Sampling:
    """The sampling settings exactly as stock `generate` resolves them from its kwargs."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    guidance: float | None = None

    @classmethod
    def from_kwargs(cls, model: Any, kw: dict[str, Any]) -> "Sampling":
        """Resolve like `generate`: a kwarg left at None falls back to the model's generation_config."""
        gc = model.generation_config

        def pick(name: str) -> Any:
            v = kw.get(name)
            return getattr(gc, name, None) if v is None and name not in kw else v

        g = pick("guidance_scale")
        return cls(do_sample=bool(pick("do_sample")), temperature=float(pick("temperature") or 1.0),
                   top_k=int(pick("top_k") or 0), top_p=float(1.0 if pick("top_p") is None else pick("top_p")),
                   guidance=float(g) if g is not None and g > 1 else None)

    @property
    def cfg(self) -> bool:
        return self.guidance is not None



def sample_stock(scores: torch.Tensor, s: Sampling, top_p_floor: torch.Tensor) -> torch.Tensor:
    """transformers' TopK and TopP warpers, softmax and `torch.multinomial`, op for op on the global
    generator: with fp32 on the CPU the same codes as stock `generate` (`top_p_floor` = 1 - top_p, a
    tensor so a compiled step does not bake it in)."""
    if s.do_sample and s.top_k:
        # The k-th largest value, as TopKLogitsWarper takes it from topk (kthvalue: the same element, cheaper).
        kth = torch.kthvalue(scores, scores.shape[-1] - min(s.top_k, scores.shape[-1]) + 1, dim=-1, keepdim=True)[0]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if s.do_sample and s.top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= top_p_floor
        remove[..., -1:] = 0
        remove = remove.scatter(1, sorted_idx, remove)
        scores = scores.masked_fill(remove, -float("inf"))
    if not s.do_sample:
        return torch.argmax(scores, dim=-1)
    probs = nn.functional.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1).squeeze(1)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two multiply-xorshift rounds) in int64 tensor ops that never overflow."""
    x = x & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def counter_uniform(keys: torch.Tensor, counter: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """A uniform in (0, 1) per (row key, step counter, token id): a pure function of the three, 23 bits
    (so that k + 1/2 is exact in float32 and 1 is never reached: -log(-log(1)) would be +inf).

    keys [R], counter [1], tokens [R, n] -> [R, n]. Keyed by token id, not by position, so the draw
    of a token does not depend on the order a top-k kernel returns candidates in."""
    row = mix32(keys + mix32(counter))[:, None]
    return bits_to_uniform(mix32(row + tokens))


def bits_to_uniform(x: torch.Tensor) -> torch.Tensor:
    """32-bit hashes -> float32 uniforms on the open interval (0, 1), from their top 23 bits."""
    return ((x >> 9).to(torch.float32) + 0.5) * (1.0 / (1 << 23))


def sample_counter(scores: torch.Tensor, keys: torch.Tensor, counter: torch.Tensor, top_k: int,
                   top_p: float) -> torch.Tensor:
    """One code per row by the Gumbel-max trick: argmax(score + Gumbel noise) over the candidates is a
    draw from softmax(score) over them, with no normalisation, cumulative sum or search.

    Candidates are the top-k (unordered), or for top-p the sorted vocabulary cut where stock's
    TopPLogitsWarper cuts it (after top-k if both), or the whole vocabulary."""
    vocab = scores.shape[-1]
    if top_p < 1.0:  # TopK then TopPLogitsWarper's own arithmetic (ascending cumsum), so the cut is stock's
        vals, idx = torch.sort(scores, dim=-1, descending=False)
        if top_k:
            vals = vals.masked_fill(torch.arange(vocab, device=vals.device) < vocab - min(top_k, vocab), -float("inf"))
        remove = vals.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
        remove[..., -1:] = False  # the likeliest always stays
        vals = vals.masked_fill(remove, -float("inf"))
    elif top_k and top_k < vocab:
        vals, idx = torch.topk(scores, top_k, dim=-1, sorted=False)
    else:
        vals, idx = scores, torch.arange(vocab, device=scores.device).expand_as(scores)
    gumbel = -torch.log(-torch.log(counter_uniform(keys, counter, idx)))
    j = torch.argmax(vals + gumbel, dim=-1, keepdim=True)
    return idx.gather(1, j).squeeze(1)
