"""Tiny MusicGen models with random weights, saved in the real on-disk formats.

Why: this machine (like many air-gapped boxes) cannot download weights, yet
tests and smoke runs must go through the real loaders. The tiny model keeps the
real audio contract (32 kHz, 50 frames/s, 4 codebooks of 2048) so shapes and
durations match the real thing; only widths and depths shrink.

Also builds the `random:<size>` configurations: real shapes, random weights.
"""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path
from typing import Any

from dgx_music.common import families
from dgx_music.common.families import DEFAULT_FAMILY

WORDS = (
    "a an and the of with in on for to at by from into over under slow fast calm happy sad dark bright warm "
    "cold soft loud heavy light epic dreamy ambient piano guitar bass drums drum synth strings violin cello "
    "flute sax trumpet brass choir vocal vocals pad pads lead arp beat beats groove loop melody chord chords "
    "rhythm tempo bpm lofi hip hop jazz rock pop funk soul blues house techno trance dubstep edm disco metal "
    "punk folk country classical orchestral cinematic electronic acoustic chill relaxing upbeat energetic "
    "retro 80s 90s major minor key intro outro solo background music song track sound noise rain night "
    "morning summer winter space ocean forest city game"
).split()

SAMPLE_RATE = 32000
FRAME_RATE = 50
CODEBOOK_SIZE = 2048
NUM_CODEBOOKS = 4


def word_list_tokenizer(words: list[str] | tuple[str, ...] = tuple(WORDS)) -> Any:
    """A T5 (unigram) tokenizer built from a word list, no file or download needed.

    Whole words score higher than single characters, so known words become one
    token and anything else falls back to characters (never <unk> for ASCII).
    """
    from transformers import T5Tokenizer

    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -1.0) for w in dict.fromkeys(words)]
    vocab += [(c, -3.0) for c in string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _encodec_config(**overrides: Any) -> Any:
    from transformers import EncodecConfig

    # codebook_size and bandwidth together fix the number of quantizers (4) and frame rate (50).
    kw: dict[str, Any] = dict(codebook_size=CODEBOOK_SIZE, target_bandwidths=[2.2], upsampling_ratios=[8, 5, 4, 4],
                              sampling_rate=SAMPLE_RATE, audio_channels=1, use_causal_conv=False)
    kw.update(overrides)
    return EncodecConfig(**kw)


def _musicgen_config(t5: Any, enc: Any, decoder: dict[str, int], melody: bool) -> Any:
    """MusicgenConfig, or MusicgenMelodyConfig (text + chroma conditioning) when `melody`."""
    if melody:
        from transformers import MusicgenMelodyConfig, MusicgenMelodyDecoderConfig

        dec = MusicgenMelodyDecoderConfig(num_codebooks=NUM_CODEBOOKS, vocab_size=CODEBOOK_SIZE, **decoder)
        return MusicgenMelodyConfig(text_encoder=t5, audio_encoder=enc, decoder=dec, num_chroma=12,
                                    chroma_length=CHROMA_LENGTH)
    from transformers import MusicgenConfig, MusicgenDecoderConfig

    dec = MusicgenDecoderConfig(num_codebooks=NUM_CODEBOOKS, vocab_size=CODEBOOK_SIZE, **decoder)
    return MusicgenConfig(text_encoder=t5, audio_encoder=enc, decoder=dec)


def _model_class(melody: bool) -> Any:
    from transformers import MusicgenForConditionalGeneration, MusicgenMelodyForConditionalGeneration

    return MusicgenMelodyForConditionalGeneration if melody else MusicgenForConditionalGeneration


def tiny_config(vocab_size: int, melody: bool = False) -> Any:
    """Widths of 8-32 and one layer each: generating 1 s takes ~0.1-0.2 s on a laptop CPU."""
    from transformers import T5Config

    t5 = T5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1,
                  num_heads=4)
    enc = _encodec_config(hidden_size=16, num_filters=4, num_lstm_layers=1, num_residual_layers=1)
    return _musicgen_config(t5, enc, dict(hidden_size=32, ffn_dim=64, num_hidden_layers=1, num_attention_heads=4),
                            melody)


