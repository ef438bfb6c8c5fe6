"""The simulated shell of the testbed (scripts/testbed/simshell.py) on its own: no cluster needed.

What a container's `sh -c` prints and how it exits decides what nodesim reports (logs, exit
codes, CrashLoopBackOff), so its parsing must be the shell's: `;` and `&&`/`||` only outside
quotes, `$?` of the last command that ran, names resolved like a pod's resolver does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "testbed" / "simshell.py"
if "simshell" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("simshell", _PATH)
    assert _spec and _spec.loader
    sys.modules["simshell"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["simshell"])
simshell = sys.modules["simshell"]

NET = {
    "dns_ip": "10.0.0.10",
    "services": {
        "web.shop": {
            "ip": "10.0.0.27",
            "ports": [{"port": 8080, "targetPort": 80}],
            "endpoints": ["10.244.0.5"],
        },
        "empty.shop": {"ip": "10.0.0.30", "ports": [{"port": 80, "targetPort": 80}], "endpoints": []},
        "kubernetes.default": {
            "ip": "10.0.0.1",
            "ports": [{"port": 443, "targetPort": 6443}],
            "endpoints": [],
        },
    },
    "pods": {"10.244.0.5": {"ports": [80], "http_paths": ["/"], "body": ["<h1>hi</h1>"]}},
    "hosts": {"example.com": "93.184.215.14"},
}


def run(script: str, **env: str):
    box = simshell.Container(
        env={"HOSTNAME": "pod-1", **env}, net=simshell.Network(NET, "shop", "10.244.0.9", "pod-1")
    )
    return simshell.run_script(script, box)


def out(script: str, **env: str) -> list[str]:
    return [text for stream, text in run(script, **env).output if stream == "stdout"]


@pytest.mark.parametrize(
    ("script", "stdout", "code"),
    [
        ("echo a; echo b", ["a", "b"], 0),
        ("echo a;echo b", ["a", "b"], 0),
        ("echo a\necho b", ["a", "b"], 0),
        ('echo "a;b"', ["a;b"], 0),
        ("echo 'y;z' ; echo \"a && b\"", ["y;z", "a && b"], 0),
        ("echo a && false || echo c", ["a", "c"], 0),
        ("false && echo x || echo y", ["y"], 0),
        ("true || echo x && echo y", ["y"], 0),
        ("false; echo $?", ["1"], 0),
        ("echo start; exit 3; echo never", ["start"], 3),
        ("echo hi | grep -c h", ["1"], 0),
        ("echo hi | grep x", [], 1),
        ("! false && echo negated", ["negated"], 0),
        ('x=$(echo sub); echo "[$x]"', ["[sub]"], 0),
        ("echo ${MISSING:-fallback}", ["fallback"], 0),
        ("for i in 1 2; do echo n$i; done", ["n1", "n2"], 0),
        ("i=0; while [ $i -lt 3 ]; do echo $i; i=$((i+1)); done", ["0", "1", "2"], 0),
        ("if [ -f /nope ]; then echo yes; elif true; then echo elif; fi", ["elif"], 0),
        ("echo kept > /tmp/f; cat /tmp/f", ["kept"], 0),
        ("cat <<EOF\nline $HOSTNAME\nEOF", ["line pod-1"], 0),
        ("echo a # a comment; echo b", ["a"], 0),
    ],
)
def test_statements_and_exit_codes(script: str, stdout: list[str], code: int) -> None:
    result = run(script)
    assert [t for s, t in result.output if s == "stdout"] == stdout
    assert result.code == code


def test_stderr_is_its_own_stream() -> None:
    result = run("echo out; echo oops >&2; ls /nope 2>/dev/null; exit 4")
    assert result.output == [("stdout", "out"), ("stderr", "oops")]
    assert result.code == 4


def test_unterminated_quote_is_a_syntax_error() -> None:
    result = run("echo it's; echo q")
    assert result.code == 2 and "unterminated quoted string" in result.lines[0]


def test_a_command_the_image_lacks_exits_127() -> None:
    result = run("echo boot; pyhton app.py")
    assert result.output[-1] == ("stderr", "sh: pyhton: not found") and result.code == 127
    nginx = simshell.Container(img={"binaries": ["nginx", "sh", "echo"]})
    assert simshell.run_script("nslookup web", nginx).code == 127


def test_variables_and_positional_arguments() -> None:
    assert out('echo "$GREETING, $WHO"', GREETING="hello", WHO="it's me; $(rm -rf /)") == [
        "hello, it's me; $(rm -rf /)"
    ]
    box = simshell.Container()
    argv = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "kubilitics-exec", "/tmp", "pwd"]
    assert simshell.run_argv(argv, box).lines == ["/tmp"]
    argv[4] = "/no/such/dir"
    result = simshell.run_argv(argv, simshell.Container())
    assert result.code == 2 and "/no/such/dir" in result.lines[0]


def test_endless_and_long_commands_keep_running() -> None:
    for script in (
        "while true; do echo tick; sleep 5; done",
        "sleep infinity",
        "tail -f /dev/null",
        "httpd -f -p 8080",
    ):
        assert run(script).code is None, script
    assert run("httpd -f -p 8080").ports == [8080]
    timed = run("sleep 2; echo done")
    assert timed.code == 0 and timed.duration == 2


def test_files_over_time_for_exec_probes() -> None:
    box = simshell.Container()
    simshell.run_script("touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600", box)
    assert "/tmp/healthy" in box.files_at(10)
    assert "/tmp/healthy" not in box.files_at(40)


def test_service_names_resolve_like_a_pods_resolver() -> None:
    for name in ("web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local"):
        lines = out(f"nslookup {name}")
        assert "Name:\tweb.shop.svc.cluster.local" in lines and "Address: 10.0.0.27" in lines, name
    assert "Address: 10.0.0.1" in out("nslookup kubernetes.default")
    assert out("getent hosts example.com") == ["93.184.215.14   example.com"]


def test_names_that_do_not_exist() -> None:
    result = run("nslookup inventory-servce")
    assert result.code == 1
    assert "** server can't find inventory-servce.shop.svc.cluster.local: NXDOMAIN" in result.lines
    wget = run('wget -q -O- "http://inventory-servce:8080/health" || exit 1')
    assert wget.output == [("stderr", "wget: bad address 'inventory-servce:8080'")] and wget.code == 1
    nginx = simshell.Container(img={"binaries": ["nginx", "sh", "curl"]}, net=simshell.Network(NET, "shop"))
    curl = simshell.run_script("curl -sS http://no-such-api.example.net/", nginx)
    assert curl.output == [("stderr", "curl: (6) Could not resolve host: no-such-api.example.net")]
    assert curl.code == 6


def test_http_through_services() -> None:
    assert out("wget -q -O- http://web:8080/") == ["<h1>hi</h1>"]
    missing = run("wget -q -O- http://web:8080/missing")
    assert missing.lines == ["wget: server returned error: HTTP/1.1 404 Not Found"] and missing.code == 1
    refused = run("wget -q -O- http://empty/")
    assert refused.lines == ["wget: can't connect to remote host (10.0.0.30): Connection refused"]
    assert run("nc -z web 8080").code == 0


def test_each_line_carries_the_time_it_is_printed() -> None:
    result = run("echo a; sleep 2; echo b >&2; sleep 1.5; echo c; exit 4")
    assert result.output == [("stdout", "a"), ("stderr", "b"), ("stdout", "c")]
    assert result.times == [0.0, 2.0, 3.5] and result.duration == 3.5 and result.code == 4
    assert result.repeat is None


def test_an_endless_loop_repeats_its_round_with_its_sleeps() -> None:
    result = run('echo boot; while true; do echo "GET / 200"; sleep 0.5; echo "refused" >&2; sleep 2; done')
    assert result.code is None  # it runs until the container is stopped
    assert result.output == [("stdout", "boot"), ("stdout", "GET / 200"), ("stderr", "refused")]
    assert result.duration == 2.5  # the first round; the next starts there
    assert result.repeat == simshell.Repeat(2.5, [(0.0, "stdout", "GET / 200"), (0.5, "stderr", "refused")])


def test_a_loop_that_never_sleeps_repeats_at_most_once_a_second() -> None:
    assert run("while true; do echo spin; done").repeat == simshell.Repeat(1.0, [(0.0, "stdout", "spin")])
    assert run("while true; do sleep 5; done").repeat is None  # prints nothing: nothing to repeat
