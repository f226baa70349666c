"""The Phi-3 model code itself (``tutorial_lib.phi3``): names, layout and config checks.

Numerical parity with transformers is in ``test_parity.py``.
"""

import pytest
import torch
from transformers import Phi3Config as HFPhi3Config
from transformers import Phi3ForCausalLM as HFPhi3ForCausalLM

from tutorial_lib.cache import KVCache
from tutorial_lib.loading import config_from_hf
from tutorial_lib.phi3 import Phi3Config, Phi3ForCausalLM

# Phi-3-mini-4k-instruct's sizes (its config.json), with 2 of its 32 layers.
PHI3_MINI = dict(
    vocab_size=32064,
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=2,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    sliding_window=2047,
)


def weight_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def test_module_names_and_shapes_are_transformers_phi3s():
    # Built on the "meta" device: shapes without memory.
    with torch.device("meta"):
        hf = HFPhi3ForCausalLM(HFPhi3Config(**PHI3_MINI, pad_token_id=32000))
        ours = Phi3ForCausalLM(config_from_hf(hf.config))
    assert weight_shapes(ours) == weight_shapes(hf)
    # print(model) reads like the course's printout.
    printed = str(ours)
    for line in [
        "(embed_tokens): Embedding(32064, 3072)",
        "(0-1): 2 x Phi3DecoderLayer(",
        "(qkv_proj): Linear(in_features=3072, out_features=9216, bias=False)",
        "(o_proj): Linear(in_features=3072, out_features=3072, bias=False)",
        "(gate_up_proj): Linear(in_features=3072, out_features=16384, bias=False)",
        "(down_proj): Linear(in_features=8192, out_features=3072, bias=False)",
        "(activation_fn): SiLU()",
        "(input_layernorm): Phi3RMSNorm((3072,), eps=1e-05)",
        "(lm_head): Linear(in_features=3072, out_features=32064, bias=False)",
    ]:
        assert line in printed


def test_tied_embeddings_share_one_matrix():
    config = Phi3Config(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        tie_word_embeddings=True,
    )
    model = Phi3ForCausalLM(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_key_value_heads=5), r"num_key_value_heads=5 must divide num_attention_heads=32"),
        (dict(hidden_size=3000), r"hidden_size=3000 must be divisible by num_attention_heads=32"),
        (
            dict(rope_parameters=dict(rope_type="ntk", rope_theta=1e4)),
            r"rope_type='ntk' is not supported; supported: \('default', 'linear', 'dynamic'",
        ),
        (
            dict(rope_parameters=dict(rope_type="default", rope_theta=1, partial_rotary_factor=0)),
            r"partial_rotary_factor=0 must be a number in \(0, 1\]",
        ),
        (
            dict(rope_parameters=dict(rope_type="default", rope_theta=1, partial_rotary_factor=2)),
            r"partial_rotary_factor=2 must be a number in \(0, 1\]",
        ),
        (
            dict(
                rope_parameters=dict(
                    rope_type="longrope",
                    rope_theta=1e4,
                    original_max_position_embeddings=2048,
                    short_factor=[1.0] * 48,
                    long_factor=[1.0] * 47,
                )
            ),
            r"needs long_factor with 48 numbers \(one per rotary frequency\), got 47",
        ),
        (
            dict(rope_parameters=dict(rope_type="longrope", rope_theta=1e4)),
            r"rope_type='longrope' needs 'short_factor' in rope_parameters",
        ),
        (
            dict(rope_parameters=dict(rope_type="yarn", rope_theta=1e4, factor=4.0)),
            r"rope_type='yarn' needs 'original_max_position_embeddings' in rope_parameters",
        ),
        (
            dict(sliding_window=0),
            r"sliding_window=0 must be an integer >= 1 \(or None: no window\)",
        ),
    ],
)
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Phi3Config(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(num_attention_heads=0), ValueError, r"num_attention_heads=0 must be an integer >= 1"),
        (dict(hidden_size=-8), ValueError, r"hidden_size=-8 must be an integer >= 1"),
        (dict(vocab_size=0), ValueError, r"vocab_size=0 must be an integer >= 1"),
        (dict(num_hidden_layers=2.0), TypeError, r"num_hidden_layers=2.0 .* got float"),
        (dict(intermediate_size=True), TypeError, r"intermediate_size=True .* got bool"),
        (dict(num_key_value_heads=0), ValueError, r"num_key_value_heads=0 .* \(or None\)"),
        (dict(head_dim=0), ValueError, r"head_dim=0 must be an integer >= 1"),
        (dict(max_position_embeddings=0), ValueError, r"max_position_embeddings=0"),
        (dict(rms_norm_eps=0.0), ValueError, r"rms_norm_eps=0.0 must be a number > 0"),
        (dict(num_local_experts=0), ValueError, r"num_local_experts=0"),
        (
            dict(num_local_experts=2, num_experts_per_tok=3),
            ValueError,
            r"num_experts_per_tok=3 must be at most num_local_experts=2",
        ),
    ],
)
def test_config_fields_are_validated_with_clear_errors(kwargs, error, message):
    # Each of these used to fail later, e.g. num_attention_heads=0 with a ZeroDivisionError.
    with pytest.raises(error, match=message):
        Phi3Config(**kwargs)


