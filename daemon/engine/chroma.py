"""Melody conditioning input: the one-hot chromagram MusicGen-melody was trained on.

transformers' MusicgenMelodyFeatureExtractor computes this with torchaudio, which
cannot sit beside a CPU or aarch64 torch build (every torchaudio wheel links the
CUDA torch libraries). The computation is small, so it is done here with torch.stft:
power spectrogram (n_fft 16384, hop 4096, Hann, centred), 12-bin chroma filter bank,
then the loudest pitch class of each frame set to 1 and the rest to 0. Since only
that argmax survives, the spectrogram's normalisation does not matter.

Unlike audiocraft, no Demucs stem separation runs first (its weights are another
download): drums in the reference blur the chroma, so a melodic reference works best.
"""

from __future__ import annotations

import numpy as np
import torch

N_FFT = 16384
HOP = 4096
NUM_CHROMA = 12


def fit_to_duration(melody: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    """Loop a short melody or cut a long one so it spans the clip being generated."""
    want = max(1, int(round(seconds * sample_rate)))
    if melody.shape[0] >= want:
        return melody[:want]
    reps = -(-want // melody.shape[0])
    return np.tile(melody, reps)[:want]


def chroma_features(melody: np.ndarray, sample_rate: int, *, batch: int = 1) -> torch.Tensor:
    """[batch, frames, 12] float32 one-hot chroma of a mono melody (the same for every prompt)."""
    from transformers.audio_utils import chroma_filter_bank

    wav = torch.from_numpy(np.ascontiguousarray(melody, dtype=np.float32))
    if wav.shape[0] < N_FFT:  # as the reference extractor: centre-pad very short input
        pad = N_FFT - wav.shape[0]
        wav = torch.nn.functional.pad(wav, (pad // 2, pad - pad // 2))
    spec = torch.stft(wav, n_fft=N_FFT, hop_length=HOP, window=torch.hann_window(N_FFT), center=True,
                      pad_mode="reflect", return_complex=True).abs().pow(2)  # [freq, frames]
    filters = torch.from_numpy(chroma_filter_bank(sampling_rate=sample_rate, num_frequency_bins=N_FFT, tuning=0,
                                                  num_chroma=NUM_CHROMA)).float()  # [12, freq]
    raw = filters @ spec  # [12, frames]
    idx = raw.argmax(dim=0)  # [frames]
    onehot = torch.nn.functional.one_hot(idx, NUM_CHROMA).float()  # [frames, 12]
    return onehot.unsqueeze(0).expand(batch, -1, -1).contiguous()
