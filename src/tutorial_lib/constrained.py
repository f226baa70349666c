"""Constrained decoding: output that always parses, whatever the model would rather write.

A small model asked for "positive, negative or neutral" may answer "Positive!", "The review
is positive." or a whole paragraph; asked for JSON, it may wrap it in a code fence or forget a
quote. Constrained decoding removes the choice: at every step, before sampling, the logits of
all tokens that would make the output invalid are set to -inf. Whatever is sampled then keeps
the text a *prefix* of some valid output, and once the output is complete only the end token
is left. The model still chooses among the valid continuations, by its own probabilities.

Here a constraint is a regular expression over the output's bytes, checked with the ``regex``
package, which can tell whether a string is a prefix of a possible match (``partial=True``):

- ``RegexConstraint(tokenizer, pattern)``: the output must match ``pattern``;
- ``ChoiceConstraint(tokenizer, choices)``: the output is one of a list of strings;
- ``JSONSchemaConstraint(tokenizer, schema)``: the output is a JSON object with the keys of a
  small schema, in order, whose values are strings, integers or one of an ``enum``.

Each is a logits processor, ``(input_ids, scores) -> scores`` like transformers'
``LogitsProcessor``: pass it as ``logits_processor=`` to ``tutorial_lib.generation.generate``,
or in a ``LogitsProcessorList`` to transformers' ``generate``.

The check works on bytes, not on decoded text: a byte-level BPE token may hold only part of a
UTF-8 character, and its text alone would be "\\ufffd". Checking every token of the vocabulary
at every step would be exact but slow in Python (about 50,000 regex calls per step), so each
step first keeps the tokens whose first byte can come next (256 checks), then checks the
``top_n`` most likely of those and keeps the valid ones; only if none of them is valid does it
go down the ranking to the most likely valid token. Greedy decoding is therefore exact (the
best valid token is always kept); sampling draws from the valid tokens among the ``top_n``
most likely, like a top-k filter before the mask. Production libraries avoid the
per-step work altogether: Outlines compiles the pattern into a finite automaton and, for each
automaton state, precomputes the set of tokens allowed there; XGrammar does the same for
context-free grammars with a pushdown automaton and caches the masks of most tokens.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import regex
import torch

from .tokenization import token_bytes
from .validation import check_int, check_optional_int

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "ChoiceConstraint",
    "JSONSchemaConstraint",
    "RegexConstraint",
    "choice_regex",
    "json_schema_regex",
]

# One character of a JSON string, as UTF-8 bytes: printable ASCII except the quote and the
# backslash (no escapes), or a well-formed multi-byte character.
_JSON_CHAR = (
    rb"(?:[\x20\x21\x23-\x5b\x5d-\x7e]"
    rb"|[\xc2-\xdf][\x80-\xbf]"
    rb"|[\xe0-\xef][\x80-\xbf]{2}"
    rb"|[\xf0-\xf4][\x80-\xbf]{3})"
)


def choice_regex(choices: list[str]) -> bytes:
    """A byte pattern matching exactly one of ``choices``."""
    if (
        not isinstance(choices, (list, tuple))
        or not choices
        or not all(isinstance(c, str) and c for c in choices)
    ):
        raise ValueError(f"choices={choices!r} must be a non-empty list of non-empty strings")
    return b"(?:" + b"|".join(regex.escape(c.encode("utf-8")) for c in choices) + b")"


def _value_regex(name: str, spec: dict) -> tuple[bytes, int]:
    """The byte pattern of one property's value, and the most bytes it can take."""
    if "enum" in spec:
        values = spec["enum"]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) for v in values)
        ):
            raise ValueError(
                f"property {name!r}: enum={values!r} must be a non-empty list of strings"
            )
        encoded = [json.dumps(v).encode("utf-8") for v in values]  # '"positive"'
        return choice_regex([e.decode("utf-8") for e in encoded]), max(map(len, encoded))
    kind = spec.get("type")
    if kind == "string":
        max_length = spec.get("maxLength", 32)
        check_int(f"property {name!r}: maxLength", max_length, minimum=0)
        # Up to 4 bytes per character, plus the two quotes.
        return b'"' + _JSON_CHAR + b"{0,%d}" % max_length + b'"', 4 * max_length + 2
    if kind == "integer":
        # No leading zeros (JSON forbids them); at most 9 digits, so the output is bounded.
        return rb"-?(?:0|[1-9][0-9]{0,8})", 10
    raise ValueError(
        f"property {name!r}: {spec!r} is not supported; use {{'type': 'string'}}, "
        "{'type': 'integer'} or {'enum': [strings]}"
    )