def test_kv_cache_grows_and_keeps_what_it_holds():
    config = Phi3Config(
        hidden_size=8, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    )
    cache = KVCache(config, batch_size=1, max_length=3)
    written = []
    for step in range(7):  # past the first capacity of 3 tokens
        key = torch.full((1, 1, 1, 4), float(step))
        assert cache.length == step
        keys, values = cache.update(0, key, -key)
        assert cache.length == step  # layer 1 has not seen this token yet
        cache.update(1, key, -key)
        assert cache.length == step + 1  # the cache counts a token once every layer holds it
        written.append(float(step))
        assert keys[0, 0, :, 0].tolist() == written  # (batch, n_kv_heads, length, head_dim)
        assert values[0, 0, :, 0].tolist() == [-w for w in written]
    assert cache.capacity >= 7


# --------------------------------------------------------------------------------------
# The KV cache beyond "it grows": positions, reuse across calls, overflow, batches
# --------------------------------------------------------------------------------------
def tiny_random_phi3(sliding_window: int | None = None) -> Phi3ForCausalLM:
    torch.manual_seed(0)
    config = Phi3Config(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=16,
        sliding_window=sliding_window,
        pad_token_id=0,
    )
    model = Phi3ForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model.eval()


def token_ids(batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 40, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sliding_window", [None, 5])
@pytest.mark.parametrize("chunks", [[4, 1, 1, 1, 1, 1, 1], [2, 3, 5], [1] * 10])
@torch.inference_mode()
def test_cached_chunks_give_the_logits_of_one_uncached_pass(sliding_window, chunks):
    # Each chunk's tokens sit at the positions after the cached ones (RoPE and the causal
    # and sliding-window masks); one cache object is reused across all the calls.
    model = tiny_random_phi3(sliding_window)
    ids = token_ids(2, sum(chunks))
    full = model(ids).logits
    cache, start, pieces = None, 0, []
    for n in chunks:
        out = model(ids[:, start : start + n], past_key_values=cache, use_cache=True)
        cache, start = out.past_key_values, start + n
        assert cache.length == start
        pieces.append(out.logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_a_cache_past_the_context_length_raises():
    model = tiny_random_phi3()
    cache = model(token_ids(1, 12), use_cache=True).past_key_values
    model(token_ids(1, 4), past_key_values=cache)  # exactly the 16-token context: fine
    with pytest.raises(ValueError, match=r"16 cached \+ 1 new tokens exceed the context length"):
        model(token_ids(1, 1), past_key_values=cache)


@torch.inference_mode()
def test_a_batch_cache_equals_each_sequence_with_its_own_cache():
    model = tiny_random_phi3()
    ids = token_ids(3, 9, seed=1)
    batch_cache = model(ids[:, :5], use_cache=True).past_key_values
    batch_next = model(ids[:, 5:], past_key_values=batch_cache).logits
    for row in range(3):
        one = ids[row : row + 1]
        cache = model(one[:, :5], use_cache=True).past_key_values
        alone = model(one[:, 5:], past_key_values=cache).logits
        torch.testing.assert_close(batch_next[row : row + 1], alone, atol=1e-5, rtol=1e-5)
        # The batch cache holds each sequence's own keys, in its own row.
        torch.testing.assert_close(
            batch_cache.keys[1][row : row + 1, :, :9], cache.keys[1][:, :, :9]
        )
