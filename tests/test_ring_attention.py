"""tutorial_lib.ring_attention against torch's scaled_dot_product_attention.

Every call starts real gloo processes (a few seconds each), so the parity tests use tiny
tensors and one call per case; the input checks run before any process starts.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tutorial_lib.ring_attention import ring_attention

ATOL = 1e-5


def qkv(batch=2, heads=3, seq=12, head_dim=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, heads, seq, head_dim, generator=g, dtype=dtype) for _ in "qkv")


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_ring_attention_equals_sdpa(world_size, causal):
    q, k, v = (x.requires_grad_() for x in qkv(seed=world_size))  # as a model's tensors are
    originals = [x.detach().clone() for x in (q, k, v)]
    out = ring_attention(q, k, v, world_size, causal=causal)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal).detach()
    # The flag matters on these inputs, so a ring that ignored it would fail below.
    other = F.scaled_dot_product_attention(q, k, v, is_causal=not causal).detach()
    assert not torch.allclose(expected, other, atol=1e-3)
    assert out.shape == q.shape
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    # The caller's tensors are neither changed nor moved into shared memory.
    for x, original in zip((q, k, v), originals, strict=True):
        assert torch.equal(x.detach(), original)
        assert not x.is_shared()


# --------------------------------------------------------------------------------------
# Bad input: clear errors, raised before any process is started
# --------------------------------------------------------------------------------------


def test_seq_not_divisible_by_world_size():
    q, k, v = qkv(seq=10)
    with pytest.raises(ValueError, match=r"seq=10 .* divisible by world_size=4"):
        ring_attention(q, k, v, 4)


@pytest.mark.parametrize("world_size", [0, -2])
def test_world_size_below_one(world_size):
    with pytest.raises(ValueError, match=f"world_size={world_size} must be an integer >= 1"):
        ring_attention(*qkv(), world_size)


@pytest.mark.parametrize("world_size", [2.0, True, "2"])
def test_world_size_must_be_an_int(world_size):
    with pytest.raises(TypeError, match="world_size=.* must be an integer >= 1, got"):
        ring_attention(*qkv(), world_size)


def test_non_cpu_tensors_are_refused():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"key is on device meta.*CPU tensors"):
        ring_attention(q, k.to("meta"), v, 2)


def test_shapes_must_match():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="must have the same shape"):
        ring_attention(q, k[:, :1], v, 2)
    with pytest.raises(ValueError, match=r"query must have shape \(batch, heads, seq, head_dim\)"):
        ring_attention(q[0], k[0], v[0], 2)


def test_tensors_must_be_floating_point():
    q, k, v = qkv()
    with pytest.raises(TypeError, match="value must be a floating-point tensor"):
        ring_attention(q, k, v.long(), 2)
    with pytest.raises(TypeError, match="query must be a torch.Tensor"):
        ring_attention(q.tolist(), k, v, 2)
    with pytest.raises(TypeError, match="one dtype"):
        ring_attention(q, k.double(), v, 2)


def test_causal_must_be_a_bool():
    with pytest.raises(TypeError, match="causal must be True or False"):
        ring_attention(*qkv(), 2, causal="yes")
