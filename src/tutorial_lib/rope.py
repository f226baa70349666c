"""Rotary position embeddings (RoPE): the rotation frequencies of every variant.

RoPE gives each query and key vector its position by turning it: dimension pair ``i`` of a
head turns by the angle ``position * inv_freq[i]``. The base frequencies are

    inv_freq[i] = rope_theta ** (-2i / d),   i = 0 .. d/2 - 1,   d = the rotary dimension

fast turns for the first pairs, slow ones for the last (Su et al., 2021). The methods that let a
model read beyond the context it was trained on only change these frequencies, and some scale
cos and sin by an ``attention_factor``:

- ``"default"``  the frequencies above.
- ``"linear"``   position interpolation (Chen et al., 2023): every frequency divided by
  ``factor``, so ``factor`` times more positions fit in the angles seen in training.
- ``"dynamic"``  dynamic NTK scaling: once the sequence outgrows ``max_position_embeddings``,
  a larger ``rope_theta``, grown with the sequence length (slow pairs slow down the most).
- ``"yarn"``     YaRN (Peng et al., 2023): fast pairs kept, slow pairs interpolated, a linear
  ramp between, chosen by how many turns each pair makes over the original context; cos and
  sin scaled by ``0.1 ln(factor) + 1``.
- ``"longrope"`` LongRoPE (Ding et al., 2024; Phi-3's 128k models): one searched factor per
  frequency, ``short_factor`` within the original context, ``long_factor`` beyond it.
- ``"llama3"``   Llama 3.1: slow pairs divided by ``factor``, fast pairs kept, a smooth blend
  between, chosen by wavelength.

``rope_inv_freq`` takes the settings as a dict with ``transformers``' keys (a model's
``config.rope_parameters``) and returns what ``transformers.modeling_rope_utils``'
``ROPE_INIT_FUNCTIONS`` return: ``(inv_freq, attention_factor)``. ``tutorial_lib.phi3`` turns
them into the cos and sin of every position.
"""

from __future__ import annotations

import math

import torch

from .validation import check_int, check_number

__all__ = [
    "ROPE_TYPES",
    "longrope_attention_scaling",
    "rope_inv_freq",
    "rope_pairs",
    "rope_scores",
    "yarn_get_mscale",
]

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3")

# The keys each type cannot do without, besides rope_type and rope_theta.
_REQUIRED_KEYS = {
    "default": (),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "yarn": ("original_max_position_embeddings",),
    "longrope": ("short_factor", "long_factor", "original_max_position_embeddings"),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}
# Every key transformers writes into rope_parameters for these types ("type" is the old name
# of "rope_type", still found in checkpoints such as Phi-3-mini-128k's).
_KNOWN_KEYS = {
    "rope_type",
    "type",
    "rope_theta",
    "partial_rotary_factor",
    "factor",
    "original_max_position_embeddings",
    "attention_factor",
    "beta_fast",
    "beta_slow",
    "mscale",
    "mscale_all_dim",
    "truncate",
    "short_factor",
    "long_factor",
    "low_freq_factor",
    "high_freq_factor",
}


