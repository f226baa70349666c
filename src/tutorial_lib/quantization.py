"""Weight-only quantization: store the weights in 8 or 4 bits, compute in bfloat16.

Decoding one token reads every weight once, so on a laptop its speed is set by bytes, not
by arithmetic: tokens/s <= memory bandwidth / bytes of weights. Fewer bits per weight means
more tokens per second. This module reads top to bottom:

1. ``quantize_int8`` / ``dequantize_int8``  - absmax per output channel: ``w ~ q * scale``,
   ``q`` an integer in [-127, 127], one scale per row of the weight matrix.
2. ``quantize_int4`` / ``dequantize_int4``  - per group of ``group_size`` inputs of a row:
   ``w ~ q * scale + minimum``, ``q`` in [0, 15] (asymmetric: the 16 levels span the
   group's own range; the layout of GGUF's Q4_1 with blocks of 32).
3. ``Int8Linear`` / ``Int4Linear``          - drop-in replacements for ``nn.Linear`` that
   keep only the quantized weights and multiply with PyTorch's fused CPU kernels, which
   dequantize on the fly while decoding (no full-precision matrix is kept in memory).
   ``QuantizedSwiGLU`` / ``QuantizedMoeExperts`` - the same for a mixture of experts' MLPs.
4. ``quantize_weights``                    - swap every linear layer of a model in place;
   ``simulate_quantization``               - round the weights the same way, keep float layers.
5. ``weight_bytes`` / ``memory_bandwidth`` - the bytes a token reads and how fast they come:
                                             the decoding roofline;
   ``perplexity``                          - what quantization costs in quality.

Only the weights are quantized; activations, the KV cache, norms and the token embedding
stay in the model's dtype. Use bfloat16 activations: the kernels are fast with them and up to
20x slower with float32 ones. The kernels are CPU kernels (``aten._weight_int8pack_mm``,
``aten._weight_int4pack_mm_for_cpu``); on a GPU use bf16, or a GPU library (torchao,
bitsandbytes) whose kernels pack the weights for that GPU.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .moe import MoeExperts, SharedExpert, SparseMoeBlock
from .phi3 import Phi3ForCausalLM
from .validation import check_int

__all__ = [
    "Int4Linear",
    "Int8Linear",
    "QUANTIZE_FORMATS",
    "QuantizedMoeExperts",
    "QuantizedSwiGLU",
    "dequantize_int4",
    "dequantize_int8",
    "memory_bandwidth",
    "perplexity",
    "quantize_int4",
    "quantize_int8",
    "quantize_weights",
    "simulate_quantization",
    "weight_bytes",
]

# The weight-only formats, by the one name used everywhere (``load(quantize=...)``,
# ``quantize_weights``, ``simulate_quantization``), and their bits per weight: int8 is absmax
# with one scale per output channel, int4 asymmetric with a scale and a minimum per group.
QUANTIZE_FORMATS: dict[str, int] = {"int8": 8, "int4": 4}
DEFAULT_INT4_GROUP_SIZE = 32  # as GGUF's Q4_0 / Q4_1 blocks
# The dtypes the activations may have: the kernels take float32 (slow) and bfloat16 (fast).
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16)
# The kernels are made for decoding, a few tokens at a time: their time grows with every
# token. From this many tokens on (a long prompt, a perplexity), Int8Linear dequantizes its
# matrix once and runs one dense matmul, which is faster (measured on a 2-core AVX2 CPU).
DENSE_MIN_TOKENS = 128


def _check_weight(weight: torch.Tensor) -> None:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a 2-D floating-point (out, in) matrix, got {shape}")


# --------------------------------------------------------------------------------------
# 1. int8: absmax per output channel
# --------------------------------------------------------------------------------------
def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absmax int8 per output channel (row): ``weight ~ q * scale[:, None]``.

    Each row's largest magnitude maps to 127, zero stays exactly zero, and the 255 levels are
    evenly spaced in between. One outlier in a row stretches its scale, so every other weight
    of that row is rounded more coarsely.

    Args:
        weight: (out, in) floating-point matrix.

    Returns:
        ``q``: (out, in) int8 in [-127, 127]; ``scale``: (out,) float32.
    """
    _check_weight(weight)
    weight = weight.float()
    absmax = weight.abs().amax(dim=1)  # (out,): each row's largest magnitude
    scale = absmax.clamp(min=1e-12) / 127  # (out,): the step between two levels
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)  # (out, in)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 matrix (out, in) that ``quantize_int8``'s ``q`` and ``scale`` stand for."""
    return q.float() * scale.float()[:, None]


