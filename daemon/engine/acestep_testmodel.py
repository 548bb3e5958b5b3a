"""ACE-Step 1.5 pipelines with random weights: a tiny one for tests, the real shapes for `bench`.

Why: like the tiny MusicGen (testmodel.py), tests and smoke runs must go through
diffusers' real `AceStepPipeline.from_pretrained` without downloading 7 GB. The
tiny pipeline keeps the real audio contract (48 kHz stereo, VAE hop 1920 = 25
latents/s, the codec's 5-frame pooling) so durations and frame maths match; only
widths and depths shrink. Nothing here downloads: the tokenizer is trained in
process on the pipeline's own prompt templates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLE_RATE = 48000
VAE_RATIOS = [2, 4, 4, 6, 10]  # hop 1920 samples = 25 latents per second, as the real VAE
HOP = 1920

# Text the pipeline formats (pipeline_ace_step.SFT_GEN_PROMPT, the lyric block, the metadata lines),
# plus words a caption or a lyric sheet uses, so the tiny BPE has real merges to learn.
_CORPUS = [
    "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n# Caption\n"
    "upbeat pop song with bright synths and a female vocal\n\n# Metas\n- bpm: 120\n- timesignature: 4\n"
    "- keyscale: A minor\n- duration: 30 seconds\n<|endoftext|>\n",
    "# Languages\nen\n\n# Lyric\n[verse]\nwalking down the empty street tonight\n[chorus]\nwe sing along, "
    "la la la\n[bridge]\n[outro]\n<|endoftext|>",
    "Repaint the mask area based on the given conditions: Generate audio semantic tokens Extract the DRUMS "
    "track from the audio: Generate the VOCALS track based on the audio context: Complete the input track "
    "with BASS | GUITAR N/A seconds major minor C D E F G A B sharp flat # 0 1 2 3 4 5 6 7 8 9",
    "ambient piano guitar bass drums synth strings choir rock jazz folk electronic lofi hip hop cinematic calm "
    "happy sad dark warm love heart night light fire rain dream home road sky time",
]

# The real ACE-Step 1.5 turbo shapes (see ../shared/notes/ace-step-offline.md; 3.16 B parameters in all).
REAL_TEXT_ENCODER = dict(vocab_size=151669, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                         num_key_value_heads=8, head_dim=128, intermediate_size=3072, tie_word_embeddings=True,
                         max_position_embeddings=32768, rope_theta=1000000.0)
REAL_DIT = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=24, num_attention_heads=16,
                num_key_value_heads=8, head_dim=128, in_channels=192, audio_acoustic_hidden_dim=64, patch_size=2,
                rope_theta=1000000.0, sliding_window=128)
REAL_CONDITION = dict(hidden_size=2048, intermediate_size=6144, text_hidden_dim=1024, timbre_hidden_dim=64,
                      num_lyric_encoder_hidden_layers=8, num_timbre_encoder_hidden_layers=4, num_attention_heads=16,
                      num_key_value_heads=8, head_dim=128)
REAL_CODEC = dict(hidden_size=2048, intermediate_size=6144, audio_acoustic_hidden_dim=64, pool_window_size=5,
                  num_attention_pooler_hidden_layers=2, num_attention_heads=16, num_key_value_heads=8, head_dim=128)
REAL_VAE = dict(encoder_hidden_size=128, downsampling_ratios=VAE_RATIOS, channel_multiples=[1, 2, 4, 8, 16],
                decoder_channels=128, decoder_input_channels=64, audio_channels=2, sampling_rate=SAMPLE_RATE)

A_TINY = 8  # latent channels of the tiny pipeline
_TINY_ATTN = dict(num_attention_heads=4, num_key_value_heads=2, head_dim=8)
TINY_TEXT_ENCODER = dict(hidden_size=32, num_hidden_layers=1, intermediate_size=64, max_position_embeddings=4096,
                         **_TINY_ATTN)
TINY_DIT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, in_channels=3 * A_TINY,
                audio_acoustic_hidden_dim=A_TINY, patch_size=2, sliding_window=128, **_TINY_ATTN)
TINY_CONDITION = dict(hidden_size=32, intermediate_size=64, text_hidden_dim=32, timbre_hidden_dim=A_TINY,
                      num_lyric_encoder_hidden_layers=1, num_timbre_encoder_hidden_layers=1, **_TINY_ATTN)
TINY_CODEC = dict(hidden_size=32, intermediate_size=64, audio_acoustic_hidden_dim=A_TINY, pool_window_size=5,
                  num_attention_pooler_hidden_layers=1, **_TINY_ATTN)
TINY_VAE = dict(encoder_hidden_size=2 * A_TINY, downsampling_ratios=VAE_RATIOS, channel_multiples=[1, 1, 1, 1, 1],
                decoder_channels=4, decoder_input_channels=A_TINY, audio_channels=2, sampling_rate=SAMPLE_RATE)


def byte_bpe_tokenizer(vocab_size: int = 400) -> Any:
    """A byte-level BPE (Qwen-style) trained in process; `<|endoftext|>` is eos and pad.

    The pipeline pads to the longest prompt even for a batch of one, so a pad token is mandatory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   model_max_length=4096)


