"""The Phi-3 decoder, written out in plain PyTorch.

Read this file top to bottom; each class is one idea of the transformer decoder:

1. ``Phi3Config``          - every size and setting of the model, in one plain dataclass
2. ``Phi3RMSNorm``         - scale each token vector to unit root-mean-square
3. ``Phi3RotaryEmbedding`` - positions as rotations of the query and key vectors (RoPE)
4. ``KVCache``             - keys and values of earlier tokens (``tutorial_lib.cache``)
5. ``Phi3Attention``       - causal self-attention with a fused q/k/v projection and GQA
6. ``Phi3MLP``             - the feed-forward network (SwiGLU with a fused gate/up projection)
7. ``Phi3DecoderLayer``    - pre-norm attention + MLP, each wrapped in a residual connection
8. ``Phi3Model``           - token embeddings, the stack of layers, a final norm
9. ``Phi3ForCausalLM``     - the model plus the LM head that turns vectors into next-token logits

The class and attribute names are those of Hugging Face ``transformers``' ``modeling_phi3.py``,
so ``print(model)`` and checkpoints line up with it (``model.model.layers[0].self_attn.qkv_proj``,
``model.lm_head``). This file is for inference: it has no dropout and no training code.
Loading real weights lives in ``tutorial_lib.loading``; sampling in ``tutorial_lib.generation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .cache import KVCache
from .moe import SparseMoeBlock
from .rope import rope_inv_freq
from .validation import check_int, check_optional_int, check_positive_float

__all__ = [
    "CausalLMOutput",
    "KVCache",
    "Phi3Attention",
    "Phi3Config",
    "Phi3DecoderLayer",
    "Phi3ForCausalLM",
    "Phi3MLP",
    "Phi3Model",
    "Phi3ModelOutput",
    "Phi3RMSNorm",
    "Phi3RotaryEmbedding",
    "apply_rotary_pos_emb",
    "check_custom_mask",
    "check_input_ids",
    "make_attention_mask",
    "rotate_half",
]


# --------------------------------------------------------------------------------------
# 1. Configuration
# --------------------------------------------------------------------------------------
@dataclass
class Phi3Config:
    """The sizes and settings of a Phi-3 decoder. Defaults are those of Phi-3-mini.

    ``num_key_value_heads`` picks the attention flavour: equal to ``num_attention_heads`` is
    multi-head attention (MHA), 1 is multi-query (MQA), anything in between that divides it
    is grouped-query attention (GQA).
    """

    vocab_size: int = 32064
    hidden_size: int = 3072
    intermediate_size: int = 8192  # width of the MLP's hidden layer
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None: same as num_attention_heads (MHA)
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    max_position_embeddings: int = 4096  # the context length
    rms_norm_eps: float = 1e-5
    # Rotary position embeddings (RoPE). Every setting lives in `rope_parameters`, a dict with
    # transformers' keys (see tutorial_lib.rope): "rope_type" ("default", or a context extension:
    # "linear", "dynamic", "yarn", "llama3", "longrope" as in Phi-3-mini-128k), "rope_theta",
    # "partial_rotary_factor" and the extension's own settings ("factor",
    # "original_max_position_embeddings", ...). As in transformers, the two settings every type
    # has may also be given on their own; after construction they hold the values in use.
    rope_theta: float | None = None  # the base of the rotation frequencies; None: 10000
    partial_rotary_factor: float | None = None  # the fraction of each head that rotates; None: 1
    rope_parameters: dict | None = None  # None: {"rope_type": "default"} and the two above
    sliding_window: int | None = None  # each token sees at most this many tokens (itself too)
    tie_word_embeddings: bool = False  # lm_head shares its weight with embed_tokens
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 32000
    pad_token_id: int | None = 32000
    # Mixture of experts (see tutorial_lib.moe): with num_local_experts set, every layer's MLP
    # is a SparseMoeBlock of that many experts (each intermediate_size wide), and each token
    # goes to num_experts_per_tok of them, their weights renormalised when norm_topk_prob.
    num_local_experts: int | None = None  # None: a dense MLP (Phi-3, Llama, Mistral)
    num_experts_per_tok: int = 2
    norm_topk_prob: bool = True

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
            "num_experts_per_tok",
        ):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("num_key_value_heads", "head_dim", "num_local_experts"):
            check_optional_int(name, getattr(self, name), minimum=1)
        check_positive_float("rms_norm_eps", self.rms_norm_eps)
        if self.num_local_experts is not None and self.num_experts_per_tok > self.num_local_experts:
            raise ValueError(
                f"num_experts_per_tok={self.num_experts_per_tok} must be at most "
                f"num_local_experts={self.num_local_experts}"
            )
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads != 0:
                raise ValueError(
                    f"hidden_size={self.hidden_size} must be divisible by "
                    f"num_attention_heads={self.num_attention_heads}, or give head_dim"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"num_key_value_heads={self.num_key_value_heads} must divide "
                f"num_attention_heads={self.num_attention_heads}"
            )
        # RoPE: rope_theta and partial_rotary_factor go into rope_parameters (they must agree
        # with it where both give one), then the settings must give frequencies.
        rope = dict(self.rope_parameters or {"rope_type": "default"})
        for key, default in (("rope_theta", 10000.0), ("partial_rotary_factor", 1.0)):
            given = getattr(self, key)
            if given is not None and rope.get(key, given) != given:
                raise ValueError(
                    f"{key}={given} disagrees with rope_parameters[{key!r}]={rope[key]}"
                )
            rope.setdefault(key, default if given is None else given)
            setattr(self, key, rope[key])
        self.rope_parameters = rope
        rope_inv_freq(self.rope_parameters, self.head_dim, self.max_position_embeddings)
        check_optional_int("sliding_window", self.sliding_window, 1, none_means="no window")

    @property
    def rope_type(self) -> str:
        """The RoPE variant: "default" or a context extension (see ``tutorial_lib.rope``)."""
        return self.rope_parameters.get("rope_type", self.rope_parameters.get("type"))

    @property
    def rotary_dim(self) -> int:
        """How many dimensions of each head are rotated by RoPE (the rest pass through)."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def context_length(self) -> int:
        """The longest sequence the model takes: ``max_position_embeddings``, except with dynamic
        NTK scaling, which stretches the frequencies as a sequence grows, up to ``factor`` times."""
        if self.rope_type == "dynamic":
            return int(self.max_position_embeddings * self.rope_parameters["factor"])
        return self.max_position_embeddings