# Shapes of facebook/musicgen-{small,medium,large} (T5-base text encoder in all three).
RANDOM_DECODERS: dict[str, dict[str, int]] = {
    "small": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, ffn_dim=4096),
    "medium": dict(num_hidden_layers=48, hidden_size=1536, num_attention_heads=24, ffn_dim=6144),
    "large": dict(num_hidden_layers=48, hidden_size=2048, num_attention_heads=32, ffn_dim=8192),
    "melody": dict(num_hidden_layers=48, hidden_size=1536, num_attention_heads=24, ffn_dim=6144),
}
#: Frames of chroma a melody model reads: 30 s at hop 4096 and 32 kHz.
CHROMA_LENGTH = 235


def random_config(size: str) -> Any:
    """The real architecture of musicgen-<size>, for random-weight benchmarks."""
    from transformers import T5Config

    t5 = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    enc = _encodec_config(hidden_size=128, num_filters=64, num_lstm_layers=2, norm_type="weight_norm")
    return _musicgen_config(t5, enc, RANDOM_DECODERS[size], size == "melody")


def set_generation_defaults(model: Any) -> None:
    """The generation_config the facebook checkpoints ship (sampling, CFG 3, top_k 250)."""
    gc = model.generation_config
    gc.do_sample = True
    gc.guidance_scale = 3.0
    gc.top_k = 250
    gc.max_length = 1500
    gc.decoder_start_token_id = CODEBOOK_SIZE
    gc.pad_token_id = CODEBOOK_SIZE
    gc.bos_token_id = CODEBOOK_SIZE


