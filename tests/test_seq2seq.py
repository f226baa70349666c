"""tutorial_lib.seq2seq: the date task, vocabulary and batches, the GRU encoder-decoder with and
without additive attention, training, and decoding."""

from __future__ import annotations

import datetime
import doctest
import random
import re

import pytest
import torch
from dateutil import parser as dateutil_parser
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tutorial_lib import seq2seq
from tutorial_lib.seq2seq import (
    MONTHS,
    WEEKDAYS,
    AdditiveAttention,
    Encoder,
    Seq2Seq,
    Vocabulary,
    attention_rows,
    batches,
    exact_match,
    greedy_decode,
    human_date,
    make_date_pairs,
    pad_batch,
    source_tokens,
    train_seq2seq,
    translate,
)

ATOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: these small models train faster without thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    """A small dataset with its two vocabularies."""
    train, test = make_date_pairs(300, 50, seed=0)
    src_vocab = Vocabulary.from_sequences(source_tokens(s) for s, _ in train)
    tgt_vocab = Vocabulary.from_sequences(list(t) for _, t in train)
    return train, test, src_vocab, tgt_vocab


def make_model(data, attention: bool) -> Seq2Seq:
    """A small seeded model (untrained) for the task's vocabularies."""
    _, _, src_vocab, tgt_vocab = data
    torch.manual_seed(0)
    return Seq2Seq(
        len(src_vocab), len(tgt_vocab), attention=attention, embed_dim=8, hidden_size=16
    ).eval()


def test_docstring_examples_hold():
    assert doctest.testmod(seq2seq).failed == 0


# --------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------


def test_make_date_pairs_is_fixed_by_the_seed_and_splits_without_overlap():
    train, test = make_date_pairs(400, 100, seed=3)
    assert (train, test) == make_date_pairs(400, 100, seed=3)
    assert train != make_date_pairs(400, 100, seed=4)[0]
    assert len(train) == 400 and len(test) == 100
    sources = [s for s, _ in train + test]
    assert len(set(sources)) == 500  # every source once: no test input was trained on


@pytest.mark.parametrize("max_dates", [1, 2, 3])
def test_make_date_pairs_lists_one_to_max_dates_iso_dates(max_dates):
    train, _ = make_date_pairs(300, 0, max_dates=max_dates, seed=0)
    counts = set()
    for _, target in train:
        dates = target.split(", ")
        counts.add(len(dates))
        for iso in dates:
            date = datetime.date.fromisoformat(iso)  # a valid ISO date...
            assert date.isoformat() == iso  # ...written in the canonical form
            assert datetime.date(1950, 1, 1) <= date <= datetime.date(2049, 12, 31)
    assert counts == set(range(1, max_dates + 1))


# Words a date written with digits may contain besides numbers.
DIGIT_STYLE_WORDS = (
    set(MONTHS) | {m[:3] for m in MONTHS} | set(WEEKDAYS) | {"the", "of", "day", "in", "year"}
)


def test_dates_written_with_digits_parse_to_the_target_with_dateutil():
    """The reference: dateutil's parser reads the source and must find the target date."""
    train, _ = make_date_pairs(2000, 0, max_dates=1, seed=1)
    checked = 0
    for source, target in train:
        words = re.findall(r"\w+", source)
        if not all(w in DIGIT_STYLE_WORDS or w[0].isdigit() for w in words):
            continue  # spelled-out numbers: dateutil cannot read them (checked below)
        parsed = dateutil_parser.parse(source, fuzzy=True, dayfirst=True).date()
        assert parsed.isoformat() == target, source
        checked += 1
    assert checked > 500


