"""``tutorial_lib.rope`` against transformers' RoPE functions, for every rope type.

The reference is ``transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS`` (and, for the default
type, ``Phi3RotaryEmbedding.compute_default_rope_parameters``), run on a transformers config
that holds the same ``rope_parameters``.
"""

import dataclasses
import math

import pytest
import torch
import transformers
from conftest import TINY_CONFIG, tiny_config
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding as HFPhi3RotaryEmbedding

from tutorial_lib.loading import from_hf
from tutorial_lib.phi3 import Phi3Config, Phi3RotaryEmbedding, apply_rotary_pos_emb
from tutorial_lib.rope import ROPE_TYPES, rope_inv_freq, rope_pairs, rope_scores

transformers.logging.set_verbosity_error()

HEAD_DIM = 16


def longrope(partial: float = 1.0, **extra) -> dict:
    n = int(HEAD_DIM * partial) // 2
    return dict(
        rope_type="longrope",
        rope_theta=10000.0,
        partial_rotary_factor=partial,
        short_factor=[1.0 + 0.05 * i for i in range(n)],
        long_factor=[1.0 + 0.7 * i for i in range(n)],
        original_max_position_embeddings=16,
        **extra,
    )


YARN = dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=16)
LLAMA3 = dict(
    rope_type="llama3",
    rope_theta=10000.0,
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=256,
)
# (rope_parameters, max_position_embeddings)
CASES = {
    "default": (dict(rope_type="default", rope_theta=10000.0), 64),
    "default-partial": (dict(rope_type="default", rope_theta=500.0, partial_rotary_factor=0.5), 64),
    "linear": (dict(rope_type="linear", rope_theta=10000.0, factor=4.0), 64),
    "linear-partial": (
        dict(rope_type="linear", rope_theta=10000.0, factor=2.5, partial_rotary_factor=0.75),
        64,
    ),
    "dynamic": (dict(rope_type="dynamic", rope_theta=10000.0, factor=4.0), 64),
    "dynamic-partial": (
        dict(rope_type="dynamic", rope_theta=500.0, factor=2.0, partial_rotary_factor=0.5),
        64,
    ),
    "yarn": (YARN, 64),
    "yarn-betas": ({**YARN, "beta_fast": 16, "beta_slow": 2}, 64),
    "yarn-no-truncate": ({**YARN, "truncate": False}, 64),
    "yarn-attention-factor": ({**YARN, "attention_factor": 0.8}, 64),
    "yarn-mscale": ({**YARN, "mscale": 0.707, "mscale_all_dim": 1.0}, 64),
    "yarn-factor-from-context": ({**YARN, "factor": None}, 96),
    "longrope": (longrope(), 64),
    "longrope-partial": (longrope(partial=0.75), 64),
    "longrope-factor": (longrope(factor=8.0), 64),
    "longrope-attention-factor": (longrope(attention_factor=1.3), 64),
    "llama3": (LLAMA3, 2048),
    "llama3-partial": ({**LLAMA3, "partial_rotary_factor": 0.5}, 2048),
}
# None: at init; then inside, at and past max_position_embeddings / the original context.
SEQ_LENS = [None, 8, 16, 17, 64, 65, 300]


def reference(rope_parameters: dict, max_position_embeddings: int, seq_len: int | None):
    config = LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        head_dim=HEAD_DIM,
        max_position_embeddings=max_position_embeddings,
        rope_parameters=dict(rope_parameters),
    )
    if rope_parameters["rope_type"] == "default":
        # Phi-3's default honours partial_rotary_factor (Llama's ignores it).
        return HFPhi3RotaryEmbedding.compute_default_rope_parameters(config, "cpu")
    return ROPE_INIT_FUNCTIONS[rope_parameters["rope_type"]](config, "cpu", seq_len=seq_len)


@pytest.mark.parametrize("seq_len", SEQ_LENS)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_transformers(case, seq_len):
    rope_parameters, max_position_embeddings = CASES[case]
    expected, expected_factor = reference(rope_parameters, max_position_embeddings, seq_len)
    got, factor = rope_inv_freq(rope_parameters, HEAD_DIM, max_position_embeddings, seq_len)
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    assert factor == pytest.approx(expected_factor, rel=1e-12)