# --------------------------------------------------------------------------------------
# 2. int4: asymmetric, per group of inputs
# --------------------------------------------------------------------------------------
def _check_group_size(group_size: int, in_features: int) -> None:
    check_int("group_size", group_size, minimum=2)
    if in_features % group_size != 0:
        raise ValueError(
            f"group_size={group_size} must divide the layer's input size {in_features}"
        )


def quantize_int4(
    weight: torch.Tensor, group_size: int = DEFAULT_INT4_GROUP_SIZE
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group: ``w ~ q * scale + minimum`` within each group of inputs.

    Each row is cut into groups of ``group_size`` consecutive inputs. A group's 16 levels run
    evenly from its smallest weight (``q = 0``) to its largest (``q = 15``), so an outlier
    only coarsens the ``group_size - 1`` weights that share its group.

    Args:
        weight: (out, in) floating-point matrix; ``group_size`` must divide ``in``.
        group_size: inputs per group (smaller: more accurate, more scales to store).

    Returns:
        ``q``: (out, in) uint8 in [0, 15]; ``scale`` and ``minimum``: (out, in / group_size)
        float32.
    """
    _check_weight(weight)
    out_features, in_features = weight.shape
    _check_group_size(group_size, in_features)
    groups = weight.float().reshape(out_features, in_features // group_size, group_size)
    minimum = groups.amin(dim=-1)  # (out, n_groups)
    maximum = groups.amax(dim=-1)
    scale = (maximum - minimum).clamp(min=1e-12) / 15  # 15 steps between 16 levels
    q = torch.round((groups - minimum[..., None]) / scale[..., None]).clamp(0, 15)
    return q.to(torch.uint8).reshape(out_features, in_features), scale, minimum


def dequantize_int4(
    q: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor, group_size: int
) -> torch.Tensor:
    """The float32 matrix (out, in) that ``quantize_int4``'s outputs stand for."""
    out_features, in_features = q.shape
    groups = q.float().reshape(out_features, in_features // group_size, group_size)
    return (groups * scale[..., None] + minimum[..., None]).reshape(out_features, in_features)


# --------------------------------------------------------------------------------------
# 3. Linear layers that keep quantized weights
# --------------------------------------------------------------------------------------
def _check_input(x: torch.Tensor, in_features: int, compute_dtype: torch.dtype) -> None:
    if x.device.type != "cpu":
        raise ValueError(
            f"quantized layers run on the CPU, got an input on {x.device}; "
            "on a GPU, use bfloat16 weights instead"
        )
    if x.dtype != compute_dtype:
        raise TypeError(
            f"input dtype {x.dtype} does not match the layer's dtype {compute_dtype}; "
            "quantize the model in the dtype you run it in"
        )
    if x.shape[-1] != in_features:
        raise ValueError(f"input has {x.shape[-1]} features, the layer takes {in_features}")


class Int8Linear(nn.Module):
    """``y = x W^T`` with W stored as int8 plus one scale per output channel.

    ``aten._weight_int8pack_mm`` multiplies by the int8 matrix and applies the scales in one
    pass, converting the weights as it reads them. For ``DENSE_MIN_TOKENS`` tokens or more (a
    long prompt), the layer dequantizes the matrix for that call and runs one dense matmul.

    Args:
        q: (out, in) int8 codes and ``scale``: (out,) scales, from ``quantize_int8``.
        dtype: the activations' dtype (bfloat16 for speed, float32 as a reference).
    """

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight_int8", q.contiguous())  # (out, in) int8
        self.register_buffer("scale", scale.to(dtype))  # (out,), in the activations' dtype

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """Quantize an ``nn.Linear`` (no bias) with ``quantize_int8``."""
        q, scale = quantize_int8(linear.weight.detach())
        return cls(q, scale, linear.weight.dtype)

    def dequantize(self) -> torch.Tensor:
        """The (out, in) float32 weight this layer multiplies by."""
        return dequantize_int8(self.weight_int8, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_features, self.scale.dtype)
        x2d = x.reshape(-1, self.in_features)  # (tokens, in): the kernel takes a matrix
        if x2d.shape[0] >= DENSE_MIN_TOKENS:  # many tokens: dequantize once, one dense matmul
            y = F.linear(x2d, self.weight_int8.to(x.dtype) * self.scale[:, None])
        else:
            y = torch.ops.aten._weight_int8pack_mm(x2d, self.weight_int8, self.scale)
        return y.reshape(*x.shape[:-1], self.out_features)  # (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int4Linear(nn.Module):
    """``y = x W^T`` with W stored as 4-bit codes (two per byte) plus a scale and an offset per
    group of ``group_size`` inputs.

    ``aten._weight_int4pack_mm_for_cpu`` wants the codes packed in its own tiled layout
    (``aten._convert_weight_to_int4pack_for_cpu``; it differs between CPU kernels, so the
    layer cannot unpack it portably: keep ``quantize_int4``'s outputs to inspect them), and
    the groups' parameters as ``scales_and_zeros`` (in / group_size, out, 2), for
    ``w = (q - 8) * scale + zero``: its ``zero`` is the value of the middle code 8, i.e.
    ``minimum + 8 * scale``.

    Args:
        q, scale, minimum: ``quantize_int4``'s outputs for this ``group_size``.
        group_size: inputs per group; must divide the input size.
        dtype: the activations' dtype (bfloat16 for speed, float32 as a reference).
    """

    def __init__(
        self,
        q: torch.Tensor,
        scale: torch.Tensor,
        minimum: torch.Tensor,
        group_size: int,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = q.shape
        _check_group_size(group_size, self.in_features)
        if self.out_features % 16 != 0:
            raise ValueError(
                f"Int4Linear needs a multiple of 16 output features (the kernel packs rows in "
                f"blocks), got {self.out_features}; use int8 for this layer"
            )
        self.group_size = group_size
        # Two 4-bit codes per byte, tiled for the kernel: (out, in / 2) uint8.
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 2)
        self.register_buffer("weight_int4pack", packed)
        zero = minimum + 8 * scale  # the kernel subtracts 8 from the code, then scales
        scales_and_zeros = torch.stack([scale, zero], dim=-1)  # (out, n_groups, 2)
        # (n_groups, out, 2), in the activations' dtype.
        self.register_buffer(
            "scales_and_zeros", scales_and_zeros.transpose(0, 1).contiguous().to(dtype)
        )

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, group_size: int = DEFAULT_INT4_GROUP_SIZE
    ) -> Int4Linear:
        """Quantize an ``nn.Linear`` (no bias) with ``quantize_int4``."""
        q, scale, minimum = quantize_int4(linear.weight.detach(), group_size)
        return cls(q, scale, minimum, group_size, linear.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_features, self.scales_and_zeros.dtype)
        x2d = x.reshape(-1, self.in_features)  # (tokens, in)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x2d, self.weight_int4pack, self.group_size, self.scales_and_zeros
        )
        return y.reshape(*x.shape[:-1], self.out_features)  # (..., out)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int4, group_size={self.group_size}"
        )