def longrope_attention_scaling(factor: float, original_max_position_embeddings: int) -> float:
    """LongRoPE's correction for a context stretched ``factor`` times: ``sqrt(1 + ln s / ln L)``.

    It multiplies cos and sin, so it sharpens the attention scores by its square.
    """
    if factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(factor) / math.log(original_max_position_embeddings))


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature for a context stretched ``scale`` times: ``0.1 m ln s + 1``."""
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def _check_rope_parameters(rope_parameters: dict, head_dim: int) -> str:
    """Raise a clear error for settings no RoPE type can use; return the rope type."""
    if not isinstance(rope_parameters, dict):
        raise TypeError(
            f"rope_parameters must be a dict (a model's config.rope_parameters), "
            f"got {type(rope_parameters).__name__}"
        )
    unknown = sorted(set(rope_parameters) - _KNOWN_KEYS)
    if unknown:
        raise ValueError(
            f"rope_parameters has unknown keys {unknown}; known: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    rope_type = rope_parameters.get("rope_type", rope_parameters.get("type"))
    if rope_type is None:
        raise ValueError(f"rope_parameters needs 'rope_type' (one of {', '.join(ROPE_TYPES)})")
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"rope_type={rope_type!r} is not supported; supported: {ROPE_TYPES}")
    for key in ("rope_theta", *_REQUIRED_KEYS[rope_type]):
        if rope_parameters.get(key) is None:
            raise ValueError(f"rope_type={rope_type!r} needs {key!r} in rope_parameters")
    check_int("head_dim", head_dim, minimum=2)
    partial_rotary_factor = rope_parameters.get("partial_rotary_factor", 1.0)
    check_number(
        "partial_rotary_factor", partial_rotary_factor, minimum=0, maximum=1, exclusive_minimum=True
    )
    if rope_type == "longrope":
        n_freqs = int(head_dim * partial_rotary_factor) // 2
        for key in ("short_factor", "long_factor"):
            if len(rope_parameters[key]) != n_freqs:
                raise ValueError(
                    f"rope_type='longrope' needs {key} with {n_freqs} numbers (one per rotary "
                    f"frequency), got {len(rope_parameters[key])}"
                )
    return rope_type


def rope_inv_freq(
    rope_parameters: dict,
    head_dim: int,
    max_position_embeddings: int,
    seq_len: int | None = None,
) -> tuple[torch.Tensor, float]:
    """The rotation frequencies of RoPE and the scale of cos and sin, for any ``rope_type``.

    Args:
        rope_parameters: transformers' keys: ``rope_type`` (one of ``ROPE_TYPES``),
            ``rope_theta``, optionally ``partial_rotary_factor``, and the type's own settings:
            ``factor`` (linear, dynamic, yarn, llama3; optional for longrope),
            ``original_max_position_embeddings`` (yarn, longrope, llama3),
            ``beta_fast``, ``beta_slow``, ``mscale``, ``mscale_all_dim``, ``truncate`` (yarn),
            ``short_factor``, ``long_factor`` (longrope), ``low_freq_factor``,
            ``high_freq_factor`` (llama3), ``attention_factor`` (yarn, longrope).
        head_dim: the size of one attention head; the first ``head_dim * partial_rotary_factor``
            dimensions rotate.
        max_position_embeddings: the model's context length (``config.max_position_embeddings``):
            where dynamic scaling starts, and the extended context for yarn and longrope.
        seq_len: the length of the sequence at hand (the largest position + 1); dynamic and
            longrope depend on it, the other types ignore it. None: a short sequence.

    Returns:
        ``(inv_freq, attention_factor)``: ``inv_freq`` is float32 on the CPU, one frequency per
        rotated pair, ``(rotary_dim // 2,)``, in radians per position; cos and sin are multiplied
        by ``attention_factor``.

    Raises:
        TypeError, ValueError: ``rope_parameters`` is not a dict, or has an unknown type, an
            unknown key, a missing key, or factors of the wrong length.

    Example::

        inv_freq, scale = rope_inv_freq({"rope_type": "default", "rope_theta": 10000.0}, 64, 2048)
        angles = torch.arange(2048)[:, None] * inv_freq  # (positions, 32)
    """
    rope_type = _check_rope_parameters(rope_parameters, head_dim)
    theta = rope_parameters["rope_theta"]
    dim = int(head_dim * rope_parameters.get("partial_rotary_factor", 1.0))  # rotated dims
    # 2i / d for every pair i: the exponent of theta in each pair's wavelength.
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim  # (d/2,)

    if rope_type == "default":
        return 1.0 / (theta**exponents), 1.0

    if rope_type == "linear":
        # Positions squeezed `factor` times: angle(p / factor) = p * (inv_freq / factor).
        return 1.0 / (theta**exponents) / rope_parameters["factor"], 1.0

    if rope_type == "dynamic":
        # Within the context nothing changes; beyond it theta grows with the sequence so that
        # the slowest pair still turns less than in training over the whole sequence.
        factor = rope_parameters["factor"]
        seq_len = max(seq_len or max_position_embeddings, max_position_embeddings)
        stretch = factor * seq_len / max_position_embeddings - (factor - 1)
        base = theta * stretch ** (dim / (dim - 2))
        return 1.0 / (base**exponents), 1.0

    if rope_type == "yarn":
        return _yarn_inv_freq(rope_parameters, dim, exponents, max_position_embeddings)

    if rope_type == "longrope":
        original = rope_parameters["original_max_position_embeddings"]
        factor = rope_parameters.get("factor")
        if factor is None:  # Phi-3 gives the stretch as a ratio of context lengths
            factor = max_position_embeddings / original
        attention_factor = rope_parameters.get("attention_factor")
        if attention_factor is None:
            attention_factor = longrope_attention_scaling(factor, original)
        # One factor per pair: the short ones inside the original context, the long ones beyond.
        long = seq_len is not None and seq_len > original
        key = "long_factor" if long else "short_factor"
        ext_factors = torch.tensor(rope_parameters[key], dtype=torch.float32, device="cpu")
        return 1.0 / (ext_factors * theta**exponents), attention_factor

    # llama3: by wavelength (positions per full turn), compared with the original context.
    inv_freq = 1.0 / (theta**exponents)
    factor = rope_parameters["factor"]
    low_freq_factor = rope_parameters["low_freq_factor"]
    high_freq_factor = rope_parameters["high_freq_factor"]
    original = rope_parameters["original_max_position_embeddings"]
    low_freq_wavelen = original / low_freq_factor  # longer than this: interpolate fully
    high_freq_wavelen = original / high_freq_factor  # shorter than this: keep as is
    wavelen = 2 * math.pi / inv_freq  # (d/2,)
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # In between, blend the kept and the interpolated frequency smoothly.
    smooth = (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled), 1.0


def _yarn_inv_freq(
    rope_parameters: dict, dim: int, exponents: torch.Tensor, max_position_embeddings: int
) -> tuple[torch.Tensor, float]:
    """YaRN: keep the pairs that turn many times in the original context, interpolate the rest."""
    theta = rope_parameters["rope_theta"]
    original = rope_parameters["original_max_position_embeddings"]
    factor = rope_parameters.get("factor")
    if factor is None:
        factor = max_position_embeddings / original
    attention_factor = rope_parameters.get("attention_factor")
    if attention_factor is None:
        mscale = rope_parameters.get("mscale")
        mscale_all_dim = rope_parameters.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = yarn_get_mscale(factor, mscale) / yarn_get_mscale(
                factor, mscale_all_dim
            )
        else:
            attention_factor = yarn_get_mscale(factor)
    beta_fast = rope_parameters.get("beta_fast") or 32  # pairs turning more often: kept
    beta_slow = rope_parameters.get("beta_slow") or 1  # pairs turning less often: interpolated

    def pair_turning(n_turns: float) -> float:
        """The (fractional) pair that makes ``n_turns`` full turns over the original context."""
        return dim * math.log(original / (n_turns * 2 * math.pi)) / (2 * math.log(theta))

    low, high = pair_turning(beta_fast), pair_turning(beta_slow)
    if rope_parameters.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero
    # 0 for the fast pairs (below low), 1 for the slow ones (above high), linear between.
    pair = torch.arange(dim // 2, dtype=torch.float32, device="cpu")  # (d/2,)
    ramp = ((pair - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # the weight of the original (extrapolated) frequency of each pair
    wavelength_scale = theta**exponents  # (d/2,)
    inv_freq_kept = 1.0 / wavelength_scale
    inv_freq_interpolated = 1.0 / (factor * wavelength_scale)
    inv_freq = inv_freq_interpolated * (1 - keep) + inv_freq_kept * keep
    return inv_freq, float(attention_factor)


# --------------------------------------------------------------------------------------
# What the rotation does to one query and one key (the data of the rotary explorer)
# --------------------------------------------------------------------------------------
def rope_pairs(x: torch.Tensor) -> torch.Tensor:
    """The 2-D pairs that RoPE turns, (d/2, 2), of a vector ``x`` (d,).

    In Hugging Face's layout (the one ``tutorial_lib.phi3`` uses) dimension ``j`` pairs with
    dimension ``j + d/2``; pair ``i`` turns by ``position * inv_freq[i]``.
    """
    if x.dim() != 1 or x.shape[0] % 2:
        raise ValueError(f"x must be a vector of even length (d,), got shape {tuple(x.shape)}")
    first, second = x.chunk(2)  # (d/2,) each
    return torch.stack((first, second), dim=-1)  # (d/2, 2)


def rope_scores(
    query: torch.Tensor, key: torch.Tensor, inv_freq: torch.Tensor, offsets: torch.Tensor
) -> torch.Tensor:
    """The score ``q(m) . k(n) / sqrt(d)`` of RoPE-rotated vectors, for each offset ``m - n``.

    ``query`` and ``key`` are (d,) vectors before rotation and ``inv_freq`` their (d/2,)
    frequencies. As complex numbers, pair ``i`` of the rotated query is ``q_i e^(i m theta_i)``
    and of the key ``k_i e^(i n theta_i)``; their dot product is the real part of
    ``q_i conj(k_i) e^(i (m - n) theta_i)``, which depends on ``m - n`` only. Returns one score
    per offset, (len(offsets),), in float64.
    """
    if query.shape != key.shape or query.dim() != 1:
        raise ValueError(
            f"query and key must be vectors of one shape (d,), got {tuple(query.shape)} "
            f"and {tuple(key.shape)}"
        )
    if inv_freq.shape != (query.shape[0] // 2,):
        raise ValueError(
            f"inv_freq must have shape ({query.shape[0] // 2},), one frequency per pair, "
            f"got {tuple(inv_freq.shape)}"
        )
    q, k = rope_pairs(query.double()), rope_pairs(key.double())  # (d/2, 2)
    q_complex, k_complex = torch.view_as_complex(q), torch.view_as_complex(k)  # (d/2,)
    angles = offsets.double()[:, None] * inv_freq.double()  # (offsets, d/2)
    turned = q_complex * k_complex.conj() * torch.polar(torch.ones_like(angles), angles)
    return turned.real.sum(dim=-1) / math.sqrt(query.shape[0])  # (offsets,)
