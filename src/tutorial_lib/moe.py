"""Mixture of experts (MoE): several MLPs per layer, and a router that picks a few per token.

In a dense transformer block every token goes through the same MLP. A sparse MoE block keeps
``num_experts`` MLPs (the *experts*) in that place, and a *router* (a linear classifier,
``gate``) scores them for each token. Only the ``top_k`` best-scored experts run for a token,
and their outputs are added, weighted by the router's softmax probabilities. The model holds
all experts' parameters, but each token pays the compute of ``top_k`` of them.

Read this file top to bottom:

1. ``expert_mlp``          - one expert: the SwiGLU MLP ``down(silu(gate(x)) * up(x))``
2. ``MoeExperts``          - all experts' weights stored as two 3-D tensors, run token by token
3. ``SharedExpert``        - Qwen2-MoE's dense expert that every token goes through
4. ``SparseMoeBlock``      - router + experts (+ shared expert): the MoE layer itself
5. ``load_balancing_loss`` - the auxiliary loss that keeps the router from using few experts
6. ``upcycle``             - turn a dense model into an MoE whose experts start as its MLPs
7. ``router_choices``      - which experts each layer picks for each token of a text
8. ``noisy_top_k_gating``  - Shazeer et al.'s router with trainable noise, to spread the load
9. ``expert_capacity``, ``capacity_keep_mask`` - a fixed number of slots per expert; the
   tokens past it are dropped (GShard, Switch Transformer)
10. ``router_z_loss``      - ST-MoE's penalty on large router logits

Expert parallelism (experts on several processes) is in ``tutorial_lib.expert_parallel``.

The weights are laid out as transformers 5 stores them (``mlp.gate.weight``,
``mlp.experts.gate_up_proj`` (experts, 2 * intermediate, hidden) with the gate rows first,
``mlp.experts.down_proj`` (experts, hidden, intermediate)), so ``SparseMoeBlock.from_hf``
copies a Mixtral, Qwen2-MoE, Qwen3-MoE or OLMoE block as it is.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_int, check_number

__all__ = [
    "MoeExperts",
    "SharedExpert",
    "SparseMoeBlock",
    "capacity_keep_mask",
    "expert_capacity",
    "expert_mlp",
    "load_balancing_loss",
    "noisy_top_k_gating",
    "router_choices",
    "router_z_loss",
    "upcycle",
]


# --------------------------------------------------------------------------------------
# 1. One expert
# --------------------------------------------------------------------------------------
def expert_mlp(
    hidden_states: torch.Tensor, gate_up_proj: torch.Tensor, down_proj: torch.Tensor
) -> torch.Tensor:
    """A SwiGLU MLP, ``down(silu(gate(x)) * up(x))``, with one expert's weights.

    Args:
        hidden_states: (tokens, hidden).
        gate_up_proj: (2 * intermediate, hidden), the gate rows first, then the up rows.
        down_proj: (hidden, intermediate).
    """
    gate, up = F.linear(hidden_states, gate_up_proj).chunk(2, dim=-1)  # (tokens, intermediate)
    return F.linear(F.silu(gate) * up, down_proj)  # (tokens, hidden)


# --------------------------------------------------------------------------------------
# 2. All experts, fused into 3-D tensors
# --------------------------------------------------------------------------------------
class MoeExperts(nn.Module):
    """``num_experts`` SwiGLU MLPs whose weights are stacked along a first "expert" axis.

    Attributes:
        gate_up_proj: (num_experts, 2 * intermediate_size, hidden_size), gate rows first.
        down_proj: (num_experts, hidden_size, intermediate_size).
    """

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.gate_up_proj = nn.Parameter(
            torch.empty(num_experts, 2 * intermediate_size, hidden_size)
        )
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))

    def forward(
        self,
        hidden_states: torch.Tensor,
        top_k_index: torch.Tensor,
        top_k_weights: torch.Tensor,
    ) -> torch.Tensor:
        """Send each token to its chosen experts and add their outputs, weighted.

        Args:
            hidden_states: (tokens, hidden).
            top_k_index: (tokens, top_k), the experts each token goes to.
            top_k_weights: (tokens, top_k), the weight of each of those experts' outputs.

        Returns:
            (tokens, hidden): ``sum_j top_k_weights[t, j] * expert[top_k_index[t, j]](x_t)``.
        """
        output = torch.zeros_like(hidden_states)  # (tokens, hidden)
        for expert in range(self.num_experts):
            # Which tokens chose this expert, and in which of their top_k slots.
            token_idx, slot = torch.where(top_k_index == expert)  # (n,) each
            if token_idx.numel() == 0:
                continue  # nobody picked it: it costs nothing
            expert_out = expert_mlp(
                hidden_states[token_idx], self.gate_up_proj[expert], self.down_proj[expert]
            )  # (n, hidden)
            weighted = expert_out * top_k_weights[token_idx, slot, None]  # (n, hidden)
            output.index_add_(0, token_idx, weighted.to(output.dtype))  # add back per token
        return output

    def extra_repr(self) -> str:
        e, two_i, h = self.gate_up_proj.shape
        return f"num_experts={e}, hidden_size={h}, intermediate_size={two_i // 2}"


# --------------------------------------------------------------------------------------
# 3. The shared expert (Qwen2-MoE)
# --------------------------------------------------------------------------------------
class SharedExpert(nn.Module):
    """A dense SwiGLU MLP that every token goes through, beside the routed experts.

    Qwen2-MoE scales its output per token by ``sigmoid(shared_expert_gate(x))``, a gate
    between 0 and 1 that ``SparseMoeBlock`` applies.
    """

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(hidden_size, 2 * intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return expert_mlp(hidden_states, self.gate_up_proj.weight, self.down_proj.weight)


# --------------------------------------------------------------------------------------
# 4. The sparse MoE block
# --------------------------------------------------------------------------------------


class SparseMoeBlock(nn.Module):
    """A mixture-of-experts MLP: the router picks ``top_k`` of ``num_experts`` experts per token.

    Each token's vector ``x`` is scored by the router, ``logits = gate(x)`` (one number per
    expert), the scores become probabilities (softmax), the ``top_k`` most probable experts
    run on ``x``, and their outputs are summed with those probabilities as weights,
    renormalised to sum to one when ``norm_topk_prob`` (Mixtral always; Qwen-MoE and OLMoE
    when their config says so). With ``shared_expert_intermediate_size``, a dense shared
    expert gated by a sigmoid is added (Qwen2-MoE).

    After each call, ``router_logits`` holds the router's scores, (batch * seq, num_experts),
    for the load-balancing loss or for looking at the routing.

    Setting ``capacity_factor`` (None by default: no limit) gives every expert
    ``expert_capacity(seq, num_experts, top_k, capacity_factor)`` slots per sequence; the
    token-to-expert assignments past them are dropped (``capacity_keep_mask``): no expert
    computes them, and a token whose assignments are all dropped gets a zero output, so only
    the residual connection carries it on. ``kept`` then holds the mask, (batch * seq, top_k).

    Example::

        block = SparseMoeBlock(hidden_size=64, intermediate_size=128, num_experts=8, top_k=2)
        out = block(torch.randn(1, 5, 64))  # (1, 5, 64)
        block.router_logits.shape  # (5, 8)
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        num_experts: int,
        top_k: int,
        norm_topk_prob: bool = True,
        shared_expert_intermediate_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("hidden_size", hidden_size),
            ("intermediate_size", intermediate_size),
            ("num_experts", num_experts),
            ("top_k", top_k),
        ):
            check_int(name, value, minimum=1)
        if top_k > num_experts:
            raise ValueError(f"top_k={top_k} must be at most num_experts={num_experts}")
        self.hidden_size = hidden_size
        self.num_experts = num_experts
        self.top_k = top_k
        self.norm_topk_prob = norm_topk_prob
        # The router: a linear classifier over the experts, one row of weights per expert.
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.experts = MoeExperts(num_experts, hidden_size, intermediate_size)
        if shared_expert_intermediate_size is None:
            self.shared_expert = None
            self.shared_expert_gate = None
        else:
            check_int("shared_expert_intermediate_size", shared_expert_intermediate_size, minimum=1)
            self.shared_expert = SharedExpert(hidden_size, shared_expert_intermediate_size)
            self.shared_expert_gate = nn.Linear(hidden_size, 1, bias=False)
        self.router_logits: torch.Tensor | None = None
        self.capacity_factor: float | None = None  # None: every assignment is computed
        self.kept: torch.Tensor | None = None  # with a capacity: which assignments ran
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """Draw all weights from N(0, std^2), transformers' default initialisation."""
        for parameter in self.parameters():
            nn.init.normal_(parameter, mean=0.0, std=std)

    def route(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The router's decision for each token of ``hidden_states`` (tokens, hidden).

        Returns:
            router_logits: (tokens, num_experts), the classifier's scores.
            top_k_weights: (tokens, top_k), the chosen experts' softmax probabilities
                (renormalised to sum to one when ``norm_topk_prob``).
            top_k_index: (tokens, top_k), the chosen experts, most probable first.
        """
        router_logits = self.gate(hidden_states)  # (tokens, num_experts)
        # Probabilities in float32, whatever the model's dtype: small differences decide.
        probs = F.softmax(router_logits.float(), dim=-1)  # (tokens, num_experts)
        top_k_weights, top_k_index = torch.topk(probs, self.top_k, dim=-1)  # (tokens, top_k)
        if self.norm_topk_prob:
            top_k_weights = top_k_weights / top_k_weights.sum(dim=-1, keepdim=True)
        return router_logits, top_k_weights.to(hidden_states.dtype), top_k_index

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, seq, hidden) -> (batch, seq, hidden); sets ``self.router_logits``."""
        batch, seq, hidden = hidden_states.shape
        # Routing is per token: the batch and sequence axes become one list of tokens.
        tokens = hidden_states.reshape(-1, hidden)  # (batch * seq, hidden)
        self.router_logits, top_k_weights, top_k_index = self.route(tokens)
        if self.capacity_factor is not None:
            # Each sequence is one group: its experts get `capacity` slots each.
            capacity = expert_capacity(seq, self.num_experts, self.top_k, self.capacity_factor)
            self.kept = torch.cat(
                [
                    capacity_keep_mask(index, self.num_experts, capacity)
                    for index in top_k_index.view(batch, seq, self.top_k)
                ]
            )  # (batch * seq, top_k)
            # A dropped assignment points at no expert (-1): nothing computes it.
            top_k_index = top_k_index.masked_fill(~self.kept, -1)
        output = self.experts(tokens, top_k_index, top_k_weights)  # (batch * seq, hidden)
        if self.shared_expert is not None:
            # Qwen2-MoE: every token also goes through the shared expert, scaled by a gate.
            shared_gate = torch.sigmoid(self.shared_expert_gate(tokens))  # (batch * seq, 1)
            output = output + shared_gate * self.shared_expert(tokens)
        return output.reshape(batch, seq, hidden)

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}, norm_topk_prob={self.norm_topk_prob}"

    @classmethod
    def from_hf(cls, block: nn.Module) -> SparseMoeBlock:
        """A copy of a transformers 5 sparse MoE block (its weights and routing settings).

        Accepts ``MixtralSparseMoeBlock``, ``Qwen2MoeSparseMoeBlock`` (with its shared expert),
        ``Qwen3MoeSparseMoeBlock`` and ``OlmoeSparseMoeBlock``, on any device and dtype.

        Raises:
            TypeError: ``block`` is not one of those blocks.
        """
        supported = (
            "MixtralSparseMoeBlock",
            "Qwen2MoeSparseMoeBlock",
            "Qwen3MoeSparseMoeBlock",
            "OlmoeSparseMoeBlock",
        )
        if type(block).__name__ not in supported:
            raise TypeError(
                f"block must be a transformers sparse MoE block ({', '.join(supported)}), "
                f"got {type(block).__name__}"
            )
        num_experts, two_i, hidden = block.experts.gate_up_proj.shape
        shared = getattr(block, "shared_expert", None)
        ours = cls(
            hidden_size=hidden,
            intermediate_size=two_i // 2,
            num_experts=num_experts,
            top_k=block.gate.top_k,
            # Mixtral's router has no such setting: it always renormalises.
            norm_topk_prob=getattr(block.gate, "norm_topk_prob", True),
            shared_expert_intermediate_size=None if shared is None else shared.intermediate_size,
        )
        weight = block.experts.gate_up_proj
        ours.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            ours.gate.weight.copy_(block.gate.weight)  # (num_experts, hidden)
            ours.experts.gate_up_proj.copy_(block.experts.gate_up_proj)
            ours.experts.down_proj.copy_(block.experts.down_proj)
            if shared is not None:
                # transformers keeps separate gate and up matrices: stack them, gate first.
                gate_up = torch.cat([shared.gate_proj.weight, shared.up_proj.weight], dim=0)
                ours.shared_expert.gate_up_proj.weight.copy_(gate_up)
                ours.shared_expert.down_proj.weight.copy_(shared.down_proj.weight)
                ours.shared_expert_gate.weight.copy_(block.shared_expert_gate.weight)
        return ours


