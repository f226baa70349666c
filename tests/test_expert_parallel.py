"""tutorial_lib.expert_parallel against the single-process SparseMoeBlock on the same weights.

Every call starts real gloo processes (a few seconds each), so the parity tests use tiny
blocks and one call per case; the input checks run before any process starts.
"""

from __future__ import annotations

import pytest
import torch

from tutorial_lib.expert_parallel import expert_parallel_moe
from tutorial_lib.moe import SparseMoeBlock

HIDDEN = 16


def make_block(num_experts=4, top_k=2, shared=None, seed=0) -> SparseMoeBlock:
    torch.manual_seed(seed)
    block = SparseMoeBlock(HIDDEN, 24, num_experts, top_k, shared_expert_intermediate_size=shared)
    block.reset_parameters(std=0.5)  # clear routing preferences
    return block


@pytest.mark.parametrize(
    ("world_size", "num_experts", "top_k", "shared", "tokens"),
    [(2, 4, 2, None, 13), (4, 8, 2, 20, 16), (1, 4, 1, None, 5)],
)
def test_expert_parallel_equals_the_single_process_block(
    world_size, num_experts, top_k, shared, tokens
):
    block = make_block(num_experts, top_k, shared, seed=world_size)
    x = torch.randn(tokens, HIDDEN, generator=torch.Generator().manual_seed(1))
    original = x.clone()
    out, sent = expert_parallel_moe(block, x, world_size)
    with torch.no_grad():
        expected = block(x[None])[0]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # sent[i, j]: the token copies of process i whose expert lives on process j
    _, _, index = block.route(x)
    per_rank = num_experts // world_size
    owner = index // per_rank  # (tokens, top_k)
    for i, chunk in enumerate(torch.arange(tokens).tensor_split(world_size)):
        counts = torch.bincount(owner[chunk].flatten(), minlength=world_size)
        assert torch.equal(sent[i], counts)
    assert sent.sum() == tokens * top_k
    assert torch.equal(x, original) and not x.is_shared()


def test_bad_input_is_refused_before_any_process_starts():
    block = make_block()
    x = torch.randn(6, HIDDEN)
    with pytest.raises(ValueError, match="divide num_experts=4"):
        expert_parallel_moe(block, x, 3)
    with pytest.raises(ValueError, match="world_size=0"):
        expert_parallel_moe(block, x, 0)
    with pytest.raises(TypeError, match="world_size=2.0"):
        expert_parallel_moe(block, x, 2.0)
    with pytest.raises(ValueError, match=r"shape \(tokens, 16\)"):
        expert_parallel_moe(block, x[None], 2)
    with pytest.raises(TypeError, match="floating-point"):
        expert_parallel_moe(block, x.long(), 2)
    with pytest.raises(TypeError, match="SparseMoeBlock"):
        expert_parallel_moe(torch.nn.Linear(2, 2), x, 2)
    with pytest.raises(ValueError, match="device meta"):
        expert_parallel_moe(block, x.to("meta"), 2)
    block.capacity_factor = 1.0
    with pytest.raises(ValueError, match="capacity_factor"):
        expert_parallel_moe(block, x, 2)
