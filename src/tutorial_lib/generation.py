"""From next-token logits to text: sampling settings, the generation loop, streaming, chat.

A language model only scores the next token. Text comes from a loop: score, pick one token,
append it, repeat. How the token is picked is the decoding strategy:

- greedy (``temperature=0``): always the most likely token; the same text every time;
- temperature: divide the logits by T before the softmax; T < 1 sharpens, T > 1 flattens;
- top-k: sample only among the k most likely tokens;
- top-p (nucleus): sample only among the most likely tokens whose probabilities add up to p;
- min-p: sample only among the tokens at least ``min_p`` times as likely as the most likely one.

The filters run in the order of transformers' ``generate``: temperature, top-k, top-p, min-p.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

import torch

from .cache import KVCache
from .phi3 import check_input_ids
from .validation import check_int, check_number, check_optional_int

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedTokenizerBase

    from .phi3 import Phi3ForCausalLM

__all__ = [
    "GroupedLogits",
    "apply_temperature",
    "LogitsProcessor",
    "MODEL_EOS",
    "chat",
    "chat_batch",
    "chat_prompt",
    "decode_step",
    "generate",
    "group_logits",
    "min_p_filter",
    "prefill",
    "process_logits",
    "sample_next_token",
    "stream",
    "stream_text",
    "top_k_filter",
    "top_p_filter",
]


# --------------------------------------------------------------------------------------
# Logits processors: (batch, vocab) logits in, (batch, vocab) logits out
# --------------------------------------------------------------------------------------
def _check_sampling(
    temperature: float, top_k: int | None, top_p: float, min_p: float = 0.0
) -> None:
    check_number("temperature", temperature, minimum=0, hint="(0 means greedy)")
    check_optional_int("top_k", top_k, minimum=1, none_means="no limit")
    check_number(
        "top_p", top_p, minimum=0, maximum=1, exclusive_minimum=True, hint="(1 means no limit)"
    )
    check_number("min_p", min_p, minimum=0, maximum=1, hint="(0 means no limit)")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by ``temperature`` (> 0): below 1 the distribution sharpens, above 1 it flattens."""
    _check_sampling(temperature, None, 1.0)
    if temperature == 0:
        raise ValueError(
            "temperature=0 means greedy decoding: take the argmax instead of dividing by 0"
        )
    return logits / temperature


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` highest logits (and any tied with the last of them); the rest -> -inf."""
    _check_sampling(1.0, top_k, 1.0)
    top_k = min(top_k, logits.shape[-1])
    kth_best = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (batch, 1)
    return logits.masked_fill(logits < kth_best, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens until their probability reaches ``top_p``.

    The token that crosses ``top_p`` is kept, so at least one token always survives. Said from
    the other end, as transformers' ``TopPLogitsWarper`` computes it: drop the least likely
    tokens while together they hold at most ``1 - top_p`` of the probability. Sorting the same
    way also breaks ties at the edge of the nucleus the same way.
    """
    _check_sampling(1.0, None, top_p)
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1)  # least likely first: (batch, vocab)
    # Probability of each token plus every less likely one: the tail we could drop.
    tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (batch, vocab)
    sorted_remove = tail_mass <= 1 - top_p
    sorted_remove[..., -1] = False  # the most likely token always stays
    remove = sorted_remove.scatter(-1, sorted_idx, sorted_remove)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep the tokens whose probability is at least ``min_p`` times the most likely one's.

    The threshold moves with the model's confidence: when the top token has p = 0.9 and
    ``min_p=0.1``, only tokens with p >= 0.09 stay; when it has p = 0.05, every token with
    p >= 0.005 does. The most likely token always stays. Computed as transformers'
    ``MinPLogitsWarper`` does (Nguyen et al., 2024, "Turning Up the Heat: Min-p Sampling").
    """
    _check_sampling(1.0, None, 1.0, min_p)
    probs = logits.softmax(dim=-1)  # (batch, vocab)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)  # (batch, 1)
    return logits.masked_fill(probs < threshold, float("-inf"))


def process_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    *,
    min_p: float = 0.0,
) -> torch.Tensor:
    """Temperature, then top-k, then top-p, then min-p: the logits that sampling draws from."""
    _check_sampling(temperature, top_k, top_p, min_p)
    if temperature != 1.0:
        logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    if min_p > 0.0:
        logits = min_p_filter(logits, min_p)
    return logits


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    min_p: float = 0.0,
) -> torch.Tensor:
    """One token per row of ``logits`` (batch, vocab): greedy at temperature 0, else sampled."""
    _check_sampling(temperature, top_k, top_p, min_p)
    if temperature == 0:
        return logits.argmax(dim=-1)  # (batch,)
    probs = process_logits(logits.float(), temperature, top_k, top_p, min_p=min_p)
    probs = probs.softmax(dim=-1)  # (batch, vocab)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)  # (batch,)


# --------------------------------------------------------------------------------------
# A next-token distribution in a small, exact form (the data of the sampling explorer)
# --------------------------------------------------------------------------------------
class GroupedLogits(NamedTuple):
    """A logit vector rounded to ``1 / scale``, as the few most likely tokens plus groups.

    ``rounded`` is the whole (vocab,) vector; it equals ``units / scale`` in float32, where
    ``units`` are integers. The most likely tokens are listed one by one; every other token is
    counted in the group of its rounded value. Softmax sums, top-k ranks and the top-p cut
    depend only on the values and how many tokens have each, so this form is enough to
    compute ``process_logits(rounded, ...)`` exactly, with a few hundred numbers instead of
    one per vocabulary token.
    """

    rounded: torch.Tensor  # (vocab,) float32: the logits every computation starts from
    scale: int  # the logits are multiples of 1 / scale
    top_ids: list[int]  # the tokens listed one by one, most likely first (ties: by id)
    top_units: list[int]  # their rounded logits, times scale
    tail_units: list[int]  # every other rounded logit value, times scale, highest first
    tail_counts: list[int]  # how many of the other tokens have each value


def group_logits(logits: torch.Tensor, n_top: int = 25, decimals: int = 2) -> GroupedLogits:
    """Round ``logits`` (vocab,) to ``decimals`` places and group all but the top tokens.

    The ``n_top`` most likely tokens are listed one by one, plus any tied with the last of
    them, so that no group shares its value with a listed token. The most likely token must
    be unique after rounding (greedy decoding must have one answer).
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 1:
        raise ValueError(
            f"logits must be a 1-D tensor (vocab,), got {getattr(logits, 'shape', logits)!r}"
        )
    check_int("n_top", n_top, minimum=1, maximum=len(logits))
    check_int("decimals", decimals, minimum=0, maximum=4)
    scale = 10**decimals
    units = torch.round(logits.detach().double().cpu() * scale).long()  # (vocab,) integers
    rounded = units.float() / scale  # (vocab,) float32, the same division everywhere
    # Most likely first; ties by token id, so the order is the same on every machine.
    values, ids = torch.sort(units, descending=True, stable=True)  # stable: ties by id
    if len(values) > 1 and values[0] == values[1]:
        raise ValueError(
            f"the two most likely tokens tie after rounding to {decimals} decimals; "
            "use more decimals"
        )
    n_listed = int((values >= values[n_top - 1]).sum())  # n_top, plus ties with the last one
    tail_units, tail_counts = torch.unique(values[n_listed:], return_counts=True)  # ascending
    return GroupedLogits(
        rounded=rounded,
        scale=scale,
        top_ids=ids[:n_listed].tolist(),
        top_units=values[:n_listed].tolist(),
        tail_units=tail_units.flip(0).tolist(),
        tail_counts=tail_counts.flip(0).tolist(),
    )


# --------------------------------------------------------------------------------------
# The generation loop
# --------------------------------------------------------------------------------------
# A hook on the loop, with the signature of transformers' ``LogitsProcessor``: it gets the ids
# so far (batch, seq) and the next-token logits (batch, vocab) and returns new logits (batch,
# vocab). It runs before temperature, top-k and top-p, as user processors do in transformers'
# ``generate``, so transformers' own processors work here too (``tutorial_lib.constrained``).
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# The default of ``eos_token_id``: stop at the model's own end token(s), ``config.eos_token_id``,
# as transformers' ``generate`` does. ``None`` means "never stop early".
MODEL_EOS = "model"


def _end_tokens(model: Phi3ForCausalLM, eos_token_id: int | list[int] | str | None) -> list[int]:
    """The token ids that end a sequence, as a list (empty: never stop early)."""
    if eos_token_id == MODEL_EOS:
        eos_token_id = model.config.eos_token_id
    elif isinstance(eos_token_id, str):
        raise ValueError(
            f"eos_token_id={eos_token_id!r} must be {MODEL_EOS!r} (the model's end token), "
            "a token id, a list of token ids, or None (never stop early)"
        )
    if eos_token_id is None:
        return []
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    vocab_size = model.config.vocab_size
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size for i in ids):
        raise ValueError(
            f"eos_token_id={eos_token_id!r} must be token ids in [0, {vocab_size}) "
            f"(or {MODEL_EOS!r}, or None)"
        )
    return ids


def stream(
    model: Phi3ForCausalLM,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    min_p: float = 0.0,
    use_cache: bool = True,
    attention_mask: torch.Tensor | None = None,
    eos_token_id: int | list[int] | str | None = MODEL_EOS,
    generator: torch.Generator | None = None,
    logits_processor: LogitsProcessor | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the new tokens one step at a time, each a (batch,) tensor, as soon as it is made.

    Arguments as for ``generate``. The arguments are checked at once, before the first token.
    """
    _check_sampling(temperature, top_k, top_p, min_p)
    _check_prompt(model, input_ids, max_new_tokens, attention_mask)
    eos_ids = _end_tokens(model, eos_token_id)
    if logits_processor is not None and not callable(logits_processor):
        raise TypeError(
            f"logits_processor must be None or a callable (input_ids, logits) -> logits, "
            f"got {type(logits_processor).__name__}"
        )
    sampling = dict(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, generator=generator
    )
    return _generate_tokens(
        model,
        input_ids,
        max_new_tokens,
        use_cache=use_cache,
        attention_mask=attention_mask,
        eos_ids=eos_ids,
        sampling=sampling,
        logits_processor=logits_processor,
    )


def _check_prompt(
    model: Phi3ForCausalLM,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    attention_mask: torch.Tensor | None,
) -> None:
    check_int("max_new_tokens", max_new_tokens, minimum=1)
    check_input_ids(input_ids, model.config.vocab_size)
    context = model.config.context_length
    if input_ids.shape[1] + max_new_tokens > context:
        raise ValueError(
            f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds "
            f"the context length of {context} tokens; shorten the prompt or ask for fewer tokens"
        )
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(attention_mask.shape)}"
        )


# The two halves of every step with a KV cache. ``prefill`` runs the prompt once, filling the
# cache; ``decode_step`` runs only the new token(s) and attends over the cache. Speculative
# decoding (chapter 14) calls ``decode_step`` with several tokens to verify them at once, and
# ``KVCache.crop`` to forget the ones it rejects.
@torch.inference_mode()
def prefill(
    model: Phi3ForCausalLM,
    input_ids: torch.Tensor,
    cache: KVCache | None,
    attention_mask: torch.Tensor | None = None,
    *,
    check_ids: bool = True,
) -> torch.Tensor:
    """Run the prompt through the model, filling ``cache``; the next-token logits.

    Args:
        model: a ``Phi3ForCausalLM``.
        input_ids: (batch, seq) the prompt's token ids.
        cache: an empty ``KVCache`` to fill with the prompt's keys and values, or None (no
            cache: the whole sequence is run and nothing is kept).
        attention_mask: (batch, seq), 1 for tokens and 0 for (left) padding.
        check_ids: check that the ids are in the vocabulary (a host-device sync on a GPU).

    Returns:
        (batch, vocab) the logits of the last position: the scores of the first new token.
    """
    hidden = model.model(input_ids, attention_mask, past_key_values=cache, check_ids=check_ids)[0]
    return model.lm_head(hidden[:, -1])  # only the last position predicts: (batch, vocab)


@torch.inference_mode()
def decode_step(
    model: Phi3ForCausalLM,
    token_ids: torch.Tensor,
    cache: KVCache,
    attention_mask: torch.Tensor | None = None,
    *,
    check_ids: bool = True,
) -> torch.Tensor:
    """Run new tokens after the ``cache``d ones, appending their keys and values; their logits.

    One token is a step of ordinary decoding. Several tokens go through in one forward pass,
    each attending to the cache and to the new tokens before it: the logits are those of as
    many single steps (up to rounding), which is how speculative decoding verifies a draft.

    Args:
        model: a ``Phi3ForCausalLM``.
        token_ids: (batch, k) the new tokens, k >= 1.
        cache: the ``KVCache`` of every earlier token (from ``prefill`` and earlier steps).
        attention_mask: (batch, cached + k), 1 for tokens and 0 for (left) padding.
        check_ids: check that the ids are in the vocabulary (a host-device sync on a GPU).

    Returns:
        (batch, k, vocab) logits: position i scores the token after ``token_ids[:, i]``.
    """
    if not isinstance(cache, KVCache):
        raise TypeError(
            f"cache must be the KVCache that prefill filled, got {type(cache).__name__}"
        )
    hidden = model.model(token_ids, attention_mask, past_key_values=cache, check_ids=check_ids)[0]
    return model.lm_head(hidden)  # (batch, k, vocab)


@torch.inference_mode()
def _generate_tokens(
    model: Phi3ForCausalLM,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    use_cache: bool,
    attention_mask: torch.Tensor | None,
    eos_ids: list[int],
    sampling: dict,
    logits_processor: LogitsProcessor | None = None,
) -> Iterator[torch.Tensor]:
    config, device = model.config, model.device
    ids = input_ids.to(device)  # (batch, seq): the prompt, then every new token
    mask = attention_mask.to(device) if attention_mask is not None else None
    batch, total_length = ids.shape[0], ids.shape[1] + max_new_tokens
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    pad = config.pad_token_id if config.pad_token_id is not None else (eos_ids or [0])[0]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    begin = getattr(logits_processor, "begin", None)
    if callable(begin):
        begin(ids.shape[1])  # a constraint learns where the prompt ends and its output starts

    # The KV cache is allocated once, for the prompt and every token to come.
    cache = KVCache(config, batch, total_length, device, model.dtype) if use_cache else None
    # The prompt was checked once (_check_prompt); new tokens come from the vocabulary.
    logits = prefill(model, ids, cache, mask, check_ids=False)  # (batch, vocab)
    for step in range(max_new_tokens):
        if logits_processor is not None:
            logits = logits_processor(ids, logits)  # e.g. forbid tokens: (batch, vocab)
        token = sample_next_token(logits, **sampling)  # (batch,)
        # A sequence that has ended emits padding while the others go on.
        token = torch.where(finished, pad, token)
        finished |= torch.isin(token, eos)
        yield token
        ids = torch.cat([ids, token[:, None]], dim=-1)
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=-1)
        if finished.all() or step == max_new_tokens - 1:
            return
        # The next token's logits: (batch, vocab).
        if cache is None:
            # Without a cache, the whole sequence goes through at every step.
            logits = prefill(model, ids, None, mask, check_ids=False)
        elif (
            config.rope_type == "longrope"
            and cache.length == config.rope_parameters["original_max_position_embeddings"]
        ):
            # longrope switches to its long factors once the sequence outgrows the pre-training
            # context: keys cached with the short ones are stale, so compute them all again.
            cache = KVCache(config, batch, total_length, device, model.dtype)
            logits = prefill(model, ids, cache, mask, check_ids=False)
        else:
            # Only the new token goes through; it attends over the cache.
            logits = decode_step(model, token[:, None], cache, mask, check_ids=False)[:, -1]


def generate(
    model: Phi3ForCausalLM,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    min_p: float = 0.0,
    use_cache: bool = True,
    attention_mask: torch.Tensor | None = None,
    eos_token_id: int | list[int] | str | None = MODEL_EOS,
    generator: torch.Generator | None = None,
    logits_processor: LogitsProcessor | None = None,
) -> torch.Tensor:
    """Continue ``input_ids`` by up to ``max_new_tokens`` tokens; returns prompt + new ids.

    Args:
        model: a ``Phi3ForCausalLM``.
        input_ids: (batch, seq) token ids; pad a batch on the left and pass ``attention_mask``.
        max_new_tokens: how many tokens to add (fewer if every sequence reaches ``eos_token_id``).
        temperature: 0 for greedy decoding, else the sampling temperature.
        top_k: sample only among the ``top_k`` most likely tokens (None: all).
        top_p: sample only among the most likely tokens holding probability ``top_p`` (1: all).
        min_p: sample only among tokens at least ``min_p`` times as likely as the most
            likely one (0: all).
        use_cache: reuse keys and values of earlier tokens (KV cache) instead of recomputing.
        attention_mask: (batch, seq), 1 for tokens and 0 for padding.
        eos_token_id: token id(s) that end a sequence; later positions get the pad token.
            By default the model's own (``config.eos_token_id``); None never stops early.
        generator: a seeded ``torch.Generator`` for reproducible sampling.
        logits_processor: a callable ``(input_ids, logits) -> logits`` applied to each step's
            (batch, vocab) logits before sampling, such as a transformers ``LogitsProcessor``
            or a ``tutorial_lib.constrained`` constraint. One with a ``begin(prompt_length)``
            method (the constraints) is told the prompt's length when the generation starts.

    Returns:
        (batch, seq + number of new tokens) token ids.
    """
    steps = stream(
        model,
        input_ids,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        use_cache=use_cache,
        attention_mask=attention_mask,
        eos_token_id=eos_token_id,
        generator=generator,
        logits_processor=logits_processor,
    )
    new_tokens = [token[:, None] for token in steps]
    return torch.cat([input_ids.to(model.device), *new_tokens], dim=-1)


# --------------------------------------------------------------------------------------
# Text in, text out: chat templates and streaming text
# --------------------------------------------------------------------------------------
def chat_prompt(
    tokenizer: PreTrainedTokenizerBase,
    messages: str | list[dict[str, str]],
    system: str | None = None,
) -> torch.Tensor:
    """Token ids (1, seq) of a chat, formatted by the tokenizer's chat template.

    ``messages`` is a user message, or a list of ``{"role": ..., "content": ...}`` dicts. The
    template ends with the assistant's turn opened, so the model writes the reply next.
    """
    if tokenizer.chat_template is None:
        raise ValueError(
            f"the tokenizer {tokenizer.name_or_path!r} has no chat template; "
            "use a chat (instruct) model"
        )
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    return encoded["input_ids"]


def stream_text(
    model: Phi3ForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    **kwargs,
) -> Iterator[str]:
    """Yield the reply as text pieces while it is made (one sequence; ``kwargs`` as ``generate``).

    Stops at the model's end-of-sequence token(s) unless ``eos_token_id`` says otherwise.
    """
    if input_ids.shape[0] != 1:
        raise ValueError(f"stream_text takes one sequence, got a batch of {input_ids.shape[0]}")
    new_ids: list[int] = []
    shown = ""
    for token in stream(model, input_ids, max_new_tokens, **kwargs):
        new_ids.append(int(token))
        # Decode everything so far: a character may span several tokens.
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            continue  # an incomplete UTF-8 character: wait for the next token
        yield text[len(shown) :]
        shown = text


def chat(
    model: Phi3ForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    messages: str | list[dict[str, str]],
    max_new_tokens: int = 256,
    system: str | None = None,
    **kwargs,
) -> str:
    """The model's reply to a chat (``kwargs`` as ``generate``; greedy by default)."""
    input_ids = chat_prompt(tokenizer, messages, system)
    return "".join(stream_text(model, tokenizer, input_ids, max_new_tokens, **kwargs))


def chat_batch(
    model: Phi3ForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[str | list[dict[str, str]]],
    max_new_tokens: int = 256,
    system: str | None = None,
    **kwargs,
) -> list[str]:
    """The model's replies to several chats at once, one batch (``kwargs`` as ``generate``).

    Each chat is formatted by ``chat_prompt``; the prompts are padded on the left to one
    length, with an attention mask that hides the padding, so each reply is the one its chat
    gets alone (up to floating-point rounding).
    """
    if not isinstance(conversations, list) or not conversations:
        raise ValueError(
            f"conversations={conversations!r} must be a non-empty list; each item a user "
            "message (str) or a chat (list of {'role': ..., 'content': ...} dicts)"
        )
    prompts = [chat_prompt(tokenizer, messages, system)[0] for messages in conversations]
    length = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(prompts), length), pad, dtype=torch.long)  # (batch, seq)
    attention_mask = torch.zeros_like(input_ids)  # 0: padding on the left
    for row, prompt in enumerate(prompts):
        input_ids[row, length - len(prompt) :] = prompt
        attention_mask[row, length - len(prompt) :] = 1
    out = generate(model, input_ids, max_new_tokens, attention_mask=attention_mask, **kwargs)
    end_ids = set(_end_tokens(model, kwargs.get("eos_token_id", MODEL_EOS)))
    replies = []
    for row in out[:, length:].tolist():
        # Keep each reply up to its end token; what follows is padding.
        ends = [i for i, token in enumerate(row) if token in end_ids]
        replies.append(tokenizer.decode(row[: ends[0]] if ends else row, skip_special_tokens=True))
    return replies
