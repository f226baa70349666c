"""Argument checks with one policy: a wrong type raises ``TypeError``, a wrong value
``ValueError``, and both messages name the argument, the value given and what is allowed.

    >>> check_int("num_attention_heads", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: num_attention_heads=0 must be an integer >= 1
"""

from __future__ import annotations

import numbers

__all__ = ["check_int", "check_optional_int", "check_positive_float"]


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) and at least ``minimum``; else raise."""
    allowed = "an integer" if minimum is None else f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be {allowed}, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value!r} must be {allowed}")
    return int(value)


def check_optional_int(name: str, value: object, minimum: int | None = None) -> int | None:
    """As ``check_int``, but ``None`` is allowed too."""
    if value is None:
        return None
    try:
        return check_int(name, value, minimum)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{e} (or None)") from None


def check_positive_float(name: str, value: object) -> float:
    """``value`` if it is a real number > 0 (an int is accepted); else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be a number > 0, got {type(value).__name__}")
    if not value > 0:  # also rejects NaN
        raise ValueError(f"{name}={value!r} must be a number > 0")
    return float(value)
