"""Label and field selector syntax, checked before a selector reaches the API server.

The grammar and rules follow Kubernetes' own parsers (apimachinery `labels.Parse` and
`fields.ParseSelector`), so a selector accepted here is accepted there; the point of checking first
is an error that names the problem (400 `invalid_label_selector` / `invalid_field_selector`).
Whether a field is supported for a kind is only known to the API server.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kubilitics.errors import KubiliticsError

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_INTEGER = re.compile(r"^\d+$")

_SPECIAL = "=!(),<>"
_WHITESPACE = " \t\r\n"
# Longest first: "!=" before "!", "==" before "=".
_SYMBOLS = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")
_EQUALITY = ("=", "==", "!=")


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a qualified name (`[prefix/]name`), or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return f"key {key!r} has more than one '/'"
    if "/" in key and not prefix:
        return f"key {key!r} has an empty prefix before '/'"
    if prefix and not is_dns1123_subdomain(prefix):
        return f"key prefix {prefix!r} must be a lowercase DNS-1123 subdomain"
    if not name:
        return f"key {key!r} has an empty name"
    if len(name) > 63:
        return f"key name {name!r} is longer than 63 characters"
    if not _NAME.match(name):
        return (
            f"key name {name!r} must consist of alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > 63:
        return f"value {value!r} is longer than 63 characters"
    if value and not _NAME.match(value):
        return (
            f"value {value!r} must be empty or consist of alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


class _Tokens:
    """The lexer of apimachinery's label selector parser, with each token's position."""

    def __init__(self, text: str):
        self.items: list[tuple[str, str, int]] = []  # (type, literal, position)
        i = 0
        while i < len(text):
            if text[i] in _WHITESPACE:
                i += 1
                continue
            symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
            if symbol:
                self.items.append((symbol, symbol, i))
                i += len(symbol)
                continue
            start = i
            while i < len(text) and text[i] not in _WHITESPACE and text[i] not in _SPECIAL:
                i += 1
            literal = text[start:i]
            kind = literal if literal in ("in", "notin") else "identifier"
            self.items.append((kind, literal, start))
        self.items.append(("end", "end of string", len(text)))
        self.index = 0

    def peek(self, as_value: bool = False) -> tuple[str, str, int]:
        kind, literal, position = self.items[self.index]
        # After an operator, "in" and "notin" are plain values (as in apimachinery's Values mode).
        if as_value and kind in ("in", "notin"):
            kind = "identifier"
        return kind, literal, position

    def take(self, as_value: bool = False) -> tuple[str, str, int]:
        token = self.peek(as_value)
        self.index += 1
        return token


def _label_error(selector: str, problem: str, position: int | None = None) -> KubiliticsError:
    details: dict[str, object] = {"selector": selector, "problem": problem}
    if position is not None:
        details["position"] = position
    return KubiliticsError(
        f"Invalid label selector {selector!r}: {problem}", code="invalid_label_selector", details=details
    )


def validate_label_selector(selector: str | None) -> str | None:
    """The selector unchanged if Kubernetes would accept it; else 400 invalid_label_selector."""
    if selector is None or not selector.strip():
        return None
    tokens = _Tokens(selector)

    def fail(problem: str, position: int | None = None) -> KubiliticsError:
        return _label_error(selector, problem, position)

    while True:
        kind, literal, position = tokens.take(as_value=True)
        negated = kind == "!"
        if negated:
            kind, literal, position = tokens.take(as_value=True)
        if kind != "identifier":
            raise fail(f"found {literal!r} at position {position}, expected a label key", position)
        key_problem = label_key_problem(literal)
        if key_problem:
            raise fail(key_problem, position)
        following, _, op_position = tokens.peek()
        if negated and following not in (",", "end"):
            raise fail(f"'!{literal}' cannot be followed by an operator", op_position)
        if following not in (",", "end"):
            _parse_operation(tokens, fail)
        kind, literal, position = tokens.take()
        if kind == "end":
            return selector
        if kind != ",":
            raise fail(f"found {literal!r} at position {position}, expected ',' or the end", position)
        if tokens.peek(as_value=True)[0] not in ("identifier", "!"):
            _, literal, position = tokens.peek()
            raise fail(f"found {literal!r} at position {position}, expected a label key after ','", position)


def _parse_operation(tokens: _Tokens, fail: Callable[[str, int | None], KubiliticsError]) -> None:
    op, literal, position = tokens.take()
    if op in ("in", "notin"):
        _parse_value_set(tokens, fail, op)
        return
    if op in _EQUALITY or op in (">", "<"):
        kind, literal, at = tokens.peek(as_value=True)
        if kind in (",", "end") and op in _EQUALITY:
            return  # "key=" selects the empty value
        if kind != "identifier":
            raise fail(f"found {literal!r} at position {at}, expected a value after '{op}'", at)
        tokens.take(as_value=True)
        # A value is checked as a label value first, so "> -1" is refused as the server refuses it.
        problem = label_value_problem(literal)
        if problem:
            raise fail(problem, at)
        if op in (">", "<") and not (_INTEGER.match(literal) and int(literal) < 2**63):
            raise fail(f"'{op}' needs a whole number, got {literal!r}", at)
        return
    raise fail(
        f"found {literal!r} at position {position}, expected an operator (=, ==, !=, in, notin, >, <)",
        position,
    )


def _parse_value_set(tokens: _Tokens, fail: Callable[[str, int | None], KubiliticsError], op: str) -> None:
    """`(v1,v2)`; like apimachinery, empty members ("()", "(a,)", "(a,,b)") stand for the empty value."""
    opening, literal, at = tokens.take()
    if opening != "(":
        raise fail(f"found {literal!r} at position {at}, expected '(' after '{op}'", at)
    expecting_value = True
    while True:
        kind, literal, at = tokens.take(as_value=True)
        if kind == "identifier" and expecting_value:
            problem = label_value_problem(literal)
            if problem:
                raise fail(problem, at)
            expecting_value = False
        elif kind == ",":
            expecting_value = True
        elif kind == ")":
            return
        else:
            expected = "a value, ',' or ')'" if expecting_value else "',' or ')'"
            raise fail(f"found {literal!r} at position {at}, expected {expected} in the '{op}' set", at)


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _split_term(term: str) -> tuple[str, str, str] | None:
    escaped = False
    for i, char in enumerate(term):
        if escaped:
            escaped = False
            continue
        if char == "\\":
            escaped = True
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def _value_problem(value: str) -> str | None:
    escaped = False
    for char in value:
        if escaped:
            if char not in "\\,=":
                return f"invalid escape sequence '\\{char}' (only \\\\, \\, and \\= are allowed)"
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            return f"unescaped {char!r} in value {value!r} (write it as '\\{char}')"
    return "value ends with a single backslash" if escaped else None


def validate_field_selector(selector: str | None) -> str | None:
    """The selector with whitespace around keys and values removed; else 400 invalid_field_selector."""
    if selector is None or not selector.strip():
        return None

    def fail(problem: str) -> KubiliticsError:
        return KubiliticsError(
            f"Invalid field selector {selector!r}: {problem}",
            code="invalid_field_selector",
            details={"selector": selector, "problem": problem},
        )

    terms = []
    for raw in _split_unescaped(selector, ","):
        if not raw.strip():
            continue
        split = _split_term(raw)
        if split is None:
            raise fail(f"term {raw.strip()!r} has no operator (=, == or !=)")
        key, op, value = split[0].strip(), split[1], split[2].strip()
        if not key:
            raise fail(f"term {raw.strip()!r} has no field name")
        if any(c in key for c in _WHITESPACE):
            raise fail(f"field name {key!r} contains whitespace")
        problem = _value_problem(value)
        if problem:
            raise fail(problem)
        terms.append(f"{key}{op}{value}")
    return ",".join(terms) or None
