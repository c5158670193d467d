"""The peers: Prometheus, prometheus-adapter and KEDA beside a :class:`LocalCluster`, on loopback.

What a user installs to scale Triton without tritonop's own loop, started on request
(``LocalCluster.start_peers()``; never by ``up()``), so the operator's HPA and KEDA modes are
exercised by the real consumers they render for:

* **Prometheus** scrapes every tritonop-managed Triton pod's ``metrics`` port. There is no
  Prometheus Operator here, so the chart's PodMonitor (rendered by helm from
  ``charts/tritonop``) is translated into the scrape config the Prometheus Operator would
  generate for it: pod discovery (``kubernetes_sd_configs`` against the local API server, as a
  ServiceAccount with get/list/watch on pods), keep the pods the PodMonitor's selector
  matches and the container port it names, then the PodMonitor's own relabelings. Pod IPs are
  in 127.64.0.0/16 (KWOK), so every scrape stays on loopback.
* **prometheus-adapter** serves ``custom.metrics.k8s.io`` with the rules the chart ships
  (``charts/tritonop/files/prometheus-adapter-rules.yaml``, read from the chart, not copied).
* **KEDA**: its CRDs and RBAC from its Go module's ``config/``, its operator (which queries
  Prometheus for ScaledObjects' triggers and serves its gRPC metrics service) and its metrics
  API server (``external.metrics.k8s.io``).

How the aggregation layer reaches a server on 127.0.0.1. kube-apiserver proxies an APIService
to ``spec.service``. Endpoints and EndpointSlices holding a loopback address are refused by
validation (``ValidateEndpointIP``: "may not be in the loopback range"), and a ClusterIP is
not loopback (and nothing here may dial it), so the Service is ``type: ExternalName`` with
``externalName: localhost``: the aggregator resolves an ExternalName Service to
``https://<externalName>:<APIService spec.service.port>`` (k8s.io/apiserver's
``proxy.ResolveCluster``; the availability controller checks endpoints only for ClusterIP
Services). The serving certificates are signed by the cluster's CA for
``<service>.<namespace>.svc`` (what the aggregator verifies) and 127.0.0.1, and the APIService
carries that CA as ``caBundle``. The API server's front-proxy flags (requestheader, proxy
client certificate) are the cluster's own (``components.py``).

Every process binds 127.0.0.1, except one: KEDA's metrics API server also serves its own
Prometheus metrics on ``:<--port>``, all interfaces, with no flag for the address; it gets a
free port and nothing connects to it.

This module is stdlib + PyYAML like the rest of ``e2e/cluster``; helm renders the chart.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..polling import wait_until
from . import binaries, pki, processes
from .errors import ApiError, ClusterError

if TYPE_CHECKING:
    from .cluster import LocalCluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tritonop"
ADAPTER_RULES = CHART / "files" / "prometheus-adapter-rules.yaml"

#: Start order (and, reversed, stop order) of the peer processes.
PEERS = ("prometheus", "prometheus-adapter", "keda-operator", "keda-adapter")
#: The ports each start picks free (state.json "peer_ports").
PEER_PORTS = (
    "prometheus",
    "prometheus-adapter",
    "keda-operator-metrics",
    "keda-operator-health",
    "keda-grpc",
    "keda-adapter",
    "keda-adapter-metrics",
)
MONITORING = "monitoring"
KEDA = "keda"
FIELD_MANAGER = "tritonop-e2e-peers"
CUSTOM_METRICS = "v1beta1.custom.metrics.k8s.io"
EXTERNAL_METRICS = "v1beta1.external.metrics.k8s.io"
#: Where the aggregator's ExternalName Services point (see the module docstring).
LOOPBACK_NAME = "localhost"
#: Prometheus' scrape interval when the PodMonitor names none.
DEFAULT_SCRAPE_INTERVAL = "30s"
#: How often prometheus-adapter re-lists series to discover metrics (its default is 10m: a
#: series that appears after start would be served only ten minutes later).
ADAPTER_RELIST_INTERVAL = "10s"


def _log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ pure: config


def label_name(label: str) -> str:
    """A Kubernetes label key as Prometheus' kubernetes_sd spells it in meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _relabeling(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A Prometheus Operator RelabelConfig (camelCase) as a Prometheus relabel_config."""
    names = {
        "sourceLabels": "source_labels",
        "targetLabel": "target_label",
        "regex": "regex",
        "replacement": "replacement",
        "separator": "separator",
        "modulus": "modulus",
        "action": "action",
    }
    unknown = set(rule) - set(names)
    if unknown:
        raise ValueError(f"relabeling fields not translated: {sorted(unknown)}")
    out = {names[k]: v for k, v in rule.items()}
    if "action" in out:
        out["action"] = str(out["action"]).lower()
    return out


