"""A tiny character-level decoder on the Lee news corpus (chapter 10).

Chapter 10 writes a Phi-3-style decoder out and trains a small one live for a few hundred
steps; ``tools/train_tiny_char_model.py`` trains a larger one of the same classes for longer
and saves it as ``data/tiny_char_lm.safetensors``, which ships with this package. This module
holds what both need to agree on: the corpus and its train/held-out split, the character
vocabulary, the model's configuration, the starting weights and the held-out loss. The model
itself is ``phi3.Phi3ForCausalLM`` (the chapter's ``DecoderLM`` has the same parameter
names, so a checkpoint loads into either).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from . import assets
from .phi3 import Phi3Config, Phi3ForCausalLM

__all__ = [
    "CHECKPOINT",
    "CharVocab",
    "init_weights",
    "lee_corpus",
    "load_tiny_char_model",
    "mean_loss",
    "tiny_char_config",
]

CHECKPOINT = Path(__file__).resolve().parent / "data" / "tiny_char_lm.safetensors"
HELD_OUT_SHARE = 0.1  # the last 10% of the 300 articles (30) are never trained on


def lee_corpus() -> tuple[str, str]:
    """The Lee background corpus (300 ABC news articles, shipped with gensim), split.

    Returns:
        (train_text, held_out_text): the first 270 and the last 30 articles, one per line.
    """

    path = assets.fetch(assets.GENSIM_CORPORA) / "lee_background.cor"
    articles = path.read_text(encoding="utf-8").splitlines()  # one article per line
    n_train = int((1 - HELD_OUT_SHARE) * len(articles))
    return "\n".join(articles[:n_train]), "\n".join(articles[n_train:])


@dataclass(frozen=True)
class CharVocab:
    """Characters as tokens: id ``i`` is ``chars[i]``."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """Every distinct character of ``text``, in sorted order."""
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """(len(text),) int64 ids; a character outside the vocabulary is a ``ValueError``."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"text has characters outside the vocabulary: {unknown!r}")
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """The text of a sequence of ids."""
        return "".join(self.chars[int(i)] for i in ids)


def tiny_char_config(
    vocab_size: int,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    context: int = 64,
) -> Phi3Config:
    """The tiny decoder's configuration: chapter 10's defaults (2 blocks, 128 wide).

    The MLP is 3 times as wide as the stream, embeddings are tied, RoPE uses θ = 10,000 and
    ``max_position_embeddings`` is the training context.
    """
    return Phi3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=3 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=context,
        rope_theta=10_000.0,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def init_weights(lm: nn.Module) -> None:
    """Draw every linear and embedding weight from N(0, 0.02²), as GPT-2 does (norms stay 1)."""
    for module in lm.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)


@torch.no_grad()
def mean_loss(lm: nn.Module, data: torch.Tensor, context: int, n_windows: int = 400) -> float:
    """Mean next-character loss (nats) on ``n_windows`` evenly spaced windows of ``data``.

    The windows are the same on every call, so losses of two models (or of one model during
    training) are comparable. ``lm(ids)`` may return logits or an object with ``.logits``.
    """
    starts = torch.linspace(0, len(data) - context - 1, n_windows).long().tolist()
    device = next(lm.parameters()).device
    windows = torch.stack([data[s : s + context + 1] for s in starts]).to(device)
    logits = lm(windows[:, :-1])  # (n_windows, context, vocab)
    logits = getattr(logits, "logits", logits)
    return F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()).item()


def load_tiny_char_model(
    path: str | Path = CHECKPOINT,
) -> tuple[Phi3ForCausalLM, CharVocab, dict[str, str]]:
    """The checkpoint written by ``tools/train_tiny_char_model.py``.

    Returns:
        (model, vocab, metadata): the engine's ``Phi3ForCausalLM`` in eval mode on the CPU,
        its character vocabulary, and the training record (command, steps, losses, seconds)
        stored in the file's metadata.
    """
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    sizes = json.loads(metadata["config"])
    vocab = CharVocab(metadata["chars"])
    model = Phi3ForCausalLM(tiny_char_config(len(vocab), **sizes))
    state = load_file(str(path))
    state["lm_head.weight"] = state["model.embed_tokens.weight"]  # tied: stored once
    model.load_state_dict(state)
    return model.eval(), vocab, metadata
