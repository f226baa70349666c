"""Parameter counts and KV-cache sizes from configs (``tutorial_lib.architecture``).

The reference is always a real model built on the "meta" device (shapes, no memory):
transformers' own classes for its configs, our ``Phi3ForCausalLM`` for our ``Phi3Config``.
"""

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    Qwen3Config,
    Qwen3MoeConfig,
)
from transformers import Phi3Config as HFPhi3Config

from tutorial_lib.architecture import kv_cache_bytes, parameter_counts
from tutorial_lib.cache import KVCache
from tutorial_lib.phi3 import Phi3Config, Phi3ForCausalLM

TINY = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
)

# Small configs of every supported architecture, each with the options that change the count.
TINY_CONFIGS = {
    "phi3": HFPhi3Config(
        **{**TINY, "num_key_value_heads": 4}, bos_token_id=1, eos_token_id=2, pad_token_id=0
    ),
    "llama": LlamaConfig(**TINY),
    "llama-tied": LlamaConfig(**TINY, tie_word_embeddings=True),
    "llama-biases": LlamaConfig(**TINY, attention_bias=True, mlp_bias=True),
    "mistral-head-dim": MistralConfig(**TINY, head_dim=12),
    "mixtral": MixtralConfig(**TINY, num_local_experts=4, num_experts_per_tok=2),
    "qwen3": Qwen3Config(**TINY, head_dim=16),
    "qwen3-moe": Qwen3MoeConfig(
        **TINY,
        head_dim=16,
        num_experts=6,
        num_experts_per_tok=2,
        moe_intermediate_size=20,
        decoder_sparse_step=1,
        mlp_only_layers=[1],  # layer 1 keeps a dense MLP of intermediate_size
    ),
    "qwen3-moe-step": Qwen3MoeConfig(
        **TINY,
        num_experts=4,
        num_experts_per_tok=1,
        moe_intermediate_size=20,
        decoder_sparse_step=2,  # only layer 1 (every 2nd) has experts
    ),
}


def meta_model(config) -> torch.nn.Module:
    """The model of ``config``, with parameter shapes but no memory."""
    with torch.device("meta"):
        if isinstance(config, Phi3Config):
            return Phi3ForCausalLM(config)
        return AutoModelForCausalLM.from_config(config)