def randomize_codebooks(model: Any, seed: int = 0) -> None:
    """Give EnCodec's codebooks random vectors: transformers initialises them to zeros,
    which would make every code decode to the same audio (and seeds look ineffective)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            emb = layer.codebook.embed
            emb.copy_(torch.randn(emb.shape, generator=gen) * 0.5)
            layer.codebook.embed_avg.copy_(emb)
            layer.codebook.cluster_size.fill_(1.0)


def make_processor(tokenizer: Any) -> Any:
    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    return MusicgenProcessor(feature_extractor=EncodecFeatureExtractor(sampling_rate=SAMPLE_RATE, feature_size=1),
                             tokenizer=tokenizer)


def build_random_model(size: str) -> tuple[Any, Any]:
    """(model, processor) with the real architecture of musicgen-<size> and random weights."""
    import torch

    torch.manual_seed(0)
    model = _model_class(size == "melody")(random_config(size))
    randomize_codebooks(model)
    set_generation_defaults(model)
    # A melody model's processor needs torchaudio; its text side is just the tokenizer.
    tok = word_list_tokenizer()
    return model.eval(), (tok if size == "melody" else make_processor(tok))


def build_test_model(directory: str | Path, backend: str = "transformers", seed: int = 0,
                     python: str | None = None, melody: bool = False, family: str = DEFAULT_FAMILY) -> Path:
    """Write a tiny random model of `family` to `directory`; return the directory.

    Each family names its builder in the registry (`test_model` in common/families.py): MusicGen's
    is `build_musicgen_test_model` below, ACE-Step's builds a tiny diffusers AceStepPipeline
    (acestep_testmodel.py).
    """
    if family not in families.REGISTRY:
        raise ValueError(f"unknown family {family!r}: use {' or '.join(families.ALL_FAMILIES)}")
    return families.family(family).tool("test_model")(  # type: ignore[no-any-return]
        directory, backend=backend, seed=seed, python=python, melody=melody)


def build_musicgen_test_model(directory: str | Path, *, backend: str = "transformers", seed: int = 0,
                              python: str | None = None, melody: bool = False) -> Path:
    """Write a tiny random MusicGen to `directory` in `backend`'s on-disk format; return the directory.

    transformers: save_pretrained + MusicgenProcessor (loads with from_pretrained).
    audiocraft: state_dict.bin + compression_state_dict.bin (loads with
    MusicGen.get_pretrained) plus `hf-cache/`, a fake hub cache holding the
    `t5-base` that audiocraft's text conditioner always asks for. It is built
    by `python` (default: this interpreter), which must have audiocraft.
    `melody` builds a MusicGen-melody (text + chroma), transformers only.
    """
    out = Path(directory)
    if melody and backend != "transformers":
        raise ValueError("melody test models are built for the transformers backend only")
    out.mkdir(parents=True, exist_ok=True)
    if backend == "transformers":
        _build_transformers(out, seed, melody)
    elif backend == "audiocraft":
        _build_audiocraft(out, seed, python)
    else:
        raise ValueError(f"unknown backend {backend!r}: use transformers or audiocraft")
    (out / "dgx-music-test-model.json").write_text(json.dumps(
        {"backend": backend, "seed": seed, "melody": melody,
         "note": "tiny MusicGen with random weights: noise, for tests"}) + "\n")
    return out


def _build_transformers(out: Path, seed: int, melody: bool = False) -> None:
    import torch

    tok = word_list_tokenizer()
    torch.manual_seed(seed)
    model = _model_class(melody)(tiny_config(len(tok), melody))
    randomize_codebooks(model, seed)
    if melody:
        # At the default init scale (0.02) the chroma barely moves a 32-wide decoder, and
        # sampling picks the same tokens whatever the melody; real checkpoints are trained.
        with torch.no_grad():
            proj = model.audio_enc_to_dec_proj.weight
            proj.copy_(torch.randn(proj.shape, generator=torch.Generator().manual_seed(seed)) * 2.0)
    set_generation_defaults(model)
    model.save_pretrained(out)
    if melody:
        tok.save_pretrained(out)  # the melody processor needs torchaudio; the backend computes chroma itself
    else:
        make_processor(tok).save_pretrained(out)


# ----------------------------------------------------------------------------- audiocraft

def _audiocraft_cfg() -> dict[str, Any]:
    """An audiocraft solver config (as the checkpoints embed it) for a tiny MusicGen."""
    return {
        "sample_rate": SAMPLE_RATE,
        "channels": 1,
        "device": "cpu",
        "dtype": "float32",
        "autocast": False,
        "autocast_dtype": "float16",
        "compression_model": "encodec",
        "lm_model": "transformer_lm",
        "encodec": {
            "autoencoder": "seanet", "quantizer": "rvq", "sample_rate": SAMPLE_RATE, "channels": 1,
            "causal": False, "renormalize": False,
        },
        "seanet": {
            "dimension": 16, "channels": 1, "causal": False, "n_filters": 4, "n_residual_layers": 1,
            "ratios": [8, 5, 4, 4], "activation": "ELU", "activation_params": {"alpha": 1.0},
            "norm": "weight_norm", "norm_params": {}, "kernel_size": 7, "last_kernel_size": 7,
            "residual_kernel_size": 3, "dilation_base": 2, "pad_mode": "constant", "true_skip": True,
            "compress": 2, "lstm": 1, "disable_norm_outer_blocks": 0,
            "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
            "encoder": {},
        },
        "rvq": {"n_q": NUM_CODEBOOKS, "q_dropout": False, "bins": CODEBOOK_SIZE, "decay": 0.99,
                "kmeans_init": False, "kmeans_iters": 50, "threshold_ema_dead_code": 2,
                "orthogonal_reg_weight": 0.0, "orthogonal_reg_active_codes_only": False,
                "orthogonal_reg_max_codes": None},
        "transformer_lm": {
            "dim": 32, "num_heads": 4, "num_layers": 1, "hidden_scale": 2, "n_q": NUM_CODEBOOKS,
            "card": CODEBOOK_SIZE, "dropout": 0.0, "emb_lr": None, "activation": "gelu", "norm_first": True,
            "bias_ff": False, "bias_attn": False, "bias_proj": False, "past_context": None, "causal": True,
            "custom": False, "memory_efficient": False, "attention_as_float32": False, "layer_scale": None,
            "positional_embedding": "sin", "xpos": False, "checkpointing": "none", "weight_init": None,
            "depthwise_init": None, "zero_bias_init": False, "norm": "layer_norm", "cross_attention": True,
            "qk_layer_norm": False, "qk_layer_norm_cross": False, "attention_dropout": None, "kv_repeat": 1,
            "two_step_cfg": False,
        },
        "codebooks_pattern": {
            "modeling": "delay", "delay": {"delays": list(range(NUM_CODEBOOKS)), "flatten_first": 0, "empty_initial": 0},
            "unroll": {"flattening": [0, 1, 2, 3], "delays": [0, 0, 0, 0]},
            "music_lm": {"group_by": 2}, "valle": {"delays": [0, 0, 0]},
        },
        "classifier_free_guidance": {"training_dropout": 0.0, "inference_coef": 3.0},
        "attribute_dropout": {},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1,
                  "sum": [], "prepend": [], "cross": ["description"], "input_interpolate": []},
        "conditioners": {"description": {"model": "t5", "t5": {"name": "t5-base", "finetune": False,
                                                               "word_dropout": 0.0, "normalize_text": False}}},
        "dataset": {"segment_duration": 30.0},
        "generate": {"lm": {"use_sampling": True, "top_k": 250, "top_p": 0.0}},
    }


AUDIOCRAFT_RANDOM_LM: dict[str, dict[str, int]] = {
    "small": dict(dim=1024, num_heads=16, num_layers=24),
    "medium": dict(dim=1536, num_heads=24, num_layers=48),
    "large": dict(dim=2048, num_heads=32, num_layers=48),
}


def audiocraft_random_cfg(size: str, device: str) -> dict[str, Any]:
    """The audiocraft config of musicgen-<size> (32 kHz EnCodec, T5-base), for random-weight benchmarks."""
    cfg = _audiocraft_cfg()
    cfg["device"] = device
    cfg["dtype"] = "float32" if device == "cpu" else "float16"
    cfg["seanet"].update(dimension=128, n_filters=64, lstm=2, n_residual_layers=1)
    # memory_efficient as in the released checkpoints (torch SDPA in audiocraft 1.3, on CPU too).
    cfg["transformer_lm"].update(hidden_scale=4, memory_efficient=True, **AUDIOCRAFT_RANDOM_LM[size])
    return cfg


def _fake_t5_base(cache: Path, seed: int, full: bool = False) -> None:
    """Put a random 768-wide T5 encoder + word-list tokenizer where the hub cache would hold t5-base.

    full=True keeps t5-base's real depth (12 layers, d_ff 3072) so benchmarks cost what it costs.
    """
    import torch
    from transformers import T5Config, T5EncoderModel

    snap_hash = hashlib.sha1(b"dgx-music fake t5-base").hexdigest()
    root = cache / "models--t5-base"
    snap = root / "snapshots" / snap_hash
    snap.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(snap_hash)
    tok = word_list_tokenizer()
    tok.model_max_length = 512
    # audiocraft hard-codes t5-base's width (768); depth and feed-forward can shrink.
    if full:
        cfg = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=1,
                       num_heads=12)
    else:
        cfg = T5Config(vocab_size=len(tok), d_model=768, d_kv=64, d_ff=128, num_layers=1, num_decoder_layers=1,
                       num_heads=2)
    torch.manual_seed(seed)
    T5EncoderModel(cfg).save_pretrained(snap)
    tok.save_pretrained(snap)


def _build_audiocraft(out: Path, seed: int, python: str | None = None) -> None:
    """Run the build in a child process whose hub cache is the fake one from its first import.

    huggingface_hub reads HF_HUB_CACHE / HF_HUB_OFFLINE once, at import, and
    audiocraft's T5 conditioner loads `t5-base` by name: only a fresh process
    with that environment finds the fake copy instead of trying the network.
    """
    import os
    import subprocess
    import sys

    cache = out / "hf-cache"
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    code = "import sys; from dgx_music.daemon.engine.testmodel import _build_audiocraft_here as b; " \
           "b(sys.argv[1], int(sys.argv[2]))"
    proc = subprocess.run([python or sys.executable, "-c", code, str(out), str(seed)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the audiocraft test model failed:\n{proc.stderr[-3000:]}")


def _build_audiocraft_here(directory: str, seed: int) -> None:
    import torch
    import yaml  # type: ignore[import-untyped]  # pulled in by omegaconf, which audiocraft needs
    from omegaconf import OmegaConf

    out = Path(directory)
    try:
        from audiocraft.models import builders
    except ImportError as exc:
        raise RuntimeError(f"building an audiocraft test model needs audiocraft importable ({exc}); "
                           "see docs/engine.md for its environment") from exc
    _fake_t5_base(out / "hf-cache", seed)
    raw = _audiocraft_cfg()
    cfg = OmegaConf.create(raw)
    torch.manual_seed(seed)
    compression = builders.get_compression_model(cfg)
    lm = builders.get_lm_model(cfg)
    cfg_yaml = yaml.safe_dump(raw)
    for fname, model in (("compression_state_dict.bin", compression), ("state_dict.bin", lm)):
        torch.save({"best_state": model.state_dict(), "xp.cfg": cfg_yaml, "version": "dgx-music-test",
                    "exported": True}, out / fname)
