"""LoRA training of ACE-Step's DiT on your own audio, inside the model worker.

Why here: the worker already holds the pipeline (one model in memory, the queue waits), and
training needs the same VAE, text encoder and condition encoder to turn audio and captions
into what the DiT sees. The recipe is upstream ACE-Step 1.5's (acestep/training/trainer.py,
configs.py; docs/engine.md says what was taken): LoRA on the DiT's attention projections
(self and cross; upstream q/k/v/o_proj = diffusers' to_q/to_k/to_v/to_out.0), rank 8, alpha 16,
dropout 0.1, AdamW (lr 1e-4, weight decay 0.01), gradient clipping at 1.0, a linear warm-up
from 10 % then cosine decay to 1 %, and the flow-matching objective: x_t = t*noise + (1-t)*x0,
the DiT predicts noise - x0 (MSE). Turbo models train on the 8 timesteps they sample with
(shift 3); base models on the continuous shifted schedule.

Durability: audio is encoded to latents once per item and cached in the job's work
directory; a checkpoint (adapter + optimizer + scheduler + RNG + step) is written every K
steps as a directory swapped in by rename, so a killed worker or daemon resumes at the last
checkpoint's step. The final adapter is written the way diffusers' `save_lora_weights` writes
it, so generation loads it through `load_lora_weights` like any downloaded LoRA.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from dgx_music.daemon.engine.errors import EngineError

#: Upstream ACE-Step 1.5 defaults (acestep/training/configs.py).
DEFAULT_RANK = 8
DEFAULT_LR = 1e-4
DEFAULT_STEPS = 500  # optimizer steps; upstream counts 100 epochs of grad-accumulated batches of 4
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
DROPOUT = 0.1
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
WARMUP_STEPS = 100
GRAD_ACCUM = 4
TURBO_TIMESTEPS = [1.0, 0.9545454545454546, 0.9, 0.8333333333333334, 0.75, 0.6428571428571429, 0.5, 0.3]
MAX_SECONDS = 240.0  # longer audio is cut: memory grows with the latent length
TRAIN_ADAPTER = "dgx-music-train"
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # diffusers' default name for load_lora_weights
LOSS_SMOOTHING = 0.9  # exponential moving average of the per-step loss, as reported

#: on_step(step, total, loss_smoothed or None, phase): may raise (Cancelled) to stop.
TrainStepCb = Callable[[int, int, "float | None", str], None]


@dataclass(frozen=True)
class TrainItem:
    """One training example: an audio file and its caption (a track's prompt) and lyrics."""

    path: str
    caption: str
    lyrics: str = ""
    language: str = "en"

    def key(self) -> str:
        """The latent cache's name: changes when the file or its text changes."""
        try:
            st = os.stat(self.path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "?"
        raw = json.dumps([self.path, stamp, self.caption, self.lyrics, self.language, MAX_SECONDS])
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class TrainOptions:
    steps: int = DEFAULT_STEPS
    rank: int = DEFAULT_RANK
    lr: float = DEFAULT_LR
    seed: int = 0
    checkpoint_every: int = 50

    @classmethod
    def from_wire(cls, p: Mapping[str, Any]) -> "TrainOptions":
        try:
            opts = cls(steps=int(p.get("steps", DEFAULT_STEPS)), rank=int(p.get("rank", DEFAULT_RANK)),
                       lr=float(p.get("lr", DEFAULT_LR)), seed=int(p.get("seed", 0)),
                       checkpoint_every=int(p.get("checkpoint_every", 50)))
        except (TypeError, ValueError) as exc:
            raise EngineError("bad_request", f"train params: {exc}") from None
        if opts.steps < 1 or opts.rank < 1 or not opts.lr > 0 or opts.checkpoint_every < 1:
            raise EngineError("bad_request", "train params: steps, rank, checkpoint_every >= 1 and lr > 0")
        return opts


# ------------------------------------------------------------------------------ data
def _read_audio(path: str, rate: int) -> torch.Tensor:
    """[2, samples] float32 at `rate`, at most MAX_SECONDS (soundfile reads WAV/FLAC/Ogg/MP3)."""
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise EngineError("bad_request", f"cannot read {path}: {exc}") from None
    if data.size == 0:
        raise EngineError("bad_request", f"{path} holds no audio")
    data = data[: int(MAX_SECONDS * sr)]
    if sr != rate:
        import soxr

        data = soxr.resample(data, sr, rate)
    if data.shape[1] == 1:
        data = np.repeat(data, 2, axis=1)
    return torch.from_numpy(np.ascontiguousarray(data[:, :2].T, dtype=np.float32))


@torch.no_grad()
def encode_item(pipe: Any, item: TrainItem) -> dict[str, torch.Tensor]:
    """What the DiT sees for one example (upstream's preprocessed tensors): the audio's latents
    (the VAE posterior's mean), the caption+lyrics condition, and the text2music context
    (silence latents with an all-ones chunk mask), as the pipeline builds them for generation."""
    device, dtype = pipe._execution_device, pipe.transformer.dtype
    audio = _read_audio(item.path, int(pipe.sample_rate))
    seconds = audio.shape[-1] / pipe.sample_rate
    post = pipe.vae.encode(audio.unsqueeze(0).to(device=device, dtype=pipe.vae.dtype)).latent_dist
    target = post.mode().transpose(1, 2).to(dtype=dtype)  # [1, T, A]
    length = target.shape[1]
    text, text_mask, lyric, lyric_mask = pipe.encode_prompt(
        prompt=[item.caption], lyrics=[item.lyrics], device=device, vocal_language=[item.language],
        audio_duration=seconds, instruction=pipe._get_task_instruction(task_type="text2music"))
    timbre_frames = math.ceil(30 * pipe.latents_per_second)
    refer = pipe.condition_encoder.silence_latent[:, :timbre_frames, :].to(device=device, dtype=dtype)
    cond, _ = pipe.condition_encoder(
        text_hidden_states=text, text_attention_mask=text_mask, lyric_hidden_states=lyric,
        lyric_attention_mask=lyric_mask, refer_audio_acoustic_hidden_states_packed=refer.contiguous(),
        refer_audio_order_mask=torch.zeros(1, device=device, dtype=torch.long))
    src, _ = pipe.prepare_src_latents(device=device, dtype=dtype, batch_size=1, latent_length=length)
    mask = torch.ones(1, length, target.shape[-1], device=device, dtype=dtype)
    return {"target": target.cpu(), "cond": cond.cpu(), "context": torch.cat([src, mask], dim=-1).cpu()}


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_dataset(pipe: Any, items: list[TrainItem], cache: Path, on_step: TrainStepCb,
                 total: int) -> list[dict[str, torch.Tensor]]:
    """Every item's tensors, from the cache when an earlier attempt encoded them."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for item in items:
        path = cache / f"{item.key()}.pt"
        data = None
        if path.exists():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a torn cache file (it is written atomically, but be safe): encode again
                data = None
        if data is None:
            data = encode_item(pipe, item)
            _save_atomic(data, path)
        out.append(data)
        on_step(0, total, None, f"encoded {len(out)}/{len(items)}")
    return out


# ------------------------------------------------------------------------------ checkpoints
def _lora_state(transformer: Any) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    sd = get_peft_model_state_dict(transformer, adapter_name=TRAIN_ADAPTER)
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sd.items()}


def write_checkpoint(work: Path, transformer: Any, optimizer: Any, scheduler: Any, gen: torch.Generator,
                     step: int, loss: float | None) -> None:
    """checkpoint/ replaced as a whole: written beside it, then swapped in by renames. A crash
    between the renames leaves checkpoint.old, which `read_checkpoint` falls back on."""
    from safetensors.torch import save_file

    tmp = work / f"checkpoint.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_lora_state(transformer), str(tmp / "adapter.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": gen.get_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "loss": loss}))
    for f in tmp.iterdir():
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
    cur, old = work / "checkpoint", work / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if cur.exists():
        os.replace(cur, old)
    os.replace(tmp, cur)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(work)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(work: Path) -> Path | None:
    for name in ("checkpoint", "checkpoint.old"):
        d = work / name
        if (d / "state.json").exists() and (d / "optimizer.pt").exists() and (d / "adapter.safetensors").exists():
            return d
    return None


def checkpoint_step(work: Path) -> int:
    """The step the last complete checkpoint in `work` reached (0: none)."""
    d = read_checkpoint(work)
    return int(json.loads((d / "state.json").read_text())["step"]) if d is not None else 0


# ------------------------------------------------------------------------------ the loop
def _schedule(optimizer: Any, steps: int) -> Any:
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    warmup = min(WARMUP_STEPS, max(1, steps // 10))
    lr = optimizer.param_groups[0]["lr"]
    return SequentialLR(optimizer, [LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=warmup),
                                    CosineAnnealingLR(optimizer, T_max=max(1, steps - warmup), eta_min=lr * 0.01)],
                        milestones=[warmup])


def _order(n: int, seed: int, epoch: int) -> list[int]:
    """The examples' order in an epoch: a function of (seed, epoch), so a resumed run sees the same."""
    idx = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(idx)
    return idx


def train_lora(pipe: Any, items: list[TrainItem], opts: TrainOptions, work: Path, turbo: bool,
               on_step: TrainStepCb) -> dict[str, Any]:
    """Train a LoRA on `items`; resumes from `work`'s checkpoint; the adapter ends in work/final.

    The pipeline is left as it was found (the training adapter deleted, gradients off), whether
    training ends, fails or is cancelled."""
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    if not items:
        raise EngineError("bad_request", "nothing to train on")
    work.mkdir(parents=True, exist_ok=True)
    data = load_dataset(pipe, items, work / "latents", on_step, opts.steps)
    transformer = pipe.transformer
    device = pipe._execution_device
    cuda = torch.device(device).type == "cuda"
    for comp in (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.condition_encoder):
        comp.requires_grad_(False)
    transformer.add_adapter(LoraConfig(r=opts.rank, lora_alpha=2 * opts.rank, lora_dropout=DROPOUT,
                                       init_lora_weights=True, target_modules=TARGET_MODULES),
                            adapter_name=TRAIN_ADAPTER)
    try:
        params = [p for n, p in transformer.named_parameters() if "lora_" in n]
        for p in params:  # trainable weights in fp32 (the base stays bf16 on CUDA); peft casts the inputs
            p.data = p.data.float()
            p.requires_grad_(True)
        if cuda:
            transformer.enable_gradient_checkpointing()
        transformer.train()
        optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=WEIGHT_DECAY)
        scheduler = _schedule(optimizer, opts.steps)
        gen = torch.Generator("cpu").manual_seed(opts.seed)
        step, ema = 0, None
        ckpt = read_checkpoint(work)
        if ckpt is not None:
            set_peft_model_state_dict(transformer, load_file(str(ckpt / "adapter.safetensors")),
                                      adapter_name=TRAIN_ADAPTER)
            st = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=False)
            optimizer.load_state_dict(st["optimizer"])
            scheduler.load_state_dict(st["scheduler"])
            gen.set_state(st["rng"])
            state = json.loads((ckpt / "state.json").read_text())
            step, ema = int(state["step"]), state.get("loss")
        on_step(step, opts.steps, ema, "resumed" if step else "training")
        accum = min(GRAD_ACCUM, len(data))
        timesteps = torch.tensor(TURBO_TIMESTEPS)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else _null()
        first_step, t0 = step, time.perf_counter()
        last_loss = ema
        while step < opts.steps:
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for j in range(accum):
                k = step * accum + j
                ex = data[_order(len(data), opts.seed, k // len(data))[k % len(data)]]
                x0 = ex["target"].to(device)
                noise = torch.randn(x0.shape, generator=gen).to(device=device, dtype=x0.dtype)
                if turbo:
                    t = timesteps[torch.randint(0, len(timesteps), (1,), generator=gen)]
                else:
                    u = torch.rand(1, generator=gen)
                    t = 3.0 * u / (1 + 2.0 * u)  # the shift-3 schedule, continuous
                t = t.to(device=device, dtype=x0.dtype)
                xt = t.view(-1, 1, 1) * noise + (1 - t.view(-1, 1, 1)) * x0
                with autocast:
                    pred = transformer(hidden_states=xt, timestep=t, timestep_r=t,
                                       encoder_hidden_states=ex["cond"].to(device),
                                       context_latents=ex["context"].to(device), return_dict=False)[0]
                loss = F.mse_loss(pred.float(), (noise - x0).float())
                (loss / accum).backward()
                total += float(loss.detach()) / accum
            if not math.isfinite(total):
                raise EngineError("bad_request", f"the loss became {total} at step {step + 1}; try a lower --lr")
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            step += 1
            ema = total if ema is None else LOSS_SMOOTHING * ema + (1 - LOSS_SMOOTHING) * total
            last_loss = total
            if step % opts.checkpoint_every == 0 and step < opts.steps:
                write_checkpoint(work, transformer, optimizer, scheduler, gen, step, ema)
            on_step(step, opts.steps, ema, "training")
        seconds = time.perf_counter() - t0
        final = _write_final(pipe, work)
        return {"steps": step, "final_loss": None if ema is None else round(float(ema), 6),
                "last_loss": None if last_loss is None else round(float(last_loss), 6),
                "trained_steps": step - first_step, "seconds": round(seconds, 3),
                "steps_per_second": round((step - first_step) / seconds, 4) if seconds > 0 else None,
                "rank": opts.rank, "path": str(final), "size": sum(f.stat().st_size for f in final.iterdir())}
    finally:
        transformer.eval()
        if cuda:
            transformer.disable_gradient_checkpointing()
        transformer.delete_adapters(TRAIN_ADAPTER)
        transformer.requires_grad_(False)
        if cuda:
            torch.cuda.empty_cache()


def _write_final(pipe: Any, work: Path) -> Path:
    """The adapter as diffusers saves a LoRA (`load_lora_weights` reads it), via final.tmp -> final."""
    tmp, final = work / "final.tmp", work / "final"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)
    state = {k: v.to(torch.float32) for k, v in _lora_state(pipe.transformer).items()}
    type(pipe).save_lora_weights(str(tmp), transformer_lora_layers=state, weight_name=WEIGHTS_NAME)
    for f in tmp.iterdir():
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(work)
    return final


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None