def test_every_type_is_tested():
    assert {p["rope_type"] for p, _ in CASES.values()} == set(ROPE_TYPES)


def test_types_differ_as_documented():
    base, _ = rope_inv_freq(dict(rope_type="default", rope_theta=10000.0), HEAD_DIM, 64)
    linear, _ = rope_inv_freq(dict(rope_type="linear", rope_theta=10000.0, factor=4.0), 16, 64)
    torch.testing.assert_close(linear, base / 4)
    # Dynamic: unchanged within the context, slower beyond it (and slower the longer).
    dynamic = dict(rope_type="dynamic", rope_theta=10000.0, factor=4.0)
    torch.testing.assert_close(rope_inv_freq(dynamic, HEAD_DIM, 64, 64)[0], base)
    longer, longest = (rope_inv_freq(dynamic, HEAD_DIM, 64, n)[0] for n in (128, 256))
    assert (longer[1:] < base[1:]).all() and (longest[1:] < longer[1:]).all()
    assert longer[0] == base[0]  # the fastest pair (exponent 0) never changes
    # YaRN keeps the fastest pair and interpolates the slowest by the full factor.
    yarn, attention_factor = rope_inv_freq(YARN, HEAD_DIM, 64)
    assert yarn[0] == base[0] and yarn[-1] == pytest.approx(float(base[-1]) / 4, rel=1e-6)
    assert attention_factor == pytest.approx(0.1 * torch.log(torch.tensor(4.0)).item() + 1)
    # LongRoPE: the short factors up to the original context, the long ones past it.
    params = longrope()
    short = torch.tensor(params["short_factor"])
    long = torch.tensor(params["long_factor"])
    torch.testing.assert_close(rope_inv_freq(params, HEAD_DIM, 64, 16)[0], base / short)
    torch.testing.assert_close(rope_inv_freq(params, HEAD_DIM, 64, 17)[0], base / long)


def test_legacy_type_key_is_accepted():
    params = dict(type="linear", rope_theta=10000.0, factor=2.0)
    torch.testing.assert_close(
        rope_inv_freq(params, HEAD_DIM, 64)[0],
        rope_inv_freq({**params, "rope_type": "linear"}, HEAD_DIM, 64)[0],
    )


@pytest.mark.parametrize(
    "params, error, message",
    [
        ([("rope_type", "default")], TypeError, r"rope_parameters must be a dict .* got list"),
        (dict(rope_theta=1e4), ValueError, r"rope_parameters needs 'rope_type' \(one of default"),
        (
            dict(rope_type="ntk", rope_theta=1e4),
            ValueError,
            r"rope_type='ntk' is not supported; supported: \('default', 'linear'",
        ),
        (dict(rope_type="default"), ValueError, r"rope_type='default' needs 'rope_theta'"),
        (
            dict(rope_type="default", rope_theta=1e4, rope_thetta=1.0),
            ValueError,
            r"rope_parameters has unknown keys \['rope_thetta'\]; known: attention_factor",
        ),
        (dict(rope_type="linear", rope_theta=1e4), ValueError, r"'linear' needs 'factor'"),
        (dict(rope_type="dynamic", rope_theta=1e4), ValueError, r"'dynamic' needs 'factor'"),
        (
            dict(rope_type="yarn", rope_theta=1e4, factor=4.0),
            ValueError,
            r"'yarn' needs 'original_max_position_embeddings'",
        ),
        (
            {**LLAMA3, "high_freq_factor": None},
            ValueError,
            r"'llama3' needs 'high_freq_factor'",
        ),
        (
            {k: v for k, v in longrope().items() if k != "long_factor"},
            ValueError,
            r"'longrope' needs 'long_factor'",
        ),
        (
            {**longrope(), "short_factor": [1.0] * 7},
            ValueError,
            r"needs short_factor with 8 numbers \(one per rotary frequency\), got 7",
        ),
        (
            dict(rope_type="default", rope_theta=1e4, partial_rotary_factor=0.0),
            ValueError,
            r"partial_rotary_factor=0.0 must be a number in \(0, 1\]",
        ),
    ],
)
def test_bad_parameters_raise_clear_errors(params, error, message):
    with pytest.raises(error, match=message):
        rope_inv_freq(params, HEAD_DIM, 64)


