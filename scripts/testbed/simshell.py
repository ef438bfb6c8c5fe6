"""simshell: the subset of a POSIX shell that simulated containers run (test harness, not product).

nodesim.py runs a container's command through it when the container starts (to know what it prints,
how it exits and whether it keeps running) and for exec probes; simexec.py runs `kubectl exec`
commands through it. Nothing here touches the host: files, DNS and the network are simulated.

Supported: words with '...', "...", backslashes, $VAR / ${VAR} / ${VAR:-x} / $? / $1 / "$@" / $#,
$(cmd), $((arithmetic)), NAME=value, `a; b`, newlines, `a && b || c`, pipes, `! cmd`, redirections
(> >> 2>&1 >&2 2>/dev/null), comments, if/elif/else, while/until, for, { ...; }, and the
commands of a busybox-like image (echo, printf, cat, test, sleep, wget, nslookup, nc, ...).
A command the image does not have fails as sh reports it: `sh: foo: not found`, exit 127.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

SHELLS = {"sh", "bash", "ash", "dash", "zsh"}
# What a busybox image ("*shell*" in images.yaml) has besides sh.
APPLETS = {
    "echo", "printf", "exit", "sleep", "true", "false", "cat", "env", "printenv", "date",
    "hostname", "ls", "test", "[", "[[", "wget", "nslookup", "touch", "mkdir", "rm", "id", "whoami",
    "pwd", "uname", "yes", "tail", "head", "grep", "seq", "nc", "ping", "kill", "trap", "set",
    "export", "cd", "exec", ":", "wc", "stty", "getent", "httpd", "sed", "awk", "tr", "cut", "sort",
    "uniq", "xargs", "find", "ps", "df", "du", "free", "top", "vi", "tee", "basename", "dirname",
    "chmod", "chown", "ln", "cp", "mv", "tar", "gzip", "md5sum", "sha256sum", "base64", "which",
    "timeout", "nohup", "watch", "mount", "umount", "ifconfig", "ip", "route", "netstat", "traceroute",
    "telnet", "ftpget", "udhcpc", "su", "login", "passwd", "adduser", "addgroup", "less", "more",
}
# What a Debian/Ubuntu-based image ("*coreutils*" in images.yaml) has: coreutils and friends, but
# none of busybox's network applets (no wget, nslookup, nc, ping).
COREUTILS = {
    "cat", "env", "printenv", "date", "hostname", "ls", "test", "[", "touch", "mkdir", "rm", "id", "whoami",
    "pwd", "uname", "yes", "tail", "head", "grep", "seq", "kill", "wc", "stty", "getent", "sed", "awk", "tr",
    "cut", "sort", "uniq", "xargs", "find", "df", "du", "tee", "basename", "dirname", "chmod", "chown", "ln",
    "cp", "mv", "tar", "gzip", "md5sum", "sha256sum", "base64", "which", "timeout", "nohup", "mount", "su",
    "sleep", "true", "false", "echo", "printf", "more", "ps",
}
BUILTINS = {
    "exit", "cd", "pwd", "export", "unset", "set", "shift", "true", "false", ":", "echo", "printf",
    "test", "[", "[[", "exec", "trap", "wait", "read", "return", "local", "eval", ".", "source",
    "type", "command", "kill", "umask", "ulimit", "alias", "hash", "times",
}
DEFAULT_DIRS = {"/", "/bin", "/sbin", "/usr", "/usr/bin", "/usr/sbin", "/usr/local", "/usr/local/bin", "/etc",
                "/tmp", "/var", "/var/log", "/var/run", "/run", "/root", "/home", "/proc", "/sys", "/dev",
                "/lib", "/opt", "/mnt", "/srv"}
KEYWORDS = {"if", "then", "elif", "else", "fi", "while", "until", "do", "done", "for", "in", "{", "}", "!"}
LOOP_LIMIT = 1000
# An endless loop that never sleeps would print as fast as the CPU allows; the simulated node
# repeats such a round at most once a second (its log still grows, the harness's CPU stays bounded).
MIN_ROUND_SECONDS = 1.0


class ShellSyntax(Exception):
    pass


class Exit(Exception):
    def __init__(self, code: int):
        self.code = code


class Forever(Exception):
    """The command never returns (a server, `sleep infinity`, an endless loop)."""


@dataclass
class Repeat:
    """The round an endless loop repeats: every `period` seconds it prints `lines` again, each
    (seconds into the round, stream, text)."""

    period: float
    lines: list[tuple[float, str, str]]


@dataclass
class Result:
    output: list[tuple[str, str]] = field(default_factory=list)  # (stdout|stderr, line)
    times: list[float] = field(default_factory=list)  # when each output line is printed (seconds after start)
    repeat: Repeat | None = None  # set when the command ends in an endless loop that prints
    code: int | None = 0  # None: still running (a server / endless loop)
    duration: float = 0.0  # seconds before it exits (or goes idle), sleeps included
    ports: list[int] = field(default_factory=list)  # TCP ports it listens on

    @property
    def lines(self) -> list[str]:
        return [text for _, text in self.output]


# --------------------------------------------------------------------------- the network


class Network:
    """Cluster DNS and connectivity as a pod sees them, from a snapshot nodesim builds:

    {"cluster_domain": "cluster.local", "dns_ip": "10.0.0.10",
     "services": {"<name>.<ns>": {"ip": "10.0.0.7" | "None", "ports": [{"port", "targetPort"}],
                                  "endpoints": ["10.244.0.5", ...]}},   # ready pod IPs
     "pods": {"10.244.0.5": {"ports": [80], "http_paths": ["/"], "body": [...]}},
     "hosts": {"example.com": "93.184.215.14"}}                         # the simulated internet
    """

    def __init__(self, snapshot: dict | None = None, namespace: str = "default", own_ip: str = "",
                 hostname: str = "", own_ports: list[int] | None = None):
        snap = snapshot or {}
        self.domain = snap.get("cluster_domain", "cluster.local")
        self.dns_ip = snap.get("dns_ip", "10.0.0.10")
        self.services: dict = snap.get("services") or {}
        self.pods: dict = snap.get("pods") or {}
        self.hosts: dict = snap.get("hosts") or {}
        self.ns, self.own_ip, self.hostname = namespace, own_ip, hostname
        self.own_ports = list(own_ports or [])

    def search(self) -> list[str]:
        return [f"{self.ns}.svc.{self.domain}", f"svc.{self.domain}", self.domain]

    def lookup(self, name: str) -> tuple[str, str] | None:
        """(fully qualified name, IP) as the pod's resolver finds it (ndots:5 search path)."""
        name = name.rstrip(".").lower()
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
            return name, name
        if name in ("localhost", self.hostname.lower()):
            return name, "127.0.0.1" if name == "localhost" else self.own_ip
        candidates = [f"{name}.{s}" for s in self.search()] if name.count(".") < 5 else []
        for fqdn in candidates + [name]:
            ip = self._record(fqdn)
            if ip:
                return fqdn, ip
        return None

    def _record(self, fqdn: str) -> str | None:
        svc_suffix = f".svc.{self.domain}"
        if fqdn.endswith(svc_suffix):
            parts = fqdn[: -len(svc_suffix)].split(".")
            if len(parts) == 2:
                svc = self.services.get(f"{parts[0]}.{parts[1]}")
                if svc:
                    if svc.get("ip") in (None, "", "None"):  # headless: the ready pods' IPs
                        return (svc.get("endpoints") or [None])[0]
                    return svc["ip"]
            return None
        return self.hosts.get(fqdn)

    def connect(self, ip: str, port: int) -> tuple[str, dict]:
        """("ok", what answers) | ("refused", {}) | ("timeout", {}) for a TCP connection."""
        if ip in ("127.0.0.1", self.own_ip):
            return ("ok", {"ports": self.own_ports}) if port in self.own_ports else ("refused", {})
        for svc in self.services.values():
            if svc.get("ip") == ip:
                match = next((p for p in svc.get("ports") or [] if int(p.get("port", 0)) == port), None)
                if match is None:
                    return "timeout", {}  # no kube-proxy rule for that port: packets are dropped
                if not svc.get("endpoints"):
                    return "refused", {}  # kube-proxy rejects connections to a Service without endpoints
                target = int(match.get("targetPort") or port)  # the EndpointSlice's resolved port
                pod = self.pods.get(svc["endpoints"][0]) or {}
                return ("ok", pod) if target in (pod.get("ports") or []) else ("refused", {})
        pod = self.pods.get(ip)
        if pod is not None:
            return ("ok", pod) if port in (pod.get("ports") or []) else ("refused", {})
        if ip in self.hosts.values():
            return ("ok", {"ports": [80, 443], "http_paths": ["*"], "body": ["<!doctype html>"]}) if port in (80, 443) \
                else ("timeout", {})
        return "timeout", {}


