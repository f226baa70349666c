"""Architecture arithmetic: parameter counts and KV-cache sizes from a model's config alone.

A decoder-only transformer's config.json holds every size that decides how many weights it
has and how much memory it needs, so both can be counted without building the model:

- **embedding**: one vector of ``hidden_size`` numbers per vocabulary token;
- **attention**, per layer: queries ``hidden x (n_heads * head_dim)``, keys and values
  ``hidden x (n_kv_heads * head_dim)`` each, and the output projection back to ``hidden``;
- **mlp**, per layer: a SwiGLU feed-forward network has three ``hidden x intermediate``
  matrices (gate, up, down). A mixture-of-experts layer has ``n_experts`` of them plus a
  router (``hidden x n_experts``), and each token uses only ``top_k`` experts;
- **norms**: one RMSNorm weight vector of ``hidden`` numbers before attention, one before the
  MLP, one at the end (Qwen3 adds a ``head_dim`` norm on queries and on keys);
- **lm_head**: ``hidden x vocab``, or nothing when it is tied to the embedding matrix.

GPT-2 (and GPT-3, which has GPT-2's layout at other sizes, with alternating dense and banded
sparse attention that changes no weight) differs in four ways: a learned
position embedding (``n_positions x hidden``), biases on every linear layer, LayerNorm (a
weight and a bias) instead of RMSNorm, and a plain two-matrix MLP (``hidden -> n_inner ->
hidden``, GELU, ``n_inner = 4 * hidden`` by default) instead of SwiGLU.

``parameter_counts`` adds these up; ``kv_cache_bytes`` sizes the keys and values a model keeps
per token, including two newer layouts: multi-head latent attention (DeepSeek-V2/V3), which
caches one compressed latent per token instead of per-head keys and values, and interleaved
local/global layers (Gemma 2/3), whose sliding-window layers keep only the last window.
Fused matrices (Phi-3's ``qkv_proj`` and ``gate_up_proj``, transformers' fused experts) hold
the same numbers as separate ones, so they count the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .phi3 import Phi3Config
from .validation import check_int, check_number

__all__ = [
    "KV_CACHE_MODEL_TYPES",
    "SUPPORTED_MODEL_TYPES",
    "kv_cache_bytes",
    "parameter_counts",
]

# The transformers model types whose layers are counted here (and this library's Phi3Config).
SUPPORTED_MODEL_TYPES = ("phi3", "llama", "mistral", "mixtral", "qwen3", "qwen3_moe", "gpt2")

# ``kv_cache_bytes`` also sizes the caches of these (their weights are not counted here):
# multi-head latent attention (DeepSeek-V2/V3) and interleaved sliding/full layers (Gemma 2/3).
KV_CACHE_MODEL_TYPES = SUPPORTED_MODEL_TYPES + (
    "deepseek_v2",
    "deepseek_v3",
    "gemma2",
    "gemma3_text",
)


@dataclass(frozen=True)
class _MoE:
    """How a config's feed-forward layers are split into experts."""

    n_experts: int  # experts per sparse layer
    top_k: int  # experts each token uses
    expert_size: int  # the intermediate (hidden-layer) width of one expert
    sparse_layers: tuple[bool, ...]  # per layer: experts (True) or one dense MLP (False)


def _model_type(config: Any, supported: tuple[str, ...] = SUPPORTED_MODEL_TYPES) -> str:
    """The architecture of ``config``, or a clear error when it is not one of ``supported``."""
    if isinstance(config, Phi3Config):
        return "phi3"
    # A transformers config is known by its model_type (duck typing: no transformers import).
    model_type = getattr(config, "model_type", None)
    if not isinstance(model_type, str):
        raise TypeError(
            "config must be a transformers PretrainedConfig (e.g. LlamaConfig, MixtralConfig) "
            f"or a tutorial_lib Phi3Config, got {type(config).__name__}"
        )
    if model_type not in supported:
        raise ValueError(
            f"config.model_type={model_type!r} is not supported; supported: {', '.join(supported)}"
        )
    return model_type


