"""Running an inference module as a frozen TorchScript trace, one per device.

``FrozenTrace(module, example)`` is an ``nn.Module`` that, on the first call with inputs on a
given device, traces ``module`` (``torch.jit.trace``) on ``example(device)``, freezes the trace
(``torch.jit.freeze``: weights become constants, attribute lookups disappear) and from then on
runs that graph for inputs on that device. Graphs run without the TorchScript profiling
executor's optimisation passes (``torch.jit.optimized_execution(False)``): on CPU those passes
only add warm-up calls and split fused ops (``addmm`` into ``mm`` + ``add``).

The traced module must be shape-generic: its ``forward`` may not branch in Python on input
sizes or values, because a trace records one path. Sizes read from tensors (``x.shape[i]``) and
used as op arguments are recorded as such and follow the inputs. ``module`` stays the eager
reference (``FrozenTrace.module``); ``.to(device)`` moves it, and a later call traces again on
the new device. Tracing happens under ``torch.no_grad()``; outputs need no gradient.
``torch.jit`` is deprecated since torch 2.10 (its warnings are silenced here); where tracing or
freezing fails, the eager module runs instead.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["FrozenTrace"]


class FrozenTrace(nn.Module):
    """``module`` run through a frozen trace per device; ``example(device)`` gives the tuple of
    tracing inputs (small ones trace faster; any size the module accepts is fine)."""

    def __init__(self, module: nn.Module,
                 example: Callable[[torch.device], tuple[torch.Tensor, ...]]):
        super().__init__()
        self.module = module.eval()
        self._example = example
        self._graphs: dict[torch.device, nn.Module] = {}
        self._lock = threading.Lock()

    def graph(self, device: torch.device | str) -> nn.Module:
        """The frozen trace for ``device``, made on first use (the eager module itself where
        this torch cannot trace or freeze it)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        graph = self._graphs.get(device)
        if graph is None:
            with self._lock:
                graph = self._graphs.get(device)
                if graph is None:
                    graph = self._graphs[device] = self._trace(device)
        return graph

    def _trace(self, device: torch.device) -> nn.Module:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit since torch 2.10
            try:
                traced = torch.jit.trace(self.module, self._example(device), check_trace=False)
                return torch.jit.freeze(traced.eval())
            except (AttributeError, NotImplementedError, RuntimeError):
                return self.module  # a torch without TorchScript: the eager module, as is

    def _apply(self, fn, *args, **kwargs):
        self._graphs = {}  # weights may have moved or changed dtype: trace again when used
        return super()._apply(fn, *args, **kwargs)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        graph = self.graph(inputs[0].device)
        with torch.jit.optimized_execution(False):
            return graph(*inputs)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_graphs"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