def spellings(date: datetime.date, n: int = 300) -> str:
    """Many random human spellings of ``date``, joined."""
    return " | ".join(human_date(date, random.Random(seed)) for seed in range(n))


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        (
            datetime.date(1994, 3, 23),
            [
                "twenty third",
                "23rd",
                "nineteen ninety four",
                "march",
                "mar",
                "23/03/1994",
                "wednesday",
            ],
        ),
        (
            datetime.date(2005, 1, 1),
            ["first", "1st", "two thousand and five", "january", "saturday"],
        ),
        (
            datetime.date(2021, 12, 12),
            [
                "twelfth",
                "12th",
                "twenty twenty one",
                "two thousand and twenty one",
                "dec",
                "sunday",
            ],
        ),
        (datetime.date(1950, 6, 30), ["thirtieth", "30th", "nineteen fifty", "friday"]),
        (datetime.date(2000, 2, 11), ["eleventh", "11th", "two thousand", "friday"]),
    ],
)
def test_human_date_spells_days_years_and_weekdays_as_people_do(date, expected):
    # Facts checked by hand (e.g. 23 March 1994 was a Wednesday), not by the code under test.
    text = spellings(date)
    for phrase in expected:
        assert phrase in text, phrase
    other_weekdays = set(WEEKDAYS) - {expected[-1]}
    assert not any(day in text for day in other_weekdays)


def test_task_inputs_are_checked():
    with pytest.raises(TypeError, match="date must be a datetime.date"):
        human_date("1994-03-23", random.Random(0))
    with pytest.raises(TypeError, match="rng must be a random.Random"):
        human_date(datetime.date(1994, 3, 23), 0)
    with pytest.raises(TypeError, match="n_train=.* must be an integer, got"):
        make_date_pairs(10.0, 1)
    with pytest.raises(ValueError, match="n_test=-1 must be an integer >= 0"):
        make_date_pairs(10, -1)
    with pytest.raises(ValueError, match="max_dates=0 must be an integer >= 1"):
        make_date_pairs(10, 1, max_dates=0)
    with pytest.raises(ValueError, match="must be at most 100,000, got 100,001"):
        make_date_pairs(100_000, 1)


# --------------------------------------------------------------------------------------
# Tokens, vocabulary, padding, batches
# --------------------------------------------------------------------------------------


def test_source_tokens_splits_words_numbers_and_punctuation():
    assert source_tokens("wed, the 23rd of mar. 23/03/1994") == [
        "wed",
        ",",
        "the",
        "23rd",
        "of",
        "mar",
        ".",
        "23",
        "/",
        "03",
        "/",
        "1994",
    ]
    with pytest.raises(TypeError, match="text must be a str"):
        source_tokens(["march"])


def test_vocabulary_round_trips_tokens_and_texts(data):
    train, test, src_vocab, tgt_vocab = data
    for source, target in train:
        tokens = source_tokens(source)
        assert src_vocab.decode(src_vocab.encode(tokens)) == tokens
        assert "".join(tgt_vocab.decode(tgt_vocab.encode(list(target), add_eos=True))) == target
    # Every test target is made of characters seen in training.
    for _, target in test:
        assert tgt_vocab.unk_id not in tgt_vocab.encode(list(target))


def test_vocabulary_special_tokens_and_unknown_tokens():
    vocab = Vocabulary(["b", "a", "b"])
    assert vocab.id_to_token == ["<pad>", "<bos>", "<eos>", "<unk>", "b", "a"]  # repeats dropped
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert len(vocab) == 6
    assert vocab.encode(["a", "z"], add_bos=True, add_eos=True) == [1, 5, 3, 2]
    # decode skips <pad> and <bos> and stops at the first <eos>.
    assert vocab.decode([1, 4, 0, 5, 2, 4, 4]) == ["b", "a"]
    assert Vocabulary.from_sequences([["b", "a"], ["c"]]).id_to_token[4:] == ["a", "b", "c"]


def test_vocabulary_rejects_bad_input():
    with pytest.raises(TypeError, match="not the single string 'abc'"):
        Vocabulary("abc")
    with pytest.raises(TypeError, match="non-empty strings, got 3"):
        Vocabulary(["a", 3])
    vocab = Vocabulary(["a"])
    with pytest.raises(TypeError, match="not the single string 'aa'"):
        vocab.encode("aa")
    with pytest.raises(ValueError, match=r"id 9 is not in the vocabulary \(ids 0..4\)"):
        vocab.decode([4, 9])
    with pytest.raises(TypeError, match="sequences must be lists of tokens"):
        Vocabulary.from_sequences("abc")


