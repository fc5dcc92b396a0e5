"""Deterministic degraded test sides: a condition such as ``crop=1,babble=3,snr=5`` crops the
probe and mixes in other talkers or coloured noise at a given SNR.

Every random choice (crop window, which talkers, their windows, the noise) comes from
``rng_for("condition", name, key)``, where ``key`` is a stable string such as the file's
relative path, so the same condition applied to the same file is always the same signal.

Condition syntax: ``clean``, or comma-separated ``key=value`` among ``crop=SECONDS``,
``babble=N`` (N other talkers), ``noise=white|pink|brown`` and ``snr=DB``. ``snr`` is required
with ``babble`` or ``noise`` and not allowed without; ``babble`` and ``noise`` exclude each
other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speakerdb.errors import AudioError, UsageError
from speakerdb.eval.degrade import SR, babble, coloured_noise, crop, mix, rng_for
from speakerdb.eval.trials import LabelledFile

__all__ = [
    "CLEAN",
    "NOISE_EXPONENTS",
    "Condition",
    "apply_condition",
    "babble_partners",
    "parse_condition",
]

NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
_KEYS = ("crop", "babble", "noise", "snr")


@dataclass(frozen=True)
class Condition:
    """A parsed condition; ``name`` is its canonical spelling (keys in the order crop, babble,
    noise, snr; numbers without a trailing ``.0``), so equal conditions compare equal."""

    name: str
    crop_s: float | None = None
    babble: int = 0
    noise: str | None = None
    snr_db: float | None = None

    @property
    def is_clean(self) -> bool:
        return self.crop_s is None and self.babble == 0 and self.noise is None


CLEAN = Condition("clean")


def _number(x: float) -> str:
    """``x`` as short text: ``1`` for 1.0, ``2.5`` for 2.5, exact to the float."""
    text = repr(float(x) + 0.0)
    return text.removesuffix(".0")


def _float(text: str, key: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise UsageError(f"condition {text!r}: {key}={value!r} is not a number") from None
    if not math.isfinite(x):
        raise UsageError(f"condition {text!r}: {key}={value!r} is not a finite number")
    return x


def _fields(text: str) -> dict[str, str]:
    """The ``key=value`` fields of ``text``; unknown, repeated or empty ones are errors."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key or not value:
            raise UsageError(f"condition {text!r}: {part.strip()!r} is not key=value")
        key = key.lower()
        if key not in _KEYS:
            raise UsageError(
                f"condition {text!r}: unknown key {key!r} (use {', '.join(_KEYS)} or 'clean')"
            )
        if key in fields:
            raise UsageError(f"condition {text!r}: {key} given twice")
        fields[key] = value
    return fields