def _components(text: dict[str, Any], dit: dict[str, Any], cond: dict[str, Any], codec: dict[str, Any],
                vae: dict[str, Any], turbo: bool, vocab_size: int) -> dict[str, Any]:
    from diffusers import AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (AceStepAudioTokenDetokenizer,
                                                                AceStepAudioTokenizer, AceStepConditionEncoder)
    from transformers import Qwen3Config, Qwen3Model

    text = {"vocab_size": vocab_size, **text}
    return dict(
        vae=AutoencoderOobleck(**vae),
        text_encoder=Qwen3Model(Qwen3Config(**text)),
        transformer=AceStepTransformer1DModel(**dit, is_turbo=turbo, model_version="turbo" if turbo else "base"),
        condition_encoder=AceStepConditionEncoder(**cond),
        # ACE-Step computes its own sigmas and hands them to the scheduler verbatim.
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0),
        audio_tokenizer=AceStepAudioTokenizer(**codec, fsq_dim=codec["hidden_size"]),
        audio_token_detokenizer=AceStepAudioTokenDetokenizer(**codec),
    )


def fill_silence_latent(pipe: Any, seconds: float = 30.0) -> None:
    """Put the VAE encoding of silence in `condition_encoder.silence_latent`, as the real converter does.

    The pipeline feeds it to the timbre encoder when no reference audio is given (zeros are out of
    distribution); the real buffer holds 15000 frames, tiled here from `seconds` of encoded silence."""
    import torch

    with torch.no_grad():
        vae = pipe.vae
        silence = torch.zeros(1, 2, int(seconds * SAMPLE_RATE), dtype=vae.dtype)
        latent = vae.encode(silence).latent_dist.mode().transpose(1, 2)  # (1, T, A): deterministic
        buf = pipe.condition_encoder.silence_latent
        reps = -(-buf.shape[1] // latent.shape[1])
        buf.copy_(latent.repeat(1, reps, 1)[:, : buf.shape[1], :].to(buf.dtype))


def build_tiny_pipeline(seed: int = 0, turbo: bool = True) -> Any:
    """An AceStepPipeline with tiny widths, the real 48 kHz / 25 Hz contract and random weights."""
    import torch
    from diffusers import AceStepPipeline

    tok = byte_bpe_tokenizer()
    torch.manual_seed(seed)
    comps = _components(TINY_TEXT_ENCODER, TINY_DIT, TINY_CONDITION, TINY_CODEC, TINY_VAE, turbo, len(tok))
    pipe = AceStepPipeline(tokenizer=tok, **comps)
    fill_silence_latent(pipe, seconds=0.4)
    return pipe


def build_random_pipeline(variant: str = "ace-step") -> Any:
    """The real ACE-Step 1.5 turbo (or base) architecture with random weights, for `bench`.

    Only the tokenizer is the tiny trained one (its ids are valid in the real 151669 vocabulary);
    silence_latent is the random VAE's encoding of 1 s of silence (cheap, and shaped right)."""
    import torch
    from diffusers import AceStepPipeline

    torch.manual_seed(0)
    tok = byte_bpe_tokenizer()
    comps = _components(REAL_TEXT_ENCODER, REAL_DIT, REAL_CONDITION, REAL_CODEC, REAL_VAE,
                        variant != "ace-step-base", REAL_TEXT_ENCODER["vocab_size"])
    pipe = AceStepPipeline(tokenizer=tok, **comps)
    fill_silence_latent(pipe, seconds=1.0)
    return pipe


def build_test_model(directory: str | Path, *, backend: str = "diffusers", seed: int = 0,
                     python: str | None = None, melody: bool = False) -> Path:
    """The family's `test_model` (common/families.py): a tiny turbo pipeline; `backend` and `python`
    do not apply (one backend, built in this interpreter)."""
    if melody:
        raise ValueError("--melody is a MusicGen option; ace-step test models follow lyrics, not melodies")
    return build_tiny_acestep(directory, seed=seed)


def build_tiny_acestep(directory: str | Path, seed: int = 0, turbo: bool = True) -> Path:
    """Write a tiny random AceStepPipeline to `directory` with save_pretrained; return the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    build_tiny_pipeline(seed, turbo).save_pretrained(out)
    (out / "dgx-music-test-model.json").write_text(json.dumps(
        {"family": "ace-step", "seed": seed, "variant": "turbo" if turbo else "base",
         "note": "tiny ACE-Step 1.5 pipeline with random weights: noise, for tests"}) + "\n")
    return out


def build_test_lora(model_dir: str | Path, directory: str | Path, seed: int = 0, rank: int = 4) -> Path:
    """A random LoRA for the tiny pipeline's DiT attention, saved the way diffusers saves LoRAs.

    Its B matrices are random (not PEFT's zeros), so applying it audibly changes the output."""
    import torch
    from diffusers import AceStepPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = AceStepPipeline.from_pretrained(model_dir)
    torch.manual_seed(seed)
    pipe.transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                            target_modules=["to_q", "to_k", "to_v"]))
    out = Path(directory)
    AceStepPipeline.save_lora_weights(out, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer))
    return out
