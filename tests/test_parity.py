"""Parity with Hugging Face transformers on tiny random models (fp32, CPU).

Each case builds a small transformers model with random weights, pushes those weights through
our own loaders (``from_hf`` and ``from_pretrained`` on a ``save_pretrained`` directory) and
compares logits, cached decoding, padded batches and greedy generation.
"""

import pytest
import torch
import transformers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
)
from transformers import Phi3Config as HFPhi3Config
from transformers import Phi3ForCausalLM as HFPhi3ForCausalLM

from tutorial_lib.generation import generate
from tutorial_lib.loading import from_hf, from_pretrained
from tutorial_lib.phi3 import Phi3ForCausalLM

transformers.logging.set_verbosity_error()

ATOL = 1e-4
# Small, but with weights large enough (initializer_range) that attention is far from uniform,
# so a wrong position, mask or head grouping changes the logits well beyond ATOL.
BASE = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    initializer_range=0.2,
    bos_token_id=1,
    eos_token_id=None,  # no early stop: generation runs its full length in both libraries
    pad_token_id=0,
)
HEAD_DIM = BASE["hidden_size"] // BASE["num_attention_heads"]


def _longrope(original: int, partial: float = 1.0) -> dict:
    n = int(HEAD_DIM * partial) // 2  # one factor per rotary frequency
    return dict(
        original_max_position_embeddings=original,
        rope_parameters=dict(
            rope_type="longrope",
            rope_theta=10000.0,
            partial_rotary_factor=partial,
            short_factor=[1.0 + 0.05 * i for i in range(n)],
            long_factor=[1.0 + 0.7 * i for i in range(n)],
        ),
    )


CASES = {
    "phi3-mha": (HFPhi3Config, HFPhi3ForCausalLM, dict(num_key_value_heads=4)),
    "phi3-gqa": (HFPhi3Config, HFPhi3ForCausalLM, dict(num_key_value_heads=2)),
    "phi3-mqa": (HFPhi3Config, HFPhi3ForCausalLM, dict(num_key_value_heads=1)),
    "phi3-sliding-window": (
        HFPhi3Config,
        HFPhi3ForCausalLM,
        dict(num_key_value_heads=2, sliding_window=5),
    ),
    "phi3-partial-rotary": (
        HFPhi3Config,
        HFPhi3ForCausalLM,
        dict(
            num_key_value_heads=2,
            rope_parameters=dict(rope_type="default", rope_theta=500.0, partial_rotary_factor=0.5),
        ),
    ),
    # original_max_position_embeddings=16 < the 24-token inputs: the long factors are used.
    "phi3-longrope": (
        HFPhi3Config,
        HFPhi3ForCausalLM,
        dict(num_key_value_heads=2, **_longrope(16, partial=0.75)),
    ),
    "llama-tied": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(num_key_value_heads=2, tie_word_embeddings=True),
    ),
    "mistral": (
        MistralConfig,
        MistralForCausalLM,
        dict(num_key_value_heads=1, sliding_window=6, head_dim=24),
    ),
    # Mixture of experts: our SparseMoeBlock in the MLP's place (tutorial_lib.moe).
    "mixtral-top2": (
        MixtralConfig,
        MixtralForCausalLM,
        dict(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2),
    ),
    "mixtral-top1-sliding-window-eager": (
        MixtralConfig,
        MixtralForCausalLM,
        dict(
            num_key_value_heads=1,
            num_local_experts=3,
            num_experts_per_tok=1,
            sliding_window=6,
            experts_implementation="eager",
        ),
    ),
}


def build_hf(case: str, **overrides) -> torch.nn.Module:
    config_cls, model_cls, extra = CASES[case]
    torch.manual_seed(0)
    return model_cls(config_cls(**{**BASE, **extra, **overrides})).eval()


@pytest.fixture(scope="module", params=list(CASES))
def pair(request):
    hf = build_hf(request.param)
    return request.param, hf, from_hf(hf)


def random_ids(batch: int, seq: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, BASE["vocab_size"], (batch, seq), generator=g)


@torch.no_grad()
def test_from_hf_logits_match(pair):
    _, hf, ours = pair
    ids = random_ids(2, 24)
    expected = hf(ids).logits
    assert expected.abs().max() > 1.0  # not a degenerate all-zero model
    torch.testing.assert_close(ours(ids).logits, expected, atol=ATOL, rtol=0)


@torch.no_grad()
def test_from_pretrained_dir_matches(pair, tmp_path):
    _, hf, _ = pair
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path, device="cpu")
    ids = random_ids(1, 20, seed=2)
    torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=0)


@torch.no_grad()
def test_from_pretrained_sharded_dir_matches(tmp_path):
    hf = build_hf("phi3-gqa")
    hf.save_pretrained(tmp_path, max_shard_size="50KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    ours = from_pretrained(str(tmp_path), device="cpu")
    ids = random_ids(1, 12)
    torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=0)


