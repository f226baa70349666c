"""tutorial_lib.moe against transformers' sparse MoE blocks, on tiny random configs (fp32, CPU).

The engine's MoE path (Mixtral through ``from_hf``/``from_pretrained``, cached and padded
generation) is covered by the "mixtral-*" cases of tests/test_parity.py.
"""

import pytest
import torch
import transformers
from conftest import tiny_config
from transformers import (
    LlamaForCausalLM,
    MixtralConfig,
    OlmoeConfig,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)
from transformers.models.mixtral.modeling_mixtral import (
    MixtralSparseMoeBlock,
    load_balancing_loss_func,
)
from transformers.models.olmoe.modeling_olmoe import OlmoeSparseMoeBlock
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from tutorial_lib.generation import generate
from tutorial_lib.loading import from_hf
from tutorial_lib.moe import SparseMoeBlock, load_balancing_loss, router_choices, upcycle
from tutorial_lib.phi3 import Phi3Config, Phi3ForCausalLM

transformers.logging.set_verbosity_error()

HIDDEN = 32
BLOCKS = {
    "mixtral": (
        MixtralSparseMoeBlock,
        MixtralConfig(hidden_size=HIDDEN, intermediate_size=24, num_local_experts=6),
    ),
    "mixtral-eager-top3": (
        MixtralSparseMoeBlock,
        MixtralConfig(
            hidden_size=HIDDEN,
            intermediate_size=24,
            num_local_experts=5,
            num_experts_per_tok=3,
            experts_implementation="eager",
        ),
    ),
    "qwen2-moe-shared-expert": (
        Qwen2MoeSparseMoeBlock,
        Qwen2MoeConfig(
            hidden_size=HIDDEN,
            moe_intermediate_size=24,
            shared_expert_intermediate_size=40,
            num_experts=6,
            num_experts_per_tok=3,
            norm_topk_prob=False,
        ),
    ),
    "qwen3-moe-norm": (
        Qwen3MoeSparseMoeBlock,
        Qwen3MoeConfig(
            hidden_size=HIDDEN,
            moe_intermediate_size=24,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=True,
        ),
    ),
    "qwen3-moe-no-norm": (
        Qwen3MoeSparseMoeBlock,
        Qwen3MoeConfig(
            hidden_size=HIDDEN,
            moe_intermediate_size=24,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=False,
        ),
    ),
    "olmoe-no-norm": (
        OlmoeSparseMoeBlock,
        OlmoeConfig(hidden_size=HIDDEN, intermediate_size=24, num_experts=6, num_experts_per_tok=2),
    ),
    "olmoe-norm": (
        OlmoeSparseMoeBlock,
        OlmoeConfig(
            hidden_size=HIDDEN,
            intermediate_size=24,
            num_experts=6,
            num_experts_per_tok=4,
            norm_topk_prob=True,
        ),
    ),
}


def build_block(case: str) -> torch.nn.Module:
    block_cls, config = BLOCKS[case]
    if getattr(config, "_experts_implementation", None) is None:
        # transformers before ~5.6 leaves it unset on a config built by hand (a model sets
        # it when it is made), and its block then fails to run: take the plain loop.
        config._experts_implementation = "eager"
    torch.manual_seed(0)
    block = block_cls(config).eval()
    # Weights large enough that routing and outputs are far from uniform and far from zero
    # (the default init gives outputs near 1e-3, where any bug would hide under atol).
    for parameter in block.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return block


@pytest.mark.parametrize("case", list(BLOCKS))
@torch.no_grad()
def test_from_hf_block_matches_transformers(case):
    block = build_block(case)
    ours = SparseMoeBlock.from_hf(block)
    x = torch.randn(3, 11, HIDDEN, generator=torch.Generator().manual_seed(1))
    expected = block(x)
    got = ours(x)
    assert got.shape == (3, 11, HIDDEN)
    assert expected.abs().max() > 1.0
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # The router logits are those of transformers' router, one row per token.
    hf_logits, hf_weights, hf_index = block.gate(x.reshape(-1, HIDDEN))
    torch.testing.assert_close(ours.router_logits, hf_logits, atol=1e-6, rtol=0)
    _, weights, index = ours.route(x.reshape(-1, HIDDEN))
    assert index.tolist() == hf_index.tolist()
    torch.testing.assert_close(weights, hf_weights.float(), atol=1e-6, rtol=0)