class QuantizedSwiGLU(nn.Module):
    """One expert's SwiGLU MLP, ``down(silu(gate(x)) * up(x))``, with quantized matrices.

    What ``moe.expert_mlp`` computes with one expert's float weights, through two quantized
    linear layers (``Int8Linear`` or ``Int4Linear``) instead.
    """

    def __init__(self, gate_up_proj: nn.Module, down_proj: nn.Module) -> None:
        super().__init__()
        self.gate_up_proj = gate_up_proj  # (2 * intermediate, hidden), gate rows first
        self.down_proj = down_proj  # (hidden, intermediate)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(hidden_states).chunk(2, dim=-1)  # (tokens, intermediate)
        return self.down_proj(F.silu(gate) * up)  # (tokens, hidden)


class QuantizedMoeExperts(nn.Module):
    """``moe.MoeExperts`` with each expert's two matrices quantized (one ``QuantizedSwiGLU``
    per expert). Routes tokens exactly as ``MoeExperts.forward`` does.
    """

    def __init__(self, experts: list[QuantizedSwiGLU]) -> None:
        super().__init__()
        self.num_experts = len(experts)
        self.experts = nn.ModuleList(experts)

    def forward(
        self,
        hidden_states: torch.Tensor,
        top_k_index: torch.Tensor,
        top_k_weights: torch.Tensor,
    ) -> torch.Tensor:
        output = torch.zeros_like(hidden_states)  # (tokens, hidden)
        for expert, mlp in enumerate(self.experts):
            token_idx, slot = torch.where(top_k_index == expert)  # (n,) each
            if token_idx.numel() == 0:
                continue
            weighted = mlp(hidden_states[token_idx]) * top_k_weights[token_idx, slot, None]
            output.index_add_(0, token_idx, weighted.to(output.dtype))
        return output


