"""A real Kubernetes control plane on loopback, with KWOK nodes, for the e2e suite.

``LocalCluster`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the
KWOK controller as plain processes (each in its own process group, pids recorded in the state
directory), on free ports of 127.0.0.1, and creates simulated GPU and CPU nodes. Everything
the operator talks to is the real thing: admission, CEL validation, server-side apply, RBAC,
garbage collection, the Deployment/ReplicaSet controllers and the scheduler. What is simulated
is the node side: KWOK marks nodes Ready and scheduled pods Running/Ready with pod IPs taken
from a per-node CIDR inside 127.64.0.0/16, so a test may bind an emulator to a pod's IP and
dial it without ever leaving loopback.

Why the processes are started by hand rather than through ``kwokctl``: we need exact pid
control for teardown after crashes, a restart of the apiserver alone with identical flags, an
audit policy of our own and client-cert identities per component; all of which is simpler
and more transparent as a few argv lists here.

Typical use (pytest session fixture)::

    cluster = LocalCluster(state_dir, die_with_parent=True)
    cluster.up()
    try:
        yield cluster              # cluster.kubeconfig, cluster.audit_log, ...
    finally:
        cluster.down()

Only the standard library and PyYAML are needed (no kubernetes client, no kubectl: the few
API calls made here go through :meth:`LocalCluster.api`). Binaries come from
``e2e/cluster/build``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from . import binaries

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
DEFAULT_KWOK_STAGES = HERE / "kwok-stages.yaml"

#: Annotation selecting the nodes that the KWOK controller manages.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
#: Pod IPs come from this loopback block: node number N gets 127.64.N.0/24.
POD_CIDR_PREFIX = "127.64"
#: Node InternalIPs (a pod's hostIP): node number N gets 127.65.N.1.
NODE_IP_PREFIX = "127.65"
#: ClusterIPs. Never dialled by tests (no kube-proxy here); a private range like a real cluster.
SERVICE_CIDR = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"

#: Audit policy: one Metadata event per write (with its user), nothing for reads, so a test
#: can count e.g. the writes of ``system:serviceaccount:<ns>:<name>``. Node lease renewals
#: by KWOK are dropped: they are pure noise here.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "verbs": ["get", "list", "watch"]},
        {
            "level": "None",
            "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
            "namespaces": ["kube-node-lease"],
        },
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}


class ClusterError(RuntimeError):
    """Starting, waiting for or talking to the local cluster failed."""


class ApiError(ClusterError):
    """The API server answered with an HTTP error; ``status`` and the decoded ``body`` kept."""

    def __init__(self, method: str, path: str, status: int, body: Any):
        self.status = status
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: HTTP {status}: {msg}")


# --------------------------------------------------------------------------------------------
# Nodes as data
# --------------------------------------------------------------------------------------------


@dataclass
class NodeSpec:
    """A simulated node: what ``add_node`` needs. Plain data so tests can re-add/alter nodes."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    allocatable: dict[str, str] = field(default_factory=dict)


def default_nodes() -> list[NodeSpec]:
    """The nodes ``up()`` creates: 2x 8xH100, 1x A100 with 7 MIG 1g.10gb slices, 2x CPU-only.

    GPU nodes carry the NVIDIA device-plugin/GFD labels and the usual ``nvidia.com/gpu``
    NoSchedule taint, so a pod lands there only if it requests a GPU resource *and* tolerates
    the taint, as on a real GPU fleet.
    """
    gpu = {"cpu": "64", "memory": "512Gi", "pods": "110"}
    return [
        *(
            NodeSpec(
                name=n,
                labels={"nvidia.com/gpu.product": H100, "nvidia.com/gpu.count": "8"},
                taints=[dict(GPU_TAINT)],
                allocatable={**gpu, "nvidia.com/gpu": "8"},
            )
            for n in ("gpu-h100-a", "gpu-h100-b")
        ),
        NodeSpec(
            name="gpu-a100-mig",
            labels={"nvidia.com/gpu.product": A100, "nvidia.com/mig.strategy": "mixed"},
            taints=[dict(GPU_TAINT)],
            allocatable={**gpu, "nvidia.com/mig-1g.10gb": "7"},
        ),
        *(
            NodeSpec(name=n, allocatable={"cpu": "32", "memory": "128Gi", "pods": "110"})
            for n in ("cpu-a", "cpu-b")
        ),
    ]


