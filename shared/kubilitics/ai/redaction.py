"""Redaction: what must never leave for an LLM or be kept at rest, and the way back for what the
answer must name.

Every prompt, context document and tool result goes through one `Redactor` (one per request) before
a provider sends it. What is stored for later (investigation evidence documents, chat history) goes
through `redact_for_storage` right before the store call. Rules:

- Secret objects: `data` and `stringData` are dropped entirely (only the key names are kept, as
  `data_keys`); their values are remembered so that the same value is masked wherever it shows up
  later in the request (a log line printing it, an env var copying it, its base64 form).
- Credentials become placeholders such as `[[PASSWORD_1]]` and are never restored: an answer that
  mentions one keeps the placeholder. A masked value is masked wherever it shows up later in the
  request too (unless it is a plain word: "token: unexpected" must not mask "unexpected"
  everywhere). A credential is
  - a known shape anywhere: private key PEM blocks, JWTs, AWS access keys, GitHub, GitLab, Slack,
    npm, PyPI, Stripe, SendGrid, Twilio, Mailchimp, Square, Telegram, Vault, Google (API keys,
    OAuth tokens) and Anthropic/OpenAI keys, bearer/basic credentials, the password of a URL
    (`scheme://user:PASSWORD@host`);
  - the value assigned to a sensitive name, whatever the value looks like: `name=value`,
    `name: value`, `"name": "value"`, `--name=value`, `--name value` (also as two items of an
    argument list: `["--db-password", "hunter2"]` in JSON, YAML or a pod spec), and env vars. A name
    is sensitive when it contains password/passwd/pass/pwd, secret, token, credential, auth,
    cookie, seed, signing, salt, dsn, connection string, or one of api/access/account/private/
    signing/encryption/master/hmac/jwt `key` and session id/key (`DB_PASSWORD`, `apiKey`,
    `JWT_SIGNING_SEED`, `aws_secret_access_key`); not when it names a reference or a setting
    (`secretName`, `tokenFile`, `tokenExpirationSeconds`, `--authorization-mode`,
    `--password-stdin`). After `name: ` a plain word followed by more words is a sentence, not a
    value ("failed to fetch anonymous token: unexpected status");
  - in prose, the word after "password"/"passwd"/"passphrase"/"pwd" (or after "password is/was")
    when it contains a digit or a symbol ("password hunter2", "the password is hunter2"; not
    "password authentication failed");
  - a random-looking token anywhere: 16+ characters mixing upper case, lower case and digits with
    high character entropy (env values: any case).
- Values that are never credentials stay, even after a sensitive name: booleans, numbers, empty
  values, `bearer`/`basic`, `***`, and references to other variables (`$(DB_PASSWORD)`, `${X}`).
  Kubernetes names, UIDs, resourceVersions, timestamps, image tags and `sha256:` digests are
  lower-case, hex or numeric and are left alone.
- Emails and IP addresses become `[[EMAIL_1]]`, `[[IP_1]]`: the answer may need to name them (a
  node's address, an owner to contact), so `restore` puts the originals back into the LLM's answer
  and into the tool inputs it asks for. Loopback and unspecified addresses are kept. At rest they
  are kept (the diagnosis reads them; they are not credentials).
- `last-applied-configuration` annotations (a copy of the object, Secret data included) and
  `managedFields` are dropped.

The same value always gets the same placeholder within a request (or a stored document), so the
model can still tell that two things refer to the same address or credential. Stored documents use
`[[REDACTED_<KIND>_N]]`, which a later request passes through untouched and never confuses with its
own numbering.

Every pattern runs in linear time, whatever the input: runs are matched from their first character
only (a lookbehind refuses a start inside a run), with possessive or bounded quantifiers, so no
character is rescanned from many starting points (a 1 MB log line takes well under a second).

Limits: a credential that matches no pattern (a short, lower-case password printed bare in a log
line) is masked only once its Secret has been seen in the same request; callers that hold the
relevant Secrets can prime the redactor with `learn(...)` before the first call. `-p hunter2` is
not masked (`-p` is a port, a path or `--previous` as often as a password), nor a plain-word
password in the middle of a `name: value` sentence ("password: hunter role: admin"). At rest,
Secret data never arrives (evidence keeps key names only), so a bare password in a log tail is
masked only when the same document holds it under a sensitive name (an env var) or a pattern.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import functools
import ipaddress
import math
import re
from collections import Counter
from typing import Any

PLACEHOLDER = re.compile(r"\[\[([A-Z][A-Z_]{0,40}?)_(\d{1,9})\]\]")
# Kinds an answer may name; every other kind stays masked in the answer.
REVERSIBLE = frozenset({"EMAIL", "IP"})
# Shorter remembered values would mask ordinary words everywhere; they are still dropped at source.
MIN_REMEMBERED_LENGTH = 6
# Every later text is searched for every remembered value: the bound keeps a document of thousands of
# strings with thousands of distinct credentials linear (past it, values are still masked where found).
MAX_REMEMBERED = 2000
STORED_PREFIX = "REDACTED_"

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# Lower-case: `_NAMES` runs on an ASCII-lowered copy of the text, where literal alternatives are
# rejected on their first character (several times faster than `(?i)`).
_SENSITIVE_WORDS = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|credential|auth|cookie|seed|signing|salt|dsn"
    r"|api[_\-]?key|apikey|(?:access|account|private|encryption|master|hmac|jwt)[_\-]?key"
    r"|session[_\-]?(?:id|key)|conn(?:ection)?[_\-]?str(?:ing)?)"
)
_SENSITIVE_NAME = re.compile(r"(?i)" + _SENSITIVE_WORDS)
# Names that mention a secret but hold a reference or a setting (`secretName`, `tokenExpirationSeconds`).
_REFERENCE_SUFFIX = re.compile(
    r"(?i)(name|names|ref|refs|file|path|dir|seconds|minutes|count|len|length|ttl|type|mode|enabled"
    r"|version|expiry|expires|expiration|provider|class|policy|namespace|header|url|uri|endpoint"
    r"|stdin|algorithm|method|scheme)$"
)
# Values that cannot be a credential (auth scheme words, whose credential follows them; references
# to another variable, which the diagnosis may need to see unexpanded).
_BENIGN_VALUE = re.compile(
    r"(?i)^(|true|false|yes|no|on|off|null|none|nil|bearer|basic|\*+|-?\d+(\.\d+)?"
    r"|\$\(?[a-z_][a-z0-9_]*\)?|\$\{[a-z_][a-z0-9_]*\})$"
)

_KEY = r"A-Za-z0-9_.\-"  # the characters of a key or flag name
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----"
    r"(?:.*?-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----|.*\Z)",  # a cut-off key: everything after BEGIN
    re.DOTALL,
)
# Known credential shapes: (kind, literal prefix, characters it must not follow, the rest).
_B64URL = r"A-Za-z0-9_\-"
_TOKEN_SHAPES: tuple[tuple[str, str, str, str], ...] = (
    ("TOKEN", "eyJ", _B64URL, r"[A-Za-z0-9_\-]{5,}+\.eyJ[A-Za-z0-9_\-]{5,}+\.[A-Za-z0-9_\-]*+"),  # JWT
    *(
        ("AWS_KEY", prefix, "A-Z0-9", r"[A-Z0-9]{16}(?![A-Z0-9])")
        for prefix in ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA")
    ),
    ("API_KEY", "sk-ant-", _B64URL, r"[A-Za-z0-9_\-]{8,}+"),  # Anthropic
    ("API_KEY", "sk-", _B64URL, r"(?:proj-)?[A-Za-z0-9_\-]{20,}+"),  # OpenAI
    ("API_KEY", "AIza", _B64URL, r"[0-9A-Za-z_\-]{35}"),  # Google API keys
    *(
        ("API_KEY", prefix, "A-Za-z0-9_", r"[0-9A-Za-z]{16,}+")  # Stripe
        for prefix in ("sk_live_", "sk_test_", "rk_live_", "rk_test_")
    ),
    ("API_KEY", "whsec_", "A-Za-z0-9_", r"[A-Za-z0-9]{24,}+"),  # Stripe webhooks
    ("API_KEY", "SG.", _B64URL + ".", r"[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"),  # SendGrid
    ("API_KEY", "SK", "A-Za-z0-9", r"[0-9a-f]{32}(?![A-Za-z0-9])"),  # Twilio
    *(("TOKEN", f"gh{c}_", "A-Za-z0-9_", r"[A-Za-z0-9]{20,}+") for c in "pousr"),  # GitHub
    ("TOKEN", "github_pat_", "A-Za-z0-9_", r"[A-Za-z0-9_]{20,}+"),
    ("TOKEN", "glpat-", _B64URL, r"[A-Za-z0-9_\-]{20,}+"),  # GitLab
    *(("TOKEN", f"xox{c}-", _B64URL, r"[A-Za-z0-9\-]{10,}+") for c in "abposr"),  # Slack
    ("TOKEN", "hooks.slack.com/services/", "", r"[A-Za-z0-9/]{20,}+"),  # Slack webhooks
    ("TOKEN", "npm_", "A-Za-z0-9_", r"[A-Za-z0-9]{30,}+"),
    ("TOKEN", "pypi-AgEIcHlwaS5vcmc", _B64URL, r"[A-Za-z0-9_\-]{50,}+"),
    *(("TOKEN", prefix, _B64URL, r"[0-9A-Za-z_\-]{22,43}+") for prefix in ("sq0atp-", "sq0csp-")),  # Square
    ("TOKEN", "ya29.", _B64URL + ".", r"[0-9A-Za-z_\-]{20,}+"),  # Google OAuth
    ("TOKEN", "hvs.", _B64URL + ".", r"[A-Za-z0-9_\-]{24,}+"),  # Vault
)
# One pass for all of them: every alternative starts with its literal (the engine then skips to the
# positions where one can start), the "must not follow" check comes after it as a lookbehind, and an
# empty group `t<i>` tells which shape matched.
_TOKENS = re.compile(
    "|".join(
        re.escape(prefix) + (f"(?<![{before}]{re.escape(prefix)})" if before else "") + f"(?P<t{i}>){rest}"
        for i, (_, prefix, before, rest) in enumerate(_TOKEN_SHAPES)
    )
)
# Mailchimp API keys and Telegram bot tokens start with digits: their own pass.
_DIGIT_TOKENS = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:[0-9a-f]{32}-us[0-9]{1,2}(?![A-Za-z0-9])"
    r"|[0-9]{8,10}:AA[0-9A-Za-z_\-]{33}(?![0-9A-Za-z_\-]))"
)
# `scheme://user:PASSWORD@host`, found from its `://`.
_URL_PASSWORD = re.compile(r"(://(?<=[A-Za-z0-9+.\-]://)[^:/\s@\"']{1,256}+:)([^@\s/\"']{1,256}+)(@)")
# Names and what follows them, in one pass on the ASCII-lowered text. A sensitive name (the lookahead
# finds a sensitive word in the run) then
#   `key`:    `name=value`, `name: value`, `"name": "value"`, `--name=value`;
#   `flag`:   `--name value`, `-name value`, and the same two items of a JSON/YAML argument list:
#             `"--db-password", "x"`, `[--db-password, x]`, `- --db-password\n  - x`;
#   `prose`:  "password hunter2", "the password is hunter2";
# or `scheme`: a bearer/basic credential. A placeholder's kind (`[[PASSWORD_1]]`) is no name.
_NAMES = re.compile(
    rf"(?<![{_KEY}])(?<!\[\[)(?:(?=[{_KEY}]{{0,127}}?{_SENSITIVE_WORDS})(?:"
    rf"(?P<key>[{_KEY}]{{1,128}}+)[\"']?[ \t]*+[:=][ \t]*+(?P<quote>[\"']?)"
    rf"|(?P<flag>-{{1,2}}[a-z0-9][{_KEY}]{{0,126}}+)"
    r"(?:[\"']?[ \t]*+,[ \t\r\n]*+(?P<q1>[\"']?)"
    r"|[\"']?[ \t]*+\r?\n[ \t]*+-[ \t]++(?P<q2>[\"']?)"
    r"|[ \t]++(?P<q3>[\"']?))"
    r"|(?P<prose>password|passwd|passphrase|pwd)s?(?:[ \t]++(?:is|was)(?=[ \t]))?[ \t]++"
    r")|(?P<scheme>bearer|basic)[ \t]++)"
)
_BARE_FLAG = re.compile(rf"-{{1,2}}([A-Za-z0-9][{_KEY}]{{0,126}})")
_VALUE = re.compile(
    r"\[\[[A-Z][A-Z_]{0,40}_\d{1,9}\]\]|\$\{[A-Za-z_][A-Za-z0-9_]{0,127}\}|[^\s\"',;&}\]{\[][^\s\"',;&}\]]*+"
)
_QUOTED_VALUE = {q: re.compile(rf"[^{q}\n]{{1,512}}+(?={q})") for q in ("'", '"')}
_SENTENCE_GOES_ON = re.compile(r" [a-z]")
_PROSE_VALUE = re.compile(r"[^\s\"'`,;]{1,256}+")
_SCHEME_VALUE = re.compile(r"[A-Za-z0-9\-._~+/]{8,}+=*+")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}+@[A-Za-z0-9\-]{1,63}+(?:\.[A-Za-z0-9\-]{1,63}+){1,8}+"
)
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_TOKENISH = re.compile(r"[A-Za-z0-9+/=_\-.~]+")
_WORD = re.compile(r"(?<![A-Za-z0-9+/=_\-.~])[A-Za-z0-9+/=_\-.~]{16,}+")
_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"\d")


@functools.lru_cache(maxsize=4096)
def sensitive_name(name: str) -> bool:
    """A key or env var name whose value is a credential (`DB_PASSWORD`, `apiKey`; not `secretName`)."""
    if len(name) > 128:
        return False
    return bool(_SENSITIVE_NAME.search(name)) and not _REFERENCE_SUFFIX.search(name)


def looks_like_secret(value: str) -> bool:
    """A random-looking token: long, no spaces, letters and digits, high character entropy."""
    if len(value) < 16 or not _TOKENISH.fullmatch(value) or "://" in value:
        return False
    if not (_LETTER.search(value) and _DIGIT.search(value)):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.5


def redact_for_storage(value: Any) -> Any:
    """What may be kept at rest (evidence documents, chat history): credentials masked as
    `[[REDACTED_<KIND>_N]]`, everything the diagnosis reads kept (names, keys, emails, IPs)."""
    return Redactor(identities=False, kind_prefix=STORED_PREFIX).redact(value)


class Redactor:
    """Masks one request's outgoing data; remembers the mapping to restore what may be restored.

    `identities=False` keeps emails and IPs; `kind_prefix` names the placeholders of stored data.
    """

    def __init__(self, *, identities: bool = True, kind_prefix: str = "") -> None:
        self._identities = identities
        self._prefix = kind_prefix
        self._placeholder_of: dict[str, str] = {}
        self._original_of: dict[str, str] = {}
        self._next: Counter[str] = Counter()
        self._remembered: set[str] = set()
        self._longest_first: list[str] = []

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
        # Each `in` check skips a pass that cannot match (a pass over 1 MB costs tens of ms).
        text = self._mask_remembered(text)
        if "-----BEGIN " in text:
            text = _PRIVATE_KEY.sub(lambda m: self._mask("PRIVATE_KEY", m.group(0)), text)
        text = _TOKENS.sub(self._mask_token, text)
        if "-us" in text or ":AA" in text:
            text = _DIGIT_TOKENS.sub(lambda m: self._mask("TOKEN" if ":" in m[0] else "API_KEY", m[0]), text)
        if "://" in text:
            text = _URL_PASSWORD.sub(lambda m: m[1] + self._mask("PASSWORD", m[2]) + m[3], text)
        text = self._mask_names(text)
        text = _WORD.sub(self._mask_random_token, text)
        if not self._identities:
            return text
        if "@" in text:
            text = _EMAIL.sub(self._mask_email, text)
        if "." in text:
            text = _IPV4.sub(self._mask_ip, text)
        if ":" in text:
            text = _IPV6.sub(self._mask_ip, text)
        return text

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
        existing = self._placeholder_of.get(value)
        if existing:
            return existing
        if PLACEHOLDER.fullmatch(value):
            return value
        kind = self._prefix + kind
        self._next[kind] += 1
        placeholder = f"[[{kind}_{self._next[kind]}]]"
        self._placeholder_of[value] = placeholder
        self._original_of[placeholder] = value
        # A plain word masked after a name ("token: unexpected") would be masked everywhere else too.
        if kind not in REVERSIBLE and not _plain_word(value):
            self._remember(value)
        return placeholder

    def _remember(self, value: str) -> None:
        for form in (value, value.strip()):
            if len(form) < MIN_REMEMBERED_LENGTH or len(self._remembered) >= MAX_REMEMBERED:
                continue
            for new in {form, base64.b64encode(form.encode()).decode()} - self._remembered:
                self._remembered.add(new)
                # Longest first, so a value that contains another is masked whole.
                bisect.insort(self._longest_first, new, key=lambda v: -len(v))

    def _mask_remembered(self, text: str) -> str:
        for value in self._longest_first:
            if value in text:
                text = text.replace(value, self._mask("SECRET", value))
        return text

    def _mask_token(self, match: re.Match[str]) -> str:
        shape = int(str(match.lastgroup)[1:])
        return self._mask(_TOKEN_SHAPES[shape][0], match.group(0))

    def _mask_names(self, text: str) -> str:
        """Mask the value after each sensitive name (`_NAMES`). The pattern runs on an ASCII-lowered
        copy (same length, same offsets); values are read from the original text. The search resumes
        after each value, so nothing is scanned twice."""
        lowered = text.translate(_LOWER)
        parts: list[str] = []
        done = pos = 0
        while (match := _NAMES.search(lowered, pos)) is not None:
            pos = match.end()
            found = self._value_after(text, match)
            if found is None:
                continue
            start, end, kind = found
            parts += [text[done:start], self._mask(kind, text[start:end])]
            done = pos = end
        return "".join([*parts, text[done:]]) if parts else text

    def _value_after(self, text: str, match: re.Match[str]) -> tuple[int, int, str] | None:
        """The span and kind of the credential after a `_NAMES` match, or None."""
        end = match.end()
        key, quote, flag, q1, q2, q3, prose, _ = match.groups()  # one call: this runs per match
        if key is not None:
            key = text[match.start(1) : match.end(1)]
            if not sensitive_name(key):
                return None
            found = _value_span(text, end, quote, key)
            # `name: word word`: a sentence goes on ("failed to fetch token: unexpected status").
            sentence = (
                found is not None
                and not quote
                and text[found[0] : found[1]].isalpha()
                and _SENTENCE_GOES_ON.match(text, found[1]) is not None
                and "=" not in text[match.end(1) : end]
            )
            return None if sentence else found
        if flag is not None:
            name = flag.lstrip("-")
            if text.startswith("-", end) or not sensitive_name(name):
                return None  # the next item is another flag: this one takes no value
            return _value_span(text, end, q1 or q2 or q3, name)
        if prose is not None:
            value = _PROSE_VALUE.match(text, end)
            if value is None:
                return None
            word = value.group(0).rstrip(".,!?:;)]}")
            # A password has a digit or a symbol; a plain word is prose ("password authentication").
            if len(word) < 6 or word.isalpha() or word.startswith(("-", "[[")) or _BENIGN_VALUE.match(word):
                return None
            return end, end + len(word), "PASSWORD"
        value = _SCHEME_VALUE.match(text, end)  # bearer/basic
        # "basic authentication" is prose: a credential has a digit or a symbol, or is long.
        if value is None or (value.group(0).isalpha() and len(value.group(0)) < 20):
            return None
        return end, value.end(), "TOKEN"

    def _mask_random_token(self, match: re.Match[str]) -> str:
        token = match.group(0)
        placeholder = self._placeholder_of.get(token)
        if placeholder:
            return placeholder
        return self._mask("SECRET", token) if _random_token(token) else token

    def _mask_email(self, match: re.Match[str]) -> str:
        # The domain's last label must be a top-level domain (letters): `a@b.c1` is no address.
        address = match.group(0)
        local, _, domain = address.partition("@")
        labels = domain.split(".")
        while len(labels) > 1 and not (len(labels[-1]) >= 2 and labels[-1].isalpha()):
            labels.pop()
        if len(labels) < 2:
            return address
        kept = f"{local}@{'.'.join(labels)}"
        return self._mask("EMAIL", kept) + address[len(kept) :]

    def _mask_ip(self, match: re.Match[str]) -> str:
        candidate = match.group(0)
        return self._mask("IP", candidate) if _personal_ip(candidate) else candidate

    def _walk(self, value: Any, parent_key: str | None) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, list | tuple):
            if parent_key == "env":
                return [self._env_var(item) for item in value]
            return self._list(list(value))
        if not isinstance(value, dict):
            return value
        if value.get("kind") == "Secret":
            return self._secret(value)
        return self._mapping(value)

    def _list(self, items: list[Any]) -> list[Any]:
        # An argument list: `["--db-password", "hunter2"]` has the value in the next item.
        out: list[Any] = []
        flag: str | None = None
        for item in items:
            if flag is not None and isinstance(item, str) and _bare_value(item):
                out.append(self._mask(_kind_for(flag), item))
                flag = None
                continue
            out.append(self._walk(item, parent_key=None))
            flag = None
            if isinstance(item, str) and (bare := _BARE_FLAG.fullmatch(item)) and sensitive_name(bare[1]):
                flag = bare[1]
        return out

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
        if _BENIGN_VALUE.match(value) or PLACEHOLDER.fullmatch(value):
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
        if "data" in secret or "stringData" in secret:
            out["data_keys"] = sorted(keys)  # an evidence copy has its `keys` already
        return out


def _value_span(text: str, start: int, quote: str | None, name: str) -> tuple[int, int, str] | None:
    """The value after a sensitive name: up to the closing quote when quoted, else one word."""
    match = _QUOTED_VALUE[quote].match(text, start) if quote else None
    if match is None:
        match = _VALUE.match(text, start)
    if match is None:
        return None
    value = match.group(0)
    # A value holding a placeholder was masked by a more specific pattern (the password of a DSN):
    # the rest of it (the host) stays readable.
    if "[[" in value or _BENIGN_VALUE.match(value.strip()):
        return None
    return match.start(), match.end(), _kind_for(name)


def _plain_word(value: str) -> bool:
    word = value.strip()
    return word.isalpha() and len(word) < 16


def _bare_value(item: str) -> bool:
    """An argument-list item that can be the value of the flag before it."""
    return not item.startswith("-") and not _BENIGN_VALUE.match(item) and not PLACEHOLDER.search(item)


@functools.lru_cache(maxsize=1024)
def _random_token(token: str) -> bool:
    """Mixed case, digits, high entropy: a generated credential. Kubernetes names, hex ids and
    digests are lower-case, so they are left alone."""
    mixed = token.lower() != token and token.upper() != token
    return mixed and "[[" not in token and looks_like_secret(token)


@functools.lru_cache(maxsize=1024)
def _personal_ip(candidate: str) -> bool:
    """A valid address that says something about someone (not 127.0.0.1, ::1, 0.0.0.0)."""
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


@functools.lru_cache(maxsize=1024)
def _kind_for(name: str) -> str:
    lowered = name.lower()
    if "secret_access_key" in lowered or "secretaccesskey" in lowered:
        return "AWS_KEY"
    if re.search(r"pass|pwd", lowered):
        return "PASSWORD"
    if "token" in lowered or "auth" in lowered or "cookie" in lowered or "session" in lowered:
        return "TOKEN"
    if re.search(r"api[_\-]?key|apikey|access[_\-]?key", lowered):
        return "API_KEY"
    if "private" in lowered:
        return "PRIVATE_KEY"
    return "SECRET"
