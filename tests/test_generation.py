"""Sampling and the generation loop (``tutorial_lib.generation``), on a tiny random model.

The logits processors are compared with transformers' own warpers on the same random logits;
the loop is checked for greedy decoding, seeded sampling, streaming, stopping and bad input.
"""

import math

import pytest
import torch
from transformers import (
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers import Phi3Config as HFPhi3Config
from transformers import Phi3ForCausalLM as HFPhi3ForCausalLM

from tutorial_lib.cache import KVCache
from tutorial_lib.generation import (
    apply_temperature,
    chat,
    chat_batch,
    decode_step,
    generate,
    group_logits,
    min_p_filter,
    prefill,
    process_logits,
    sample_next_token,
    stream,
    top_k_filter,
    top_p_filter,
)
from tutorial_lib.loading import from_hf
from tutorial_lib.phi3 import Phi3ForCausalLM
from tutorial_lib.tokenization import load_tokenizer

VOCAB = 64
CONTEXT = 48


def tiny_hf_phi3(seed: int, vocab_size: int = VOCAB, context: int = CONTEXT, eos=None, pad=0):
    """A tiny transformers Phi-3 with random weights (``seed``), in eval mode."""
    torch.manual_seed(seed)
    config = HFPhi3Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    return HFPhi3ForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model() -> Phi3ForCausalLM:
    """A tiny Phi-3 with random weights (from transformers, through our loader)."""
    return from_hf(tiny_hf_phi3(seed=0))


def prompt(batch: int = 1, seq: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, seq), generator=g)


def random_logits(kind: str) -> torch.Tensor:
    """(4, 50) logits: continuous, or small integers with many ties (also at the cut-offs)."""
    g = torch.Generator().manual_seed(7)
    if kind == "ties":
        return torch.randint(-2, 3, (4, 50), generator=g).float()
    return 3 * torch.randn(4, 50, generator=g)


# --------------------------------------------------------------------------------------
# Logits processors against transformers' warpers
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature_equals_transformers(kind, temperature):
    logits = random_logits(kind)
    expected = TemperatureLogitsWarper(temperature)(None, logits.clone())
    torch.testing.assert_close(apply_temperature(logits, temperature), expected, atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("top_k", [1, 3, 10, 50, 80])
def test_top_k_equals_transformers(kind, top_k):
    logits = random_logits(kind)
    got = top_k_filter(logits, top_k)
    expected = TopKLogitsWarper(top_k)(None, logits.clone())
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    # Ties with the k-th best are kept: at least k survive in every row.
    assert (got.isfinite().sum(-1) >= min(top_k, 50)).all()


@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.5, 0.9, 0.999, 1.0])
def test_top_p_equals_transformers(kind, top_p):
    logits = random_logits(kind)
    got = top_p_filter(logits, top_p)
    expected = TopPLogitsWarper(top_p)(None, logits.clone())
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    # The kept tokens hold at least top_p of the probability; a most likely one is always kept.
    kept_mass = logits.softmax(-1).masked_fill(got.isinf(), 0).sum(-1)
    assert (kept_mass >= top_p - 1e-6).all()
    assert torch.equal(got.max(-1).values, logits.max(-1).values)


@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("min_p", [0.0, 0.01, 0.1, 0.3, 0.9, 1.0])
def test_min_p_equals_transformers(kind, min_p):
    logits = random_logits(kind)
    got = min_p_filter(logits, min_p)
    expected = MinPLogitsWarper(min_p)(None, logits.clone())
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    # Kept: exactly the tokens at least min_p times as likely as the most likely one.
    probs = logits.softmax(-1)
    assert torch.equal(got.isfinite(), probs >= min_p * probs.amax(-1, keepdim=True))
    assert torch.equal(got.max(-1).values, logits.max(-1).values)  # the top token stays


