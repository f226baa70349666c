"""Tokenizers: load real ones offline, and show how they cut text into tokens.

``load_tokenizer(name)`` returns a transformers tokenizer for one of ``TOKENIZERS``. Five of
them are built from llama.cpp's vocabulary files (GGUF) by transformers' GGUF converter; where
that conversion differs from the model's own tokenizer, ``load_tokenizer`` puts the difference
back (see ``_load_llama3`` and ``_load_with_digit_split``). llama.cpp's test vectors check the
result in ``tests/test_tokenization.py``.

``show_tokens(text, tokenizer)`` shows each token on its own colored background: HTML in a
notebook or the book, ANSI colors when ``print``-ed in a terminal. ``compare_tokenizers``
lines several tokenizers up in a table: for each part of a text, the tokens that cover it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from . import assets

__all__ = [
    "PALETTE",
    "TOKENIZERS",
    "WHITESPACE",
    "TokenTable",
    "TokenView",
    "compare_tokenizers",
    "covering_tokens",
    "load_tokenizer",
    "show_tokens",
    "show_whitespace",
    "token_texts",
]

# name -> (asset, sub-directory inside the asset, what it is)
TOKENIZERS: dict[str, tuple[str, str, str]] = {
    "bert-base-uncased": ("minilm-l6-v2", "", "BERT uncased WordPiece, 30,522 tokens"),
    "gpt-2": ("tokenizer-vocabs", "gpt-2", "GPT-2 byte-level BPE, 50,257 tokens"),
    "phi-3": (
        "tokenizer-vocabs",
        "phi-3",
        "Phi-3 / Llama 2 SentencePiece BPE, 32,011 tokens + 53 padding ids = 32,064",
    ),
    "llama-bpe": ("tokenizer-vocabs", "llama-bpe", "Llama 3 byte-level BPE, 128,256 tokens"),
    "qwen2": (
        "tokenizer-vocabs",
        "qwen2",
        "Qwen2 byte-level BPE, 151,646 tokens + 290 padding ids = 151,936",
    ),
    "starcoder": ("tokenizer-vocabs", "starcoder", "StarCoder byte-level BPE, code, 49,152 tokens"),
    "smollm2": ("smollm2-135m-instruct", "", "SmolLM2 byte-level BPE, 49,152 tokens"),
}
_ALIASES = {
    "llama-3": "llama-bpe",
    "bert": "bert-base-uncased",
    "gpt2": "gpt-2",
    "phi3": "phi-3",
    "smollm2-135m-instruct": "smollm2",
}


def _known() -> str:
    return ", ".join([*TOKENIZERS, *_ALIASES])


def tokenizer_path(name: str) -> Path:
    """The local Hugging Face directory of tokenizer ``name`` (fetched on first use)."""
    key = _ALIASES.get(name, name)
    if key not in TOKENIZERS:
        raise ValueError(f"name={name!r} is not a known tokenizer; known tokenizers: {_known()}")
    asset, sub, _ = TOKENIZERS[key]
    return assets.fetch(asset) / sub


# --------------------------------------------------------------------------------------
# What the GGUF conversion leaves out, put back as each model's own tokenizer.json has it.
# --------------------------------------------------------------------------------------


def _load_llama3(path: Path) -> PreTrainedTokenizerBase:
    """Llama 3's tokenizer, as Meta's ``tokenizer.json`` (and llama.cpp's ``llama-bpe``) has it.

    Three things differ from the plain conversion:

    - ``ignore_merges``: a piece that is a whole vocabulary entry is taken as it is, before
      any merge. " Việt" is token 101798, but no chain of merges builds it, so without this
      flag it comes out as " Vi" + "ệ" + "t" (llama.cpp PR #7193 found the same).
    - ``<|begin_of_text|>`` goes in front of every text (Llama 3 adds it; llama.cpp too).
    - no ``<|endoftext|>``: the converter adds GPT-2's default token as id 128256, one past
      the 128,256 rows of Llama 3's embedding table.
    """
    spec = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["ignore_merges"] = True
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<|endoftext|>"]
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        add_bos_token=True,
        name_or_path=str(path),
    )


def _load_with_digit_split(path: Path) -> PreTrainedTokenizerBase:
    """StarCoder and SmolLM2: every digit is its own piece before GPT-2's byte-level split.

    StarCoder's ``tokenizer.json`` runs ``Digits(individual_digits=True)`` first, and llama.cpp
    gives its ``starcoder`` and ``smollm`` pre-tokenizers the same ``\\p{N}`` split. The GGUF only
    names the pre-tokenizer, and the converter falls back to GPT-2's: " ½" then stays one piece
    where StarCoder has " " and "½" (Unicode counts "½" as a number).
    """
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    return tokenizer


_LOADERS: dict[str, Callable[[Path], PreTrainedTokenizerBase]] = {
    "llama-bpe": _load_llama3,
    "starcoder": _load_with_digit_split,
    "smollm2": _load_with_digit_split,
}


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Load a real tokenizer by name, offline (see ``TOKENIZERS``), or from a local directory.

    >>> load_tokenizer("phi-3")("The capital of France is").input_ids
    [1, 450, 7483, 310, 3444, 338]
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (a tokenizer name or a directory), got {name!r}")
    key = _ALIASES.get(name, name)
    if key in TOKENIZERS:
        path = tokenizer_path(key)
        return _LOADERS.get(key, AutoTokenizer.from_pretrained)(path)
    if Path(name).is_dir():
        return AutoTokenizer.from_pretrained(name)
    raise ValueError(
        f"name={name!r} is neither a known tokenizer nor a directory; known tokenizers: {_known()}"
    )


# --------------------------------------------------------------------------------------
# The text behind each token.
# --------------------------------------------------------------------------------------

# Byte-level BPE spells each byte as one printable character ("Ġ" is the space byte).
_BYTE_OF_SYMBOL = {symbol: byte for byte, symbol in bytes_to_unicode().items()}


def _token_bytes(piece: str, decoder: object) -> bytes | None:
    """The bytes a vocabulary entry stands for, or None when the entry is not spelled in bytes."""
    if isinstance(decoder, decoders.ByteLevel):  # GPT-2, Llama 3, Qwen2, StarCoder...
        if all(c in _BYTE_OF_SYMBOL for c in piece):
            return bytes(_BYTE_OF_SYMBOL[c] for c in piece)
        return None
    if isinstance(decoder, decoders.WordPiece):  # BERT: "##ing" continues a word, no spaces
        return None
    # SentencePiece (Llama 2, Phi-3): "▁" is a space, "<0xF0>" a raw byte (byte fallback).
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return bytes([int(piece[3:5], 16)])
    return piece.replace("\u2581", " ").encode("utf-8")


def token_texts(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[str]:
    """The piece of text each token id stands for, leading spaces included.

    ``tokenizer.decode([i])`` one id at a time hides two things: SentencePiece drops each
    piece's leading space ("▁and" decodes to "and"), and a byte-level token that holds only
    part of a character decodes to "�". Here each token is spelled from its own bytes: whole
    characters read as themselves, a byte that is part of a character as an escape such as
    ``\\xf0``. Special and added tokens ("[CLS]", "<s>") read as written; WordPiece pieces
    keep their "##".
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a tokenizer without a `tokenizers` backend: decode id by id
        return [tokenizer.decode([i]) for i in ids]
    added = set(tokenizer.added_tokens_decoder)
    texts = []
    for i, piece in zip(ids, tokenizer.convert_ids_to_tokens(list(ids)), strict=True):
        raw = None if i in added else _token_bytes(piece, backend.decoder)
        texts.append(piece if raw is None else raw.decode("utf-8", errors="backslashreplace"))
    return texts


# --------------------------------------------------------------------------------------
# Showing tokens in color.
# --------------------------------------------------------------------------------------

# A fixed palette of light backgrounds (black text stays readable), cycled token by token.
PALETTE = ("#fde2a7", "#b9e4c9", "#c6d8ff", "#ffc6d9", "#e2ccff", "#c9f1f5")
# Whitespace made visible: a space is a middle dot, a tab an arrow, a newline a return sign
# (followed by a real line break, so the lines of the text stay lines).
WHITESPACE = {" ": "·", "\t": "→", "\n": "↵\n"}
_RESET = "\x1b[0m"


def show_whitespace(text: str) -> str:
    """``text`` with its spaces, tabs and newlines drawn as the signs of ``WHITESPACE``."""
    return "".join(WHITESPACE.get(c, c) for c in text)


def _ansi_background(color: str) -> str:
    """The 24-bit ANSI escape that sets the background to ``color`` ("#rrggbb")."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"\x1b[48;2;{r};{g};{b}m"


@dataclass
class TokenView:
    """How one tokenizer cut one text: HTML in notebooks, ANSI colors when printed.

    ``tokens`` holds the text of each token (see ``token_texts``). On screen, token ``i`` gets
    the background ``PALETTE[i % len(PALETTE)]`` and whitespace is drawn with the signs of
    ``WHITESPACE``. The plain ``repr`` separates tokens with "|".
    """

    tokens: list[str]
    ids: list[int]
    vocab_size: int
    name: str = ""

    def header(self) -> str:
        """One line: the tokenizer's name, the number of tokens and the vocabulary size."""
        name = f"{self.name}: " if self.name else ""
        return f"{name}{len(self.ids)} tokens, vocabulary {self.vocab_size:,}"

    def __repr__(self) -> str:
        return self.header() + "\n" + "|".join(show_whitespace(t) for t in self.tokens)

    def __str__(self) -> str:
        cells = []
        for i, token in enumerate(self.tokens):
            color = _ansi_background(PALETTE[i % len(PALETTE)]) + "\x1b[30m"  # black text
            # Close the color before a line break, so it does not run to the terminal's edge.
            text = show_whitespace(token).replace("\n", f"{_RESET}\n{color}")
            cells.append(f"{color}{text}{_RESET}")
        return self.header() + "\n" + "".join(cells)

    def _repr_html_(self) -> str:
        cells = []
        for i, token in enumerate(self.tokens):
            text = html.escape(show_whitespace(token).replace("\n", ""))
            # One inline block per token: lines can wrap between tokens, never inside one.
            cells.append(
                f'<span style="display:inline-block;white-space:pre;color:#000;'
                f"background:{PALETTE[i % len(PALETTE)]};margin:1px 1px 1px 0;padding:0 1px;"
                f'border-radius:2px">{text}</span>' + "<br>" * token.count("\n")
            )
        return (
            f'<div style="margin:4px 0"><div style="font-size:85%;color:#555">'
            f"{html.escape(self.header())}</div>"
            f'<div style="font-family:monospace;line-height:1.6">{"".join(cells)}</div></div>'
        )


def _display_name(tokenizer: PreTrainedTokenizerBase) -> str:
    """Our name for a tokenizer ``load_tokenizer`` made, else the last part of its path."""
    path = Path(str(tokenizer.name_or_path))
    for key, (asset, sub, _) in TOKENIZERS.items():
        if path == assets.cache_dir() / asset / sub:
            return key
    return path.name


def show_tokens(
    text: str, tokenizer: PreTrainedTokenizerBase | str, *, name: str | None = None
) -> TokenView:
    """Tokenize ``text`` and return a view with each token on its own colored background.

    ``tokenizer`` is a transformers tokenizer or a name for ``load_tokenizer``; ``name`` labels
    the view (default: the tokenizer's name). Special tokens the tokenizer adds (``[CLS]``,
    ``<s>``...) are shown too. In a notebook the result renders as HTML; ``print()`` it in a
    terminal for ANSI colors.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(tokenizer, str):
        name = name or tokenizer
        tokenizer = load_tokenizer(tokenizer)
    elif not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(
            "tokenizer must be a transformers tokenizer or a name for load_tokenizer, "
            f"got {type(tokenizer).__name__}"
        )
    ids = tokenizer(text).input_ids
    return TokenView(
        tokens=token_texts(tokenizer, ids),
        ids=ids,
        vocab_size=len(tokenizer),
        name=name if name is not None else _display_name(tokenizer),
    )


# --------------------------------------------------------------------------------------
# Comparing tokenizers: which tokens cover which part of a text.
# --------------------------------------------------------------------------------------


def covering_tokens(tokenizer: PreTrainedTokenizerBase, text: str, part: str) -> list[str]:
    """The texts of the tokens that cover ``part`` (its first occurrence) when ``text`` is cut.

    The whole ``text`` is tokenized, so ``part`` is cut as it is in context; a token that
    overlaps ``part`` at all is included, so the tokens may reach beyond it (``" 12"`` covers
    ``"12"``). Special tokens cover no text and are never included. Needs a fast tokenizer
    (one with character offsets).

    Example::

        covering_tokens(load_tokenizer("gpt-2"), "12.0*50=600", "50=600")  # ['50', '=', '600']
    """
    if not isinstance(text, str) or not isinstance(part, str):
        raise TypeError(
            f"text and part must be str, got {type(text).__name__}, {type(part).__name__}"
        )
    if not part or part not in text:
        raise ValueError(f"part={part!r} must be a non-empty piece of text={text!r}")
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            f"tokenizer must be a fast tokenizer (with offsets), got {type(tokenizer).__name__}"
        )
    start = text.index(part)
    end = start + len(part)
    encoding = tokenizer(text, return_offsets_mapping=True)
    texts = token_texts(tokenizer, encoding.input_ids)
    # offset_mapping: the (start, end) characters of the text each token covers; (0, 0) for
    # special tokens, which therefore never overlap a non-empty part.
    spans = zip(texts, encoding.offset_mapping, strict=True)
    return [t for t, (s, e) in spans if s < end and e > start]


def _cell_text(value: object) -> str:
    """A table cell as plain text: tokens separated by spaces, with whitespace drawn."""
    if isinstance(value, list):
        # The newline sign without its line break: a cell stays on one line.
        return " ".join(show_whitespace(t).replace("\n", "") for t in value) if value else "none"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _cell_html(value: object) -> str:
    """A table cell as HTML: tokens in code font on one line, anything else as text."""
    if isinstance(value, list) and value:
        return f'<code style="white-space:nowrap">{html.escape(_cell_text(value))}</code>'
    return html.escape(_cell_text(value))


# Padded cells with a thin rule between rows, the same in Jupyter, Colab and the book.
_CELL_STYLE = "padding:3px 10px;text-align:left;vertical-align:top;border-bottom:1px solid #ddd"


@dataclass
class TokenTable:
    """A small table whose cells hold tokens or plain values: HTML in notebooks, text in ``repr``.

    A cell that is a ``list`` of token texts is shown in code font, tokens separated by spaces,
    whitespace drawn with the signs of ``WHITESPACE`` ("none" for an empty list); an ``int``
    gets thousands separators; anything else is shown as ``str(value)``.
    """

    header: list[str]
    rows: list[list[object]]

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise ValueError(
                    f"row {i} has {len(row)} cells, but header has {len(self.header)} columns"
                )

    def __repr__(self) -> str:
        lines = [self.header, *self.rows]
        cells = [[_cell_text(v) for v in line] for line in lines]
        widths = [max(len(line[j]) for line in cells) for j in range(len(self.header))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in cells
        )

    def _repr_html_(self) -> str:
        head = "".join(f'<th style="{_CELL_STYLE}">{html.escape(h)}</th>' for h in self.header)
        body = "".join(
            "<tr>"
            + "".join(f'<td style="{_CELL_STYLE}">{_cell_html(v)}</td>' for v in row)
            + "</tr>"
            for row in self.rows
        )
        return (
            '<div style="overflow-x:auto"><table style="border-collapse:collapse;margin:4px 0">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )


def compare_tokenizers(
    text: str, tokenizers: Mapping[str, PreTrainedTokenizerBase], parts: Mapping[str, str]
) -> TokenTable:
    """One row per tokenizer, one column per part of ``text``: the tokens that cover that part.

    ``tokenizers`` maps a row label to a tokenizer; ``parts`` maps a column label to a piece of
    ``text`` (see ``covering_tokens``). Example::

        compare_tokenizers(text, {"gpt-2": gpt2, "phi-3": phi3}, {"digits": "12.0*50=600"})
    """
    if not tokenizers or not parts:
        raise ValueError(
            f"tokenizers and parts must not be empty, got {len(tokenizers)} and {len(parts)}"
        )
    rows: list[list[object]] = [
        [name, *(covering_tokens(tokenizer, text, part) for part in parts.values())]
        for name, tokenizer in tokenizers.items()
    ]
    return TokenTable(header=["tokenizer", *parts], rows=rows)
