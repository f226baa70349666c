"""tutorial_lib.validation: one policy for argument checks (TypeError for a wrong type,
ValueError for a wrong value, both naming the argument, the value and what is allowed), and
the library's public functions following it."""

import math

import pytest
import torch

from tutorial_lib.validation import (
    check_int,
    check_number,
    check_optional_int,
    check_positive_float,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [(("n", 3), 3), (("n", 0, 0), 0), (("n", 4, 1, 4), 4), (("n", torch.tensor(2).item()), 2)],
)
def test_check_int_returns_the_value(args, expected):
    assert check_int(*args) == expected and type(check_int(*args)) is int


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (True, TypeError, r"^n=True must be an integer >= 1, got bool$"),
        (2.0, TypeError, r"^n=2\.0 must be an integer >= 1, got float$"),
        ("3", TypeError, r"^n='3' must be an integer >= 1, got str$"),
        (None, TypeError, r"^n=None must be an integer >= 1, got NoneType$"),
        (0, ValueError, r"^n=0 must be an integer >= 1$"),
        (-5, ValueError, r"^n=-5 must be an integer >= 1$"),
    ],
)
def test_check_int_policy(value, error, message):
    with pytest.raises(error, match=message):
        check_int("n", value, minimum=1)


def test_check_int_ranges_in_the_message():
    with pytest.raises(ValueError, match=r"^k=6 must be an integer in \[1, 5\]$"):
        check_int("k", 6, minimum=1, maximum=5)
    with pytest.raises(ValueError, match=r"^k=6 must be an integer <= 5$"):
        check_int("k", 6, maximum=5)
    with pytest.raises(TypeError, match=r"^k=1\.5 must be an integer, got float$"):
        check_int("k", 1.5)


def test_check_optional_int():
    assert check_optional_int("top_k", None, minimum=1) is None
    assert check_optional_int("top_k", 5, minimum=1) == 5
    with pytest.raises(ValueError, match=r"^top_k=0 must be an integer >= 1 \(or None: all\)$"):
        check_optional_int("top_k", 0, minimum=1, none_means="all")
    with pytest.raises(TypeError, match=r"^top_k='a' must be .*, got str \(or None\)$"):
        check_optional_int("top_k", "a", minimum=1)


@pytest.mark.parametrize(
    ("kwargs", "value", "error", "message"),
    [
        (dict(minimum=0), -0.5, ValueError, r"^t=-0\.5 must be a number >= 0$"),
        (dict(minimum=0), math.nan, ValueError, r"^t=nan must be a number >= 0$"),
        (dict(minimum=0), math.inf, ValueError, r"^t=inf must be a number >= 0$"),
        (dict(minimum=0), "hot", TypeError, r"^t='hot' must be a number >= 0, got str$"),
        (dict(minimum=0), True, TypeError, r"^t=True must be a number >= 0, got bool$"),
        (
            dict(minimum=0, maximum=1, exclusive_minimum=True, hint="(1: all)"),
            0,
            ValueError,
            r"^t=0 must be a number in \(0, 1\] \(1: all\)$",
        ),
        (dict(minimum=0, maximum=1), 1.5, ValueError, r"^t=1\.5 must be a number in \[0, 1\]$"),
    ],
)
def test_check_number_policy(kwargs, value, error, message):
    with pytest.raises(error, match=message):
        check_number("t", value, **kwargs)


def test_check_number_accepts_ints_and_floats_in_range():
    assert check_number("t", 0, minimum=0) == 0.0
    assert check_number("p", 1, minimum=0, maximum=1, exclusive_minimum=True) == 1.0
    assert check_positive_float("eps", 1) == 1.0
    with pytest.raises(ValueError, match=r"^eps=0 must be a number > 0$"):
        check_positive_float("eps", 0)


# --------------------------------------------------------------------------------------
# Public functions across the library: the same mistake, the same kind of error
# --------------------------------------------------------------------------------------
def _cases():
    from tutorial_lib.attention import causal_mask
    from tutorial_lib.generation import group_logits
    from tutorial_lib.moe import SparseMoeBlock
    from tutorial_lib.phi3 import Phi3Config
    from tutorial_lib.quantization import memory_bandwidth
    from tutorial_lib.seq2seq import make_date_pairs

    logits = torch.zeros(1, 8)
    return [
        (lambda v: causal_mask(v), "q_len"),
        (lambda v: group_logits(logits[0], n_top=v), "n_top"),
        (lambda v: SparseMoeBlock(8, 16, num_experts=4, top_k=v), "top_k"),
        (lambda v: Phi3Config(num_attention_heads=v), "num_attention_heads"),
        (lambda v: memory_bandwidth(megabytes=v), "megabytes"),
        (lambda v: make_date_pairs(v, 1), "n_train"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_public_functions_raise_typeerror_for_a_type_and_valueerror_for_a_value(case):
    call, name = _cases()[case]
    with pytest.raises(TypeError, match=rf"^{name}=2\.5 must be an integer.*, got float"):
        call(2.5)
    with pytest.raises(ValueError, match=rf"^{name}=-1 must be an integer"):
        call(-1)


def test_generate_sampling_arguments_follow_the_policy():
    from tutorial_lib.generation import _check_sampling

    with pytest.raises(TypeError, match=r"^temperature='hot' must be a number >= 0"):
        _check_sampling("hot", None, 1.0)
    with pytest.raises(ValueError, match=r"^top_p=0 must be a number in \(0, 1\]"):
        _check_sampling(1.0, None, 0)
    with pytest.raises(TypeError, match=r"^top_k=2\.5 must be an integer >= 1, got float"):
        _check_sampling(1.0, 2.5, 1.0)
