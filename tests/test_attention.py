"""tutorial_lib.attention against the references: torch's SDPA and MultiheadAttention,
torch's causal biases, transformers' mask functions and its Llama (GQA) attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.bias import causal_lower_right, causal_upper_left
from transformers import LlamaConfig
from transformers.masking_utils import causal_mask_function, sliding_window_causal_mask_function
from transformers.models.llama.modeling_llama import LlamaAttention
from transformers.models.llama.modeling_llama import repeat_kv as hf_repeat_kv

from tutorial_lib.attention import (
    MultiHeadAttention,
    causal_mask,
    head_weight_rows,
    padding_mask,
    repeat_kv,
    scaled_dot_product_attention,
    sliding_window_mask,
)

ATOL = 1e-5


def qkv(*lead: int, q_len: int = 5, k_len: int = 5, head_dim: int = 8, v_dim: int = 8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, q_len, head_dim, generator=g)
    k = torch.randn(*lead, k_len, head_dim, generator=g)
    v = torch.randn(*lead, k_len, v_dim, generator=g)
    return q, k, v


def reference_weights(q, k, mask=None):
    """The attention weights torch computes: SDPA with the identity matrix as values."""
    eye = torch.eye(k.shape[-2]).expand(*k.shape[:-1], k.shape[-2])
    return F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)


# --------------------------------------------------------------------------------------
# Scaled dot-product attention vs torch.nn.functional.scaled_dot_product_attention
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("lead", [(), (3,), (2, 4)])
def test_sdpa_matches_torch_without_mask(lead):
    q, k, v = qkv(*lead, q_len=4, k_len=6, v_dim=3)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (*lead, 4, 3)
    assert weights.shape == (*lead, 4, 6)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=ATOL, rtol=0)
    torch.testing.assert_close(weights, reference_weights(q, k), atol=ATOL, rtol=0)


def test_sdpa_weights_are_a_distribution_over_keys():
    q, k, v = qkv(2, 3, q_len=4, k_len=7)
    _, weights = scaled_dot_product_attention(q, k, v)
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 4))


def test_sdpa_with_causal_mask_matches_torch_is_causal():
    q, k, v = qkv(2, 4, q_len=6, k_len=6)
    out, weights = scaled_dot_product_attention(q, k, v, causal_mask(6))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    # Nothing above the diagonal: no query looks at a later key.
    assert (weights.triu(diagonal=1) == 0).all()


@pytest.mark.parametrize(
    "make_mask",
    [
        lambda: causal_mask(4, 7),
        lambda: sliding_window_mask(7, window=3),
        lambda: padding_mask(torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])),
        lambda: causal_mask(7) & padding_mask(torch.tensor([[1, 1, 1, 1, 1, 0, 0]] * 2)),
    ],
    ids=["causal-kv-cache", "sliding-window", "padding", "causal-and-padding"],
)
def test_sdpa_matches_torch_with_the_same_boolean_mask(make_mask):
    mask = make_mask()
    q_len = mask.shape[-2] if mask.shape[-2] > 1 else 7
    q, k, v = qkv(2, 3, q_len=q_len, k_len=7)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(weights, reference_weights(q, k, mask), atol=ATOL, rtol=0)
    # Hidden keys get exactly zero weight.
    assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()


def test_sdpa_query_with_every_key_hidden_gives_zeros_like_torch():
    q, k, v = qkv(1, q_len=3, k_len=3)
    mask = torch.tensor([[False, False, False], [True, False, False], [True, True, True]])
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert not out.isnan().any()
    assert (weights[0, 0] == 0).all() and (out[0, 0] == 0).all()
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=ATOL, rtol=0
    )


def test_sdpa_gradients_match_torch():
    q, k, v = (t.requires_grad_() for t in qkv(2, q_len=5, k_len=5))
    mask = sliding_window_mask(5, window=2)
    scaled_dot_product_attention(q, k, v, mask)[0].square().sum().backward()
    ours = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    F.scaled_dot_product_attention(q, k, v, attn_mask=mask).square().sum().backward()
    for mine, theirs in zip(ours, (q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------
# Masks vs torch's causal biases and transformers' mask functions
# --------------------------------------------------------------------------------------


def hf_mask(mask_function, q_len: int, k_len: int) -> torch.Tensor:
    """Evaluate a transformers mask function on every (query, key) index pair."""
    q_idx = torch.arange(q_len)[:, None]
    kv_idx = torch.arange(k_len)[None, :]
    return mask_function(0, 0, q_idx, kv_idx).expand(q_len, k_len)


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_causal_mask_is_torch_and_transformers_causal_mask(n):
    mask = causal_mask(n)
    assert mask.dtype == torch.bool and mask.shape == (n, n)
    assert torch.equal(mask, causal_upper_left(n, n)._materialize())
    assert torch.equal(mask, hf_mask(causal_mask_function, n, n))


@pytest.mark.parametrize(("q_len", "k_len"), [(1, 6), (3, 6), (6, 6)])
def test_causal_mask_with_cached_keys_is_lower_right_aligned(q_len, k_len):
    mask = causal_mask(q_len, k_len)
    assert torch.equal(mask, causal_lower_right(q_len, k_len)._materialize())
    # A single new token (decoding with a KV cache) sees every key.
    assert mask[-1].all()


@pytest.mark.parametrize("window", [1, 2, 4, 10])
def test_sliding_window_mask_is_transformers_sliding_window(window):
    mask = sliding_window_mask(8, window)
    reference = hf_mask(sliding_window_causal_mask_function(window), 8, 8)
    assert torch.equal(mask, reference)
    # Each query sees min(window, position + 1) keys.
    assert mask.sum(-1).tolist() == [min(window, i + 1) for i in range(8)]


def test_sliding_window_mask_with_cached_keys_keeps_the_last_window_keys():
    mask = sliding_window_mask(2, window=3, k_len=6)
    assert mask.int().tolist() == [[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1]]


def test_padding_mask_hides_padded_keys_of_each_sequence():
    attention_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    mask = padding_mask(attention_mask)
    assert mask.shape == (2, 1, 1, 4) and mask.dtype == torch.bool
    assert mask[:, 0, 0].tolist() == [[True, True, True, False], [True, True, True, True]]
    assert torch.equal(padding_mask(attention_mask.bool()), mask)


def test_padding_does_not_change_the_real_tokens_outputs():
    q, k, v = qkv(1, 2, q_len=3, k_len=3)
    alone, _ = scaled_dot_product_attention(q, k, v)
    # Append two padding positions filled with noise; the mask must make them invisible.
    noise = torch.randn(1, 2, 2, 8)
    q_pad, k_pad, v_pad = (torch.cat([t, noise], dim=2) for t in (q, k, v))
    mask = padding_mask(torch.tensor([[1, 1, 1, 0, 0]]))
    padded, _ = scaled_dot_product_attention(q_pad, k_pad, v_pad, mask)
    torch.testing.assert_close(padded[:, :, :3], alone, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------
# Multi-head attention vs torch.nn.MultiheadAttention (same weights)
# --------------------------------------------------------------------------------------


def torch_mha_with_our_weights(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(ours.hidden_size, ours.num_heads, batch_first=True)
    with torch.no_grad():
        # torch packs the three input projections into one (3 * hidden, hidden) matrix.
        ref.in_proj_weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.o_proj.weight)
        ref.out_proj.bias.copy_(ours.o_proj.bias)
    return ref.eval()


@pytest.fixture
def mha():
    torch.manual_seed(0)
    return MultiHeadAttention(hidden_size=32, num_heads=4).eval()


def test_mha_self_attention_matches_torch(mha):
    x = torch.randn(2, 6, 32)
    ref = torch_mha_with_our_weights(mha)
    out, weights = mha(x)
    ref_out, ref_weights = ref(x, x, x, average_attn_weights=False)
    assert out.shape == (2, 6, 32) and weights.shape == (2, 4, 6, 6)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=ATOL, rtol=0)


def test_mha_causal_matches_torch_with_inverted_mask(mha):
    x = torch.randn(2, 6, 32)
    ref = torch_mha_with_our_weights(mha)
    mask = causal_mask(6)
    out, _ = mha(x, mask=mask)
    # nn.MultiheadAttention's boolean attn_mask means True = hidden: the opposite convention.
    ref_out, _ = ref(x, x, x, attn_mask=~mask)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)


def test_mha_cross_attention_with_padding_matches_torch(mha):
    decoder_states = torch.randn(2, 3, 32)
    encoder_states = torch.randn(2, 5, 32)
    attention_mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    ref = torch_mha_with_our_weights(mha)
    out, weights = mha(decoder_states, encoder_states, mask=padding_mask(attention_mask))
    ref_out, ref_weights = ref(
        decoder_states,
        encoder_states,
        encoder_states,
        key_padding_mask=attention_mask == 0,
        average_attn_weights=False,
    )
    assert out.shape == (2, 3, 32) and weights.shape == (2, 4, 3, 5)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------
# Shared key/value heads (GQA, MQA) vs torch's enable_gqa and transformers' Llama attention
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_rep", [1, 2, 4])
def test_repeat_kv_matches_transformers_and_torch_gqa(n_rep):
    kv = torch.randn(2, 3, 5, 4)
    repeated = repeat_kv(kv, n_rep)
    assert repeated.shape == (2, 3 * n_rep, 5, 4)
    assert torch.equal(repeated, hf_repeat_kv(kv, n_rep))
    # Attention with the repeated heads = torch's grouped-query attention on the shared heads.
    q = torch.randn(2, 3 * n_rep, 5, 4)
    out, _ = scaled_dot_product_attention(q, repeated, repeated, causal_mask(5))
    expected = F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1], ids=["MHA", "GQA", "MQA"])
def test_grouped_heads_match_transformers_llama_attention(num_kv_heads):
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=num_kv_heads,
        attention_bias=False,
        attn_implementation="eager",
    )
    llama = LlamaAttention(config, layer_idx=0).eval()
    ours = MultiHeadAttention(32, 4, num_kv_heads=num_kv_heads, bias=False).eval()
    ours.load_state_dict(llama.state_dict())  # the same parameter names and shapes
    assert ours.k_proj.weight.shape == (num_kv_heads * 8, 32)

    x = torch.randn(2, 6, 32)
    mask = causal_mask(6) & padding_mask(torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]))
    # Llama rotates queries and keys by position (RoPE); cos=1, sin=0 is no rotation at all.
    no_rotation = (torch.ones(2, 6, 8), torch.zeros(2, 6, 8))
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    ref_out, ref_weights = llama(x, position_embeddings=no_rotation, attention_mask=additive)
    out, weights = ours(x, mask=mask)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=ATOL, rtol=0)


def test_fewer_kv_heads_means_smaller_key_and_value_projections():
    sizes = {
        kv: sum(p.numel() for p in MultiHeadAttention(64, 8, kv, bias=False).parameters())
        for kv in (8, 2, 1)
    }
    # q_proj and o_proj: 64 x 64 each; k_proj and v_proj: 64 x (kv * 8) each.
    assert sizes == {kv: 2 * 64 * 64 + 2 * 64 * kv * 8 for kv in (8, 2, 1)}


# --------------------------------------------------------------------------------------
# Bad input gets a clear error
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.randn(3, 4), torch.randn(3, 5), torch.randn(3, 4)), ValueError, "same head_dim"),
        ((torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 4)), ValueError, "same number"),
        ((torch.randn(2, 3, 4), torch.randn(3, 3, 4), torch.randn(3, 3, 4)), ValueError, "leading"),
        ((torch.randn(4), torch.randn(4), torch.randn(4)), ValueError, "at least 2 dims"),
        (([[1.0]], torch.randn(1, 1), torch.randn(1, 1)), TypeError, "q must be a torch.Tensor"),
        ((torch.ones(2, 2, dtype=torch.long),) * 3, TypeError, "floating-point"),
    ],
)
def test_sdpa_rejects_mismatched_inputs(args, error, match):
    with pytest.raises(error, match=match):
        scaled_dot_product_attention(*args)


def test_sdpa_rejects_bad_masks():
    q, k, v = qkv(q_len=3, k_len=4)
    with pytest.raises(TypeError, match="boolean tensor"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"mask of shape \(4, 3\) does not broadcast"):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 3, dtype=torch.bool))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: causal_mask(5, 3), ValueError, "k_len=3 must be >= q_len=5"),
        (lambda: causal_mask(0), ValueError, "q_len=0 must be an integer >= 1"),
        (lambda: causal_mask(2.5), TypeError, "q_len=2.5 must be an integer >= 1, got float"),
        (lambda: sliding_window_mask(4, 0), ValueError, "window=0 must be an integer >= 1"),
        (lambda: padding_mask(torch.tensor([1, 1, 0])), ValueError, r"\(batch, seq_len\)"),
        (lambda: padding_mask(torch.tensor([[1, 2, 0]])), ValueError, "only 0 .* and 1"),
        (lambda: padding_mask([[1, 0]]), TypeError, "attention_mask must be a torch.Tensor"),
        (lambda: repeat_kv(torch.randn(2, 3, 4), 2), ValueError, "n_kv_heads"),
        (
            lambda: repeat_kv(torch.randn(1, 2, 3, 4), 0),
            ValueError,
            "n_rep=0 must be an integer >= 1",
        ),
        (lambda: MultiHeadAttention(30, 4), ValueError, "hidden_size=30 .* num_heads=4"),
        (lambda: MultiHeadAttention(32, 4, 3), ValueError, "num_heads=4 .* num_kv_heads=3"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_mha_rejects_wrong_input_shapes(mha):
    with pytest.raises(ValueError, match=r"hidden_states must have shape \(batch, seq_len, 32\)"):
        mha(torch.randn(6, 32))
    with pytest.raises(ValueError, match=r"hidden_states .* got \(2, 6, 16\)"):
        mha(torch.randn(2, 6, 16))
    with pytest.raises(ValueError, match="key_value_states must have shape"):
        mha(torch.randn(2, 6, 32), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="batch size 3"):
        mha(torch.randn(2, 6, 32), torch.randn(3, 5, 32))


# --------------------------------------------------------------------------------------
# head_weight_rows: the data of the head explorer (tutorial_lib.controls.attention_heads)
# --------------------------------------------------------------------------------------


def test_head_weight_rows_hold_each_heads_matrix_row_by_row():
    weights = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)).softmax(-1)
    tokens = ["the", "dog", "the", "end"]
    rows = head_weight_rows({"s": (tokens, weights), "t": (["a"], torch.ones(2, 3, 1, 1))})
    assert len(rows) == 2 * 3 * 2  # (layers x heads) for each text
    row = next(r for r in rows if (r["text"], r["layer"], r["head"]) == ("s", 1, 2))
    assert row["tokens"] == tokens
    # Row-major: entry 4 * q + k is the weight of query q on key k.
    for q in range(4):
        for k in range(4):
            assert row["weights"][4 * q + k] == round(100 * float(weights[1, 2, q, k]))  # percent
    assert all(isinstance(w, int) for w in row["weights"])


def test_head_weight_rows_reject_bad_input():
    with pytest.raises(ValueError, match=r"shape \(layers, heads, 3, 3\)"):
        head_weight_rows({"s": (["a", "b", "c"], torch.rand(2, 3, 4, 4))})
    with pytest.raises(TypeError, match="texts must be"):
        head_weight_rows({})