def podmonitor_scrape_configs(
    podmonitor: Mapping[str, Any], kubernetes_sd: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The scrape configs the Prometheus Operator generates for a PodMonitor, one per
    ``podMetricsEndpoints`` entry, for the fields the tritonop chart uses (selector
    ``matchLabels``, ``namespaceSelector`` any or ``matchNames``, endpoint ``port``, ``path``,
    ``interval``, ``honorLabels``, ``relabelings``). Anything else is refused, not ignored.

    ``kubernetes_sd``: the ``kubernetes_sd_configs`` entry without ``role`` and
    ``namespaces`` (API server, TLS, credentials).
    """
    meta = podmonitor["metadata"]
    spec = podmonitor["spec"]
    selector = spec.get("selector") or {}
    if set(selector) - {"matchLabels"}:
        raise ValueError(f"PodMonitor selector fields not translated: {sorted(selector)}")
    ns_selector = spec.get("namespaceSelector") or {}
    sd: dict[str, Any] = {"role": "pod", **kubernetes_sd}
    if ns_selector.get("matchNames"):
        sd["namespaces"] = {"names": list(ns_selector["matchNames"])}
    elif not ns_selector.get("any"):
        sd["namespaces"] = {"names": [meta["namespace"]]}
    configs = []
    for index, endpoint in enumerate(spec.get("podMetricsEndpoints") or []):
        allowed = {"port", "path", "interval", "honorLabels", "relabelings", "scheme"}
        if set(endpoint) - allowed:
            raise ValueError(f"podMetricsEndpoints fields not translated: {sorted(endpoint)}")
        relabel: list[dict[str, Any]] = [
            {
                "source_labels": ["job"],
                "target_label": "__tmp_prometheus_job_name",
            },
            # Pods that finished are no targets (the Prometheus Operator drops them too).
            {
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "(Failed|Succeeded)",
                "action": "drop",
            },
        ]
        for key, value in sorted((selector.get("matchLabels") or {}).items()):
            relabel.append(
                {
                    "source_labels": [
                        f"__meta_kubernetes_pod_label_{label_name(key)}",
                        f"__meta_kubernetes_pod_labelpresent_{label_name(key)}",
                    ],
                    "regex": f"({re.escape(str(value))});true",
                    "action": "keep",
                }
            )
        if endpoint.get("port"):
            relabel.append(
                {
                    "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                    "regex": re.escape(str(endpoint["port"])),
                    "action": "keep",
                }
            )
        relabel += [_relabeling(rule) for rule in endpoint.get("relabelings") or []]
        configs.append(
            {
                "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/{index}",
                "honor_labels": bool(endpoint.get("honorLabels", False)),
                "scrape_interval": endpoint.get("interval") or DEFAULT_SCRAPE_INTERVAL,
                "metrics_path": endpoint.get("path") or "/metrics",
                "scheme": endpoint.get("scheme") or "http",
                "kubernetes_sd_configs": [sd],
                "relabel_configs": relabel,
            }
        )
    return configs


def prometheus_config(scrape_configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Prometheus' configuration file: the scrape configs, evaluated as often as they scrape."""
    fastest = min(
        (_seconds(str(c["scrape_interval"])) for c in scrape_configs),
        default=_seconds(DEFAULT_SCRAPE_INTERVAL),
    )
    interval = f"{fastest:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [dict(c) for c in scrape_configs],
    }


