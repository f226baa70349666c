"""tutorial_lib: the library behind "How Transformer LLMs Work".

Each module holds one concept of the book and is meant to be read beside its chapter.

``import tutorial_lib`` is light: the names below are imported from their modules on first
use, so a chapter that only counts words never loads torch's model code or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The one default model (offline, from PyPI); the TUTORIAL_MODEL environment variable picks
# another for every chapter (``tutorial_lib.loading.chosen_model``).
DEFAULT_MODEL = "smollm2-135m-instruct"

# Public name -> the module that defines it.
_LAZY = {
    "chat": "generation",
    "chosen_model": "loading",
    "default_dtype": "device",
    "generate": "generation",
    "get_device": "device",
    "load": "loading",
    "perplexity": "quantization",
    "Phi3Config": "phi3",
    "Phi3ForCausalLM": "phi3",
    "quantize_weights": "quantization",
    "set_seed": "device",
    "stream": "generation",
}

__all__ = [
    "DEFAULT_MODEL",
    "Phi3Config",
    "Phi3ForCausalLM",
    "__version__",
    "chat",
    "chosen_model",
    "default_dtype",
    "generate",
    "get_device",
    "load",
    "perplexity",
    "quantize_weights",
    "set_seed",
    "stream",
]

if TYPE_CHECKING:  # for type checkers and editors; never runs
    from .device import default_dtype, get_device, set_seed
    from .generation import chat, generate, stream
    from .loading import chosen_model, load
    from .phi3 import Phi3Config, Phi3ForCausalLM
    from .quantization import perplexity, quantize_weights


def __getattr__(name: str) -> Any:
    """Import ``tutorial_lib.<name>`` from its module the first time it is asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'tutorial_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
