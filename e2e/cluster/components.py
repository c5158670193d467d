"""What the local control plane runs: one command line per component, and the audit policy.

Pure data from the cluster's ports and paths; :class:`~e2e.cluster.LocalCluster` starts these
with :mod:`e2e.cluster.processes`. Every component binds 127.0.0.1 only. The flags, and why
each one is there, are in e2e/README.md ("What runs").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .nodes import KWOK_NODE_ANNOTATION, pod_cidr

#: Start order (and, reversed, stop order): etcd first, KWOK last.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
#: The ports each cluster picks free at start (state.json "ports").
PORT_NAMES = ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")
#: ClusterIPs. Never dialled by tests (no kube-proxy here); a private range like a real cluster.
SERVICE_CIDR = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

#: Audit policy: one Metadata event per write (with its user), nothing for reads but those of
#: Secrets, so a test can count e.g. the writes of ``system:serviceaccount:<ns>:<name>`` and
#: show which Secrets it read (by name, or by listing or watching them). Node lease renewals
#: by KWOK are dropped: they are pure noise here.
AUDIT_POLICY: dict[str, object] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets"]}]},
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


@dataclass(frozen=True)
class Layout:
    """Where a cluster's files are: everything the command lines refer to."""

    state_dir: Path
    pki_dir: Path
    audit_log: Path
    kwok_stages: Path

    @property
    def audit_policy(self) -> Path:
        return self.state_dir / "audit-policy.yaml"

    def kubeconfig(self, component: str) -> Path:
        """The kubeconfig of a component's client certificate (kcm, scheduler, kwok)."""
        return self.state_dir / f"{component}.kubeconfig"


@dataclass(frozen=True)
class Component:
    """One process of the control plane: ``argv[0]`` is a binary name for ``binaries.find``."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def commands(
    ports: Mapping[str, int], files: Layout, extra_args: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Component]:
    """The command line of every component in :data:`COMPONENTS`, by name, each with its
    ``extra_args`` appended."""
    p = ports
    pki = files.pki_dir
    bind = ["--bind-address=127.0.0.1"]
    etcd_url = f"http://127.0.0.1:{p['etcd']}"
    peer_url = f"http://127.0.0.1:{p['etcd-peer']}"

    def client_flags(component: str) -> list[str]:
        kubeconfig = files.kubeconfig(component)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
        ]

    components = [
        Component(
            "etcd",
            [
                "etcd",
                "--name=e2e",
                f"--data-dir={files.state_dir / 'etcd'}",
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
        Component(
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
                f"--audit-policy-file={files.audit_policy}",
                f"--audit-log-path={files.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
                "--profiling=false",
                "--v=1",
            ],
        ),
        Component(
            "kube-controller-manager",
            [
                "kube-controller-manager",
                *bind,
                f"--secure-port={p['kcm']}",
                *client_flags("kcm"),
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
        Component(
            "kube-scheduler",
            [
                "kube-scheduler",
                *bind,
                f"--secure-port={p['scheduler']}",
                *client_flags("scheduler"),
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        ),
        Component(
            "kwok",
            [
                "kwok",
                f"--config={files.kwok_stages}",
                f"--kubeconfig={files.kubeconfig('kwok')}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                f"--cidr={pod_cidr(255)}",  # only used for nodes without podCIDR
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{p['kwok']}",
            ],
            env={"HOME": str(files.state_dir)},  # KWOK also reads ~/.kwok/kwok.yaml: isolate it
        ),
    ]
    extra = extra_args or {}
    return {c.name: replace(c, argv=[*c.argv, *extra.get(c.name, ())]) for c in components}