def _head_dim(config: Any) -> int:
    """Numbers per attention head: ``head_dim`` when the config sets it, else hidden / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _num_kv_heads(config: Any) -> int:
    """Key/value heads: fewer than the query heads for GQA, the same for MHA."""
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def _moe(config: Any, model_type: str) -> _MoE | None:
    """The expert layout of a mixture-of-experts config, or None for a dense model."""
    n_layers = config.num_hidden_layers
    if model_type == "mixtral":
        # Every layer's MLP is num_local_experts experts of intermediate_size each.
        n_experts = config.num_local_experts
        expert_size = config.intermediate_size
        sparse = (True,) * n_layers
    elif model_type == "qwen3_moe":
        # Layer i has experts unless listed in mlp_only_layers; with decoder_sparse_step = s,
        # only every s-th layer does. Experts are moe_intermediate_size wide.
        n_experts = config.num_experts
        expert_size = config.moe_intermediate_size
        step = config.decoder_sparse_step
        only_mlp = set(config.mlp_only_layers or ())
        sparse = tuple(
            n_experts > 0 and i not in only_mlp and (i + 1) % step == 0 for i in range(n_layers)
        )
    elif model_type == "phi3":
        # Dense unless the config names experts (a Phi-3 config extended with MoE fields).
        n_experts = getattr(config, "num_local_experts", None) or 0
        expert_size = getattr(config, "moe_intermediate_size", None) or config.intermediate_size
        sparse = (n_experts > 0,) * n_layers
    else:  # llama, mistral, qwen3, gpt2: dense
        return None
    if not any(sparse):
        return None
    n_experts = check_int("num_local_experts (or num_experts)", n_experts, minimum=1)
    top_k = check_int("num_experts_per_tok", config.num_experts_per_tok, minimum=1)
    if top_k > n_experts:
        raise ValueError(
            f"num_experts_per_tok={top_k} must be at most the number of experts ({n_experts})"
        )
    return _MoE(n_experts, top_k, expert_size, sparse)


def parameter_counts(config: Any) -> dict[str, int]:
    """Count a decoder's parameters from its config, by formula (no model is built).

    Args:
        config: a transformers config of a Phi-3, Llama, Mistral, Mixtral, Qwen3, Qwen3-MoE
            or GPT-2 model (see ``SUPPORTED_MODEL_TYPES``; a ``GPT2Config`` with GPT-3's sizes
            counts GPT-3), or this library's ``Phi3Config`` (dense, or with
            ``num_local_experts`` and ``num_experts_per_tok`` for experts).

    Returns:
        A dict with the breakdown ``"embedding"`` (GPT-2: token and position embeddings
        together), ``"attention"`` (all layers), ``"mlp"``
        (all layers, routers and every expert included), ``"norms"`` and ``"lm_head"`` (0 when
        tied to the embedding), which add up to ``"total"``; and ``"active"``, the parameters
        one token uses: all of them for a dense model, only ``top_k`` experts per layer for a
        mixture of experts. Like model cards, ``"active"`` counts the embedding matrix in full.

    Raises:
        TypeError: ``config`` is not a config object.
        ValueError: its architecture is not supported, or its expert settings are invalid.

    Example::

        from transformers import MixtralConfig
        counts = parameter_counts(MixtralConfig())  # Mixtral 8x7B's defaults
        counts["total"], counts["active"]  # about 46.7e9 and 12.9e9
    """
    model_type = _model_type(config)
    if model_type == "gpt2":
        return _gpt2_parameter_counts(config)
    hidden, vocab, n_layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    head_dim, n_heads, n_kv = _head_dim(config), config.num_attention_heads, _num_kv_heads(config)

    # Attention, one layer: queries, keys, values (fused or not), then the output projection.
    q_size, kv_size = n_heads * head_dim, n_kv * head_dim
    attention = hidden * (q_size + 2 * kv_size) + q_size * hidden
    if getattr(config, "attention_bias", False):  # Llama and Qwen3 may add biases to all four
        attention += q_size + 2 * kv_size + hidden

    # Feed-forward, one layer: SwiGLU's gate, up and down matrices.
    def swiglu(width: int) -> int:
        count = 3 * hidden * width
        if getattr(config, "mlp_bias", False):  # Llama's option: biases on gate, up, down
            count += 2 * width + hidden
        return count

    moe = _moe(config, model_type)
    mlp = active_mlp = 0
    for layer in range(n_layers):
        if moe is not None and moe.sparse_layers[layer]:
            router = hidden * moe.n_experts  # one score per expert, no bias
            expert = swiglu(moe.expert_size)
            mlp += router + moe.n_experts * expert
            active_mlp += router + moe.top_k * expert  # a token runs its top-k experts only
        else:
            mlp += swiglu(config.intermediate_size)
            active_mlp += swiglu(config.intermediate_size)

    # Norms: two per layer (before attention, before the MLP) and the final one. Qwen3 also
    # normalizes each query and key head (q_norm, k_norm: head_dim numbers each).
    norms_per_layer = 2 * hidden + (2 * head_dim if model_type in ("qwen3", "qwen3_moe") else 0)
    norms = n_layers * norms_per_layer + hidden

    embedding = vocab * hidden
    lm_head = 0 if config.tie_word_embeddings else vocab * hidden  # tied: the same matrix
    counts = {
        "embedding": embedding,
        "attention": n_layers * attention,
        "mlp": mlp,
        "norms": norms,
        "lm_head": lm_head,
    }
    counts["total"] = sum(counts.values())
    counts["active"] = counts["total"] - mlp + active_mlp
    return counts


def _gpt2_parameter_counts(config: Any) -> dict[str, int]:
    """``parameter_counts`` for GPT-2's layout (``GPT2Config``; GPT-3 has the same layout).

    Per layer: ``c_attn`` (hidden -> 3 * hidden, queries, keys and values, with biases) and
    ``c_proj`` (hidden -> hidden, with bias); an MLP ``c_fc`` (hidden -> inner, bias) and
    ``c_proj`` (inner -> hidden, bias); two LayerNorms (weight and bias each). Then a final
    LayerNorm, the token embedding ``wte`` and the learned position embedding ``wpe``; the
    output layer is ``wte`` itself (GPT-2 ties it).
    """
    hidden, n_layers = config.hidden_size, config.num_hidden_layers
    inner = config.n_inner or 4 * hidden  # GPT-2's default MLP width
    attention = hidden * 3 * hidden + 3 * hidden + hidden * hidden + hidden  # c_attn, c_proj
    mlp = hidden * inner + inner + inner * hidden + hidden  # c_fc, c_proj
    norms = n_layers * 2 * 2 * hidden + 2 * hidden  # ln_1, ln_2 per layer, ln_f: weight + bias
    # wte (vocab x hidden) + wpe (positions x hidden)
    embedding = (config.vocab_size + config.n_positions) * hidden
    lm_head = 0 if config.tie_word_embeddings else config.vocab_size * hidden
    counts = {
        "embedding": embedding,
        "attention": n_layers * attention,
        "mlp": n_layers * mlp,
        "norms": norms,
        "lm_head": lm_head,
    }
    counts["total"] = counts["active"] = sum(counts.values())
    return counts


def _kv_values_per_layer(config: Any, seq_len: int) -> list[int]:
    """Numbers one sequence's cache holds in each layer after ``seq_len`` tokens.

    - Multi-head latent attention (a config with ``kv_lora_rank``: DeepSeek-V2/V3): one
      latent of ``kv_lora_rank`` numbers (keys and values of all heads are projected up from
      it) plus the decoupled RoPE key of ``qk_rope_head_dim`` numbers, shared by all heads.
    - Otherwise a key and a value of ``head_dim`` numbers per key/value head.
    - A layer that ``config.layer_types`` marks ``"sliding_attention"`` (Gemma 2/3) keeps at
      most ``config.sliding_window`` tokens: a query reads itself and the ``window - 1``
      tokens before it (transformers' ``StaticCache`` allocates that many).
    """
    n_layers = config.num_hidden_layers
    if getattr(config, "kv_lora_rank", None):
        per_token = [config.kv_lora_rank + config.qk_rope_head_dim] * n_layers
    else:
        per_token = [2 * _num_kv_heads(config) * _head_dim(config)] * n_layers
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * n_layers
    if len(layer_types) != n_layers:
        raise ValueError(f"config.layer_types has {len(layer_types)} entries for {n_layers} layers")
    tokens = [
        min(seq_len, config.sliding_window) if kind == "sliding_attention" else seq_len
        for kind in layer_types
    ]
    return [n * t for n, t in zip(per_token, tokens, strict=True)]


def kv_cache_bytes(
    config: Any, seq_len: int, batch_size: int = 1, bytes_per_value: float = 2
) -> int:
    """The memory of the keys and values a model keeps for ``seq_len`` tokens.

    Every layer stores one key and one value vector per key/value head and token:
    ``2 * layers * kv_heads * head_dim * seq_len * batch_size * bytes_per_value``. Every token
    is kept (no sliding-window eviction), as in this library's ``KVCache``: Mistral's
    ``sliding_window`` is not applied. Two layouts store less (and a Qwen3 config with
    ``use_sliding_window``, whose ``layer_types`` mark sliding layers, is counted the same way):

    - **multi-head latent attention** (DeepSeek-V2/V3, configs with ``kv_lora_rank``): per
      layer and token, one latent of ``kv_lora_rank`` numbers plus one RoPE key of
      ``qk_rope_head_dim`` numbers, shared by all heads (DeepSeek-V3: 512 + 64 numbers,
      against 2 x 128 heads x 128 for plain multi-head attention);
    - **interleaved local/global layers** (Gemma 2/3, or any config with ``layer_types``):
      a layer that ``config.layer_types`` marks ``"sliding_attention"`` keeps at most
      ``config.sliding_window`` tokens.

    Args:
        config: a config ``parameter_counts`` accepts, or a DeepSeek-V2/V3 or Gemma 2/3 text
            config (see ``KV_CACHE_MODEL_TYPES``).
        seq_len: tokens in the cache (prompt plus generated), >= 1.
        batch_size: sequences kept side by side, >= 1.
        bytes_per_value: 4 for fp32, 2 for fp16/bf16 (the default), 1 for int8, 0.5 for int4.

    Returns:
        The size in bytes (rounded up to a whole byte).

    Raises:
        TypeError: a bad config, or an argument that is not a number of the right kind.
        ValueError: an unsupported architecture, or an argument that is not positive.
    """
    _model_type(config, KV_CACHE_MODEL_TYPES)
    seq_len = check_int("seq_len", seq_len, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_number(
        "bytes_per_value",
        bytes_per_value,
        minimum=0,
        exclusive_minimum=True,
        hint="(e.g. 2 for bf16, 0.5 for int4)",
    )
    # Numbers per sequence, summed over the layers (each layer: tokens kept x numbers each).
    values = sum(_kv_values_per_layer(config, seq_len))
    return math.ceil(values * batch_size * bytes_per_value)
