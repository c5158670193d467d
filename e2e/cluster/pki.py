"""The cluster's identities: throwaway certificates (openssl CLI) and the kubeconfigs that use them.

Everything here writes files and nothing else: no process is started but ``openssl``, no API is
called. ``LocalCluster`` decides where the files go and which kubeconfig a component gets.

Why the openssl CLI: it is in every base image, makes EC P-256 keys and certificates in about
0.7 s for the whole set, and spares the e2e harness a Python crypto dependency.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ClusterError

#: The CA every client certificate is signed by (and that kubeconfigs trust).
CA = "ca"
#: Cluster and context name in every kubeconfig written here.
CLUSTER_NAME = "tritonop-e2e"
#: The apiserver's serving certificate covers these names (loopback and in-cluster ones).
APISERVER_SAN = (
    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
    "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1"
)
#: Client certificates: file name -> subject. Organisation = group, CN = user name.
CLIENT_CERTIFICATES = {
    "admin": "/O=system:masters/CN=tritonop-e2e-admin",
    "kcm": "/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
    # KWOK writes node and pod status for many nodes: cluster-admin, a named identity.
    "kwok": "/O=system:masters/CN=kwok-controller",
}


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


def write_pki(d: Path) -> None:
    """Write into ``d``: throwaway CAs, the apiserver's serving cert, one client cert per
    :data:`CLIENT_CERTIFICATES` entry, the front-proxy (aggregation layer) pair and the
    ServiceAccount signing key pair (``sa.key``, ``sa.pub``)."""

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

    ca(CA, "tritonop-e2e-ca")
    cert("apiserver", CA, "/CN=kube-apiserver", "serverAuth", APISERVER_SAN)
    for name, subject in CLIENT_CERTIFICATES.items():
        cert(name, CA, subject, "clientAuth")
    # Aggregation layer (APIService backends such as metrics-server or KEDA's adapter).
    ca("front-proxy-ca", "tritonop-e2e-front-proxy-ca")
    cert("front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", "clientAuth")
    key("sa")
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def write_serving_certificate(
    d: Path, name: str, sans: list[str], signer: str = CA, eku: str = "serverAuth,clientAuth"
) -> None:
    """Write ``name.key`` and ``name.crt`` into ``d`` (the cluster's pki dir, beside
    ``signer``'s CA): a certificate for ``sans`` (``DNS:x``, ``IP:y``), CN ``name``, signed by
    ``signer``. Server and client use by default: the peers' aggregated API servers and KEDA's
    mutual-TLS gRPC link both use one."""
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", f"{name}.key", cwd=d)  # fmt: skip
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr",
             cwd=d)  # fmt: skip
    ext = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={eku}",
        "subjectAltName=" + ",".join(sans),
    ]
    (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{signer}.crt",
             "-CAkey", f"{signer}.key", "-CAcreateserial", "-days", "3650",
             "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)  # fmt: skip


def kubeconfig(
    server: str,
    ca_cert: Path,
    user: str,
    credentials: Mapping[str, str],
    namespace: str = "default",
) -> dict[str, Any]:
    """A one-cluster, one-user kubeconfig trusting ``ca_cert`` (embedded)."""
    ca = base64.b64encode(ca_cert.read_bytes()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": user, "user": dict(credentials)}],
        "contexts": [
            {
                "name": CLUSTER_NAME,
                "context": {"cluster": CLUSTER_NAME, "user": user, "namespace": namespace},
            }
        ],
        "current-context": CLUSTER_NAME,
    }


def client_certificate(pki_dir: Path, name: str) -> dict[str, str]:
    """The kubeconfig credentials of client certificate ``name`` (embedded cert and key)."""
    return {
        "client-certificate-data": base64.b64encode(
            (pki_dir / f"{name}.crt").read_bytes()
        ).decode(),
        "client-key-data": base64.b64encode((pki_dir / f"{name}.key").read_bytes()).decode(),
    }


def write_kubeconfig(path: Path, config: Mapping[str, Any]) -> Path:
    """Write ``config`` as YAML, readable by its owner only (it holds credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    os.chmod(path, 0o600)
    return path
