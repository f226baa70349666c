"""Sequence to sequence with recurrent networks: a toy translation task, a GRU encoder-decoder
with a single context vector, and the same with additive (Bahdanau) attention.

A translation model reads a sentence in one "language" and writes it in another. Here the
source language is dates as people write them ("tuesday, the twenty third of march 1994",
"mar 23, 1994", "23.03.1994"), one to three of them in a row, and the target language is the
ISO format ("1994-03-23"). The task trains in about a minute on a CPU, yet it has what makes
translation hard: the output puts the pieces in another order than the input (year first),
the same piece can be written in many ways, and a longer input has more to translate.

The module has four parts, in the order the chapter uses them:

1. **The task.** ``human_date`` writes a date in a random human style; ``make_date_pairs``
   draws a fixed, seeded dataset of (human text, ISO text) pairs, split into train and test.
2. **Tokens and batches.** ``source_tokens`` splits a source into words, numbers and
   punctuation (targets are read character by character); ``Vocabulary`` maps tokens to
   ids and back; ``pad_batch`` pads sequences of different lengths into one tensor plus a
   mask; ``batches`` cuts a dataset into padded batches.
3. **The models.** ``Encoder`` (a GRU reading the source), ``AdditiveAttention``,
   ``Decoder`` (a GRU cell writing the target one token per step) and ``Seq2Seq``, which
   joins them with or without attention. Without attention the decoder sees the source only
   through the **context vector**, the encoder's last hidden state; with attention it
   builds a fresh mix of *all* the encoder's states at every step.
4. **Training and use.** ``train_seq2seq`` (teacher forcing), ``greedy_decode`` (the
   autoregressive loop, batched), ``translate`` (one text) and ``exact_match`` (which
   translations are right).
"""

from __future__ import annotations

import datetime
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .validation import check_int, check_positive_float

__all__ = [
    "human_date",
    "make_date_pairs",
    "source_tokens",
    "Vocabulary",
    "pad_batch",
    "Batch",
    "batches",
    "Encoder",
    "AdditiveAttention",
    "Decoder",
    "Seq2Seq",
    "train_seq2seq",
    "greedy_decode",
    "translate",
    "exact_match",
    "attention_rows",
]

# ------------------------------------------------------------------------------------------
# 1. The task: human-written dates -> ISO dates
# ------------------------------------------------------------------------------------------

MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_ONES = [
    "",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINAL_ONES = [
    "",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
]
_ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}

# The dates of the task: 100 years, 36,525 days.
FIRST_DATE = datetime.date(1950, 1, 1)
LAST_DATE = datetime.date(2049, 12, 31)
# A cap on the dataset size, far below the number of distinct sources (even with one date
# per source there are more than 100,000), so drawing distinct sources always ends quickly.
MAX_PAIRS = 100_000


def _number_words(n: int) -> str:
    """0 < n < 100 in words: 7 -> 'seven', 42 -> 'forty two'."""
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return f"{_TENS[tens]} {_ONES[ones]}".strip()


def _ordinal_words(n: int) -> str:
    """A day of the month in words: 3 -> 'third', 23 -> 'twenty third', 30 -> 'thirtieth'."""
    if n < 20:
        return _ORDINAL_ONES[n]
    tens, ones = divmod(n, 10)
    return f"{_TENS[tens]} {_ORDINAL_ONES[ones]}" if ones else _ORDINAL_TENS[n]


def _ordinal_digits(n: int) -> str:
    """A day of the month as an ordinal number: 1 -> '1st', 12 -> '12th', 23 -> '23rd'."""
    suffix = "th" if 11 <= n <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _year_words(year: int, rng: random.Random) -> str:
    """A year in words, the way people say it: 'nineteen ninety four', 'two thousand and
    five', 'twenty twenty one' (or 'two thousand and twenty one')."""
    century, rest = divmod(year, 100)
    if century == 19:
        return f"nineteen {_number_words(rest)}"  # 1950..1999: rest >= 50
    if rest == 0:
        return "two thousand"
    if rest < 10 or rng.random() < 0.5:
        return f"two thousand and {_number_words(rest)}"
    return f"twenty {_number_words(rest)}"