def test_min_p_threshold_follows_the_models_confidence():
    # The same min_p keeps few tokens of a peaked distribution and many of a flat one.
    peaked = torch.tensor([[8.0, 2.0, 1.9, 1.8, 1.0, 0.0]])
    flat = torch.tensor([[1.0, 0.9, 0.8, 0.7, 0.5, -3.0]])
    assert int(min_p_filter(peaked, 0.1).isfinite().sum()) == 1
    assert int(min_p_filter(flat, 0.1).isfinite().sum()) == 5


@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_chained_processors_equal_transformers_order(kind):
    # transformers' generate applies temperature, then top-k, then top-p, then min-p.
    logits = random_logits(kind)
    expected = logits.clone()
    warpers = (
        TemperatureLogitsWarper(0.7),
        TopKLogitsWarper(12),
        TopPLogitsWarper(0.8),
        MinPLogitsWarper(0.05),
    )
    for warper in warpers:
        expected = warper(None, expected)
    got = process_logits(logits, temperature=0.7, top_k=12, top_p=0.8, min_p=0.05)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_min_p_sampling_equals_transformers_generate(hf_pair):
    # Seeded min-p sampling draws the same tokens as transformers' generate(min_p=...):
    # both filter the same logits, then both call torch.multinomial on the same generator
    # state (transformers draws from the global one).
    hf, ours = hf_pair
    ids = prompt(batch=2, seq=6, seed=5)
    torch.manual_seed(11)
    expected = hf.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        do_sample=True,
        temperature=1.5,
        top_k=0,
        top_p=1.0,
        min_p=0.2,
    )
    got = generate(ours, ids, 12, temperature=1.5, min_p=0.2, generator=torch.manual_seed(11))
    assert got.tolist() == expected.tolist()


def test_temperature_zero_is_greedy(model):
    logits = random_logits("continuous")
    assert sample_next_token(logits, temperature=0.0).tolist() == logits.argmax(-1).tolist()
    # At temperature 0, top-k and top-p change nothing, and no random number is drawn.
    ids = prompt()
    greedy = generate(model, ids, 12)
    rng_state = torch.get_rng_state()
    assert generate(model, ids, 12, top_k=3, top_p=0.5).tolist() == greedy.tolist()
    assert torch.equal(torch.get_rng_state(), rng_state)
    # ... and greedy is the argmax of the full forward at every step.
    logits = model(greedy[:, :-1]).logits[0, ids.shape[1] - 1 :]  # (new tokens, vocab)
    assert greedy[0, ids.shape[1] :].tolist() == logits.argmax(-1).tolist()


def test_sampling_stays_inside_the_filtered_set():
    logits = random_logits("continuous")[:1].expand(2000, -1)  # one distribution, 2000 draws
    g = torch.Generator().manual_seed(0)
    tokens = sample_next_token(logits, temperature=1.0, top_k=3, generator=g)
    assert set(tokens.tolist()) == set(torch.topk(logits[0], 3).indices.tolist())


