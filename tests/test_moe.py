"""tutorial_lib.moe against transformers' sparse MoE blocks, on tiny random configs (fp32, CPU).

The engine's MoE path (Mixtral through ``from_hf``/``from_pretrained``, cached and padded
generation) is covered by the "mixtral-*" cases of tests/test_parity.py.
"""

import math

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
from tutorial_lib.moe import (
    SparseMoeBlock,
    capacity_keep_mask,
    expert_capacity,
    expert_mlp,
    load_balancing_loss,
    noisy_top_k_gating,
    router_choices,
    router_z_loss,
    upcycle,
)
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


# --------------------------------------------------------------------------------------
# Noisy top-k gating (Shazeer et al., 2017): against the paper's equations written out
# --------------------------------------------------------------------------------------
def test_noisy_top_k_gating_is_the_papers_equations():
    g = torch.Generator().manual_seed(0)
    logits, noise_logits, noise = (torch.randn(9, 6, generator=g) for _ in range(3))
    noisy, weights, index = noisy_top_k_gating(logits, noise_logits, 2, noise=noise)
    # H(x) = x W_g + N(0, 1) * softplus(x W_noise); G(x) = softmax(KeepTopK(H(x), k))
    by_hand = logits + noise * torch.log1p(torch.exp(noise_logits))
    torch.testing.assert_close(noisy, by_hand)
    kth = by_hand.topk(2, dim=-1).values[:, -1:]  # (tokens, 1): the k-th largest
    gates = by_hand.masked_fill(by_hand < kth, float("-inf")).softmax(dim=-1)  # (9, 6)
    assert torch.equal((gates > 0).sum(-1), torch.full((9,), 2))
    torch.testing.assert_close(weights, gates.gather(1, index))
    torch.testing.assert_close(weights.sum(-1), torch.ones(9))


def test_noisy_top_k_gating_without_noise_is_the_blocks_routing():
    block = SparseMoeBlock(HIDDEN, 8, num_experts=5, top_k=2)
    block.reset_parameters(std=0.5)
    x = torch.randn(11, HIDDEN, generator=torch.Generator().manual_seed(1))
    logits, weights, index = block.route(x)
    # softplus(-100) is about 4e-44: no noise, so plain top-k with renormalised weights
    _, noisy_weights, noisy_index = noisy_top_k_gating(
        logits, torch.full_like(logits, -100.0), 2, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(noisy_index, index)
    torch.testing.assert_close(noisy_weights, weights)


def test_noisy_top_k_gating_at_zero_initialisation_spreads_the_load():
    zeros = torch.zeros(4000, 8)  # W_g = W_noise = 0, the paper's initialisation
    _, weights, index = noisy_top_k_gating(
        zeros, zeros, 2, generator=torch.Generator().manual_seed(0)
    )
    load = torch.bincount(index.flatten(), minlength=8) / index.numel()
    assert (load - 1 / 8).abs().max() < 0.02  # random experts: an even load
    torch.testing.assert_close(weights.sum(-1), torch.ones(4000))
    assert (weights[:, 0] >= weights[:, 1]).all()  # the largest noisy logit first
    # plain top-k breaks the ties the same way for every token: two experts get everything
    assert len(set(torch.topk(zeros, 2).indices.flatten().tolist())) == 2


def test_noisy_top_k_gating_trains_the_noise_and_checks_shapes():
    logits = torch.randn(5, 4, requires_grad=True)
    noise_logits = torch.randn(5, 4, requires_grad=True)
    noisy, weights, _ = noisy_top_k_gating(logits, noise_logits, 2)
    (weights[:, 0].sum() + noisy.sum()).backward()
    assert noise_logits.grad is not None and noise_logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one shape"):
        noisy_top_k_gating(torch.zeros(5, 4), torch.zeros(5, 3), 2)
    with pytest.raises(ValueError, match="top_k=5"):
        noisy_top_k_gating(torch.zeros(5, 4), torch.zeros(5, 4), 5)


# --------------------------------------------------------------------------------------
# Expert capacity: against transformers' Switch router (top-1) and a loop (top-k)
# --------------------------------------------------------------------------------------
def test_expert_capacity_formula():
    assert expert_capacity(64, 8, 2, 1.0) == 16
    assert expert_capacity(64, 8, 2, 1.25) == 20
    assert expert_capacity(10, 4, 1, 1.0) == 3  # ceil(2.5)
    assert expert_capacity(64, 8, 2, 4.0) == 64  # factor E / k: every token fits
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="capacity_factor"):
            expert_capacity(64, 8, 2, bad)
    with pytest.raises(TypeError, match="capacity_factor"):  # a bool is not a number here
        expert_capacity(64, 8, 2, True)


