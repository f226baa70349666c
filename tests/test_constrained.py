"""Constrained decoding (``tutorial_lib.constrained``) with the real SmolLM2 tokenizer.

The model is a tiny Phi-3 with random weights and SmolLM2's vocabulary size: left alone it
writes junk, so every valid output is the constraint's doing. Outputs are checked with
independent references (``json.loads`` and ``jsonschema``; a brute-force scan of the
vocabulary through ``tokenizer.decode``), and the processor gives the same tokens inside
transformers' own ``generate`` as inside ours.
"""

import json

import jsonschema
import pytest
import torch
import transformers
from transformers import LogitsProcessorList
from transformers import Phi3Config as HFPhi3Config
from transformers import Phi3ForCausalLM as HFPhi3ForCausalLM

from tutorial_lib.constrained import (
    ChoiceConstraint,
    JSONSchemaConstraint,
    RegexConstraint,
    choice_regex,
    json_schema_regex,
)
from tutorial_lib.generation import generate
from tutorial_lib.loading import from_hf
from tutorial_lib.tokenization import load_tokenizer

transformers.logging.set_verbosity_error()

CHOICES = ["positive", "negative", "neutral"]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "mood": {"enum": ["happy", "sad", "calm"]},
    },
}
N_SEEDS = 20


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def hf_model(tokenizer):
    """A tiny random transformers Phi-3 over SmolLM2's 49,152 tokens, ending at <|im_end|>."""
    torch.manual_seed(0)
    config = HFPhi3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    return HFPhi3ForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model(hf_model):
    return from_hf(hf_model)


def prompt(tokenizer, batch: int = 1) -> torch.Tensor:
    ids = tokenizer("Answer in JSON:", return_tensors="pt").input_ids  # (1, seq)
    return ids.repeat(batch, 1)


def outputs(tokenizer, ids: torch.Tensor, prompt_length: int) -> list[str]:
    """The text of each row after the prompt, up to the end token."""
    return [tokenizer.decode(row[prompt_length:], skip_special_tokens=True) for row in ids]


def sampled(model, tokenizer, constraint, batch: int = N_SEEDS) -> list[str]:
    ids = prompt(tokenizer, batch)
    generator = torch.Generator().manual_seed(0)
    out = generate(
        model,
        ids,
        constraint.max_new_tokens,
        temperature=1.0,
        generator=generator,
        logits_processor=constraint,
    )
    # Each row finished: it ends with the end token (then padding, if others went on).
    assert all(tokenizer.eos_token_id in row[ids.shape[1] :].tolist() for row in out)
    return outputs(tokenizer, out, ids.shape[1])


# --------------------------------------------------------------------------------------
# Every output is valid
# --------------------------------------------------------------------------------------
def test_unconstrained_random_model_writes_junk(model, tokenizer):
    # The baseline: without the constraint, the random model produces no valid answer.
    ids = prompt(tokenizer, N_SEEDS)
    generator = torch.Generator().manual_seed(0)
    out = generate(model, ids, 12, temperature=1.0, generator=generator)
    assert not any(text in CHOICES for text in outputs(tokenizer, out, ids.shape[1]))


def test_every_sampled_choice_is_one_of_the_choices(model, tokenizer):
    texts = sampled(model, tokenizer, ChoiceConstraint(tokenizer, CHOICES))
    assert all(text in CHOICES for text in texts)
    assert len(set(texts)) > 1  # sampling still chooses: not always the same answer


def test_every_sampled_json_parses_and_validates(model, tokenizer):
    texts = sampled(model, tokenizer, JSONSchemaConstraint(tokenizer, SCHEMA))
    for text in texts:
        value = json.loads(text)  # raises if it does not parse
        jsonschema.validate(value, {**SCHEMA, "required": list(SCHEMA["properties"])})
        assert list(value) == list(SCHEMA["properties"])  # the keys, in order
    assert len(set(texts)) > 1


def test_greedy_json_is_valid_with_exact_and_top_n_scans(model, tokenizer):
    # Greedy decoding takes the best valid token, which the top-n scan always includes.
    ids = prompt(tokenizer)
    results = []
    for top_n in (None, 4):
        constraint = JSONSchemaConstraint(tokenizer, SCHEMA, top_n=top_n)
        results.append(generate(model, ids, constraint.max_new_tokens, logits_processor=constraint))
    assert results[0].tolist() == results[1].tolist()
    jsonschema.validate(json.loads(outputs(tokenizer, results[0], ids.shape[1])[0]), SCHEMA)