def _seconds(duration: str) -> float:
    """A Prometheus duration of one unit ("5s", "1m", "500ms") in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not match:
        raise ValueError(f"unsupported duration {duration!r}")
    factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * factor


def chart_adapter_rules(path: Path = ADAPTER_RULES) -> dict[str, Any]:
    """The prometheus-adapter rules the chart ships (its ``rules:`` document)."""
    rules = yaml.safe_load(path.read_text())
    if not isinstance(rules, dict) or not rules.get("rules"):
        raise ClusterError(f"{path} holds no prometheus-adapter rules")
    return rules


def render_chart_podmonitor(helm: str, chart: Path = CHART) -> dict[str, Any]:
    """The chart's Triton PodMonitor, rendered by helm with ``tritonPodMonitor.enabled``."""
    out = subprocess.run(
        [helm, "template", "tritonop", str(chart), "--namespace", "tritonop-system",
         "--set", "tritonPodMonitor.enabled=true", "--show-only", "templates/podmonitor.yaml"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if out.returncode != 0:
        raise ClusterError(f"helm template (PodMonitor) failed: {out.stderr}")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    if len(docs) != 1 or docs[0].get("kind") != "PodMonitor":
        raise ClusterError(f"expected one PodMonitor from the chart, got {docs!r}")
    return dict(docs[0])


def rbac_manifests() -> list[dict[str, Any]]:
    """Namespaces, ServiceAccounts and the RBAC of Prometheus and prometheus-adapter (what
    their Helm charts grant), and the bindings KEDA's metrics server needs beside KEDA's own
    ``config/rbac`` (applied from its module)."""

    def sa(namespace: str, name: str) -> dict[str, Any]:
        return {"kind": "ServiceAccount", "name": name, "namespace": namespace}

    def cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        }

    def binding(
        name: str, role: str, subject: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        kind = "RoleBinding" if namespace else "ClusterRoleBinding"
        metadata: dict[str, Any] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": metadata,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role" if namespace and role.startswith("extension-") else "ClusterRole",
                "name": role,
            },
            "subjects": [subject],
        }

    prometheus = sa(MONITORING, "prometheus")
    adapter = sa(MONITORING, "prometheus-adapter")
    return [
        *(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
            for n in (MONITORING, KEDA)
        ),
        *(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": s["name"], "namespace": s["namespace"]},
            }
            for s in (prometheus, adapter, sa(KEDA, "keda-operator"))
        ),
        cluster_role(
            "tritonop-e2e-prometheus",
            [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        ),
        binding("tritonop-e2e-prometheus", "tritonop-e2e-prometheus", prometheus),
        cluster_role(
            "tritonop-e2e-prometheus-adapter-resource-reader",
            [
                {
                    "apiGroups": [""],
                    "resources": ["namespaces", "pods", "services", "configmaps"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        ),
        binding(
            "tritonop-e2e-prometheus-adapter-resource-reader",
            "tritonop-e2e-prometheus-adapter-resource-reader",
            adapter,
        ),
        binding(
            "tritonop-e2e-prometheus-adapter:system:auth-delegator",
            "system:auth-delegator",
            adapter,
        ),
        binding(
            "tritonop-e2e-prometheus-adapter-auth-reader",
            "extension-apiserver-authentication-reader",
            adapter,
            namespace="kube-system",
        ),
    ]


def aggregated_api(
    name: str, namespace: str, service: str, port: int, ca_bundle: bytes
) -> list[dict[str, Any]]:
    """An ExternalName Service to loopback and the APIService ``name`` routed to it."""
    group_version = name.split(".", 1)
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {"type": "ExternalName", "externalName": LOOPBACK_NAME},
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": name},
            "spec": {
                "group": group_version[1],
                "version": group_version[0],
                "service": {"name": service, "namespace": namespace, "port": port},
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


@dataclass(frozen=True)
class PeerFiles:
    """Where one start's files are (under ``<state dir>/peers``)."""

    root: Path

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def keda_certs(self) -> Path:
        """KEDA reads ca.crt, tls.crt and tls.key from one directory (``--cert-dir``)."""
        return self.root / "keda-certs"

    def kubeconfig(self, name: str) -> Path:
        return self.root / f"{name}.kubeconfig"

    @property
    def prometheus_config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def prometheus_token(self) -> Path:
        return self.root / "prometheus.token"

    @property
    def prometheus_data(self) -> Path:
        return self.root / "prometheus-data"

    @property
    def adapter_rules(self) -> Path:
        return self.root / "prometheus-adapter-rules.yaml"


def peer_commands(
    ports: Mapping[str, int], files: PeerFiles, api_server: str
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """(argv, extra environment) of every peer by name; ``argv[0]`` is a pinned binary name."""
    p = ports
    certs = files.certs
    adapter_kc = str(files.kubeconfig("prometheus-adapter"))
    keda_kc = str(files.kubeconfig("keda-operator"))
    keda_env = {
        "KUBECONFIG": keda_kc,
        "WATCH_NAMESPACE": "",
        "POD_NAMESPACE": KEDA,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA,
    }
    return {
        "prometheus": (
            [
                "prometheus",
                f"--config.file={files.prometheus_config}",
                f"--storage.tsdb.path={files.prometheus_data}",
                "--storage.tsdb.retention.time=6h",
                f"--web.listen-address=127.0.0.1:{p['prometheus']}",
                "--log.level=warn",
            ],
            {},
        ),
        "prometheus-adapter": (
            [
                "prometheus-adapter",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['prometheus-adapter']}",
                f"--tls-cert-file={certs / 'prometheus-adapter.crt'}",
                f"--tls-private-key-file={certs / 'prometheus-adapter.key'}",
                f"--cert-dir={certs}",
                f"--lister-kubeconfig={adapter_kc}",
                f"--authentication-kubeconfig={adapter_kc}",
                f"--authorization-kubeconfig={adapter_kc}",
                f"--prometheus-url=http://127.0.0.1:{p['prometheus']}/",
                f"--metrics-relist-interval={ADAPTER_RELIST_INTERVAL}",
                f"--config={files.adapter_rules}",
                "--v=1",
            ],
            {},
        ),
        "keda-operator": (
            [
                "keda-operator",
                "--zap-log-level=info",
                "--zap-encoder=console",
                f"--metrics-bind-address=127.0.0.1:{p['keda-operator-metrics']}",
                f"--health-probe-bind-address=127.0.0.1:{p['keda-operator-health']}",
                f"--metrics-service-bind-address=127.0.0.1:{p['keda-grpc']}",
                "--enable-cert-rotation=false",
                f"--cert-dir={files.keda_certs}",
                f"--ca-dir={files.keda_certs}",
                "--leader-elect=false",
            ],
            {**keda_env, "POD_NAME": "keda-operator"},
        ),
        "keda-adapter": (
            [
                "keda-adapter",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['keda-adapter']}",
                f"--port={p['keda-adapter-metrics']}",
                f"--tls-cert-file={files.keda_certs / 'tls.crt'}",
                f"--tls-private-key-file={files.keda_certs / 'tls.key'}",
                f"--cert-dir={files.keda_certs}",
                f"--lister-kubeconfig={keda_kc}",
                f"--authentication-kubeconfig={keda_kc}",
                f"--authorization-kubeconfig={keda_kc}",
                f"--metrics-service-address=127.0.0.1:{p['keda-grpc']}",
                "--zap-log-level=info",
            ],
            {**keda_env, "POD_NAME": "keda-adapter"},
        ),
    }


# ------------------------------------------------------------------------------ I/O


def api_path(obj: Mapping[str, Any]) -> str:
    """The REST path of ``obj`` (the kinds this module and KEDA's config/ apply)."""
    plurals = {
        "Namespace": "namespaces",
        "ServiceAccount": "serviceaccounts",
        "Service": "services",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "APIService": "apiservices",
        "CustomResourceDefinition": "customresourcedefinitions",
    }
    version = str(obj["apiVersion"])
    base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    meta = obj["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{base}{ns}/{plurals[str(obj['kind'])]}/{meta['name']}"


class Peers:
    """Prometheus, prometheus-adapter and KEDA for one running :class:`LocalCluster`.

    Use ``cluster.start_peers()`` (which returns a started instance) and ``stop()``; the
    cluster's ``down()`` stops the processes too (their pids are in its state.json).
    ``stop()`` also removes what ``start()`` registered with the API server: the APIServices
    (an unavailable one would break discovery, and with it namespace deletion) and KEDA's CRDs
    if they were not there before.
    """

    def __init__(self, cluster: LocalCluster, *, keda: bool = True) -> None:
        self.cluster = cluster
        self.keda = keda
        self.files = PeerFiles(cluster.state_dir / "peers")
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._installed_crds: list[str] = []

    # ---- addresses

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.cluster._state().get("peer_ports", {}))

    @property
    def prometheus_url(self) -> str:
        """Prometheus' HTTP API base, e.g. ``http://127.0.0.1:41234`` (what KEDA triggers and
        ``TRITONOP_PROMETHEUS_URL`` take)."""
        return f"http://127.0.0.1:{self.ports['prometheus']}"

    @property
    def logs_dir(self) -> Path:
        return self.cluster.logs_dir

    # ---- lifecycle

    def start(self, timeout: float = 180.0) -> Peers:
        """Build what is missing (progress lines on stderr), write configs and certificates,
        apply RBAC, start every peer and wait until its APIService is Available."""
        t0 = time.monotonic()
        names = PEERS if self.keda else PEERS[:2]
        groups = {b.group for b in binaries.BINARIES if b.name in names}
        if binaries.missing(groups):
            _log("peer binaries missing: building them (as e2e/cluster/build --only peers)")
            binaries.build(groups=groups)
        for name in names:
            binaries.find(name)
        if self.files.root.exists():
            shutil.rmtree(self.files.root)
        for d in (self.files.root, self.files.certs, self.files.keda_certs):
            d.mkdir(parents=True, exist_ok=True)
        st = self.cluster._state()
        st["peer_ports"] = dict(zip(PEER_PORTS, processes.free_ports(len(PEER_PORTS)), strict=True))
        self.cluster._save_state(st)
        try:
            self._write_certificates()
            for obj in rbac_manifests():
                self._apply(obj)
            if self.keda:
                self._install_keda_config()
            self._write_configs()
            self._start("prometheus")
            wait_until(self._prometheus_ready, timeout, "Prometheus /-/ready", check=self._check)
            self._start("prometheus-adapter")
            self._register(CUSTOM_METRICS, MONITORING, "prometheus-adapter", "prometheus-adapter")
            if self.keda:
                self._start("keda-operator")
                self._start("keda-adapter")
                self._register(EXTERNAL_METRICS, KEDA, "keda-metrics-apiserver", "keda-adapter")
            remaining = max(30.0, timeout - (time.monotonic() - t0))
            apis = (CUSTOM_METRICS, EXTERNAL_METRICS) if self.keda else (CUSTOM_METRICS,)
            for api in apis:
                wait_until(
                    lambda api=api: self.apiservice_available(api),  # type: ignore[misc]
                    remaining,
                    f"APIService {api} Available",
                    interval=0.5,
                    check=self._check,
                )
        except BaseException:
            _log(f"start failed; logs in {self.logs_dir}")
            for name in names:
                log = self.logs_dir / f"{name}.log"
                if log.exists():
                    sys.stderr.write(f"--- {name}.log ---\n{processes.log_tail(log, 15)}\n")
            self.stop()
            raise
        _log(f"peers ready in {time.monotonic() - t0:.1f}s: Prometheus {self.prometheus_url}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Delete ScaledObjects while KEDA can still remove its finalizers, unregister the
        APIServices, stop the processes, remove the KEDA CRDs this start installed."""
        with contextlib.suppress(ClusterError, ApiError):
            self._drain_scaled_objects()
        for api in (EXTERNAL_METRICS, CUSTOM_METRICS):
            with contextlib.suppress(ClusterError, ApiError):
                self.cluster.api("DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{api}")
        pids = self.cluster.processes()
        for name in reversed(PEERS):
            if name in pids:
                self.cluster._stop(name, pids[name], timeout)
            self._procs.pop(name, None)
        for crd in self._installed_crds:
            with contextlib.suppress(ClusterError, ApiError):
                self.cluster.api(
                    "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"
                )
        self._installed_crds.clear()

    def __enter__(self) -> Peers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- questions

    def apiservice_available(self, name: str) -> bool:
        obj = self.cluster.api("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        return bool(conds.get("Available", {}).get("status") == "True")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query of Prometheus: the result vector (``[{metric, value}]``)."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = yaml.safe_load(r.read())
        if body.get("status") != "success":
            raise ClusterError(f"Prometheus query {promql!r} failed: {body}")
        return list(body["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        """Prometheus' active scrape targets (``/api/v1/targets``)."""
        with urllib.request.urlopen(
            f"{self.prometheus_url}/api/v1/targets?state=active", timeout=5
        ) as r:
            return list(yaml.safe_load(r.read())["data"]["activeTargets"])

    # ---- internals

    def _prometheus_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.prometheus_url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _check(self) -> None:
        for name, proc in list(self._procs.items()):
            rc = proc.poll()
            if rc is not None:
                log = self.logs_dir / f"{name}.log"
                raise ClusterError(f"{name} exited with code {rc}:\n{processes.log_tail(log, 25)}")

    def _start(self, name: str) -> None:
        argv, extra = peer_commands(self.ports, self.files, self.cluster.server)[name]
        argv = [binaries.find(argv[0]), *argv[1:]]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env.update(extra)
        proc = processes.spawn(
            argv,
            log_path=self.logs_dir / f"{name}.log",
            cwd=self.files.root,
            env=env,
            kill_with_parent=self.cluster.die_with_parent,
        )
        self._procs[name] = proc
        self.cluster._procs[name] = proc
        st = self.cluster._state()
        st.setdefault("pids", {})[name] = processes.record(proc, argv)
        self.cluster._save_state(st)

    def _apply(self, obj: Mapping[str, Any], force: bool = True) -> Any:
        path = api_path(obj)
        query = f"?fieldManager={FIELD_MANAGER}" + ("&force=true" if force else "")
        return self.cluster.api(
            "PATCH",
            path + query,
            yaml.safe_dump(dict(obj)).encode(),
            content_type="application/apply-patch+yaml",
        )

    def _write_certificates(self) -> None:
        d = self.cluster.pki_dir
        pki.write_serving_certificate(
            d,
            "prometheus-adapter",
            ["DNS:prometheus-adapter.monitoring.svc", "DNS:localhost", "IP:127.0.0.1"],
        )
        shutil.copy2(d / "prometheus-adapter.crt", self.files.certs / "prometheus-adapter.crt")
        shutil.copy2(d / "prometheus-adapter.key", self.files.certs / "prometheus-adapter.key")
        # One pair for KEDA's operator (gRPC server) and metrics server (HTTPS server and
        # gRPC client, mutual TLS), as KEDA's own certificate rotation makes it.
        pki.write_serving_certificate(
            d,
            "keda",
            [
                "DNS:keda-operator.keda.svc",
                "DNS:keda-operator.keda.svc.cluster.local",
                "DNS:keda-metrics-apiserver.keda.svc",
                "DNS:keda-metrics-apiserver.keda.svc.cluster.local",
                "DNS:localhost",
                "IP:127.0.0.1",
            ],
        )
        shutil.copy2(d / "ca.crt", self.files.keda_certs / "ca.crt")
        shutil.copy2(d / "keda.crt", self.files.keda_certs / "tls.crt")
        shutil.copy2(d / "keda.key", self.files.keda_certs / "tls.key")

    def _install_keda_config(self) -> None:
        """KEDA's CRDs (recording which were new) and RBAC, from its Go module's config/."""
        config = binaries.keda_module_dir() / "config"
        for crd_file in sorted((config / "crd" / "bases").glob("*.yaml")):
            crd = yaml.safe_load(crd_file.read_text())
            name = crd["metadata"]["name"]
            try:
                self.cluster.api("GET", api_path(crd))
            except ApiError as e:
                if e.status != 404:
                    raise
                self._installed_crds.append(name)
            self._apply(crd)
        for rel in ("rbac/role.yaml", "rbac/role_binding.yaml",
                    "metrics-server/role.yaml", "metrics-server/role_binding.yaml"):  # fmt: skip
            for doc in yaml.safe_load_all((config / rel).read_text()):
                if doc:
                    self._apply(doc)
        for name in self._installed_crds:
            wait_until(
                lambda name=name: self._crd_established(name),  # type: ignore[misc]
                60,
                f"CRD {name} Established",
            )

    def _crd_established(self, name: str) -> bool:
        crd = self.cluster.api(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        )
        conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        return conds.get("Established") == "True"

    def _write_configs(self) -> None:
        c = self.cluster
        for name, namespace in (
            ("prometheus", MONITORING),
            ("prometheus-adapter", MONITORING),
            ("keda-operator", KEDA),
        ):
            if name == "keda-operator" and not self.keda:
                continue
            c.service_account_kubeconfig(namespace, name, self.files.kubeconfig(name))
        self.files.prometheus_token.write_text(c.create_token(MONITORING, "prometheus"))
        os.chmod(self.files.prometheus_token, 0o600)
        sd = {
            "api_server": c.server,
            "tls_config": {"ca_file": str(c.pki_dir / "ca.crt")},
            "authorization": {"credentials_file": str(self.files.prometheus_token)},
        }
        podmonitor = render_chart_podmonitor(binaries.find("helm"))
        config = prometheus_config(podmonitor_scrape_configs(podmonitor, sd))
        self.files.prometheus_config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.files.adapter_rules.write_text(
            yaml.safe_dump(chart_adapter_rules(), sort_keys=False, width=1000)
        )

    def _register(self, api: str, namespace: str, service: str, peer: str) -> None:
        port = self.ports[peer]
        for obj in aggregated_api(
            api, namespace, service, port, (self.cluster.pki_dir / "ca.crt").read_bytes()
        ):
            self._apply(obj)

    def _drain_scaled_objects(self, timeout: float = 30.0) -> None:
        """Delete every ScaledObject and wait for KEDA to finalize them; strip what is left."""
        path = "/apis/keda.sh/v1alpha1/scaledobjects"
        try:
            items = self.cluster.api("GET", path)["items"]
        except ApiError as e:
            if e.status == 404:
                return
            raise
        for item in items:
            meta = item["metadata"]
            with contextlib.suppress(ApiError):
                self.cluster.api(
                    "DELETE",
                    f"/apis/keda.sh/v1alpha1/namespaces/{meta['namespace']}/scaledobjects/{meta['name']}",
                )

        def gone() -> bool:
            return not self.cluster.api("GET", path)["items"]

        with contextlib.suppress(AssertionError):
            wait_until(gone, timeout, "ScaledObjects finalized by KEDA", interval=0.5)
        for item in self.cluster.api("GET", path)["items"]:
            meta = item["metadata"]
            with contextlib.suppress(ApiError):
                self.cluster.api(
                    "PATCH",
                    f"/apis/keda.sh/v1alpha1/namespaces/{meta['namespace']}/scaledobjects/{meta['name']}",
                    {"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json",
                )