def test_pad_batch_pads_at_the_end_and_masks_the_padding():
    ids, mask = pad_batch([[7, 8, 9], [5], [6, 6]], pad_id=0)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.tolist() == [[7, 8, 9], [5, 0, 0], [6, 6, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    with pytest.raises(ValueError, match="non-empty"):
        pad_batch([], pad_id=0)
    with pytest.raises(ValueError, match="non-empty"):
        pad_batch([[1], []], pad_id=0)


def test_batches_shift_the_target_and_cover_every_pair_once(data):
    train, _, src_vocab, tgt_vocab = data
    pairs = train[:50]
    seen = []
    for batch in batches(
        pairs, src_vocab, tgt_vocab, 8, shuffle=True, generator=torch.Generator().manual_seed(0)
    ):
        assert batch.src.shape == batch.src_mask.shape and batch.src.shape[0] <= 8
        assert batch.tgt_in.shape == batch.tgt_out.shape
        assert (batch.tgt_in[:, 0] == tgt_vocab.bos_id).all()
        for row in range(batch.src.shape[0]):
            target = "".join(tgt_vocab.decode(batch.tgt_out[row].tolist()))
            # The decoder input is <bos> + target: the target shifted right by one.
            n = len(target)
            assert torch.equal(batch.tgt_in[row, 1 : n + 1], batch.tgt_out[row, :n])
            assert batch.tgt_out[row, n] == tgt_vocab.eos_id
            n_src = int(batch.src_mask[row].sum())
            seen.append((src_vocab.decode(batch.src[row, :n_src].tolist()), target))
    assert sorted(seen) == sorted((source_tokens(s), t) for s, t in pairs)
    # Shuffled batches group targets of one length (1, 2 or 3 dates), so that short targets
    # do not wait for long ones: only where one length runs out can a batch mix two.
    lengths = [
        {
            int((b.tgt_out != tgt_vocab.pad_id).sum(dim=1).max()),
            int((b.tgt_out != tgt_vocab.pad_id).sum(dim=1).min()),
        }
        for b in batches(
            train, src_vocab, tgt_vocab, 8, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
    ]
    assert sum(len(pair) > 1 for pair in lengths) <= 2
    # Without shuffle the order is kept.
    first = next(batches(pairs, src_vocab, tgt_vocab, 4))
    assert "".join(tgt_vocab.decode(first.tgt_out[0].tolist())) == pairs[0][1]
    with pytest.raises(ValueError, match="batch_size=.* must be an integer >= 1"):
        next(batches(pairs, src_vocab, tgt_vocab, 0))


# --------------------------------------------------------------------------------------
# Encoder: against torch's own handling of padding (packed sequences)
# --------------------------------------------------------------------------------------


def padded_example(data, n: int = 6):
    train, _, src_vocab, _ = data
    src, src_mask = pad_batch(
        [src_vocab.encode(source_tokens(s)) for s, _ in train[:n]], src_vocab.pad_id
    )
    assert not src_mask.all()  # the batch really has padding
    return src, src_mask


def test_encoder_matches_torch_packed_gru(data):
    src, src_mask = padded_example(data)
    torch.manual_seed(0)
    encoder = Encoder(vocab_size=int(src.max()) + 1, embed_dim=8, hidden_size=16)
    states, context = encoder(src, src_mask)
    assert states.shape == (*src.shape, 16) and context.shape == (src.shape[0], 16)

    # Reference: the same GRU on a packed sequence, torch's way of skipping padding.
    lengths = src_mask.sum(dim=1)
    packed = pack_padded_sequence(
        encoder.embed_tokens(src), lengths, batch_first=True, enforce_sorted=False
    )
    ref_packed, ref_last = encoder.gru(packed)
    ref_states, _ = pad_packed_sequence(ref_packed, batch_first=True, total_length=src.shape[1])
    torch.testing.assert_close(states, ref_states, atol=ATOL, rtol=0)
    torch.testing.assert_close(context, ref_last[0], atol=ATOL, rtol=0)


def test_encoder_ignores_what_the_padding_holds(data):
    src, src_mask = padded_example(data)
    torch.manual_seed(0)
    encoder = Encoder(vocab_size=int(src.max()) + 1, embed_dim=8, hidden_size=16)
    states, context = encoder(src, src_mask)
    noisy = src.masked_fill(~src_mask, 5)  # other token ids in the padded positions
    noisy_states, noisy_context = encoder(noisy, src_mask)
    torch.testing.assert_close(noisy_states, states, atol=0, rtol=0)
    torch.testing.assert_close(noisy_context, context, atol=0, rtol=0)
    assert (states[~src_mask] == 0).all()


def test_encoder_rejects_bad_input(data):
    src, src_mask = padded_example(data)
    encoder = Encoder(vocab_size=int(src.max()) + 1, embed_dim=4, hidden_size=4)
    with pytest.raises(TypeError, match="src must be a"):
        encoder(src.float(), src_mask)
    with pytest.raises(TypeError, match="src_mask must be a bool tensor of shape"):
        encoder(src, src_mask.long())
    with pytest.raises(TypeError, match="src_mask must be a bool tensor of shape"):
        encoder(src, src_mask[:, :-1])
    holes = src_mask.clone()
    holes[0, 1] = False  # padding before a real token
    with pytest.raises(ValueError, match="real tokens first and padding after them"):
        encoder(src, holes)
    empty = src_mask.clone()
    empty[0] = False
    with pytest.raises(ValueError, match="at least one real token per row"):
        encoder(src, empty)


# --------------------------------------------------------------------------------------
# Additive attention
# --------------------------------------------------------------------------------------


def test_additive_attention_matches_the_formula_position_by_position():
    torch.manual_seed(0)
    attention = AdditiveAttention(key_dim=6, query_dim=5, attn_dim=7)
    keys, query = torch.randn(3, 4, 6), torch.randn(3, 5)
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    context, weights = attention(query, keys, mask)
    assert context.shape == (3, 6) and weights.shape == (3, 4)

    W1, W2, b2, v = (
        attention.W1.weight,
        attention.W2.weight,
        attention.W2.bias,
        attention.v.weight[0],
    )
    for b in range(3):
        n = int(mask[b].sum())
        # e_j = v . tanh(W1 h_j + W2 s + b), for the real positions j only.
        scores = torch.stack(
            [v @ torch.tanh(W1 @ keys[b, j] + W2 @ query[b] + b2) for j in range(n)]
        )
        expected = torch.exp(scores) / torch.exp(scores).sum()
        torch.testing.assert_close(weights[b, :n], expected, atol=ATOL, rtol=0)
        assert (weights[b, n:] == 0).all()  # no weight at all on padding
        torch.testing.assert_close(context[b], expected @ keys[b, :n], atol=ATOL, rtol=0)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3), atol=ATOL, rtol=0)


def test_additive_attention_ignores_keys_on_padding():
    torch.manual_seed(0)
    attention = AdditiveAttention(key_dim=6, query_dim=5, attn_dim=7)
    keys, query = torch.randn(2, 5, 6), torch.randn(2, 5)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    context, weights = attention(query, keys, mask)
    changed = keys.clone()
    changed[0, 3:] = 100.0  # huge values where the first row is padding
    context2, weights2 = attention(query, changed, mask)
    torch.testing.assert_close(context2, context, atol=0, rtol=0)
    torch.testing.assert_close(weights2, weights, atol=0, rtol=0)


# --------------------------------------------------------------------------------------
# The encoder-decoder
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", [False, True])
def test_seq2seq_shapes(data, attention):
    train, _, src_vocab, tgt_vocab = data
    model = make_model(data, attention)
    batch = next(batches(train, src_vocab, tgt_vocab, 5))
    logits, weights = model(batch.src, batch.src_mask, batch.tgt_in)
    assert logits.shape == (5, batch.tgt_in.shape[1], len(tgt_vocab))
    if attention:
        assert weights.shape == (5, batch.tgt_in.shape[1], batch.src.shape[1])
    else:
        assert weights is None
    assert model.uses_attention is attention


def test_seq2seq_attention_weights_sum_to_one_and_skip_padding(data):
    train, _, src_vocab, tgt_vocab = data
    model = make_model(data, attention=True)
    batch = next(batches(train, src_vocab, tgt_vocab, 8))
    assert not batch.src_mask.all()
    _, weights = model(batch.src, batch.src_mask, batch.tgt_in)  # (batch, tgt_len, src_len)
    torch.testing.assert_close(
        weights.sum(dim=-1), torch.ones(weights.shape[:2]), atol=ATOL, rtol=0
    )
    assert (weights.masked_select(~batch.src_mask[:, None, :]) == 0).all()


@pytest.mark.parametrize("attention", [False, True])
def test_seq2seq_padded_batch_gives_the_same_outputs_as_each_example_alone(data, attention):
    train, _, src_vocab, tgt_vocab = data
    model = make_model(data, attention)
    batch = next(batches(train, src_vocab, tgt_vocab, 6))
    logits, weights = model(batch.src, batch.src_mask, batch.tgt_in)
    # Other ids in the padding change nothing either.
    noisy = batch.src.masked_fill(~batch.src_mask, 7)
    noisy_logits, _ = model(noisy, batch.src_mask, batch.tgt_in)
    torch.testing.assert_close(noisy_logits, logits, atol=0, rtol=0)
    for row in range(6):
        n_src = int(batch.src_mask[row].sum())
        n_tgt = int((batch.tgt_in[row] != tgt_vocab.pad_id).sum())
        alone, alone_weights = model(
            batch.src[row : row + 1, :n_src],
            batch.src_mask[row : row + 1, :n_src],
            batch.tgt_in[row : row + 1, :n_tgt],
        )
        torch.testing.assert_close(alone[0], logits[row, :n_tgt], atol=1e-5, rtol=0)
        if attention:
            torch.testing.assert_close(
                alone_weights[0], weights[row, :n_tgt, :n_src], atol=1e-5, rtol=0
            )


@pytest.mark.parametrize("attention", [False, True])
def test_teacher_forcing_on_the_greedy_output_reproduces_it(data, attention):
    """forward (all steps, true previous tokens) and greedy_decode (feeding back its own
    tokens) run the same decoder: fed greedy's tokens, forward picks the same ones."""
    _, test, src_vocab, tgt_vocab = data
    model = make_model(data, attention)
    batch = next(batches(test, src_vocab, tgt_vocab, 4))
    tokens, weights = greedy_decode(model, batch.src, batch.src_mask, tgt_vocab.bos_id, 12)
    tgt_in = torch.cat([torch.full((4, 1), tgt_vocab.bos_id), tokens[:, :-1]], dim=1)
    logits, forced_weights = model(batch.src, batch.src_mask, tgt_in)
    assert torch.equal(logits.argmax(dim=-1), tokens)
    if attention:
        torch.testing.assert_close(forced_weights, weights, atol=ATOL, rtol=0)


def test_translate_returns_the_greedy_text_and_one_weight_row_per_output_char(data):
    _, test, src_vocab, tgt_vocab = data
    model = make_model(data, attention=True)
    source = test[0][0]
    text, weights = translate(model, source, src_vocab, tgt_vocab, max_len=12)
    src, src_mask = pad_batch([src_vocab.encode(source_tokens(source))], src_vocab.pad_id)
    tokens, _ = greedy_decode(model, src, src_mask, tgt_vocab.bos_id, 12)
    output_tokens = tgt_vocab.decode(tokens[0].tolist())
    assert text == "".join(output_tokens)
    # One row per output token and one for <eos> (if it came within max_len).
    assert weights.shape == (min(len(output_tokens) + 1, 12), len(source_tokens(source)))
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(len(weights)), atol=ATOL, rtol=0)
    assert translate(make_model(data, attention=False), source, src_vocab, tgt_vocab)[1] is None