def http_answer(target: dict, path: str) -> tuple[int, list[str]]:
    paths = target.get("http_paths")
    if not paths and not target.get("body"):
        return 200, []  # something listens; what it answers is not simulated
    if "*" in (paths or []) or path.split("?")[0] in (paths or []):
        return 200, list(target.get("body") or ["ok"])
    return 404, ["404 page not found"]


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of http://host:port/path (scheme and port optional)."""
    m = re.match(r"^(?:([a-z]+)://)?([^/:?#]*)(?::(\d+))?([^#]*)", url)
    scheme, host, port, path = (m.group(1) or "http"), m.group(2), m.group(3), (m.group(4) or "/")
    return scheme, host, int(port) if port else (443 if scheme == "https" else 80), path


# --------------------------------------------------------------------------- lexer and parser


@dataclass
class Word:
    raw: str


@dataclass
class Op:
    op: str


@dataclass
class Redir:
    fd: int
    op: str  # > >> < >& <<
    target: str  # raw word, the fd after >&, or a here-document's text
    expand: bool = True  # here-document: $VAR expanded (its delimiter was not quoted)


def lex(src: str) -> list[Word | Op | Redir]:
    toks: list[Word | Op | Redir] = []
    word: list[str] | None = None
    i, n = 0, len(src)
    heredocs: list[tuple[Redir, str, bool]] = []  # waiting for the end of the line: (redir, delimiter, strip tabs)

    def flush() -> None:
        nonlocal word
        if word is not None:
            toks.append(Word("".join(word)))
            word = None

    def closing(start: int, quote: str) -> int:
        j = start + 1
        while j < n:
            if quote == '"' and src[j] == "\\":
                j += 2
                continue
            if src[j] == quote:
                return j
            j += 1
        raise ShellSyntax("unterminated quoted string")

    def paren_end(start: int) -> int:  # src[start] == "(" : its matching ")"
        depth, j = 0, start
        while j < n:
            if src[j] in "'\"":
                j = closing(j, src[j])
            elif src[j] == "(":
                depth += 1
            elif src[j] == ")":
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        raise ShellSyntax("unterminated $(")

    while i < n:
        ch = src[i]
        if ch in " \t\r":
            flush()
            i += 1
        elif ch == "\\" and src[i + 1: i + 2] == "\n":
            i += 2
        elif ch == "#" and word is None:
            while i < n and src[i] != "\n":
                i += 1
        elif ch in "'\"":
            j = closing(i, ch)
            word = (word or []) + [src[i: j + 1]]
            i = j + 1
        elif ch == "\\":
            word = (word or []) + [src[i: i + 2]]
            i += 2
        elif ch == "$" and src[i + 1: i + 2] == "(":
            j = paren_end(i + 1)
            word = (word or []) + [src[i: j + 1]]
            i = j + 1
        elif ch == "`":
            j = closing(i, "`")
            word = (word or []) + [src[i: j + 1]]
            i = j + 1
        elif src.startswith(("&&", "||"), i):
            flush()
            toks.append(Op(src[i: i + 2]))
            i += 2
        elif ch in ";|&\n()":
            flush()
            toks.append(Op(ch))
            i += 1
            if ch == "\n" and heredocs:  # here-documents start on the next line
                for redir, delim, strip in heredocs:
                    body = []
                    while i < n:
                        end = src.find("\n", i)
                        line = src[i: n if end < 0 else end]
                        i = n if end < 0 else end + 1
                        if (line.lstrip("\t") if strip else line) == delim:
                            break
                        body.append(line.lstrip("\t") if strip else line)
                    else:
                        if delim not in body:
                            pass  # end of script ends the here-document, as sh does (with a warning)
                    redir.target = "\n".join(body)
                heredocs = []
        elif src.startswith("<<", i):
            fd = 0
            flush()
            strip = src.startswith("<<-", i)
            i += 3 if strip else 2
            while i < n and src[i] in " \t":
                i += 1
            sub = lex_one_word(src, i)
            if sub is None:
                raise ShellSyntax("missing here-document delimiter")
            raw, i = sub
            quoted = any(q in raw for q in "'\"\\")
            redir = Redir(fd, "<<", "", expand=not quoted)
            toks.append(redir)
            heredocs.append((redir, re.sub(r"['\"\\]", "", raw), strip))
        elif ch in "<>":
            fd = 1 if ch == ">" else 0
            if word is not None and "".join(word).isdigit():
                fd, word = int("".join(word)), None
            flush()
            op = src[i: i + 2] if src[i: i + 2] in (">>", ">&", "<&") else ch
            i += len(op)
            if op in (">&", "<&"):
                m = re.match(r"\s*(\d+|-)", src[i:])
                if not m:
                    raise ShellSyntax(f"unexpected redirection at {src[i:i + 10]!r}")
                toks.append(Redir(fd, ">&", m.group(1)))
                i += m.end()
                continue
            while i < n and src[i] in " \t":
                i += 1
            sub = lex_one_word(src, i)
            if sub is None:
                raise ShellSyntax("unexpected redirection")
            target, i = sub
            toks.append(Redir(fd, op, target))
        else:
            word = (word or []) + [ch]
            i += 1
    flush()
    return toks


def lex_one_word(src: str, i: int) -> tuple[str, int] | None:
    """The raw word starting at src[i] and where it ends."""
    j, n = i, len(src)
    while j < n and src[j] not in " \t\r\n;|&()<>":
        if src[j] in "'\"":
            k = j + 1
            while k < n and src[k] != src[j]:
                k += 2 if (src[j] == '"' and src[k] == "\\") else 1
            if k >= n:
                raise ShellSyntax("unterminated quoted string")
            j = k + 1
        elif src[j] == "\\":
            j += 2
        else:
            j += 1
    return (src[i:j], j) if j > i else None


