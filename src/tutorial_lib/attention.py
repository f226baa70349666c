"""Attention, written out: scaled dot-product attention, masks, and multi-head attention.

Attention lets every token look at other tokens and take in what it needs from them, in
three steps:

1. **Relevance scoring.** Each token's *query* is compared with every token's *key* by a dot
   product, scaled by ``1 / sqrt(head_dim)``: one score per (query, key) pair.
2. **Softmax.** Each query's scores become weights that are positive and sum to 1.
3. **Combining.** Each query's output is the weighted sum of the *values*.

A **mask** says which keys each query may look at. Masks here are boolean tensors with one
convention everywhere: ``True`` = *may attend*, ``False`` = *hidden*. That is the convention of
``torch.nn.functional.scaled_dot_product_attention``. (``torch.nn.MultiheadAttention`` uses the
opposite one for its boolean ``attn_mask`` and ``key_padding_mask``: pass it ``~mask``.)
Masks combine with ``&`` and broadcast against ``(batch, n_heads, q_len, k_len)``.

**Multi-head attention** runs several attentions ("heads") side by side, each on its own
slice of the projected queries, keys and values, then concatenates the heads and projects
them back. With fewer key/value heads than query heads, groups of query heads share one
key/value head: grouped-query attention (GQA), or multi-query attention (MQA) with a single
key/value head.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .validation import check_int

__all__ = [
    "scaled_dot_product_attention",
    "causal_mask",
    "sliding_window_mask",
    "padding_mask",
    "repeat_kv",
    "MultiHeadAttention",
    "head_weight_rows",
]


def _check_tensor(name: str, x: object) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have shape (..., seq_len, dim) with at least 2 dims, "
            f"got shape {tuple(x.shape)}"
        )


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention by hand: ``softmax(q @ k^T / sqrt(head_dim)) @ v``, with an optional mask.

    Args:
        q: queries, shape ``(..., q_len, head_dim)``, e.g. ``(batch, n_heads, q_len, head_dim)``.
        k: keys, shape ``(..., k_len, head_dim)``, the same leading dims as ``q``.
        v: values, shape ``(..., k_len, v_dim)``, the same leading dims as ``q``.
        mask: boolean, ``True`` = may attend; broadcastable to ``(..., q_len, k_len)``
            (e.g. ``(q_len, k_len)`` from ``causal_mask`` or ``(batch, 1, 1, k_len)`` from
            ``padding_mask``). ``None`` lets every query attend to every key.

    Returns:
        ``(output, weights)``: output ``(..., q_len, v_dim)`` and attention weights
        ``(..., q_len, k_len)``, each row summing to 1. A query whose keys are all hidden gets
        all-zero weights and a zero output (as torch's SDPA does) instead of NaN.

    Raises:
        TypeError: an input is not a floating-point tensor, or ``mask`` is not boolean.
        ValueError: the shapes do not fit together.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_tensor(name, x)
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            "q, k and v must have the same leading (batch, head) dims; got shapes "
            f"q={tuple(q.shape)}, k={tuple(k.shape)}, v={tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same head_dim (last dim) to be compared; got "
            f"q={tuple(q.shape)}, k={tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions (dim -2), one value per key; "
            f"got k={tuple(k.shape)}, v={tuple(v.shape)}"
        )
    head_dim = q.shape[-1]

    # 1. Relevance scores: one dot product per (query, key) pair, scaled so that their
    #    spread does not grow with head_dim.
    scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)  # (..., q_len, k_len)

    # 2. Hide the keys a query may not see: a score of -inf becomes a weight of 0.
    if mask is not None:
        _check_mask(mask, scores.shape)
        scores = scores.masked_fill(~mask, float("-inf"))  # (..., q_len, k_len)

    # 3. Softmax over the keys: each query's weights are positive and sum to 1.
    weights = torch.softmax(scores, dim=-1)  # (..., q_len, k_len)
    if mask is not None:
        # A query with every key hidden has a row of NaN (0/0); make it a row of zeros.
        weights = weights.masked_fill(~mask, 0.0)

    # 4. Combine: each output is the weighted sum of the values.
    output = weights @ v  # (..., q_len, v_dim)
    return output, weights


def _check_mask(mask: object, scores_shape: torch.Size) -> None:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(
            f"mask must be a boolean tensor (True = may attend), got {got}; "
            "convert a 0/1 mask with mask.bool()"
        )
    try:
        fits = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
            f"{tuple(scores_shape)} (..., q_len, k_len)"
        )


def _check_length(name: str, value: object, minimum: int = 1) -> None:
    check_int(name, value, minimum)


def causal_mask(
    q_len: int, k_len: int | None = None, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """The causal mask: each query sees its own position and the ones before it.

    Returns a boolean ``(q_len, k_len)`` tensor, ``True`` = may attend: the lower triangle.
    ``k_len`` defaults to ``q_len``. With ``k_len > q_len`` (keys of earlier tokens kept in a
    KV cache) the queries are the *last* ``q_len`` positions, so query ``i`` sees keys
    ``0 .. k_len - q_len + i`` (torch calls this alignment ``causal_lower_right``).

    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    k_len = q_len if k_len is None else k_len
    _check_length("q_len", q_len)
    _check_length("k_len", k_len)
    if k_len < q_len:
        raise ValueError(f"k_len={k_len} must be >= q_len={q_len}: every query needs its own key")
    # Query i sits at position offset + i; it may see keys at positions <= its own.
    offset = k_len - q_len
    query_pos = torch.arange(q_len, device=device)[:, None] + offset  # (q_len, 1)
    key_pos = torch.arange(k_len, device=device)[None, :]  # (1, k_len)
    return key_pos <= query_pos  # (q_len, k_len)


