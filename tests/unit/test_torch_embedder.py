"""Running torch models: exact-length batching equals one-at-a-time, short inputs, devices."""

import numpy as np
import pytest
import torch

from speakerdb.errors import UsageError
from speakerdb.model.torch_embedder import TorchEmbedder, resolve_device


class Toy(torch.nn.Module):
    """(B, n) → (B, 256): depends on every sample and on n, so padding would show."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 128, 9, padding=4)
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        h = torch.tanh(self.conv(x[:, None, :]))
        return torch.cat([h.mean(-1), h.std(-1)], dim=1)


def make(**kw):
    torch.manual_seed(0)
    return TorchEmbedder(Toy(), name="toy", sha256="0" * 64, raw_dim=256,
                         dims=(64, 128, 192, 256), default_threshold=0.5, device="cpu", **kw)


def test_batched_equals_one_at_a_time_and_groups_by_length():
    emb = make(max_batch=2)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (3000, 5000, 3000, 3000, 5000)]
    together = emb(waves)
    alone = np.stack([emb([w])[0] for w in waves])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    first = emb.module.calls[:3]  # the batched call's groups: 3000 x2, 3000 x1, 5000 x2
    assert sorted(first) == sorted([(2, 3000), (1, 3000), (2, 5000)])


def test_short_inputs_are_tiled_not_padded():
    emb = make(min_samples=1600)
    w = np.linspace(-1, 1, 400, dtype=np.float32)
    np.testing.assert_allclose(emb([w])[0], emb([np.tile(w, 4)])[0], atol=1e-6)
    assert np.isfinite(emb([np.zeros(0, np.float32)])).all()


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UsageError, match="^device 'tpu'") as e:
        resolve_device("tpu")
    assert e.value.option == "device"
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA"):
            resolve_device("cuda")


def test_batches_are_capped_by_total_samples():
    emb = make(max_batch=16, max_batch_samples=10_000, min_samples=400)
    rng = np.random.default_rng(1)
    long = [rng.standard_normal(4000).astype(np.float32) for _ in range(5)]
    short = [rng.standard_normal(500).astype(np.float32) for _ in range(30)]
    together = emb(long + short)
    assert sorted(emb.module.calls) == sorted([(2, 4000), (2, 4000), (1, 4000),
                                               (16, 500), (14, 500)])
    alone = np.stack([emb([w])[0] for w in long + short])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    huge = make(max_batch=4, max_batch_samples=100)
    huge([rng.standard_normal(3000).astype(np.float32)] * 3)
    assert huge.module.calls == [(1, 3000)] * 3  # never an empty batch
