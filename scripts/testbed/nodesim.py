#!/usr/bin/env python3
"""nodesim: the kubelet stand-in of the testbed (part of the test harness, not of the product).

kwok runs the simulated nodes (status, heartbeats, leases) and serves logs/exec/metrics for them;
this process plays the container runtime + kubelet for every pod bound to a node. It decides
what happens to each container only from what the pod's manifest says and from the simulated
image registry (images.yaml):

  * image reference invalid -> InvalidImageName; pull policy Never and not on the node ->
    ErrImageNeverPull; repository/tag not in the registry -> ErrImagePull / ImagePullBackOff;
    private registry without a matching imagePullSecret -> ErrImagePull (401 Unauthorized)
  * ConfigMap/Secret (or key) referenced by env/envFrom that does not exist ->
    CreateContainerConfigError; by a volume -> FailedMount, stuck in ContainerCreating
  * command not on the image's PATH -> StartError (exit 128) / RunContainerError; a shell
    script calling an unknown command -> exit 127 ("sh: foo: not found")
  * the program's own behaviour (server, shell script, crash, exit code, memory use) ->
    Completed / Error / OOMKilled (137, when memory use exceeds the limit), restarts with
    CrashLoopBackOff back-off, lastState.terminated
  * readiness/liveness/startup probes (httpGet/tcpSocket/exec) against what the image serves ->
    Unhealthy events, not Ready, Killing + restart
  * deletion (grace period honoured up to a cap), Job-style restartPolicy Never/OnFailure
  * the node's memory running out (pods using more than allocatable) -> the kubelet's eviction
    manager: MemoryPressure, EvictionThresholdMet, the pod using most above its request Evicted

Container commands run in the simulated shell (simshell.py), with the cluster's Services as DNS.
It writes CRI-format container logs (current and previous) and tells kwok where they are with a
Logs object per pod, and reports memory/cpu use with a ResourceUsage object per pod (both owned
by the pod, so they go away with it). Events look like the kubelet's (source kubelet, host node).
For `kubectl exec` (simexec.py) it records each running container in <state>/exec and the
Services in <state>/run/net.json.

Usage: nodesim.py --kubeconfig PATH --context NAME --state DIR [--catalog images.yaml]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import heapq
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

import simshell  # the simulated shell (next to this file)
from simshell import APPLETS, SHELLS, has_binary

log = logging.getLogger("nodesim")

BACKOFF_SCALE = float(os.environ.get("NODESIM_BACKOFF_SCALE", "1"))  # <1 speeds up back-offs
PULL_SECONDS = float(os.environ.get("NODESIM_PULL_SECONDS", "0.5"))
MAX_BACKOFF = 300.0
PAGE = 4096
# Node-pressure eviction as the kubelet's eviction manager does it with its defaults: the hard
# threshold memory.available<100Mi (no soft thresholds, no minimum reclaim).
EVICTION_HARD_MEMORY = 100 * 1024**2
# A container log past this size is cut to its newer half (the kubelet rotates at 10Mi by default).
LOG_MAX_BYTES = 4 * 1024**2
# An endless loop's rounds written at most this many at once after the node stalled.
LOG_CATCH_UP = 100
# The kubelet re-evaluates every 10s (--housekeeping-interval); 1s here, so tests are quick.
EVICTION_INTERVAL = 1.0
# How long MemoryPressure stays True after the threshold was last met: the kubelet's
# --eviction-pressure-transition-period is 5m; 30s by default here, so a scenario's node recovers
# (and the ReplicaSet's replacement pod can land, grow and be evicted again) within a test run.
PRESSURE_TRANSITION = float(os.environ.get("NODESIM_PRESSURE_TRANSITION", "30"))
# Pods the kubelet never evicts: system-node-critical / system-cluster-critical priority.
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
DEFAULT_ARCHES = ["amd64", "arm64"]


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def parse_quantity(q: str | int | float | None) -> float:
    """Kubernetes quantity -> float (bytes for memory, cores for cpu)."""
    if q is None:
        return 0.0
    s = str(q).strip()
    units = {
        "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
        "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3, "n": 1e-9, "u": 1e-6,
    }
    for suffix in sorted(units, key=len, reverse=True):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * units[suffix]
    return float(s)


# --------------------------------------------------------------------------- image registry

REF_RE = re.compile(
    r"^(?:(?P<host>[a-zA-Z0-9.-]+(?::[0-9]+)?|localhost)/)?"
    r"(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


@dataclass
class ImageRef:
    raw: str
    host: str
    repo: str
    tag: str
    digest: str | None

    @property
    def full(self) -> str:
        base = f"{self.host}/{self.repo}"
        return f"{base}@{self.digest}" if self.digest and not self.tag else f"{base}:{self.tag}"

    @property
    def key(self) -> str:
        """Catalog key: docker.io/library/x -> x, docker.io/a/b -> a/b, else host/repo."""
        if self.host == "docker.io":
            return self.repo[len("library/"):] if self.repo.startswith("library/") else self.repo
        return f"{self.host}/{self.repo}"


def parse_image(raw: str) -> ImageRef | None:
    m = REF_RE.match(raw or "")
    if not m:
        return None
    host, repo = m.group("host"), m.group("repo")
    if host and "." not in host and ":" not in host and host != "localhost":
        repo, host = f"{host}/{repo}", None  # "user/repo" on Docker Hub
    host = host or "docker.io"
    if host == "docker.io" and "/" not in repo:
        repo = f"library/{repo}"
    tag = m.group("tag") or ("" if m.group("digest") else "latest")
    return ImageRef(raw, host, repo, tag, m.group("digest"))


class Registry:
    def __init__(self, path: Path):
        data = yaml.safe_load(path.read_text())
        self.registries: dict[str, dict] = data.get("registries", {})
        self.images: dict[str, dict] = data.get("images", {})
        self.internet: dict[str, str] = data.get("internet", {})  # host name -> IP

    def needs_auth(self, ref: ImageRef) -> bool:
        reg = self.registries.get(ref.host) or {}
        return bool(reg.get("auth") or (self.images.get(ref.key) or {}).get("auth"))

    def resolve(self, ref: ImageRef, pull_hosts: set[str]) -> tuple[dict | None, str]:
        """Returns (image spec, "") or (None, error message as containerd words it)."""
        full = ref.full
        if ref.host not in self.registries:
            return None, (
                f'failed to pull and unpack image "{full}": failed to resolve reference "{full}": '
                f'failed to do request: Head "https://{ref.host}/v2/{ref.repo}/manifests/{ref.tag or ref.digest}": '
                f"dial tcp: lookup {ref.host}: no such host"
            )
        img = self.images.get(ref.key)
        if self.needs_auth(ref) and ref.host not in pull_hosts:
            return None, (
                f'failed to pull and unpack image "{full}": failed to resolve reference "{full}": '
                f"failed to authorize: failed to fetch anonymous token: unexpected status from GET "
                f"request to https://{ref.host}/token?scope=repository%3A{ref.repo}%3Apull: 401 Unauthorized"
            )
        if img is None:
            if ref.host == "docker.io":
                return None, (
                    f'failed to pull and unpack image "{full}": failed to resolve reference "{full}": '
                    "pull access denied, repository does not exist or may require authorization: "
                    "server message: insufficient_scope: authorization failed"
                )
            return None, f'failed to pull and unpack image "{full}": failed to resolve reference "{full}": {full}: not found'
        tags = [str(t) for t in img.get("tags", ["*"])]
        if ref.tag and "*" not in tags and ref.tag not in tags:
            return None, f'failed to pull and unpack image "{full}": failed to resolve reference "{full}": {full}: not found'
        return img, ""


# --------------------------------------------------------------------------- programs


def stress_options(args: list[str]) -> dict[str, str]:
    """`stress` options as its getopt_long reads them (--vm 2, --vm-bytes=1G, -m 2, --help)."""
    short = {"-c": "cpu", "-i": "io", "-m": "vm", "-d": "hdd", "-t": "timeout", "-?": "help"}
    flags = {"help", "verbose", "quiet", "dry-run", "vm-keep"}
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        name = short.get(a) or (a[2:] if a.startswith("--") else "")
        value = ""
        if "=" in name:
            name, value = name.split("=", 1)
        elif name and name not in flags and i + 1 < len(args):
            i += 1
            value = args[i]
        if name:
            opts[name] = value
        i += 1
    return opts


def stress_bytes(text: str) -> float:
    """stress's size suffixes: b, k, m, g are powers of 1024 (900M = 900Mi)."""
    m = re.fullmatch(r"(\d+)([bBkKmMgG]?)", text.strip())
    if not m:
        return 256 * 1024**2
    return int(m.group(1)) * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def stress_seconds(text: str) -> float:
    """stress --timeout N[smhdy]."""
    m = re.fullmatch(r"(\d+)([smhdy]?)", text.strip())
    if not m:
        return 0.0
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "y": 31536000}[m.group(2)]


# --------------------------------------------------------------------------- simulation state