def parse_condition(text: str) -> Condition:
    """The condition spelled by ``text``; any invalid spelling is a ``UsageError`` naming it."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"condition {text!r}: empty; use 'clean' or e.g. 'crop=1,babble=3,snr=5'")
    if text.strip().lower() == "clean":
        return CLEAN
    fields = _fields(text)
    crop_s = babble_n = noise = snr = None
    if "crop" in fields:
        crop_s = _float(text, "crop", fields["crop"])
        if crop_s <= 0:
            raise UsageError(f"condition {text!r}: crop must be > 0 seconds")
        if round(crop_s * SR) < 1:
            raise UsageError(f"condition {text!r}: crop={fields['crop']} is under one sample")
    if "babble" in fields:
        value = fields["babble"]
        if not value.isdigit():
            raise UsageError(f"condition {text!r}: babble={value!r} is not a whole number")
        babble_n = int(value)
        if babble_n < 1:
            raise UsageError(f"condition {text!r}: babble must be >= 1 talker")
    if "noise" in fields:
        noise = fields["noise"].lower()
        if noise not in NOISE_EXPONENTS:
            raise UsageError(
                f"condition {text!r}: noise={fields['noise']!r} is not one of "
                + ", ".join(NOISE_EXPONENTS)
            )
    if babble_n is not None and noise is not None:
        raise UsageError(f"condition {text!r}: babble and noise exclude each other")
    if "snr" in fields:
        if babble_n is None and noise is None:
            raise UsageError(f"condition {text!r}: snr needs babble or noise")
        snr = _float(text, "snr", fields["snr"])
    elif babble_n is not None or noise is not None:
        raise UsageError(f"condition {text!r}: babble and noise need snr=DB")
    parts = []
    if crop_s is not None:
        parts.append(f"crop={_number(crop_s)}")
    if babble_n is not None:
        parts.append(f"babble={babble_n}")
    if noise is not None:
        parts.append(f"noise={noise}")
    if snr is not None:
        parts.append(f"snr={_number(snr)}")
    return Condition(",".join(parts), crop_s, babble_n or 0, noise, snr)


def _parts(
    cond: Condition, samples: np.ndarray, key: str, others: Sequence[np.ndarray] = ()
) -> tuple[np.ndarray, np.ndarray | None]:
    """The cropped target and the unscaled interference (None without babble or noise) that
    ``apply_condition`` mixes at ``cond.snr_db``."""
    x = np.asarray(samples, np.float32)
    if len(x) == 0:
        raise AudioError(key, f"no samples to apply condition {cond.name}")
    rng = rng_for("condition", cond.name, key)
    target = crop(x, round(cond.crop_s * SR), rng) if cond.crop_s is not None else x.copy()
    n = len(target)
    if cond.babble:
        if len(others) < cond.babble:
            raise UsageError(
                f"condition {cond.name}: {key} needs {cond.babble} other talkers, "
                f"got {len(others)}"
            )
        picks = rng.choice(len(others), cond.babble, replace=False)
        waves = [np.asarray(others[int(i)], np.float32) for i in picks]
        if any(len(w) == 0 for w in waves):
            raise UsageError(f"condition {cond.name}: {key}: an empty babble waveform was given")
        interference = babble(waves, n, rng)
    elif cond.noise is not None:
        interference = coloured_noise(n, rng, NOISE_EXPONENTS[cond.noise])
    else:
        return target, None
    if not np.any(interference):
        raise AudioError(key, f"condition {cond.name}: the interference is silent")
    return target, interference


def apply_condition(
    cond: Condition, samples: np.ndarray, key: str, others: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """``samples`` (float32, 16 kHz) under ``cond``: cropped to ``cond.crop_s`` (a random
    window, the signal tiled when shorter; the whole signal without crop), then mixed with
    ``cond.babble`` talkers chosen from ``others`` (waveforms of other speakers, picked by the
    caller) or with coloured noise, at ``cond.snr_db`` over the whole window. ``key`` seeds
    every choice. Clean returns the input values unchanged."""
    if cond.is_clean:
        return np.asarray(samples, np.float32)
    target, interference = _parts(cond, samples, key, others)
    if interference is None:
        return target
    return mix(target, interference, cond.snr_db)


def babble_partners(
    cond: Condition, key: str, speaker: str, files: Sequence[LabelledFile]
) -> list[LabelledFile]:
    """``cond.babble`` files of distinct speakers other than ``speaker``, chosen from ``files``
    by ``rng_for("babble", cond.name, key)``: the waveforms to load and pass as ``others``.
    Fewer other speakers than needed is a ``UsageError``."""
    if not cond.babble:
        return []
    by_speaker: dict[str, list[LabelledFile]] = {}
    for f in sorted(set(files), key=lambda f: (f.speaker, f.path)):
        if f.speaker != speaker:
            by_speaker.setdefault(f.speaker, []).append(f)
    names = sorted(by_speaker)
    if len(names) < cond.babble:
        raise UsageError(
            f"condition {cond.name}: {key} needs {cond.babble} other speakers, "
            f"found {len(names)}"
        )
    rng = rng_for("babble", cond.name, key)
    chosen = []
    for i in rng.choice(len(names), cond.babble, replace=False):
        pool = by_speaker[names[int(i)]]
        chosen.append(pool[int(rng.integers(len(pool)))])
    return chosen