class Parser:
    """Tokens -> a tree of tuples: ("list", [and-or...]), ("andor", [(op, pipe)...]),
    ("pipe", [cmd...], negated), ("simple", [word...], [redir...]), ("if", [(cond, body)...], else),
    ("while", cond, body, until), ("for", name, [word...] | None, body), ("group", list)."""

    def __init__(self, toks: list[Word | Op | Redir]):
        self.t, self.i = toks, 0

    def peek(self) -> Word | Op | Redir | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def at_word(self, *raws: str) -> bool:
        tok = self.peek()
        return isinstance(tok, Word) and tok.raw in raws

    def at_op(self, *ops: str) -> bool:
        tok = self.peek()
        return isinstance(tok, Op) and tok.op in ops

    def expect(self, raw: str) -> None:
        if not self.at_word(raw):
            tok = self.peek()
            got = "end of file" if tok is None else getattr(tok, "raw", getattr(tok, "op", "?"))
            raise ShellSyntax(f"unexpected {got!r} (expecting {raw!r})")
        self.i += 1

    def skip_separators(self, newlines_only: bool = False) -> None:
        while self.at_op("\n") or (not newlines_only and self.at_op(";", "&")):
            self.i += 1

    def parse(self) -> tuple:
        tree = self.parse_list(set(), set())
        if self.peek() is not None:
            tok = self.peek()
            raise ShellSyntax(f"unexpected {getattr(tok, 'raw', getattr(tok, 'op', '?'))!r}")
        return tree

    def parse_list(self, stop_words: set[str], stop_ops: set[str]) -> tuple:
        items = []
        while True:
            self.skip_separators()
            tok = self.peek()
            if tok is None or (isinstance(tok, Word) and tok.raw in stop_words) or \
                    (isinstance(tok, Op) and tok.op in stop_ops):
                break
            items.append(self.parse_andor())
            if not (self.at_op(";", "&", "\n") or self.peek() is None or self.at_word(*stop_words)
                    or self.at_op(*stop_ops)):
                tok = self.peek()
                raise ShellSyntax(f"unexpected {getattr(tok, 'raw', getattr(tok, 'op', '?'))!r}")
        return ("list", items)

    def parse_andor(self) -> tuple:
        parts = [("", self.parse_pipeline())]
        while self.at_op("&&", "||"):
            op = self.t[self.i].op  # type: ignore[union-attr]
            self.i += 1
            self.skip_separators(newlines_only=True)
            parts.append((op, self.parse_pipeline()))
        return ("andor", parts)

    def parse_pipeline(self) -> tuple:
        negate = False
        if self.at_word("!"):
            negate, self.i = True, self.i + 1
        cmds = [self.parse_command()]
        while self.at_op("|"):
            self.i += 1
            self.skip_separators(newlines_only=True)
            cmds.append(self.parse_command())
        return ("pipe", cmds, negate)

    def parse_command(self) -> tuple:
        node = self.parse_compound()
        if node is None:
            return self.parse_simple()
        redirs = []
        while isinstance(self.peek(), Redir):  # `while read l; do ...; done < file`
            redirs.append(self.t[self.i])
            self.i += 1
        return ("redir", node, redirs) if redirs else node

    def parse_compound(self) -> tuple | None:
        if self.at_word("if"):
            self.i += 1
            branches, otherwise = [], None
            cond = self.parse_list({"then"}, set())
            self.expect("then")
            branches.append((cond, self.parse_list({"elif", "else", "fi"}, set())))
            while self.at_word("elif"):
                self.i += 1
                cond = self.parse_list({"then"}, set())
                self.expect("then")
                branches.append((cond, self.parse_list({"elif", "else", "fi"}, set())))
            if self.at_word("else"):
                self.i += 1
                otherwise = self.parse_list({"fi"}, set())
            self.expect("fi")
            return ("if", branches, otherwise)
        if self.at_word("while", "until"):
            until = self.t[self.i].raw == "until"  # type: ignore[union-attr]
            self.i += 1
            cond = self.parse_list({"do"}, set())
            self.expect("do")
            body = self.parse_list({"done"}, set())
            self.expect("done")
            return ("while", cond, body, until)
        if self.at_word("for"):
            self.i += 1
            tok = self.peek()
            if not isinstance(tok, Word):
                raise ShellSyntax("bad for loop variable")
            name, self.i = tok.raw, self.i + 1
            items = None
            self.skip_separators(newlines_only=True)
            if self.at_word("in"):
                self.i += 1
                items = []
                while isinstance(self.peek(), Word) and not self.at_word("do"):
                    items.append(self.t[self.i].raw)  # type: ignore[union-attr]
                    self.i += 1
            self.skip_separators()
            self.expect("do")
            body = self.parse_list({"done"}, set())
            self.expect("done")
            return ("for", name, items, body)
        if self.at_word("{"):
            self.i += 1
            body = self.parse_list({"}"}, set())
            self.expect("}")
            return ("group", body)
        if self.at_op("("):
            self.i += 1
            body = self.parse_list(set(), {")"})
            if not self.at_op(")"):
                raise ShellSyntax("missing ')'")
            self.i += 1
            return ("subshell", body)
        return None

    def parse_simple(self) -> tuple:
        words: list[str] = []
        redirs: list[Redir] = []
        while True:
            tok = self.peek()
            if isinstance(tok, Word):
                words.append(tok.raw)
            elif isinstance(tok, Redir):
                redirs.append(tok)
            else:
                break
            self.i += 1
        if not words and not redirs:
            tok = self.peek()
            raise ShellSyntax(f"unexpected {getattr(tok, 'op', 'end of file')!r}")
        return ("simple", words, redirs)


# --------------------------------------------------------------------------- the shell