# --------------------------------------------------------------------------------------
# Seeded sampling
# --------------------------------------------------------------------------------------
def test_seeded_sampling_is_reproducible(model):
    ids = prompt(batch=2)
    settings = dict(temperature=1.5, top_k=40, top_p=0.95)

    def sample(seed: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        return generate(model, ids, 20, generator=g, **settings).tolist()

    first = sample(0)
    torch.manual_seed(123)  # the global RNG plays no part when a generator is given
    assert sample(0) == first
    assert sample(1) != first
    # Sampling really samples: at this temperature it leaves the greedy path.
    assert first != generate(model, ids, 20).tolist()


# --------------------------------------------------------------------------------------
# The loop: streaming, stopping, caching
# --------------------------------------------------------------------------------------
def test_stream_yields_the_tokens_of_generate(model):
    ids = prompt(batch=2)
    steps = list(stream(model, ids, 10))
    assert len(steps) == 10 and all(step.shape == (2,) for step in steps)
    assert torch.stack(steps, dim=1).tolist() == generate(model, ids, 10)[:, 6:].tolist()

    # Also when sampling with the same seed.
    def seeded() -> dict:
        return dict(temperature=1.0, generator=torch.Generator().manual_seed(3))

    sampled = torch.stack(list(stream(model, ids, 10, **seeded())), dim=1)
    assert sampled.tolist() == generate(model, ids, 10, **seeded())[:, 6:].tolist()


def test_stream_yields_before_it_finishes(model):
    calls = []
    hook = model.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        steps = stream(model, prompt(), 40)
        assert calls == []  # nothing runs until the first token is asked for
        first = next(steps)
        assert first.shape == (1,)
        assert len(calls) == 1  # one forward pass for one token, not the 40 at once
        next(steps)
        assert len(calls) == 2
        steps.close()
    finally:
        hook.remove()


def test_eos_stops_generation_and_pads_finished_rows(model):
    ids = prompt(batch=2)
    free = generate(model, ids, 12)  # the model names no eos: full length
    eos = int(free[0, 6 + 3])  # row 0's 4th new token
    # How many new tokens each row makes up to and including its first eos.
    ends = [row.index(eos) + 1 if eos in row else 12 for row in free[:, 6:].tolist()]
    assert ends[0] <= 4
    stopped = generate(model, ids, 12, eos_token_id=eos)
    # The batch runs until its last row has ended; ended rows are filled with padding.
    assert stopped.shape == (2, 6 + max(ends))
    for row, end in enumerate(ends):
        assert stopped[row, : 6 + end].tolist() == free[row, : 6 + end].tolist()
        assert (stopped[row, 6 + end :] == model.config.pad_token_id).all()
    # Alone, row 0 stops right at its eos; a list of eos ids works the same.
    assert generate(model, ids[:1], 12, eos_token_id=eos).shape == (1, 6 + ends[0])
    assert generate(model, ids[:1], 12, eos_token_id=[VOCAB - 1, eos]).shape == (1, 6 + ends[0])


def test_generation_stops_at_the_models_own_eos_by_default(model):
    ids = prompt()
    free = generate(model, ids, 12)  # this model's config names no end token: full length
    eos = int(free[0, 6 + 2])  # pretend its 3rd new token is the model's end token
    end = free[0, 6:].tolist().index(eos) + 1
    model.config.eos_token_id = eos
    try:
        assert generate(model, ids, 12).shape == (1, 6 + end)
        assert len(list(stream(model, ids, 12))) == end
        # eos_token_id=None goes on to max_new_tokens all the same.
        assert generate(model, ids, 12, eos_token_id=None).tolist() == free.tolist()
    finally:
        model.config.eos_token_id = None


@pytest.mark.parametrize(
    "eos, message",
    [
        ("end", r"eos_token_id='end' must be 'model' \(the model's end token\), a token id"),
        (VOCAB, rf"eos_token_id={VOCAB} must be token ids in \[0, {VOCAB}\)"),
        ([3, -1], r"eos_token_id=\[3, -1\] must be token ids"),
    ],
)
def test_bad_eos_token_id_raises(model, eos, message):
    with pytest.raises(ValueError, match=message):
        generate(model, prompt(), 4, eos_token_id=eos)


def test_generation_with_and_without_cache_agree(model):
    ids = prompt(batch=3, seq=5, seed=2)
    assert generate(model, ids, 16).tolist() == generate(model, ids, 16, use_cache=False).tolist()


@pytest.mark.parametrize("use_cache", [True, False])
def test_token_ids_are_range_checked_once_per_generate(model, monkeypatch, use_cache):
    # The range check reads min and max: on a GPU a host-device sync. Once for the prompt,
    # not once per new token (the model samples its tokens from its own vocabulary).
    from tutorial_lib import phi3

    calls = []
    real = phi3._check_id_range
    monkeypatch.setattr(phi3, "_check_id_range", lambda *a: calls.append(1) or real(*a))
    generate(model, prompt(batch=2), 6, use_cache=use_cache, eos_token_id=None)
    assert len(calls) == 1
    list(stream(model, prompt(), 4, use_cache=use_cache, eos_token_id=None))
    assert len(calls) == 2
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, "):
        generate(model, torch.tensor([[1, VOCAB]]), 2)  # still checked, once
    model(torch.tensor([[1, 2]]))  # a plain forward pass checks as before
    assert len(calls) == 4


def test_sampling_settings_are_keyword_only(model):
    with pytest.raises(TypeError, match="positional"):
        generate(model, prompt(), 4, 0.7)  # temperature must be named
    with pytest.raises(TypeError, match="positional"):
        stream(model, prompt(), 4, 0.7)


def test_generation_fills_the_context_exactly(model):
    ids = prompt(seq=CONTEXT - 8)
    assert generate(model, ids, 8).shape == (1, CONTEXT)


# --------------------------------------------------------------------------------------
# prefill / decode_step: the loop's two halves, and verifying several tokens at once
# --------------------------------------------------------------------------------------
def test_prefill_and_decode_steps_give_the_greedy_tokens_of_generate(model):
    ids = prompt(batch=2, seq=5, seed=4)
    cache = KVCache(model.config, batch_size=2, max_length=5 + 12)
    logits = prefill(model, ids, cache)  # (batch, vocab)
    assert logits.shape == (2, VOCAB) and cache.length == 5
    tokens = [logits.argmax(-1)]  # each (batch,)
    for _ in range(11):
        logits = decode_step(model, tokens[-1][:, None], cache)  # (batch, 1, vocab)
        assert logits.shape == (2, 1, VOCAB)
        tokens.append(logits[:, -1].argmax(-1))
    assert cache.length == 5 + 11  # the last token has not been run yet
    expected = generate(model, ids, 12, eos_token_id=None)[:, 5:]
    assert torch.stack(tokens, dim=1).tolist() == expected.tolist()


def test_decode_step_with_k_tokens_equals_k_single_steps(model):
    ids, new = prompt(batch=2, seq=5, seed=5), prompt(batch=2, seq=4, seed=6)
    one_by_one, at_once = KVCache(model.config, 2, 9), KVCache(model.config, 2, 9)
    prefill(model, ids, one_by_one)
    prefill(model, ids, at_once)
    # (batch, 4, vocab) from four single steps, and from one step of four tokens
    singles = torch.cat([decode_step(model, new[:, i : i + 1], one_by_one) for i in range(4)], 1)
    verified = decode_step(model, new, at_once)
    assert verified.shape == (2, 4, VOCAB) and at_once.length == one_by_one.length == 9
    torch.testing.assert_close(verified, singles, rtol=1e-5, atol=1e-5)  # fp32 rounding only
    for layer in range(model.config.num_hidden_layers):
        torch.testing.assert_close(at_once.keys[layer][:, :, :9], one_by_one.keys[layer][:, :, :9])


def test_crop_then_decode_equals_never_having_decoded_the_cropped_tokens(model):
    ids, rejected = prompt(batch=2, seq=5, seed=7), prompt(batch=2, seq=3, seed=8)
    accepted = prompt(batch=2, seq=2, seed=9)
    cropped, clean = KVCache(model.config, 2, 10), KVCache(model.config, 2, 10)
    prefill(model, ids, cropped)
    prefill(model, ids, clean)
    decode_step(model, rejected, cropped)  # three tokens a verifier will reject
    assert cropped.length == 8
    cropped.crop(5)
    assert cropped.length == 5 and cropped.layer_lengths == [5, 5]
    torch.testing.assert_close(
        decode_step(model, accepted, cropped), decode_step(model, accepted, clean), rtol=0, atol=0
    )
    assert cropped.length == clean.length == 7


def test_kv_cache_crop_keeps_a_length_or_drops_from_the_end_as_dynamic_cache(model):
    from transformers import DynamicCache

    ours, theirs = KVCache(model.config, 1, 8), DynamicCache()
    for layer in range(2):
        kv = torch.randn(1, 2, 6, 8)
        ours.update(layer, kv, -kv)
        theirs.update(kv, -kv, layer)
    for drop in (-1, -2):  # transformers' DynamicCache.crop(-n) drops n positions
        ours.crop(drop)
        theirs.crop(drop)
        assert ours.length == theirs.get_seq_length()
    assert ours.length == 3
    ours.crop(7)  # a length past the end changes nothing
    assert ours.length == 3
    ours.crop(1)  # keep positions 0 (positions >= 1 are forgotten)
    assert ours.layer_lengths == [1, 1]
    ours.crop(-5)  # more than it holds: empty
    assert ours.length == 0
    with pytest.raises(TypeError, match="length="):
        ours.crop(2.0)


def test_decode_step_needs_a_cache(model):
    with pytest.raises(TypeError, match="cache must be the KVCache"):
        decode_step(model, prompt(), None)


# --------------------------------------------------------------------------------------
# Bad input: a clear error naming the argument, its value and what is allowed
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-0.5), r"temperature=-0\.5 must be a number >= 0"),
        (dict(temperature=math.nan), r"temperature=nan must be a number >= 0"),
        (dict(temperature="hot"), r"temperature='hot' must be a number >= 0 .*, got str"),
        (dict(temperature=1.0, top_p=0.0), r"top_p=0\.0 must be a number in \(0, 1\]"),
        (dict(temperature=1.0, top_p=1.5), r"top_p=1\.5 must be a number in \(0, 1\]"),
        (dict(temperature=1.0, top_p=-0.1), r"top_p=-0\.1 must be a number in \(0, 1\]"),
        (dict(temperature=1.0, top_k=0), r"top_k=0 must be an integer >= 1 \(or None: no limit\)"),
        (dict(temperature=1.0, top_k=-3), r"top_k=-3 must be an integer >= 1 \(or None"),
        (
            dict(temperature=1.0, top_k=2.5),
            r"top_k=2\.5 must be an integer >= 1, got float \(or None",
        ),
        (dict(temperature=1.0, min_p=-0.1), r"min_p=-0\.1 must be a number in \[0, 1\]"),
        (dict(temperature=1.0, min_p=1.5), r"min_p=1\.5 must be a number in \[0, 1\]"),
        (dict(temperature=1.0, min_p=math.nan), r"min_p=nan must be a number in \[0, 1\]"),
        (
            dict(temperature=1.0, min_p="low"),
            r"min_p='low' must be a number in \[0, 1\] .*, got str",
        ),
        (dict(max_new_tokens=0), r"max_new_tokens=0 must be an integer >= 1"),
    ],
)
def test_bad_sampling_settings_raise(model, kwargs, message):
    kwargs = {"max_new_tokens": 4, **kwargs}
    error = TypeError if ", got " in message else ValueError  # a wrong type, a wrong value
    with pytest.raises(error, match=message):
        generate(model, prompt(), **kwargs)
    with pytest.raises(error, match=message):
        stream(model, prompt(), **kwargs)  # at once, before the first token is asked for


