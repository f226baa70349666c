"""Byte-level BPE, trained from scratch: the merge loop behind GPT-2, Llama 3 and Qwen2.

Byte-pair encoding (Sennrich et al., 2016; byte-level since GPT-2, Radford et al., 2019)
learns a vocabulary from a corpus:

1. Cut the text into words (GPT-2's pre-tokenizer regex: a word keeps its leading space).
2. Spell every word in bytes. Each of the 256 byte values is shown as one printable
   character (a space is ``Ġ``, a newline ``Ċ``), so any text at all can be spelled.
3. Count every pair of neighbouring symbols, weighted by how often its word occurs.
4. Merge the most frequent pair into a new symbol, everywhere, and write the merge down.
5. Repeat 3-4 until the vocabulary has the size we asked for.

To tokenize new text, cut it into words and replay the merges in the order they were
learned. ``tokenizers``' ``BpeTrainer`` does exactly this (with a heap and incremental
counts, in Rust); ``train_bpe`` below writes it out plainly and learns the same merges,
ties included (``tests/test_bpe.py`` checks it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from tokenizers import pre_tokenizers

from .validation import check_int

__all__ = ["ByteLevelBPE", "byte_alphabet", "count_pairs", "merge_pair", "pretokenize", "train_bpe"]

Pair = tuple[str, str]

# GPT-2's split plus its byte -> printable-character spelling, from the `tokenizers` library.
_BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def byte_alphabet() -> list[str]:
    """The 256 one-byte symbols, in code point order (the order that gives them their ids)."""
    return sorted(pre_tokenizers.ByteLevel.alphabet())


def pretokenize(text: str) -> list[str]:
    """Cut ``text`` into words spelled in byte symbols: ``"Hi there"`` -> ``["Hi", "Ġthere"]``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return [word for word, _offsets in _BYTE_LEVEL.pre_tokenize_str(text)]


def count_pairs(words: Mapping[tuple[str, ...], int]) -> Counter[Pair]:
    """How often each pair of neighbouring symbols occurs, over words spelled as symbol tuples.

    ``words`` maps a spelling, e.g. ``("Ġ", "t", "h", "e")``, to how often that word occurs.
    """
    pairs: Counter[Pair] = Counter()
    for symbols, count in words.items():
        for pair in pairwise(symbols):
            pairs[pair] += count
    return pairs


def merge_pair(symbols: Sequence[str], pair: Pair) -> tuple[str, ...]:
    """Replace each occurrence of ``pair`` in ``symbols`` by one symbol, scanning left to right.

    >>> merge_pair(("a", "a", "a"), ("a", "a"))
    ('aa', 'a')
    """
    merged: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


@dataclass
class ByteLevelBPE:
    """A trained byte-level BPE: token -> id, and the merges in the order they were learned."""

    vocab: dict[str, int]
    merges: list[Pair]

    def tokenize(self, text: str) -> list[str]:
        """Cut ``text`` into tokens: in each word, apply the earliest learned merge, repeatedly."""
        rank = {pair: i for i, pair in enumerate(self.merges)}
        tokens: list[str] = []
        for word in pretokenize(text):
            symbols = tuple(word)  # start from single bytes
            while len(symbols) > 1:
                # The pair in this word that was learned first; stop when no pair was learned.
                best = min(pairwise(symbols), key=lambda p: rank.get(p, len(rank)))
                if best not in rank:
                    break
                symbols = merge_pair(symbols, best)
            tokens.extend(symbols)
        return tokens

    def encode(self, text: str) -> list[int]:
        """Token ids for ``text``."""
        return [self.vocab[token] for token in self.tokenize(text)]


def train_bpe(
    texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = ()
) -> ByteLevelBPE:
    """Learn a byte-level BPE vocabulary of ``vocab_size`` tokens from ``texts``.

    Ids: the special tokens first, then the 256 byte symbols, then one new id per merge, the
    same layout as ``tokenizers.trainers.BpeTrainer`` with the byte-level initial alphabet.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of str (e.g. a list of documents), not one str")
    n_base = len(special_tokens) + 256
    try:
        check_int("vocab_size", vocab_size, minimum=n_base)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{e} ({len(special_tokens)} special tokens + 256 byte symbols)") from None

    # 1-2. The starting vocabulary, and every distinct word spelled in single bytes, with its count.
    vocab = {token: i for i, token in enumerate([*special_tokens, *byte_alphabet()])}
    word_counts = Counter(word for text in texts for word in pretokenize(text))
    words = {tuple(word): count for word, count in word_counts.items()}
    merges: list[Pair] = []

    # 3. Count the pairs once; afterwards only the words that change update the counts.
    pairs = count_pairs(words)
    while len(vocab) < vocab_size and pairs:
        # 4a. The most frequent pair. A tie goes to the pair whose symbols have the smaller ids
        #     (the older symbols), which is BpeTrainer's rule.
        best = max(pairs, key=lambda p: (pairs[p], -vocab[p[0]], -vocab[p[1]]))
        merges.append(best)
        # 4b. The merged symbol gets the next id (unless an earlier merge already spelled it).
        vocab.setdefault(best[0] + best[1], len(vocab))
        # 4c. Merge it in every word that has it; move those words' counts to the new pairs.
        for symbols, count in list(words.items()):
            if best not in pairwise(symbols):
                continue
            merged = merge_pair(symbols, best)
            del words[symbols]
            words[merged] = count
            pairs.subtract(count_pairs({symbols: count}))
            pairs.update(count_pairs({merged: count}))
        pairs = +pairs  # drop the pairs that no longer occur (count 0)
    return ByteLevelBPE(vocab=vocab, merges=merges)