# --------------------------------------------------------------------------------------
# 4. Quantizing a whole model
# --------------------------------------------------------------------------------------
def _as_linear(weight: torch.Tensor) -> nn.Linear:
    """A bias-free ``nn.Linear`` around a (out, in) weight (no copy)."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    linear.weight = nn.Parameter(weight.detach(), requires_grad=False)
    return linear


def _quantize_moe_block(block: SparseMoeBlock, quantized) -> None:
    """Quantize a mixture of experts in place: every routed expert and the shared expert.

    The router (``gate``) and the shared expert's gate stay in full precision: they are
    tiny, and the router's scores decide which experts run at all."""
    experts: MoeExperts = block.experts
    block.experts = QuantizedMoeExperts(
        [
            QuantizedSwiGLU(
                quantized(_as_linear(experts.gate_up_proj[e])),
                quantized(_as_linear(experts.down_proj[e])),
            )
            for e in range(experts.num_experts)
        ]
    )
    shared: SharedExpert | None = block.shared_expert
    if shared is not None:
        block.shared_expert = QuantizedSwiGLU(
            quantized(shared.gate_up_proj), quantized(shared.down_proj)
        )


def check_quantize_format(name: str, value: object, *, none_allowed: bool = False) -> None:
    """Raise unless ``value`` is a format of ``QUANTIZE_FORMATS`` (or None, if allowed)."""
    if value is None and none_allowed:
        return
    allowed = [*QUANTIZE_FORMATS, *([None] if none_allowed else [])]
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r} must be one of {allowed}, got {type(value).__name__}")
    if value not in QUANTIZE_FORMATS:
        raise ValueError(f"{name}={value!r} is not supported; use one of {allowed}")


def _check_quantize_arguments(
    model: Phi3ForCausalLM, quantize: str, group_size: int | None, lm_head_quantize: str | None
) -> None:
    check_quantize_format("quantize", quantize)
    check_quantize_format("lm_head_quantize", lm_head_quantize, none_allowed=True)
    if quantize == "int8" and group_size is not None:
        raise ValueError(
            f"group_size={group_size!r}: int8 uses one scale per output channel; "
            "pass group_size=None"
        )
    if not isinstance(model, Phi3ForCausalLM):
        raise TypeError(f"model must be a Phi3ForCausalLM, got {type(model).__name__}")
    weight = model.model.embed_tokens.weight
    if weight.device.type != "cpu":
        raise ValueError(
            f"the model is on {weight.device}; the quantized kernels run on the CPU "
            "(on a GPU, load the model in bfloat16 instead)"
        )
    if weight.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"the model's dtype is {weight.dtype}; quantized layers compute in "
            "torch.bfloat16 (fast) or torch.float32 (reference)"
        )