def test_bad_head_dim_raises():
    with pytest.raises(TypeError, match=r"head_dim=1.5 must be an integer >= 2, got float"):
        rope_inv_freq(dict(rope_type="default", rope_theta=1e4), 1.5, 64)


# --------------------------------------------------------------------------------------
# The engine with every rope type: tiny random Llama models, transformers' logits
# --------------------------------------------------------------------------------------
ATOL = 1e-4
LLAMA = dict(bos_token_id=1, eos_token_id=None, pad_token_id=0)  # and conftest's TINY_CONFIG
# (max_position_embeddings, rope_parameters); the original context is 16 positions for all.
MODEL_CASES = {
    "linear": (64, dict(rope_type="linear", rope_theta=10000.0, factor=4.0)),
    # dynamic starts scaling past max_position_embeddings (16); the engine takes 4x that.
    "dynamic": (16, dict(rope_type="dynamic", rope_theta=10000.0, factor=4.0)),
    "yarn": (64, YARN),
    "llama3": (
        64,
        dict(
            rope_type="llama3",
            rope_theta=100.0,  # wavelengths 6 to 3000 positions: all three llama3 regimes
            factor=4.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=16,
        ),
    ),
}


def build_llama(case: str) -> torch.nn.Module:
    """A fresh model: transformers' dynamic RoPE keeps state between calls."""
    max_position_embeddings, rope_parameters = MODEL_CASES[case]
    config = tiny_config(
        "llama",
        **LLAMA,
        max_position_embeddings=max_position_embeddings,
        rope_parameters=dict(rope_parameters),
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def random_ids(seq: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, TINY_CONFIG["vocab_size"], (2, seq), generator=g)


@torch.no_grad()
@pytest.mark.parametrize("seq", [12, 40], ids=["within-16", "past-16"])
@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_engine_logits_match_transformers(case, seq):

    hf = build_llama(case)
    ours = from_hf(hf)
    assert ours.config.rope_type == case
    ids = random_ids(seq)
    expected = hf(ids).logits
    assert expected.abs().max() > 1.0
    torch.testing.assert_close(ours(ids).logits, expected, atol=ATOL, rtol=0)


@torch.no_grad()
def test_dynamic_frequencies_change_past_the_context():
    # The same 12 tokens at the end of a 40-token sequence are rotated differently than
    # alone: past max_position_embeddings the whole sequence gets slower frequencies.

    ours = from_hf(build_llama("dynamic"))
    ids = random_ids(40)
    position_ids = torch.arange(28, 40)[None].expand(2, -1)
    shifted = ours(ids[:, 28:], position_ids=position_ids).logits
    inside = ours(ids[:, 28:]).logits
    assert (shifted - inside).abs().max() > 1e-2


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_engine_greedy_generation_matches_transformers(case, use_cache):
    # A 10-token prompt + 30 new tokens crosses the original context of 16 while generating.
    from tutorial_lib.generation import generate

    hf = build_llama(case)
    ours = from_hf(hf)
    prompt = random_ids(10, seed=3)[:1]
    expected = hf.generate(prompt, max_new_tokens=30, do_sample=False, use_cache=use_cache)
    got = generate(ours, prompt, max_new_tokens=30, use_cache=use_cache)
    assert got.tolist() == expected.tolist()


def test_dynamic_context_is_factor_times_max_position_embeddings():

    ours = from_hf(build_llama("dynamic"))
    assert ours.config.context_length == 64
    with pytest.raises(
        ValueError,
        match=r"0 cached \+ 65 new tokens exceed the context length max_position_embeddings=16 "
        r"\(x 4.0 with dynamic RoPE scaling\)",
    ):
        ours(torch.ones(1, 65, dtype=torch.long))


def test_config_folds_rope_theta_and_partial_rotary_factor_into_rope_parameters():
    default = Phi3Config()
    assert default.rope_parameters == dict(
        rope_type="default", rope_theta=10000.0, partial_rotary_factor=1.0
    )
    # As transformers accepts them: on their own, read back as the values in use.
    config = Phi3Config(rope_theta=500.0, partial_rotary_factor=0.5)
    assert config.rope_parameters == dict(
        rope_type="default", rope_theta=500.0, partial_rotary_factor=0.5
    )
    assert (config.rope_theta, config.partial_rotary_factor, config.rotary_dim) == (500.0, 0.5, 48)
    linear = Phi3Config(rope_parameters=dict(rope_type="linear", rope_theta=500.0, factor=2.0))
    assert (linear.rope_type, linear.rope_theta, linear.partial_rotary_factor) == (
        "linear",
        500.0,
        1.0,
    )
    # dataclasses.replace passes both back; they agree.
    copy = dataclasses.replace(linear, num_key_value_heads=8)
    assert copy.rope_parameters == linear.rope_parameters
    with pytest.raises(
        ValueError, match=r"rope_theta=100.0 disagrees with rope_parameters\['rope_theta'\]=500.0"
    ):
        Phi3Config(rope_theta=100.0, rope_parameters=dict(rope_type="default", rope_theta=500.0))
    with pytest.raises(ValueError, match=r"partial_rotary_factor=0 must be a number in \(0, 1\]"):
        Phi3Config(partial_rotary_factor=0)


# --------------------------------------------------------------------------------------
# rope_pairs and rope_scores: the rotary explorer's data
# --------------------------------------------------------------------------------------
def test_rope_pairs_are_the_dimensions_that_turn_together():
    x = torch.arange(8.0)
    pairs = rope_pairs(x)  # (4, 2): dimension j with dimension j + 4
    assert pairs.tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]
    # Turning the pairs as 2-D vectors is the engine's rotation.
    inv_freq, _ = rope_inv_freq({"rope_type": "default", "rope_theta": 100.0}, 8, 64)
    cos, sin = Phi3RotaryEmbedding(
        Phi3Config(hidden_size=8, num_attention_heads=1, rope_theta=100.0)
    )(torch.tensor([[3]]), torch.float32)
    rotated = apply_rotary_pos_emb(x.view(1, 1, 1, 8), cos, sin).view(8)
    angle = 3 * inv_freq  # (4,)
    by_hand = torch.stack(
        [
            pairs[:, 0] * angle.cos() - pairs[:, 1] * angle.sin(),
            pairs[:, 0] * angle.sin() + pairs[:, 1] * angle.cos(),
        ],
        dim=-1,
    )
    torch.testing.assert_close(rope_pairs(rotated), by_hand)


