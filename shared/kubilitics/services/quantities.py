"""Kubernetes resource quantities ("250m", "16Gi", "1e3") as numbers, and back as strings."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_FAST = {**_BINARY, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")


def parse_quantity(text: Any) -> float | None:
    """The value of a quantity string; None for something that is not one (never raises)."""
    if text is None:
        return None
    if isinstance(text, int | float):
        return float(text)
    text = str(text).strip()
    # Fast path for what metrics-server and most specs write ("123456n", "300Mi", "2"): topology and
    # metrics parse tens of thousands of these per request.
    factor = (_FAST.get(text[-2:]) or _FAST.get(text[-1:])) if text else None
    if factor is not None:
        number = text[: -2 if text[-1] == "i" else -1]
        if number.isdigit():
            return int(number) * factor
    elif text.isdigit():
        return float(text)
    match = _QUANTITY.match(text)
    if not match:
        return None
    number, exponent, suffix = match.groups()
    value = float(number)
    if exponent:
        return value * 10 ** int(exponent[1:])
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix == "E":
        return value * 1e18
    return value * _DECIMAL[suffix or ""]


def format_cores(cores: float | None) -> str | None:
    """Cores as the reference writes them ("2.345"): millicore precision, no trailing zeros."""
    if cores is None:
        return None
    text = f"{cores:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def format_bytes(value: float | None) -> str | None:
    return None if value is None else str(round(value))


def percent(part: float | None, whole: float | None) -> float | None:
    """part/whole in percent, one decimal; None when either is unknown or whole is zero."""
    if part is None or not whole:
        return None
    return round(part * 100.0 / whole, 1)


def extreme_quantity(values: Iterable[str], *, smallest: bool) -> str:
    """The smallest (or largest) of several quantities, as it was written ("1000Gi" stays "1000Gi")."""
    texts = [str(v) for v in values]
    pick = min if smallest else max
    return pick(texts, key=lambda t: parse_quantity(t) or 0.0)