def sliding_window_mask(
    q_len: int,
    window: int,
    k_len: int | None = None,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A causal mask that sees only the last ``window`` positions (itself included).

    Query ``i`` may attend to keys ``j`` with ``i - window < j <= i``, the convention of
    Mistral and of transformers' ``sliding_window`` setting. Returns a boolean
    ``(q_len, k_len)`` tensor (``True`` = may attend); ``k_len`` works as in ``causal_mask``.

    >>> sliding_window_mask(4, window=2).int()
    tensor([[1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 1]], dtype=torch.int32)
    """
    _check_length("window", window)
    mask = causal_mask(q_len, k_len, device=device)  # (q_len, k_len)
    k_len = mask.shape[1]
    query_pos = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)  # (q_len, 1)
    key_pos = torch.arange(k_len, device=device)[None, :]  # (1, k_len)
    return mask & (key_pos > query_pos - window)  # (q_len, k_len)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Hide padding: turn a tokenizer's ``attention_mask`` into a mask over keys.

    Args:
        attention_mask: shape ``(batch, k_len)``, ``1`` (or ``True``) for real tokens and
            ``0`` for padding, as tokenizers return it.

    Returns:
        A boolean ``(batch, 1, 1, k_len)`` tensor, ``True`` = may attend; it broadcasts over
        heads and queries. Combine it with a causal mask by ``&``.
    """
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(
            f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}"
        )
    if attention_mask.ndim != 2:
        raise ValueError(
            f"attention_mask must have shape (batch, seq_len), got {tuple(attention_mask.shape)}"
        )
    if attention_mask.dtype != torch.bool:
        bad = attention_mask[(attention_mask != 0) & (attention_mask != 1)]
        if bad.numel():
            raise ValueError(
                f"attention_mask must hold only 0 (padding) and 1 (token), got {bad[0].item()}"
            )
    return attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, k_len)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Share key/value heads among query heads: repeat each head ``n_rep`` times in place.

    ``(batch, n_kv_heads, seq, head_dim)`` -> ``(batch, n_kv_heads * n_rep, seq, head_dim)``;
    query head ``h`` then meets key/value head ``h // n_rep`` (the same as transformers'
    ``repeat_kv`` and torch's ``enable_gqa=True``).
    """
    _check_length("n_rep", n_rep)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"x must have shape (batch, n_kv_heads, seq, head_dim), got {tuple(x.shape)}"
        )
    batch, n_kv_heads, seq, head_dim = x.shape
    x = x[:, :, None].expand(batch, n_kv_heads, n_rep, seq, head_dim)  # a view, no copy yet
    return x.reshape(batch, n_kv_heads * n_rep, seq, head_dim)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with optional shared key/value heads (MHA, GQA, MQA).

    Args:
        hidden_size: the model dimension, the size of each token's vector.
        num_heads: query heads; ``head_dim = hidden_size // num_heads``.
        num_kv_heads: key/value heads, a divisor of ``num_heads``. ``None`` or ``num_heads``:
            classic multi-head attention; fewer: grouped-query attention; ``1``: multi-query.
        bias: whether the four projections have a bias (the 2017 Transformer, BERT and
            ``torch.nn.MultiheadAttention`` do; Llama and Phi-3 do not).

    The projections are named as in transformers (``q_proj``, ``k_proj``, ``v_proj``,
    ``o_proj``). ``forward`` returns the output and the attention weights of every head.
    """

    def __init__(
        self, hidden_size: int, num_heads: int, num_kv_heads: int | None = None, bias: bool = True
    ) -> None:
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        _check_length("hidden_size", hidden_size)
        _check_length("num_heads", num_heads)
        _check_length("num_kv_heads", num_kv_heads)
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}"
            )
        if num_heads % num_kv_heads:
            raise ValueError(
                f"num_heads={num_heads} must be divisible by num_kv_heads={num_kv_heads} "
                "(each key/value head serves the same number of query heads)"
            )
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = hidden_size // num_heads
        # One projection per role; keys and values are smaller when heads are shared.
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from ``hidden_states`` to itself, or to ``key_value_states``.

        Args:
            hidden_states: ``(batch, q_len, hidden_size)``, the tokens that ask (queries).
            key_value_states: ``(batch, k_len, hidden_size)``, the tokens looked at, for
                cross-attention (e.g. the encoder's output in a 2017 decoder block);
                ``None`` for self-attention (keys and values from ``hidden_states``).
            mask: boolean, ``True`` = may attend, broadcastable to
                ``(batch, num_heads, q_len, k_len)``.

        Returns:
            ``(output, weights)``: ``(batch, q_len, hidden_size)`` and
            ``(batch, num_heads, q_len, k_len)``.
        """
        source = hidden_states if key_value_states is None else key_value_states
        inputs = {"hidden_states": hidden_states, "key_value_states": key_value_states}
        for name, x in inputs.items():
            if x is None:
                continue
            if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.hidden_size:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(
                    f"{name} must have shape (batch, seq_len, {self.hidden_size}), got {shape}"
                )
        if source.shape[0] != hidden_states.shape[0]:
            raise ValueError(
                f"key_value_states has batch size {source.shape[0]}, hidden_states "
                f"{hidden_states.shape[0]}: they must match"
            )
        batch, q_len, _ = hidden_states.shape
        k_len = source.shape[1]

        # 1. Project: queries from the asking tokens, keys and values from the looked-at ones.
        q = self.q_proj(hidden_states)  # (batch, q_len, num_heads * head_dim)
        k = self.k_proj(source)  # (batch, k_len, num_kv_heads * head_dim)
        v = self.v_proj(source)  # (batch, k_len, num_kv_heads * head_dim)

        # 2. Split heads: each head gets its own head_dim-sized slice.
        q = q.view(batch, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, k_len, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, k_len, self.num_kv_heads, self.head_dim).transpose(1, 2)
        # q: (batch, num_heads, q_len, head_dim); k, v: (batch, num_kv_heads, k_len, head_dim)

        # 3. Share key/value heads among groups of query heads (a no-op for classic MHA).
        n_rep = self.num_heads // self.num_kv_heads
        k = repeat_kv(k, n_rep)  # (batch, num_heads, k_len, head_dim)
        v = repeat_kv(v, n_rep)  # (batch, num_heads, k_len, head_dim)

        # 4. Attend, all heads in parallel.
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        # out: (batch, num_heads, q_len, head_dim); weights: (batch, num_heads, q_len, k_len)

        # 5. Concatenate the heads back into one vector per token.
        out = out.transpose(1, 2).reshape(batch, q_len, self.num_heads * self.head_dim)

        # 6. Output projection: mix what the heads found.
        return self.o_proj(out), weights  # (batch, q_len, hidden_size)


def head_weight_rows(texts: Mapping[str, tuple[Sequence[str], torch.Tensor]]) -> list[dict]:
    """The attention weights of every head as compact rows, for a chart in the browser.

    Args:
        texts: a name for each text -> ``(tokens, weights)``: the text's tokens and the
            weights of every head on it, shape ``(layers, heads, seq, seq)`` (query rows,
            key columns), e.g. ``torch.stack(model(..., output_attentions=True).attentions)``
            for a batch of one, squeezed.
    Returns:
        One dict per (text, layer, head): ``{"text", "layer", "head", "tokens", "weights"}``,
        where ``weights`` is the ``(seq, seq)`` matrix flattened row by row (query by query),
        in percent rounded to whole numbers (a weight of 0.274 is 27): short numbers keep
        the page small.

    Example:
        ```python
        rows = head_weight_rows({"s": (["a", "b"], torch.rand(2, 3, 2, 2).softmax(-1))})
        len(rows)  # 2 layers x 3 heads = 6
        ```
    """
    if not isinstance(texts, Mapping) or not texts:
        raise TypeError(
            f"texts must be a non-empty mapping name -> (tokens, weights), got {texts!r}"
        )
    rows = []
    for name, (tokens, weights) in texts.items():
        _check_tensor(f"weights of {name!r}", weights)
        seq = len(tokens)
        if weights.ndim != 4 or weights.shape[-2:] != (seq, seq):
            raise ValueError(
                f"weights of {name!r} must have shape (layers, heads, {seq}, {seq}) for its "
                f"{seq} tokens, got {tuple(weights.shape)}"
            )
        flat = weights.detach().float().cpu().flatten(2)  # (layers, heads, seq * seq)
        for layer in range(flat.shape[0]):
            for head in range(flat.shape[1]):
                values = [round(100 * w) for w in flat[layer, head].tolist()]  # percent
                rows.append(
                    {
                        "text": name,
                        "layer": layer,
                        "head": head,
                        "tokens": list(tokens),
                        "weights": values,
                    }
                )
    return rows