@pytest.mark.parametrize("attention", [False, True])
def test_training_overfits_a_tiny_dataset(attention):
    pairs, _ = make_date_pairs(16, 0, max_dates=1, seed=5)
    src_vocab = Vocabulary.from_sequences(source_tokens(s) for s, _ in pairs)
    tgt_vocab = Vocabulary.from_sequences(list(t) for _, t in pairs)
    torch.manual_seed(0)
    model = Seq2Seq(
        len(src_vocab), len(tgt_vocab), attention=attention, embed_dim=16, hidden_size=32
    )
    assert not all(exact_match(model, pairs, src_vocab, tgt_vocab))  # untrained: wrong
    history = train_seq2seq(model, pairs, src_vocab, tgt_vocab, epochs=100, batch_size=8, lr=1e-2)
    assert history[-1] < 0.05 < 2.0 < history[0]
    assert all(exact_match(model, pairs, src_vocab, tgt_vocab))  # every date learned


def test_training_is_repeatable(data):
    train, _, src_vocab, tgt_vocab = data
    runs = []
    for _ in range(2):
        model = make_model(data, attention=True)
        runs.append(
            train_seq2seq(model, train[:64], src_vocab, tgt_vocab, epochs=2, batch_size=16, seed=1)
        )
    assert runs[0] == runs[1]


