"""A stand-in for ``torchaudio.compliance.kaldi.fbank`` in plain torch, for running the original
3D-Speaker front end where torchaudio is not installed (``bench/reference_campplus.py``).

The functions below follow torchaudio's ``src/torchaudio/compliance/kaldi.py`` (BSD-2-Clause,
pytorch/audio) step for step, with its defaults: frames cut by ``as_strided`` (snip_edges, or
reflected edges), optional Gaussian dither, per-frame DC removal, raw log energy, pre-emphasis
with a replicated first sample, the window (povey = symmetric Hann ** 0.85), zero padding to a
power of two, ``|rfft|`` squared, triangular mel banks built in float32 from
``1127 ln(1 + f / 700)`` (VTLN warping included) with a zero Nyquist column, ``log(max(x, eps))``
with eps = float32 epsilon, optional energy column and column mean subtraction.

It is deliberately *not* speakerdb's own fbank: the benchmark compares speakerdb against the
original pipeline's algorithm. ``install()`` registers the modules ``torchaudio``,
``torchaudio.compliance`` and ``torchaudio.compliance.kaldi`` in ``sys.modules``.
"""

from __future__ import annotations

import math
import sys
import types

import torch
from torch import Tensor

__all__ = ["fbank", "get_mel_banks", "install"]

EPSILON = torch.tensor(torch.finfo(torch.float).eps)
MILLISECONDS_TO_SECONDS = 0.001
HAMMING, HANNING, POVEY, RECTANGULAR, BLACKMAN = (
    "hamming", "hanning", "povey", "rectangular", "blackman")


def _get_epsilon(device, dtype):
    return EPSILON.to(device=device, dtype=dtype)


def _next_power_of_2(x: int) -> int:
    return 1 if x == 0 else 2 ** (x - 1).bit_length()


