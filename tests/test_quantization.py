"""Weight-only quantization (``tutorial_lib.quantization``).

The quantizers are checked against their definitions (levels, error bounds), the quantized
layers against ``F.linear`` on the dequantized weights, and whole quantized models against
the same model holding the dequantized weights, against fp32 (with a tolerance), and for the
engine's promises: cached = uncached, padded batch = single, clear errors. Perplexity is
compared with transformers' own loss. The last tests use the real SmolLM2 weights.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import Phi3Config as HFPhi3Config
from transformers import Phi3ForCausalLM as HFPhi3ForCausalLM

from tutorial_lib import DEFAULT_MODEL
from tutorial_lib.generation import generate
from tutorial_lib.loading import from_hf, load
from tutorial_lib.phi3 import Phi3ForCausalLM
from tutorial_lib.quantization import (
    DENSE_MIN_TOKENS,
    Int4Linear,
    Int8Linear,
    dequantize_int4,
    dequantize_int8,
    memory_bandwidth,
    perplexity,
    quantize_int4,
    quantize_int8,
    quantize_weights,
    simulate_quantization,
    weight_bytes,
)

transformers.logging.set_verbosity_error()

VOCAB = 96


def hf_tiny(tie: bool = True) -> HFPhi3ForCausalLM:
    torch.manual_seed(0)
    config = HFPhi3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.1,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=None,
        pad_token_id=0,
    )
    return HFPhi3ForCausalLM(config).eval()


def tiny(dtype: torch.dtype = torch.float32, tie: bool = True) -> Phi3ForCausalLM:
    """A tiny Phi-3 with random weights (from transformers, through our loader)."""
    return from_hf(hf_tiny(tie)).to(dtype)


def ids(batch: int = 1, seq: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, seq), generator=g)


def random_weight(out_features: int = 48, in_features: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(out_features, in_features, generator=g)


# --------------------------------------------------------------------------------------
# The quantizers
# --------------------------------------------------------------------------------------
def test_int8_absmax_per_row():
    w = random_weight()
    w[3, 5] = 20.0  # an outlier: only row 3's scale grows
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (w.shape[0],)
    # Each row's largest magnitude maps to +-127, and the scale is absmax / 127.
    assert (q.abs().amax(dim=1) == 127).all()
    torch.testing.assert_close(scale, w.abs().amax(dim=1) / 127)
    # Rounding to the nearest level: the error is at most half a step per row.
    error = (dequantize_int8(q, scale) - w).abs()
    assert (error <= scale[:, None] / 2 + 1e-6).all()
    assert scale[3] > 5 * scale[2]  # the outlier's row is quantized far more coarsely
    # Zero stays exactly zero.
    w[0] = 0.0
    q, scale = quantize_int8(w)
    assert (dequantize_int8(q, scale)[0] == 0).all()


def test_int4_groups_span_their_own_range():
    w = random_weight()
    q, scale, minimum = quantize_int4(w, group_size=16)
    assert q.dtype == torch.uint8 and q.shape == w.shape
    assert scale.shape == minimum.shape == (48, 4)
    assert int(q.min()) == 0 and int(q.max()) == 15
    groups = w.reshape(48, 4, 16)
    torch.testing.assert_close(minimum, groups.amin(-1))
    torch.testing.assert_close(scale, (groups.amax(-1) - groups.amin(-1)) / 15)
    error = (dequantize_int4(q, scale, minimum, 16) - w).abs().reshape(48, 4, 16)
    assert (error <= scale[..., None] / 2 + 1e-6).all()
    # Each group's smallest and largest weight are levels 0 and 15, so they come back.
    back = dequantize_int4(q, scale, minimum, 16).reshape(48, 4, 16)
    torch.testing.assert_close(back.amax(-1), groups.amax(-1))


def test_smaller_groups_and_more_bits_mean_smaller_errors():
    w = random_weight(64, 128)

    def rms_error(back):
        return float((back - w).pow(2).mean().sqrt())

    int8 = rms_error(dequantize_int8(*quantize_int8(w)))
    int4 = {g: rms_error(dequantize_int4(*quantize_int4(w, g), g)) for g in (16, 32, 128)}
    assert int8 < int4[16] < int4[32] < int4[128]


# --------------------------------------------------------------------------------------
# The quantized layers: their kernels against F.linear on the dequantized weight
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_linear_equals_linear_on_dequantized_weight(dtype):
    linear = nn.Linear(64, 48, bias=False).to(dtype)
    layer = Int8Linear.from_linear(linear)
    x = torch.randn(2, 5, 64).to(dtype)
    expected = F.linear(x.float(), layer.dequantize())  # (2, 5, 48)
    got = layer(x)
    assert got.shape == (2, 5, 48) and got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("group_size", [32, 64])
def test_int4_linear_equals_linear_on_dequantized_weight(dtype, group_size):
    linear = nn.Linear(128, 64, bias=False).to(dtype)
    layer = Int4Linear.from_linear(linear, group_size)
    q, scale, minimum = quantize_int4(linear.weight.detach(), group_size)
    # The layer keeps scale and zero in the activations' dtype: the reference does too.
    scale_d = scale.to(dtype).float()
    minimum_d = (minimum + 8 * scale).to(dtype).float() - 8 * scale_d
    weight = dequantize_int4(q, scale_d, minimum_d, group_size)
    x = torch.randn(3, 128).to(dtype)
    got = layer(x)
    assert got.shape == (3, 64) and got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), F.linear(x.float(), weight), atol=tol, rtol=tol)


def test_many_int8_tokens_take_the_dense_path_with_the_same_result():
    layer = Int8Linear.from_linear(nn.Linear(128, 192, bias=False).to(torch.bfloat16))
    x = torch.randn(DENSE_MIN_TOKENS, 128).to(torch.bfloat16)
    dense = layer(x).float()  # dequantize once, F.linear
    one_by_one = torch.cat([layer(row[None]) for row in x]).float()  # the kernel, row by row
    torch.testing.assert_close(dense, one_by_one, atol=0.03, rtol=0.03)


def test_quantized_layer_rejects_wrong_inputs():
    layer = Int8Linear.from_linear(nn.Linear(64, 48, bias=False))
    with pytest.raises(TypeError, match="dtype"):
        layer(torch.randn(1, 64, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="features"):
        layer(torch.randn(1, 32))
    with pytest.raises(ValueError, match="group_size"):
        Int4Linear.from_linear(nn.Linear(48, 8, bias=False), group_size=32)


# --------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------
def dequantized_copy(model: Phi3ForCausalLM, reference: Phi3ForCausalLM) -> Phi3ForCausalLM:
    """``reference`` with every quantized layer of ``model`` put back as a float32 nn.Linear."""
    for name, module in model.named_modules():
        if isinstance(module, (Int8Linear, Int4Linear)):
            if isinstance(module, Int8Linear):
                weight = module.dequantize()
            else:
                # Recover the weight from the kernel itself: x = I gives W^T.
                eye = torch.eye(module.in_features, dtype=module.scales_and_zeros.dtype)
                weight = module(eye).float().T
            parent_name, _, attr = name.rpartition(".")
            parent = reference.get_submodule(parent_name) if parent_name else reference
            linear = nn.Linear(module.in_features, module.out_features, bias=False)
            linear.weight = nn.Parameter(weight)
            setattr(parent, attr, linear)
    return reference


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_quantized_model_equals_model_with_dequantized_weights(fmt):
    model = quantize_weights(tiny(), fmt)
    reference = dequantized_copy(model, tiny())
    x = ids(2, 10)
    torch.testing.assert_close(model(x).logits, reference(x).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("dtype", "fmt"), [(torch.float32, "int8"), (torch.float32, "int4")])
@torch.inference_mode()
def test_simulated_quantization_gives_the_quantized_models_logits(dtype, fmt):
    x = ids(2, 10)
    quantized = quantize_weights(tiny(dtype), fmt)
    simulated = simulate_quantization(tiny(dtype), fmt)
    assert isinstance(simulated.lm_head, nn.Linear)
    assert simulated.lm_head.weight is not simulated.model.embed_tokens.weight  # untied copy
    torch.testing.assert_close(simulated(x).logits, quantized(x).logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="quantize='int3'"):
        simulate_quantization(tiny(), "int3")


@pytest.mark.parametrize(
    ("dtype", "fmt", "tolerance"),
    [(torch.float32, "int8", 0.05), (torch.bfloat16, "int8", 0.05), (torch.bfloat16, "int4", 0.4)],
)
@torch.inference_mode()
def test_quantized_logits_stay_close_to_fp32(dtype, fmt, tolerance):
    x = ids(2, 12)
    fp32 = tiny()(x).logits
    got = quantize_weights(tiny(dtype), fmt)(x).logits.float()
    # RMS error relative to the spread of the logits. Random weights have no outliers to
    # hide behind, so int4 (16 levels per group of 32) is visibly rougher than int8.
    error = float((got - fp32).pow(2).mean().sqrt() / fp32.std())
    assert error < tolerance, f"RMS error {error:.3f} of the logits' std"


def test_lm_head_tied_to_the_embedding_gets_its_own_copy():
    model = tiny(tie=True)
    embedding = model.model.embed_tokens.weight.detach().clone()
    before = weight_bytes(model)
    assert weight_bytes(model, per_token=True) == before  # tied: the head reads the table
    quantize_weights(model, "int4", group_size=32)
    assert isinstance(model.lm_head, Int8Linear)  # the head gets 8 bits by default
    assert isinstance(model.model.layers[0].mlp.down_proj, Int4Linear)
    assert torch.equal(model.model.embed_tokens.weight, embedding)  # the lookup is untouched
    assert (model.device, model.dtype) == (torch.device("cpu"), torch.float32)
    # Per token a step reads everything but the embedding table, now in 1 or 0.5 byte/weight.
    table = embedding.numel() * 4
    assert weight_bytes(model, per_token=True) == weight_bytes(model) - table
    assert weight_bytes(model, per_token=True) < before / 3
    untouched = quantize_weights(tiny(tie=True), "int8", lm_head_quantize=None)
    assert untouched.lm_head.weight is untouched.model.embed_tokens.weight


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_quantized_greedy_cached_equals_uncached(fmt):
    model = quantize_weights(tiny(), fmt)
    prompt = ids(1, 5, seed=3)
    cached = generate(model, prompt, 12, eos_token_id=None)
    uncached = generate(model, prompt, 12, use_cache=False, eos_token_id=None)
    assert torch.equal(cached, uncached)


@torch.inference_mode()
def test_quantized_bf16_cached_logits_equal_uncached():
    model = quantize_weights(tiny(torch.bfloat16), "int4")
    x = ids(1, 9)
    full = model(x).logits[:, -1].float()
    out = model(x[:, :-1], use_cache=True)
    step = model(x[:, -1:], past_key_values=out.past_key_values).logits[:, -1].float()
    torch.testing.assert_close(step, full, atol=0.05 * float(full.std()), rtol=0)


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_quantized_padded_batch_equals_single(fmt):
    model = quantize_weights(tiny(), fmt)
    short, long = ids(1, 4, seed=4), ids(1, 7, seed=5)
    pad = torch.zeros(1, 3, dtype=torch.long)
    batch = torch.cat([torch.cat([pad, short], dim=1), long])  # left padding
    mask = torch.cat([torch.cat([pad, torch.ones_like(short)], dim=1), torch.ones_like(long)])
    together = generate(model, batch, 6, attention_mask=mask, eos_token_id=None)
    assert torch.equal(together[0, 3:], generate(model, short, 6, eos_token_id=None)[0])
    assert torch.equal(together[1], generate(model, long, 6, eos_token_id=None)[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(quantize="int3"), ValueError, "quantize='int3' is not supported; use one of"),
        (dict(quantize=8), TypeError, r"quantize=8 must be one of \['int8', 'int4'\], got int"),
        (dict(quantize="int8", group_size=32), ValueError, "group_size=32"),
        (dict(quantize="int4", group_size=48), ValueError, "group_size=48"),
        (dict(quantize="int8", lm_head_quantize="int2"), ValueError, "lm_head_quantize='int2'"),
    ],
)
def test_bad_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        quantize_weights(tiny(), **kwargs)


def test_unsupported_dtype_and_device_raise():
    with pytest.raises(TypeError, match="float16"):
        quantize_weights(tiny(torch.float16), "int8")
    with pytest.raises(ValueError, match="meta"):
        quantize_weights(tiny().to("meta"), "int8")
    with pytest.raises(TypeError, match="Phi3ForCausalLM"):
        quantize_weights(nn.Linear(4, 4), "int8")
    with pytest.raises(ValueError, match="quantize='int3'"):
        load(DEFAULT_MODEL, quantize="int3")


def test_perplexity_matches_transformers_loss():
    hf = hf_tiny()
    model = from_hf(hf)
    x = ids(2, 16)
    with torch.inference_mode():
        expected = math.exp(hf(x, labels=x).loss.item())
    assert perplexity(model, x) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="seq >= 2"):
        perplexity(model, x[:, :1])


# --------------------------------------------------------------------------------------
# Real weights: SmolLM2-135M-Instruct
# --------------------------------------------------------------------------------------
HELD_TEXT = (
    "Hundreds of people have been forced to vacate their homes in the Southern Highlands of "
    "New South Wales as strong winds today pushed a huge bushfire towards the town of Hill "
    "Top. A new blaze near Goulburn, south-west of Sydney, has forced the closure of the Hume "
    "Highway. An estimated 500 residents have left their homes for nearby Mittagong."
)


@pytest.mark.slow
def test_real_model_quantized_keeps_its_perplexity_and_answer():
    model, tokenizer = load(DEFAULT_MODEL, device="cpu")
    text = tokenizer(HELD_TEXT, return_tensors="pt").input_ids
    question = tokenizer("The capital of France is", return_tensors="pt").input_ids
    fp32 = perplexity(model, text)
    for quantize, budget in (("int8", 0.02), ("int4", 0.10)):
        quantized, _ = load(DEFAULT_MODEL, device="cpu", quantize=quantize)
        assert quantized.dtype == torch.bfloat16
        assert perplexity(quantized, text) < fp32 * (1 + budget)
        assert tokenizer.decode(generate(quantized, question, 1)[0, -1]) == " Paris"


def test_memory_bandwidth_is_a_plausible_rate():
    rate = memory_bandwidth(megabytes=16, repeats=2)
    assert 1e8 < rate < 1e13  # 0.1 GB/s .. 10 TB/s: bytes per second, not MB or seconds
    with pytest.raises(ValueError, match="megabytes=0"):
        memory_bandwidth(megabytes=0)


# --------------------------------------------------------------------------------------
# Mixture-of-experts models: the experts are quantized too
# --------------------------------------------------------------------------------------
def tiny_moe(dtype: torch.dtype = torch.float32) -> Phi3ForCausalLM:
    """A tiny Phi-3 layout whose MLPs are mixtures of 4 experts (random weights)."""
    from tutorial_lib.phi3 import Phi3Config

    torch.manual_seed(0)
    config = Phi3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        num_local_experts=4,
        num_experts_per_tok=2,
        bos_token_id=1,
        eos_token_id=None,
        pad_token_id=0,
    )
    model = Phi3ForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.to(dtype).eval()


@pytest.mark.parametrize("fmt", ["int8", "int4"])
@torch.inference_mode()
def test_moe_model_quantizes_its_experts(fmt):
    from tutorial_lib.moe import MoeExperts
    from tutorial_lib.quantization import QuantizedMoeExperts

    x = ids(2, 10)
    fp32 = tiny_moe()
    quantized = quantize_weights(tiny_moe(), fmt)
    # Every expert's matrices are quantized; no float expert tensor is left.
    assert not any(isinstance(m, MoeExperts) for m in quantized.modules())
    experts = quantized.model.layers[0].mlp.experts
    assert isinstance(experts, QuantizedMoeExperts) and experts.num_experts == 4
    linear = Int8Linear if fmt == "int8" else Int4Linear
    assert isinstance(experts.experts[3].gate_up_proj, linear)
    assert weight_bytes(quantized) < weight_bytes(fp32) * (0.4 if fmt == "int8" else 0.3)
    # The same rounding as the float model holding the rounded weights ...
    simulated = simulate_quantization(tiny_moe(), fmt)
    torch.testing.assert_close(quantized(x).logits, simulated(x).logits, atol=1e-4, rtol=1e-4)
    # ... and close to the unquantized model.
    reference = fp32(x).logits
    error = float((quantized(x).logits - reference).pow(2).mean().sqrt() / reference.std())
    assert error < (0.05 if fmt == "int8" else 0.4), error


@pytest.mark.parametrize("fmt", ["int8", "int4"])
@torch.inference_mode()
def test_dense_and_moe_quantized_generation_runs_cached(fmt):
    for make in (tiny, tiny_moe):
        model = quantize_weights(make(), fmt)
        cached = generate(model, ids(1, 6), 5, eos_token_id=None)
        uncached = generate(model, ids(1, 6), 5, use_cache=False, eos_token_id=None)
        assert torch.equal(cached, uncached), make.__name__


@pytest.mark.parametrize("fmt", ["int8", "int4"])
@torch.inference_mode()
def test_shared_expert_is_quantized_with_the_routed_ones(fmt):
    from tutorial_lib.moe import SparseMoeBlock
    from tutorial_lib.quantization import QuantizedSwiGLU, _quantize_moe_block

    torch.manual_seed(0)
    block = SparseMoeBlock(
        hidden_size=64,
        intermediate_size=32,
        num_experts=4,
        top_k=2,
        shared_expert_intermediate_size=64,
    ).eval()
    block.reset_parameters(std=0.1)
    x = torch.randn(2, 5, 64)
    before = block(x)

    def quantized(linear):
        return Int8Linear.from_linear(linear) if fmt == "int8" else Int4Linear.from_linear(linear)

    _quantize_moe_block(block, quantized)
    assert isinstance(block.shared_expert, QuantizedSwiGLU)
    after = block(x)
    error = float((after - before).pow(2).mean().sqrt() / before.std())
    assert error < (0.05 if fmt == "int8" else 0.4), error