def counts_by_name(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per part, sorted by their names; a shared (tied) matrix counts once."""
    parts = dict.fromkeys(["embedding", "attention", "mlp", "norms", "lm_head"], 0)
    for name, p in model.named_parameters():  # named_parameters skips a tied duplicate
        if "norm" in name:
            part = "norms"
        elif "embed_tokens" in name:
            part = "embedding"
        elif "lm_head" in name:
            part = "lm_head"
        elif "self_attn" in name:
            part = "attention"
        elif "mlp" in name:
            part = "mlp"
        else:
            raise AssertionError(f"unexpected parameter {name}")
        parts[part] += p.numel()
    parts["total"] = sum(p.numel() for p in model.parameters())
    return parts


def unused_expert_parameters(model: torch.nn.Module, top_k: int) -> int:
    """What one token does not use: the experts beyond its top-k, from the weights' shapes."""
    unused = 0
    for name, p in model.named_parameters():
        if ".experts." in name:  # fused experts: the first dimension is the expert index
            n_experts = p.shape[0]
            unused += p.numel() // n_experts * (n_experts - top_k)
    return unused


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_counts_match_a_built_model_part_by_part(name):
    config = TINY_CONFIGS[name]
    counts = parameter_counts(config)
    expected = counts_by_name(meta_model(config))
    assert {k: counts[k] for k in expected} == expected


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_active_parameters_leave_out_the_unused_experts(name):
    config = TINY_CONFIGS[name]
    model = meta_model(config)
    top_k = getattr(config, "num_experts_per_tok", 0)
    total = sum(p.numel() for p in model.parameters())
    expected = total - unused_expert_parameters(model, top_k) if top_k else total
    assert parameter_counts(config)["active"] == expected


def test_dense_models_use_every_parameter():
    for name in ("llama", "phi3", "qwen3"):
        counts = parameter_counts(TINY_CONFIGS[name])
        assert counts["active"] == counts["total"]


@pytest.mark.parametrize("tie", [False, True])
def test_our_phi3_config_matches_our_model(tie):
    config = Phi3Config(**TINY, tie_word_embeddings=tie)
    counts = parameter_counts(config)
    expected = counts_by_name(meta_model(config))
    assert {k: counts[k] for k in expected} == expected
    assert counts["lm_head"] == (0 if tie else TINY["vocab_size"] * TINY["hidden_size"])


def test_our_phi3_config_with_expert_fields():
    # The counts of a Mixtral with the same sizes: a Phi-3 with experts has Mixtral's layout.
    config = Phi3Config(**TINY)
    config.num_local_experts, config.num_experts_per_tok = 4, 2
    mixtral = MixtralConfig(**TINY, num_local_experts=4, num_experts_per_tok=2)
    assert parameter_counts(config) == parameter_counts(mixtral)


# The published configs (config.json on the Hugging Face Hub) and the total and active sizes
# their model cards and papers state, in billions.
PUBLISHED = {
    "Phi-3-mini-4k": (HFPhi3Config(), "3.82", "3.82"),  # transformers' defaults are Phi-3-mini's
    "Llama-3.1-8B": (
        LlamaConfig(
            vocab_size=128256,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=131072,
        ),
        "8.03",
        "8.03",
    ),
    "Mixtral-8x7B": (MixtralConfig(), "46.7", "12.9"),  # transformers' defaults are Mixtral 8x7B's
    "Qwen3-30B-A3B": (
        Qwen3MoeConfig(
            vocab_size=151936,
            hidden_size=2048,
            intermediate_size=6144,
            moe_intermediate_size=768,
            num_hidden_layers=48,
            num_attention_heads=32,
            num_key_value_heads=4,
            head_dim=128,
            num_experts=128,
            num_experts_per_tok=8,
            max_position_embeddings=40960,
        ),
        "30.5",
        "3.3",
    ),
}


def agrees_with(count: int, published: str) -> bool:
    """``count`` is the ``published`` figure in billions, to within one unit of its last digit.

    Cards round differently: Mixtral's 12.88 B active is "12.9 B" in Mistral's announcement,
    Qwen3-30B-A3B's 3.35 B active is "3.3 B" on its card.
    """
    last_digit = 10.0 ** -len(published.partition(".")[2])
    return abs(count / 1e9 - float(published)) <= last_digit


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_models(name):
    config, total_b, active_b = PUBLISHED[name]
    counts = parameter_counts(config)
    model = meta_model(config)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    # The rounded figures the model cards give.
    assert agrees_with(counts["total"], total_b)
    assert agrees_with(counts["active"], active_b)


def test_kv_cache_bytes_is_the_size_of_a_filled_cache():
    config = Phi3Config(**TINY)
    for batch, length in [(1, 1), (3, 17)]:
        cache = KVCache(config, batch, length, dtype=torch.float32)
        stored = sum(t.nbytes for t in cache.keys + cache.values)
        assert kv_cache_bytes(config, length, batch, bytes_per_value=4) == stored


def test_kv_cache_bytes_of_llama_31_8b():
    # 32 layers x 8 KV heads x 128 numbers, keys and values, bf16: 128 KiB per token,
    # so a full 128K-token context takes 16 GiB.
    config = PUBLISHED["Llama-3.1-8B"][0]
    assert kv_cache_bytes(config, 1) == 128 * 1024
    assert kv_cache_bytes(config, 131072) == 16 * 1024**3
    assert kv_cache_bytes(config, 131072, bytes_per_value=0.5) == 4 * 1024**3


def test_kv_cache_bytes_follows_head_dim_and_kv_heads():
    mistral = TINY_CONFIGS["mistral-head-dim"]  # head_dim 12, not 32 / 4
    assert kv_cache_bytes(mistral, 10) == 2 * 3 * 2 * 12 * 10 * 2
    mha = LlamaConfig(**{**TINY, "num_key_value_heads": None})  # no GQA: 4 KV heads
    assert kv_cache_bytes(mha, 10) == 2 * kv_cache_bytes(TINY_CONFIGS["llama"], 10)


def test_bad_configs_are_named():
    with pytest.raises(TypeError, match="config must be"):
        parameter_counts({"hidden_size": 4096})
    with pytest.raises(ValueError, match="model_type='gpt2'.*supported: phi3"):
        parameter_counts(GPT2Config())
    with pytest.raises(ValueError, match="model_type='gpt2'"):
        kv_cache_bytes(GPT2Config(), 10)
    too_many = MixtralConfig(**TINY, num_local_experts=2, num_experts_per_tok=3)
    with pytest.raises(ValueError, match="num_experts_per_tok=3"):
        parameter_counts(too_many)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(seq_len=0), ValueError, "seq_len=0 must be an integer >= 1"),
        (dict(seq_len=2.5), TypeError, "seq_len=2.5 must be an integer >= 1, got float"),
        (dict(seq_len=8, batch_size=0), ValueError, "batch_size=0 must be an integer >= 1"),
        (dict(seq_len=8, bytes_per_value=0), ValueError, "bytes_per_value=0 must be a number > 0"),
        (
            dict(seq_len=8, bytes_per_value="bf16"),
            TypeError,
            "bytes_per_value='bf16' must be a number > 0.*str",
        ),
        (dict(seq_len=True), TypeError, "seq_len=True must be an integer >= 1, got bool"),
    ],
)
def test_bad_kv_cache_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        kv_cache_bytes(TINY_CONFIGS["llama"], **kwargs)