def node_manifest(spec: NodeSpec, index: int) -> dict[str, Any]:
    """The Node object for ``spec``; ``index`` (0-254) picks its pod CIDR and InternalIP.

    Status (allocatable/capacity/addresses) is set at creation: the apiserver keeps a Node's
    status on create, and KWOK's node-initialize stage preserves what is already there.
    """
    if not 0 <= index <= 254:
        raise ValueError(f"node index {index} out of range 0..254")
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        **spec.labels,
    }
    cidr = f"{POD_CIDR_PREFIX}.{index}.0/24"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {KWOK_NODE_ANNOTATION: "fake"},
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "taints": [dict(t) for t in spec.taints]},
        "status": {
            "allocatable": dict(spec.allocatable),
            "capacity": dict(spec.allocatable),
            "addresses": [
                {"type": "InternalIP", "address": f"{NODE_IP_PREFIX}.{index}.1"},
                {"type": "Hostname", "address": spec.name},
            ],
        },
    }


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_for(
    cond: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.2,
    check: Callable[[], None] | None = None,
) -> T:
    """Poll ``cond`` until it returns a truthy value or ``timeout`` seconds pass.

    Exceptions from ``cond`` count as "not yet" (the last one is reported on timeout);
    ``check`` runs each round and may raise at once (e.g. "etcd exited") instead of waiting
    out the deadline.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        if check:
            check()
        try:
            v = cond()
            if v:
                return v
        except (ClusterError, OSError, ValueError, KeyError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last}" if last else "")
            )
        time.sleep(interval)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (sockets held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _proc_start_time(pid: int) -> str | None:
    """Kernel start time of ``pid`` (field 22 of /proc/pid/stat), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no graceful shutdown to wait for


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if not exe:
        raise ClusterError(
            "openssl not found on PATH (it creates the cluster's certificates): "
            "apt-get install openssl"
        )
    p = subprocess.run(
        [exe, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if p.returncode:
        raise ClusterError(f"openssl {' '.join(args)} failed: {p.stdout}")


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


@dataclass
class _Component:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None


class LocalCluster:
    """A loopback-only control plane plus KWOK nodes, owned through a state directory.

    All state lives in ``state_dir`` (certs, kubeconfigs, etcd data, logs, ``state.json`` with
    ports and pids), so ``down()`` can clean up after a crashed test run, and two clusters in
    two state dirs never collide (every port is picked free at start).

    Attributes/properties for tests: ``kubeconfig`` (admin, system:masters), ``server`` (the
    https URL), ``audit_log`` (JSON lines, one Metadata event per write), ``logs_dir``.
    """

    COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        nodes: Sequence[NodeSpec] | None = None,
        kwok_stages: str | os.PathLike[str] | None = None,
        die_with_parent: bool = False,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        """
        :param state_dir: where everything of this cluster lives (keep it outside the repo;
            wiped by ``up()``, removed by ``down()``). Default: ``$TRITONOP_E2E_STATE_DIR``,
            else a new ``$TRITONOP_CACHE/clusters/run-<pid>-<time>``, so that test sessions
            of several people on one machine never share (and kill) a cluster; ``up()``
            removes ``run-*`` dirs whose owning process is gone. The CLIs use
            :func:`default_state_dir`.
        :param nodes: nodes to create in ``up()`` (default :func:`default_nodes`).
        :param kwok_stages: KWOK Stage YAML (default: kwok-stages.yaml beside this file).
        :param die_with_parent: ask the kernel to SIGKILL every component when the Python
            process that started it dies (PR_SET_PDEATHSIG), so even a SIGKILLed pytest leaves
            no process behind (the state dir stays; the next ``up()``/``down()`` removes it).
            Leave False for the ``up`` CLI, whose cluster must outlive it. Applied only to
            processes started from the main thread: the kernel ties the signal to the
            forking *thread*, so a worker thread that exits would kill them.
        :param extra_apiserver_args: appended to kube-apiserver's flags (e.g. feature gates).
        """
        if state_dir is None:
            env = os.environ.get("TRITONOP_E2E_STATE_DIR")
            state_dir = env or clusters_root() / f"run-{os.getpid()}-{int(time.time())}"
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.nodes = list(nodes) if nodes is not None else default_nodes()
        self.kwok_stages = Path(kwok_stages) if kwok_stages else DEFAULT_KWOK_STAGES
        self.die_with_parent = die_with_parent
        self.extra_apiserver_args = list(extra_apiserver_args)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._ssl: ssl.SSLContext | None = None

    # ---- paths -------------------------------------------------------------------------------

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        """One ``<component>.log`` per process (stdout+stderr), appended across restarts."""
        return self.state_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client cert in group system:masters): bypasses RBAC."""
        return self.state_dir / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        """Audit log, JSON lines (audit.k8s.io/v1 Event), one Metadata-level event per write.

        Fields of interest: ``verb``, ``user.username`` (e.g.
        ``system:serviceaccount:tritonop-system:tritonop``), ``objectRef`` (resource,
        namespace, name, subresource), ``responseStatus.code``. Reads are not logged.
        """
        return self.state_dir / "audit" / "audit.log"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _state(self) -> dict[str, Any]:
        try:
            st: dict[str, Any] = json.loads(self._state_file.read_text())
            return st
        except (OSError, ValueError):
            return {}

    def _save_state(self, st: dict[str, Any]) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=2, sort_keys=True))
        os.replace(tmp, self._state_file)

    @property
    def ports(self) -> dict[str, int]:
        """Ports in use: etcd, etcd-peer, apiserver, kcm, scheduler, kwok."""
        return dict(self._state().get("ports", {}))

    @property
    def server(self) -> str:
        """The apiserver URL, e.g. ``https://127.0.0.1:39999``."""
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    # ---- lifecycle ---------------------------------------------------------------------------

    def up(self, timeout: float = 120.0, reuse: bool = False) -> LocalCluster:
        """Start everything and wait until usable; returns self.

        Usable means: apiserver /readyz ok, controller-manager and scheduler /healthz ok,
        every node in ``self.nodes`` Ready without not-ready taints, the ``default``
        ServiceAccount exists in ``default`` (so pods can be created). Any leftovers of an
        earlier run in the same state dir are stopped and wiped first.

        :param reuse: if a healthy cluster from this state dir is already running (e.g. from
            the ``up`` CLI), adopt it instead of restarting.
        """
        t0 = time.monotonic()
        if reuse and self.is_healthy():
            _log(f"reusing running cluster in {self.state_dir}")
            return self
        for name in (*binaries.KUBE_COMPONENTS, "etcd", "kwok"):
            binaries.find(name)  # fail fast, with "run e2e/cluster/build"
        owner = self.owner()
        if owner is not None and owner != os.getpid() and self.is_healthy():
            raise ClusterError(
                f"{self.state_dir} holds a running cluster owned by live process {owner} "
                f"({_cmdline(owner)}); use another state_dir (or TRITONOP_E2E_STATE_DIR), "
                "up(reuse=True) to share it, or e2e/cluster/down --state-dir to stop it"
            )
        sweep_stale_clusters()
        if self._state_file.exists() or self.state_dir.exists():
            self.down()
        for d in (
            self.state_dir,
            self.pki_dir,
            self.logs_dir,
            self.audit_log.parent,
            self.state_dir / "etcd",
        ):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        names = ["etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok"]
        self._save_state(
            {
                "ports": dict(zip(names, free_ports(len(names)), strict=True)),
                "pids": {},
                "node_index": {},
                "owner": {"pid": os.getpid(), "start": _proc_start_time(os.getpid())},
            }
        )
        try:
            self._write_pki()
            self._write_configs()
            self._start("etcd")
            wait_for(self._etcd_healthy, 30, "etcd /health", check=self._check_alive)
            _log(f"etcd healthy ({time.monotonic() - t0:.1f}s)")
            self._start("kube-apiserver")
            self.wait_apiserver_ready(60)
            _log(f"kube-apiserver ready ({time.monotonic() - t0:.1f}s)")
            for c in ("kube-controller-manager", "kube-scheduler", "kwok"):
                self._start(c)
            for spec in self.nodes:
                self.add_node(spec, wait=False)
            remaining = max(10.0, timeout - (time.monotonic() - t0))
            wait_for(
                lambda: self._component_healthy("kcm"),
                remaining,
                "kube-controller-manager /healthz",
                check=self._check_alive,
            )
            wait_for(
                lambda: self._component_healthy("scheduler"),
                remaining,
                "kube-scheduler /healthz",
                check=self._check_alive,
            )
            for spec in self.nodes:
                self.wait_node_ready(spec.name, timeout=remaining)
            wait_for(
                lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
                remaining,
                "ServiceAccount default/default (controller-manager)",
                check=self._check_alive,
            )
        except BaseException:
            _log(f"up() failed; logs are in {self.logs_dir}")
            self._tail_logs()
            self.down(keep_state=True)
            raise
        _log(f"cluster ready in {time.monotonic() - t0:.1f}s: export KUBECONFIG={self.kubeconfig}")
        return self

    def down(self, keep_state: bool = False, timeout: float = 10.0) -> None:
        """Stop every process this state dir started (SIGTERM to its process group, SIGKILL
        after ``timeout``), then delete the state dir unless ``keep_state``.

        Safe to call twice, from another process, or after a crash: pids come from
        state.json and are only signalled if their kernel start time still matches (no
        killing an unrelated process that reused the pid).
        """
        st = self._state()
        pids: dict[str, dict[str, Any]] = st.get("pids", {})
        # Stop in reverse start order: clients first, etcd last.
        order = sorted(
            pids,
            key=lambda n: self.COMPONENTS.index(n) if n in self.COMPONENTS else -1,
            reverse=True,
        )
        for name in order:
            self._stop(name, pids[name], timeout)
        self._procs.clear()
        if st:
            st["pids"] = {}
            with contextlib.suppress(OSError):
                self._save_state(st)
        if not keep_state and self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def restart_apiserver(self, timeout: float = 60.0, grace: float = 5.0) -> float:
        """Stop kube-apiserver and start it again with the same flags and port; wait for
        /readyz. Returns the seconds it took (about 2 s). Clients' watches break and must be
        re-established, which is what a test of this wants to see.

        Stopping is SIGTERM, then SIGKILL once the apiserver has stopped listening (or after
        ``grace`` seconds): after it has drained in-flight requests, flushed the audit log
        and closed its listener, kube-apiserver still waits up to ``--request-timeout``
        (60 s) for the HTTP/2 connections of clients that stay up (controller-manager,
        scheduler, KWOK, the operator) to close. All its state is in etcd, so the kill loses
        nothing."""
        t0 = time.monotonic()
        st = self._state()
        info = st.get("pids", {}).get("kube-apiserver")
        if not info:
            raise ClusterError(
                "kube-apiserver is not running (no pid in state.json); call up() first"
            )
        port = self.ports["apiserver"]
        self._stop("kube-apiserver", info, grace, kill_when=lambda: not _listening(port))
        self._start("kube-apiserver")
        self.wait_apiserver_ready(timeout)
        dt = time.monotonic() - t0
        _log(f"kube-apiserver restarted in {dt:.1f}s")
        return dt

    def __enter__(self) -> LocalCluster:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ---- health ------------------------------------------------------------------------------

    def owner(self) -> int | None:
        """Pid of the live process that started this cluster, or None (gone / none)."""
        o = self._state().get("owner") or {}
        pid = o.get("pid")
        if pid is not None and _proc_start_time(int(pid)) == o.get("start"):
            return int(pid)
        return None

    def is_healthy(self) -> bool:
        """True if every component recorded in state.json is alive and the apiserver is ready."""
        pids = self._state().get("pids", {})
        if set(pids) != set(self.COMPONENTS):
            return False
        if not all(_proc_start_time(p["pid"]) == p["start"] for p in pids.values()):
            return False
        try:
            return self._get_raw("/readyz") == "ok"
        except (ClusterError, OSError):
            return False

    def wait_apiserver_ready(self, timeout: float = 60.0) -> None:
        """Poll /readyz until "ok" (all post-start hooks done, e.g. RBAC bootstrap roles)."""
        self._ssl = None
        wait_for(
            lambda: self._get_raw("/readyz") == "ok",
            timeout,
            "kube-apiserver /readyz",
            check=self._check_alive,
        )

    def wait_node_ready(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until node ``name`` has Ready=True and no ``node.kubernetes.io/*`` taint."""

        def ready() -> dict[str, Any] | None:
            node = self.api("GET", f"/api/v1/nodes/{name}")
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            taints = [t["key"] for t in node.get("spec", {}).get("taints", []) or []]
            if conds.get("Ready") == "True" and not any(
                k.startswith("node.kubernetes.io/") for k in taints
            ):
                return dict(node)
            return None

        return wait_for(ready, timeout, f"node {name} Ready", check=self._check_alive)

    # ---- nodes -------------------------------------------------------------------------------

    def add_node(
        self,
        name: str | NodeSpec,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] | None = None,
        allocatable: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Create a KWOK node (pass a :class:`NodeSpec` or its fields) and, with ``wait``,
        wait until it is Ready. The node keeps the same pod CIDR (127.64.N.0/24) if it is
        deleted and re-added. ``allocatable`` defaults to 32 cpu / 128Gi / 110 pods."""
        spec = (
            name
            if isinstance(name, NodeSpec)
            else NodeSpec(
                name=name,
                labels=dict(labels or {}),
                taints=[dict(t) for t in taints or []],
                allocatable=dict(allocatable or {"cpu": "32", "memory": "128Gi", "pods": "110"}),
            )
        )
        st = self._state()
        idx_map: dict[str, int] = st.setdefault("node_index", {})
        if spec.name not in idx_map:
            used = set(idx_map.values())
            idx_map[spec.name] = next(i for i in range(0, 255) if i not in used)
            self._save_state(st)
        self.api("POST", "/api/v1/nodes", node_manifest(spec, idx_map[spec.name]))
        if wait:
            return self.wait_node_ready(spec.name, timeout)
        return dict(self.api("GET", f"/api/v1/nodes/{spec.name}"))

    def delete_node(self, name: str, wait: bool = True, timeout: float = 30.0) -> None:
        """Delete node ``name``. Pods bound to it are then deleted by the controller-manager's
        pod garbage collector (orphaned pods: 40 s quarantine + 20 s period, measured 59 s), as on a real cluster
        when a node object is removed; their ReplicaSets re-create them elsewhere."""
        self.api("DELETE", f"/api/v1/nodes/{name}")
        if wait:
            wait_for(
                lambda: not self._exists(f"/api/v1/nodes/{name}"), timeout, f"node {name} gone"
            )

    # ---- identities --------------------------------------------------------------------------

    def create_token(
        self,
        namespace: str,
        name: str,
        duration_seconds: int = 24 * 3600,
        audiences: Sequence[str] | None = None,
    ) -> str:
        """A bound ServiceAccount token from the TokenRequest API (what ``kubectl create
        token --duration`` calls)."""
        spec: dict[str, Any] = {"expirationSeconds": int(duration_seconds)}
        if audiences:
            spec["audiences"] = list(audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        resp = self.api(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body
        )
        return str(resp["status"]["token"])

    def service_account_kubeconfig(
        self,
        namespace: str,
        name: str,
        path: str | os.PathLike[str],
        duration_seconds: int = 24 * 3600,
    ) -> Path:
        """Write a kubeconfig at ``path`` that authenticates as ServiceAccount
        ``namespace/name`` with a TokenRequest token, so a process using it (the operator)
        is subject to RBAC exactly as in a cluster. The ServiceAccount must exist."""
        token = self.create_token(namespace, name, duration_seconds)
        user = f"system:serviceaccount:{namespace}:{name}"
        cfg = self._kubeconfig_dict(user, {"token": token}, namespace=namespace)
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(cfg, sort_keys=False))
        os.chmod(p, 0o600)
        return p

    # ---- API access (stdlib) -----------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
            ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
            self._ssl = ctx
        return self._ssl

    def _get_raw(self, path: str, timeout: float = 5.0) -> str:
        req = urllib.request.Request(self.server + path)
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=timeout) as r:
                return str(r.read().decode())
        except urllib.error.HTTPError as e:
            raise ApiError("GET", path, e.code, e.read().decode(errors="replace")) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
            raise ClusterError(f"GET {path}: {e}") from None

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> Any:
        """Call the API server as admin; returns decoded JSON, raises :class:`ApiError`.

        For server-side apply pass ``content_type="application/apply-patch+yaml"`` with
        ``path`` including ``?fieldManager=...``.
        """
        data = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err: Any = json.loads(raw)
            except ValueError:
                err = raw.decode(errors="replace")
            raise ApiError(method, path, e.code, err) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
            raise ClusterError(f"{method} {path}: {e}") from None
        return json.loads(raw) if raw else None

    def _exists(self, path: str) -> bool:
        try:
            self.api("GET", path)
            return True
        except ApiError as e:
            if e.status == 404:
                return False
            raise

    def _etcd_healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.ports['etcd']}/health"
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(json.loads(r.read()).get("health") == "true")

    def _component_healthy(self, key: str) -> bool:
        # kcm/scheduler serve a self-signed cert; /healthz is always allowed anonymously.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(
            f"https://127.0.0.1:{self.ports[key]}/healthz", context=ctx, timeout=2
        ) as r:
            return bool(r.read().decode() == "ok")

    # ---- processes ---------------------------------------------------------------------------

    def _components(self) -> dict[str, _Component]:
        p = self.ports
        pki = self.pki_dir
        sd = self.state_dir
        bind = ["--bind-address=127.0.0.1"]
        etcd_url = f"http://127.0.0.1:{p['etcd']}"
        peer_url = f"http://127.0.0.1:{p['etcd-peer']}"
        return {
            "etcd": _Component(
                "etcd",
                [
                    "etcd",  # resolved by _start()
                    "--name=e2e",
                    f"--data-dir={sd / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=e2e={peer_url}",
                    "--initial-cluster-state=new",
                    "--unsafe-no-fsync=true",  # throwaway data: skipping fsync is much faster
                    "--quota-backend-bytes=4294967296",
                    "--log-level=warn",
                ],
            ),
            "kube-apiserver": _Component(
                "kube-apiserver",
                [
                    "kube-apiserver",
                    *bind,
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={p['apiserver']}",
                    f"--etcd-servers={etcd_url}",
                    f"--tls-cert-file={pki / 'apiserver.crt'}",
                    f"--tls-private-key-file={pki / 'apiserver.key'}",
                    f"--client-ca-file={pki / 'ca.crt'}",
                    "--authorization-mode=Node,RBAC",
                    "--enable-admission-plugins=NodeRestriction",
                    f"--service-account-issuer={SA_ISSUER}",
                    f"--service-account-key-file={pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={pki / 'sa.key'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    # The reconciler of default/kubernetes would write Endpoints for
                    # 127.0.0.1, which validation rejects (loopback), every 10 s.
                    "--endpoint-reconciler-type=none",
                    "--allow-privileged=true",
                    f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                    "--requestheader-allowed-names=front-proxy-client",
                    "--requestheader-username-headers=X-Remote-User",
                    "--requestheader-group-headers=X-Remote-Group",
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                    f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                    f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                    f"--audit-policy-file={sd / 'audit-policy.yaml'}",
                    f"--audit-log-path={self.audit_log}",
                    "--audit-log-format=json",
                    "--audit-log-mode=blocking",
                    "--audit-log-maxsize=0",
                    "--profiling=false",
                    "--v=1",
                    *self.extra_apiserver_args,
                ],
            ),
            "kube-controller-manager": _Component(
                "kube-controller-manager",
                [
                    "kube-controller-manager",
                    *bind,
                    f"--secure-port={p['kcm']}",
                    f"--kubeconfig={sd / 'kcm.kubeconfig'}",
                    f"--authentication-kubeconfig={sd / 'kcm.kubeconfig'}",
                    f"--authorization-kubeconfig={sd / 'kcm.kubeconfig'}",
                    "--controllers=*",
                    "--leader-elect=false",
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                    f"--cluster-signing-key-file={pki / 'ca.key'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--allocate-node-cidrs=false",  # nodes get their 127.64.N.0/24 at creation
                    "--profiling=false",
                    "--v=1",
                ],
            ),
            "kube-scheduler": _Component(
                "kube-scheduler",
                [
                    "kube-scheduler",
                    *bind,
                    f"--secure-port={p['scheduler']}",
                    f"--kubeconfig={sd / 'scheduler.kubeconfig'}",
                    f"--authentication-kubeconfig={sd / 'scheduler.kubeconfig'}",
                    f"--authorization-kubeconfig={sd / 'scheduler.kubeconfig'}",
                    "--leader-elect=false",
                    "--profiling=false",
                    "--v=1",
                ],
            ),
            "kwok": _Component(
                "kwok",
                [
                    "kwok",
                    f"--config={self.kwok_stages}",
                    f"--kubeconfig={sd / 'kwok.kubeconfig'}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                    f"--cidr={POD_CIDR_PREFIX}.255.0/24",  # only used for nodes without podCIDR
                    "--node-ip=127.0.0.1",
                    "--node-lease-duration-seconds=40",
                    f"--server-address=127.0.0.1:{p['kwok']}",
                ],
                env={"HOME": str(sd)},
            ),  # KWOK also reads ~/.kwok/kwok.yaml: isolate it
        }

    def _start(self, name: str) -> None:
        comp = self._components()[name]
        argv = [binaries.find(comp.argv[0]), *comp.argv[1:]]
        env = dict(os.environ, **(comp.env or {}))
        env.pop("KUBECONFIG", None)
        pdeathsig = self.die_with_parent and threading.current_thread() is threading.main_thread()
        with open(self.logs_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env=env,
                start_new_session=True,  # own process group: killpg, and no terminal SIGINT
                preexec_fn=_set_pdeathsig if pdeathsig else None,
            )
        self._procs[name] = proc
        st = self._state()
        st.setdefault("pids", {})[name] = {
            "pid": proc.pid,
            "start": _proc_start_time(proc.pid),
            "argv": argv,
        }
        self._save_state(st)

    def _stop(
        self,
        name: str,
        info: Mapping[str, Any],
        timeout: float,
        kill_when: Callable[[], bool] | None = None,
    ) -> None:
        """SIGTERM the process group of ``info["pid"]``; SIGKILL it after ``timeout`` seconds
        or as soon as ``kill_when()`` says the rest of the graceful shutdown is not needed."""
        pid = int(info["pid"])
        proc = self._procs.pop(name, None)

        def gone() -> bool:
            if proc is not None:
                return proc.poll() is not None
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our child
            return _proc_start_time(pid) != info.get("start") or _is_zombie(pid)

        if _proc_start_time(pid) == info.get("start"):  # else: gone, or pid reused by another
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while not gone() and time.monotonic() < deadline:
                if kill_when is not None and kill_when():
                    break
                time.sleep(0.05)
            # SIGKILL the whole group regardless: no child of the main process may survive.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while not gone() and time.monotonic() < deadline:
                time.sleep(0.05)
        st = self._state()
        if st.get("pids", {}).pop(name, None) is not None:
            self._save_state(st)

    def _check_alive(self) -> None:
        for name, proc in list(self._procs.items()):
            rc = proc.poll()
            if rc is not None:
                raise ClusterError(f"{name} exited with code {rc}:\n{self._tail(name)}")

    def _tail(self, name: str, lines: int = 25) -> str:
        try:
            return "\n".join(
                (self.logs_dir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return "(no log)"

    def _tail_logs(self) -> None:
        for name in self.COMPONENTS:
            if (self.logs_dir / f"{name}.log").exists():
                sys.stderr.write(f"--- last lines of {name}.log ---\n{self._tail(name, 15)}\n")

    def dump_logs(self, dest: str | os.PathLike[str]) -> Path:
        """Copy component logs and the audit log to ``dest`` (e.g. before ``down()`` after a
        failed test session) and return it."""
        d = Path(dest)
        d.mkdir(parents=True, exist_ok=True)
        for f in [*self.logs_dir.glob("*.log"), self.audit_log]:
            if f.exists():
                shutil.copy2(f, d / f.name)
        return d

    # ---- files -------------------------------------------------------------------------------

    def _write_pki(self) -> None:
        """Throwaway CAs, the apiserver's serving cert, client certs per component, the
        front-proxy (aggregation layer) pair and the ServiceAccount signing key: EC P-256
        via the openssl CLI (about 0.7 s, no Python crypto dependency)."""
        d = self.pki_dir

        def key(n: str) -> None:
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", f"{n}.key", cwd=d)  # fmt: skip

        def ca(n: str, cn: str) -> None:
            key(n)
            _openssl("req", "-x509", "-new", "-key", f"{n}.key", "-subj", f"/CN={cn}",
                     "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", f"{n}.crt",
                     cwd=d)  # fmt: skip

        def cert(n: str, signer: str, subj: str, eku: str, san: str | None = None) -> None:
            key(n)
            _openssl("req", "-new", "-key", f"{n}.key", "-subj", subj, "-out", f"{n}.csr", cwd=d)
            ext = [
                "basicConstraints=critical,CA:FALSE",
                "keyUsage=critical,digitalSignature,keyEncipherment",
                f"extendedKeyUsage={eku}",
                *([san] if san else []),
            ]
            (d / f"{n}.ext").write_text("\n".join(ext) + "\n")
            _openssl("x509", "-req", "-in", f"{n}.csr", "-CA", f"{signer}.crt",
                     "-CAkey", f"{signer}.key", "-CAcreateserial", "-days", "3650",
                     "-extfile", f"{n}.ext", "-out", f"{n}.crt", cwd=d)  # fmt: skip

        ca("ca", "tritonop-e2e-ca")
        cert("apiserver", "ca", "/CN=kube-apiserver", "serverAuth",
             "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
             "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1")  # fmt: skip
        cert("admin", "ca", "/O=system:masters/CN=tritonop-e2e-admin", "clientAuth")
        cert("kcm", "ca", "/CN=system:kube-controller-manager", "clientAuth")
        cert("scheduler", "ca", "/CN=system:kube-scheduler", "clientAuth")
        # KWOK writes node and pod status for many nodes: cluster-admin, a named identity.
        cert("kwok", "ca", "/O=system:masters/CN=kwok-controller", "clientAuth")
        # Aggregation layer (APIService backends such as metrics-server or KEDA's adapter).
        ca("front-proxy-ca", "tritonop-e2e-front-proxy-ca")
        cert("front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", "clientAuth")
        key("sa")
        _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)

    def _kubeconfig_dict(
        self, user: str, creds: Mapping[str, str], namespace: str = "default"
    ) -> dict[str, Any]:
        ca = base64.b64encode((self.pki_dir / "ca.crt").read_bytes()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [
                {
                    "name": "tritonop-e2e",
                    "cluster": {"server": self.server, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": user, "user": dict(creds)}],
            "contexts": [
                {
                    "name": "tritonop-e2e",
                    "context": {"cluster": "tritonop-e2e", "user": user, "namespace": namespace},
                }
            ],
            "current-context": "tritonop-e2e",
        }

    def _write_configs(self) -> None:
        def client_kubeconfig(path: Path, cert: str) -> None:
            pki = self.pki_dir
            creds = {
                "client-certificate-data": base64.b64encode(
                    (pki / f"{cert}.crt").read_bytes()
                ).decode(),
                "client-key-data": base64.b64encode((pki / f"{cert}.key").read_bytes()).decode(),
            }
            path.write_text(yaml.safe_dump(self._kubeconfig_dict(cert, creds), sort_keys=False))
            os.chmod(path, 0o600)

        client_kubeconfig(self.kubeconfig, "admin")
        for c in ("kcm", "scheduler", "kwok"):
            client_kubeconfig(self.state_dir / f"{c}.kubeconfig", c)
        (self.state_dir / "audit-policy.yaml").write_text(
            yaml.safe_dump(AUDIT_POLICY, sort_keys=False)
        )

    # ---- audit helpers -----------------------------------------------------------------------

    def audit_events(
        self, user: str | None = None, verbs: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Parsed audit events, optionally only those of ``user`` (exact username) and
        ``verbs``. Each write appears once (stage ResponseComplete)."""
        out = []
        try:
            lines = self.audit_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            if not line.strip():
                continue
            ev = json.loads(line)
            if user is not None and ev.get("user", {}).get("username") != user:
                continue
            if verbs is not None and ev.get("verb") not in verbs:
                continue
            out.append(ev)
        return out


def clusters_root() -> Path:
    """Where state dirs go by default: ``$TRITONOP_CACHE/clusters``."""
    return binaries.cache_root() / "clusters"


def default_state_dir() -> Path:
    """The state dir of the ``up``/``down`` CLIs: ``$TRITONOP_E2E_STATE_DIR`` or
    ``$TRITONOP_CACHE/clusters/e2e``."""
    env = os.environ.get("TRITONOP_E2E_STATE_DIR")
    return Path(env) if env else clusters_root() / "e2e"


def sweep_stale_clusters() -> list[Path]:
    """Stop and remove ``clusters/run-*`` state dirs whose owning process is gone (a test
    session that was SIGKILLed or crashed before ``down()``). Returns what was removed."""
    removed = []
    for d in sorted(clusters_root().glob("run-*")):
        c = LocalCluster(d)
        with contextlib.suppress(OSError):
            if time.time() - d.stat().st_mtime < 30 and not c._state_file.exists():
                continue  # being created right now by another process
        if c.owner() is None:
            c.down()
            removed.append(d)
    if removed:
        _log(f"removed {len(removed)} stale cluster dir(s): {', '.join(p.name for p in removed)}")
    return removed


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200].strip()
    except OSError:
        return "?"


def _listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP) into ``KeyboardInterrupt`` while the block runs, so
    ``finally:``/fixture teardown (``down()``) runs when CI or a user terminates the test
    process. SIGINT already raises KeyboardInterrupt. Main thread only."""

    def raise_(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, raise_) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