def human_date(date: datetime.date, rng: random.Random) -> str:
    """``date`` written in a random human style, lowercase.

    The style is drawn from ``rng``: all digits ("23.03.1994", day first), or a month
    name ("march", "mar") with the day as a number, an ordinal ("23rd") or words ("twenty
    third"), the year as digits or words, in day-month or month-day order, with optional
    extra words ("the", "day of", "in the year") and an optional weekday in front.

    >>> human_date(datetime.date(1994, 3, 23), random.Random(0))
    'the 23rd of march, nineteen ninety four'
    >>> human_date(datetime.date(1994, 3, 23), random.Random(1))
    '23/03/1994'
    """
    if not isinstance(date, datetime.date):
        raise TypeError(f"date must be a datetime.date, got {type(date).__name__} {date!r}")
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")

    # All digits, day first: 23/03/1994, 23.03.1994 or 23-03-1994.
    if rng.random() < 0.15:
        sep = rng.choice("/.-")
        return f"{date.day:02d}{sep}{date.month:02d}{sep}{date.year}"

    # Each piece in one of its spellings.
    day = rng.choice([str(date.day), _ordinal_digits(date.day), _ordinal_words(date.day)])
    month = MONTHS[date.month - 1]
    month = rng.choice([month, month[:3]])
    year = rng.choice([str(date.year), _year_words(date.year, rng)])
    if rng.random() < 0.3:
        year = f"in the year {year}"

    if rng.random() < 0.3:  # month first: "march 23, 1994"
        text = f"{month} {day}, {year}"
    else:  # day first: "23 march 1994", "the twenty third day of march, 1994"
        if not day.isdigit():  # ordinals can take "the ... of"
            day = rng.choice([day, f"the {day}", f"the {day} day"]) + " of"
        text = f"{day} {month}{rng.choice(['', ','])} {year}"
    if rng.random() < 0.3:
        text = f"{WEEKDAYS[date.weekday()]}{rng.choice(['', ','])} {text}"
    return text


def make_date_pairs(
    n_train: int, n_test: int, *, max_dates: int = 3, seed: int = 0
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A fixed dataset of ``(human text, ISO text)`` pairs, split into train and test.

    Each source lists 1 to ``max_dates`` dates ("A", "A and B", "A, B and C"), each drawn
    uniformly from 1950-01-01 to 2049-12-31 and written by ``human_date``; the target lists
    the same dates in ISO format, in the same order, separated by ", ". Everything is drawn
    from ``random.Random(seed)``, so the same arguments always give the same pairs, and a
    source appears only once, so no test input was seen in training.

    >>> train, test = make_date_pairs(2, 1, seed=4)
    >>> for source, target in train:
    ...     print(f"{source!r} -> {target!r}")
    '02.06.2004' -> '2004-06-02'
    '22.10.1977 and wednesday 2nd of march 1966' -> '1977-10-22, 1966-03-02'
    """
    for name, value in (
        ("n_train", n_train),
        ("n_test", n_test),
        ("max_dates", max_dates),
        ("seed", seed),
    ):
        check_int(name, value)
    check_int("n_train", n_train, minimum=0)
    check_int("n_test", n_test, minimum=0)
    check_int("max_dates", max_dates, minimum=1)
    if n_train + n_test > MAX_PAIRS:
        raise ValueError(
            f"n_train + n_test must be at most {MAX_PAIRS:,}, got {n_train + n_test:,}"
        )

    rng = random.Random(seed)
    n_days = (LAST_DATE - FIRST_DATE).days + 1
    pairs: dict[str, str] = {}  # source -> target; a dict keeps the order and drops repeats
    while len(pairs) < n_train + n_test:
        dates = [
            FIRST_DATE + datetime.timedelta(days=rng.randrange(n_days))
            for _ in range(rng.randint(1, max_dates))
        ]
        texts = [human_date(date, rng) for date in dates]
        source = texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} and {texts[-1]}"
        pairs.setdefault(source, ", ".join(date.isoformat() for date in dates))
    items = list(pairs.items())
    return items[:n_train], items[n_train:]


# ------------------------------------------------------------------------------------------
# 2. Tokens, vocabulary and batches
# ------------------------------------------------------------------------------------------


def source_tokens(text: str) -> list[str]:
    """Split a source text into words, numbers and punctuation marks.

    >>> source_tokens("tuesday, the 23rd of march 1994")
    ['tuesday', ',', 'the', '23rd', 'of', 'march', '1994']

    (Targets are read character by character: ``list("1994-03-23")``.)
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__} {text!r}")
    return re.findall(r"\w+|[^\w\s]", text)