def test_from_hf_norm_topk_prob_is_read():
    assert SparseMoeBlock.from_hf(build_block("mixtral")).norm_topk_prob  # always renormalises
    assert not SparseMoeBlock.from_hf(build_block("olmoe-no-norm")).norm_topk_prob
    assert SparseMoeBlock.from_hf(build_block("olmoe-norm")).norm_topk_prob
    ours = SparseMoeBlock.from_hf(build_block("qwen2-moe-shared-expert"))
    assert ours.shared_expert is not None and ours.top_k == 3


@torch.no_grad()
def test_renormalised_weights_sum_to_one_and_others_do_not():
    x = torch.randn(20, HIDDEN)
    _, weights, _ = SparseMoeBlock.from_hf(build_block("olmoe-norm")).route(x)
    torch.testing.assert_close(weights.sum(-1), torch.ones(20))
    _, weights, _ = SparseMoeBlock.from_hf(build_block("olmoe-no-norm")).route(x)
    assert (weights.sum(-1) < 1 - 1e-3).all()


@torch.no_grad()
def test_from_hf_keeps_dtype():
    block = build_block("qwen3-moe-norm").to(torch.bfloat16)
    ours = SparseMoeBlock.from_hf(block)
    assert ours.experts.down_proj.dtype == torch.bfloat16
    x = torch.randn(1, 4, HIDDEN, dtype=torch.bfloat16)
    assert ours(x).dtype == torch.bfloat16


def test_from_hf_rejects_other_modules():
    with pytest.raises(TypeError, match="sparse MoE block"):
        SparseMoeBlock.from_hf(torch.nn.Linear(4, 4))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_experts=0, top_k=1), "num_experts=0"),
        (dict(num_experts=4, top_k=5), "top_k=5 must be at most num_experts=4"),
        (dict(num_experts=4, top_k=2.0), "top_k=2.0 must be an integer >= 1, got float"),
    ],
)
def test_bad_sizes_are_rejected(kwargs, match):
    error = TypeError if "got float" in match else ValueError  # a wrong type, a wrong value
    with pytest.raises(error, match=match):
        SparseMoeBlock(hidden_size=8, intermediate_size=8, **kwargs)


@torch.no_grad()
def test_top1_routing_is_the_chosen_expert_alone():
    # With top-1 and renormalisation, each token's output is its one expert's MLP output.
    block = SparseMoeBlock(HIDDEN, 16, num_experts=4, top_k=1)
    block.reset_parameters(std=0.3)
    x = torch.randn(1, 9, HIDDEN)
    out = block(x)[0]
    chosen = block.router_logits.argmax(-1)
    for t in range(9):
        e = int(chosen[t])
        gate, up = (block.experts.gate_up_proj[e] @ x[0, t]).chunk(2)
        expected = block.experts.down_proj[e] @ (torch.nn.functional.silu(gate) * up)
        torch.testing.assert_close(out[t], expected, atol=1e-5, rtol=0)


def test_load_balancing_loss_matches_transformers():
    g = torch.Generator().manual_seed(0)
    layers = tuple(torch.randn(30, 8, generator=g) * 2 for _ in range(3))
    for top_k in (1, 2, 3):
        expected = load_balancing_loss_func(layers, num_experts=8, top_k=top_k)
        torch.testing.assert_close(load_balancing_loss(layers, top_k), expected)


def test_load_balancing_loss_is_top_k_when_balanced_and_more_when_not():
    # Every expert equally likely and equally chosen: the minimum, top_k.
    balanced = [torch.eye(4).repeat(5, 1) * 3]  # 20 tokens, each expert first for 5 of them
    torch.testing.assert_close(load_balancing_loss(balanced, 1), torch.tensor(1.0))
    collapsed = [torch.tensor([[5.0, 0.0, 0.0, 0.0]]).repeat(20, 1)]  # all to expert 0
    assert load_balancing_loss(collapsed, 1) > 3.5
    with pytest.raises(ValueError, match="top_k=5"):
        load_balancing_loss(balanced, 5)


