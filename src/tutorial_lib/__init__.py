"""tutorial_lib: the library behind "How Transformer LLMs Work".

Each module holds one concept of the book and is meant to be read beside its chapter.
"""

from .device import default_dtype, get_device, set_seed
from .generation import chat, generate, stream
from .loading import load
from .phi3 import Phi3Config, Phi3ForCausalLM

__version__ = "0.1.0"

# The offline default model; override with the TUTORIAL_MODEL environment variable.
DEFAULT_MODEL = "smollm2-135m-instruct"

__all__ = [
    "DEFAULT_MODEL",
    "Phi3Config",
    "Phi3ForCausalLM",
    "__version__",
    "chat",
    "default_dtype",
    "generate",
    "get_device",
    "load",
    "set_seed",
    "stream",
]
