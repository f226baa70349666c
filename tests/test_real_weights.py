"""The engine on real weights: SmolLM2-135M-Instruct (the offline preset), fp32 on the CPU.

The same checkpoint is loaded twice, by ``tutorial_lib.load`` into our Phi-3 decoder (its
separate q/k/v and gate/up matrices fused on load) and by transformers into its own
``LlamaForCausalLM``; both must then predict the same tokens.
"""

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM

from tutorial_lib import DEFAULT_MODEL
from tutorial_lib.generation import chat, chat_prompt, generate, stream_text
from tutorial_lib.loading import load, resolve_model_dir
from tutorial_lib.phi3 import Phi3ForCausalLM

pytestmark = pytest.mark.slow

transformers.logging.set_verbosity_error()

# Prompts whose greedy continuations run the full 50 tokens (no end-of-sequence before).
PROMPTS = [
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three primary colors are",
]


@pytest.fixture(scope="module")
def ours():
    return load(DEFAULT_MODEL, device="cpu")  # (model, tokenizer)


@pytest.fixture(scope="module")
def hf():
    model_dir = resolve_model_dir(DEFAULT_MODEL)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def test_load_gives_our_phi3_with_the_course_layout(ours):
    model, tokenizer = ours
    assert isinstance(model, Phi3ForCausalLM)
    assert (model.device.type, model.dtype) == ("cpu", torch.float32)
    assert len(model.model.layers) == 30
    attn = model.model.layers[0].self_attn
    # SmolLM2: 9 query heads and 3 key/value heads of 64 dims, fused into one projection.
    assert attn.qkv_proj.weight.shape == ((9 + 2 * 3) * 64, 576)
    assert model.model.layers[0].mlp.gate_up_proj.weight.shape == (2 * 1536, 576)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied embeddings
    assert tokenizer.eos_token == "<|im_end|>" and model.config.eos_token_id == 2


@torch.inference_mode()
def test_capital_of_france_is_paris(ours):
    model, tokenizer = ours
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids  # (1, 5)
    # The course's steps: the decoder's hidden states, then the LM head.
    hidden = model.model(ids)[0]
    assert hidden.shape == (1, 5, 576)
    logits = model.lm_head(hidden)
    assert logits.shape == (1, 5, 49152)
    assert tokenizer.decode(logits[0, -1].argmax()) == " Paris"
    assert tokenizer.decode(generate(model, ids, 1)[0, -1]) == " Paris"


@torch.inference_mode()
def test_logits_match_transformers(ours, hf):
    model, tokenizer = ours
    ids = tokenizer(PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    expected = hf(**ids).logits
    got = model(ids.input_ids, attention_mask=ids.attention_mask).logits
    real = ids.attention_mask.bool()  # compare where there are tokens, not padding
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=0)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_50_greedy_tokens_equal_transformers(ours, hf, prompt):
    model, tokenizer = ours
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = hf.generate(ids, max_new_tokens=50, do_sample=False)
    got = generate(model, ids, 50)
    assert got.shape == (1, ids.shape[1] + 50)
    assert got.tolist() == expected.tolist()


def test_chat_template_and_reply(ours, hf):
    model, tokenizer = ours
    question = "What is the capital of France?"
    ids = chat_prompt(tokenizer, question)
    # The template wraps each turn in <|im_start|>role ... <|im_end|> and opens the
    # assistant's turn at the end, so the model writes the reply next.
    turns = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(ids[0]).endswith(turns)
    reply = chat(model, tokenizer, question, max_new_tokens=30)
    assert "Paris" in reply
    # The same reply as transformers' generate, which stops at the same end-of-turn token.
    with torch.inference_mode():
        expected = hf.generate(ids, max_new_tokens=30, do_sample=False)
    assert reply == tokenizer.decode(expected[0, ids.shape[1] :], skip_special_tokens=True)


def test_stream_text_pieces_add_up_to_the_reply(ours):
    model, tokenizer = ours
    ids = tokenizer("Once upon a time", return_tensors="pt").input_ids
    pieces = list(stream_text(model, tokenizer, ids, 12))
    assert len(pieces) > 1  # text arrives piece by piece
    new_ids = generate(model, ids, 12)[0, ids.shape[1] :]
    assert "".join(pieces) == tokenizer.decode(new_ids, skip_special_tokens=True)
