"""Generated audio for tests of the input layer: a speech-like signal and a corpus of good and
bad files with the outcome ``speakerdb.audio.prepare`` must give for each.

    from tests.audio_corpus import write_bad_corpus, speechlike, EXPECTED

    paths = write_bad_corpus(tmp_path)          # {name: Path}
    for name, path in paths.items():
        kind, what = EXPECTED[name]             # ("ok", n_segments) or ("error", ErrorClass)

Everything is deterministic (fixed seeds) and cheap; the 10-minute file takes well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speakerdb.errors import AudioError, SilentAudioError, TooShortError

__all__ = ["EXPECTED", "MESSAGES", "speechlike", "pcm16_wav", "write_m4a", "write_bad_corpus"]

# name -> ("ok", number of segments prepare() gives) or ("error", the exact error class)
EXPECTED: dict[str, tuple[str, object]] = {
    "missing.wav": ("error", AudioError),  # path returned but never written
    "empty.wav": ("error", AudioError),  # 0 bytes
    "text.wav": ("error", AudioError),  # a text file named .wav
    "truncated_header.wav": ("error", AudioError),  # cut inside the RIFF header
    "truncated_data.wav": ("error", AudioError),  # 3 s file cut mid-data: header says more
    "nan.wav": ("error", AudioError),  # float32 wav with NaN samples
    "short.wav": ("error", TooShortError),  # 0.2 s clip
    "sparse.wav": ("error", TooShortError),  # 0.3 s of speech inside 5 s of digital silence
    "silence.wav": ("error", SilentAudioError),  # 10 s of digital silence
    "stereo.wav": ("ok", 1),  # 3 s, 2 different channels
    "rate8k.wav": ("ok", 1),  # 3 s at 8 kHz
    "rate48k.wav": ("ok", 1),  # 3 s at 48 kHz
    "long.wav": ("ok", 60),  # 10 minutes -> 60 segments of 10 s
    "speech.m4a": ("ok", 1),  # 3 s AAC in an MP4 container (as VoxCeleb2), via PyAV
    "rate1hz.wav": ("error", AudioError),  # 192 KB of 16-bit samples whose header says 1 Hz
    "rate20hz.wav": ("error", AudioError),  # the same samples at 20 Hz (80 minutes)
    "rate4k.wav": ("ok", 1),  # 3 s at 4 kHz, the lowest rate taken
    "c_\udcff.wav": ("ok", 1),  # 3 s whose file name has the byte 0xff (not UTF-8)
    "random.mp3": ("error", AudioError),  # 20 kB of random bytes named .mp3
    "speech.mp3": ("ok", 1),  # 3 s MPEG layer III (libsndfile), read by content, not by name
}

# name -> words the error message must hold (and words it must not), where they matter
MESSAGES: dict[str, tuple[str, str | None]] = {
    "random.mp3": ("not audio", "does not exist"),  # not libsndfile's misleading reason
    "text.wav": ("not audio", None),
    "empty.wav": ("empty file", None),
}


_BLOCK_S = 13.7  # longer signals repeat a block this long (not a multiple of 10 s segments)


def speechlike(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """(round(seconds * rate),) float32 in [-1, 1]: amplitude-modulated harmonics of a wobbling
    pitch plus a little noise, peak 0.5; every 25 ms frame is far above -60 dBFS.

    Beyond 13.7 s the signal repeats one 13.7 s block at a level drawn per repeat (0.6 to 1.0),
    so that minutes of it cost about as little as seconds."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    block = int(round(_BLOCK_S * rate))
    if n > block:
        base = _speechlike(block, rate, rng)
        gains = rng.uniform(0.6, 1.0, size=-(-n // block)).astype(np.float32)
        return (gains[:, None] * base[None, :]).ravel()[:n]
    return _speechlike(n, rate, rng)


def _speechlike(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n, dtype=np.float64) / rate
    f0 = rng.uniform(100, 220)
    pitch = f0 * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = (2 * np.pi / rate) * np.cumsum(pitch)
    x = np.zeros(n, dtype=np.float32)
    for h, gain in enumerate((1.0, 0.6, 0.45, 0.3, 0.2), start=1):
        x += (gain * np.sin(h * phase + rng.uniform(0, 2 * np.pi))).astype(np.float32)
    syllables = 0.35 + 0.65 * np.abs(np.sin(np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 3)))
    x = x * syllables.astype(np.float32) + 0.05 * rng.standard_normal(n).astype(np.float32)
    return (0.5 * x / max(float(np.abs(x).max()), 1e-9)).astype(np.float32)


def write_m4a(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """Write mono float32 ``samples`` as AAC in an .m4a (MP4) container with PyAV."""
    import av

    with av.open(str(path), mode="w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        samples = np.asarray(samples, dtype=np.float32)
        for i in range(0, len(samples), 1024):  # AAC frames are 1024 samples; the last shorter
            chunk = np.ascontiguousarray(samples[None, i : i + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def pcm16_wav(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit mono WAV file of float ``samples`` whose header declares ``rate`` Hz (any rate,
    also those libsndfile refuses to write)."""
    from speakerdb.audio.wav import wav_bytes

    return wav_bytes(samples, rate, pcm16=True)


def write_bad_corpus(dir: Path, *, include_long: bool = True) -> dict[str, Path]:
    """Write the files of ``EXPECTED`` into ``dir`` (created if needed); returns {name: path}.

    ``missing.wav`` is returned but not written. ``include_long=False`` leaves out the
    10-minute ``long.wav``.
    """
    import soundfile as sf

    d = Path(dir)
    d.mkdir(parents=True, exist_ok=True)
    p = {name: d / name for name in EXPECTED if include_long or name != "long.wav"}
    r = 16000

    p["empty.wav"].write_bytes(b"")
    p["text.wav"].write_text("this is not audio, just some text\n" * 20)

    sf.write(p["truncated_data.wav"], speechlike(3.0, r, seed=1), r, subtype="PCM_16")
    whole = p["truncated_data.wav"].read_bytes()
    p["truncated_data.wav"].write_bytes(whole[: 44 + (len(whole) - 44) // 2 + 1])
    p["truncated_header.wav"].write_bytes(whole[:30])

    bad = speechlike(2.0, r, seed=2)
    bad[1000:1010] = np.nan
    sf.write(p["nan.wav"], bad, r, subtype="FLOAT")

    sf.write(p["short.wav"], speechlike(0.2, r, seed=3), r, subtype="PCM_16")
    sparse = np.zeros(5 * r, np.float32)
    sparse[2 * r : 2 * r + int(0.3 * r)] = speechlike(0.3, r, seed=4)
    sf.write(p["sparse.wav"], sparse, r, subtype="PCM_16")
    sf.write(p["silence.wav"], np.zeros(10 * r, np.float32), r, subtype="PCM_16")

    stereo = np.stack([speechlike(3.0, r, seed=5), speechlike(3.0, r, seed=6)], axis=1)
    sf.write(p["stereo.wav"], stereo, r, subtype="PCM_16")
    sf.write(p["rate8k.wav"], speechlike(3.0, 8000, seed=7), 8000, subtype="PCM_16")
    sf.write(p["rate48k.wav"], speechlike(3.0, 48000, seed=8), 48000, subtype="PCM_16")
    if include_long:
        sf.write(p["long.wav"], speechlike(600.0, r, seed=9), r, subtype="PCM_16")
    write_m4a(p["speech.m4a"], speechlike(3.0, r, seed=10), r)
    six = speechlike(6.0, r, seed=11)  # 96000 samples
    p["rate1hz.wav"].write_bytes(pcm16_wav(six, 1))
    p["rate20hz.wav"].write_bytes(pcm16_wav(six, 20))
    p["rate4k.wav"].write_bytes(pcm16_wav(speechlike(3.0, 4000, seed=12), 4000))
    p["c_\udcff.wav"].write_bytes(pcm16_wav(speechlike(3.0, r, seed=13), r))
    p["random.mp3"].write_bytes(np.random.default_rng(11).bytes(20_000))
    sf.write(p["speech.mp3"], speechlike(3.0, r, seed=12), r, format="MP3")
    return p
