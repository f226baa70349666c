"""Where the time of one decoding step goes: a breakdown by kind of work (chapter 14).

A decoding step runs one token through every layer. Its time is spent in a few kinds of
work, which forward hooks on the model's modules can tell apart without changing the model:

- ``layer matmuls``: the four weight matrices of each layer (``qkv_proj``, ``o_proj``,
  ``gate_up_proj``, ``down_proj``), in whatever format they are stored (fp32, bf16, int8,
  int4). They read most of the weights, so their time is bounded by memory bandwidth;
- ``LM head``: the output matrix, ``hidden x vocab`` (the largest single matrix of a small
  model with a large vocabulary);
- ``attention``: what ``Phi3Attention`` does besides its two matmuls: RoPE, writing the new
  key and value into the cache, and attending over every cached key and value;
- ``norms``: the RMSNorms (two per layer and one at the end);
- ``MLP activation``: SiLU and the gate's product;
- ``other``: everything outside those modules: the token embedding, the residual additions,
  the rotary tables, Python and PyTorch's dispatch between operations.

Times are this thread's CPU time (``time.thread_time_ns``): with one PyTorch thread every
operation runs on the calling thread, so other processes on a busy machine do not count
(with more threads, the work done on the others is missing: use one thread to profile). A
module's time excludes the modules inside it, so the kinds add up to the step's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from .cache import KVCache
from .generation import decode_step, prefill
from .phi3 import Phi3Attention, Phi3ForCausalLM, Phi3MLP, Phi3RMSNorm
from .validation import check_int

__all__ = ["KINDS", "DecodeProfile", "profile_decode"]

# The kinds of work of a decoding step, in the order they are drawn and printed.
KINDS = ("layer matmuls", "LM head", "attention", "norms", "MLP activation", "other")
_LAYER_MATMULS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


@dataclass(frozen=True)
class DecodeProfile:
    """The average decoding step of one model, broken down by kind of work.

    Attributes:
        ms: kind -> milliseconds per token (CPU time of this thread), for every kind of ``KINDS``.
        bytes_read: kind -> bytes a step reads from memory for it (weights, and for
            ``attention`` the cached keys and values at the profile's average length);
            kinds that read nothing measurable are 0.
        total_ms: the whole step, with the hooks; ``unhooked_ms``: the same steps without
            them, to show what timing cost (the hooks' own time lands in ``other``).
    """

    ms: dict[str, float]
    bytes_read: dict[str, int]
    total_ms: float
    unhooked_ms: float

    def gb_per_s(self, kind: str) -> float:
        """The bandwidth a kind of work reaches: its bytes per token over its time."""
        return self.bytes_read[kind] / (self.ms[kind] * 1e6) if self.ms[kind] > 0 else 0.0


def _module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (its weights, in whatever format)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _kind_of(name: str, module: nn.Module) -> str | None:
    """Which kind of work a module's own time is, or None for modules not timed apart."""
    if name == "lm_head":
        return "LM head"
    if name.rsplit(".", 1)[-1] in _LAYER_MATMULS:
        return "layer matmuls"
    if isinstance(module, Phi3Attention):
        return "attention"
    if isinstance(module, Phi3RMSNorm):
        return "norms"
    if isinstance(module, Phi3MLP):
        return "MLP activation"
    return None


class _ExclusiveTimer:
    """Forward hooks that add each timed module's own CPU time (minus timed children) to its kind.

    A stack holds, for every timed module now running, its kind, start time and the time
    its timed children took, so nested modules are not counted twice.
    """

    def __init__(self, model: nn.Module) -> None:
        self.ns = dict.fromkeys(KINDS, 0)
        self._stack: list[list] = []  # [kind, start ns, children's ns]
        self._handles = []
        for name, module in model.named_modules():
            kind = _kind_of(name, module)
            if kind is not None:
                self._handles.append(module.register_forward_pre_hook(self._enter(kind)))
                self._handles.append(module.register_forward_hook(self._leave))

    def _enter(self, kind: str):
        def hook(module: nn.Module, args: tuple) -> None:
            self._stack.append([kind, time.thread_time_ns(), 0])

        return hook

    def _leave(self, module: nn.Module, args: tuple, output: object) -> None:
        kind, start, children = self._stack.pop()
        elapsed = time.thread_time_ns() - start
        self.ns[kind] += elapsed - children
        if self._stack:
            self._stack[-1][2] += elapsed  # the parent must not count this time again

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _decode(
    model: Phi3ForCausalLM,
    input_ids: torch.Tensor,
    n_tokens: int,
    timer: _ExclusiveTimer | None = None,
) -> int:
    """Greedy-decode ``n_tokens`` after ``input_ids`` (1, seq); the CPU ns of the decode steps.

    The prompt's pass (the prefill) is not timed: ``timer``'s counts restart after it.
    """
    cache = KVCache(model.config, 1, input_ids.shape[1] + n_tokens, model.device, model.dtype)
    token = prefill(model, input_ids, cache).argmax(-1, keepdim=True)  # (1, 1)
    if timer is not None:
        timer.ns = dict.fromkeys(KINDS, 0)
    start = time.thread_time_ns()
    for _ in range(n_tokens):
        token = decode_step(model, token, cache, check_ids=False)[:, -1].argmax(-1, keepdim=True)
    return time.thread_time_ns() - start


def profile_decode(
    model: Phi3ForCausalLM, input_ids: torch.Tensor, n_tokens: int = 32
) -> DecodeProfile:
    """Profile ``n_tokens`` greedy decoding steps after the prompt ``input_ids`` (1, seq).

    Runs the steps twice, without hooks and with them, after one short warm-up run. Use one
    PyTorch thread (``torch.set_num_threads(1)``): the times are this thread's CPU time.

    Returns:
        A ``DecodeProfile``: milliseconds and bytes read per token for each kind of ``KINDS``.
    """
    check_int("n_tokens", n_tokens, minimum=1)
    if input_ids.ndim != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must be (1, seq), got shape {tuple(input_ids.shape)}")
    _decode(model, input_ids, min(n_tokens, 4))  # warm-up: first calls allocate and pick kernels
    unhooked_ns = _decode(model, input_ids, n_tokens)
    timer = _ExclusiveTimer(model)
    try:
        total_ns = _decode(model, input_ids, n_tokens, timer)
    finally:
        timer.remove()
    timer.ns["other"] = total_ns - sum(timer.ns[k] for k in KINDS if k != "other")

    config = model.config
    layers = model.model.layers
    matmul_bytes = sum(
        _module_bytes(module)
        for name, module in model.model.layers.named_modules()
        if name.rsplit(".", 1)[-1] in _LAYER_MATMULS
    )
    # Keys and values of every layer, at the average cached length over the profiled steps.
    mean_length = input_ids.shape[1] + (n_tokens + 1) / 2
    element = torch.finfo(model.dtype).bits // 8
    kv_bytes = 2 * len(layers) * config.num_key_value_heads * config.head_dim * element
    norm_bytes = sum(_module_bytes(m) for m in model.modules() if isinstance(m, Phi3RMSNorm))
    bytes_read = dict.fromkeys(KINDS, 0)
    bytes_read.update(
        {
            "layer matmuls": matmul_bytes,
            "LM head": _module_bytes(model.lm_head),
            "attention": round(kv_bytes * mean_length),
            "norms": norm_bytes,
        }
    )
    return DecodeProfile(
        ms={kind: timer.ns[kind] / n_tokens / 1e6 for kind in KINDS},
        bytes_read=bytes_read,
        total_ms=total_ns / n_tokens / 1e6,
        unhooked_ms=unhooked_ns / n_tokens / 1e6,
    )
