"""profile_decode: the breakdown of a decoding step by kind of work (chapter 14, benchmark)."""

import pytest
import torch

from tutorial_lib.generation import generate
from tutorial_lib.phi3 import Phi3Config, Phi3ForCausalLM
from tutorial_lib.profiling import KINDS, profile_decode
from tutorial_lib.quantization import quantize_weights

HIDDEN, INTERMEDIATE, LAYERS, VOCAB = 64, 128, 2, 256
HEADS, KV_HEADS = 4, 2


def tiny_model(dtype: torch.dtype = torch.float32) -> Phi3ForCausalLM:
    torch.manual_seed(0)
    config = Phi3Config(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
    )
    return Phi3ForCausalLM(config).to(dtype).eval()


PROMPT = torch.tensor([[1, 5, 9, 2, 7, 3]])


def test_every_kind_is_timed_and_they_add_up_to_the_step():
    torch.set_num_threads(1)
    prof = profile_decode(tiny_model(), PROMPT, n_tokens=8)
    assert set(prof.ms) == set(KINDS) == set(prof.bytes_read)
    # Each module kind ran in every step, so each took some time; "other" is the rest.
    for kind in KINDS[:-1]:
        assert prof.ms[kind] > 0, kind
    assert prof.ms["other"] >= 0  # modules' own times never exceed the whole step
    assert sum(prof.ms.values()) == pytest.approx(prof.total_ms)


def test_bytes_read_are_the_weights_and_the_cache():
    head_dim = HIDDEN // HEADS
    # Per layer: qkv (hidden -> (heads + 2 kv_heads) * head_dim), o, gate_up, down; fp32.
    per_layer = HIDDEN * (HEADS + 2 * KV_HEADS) * head_dim + HIDDEN * HIDDEN
    per_layer += HIDDEN * 2 * INTERMEDIATE + INTERMEDIATE * HIDDEN
    prof = profile_decode(tiny_model(), PROMPT, n_tokens=4)
    assert prof.bytes_read["layer matmuls"] == LAYERS * per_layer * 4
    assert prof.bytes_read["LM head"] == VOCAB * HIDDEN * 4
    # Keys and values of every layer at the mean cached length: 6 prompt tokens + (4 + 1) / 2.
    kv = 2 * LAYERS * KV_HEADS * head_dim * 4
    assert prof.bytes_read["attention"] == round(kv * (6 + 2.5))
    assert prof.bytes_read["norms"] == (2 * LAYERS + 1) * HIDDEN * 4


def test_quantized_weights_are_counted_in_their_format():
    model = quantize_weights(tiny_model(torch.bfloat16), "int8")
    prof = profile_decode(model, PROMPT, n_tokens=2)
    # int8 codes (1 byte each) plus one bf16 scale per output row.
    assert prof.bytes_read["LM head"] == VOCAB * HIDDEN + VOCAB * 2


def test_profiling_leaves_the_model_as_it_was():
    model = tiny_model()
    before = generate(model, PROMPT, 6, temperature=0, eos_token_id=None)
    profile_decode(model, PROMPT, n_tokens=3)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(generate(model, PROMPT, 6, temperature=0, eos_token_id=None), before)


@pytest.mark.parametrize(("bad", "error"), [(0, ValueError), (-1, ValueError), (2.5, TypeError)])
def test_bad_n_tokens_is_refused(bad, error):
    with pytest.raises(error, match=f"n_tokens={bad}"):
        profile_decode(tiny_model(), PROMPT, n_tokens=bad)


def test_a_batch_is_refused():
    with pytest.raises(ValueError, match=r"input_ids must be \(1, seq\)"):
        profile_decode(tiny_model(), PROMPT.repeat(2, 1))
