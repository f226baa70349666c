"""Ring attention: exact attention over a sequence split across processes.

A context too long for one device is cut into ``world_size`` blocks of consecutive positions,
one per device (here: one CPU process each, talking over ``torch.distributed``'s gloo backend).
Each process keeps its own block of **queries** for the whole computation. The blocks of
**keys and values** travel around a ring instead: at every step each process sends the block
it holds to the next process and receives one from the previous, so after ``world_size``
steps every query block has met every key/value block, while no process ever held more than
two key/value blocks at once.

Attention over one key block at a time cannot use one softmax over all keys. Each step
therefore keeps, per query, its partial output (normalised over the keys seen so far) and the
**log-sum-exp** of its scores over those keys. Two partial results merge exactly::

    lse = logaddexp(lse_a, lse_b)
    out = exp(lse_a - lse) * out_a + exp(lse_b - lse) * out_b

Every process starts from its own, diagonal block (with a causal mask, each query sees at
least itself there, so no log-sum-exp is ever -inf). With a causal mask, a key block from a
*later* part of the sequence is hidden entirely, and the process skips it: the first process
skips all blocks but its own, the last skips none. That load imbalance is what striped and
zigzag layouts remove (chapter 08).

This is inference code: no gradients flow through ``ring_attention``.

References: Liu, Zaharia and Abbeel, "Ring Attention with Blockwise Transformers for
Near-Infinite Context" (2023); Milakov and Gimelshein, "Online normalizer calculation for
softmax" (2018).
"""

from __future__ import annotations

import datetime
import math
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .attention import causal_mask
from .validation import check_int

__all__ = ["free_port", "join_process_group", "ring_attention"]


def _attend_block(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, causal: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of a query block to one key/value block, with its log-sum-exp.

    ``causal`` masks the block as the diagonal block of a causal mask (query and key blocks
    cover the same positions). Returns the output normalised over this block's keys,
    (batch, heads, block, head_dim), and the log-sum-exp of the scores, (batch, heads, block, 1).
    """
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (b, h, block, block)
    if causal:
        scores = scores.masked_fill(~causal_mask(scores.shape[-1]), float("-inf"))
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)  # (batch, heads, block, 1)
    return torch.exp(scores - lse) @ value, lse  # softmax over this block's keys, times values


def _merge(
    out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine two partial results over disjoint key sets into the result over both."""
    lse = torch.logaddexp(lse_a, lse_b)  # log(sum of exp over both key sets)
    # Each part's share of the total softmax mass re-weights its (normalised) output.
    return torch.exp(lse_a - lse) * out_a + torch.exp(lse_b - lse) * out_b, lse


def _ring_worker(
    rank: int,
    world_size: int,
    port: int,
    query_blocks: list[torch.Tensor],
    key_value_blocks: list[torch.Tensor],
    output_blocks: list[torch.Tensor],
    causal: bool,
) -> None:
    """One process of the ring: attention of query block ``rank`` to every key/value block.

    Started by ``ring_attention`` through ``torch.multiprocessing.spawn`` (which passes the
    rank first); it lives at module level so that the fresh child processes can import it.
    The blocks arrive through shared memory; a process reads only its own input block and
    writes only its own output block.
    """
    join_process_group(rank, world_size, port)
    try:
        send_to, receive_from = (rank + 1) % world_size, (rank - 1) % world_size
        query = query_blocks[rank]  # (batch, heads, block, head_dim): stays here throughout
        key_value = key_value_blocks[rank].clone()  # (2, batch, heads, block, head_dim): travels
        out = lse = None  # the running result
        for step in range(world_size):
            # Start passing the block we hold to the next process and receiving the previous
            # one's, so the transfer runs while we compute. Sends and receives are posted
            # together: no process waits for another to receive first.
            if step < world_size - 1:
                incoming = torch.empty_like(key_value)
                requests = dist.batch_isend_irecv(
                    [
                        dist.P2POp(dist.isend, key_value, send_to),
                        dist.P2POp(dist.irecv, incoming, receive_from),
                    ]
                )
            source = (rank - step) % world_size  # whose positions the block we hold covers
            if step == 0:
                # Our own, diagonal block starts the running result; with a causal mask every
                # query sees at least itself in it, so no log-sum-exp is -inf.
                out, lse = _attend_block(query, key_value[0], key_value[1], causal)
            elif not (causal and source > rank):  # causal: later positions are all hidden
                block_out, block_lse = _attend_block(query, key_value[0], key_value[1], False)
                out, lse = _merge(out, lse, block_out, block_lse)
            if step < world_size - 1:
                for request in requests:
                    request.wait()
                key_value = incoming
        output_blocks[rank].copy_(out)
    finally:
        dist.destroy_process_group()


def join_process_group(rank: int, world_size: int, port: int) -> None:
    """Join the gloo process group of ``world_size`` CPU processes meeting at ``port``.

    Each process uses one thread: the processes already share the CPU cores.
    """
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=120),
    )