# --------------------------------------------------------------------------------------
# 5. The load-balancing loss
# --------------------------------------------------------------------------------------
def load_balancing_loss(router_logits: Sequence[torch.Tensor], top_k: int) -> torch.Tensor:
    """The Switch Transformer's auxiliary loss, ``num_experts * sum_i f_i * P_i``, over layers.

    ``f_i`` is the share of token-to-expert assignments that went to expert ``i`` (the shares
    sum to ``top_k``) and ``P_i`` the router's mean probability for expert ``i``. It is
    smallest, ``top_k``, when both are uniform, and grows when the router favours a few
    experts. Training adds it, times a small coefficient, to the language-modelling loss.

    The layers are pooled, as transformers' ``load_balancing_loss_func`` pools them: two
    layers that each send everything to a different expert look balanced together. To keep
    every layer balanced, call it once per layer (``[logits]``) and average (chapter 12).

    Args:
        router_logits: one (tokens, num_experts) tensor per MoE layer.
        top_k: how many experts each token goes to.
    """
    if len(router_logits) == 0:
        raise ValueError("router_logits is empty: give one (tokens, num_experts) tensor per layer")
    logits = torch.cat(list(router_logits), dim=0)  # (layers * tokens, num_experts)
    num_experts = logits.shape[-1]
    check_int("top_k", top_k, minimum=1, maximum=num_experts)  # at most num_experts
    probs = F.softmax(logits.float(), dim=-1)  # (rows, num_experts)
    chosen = torch.topk(probs, top_k, dim=-1).indices  # (rows, top_k)
    # f_i: assignments per expert, per row (no gradient: counting is not differentiable).
    tokens_per_expert = F.one_hot(chosen, num_experts).sum(dim=(0, 1)).float() / logits.shape[0]
    router_prob_per_expert = probs.mean(dim=0)  # P_i, (num_experts,): the gradient flows here
    return num_experts * torch.sum(tokens_per_expert * router_prob_per_expert)


