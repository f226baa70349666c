"""Per-component parity with transformers' Phi-3 (and Mixtral's MoE block) on the same weights.

``test_parity.py`` compares whole models; here each submodule gets the same input as its
transformers counterpart, so that a mismatch names its component: RMSNorm, the rotary
embedding, the MLP, attention without and with a cache, a decoder layer, the MoE block.
"""

import pytest
import torch
import transformers
from conftest import tiny_config
from transformers import DynamicCache
from transformers import Phi3ForCausalLM as HFPhi3ForCausalLM

from tutorial_lib.cache import KVCache
from tutorial_lib.loading import from_hf
from tutorial_lib.phi3 import Phi3ForCausalLM, make_attention_mask

transformers.logging.set_verbosity_error()

BATCH, SEQ, HIDDEN = 2, 7, 64


def pair(**overrides) -> tuple[HFPhi3ForCausalLM, Phi3ForCausalLM]:
    """A small random transformers Phi-3 and ours with the same weights (float32)."""
    torch.manual_seed(0)
    hf = HFPhi3ForCausalLM(tiny_config("phi3", hidden_size=HIDDEN, pad_token_id=0, **overrides))
    hf = hf.eval()
    return hf, from_hf(hf).eval()


def hidden(seq: int = SEQ, seed: int = 1) -> torch.Tensor:
    return torch.randn(BATCH, seq, HIDDEN, generator=torch.Generator().manual_seed(seed))


def positions(start: int, seq: int) -> torch.Tensor:
    return torch.arange(start, start + seq)[None].expand(BATCH, -1)


def additive(allowed: torch.Tensor) -> torch.Tensor:
    """Our boolean mask (True = may see) as transformers' additive float mask."""
    zeros = torch.zeros(allowed.shape)
    return zeros.masked_fill(~allowed, torch.finfo(torch.float32).min)


def first(output):
    return output[0] if isinstance(output, tuple) else output


def close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


@torch.inference_mode()
def test_rms_norm():
    hf, ours = pair()
    x = hidden()
    close(ours.model.norm(x), hf.model.norm(x))
    close(
        ours.model.layers[1].post_attention_layernorm(x),
        hf.model.layers[1].post_attention_layernorm(x),
    )


@pytest.mark.parametrize("partial_rotary_factor", [1.0, 0.5])
@torch.inference_mode()
def test_rotary_embedding(partial_rotary_factor):
    hf, ours = pair(partial_rotary_factor=partial_rotary_factor)
    pos = positions(3, SEQ)
    cos, sin = ours.model.rotary_emb(pos, torch.float32)
    hf_cos, hf_sin = hf.model.rotary_emb(hidden(), pos)
    close(cos, hf_cos)
    close(sin, hf_sin)


@torch.inference_mode()
def test_mlp():
    hf, ours = pair()
    x = hidden()
    close(ours.model.layers[0].mlp(x), hf.model.layers[0].mlp(x))


@pytest.mark.parametrize("sliding_window", [None, 4])
@torch.inference_mode()
def test_attention_without_cache(sliding_window):
    hf, ours = pair(sliding_window=sliding_window)
    x, pos = hidden(), positions(0, SEQ)
    rope = ours.model.rotary_emb(pos, torch.float32)
    allowed = make_attention_mask(None, SEQ, 0, sliding_window, x.device)
    got = ours.model.layers[0].self_attn(x, rope, allowed)
    expected = first(hf.model.layers[0].self_attn(x, rope, additive(allowed)))
    close(got, expected)


# transformers 5.0 takes past_key_values; later 5.x prefer `cache` and warn.
@pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")
@torch.inference_mode()
def test_attention_with_cache():
    hf, ours = pair()
    ours_attn, hf_attn = ours.model.layers[0].self_attn, hf.model.layers[0].self_attn
    cache, hf_cache = KVCache(ours.config, BATCH, 16), DynamicCache(config=hf.config)
    prompt, step = hidden(5, seed=2), hidden(1, seed=3)
    for x, start in ((prompt, 0), (step, 5)):  # a prompt, then one new token
        seq = x.shape[1]
        rope = ours.model.rotary_emb(positions(start, seq), torch.float32)
        allowed = make_attention_mask(None, seq, start, None, x.device)
        hf_mask = additive(allowed) if allowed is not None else None
        got = ours_attn(x, rope, allowed, cache)
        expected = first(
            hf_attn(
                x,
                rope,
                hf_mask,
                past_key_values=hf_cache,
                cache_position=torch.arange(start, start + seq),
            )
        )
        close(got, expected)
    assert cache.layer_lengths[0] == hf_cache.get_seq_length(0) == 6


@torch.inference_mode()
def test_decoder_layer():
    hf, ours = pair()
    x, pos = hidden(), positions(0, SEQ)
    rope = ours.model.rotary_emb(pos, torch.float32)
    allowed = make_attention_mask(None, SEQ, 0, None, x.device)
    got = ours.model.layers[1](x, rope, allowed)
    expected = first(
        hf.model.layers[1](x, attention_mask=additive(allowed), position_embeddings=rope)
    )
    close(got, expected)


@torch.inference_mode()
def test_moe_block():
    from transformers import MixtralConfig, MixtralForCausalLM

    from tutorial_lib.moe import SparseMoeBlock

    torch.manual_seed(0)
    config = MixtralConfig(
        vocab_size=32,
        hidden_size=HIDDEN,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
    )
    # Built inside a model: transformers sets the block's kernel choices up there.
    block = MixtralForCausalLM(config).model.layers[0].mlp.eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.2)
    ours = SparseMoeBlock.from_hf(block).eval()
    x = hidden()
    close(ours(x), first(block(x)))