@pytest.mark.parametrize(
    "fn, args",
    [
        (apply_temperature, (-1.0,)),
        (top_k_filter, (0,)),
        (top_p_filter, (1.01,)),
        (min_p_filter, (-0.5,)),
        (process_logits, (1.0, None, 0.0)),
        (sample_next_token, (-2.0,)),
    ],
)
def test_processors_reject_out_of_range_settings(fn, args):
    with pytest.raises(ValueError, match=r"must be"):
        fn(random_logits("continuous"), *args)


def test_temperature_zero_cannot_divide():
    with pytest.raises(ValueError, match=r"temperature=0 means greedy"):
        apply_temperature(random_logits("continuous"), 0)


@pytest.mark.parametrize(
    "ids, error, message",
    [
        (torch.zeros(1, 0, dtype=torch.long), ValueError, r"input_ids is empty \(shape \(1, 0"),
        (torch.ones(1, 4), TypeError, r"integer token ids .* got dtype torch\.float32"),
        (torch.ones(1, 4, dtype=torch.bool), TypeError, r"got dtype torch\.bool"),
        ([[5, 6, 7]], TypeError, r"input_ids must be a torch\.Tensor .* got list"),
        (torch.tensor([5, 6, 7]), ValueError, r"shape \(batch, seq\), got \(3,\); .*\[None\]"),
        (torch.tensor([[5, VOCAB]]), ValueError, rf"must be in \[0, {VOCAB}\) .* \[5, {VOCAB}\]"),
        (torch.tensor([[-1, 5]]), ValueError, r"got values in \[-1, 5\]"),
    ],
)
def test_bad_input_ids_raise(model, ids, error, message):
    with pytest.raises(error, match=message):
        generate(model, ids, 4)
    with pytest.raises(error, match=message):
        model(ids)