def _get_strided(waveform: Tensor, window_size: int, window_shift: int,
                 snip_edges: bool) -> Tensor:
    """(m, window_size) frames of the 1-D ``waveform``."""
    assert waveform.dim() == 1
    num_samples = waveform.size(0)
    if snip_edges:
        if num_samples < window_size:
            return torch.empty((0, 0), dtype=waveform.dtype, device=waveform.device)
        m = 1 + (num_samples - window_size) // window_shift
    else:
        reversed_waveform = torch.flip(waveform, [0])
        m = (num_samples + (window_shift // 2)) // window_shift
        pad = window_size // 2 - window_shift // 2
        pad_right = reversed_waveform
        if pad > 0:
            pad_left = reversed_waveform[-pad:]
            waveform = torch.cat((pad_left, waveform, pad_right), dim=0)
        else:
            waveform = torch.cat((waveform[-pad:], pad_right), dim=0)
    strides = (window_shift * waveform.stride(0), waveform.stride(0))
    return waveform.as_strided((m, window_size), strides)


def _feature_window_function(window_type: str, window_size: int, blackman_coeff: float,
                             device, dtype) -> Tensor:
    if window_type == HANNING:
        return torch.hann_window(window_size, periodic=False, device=device, dtype=dtype)
    if window_type == HAMMING:
        return torch.hamming_window(window_size, periodic=False, alpha=0.54, beta=0.46,
                                    device=device, dtype=dtype)
    if window_type == POVEY:
        return torch.hann_window(window_size, periodic=False, device=device,
                                 dtype=dtype).pow(0.85)
    if window_type == RECTANGULAR:
        return torch.ones(window_size, device=device, dtype=dtype)
    if window_type == BLACKMAN:
        a = 2 * math.pi / (window_size - 1)
        w = torch.arange(window_size, device=device, dtype=dtype)
        return (blackman_coeff - 0.5 * torch.cos(a * w)
                + (0.5 - blackman_coeff) * torch.cos(2 * a * w)).to(device=device, dtype=dtype)
    raise Exception("Invalid window type " + window_type)


def _get_log_energy(strided_input: Tensor, epsilon: Tensor, energy_floor: float) -> Tensor:
    device, dtype = strided_input.device, strided_input.dtype
    log_energy = torch.max(strided_input.pow(2).sum(1), epsilon).log()
    if energy_floor == 0.0:
        return log_energy
    return torch.max(log_energy, torch.tensor(math.log(energy_floor), device=device, dtype=dtype))


def _get_waveform_and_window_properties(waveform: Tensor, channel: int, sample_frequency: float,
                                        frame_shift: float, frame_length: float,
                                        round_to_power_of_two: bool,
                                        preemphasis_coefficient: float):
    channel = max(channel, 0)
    assert channel < waveform.size(0), f"Invalid channel {channel} for size {waveform.size(0)}"
    waveform = waveform[channel, :]
    window_shift = int(sample_frequency * frame_shift * MILLISECONDS_TO_SECONDS)
    window_size = int(sample_frequency * frame_length * MILLISECONDS_TO_SECONDS)
    padded_window_size = _next_power_of_2(window_size) if round_to_power_of_two else window_size
    assert 2 <= window_size <= len(waveform), (
        f"choose a window size {window_size} that is [2, {len(waveform)}]")
    assert 0 < window_shift, "`window_shift` must be greater than 0"
    assert padded_window_size % 2 == 0, "the padded `window_size` must be divisible by two"
    assert 0.0 <= preemphasis_coefficient <= 1.0
    assert sample_frequency > 0
    return waveform, window_shift, window_size, padded_window_size


def _get_window(waveform: Tensor, padded_window_size: int, window_size: int, window_shift: int,
                window_type: str, blackman_coeff: float, snip_edges: bool, raw_energy: bool,
                energy_floor: float, dither: float, remove_dc_offset: bool,
                preemphasis_coefficient: float):
    device, dtype = waveform.device, waveform.dtype
    epsilon = _get_epsilon(device, dtype)
    strided_input = _get_strided(waveform, window_size, window_shift, snip_edges)
    if dither != 0.0:
        rand_gauss = torch.randn(strided_input.shape, device=device, dtype=dtype)
        strided_input = strided_input + rand_gauss * dither
    if remove_dc_offset:
        row_means = torch.mean(strided_input, dim=1).unsqueeze(1)
        strided_input = strided_input - row_means
    if raw_energy:
        signal_log_energy = _get_log_energy(strided_input, epsilon, energy_floor)
    if preemphasis_coefficient != 0.0:
        offset_strided_input = torch.nn.functional.pad(
            strided_input.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)
        strided_input = strided_input - preemphasis_coefficient * offset_strided_input[:, :-1]
    window_function = _feature_window_function(
        window_type, window_size, blackman_coeff, device, dtype).unsqueeze(0)
    strided_input = strided_input * window_function
    if padded_window_size != window_size:
        padding_right = padded_window_size - window_size
        strided_input = torch.nn.functional.pad(
            strided_input.unsqueeze(0), (0, padding_right), mode="constant", value=0).squeeze(0)
    if not raw_energy:
        signal_log_energy = _get_log_energy(strided_input, epsilon, energy_floor)
    return strided_input, signal_log_energy


def _subtract_column_mean(tensor: Tensor, subtract_mean: bool) -> Tensor:
    if subtract_mean:
        tensor = tensor - torch.mean(tensor, dim=0).unsqueeze(0)
    return tensor


def inverse_mel_scale(mel_freq: Tensor) -> Tensor:
    return 700.0 * ((mel_freq / 1127.0).exp() - 1.0)


def mel_scale_scalar(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


def mel_scale(freq: Tensor) -> Tensor:
    return 1127.0 * (1.0 + freq / 700.0).log()


def vtln_warp_freq(vtln_low_cutoff: float, vtln_high_cutoff: float, low_freq: float,
                   high_freq: float, vtln_warp_factor: float, freq: Tensor) -> Tensor:
    assert vtln_low_cutoff > low_freq
    assert vtln_high_cutoff < high_freq
    low = vtln_low_cutoff * max(1.0, vtln_warp_factor)
    high = vtln_high_cutoff * min(1.0, vtln_warp_factor)
    scale = 1.0 / vtln_warp_factor
    f_low, f_high = scale * low, scale * high
    assert low > low_freq and high < high_freq
    scale_left = (f_low - low_freq) / (low - low_freq)
    scale_right = (high_freq - f_high) / (high_freq - high)
    res = torch.empty_like(freq)
    outside = torch.lt(freq, low_freq) | torch.gt(freq, high_freq)
    before_l, before_h, after_h = torch.lt(freq, low), torch.lt(freq, high), torch.ge(freq, high)
    res[after_h] = high_freq + scale_right * (freq[after_h] - high_freq)
    res[before_h] = scale * freq[before_h]
    res[before_l] = low_freq + scale_left * (freq[before_l] - low_freq)
    res[outside] = freq[outside]
    return res


def vtln_warp_mel_freq(vtln_low_cutoff: float, vtln_high_cutoff: float, low_freq,
                       high_freq: float, vtln_warp_factor: float, mel_freq: Tensor) -> Tensor:
    return mel_scale(vtln_warp_freq(vtln_low_cutoff, vtln_high_cutoff, low_freq, high_freq,
                                    vtln_warp_factor, inverse_mel_scale(mel_freq)))


def get_mel_banks(num_bins: int, window_length_padded: int, sample_freq: float,
                  low_freq: float, high_freq: float, vtln_low: float, vtln_high: float,
                  vtln_warp_factor: float):
    """(bins (num_bins, window_length_padded / 2), center frequencies (num_bins,))."""
    assert num_bins > 3, "Must have at least 3 mel bins"
    assert window_length_padded % 2 == 0
    num_fft_bins = window_length_padded / 2
    nyquist = 0.5 * sample_freq
    if high_freq <= 0.0:
        high_freq += nyquist
    assert (0.0 <= low_freq < nyquist) and (0.0 < high_freq <= nyquist) and (low_freq < high_freq)
    fft_bin_width = sample_freq / window_length_padded
    mel_low_freq = mel_scale_scalar(low_freq)
    mel_high_freq = mel_scale_scalar(high_freq)
    mel_freq_delta = (mel_high_freq - mel_low_freq) / (num_bins + 1)
    if vtln_high < 0.0:
        vtln_high += nyquist
    assert vtln_warp_factor == 1.0 or (
        (low_freq < vtln_low < high_freq) and (0.0 < vtln_high < high_freq)
        and (vtln_low < vtln_high))
    bin_ = torch.arange(num_bins).unsqueeze(1)
    left_mel = mel_low_freq + bin_ * mel_freq_delta
    center_mel = mel_low_freq + (bin_ + 1.0) * mel_freq_delta
    right_mel = mel_low_freq + (bin_ + 2.0) * mel_freq_delta
    if vtln_warp_factor != 1.0:
        left_mel = vtln_warp_mel_freq(vtln_low, vtln_high, low_freq, high_freq,
                                      vtln_warp_factor, left_mel)
        center_mel = vtln_warp_mel_freq(vtln_low, vtln_high, low_freq, high_freq,
                                        vtln_warp_factor, center_mel)
        right_mel = vtln_warp_mel_freq(vtln_low, vtln_high, low_freq, high_freq,
                                       vtln_warp_factor, right_mel)
    center_freqs = inverse_mel_scale(center_mel)
    mel = mel_scale(fft_bin_width * torch.arange(num_fft_bins)).unsqueeze(0)
    up_slope = (mel - left_mel) / (center_mel - left_mel)
    down_slope = (right_mel - mel) / (right_mel - center_mel)
    if vtln_warp_factor == 1.0:
        bins = torch.max(torch.zeros(1), torch.min(up_slope, down_slope))
    else:
        bins = torch.zeros_like(up_slope)
        up_idx = torch.gt(mel, left_mel) & torch.le(mel, center_mel)
        down_idx = torch.gt(mel, center_mel) & torch.lt(mel, right_mel)
        bins[up_idx] = up_slope[up_idx]
        bins[down_idx] = down_slope[down_idx]
    return bins, center_freqs


def fbank(waveform: Tensor, blackman_coeff: float = 0.42, channel: int = -1,
          dither: float = 0.0, energy_floor: float = 1.0, frame_length: float = 25.0,
          frame_shift: float = 10.0, high_freq: float = 0.0, htk_compat: bool = False,
          low_freq: float = 20.0, min_duration: float = 0.0, num_mel_bins: int = 23,
          preemphasis_coefficient: float = 0.97, raw_energy: bool = True,
          remove_dc_offset: bool = True, round_to_power_of_two: bool = True,
          sample_frequency: float = 16000.0, snip_edges: bool = True,
          subtract_mean: bool = False, use_energy: bool = False, use_log_fbank: bool = True,
          use_power: bool = True, vtln_high: float = -500.0, vtln_low: float = 100.0,
          vtln_warp: float = 1.0, window_type: str = POVEY) -> Tensor:
    """Kaldi ``compute-fbank-feats`` of ``waveform`` (c, n): (m, num_mel_bins + use_energy)."""
    device, dtype = waveform.device, waveform.dtype
    waveform, window_shift, window_size, padded_window_size = (
        _get_waveform_and_window_properties(waveform, channel, sample_frequency, frame_shift,
                                            frame_length, round_to_power_of_two,
                                            preemphasis_coefficient))
    if len(waveform) < min_duration * sample_frequency:
        return torch.empty(0, device=device, dtype=dtype)
    strided_input, signal_log_energy = _get_window(
        waveform, padded_window_size, window_size, window_shift, window_type, blackman_coeff,
        snip_edges, raw_energy, energy_floor, dither, remove_dc_offset, preemphasis_coefficient)
    spectrum = torch.fft.rfft(strided_input).abs()
    if use_power:
        spectrum = spectrum.pow(2.0)
    mel_energies, _ = get_mel_banks(num_mel_bins, padded_window_size, sample_frequency, low_freq,
                                    high_freq, vtln_low, vtln_high, vtln_warp)
    mel_energies = mel_energies.to(device=device, dtype=dtype)
    mel_energies = torch.nn.functional.pad(mel_energies, (0, 1), mode="constant", value=0)
    mel_energies = torch.mm(spectrum, mel_energies.T)
    if use_log_fbank:
        mel_energies = torch.max(mel_energies, _get_epsilon(device, dtype)).log()
    if use_energy:
        signal_log_energy = signal_log_energy.unsqueeze(1)
        if htk_compat:
            mel_energies = torch.cat((mel_energies, signal_log_energy), dim=1)
        else:
            mel_energies = torch.cat((signal_log_energy, mel_energies), dim=1)
    return _subtract_column_mean(mel_energies, subtract_mean)


def install() -> str:
    """Make ``import torchaudio.compliance.kaldi as Kaldi`` work: the real torchaudio when it
    imports, else this module under that name. Returns which one is in use."""
    try:
        import torchaudio.compliance.kaldi  # noqa: F401

        return "torchaudio " + getattr(sys.modules["torchaudio"], "__version__", "?")
    except Exception:  # noqa: BLE001 - absent or broken: use the port
        for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
            del sys.modules[name]
    top = types.ModuleType("torchaudio")
    compliance = types.ModuleType("torchaudio.compliance")
    kaldi = types.ModuleType("torchaudio.compliance.kaldi")
    kaldi.fbank = fbank
    kaldi.get_mel_banks = get_mel_banks
    compliance.kaldi = kaldi
    top.compliance = compliance
    top.__version__ = "0+bench-shim"
    sys.modules.update({"torchaudio": top, "torchaudio.compliance": compliance,
                        "torchaudio.compliance.kaldi": kaldi})
    return "bench/_kaldi_shim.py (port of torchaudio.compliance.kaldi.fbank)"