def test_regex_constraint_with_a_str_pattern(model, tokenizer):
    constraint = RegexConstraint(tokenizer, r"[0-9]{3}-[0-9]{4}")
    ids = prompt(tokenizer, 8)
    out = generate(
        model,
        ids,
        10,
        temperature=1.0,
        generator=torch.Generator().manual_seed(1),
        logits_processor=constraint,
    )
    for text in outputs(tokenizer, out, ids.shape[1]):
        assert len(text) == 8 and text[3] == "-" and (text[:3] + text[4:]).isdigit()


# --------------------------------------------------------------------------------------
# The mask, against a brute-force scan of the whole vocabulary
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("so_far", ["", "pos", "ne", "neutral"])
def test_choice_mask_equals_a_brute_force_scan(tokenizer, so_far):
    # The reference decodes every token and keeps those that leave a prefix of a choice
    # (plus the end token once the text is a choice). ASCII choices: a token holding part of
    # a UTF-8 character decodes to "\ufffd" and is rightly never a prefix.
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    special = set(tokenizer.added_tokens_decoder)
    expected = {
        i
        for i, t in enumerate(texts)
        if i not in special and t and any(c.startswith(so_far + t) for c in CHOICES)
    }
    if so_far in CHOICES:
        expected.add(tokenizer.eos_token_id)

    constraint = ChoiceConstraint(tokenizer, CHOICES, top_n=None)
    prompt_ids = torch.tensor([[1, 2, 3]])
    constraint.begin(prompt_ids.shape[1])  # the output starts after the prompt
    ids = prompt_ids
    for token in tokenizer(so_far).input_ids:  # feed the text so far, one token per call
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        scores = constraint(ids, torch.zeros(1, len(tokenizer)))
    scores = scores if so_far else constraint(prompt_ids, torch.zeros(1, len(tokenizer)))
    assert set(scores[0].isfinite().nonzero().squeeze(1).tolist()) == expected


def test_partial_utf8_tokens_are_allowed_inside_strings(tokenizer):
    # "é" is two bytes; a token holding only its first byte may start a string value.
    constraint = JSONSchemaConstraint(tokenizer, SCHEMA)
    text = b'{"name": "'
    assert constraint.is_prefix(text + "é".encode()[:1])
    assert not constraint.is_prefix(text + b"\xff")  # never valid UTF-8
    assert not constraint.is_prefix(text + b"\x80")  # a continuation byte cannot start one
    assert constraint.is_complete(b'{"name": "Zo\xc3\xa9", "age": -3, "mood": "calm"}')
    assert not constraint.is_complete(b'{"name": "Zoe", "age": 03, "mood": "calm"}')
    assert not constraint.is_complete(b'{"name": "Zoe", "age": 3, "mood": "angry"}')
    assert not constraint.is_complete(b'{"name": "' + b"x" * 13 + b'", "age": 3, "mood": "sad"}')


def test_regex_layout_is_json_dumps(tokenizer):
    value = {"name": "Ada", "age": 36, "mood": "happy"}
    pattern, max_bytes = json_schema_regex(SCHEMA)
    constraint = RegexConstraint(tokenizer, pattern)
    assert constraint.is_complete(json.dumps(value).encode())
    assert (
        len(json.dumps({"name": "é" * 6, "age": -123456789, "mood": "happy"}).encode()) <= max_bytes
    )


# --------------------------------------------------------------------------------------
# Inside transformers' generate
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["choice", "json"])
def test_greedy_equals_transformers_generate_with_the_same_processor(
    hf_model, model, tokenizer, kind
):
    def make():
        if kind == "choice":
            return ChoiceConstraint(tokenizer, CHOICES)
        return JSONSchemaConstraint(tokenizer, SCHEMA)

    ids = prompt(tokenizer, 3)
    ids[1, -1] = tokenizer("Reply").input_ids[0]  # three different prompts
    ids[2, -2] = tokenizer("Say").input_ids[0]
    constraint = make()
    constraint.begin(ids.shape[1])  # transformers' generate does not: we say where output starts
    expected = hf_model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=constraint.max_new_tokens,
        do_sample=False,
        logits_processor=LogitsProcessorList([constraint]),
    )
    got = generate(model, ids, make().max_new_tokens, logits_processor=make())
    assert got.tolist() == expected.tolist()