def free_port() -> int:
    """A TCP port that is free right now, for the processes to meet at."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_inputs(
    query: object, key: object, value: object, world_size: object, causal: object
) -> None:
    for name, x in (("query", query), ("key", key), ("value", value)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.device.type != "cpu":
            raise ValueError(
                f"{name} is on device {x.device}; ring_attention runs CPU processes over the "
                "gloo backend: pass CPU tensors (x.cpu())"
            )
        if x.ndim != 4:
            raise ValueError(
                f"{name} must have shape (batch, heads, seq, head_dim), got {tuple(x.shape)}"
            )
    if not query.shape == key.shape == value.shape:
        raise ValueError(
            "query, key and value must have the same shape (batch, heads, seq, head_dim); got "
            f"query={tuple(query.shape)}, key={tuple(key.shape)}, value={tuple(value.shape)}"
        )
    if not query.dtype == key.dtype == value.dtype:
        raise TypeError(
            f"query, key and value must have one dtype, got {query.dtype}, {key.dtype}, "
            f"{value.dtype}"
        )
    check_int("world_size", world_size, minimum=1)  # the number of processes
    seq = query.shape[2]
    if seq % world_size:
        raise ValueError(
            f"seq={seq} (dim 2 of query) must be divisible by world_size={world_size}: every "
            f"process gets seq / world_size positions; pad the sequence or pick a divisor of {seq}"
        )
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be True or False, got {causal!r}")


def ring_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    world_size: int,
    causal: bool = True,
) -> torch.Tensor:
    """Scaled dot-product attention computed by ``world_size`` processes in a ring.

    Process ``r`` gets positions ``r * seq / world_size`` up to ``(r + 1) * seq / world_size``
    of the queries, keys and values. Key/value blocks are passed around the ring with gloo
    point-to-point messages; each process merges its partial results with the log-sum-exp
    rule and writes its block of the output. The processes are started afresh on every call
    (``torch.multiprocessing.spawn``, a free port each time; each child imports torch, which
    takes seconds) and their process groups are destroyed at the end.

    Args:
        query, key, value: ``(batch, heads, seq, head_dim)`` floating-point CPU tensors of one
            shape and dtype. They are not modified.
        world_size: how many processes share the sequence; must divide ``seq``.
        causal: hide later positions from each query (decoders), as
            ``F.scaled_dot_product_attention(..., is_causal=True)``.

    Returns:
        The attention output, ``(batch, heads, seq, head_dim)``, equal to
        ``torch.nn.functional.scaled_dot_product_attention(query, key, value,
        is_causal=causal)`` up to rounding.

    Raises:
        TypeError: an input is not a floating-point tensor, or ``world_size`` is not an int.
        ValueError: a tensor is not on the CPU, the shapes differ or are not 4-D,
            ``world_size < 1``, or ``seq`` is not divisible by ``world_size``.

    Example::

        q, k, v = torch.randn(3, 1, 2, 8, 16).unbind(0)  # (batch, heads, seq=8, head_dim)
        out = ring_attention(q, k, v, world_size=4)  # 4 processes, 2 positions each
    """
    _check_inputs(query, key, value, world_size, causal)
    # Cut the sequence into one block per process. The blocks are fresh copies: passing a
    # tensor to a child process moves its storage into shared memory, and the caller's
    # tensors should stay as they were.
    query_blocks = [b.detach().clone() for b in query.chunk(world_size, dim=2)]
    key_value = torch.stack([key.detach(), value.detach()])  # (2, batch, heads, seq, head_dim)
    key_value_blocks = [b.clone() for b in key_value.chunk(world_size, dim=3)]
    output_blocks = [torch.empty_like(b) for b in query_blocks]  # filled by the processes
    mp.spawn(
        _ring_worker,
        args=(world_size, free_port(), query_blocks, key_value_blocks, output_blocks, causal),
        nprocs=world_size,
        join=True,
    )
    return torch.cat(output_blocks, dim=2)  # (batch, heads, seq, head_dim)