def test_model_and_training_inputs_are_checked(data):
    train, _, src_vocab, tgt_vocab = data
    with pytest.raises(ValueError, match="hidden_size=0 must be an integer >= 1"):
        Seq2Seq(10, 10, attention=True, hidden_size=0)
    with pytest.raises(TypeError, match="src_vocab_size=.* must be an integer >= 1, got"):
        Seq2Seq(10.0, 10, attention=True)
    with pytest.raises(TypeError, match="attention must be True or False"):
        Seq2Seq(10, 10, attention="yes")
    model = make_model(data, attention=True)
    batch = next(batches(train, src_vocab, tgt_vocab, 4))
    with pytest.raises(ValueError, match="tgt_in has batch size 3 but src has 4"):
        model(batch.src, batch.src_mask, batch.tgt_in[:3])
    with pytest.raises(TypeError, match="tgt_in must be a"):
        model(batch.src, batch.src_mask, batch.tgt_in.float())
    with pytest.raises(ValueError, match="epochs=0 must be an integer >= 1"):
        train_seq2seq(model, train, src_vocab, tgt_vocab, epochs=0)
    with pytest.raises(ValueError, match="lr=-1.0 must be a number > 0"):
        train_seq2seq(model, train, src_vocab, tgt_vocab, epochs=1, lr=-1.0)
    with pytest.raises(ValueError, match="max_len=0 must be an integer >= 1"):
        greedy_decode(model, batch.src, batch.src_mask, tgt_vocab.bos_id, max_len=0)


