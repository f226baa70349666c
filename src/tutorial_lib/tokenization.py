"""Tokenizers: load real ones offline, and show how they cut text into tokens."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from . import assets

__all__ = ["TOKENIZERS", "load_tokenizer", "show_tokens", "TokenView"]

# name -> (asset, sub-directory inside the asset, what it is)
TOKENIZERS: dict[str, tuple[str, str, str]] = {
    "bert-base-uncased": ("minilm-l6-v2", "", "BERT uncased WordPiece, 30,522 tokens"),
    "gpt-2": ("tokenizer-vocabs", "gpt-2", "GPT-2 byte-level BPE, 50,257 tokens"),
    "phi-3": ("tokenizer-vocabs", "phi-3", "Phi-3 / Llama 2 SentencePiece BPE, 32,064 tokens"),
    "llama-bpe": ("tokenizer-vocabs", "llama-bpe", "Llama 3 byte-level BPE, 128,256 tokens"),
    "qwen2": ("tokenizer-vocabs", "qwen2", "Qwen2 byte-level BPE, 151,646 tokens"),
    "starcoder": ("tokenizer-vocabs", "starcoder", "StarCoder byte-level BPE for code, 49,152 tokens"),
    "smollm2": ("smollm2-135m-instruct", "", "SmolLM2 byte-level BPE, 49,152 tokens"),
}
_ALIASES = {"llama-3": "llama-bpe", "bert": "bert-base-uncased", "gpt2": "gpt-2", "phi3": "phi-3"}


def tokenizer_path(name: str) -> Path:
    """The local Hugging Face directory of tokenizer ``name`` (fetched on first use)."""
    key = _ALIASES.get(name, name)
    if key not in TOKENIZERS:
        known = ", ".join([*TOKENIZERS, *_ALIASES])
        raise ValueError(f"name={name!r} is not a known tokenizer; known tokenizers: {known}")
    asset, sub, _ = TOKENIZERS[key]
    return assets.fetch(asset) / sub


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Load a real tokenizer by name, offline (see ``TOKENIZERS``), or from a local directory.

    >>> load_tokenizer("phi-3")("The capital of France is").input_ids
    [1, 450, 7483, 310, 3444, 338]
    """
    if isinstance(name, str) and Path(name).is_dir():
        return AutoTokenizer.from_pretrained(name)
    return AutoTokenizer.from_pretrained(tokenizer_path(name))


# A fixed palette of light backgrounds, cycled token by token (readable on white and dark).
PALETTE = ("#fde2a7", "#b9e4c9", "#c6d8ff", "#ffc6d9", "#e2ccff", "#c9f1f5")
# The nearest xterm-256 background colours, for terminals.
_ANSI = (223, 151, 153, 218, 183, 195)


@dataclass
class TokenView:
    """How one tokenizer cut one text: shown colored as HTML in notebooks, ANSI in a terminal."""

    tokens: list[str]  # each token id decoded on its own
    ids: list[int]
    vocab_size: int
    name: str = ""

    def _header(self) -> str:
        name = f"{self.name}: " if self.name else ""
        return f"{name}{len(self.ids)} tokens, vocabulary {self.vocab_size:,}"

    def __repr__(self) -> str:
        return self._header() + "\n" + "".join(f"[{t}]" for t in self.tokens)

    def __str__(self) -> str:
        cells = (f"\x1b[48;5;{_ANSI[i % len(_ANSI)]}m\x1b[30m{t}\x1b[0m" for i, t in enumerate(self.tokens))
        return self._header() + "\n" + "".join(cells)

    def _repr_html_(self) -> str:
        spans = "".join(
            f'<span style="background:{PALETTE[i % len(PALETTE)]};color:#000;'
            f'padding:1px 0;white-space:pre">{html.escape(t)}</span>'
            for i, t in enumerate(self.tokens)
        )
        return (
            f'<div style="margin:4px 0"><div style="font-size:85%;color:#555">'
            f"{html.escape(self._header())}</div>"
            f'<div style="font-family:monospace;line-height:1.9">{spans}</div></div>'
        )


def show_tokens(text: str, tokenizer: PreTrainedTokenizerBase | str) -> TokenView:
    """Tokenize ``text`` and return a view with each token on its own colored background.

    ``tokenizer`` is a transformers tokenizer or a name for ``load_tokenizer``. Special
    tokens the tokenizer adds (``[CLS]``, ``<s>``...) are shown too. In a notebook the
    result renders as HTML; ``print()`` it in a terminal for ANSI colors.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    name = tokenizer if isinstance(tokenizer, str) else Path(str(tokenizer.name_or_path)).name
    if isinstance(tokenizer, str):
        tokenizer = load_tokenizer(tokenizer)
    ids = tokenizer(text).input_ids
    tokens = [tokenizer.decode([i]) for i in ids]
    return TokenView(tokens=tokens, ids=ids, vocab_size=len(tokenizer), name=name)