def quantize_weights(
    model: Phi3ForCausalLM,
    quantize: str,
    *,
    group_size: int | None = None,
    lm_head_quantize: str | None = "int8",
) -> Phi3ForCausalLM:
    """Replace the model's linear layers, in place, by weight-only quantized ones.

    Quantizes ``qkv_proj``, ``o_proj``, ``gate_up_proj`` and ``down_proj`` of every layer to
    ``quantize`` (in a mixture-of-experts layer: both matrices of every expert and of the shared
    expert, which hold most of an MoE's bytes; the router stays in full precision), and the
    LM head to ``lm_head_quantize``. The LM head is the most sensitive matrix
    (its errors go straight into the logits), so by default it gets 8 bits even in an int4
    model, as llama.cpp keeps its output matrix at higher precision. When the LM head is tied
    to the token embedding (as in SmolLM2), it gets its own quantized copy and the embedding
    keeps its full-precision matrix: a lookup reads one row per token, the LM head all rows.
    The activations keep the model's dtype, so quantize a bfloat16 model to decode fast
    (float32 works, through the kernels' slow path, as a reference).

    Args:
        model: a ``Phi3ForCausalLM`` on the CPU in float32 or bfloat16.
        quantize: ``"int8"`` (absmax per output channel) or ``"int4"`` (asymmetric per group
            of inputs): the names of ``QUANTIZE_FORMATS``, as in ``load(quantize=...)``.
        group_size: int4 only: inputs per group (default 32, which must divide every layer's
            input size); int8 always uses one scale per output channel.
        lm_head_quantize: ``"int8"`` or ``"int4"`` for the LM head (int4 uses
            ``group_size``), or None to leave it as is.

    Returns:
        The same model object, quantized.

    Raises:
        ValueError: unsupported format/``group_size``/device; TypeError: unsupported dtype.
    """
    _check_quantize_arguments(model, quantize, group_size, lm_head_quantize)
    group_size = DEFAULT_INT4_GROUP_SIZE if group_size is None else group_size

    def quantized(linear: nn.Module, fmt: str = quantize) -> nn.Module:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected an nn.Linear to quantize, got {type(linear).__name__}")
        if fmt == "int8":
            return Int8Linear.from_linear(linear)
        return Int4Linear.from_linear(linear, group_size)

    with torch.no_grad():
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            attn.qkv_proj, attn.o_proj = quantized(attn.qkv_proj), quantized(attn.o_proj)
            if isinstance(mlp, SparseMoeBlock):
                _quantize_moe_block(mlp, quantized)
            else:
                mlp.gate_up_proj = quantized(mlp.gate_up_proj)
                mlp.down_proj = quantized(mlp.down_proj)
        if lm_head_quantize is not None:
            # A new module: a tied embedding keeps its own full-precision matrix.
            model.lm_head = quantized(model.lm_head, lm_head_quantize)
    return model


def _round_trip(weight: torch.Tensor, fmt: str, group_size: int) -> torch.Tensor:
    """``weight`` rounded onto the int8 or int4 grid and back, in its own dtype."""
    if fmt == "int8":
        return dequantize_int8(*quantize_int8(weight)).to(weight.dtype)
    return dequantize_int4(*quantize_int4(weight, group_size), group_size).to(weight.dtype)