def test_prompt_plus_new_tokens_beyond_context_raises(model):
    ids = prompt(seq=CONTEXT - 3)
    with pytest.raises(
        ValueError,
        match=rf"prompt \({CONTEXT - 3} tokens\) \+ max_new_tokens \(4\) exceeds "
        rf"the context length of {CONTEXT} tokens",
    ):
        generate(model, ids, 4)
    # The forward pass checks it too, cached tokens included.
    with pytest.raises(ValueError, match=rf"exceed the context length .*={CONTEXT}"):
        model(prompt(seq=CONTEXT + 1))
    out = model(ids, use_cache=True)
    with pytest.raises(ValueError, match=rf"{CONTEXT - 3} cached \+ 4 new tokens exceed"):
        model(prompt(seq=4), past_key_values=out.past_key_values)


def test_attention_mask_of_wrong_shape_raises(model):
    ids = prompt(batch=2)
    with pytest.raises(ValueError, match=r"attention_mask must have the shape of input_ids"):
        generate(model, ids, 4, attention_mask=torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(batch, cached"):
        model(ids, attention_mask=torch.ones(1, 6, dtype=torch.long))


# --------------------------------------------------------------------------------------
# group_logits: the sampling explorer's data
# --------------------------------------------------------------------------------------
def grouped_distribution(groups, temperature, top_k, top_p, min_p=0.0):
    """The explorer's arithmetic on the grouped logits, in Python (float64).

    One row per listed token (count 1) and per group of other tokens (count n). Returns
    (probability of each token of the row, how many tokens of the row are kept) per row. It is
    the algorithm the browser runs; the test below checks it against ``process_logits``.
    """
    rows = [(u / groups.scale, 1) for u in groups.top_units]
    rows += [
        (u / groups.scale, n) for u, n in zip(groups.tail_units, groups.tail_counts, strict=True)
    ]
    top = max(v for v, _ in rows)
    tie = {}  # value -> how many tokens have it
    for v, n in rows:
        tie[v] = tie.get(v, 0) + n
    if temperature == 0:  # greedy: everything on the (unique) most likely token
        return [(1.0 if v == top else 0.0, n if v == top else 0) for v, n in rows]
    weight = [math.exp((v - top) / temperature) for v, _ in rows]
    # Top-k: a token survives when fewer than k tokens are strictly more likely.
    greater = [sum(n2 for v2, n2 in rows if v2 > v) for v, _ in rows]
    kept_k = [top_k is None or g < top_k for g in greater]
    z = sum(n * w for (_, n), w, k in zip(rows, weight, kept_k, strict=True) if k)
    p = [w / z if k else 0.0 for w, k in zip(weight, kept_k, strict=True)]
    # Top-p: drop the least likely tokens while their mass stays <= 1 - top_p; a tied value
    # loses as many of its tokens as fit, counted, and the most likely token always stays.
    removed_of_value = {}
    for (v, _), pv in zip(rows, p, strict=True):
        below = sum(n2 * p2 for (v2, n2), p2 in zip(rows, p, strict=True) if v2 < v)
        if top_p >= 1:
            r = 0
        elif pv == 0:
            r = tie[v]
        else:
            r = min(max(math.floor((1 - top_p - below) / pv), 0), tie[v])
        removed_of_value[v] = min(r, tie[v] - 1) if v == top else r
    kept, seen = [], {}
    for (v, n), pv in zip(rows, p, strict=True):
        if n == 1:  # a listed token: the first r listed tokens of a tied value are dropped
            seen[v] = seen.get(v, 0) + 1
            kept.append(0 if seen[v] <= removed_of_value[v] or pv == 0 else 1)
        else:  # a group holds all tokens of its value
            kept.append(0 if pv == 0 else n - removed_of_value[v])
    # Min-p, last: a row stays if its tokens are at least min_p times as likely as the top
    # one (w is that ratio); a row is one value, so it stays or goes whole.
    kept = [k if w >= min_p else 0 for k, w in zip(kept, weight, strict=True)]
    z = sum(k * pv for k, pv in zip(kept, p, strict=True))
    return [(pv / z if k else 0.0, k) for pv, k in zip(p, kept, strict=True)]


def explorer_logits() -> torch.Tensor:
    """(2000,) logits rounded to 0.1 with many ties, one clear maximum."""
    g = torch.Generator().manual_seed(3)
    logits = torch.round(2 * torch.randn(2000, generator=g), decimals=1)
    logits[17] = logits.max() + 1.0
    return logits


def test_group_logits_lists_the_top_tokens_and_counts_the_rest():
    logits = explorer_logits()
    groups = group_logits(logits, n_top=10, decimals=1)
    assert torch.equal(groups.rounded, torch.round(logits * 10) / 10)
    assert groups.top_ids[0] == 17 and len(groups.top_ids) >= 10
    assert len(groups.top_ids) + sum(groups.tail_counts) == 2000
    assert min(groups.top_units) > max(groups.tail_units)  # no group shares a listed value
    assert groups.tail_units == sorted(groups.tail_units, reverse=True)
    # Each listed token's value, and each group's count, as counted from the vector itself.
    assert [round(logits[i].item() * 10) for i in groups.top_ids] == groups.top_units
    units = torch.round(logits * 10).long()
    assert [int((units == u).sum()) for u in groups.tail_units] == groups.tail_counts
    assert len(groups.tail_units) < 150  # small: about a hundred rows instead of 2,000 numbers


@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 2.0])
@pytest.mark.parametrize("top_k", [None, 1, 12, 300])
@pytest.mark.parametrize("top_p", [1.0, 0.95, 0.6, 0.2])
@pytest.mark.parametrize("min_p", [0.0, 0.05, 0.2])
def test_grouped_arithmetic_equals_process_logits(temperature, top_k, top_p, min_p):
    groups = group_logits(explorer_logits(), n_top=10, decimals=1)
    rows = grouped_distribution(groups, temperature, top_k, top_p, min_p)
    if temperature == 0:
        expected = torch.zeros(2000).index_fill(0, groups.rounded.argmax(), 1.0)
    else:
        settings = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        expected = process_logits(groups.rounded[None], **settings)[0].softmax(-1)
    # The listed tokens one by one (tied ones compared as a sorted list)...
    listed = torch.tensor([q for q, _ in rows[: len(groups.top_ids)]], dtype=torch.float64)
    torch.testing.assert_close(
        listed.sort().values, expected[groups.top_ids].sort().values.double(), atol=1e-6, rtol=0
    )
    # ... and every token as a sorted list: how many are kept and their probabilities.
    tokens = torch.tensor([q for q, k in rows for _ in range(k)], dtype=torch.float64)
    kept_expected = expected[expected > 0].double().sort().values
    assert len(tokens) == len(kept_expected)
    torch.testing.assert_close(tokens.sort().values, kept_expected, atol=1e-6, rtol=0)


