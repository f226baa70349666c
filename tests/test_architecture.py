"""Parameter counts and KV-cache sizes from configs (``tutorial_lib.architecture``).

The reference is always a real model built on the "meta" device (shapes, no memory):
transformers' own classes for its configs, our ``Phi3ForCausalLM`` for our ``Phi3Config``.
"""

import warnings

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    BertConfig,
    DeepseekV3Config,
    DynamicCache,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    Qwen3Config,
    Qwen3MoeConfig,
    StaticCache,
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
    # GPT-2's layout: learned positions, biases everywhere, LayerNorm, a 4x GELU MLP
    "gpt2": GPT2Config(vocab_size=96, n_embd=32, n_layer=3, n_head=4, n_positions=40),
    "gpt2-inner": GPT2Config(
        vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=24, n_inner=48
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
        if "norm" in name or ".ln_" in name:  # GPT-2: ln_1, ln_2, ln_f
            part = "norms"
        elif "embed_tokens" in name or ".wte." in name or ".wpe." in name:
            part = "embedding"
        elif "lm_head" in name:
            part = "lm_head"
        elif "self_attn" in name or ".attn." in name:
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
    with pytest.raises(ValueError, match="model_type='bert'.*supported: phi3"):
        parameter_counts(BertConfig())
    with pytest.raises(ValueError, match="model_type='bert'"):
        kv_cache_bytes(BertConfig(), 10)
    # the caches of DeepSeek and Gemma are sized, their weights are not counted
    with pytest.raises(ValueError, match="model_type='deepseek_v3'"):
        parameter_counts(DeepseekV3Config())
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


# GPT-3 175B (Brown et al. 2020, Table 2.1): GPT-2's layout at GPT-3's sizes.
GPT3 = GPT2Config(vocab_size=50257, n_positions=2048, n_embd=12288, n_layer=96, n_head=96)


def test_gpt3_is_175_billion():
    counts = parameter_counts(GPT3)
    assert counts["total"] == sum(p.numel() for p in meta_model(GPT3).parameters())
    assert agrees_with(counts["total"], "175") and counts["active"] == counts["total"]
    d, layers = 12288, 96
    # the rule of thumb: 12 d^2 per layer (4 d^2 attention, 8 d^2 MLP), biases and norms aside
    assert counts["attention"] + counts["mlp"] - 12 * layers * d**2 == layers * 9 * d
    assert counts["embedding"] == (50257 + 2048) * d and counts["lm_head"] == 0


# Tiny configs for the caches, each built and run by transformers.
TINY_CACHE = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=4)
TINY_MLA = DeepseekV3Config(
    **TINY_CACHE,
    num_attention_heads=4,
    num_key_value_heads=4,
    kv_lora_rank=16,
    q_lora_rank=24,
    qk_rope_head_dim=8,
    qk_nope_head_dim=8,
    v_head_dim=8,
    moe_intermediate_size=16,
    n_routed_experts=4,
    num_experts_per_tok=2,
    n_group=1,
    topk_group=1,
    first_k_dense_replace=1,
)
TINY_GEMMA2 = Gemma2Config(
    **TINY_CACHE, num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=5
)
TINY_GEMMA3 = Gemma3TextConfig(
    **{**TINY_CACHE, "num_hidden_layers": 7},
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    sliding_window=3,
)


def filled_cache_bytes(config, cache_class, batch: int, length: int) -> int:
    """Bytes transformers' cache holds after a forward pass over ``length`` random tokens."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    if cache_class is StaticCache:
        cache = StaticCache(config=config, max_cache_len=length)
    else:
        cache = DynamicCache(config=config)
    ids = torch.randint(0, config.vocab_size, (batch, length))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' deprecation notes, not ours
        model(ids, past_key_values=cache, use_cache=True)
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def test_kv_cache_bytes_of_multi_head_latent_attention():
    # transformers caches the latent c_KV (kv_lora_rank) and the shared RoPE key per layer
    for batch, length in [(1, 1), (2, 9)]:
        stored = filled_cache_bytes(TINY_MLA, DynamicCache, batch, length)
        assert kv_cache_bytes(TINY_MLA, length, batch, bytes_per_value=4) == stored
        assert stored == 4 * (16 + 8) * length * batch * 4  # 4 layers, fp32


def test_kv_cache_bytes_of_deepseek_v3():
    # DeepSeek-V3 (arXiv 2412.19437; transformers' defaults are its config): d_c = 512,
    # d_h^R = 64, 61 layers; 128 heads of 128 would cache 2 x 128 x 128 numbers per layer.
    config = DeepseekV3Config()
    assert (config.kv_lora_rank, config.qk_rope_head_dim) == (512, 64)
    assert (config.num_hidden_layers, config.num_attention_heads) == (61, 128)
    assert kv_cache_bytes(config, 1) == 61 * (512 + 64) * 2 == 70_272
    assert kv_cache_bytes(config, 1000, 3, 1) == 61 * 576 * 1000 * 3
    mha = LlamaConfig(num_hidden_layers=61, num_attention_heads=128, head_dim=128)
    assert kv_cache_bytes(mha, 1) == 2 * 61 * 128 * 128 * 2
    assert kv_cache_bytes(mha, 1) / kv_cache_bytes(config, 1) > 56


@pytest.mark.parametrize("config", [TINY_GEMMA2, TINY_GEMMA3], ids=["gemma2", "gemma3"])
def test_kv_cache_bytes_of_sliding_window_layers(config):
    for length in (2, 12):  # shorter and longer than the window
        stored = filled_cache_bytes(config, StaticCache, 2, length)
        assert kv_cache_bytes(config, length, 2, bytes_per_value=4) == stored
    # by hand: full layers keep every token, sliding ones the last `window`
    n_full = config.layer_types.count("full_attention")
    n_local = config.num_hidden_layers - n_full
    per_layer_token = 2 * 2 * 8  # keys and values x 2 kv heads x head_dim 8
    window = config.sliding_window
    assert kv_cache_bytes(config, 100, bytes_per_value=1) == per_layer_token * (
        n_full * 100 + n_local * window
    )


def test_gemma_layer_patterns():
    # Gemma 2 alternates local (window 4,096) and global layers; Gemma 3 has 5 local per global
    # (arXiv 2408.00118, 2503.19786). transformers' defaults are the 26-layer 2B shape.
    gemma2 = Gemma2Config()
    assert gemma2.layer_types[:2] == ["sliding_attention", "full_attention"]
    assert gemma2.sliding_window == 4096
    assert Gemma3TextConfig().layer_types[:6] == ["sliding_attention"] * 5 + ["full_attention"]
    per_token_layer = 2 * 4 * 256 * 2  # K and V x 4 kv heads x 256 x bf16
    assert kv_cache_bytes(gemma2, 8192) == per_token_layer * 13 * (8192 + 4096)
    assert kv_cache_bytes(gemma2, 1000) == per_token_layer * 26 * 1000  # all within the window


def test_bad_layer_types_are_named():
    config = Gemma2Config(**TINY_CACHE, num_attention_heads=4, num_key_value_heads=2)
    config.layer_types = config.layer_types[:2]
    with pytest.raises(ValueError, match="layer_types has 2 entries for 4 layers"):
        kv_cache_bytes(config, 10)
