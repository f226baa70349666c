"""Expert parallelism: the experts of one MoE layer spread over several processes.

A mixture-of-experts layer with many experts does not fit on one device, so each device
(here: one CPU process each, talking over ``torch.distributed``'s gloo backend) keeps a
slice of the experts, ``num_experts / world_size`` of them, and a slice of the tokens. The
router is small and every process has a copy. One layer then takes four steps:

1. **route**: each process scores its own tokens and picks their ``top_k`` experts;
2. **dispatch**: each token (one copy per chosen expert) goes to the process that owns the
   expert, with one ``all_to_all``: process ``i`` sends a different block to every process
   ``j``. The block sizes differ and depend on the routing, so the processes first exchange
   how many rows each will send (an ``all_to_all`` of one number per pair), then the rows
   (``all_to_all_single`` with those split sizes);
3. **compute**: each process runs its experts on the rows it received;
4. **combine**: the results travel back the same way (the split sizes swapped), and each
   process adds them to its tokens' outputs, weighted by the router's gate weights.

How many rows each process sends to each other is the routing's load, seen from the
network: a collapsed router sends everything to one process. This is inference code: no
gradients flow through ``expert_parallel_moe``.

References: Lepikhin et al., "GShard" (2020); Fedus, Zoph and Shazeer, "Switch Transformers"
(2021); ``torch.distributed.all_to_all_single``.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .moe import SharedExpert, SparseMoeBlock, expert_mlp
from .ring_attention import free_port, join_process_group
from .validation import check_int

__all__ = ["expert_parallel_moe"]


def _expert_parallel_worker(
    rank: int,
    world_size: int,
    port: int,
    router: SparseMoeBlock,
    shared: tuple[SharedExpert, torch.nn.Linear] | None,
    gate_up_slices: list[torch.Tensor],
    down_slices: list[torch.Tensor],
    token_chunks: list[torch.Tensor],
    output_chunks: list[torch.Tensor],
    sent: torch.Tensor,
) -> None:
    """One process: routes its tokens, serves its experts, and combines its tokens' outputs.

    Started by ``expert_parallel_moe`` through ``torch.multiprocessing.spawn`` (which passes
    the rank first); it lives at module level so that the fresh child processes can import
    it. A process reads only its own token chunk and expert slice, and writes only its own
    output chunk and its row of ``sent``.
    """
    join_process_group(rank, world_size, port)
    try:
        tokens = token_chunks[rank]  # (n, hidden): this process's tokens
        gate_up, down = gate_up_slices[rank], down_slices[rank]  # this process's experts
        per_rank = gate_up.shape[0]  # experts per process
        first_expert = rank * per_rank  # global number of our first expert
        with torch.no_grad():
            # 1. Route: the router is replicated, so every process scores its own tokens.
            _, weights, experts = router.route(tokens)  # (n, top_k) each
            token_of = torch.arange(len(tokens)).repeat_interleave(router.top_k)  # (n * k,)
            experts, weights = experts.reshape(-1), weights.reshape(-1)  # (n * k,) each
            # 2. Dispatch: sort the token copies by the process that owns their expert.
            owner = experts // per_rank  # (n * k,)
            order = torch.argsort(owner, stable=True)
            send_counts = torch.bincount(owner, minlength=world_size)  # (world_size,)
            # First the sizes: receive_counts[j] = how many rows process j sends us.
            receive_counts = torch.empty_like(send_counts)
            dist.all_to_all_single(receive_counts, send_counts)
            send_sizes, receive_sizes = send_counts.tolist(), receive_counts.tolist()
            # Then the rows, and which expert each row is for.
            received = tokens.new_empty(sum(receive_sizes), tokens.shape[1])  # (m, hidden)
            dist.all_to_all_single(received, tokens[token_of[order]], receive_sizes, send_sizes)
            received_experts = experts.new_empty(sum(receive_sizes))  # (m,)
            dist.all_to_all_single(received_experts, experts[order], receive_sizes, send_sizes)
            # 3. Compute: each of our experts on the rows sent to it.
            results = torch.zeros_like(received)  # (m, hidden)
            for local in range(per_rank):
                rows = torch.where(received_experts == first_expert + local)[0]
                if len(rows):
                    results[rows] = expert_mlp(received[rows], gate_up[local], down[local])
            # 4. Combine: the results go back to the processes the rows came from.
            returned = tokens.new_empty(sum(send_sizes), tokens.shape[1])  # (n * k, hidden)
            dist.all_to_all_single(returned, results, send_sizes, receive_sizes)
            output = torch.zeros_like(tokens)  # (n, hidden)
            # returned[i] is the result for the token copy order[i]: weight it, add it up.
            output.index_add_(0, token_of[order], returned * weights[order, None])
            if shared is not None:
                # A shared expert runs where the tokens are: it needs no exchange.
                shared_expert, shared_gate = shared
                output += torch.sigmoid(shared_gate(tokens)) * shared_expert(tokens)
        output_chunks[rank].copy_(output)
        sent[rank].copy_(send_counts)
    finally:
        dist.destroy_process_group()


def expert_parallel_moe(
    block: SparseMoeBlock, hidden_states: torch.Tensor, world_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``block`` on ``hidden_states`` with its experts split over ``world_size`` processes.

    Process ``r`` holds experts ``r * E / world_size`` up to ``(r + 1) * E / world_size`` and
    the ``r``-th of ``world_size`` consecutive chunks of the tokens (``torch.tensor_split``).
    Tokens travel to the processes of their experts and back with gloo ``all_to_all``
    messages (module docstring). The processes are started afresh on every call
    (``torch.multiprocessing.spawn``, each child imports torch, which takes seconds).

    Args:
        block: the MoE layer (its router, experts and shared expert; no capacity limit).
        hidden_states: (tokens, hidden) floating-point CPU tensor. Not modified.
        world_size: how many processes; must divide ``block.num_experts``.

    Returns:
        output: (tokens, hidden), equal to ``block(hidden_states[None])[0]`` up to rounding.
        sent: (world_size, world_size) int64, ``sent[i, j]`` = token copies process ``i``
            sent to process ``j`` (one per chosen expert; the diagonal stays on its process).

    Raises:
        TypeError: ``block`` is not a ``SparseMoeBlock``, ``hidden_states`` is not a
            floating-point tensor, or ``world_size`` is not an int.
        ValueError: ``hidden_states`` is not (tokens, hidden) on the CPU, ``world_size < 1``,
            it does not divide the number of experts, or ``block`` has a capacity factor.

    Example::

        block = SparseMoeBlock(hidden_size=16, intermediate_size=32, num_experts=4, top_k=2)
        out, sent = expert_parallel_moe(block, torch.randn(10, 16), world_size=2)
    """
    if not isinstance(block, SparseMoeBlock):
        raise TypeError(f"block must be a SparseMoeBlock, got {type(block).__name__}")
    if not isinstance(hidden_states, torch.Tensor) or not hidden_states.is_floating_point():
        raise TypeError("hidden_states must be a floating-point torch.Tensor")
    if hidden_states.dim() != 2 or hidden_states.shape[1] != block.hidden_size:
        raise ValueError(
            f"hidden_states must have shape (tokens, {block.hidden_size}), "
            f"got {tuple(hidden_states.shape)}"
        )
    if hidden_states.device.type != "cpu":
        raise ValueError(
            f"hidden_states is on device {hidden_states.device}; expert_parallel_moe runs CPU "
            "processes over the gloo backend: pass a CPU tensor (x.cpu())"
        )
    check_int("world_size", world_size, minimum=1)
    if block.num_experts % world_size:
        raise ValueError(
            f"world_size={world_size} must be >= 1 and divide num_experts={block.num_experts}: "
            "every process holds the same number of experts"
        )
    if block.capacity_factor is not None:
        raise ValueError("block.capacity_factor must be None: this exchange drops no tokens")
    per_rank = block.num_experts // world_size
    # Fresh copies for the processes (spawn moves their storage into shared memory; the
    # caller's tensors stay as they were).
    with torch.no_grad():
        experts = block.experts
        gate_up_slices = [
            experts.gate_up_proj[r * per_rank : (r + 1) * per_rank].detach().clone()
            for r in range(world_size)
        ]  # (per_rank, 2 * intermediate, hidden) each
        down_slices = [
            experts.down_proj[r * per_rank : (r + 1) * per_rank].detach().clone()
            for r in range(world_size)
        ]  # (per_rank, hidden, intermediate) each
        # The router alone: a block with one expert of width 1 and the router's weights.
        router = SparseMoeBlock(
            block.hidden_size, 1, block.num_experts, block.top_k, block.norm_topk_prob
        ).to(block.gate.weight.dtype)
        router.gate.weight.copy_(block.gate.weight)
        shared = None
        if block.shared_expert is not None:
            shared = (copy.deepcopy(block.shared_expert), copy.deepcopy(block.shared_expert_gate))
        token_chunks = [c.detach().clone() for c in hidden_states.tensor_split(world_size)]
    output_chunks = [torch.empty_like(c) for c in token_chunks]  # filled by the processes
    sent = torch.zeros(world_size, world_size, dtype=torch.int64)  # filled by the processes
    mp.spawn(
        _expert_parallel_worker,
        args=(
            world_size,
            free_port(),
            router,
            shared,
            gate_up_slices,
            down_slices,
            token_chunks,
            output_chunks,
            sent,
        ),
        nprocs=world_size,
        join=True,
    )
    return torch.cat(output_chunks), sent