@pytest.mark.parametrize("capacity", [1, 3, 6])
def test_capacity_keep_mask_top1_matches_the_switch_router(capacity):
    from transformers import SwitchTransformersConfig
    from transformers.models.switch_transformers.modeling_switch_transformers import (
        SwitchTransformersTop1Router,
    )

    config = SwitchTransformersConfig(
        d_model=HIDDEN, num_experts=4, expert_capacity=capacity, router_jitter_noise=0.0
    )
    router = SwitchTransformersTop1Router(config)
    torch.nn.init.normal_(router.classifier.weight, std=0.5)
    x = torch.randn(3, 12, HIDDEN, generator=torch.Generator().manual_seed(capacity))
    with torch.no_grad():
        dispatch, _, logits = router(x)  # (3, 12, 4) one-hot, dropped tokens all zero
    for group in range(3):  # transformers' groups are the sequences
        index = logits[group].argmax(-1, keepdim=True)  # (12, 1)
        keep = capacity_keep_mask(index, 4, capacity)
        assert torch.equal(keep[:, 0], dispatch[group].sum(-1) > 0)


def test_capacity_keep_mask_top2_fills_first_choices_first():
    g = torch.Generator().manual_seed(0)
    index = torch.stack([torch.randperm(5, generator=g)[:2] for _ in range(40)])  # (40, 2)
    for capacity in range(0, 41, 3):
        keep = capacity_keep_mask(index, 5, capacity)
        used, expected = [0] * 5, torch.zeros(40, 2, dtype=torch.bool)
        for slot in range(2):  # GShard: all first choices, then all second choices
            for token in range(40):
                expert = int(index[token, slot])
                if used[expert] < capacity:
                    used[expert] += 1
                    expected[token, slot] = True
        assert torch.equal(keep, expected), capacity
    assert capacity_keep_mask(index, 5, expert_capacity(40, 5, 2, 5 / 2)).all()


def test_block_with_a_capacity_drops_assignments_and_keeps_the_rest():
    block = SparseMoeBlock(HIDDEN, 8, num_experts=4, top_k=2)
    block.reset_parameters(std=0.5)
    x = torch.randn(2, 10, HIDDEN, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = block(x)
        block.capacity_factor = 0.5  # ceil(0.5 * 10 * 2 / 4) = 3 slots per expert
        dropped = block(x)
    keep = block.kept.view(2, 10, 2)
    assert block.kept.shape == (20, 2) and 0 < (~keep).sum() < 20
    for b in range(2):
        _, weights, index = block.route(x[b])
        assert torch.equal(keep[b], capacity_keep_mask(index, 4, 3))
        for t in range(10):  # each token: only its kept experts, with their weights
            expected = sum(
                weights[t, j]
                * expert_mlp(
                    x[b, t],
                    *(
                        p[index[t, j]]
                        for p in (block.experts.gate_up_proj, block.experts.down_proj)
                    ),
                )
                for j in range(2)
                if keep[b, t, j]
            )
            torch.testing.assert_close(dropped[b, t], expected + torch.zeros(HIDDEN))
    block.capacity_factor = 2.0  # = num_experts / top_k: nothing is dropped
    with torch.no_grad():
        torch.testing.assert_close(block(x), full)
    assert block.kept.all()


# --------------------------------------------------------------------------------------
# Router z-loss (ST-MoE): against transformers' Switch Transformers function
# --------------------------------------------------------------------------------------
def test_router_z_loss_matches_transformers():
    from transformers.models.switch_transformers.modeling_switch_transformers import (
        router_z_loss_func,
    )

    logits = 3 * torch.randn(2, 7, 6, generator=torch.Generator().manual_seed(0))
    expected = router_z_loss_func(logits)  # (groups, tokens, experts), all rows pooled
    torch.testing.assert_close(router_z_loss([logits.reshape(-1, 6)]), expected)
    torch.testing.assert_close(router_z_loss(list(logits)), expected)  # one per layer
    # by hand: the mean of the squared log-normaliser
    z = torch.log(torch.exp(logits).sum(-1))
    torch.testing.assert_close(router_z_loss([logits.reshape(-1, 6)]), (z**2).mean())


def test_router_z_loss_at_zero_logits_and_under_a_shift():
    zeros = torch.zeros(5, 8)
    torch.testing.assert_close(router_z_loss([zeros]), torch.tensor(math.log(8) ** 2))
    logits = torch.randn(5, 8)
    shifted = logits + 4.0  # the same softmax, a larger z-loss
    torch.testing.assert_close(logits.softmax(-1), shifted.softmax(-1))
    assert router_z_loss([shifted]) > router_z_loss([logits])
    with pytest.raises(ValueError, match="empty"):
        router_z_loss([])
