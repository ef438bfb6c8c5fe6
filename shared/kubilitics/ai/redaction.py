"""Redaction: what must never leave for an LLM, and the way back for what the answer must name.

Every prompt, context document and tool result goes through one `Redactor` (one per request) before
a provider sends it. Rules:

- Secret objects: `data` and `stringData` are dropped entirely (only the key names are kept, as
  `data_keys`); their values are remembered so that the same value is masked wherever it shows up
  later in the request (a log line printing it, an env var copying it, its base64 form).
- Credentials (passwords, tokens, API keys, bearer/basic credentials, private keys, AWS keys, JWTs,
  URL passwords, values of sensitive keys and env vars, high-entropy env values, random-looking
  mixed-case tokens anywhere) become
  placeholders such as `[[PASSWORD_1]]`. They are never restored: an answer that mentions one keeps
  the placeholder.
- Emails and IP addresses become `[[EMAIL_1]]`, `[[IP_1]]`: the answer may need to name them (a
  node's address, an owner to contact), so `restore` puts the originals back into the LLM's answer
  and into the tool inputs it asks for.
- `last-applied-configuration` annotations (a copy of the object, Secret data included) and
  `managedFields` are dropped.

The same value always gets the same placeholder within a request, so the model can still tell
that two things refer to the same address or credential.

Limits: a credential that matches no pattern (a short, lower-case password printed bare in a log
line) is masked only once its Secret has been seen in the same request; callers that hold the
relevant Secrets can prime the redactor with `learn(...)` before the first call.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import math
import re
from collections import Counter
from typing import Any

PLACEHOLDER = re.compile(r"\[\[([A-Z][A-Z_]*?)_(\d+)\]\]")
# Kinds an answer may name; every other kind stays masked in the answer.
REVERSIBLE = frozenset({"EMAIL", "IP"})
# Shorter remembered values would mask ordinary words everywhere; they are still dropped at source.
MIN_REMEMBERED_LENGTH = 6

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

_SENSITIVE_WORDS = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_\-]?key|apikey|access[_\-]?key|private[_\-]?key"
    r"|client[_\-]?secret|credential|auth|cookie|session[_\-]?(?:id|key)|signing[_\-]?key|salt|dsn"
    r"|conn(?:ection)?[_\-]?str(?:ing)?)"
)
_SENSITIVE_NAME = re.compile(r"(?i)" + _SENSITIVE_WORDS)
# Names that mention a secret but hold a reference or a setting (`secretName`, `tokenExpirationSeconds`).
_REFERENCE_SUFFIX = re.compile(
    r"(?i)(name|names|ref|refs|file|path|dir|seconds|minutes|count|len|length|ttl|type|mode|enabled"
    r"|version|expiry|expires|expiration|provider|class|policy|namespace|header|url|uri|endpoint)$"
)
# Values that cannot be a credential (and auth scheme words, whose credential follows them).
_BENIGN_VALUE = re.compile(r"(?i)^(|true|false|yes|no|on|off|null|none|nil|bearer|basic|\*+|-?\d+(\.\d+)?)$")

_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*\Z)", re.DOTALL
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9\-._~+/]{8,}=*)")
_AWS_ACCESS_KEY = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")
_AWS_SECRET_KEY = re.compile(
    r"(?i)(aws_?secret_?access_?key|secret_?access_?key)(\s*[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
)
_KNOWN_TOKENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("API_KEY", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}")),
    ("API_KEY", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}")),
    ("API_KEY", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}")),
    ("TOKEN", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}")),
    ("TOKEN", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}")),
    ("TOKEN", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}")),
    ("TOKEN", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("TOKEN", re.compile(r"\bnpm_[A-Za-z0-9]{30,}")),
)
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/\s@\"']+:)([^@\s/\"']+)(@)")
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>[A-Za-z0-9_.\-]*" + _SENSITIVE_WORDS + r"[A-Za-z0-9_.\-]*)"
    r"(?P<sep>\s*[\"']?\s*[:=]\s*[\"']?)(?P<value>\[\[[A-Z_]+_\d+\]\]|[^\s\"',;&}\]]+)"
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_TOKENISH = re.compile(r"^[A-Za-z0-9+/=_\-.~]+$")
_WORD = re.compile(r"(?<![A-Za-z0-9+/=_\-.~])[A-Za-z0-9+/=_\-.~]{16,}(?![A-Za-z0-9+/=_\-.~])")


def sensitive_name(name: str) -> bool:
    """A key or env var name whose value is a credential (`DB_PASSWORD`, `apiKey`; not `secretName`)."""
    return bool(_SENSITIVE_NAME.search(name)) and not _REFERENCE_SUFFIX.search(name)


def looks_like_secret(value: str) -> bool:
    """A random-looking token: long, no spaces, letters and digits, high character entropy."""
    if len(value) < 16 or not _TOKENISH.match(value) or "://" in value:
        return False
    if not (re.search(r"[A-Za-z]", value) and re.search(r"\d", value)):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.5


class Redactor:
    """Masks one request's outgoing data; remembers the mapping to restore what may be restored."""

    def __init__(self) -> None:
        self._placeholder_of: dict[str, str] = {}
        self._original_of: dict[str, str] = {}
        self._next: Counter[str] = Counter()
        self._remembered: set[str] = set()

    # -- what happened ------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """How many distinct values were masked."""
        return len(self._original_of)

    def masked(self, value: str) -> bool:
        return value in self._placeholder_of

    # -- outgoing -----------------------------------------------------------------------------

    def redact(self, value: Any) -> Any:
        """Redact text or Kubernetes JSON (dicts, lists); returns a new value."""
        if isinstance(value, str):
            return self.redact_text(value)
        return self._walk(value, parent_key=None)

    def learn(self, value: Any) -> None:
        """Remember the Secret values inside `value` without producing output (prime before sending)."""
        self._walk(value, parent_key=None)

    def redact_text(self, text: str) -> str:
        text = self._mask_remembered(text)
        text = _PRIVATE_KEY.sub(lambda m: self._mask("PRIVATE_KEY", m.group(0)), text)
        text = _JWT.sub(lambda m: self._mask("TOKEN", m.group(0)), text)
        text = _AWS_SECRET_KEY.sub(
            lambda m: m.group(1) + m.group(2) + self._mask("AWS_KEY", m.group(3)), text
        )
        text = _AWS_ACCESS_KEY.sub(lambda m: self._mask("AWS_KEY", m.group(0)), text)
        for kind, pattern in _KNOWN_TOKENS:
            text = pattern.sub(lambda m, kind=kind: self._mask(kind, m.group(0)), text)  # type: ignore[misc]
        text = _AUTH_SCHEME.sub(lambda m: m.group(1) + m.group(2) + self._mask("TOKEN", m.group(3)), text)
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + self._mask("PASSWORD", m.group(2)) + m.group(3), text)
        text = _KEY_VALUE.sub(self._mask_key_value, text)
        text = _WORD.sub(self._mask_random_token, text)
        text = _EMAIL.sub(lambda m: self._mask("EMAIL", m.group(0)), text)
        text = _IPV4.sub(self._mask_ip, text)
        return _IPV6.sub(self._mask_ip, text)

    # -- incoming -----------------------------------------------------------------------------

    def restore(self, text: str) -> str:
        """Put emails and IPs back into the model's answer; credentials stay masked."""

        def back(match: re.Match[str]) -> str:
            if match.group(1) in REVERSIBLE:
                return self._original_of.get(match.group(0), match.group(0))
            return match.group(0)

        return PLACEHOLDER.sub(back, text)

    def restore_object(self, value: Any) -> Any:
        """`restore` through JSON (the arguments of a tool call the model asks for)."""
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, dict):
            return {key: self.restore_object(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.restore_object(item) for item in value]
        return value

    # -- internals ----------------------------------------------------------------------------

    def _mask(self, kind: str, value: str) -> str:
        if PLACEHOLDER.fullmatch(value):
            return value
        existing = self._placeholder_of.get(value)
        if existing:
            return existing
        self._next[kind] += 1
        placeholder = f"[[{kind}_{self._next[kind]}]]"
        self._placeholder_of[value] = placeholder
        self._original_of[placeholder] = value
        if kind not in REVERSIBLE:
            self._remember(value)
        return placeholder

    def _remember(self, value: str) -> None:
        for form in (value, value.strip()):
            if len(form) >= MIN_REMEMBERED_LENGTH:
                self._remembered.add(form)
                self._remembered.add(base64.b64encode(form.encode()).decode())

    def _mask_remembered(self, text: str) -> str:
        # Longest first, so a value that contains another is masked whole.
        for value in sorted(self._remembered, key=len, reverse=True):
            if value in text:
                text = text.replace(value, self._mask("SECRET", value))
        return text

    def _mask_key_value(self, match: re.Match[str]) -> str:
        key, separator, value = match.group("key"), match.group("sep"), match.group("value")
        if not sensitive_name(key) or _BENIGN_VALUE.match(value) or PLACEHOLDER.search(value):
            return match.group(0)
        return key + separator + self._mask(_kind_for(key), value)

    def _mask_random_token(self, match: re.Match[str]) -> str:
        # Mixed case, digits, high entropy: a generated credential. Kubernetes names, hex ids and
        # digests are lower-case, so they are left alone.
        token = match.group(0)
        mixed = re.search(r"[a-z]", token) and re.search(r"[A-Z]", token)
        if mixed and "[[" not in token and looks_like_secret(token):
            return self._mask("SECRET", token)
        return token

    def _mask_ip(self, match: re.Match[str]) -> str:
        candidate = match.group(0)
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            return candidate
        if address.is_loopback or address.is_unspecified:
            return candidate  # 127.0.0.1, ::1, 0.0.0.0 say nothing about anyone
        return self._mask("IP", candidate)

    def _walk(self, value: Any, parent_key: str | None) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, list):
            if parent_key == "env":
                return [self._env_var(item) for item in value]
            return [self._walk(item, parent_key=None) for item in value]
        if not isinstance(value, dict):
            return value
        if value.get("kind") == "Secret":
            return self._secret(value)
        return self._mapping(value)

    def _mapping(self, value: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "managedFields":
                continue
            if key == "annotations" and isinstance(item, dict):
                item = {k: v for k, v in item.items() if k != LAST_APPLIED}
            if isinstance(item, str) and sensitive_name(str(key)) and not _BENIGN_VALUE.match(item):
                out[key] = self._mask(_kind_for(str(key)), item)
                continue
            out[key] = self._walk(item, parent_key=str(key))
        return out

    def _env_var(self, item: Any) -> Any:
        if not (isinstance(item, dict) and isinstance(item.get("value"), str)):
            return self._walk(item, parent_key=None)
        name, value = str(item.get("name", "")), item["value"]
        out = {k: self._walk(v, parent_key=k) for k, v in item.items() if k != "value"}
        if _BENIGN_VALUE.match(value):
            out["value"] = value
        elif sensitive_name(name) or looks_like_secret(value):
            out["value"] = self._mask(_kind_for(name), value)
        else:
            out["value"] = self.redact_text(value)
        return out

    def _secret(self, secret: dict[str, Any]) -> dict[str, Any]:
        keys: set[str] = set()
        for field, encoded in (("data", True), ("stringData", False)):
            values = secret.get(field) or {}
            if not isinstance(values, dict):
                continue
            for key, raw in values.items():
                keys.add(str(key))
                if not isinstance(raw, str):
                    continue
                self._remember(raw)
                if encoded:
                    # Binary data does not decode: its encoded form is remembered already.
                    with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                        self._remember(base64.b64decode(raw, validate=True).decode())
        out = self._mapping({k: v for k, v in secret.items() if k not in ("data", "stringData")})
        out["data_keys"] = sorted(keys)
        return out


def _kind_for(name: str) -> str:
    lowered = name.lower()
    if re.search(r"pass|pwd", lowered):
        return "PASSWORD"
    if "token" in lowered or "auth" in lowered or "cookie" in lowered or "session" in lowered:
        return "TOKEN"
    if re.search(r"api[_\-]?key|apikey|access[_\-]?key", lowered):
        return "API_KEY"
    if "private" in lowered:
        return "PRIVATE_KEY"
    return "SECRET"
