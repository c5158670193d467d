"""Memory benchmark: what unrelated Secrets cost the operator (issue 13).

    python -m e2e.bench.unrelated_secrets                       # 120 Secrets of 1 MB, this tree
    python -m e2e.bench.unrelated_secrets --secrets 100 --json figures.json
    python -m e2e.bench.unrelated_secrets --tree /tmp/main-tree # another revision (e.g. `git archive`)

On a local control plane of its own (e2e/cluster, a temporary state dir, stopped at the end)
it installs the CRDs and the chart's RBAC of `--tree`, runs that tree's operator as its
ServiceAccount with one InferenceService that names a credentials Secret, and measures the
operator's resident memory (its process, and its process group: what a container's limit
counts), sampled every 0.25 s:

  idle:          for 20 s once the service is Ready (a resync of every service included);
  with Secrets:  while `--secrets` Secrets of 1 MB are created in another namespace, and 20 s
                 after;
  after restart: from the new process's start until 30 s after its /healthz answers (its
                 initial lists and the reconcile of every service).

Beside each: the chart's memory limit (charts/tritonop/values.yaml of `--tree`), and the
operator's Secret requests by verb from the audit log (which records every Secret request).
Prints figures; asserts nothing. Exits 0. About 2 minutes; run it under the shared lock.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from e2e.cluster import LocalCluster
from e2e.harness import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    ROOT,
    OperatorProcess,
    PeakRss,
    RssKib,
    Tools,
    bin_dir,
    install_crds_and_rbac,
    peak_rss,
)
from e2e.polling import wait_until
from e2e.services import create_service_with_credentials, create_unrelated_secrets

TENANT = "tenant"
UNRELATED = "unrelated"
MIB = 1024


@dataclass(frozen=True)
class Figures:
    """One run's figures, KiB (process, process group)."""

    tree: str
    secrets: int
    created_in_s: float
    idle: RssKib
    with_secrets: RssKib
    after_restart: RssKib
    chart_limit_mib: int
    secret_requests: dict[str, int]


def chart_memory_limit_mib(tree: Path) -> int:
    """The operator container's memory limit the chart sets by default, MiB."""
    values = yaml.safe_load((tree / "charts" / "tritonop" / "values.yaml").read_text())
    limit = str(values["resources"]["limits"]["memory"])
    if not limit.endswith("Mi"):
        raise ValueError(f"unexpected memory limit {limit!r} in the chart's values")
    return int(limit.removesuffix("Mi"))


def secret_requests(cluster: LocalCluster) -> dict[str, int]:
    """The operator's Secret requests by verb and scope ("get tenant", "watch *", ...): one
    count per audit event (a watch has two, at its start and at its end)."""
    counts: Counter[str] = Counter()
    for event in cluster.audit_events(user=OPERATOR_USER):
        ref = event.get("objectRef") or {}
        if ref.get("resource") == "secrets":
            counts[f"{event['verb']} {ref.get('namespace') or '*'}"] += 1
    return dict(sorted(counts.items()))


def measure(cluster: LocalCluster, tree: Path, secrets: int, work: Path) -> Figures:
    tools = Tools(cluster.kubeconfig, f"{bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
    install_crds_and_rbac(tools, root=tree)
    kubeconfig = cluster.service_account_kubeconfig(
        OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, work / "operator.kubeconfig"
    )
    operator = OperatorProcess(
        kubeconfig=kubeconfig,
        log_path=work / "operator.log",
        env={"PYTHONPATH": str(tree / "operator")},
    )
    for namespace in (TENANT, UNRELATED):
        tools.kubectl("create", "namespace", namespace)
    wait_until(lambda: tools.get("serviceaccount", "default", TENANT), 30, "the namespace")
    operator.start()
    try:
        create_service_with_credentials(tools, TENANT)
        idle = peak_rss(operator, 20)
        print(f"idle: {describe(idle)}", flush=True)
        with PeakRss(operator) as loaded:
            took = create_unrelated_secrets(cluster, UNRELATED, secrets)
            time.sleep(20)
        print(f"{secrets} Secrets created in {took:.0f} s: {describe(loaded.peak)}", flush=True)
        operator.stop()
        with PeakRss(operator) as restarted:
            operator.start()
            time.sleep(30)
        print(f"after a restart: {describe(restarted.peak)}", flush=True)
    finally:
        operator.stop()
    return Figures(
        tree=str(tree),
        secrets=secrets,
        created_in_s=round(took, 1),
        idle=idle,
        with_secrets=loaded.peak,
        after_restart=restarted.peak,
        chart_limit_mib=chart_memory_limit_mib(tree),
        secret_requests=secret_requests(cluster),
    )


def describe(rss: RssKib) -> str:
    return f"peak {rss.process / MIB:.1f} MiB (process group {rss.group / MIB:.1f} MiB)"


def report(figures: Figures) -> str:
    limit = figures.chart_limit_mib
    rows = [
        ("idle", figures.idle),
        (f"with {figures.secrets} unrelated 1 MB Secrets", figures.with_secrets),
        ("after a restart", figures.after_restart),
    ]
    lines = [
        f"tree {figures.tree}; chart memory limit {limit} MiB",
        "| phase | operator peak RSS | process group | of the limit | vs idle |",
        "|---|---:|---:|---:|---:|",
    ]
    for phase, rss in rows:
        lines.append(
            f"| {phase} | {rss.process / MIB:.1f} MiB | {rss.group / MIB:.1f} MiB "
            f"| {100 * rss.group / MIB / limit:.0f}% "
            f"| {(rss.process - figures.idle.process) / MIB:+.1f} MiB |"
        )
    requests = ", ".join(f"{k}: {v}" for k, v in figures.secret_requests.items()) or "none"
    lines.append(f"operator's Secret requests (audit log events): {requests}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secrets", type=int, default=120, help="1 MB Secrets (default 120)")
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree of the operator")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 1 <= args.secrets <= 500:
        parser.error("--secrets must be within 1..500 (etcd holds them all)")
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory(prefix="tritonop-bench-secrets-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(work / "cluster", die_with_parent=True)
        try:
            cluster.up()
            figures = measure(cluster, tree, args.secrets, work)
        finally:
            cluster.down()
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