def test_grouped_arithmetic_cuts_inside_a_tied_group():
    # A top-p boundary that falls inside a group of tied tokens keeps part of the group.
    groups = group_logits(explorer_logits(), n_top=10, decimals=1)
    rows = grouped_distribution(groups, 1.0, None, 0.5)[len(groups.top_ids) :]
    cut = [k for (_, k), n in zip(rows, groups.tail_counts, strict=True) if 0 < k < n]
    assert len(cut) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(logits=torch.zeros(2, 5)), "1-D"),
        (dict(logits=torch.arange(5.0), n_top=0), "n_top"),
        (dict(logits=torch.arange(5.0), n_top=2, decimals=9), "decimals"),
        (dict(logits=torch.tensor([1.0, 1.001, 0.0]), n_top=2), "tie"),
    ],
)
def test_group_logits_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_logits(**kwargs)


# The logits_processor hook, with transformers' own processors
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_pair() -> tuple[HFPhi3ForCausalLM, Phi3ForCausalLM]:
    """A tiny random transformers Phi-3 and the same weights in our engine."""
    hf = tiny_hf_phi3(seed=1)
    return hf, from_hf(hf)


@pytest.mark.parametrize(
    "hf_settings, processor",
    [
        (dict(repetition_penalty=1.5), RepetitionPenaltyLogitsProcessor(1.5)),
        (dict(no_repeat_ngram_size=2), NoRepeatNGramLogitsProcessor(2)),
    ],
    ids=["repetition-penalty", "no-repeat-ngram"],
)
def test_transformers_processors_work_in_our_generate(hf_pair, hf_settings, processor):
    # transformers builds the same processor from its generate() settings; ours takes it as
    # logits_processor. Greedy tokens agree, and differ from plain greedy decoding.
    hf, ours = hf_pair
    ids = prompt(batch=2, seq=6, seed=3)
    expected = hf.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False, **hf_settings
    )
    got = generate(ours, ids, 24, logits_processor=processor)
    assert got.tolist() == expected.tolist()
    assert got.tolist() != generate(ours, ids, 24).tolist()