# --------------------------------------------------------------------------------------
# 6. Upcycling a dense model
# --------------------------------------------------------------------------------------
def upcycle(model: nn.Module, num_experts: int, top_k: int, router_std: float = 0.02) -> nn.Module:
    """A copy of a dense ``Phi3ForCausalLM`` whose MLPs become ``SparseMoeBlock`` layers.

    Every expert of layer ``l`` starts as a copy of layer ``l``'s MLP, and each router is new,
    drawn from N(0, router_std^2) (seed torch first for a reproducible router). The top-k
    weights are renormalised to sum to one, so while the experts are equal the new model
    computes exactly what the dense one did, whatever the router picks. Training then lets
    the experts drift apart ("sparse upcycling", Komatsuzaki et al., 2022).

    Raises:
        ValueError: ``model`` already has experts, or ``num_experts``/``top_k`` are invalid.
    """
    config = model.config
    if getattr(config, "num_local_experts", None) is not None:
        raise ValueError(
            f"model already is a mixture of experts (num_local_experts={config.num_local_experts})"
        )
    new_config = dataclasses.replace(
        config, num_local_experts=num_experts, num_experts_per_tok=top_k, norm_topk_prob=True
    )
    moe_model = copy.deepcopy(model)
    moe_model.config = new_config
    moe_model.model.config = new_config
    for layer in moe_model.model.layers:
        dense = layer.mlp
        weight = dense.gate_up_proj.weight  # (2 * intermediate, hidden)
        # Built on the "meta" device (shapes only): every weight is about to be overwritten.
        with torch.device("meta"):
            block = SparseMoeBlock(
                config.hidden_size, config.intermediate_size, num_experts, top_k, True
            )
        block = block.to_empty(device=weight.device).to(weight.dtype)
        with torch.no_grad():
            nn.init.normal_(block.gate.weight, mean=0.0, std=router_std)
            # The same MLP weights in every expert slot: (num_experts, ...) copies.
            block.experts.gate_up_proj.copy_(weight.expand(num_experts, -1, -1))
            block.experts.down_proj.copy_(dense.down_proj.weight.expand(num_experts, -1, -1))
        layer.mlp = block
    return moe_model