def simulate_quantization(
    model: Phi3ForCausalLM,
    quantize: str,
    *,
    group_size: int | None = None,
    lm_head_quantize: str | None = "int8",
) -> Phi3ForCausalLM:
    """Round the weights as ``quantize_weights`` does, but keep them as float ``nn.Linear``.

    The model computes with the same rounded numbers, through ordinary dense matmuls: no
    memory or speed gain, but its quality can be measured quickly on long texts and on any
    CPU ("simulated" or "fake" quantization). Arguments as for ``quantize_weights``.
    """
    _check_quantize_arguments(model, quantize, group_size, lm_head_quantize)
    group_size = DEFAULT_INT4_GROUP_SIZE if group_size is None else group_size
    with torch.no_grad():
        for layer in model.model.layers:
            mlp = layer.mlp
            weights = [layer.self_attn.qkv_proj.weight, layer.self_attn.o_proj.weight]
            if isinstance(mlp, SparseMoeBlock):
                for e in range(mlp.experts.num_experts):  # one matrix per expert
                    weights += [mlp.experts.gate_up_proj[e], mlp.experts.down_proj[e]]
                if mlp.shared_expert is not None:
                    shared = mlp.shared_expert
                    weights += [shared.gate_up_proj.weight, shared.down_proj.weight]
            else:
                weights += [mlp.gate_up_proj.weight, mlp.down_proj.weight]
            for weight in weights:
                weight.copy_(_round_trip(weight, quantize, group_size))
        if lm_head_quantize is not None:
            # A new matrix: a tied embedding keeps its own full-precision one.
            rounded = _round_trip(model.lm_head.weight, lm_head_quantize, group_size)
            model.lm_head = nn.Linear(rounded.shape[1], rounded.shape[0], bias=False)
            model.lm_head.weight = nn.Parameter(rounded, requires_grad=False)
    return model


# --------------------------------------------------------------------------------------
# 5. What it saves and what it costs
# --------------------------------------------------------------------------------------
def _tensor_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of distinct tensors (a tied matrix counts once)."""
    seen = {t.data_ptr(): t.numel() * t.element_size() for t in tensors}
    return sum(seen.values())


def weight_bytes(model: nn.Module, per_token: bool = False) -> int:
    """Bytes of the model's weights (parameters and buffers, tied ones once).

    With ``per_token=True``: the bytes one decoding step reads, i.e. all of them except the
    token embedding table, of which a step reads one row, unless the LM head uses it too.
    """
    tensors = [*model.parameters(), *model.buffers()]
    total = _tensor_bytes(tensors)
    if not per_token:
        return total
    embedding = model.model.embed_tokens.weight
    lm_head_weight = getattr(model.lm_head, "weight", None)
    if lm_head_weight is not None and lm_head_weight.data_ptr() == embedding.data_ptr():
        return total  # tied: the LM head reads the whole table every step
    return total - embedding.numel() * embedding.element_size()


def memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second the CPU moves in a large copy (bytes read + bytes written), best run.

    The copy is much larger than the CPU's caches, so it measures main memory, the speed limit
    of decoding: ``tokens/s <= memory_bandwidth() / weight_bytes(model, per_token=True)``.
    Uses torch's current number of threads.
    """
    check_int("megabytes", megabytes, minimum=1)
    source = torch.ones(megabytes * 2**20 // 4)  # float32: 4 bytes each
    target = torch.empty_like(source)
    target.copy_(source)  # the first write maps the memory pages; not timed
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best  # every byte is read once and written once


@torch.inference_mode()
def perplexity(model: Phi3ForCausalLM, input_ids: torch.Tensor) -> float:
    """exp(mean negative log-likelihood) of each token given the ones before it.

    ``input_ids`` (batch, seq) is a text without padding; the first token of each row is only
    context. Lower is better; a model guessing uniformly among V tokens scores V.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise ValueError(
            f"input_ids must be (batch, seq) with seq >= 2, got {tuple(input_ids.shape)}"
        )
    input_ids = input_ids.to(model.device)
    # The plain (math) attention kernel: PyTorch's fused CPU kernel fails on bfloat16 inputs of
    # 64+ tokens when it runs without AVX2/AVX-512 ("pack_vnni2 is only supported when avx512
    # is supported", torch 2.13 with ATEN_CPU_CAPABILITY=default).
    with sdpa_kernel(SDPBackend.MATH):
        logits = model(input_ids).logits[:, :-1].float()  # (batch, seq - 1, vocab): predictions
    targets = input_ids[:, 1:]  # (batch, seq - 1): the tokens that came next
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return math.exp(loss.item())