class Vocabulary:
    """Tokens <-> integer ids, with four special tokens at ids 0-3.

    ``<pad>`` fills the end of short sequences in a batch, ``<bos>`` ("beginning of
    sequence") is the decoder's first input, ``<eos>`` ("end of sequence") is the token
    after which it stops, and ``<unk>`` stands for tokens the vocabulary does not know.

    >>> vocab = Vocabulary(["march", "23", ","])
    >>> vocab.encode(["march", "23", "1994"], add_eos=True)
    [4, 5, 3, 2]
    >>> vocab.decode([4, 5, 3, 2])
    ['march', '23', '<unk>']
    """

    PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
    SPECIALS = (PAD, BOS, EOS, UNK)

    def __init__(self, tokens: Iterable[str]):
        tokens = _token_list(tokens, "tokens")
        self.id_to_token: list[str] = list(dict.fromkeys([*self.SPECIALS, *tokens]))
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(self.id_to_token)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(4)

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[str]]) -> Vocabulary:
        """A vocabulary of every token in ``sequences`` (lists of tokens), in sorted order."""
        if isinstance(sequences, str):
            raise TypeError(
                f"sequences must be lists of tokens, not the single string {sequences!r}"
            )
        return cls(sorted({token for seq in sequences for token in _token_list(seq, "sequence")}))

    def __len__(self) -> int:
        return len(self.id_to_token)

    def encode(
        self, tokens: Sequence[str], add_bos: bool = False, add_eos: bool = False
    ) -> list[int]:
        """The ids of ``tokens`` (``<unk>`` for unknown ones), optionally with ``<bos>``
        in front and ``<eos>`` at the end."""
        ids = [self.token_to_id.get(t, self.unk_id) for t in _token_list(tokens, "tokens")]
        return [self.bos_id] * add_bos + ids + [self.eos_id] * add_eos

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The tokens of ``ids``, up to the first ``<eos>``; ``<pad>`` and ``<bos>`` are
        skipped."""
        tokens = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self):
                raise ValueError(f"id {i} is not in the vocabulary (ids 0..{len(self) - 1})")
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                tokens.append(self.id_to_token[i])
        return tokens


def _token_list(tokens: object, name: str) -> list[str]:
    if isinstance(tokens, str):
        raise TypeError(
            f"{name} must be a list of tokens, not the single string {tokens!r}; "
            "split it first, e.g. source_tokens(text) or list(text)"
        )
    tokens = list(tokens)
    for token in tokens:
        if not isinstance(token, str) or not token:
            raise TypeError(f"{name} must hold non-empty strings, got {token!r}")
    return tokens


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id sequences of different lengths to one ``(batch, max_len)`` tensor.

    Returns ``(ids, mask)``: ``ids`` is ``(batch, max_len)`` int64 with ``pad_id`` after the
    end of each sequence, ``mask`` is ``(batch, max_len)`` bool, ``True`` on real tokens and
    ``False`` on padding.

    >>> ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    >>> ids
    tensor([[5, 6, 7],
            [8, 0, 0]])
    >>> mask
    tensor([[ True,  True,  True],
            [ True, False, False]])
    """
    if len(sequences) == 0 or any(len(s) == 0 for s in sequences):
        raise ValueError("sequences must be a non-empty list of non-empty id sequences")
    max_len = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), max_len), pad_id, dtype=torch.long)  # (batch, max_len)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    lengths = torch.tensor([len(s) for s in sequences])  # (batch,)
    mask = torch.arange(max_len)[None, :] < lengths[:, None]  # (batch, max_len)
    return ids, mask


@dataclass
class Batch:
    """A padded batch of (source, target) pairs, ready for ``Seq2Seq``."""

    src: torch.Tensor  # (batch, src_len) source token ids, padded
    src_mask: torch.Tensor  # (batch, src_len) True on real source tokens
    tgt_in: torch.Tensor  # (batch, tgt_len) decoder inputs: <bos> + target characters
    tgt_out: torch.Tensor  # (batch, tgt_len) what it must predict: target + <eos>, padded