@dataclass
class Container:
    """What a command can see of the container it runs in."""

    img: dict = field(default_factory=lambda: {"binaries": ["*shell*"]})
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path -> content
    dirs: set[str] = field(default_factory=lambda: set(DEFAULT_DIRS))
    net: Network = field(default_factory=Network)
    cwd: str = "/"
    # exec: commands run for real time (sleep sleeps), output is written as it comes, and stdin is
    # the user's; at container start everything is planned at once.
    live: bool = False
    write: Callable[[str, str], None] | None = None  # live output: (stream, text with newline)
    stdin: Iterator[str] | None = None
    # File changes with the time (seconds after start) they happen, so an exec probe later sees the
    # files as they are then (`touch /tmp/healthy; sleep 30; rm /tmp/healthy` ...).
    history: list[tuple[float, str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.files.setdefault("/dev/null", "")
        self.base = dict(self.files)

    def files_at(self, t: float) -> dict[str, str]:
        files = dict(self.base)
        for when, path, content in self.history:
            if when > t:
                break
            if content is None:
                files.pop(path, None)
            else:
                files[path] = content
        return files


def has_binary(img: dict, exe: str) -> bool:
    bins = [str(b) for b in img.get("binaries", [])]
    bins += [str(x[0]) for x in (img.get("entrypoint"), img.get("cmd")) if x]  # the image's own program
    base = exe.rsplit("/", 1)[-1]
    if "*shell*" in bins and (base in SHELLS or base in APPLETS):
        return True
    if "*coreutils*" in bins and base in COREUTILS:
        return True
    return exe in bins or base in bins or f"/{base}" in bins


class Shell:
    def __init__(self, box: Container, name: str = "sh", args: list[str] | None = None):
        self.box, self.name = box, name
        self.vars: dict[str, str] = dict(box.env)
        self.args = list(args or [])
        self.status = 0
        self.result = Result()
        self.fds: dict[int, tuple] = {1: ("out", "stdout"), 2: ("out", "stderr")}
        self.stdin: list[str] | None = None  # lines piped into the current command

    # ---- entry points
    def run(self, script: str) -> Result:
        try:
            tree = Parser(lex(script)).parse()
        except ShellSyntax as exc:
            self.err(f"{self.name}: syntax error: {exc}")
            self.result.code = 2
            return self.result
        self._top(lambda: self.exec_list(tree))
        return self.result

    def run_argv(self, argv: list[str]) -> Result:
        """Run a program as exec or a container start does: no shell parsing."""
        self._top(lambda: self.command(argv, {}))
        return self.result

    def _top(self, fn: Callable[[], None]) -> None:
        try:
            fn()
            self.result.code = self.status
        except Exit as e:
            self.result.code = e.code
        except Forever:
            if self.box.live:
                self.run_forever()
            self.result.code = None

    def run_forever(self) -> None:
        """exec of a server, `sleep infinity` or an endless loop: runs (repeating the loop's round
        in real time) until it is stopped."""
        repeat = self.result.repeat
        while True:
            if repeat is None:
                time.sleep(3600)
                continue
            elapsed = 0.0
            for offset, stream, text in repeat.lines:
                time.sleep(max(0.0, offset - elapsed))
                elapsed = max(elapsed, offset)
                if self.box.write:  # straight out: the result would grow without end
                    self.box.write(stream, text + "\n")
            time.sleep(max(0.0, repeat.period - elapsed))

    # ---- output
    def emit(self, fd: int, text: str) -> None:
        target = self.fds.get(fd, ("null",))
        if target[0] == "out":
            self.result.output.append((target[1], text))
            self.result.times.append(self.result.duration)
            if self.box.live and self.box.write:
                self.box.write(target[1], text + "\n")
        elif target[0] == "pipe":
            target[1].append(text)
        elif target[0] == "file":
            self.set_file(target[1], text + "\n", append=True)

    def out(self, text: str) -> None:
        for line in text.split("\n"):
            self.emit(1, line)

    def err(self, text: str) -> None:
        self.emit(2, text)

    def set_file(self, path: str, content: str, append: bool = False) -> None:
        content = (self.box.files.get(path, "") if append else "") + content
        self.box.files[path] = content
        self.box.history.append((self.result.duration, path, content))

    def del_file(self, path: str) -> None:
        self.box.files.pop(path, None)
        self.box.history.append((self.result.duration, path, None))

    def sleep(self, seconds: float) -> None:
        if self.box.live:
            time.sleep(seconds)
        self.result.duration += seconds

    # ---- execution
    def exec_list(self, tree: tuple) -> None:
        for item in tree[1]:
            self.exec_andor(item)

    def exec_andor(self, node: tuple) -> None:
        for op, pipe in node[1]:
            if (op == "&&" and self.status != 0) or (op == "||" and self.status == 0):
                continue  # skipped: $? stays what the last command that ran left
            self.exec_pipe(pipe)

    def exec_pipe(self, node: tuple) -> None:
        _, cmds, negate = node
        data: list[str] | None = None
        for k, cmd in enumerate(cmds):
            saved_fds, saved_in = dict(self.fds), self.stdin
            buf: list[str] = []
            if k < len(cmds) - 1:
                self.fds[1] = ("pipe", buf)
            self.stdin = data if k > 0 else saved_in  # the first command reads what the pipeline reads
            try:
                self.exec_command(cmd)
            finally:
                self.fds, self.stdin = saved_fds, saved_in
            data = buf
        if negate:
            self.status = 0 if self.status else 1

    def exec_command(self, node: tuple) -> None:
        kind = node[0]
        if kind == "simple":
            self.exec_simple(node[1], node[2])
        elif kind == "if":
            for cond, body in node[1]:
                self.exec_list(cond)
                if self.status == 0:
                    self.exec_list(body)
                    return
            if node[2] is not None:
                self.exec_list(node[2])
            else:
                self.status = 0
        elif kind == "while":
            self.exec_loop(node[1], node[2], node[3])
        elif kind == "redir":
            saved_fds, saved_in = dict(self.fds), self.stdin
            try:
                for r in node[2]:
                    self.redirect(r)
                self.exec_command(node[1])
            except _RedirError as exc:
                self.err(f"{self.name}: {exc}")
                self.status = 1
            finally:
                self.fds, self.stdin = saved_fds, saved_in
        elif kind == "for":
            items = [f for w in node[2] for f in self.expand(w)] if node[2] is not None else list(self.args)
            for item in items:
                self.vars[node[1]] = item
                self.exec_list(node[3])
        elif kind in ("group", "subshell"):
            saved = (dict(self.vars), self.box.cwd) if kind == "subshell" else None
            try:
                self.exec_list(node[1])
            except Exit as e:
                if saved is None:
                    raise
                self.status = e.code
            if saved:
                self.vars, self.box.cwd = saved

    def exec_loop(self, cond: tuple, body: tuple, until: bool) -> None:
        """Loops run for real while they make progress; a loop that repeats the same state
        (`while true; do ...; sleep 5; done`, waiting for a host that never resolves) runs forever."""
        status = 0
        for _ in range(LOOP_LIMIT):
            before = self._state()
            printed, started = len(self.result.output), self.result.duration
            self.exec_list(cond)
            if (self.status != 0) != until:
                self.status = status
                return
            self.exec_list(body)
            status = self.status
            if self._state() == before:
                # Nothing changed: every further round is this one again (its output, its sleeps).
                self._repeat(printed, started)
                raise Forever()
        self._repeat(printed, started)
        raise Forever()

    def _repeat(self, printed: int, started: float) -> None:
        out, times = self.result.output[printed:], self.result.times[printed:]
        if out and self.result.repeat is None:  # the innermost endless loop is what repeats
            period = max(MIN_ROUND_SECONDS, self.result.duration - started)
            self.result.repeat = Repeat(period, [(t - started, stream, text) for t, (stream, text) in zip(times, out)])

    def _state(self) -> tuple:
        return (sorted(self.vars.items()), sorted(self.box.files.items()), self.box.cwd, len(self.stdin or []))

    def exec_simple(self, words: list[str], redirs: list[Redir]) -> None:
        assigns: dict[str, str] = {}
        i = 0
        while i < len(words) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[i]):
            name, _, value = words[i].partition("=")
            assigns[name] = " ".join(self.expand(value, split=False))
            i += 1
        argv = [f for w in words[i:] for f in self.expand(w)]
        if not argv:
            self.vars.update(assigns)
            if not words[:i]:
                self.status = 0
            return
        saved = dict(self.fds)
        try:
            for r in redirs:
                self.redirect(r)
            self.command(argv, assigns)
        except _RedirError as exc:
            self.err(f"{self.name}: {exc}")
            self.status = 1
        finally:
            self.fds = saved

    def redirect(self, r: Redir) -> None:
        if r.op == ">&":
            if r.target == "-":
                self.fds[r.fd] = ("null",)
            else:
                self.fds[r.fd] = self.fds.get(int(r.target), ("null",))
            return
        if r.op == "<<":
            text = r.target
            if r.expand:
                text = re.sub(r"\$(\{[^}]*\}|\([^)]*\)|[A-Za-z_][A-Za-z0-9_]*|[?#0-9])",
                              lambda m: self.dollar(m.group(0), 0)[0], text)
            self.stdin = text.split("\n") if text else []
            return
        path = self.path(" ".join(self.expand(r.target, split=False)))
        if r.op == "<":
            if path not in self.box.files and path != "/dev/null":
                raise _RedirError(f"can't open {path}: no such file")
            self.stdin = self.box.files.get(path, "").splitlines()
            return
        if path in ("/dev/null",):
            self.fds[r.fd] = ("null",)
        elif path in ("/dev/stdout", "/proc/self/fd/1"):
            self.fds[r.fd] = ("out", "stdout")
        elif path in ("/dev/stderr", "/proc/self/fd/2"):
            self.fds[r.fd] = ("out", "stderr")
        else:
            if os.path.dirname(path) not in self.box.dirs:
                raise _RedirError(f"can't create {path}: nonexistent directory")
            if r.op == ">" or path not in self.box.files:
                self.set_file(path, "")
            self.fds[r.fd] = ("file", path)

    def path(self, p: str) -> str:
        return os.path.normpath(p if p.startswith("/") else os.path.join(self.box.cwd, p)).replace("//", "/")

    # ---- expansion
    def expand(self, raw: str, split: bool = True) -> list[str]:
        """A raw word -> its fields: quotes removed, parameters/commands/arithmetic expanded,
        unquoted expansions split on whitespace ("$@" gives one field per argument)."""
        fields: list[str] = []
        cur: str | None = None

        def add(text: str, quoted: bool) -> None:
            nonlocal cur
            if quoted or not split:
                cur = (cur or "") + text
                return
            if not text:
                return
            parts = text.split()
            if text[0].isspace() and cur is not None:
                fields.append(cur)
                cur = None
            for k, part in enumerate(parts):
                if k > 0:
                    fields.append(cur or "")
                    cur = None
                cur = (cur or "") + part
            if text[-1].isspace() and cur is not None:
                fields.append(cur)
                cur = None

        i, n = 0, len(raw)
        if raw.startswith("~") and (n == 1 or raw[1] == "/"):
            add(self.vars.get("HOME", "/root"), True)
            i = 1
        while i < n:
            ch = raw[i]
            if ch == "'":
                j = raw.index("'", i + 1)
                add(raw[i + 1: j], True)
                i = j + 1
            elif ch == '"':
                j = i + 1
                buf = ""
                while raw[j] != '"':
                    if raw[j] == "\\" and raw[j + 1] in '"\\$`':
                        buf += raw[j + 1]
                        j += 2
                    elif raw[j] == "$" and raw.startswith("$@", j):
                        add(buf, True)
                        buf = ""
                        for k, a in enumerate(self.args):
                            if k > 0:
                                fields.append(cur or "")
                                cur = None
                            add(a, True)
                        if not self.args and cur is None and raw == '"$@"':
                            return []
                        j += 2
                    elif raw[j] in "$`":
                        value, j = self.dollar(raw, j)
                        buf += value
                    else:
                        buf += raw[j]
                        j += 1
                add(buf, True)
                i = j + 1
            elif ch == "\\":
                add(raw[i + 1: i + 2], True)
                i += 2
            elif ch in "$`":
                if raw.startswith("$@", i) or raw.startswith("$*", i):
                    add(" ".join(self.args), False)
                    i += 2
                    continue
                value, i = self.dollar(raw, i)
                add(value, False)
            else:
                j = i
                while j < n and raw[j] not in "'\"\\$`":
                    j += 1
                add(raw[i:j], True)
                i = j
        if cur is not None:
            fields.append(cur)
        return fields

    def dollar(self, raw: str, i: int) -> tuple[str, int]:
        """Expand the $... (or `...`) at raw[i]: (value, index after it)."""
        if raw[i] == "`":
            j = raw.index("`", i + 1)
            return self.substitute(raw[i + 1: j]), j + 1
        rest = raw[i + 1:]
        if rest.startswith("(("):
            depth, j = 0, i + 1
            while j < len(raw):
                depth += {"(": 1, ")": -1}.get(raw[j], 0)
                if depth == 0:
                    break
                j += 1
            return self.arith(raw[i + 3: j - 1]), j + 1
        if rest.startswith("("):
            depth, j = 0, i + 1
            while j < len(raw):
                depth += {"(": 1, ")": -1}.get(raw[j], 0)
                if depth == 0:
                    break
                j += 1
            return self.substitute(raw[i + 2: j]), j + 1
        if rest.startswith("{"):
            j = raw.index("}", i)
            expr = raw[i + 2: j]
            m = re.fullmatch(r"(#?)([A-Za-z_][A-Za-z0-9_]*|\d+|[?#@*$])(?:(:?[-=+?])(.*))?", expr, re.S)
            if not m:
                raise ShellSyntax(f"{raw[i:j + 1]}: bad substitution")
            value = self.param(m.group(2))
            if m.group(1):
                return str(len(value or "")), j + 1
            op, word = m.group(3), m.group(4) or ""
            unset = value is None or (op and op.startswith(":") and value == "")
            if op and op.endswith("-") and unset:
                value = " ".join(self.expand(word, split=False))
            elif op and op.endswith("=") and unset:
                value = self.vars[m.group(2)] = " ".join(self.expand(word, split=False))
            elif op and op.endswith("+"):
                value = "" if unset else " ".join(self.expand(word, split=False))
            return value or "", j + 1
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*|\d|[?#$!*@0-]", rest)
        if not m:
            return "$", i + 1
        return self.param(m.group(0)) or "", i + 1 + m.end()

    def param(self, name: str) -> str | None:
        if name == "?":
            return str(self.status)
        if name == "#":
            return str(len(self.args))
        if name == "$":
            return "1"
        if name == "0":
            return self.name
        if name.isdigit():
            k = int(name)
            return self.args[k - 1] if k <= len(self.args) else None
        if name in ("@", "*"):
            return " ".join(self.args)
        return self.vars.get(name)

    def arith(self, expr: str) -> str:
        expr = re.sub(r"\$?\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                      lambda m: str(int(self.vars.get(m.group(1), "0") or 0)), expr)
        if not re.fullmatch(r"[\d\s+\-*/%()<>=!&|]*", expr):
            raise ShellSyntax(f"arithmetic syntax error: {expr}")
        expr = expr.replace("/", "//").replace("&&", " and ").replace("||", " or ")
        try:
            return str(int(eval(expr, {"__builtins__": {}}, {})))  # noqa: S307 - digits and operators only
        except Exception as exc:  # noqa: BLE001
            raise ShellSyntax(f"arithmetic syntax error: {expr}") from exc

    def substitute(self, script: str) -> str:
        """$(cmd): run it in a subshell, its stdout without trailing newlines."""
        sub = Shell(dataclasses.replace(self.box, live=False), self.name, self.args)  # same files
        sub.vars = dict(self.vars)
        sub.status = self.status
        res = sub.run(script)
        for stream, text in res.output:
            if stream == "stderr":
                self.err(text)
        self.result.duration += res.duration
        if res.code is None:
            raise Forever()
        self.status = res.code
        return "\n".join(t for s, t in res.output if s == "stdout").rstrip("\n")

    # ---- commands
    def command(self, argv: list[str], assigns: dict[str, str]) -> None:
        cmd, args = argv[0], argv[1:]
        base = cmd.rsplit("/", 1)[-1]
        fn = getattr(self, "b_" + {"[": "test", "[[": "test", ":": "true", ".": "source"}.get(base, base), None)
        if base in BUILTINS and fn and "/" not in cmd:
            self.status = fn(args) or 0
            return
        if not has_binary(self.box.img, cmd):
            # busybox/dash: "sh: foo: not found"; bash: "bash: line 1: foo: command not found"
            self.err(f"bash: line 1: {cmd}: command not found" if self.name == "bash" else f"{self.name}: {cmd}: not found")
            self.status = 127
            return
        saved = dict(self.vars)
        self.vars.update(assigns)
        try:
            self.status = self.program(base, cmd, args)
        finally:
            if assigns:
                self.vars = {**saved, **{k: v for k, v in self.vars.items() if k not in assigns}}

    def program(self, base: str, cmd: str, args: list[str]) -> int:
        """A program of the image (not a shell builtin); returns its exit code."""
        if base in SHELLS:
            return self.p_sh(args)
        if base in ("python", "python3") or re.fullmatch(r"python3\.\d+", base):
            return self.p_python(args)
        alias = {"[": "test", "[[": "test", ":": "true"}.get(base, base).replace("-", "_").replace(".", "_")
        fn = getattr(self, "p_" + alias, None) or getattr(self, "b_" + alias, None)  # /bin/echo, /bin/true
        if fn:
            return fn(args) or 0
        img = self.box.img
        own = [str(x[0]).rsplit("/", 1)[-1] for x in (img.get("entrypoint"), img.get("cmd")) if x]
        if img.get("program") == "serve" and base in own:
            self.result.ports += [int(p) for p in img.get("ports") or []]
            raise Forever()  # the image's server, started from a script: it keeps serving
        return 0  # another program of the image: assume it does its job

    # builtins
    def b_exit(self, args: list[str]) -> int:
        raise Exit(int(args[0]) if args and args[0].lstrip("-").isdigit() else self.status)

    def b_true(self, args: list[str]) -> int:
        return 0

    def b_false(self, args: list[str]) -> int:
        return 1

    def b_cd(self, args: list[str]) -> int:
        target = self.path(args[0] if args else self.vars.get("HOME", "/root"))
        if target not in self.box.dirs:
            self.err(f"{self.name}: cd: can't cd to {args[0] if args else target}: No such file or directory")
            return 2
        self.box.cwd = target
        self.vars["PWD"] = target
        return 0

    def b_pwd(self, args: list[str]) -> int:
        self.out(self.box.cwd)
        return 0

    def b_export(self, args: list[str]) -> int:
        for a in args:
            if "=" in a:
                k, _, v = a.partition("=")
                self.vars[k] = v
        return 0

    def b_unset(self, args: list[str]) -> int:
        for a in args:
            self.vars.pop(a, None)
        return 0

    def b_set(self, args: list[str]) -> int:
        if "--" in args:
            self.args = args[args.index("--") + 1:]
        return 0

    def b_shift(self, args: list[str]) -> int:
        k = int(args[0]) if args and args[0].isdigit() else 1
        if k > len(self.args):
            return 1
        self.args = self.args[k:]
        return 0

    def b_trap(self, args: list[str]) -> int:
        return 0

    b_wait = b_umask = b_ulimit = b_alias = b_hash = b_times = b_local = b_return = b_trap

    def b_read(self, args: list[str]) -> int:
        names = [a for a in args if not a.startswith("-")] or ["REPLY"]
        line = None
        if self.stdin:
            line = self.stdin.pop(0)
        elif self.stdin is None and self.box.live and self.box.stdin:
            line = next(self.box.stdin, None)
            line = line.rstrip("\n") if line is not None else None
        if line is None:
            return 1
        parts = line.split(None, len(names) - 1)
        for k, name in enumerate(names):
            self.vars[name] = parts[k] if k < len(parts) else ""
        return 0

    def b_eval(self, args: list[str]) -> int:
        tree = Parser(lex(" ".join(args))).parse()
        self.exec_list(tree)
        return self.status

    def b_source(self, args: list[str]) -> int:
        if not args or self.path(args[0]) not in self.box.files:
            self.err(f"{self.name}: .: {args[0] if args else ''}: not found")
            return 1
        return self.b_eval([self.box.files[self.path(args[0])]])

    def b_type(self, args: list[str]) -> int:
        code = 0
        for a in args:
            if a in BUILTINS:
                self.out(f"{a} is a shell builtin")
            elif has_binary(self.box.img, a):
                self.out(f"{a} is /usr/bin/{a}" if "/" not in a else f"{a} is {a}")
            else:
                self.out(f"{a}: not found")
                code = 1
        return code

    def b_command(self, args: list[str]) -> int:
        if args[:1] == ["-v"]:
            found = [a for a in args[1:] if a in BUILTINS or has_binary(self.box.img, a)]
            for a in found:
                self.out(a if a in BUILTINS else f"/usr/bin/{a}")
            return 0 if len(found) == len(args[1:]) else 1
        self.command(args, {})
        return self.status

    def b_kill(self, args: list[str]) -> int:
        return 0

    def b_exec(self, args: list[str]) -> int:
        if not args:
            return 0  # only redirections: they stay for the rest of the script
        self.command(args, {})
        raise Exit(self.status)

    def b_echo(self, args: list[str]) -> int:
        newline, escapes = True, False
        while args and re.fullmatch(r"-[neE]+", args[0]):
            newline = newline and "n" not in args[0]
            escapes = "e" in args[0] or escapes
            args = args[1:]
        text = " ".join(args)
        if escapes:
            text = text.replace("\\n", "\n").replace("\\t", "\t")
        if newline or text:
            self.out(text)
        return 0

    def b_printf(self, args: list[str]) -> int:
        if not args:
            self.err("printf: usage: printf format [arguments]")
            return 2
        fmt, values = args[0], args[1:]
        fmt = fmt.replace("\\n", "\n").replace("\\t", "\t")
        count = max(1, len(re.findall(r"%[sdif]", fmt)))
        chunks = []
        while True:
            take, values = values[:count], values[count:]
            it = iter(take)
            chunks.append(re.sub(r"%([sdif%])", lambda m: "%" if m.group(1) == "%" else next(it, ""), fmt))
            if not values:
                break
        text = "".join(chunks)
        for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
            self.emit(1, line)
        return 0

    def b_test(self, args: list[str]) -> int:
        if args and args[-1] in ("]", "]]"):
            args = args[:-1]
        return 0 if self._test(args) else 1

    def _test(self, a: list[str]) -> bool:
        if not a:
            return False
        if a[0] == "!":
            return not self._test(a[1:])
        for op, fn in (("-o", any), ("-a", all), ("||", any), ("&&", all)):
            if op in a[1:-1]:
                k = a.index(op, 1)
                return fn([self._test(a[:k]), self._test(a[k + 1:])])
        if len(a) == 1:
            return a[0] != ""
        if len(a) == 2:
            op, x = a
            p = self.path(x)
            return {"-z": x == "", "-n": x != "", "-f": p in self.box.files, "-e": p in self.box.files or p in self.box.dirs,
                    "-d": p in self.box.dirs, "-s": bool(self.box.files.get(p)), "-r": p in self.box.files,
                    "-x": has_binary(self.box.img, x), "-w": p in self.box.files}.get(op, False)
        x, op, y = a[0], a[1], a[2]
        if op in ("=", "==", "!="):
            return (x == y) != (op == "!=")
        ints = {"-eq": int.__eq__, "-ne": int.__ne__, "-lt": int.__lt__, "-le": int.__le__, "-gt": int.__gt__,
                "-ge": int.__ge__}
        if op in ints:
            try:
                return ints[op](int(x), int(y))
            except ValueError:
                self.err(f"{self.name}: {x if not x.lstrip('-').isdigit() else y}: bad number")
                return False
        return False

    # programs
    def p_sh(self, args: list[str]) -> int:
        opts = [a for a in args if a.startswith("-") and a != "-"]
        if "-c" in args:
            k = args.index("-c")
            script = args[k + 1] if k + 1 < len(args) else ""
            rest = args[k + 2:]
            sub = Shell(self.box, rest[0] if rest else self.name, rest[1:])
            sub.vars = dict(self.vars)
            sub.fds = dict(self.fds)
            sub.result = self.result
            res_code = sub.run(script).code
            if res_code is None:
                raise Forever()
            return res_code
        scripts = [a for a in args if a not in opts]
        if scripts:
            p = self.path(scripts[0])
            if p not in self.box.files:
                self.err(f"{self.name}: can't open '{scripts[0]}': No such file or directory")
                return 2
            sub = Shell(self.box, scripts[0], scripts[1:])
            sub.vars, sub.fds, sub.result = dict(self.vars), dict(self.fds), self.result
            code = sub.run(self.box.files[p]).code
            if code is None:
                raise Forever()
            return code
        if self.box.live and self.box.stdin is not None:
            return interactive(self.box, self.name, self)
        return 0  # no script and nothing on stdin: the shell ends at once

    def p_python(self, args: list[str]) -> int:
        if "-c" in args:
            k = args.index("-c")
            return run_python(self, args[k + 1] if k + 1 < len(args) else "")
        if args[:2] == ["-m", "http.server"]:
            port = int(args[2]) if len(args) > 2 and args[2].isdigit() else 8000
            self.err(f"Serving HTTP on 0.0.0.0 port {port} (http://0.0.0.0:{port}/) ...")
            self.result.ports.append(port)
            raise Forever()
        if args and not args[0].startswith("-"):
            if self.path(args[0]) not in self.box.files:
                self.err(f"python3: can't open file '{self.path(args[0])}': [Errno 2] No such file or directory")
                return 2
            return 0
        return 0

    def p_sleep(self, args: list[str]) -> int:
        arg = args[0] if args else ""
        if arg in ("infinity", "inf"):
            raise Forever()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", arg)
        if not m:
            self.err(f"sleep: invalid number '{arg}'")
            return 1
        seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        if seconds >= 3600 and not self.box.live:
            raise Forever()  # a container that sleeps an hour or more: it just keeps running
        self.sleep(seconds)
        return 0

    def p_env(self, args: list[str]) -> int:
        k = 0
        extra = {}
        while k < len(args) and ("=" in args[k] or args[k] in ("-i", "-")):
            if "=" in args[k]:
                name, _, value = args[k].partition("=")
                extra[name] = value
            k += 1
        if k < len(args):
            self.command(args[k:], extra)
            return self.status
        for name, value in sorted({**self.vars, **extra}.items()):
            self.out(f"{name}={value}")
        return 0

    def p_printenv(self, args: list[str]) -> int:
        if args:
            values = [self.vars[a] for a in args if a in self.vars]
            for v in values:
                self.out(v)
            return 0 if len(values) == len(args) else 1
        return self.p_env([])

    def p_date(self, args: list[str]) -> int:
        now = time.time() + (0 if self.box.live else self.result.duration)
        fmt = next((a[1:] for a in args if a.startswith("+")), "%a %b %d %H:%M:%S UTC %Y")
        fmt = fmt.replace("%N", f"{int((now % 1) * 1e9):09d}").replace("%s", str(int(now)))
        self.out(datetime.fromtimestamp(now, timezone.utc).strftime(fmt))
        return 0

    def p_hostname(self, args: list[str]) -> int:
        self.out(self.vars.get("HOSTNAME", "pod") if "-i" not in args else self.box.net.own_ip)
        return 0

    def p_whoami(self, args: list[str]) -> int:
        self.out("root")
        return 0

    def p_id(self, args: list[str]) -> int:
        self.out("uid=0(root) gid=0(root) groups=0(root),10(wheel)")
        return 0

    def p_uname(self, args: list[str]) -> int:
        self.out("Linux" if not args else "Linux pod 6.1.0-28-amd64 #1 SMP Debian x86_64 GNU/Linux")
        return 0

    def p_stty(self, args: list[str]) -> int:
        if args[:1] == ["size"]:
            try:
                size = os.get_terminal_size(sys.stdin.fileno())
            except OSError:
                self.err("stty: standard input: Not a tty")
                return 1
            self.out(f"{size.lines} {size.columns}")
        return 0

    def p_touch(self, args: list[str]) -> int:
        for a in args:
            if not a.startswith("-") and self.path(a) not in self.box.files:
                self.set_file(self.path(a), "")
        return 0

    def p_mkdir(self, args: list[str]) -> int:
        for a in args:
            if a.startswith("-"):
                continue
            p = self.path(a)
            parents = [os.path.dirname(p)] if "-p" not in args else []
            if any(d not in self.box.dirs for d in parents):
                self.err(f"mkdir: can't create directory '{a}': No such file or directory")
                return 1
            while p not in self.box.dirs:
                self.box.dirs.add(p)
                p = os.path.dirname(p)
        return 0

    def p_rm(self, args: list[str]) -> int:
        code = 0
        for a in args:
            if a.startswith("-"):
                continue
            p = self.path(a)
            if p in self.box.files:
                self.del_file(p)
            elif p in self.box.dirs and any(f in ("-r", "-rf", "-fr") for f in args):
                self.box.dirs.discard(p)
            elif "-f" not in "".join(x for x in args if x.startswith("-")):
                self.err(f"rm: can't remove '{a}': No such file or directory")
                code = 1
        return code

    def p_ls(self, args: list[str]) -> int:
        targets = [(a, self.path(a)) for a in args if not a.startswith("-")] or [(".", self.box.cwd)]
        code = 0
        for given, t in targets:
            if t in self.box.files:
                self.out(given)  # a file is listed as it was named
            elif t in self.box.dirs:
                names = sorted({p[len(t.rstrip("/")) + 1:].split("/")[0] for p in list(self.box.files) + list(self.box.dirs)
                                if p.startswith(t.rstrip("/") + "/") and p != t})
                for name in names:
                    self.out(name)
            else:
                self.err(f"ls: {given}: No such file or directory")
                code = 1
        return code

    def _input(self, files: list[str], name: str) -> tuple[list[str], int]:
        lines: list[str] = []
        code = 0
        for f in files:
            if f == "-":
                lines += self.stdin or []
                continue
            p = self.path(f)
            if p not in self.box.files:
                self.err(f"{name}: can't open '{f}': No such file or directory")
                code = 1
                continue
            lines += self.box.files[p].splitlines()
        if not files:
            if self.stdin is None and self.box.live and self.box.stdin is not None:
                lines = [line.rstrip("\n") for line in self.box.stdin]  # exec -i: the user's input
            else:
                lines = list(self.stdin or [])
        return lines, code

    def p_cat(self, args: list[str]) -> int:
        lines, code = self._input([a for a in args if not a.startswith("-") or a == "-"], "cat")
        for line in lines:
            self.emit(1, line)
        return code

    def _count(self, args: list[str], default: int) -> tuple[int, list[str], bool]:
        n, rest, follow = default, [], False
        k = 0
        while k < len(args):
            a = args[k]
            if a == "-n" and k + 1 < len(args):
                n, k = int(args[k + 1].lstrip("+")), k + 1
            elif re.fullmatch(r"-n?\d+", a):
                n = int(a.lstrip("-n"))
            elif a in ("-f", "-F"):
                follow = True
            elif not a.startswith("-") or a == "-":
                rest.append(a)
            k += 1
        return n, rest, follow

    def p_head(self, args: list[str]) -> int:
        n, files, _ = self._count(args, 10)
        lines, code = self._input(files, "head")
        for line in lines[:n]:
            self.emit(1, line)
        return code

    def p_tail(self, args: list[str]) -> int:
        n, files, follow = self._count(args, 10)
        lines, code = self._input(files, "tail")
        for line in lines[-n:] if n else []:
            self.emit(1, line)
        if follow and code == 0:
            raise Forever()  # `tail -f /dev/null`: keeps the container running
        return code

    def p_grep(self, args: list[str]) -> int:
        flags = "".join(a[1:] for a in args if a.startswith("-") and len(a) > 1)
        rest = [a for a in args if not a.startswith("-") or a == "-"]
        if not rest:
            self.err("BusyBox v1.36.1 multi-call binary.\n\nUsage: grep [-HhnlLoqvsrRiwFE] PATTERN/-e PATTERN.../-f FILE [FILE]...")
            return 2
        pattern, files = rest[0], rest[1:]
        lines, code = self._input(files, "grep")
        try:
            rx = re.compile(re.escape(pattern) if "F" in flags else pattern, re.I if "i" in flags else 0)
        except re.error:
            rx = re.compile(re.escape(pattern))
        hits = [line for line in lines if bool(rx.search(line)) != ("v" in flags)]
        if "c" in flags:
            self.out(str(len(hits)))
        elif "q" not in flags:
            for line in hits:
                self.emit(1, line)
        return 2 if code else (0 if hits else 1)

    def p_wc(self, args: list[str]) -> int:
        lines, code = self._input([a for a in args if not a.startswith("-")], "wc")
        if "-l" in args:
            self.out(str(len(lines)))
        else:
            text = "\n".join(lines) + ("\n" if lines else "")
            self.out(f"{len(lines):>7} {len(text.split()):>7} {len(text):>7}")
        return code

    def p_seq(self, args: list[str]) -> int:
        nums = [int(a) for a in args if a.lstrip("-").isdigit()]
        lo, hi = (1, nums[0]) if len(nums) == 1 else (nums[0], nums[-1]) if nums else (1, 0)
        for k in range(lo, hi + 1):
            self.out(str(k))
        return 0

    def p_yes(self, args: list[str]) -> int:
        for _ in range(3):
            self.out(" ".join(args) or "y")
        raise Forever()

    def p_tee(self, args: list[str]) -> int:
        lines = list(self.stdin or [])
        for a in args:
            if not a.startswith("-"):
                self.set_file(self.path(a), "".join(line + "\n" for line in lines))
        for line in lines:
            self.emit(1, line)
        return 0

    def p_httpd(self, args: list[str]) -> int:
        port = 80
        if "-p" in args and args.index("-p") + 1 < len(args):
            port = int(args[args.index("-p") + 1].rsplit(":", 1)[-1])
        self.result.ports.append(port)
        if "-f" in args:
            raise Forever()  # in the foreground it keeps serving
        return 0  # without -f busybox httpd goes to the background: the script carries on

    # ---- DNS and network
    def _resolve_or_fail(self, prog: str, host: str, hostport: str) -> str | None:
        found = self.box.net.lookup(host)
        if found is None:
            self.err({"curl": f"curl: (6) Could not resolve host: {host}"}.get(prog, f"{prog}: bad address '{hostport}'"))
            return None
        return found[1]

    def p_nslookup(self, args: list[str]) -> int:
        names = [a for a in args if not a.startswith("-")]
        if not names:
            self.err("BusyBox v1.36.1 multi-call binary.\n\nUsage: nslookup [-type=QUERY_TYPE] [-debug] HOST [DNS_SERVER]")
            return 1
        net, name = self.box.net, names[0].rstrip(".")
        self.out(f"Server:\t\t{net.dns_ip}\nAddress:\t{net.dns_ip}:53\n")
        found = net.lookup(name)
        if found is None:
            tried = [f"{name}.{s}" for s in net.search()] if name.count(".") < 5 else []
            for fqdn in tried + [name]:
                self.out(f"** server can't find {fqdn}: NXDOMAIN\n")
            return 1
        self.out(f"Name:\t{found[0]}\nAddress: {found[1]}\n")
        return 0

    def p_getent(self, args: list[str]) -> int:
        if len(args) >= 2 and args[0] in ("hosts", "ahosts", "ahostsv4"):
            found = self.box.net.lookup(args[1])
            if found is None:
                return 2
            self.out(f"{found[1]:<15} {found[0]}")
            return 0
        return 2

    def p_ping(self, args: list[str]) -> int:
        hosts = [a for a in args if not a.startswith("-") and not a.isdigit()]
        if not hosts:
            self.err("ping: usage error: Destination address required")
            return 1
        ip = self._resolve_or_fail("ping", hosts[0], hosts[0])
        if ip is None:
            return 1
        count = int(args[args.index("-c") + 1]) if "-c" in args else 4
        self.out(f"PING {hosts[0]} ({ip}): 56 data bytes")
        # Service IPs are virtual (kube-proxy rules for TCP/UDP ports only): they never answer ICMP.
        answers = ip in self.box.net.pods or ip in ("127.0.0.1", self.box.net.own_ip) or ip in self.box.net.hosts.values()
        for seq in range(count if answers else 0):
            self.out(f"64 bytes from {ip}: seq={seq} ttl=64 time=0.080 ms")
        self.sleep(count)
        self.out(f"\n--- {hosts[0]} ping statistics ---")
        self.out(f"{count} packets transmitted, {count if answers else 0} packets received, "
                 f"{0 if answers else 100}% packet loss")
        return 0 if answers else 1

    def p_nc(self, args: list[str]) -> int:
        if "-l" in args or "-lk" in args or "-kl" in args:
            port = next((int(a) for a in args if a.isdigit()), 0)
            self.result.ports.append(port)
            raise Forever()
        rest = [a for a in args if not a.startswith("-")]
        if "-w" in args and args.index("-w") + 1 < len(args):
            rest.remove(args[args.index("-w") + 1]) if args[args.index("-w") + 1] in rest else None
        if len(rest) < 2:
            self.err("BusyBox v1.36.1 multi-call binary.\n\nUsage: nc [OPTIONS] HOST PORT  - connect")
            return 1
        ip = self._resolve_or_fail("nc", rest[0], rest[0])
        if ip is None:
            return 1
        state, _ = self.box.net.connect(ip, int(rest[1]))
        if state == "ok":
            return 0
        if state == "timeout":
            self.sleep(float(args[args.index("-w") + 1]) if "-w" in args else 10)
            self.err("nc: timed out")
            return 1
        self.err(f"nc: can't connect to remote host ({ip}): Connection refused")
        return 1

    def p_wget(self, args: list[str]) -> int:
        quiet, output, timeout, urls = False, None, 900.0, []
        k = 0
        while k < len(args):
            a = args[k]
            if a.startswith("--"):
                name, _, value = a[2:].partition("=")
                quiet = quiet or name == "quiet"
                output = value if name == "output-document" else output
                timeout = float(value) if name == "timeout" and value else timeout
            elif a.startswith("-") and len(a) > 1:
                letters = a[1:]
                for opt in ("O", "T", "o", "U", "Y", "P", "e", "header"):  # options taking a value
                    if opt in letters:
                        flags, value = letters[: letters.index(opt)], letters[letters.index(opt) + 1:]
                        if not value and k + 1 < len(args):
                            value, k = args[k + 1], k + 1
                        output = value if opt == "O" else output
                        timeout = float(value) if opt == "T" else timeout
                        letters = flags
                        break
                quiet = quiet or "q" in letters
            else:
                urls.append(a)
            k += 1
        if not urls:
            self.err("BusyBox v1.36.1 multi-call binary.\n\nUsage: wget [-cqS] [--spider] [-O FILE] [-o LOGFILE] URL...")
            return 1
        scheme, host, port, path = split_url(urls[0])
        hostport = host + (f":{port}" if re.search(rf"{re.escape(host)}:\d+", urls[0]) else "")
        ip = self._resolve_or_fail("wget", host, hostport)
        if ip is None:
            return 1
        if not quiet:
            self.err(f"Connecting to {hostport} ({ip}:{port})")
        state, target = self.box.net.connect(ip, port)
        if state == "refused":
            self.err(f"wget: can't connect to remote host ({ip}): Connection refused")
            return 1
        if state == "timeout":
            self.sleep(min(timeout, 900.0))
            self.err("wget: download timed out")
            return 1
        status, body = http_answer(target, path)
        if status != 200:
            self.err(f"wget: server returned error: HTTP/1.1 {status} Not Found")
            return 1
        if "--spider" in args:
            return 0
        if output == "-":
            if not quiet:
                self.err("writing to stdout")
            for line in body:
                self.emit(1, line)
            if not quiet:
                self.err("written to stdout")
        else:
            name = output or (os.path.basename(path.split("?")[0]) or "index.html")
            self.set_file(self.path(name), "".join(line + "\n" for line in body))
            if not quiet:
                self.err(f"saving to '{name}'")
                self.err(f"'{name}' saved")
        return 0

    def p_curl(self, args: list[str]) -> int:
        fail = any(a in ("-f", "--fail") or (re.fullmatch(r"-[a-zA-Z]+", a) and "f" in a) for a in args)
        silent_err = any(a in ("-s", "--silent") or (re.fullmatch(r"-[a-zA-Z]+", a) and "s" in a) for a in args) \
            and not any(a in ("-S", "--show-error") or (re.fullmatch(r"-[a-zA-Z]+", a) and "S" in a) for a in args)
        urls, output, k, timeout = [], None, 0, 0.0
        while k < len(args):
            a = args[k]
            if a in ("-o", "--output", "-H", "--header", "-X", "--request", "-d", "--data", "-w", "--write-out",
                     "-m", "--max-time", "--connect-timeout", "-u", "--user", "-A"):
                if a in ("-o", "--output") and k + 1 < len(args):
                    output = args[k + 1]
                if a in ("-m", "--max-time", "--connect-timeout") and k + 1 < len(args):
                    timeout = float(args[k + 1])
                k += 2
                continue
            if not a.startswith("-"):
                urls.append(a)
            k += 1
        if not urls:
            self.err("curl: try 'curl --help' or 'curl --manual' for more information")
            return 2
        scheme, host, port, path = split_url(urls[0])

        def fails(code: int, message: str) -> int:
            if not silent_err:
                self.err(f"curl: ({code}) {message}")
            return code

        found = self.box.net.lookup(host)
        if found is None:
            return fails(6, f"Could not resolve host: {host}")
        ip = found[1]
        state, target = self.box.net.connect(ip, port)
        if state == "refused":
            return fails(7, f"Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server")
        if state == "timeout":
            self.sleep(timeout or 130)
            ms = int((timeout or 130) * 1000)
            return fails(28, f"Failed to connect to {host} port {port} after {ms} ms: Timeout was reached")
        status, body = http_answer(target, path)
        if status >= 400 and fail:
            return fails(22, f"The requested URL returned error: {status}")
        if output and output != "-":
            self.set_file(self.path(output), "".join(line + "\n" for line in body))
        else:
            for line in body:
                self.emit(1, line)
        return 0


class _RedirError(Exception):
    pass


def run_python(sh: Shell, code: str) -> int:
    """Enough of `python -c` for container commands: print, time.sleep, sys.exit, raise, while True."""
    for stmt in [s.strip() for s in re.split(r"\n|;", code) if s.strip()]:
        if stmt.startswith(("import ", "from ")):
            continue
        m = re.match(r"print\((['\"])(.*)\1(?:,\s*flush=True)?\)$", stmt)
        if m:
            sh.out(m.group(2))
            continue
        m = re.match(r"(?:time\.)?sleep\(([\d.]+)\)$", stmt)
        if m:
            sh.sleep(float(m.group(1)))
            continue
        if re.match(r"while True:", stmt):
            raise Forever()
        m = re.match(r"(?:sys\.)?exit\((\d*)\)$", stmt)
        if m:
            return int(m.group(1) or 0)
        m = re.match(r"raise (\w+)\((['\"]?)(.*)\2\)$", stmt)
        if m:
            sh.err("Traceback (most recent call last):")
            sh.err('  File "<string>", line 1, in <module>')
            sh.err(f"{m.group(1)}: {m.group(3)}")
            return 1
    return 0


def run_script(script: str, box: Container, name: str = "sh", args: list[str] | None = None) -> Result:
    """`sh -c script` in the container."""
    return Shell(box, name, args).run(script)


def run_argv(argv: list[str], box: Container) -> Result:
    """A command as the container runtime starts it (argv, no shell unless it is one)."""
    return Shell(box, "sh").run_argv(argv)


def interactive(box: Container, name: str, parent: Shell | None = None) -> int:
    """An interactive shell on the exec's stdin: on a terminal a prompt and line editing (the
    shell echoes what is typed, as busybox's and bash's line editors do), one line at a time."""
    sh = Shell(box, name)
    if parent:
        sh.vars = dict(parent.vars)
    write = box.write or (lambda stream, text: None)
    lines = _edited_lines(write) if sys.stdin.isatty() else box.stdin
    assert lines is not None
    pending = ""
    while True:
        if sys.stdin.isatty():
            write("stdout", f"root@{sh.vars.get('HOSTNAME', 'pod')}:{sh.box.cwd}# " if name == "bash"
                  else ("# " if "*shell*" not in box.img.get("binaries", []) else f"{sh.box.cwd} # "))
        line = next(lines, None)
        if line is None:
            return sh.status
        pending += line
        try:
            tree = Parser(lex(pending)).parse()
        except ShellSyntax as exc:
            if "unterminated" in str(exc) or "expecting" in str(exc):
                continue  # the command goes on on the next line
            sh.err(f"{name}: syntax error: {exc}")
            sh.status, pending = 2, ""
            continue
        pending = ""
        try:
            sh.exec_list(tree)
        except Exit as e:
            return e.code
        except Forever:
            sh.run_forever()


def _edited_lines(write: Callable[[str, str], None]) -> Iterator[str]:
    """Lines typed on the terminal, echoed and edited by us (the terminal's own echo is off)."""
    import termios

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflag: byte by byte, no kernel echo
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        buf = ""
        while True:
            data = os.read(fd, 1024)
            if not data:
                return
            for ch in data.decode(errors="replace"):
                if ch in "\r\n":
                    write("stdout", "\n")
                    yield buf + "\n"
                    buf = ""
                elif ch in "\x7f\x08":
                    if buf:
                        buf = buf[:-1]
                        write("stdout", "\b \b")
                elif ch == "\x03":  # ^C: drop the line
                    write("stdout", "^C\n")
                    buf = ""
                    yield "\n"
                elif ch == "\x04" and not buf:  # ^D on an empty line: end of input
                    return
                elif ch >= " " or ch == "\t":
                    buf += ch
                    write("stdout", ch)
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