# --------------------------------------------------------------------------------------
# 2. RMSNorm
# --------------------------------------------------------------------------------------
class Phi3RMSNorm(nn.Module):
    """Root-mean-square normalization: ``x / rms(x) * weight``, one learned scale per dimension.

    Unlike LayerNorm it neither subtracts the mean nor adds a bias.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # Compute in float32 even for bf16/fp16 models: the squares would overflow or round.
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)  # (batch, seq, hidden)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)  # (batch, seq, 1)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}"


# --------------------------------------------------------------------------------------
# 3. Rotary position embeddings (RoPE)
# --------------------------------------------------------------------------------------
class Phi3RotaryEmbedding(nn.Module):
    """The cos and sin of every position's rotation angles.

    Dimension pair ``i`` of a head turns by the angle ``position * inv_freq[i]``. The
    frequencies come from ``tutorial_lib.rope.rope_inv_freq``: ``theta ** (-2i / rotary_dim)``
    for the default type (fast turns for the first pairs, slow ones for the last), rescaled by
    the context extensions, which may also scale cos and sin by ``attention_scaling``.
    ``dynamic`` and ``longrope`` frequencies depend on the sequence length, so they are
    computed anew for each call.
    """

    def __init__(self, config: Phi3Config) -> None:
        super().__init__()
        self.rope_parameters = config.rope_parameters
        self.rope_type = config.rope_type
        self.head_dim = config.head_dim
        self.rotary_dim = config.rotary_dim
        self.max_position_embeddings = config.max_position_embeddings
        # The frequencies of a sequence within the context, (rotary_dim / 2,). Plain float32
        # tensors on the CPU, not buffers: model.to(torch.bfloat16) must not round them, and
        # building the model on the "meta" device (see loading.py) must not empty them.
        self.inv_freq, self.attention_scaling = rope_inv_freq(
            self.rope_parameters, self.head_dim, self.max_position_embeddings
        )

    def _frequencies(self, position_ids: torch.Tensor) -> torch.Tensor:
        """The inverse frequencies to use for these positions, on their device."""
        inv_freq = self.inv_freq
        if self.rope_type in ("dynamic", "longrope"):
            # One choice for the whole call, from its sequence length (the last position + 1),
            # as in transformers: keys already cached keep the frequencies they were made with.
            seq_len = int(position_ids.max()) + 1
            inv_freq, _ = rope_inv_freq(
                self.rope_parameters, self.head_dim, self.max_position_embeddings, seq_len
            )
        return inv_freq.to(position_ids.device)

    def forward(
        self, position_ids: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for ``position_ids`` (batch, seq), each (batch, seq, rotary_dim)."""
        inv_freq = self._frequencies(position_ids)
        # angle[b, t, i] = position[b, t] * inv_freq[i], in float32 for exact angles.
        freqs = position_ids[..., None].float() * inv_freq  # (batch, seq, rotary_dim / 2)
        # Each frequency turns a pair of dims (j, j + rotary_dim/2): repeat the angles.
        emb = torch.cat((freqs, freqs), dim=-1)  # (batch, seq, rotary_dim)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype), sin.to(dtype)

    def extra_repr(self) -> str:
        return f"rope_type={self.rope_type!r}, rotary_dim={self.rotary_dim}"


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: a 90-degree turn per pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate query or key vectors x (batch, heads, seq, head_dim) by their positions' angles.

    cos and sin are (batch, seq, rotary_dim); with a partial rotary factor only the first
    ``rotary_dim`` dimensions of each head turn and the rest pass through unchanged.
    """
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (batch, 1, seq, rotary_dim): same for all heads
    rotary_dim = cos.shape[-1]
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    # x * cos + rotate_half(x) * sin is the 2-D rotation of every pair of dimensions.
    return torch.cat(((x_rot * cos) + (rotate_half(x_rot) * sin), x_pass), dim=-1)


# --------------------------------------------------------------------------------------
# 5. Attention
# --------------------------------------------------------------------------------------
def make_attention_mask(
    attention_mask: torch.Tensor | None,
    q_len: int,
    past_len: int,
    sliding_window: int | None,
    device: torch.device,
) -> torch.Tensor | None:
    """Which keys each query may see: (batch or 1, 1, q_len, past_len + q_len), True = allowed.

    Queries are the ``q_len`` newest positions; keys are all ``past_len + q_len`` positions.
    ``attention_mask`` (batch, past_len + q_len) marks real tokens with 1 and padding with 0.
    Returns None when nothing needs masking: one new token may look at every earlier one.
    """
    kv_len = past_len + q_len
    window_matters = sliding_window is not None and kv_len > sliding_window
    if q_len == 1 and attention_mask is None and not window_matters:
        return None
    q_idx = torch.arange(past_len, kv_len, device=device)[:, None]  # (q_len, 1)
    kv_idx = torch.arange(kv_len, device=device)[None, :]  # (1, kv_len)
    # Causal: a token sees itself and earlier tokens, never later ones.
    allowed = kv_idx <= q_idx  # (q_len, kv_len)
    # Sliding window: ... and only the last `sliding_window` of them.
    if sliding_window is not None:
        allowed = allowed & (kv_idx > q_idx - sliding_window)
    allowed = allowed[None, None]  # (1, 1, q_len, kv_len)
    if attention_mask is not None:
        # Padding: nobody attends to a pad token. A pad query still sees itself, so that its
        # softmax has something to normalize (its output is never used).
        is_token = attention_mask[:, None, None, :].bool()  # (batch, 1, 1, kv_len)
        allowed = (allowed & is_token) | (kv_idx == q_idx)
    return allowed


def check_custom_mask(mask: torch.Tensor, batch: int, q_len: int, kv_len: int) -> None:
    """Raise a clear error unless ``mask`` is a boolean (batch or 1, 1, q_len, kv_len) mask in
    which every query sees at least one key (a query that sees nothing has no softmax)."""
    if mask.dtype != torch.bool:
        raise TypeError(f"a 4-D attention_mask must be boolean (True = may see), got {mask.dtype}")
    if mask.shape[0] not in (1, batch) or tuple(mask.shape[1:]) != (1, q_len, kv_len):
        raise ValueError(
            f"a 4-D attention_mask must have shape ({batch} or 1, 1, {q_len}, {kv_len}) "
            f"(batch, 1, new tokens, cached + new tokens), got {tuple(mask.shape)}"
        )
    if not mask.any(dim=-1).all():
        raise ValueError("attention_mask hides every key from some query; let each see itself")


class Phi3Attention(nn.Module):
    """Causal multi-head self-attention with one fused projection for queries, keys and values."""

    def __init__(self, config: Phi3Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx  # which slot of the KV cache is ours
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_key_value_heads * self.head_dim
        # One matmul makes q, k and v: (hidden) -> (n_heads + 2 * n_kv_heads) * head_dim.
        self.qkv_proj = nn.Linear(config.hidden_size, self.q_size + 2 * self.kv_size, bias=False)
        self.o_proj = nn.Linear(self.q_size, config.hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
    ) -> torch.Tensor:
        batch, seq, _ = hidden_states.shape
        # Project every token to its query, key and value at once.
        qkv = self.qkv_proj(hidden_states)  # (batch, seq, (n_heads + 2 * n_kv_heads) * head_dim)
        # Split into heads: (batch, n_heads + 2 * n_kv_heads, seq, head_dim). The first n_heads
        # are the queries, then come n_kv_heads keys, then n_kv_heads values.
        qkv = qkv.view(batch, seq, -1, self.head_dim).transpose(1, 2)
        n_q, n_kv = self.num_heads, self.num_key_value_heads
        # Positions: rotate queries and keys, all in one go (values carry content only).
        cos, sin = position_embeddings
        query_key = apply_rotary_pos_emb(qkv[:, : n_q + n_kv], cos, sin)
        query, key = query_key.split([n_q, n_kv], dim=1)  # (batch, n_q or n_kv, seq, head_dim)
        value = qkv[:, n_q + n_kv :]  # (batch, n_kv_heads, seq, head_dim)
        # KV cache: add this step's keys/values to the earlier ones and attend over all of them,
        # key and value: (batch, n_kv_heads, kv_len, head_dim).
        if past_key_values is not None:
            key, value = past_key_values.update(self.layer_idx, key, value)
        # softmax(q k^T / sqrt(head_dim) + mask) v, fused: (batch, n_heads, seq, head_dim).
        # enable_gqa: each key/value head serves a group of n_heads / n_kv_heads query heads
        # (grouped-query attention; MQA when n_kv_heads = 1), without copying it per query head.
        attn_output = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, enable_gqa=True
        )
        # Concatenate the heads, (batch, seq, n_heads * head_dim), and mix them into the residual.
        attn_output = attn_output.transpose(1, 2).reshape(batch, seq, self.q_size)
        return self.o_proj(attn_output)  # (batch, seq, hidden)


# --------------------------------------------------------------------------------------
# 6. MLP
# --------------------------------------------------------------------------------------
class Phi3MLP(nn.Module):
    """SwiGLU feed-forward network: ``down(up(x) * silu(gate(x)))``, gate and up in one matmul."""

    def __init__(self, config: Phi3Config) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.activation_fn = nn.SiLU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gate_up = self.gate_up_proj(hidden_states)  # (batch, seq, 2 * intermediate)
        gate, up = gate_up.chunk(2, dim=-1)  # (batch, seq, intermediate) each
        # The gate decides, per hidden unit, how much of `up` passes.
        return self.down_proj(up * self.activation_fn(gate))  # (batch, seq, hidden)


# --------------------------------------------------------------------------------------
# 7. Decoder layer
# --------------------------------------------------------------------------------------
class Phi3DecoderLayer(nn.Module):
    """One transformer block: pre-norm attention, then pre-norm MLP, each added to the residual.

    With ``config.num_local_experts`` set, the MLP is a mixture of experts (``SparseMoeBlock``,
    as in Mixtral): same input, same output shape, a router choosing experts per token.
    """

    def __init__(self, config: Phi3Config, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = Phi3Attention(config, layer_idx)
        self.mlp: Phi3MLP | SparseMoeBlock
        if config.num_local_experts is None:
            self.mlp = Phi3MLP(config)
        else:
            self.mlp = SparseMoeBlock(
                config.hidden_size,
                config.intermediate_size,
                num_experts=config.num_local_experts,
                top_k=config.num_experts_per_tok,
                norm_topk_prob=config.norm_topk_prob,
            )
        self.input_layernorm = Phi3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = Phi3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
    ) -> torch.Tensor:
        # Attention reads a normalized copy of the residual stream and adds its result to it.
        residual = hidden_states  # (batch, seq, hidden)
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = self.self_attn(
            hidden_states, position_embeddings, attention_mask, past_key_values
        )
        hidden_states = residual + hidden_states
        # The MLP does the same, token by token.
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states  # (batch, seq, hidden)


# --------------------------------------------------------------------------------------
# 8. The model: embeddings, layers, final norm
# --------------------------------------------------------------------------------------
class Phi3ModelOutput(NamedTuple):
    """What ``Phi3Model`` returns; ``output[0]`` is the last hidden state, as in transformers."""

    last_hidden_state: torch.Tensor  # (batch, seq, hidden)
    past_key_values: KVCache | None  # the updated cache, or None without one


def check_input_ids(input_ids: torch.Tensor, vocab_size: int, *, check_values: bool = True) -> None:
    """Raise a clear error unless ``input_ids`` is a non-empty (batch, seq) tensor of token ids.

    ``check_values=False`` skips the range check (``min``/``max``), which on a GPU waits for
    the device (a host-device sync): ``generate`` checks the prompt once and then feeds the
    model only tokens it sampled from the vocabulary itself.
    """
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(
            f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}"
        )
    if input_ids.dtype not in (torch.int64, torch.int32):  # what nn.Embedding accepts
        raise TypeError(
            f"input_ids must hold integer token ids (torch.long or torch.int), "
            f"got dtype {input_ids.dtype}"
        )
    if input_ids.dim() != 2:
        raise ValueError(
            f"input_ids must have shape (batch, seq), got {tuple(input_ids.shape)}; "
            "for one sequence use input_ids[None]"
        )
    if input_ids.numel() == 0:
        raise ValueError(
            f"input_ids is empty (shape {tuple(input_ids.shape)}); give at least one token"
        )
    if check_values:
        _check_id_range(input_ids, vocab_size)


def _check_id_range(input_ids: torch.Tensor, vocab_size: int) -> None:
    low, high = int(input_ids.min()), int(input_ids.max())  # a host-device sync on a GPU
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"input_ids must be in [0, {vocab_size}) (the vocabulary), "
            f"got values in [{low}, {high}]"
        )


class Phi3Model(nn.Module):
    """The decoder stack: token ids -> contextual vectors (the "hidden states")."""

    def __init__(self, config: Phi3Config) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            Phi3DecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = Phi3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Phi3RotaryEmbedding(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        *,
        check_ids: bool = True,
    ) -> Phi3ModelOutput:
        """Run ``input_ids`` (batch, seq) through the decoder; see ``Phi3ForCausalLM.forward``.

        ``check_ids=False`` skips the token ids' range check (a host-device sync on a GPU),
        for callers that checked them already, as ``generate`` does once per call.
        """
        check_input_ids(input_ids, self.config.vocab_size, check_values=check_ids)
        batch, seq = input_ids.shape
        past_len = past_key_values.length if past_key_values is not None else 0
        if past_len + seq > self.config.context_length:
            limit = f"max_position_embeddings={self.config.max_position_embeddings}"
            if self.config.context_length != self.config.max_position_embeddings:
                limit += f" (x {self.config.rope_parameters['factor']} with dynamic RoPE scaling)"
            raise ValueError(
                f"{past_len} cached + {seq} new tokens exceed the context length {limit}"
            )
        # A 4-D mask is the caller's own (batch or 1, 1, new, cached + new), used as is.
        custom_mask = attention_mask is not None and attention_mask.dim() == 4
        if custom_mask:
            check_custom_mask(attention_mask, batch, seq, past_len + seq)
        elif attention_mask is not None and tuple(attention_mask.shape) != (batch, past_len + seq):
            raise ValueError(
                "attention_mask must have shape (batch, cached + new tokens) = "
                f"{(batch, past_len + seq)}, or be a 4-D boolean mask; "
                f"got {tuple(attention_mask.shape)}"
            )
        # Token embeddings: a lookup table, one learned vector per token id.
        hidden_states = self.embed_tokens(input_ids)  # (batch, seq, hidden)

        # The KV cache, made here on the first step when asked for.
        if use_cache and past_key_values is None:
            device, dtype = hidden_states.device, hidden_states.dtype
            past_key_values = KVCache(self.config, batch, seq, device, dtype)

        # Positions 0, 1, 2, ... of the new tokens; with left padding they start at each
        # sequence's first real token, so a padded sequence is positioned as if alone.
        if position_ids is None:
            if attention_mask is not None and not custom_mask:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -seq:]
            else:
                position_ids = torch.arange(past_len, past_len + seq, device=input_ids.device)[None]
        # The rotation angles of these positions: cos, sin, each (batch, seq, rotary_dim).
        position_embeddings = self.rotary_emb(position_ids, hidden_states.dtype)

        # One mask for all layers: causal, sliding window, padding; or the caller's own.
        if custom_mask:
            mask = attention_mask
        else:
            mask = make_attention_mask(
                attention_mask, seq, past_len, self.config.sliding_window, input_ids.device
            )

        # The layers refine the residual stream in turn.
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_embeddings, mask, past_key_values)
        return Phi3ModelOutput(self.norm(hidden_states), past_key_values)


# --------------------------------------------------------------------------------------
# 9. The causal language model: the decoder plus the LM head
# --------------------------------------------------------------------------------------
class CausalLMOutput(NamedTuple):
    """What ``Phi3ForCausalLM`` returns (``output.logits``, or ``output[0]``, as in transformers).

    Attributes:
        logits: (batch, seq, vocab_size) next-token scores at every input position.
        past_key_values: the ``KVCache`` holding every token so far, to pass back with only
            the new token(s) to continue; None when the call used no cache.
    """

    logits: torch.Tensor
    past_key_values: KVCache | None


class Phi3ForCausalLM(nn.Module):
    """Phi-3 for next-token prediction: ``Phi3Model`` followed by ``lm_head``.

    The model only computes logits. Loading weights is ``tutorial_lib.load`` (or
    ``loading.from_hf`` to copy a transformers model); the generation loop is
    ``tutorial_lib.generate(model, input_ids, max_new_tokens)``. Neither module is imported
    here: they build on this one.

    Example::

        model, tokenizer = tutorial_lib.load("smollm2-135m-instruct")
        hidden = model.model(input_ids)[0]  # (1, T, hidden_size)
        logits = model.lm_head(hidden)  # (1, T, vocab_size), the same as model(input_ids).logits
    """

    def __init__(self, config: Phi3Config) -> None:
        super().__init__()
        self.config = config
        self.model = Phi3Model(config)
        # The LM head scores every vocabulary token against the final hidden state.
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight  # one matrix for both ends

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
    ) -> CausalLMOutput:
        """Next-token logits for every position of ``input_ids``.

        Args:
            input_ids: (batch, seq) integer token ids; with a cache, only the new tokens.
            attention_mask: (batch, cached + new tokens), 1 for tokens and 0 for (left) padding;
                or a boolean (batch or 1, 1, new, cached + new) mask, True where a query may see
                a key, used as is (it must be causal itself), e.g. block-diagonal for packed
                documents.
            position_ids: (batch, seq) positions of the new tokens; by default counted from
                each sequence's first real token.
            past_key_values: a ``KVCache`` from an earlier call, to continue from.
            use_cache: make and return a cache (implied when ``past_key_values`` is given).

        Returns:
            A ``CausalLMOutput``: ``.logits`` (batch, seq, vocab_size) and
            ``.past_key_values``, the updated ``KVCache`` (None without a cache).
        """
        use_cache = use_cache or past_key_values is not None
        hidden_states, cache = self.model(
            input_ids, attention_mask, position_ids, past_key_values, use_cache
        )
        logits = self.lm_head(hidden_states)  # (batch, seq, vocab)
        return CausalLMOutput(logits, cache)

    @property
    def device(self) -> torch.device:
        """Where the weights are (read from the embedding, which quantization leaves as is)."""
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The precision of the weights and activations (the embedding's: see ``device``)."""
        return self.model.embed_tokens.weight.dtype