def batches(
    pairs: Sequence[tuple[str, str]],
    src_vocab: Vocabulary,
    tgt_vocab: Vocabulary,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[Batch]:
    """Cut ``pairs`` into padded ``Batch``es of at most ``batch_size`` pairs.

    Sources are split by ``source_tokens``, targets into characters. The decoder input is
    the target shifted right by one: from ``<bos> 1 9 9 4 ...`` it must predict
    ``1 9 9 4 ... <eos>``.

    Without ``shuffle`` the batches keep the order of ``pairs``. With ``shuffle`` (for
    training) the pairs are shuffled with ``generator``, then grouped by target length, so
    that a batch of one-date targets does not run as many decoder steps as the longest
    target; the batches come in a shuffled order.
    """
    check_int("batch_size", batch_size, minimum=1)
    order = list(range(len(pairs)))
    if shuffle:
        order = torch.randperm(len(pairs), generator=generator).tolist()
        order.sort(key=lambda i: len(pairs[i][1]))  # stable: still random within a length
    chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if shuffle:
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator)]
    for chunk in chunks:
        chunk = [pairs[i] for i in chunk]
        src, src_mask = pad_batch(
            [src_vocab.encode(source_tokens(s)) for s, _ in chunk], src_vocab.pad_id
        )
        tgt_in, _ = pad_batch(
            [tgt_vocab.encode(list(t), add_bos=True) for _, t in chunk], tgt_vocab.pad_id
        )
        tgt_out, _ = pad_batch(
            [tgt_vocab.encode(list(t), add_eos=True) for _, t in chunk], tgt_vocab.pad_id
        )
        yield Batch(src, src_mask, tgt_in, tgt_out)