# --------------------------------------------------------------------------------------
# 7. Reading the routing of a text
# --------------------------------------------------------------------------------------
@torch.no_grad()
def router_choices(
    model: nn.Module, input_ids: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Which experts each MoE layer of ``model`` picks for each token of ``input_ids`` (1, seq).

    Runs the model once and returns, per MoE layer in order, ``(experts, weights)``: the
    chosen experts, (seq, top_k), most probable first, and their gate weights, (seq, top_k),
    as the layer's ``route`` computes them (renormalised when ``norm_topk_prob``).
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape (1, seq), got {tuple(input_ids.shape)}")
    blocks = [m for m in model.modules() if isinstance(m, SparseMoeBlock)]
    if not blocks:
        raise ValueError("model has no SparseMoeBlock: it is not a mixture-of-experts model")
    inputs: dict[SparseMoeBlock, torch.Tensor] = {}  # block -> its input, (1, seq, hidden)

    def keep_input(block: nn.Module, args: tuple) -> None:
        inputs[block] = args[0]

    hooks = [block.register_forward_pre_hook(keep_input) for block in blocks]
    try:
        model(input_ids)
    finally:
        for hook in hooks:
            hook.remove()
    choices = []
    for block in blocks:
        # The block's own routing of its input tokens: (seq, top_k) weights and experts.
        _, weights, experts = block.route(inputs[block][0])
        choices.append((experts, weights))
    return choices


# --------------------------------------------------------------------------------------
# 8. Noisy top-k gating (Shazeer et al., 2017)
# --------------------------------------------------------------------------------------
def noisy_top_k_gating(
    router_logits: torch.Tensor,
    noise_logits: torch.Tensor,
    top_k: int,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sparsely-gated MoE layer's router: top-k of the logits plus trainable noise.

    Shazeer et al. (2017), equations 3 to 5, with ``router_logits = x W_g`` and
    ``noise_logits = x W_noise`` (a second linear layer, trained with the router)::

        H(x)_i = (x W_g)_i + StandardNormal() * softplus((x W_noise)_i)
        G(x)   = softmax(KeepTopK(H(x), k))  # the others set to -inf: weight 0

    The noise lets a token try experts its router does not rank first, so the load spreads
    while the router is undecided; the router learns how much noise each expert gets. The
    paper initialises ``W_g`` and ``W_noise`` to zero: at first every token goes to ``k``
    random experts. Add the noise while training only.

    Args:
        router_logits: (tokens, num_experts), ``x W_g``.
        noise_logits: (tokens, num_experts), ``x W_noise``: ``softplus`` of it is the noise's
            standard deviation per token and expert.
        top_k: how many experts each token goes to.
        noise: (tokens, num_experts) standard-normal draws; drawn with ``generator`` if None.
        generator: the random generator for ``noise``.

    Returns:
        noisy_logits: (tokens, num_experts), ``H(x)``.
        top_k_weights: (tokens, top_k), the softmax over the kept noisy logits (sums to one).
        top_k_index: (tokens, top_k), the chosen experts, largest noisy logit first.
    """
    if router_logits.shape != noise_logits.shape or router_logits.dim() != 2:
        raise ValueError(
            "router_logits and noise_logits must have one shape (tokens, num_experts), got "
            f"{tuple(router_logits.shape)} and {tuple(noise_logits.shape)}"
        )
    num_experts = router_logits.shape[-1]
    check_int("top_k", top_k, minimum=1, maximum=num_experts)
    if noise is None:
        noise = torch.randn(router_logits.shape, generator=generator, dtype=router_logits.dtype).to(
            router_logits.device
        )
    noisy_logits = router_logits + noise * F.softplus(noise_logits)  # (tokens, num_experts)
    top_logits, top_k_index = torch.topk(noisy_logits, top_k, dim=-1)  # (tokens, top_k)
    # Softmax over the kept logits = softmax over all with the others at -inf.
    return noisy_logits, F.softmax(top_logits.float(), dim=-1), top_k_index


# --------------------------------------------------------------------------------------
# 9. Expert capacity and dropped tokens (GShard, Switch Transformer)
# --------------------------------------------------------------------------------------
def expert_capacity(num_tokens: int, num_experts: int, top_k: int, capacity_factor: float) -> int:
    """Slots per expert for a group of ``num_tokens`` tokens: ``ceil(factor * T * k / E)``.

    ``T * k / E`` is each expert's share if the load were perfectly even; the capacity factor
    leaves room above it (Switch Transformer: 1.0 to 1.25 in training, 2.0 in evaluation).
    At ``capacity_factor >= num_experts / top_k`` the capacity reaches ``num_tokens``, more
    than any expert can receive (a token picks an expert once), so nothing is dropped.
    """
    for name, value in (("num_tokens", num_tokens), ("num_experts", num_experts), ("top_k", top_k)):
        check_int(name, value, minimum=1)
    check_number("capacity_factor", capacity_factor, minimum=0, exclusive_minimum=True)
    return math.ceil(capacity_factor * num_tokens * top_k / num_experts)


def capacity_keep_mask(top_k_index: torch.Tensor, num_experts: int, capacity: int) -> torch.Tensor:
    """Which token-to-expert assignments fit in their expert's ``capacity`` slots.

    The slots are filled in GShard's order: every token's first choice, in token order, then
    every token's second choice, and so on; an expert takes assignments until its slots are
    full and drops the rest. With ``top_k = 1`` this is the Switch Transformer's router
    (transformers' ``SwitchTransformersTop1Router`` with ``expert_capacity``).

    Args:
        top_k_index: (tokens, top_k), the chosen experts of one group, most probable first.
        num_experts: how many experts there are.
        capacity: slots per expert (``expert_capacity``).

    Returns:
        (tokens, top_k) bool: True where the assignment is kept, False where it is dropped.
    """
    if top_k_index.dim() != 2:
        raise ValueError(
            f"top_k_index must have shape (tokens, top_k), got {tuple(top_k_index.shape)}"
        )
    check_int("num_experts", num_experts, minimum=1)
    check_int("capacity", capacity, minimum=0)
    tokens, top_k = top_k_index.shape
    in_order = top_k_index.T.reshape(-1)  # (top_k * tokens,): all first choices, then all second
    one_hot = F.one_hot(in_order, num_experts)  # (top_k * tokens, num_experts)
    # Each assignment's place in its expert's queue: 1 for the first to arrive, 2, 3, ...
    place = (one_hot.cumsum(dim=0) * one_hot).sum(dim=-1)  # (top_k * tokens,)
    return (place <= capacity).view(top_k, tokens).T  # (tokens, top_k)


# --------------------------------------------------------------------------------------
# 10. The router z-loss (ST-MoE)
# --------------------------------------------------------------------------------------
def router_z_loss(router_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """ST-MoE's z-loss: the mean over tokens of ``logsumexp(router logits)**2``.

    Large router logits make the softmax in float32/bfloat16 round badly and training
    unstable; this penalty (ST-MoE: coefficient 0.001) keeps them small without changing
    which expert wins (adding a constant to a token's logits changes its z, not its softmax).
    It is ``(log num_experts)**2`` for all-zero logits. Rows of all layers are pooled, as
    transformers' Switch Transformers model concatenates its layers before
    ``router_z_loss_func``.

    Args:
        router_logits: one (tokens, num_experts) tensor per MoE layer.
    """
    if len(router_logits) == 0:
        raise ValueError("router_logits is empty: give one (tokens, num_experts) tensor per layer")
    logits = torch.cat(list(router_logits), dim=0).float()  # (layers * tokens, num_experts)
    log_z = torch.logsumexp(logits, dim=-1)  # (rows,): log of the softmax's normaliser
    return (log_z**2).mean()
