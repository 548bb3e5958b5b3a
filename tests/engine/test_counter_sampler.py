"""The lean sampler of the fast decode loop (sampling.py) draws from the same distribution as stock's softmax + multinomial.

`sample_counter` replaces `torch.multinomial` with the Gumbel-max trick over noise from a
counter-based hash, so it cannot give stock's codes; what it must give is stock's distribution. Each
test draws many codes from fixed logits (across row keys and across steps) and checks them with a
chi-square test against the exact probabilities stock's processors give (top-k, top-p, the whole
vocabulary) and against stock's own draws. The hash is deterministic, so these tests are too: no
flakiness, and `test_the_check_has_power` shows the same check rejects a slightly wrong sampler.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from dgx_music.daemon.engine.sampling import bits_to_uniform, counter_uniform, sample_counter

VOCAB = 2048
#: Reject when a p-value falls below this (each test makes a handful of comparisons).
ALPHA = 1e-3


def _logits(seed: int, spread: float = 3.0) -> torch.Tensor:
    """Logits shaped like a decoder's: a few strong candidates, a long tail."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(VOCAB, generator=g) * spread


def _stock_probs(scores: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """What transformers' TopK/TopP warpers leave, softmaxed: the distribution stock samples from."""
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    s = scores[None].clone()
    if top_k:
        s = TopKLogitsWarper(top_k)(None, s)
    if top_p < 1.0:
        s = TopPLogitsWarper(top_p)(None, s)
    return s.softmax(-1)[0].double().numpy()


def _draws_across_keys(scores: torch.Tensor, n: int, top_k: int, top_p: float, counter: int = 7) -> np.ndarray:
    """n draws at one step, one per row key (what n batch rows or n jobs would draw)."""
    keys = torch.arange(n, dtype=torch.long) * 7919 + 12345
    return sample_counter(scores.expand(n, VOCAB), keys, torch.tensor([counter]), top_k, top_p).numpy()


def _draws_across_steps(scores: torch.Tensor, n: int, top_k: int, top_p: float, key: int = 99) -> np.ndarray:
    """n draws of one row key at successive steps (what one job's codebook draws over a clip)."""
    keys = torch.tensor([key], dtype=torch.long)
    return np.array([int(sample_counter(scores[None], keys, torch.tensor([c]), top_k, top_p)) for c in range(n)])


def _gof_pvalue(draws: np.ndarray, probs: np.ndarray) -> float:
    """Chi-square goodness of fit; categories expected fewer than 5 times are pooled into one."""
    counts = np.bincount(draws, minlength=len(probs)).astype(float)
    expected = probs * len(draws)
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] < 5:  # too little mass to pool on its own: fold it into the last big category
        obs, exp = np.append(obs[:-2], obs[-2:].sum()), np.append(exp[:-2], exp[-2:].sum())
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize("top_k,top_p,n", [(250, 1.0, 40000), (50, 1.0, 20000), (0, 0.9, 20000), (0, 1.0, 40000)])
def test_draws_follow_stock_distribution(top_k: int, top_p: float, n: int) -> None:
    scores = _logits(top_k + int(top_p * 10))
    probs = _stock_probs(scores, top_k, top_p)
    support = set(np.flatnonzero(probs > 0).tolist())
    for draws in (_draws_across_keys(scores, n, top_k, top_p), _draws_across_steps(scores, n // 8, top_k, top_p)):
        assert set(np.unique(draws).tolist()) <= support, "drew a token stock's warpers remove"
        p = _gof_pvalue(draws, probs)
        assert p > ALPHA, f"draws do not follow the stock distribution (chi-square p = {p:.2g})"


def test_same_distribution_as_stock_multinomial() -> None:
    """A two-sample test against stock's own draws (softmax + torch.multinomial) from the same logits."""
    scores = _logits(3)
    top_k = 250
    mine = _draws_across_keys(scores, 30000, top_k, 1.0)
    probs = torch.tensor(_stock_probs(scores, top_k), dtype=torch.float32)
    theirs = torch.multinomial(probs.expand(30000, VOCAB), 1, generator=torch.Generator().manual_seed(0))[:, 0].numpy()
    cats = np.flatnonzero(probs.numpy() * 30000 >= 10)
    table = np.array([[np.sum(d == c) for c in cats] + [np.sum(~np.isin(d, cats))] for d in (mine, theirs)])
    p = float(stats.chi2_contingency(table).pvalue)
    assert p > ALPHA, f"counter draws and multinomial draws differ (p = {p:.2g})"


def test_the_check_has_power() -> None:
    """The goodness-of-fit check above rejects a sampler that is only slightly off (logits 10% too sharp)."""
    scores = _logits(250 + 10)
    draws = _draws_across_keys(scores * 1.1, 40000, 250, 1.0)
    assert _gof_pvalue(draws, _stock_probs(scores, 250)) < ALPHA


def test_uniforms_are_uniform_and_independent() -> None:
    """The hash's uniforms: uniform on (0, 1), and no correlation between neighbouring keys, steps or tokens."""
    keys = torch.arange(512, dtype=torch.long)
    toks = torch.arange(64, dtype=torch.long).expand(512, 64)
    u = torch.stack([counter_uniform(keys, torch.tensor([c]), toks) for c in range(8)])  # [steps, keys, tokens]
    flat = u.flatten().double().numpy()
    assert 0.0 < flat.min() and flat.max() < 1.0
    assert stats.kstest(flat, "uniform").pvalue > ALPHA
    for a, b in ((u[1:], u[:-1]), (u[:, 1:], u[:, :-1]), (u[:, :, 1:], u[:, :, :-1])):
        r = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
        assert abs(r) < 0.01, f"neighbouring uniforms correlate: r = {r:.3g}"
    # a pure function of its inputs: the same key, step and token always give the same number
    assert torch.equal(counter_uniform(keys, torch.tensor([3]), toks), u[3])


def test_greedy_limit_and_masked_tokens() -> None:
    """A token masked to -inf (CFG/top-k upstream) is never drawn; one overwhelming logit is always drawn."""
    scores = _logits(1).clone()
    scores[100:] = -float("inf")
    draws = _draws_across_keys(scores, 5000, 0, 1.0)
    assert draws.max() < 100
    scores = _logits(2).clone()
    scores[1234] = 1e4
    assert set(_draws_across_keys(scores, 2000, 250, 1.0).tolist()) == {1234}


def test_extreme_hashes_give_finite_noise() -> None:
    """The largest and smallest hash values map strictly inside (0, 1): Gumbel noise stays finite, so a
    masked (-inf) token can never be lifted to NaN and drawn."""
    u = bits_to_uniform(torch.tensor([0, 0xFFFFFFFF], dtype=torch.long))
    assert 0.0 < float(u[0]) and float(u[1]) < 1.0
    assert torch.isfinite(-torch.log(-torch.log(u))).all()


def _decoder_draws(sampler: str, scores: torch.Tensor, n: int, temperature: float, top_k: int,
                   top_p: float) -> np.ndarray:
    """n draws through the fast loop's own sampling step (FastDecoder._sample: CFG, temperature, then
    the configured sampler), one per row key, from the same logits."""
    from types import SimpleNamespace

    from dgx_music.daemon.engine.fast_decode import FastDecoder
    from dgx_music.daemon.engine.sampling import Sampling

    s = Sampling(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
    st = SimpleNamespace(keys=torch.arange(n, dtype=torch.long) * 7919 + 12345, col=torch.tensor([6]),
                         temperature=torch.tensor(temperature), guidance=torch.tensor(1.0),
                         top_p_floor=torch.tensor(1 - top_p))
    torch.manual_seed(0)  # the stock sampler draws from the global generator
    return FastDecoder._sample(SimpleNamespace(sampler=sampler), st, scores.expand(n, VOCAB), s).numpy()


def _tempered_probs(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """transformers' own Temperature, TopK and TopP warpers in generate's order, softmaxed."""
    from transformers import TemperatureLogitsWarper

    return _stock_probs(TemperatureLogitsWarper(temperature)(None, scores[None].clone())[0], top_k, top_p)


@pytest.mark.parametrize("sampler,temperature,top_k,top_p", [
    ("counter", 0.7, 250, 1.0), ("counter", 1.5, 0, 0.9), ("stock", 1.5, 50, 1.0)])
def test_temperature_scales_the_distribution(sampler: str, temperature: float, top_k: int, top_p: float) -> None:
    """Draws at T != 1 follow softmax(logits / T) after top-k/top-p, as stock generate's warpers make it:
    a sampler that multiplied by T (or ignored it) would draw from a visibly sharper or flatter law."""
    scores = _logits(int(temperature * 10) + top_k, spread=1.5)
    probs = _tempered_probs(scores, temperature, top_k, top_p)
    draws = _decoder_draws(sampler, scores, 20000, temperature, top_k, top_p)
    assert set(np.unique(draws).tolist()) <= set(np.flatnonzero(probs > 0).tolist())
    p = _gof_pvalue(draws, probs)
    assert p > ALPHA, f"T={temperature}: draws do not follow softmax(logits / T) (chi-square p = {p:.2g})"
    # And the check tells T from 1/T: the same draws are far from the law a multiplied temperature gives.
    wrong = _tempered_probs(scores, 1 / temperature, top_k, top_p)
    assert _gof_pvalue(draws, np.where(probs > 0, wrong, 0) / np.where(probs > 0, wrong, 0).sum()) < ALPHA
