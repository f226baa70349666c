"""Loading checkpoints (``tutorial_lib.loading``): names, directories, the hub, and bad input.

Parity of the loaded weights is in ``test_parity.py``; this file checks where a checkpoint is
looked for and that every way of getting it wrong ends in a clear error. The hub is never
reached: its download function is replaced by one that fails as an offline machine does.
"""

import json

import pytest
import torch
import transformers
from conftest import tiny_config
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaForCausalLM

from tutorial_lib import loading
from tutorial_lib.loading import PRESETS, from_hf, from_pretrained, load, resolve_model_dir
from tutorial_lib.phi3 import Phi3ForCausalLM

transformers.logging.set_verbosity_error()

# Smaller than conftest's TINY_CONFIG, with Llama's own initializer_range.
TINY = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    max_position_embeddings=32,
    initializer_range=0.02,
)


@pytest.fixture
def llama_dir(tmp_path):
    """A tiny random Llama checkpoint written by transformers' ``save_pretrained``."""
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config("llama", **TINY)).save_pretrained(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------------------
# Names: presets, directories, hub ids
# --------------------------------------------------------------------------------------
def test_presets_include_the_offline_default_and_phi3():
    assert PRESETS["smollm2-135m-instruct"].asset == "smollm2-135m-instruct"
    assert PRESETS["phi-3-mini-4k-instruct"].hub_id == "microsoft/Phi-3-mini-4k-instruct"


def test_chosen_model_is_the_argument_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv("TUTORIAL_MODEL", raising=False)
    assert loading.chosen_model() == "smollm2-135m-instruct"
    monkeypatch.setenv("TUTORIAL_MODEL", "phi-3-mini-4k-instruct")
    assert loading.chosen_model() == "phi-3-mini-4k-instruct"
    assert loading.chosen_model("my/model") == "my/model"


def test_load_without_a_name_looks_for_the_model_the_environment_names(monkeypatch):
    monkeypatch.setenv("TUTORIAL_MODEL", "no-such-model")
    with pytest.raises(ValueError, match="name_or_path='no-such-model' is not a known preset"):
        load()


@pytest.mark.parametrize("name", ["smollm2", "phi-3-mini", "Phi-3-mini-4k-instruct"])
def test_unknown_preset_lists_the_known_ones(name):
    with pytest.raises(ValueError) as info:
        from_pretrained(name)
    message = str(info.value)
    assert f"name_or_path={name!r} is not a known preset" in message
    assert "smollm2-135m-instruct" in message and "phi-3-mini-4k-instruct" in message


@pytest.mark.parametrize("name", ["./no/such/dir", "a/b/c", "~/missing"])
def test_a_path_that_is_neither_a_directory_nor_a_hub_id_raises(name):
    with pytest.raises(ValueError, match="not a known preset, a local directory or a hub id"):
        resolve_model_dir(name)


def test_name_must_be_a_string_or_path():
    with pytest.raises(TypeError, match="name_or_path must be a str or Path, got int"):
        from_pretrained(3)


@pytest.fixture
def offline_hub(monkeypatch):
    """The hub download as it fails without a network; records the ids asked for."""
    asked = []

    def snapshot_download(repo_id, **kwargs):
        asked.append(repo_id)
        raise (OfflineModeIsEnabled if len(asked) % 2 else LocalEntryNotFoundError)(
            "Cannot find the requested files in the local cache and outgoing traffic is disabled"
        )

    monkeypatch.setattr(loading, "snapshot_download", snapshot_download)
    return asked


@pytest.mark.parametrize(
    "name, repo_id",
    [
        ("phi-3-mini-4k-instruct", "microsoft/Phi-3-mini-4k-instruct"),
        ("someone/some-model", "someone/some-model"),
    ],
)
def test_unreachable_hub_suggests_the_offline_preset(offline_hub, name, repo_id):
    for call in (from_pretrained, load):
        with pytest.raises(OSError) as info:
            call(name)
        message = str(info.value)
        assert f"could not get {repo_id!r} from the Hugging Face Hub" in message
        assert "Offline, use the preset 'smollm2-135m-instruct'" in message
    assert offline_hub == [repo_id, repo_id]


def test_hub_id_loads_what_the_hub_download_returns(monkeypatch, llama_dir):
    asked = []

    def snapshot_download(repo_id, **kwargs):  # the hub cache already holds this checkpoint
        asked.append(repo_id)
        return str(llama_dir)

    monkeypatch.setattr(loading, "snapshot_download", snapshot_download)
    model = from_pretrained("someone/tiny-llama", device="cpu")
    assert asked == ["someone/tiny-llama"]
    expected = LlamaForCausalLM.from_pretrained(llama_dir).eval()
    ids = torch.tensor([[5, 9, 2, 33, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected(ids).logits, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------
# Local directories
# --------------------------------------------------------------------------------------
def test_directory_without_config_raises(tmp_path):
    with pytest.raises(ValueError, match="is a directory without config.json"):
        from_pretrained(tmp_path)


def test_directory_without_weights_raises(llama_dir):
    (llama_dir / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="has no model.safetensors or model.safetensors.index"):
        from_pretrained(llama_dir, device="cpu")


def test_checkpoint_shapes_that_do_not_match_the_config_raise(llama_dir):
    config = json.loads((llama_dir / "config.json").read_text())
    config["intermediate_size"] = 40  # the weights were made for 48
    (llama_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as info:
        from_pretrained(llama_dir, device="cpu")
    message = str(info.value)
    assert "the checkpoint does not match the config (4 problems)" in message
    assert (
        "model.layers.0.mlp.gate_up_proj.weight has shape (96, 32) in the checkpoint, "
        "the config expects (80, 32)"
    ) in message


def test_missing_and_unexpected_tensors_are_named(llama_dir):
    weights = load_file(llama_dir / "model.safetensors")
    weights["model.extra.weight"] = weights.pop("model.norm.weight")
    save_file(weights, llama_dir / "model.safetensors")
    with pytest.raises(ValueError) as info:
        from_pretrained(llama_dir, device="cpu")
    message = str(info.value)
    assert "missing model.norm.weight (32,)" in message
    assert "unexpected model.extra.weight (32,)" in message


def test_half_of_a_fused_projection_missing_raises(llama_dir):
    weights = load_file(llama_dir / "model.safetensors")
    del weights["model.layers.1.self_attn.k_proj.weight"]
    save_file(weights, llama_dir / "model.safetensors")
    with pytest.raises(ValueError, match=r"no 'model.layers.1.self_attn.k_proj.weight'"):
        from_pretrained(llama_dir, device="cpu")


def test_llama_projections_are_fused_in_phi3_order(llama_dir):
    weights = load_file(llama_dir / "model.safetensors")
    model = from_pretrained(llama_dir, device="cpu")
    layer = model.model.layers[1]
    q, k, v = (weights[f"model.layers.1.self_attn.{n}_proj.weight"] for n in "qkv")
    gate, up = (weights[f"model.layers.1.mlp.{n}_proj.weight"] for n in ("gate", "up"))
    assert torch.equal(layer.self_attn.qkv_proj.weight, torch.cat([q, k, v]))
    assert torch.equal(layer.mlp.gate_up_proj.weight, torch.cat([gate, up]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CUDA defaults are in test_gpu.py")
def test_default_is_cpu_float32_without_cuda(llama_dir, monkeypatch):
    monkeypatch.delenv("TUTORIAL_DEVICE", raising=False)
    model = from_pretrained(llama_dir)
    assert (model.device.type, model.dtype) == ("cpu", torch.float32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_is_applied(llama_dir, dtype):
    model = from_pretrained(llama_dir, device="cpu", dtype=dtype)
    assert model.dtype == dtype
    assert {p.dtype for p in model.parameters()} == {dtype}


@pytest.mark.parametrize("dtype", ["float16", torch.int8, 16])
def test_bad_dtype_raises(llama_dir, dtype):
    with pytest.raises(TypeError, match=rf"dtype={dtype!r} must be None or a floating-point"):
        from_pretrained(llama_dir, device="cpu", dtype=dtype)


# --------------------------------------------------------------------------------------
# Architectures and options that do not fit Phi-3
# --------------------------------------------------------------------------------------
def test_unsupported_architecture_raises():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=64))
    with pytest.raises(ValueError, match=r"model_type='gpt2' is not supported; supported: phi3"):
        from_hf(gpt2)


def test_unsupported_rope_type_raises():
    # Gemma 4's "proportional" RoPE is in transformers but not in tutorial_lib.rope.
    proportional = dict(rope_type="proportional", rope_theta=10000.0, partial_rotary_factor=1.0)
    llama = LlamaForCausalLM(tiny_config("llama", **TINY))
    # Set after the model is made: transformers before ~5.6 cannot make one with it.
    llama.config.rope_parameters = proportional
    with pytest.raises(ValueError, match=r"rope_type='proportional' is not supported"):
        from_hf(llama)


def test_bias_in_projections_raises():
    llama = LlamaForCausalLM(tiny_config("llama", **TINY, attention_bias=True))
    with pytest.raises(ValueError, match=r"attention_bias=True is not supported"):
        from_hf(llama)


def test_from_hf_needs_a_transformers_model():
    with pytest.raises(TypeError, match=r"hf_model must be a transformers model .* got Linear"):
        from_hf(torch.nn.Linear(2, 2))


# --------------------------------------------------------------------------------------
# Subclasses: model_class builds a reader's subclass of the model
# --------------------------------------------------------------------------------------
class ChattyPhi3(Phi3ForCausalLM):
    """A reader's subclass, as a chapter might write one."""

    def greet(self) -> str:
        return f"{self.config.num_hidden_layers} layers"


def test_model_class_builds_the_subclass(llama_dir):
    loaded = from_pretrained(str(llama_dir), device="cpu", model_class=ChattyPhi3)
    copied = from_hf(LlamaForCausalLM.from_pretrained(llama_dir).eval(), model_class=ChattyPhi3)
    for model in (loaded, copied):
        assert type(model) is ChattyPhi3
        assert model.greet() == "2 layers"
    ids = torch.tensor([[5, 9, 2, 33, 7]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, copied(ids).logits, atol=0, rtol=0)
    # By default, the plain class.
    assert type(from_pretrained(str(llama_dir), device="cpu")) is Phi3ForCausalLM


# --------------------------------------------------------------------------------------
# Quantized loading runs on the CPU, whatever the default device
# --------------------------------------------------------------------------------------
def test_quantized_load_goes_to_the_cpu_where_a_gpu_is_the_default(monkeypatch, llama_dir):
    from tutorial_lib.quantization import Int8Linear

    # A machine with a GPU: the default device would be CUDA (even named by the environment).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("TUTORIAL_DEVICE", "cuda")
    monkeypatch.setattr(loading, "load_tokenizer", lambda name: "tokenizer")
    model, tokenizer = load(llama_dir, quantize="int8")
    assert model.device.type == "cpu" and model.dtype == torch.bfloat16
    assert isinstance(model.model.layers[0].self_attn.qkv_proj, Int8Linear)
    ids = torch.tensor([[1, 2, 3]])
    assert model(ids).logits.shape == (1, 3, TINY["vocab_size"])


@pytest.mark.parametrize("device", ["cuda", torch.device("cuda:0"), "meta"])
def test_quantized_load_on_another_device_fails_before_loading(device):
    with pytest.raises(ValueError, match="quantize='int4' runs on the CPU"):
        load("no-such-model", device=device, quantize="int4")  # not even looked up


def test_loadable_model_types_are_counted_by_architecture():
    # One list per meaning: what config_from_hf converts, what parameter_counts counts.
    from tutorial_lib.architecture import SUPPORTED_MODEL_TYPES
    from tutorial_lib.loading import LOADABLE_MODEL_TYPES

    assert set(LOADABLE_MODEL_TYPES) < set(SUPPORTED_MODEL_TYPES)


def test_load_quantize_takes_the_format_names_of_quantize_weights():
    from tutorial_lib.quantization import QUANTIZE_FORMATS

    assert list(QUANTIZE_FORMATS) == ["int8", "int4"]
    with pytest.raises(TypeError, match=r"quantize=8 must be one of \['int8', 'int4', None\]"):
        load("no-such-model", quantize=8)  # checked before anything is looked up
