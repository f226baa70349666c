"""The KV cache: the keys and values of earlier tokens, kept for the next generation step.

The model (``tutorial_lib.phi3``) writes into it layer by layer; the generation loop
(``tutorial_lib.generation``) makes one per generation. It lives in its own module, as
transformers' ``cache_utils`` does, so that neither of them has to import the other for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .validation import check_int

if TYPE_CHECKING:
    from .phi3 import Phi3Config

__all__ = ["KVCache"]


class KVCache:
    """The keys and values of every layer for the tokens seen so far.

    At each generation step only the new token goes through the model; its query attends
    to the cached keys and values of all earlier tokens instead of recomputing them. The
    storage is allocated once for ``max_length`` tokens and written in place (it doubles if
    it ever runs out), so a step copies one token's keys and values, not the whole history.

    The cache keeps its own position: each layer's ``update`` writes after what that layer
    already holds and moves its count on, as transformers' ``DynamicCache`` does.

    Attributes:
        keys, values: one tensor per layer, (batch, n_kv_heads, capacity, head_dim).
        layer_lengths: how many positions each layer holds.
    """

    def __init__(
        self,
        config: Phi3Config,
        batch_size: int,
        max_length: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (batch_size, config.num_key_value_heads, max_length, config.head_dim)
        n_layers = config.num_hidden_layers
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.layer_lengths = [0] * n_layers

    @property
    def length(self) -> int:
        """How many positions every layer holds: the length of the cached sequence."""
        return min(self.layer_lengths)

    def get_seq_length(self) -> int:
        """``length``, under transformers' name for it."""
        return self.length

    @property
    def capacity(self) -> int:
        """How many positions fit before the storage has to grow."""
        return self.keys[0].shape[2]

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (keep positions ``0 ... length - 1``).

        A negative ``length`` drops that many positions from the end, as transformers'
        ``DynamicCache.crop(-n)`` does. Nothing is copied: the next ``update`` writes over the
        forgotten positions. Speculative decoding crops the draft tokens the model rejected.
        """
        length = check_int("length", length)
        if length < 0:
            length = max(self.length + length, 0)
        self.layer_lengths = [min(n, length) for n in self.layer_lengths]

    def update(
        self, layer_idx: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys and values, (batch, n_kv_heads, seq, head_dim), after the cached.

        Returns all keys and values of this layer so far, (batch, n_kv_heads, length + seq,
        head_dim), and counts the new positions as cached.
        """
        start = self.layer_lengths[layer_idx]
        end = start + key.shape[2]
        if end > self.keys[layer_idx].shape[2]:
            self._grow(layer_idx, end)
        self.keys[layer_idx][:, :, start:end] = key
        self.values[layer_idx][:, :, start:end] = value
        self.layer_lengths[layer_idx] = end
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]

    def _grow(self, layer_idx: int, needed: int) -> None:
        """Copy one layer's keys and values into storage at least twice as large (rare)."""
        filled = self.layer_lengths[layer_idx]
        for cache in (self.keys, self.values):
            old = cache[layer_idx]
            batch, heads, capacity, head_dim = old.shape
            cache[layer_idx] = old.new_zeros(batch, heads, max(needed, 2 * capacity), head_dim)
            cache[layer_idx][:, :, :filled] = old[:, :, :filled]