def test_seeded_sampling_equals_transformers_generate(hf_model, model, tokenizer):
    ids = prompt(tokenizer, 4)
    constraint = JSONSchemaConstraint(tokenizer, SCHEMA)
    constraint.begin(ids.shape[1])
    torch.manual_seed(5)
    expected = hf_model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=constraint.max_new_tokens,
        do_sample=True,
        top_k=None,
        logits_processor=LogitsProcessorList([constraint]),
    )
    torch.manual_seed(5)
    got = generate(
        model, ids, constraint.max_new_tokens, temperature=1.0, logits_processor=constraint
    )
    assert got.tolist() == expected.tolist()


def test_a_new_generation_resets_the_prompt(model, tokenizer):
    # One constraint object, two generate calls: the second starts afresh.
    constraint = ChoiceConstraint(tokenizer, CHOICES)
    first = generate(model, prompt(tokenizer), 10, logits_processor=constraint)
    again = generate(model, prompt(tokenizer), 10, logits_processor=constraint)
    assert first.tolist() == again.tolist()


def test_one_constraint_serves_different_prompts_in_turn(model, tokenizer):
    # Prompts of different lengths, one constraint object: each output is what a fresh
    # constraint gives, whatever the generation before it was.
    short = prompt(tokenizer)
    long = torch.cat([short, tokenizer(" Please answer now.", return_tensors="pt").input_ids], 1)
    shared = ChoiceConstraint(tokenizer, CHOICES)
    for ids in (long, short, long, short[:, :-1]):
        got = generate(model, ids, shared.max_new_tokens, logits_processor=shared)
        fresh = ChoiceConstraint(tokenizer, CHOICES)
        assert (
            got.tolist()
            == generate(model, ids, fresh.max_new_tokens, logits_processor=fresh).tolist()
        )
        reply = tokenizer.decode(got[0, ids.shape[1] :], skip_special_tokens=True)
        assert reply in CHOICES
        assert shared.prompt_length == ids.shape[1]  # told, not inferred


def test_a_constraint_must_be_told_where_the_prompt_ends(tokenizer):
    constraint = ChoiceConstraint(tokenizer, CHOICES)
    scores = torch.zeros(1, len(tokenizer))
    with pytest.raises(RuntimeError, match=r"call constraint.begin\(prompt_length\)"):
        constraint(torch.tensor([[1, 2]]), scores)
    constraint.begin(3)
    with pytest.raises(ValueError, match="fewer than the prompt's 3"):
        constraint(torch.tensor([[1, 2]]), scores)
    with pytest.raises(ValueError, match="prompt_length=-1 must be an integer >= 0"):
        constraint.begin(-1)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("choices", [[], "yes", ["yes", ""], ["yes", 1]])
def test_bad_choices_raise(choices):
    with pytest.raises(ValueError, match="choices="):
        choice_regex(choices)


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"type": "array"}, "'type': 'object'"),
        ({"type": "object", "properties": {}}, "properties"),
        ({"type": "object", "properties": {"x": {"type": "number"}}}, "not supported"),
        ({"type": "object", "properties": {"x": {"enum": []}}}, "enum"),
        ({"type": "object", "properties": {"x": {"type": "string", "maxLength": -1}}}, "maxLength"),
    ],
)
def test_bad_schema_raises(schema, message):
    with pytest.raises(ValueError, match=message):
        json_schema_regex(schema)


def test_bad_constraint_arguments_raise(tokenizer):
    with pytest.raises(ValueError, match="top_n=0"):
        RegexConstraint(tokenizer, "a", top_n=0)
    with pytest.raises(TypeError, match="pattern"):
        RegexConstraint(tokenizer, 3)


def test_scores_smaller_than_the_vocabulary_raise(tokenizer):
    constraint = ChoiceConstraint(tokenizer, CHOICES)
    with pytest.raises(ValueError, match="fewer than the tokenizer"):
        constraint(torch.tensor([[1, 2]]), torch.zeros(1, 64))


def test_generate_rejects_a_processor_that_is_not_callable(model, tokenizer):
    with pytest.raises(TypeError, match="logits_processor"):
        generate(model, prompt(tokenizer), 3, logits_processor="json")
