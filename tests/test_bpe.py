"""tutorial_lib.bpe against the `tokenizers` library's BpeTrainer, on a small real corpus."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tutorial_lib import assets
from tutorial_lib.bpe import (
    byte_alphabet,
    count_pairs,
    merge_pair,
    pretokenize,
    train_bpe,
)

SPECIALS = ["<|endoftext|>"]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """The first 20 documents of gensim's Lee background corpus (~24k characters of news)."""
    text = (assets.fetch("gensim-corpora") / "lee_background.cor").read_text(encoding="utf-8")
    return text.splitlines()[:20]


def library_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE trained by `tokenizers`, set up as GPT-2's."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def merges_of(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    return [tuple(m) for m in json.loads(tokenizer.to_str())["model"]["merges"]]


@pytest.mark.parametrize("vocab_size", [300, 1000, 100_000])
def test_same_merges_and_vocabulary_as_tokenizers(corpus, vocab_size):
    # 100_000 runs until no pair is left: the last merges are all ties (count 1).
    library = library_bpe(corpus, vocab_size)
    ours = train_bpe(corpus, vocab_size, SPECIALS)
    assert ours.merges == merges_of(library)
    assert ours.vocab == library.get_vocab()
    if vocab_size < 100_000:
        assert len(ours.vocab) == vocab_size
    else:  # no pair was left before the vocabulary was full: every word is one token now
        assert len(ours.vocab) < vocab_size
        assert all(len(ours.tokenize(text)) == len(pretokenize(text)) for text in corpus)


def test_ties_go_to_the_pair_of_older_symbols():
    # "ba ab" is the words "ba" and "Ġab": the pairs (b, a), (Ġ, a) and (a, b) occur once each.
    # The tie goes to the smallest ids; "Ġ" (the space byte) comes after the letters.
    ours = train_bpe(["ba ab"], 257 + 3, SPECIALS)
    assert ours.merges == [("a", "b"), ("b", "a"), ("Ġ", "ab")]
    assert ours.merges == merges_of(library_bpe(["ba ab"], 257 + 3))


def test_tokenize_and_encode_match_the_trained_library_tokenizer(corpus):
    library = library_bpe(corpus, 800)
    ours = train_bpe(corpus, 800, SPECIALS)
    text = "Firefighters said 12.0*50=600 naïve café 🎵 — unseen words: Zyxwvut!\n\tdone"
    assert ours.tokenize(text) == library.encode(text).tokens
    assert ours.encode(text) == library.encode(text).ids


def test_pretokenize_keeps_the_leading_space_as_a_byte_symbol():
    assert pretokenize("Hi there\n") == ["Hi", "Ġthere", "Ċ"]
    assert pretokenize("é") == ["Ã©"]  # two UTF-8 bytes, two symbols


def test_byte_alphabet_has_one_symbol_per_byte():
    alphabet = byte_alphabet()
    assert len(alphabet) == len(set(alphabet)) == 256
    assert alphabet == sorted(alphabet) and {"A", "Ġ", "Ċ"} <= set(alphabet)


def test_count_pairs_weights_by_word_count():
    words = {("l", "o", "w"): 5, ("l", "o", "w", "e", "r"): 2, ("o", "o", "o"): 1}
    assert count_pairs(words) == Counter(
        {("l", "o"): 7, ("o", "w"): 7, ("w", "e"): 2, ("e", "r"): 2, ("o", "o"): 2}
    )


def test_merge_pair_scans_left_to_right_without_overlap():
    assert merge_pair(("a", "a", "a"), ("a", "a")) == ("aa", "a")
    assert merge_pair(("a", "b", "a", "b"), ("a", "b")) == ("ab", "ab")
    assert merge_pair(("a", "b"), ("b", "a")) == ("a", "b")


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size=100 must be an integer >= 257"):
        train_bpe(["text"], 100, SPECIALS)
    with pytest.raises(TypeError, match="iterable of str"):
        train_bpe("one long string", 300)
    with pytest.raises(TypeError, match="text must be a str"):
        pretokenize(b"bytes")
