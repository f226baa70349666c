"""The engine on a CUDA GPU, in bfloat16, float16 and float32 (``pytest -m gpu``).

Skipped where CUDA is absent. Half precision rounds differently in every library, so there
our logits must be as close to transformers' as transformers' own are to its float32 result;
in float32 the greedy tokens must be identical.
"""

import copy

import pytest
import torch
import transformers
from conftest import tiny_config
from transformers import AutoModelForCausalLM
from transformers import Phi3ForCausalLM as HFPhi3ForCausalLM

from tutorial_lib import DEFAULT_MODEL
from tutorial_lib.device import default_dtype
from tutorial_lib.generation import chat_prompt, generate
from tutorial_lib.loading import from_hf, from_pretrained, load, resolve_model_dir

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DEVICE = "cuda"
HALF = [torch.bfloat16, torch.float16]

transformers.logging.set_verbosity_error()


def tiny_phi3() -> HFPhi3ForCausalLM:
    """A small random Phi-3 (GQA, sliding window shorter than the inputs), float32, on the GPU."""
    torch.manual_seed(0)
    config = tiny_config("phi3", sliding_window=9, pad_token_id=0)
    return HFPhi3ForCausalLM(config).to(DEVICE).eval()


def random_ids(batch: int, seq: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(3, 96, (batch, seq), generator=g).to(DEVICE)


def max_error(logits: torch.Tensor, reference: torch.Tensor) -> float:
    return (logits.float() - reference.float()).abs().max().item()


def test_default_device_and_dtype_on_cuda(tmp_path):
    tiny_phi3().save_pretrained(tmp_path)
    model = from_pretrained(tmp_path)  # no device, no dtype: the defaults
    assert model.device.type == "cuda"
    assert model.dtype == default_dtype(torch.device("cuda"))
    assert model.dtype in HALF
    assert model(random_ids(1, 12)).logits.dtype == model.dtype


@pytest.mark.parametrize("dtype", HALF, ids=str)
@torch.inference_mode()
def test_half_precision_logits_as_close_as_transformers_own(dtype):
    hf = tiny_phi3()
    ids = random_ids(2, 24)
    reference = hf(ids).logits  # float32
    hf_half = copy.deepcopy(hf).to(dtype)
    ours = from_hf(hf_half)  # same device and dtype as hf_half
    assert (ours.device.type, ours.dtype) == ("cuda", dtype)
    expected = hf_half(ids).logits
    got = ours(ids).logits
    assert got.dtype == dtype
    # Our rounding error is no larger than transformers' (up to a margin) ...
    transformers_error = max_error(expected, reference)
    assert max_error(got, reference) <= 1.5 * transformers_error + 1e-3
    # ... so the two half-precision results differ by at most both errors together.
    assert max_error(got, expected) <= 2 * transformers_error + 1e-3


@pytest.mark.parametrize("dtype", HALF, ids=str)
@torch.inference_mode()
def test_half_precision_cache_matches_full_forward(dtype):
    ours = from_hf(copy.deepcopy(tiny_phi3()).to(dtype))
    ids = random_ids(2, 20)
    full = ours(ids).logits
    out = ours(ids[:, :12], use_cache=True)
    steps = [out.logits]
    for t in range(12, 20):
        out = ours(ids[:, t : t + 1], past_key_values=out.past_key_values)
        steps.append(out.logits)
    assert max_error(torch.cat(steps, dim=1), full) <= 0.05 * full.float().abs().max().item()


# --------------------------------------------------------------------------------------
# Real weights: SmolLM2-135M-Instruct
# --------------------------------------------------------------------------------------
PROMPTS = [
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three primary colors are",
]


@pytest.fixture(scope="module")
def hf_fp32():
    model_dir = resolve_model_dir(DEFAULT_MODEL)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(DEVICE).eval()


@torch.inference_mode()
def test_real_weights_fp32_greedy_tokens_equal_transformers(hf_fp32):
    model, tokenizer = load(DEFAULT_MODEL, device=DEVICE, dtype=torch.float32)
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(DEVICE)
        expected = hf_fp32.generate(ids, max_new_tokens=50, do_sample=False)
        got = generate(model, ids, 50)
        assert got.tolist() == expected.tolist(), prompt


@pytest.mark.parametrize("dtype", HALF, ids=str)
@torch.inference_mode()
def test_real_weights_half_precision(hf_fp32, dtype):
    model, tokenizer = load(DEFAULT_MODEL, device=DEVICE, dtype=dtype)
    hf_half = copy.deepcopy(hf_fp32).to(dtype)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids.to(DEVICE)
    assert tokenizer.decode(model(ids).logits[0, -1].argmax()) == " Paris"

    # Logits: as close to transformers' as transformers' own are to float32.
    ids = tokenizer(PROMPTS, padding=True, padding_side="left", return_tensors="pt").to(DEVICE)
    real = ids.attention_mask.bool()
    reference = hf_fp32(**ids).logits[real]
    expected = hf_half(**ids).logits[real]
    got = model(ids.input_ids, attention_mask=ids.attention_mask).logits[real]
    transformers_error = max_error(expected, reference)
    assert max_error(got, reference) <= 1.5 * transformers_error + 1e-2

    # Greedy tokens of a short chat reply (a clear winner at every step) are identical.
    chat_ids = chat_prompt(tokenizer, "What is the capital of France?").to(DEVICE)
    expected_reply = hf_half.generate(chat_ids, max_new_tokens=16, do_sample=False)
    reply = generate(model, chat_ids, 16)
    assert reply.tolist() == expected_reply.tolist()
    assert "Paris" in tokenizer.decode(reply[0, chat_ids.shape[1] :])


def test_quantized_load_on_a_gpu_machine_runs_on_the_cpu(tmp_path, monkeypatch):
    """load(quantize=...) must not put the model on CUDA, where the int8 kernel cannot run."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tutorial_lib import loading
    from tutorial_lib.quantization import Int8Linear

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    monkeypatch.setattr(loading, "load_tokenizer", lambda name: None)
    model, _ = load(tmp_path, quantize="int8")  # the default device here is CUDA
    assert model.device.type == "cpu"
    assert isinstance(model.model.layers[0].mlp.down_proj, Int8Linear)
    out = generate(model, torch.tensor([[1, 2, 3]]), 4, eos_token_id=None)
    assert out.shape == (1, 7)
    with pytest.raises(ValueError, match="runs on the CPU"):
        load(tmp_path, device=DEVICE, quantize="int8")
