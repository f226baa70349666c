"""Packed documents: several documents in one row, positions reset, a block-diagonal mask.

The engine takes the mask as a 4-D boolean ``attention_mask``; transformers builds the same
mask itself from reset ``position_ids`` (without an attention mask and without a cache).
"""

import pytest
import torch
import transformers
from conftest import tiny_config

from tutorial_lib.loading import from_hf

transformers.logging.set_verbosity_error()

ATOL = 1e-4
LENGTHS = [7, 5, 9]


@pytest.fixture(scope="module")
def pair():
    config = tiny_config("llama")
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    return hf, from_hf(hf)


@pytest.fixture(scope="module")
def packed():
    """Three documents in one row: ids (1, 21), reset positions (1, 21), mask (1, 1, 21, 21)."""
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(3, 96, (n,), generator=g) for n in LENGTHS]
    ids = torch.cat(docs)[None]
    position_ids = torch.cat([torch.arange(n) for n in LENGTHS])[None]
    document = torch.cat([torch.full((n,), i) for i, n in enumerate(LENGTHS)])  # (21,)
    total = ids.shape[1]
    causal = torch.ones(total, total).tril().bool()
    same_document = document[:, None] == document[None, :]
    mask = (causal & same_document)[None, None]
    return docs, ids, position_ids, mask


def split(logits: torch.Tensor) -> list[torch.Tensor]:
    return list(logits[0].split(LENGTHS))


@torch.no_grad()
def test_packed_documents_equal_the_documents_alone(pair, packed):
    _, ours = pair
    docs, ids, position_ids, mask = packed
    logits = ours(ids, attention_mask=mask, position_ids=position_ids).logits
    for doc, got in zip(docs, split(logits), strict=True):
        torch.testing.assert_close(got, ours(doc[None]).logits[0], atol=ATOL, rtol=0)


@torch.no_grad()
def test_packed_documents_match_transformers(pair, packed):
    hf, ours = pair
    _, ids, position_ids, mask = packed
    # transformers sees the resets in position_ids and masks across documents itself.
    expected = hf(ids, position_ids=position_ids, use_cache=False).logits
    got = ours(ids, attention_mask=mask, position_ids=position_ids).logits
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@torch.no_grad()
def test_without_the_mask_later_documents_see_earlier_ones(pair, packed):
    _, ours = pair
    docs, ids, position_ids, _ = packed
    leaky = split(ours(ids, position_ids=position_ids).logits)
    alone = [ours(doc[None]).logits[0] for doc in docs]
    torch.testing.assert_close(leaky[0], alone[0], atol=ATOL, rtol=0)  # nothing before it
    for got, expected in zip(leaky[1:], alone[1:], strict=True):
        assert (got - expected).abs().max() > 0.1


@torch.no_grad()
def test_the_causal_mask_as_a_4d_mask_changes_nothing(pair, packed):
    _, ours = pair
    _, ids, _, _ = packed
    causal = torch.ones(ids.shape[1], ids.shape[1]).tril().bool()[None, None]
    torch.testing.assert_close(
        ours(ids, attention_mask=causal).logits, ours(ids).logits, atol=1e-6, rtol=0
    )


def test_bad_4d_masks_raise(pair, packed):
    _, ours = pair
    _, ids, _, mask = packed
    with pytest.raises(TypeError, match=r"a 4-D attention_mask must be boolean .* got torch.float"):
        ours(ids, attention_mask=mask.float())
    with pytest.raises(ValueError, match=r"shape \(1 or 1, 1, 21, 21\) .* got \(1, 1, 20, 21\)"):
        ours(ids, attention_mask=mask[:, :, 1:])
    hidden = mask.clone()
    hidden[0, 0, 3] = False
    with pytest.raises(ValueError, match=r"hides every key from some query"):
        ours(ids, attention_mask=hidden)