# ------------------------------------------------------------------------------------------
# 3. The models
# ------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Embeds the source tokens and reads them, left to right, with a GRU.

    The GRU's hidden state after token ``j`` summarises tokens ``0..j``: these **states**
    are what attention looks at. The state after the last real token has read the whole
    source: it is the **context vector**, all the decoder gets without attention.

    Padding needs no special care here: the GRU reads left to right and the padding comes
    after the real tokens, so no real position's state has seen it. (The states *on* the
    padding are set to zero, and the context is taken at the last real token.)
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, pad_id: int = 0):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.gru = nn.GRU(embed_dim, hidden_size, batch_first=True)

    def forward(
        self, src: torch.Tensor, src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch.

        Args:
            src: ``(batch, src_len)`` source ids.
            src_mask: ``(batch, src_len)`` bool, ``True`` on real tokens, which come first.

        Returns:
            ``(states, context)``: ``states`` ``(batch, src_len, hidden_size)``, one per
            position (zero on padding), and ``context`` ``(batch, hidden_size)``.
        """
        _check_ids("src", src)
        _check_mask("src_mask", src_mask, src.shape)
        x = self.embed_tokens(src)  # (batch, src_len, embed_dim)
        # The recurrence, run by torch: state j = GRU(token j, state j - 1).
        states, _ = self.gru(x)  # (batch, src_len, hidden)
        states = states * src_mask[..., None]  # zero on padding
        last = src_mask.sum(dim=1) - 1  # (batch,) position of the last real token
        context = states[torch.arange(src.shape[0]), last]  # (batch, hidden)
        return states, context


class AdditiveAttention(nn.Module):
    """Additive attention (Bahdanau et al., 2014): how much each source position matters now.

    The score of encoder state ``h_j`` for decoder state ``s`` is ``v . tanh(W1 h_j + W2 s)``:
    both are projected to ``attn_dim`` numbers, added, squashed by ``tanh`` and reduced to
    one number by ``v``. A softmax over the source positions (padding excluded) turns the
    scores into weights that sum to 1, and the context is the weighted sum of the ``h_j``.
    """

    def __init__(self, key_dim: int, query_dim: int, attn_dim: int):
        super().__init__()
        self.W1 = nn.Linear(key_dim, attn_dim, bias=False)  # projects encoder states (keys)
        self.W2 = nn.Linear(query_dim, attn_dim)  # projects the decoder state (query)
        self.v = nn.Linear(attn_dim, 1, bias=False)  # reduces to one score per position

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from ``query`` over ``keys``.

        Args:
            query: ``(batch, query_dim)``, the decoder state.
            keys: ``(batch, src_len, key_dim)``, the encoder states.
            mask: ``(batch, src_len)`` bool, ``True`` on real tokens; padding gets weight 0.
            projected_keys: ``W1(keys)``, ``(batch, src_len, attn_dim)``, to reuse across
                decoder steps (it does not depend on the query); computed when ``None``.

        Returns:
            ``(context, weights)``: ``context`` ``(batch, key_dim)`` and ``weights``
            ``(batch, src_len)``, each row summing to 1 over the real tokens.
        """
        if projected_keys is None:
            projected_keys = self.W1(keys)  # (batch, src_len, attn_dim)
        # 1. Score every source position: v . tanh(W1 h_j + W2 s).
        hidden = torch.tanh(projected_keys + self.W2(query)[:, None, :])  # (b, src_len, attn)
        scores = self.v(hidden).squeeze(-1)  # (batch, src_len)
        # 2. Padding may not be attended to: a score of -inf becomes a weight of 0.
        scores = scores.masked_fill(~mask, float("-inf"))
        # 3. Softmax over the source positions: positive weights that sum to 1.
        weights = torch.softmax(scores, dim=-1)  # (batch, src_len)
        # 4. The context: the weighted sum of the encoder states.
        context = (weights[:, :, None] * keys).sum(dim=1)  # (batch, key_dim)
        return context, weights


class Decoder(nn.Module):
    """Writes the target one token per step with a GRU cell.

    Each step reads the previous token and a context vector: the encoder's context vector,
    the same at every step, or (with attention) a fresh mix of the encoder states, chosen
    with the decoder's state *before* the step as the query, as in Bahdanau et al. A linear
    layer, the ``lm_head``, then scores every target token.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_size: int,
        context_dim: int,
        attention: bool,
    ):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, embed_dim)
        self.attention = (
            AdditiveAttention(context_dim, hidden_size, hidden_size) if attention else None
        )
        self.init_state = nn.Linear(context_dim, hidden_size)  # context vector -> first state
        self.gru_cell = nn.GRUCell(embed_dim + context_dim, hidden_size)
        self.lm_head = nn.Linear(hidden_size + context_dim + embed_dim, vocab_size)

    def start(self, context: torch.Tensor) -> torch.Tensor:
        """The first decoder state ``(batch, hidden_size)``, made from the context vector."""
        return torch.tanh(self.init_state(context))

    def step(
        self,
        prev_token: torch.Tensor,
        state: torch.Tensor,
        encoder_states: torch.Tensor,
        src_mask: torch.Tensor,
        context: torch.Tensor,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One decoding step.

        Args:
            prev_token: ``(batch,)`` the previous target token (``<bos>`` at the start).
            state: ``(batch, hidden_size)`` the decoder's state after the previous step.
            encoder_states: ``(batch, src_len, context_dim)`` from the ``Encoder``.
            src_mask: ``(batch, src_len)`` bool, ``True`` on real source tokens.
            context: ``(batch, context_dim)`` the encoder's context vector: used as is
                without attention, replaced by the attention mix with it.
            projected_keys: ``attention.W1(encoder_states)``, to compute it once per input.

        Returns:
            ``(logits, state, weights)``: scores ``(batch, vocab_size)`` for the next token,
            the new state ``(batch, hidden_size)``, and the attention weights
            ``(batch, src_len)`` (``None`` without attention).
        """
        weights = None
        if self.attention is not None:
            # Which source positions matter for this step? Ask with the current state.
            context, weights = self.attention(state, encoder_states, src_mask, projected_keys)
        embedded = self.embed_tokens(prev_token)  # (batch, embed_dim)
        # The recurrence: the new state from the previous state, token and context.
        state = self.gru_cell(torch.cat([embedded, context], dim=-1), state)  # (batch, hidden)
        logits = self.lm_head(torch.cat([state, context, embedded], dim=-1))  # (batch, vocab)
        return logits, state, weights


class Seq2Seq(nn.Module):
    """A GRU encoder-decoder, without (``attention=False``) or with additive attention.

    The two variants differ in one thing only: the context the decoder reads at each step.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        attention: bool,
        embed_dim: int = 32,
        hidden_size: int = 64,
        pad_id: int = 0,
    ):
        super().__init__()
        for name, value in (
            ("src_vocab_size", src_vocab_size),
            ("tgt_vocab_size", tgt_vocab_size),
            ("embed_dim", embed_dim),
            ("hidden_size", hidden_size),
        ):
            check_int(name, value, minimum=1)
        if not isinstance(attention, bool):
            raise TypeError(f"attention must be True or False, got {attention!r}")
        self.encoder = Encoder(src_vocab_size, embed_dim, hidden_size, pad_id)
        self.decoder = Decoder(
            tgt_vocab_size, embed_dim, hidden_size, context_dim=hidden_size, attention=attention
        )

    @property
    def uses_attention(self) -> bool:
        return self.decoder.attention is not None

    def encode(
        self, src: torch.Tensor, src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run the encoder: ``(states, context, projected_keys)``, the last one computed
        once here for all decoder steps (``None`` without attention)."""
        states, context = self.encoder(src, src_mask)  # (b, src_len, hidden), (b, hidden)
        keys = self.decoder.attention.W1(states) if self.uses_attention else None
        return states, context, keys

    def forward(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: the decoder reads the *true* previous tokens ``tgt_in``.

        Args:
            src: ``(batch, src_len)`` source ids.
            src_mask: ``(batch, src_len)`` bool, ``True`` on real source tokens.
            tgt_in: ``(batch, tgt_len)`` decoder inputs, ``<bos>`` first.

        Returns:
            ``(logits, weights)``: ``(batch, tgt_len, tgt_vocab_size)`` scores, and
            ``(batch, tgt_len, src_len)`` attention weights (``None`` without attention).
        """
        _check_ids("tgt_in", tgt_in)
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"tgt_in has batch size {tgt_in.shape[0]} but src has {src.shape[0]}")
        states, context, keys = self.encode(src, src_mask)
        state = self.decoder.start(context)  # (batch, hidden)
        all_logits, all_weights = [], []
        # Step t needs the state of step t - 1: the steps run one after the other.
        for t in range(tgt_in.shape[1]):
            logits, state, weights = self.decoder.step(
                tgt_in[:, t], state, states, src_mask, context, keys
            )
            all_logits.append(logits)
            all_weights.append(weights)
        logits = torch.stack(all_logits, dim=1)  # (batch, tgt_len, vocab)
        weights = torch.stack(all_weights, dim=1) if self.uses_attention else None
        return logits, weights


def _check_ids(name: str, ids: object) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.ndim != 2:
        got = (
            f"a {ids.dtype} tensor of shape {tuple(ids.shape)}"
            if isinstance(ids, torch.Tensor)
            else type(ids).__name__
        )
        raise TypeError(f"{name} must be a (batch, seq_len) int64 tensor of ids, got {got}")


def _check_mask(name: str, mask: object, shape: torch.Size) -> None:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != shape:
        got = (
            f"a {mask.dtype} tensor of shape {tuple(mask.shape)}"
            if isinstance(mask, torch.Tensor)
            else type(mask).__name__
        )
        raise TypeError(f"{name} must be a bool tensor of shape {tuple(shape)}, got {got}")
    lengths = mask.sum(dim=1, keepdim=True)  # (batch, 1)
    if (lengths == 0).any() or not torch.equal(mask, torch.arange(shape[1]) < lengths):
        raise ValueError(
            f"{name} must mark at least one real token per row, real tokens first and "
            "padding after them, as pad_batch makes it"
        )


# ------------------------------------------------------------------------------------------
# 4. Training and use
# ------------------------------------------------------------------------------------------


def train_seq2seq(
    model: Seq2Seq,
    pairs: Sequence[tuple[str, str]],
    src_vocab: Vocabulary,
    tgt_vocab: Vocabulary,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 5e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` with teacher forcing and Adam; return the mean loss of each epoch.

    The loss is the cross-entropy of each next target token, padding excluded. The batch
    order is drawn from ``seed``: the same call on the same model trains the same weights.
    """
    check_int("epochs", epochs, minimum=1)
    check_positive_float("lr", lr)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # The learning rate falls from lr to 0 along a cosine: big steps first, small ones last.
    n_steps = epochs * -(-len(pairs) // batch_size)  # batches per epoch, rounded up
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_steps)
    loss_fn = nn.CrossEntropyLoss(ignore_index=tgt_vocab.pad_id)
    model.train()
    history = []
    for _ in range(epochs):
        total, n_batches = 0.0, 0
        for batch in batches(
            pairs, src_vocab, tgt_vocab, batch_size, shuffle=True, generator=generator
        ):
            logits, _ = model(batch.src, batch.src_mask, batch.tgt_in)  # (b, tgt_len, vocab)
            loss = loss_fn(logits.flatten(0, 1), batch.tgt_out.flatten())
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)  # no exploding steps
            optimizer.step()
            schedule.step()
            total, n_batches = total + loss.item(), n_batches + 1
        history.append(total / n_batches)
    model.eval()
    return history


@torch.no_grad()
def greedy_decode(
    model: Seq2Seq, src: torch.Tensor, src_mask: torch.Tensor, bos_id: int, max_len: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The autoregressive loop, for a batch: each step's best token is the next step's input.

    Returns ``(tokens, weights)``: ``(batch, max_len)`` token ids (read each row up to its
    first ``<eos>``) and ``(batch, max_len, src_len)`` attention weights (``None`` without
    attention).
    """
    check_int("max_len", max_len, minimum=1)
    states, context, keys = model.encode(src, src_mask)
    state = model.decoder.start(context)  # (batch, hidden)
    token = torch.full((src.shape[0],), bos_id, dtype=torch.long)  # (batch,) <bos> first
    tokens, all_weights = [], []
    for _ in range(max_len):
        logits, state, weights = model.decoder.step(token, state, states, src_mask, context, keys)
        token = logits.argmax(dim=-1)  # (batch,) greedy: the highest-scoring token
        tokens.append(token)
        all_weights.append(weights)
    weights = torch.stack(all_weights, dim=1) if model.uses_attention else None
    return torch.stack(tokens, dim=1), weights


def translate(
    model: Seq2Seq, text: str, src_vocab: Vocabulary, tgt_vocab: Vocabulary, max_len: int = 40
) -> tuple[str, torch.Tensor | None]:
    """Translate one source text with ``greedy_decode``.

    Returns ``(output, weights)``: the output text and, with attention, the weights
    ``(n_output_tokens + 1, n_source_tokens)``: one row per output token (a character)
    and one for the final ``<eos>`` (``None`` without attention).
    """
    src, src_mask = pad_batch([src_vocab.encode(source_tokens(text))], src_vocab.pad_id)
    model.eval()
    tokens, weights = greedy_decode(model, src, src_mask, tgt_vocab.bos_id, max_len)
    output = tgt_vocab.decode(tokens[0].tolist())
    if weights is not None:
        weights = weights[0, : len(output) + 1]  # (output tokens + <eos>, src_len)
    return "".join(output), weights


def exact_match(
    model: Seq2Seq,
    pairs: Sequence[tuple[str, str]],
    src_vocab: Vocabulary,
    tgt_vocab: Vocabulary,
    batch_size: int = 500,
) -> list[bool]:
    """For each pair, whether greedy decoding writes exactly the target text."""
    model.eval()
    max_len = max(len(t) for _, t in pairs) + 1  # room for <eos>
    correct = []
    for batch in batches(pairs, src_vocab, tgt_vocab, batch_size):
        tokens, _ = greedy_decode(model, batch.src, batch.src_mask, tgt_vocab.bos_id, max_len)
        for ids in tokens.tolist():
            correct.append("".join(tgt_vocab.decode(ids)) == pairs[len(correct)][1])
    return correct


def attention_rows(
    model: Seq2Seq,
    texts: Sequence[str],
    src_vocab: Vocabulary,
    tgt_vocab: Vocabulary,
) -> list[dict]:
    """Translations and their attention weights as compact rows, for a chart in the browser.

    Returns one dict per text: ``{"source", "output", "source_tokens", "output_tokens",
    "weights"}``. ``output_tokens`` are the output characters and ``"<eos>"``; ``weights``
    is ``translate``'s ``(output tokens + 1, source tokens)`` matrix flattened row by row,
    in percent rounded to whole numbers (0.274 -> 27), as ``attention.head_weight_rows``.
    """
    if not model.uses_attention:
        raise ValueError("model must use attention (Seq2Seq(..., attention=True))")
    if isinstance(texts, str) or not all(isinstance(t, str) and t for t in texts):
        raise TypeError(f"texts must be a list of non-empty source texts, got {texts!r}")
    rows = []
    model.eval()
    for text in texts:
        tokens = source_tokens(text)
        src, src_mask = pad_batch([src_vocab.encode(tokens)], src_vocab.pad_id)
        ids, weights = greedy_decode(model, src, src_mask, tgt_vocab.bos_id, max_len=40)
        output = tgt_vocab.decode(ids[0].tolist())  # the output tokens: characters
        weights = weights[0, : len(output) + 1]  # (output tokens + <eos>, source tokens)
        rows.append(
            {
                "source": text,
                "output": "".join(output),
                "source_tokens": tokens,
                # one label per row of weights (no <eos> row if max_len stopped the loop)
                "output_tokens": [*output, "<eos>"][: len(weights)],
                # one output step's weights after the other
                "weights": [round(100 * w) for w in weights.flatten().tolist()],
            }
        )
    return rows