@dataclass
class Plan:
    """What a started container will do."""
    lines: list  # what it prints: lines, or (stream, line) when the stream is known
    exit_at: float | None  # None: runs until stopped
    # When each line is printed (seconds after start; none: all at start). A shell's `sleep`
    # really waits, so a script's later lines reach the log when it gets there.
    times: list[float] = field(default_factory=list)
    # An endless loop that prints: after `loop_from` seconds its round repeats for as long as the
    # container runs, so the log grows as it would on a real node.
    repeat: simshell.Repeat | None = None
    loop_from: float = 0.0
    code: int = 0
    reason: str = "Completed"
    message: str = ""
    memory: float = 0.0
    cpu: float = 0.0
    ports: list[int] = field(default_factory=list)
    http_paths: list[str] = field(default_factory=list)
    http_body: list[str] = field(default_factory=list)
    box: simshell.Container | None = None  # the shell's view of the container (files for exec probes)
    # Memory that is filled over time (a stress worker touching its pages, a leak): it grows
    # linearly from memory_from at grow_from to `memory` at grow_until.
    memory_from: float = 0.0
    grow_from: float = 0.0
    grow_until: float = 0.0

    def memory_at(self, t: float) -> float:
        """Working set at time t, whole pages (what cAdvisor would report)."""
        mem = self.memory
        if self.grow_from <= t < self.grow_until:
            mem = self.memory_from + (self.memory - self.memory_from) * (t - self.grow_from) / (
                self.grow_until - self.grow_from)
        elif t < self.grow_from:
            mem = self.memory_from
        return float(int(mem) // PAGE * PAGE)

    def grow(self, start: float, to: float, seconds: float) -> None:
        """From what it uses now, fill memory up to `to` bytes within `seconds`."""
        self.memory_from, self.memory = self.memory, to
        self.grow_from, self.grow_until = start, start + max(0.0, seconds)


@dataclass
class CSim:
    name: str
    init: bool
    sidecar: bool = False
    restarts: int = 0
    stage: str = "new"  # new|pulling|pull-backoff|created|running|exited|backoff|done|blocked
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last: dict = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    wake: float = 0.0
    pull_failures: int = 0
    plan: Plan | None = None
    started_at: float = 0.0
    probe_fail: dict = field(default_factory=dict)
    probe_ok: dict = field(default_factory=dict)
    probe_next: dict = field(default_factory=dict)
    container_id: str = ""
    image_ref: str = ""
    term: dict = field(default_factory=dict)  # how the last run ended
    # The log written so far: the next planned line, and the endless loop's round in progress
    # (when it started, the next of its lines).
    log_next: int = 0
    round_at: float = 0.0
    round_line: int = 0


@dataclass
class PodSim:
    uid: str
    ns: str
    name: str
    node: str
    ip: str = ""
    start: float = field(default_factory=time.time)
    containers: dict[str, CSim] = field(default_factory=dict)
    last_status: str = ""
    logs_registered: bool = False
    usage_sent: str = ""
    deleting: bool = False
    phase: str = "Pending"
    finished: bool = False
    # Set when the kubelet ends the pod itself (eviction, admission rejection): the pod's
    # status.reason / status.message and, for an eviction, its DisruptionTarget condition.
    ended: dict | None = None


@dataclass
class NodeMemory:
    """What the eviction manager knows about one node."""

    pressure: bool | None = None  # MemoryPressure as last written; None: read it from the node
    last_met: float = 0.0  # when memory.available was last seen below the threshold
    check_at: float = 0.0  # when a check is queued (0: none)


def format_bytes(n: float) -> str:
    """A byte count as Kubernetes prints a BinarySI quantity: 921Mi, 943108Ki, 0."""
    n = int(n)
    for suffix, unit in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def pod_memory_request(pod: dict) -> float:
    """The pod's memory request as the kubelet ranks by it: its containers' sum, or the largest
    init container's if that is more."""
    def req(c: dict) -> float:
        return parse_quantity(((c.get("resources") or {}).get("requests") or {}).get("memory"))
    spec = pod["spec"]
    total = sum(req(c) for c in spec.get("containers") or [])
    return max([total] + [req(c) for c in spec.get("initContainers") or []])


def best_effort(pod: dict) -> bool:
    """QoS class BestEffort: no container has any request or limit."""
    spec = pod["spec"]
    return not any((c.get("resources") or {}).get(k)
                   for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                   for k in ("requests", "limits"))


def tolerates_memory_pressure(pod: dict) -> bool:
    for t in pod["spec"].get("tolerations") or []:
        key_ok = t.get("key") in (None, "", "node.kubernetes.io/memory-pressure") and (
            t.get("key") or t.get("operator") == "Exists")
        if key_ok and t.get("effect") in (None, "", "NoSchedule"):
            return True
    return False


class NodeSim:
    def __init__(self, kubeconfig: str, context: str, state: Path, catalog: Path):
        self.api = config.new_client_from_config(config_file=kubeconfig, context=context)
        self.api.configuration.retries = 3
        self.v1 = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.registry = Registry(catalog)
        self.logdir = state / "logs" / "pods"
        # What `kubectl exec` needs to run a command in a simulated container (read by simexec.py).
        self.execdir = state / "exec"
        self.net_file = state / "run" / "net.json"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.pods: dict[str, dict] = {}
        self.sims: dict[str, PodSim] = {}
        self.timers: list[tuple[float, str]] = []
        self.queue: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.node_images: dict[str, set[str]] = {}
        self.node_cache: dict[str, tuple[float, dict]] = {}
        self.events: dict[tuple, tuple[str, int, float]] = {}
        self.ip_used: set[str] = set()
        self.ip_next = 2
        self.node_pods: dict[str, set[str]] = {}  # node name -> uids of its pods
        self.net: tuple[float, dict] = (0.0, {})  # when the cluster's DNS/Service view was taken, and it
        self.node_memory: dict[str, NodeMemory] = {}
        self.stop = threading.Event()

    # ---- plumbing
    def run(self) -> None:
        threading.Thread(target=self._watch_pods, daemon=True).start()
        self._schedule("net/refresh", 1)
        log.info("nodesim running")
        while not self.stop.is_set():
            timeout = 1.0
            if self.timers:
                timeout = max(0.0, min(1.0, self.timers[0][0] - time.time()))
            try:
                kind, pod = self.queue.get(timeout=timeout)
                self._on_pod(kind, pod)
                while True:  # drain without sleeping
                    kind, pod = self.queue.get_nowait()
                    self._on_pod(kind, pod)
            except queue.Empty:
                pass
            now = time.time()
            due: set[str] = set()
            while self.timers and self.timers[0][0] <= now:
                due.add(heapq.heappop(self.timers)[1])
            for key in due:
                if key == "net/refresh":
                    self._refresh_net_file()
                elif key.startswith("log/"):
                    self._log_due(key)
                elif key.startswith("node/"):
                    self._eviction_check_safe(key[len("node/"):])
                else:
                    self._reconcile_safe(key)

    def _watch_pods(self) -> None:
        selector = "spec.nodeName!="
        while not self.stop.is_set():
            try:
                resp = self.v1.list_pod_for_all_namespaces(field_selector=selector, _preload_content=False)
                data = json.loads(resp.data)
                seen = set()
                for pod in data["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self.queue.put(("SYNC", pod))
                self.queue.put(("RELIST", {"uids": list(seen)}))
                rv = data["metadata"]["resourceVersion"]
                w = watch.Watch()
                for ev in w.stream(self.v1.list_pod_for_all_namespaces, field_selector=selector,
                                   resource_version=rv, deserialize=False, allow_watch_bookmarks=True,
                                   timeout_seconds=300):
                    if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.queue.put((ev["type"], ev.get("raw_object") or ev["object"]))
            except Exception as exc:  # noqa: BLE001 - relist after any watch failure
                log.warning("pod watch restarted: %s", exc)
                time.sleep(1)

    def _on_pod(self, kind: str, pod: dict) -> None:
        if kind == "RELIST":
            for uid in list(self.pods):
                if uid not in pod["uids"]:
                    self._forget(uid)
            return
        uid = pod["metadata"]["uid"]
        if kind == "DELETED":
            self._forget(uid)
            return
        old = self.pods.get(uid)
        self.pods[uid] = pod
        if old is None or old["metadata"].get("deletionTimestamp") != pod["metadata"].get("deletionTimestamp") \
                or old["metadata"].get("generation") != pod["metadata"].get("generation"):
            self._schedule(uid, 0)

    def _forget(self, uid: str) -> None:
        self.pods.pop(uid, None)
        sim = self.sims.pop(uid, None)
        if sim:
            self.node_pods.get(sim.node, set()).discard(uid)
            for c in sim.containers.values():
                self._exec_stopped(sim, c)
        if sim and sim.ip:
            self.ip_used.discard(sim.ip)
        for key in [k for k in self.events if k[0] == uid]:
            self.events.pop(key, None)

    def _schedule(self, uid: str, delay: float) -> None:
        heapq.heappush(self.timers, (time.time() + max(0.0, delay), uid))

    def _reconcile_safe(self, uid: str) -> None:
        pod = self.pods.get(uid)
        if pod is None:
            return
        try:
            self.reconcile(pod)
        except ApiException as exc:
            if exc.status == 404:
                self._forget(uid)
                return
            log.warning("reconcile %s/%s: %s %s", pod["metadata"]["namespace"], pod["metadata"]["name"],
                        exc.status, exc.reason)
            self._schedule(uid, 2)
        except Exception:  # noqa: BLE001 - one bad pod must not stop the node
            log.exception("reconcile %s failed", uid)
            self._schedule(uid, 5)

    # ---- API helpers
    def node(self, name: str, fresh: bool = False) -> dict:
        cached = self.node_cache.get(name)
        if cached and cached[0] > time.time() and not fresh:
            return cached[1]
        try:
            data = json.loads(self.v1.read_node(name, _preload_content=False).data)
        except ApiException:
            data = {}
        self.node_cache[name] = (time.time() + 30, data)
        return data

    def event(self, pod: dict, etype: str, reason: str, message: str, container: str | None = None,
              init: bool = False, min_interval: float = 0) -> None:
        md = pod["metadata"]
        key = (md["uid"], reason, message)
        now = time.time()
        prior = self.events.get(key)
        if prior and now - prior[2] < min_interval:
            return
        ref = {"kind": "Pod", "namespace": md["namespace"], "name": md["name"], "uid": md["uid"],
               "apiVersion": "v1", "resourceVersion": md.get("resourceVersion", "")}
        if container:
            ref["fieldPath"] = f"spec.{'initContainers' if init else 'containers'}{{{container}}}"
        try:
            if prior:
                name, count, _ = prior
                self.v1.patch_namespaced_event(name, md["namespace"],
                                               {"count": count + 1, "lastTimestamp": now_iso(now)},
                                               _preload_content=False)
                self.events[key] = (name, count + 1, now)
                return
            name = f"{md['name']}.{uuid.uuid4().hex[:16]}"
            self.v1.create_namespaced_event(md["namespace"], {
                "metadata": {"name": name, "namespace": md["namespace"]},
                "involvedObject": ref, "reason": reason, "message": message, "type": etype,
                "source": {"component": "kubelet", "host": pod["spec"]["nodeName"]},
                "reportingComponent": "kubelet", "reportingInstance": pod["spec"]["nodeName"],
                "firstTimestamp": now_iso(now), "lastTimestamp": now_iso(now), "count": 1,
            }, _preload_content=False)
            self.events[key] = (name, 1, now)
        except ApiException as exc:
            if exc.status != 404 and exc.status != 403:
                log.warning("event %s for %s: %s", reason, md["name"], exc.reason)

    def pull_hosts(self, pod: dict) -> set[str]:
        """Registry hosts the pod has a usable pull secret for (pod's or its ServiceAccount's)."""
        ns = pod["metadata"]["namespace"]
        names = [s.get("name") for s in pod["spec"].get("imagePullSecrets") or []]
        sa_name = pod["spec"].get("serviceAccountName") or "default"
        try:
            sa = json.loads(self.v1.read_namespaced_service_account(sa_name, ns, _preload_content=False).data)
            names += [s.get("name") for s in sa.get("imagePullSecrets") or []]
        except ApiException:
            pass
        hosts: set[str] = set()
        for name in filter(None, names):
            try:
                sec = json.loads(self.v1.read_namespaced_secret(name, ns, _preload_content=False).data)
            except ApiException:
                continue
            raw = (sec.get("data") or {}).get(".dockerconfigjson") or (sec.get("data") or {}).get(".dockercfg")
            if not raw:
                continue
            try:
                cfg = json.loads(base64.b64decode(raw))
            except ValueError:
                continue
            for host in (cfg.get("auths") or cfg).keys():
                hosts.add(re.sub(r"^https?://", "", host).split("/")[0])
        return hosts

    def get_obj(self, kind: str, ns: str, name: str) -> dict | None:
        try:
            fn = self.v1.read_namespaced_config_map if kind == "configmap" else self.v1.read_namespaced_secret
            return json.loads(fn(name, ns, _preload_content=False).data)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # ---- the kubelet part
    def reconcile(self, pod: dict) -> None:
        md, spec = pod["metadata"], pod["spec"]
        uid = md["uid"]
        sim = self.sims.get(uid)
        if sim is None:
            sim = self._adopt(pod)
        now = time.time()
        if md.get("deletionTimestamp"):
            self._terminate_pod(pod, sim, now)
            return
        if sim.finished:
            return
        sim.phase = pod.get("status", {}).get("phase", "Pending")
        if not (pod.get("status") or {}).get("containerStatuses") and not self._admit(pod, sim, now):
            return

        volume_error = self._volume_error(pod)
        wake: list[float] = []
        if volume_error:
            self.event(pod, "Warning", "FailedMount", volume_error, min_interval=30)
            for c in sim.containers.values():
                c.state = {"waiting": {"reason": "PodInitializing" if c.init else "ContainerCreating"}}
            wake.append(now + 5)
        else:
            inits_done = True
            for cspec in spec.get("initContainers") or []:
                c = sim.containers[cspec["name"]]
                self._step(pod, sim, c, cspec, now, wake)
                if c.stage == "backoff":
                    wake.append(c.wake)
                if not init_ok(c):
                    inits_done = False
                    break
            if inits_done:
                for cspec in spec.get("containers") or []:
                    c = sim.containers[cspec["name"]]
                    self._step(pod, sim, c, cspec, now, wake)
                    if c.stage == "backoff":
                        wake.append(c.wake)
            else:
                for cspec in spec.get("containers") or []:
                    sim.containers[cspec["name"]].state = {"waiting": {"reason": "PodInitializing"}}
        self._write_status(pod, sim, now)
        self._report_usage(pod, sim)
        if wake:
            self._schedule(uid, max(0.05, min(wake) - time.time()))

    def _adopt(self, pod: dict) -> PodSim:
        md, spec = pod["metadata"], pod["spec"]
        sim = PodSim(uid=md["uid"], ns=md["namespace"], name=md["name"], node=spec["nodeName"])
        st = pod.get("status") or {}
        if spec.get("hostNetwork"):
            sim.ip = "127.0.0.1"
        else:
            sim.ip = st.get("podIP") or self._alloc_ip()
            self.ip_used.add(sim.ip)
        if st.get("startTime"):
            sim.start = datetime.strptime(st["startTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        prior = {cs["name"]: cs for cs in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or [])}
        for cspec in spec.get("initContainers") or []:
            c = CSim(cspec["name"], init=True, sidecar=cspec.get("restartPolicy") == "Always")
            c.restarts = prior.get(c.name, {}).get("restartCount", 0)
            sim.containers[c.name] = c
        for cspec in spec.get("containers") or []:
            c = CSim(cspec["name"], init=False)
            c.restarts = prior.get(c.name, {}).get("restartCount", 0)
            sim.containers[c.name] = c
        self.sims[sim.uid] = sim
        self.node_pods.setdefault(sim.node, set()).add(sim.uid)
        if st.get("phase") in ("Succeeded", "Failed"):
            sim.finished = True  # ended before nodesim (re)started: nothing runs any more
        return sim

    def _alloc_ip(self) -> str:
        for _ in range(65000):
            n = self.ip_next
            self.ip_next = 2 if self.ip_next >= 65000 else self.ip_next + 1
            ip = f"10.244.{n // 256}.{n % 256}"
            if n % 256 in (0, 255) or ip in self.ip_used:
                continue
            return ip
        raise RuntimeError("pod IP range exhausted")

    def _volume_error(self, pod: dict) -> str:
        ns = pod["metadata"]["namespace"]
        for vol in pod["spec"].get("volumes") or []:
            for kind, field_name, ref_key in (("configmap", "configMap", "name"), ("secret", "secret", "secretName")):
                src = vol.get(field_name)
                if src and not src.get("optional") and src.get(ref_key):
                    obj = self.get_obj(kind, ns, src[ref_key])
                    if obj is None:
                        return f'MountVolume.SetUp failed for volume "{vol["name"]}" : {kind} "{src[ref_key]}" not found'
            proj = vol.get("projected")
            for source in (proj or {}).get("sources") or []:
                for kind, field_name in (("configmap", "configMap"), ("secret", "secret")):
                    src = source.get(field_name)
                    if src and not src.get("optional") and self.get_obj(kind, ns, src.get("name", "")) is None:
                        return f'MountVolume.SetUp failed for volume "{vol["name"]}" : {kind} "{src.get("name")}" not found'
        return ""

    def _config_error(self, pod: dict, cspec: dict) -> tuple[str, dict[str, str]]:
        """CreateContainerConfigError message (or "") and the container's environment."""
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {"HOSTNAME": pod["metadata"]["name"], "PATH": "/usr/local/bin:/usr/bin:/bin"}
        for ef in cspec.get("envFrom") or []:
            for kind, fname, label in (("configmap", "configMapRef", "configmap"), ("secret", "secretRef", "secret")):
                ref = ef.get(fname)
                if not ref:
                    continue
                obj = self.get_obj(kind, ns, ref.get("name", ""))
                if obj is None:
                    if ref.get("optional"):
                        continue
                    return f'{label} "{ref.get("name")}" not found', env
                for k, v in (obj.get("data") or {}).items():
                    env[ef.get("prefix", "") + k] = base64.b64decode(v).decode(errors="replace") if kind == "secret" else v
        for e in cspec.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e.get("value", ""))
                continue
            vf = e.get("valueFrom") or {}
            for kind, fname, title in (("configmap", "configMapKeyRef", "ConfigMap"), ("secret", "secretKeyRef", "Secret")):
                ref = vf.get(fname)
                if not ref:
                    continue
                obj = self.get_obj(kind, ns, ref.get("name", ""))
                if obj is None:
                    if ref.get("optional"):
                        break
                    return f'{kind} "{ref.get("name")}" not found', env
                data = obj.get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    return f'couldn\'t find key {ref["key"]} in {title} {ns}/{ref.get("name")}', env
                val = data[ref["key"]]
                env[e["name"]] = base64.b64decode(val).decode(errors="replace") if kind == "secret" else val
            if "fieldRef" in vf:
                env[e["name"]] = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": ns,
                                  "spec.nodeName": pod["spec"]["nodeName"]}.get(vf["fieldRef"].get("fieldPath"), "")
        return "", env

    def _backoff(self, n: int) -> float:
        return min(MAX_BACKOFF, 10.0 * (2 ** max(0, n - 1))) * BACKOFF_SCALE

    def _step(self, pod: dict, sim: PodSim, c: CSim, cspec: dict, now: float, wake: list[float]) -> None:
        """Advance one container as far as `now` allows; append when it next needs a look."""
        if c.wake > now and c.stage not in ("running",):
            wake.append(c.wake)
            return
        image = cspec.get("image", "")
        ref = parse_image(image)
        policy = cspec.get("imagePullPolicy") or ("Always" if ref and ref.tag == "latest" else "IfNotPresent")
        node_imgs = self.node_images.setdefault(sim.node, set())

        if c.stage in ("new", "pull-backoff"):
            if ref is None:
                msg = f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": invalid reference format'
                c.state = {"waiting": {"reason": "InvalidImageName", "message": msg}}
                self.event(pod, "Warning", "InspectFailed", msg, c.name, c.init, min_interval=60)
                self.event(pod, "Warning", "Failed", "Error: InvalidImageName", c.name, c.init, min_interval=60)
                c.wake = now + 30
                wake.append(c.wake)
                return
            present = ref.full in node_imgs
            if policy == "Never" and not present:
                msg = f'Container image "{image}" is not present with pull policy of Never'
                c.state = {"waiting": {"reason": "ErrImageNeverPull", "message": msg}}
                self.event(pod, "Warning", "ErrImageNeverPull", msg, c.name, c.init, min_interval=60)
                self.event(pod, "Warning", "Failed", "Error: ErrImageNeverPull", c.name, c.init, min_interval=60)
                c.wake = now + 30
                wake.append(c.wake)
                return
            if present and policy != "Always":
                self.event(pod, "Normal", "Pulled", f'Container image "{image}" already present on machine',
                           c.name, c.init)
                c.stage = "created"
            else:
                self.event(pod, "Normal", "Pulling", f'Pulling image "{image}"', c.name, c.init,
                           min_interval=1 if c.pull_failures else 0)
                c.stage, c.wake = "pulling", now + PULL_SECONDS
                if "waiting" not in c.state or c.state["waiting"].get("reason") not in ("ImagePullBackOff", "ErrImagePull"):
                    c.state = {"waiting": {"reason": "ContainerCreating" if not c.init else "PodInitializing"}}
                wake.append(c.wake)
                return

        if c.stage == "pulling":
            img, err = self.registry.resolve(ref, self.pull_hosts(pod))
            if err:
                c.pull_failures += 1
                self.event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {err}', c.name, c.init)
                self.event(pod, "Warning", "Failed", "Error: ErrImagePull", c.name, c.init)
                if c.pull_failures == 1 or c.state.get("waiting", {}).get("reason") != "ImagePullBackOff":
                    c.state = {"waiting": {"reason": "ErrImagePull", "message": err}}
                delay = self._backoff(c.pull_failures)
                c.stage, c.wake = "pull-wait", now + min(2.0, delay)
                c.probe_next["pull_retry"] = now + delay
                c.probe_next["pull_err"] = err  # type: ignore[assignment]
                wake.append(c.wake)
                return
            size = int(img.get("size", 10_000_000))
            self.event(pod, "Normal", "Pulled",
                       f'Successfully pulled image "{image}" in {int(PULL_SECONDS * 1000)}ms '
                       f"({int(PULL_SECONDS * 1000)}ms including waiting). Image size: {size} bytes.", c.name, c.init)
            # An image pulled with credentials is not lent to pods without them, as a kubelet with
            # KubeletEnsureSecretPulledImages does: each such pod pulls (and is refused) itself.
            # Without it, whether a pod lacking the secret ran would depend on where it landed.
            if not self.registry.needs_auth(ref):
                node_imgs.add(ref.full)
            c.pull_failures = 0
            c.stage = "created"

        if c.stage == "pull-wait":
            retry = c.probe_next.get("pull_retry", now)
            if now < retry:
                msg = f'Back-off pulling image "{image}": ErrImagePull: {c.probe_next.get("pull_err")}'
                c.state = {"waiting": {"reason": "ImagePullBackOff", "message": msg}}
                self.event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', c.name, c.init, min_interval=10)
                c.wake = retry
                wake.append(retry)
                return
            c.stage = "pull-backoff"
            self._step(pod, sim, c, cspec, now, wake)
            return

        if c.stage == "created":
            err, env = self._config_error(pod, cspec)
            if err:
                c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": err}}
                self.event(pod, "Warning", "Failed", f"Error: {err}", c.name, c.init, min_interval=10)
                c.wake = now + 5
                wake.append(c.wake)
                return
            img, _ = self.registry.resolve(ref, {ref.host})
            self._start(pod, sim, c, cspec, img or {}, env, now)

        if c.stage == "backoff":
            if now < c.wake:
                wake.append(c.wake)
                return
            c.restarts += 1
            c.last = {"terminated": c.term}
            c.stage = "created"
            self._step(pod, sim, c, cspec, now, wake)
            return

        if c.stage == "running":
            self._run(pod, sim, c, cspec, now, wake)

    def _start(self, pod: dict, sim: PodSim, c: CSim, cspec: dict, img: dict, env: dict, now: float) -> None:
        argv = list(cspec.get("command") or img.get("entrypoint") or [])
        argv += list(cspec.get("args") if cspec.get("args") is not None else
                     ([] if cspec.get("command") else img.get("cmd") or []))
        exe = argv[0] if argv else ""
        c.container_id = "containerd://" + hashlib.sha256(f"{sim.uid}{c.name}{c.restarts}".encode()).hexdigest()
        c.image_ref = image_id(cspec.get("image", ""))
        if not exe or not has_binary(img, exe):
            msg = ("failed to create containerd task: failed to create shim task: OCI runtime create failed: "
                   "runc create failed: unable to start container process: error during container init: "
                   + (f'exec: "{exe}": stat {exe}: no such file or directory: unknown' if exe.startswith("/")
                      else f'exec: "{exe}": executable file not found in $PATH: unknown'))
            self.event(pod, "Normal", "Created", f"Created container: {c.name}", c.name, c.init)
            self.event(pod, "Warning", "Failed", f"Error: {msg}", c.name, c.init)
            term = {"exitCode": 128, "reason": "StartError", "message": msg,
                    "startedAt": "1970-01-01T00:00:00Z", "finishedAt": now_iso(now), "containerID": c.container_id}
            self._exited(pod, sim, c, cspec, term, now, run_error="RunContainerError")
            return
        plan = self._plan(pod, sim, c, cspec, img, env, argv, now)
        c.plan, c.stage, c.started_at, c.started = plan, "running", now, True
        c.state = {"running": {"startedAt": now_iso(now)}}
        c.ready = False
        c.probe_fail, c.probe_ok, c.probe_next = {}, {}, {}
        self.event(pod, "Normal", "Created", f"Created container: {c.name}", c.name, c.init)
        self.event(pod, "Normal", "Started", f"Started container {c.name}", c.name, c.init)
        c.log_next, c.round_at, c.round_line = 0, now + plan.loop_from, 0
        self._write_log(sim, c, self._due_lines(c, now), rotate=True)
        self._schedule_log(sim, c)
        self._check_node_soon(sim.node)
        self._exec_context(sim, c, plan.box or self._box(pod, sim, cspec, img, env), now)

    def _plan(self, pod: dict, sim: PodSim, c: CSim, cspec: dict, img: dict, env: dict,
              argv: list[str], now: float) -> Plan:
        program = img.get("program", "serve")
        port = (img.get("ports") or [0])[0]
        fill = lambda s: str(s).replace("{port}", str(port)).replace("{pod}", sim.name).replace(  # noqa: E731
            "{now}", datetime.now(timezone.utc).strftime("%Y/%m/%d %H:%M:%S"))
        mem = parse_quantity(img.get("memory", "8Mi"))
        plan = Plan(lines=[], exit_at=None, memory=mem, cpu=parse_quantity(img.get("cpu", "1m")),
                    ports=[int(p) for p in img.get("ports") or []], http_paths=list(img.get("http_paths") or []),
                    http_body=[str(x) for x in img.get("http_body") or []])
        node = self.node(sim.node)
        arch = (node.get("status", {}).get("nodeInfo") or {}).get("architecture") or "amd64"
        if arch not in (img.get("arch") or DEFAULT_ARCHES):
            plan.lines, plan.exit_at, plan.code, plan.reason = [f"exec {argv[0]}: exec format error"], now + 0.2, 1, "Error"
            return plan
        base = argv[0].rsplit("/", 1)[-1]
        custom_cmd = bool(cspec.get("command") or cspec.get("args") is not None)
        if program == "shell" or (custom_cmd and (base in SHELLS or base in APPLETS or base in ("python", "python3"))):
            # The command runs in the simulated shell: what it prints, how it ends, what it serves.
            plan.box = self._box(pod, sim, cspec, img, env)
            result = simshell.run_argv(argv, plan.box)
            plan.lines, plan.times = result.output, result.times
            plan.repeat, plan.loop_from = result.repeat, result.duration
            if result.code is not None:
                plan.exit_at, plan.code = now + max(0.3, result.duration), result.code
                plan.reason = "Completed" if result.code == 0 else "Error"
            plan.ports, plan.http_paths = result.ports, []
        elif program == "stress":
            opts = stress_options(argv[1:])
            if "help" in opts or not (opts.get("vm") or opts.get("cpu") or opts.get("io") or opts.get("hdd")):
                plan.lines, plan.exit_at, plan.code, plan.reason = ["`stress' imposes certain types of compute stress on your system"], now + 0.2, 0, "Completed"
            else:
                workers = {k: int(opts.get(k) or 0) for k in ("cpu", "io", "vm", "hdd")}
                plan.lines = ["stress: info: [1] dispatching hogs: {cpu} cpu, {io} io, {vm} vm, {hdd} hdd".format(**workers)]
                # Each vm worker keeps --vm-bytes (default 256M) allocated and touches its pages at
                # the image's fill rate, so the working set grows over a second or two.
                filled = workers["vm"] * stress_bytes(opts.get("vm-bytes") or "256M")
                rate = parse_quantity(img.get("memory_fill_rate", "512Mi"))
                plan.grow(now, plan.memory + filled, filled / rate if rate else 0)
                plan.cpu = max(plan.cpu, workers["cpu"] + workers["vm"])
                if opts.get("timeout"):
                    plan.exit_at = now + stress_seconds(opts["timeout"])
        elif program == "exit":
            plan.lines = [fill(l) for l in img.get("logs") or []]
            plan.exit_at, plan.code = now + float(img.get("runtime", 1)), int(img.get("exit_code", 1))
            plan.reason = "Completed" if plan.code == 0 else "Error"
        else:  # serve
            missing = [alts for alts in img.get("requires_env") or [] if not any(env.get(a) for a in alts)]
            if missing:
                plan.lines = [fill(l) for l in img.get("missing_env_logs") or [f"missing {missing[0][0]}"]]
                plan.exit_at, plan.code, plan.reason = now + 0.5, 1, "Error"
            else:
                plan.lines = [fill(l) for l in img.get("logs") or []]
        if img.get("memory_peak") and program != "stress":  # a leak: grows to its peak
            plan.grow(now, max(plan.memory, parse_quantity(img["memory_peak"])), float(img.get("peak_after", 1.5)))
        # Memory use above the container limit: the kernel OOM killer ends it (137) when the
        # working set reaches the limit.
        limit = parse_quantity(((cspec.get("resources") or {}).get("limits") or {}).get("memory"))
        if limit and plan.memory > limit:
            when = now + 1.5  # memory in use at start: the process dies as it starts up
            if plan.grow_until > now and plan.memory_from < limit:
                when = plan.grow_from + (plan.grow_until - plan.grow_from) * (limit - plan.memory_from) / (
                    plan.memory - plan.memory_from)
            if plan.exit_at is None or when < plan.exit_at:
                plan.exit_at, plan.code, plan.reason = when, 137, "OOMKilled"
                plan.memory, plan.grow_until = limit, min(plan.grow_until, when)
        return plan

    def _run(self, pod: dict, sim: PodSim, c: CSim, cspec: dict, now: float, wake: list[float]) -> None:
        plan = c.plan
        assert plan is not None
        if plan.exit_at is not None and now >= plan.exit_at:
            term = {"exitCode": plan.code, "reason": plan.reason, "startedAt": now_iso(c.started_at),
                    "finishedAt": now_iso(plan.exit_at), "containerID": c.container_id}
            if plan.reason == "OOMKilled":
                self.event(pod, "Warning", "OOMKilling",
                           f"Memory cgroup out of memory: Killed process in container {c.name}", c.name, c.init)
            self._exited(pod, sim, c, cspec, term, now)
            return
        if plan.exit_at is not None:
            wake.append(plan.exit_at)
        if plan.grow_until > now:
            wake.append(min(plan.grow_until, now + 1))  # report the growing working set each second
        # Probes, as the kubelet runs them.
        alive = self._probe(pod, sim, c, cspec, "startupProbe", now, wake)
        if alive is False:
            return
        if alive is None:  # startup probe still pending: no other probes yet
            return
        if self._probe(pod, sim, c, cspec, "livenessProbe", now, wake) is False:
            return
        ready = self._probe(pod, sim, c, cspec, "readinessProbe", now, wake)
        c.ready = bool(ready) if "readinessProbe" in cspec else True
        if c.init and not c.sidecar:
            c.ready = False

    def _probe(self, pod: dict, sim: PodSim, c: CSim, cspec: dict, kind: str, now: float,
               wake: list[float]) -> bool | None:
        probe = cspec.get(kind)
        if not probe:
            return True
        if kind == "startupProbe" and c.probe_ok.get(kind):
            return True
        period = float(probe.get("periodSeconds", 10))
        due = c.probe_next.get(kind, c.started_at + float(probe.get("initialDelaySeconds", 0)))
        if now < due:
            wake.append(due)
            return c.probe_ok.get(kind, False if kind != "livenessProbe" else True) if kind != "startupProbe" else None
        c.probe_next[kind] = now + period
        wake.append(now + period)
        ok, msg = self._probe_once(sim, c, cspec, probe)
        label = {"readinessProbe": "Readiness", "livenessProbe": "Liveness", "startupProbe": "Startup"}[kind]
        if ok:
            c.probe_fail[kind] = 0
            c.probe_ok[kind] = True
            return True
        c.probe_fail[kind] = c.probe_fail.get(kind, 0) + 1
        self.event(pod, "Warning", "Unhealthy", f"{label} probe failed: {msg}", c.name, c.init)
        if c.probe_fail[kind] < int(probe.get("failureThreshold", 3)):
            return c.probe_ok.get(kind, False) if kind == "readinessProbe" else (True if kind == "livenessProbe" else None)
        c.probe_ok[kind] = False
        if kind == "readinessProbe":
            return False
        # liveness/startup failure: the kubelet kills and restarts the container.
        why = "liveness" if kind == "livenessProbe" else "startup"
        self.event(pod, "Normal", "Killing", f"Container {c.name} failed {why} probe, will be restarted", c.name, c.init)
        term = {"exitCode": 137, "reason": "Error", "startedAt": now_iso(c.started_at), "finishedAt": now_iso(now),
                "containerID": c.container_id}
        self._exited(pod, sim, c, cspec, term, now, force_restart=True)
        return False

    def _probe_once(self, sim: PodSim, c: CSim, cspec: dict, probe: dict) -> tuple[bool, str]:
        plan = c.plan
        assert plan is not None
        ports = {p.get("name"): p.get("containerPort") for p in cspec.get("ports") or []}
        if "httpGet" in probe:
            hg = probe["httpGet"]
            port = ports.get(hg.get("port"), hg.get("port"))
            path = hg.get("path", "/")
            url = f"{hg.get('scheme', 'HTTP').lower()}://{sim.ip}:{port}{path}"
            if port not in plan.ports:
                return False, f'Get "{url}": dial tcp {sim.ip}:{port}: connect: connection refused'
            if plan.http_paths and path.split("?")[0] not in plan.http_paths:
                return False, "HTTP probe failed with statuscode: 404"
            return True, ""
        if "tcpSocket" in probe:
            port = ports.get(probe["tcpSocket"].get("port"), probe["tcpSocket"].get("port"))
            if port not in plan.ports:
                return False, f"dial tcp {sim.ip}:{port}: connect: connection refused"
            return True, ""
        if "grpc" in probe:
            port = probe["grpc"].get("port")
            return (port in plan.ports), f'timeout: failed to connect service "{sim.ip}:{port}" within 1s'
        if "exec" in probe:
            cmd = probe["exec"].get("command") or []
            box = plan.box or self._box(self.pods.get(sim.uid) or {}, sim, cspec, self._image(cspec), {})
            # The files as the container's command has left them by now.
            probe_box = dataclasses.replace(box, files=box.files_at(time.time() - c.started_at), history=[])
            result = simshell.run_argv(cmd, probe_box)
            if result.code in (0, None):
                return True, ""
            return False, "\n".join(result.lines)
        return True, ""

    def _exited(self, pod: dict, sim: PodSim, c: CSim, cspec: dict, term: dict, now: float,
                run_error: str = "", force_restart: bool = False) -> None:
        if c.stage == "running" and c.plan is not None:  # what it printed before it ended
            ended = now if c.plan.exit_at is None else min(now, c.plan.exit_at)
            self._write_log(sim, c, self._due_lines(c, ended))
        c.ready = False
        self._exec_stopped(sim, c)
        c.term = term
        c.state = {"terminated": term}  # lastState moves when the container is restarted
        policy = pod["spec"].get("restartPolicy", "Always")
        if c.sidecar:
            policy = "Always"
        code = term["exitCode"]
        restart = force_restart or policy == "Always" or (policy == "OnFailure" and code != 0)
        if c.init and not c.sidecar and code == 0:
            restart = False
        if not restart:
            c.stage = "done"
            return
        # Back-off before the next start: the first restart is quick, then 10s, 20s, ... 5m.
        delay = 0.5 if c.restarts == 0 else self._backoff(c.restarts)
        c.stage, c.wake = "backoff", now + delay
        if delay > 1:
            c.last = {"terminated": term}
            reason = run_error if run_error and c.restarts == 0 else "CrashLoopBackOff"
            c.state = {"waiting": {"reason": reason,
                                   "message": f"back-off {int(delay)}s restarting failed container={c.name} "
                                              f"pod={sim.name}_{sim.ns}({sim.uid})"}}
            self.event(pod, "Warning", "BackOff",
                       f"Back-off restarting failed container {c.name} in pod {sim.name}_{sim.ns}({sim.uid})",
                       c.name, c.init, min_interval=5)
        elif run_error:
            c.last = {"terminated": term}
            c.state = {"waiting": {"reason": run_error, "message": term.get("message", "")}}

    def _terminate_pod(self, pod: dict, sim: PodSim, now: float) -> None:
        md = pod["metadata"]
        if not sim.deleting:
            sim.deleting = True
            for c in sim.containers.values():
                if c.stage == "running":
                    self.event(pod, "Normal", "Killing", f"Stopping container {c.name}", c.name, c.init)
            grace = md.get("deletionGracePeriodSeconds") or 0
            # Containers stop on SIGTERM quickly; never hold a pod longer than 2s.
            self._schedule(sim.uid, min(float(grace), 1.0))
            return
        try:
            self.v1.delete_namespaced_pod(md["name"], md["namespace"], grace_period_seconds=0,
                                          body=client.V1DeleteOptions(grace_period_seconds=0,
                                                                      preconditions={"uid": md["uid"]}),
                                          _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
        sim.finished = True

    # ---- what a container's shell sees: files, DNS, Services
    def _image(self, cspec: dict) -> dict:
        ref = parse_image(cspec.get("image", ""))
        img, _ = self.registry.resolve(ref, {ref.host}) if ref else (None, "")
        return img or {"binaries": ["*shell*"]}

    def _box(self, pod: dict, sim: PodSim, cspec: dict, img: dict, env: dict[str, str]) -> simshell.Container:
        """The simulated shell's view of a container: image, environment, files, network."""
        snap = self.net_snapshot()
        dirs = set(simshell.DEFAULT_DIRS)
        files = {
            "/etc/hostname": f"{sim.name}\n",
            "/etc/hosts": f"127.0.0.1\tlocalhost\n{sim.ip}\t{sim.name}\n",
            "/etc/resolv.conf": f"search {sim.ns}.svc.cluster.local svc.cluster.local cluster.local\n"
                                f"nameserver {snap['dns_ip']}\noptions ndots:5\n",
            "/etc/os-release": 'PRETTY_NAME="Linux"\n',
            "/var/run/secrets/kubernetes.io/serviceaccount/namespace": sim.ns,
        }
        files.update(self._volume_files(pod, cspec, dirs))
        # localhost: what the pod's containers serve (a sidecar's port answers on 127.0.0.1 too)
        own = [p for cs in (pod.get("spec") or {}).get("containers") or []
               for p in (self._image(cs).get("ports") or []) if self._image(cs).get("program") == "serve"]
        net = simshell.Network(snap, sim.ns, sim.ip, sim.name, own)
        return simshell.Container(img=img, env=dict(env), files=files, dirs=dirs, net=net)

    def _volume_files(self, pod: dict, cspec: dict, dirs: set[str]) -> dict[str, str]:
        """Files of the ConfigMap/Secret volumes the container mounts (emptyDirs are directories)."""
        ns = pod["metadata"]["namespace"]
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        files: dict[str, str] = {}
        for m in cspec.get("volumeMounts") or []:
            vol, mount = volumes.get(m.get("name"), {}), m.get("mountPath", "")
            parts = mount.strip("/").split("/")
            dirs.update("/" + "/".join(parts[:k]) for k in range(1, len(parts) + (0 if m.get("subPath") else 1)))
            sources = []
            for src in [vol] + [s for s in (vol.get("projected") or {}).get("sources") or []]:
                if src.get("configMap"):
                    sources.append(("configmap", src["configMap"].get("name"), src["configMap"].get("items")))
                if src.get("secret"):
                    sec = src["secret"]
                    sources.append(("secret", sec.get("secretName") or sec.get("name"), sec.get("items")))
            for kind, name, items in sources:
                obj = self.get_obj(kind, ns, name or "") if name else None
                data = {**((obj or {}).get("data") or {}), **((obj or {}).get("binaryData") or {})}
                if kind == "secret":
                    data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
                paths = {it["key"]: it.get("path", it["key"]) for it in items} if items else {k: k for k in data}
                for key, rel in paths.items():
                    if key not in data:
                        continue
                    if m.get("subPath"):
                        if m["subPath"] == rel:
                            files[mount] = data[key]
                    else:
                        files[f"{mount.rstrip('/')}/{rel}"] = data[key]
        return files

    def _exec_context(self, sim: PodSim, c: CSim, box: simshell.Container, started: float) -> None:
        """Record the started container for simexec.py (what `kubectl exec` runs in)."""
        data = {"uid": sim.uid, "running": True, "started_at": started, "image": box.img, "env": box.env,
                "files": box.base, "history": box.history, "dirs": sorted(box.dirs),
                "net": {"namespace": sim.ns, "own_ip": sim.ip, "own_ports": box.net.own_ports}}
        d = self.execdir / f"{sim.ns}_{sim.name}"
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{c.name}.tmp"
            tmp.write_text(json.dumps(data))
            tmp.replace(d / f"{c.name}.json")
        except OSError as exc:
            log.warning("exec context of %s/%s: %s", sim.name, c.name, exc)

    def _exec_stopped(self, sim: PodSim, c: CSim) -> None:
        """The container no longer runs: exec into it fails as on a node."""
        path = self.execdir / f"{sim.ns}_{sim.name}" / f"{c.name}.json"
        try:
            if json.loads(path.read_text()).get("uid") == sim.uid:  # not a newer pod of the same name
                path.unlink()
                path.parent.rmdir()  # fails while other containers of the pod are recorded
        except (OSError, ValueError):
            pass

    def _refresh_net_file(self) -> None:
        """Every 2s: the Services and what pods serve, for exec (simexec.py runs in its own process)."""
        try:
            data = json.dumps(self.net_snapshot(max_age=2.0), sort_keys=True)
            if not self.net_file.exists() or self.net_file.read_text() != data:
                self.net_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.net_file.with_suffix(".tmp")
                tmp.write_text(data)
                tmp.replace(self.net_file)
        except Exception:  # noqa: BLE001 - try again next time
            log.exception("refreshing %s failed", self.net_file)
        self._schedule("net/refresh", 2)

    def net_snapshot(self, max_age: float = 1.0) -> dict:
        """Services with their ready endpoints and what each running pod serves (see
        simshell.Network), taken from the API at most once a second."""
        taken, snap = self.net
        if snap and time.time() - taken < max_age:
            return snap
        services: dict[str, dict] = {}
        dns_ip = "10.0.0.10"
        try:
            svcs = json.loads(self.v1.list_service_for_all_namespaces(_preload_content=False).data)["items"]
            slices = json.loads(client.DiscoveryV1Api(self.api).list_endpoint_slice_for_all_namespaces(
                _preload_content=False).data)["items"]
        except ApiException as exc:
            log.warning("services for the simulated DNS: %s", exc.reason)
            svcs, slices = [], []
        by_service: dict[str, list[dict]] = {}
        for sl in slices:
            name = (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            if name:
                by_service.setdefault(f"{name}.{sl['metadata']['namespace']}", []).append(sl)
        for svc in svcs:
            md, spec = svc["metadata"], svc.get("spec") or {}
            key = f"{md['name']}.{md['namespace']}"
            if key == "kubernetes.default" and spec.get("clusterIP"):
                dns_ip = spec["clusterIP"].rsplit(".", 1)[0] + ".10"  # kube-dns's usual address
            ready, numbers = [], {}
            for sl in by_service.get(key, []):
                for ep in sl.get("endpoints") or []:
                    if (ep.get("conditions") or {}).get("ready", True):
                        ready += ep.get("addresses") or []
                for p in sl.get("ports") or []:
                    numbers[p.get("name") or ""] = p.get("port")
            ports = [{"port": p.get("port"), "targetPort": numbers.get(p.get("name") or "") or p.get("targetPort")}
                     for p in spec.get("ports") or []]
            ip = spec.get("clusterIP") or ("None" if spec.get("type") != "ExternalName" else "")
            services[key] = {"ip": ip, "ports": ports, "endpoints": ready}
            if spec.get("type") == "ExternalName":  # a CNAME: the external name's address
                services[key]["ip"] = self.registry.internet.get(spec.get("externalName", ""), "")
        pods = {}
        for sim in self.sims.values():
            running = [c.plan for c in sim.containers.values() if c.stage == "running" and c.plan]
            if sim.ip and running and sim.ip != "127.0.0.1":
                pods[sim.ip] = {"ports": sorted({p for pl in running for p in pl.ports}),
                                "http_paths": sorted({h for pl in running for h in pl.http_paths}),
                                "body": next((pl.http_body for pl in running if pl.http_body), [])}
        snap = {"cluster_domain": "cluster.local", "dns_ip": dns_ip, "services": services, "pods": pods,
                "hosts": dict(self.registry.internet)}
        self.net = (time.time(), snap)
        return snap

    # ---- the eviction manager (node-pressure eviction of memory)
    def _check_node_soon(self, node: str, delay: float = 0.2) -> None:
        """Queue an eviction check of the node unless one is already due sooner."""
        mem = self.node_memory.setdefault(node, NodeMemory())
        at = time.time() + delay
        if mem.check_at and mem.check_at <= at:
            return
        mem.check_at = at
        self._schedule("node/" + node, delay)

    def _eviction_check_safe(self, node: str) -> None:
        mem = self.node_memory.get(node)
        if mem is None or not mem.check_at or mem.check_at > time.time() + 0.01:
            return  # superseded by an earlier check, which queued the next one
        mem.check_at = 0.0
        try:
            self._eviction_check(node, mem, time.time())
        except ApiException as exc:
            if exc.status == 404:  # the node was deleted
                self.node_memory.pop(node, None)
                self.node_cache.pop(node, None)
                return
            log.warning("eviction check of node %s: %s %s", node, exc.status, exc.reason)
            self._check_node_soon(node, 5)
        except Exception:  # noqa: BLE001 - keep the node simulated
            log.exception("eviction check of node %s failed", node)
            self._check_node_soon(node, 5)

    def _running(self, node: str) -> list[tuple[dict, PodSim]]:
        """Pods of the node with a running container (the kubelet's candidates for eviction)."""
        out = []
        for uid in self.node_pods.get(node, ()):
            sim, pod = self.sims.get(uid), self.pods.get(uid)
            if sim and pod and not sim.finished and any(c.stage == "running" for c in sim.containers.values()):
                out.append((pod, sim))
        return out

    @staticmethod
    def _pod_memory(sim: PodSim, t: float) -> float:
        return sum(c.plan.memory_at(t) for c in sim.containers.values() if c.stage == "running" and c.plan)

    def _eviction_check(self, node: str, mem: NodeMemory, now: float) -> None:
        """One pass of the kubelet's eviction manager for memory on `node`.

        memory.available = capacity - working set, where the working set is the pods' plus the
        system's. The system (OS, kubelet, runtime) is taken to use what the node reserves for it
        (capacity - allocatable - the eviction threshold), so pods together can use up to
        allocatable before the threshold is met: the arithmetic node allocatable is built on.
        """
        st = self.node(node, fresh=mem.pressure is None)
        if not st:
            self.node_memory.pop(node, None)  # the node is gone
            return
        status = st.get("status") or {}
        capacity = parse_quantity((status.get("capacity") or {}).get("memory"))
        allocatable = parse_quantity((status.get("allocatable") or {}).get("memory")) or capacity
        if not capacity:
            return
        if mem.pressure is None:  # nodesim (re)started: carry on from what the node says
            cond = next((c for c in status.get("conditions") or [] if c.get("type") == "MemoryPressure"), {})
            mem.pressure = cond.get("status") == "True"
            mem.last_met = now if mem.pressure else 0.0
        system = max(0.0, capacity - allocatable - EVICTION_HARD_MEMORY)
        pods = self._running(node)

        def available(t: float) -> float:
            return capacity - system - sum(self._pod_memory(sim, t) for _, sim in pods)

        avail = available(now)
        if avail < EVICTION_HARD_MEMORY:
            mem.last_met = now
            if not mem.pressure:
                self._set_memory_pressure(node, mem, True, now)
            self.node_event(node, "Warning", "EvictionThresholdMet", "Attempting to reclaim memory", min_interval=10)
            victim = self._rank_memory_pressure(pods, now)
            if victim:
                self._evict(victim[0], victim[1], self._eviction_message(victim[0], victim[1], avail, now), now)
            # At most one pod per pass; look again once it is gone.
            self._check_node_soon(node, EVICTION_INTERVAL)
            return
        if mem.pressure:
            if now - mem.last_met >= PRESSURE_TRANSITION:
                self._set_memory_pressure(node, mem, False, now)
            else:
                self._check_node_soon(node, mem.last_met + PRESSURE_TRANSITION - now)
        # Memory still filling up: look again the moment the threshold will be crossed (as the
        # kubelet does when the kernel's memcg threshold notification wakes it).
        until = max((c.plan.grow_until for _, sim in pods for c in sim.containers.values()
                     if c.stage == "running" and c.plan and c.plan.grow_until > now), default=0.0)
        if until and available(until) < EVICTION_HARD_MEMORY:
            lo, hi = now, until
            for _ in range(30):
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if available(mid) < EVICTION_HARD_MEMORY else (mid, hi)
            self._check_node_soon(node, hi - now + 0.01)
        elif until:
            self._check_node_soon(node, until - now + 0.01)

    def _rank_memory_pressure(self, pods: list[tuple[dict, PodSim]], now: float) -> tuple[dict, PodSim] | None:
        """The kubelet's order for memory pressure: pods using more than they request first, then
        lower priority, then the largest use above request. Critical pods are never evicted."""
        def key(item: tuple[dict, PodSim]) -> tuple:
            pod, sim = item
            usage, request = self._pod_memory(sim, now), pod_memory_request(pod)
            return (not usage > request, pod["spec"].get("priority") or 0, -(usage - request))
        candidates = [p for p in pods if (p[0]["spec"].get("priority") or 0) < SYSTEM_CRITICAL_PRIORITY
                      and not p[0]["metadata"].get("deletionTimestamp")]
        return min(candidates, key=key) if candidates else None

    def _eviction_message(self, pod: dict, sim: PodSim, available: float, now: float) -> str:
        """The kubelet's wording (pkg/kubelet/eviction/helpers.go, evictionMessage)."""
        msg = (f"The node was low on resource: memory. Threshold quantity: {format_bytes(EVICTION_HARD_MEMORY)}, "
               f"available: {format_bytes(available // 1024 * 1024)}. ")
        specs = (pod["spec"].get("containers") or []) + (pod["spec"].get("initContainers") or [])
        for cspec in specs:
            c = sim.containers.get(cspec["name"])
            if not c or c.stage != "running" or not c.plan:
                continue
            usage = c.plan.memory_at(now)
            request = ((cspec.get("resources") or {}).get("requests") or {}).get("memory")
            if usage > parse_quantity(request):
                msg += (f"Container {c.name} was using {format_bytes(usage)}, request is {request or 0}, "
                        "has larger consumption of memory. ")
        return msg

    def _evict(self, pod: dict, sim: PodSim, message: str, now: float) -> None:
        """Evict as the kubelet does: Evicted event, containers stopped, pod Failed/Evicted with a
        DisruptionTarget condition. The pod object stays (a ReplicaSet replaces it)."""
        log.info("evicting %s/%s from %s: %s", sim.ns, sim.name, sim.node, message)
        self.event(pod, "Warning", "Evicted", message)
        sim.ended = {"reason": "Evicted", "message": message,
                     "condition": {"type": "DisruptionTarget", "status": "True",
                                   "reason": "TerminationByKubelet", "message": message}}
        self._stop_all(pod, sim, now)

    def _stop_all(self, pod: dict, sim: PodSim, now: float) -> None:
        """The kubelet kills the pod: running containers get SIGTERM (exit 143); containers that
        never ran are reported as the kubelet reports them for a terminated pod."""
        for c in sim.containers.values():
            if c.stage == "running":
                self.event(pod, "Normal", "Killing", f"Stopping container {c.name}", c.name, c.init)
                c.term = {"exitCode": 143, "reason": "Error", "startedAt": now_iso(c.started_at),
                          "finishedAt": now_iso(now), "containerID": c.container_id}
                c.state = {"terminated": c.term}
                self._write_log(sim, c, self._due_lines(c, now))
            elif "terminated" not in c.state:
                c.state = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                          "message": "The container could not be located when the pod was terminated",
                                          "startedAt": None, "finishedAt": None}}
            c.stage, c.ready = "done", False
            self._exec_stopped(sim, c)
        self._write_status(pod, sim, now)
        self._report_usage(pod, sim)
        sim.finished = True

    def _admit(self, pod: dict, sim: PodSim, now: float) -> bool:
        """The kubelet's admission under MemoryPressure: BestEffort pods that do not tolerate the
        memory-pressure taint are rejected (status Failed, reason Evicted)."""
        mem = self.node_memory.get(sim.node)
        if not (mem and mem.pressure) or not best_effort(pod) or tolerates_memory_pressure(pod):
            return True
        message = "The node had condition: [MemoryPressure]. "
        self.event(pod, "Warning", "Evicted", message)
        sim.ended = {"reason": "Evicted", "message": "Pod was rejected: " + message}
        self._stop_all(pod, sim, now)
        return False

    def _set_memory_pressure(self, node: str, mem: NodeMemory, on: bool, now: float) -> None:
        """The kubelet's MemoryPressure condition (kwok's heartbeat stage keeps it as written; the
        node lifecycle controller adds or removes the node.kubernetes.io/memory-pressure taint)."""
        reason = "KubeletHasInsufficientMemory" if on else "KubeletHasSufficientMemory"
        cond = {"type": "MemoryPressure", "status": "True" if on else "False", "reason": reason,
                "message": f"kubelet has {'insufficient' if on else 'sufficient'} memory available",
                "lastHeartbeatTime": now_iso(now), "lastTransitionTime": now_iso(now)}
        self.v1.patch_node_status(node, {"status": {"conditions": [cond]}},
                                  _content_type="application/strategic-merge-patch+json", _preload_content=False)
        mem.pressure = on
        self.node_cache.pop(node, None)
        log.info("node %s: MemoryPressure=%s", node, cond["status"])
        event = "NodeHasInsufficientMemory" if on else "NodeHasSufficientMemory"
        self.node_event(node, "Normal", event, f"Node {node} status is now: {event}")

    def node_event(self, node: str, etype: str, reason: str, message: str, min_interval: float = 0) -> None:
        """An event about a node, as the kubelet records it (namespace default, uid = node name)."""
        key = ("node/" + node, reason, message)
        now = time.time()
        prior = self.events.get(key)
        if prior and now - prior[2] < min_interval:
            return
        try:
            if prior:
                name, count, _ = prior
                self.v1.patch_namespaced_event(name, "default", {"count": count + 1, "lastTimestamp": now_iso(now)},
                                               _preload_content=False)
                self.events[key] = (name, count + 1, now)
                return
            name = f"{node}.{uuid.uuid4().hex[:16]}"
            self.v1.create_namespaced_event("default", {
                "metadata": {"name": name, "namespace": "default"},
                "involvedObject": {"kind": "Node", "name": node, "uid": node},
                "reason": reason, "message": message, "type": etype,
                "source": {"component": "kubelet", "host": node},
                "reportingComponent": "kubelet", "reportingInstance": node,
                "firstTimestamp": now_iso(now), "lastTimestamp": now_iso(now), "count": 1,
            }, _preload_content=False)
            self.events[key] = (name, 1, now)
        except ApiException as exc:
            log.warning("node event %s for %s: %s", reason, node, exc.reason)

    # ---- status, logs, usage
    def _container_status(self, c: CSim, cspec: dict) -> dict:
        st = {"name": c.name, "image": cspec.get("image", ""), "imageID": c.image_ref if c.started else "",
              "ready": c.ready, "restartCount": c.restarts, "state": c.state, "lastState": c.last,
              "started": c.stage == "running"}
        if c.container_id and c.started:
            st["containerID"] = c.container_id
        return st

    def _write_status(self, pod: dict, sim: PodSim, now: float) -> None:
        spec = pod["spec"]
        inits = [self._container_status(sim.containers[cs["name"]], cs) for cs in spec.get("initContainers") or []]
        mains = [self._container_status(sim.containers[cs["name"]], cs) for cs in spec.get("containers") or []]
        init_done = all(init_ok(sim.containers[s["name"]]) for s in inits)
        policy = spec.get("restartPolicy", "Always")
        cs_main = [sim.containers[cs["name"]] for cs in spec.get("containers") or []]
        if sim.ended:
            phase = "Failed"
        elif all(c.stage == "done" for c in cs_main) and cs_main:
            failed = any(c.state.get("terminated", {}).get("exitCode", 0) != 0 for c in cs_main)
            phase = "Failed" if failed else "Succeeded"
        elif any(c.stage == "done" and c.init and not c.sidecar and c.state.get("terminated", {}).get("exitCode", 0) != 0
                 for c in sim.containers.values()) and policy == "Never":
            phase = "Failed"
        elif init_done and all(c.started for c in cs_main):
            phase = "Running"
        else:
            phase = "Pending"
        ready = phase == "Running" and all(c.ready for c in cs_main)
        prior = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}

        def cond(ctype: str, ok: bool, reason: str = "") -> dict:
            status = "True" if ok else "False"
            old = prior.get(ctype)
            c = {"type": ctype, "status": status,
                 "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == status else now_iso(now),
                 "lastProbeTime": None}
            if not ok and reason:
                c["reason"] = reason
            return c

        not_ready = [c.name for c in cs_main if not c.ready]
        conditions = [
            cond("PodReadyToStartContainers", True),
            cond("Initialized", init_done, "ContainersNotInitialized"),
            cond("Ready", ready, "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"),
            cond("ContainersReady", ready, "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"),
        ]
        for c in conditions:
            if c["type"] in ("Ready", "ContainersReady") and c["status"] == "False" and phase not in ("Succeeded", "Failed"):
                c["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
        if "PodScheduled" in prior:
            conditions.append(prior["PodScheduled"])
        if sim.ended and sim.ended.get("condition"):
            conditions.append({**sim.ended["condition"], "lastProbeTime": None,
                               "lastTransitionTime": (prior.get("DisruptionTarget") or {}).get(
                                   "lastTransitionTime") or now_iso(now)})
        host_ip = "127.0.0.1"
        status = {
            "phase": phase, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": sim.ip, "podIPs": [{"ip": sim.ip}], "startTime": now_iso(sim.start),
            "containerStatuses": mains,
        }
        if inits:
            status["initContainerStatuses"] = inits
        if sim.ended:
            status["reason"], status["message"] = sim.ended["reason"], sim.ended["message"]
        digest = json.dumps(status, sort_keys=True)
        if digest == sim.last_status:
            return
        md = pod["metadata"]
        self.v1.patch_namespaced_pod_status(md["name"], md["namespace"], {"status": status},
                                            _content_type="application/merge-patch+json", _preload_content=False)
        sim.last_status = digest
        if phase in ("Succeeded", "Failed"):
            sim.finished = True

    def _log_paths(self, sim: PodSim, c: CSim) -> tuple[Path, Path]:
        d = self.logdir / f"{sim.ns}_{sim.name}_{sim.uid}" / c.name
        return d / "current.log", d / "previous.log"

    def _write_log(self, sim: PodSim, c: CSim, lines: list[tuple[float, object]], rotate: bool = False) -> None:
        """Append (time, line) pairs to the container's current log (CRI format)."""
        cur, prev = self._log_paths(sim, c)
        cur.parent.mkdir(parents=True, exist_ok=True)
        if rotate:
            if cur.exists() and c.restarts > 0:
                cur.replace(prev)
            cur.write_text("")
            if not prev.exists():
                prev.write_text("")
        elif cur.exists() and cur.stat().st_size > LOG_MAX_BYTES:
            # The kubelet rotates at containerLogMaxSize; here the older half is dropped.
            data = cur.read_bytes()[-LOG_MAX_BYTES // 2:]
            cur.write_bytes(data[data.find(b"\n") + 1:])
        if lines:
            with cur.open("a") as f:
                for when, line in lines:
                    ts = datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    if isinstance(line, tuple):  # the shell knows the stream
                        stream, line = line
                    else:  # an image's own log lines: errors go to stderr
                        stream = "stderr" if "error" in line.lower() or "panic" in line.lower() else "stdout"
                    f.write(f"{ts} {stream} F {line}\n")
        if not sim.logs_registered:
            self._register_logs(sim)

    def _due_lines(self, c: CSim, upto: float) -> list[tuple[float, object]]:
        """The lines the running container has printed by `upto` and not yet written."""
        plan = c.plan
        if plan is None:
            return []
        out: list[tuple[float, object]] = []
        while c.log_next < len(plan.lines):
            # Lines of the same instant get a microsecond apart, so their order survives.
            when = c.started_at + (plan.times[c.log_next] if plan.times else 0.0) + c.log_next * 1e-6
            if when > upto:
                return out
            out.append((when, plan.lines[c.log_next]))
            c.log_next += 1
        rep = plan.repeat
        if rep is None:
            return out
        if upto - c.round_at > LOG_CATCH_UP * rep.period:  # the node stalled: skip what it missed
            c.round_at += (upto - c.round_at) // rep.period * rep.period
            c.round_line = 0
        while True:
            offset, stream, text = rep.lines[c.round_line]
            when = c.round_at + offset + c.round_line * 1e-6
            if when > upto:
                return out
            out.append((when, (stream, text)))
            c.round_line += 1
            if c.round_line == len(rep.lines):
                c.round_at, c.round_line = c.round_at + rep.period, 0

    def _next_line_at(self, c: CSim) -> float | None:
        plan = c.plan
        if plan is None:
            return None
        if c.log_next < len(plan.lines):
            return c.started_at + (plan.times[c.log_next] if plan.times else 0.0)
        if plan.repeat is not None:
            return c.round_at + plan.repeat.lines[c.round_line][0]
        return None

    def _schedule_log(self, sim: PodSim, c: CSim) -> None:
        """Wake up when the container prints its next line (a timer of its own: no pod reconcile)."""
        when = self._next_line_at(c)
        if when is not None:
            heapq.heappush(self.timers, (when, f"log/{sim.uid}/{c.name}/{c.container_id}"))

    def _log_due(self, key: str) -> None:
        _, uid, name, container_id = key.split("/", 3)
        sim = self.sims.get(uid)
        c = sim.containers.get(name) if sim else None
        if sim is None or c is None or c.stage != "running" or c.container_id != container_id:
            return  # the container ended or restarted since: its run wrote its own lines
        self._write_log(sim, c, self._due_lines(c, time.time()))
        self._schedule_log(sim, c)

    def _owner(self, sim: PodSim) -> list[dict]:
        return [{"apiVersion": "v1", "kind": "Pod", "name": sim.name, "uid": sim.uid}]

    def _register_logs(self, sim: PodSim) -> None:
        logs = []
        for c in sim.containers.values():
            cur, prev = self._log_paths(sim, c)
            cur.parent.mkdir(parents=True, exist_ok=True)
            for p in (cur, prev):
                if not p.exists():
                    p.write_text("")
            logs.append({"containers": [c.name], "logsFile": str(cur), "previousLogsFile": str(prev), "follow": True})
        body = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                "metadata": {"name": sim.name, "namespace": sim.ns, "ownerReferences": self._owner(sim)},
                "spec": {"logs": logs}}
        try:
            self.custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", sim.ns, "logs", body,
                                                        _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                if exc.status != 403:  # 403: the namespace is being deleted
                    log.warning("logs object for %s/%s: %s", sim.ns, sim.name, exc.reason)
                return
        sim.logs_registered = True

    def _report_usage(self, pod: dict, sim: PodSim) -> None:
        usages = []
        now = time.time()
        for c in sim.containers.values():
            running = c.stage == "running" and c.plan is not None
            mem = c.plan.memory_at(now) if running else 0
            cpu = c.plan.cpu if running else 0
            usages.append({"containers": [c.name], "usage": {
                "memory": {"value": f"{int(mem)}"}, "cpu": {"value": f"{int(cpu * 1e9)}n"}}})
        digest = json.dumps(usages, sort_keys=True)
        if digest == sim.usage_sent:
            return
        body = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ResourceUsage",
                "metadata": {"name": sim.name, "namespace": sim.ns, "ownerReferences": self._owner(sim)},
                "spec": {"usages": usages}}
        try:
            if sim.usage_sent:
                self.custom.patch_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", sim.ns, "resourceusages",
                                                           sim.name, {"spec": {"usages": usages}},
                                                           _preload_content=False)
            else:
                try:
                    self.custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", sim.ns,
                                                                "resourceusages", body, _preload_content=False)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    self.custom.patch_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", sim.ns,
                                                               "resourceusages", sim.name,
                                                               {"spec": {"usages": usages}}, _preload_content=False)
            sim.usage_sent = digest
        except ApiException as exc:
            if exc.status not in (403, 404):  # 403: the namespace is being deleted
                log.warning("resource usage for %s/%s: %s", sim.ns, sim.name, exc.reason)


def init_ok(c: CSim) -> bool:
    """An init container lets the pod go on: it exited 0, or it is a started sidecar."""
    return (c.stage == "done" and c.term.get("exitCode") == 0) or (c.sidecar and c.started)


def image_id(image: str) -> str:
    ref = parse_image(image)
    if not ref:
        return ""
    return f"{ref.host}/{ref.repo}@sha256:{hashlib.sha256(ref.full.encode()).hexdigest()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--context", required=True)
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--catalog", type=Path, default=Path(__file__).with_name("images.yaml"))
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sim = NodeSim(args.kubeconfig, args.context, args.state, args.catalog)
    # Nothing to flush: the cluster holds all state, so stop at once.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sim.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