@torch.no_grad()
def test_short_sequence_uses_longrope_short_factors():
    # 12 tokens fit in original_max_position_embeddings=16: the short factors apply.
    hf = build_hf("phi3-longrope")
    ours = from_hf(hf)
    ids = random_ids(1, 12)
    torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=0)


@torch.no_grad()
def test_cached_steps_equal_full_forward(pair):
    case, _, ours = pair
    ids = random_ids(2, 24)
    full = ours(ids).logits
    # Feed a prompt, then one token at a time through the KV cache. longrope picks one set of
    # factors per call (long beyond 16 positions), so there the prompt must already exceed 16.
    start = 17 if case == "phi3-longrope" else 9
    out = ours(ids[:, :start], use_cache=True)
    steps = [out.logits]
    for t in range(start, 24):
        out = ours(ids[:, t : t + 1], past_key_values=out.past_key_values)
        steps.append(out.logits)
    assert out.past_key_values.length == 24
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)


@torch.no_grad()
def test_left_padded_batch_equals_single_runs(pair):
    case, hf, ours = pair
    # longrope picks short or long factors for a whole call, so its rows must agree on the side.
    lengths = [24, 20, 17] if case == "phi3-longrope" else [20, 13, 7]
    seqs = [random_ids(1, n, seed=n)[0] for n in lengths]
    width = max(lengths)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s) :] = s
        mask[row, width - len(s) :] = 1
    batched = ours(ids, attention_mask=mask).logits
    for row, s in enumerate(seqs):
        alone = ours(s[None]).logits
        torch.testing.assert_close(batched[row, width - len(s) :], alone[0], atol=ATOL, rtol=0)
    # Same positions given to transformers explicitly
    # (its forward does not derive them from the mask).
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    expected = hf(ids, attention_mask=mask, position_ids=position_ids).logits
    torch.testing.assert_close(batched[mask.bool()], expected[mask.bool()], atol=ATOL, rtol=0)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_greedy_generation_matches_transformers(pair, use_cache):
    case, hf, ours = pair
    # A 10-token prompt + 32 new tokens: the longrope case crosses its original context (16)
    # while generating, and the sliding-window cases slide past their window.
    prompt = random_ids(1, 10, seed=3)
    expected = hf.generate(prompt, max_new_tokens=32, do_sample=False, use_cache=use_cache)
    got = generate(ours, prompt, max_new_tokens=32, use_cache=use_cache)
    assert got.shape == (1, 42)
    assert got.tolist() == expected.tolist(), case


def test_greedy_generation_of_padded_batch_matches_transformers(pair):
    _, hf, ours = pair
    ids = random_ids(2, 12, seed=4)
    mask = torch.ones_like(ids)
    ids[1, :5], mask[1, :5] = 0, 0  # the second prompt is 7 tokens, left-padded
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False)
    got = generate(ours, ids, max_new_tokens=16, attention_mask=mask)
    assert got.tolist() == expected.tolist()
    # ... and each row is what the prompt alone would give.
    alone = generate(ours, ids[1:, 5:], max_new_tokens=16)
    assert got[1, 5:].tolist() == alone[0].tolist()


def test_seeded_sampling_matches_transformers():
    # Same weights, same filtered distribution, same RNG draws: the same sampled tokens.
    hf = build_hf("phi3-gqa")
    ours = from_hf(hf)
    prompt = random_ids(1, 6, seed=5)
    settings = dict(temperature=0.8, top_k=20, top_p=0.9)
    torch.manual_seed(123)
    expected = hf.generate(prompt, max_new_tokens=24, do_sample=True, **settings)
    torch.manual_seed(123)
    got = generate(ours, prompt, max_new_tokens=24, **settings)
    assert got.tolist() == expected.tolist()


@torch.no_grad()
def test_phi3_mini_4k_config_shapes():
    # The exact Phi-3-mini-4k-instruct config (its config.json), with 1 layer instead of 32.
    hf_config = HFPhi3Config(
        vocab_size=32064,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=1,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        original_max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        sliding_window=2047,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=32000,
        pad_token_id=32000,
    )
    from tutorial_lib.loading import config_from_hf

    config = config_from_hf(hf_config)
    assert (config.head_dim, config.num_key_value_heads, config.sliding_window) == (96, 32, 2047)
    model = Phi3ForCausalLM(config)
    assert model.model.layers[0].self_attn.qkv_proj.weight.shape == (3 * 3072, 3072)
    assert model.model.layers[0].mlp.gate_up_proj.weight.shape == (2 * 8192, 3072)
    ids = torch.tensor([[450, 7483, 310, 3444, 338]])
    hidden = model.model(ids)[0]
    assert hidden.shape == (1, 5, 3072)
    assert model.lm_head(hidden).shape == (1, 5, 32064)