def json_schema_regex(schema: dict) -> tuple[bytes, int]:
    """A byte pattern for the JSON objects of a small schema, and the most bytes they take.

    ``schema`` is ``{"type": "object", "properties": {key: spec, ...}}`` where each spec is
    ``{"type": "string"}`` (optionally with ``"maxLength"``, default 32), ``{"type":
    "integer"}`` or ``{"enum": [strings]}``. Every key is required and comes in the order
    given, laid out as ``json.dumps`` writes it: ``{"name": "Ada", "age": 36}``. Fixing the
    layout removes freedom the model does not need (where to put spaces) and bounds the length.
    """
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ValueError(f"schema={schema!r} must be a dict with 'type': 'object'")
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise ValueError(f"schema['properties']={properties!r} must be a non-empty dict")
    parts, max_bytes = [], 2  # the braces
    for i, (name, spec) in enumerate(properties.items()):
        key = (", " if i else "") + json.dumps(name) + ": "  # ', "age": '
        value, value_bytes = _value_regex(name, spec)
        parts.append(regex.escape(key.encode("utf-8")) + value)
        max_bytes += len(key.encode("utf-8")) + value_bytes
    return rb"\{" + b"".join(parts) + rb"\}", max_bytes


class RegexConstraint:
    """A logits processor that keeps the generated bytes a prefix of a match of ``pattern``.

    Args:
        tokenizer: the model's tokenizer (byte-level BPE, or SentencePiece with byte fallback).
        pattern: a regular expression (``bytes``, or ``str`` encoded as UTF-8) that the whole
            output must match.
        eos_token_id: the token that ends the output, allowed once the output matches
            (default: the tokenizer's end-of-sequence token).
        top_n: how many of the most likely tokens to check per step (see the module's
            docstring); None checks all of them: every valid token is kept, slowly.

    The constraint is told where the prompt ends when a generation starts: ``begin(prompt_length)``,
    which ``tutorial_lib.generate`` calls for every generation (before transformers'
    ``generate``, call it yourself with ``input_ids.shape[1]``). The tokens after the prompt
    are the output that must match; one constraint object serves one generation at a time
    and any number of them in turn. Rows that have produced the end token are left alone.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        pattern: bytes | str,
        eos_token_id: int | None = None,
        top_n: int | None = 256,
    ) -> None:
        if isinstance(pattern, str):
            pattern = pattern.encode("utf-8")
        if not isinstance(pattern, bytes):
            raise TypeError(
                f"pattern={pattern!r} must be bytes or str, got {type(pattern).__name__}"
            )
        check_optional_int("top_n", top_n, minimum=1, none_means="all")
        eos_token_id = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        if not isinstance(eos_token_id, int):
            raise ValueError(
                f"eos_token_id={eos_token_id!r} must be a token id (int); this tokenizer "
                "has no eos_token_id, so pass one"
            )
        self.pattern = regex.compile(pattern)
        self.eos_token_id = eos_token_id
        self.top_n = top_n
        # The bytes of every token; None for special tokens, which are never allowed.
        decoder = tokenizer.backend_tokenizer.decoder
        added = set(tokenizer.added_tokens_decoder)
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.token_bytes = [
            None if i in added else token_bytes(piece, decoder) for i, piece in enumerate(pieces)
        ]
        # first_byte[i]: the first byte of token i; 256 for special and empty tokens.
        self.first_byte = torch.tensor([b[0] if b else 256 for b in self.token_bytes])
        self.prompt_length: int | None = None  # set by begin(): where the output starts

    def is_prefix(self, text: bytes) -> bool:
        """Can ``text`` still grow into a match?"""
        return self.pattern.fullmatch(text, partial=True) is not None

    def is_complete(self, text: bytes) -> bool:
        """Does ``text`` match the whole pattern?"""
        return self.pattern.fullmatch(text) is not None

    def allowed_tokens(self, text: bytes, scores: torch.Tensor) -> list[int]:
        """The tokens that may follow ``text``, given the step's (vocab,) ``scores``."""
        # 1. The bytes that may come next (256 checks), and the tokens starting with one.
        byte_ok = torch.zeros(257, dtype=torch.bool)  # may byte b come next? (256: never)
        byte_ok[:256] = torch.tensor([self.is_prefix(text + bytes([b])) for b in range(256)])
        candidates = byte_ok[self.first_byte].nonzero().squeeze(1)  # (n_candidates,)
        # 2. Those, most likely first: keep the valid ones among the top_n (all if None) ...
        order = scores[candidates].argsort(descending=True)
        ranked = candidates[order].tolist()  # candidate ids, most likely first
        allowed = [self.eos_token_id] if self.is_complete(text) else []
        n_checked = len(ranked) if self.top_n is None else self.top_n
        valid = [i for i in ranked[:n_checked] if self.is_prefix(text + self.token_bytes[i])]
        # ... and if none of them is, the most likely valid token further down.
        if not valid:
            valid = next(
                ([i] for i in ranked[n_checked:] if self.is_prefix(text + self.token_bytes[i])), []
            )
        if not allowed and not valid:
            raise RuntimeError(f"no token can continue {text!r} towards {self.pattern.pattern!r}")
        return allowed + valid

    def begin(self, prompt_length: int) -> None:
        """Start a generation whose prompt is ``prompt_length`` tokens (per row, padding
        included): the tokens after them are the output."""
        self.prompt_length = check_int("prompt_length", prompt_length, minimum=0)

    def _new_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The ids after the prompt, (batch, n_new)."""
        if self.prompt_length is None:
            raise RuntimeError(
                "call constraint.begin(prompt_length) when a generation starts "
                "(tutorial_lib.generate does it for you)"
            )
        if input_ids.shape[1] < self.prompt_length:
            raise ValueError(
                f"input_ids hold {input_ids.shape[1]} tokens, fewer than the prompt's "
                f"{self.prompt_length} given to begin(): is this the same generation?"
            )
        return input_ids[:, self.prompt_length :]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Set the logits of every token that would break the pattern to -inf.

        ``input_ids`` (batch, seq) are the prompt and the tokens so far, ``scores`` (batch,
        vocab) the next-token logits; returns new (batch, vocab) logits.
        """
        vocab = len(self.token_bytes)
        if scores.shape[-1] < vocab:
            raise ValueError(
                f"scores have {scores.shape[-1]} columns, fewer than the tokenizer's {vocab} "
                "tokens: is this the model's tokenizer?"
            )
        new_tokens = self._new_tokens(input_ids.cpu()).tolist()  # per row: the output so far
        scores_cpu = scores.detach().float().cpu()  # (batch, vocab)
        mask = torch.ones_like(scores_cpu, dtype=torch.bool)  # True: forbidden (also padding)
        for row, ids in enumerate(new_tokens):
            if self.eos_token_id in ids:  # this row has ended: leave it alone
                mask[row] = False
                continue
            text = b"".join(self.token_bytes[i] for i in ids)
            allowed = self.allowed_tokens(text, scores_cpu[row, :vocab])
            mask[row, allowed] = False
        return scores.masked_fill(mask.to(scores.device), float("-inf"))


class ChoiceConstraint(RegexConstraint):
    """The output is exactly one of ``choices`` (``kwargs`` as ``RegexConstraint``).

    Example::

        constraint = ChoiceConstraint(tokenizer, ["positive", "negative", "neutral"])
        ids = generate(model, prompt_ids, constraint.max_new_tokens, logits_processor=constraint)
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, choices: list[str], **kwargs) -> None:
        super().__init__(tokenizer, choice_regex(choices), **kwargs)
        self.choices = list(choices)
        # Every token holds at least one byte, then the end token: enough to always finish.
        self.max_new_tokens = max(len(c.encode("utf-8")) for c in choices) + 1


class JSONSchemaConstraint(RegexConstraint):
    """The output is a JSON object of a small ``schema`` (see ``json_schema_regex``).

    ``max_new_tokens`` is enough tokens for the longest such object and the end token, so a
    generation given that many always finishes with output that ``json.loads`` parses.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, schema: dict, **kwargs) -> None:
        pattern, max_bytes = json_schema_regex(schema)
        super().__init__(tokenizer, pattern, **kwargs)
        self.schema = schema
        self.max_new_tokens = max_bytes + 1