def test_logits_processor_runs_before_sampling_on_every_step(model):
    # A processor that forbids every odd token: no odd token is ever sampled, and it sees
    # (batch, seq) ids growing by one per step alongside (batch, vocab) logits.
    seen_lengths = []

    def even_only(input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        assert logits.shape == (input_ids.shape[0], VOCAB)
        seen_lengths.append(input_ids.shape[1])
        odd = torch.arange(VOCAB) % 2 == 1
        return logits.masked_fill(odd, float("-inf"))

    ids = prompt(batch=3, seq=5)
    generator = torch.Generator().manual_seed(0)
    out = stream(model, ids, 10, temperature=1.5, generator=generator, logits_processor=even_only)
    new = torch.stack(list(out), dim=1)  # (batch, 10)
    assert (new % 2 == 0).all()
    assert seen_lengths == list(range(5, 15))


# --------------------------------------------------------------------------------------
# Several chats in one batch
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_model_and_tokenizer():
    """A tiny random Phi-3 over the real SmolLM2 tokenizer (ChatML), ending at <|im_end|>."""
    tokenizer = load_tokenizer("smollm2")
    eos = tokenizer.eos_token_id
    hf = tiny_hf_phi3(seed=2, vocab_size=len(tokenizer), context=128, eos=eos, pad=eos)
    return from_hf(hf), tokenizer


def test_chat_batch_gives_each_chat_its_own_reply(chat_model_and_tokenizer):
    model, tokenizer = chat_model_and_tokenizer
    chats = [
        "Hi",
        "What is the capital of France? Answer in one word.",
        [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one?"},
        ],
    ]
    replies = chat_batch(model, tokenizer, chats, max_new_tokens=10, system="Be brief.")
    alone = [chat(model, tokenizer, c, max_new_tokens=10, system="Be brief.") for c in chats]
    assert replies == alone
    assert len(set(replies)) == 3


def test_chat_batch_rejects_an_empty_list(chat_model_and_tokenizer):
    model, tokenizer = chat_model_and_tokenizer
    with pytest.raises(ValueError, match="conversations"):
        chat_batch(model, tokenizer, [], max_new_tokens=4)