def test_load_balancing_loss_gradient_reaches_the_router():
    block = SparseMoeBlock(HIDDEN, 16, num_experts=4, top_k=2)
    block(torch.randn(2, 6, HIDDEN))
    load_balancing_loss([block.router_logits], 2).backward()
    assert block.gate.weight.grad.abs().sum() > 0


def tiny_dense_model() -> Phi3ForCausalLM:
    torch.manual_seed(0)
    # Llama's default context (2048 positions), no end token.
    hf = LlamaForCausalLM(tiny_config("llama", max_position_embeddings=2048, eos_token_id=None))
    return from_hf(hf.eval())


@pytest.mark.parametrize("num_experts, top_k", [(4, 2), (3, 1), (8, 3)])
@torch.no_grad()
def test_upcycled_model_equals_dense_model(num_experts, top_k):
    dense = tiny_dense_model()
    torch.manual_seed(1)
    moe = upcycle(dense, num_experts=num_experts, top_k=top_k)
    assert moe.config.num_local_experts == num_experts
    assert isinstance(moe.model.layers[0].mlp, SparseMoeBlock)
    assert dense.config.num_local_experts is None  # the dense model is left as it was
    experts = moe.model.layers[1].mlp.experts
    assert experts.gate_up_proj.shape == (num_experts, 2 * 96, 64)
    torch.testing.assert_close(experts.down_proj[-1], dense.model.layers[1].mlp.down_proj.weight)
    ids = torch.randint(0, 96, (2, 15), generator=torch.Generator().manual_seed(2))
    expected = dense(ids).logits
    torch.testing.assert_close(moe(ids).logits, expected, atol=1e-5, rtol=0)
    # The router does route: tokens go to different experts.
    assert moe.model.layers[0].mlp.router_logits.argmax(-1).unique().numel() > 1
    assert generate(moe, ids[:1, :5], 10).tolist() == generate(dense, ids[:1, :5], 10).tolist()


@torch.no_grad()
def test_upcycled_experts_that_differ_change_the_output():
    dense = tiny_dense_model()
    moe = upcycle(dense, num_experts=4, top_k=2)
    moe.model.layers[0].mlp.experts.down_proj[0].mul_(2.0)  # expert 0 of layer 0 now differs
    ids = torch.randint(0, 96, (1, 30), generator=torch.Generator().manual_seed(3))
    assert (moe(ids).logits - dense(ids).logits).abs().max() > 1e-2


def test_upcycle_rejects_an_moe_model():
    moe = Phi3ForCausalLM(
        Phi3Config(
            vocab_size=32,
            hidden_size=16,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_local_experts=2,
        )
    )
    with pytest.raises(ValueError, match="already is a mixture of experts"):
        upcycle(moe, num_experts=4, top_k=2)


@torch.no_grad()
def test_router_choices_are_what_the_experts_receive():
    moe = upcycle(tiny_dense_model(), num_experts=4, top_k=2)
    for block in moe.modules():
        if isinstance(block, SparseMoeBlock):
            block.experts.gate_up_proj.add_(0.05 * torch.randn_like(block.experts.gate_up_proj))
    ids = torch.randint(0, 96, (1, 7), generator=torch.Generator().manual_seed(0))
    received = []  # what each layer's experts were called with: (tokens, index, weights)
    hooks = [
        block.experts.register_forward_hook(lambda m, args, out: received.append(args[1:3]))
        for block in moe.modules()
        if isinstance(block, SparseMoeBlock)
    ]
    moe(ids)
    for hook in hooks:
        hook.remove()
    choices = router_choices(moe, ids)
    assert len(choices) == len(received) == 2
    for (experts, weights), (index, index_weights) in zip(choices, received, strict=True):
        assert experts.shape == weights.shape == (7, 2)
        assert torch.equal(experts, index)
        torch.testing.assert_close(weights, index_weights)
        torch.testing.assert_close(weights.sum(-1), torch.ones(7))  # renormalised


def test_router_choices_rejects_a_dense_model_and_batches():
    with pytest.raises(ValueError, match="no SparseMoeBlock"):
        router_choices(tiny_dense_model(), torch.zeros(1, 3, dtype=torch.long))
    moe = upcycle(tiny_dense_model(), num_experts=4, top_k=2)
    with pytest.raises(ValueError, match="input_ids"):
        router_choices(moe, torch.zeros(2, 3, dtype=torch.long))
