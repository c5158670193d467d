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
and more transparent as a few argv lists (:mod:`.components`).

This module is the lifecycle (state directory, start order, health, teardown), the nodes and
identities API and a small stdlib API client; the certificates and kubeconfigs are
:mod:`.pki`, the command lines :mod:`.components`, starting and stopping processes
:mod:`.processes`, the Node objects :mod:`.nodes`.

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

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from ..polling import wait_until
from . import binaries, pki, processes
from .components import AUDIT_POLICY, COMPONENTS, PORT_NAMES, Layout, commands
from .errors import ApiError, ClusterError
from .nodes import CPU_NODE_ALLOCATABLE, NodeSpec, default_nodes, node_manifest

if TYPE_CHECKING:
    from .peers import Peers

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
DEFAULT_KWOK_STAGES = HERE / "kwok-stages.yaml"


def _log(msg: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class LocalCluster:
    """A loopback-only control plane plus KWOK nodes, owned through a state directory.

    All state lives in ``state_dir`` (certs, kubeconfigs, etcd data, logs, ``state.json`` with
    ports and pids), so ``down()`` can clean up after a crashed test run, and two clusters in
    two state dirs never collide (every port is picked free at start).

    Attributes/properties for tests: ``kubeconfig`` (admin, system:masters), ``server`` (the
    https URL), ``audit_log`` (JSON lines, one Metadata event per write and per
    Secret read), ``logs_dir``.
    """

    COMPONENTS = COMPONENTS

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        nodes: Sequence[NodeSpec] | None = None,
        kwok_stages: str | os.PathLike[str] | None = None,
        die_with_parent: bool = False,
        extra_args: Mapping[str, Sequence[str]] | None = None,
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
        :param extra_args: flags appended to a component's command line, by component name
            (e.g. feature gates for ``kube-apiserver``, client QPS for
            ``kube-controller-manager``); a later flag wins over our default of the same name.
        """
        if state_dir is None:
            env = os.environ.get("TRITONOP_E2E_STATE_DIR")
            state_dir = env or clusters_root() / f"run-{os.getpid()}-{int(time.time())}"
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.nodes = list(nodes) if nodes is not None else default_nodes()
        self.kwok_stages = Path(kwok_stages) if kwok_stages else DEFAULT_KWOK_STAGES
        self.die_with_parent = die_with_parent
        self.extra_args = {name: list(flags) for name, flags in (extra_args or {}).items()}
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
        """Audit log, JSON lines (audit.k8s.io/v1 Event), one Metadata-level event per write
        and per Secret read.

        Fields of interest: ``verb``, ``user.username`` (e.g.
        ``system:serviceaccount:tritonop-system:tritonop``), ``objectRef`` (resource,
        namespace, name, subresource), ``responseStatus.code``. Reads are not logged, except
        those of Secrets.
        """
        return self.state_dir / "audit" / "audit.log"

    @property
    def _layout(self) -> Layout:
        return Layout(self.state_dir, self.pki_dir, self.audit_log, self.kwok_stages)

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

    def processes(self) -> dict[str, dict[str, Any]]:
        """The running components as recorded in state.json: name -> {pid, start, argv}."""
        return dict(self._state().get("pids", {}))

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
                f"({processes.command_line(owner)}); use another state_dir (or "
                "TRITONOP_E2E_STATE_DIR), up(reuse=True) to share it, or e2e/cluster/down "
                "--state-dir to stop it"
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
        self._save_state(
            {
                "ports": dict(zip(PORT_NAMES, processes.free_ports(len(PORT_NAMES)), strict=True)),
                "pids": {},
                "node_index": {},
                "owner": {"pid": os.getpid(), "start": processes.start_time(os.getpid())},
            }
        )
        try:
            pki.write_pki(self.pki_dir)
            self._write_configs()
            self._start("etcd")
            self._wait(self._etcd_healthy, 30, "etcd /health")
            _log(f"etcd healthy ({time.monotonic() - t0:.1f}s)")
            self._start("kube-apiserver")
            self.wait_apiserver_ready(60)
            _log(f"kube-apiserver ready ({time.monotonic() - t0:.1f}s)")
            for c in ("kube-controller-manager", "kube-scheduler", "kwok"):
                self._start(c)
            for spec in self.nodes:
                self.add_node(spec, wait=False)
            remaining = max(10.0, timeout - (time.monotonic() - t0))
            self._wait(
                lambda: self._component_healthy("kcm"),
                remaining,
                "kube-controller-manager /healthz",
            )
            self._wait(
                lambda: self._component_healthy("scheduler"), remaining, "kube-scheduler /healthz"
            )
            for spec in self.nodes:
                self.wait_node_ready(spec.name, timeout=remaining)
            self._wait(
                lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
                remaining,
                "ServiceAccount default/default (controller-manager)",
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
        # The peers (start_peers) are clients too: they stop before the control plane.
        order = sorted(
            pids,
            key=lambda n: COMPONENTS.index(n) if n in COMPONENTS else len(COMPONENTS),
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
        info = self.processes().get("kube-apiserver")
        if not info:
            raise ClusterError(
                "kube-apiserver is not running (no pid in state.json); call up() first"
            )
        port = self.ports["apiserver"]
        self._stop("kube-apiserver", info, grace, kill_when=lambda: not processes.listening(port))
        self._start("kube-apiserver")
        self.wait_apiserver_ready(timeout)
        dt = time.monotonic() - t0
        _log(f"kube-apiserver restarted in {dt:.1f}s")
        return dt

    def start_peers(self, *, keda: bool = True, timeout: float = 180.0) -> Peers:
        """Start Prometheus, prometheus-adapter and (unless ``keda=False``) KEDA beside this
        running cluster, on loopback, and return them started (see :mod:`.peers`): the
        custom and external metrics APIServices are Available when it returns. Builds the
        peers' binaries first if they are missing. ``Peers.stop()`` undoes it; ``down()``
        stops their processes too."""
        from .peers import Peers

        return Peers(self, keda=keda).start(timeout)

    def __enter__(self) -> LocalCluster:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ---- health ------------------------------------------------------------------------------

    def owner(self) -> int | None:
        """Pid of the live process that started this cluster, or None (gone / none)."""
        o = self._state().get("owner") or {}
        if o.get("pid") is not None and processes.is_running(o):
            return int(o["pid"])
        return None

    def is_healthy(self) -> bool:
        """True if every component recorded in state.json is alive and the apiserver is ready."""
        pids = self.processes()
        if not set(COMPONENTS) <= set(pids):
            return False
        if not all(processes.is_running(p) for p in pids.values()):
            return False
        try:
            return self._get_raw("/readyz") == "ok"
        except (ClusterError, OSError):
            return False

    def wait_apiserver_ready(self, timeout: float = 60.0) -> None:
        """Poll /readyz until "ok" (all post-start hooks done, e.g. RBAC bootstrap roles)."""
        self._ssl = None
        self._wait(lambda: self._get_raw("/readyz") == "ok", timeout, "kube-apiserver /readyz")

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

        return self._wait(ready, timeout, f"node {name} Ready")

    def _wait(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """``wait_until`` that gives up at once if a component this object started exits."""
        return wait_until(probe, timeout, what, interval=0.2, check=self._check_alive)

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
                allocatable=dict(allocatable or CPU_NODE_ALLOCATABLE),
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
        pod garbage collector (orphaned pods: 40 s quarantine + 20 s period, measured 59 s),
        as on a real cluster when a node object is removed; their ReplicaSets re-create them
        elsewhere."""
        self.api("DELETE", f"/api/v1/nodes/{name}")
        if wait:
            wait_until(
                lambda: not self._exists(f"/api/v1/nodes/{name}"),
                timeout,
                f"node {name} gone",
                interval=0.2,
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
        config = pki.kubeconfig(
            self.server, self.pki_dir / "ca.crt", user, {"token": token}, namespace=namespace
        )
        return pki.write_kubeconfig(Path(path), config)

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

    def _start(self, name: str) -> None:
        component = commands(self.ports, self._layout, self.extra_args)[name]
        argv = [binaries.find(component.argv[0]), *component.argv[1:]]
        env = {**os.environ, **component.env}
        env.pop("KUBECONFIG", None)
        proc = processes.spawn(
            argv,
            log_path=self.logs_dir / f"{name}.log",
            cwd=self.state_dir,
            env=env,
            kill_with_parent=self.die_with_parent,
        )
        self._procs[name] = proc
        st = self._state()
        st.setdefault("pids", {})[name] = processes.record(proc, argv)
        self._save_state(st)

    def _stop(
        self,
        name: str,
        info: Mapping[str, Any],
        timeout: float,
        kill_when: Callable[[], bool] | None = None,
    ) -> None:
        """Stop one component (see :func:`processes.stop_group`) and forget its pid."""
        processes.stop_group(
            info, timeout, process=self._procs.pop(name, None), kill_when=kill_when
        )
        st = self._state()
        if st.get("pids", {}).pop(name, None) is not None:
            self._save_state(st)

    def _check_alive(self) -> None:
        for name, proc in list(self._procs.items()):
            rc = proc.poll()
            if rc is not None:
                raise ClusterError(f"{name} exited with code {rc}:\n{self._tail(name)}")

    def _tail(self, name: str, lines: int = 25) -> str:
        return processes.log_tail(self.logs_dir / f"{name}.log", lines)

    def _tail_logs(self) -> None:
        for name in COMPONENTS:
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

    def _write_configs(self) -> None:
        """The admin kubeconfig, one per component identity, and the audit policy."""
        ca = self.pki_dir / "ca.crt"
        for name, path in (
            ("admin", self.kubeconfig),
            *((c, self._layout.kubeconfig(c)) for c in ("kcm", "scheduler", "kwok")),
        ):
            credentials = pki.client_certificate(self.pki_dir, name)
            pki.write_kubeconfig(path, pki.kubeconfig(self.server, ca, name, credentials))
        self._layout.audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))

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


def cluster_is_gone(state_dir: Path) -> bool:
    """True once ``down()`` ran for ``state_dir`` (from any process): state.json removed, or
    no API server recorded in it. What a process that must not outlive a cluster watches."""
    return "kube-apiserver" not in LocalCluster(state_dir).processes()