def test_rope_scores_equal_the_engine_at_any_absolute_positions():
    config = Phi3Config(hidden_size=64, num_attention_heads=2, rope_theta=10_000.0)
    g = torch.Generator().manual_seed(0)
    query, key = torch.randn(32, generator=g), torch.randn(32, generator=g)
    rotary = Phi3RotaryEmbedding(config)
    offsets = torch.tensor([-7, 0, 3, 40])
    scores = rope_scores(query, key, rotary.inv_freq, offsets)
    for m in (40, 100, 1000):  # the query's position; the key sits at m - offset
        cos_q, sin_q = rotary(torch.full((1, 4), m), torch.float32)  # (1, 4, 32)
        cos_k, sin_k = rotary((m - offsets)[None], torch.float32)
        q = apply_rotary_pos_emb(query.expand(1, 1, 4, 32), cos_q, sin_q)  # (1, 1, 4, 32)
        k = apply_rotary_pos_emb(key.expand(1, 1, 4, 32), cos_k, sin_k)
        engine = (q * k).sum(-1).view(4) / math.sqrt(32)
        torch.testing.assert_close(scores.float(), engine, atol=1e-4, rtol=0)


def test_rope_scores_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="query and key"):
        rope_scores(torch.zeros(8), torch.zeros(6), torch.zeros(4), torch.arange(3))
    with pytest.raises(ValueError, match="inv_freq"):
        rope_scores(torch.zeros(8), torch.zeros(8), torch.zeros(3), torch.arange(3))
    with pytest.raises(ValueError, match="even length"):
        rope_pairs(torch.zeros(5))