def test_attention_rows_hold_the_translation_and_its_weights_row_by_row(data):
    _, test, src_vocab, tgt_vocab = data
    model = make_model(data, attention=True)
    texts = [s for s, _ in test[:3]]
    table = attention_rows(model, texts, src_vocab, tgt_vocab)
    assert [r["source"] for r in table] == texts
    for row, text in zip(table, texts, strict=True):
        output, weights = translate(model, text, src_vocab, tgt_vocab)
        assert row["output"] == output
        assert len(row["output_tokens"]) == len(weights)  # one label per row of weights
        assert "".join(row["output_tokens"]).removesuffix("<eos>") == output
        assert row["source_tokens"] == source_tokens(text)
        n_out, n_src = weights.shape
        assert len(row["weights"]) == n_out * n_src
        # Entry n_src * i + j: output step i's weight on source token j, in percent.
        assert row["weights"][n_src * (n_out - 1)] == round(100 * float(weights[-1, 0]))
        percent = torch.tensor(row["weights"]).view(n_out, n_src) / 100
        assert torch.allclose(percent, weights, atol=5e-3)


def test_attention_rows_need_an_attention_model_and_texts(data):
    _, _, src_vocab, tgt_vocab = data
    with pytest.raises(ValueError, match="must use attention"):
        attention_rows(make_model(data, attention=False), ["4 jul 2001"], src_vocab, tgt_vocab)
    with pytest.raises(TypeError, match="texts"):
        attention_rows(make_model(data, attention=True), "4 jul 2001", src_vocab, tgt_vocab)
