"""Argument checks with one policy: a wrong type raises ``TypeError``, a wrong value
``ValueError``, and both messages name the argument, the value given and what is allowed.

Every module of the library checks its integer and number arguments with these, so the same
mistake gives the same kind of error everywhere.

    >>> check_int("num_attention_heads", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: num_attention_heads=0 must be an integer >= 1
    >>> check_int("top_k", "3", minimum=1)
    Traceback (most recent call last):
    ...
    TypeError: top_k='3' must be an integer >= 1, got str
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_int", "check_number", "check_optional_int", "check_positive_float"]


def _int_range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"


def check_int(
    name: str, value: object, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` if it is an integer (not a ``bool``) in ``[minimum, maximum]``; else raise.

    Raises:
        TypeError: ``value`` is not an integer (a ``bool`` or a float such as 2.0 is not).
        ValueError: it is below ``minimum`` or above ``maximum``.
    """
    allowed = _int_range(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be {allowed}, got {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name}={value!r} must be {allowed}")
    return int(value)


def check_optional_int(
    name: str,
    value: object,
    minimum: int | None = None,
    maximum: int | None = None,
    none_means: str | None = None,
) -> int | None:
    """As ``check_int``, but ``None`` is allowed too (``none_means`` says what it means)."""
    if value is None:
        return None
    try:
        return check_int(name, value, minimum, maximum)
    except (TypeError, ValueError) as e:
        meaning = f": {none_means}" if none_means else ""
        raise type(e)(f"{e} (or None{meaning})") from None


def check_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    hint: str = "",
) -> float:
    """``value`` as a float if it is a finite real number (not a ``bool``) in range; else raise.

    ``minimum`` and ``maximum`` are inclusive, unless ``exclusive_minimum`` (then the value must
    be > ``minimum``). ``hint`` is added to the message, e.g. ``"(0 means greedy)"``.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: it is NaN, infinite, or out of range.
    """
    low = "" if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum}"
    if minimum is not None and maximum is not None:
        allowed = f"a number in {'(' if exclusive_minimum else '['}{minimum}, {maximum}]"
    elif minimum is not None:
        allowed = f"a number {low}"
    elif maximum is not None:
        allowed = f"a number <= {maximum}"
    else:
        allowed = "a finite number"
    allowed += f" {hint}" if hint else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be {allowed}, got {type(value).__name__}")
    too_low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    too_high = maximum is not None and value > maximum
    if not math.isfinite(value) or too_low or too_high:
        raise ValueError(f"{name}={value!r} must be {allowed}")
    return float(value)


def check_positive_float(name: str, value: object) -> float:
    """``value`` if it is a real number > 0 (an int is accepted); else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a number > 0, got {type(value).__name__}")
    if not value > 0:  # also rejects NaN
        raise ValueError(f"{name}={value!r} must be a number > 0")
    return float(value)
