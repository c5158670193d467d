"""`python -m e2e.tritonsim.cluster_smoke`: the data plane on the real control plane, no operator.

Brings up a private `e2e.cluster.LocalCluster` (own state directory, torn down at the end),
creates a Deployment that looks like one the operator renders (tritonop labels, a `triton`
container with tritonserver arguments), runs the pod runner and the load generator, scales the
Deployment out and in by hand, and checks that:

* every Running pod gets an emulator on its 127.64.x.y IP, and loses it when the pod goes;
* with `--unready-stages`, pods stay unready until their emulator's model has loaded (KWOK
  leaves tritonop pods unready and the pod runner marks them Ready), so the Deployment's
  readyReplicas follows Triton's readiness like on a real cluster;
* the load reaches new pods as soon as they are ready, without errors.

It prints the load generator's progress and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from e2e.load import KubernetesEndpoints, LoadConfig, parse_profile, run_load, summary_text

from ..polling import WaitTimeout, wait_until
from .emulator import EmulatorConfig, ServiceSettings
from .podrunner import MANAGED_SELECTOR, PodRunner

MANAGED_BY = '.metadata.labels["app.kubernetes.io/managed-by"]'


def unready_stages(stages_yaml: str) -> str:
    """KWOK stages where tritonop pods become Running but not Ready.

    The stock `pod-ready` stage makes a scheduled pod Running and Ready in one step. This
    keeps that stage for every other pod and adds `pod-running-unready-tritonop`, identical
    except that it matches only pods labelled `app.kubernetes.io/managed-by=tritonop` and
    leaves Ready, ContainersReady and the containers' `ready` false. The pod runner (with
    `set_pod_readiness=True`) then marks a pod Ready when its emulator has loaded its models,
    which is what the kubelet's readiness probe would do.
    """
    documents = [doc for doc in yaml.safe_load_all(stages_yaml) if doc]
    result: list[dict[str, Any]] = []
    for stage in documents:
        result.append(stage)
        if stage.get("metadata", {}).get("name") != "pod-ready":
            continue
        unready = copy.deepcopy(stage)
        unready["metadata"]["name"] = "pod-running-unready-tritonop"
        unready["spec"]["selector"]["matchExpressions"].append(
            {"key": MANAGED_BY, "operator": "In", "values": ["tritonop"]}
        )
        template: str = unready["spec"]["next"]["statusTemplate"]
        for condition in ("Ready", "ContainersReady"):
            before = f'status: "True"\n  type: {condition}\n'
            if before not in template:
                raise ValueError(f"pod-ready stage has no {condition} condition to turn off")
            template = template.replace(before, f'status: "False"\n  type: {condition}\n', 1)
        template = template.replace("ready: true", "ready: false", 1)
        unready["spec"]["next"]["statusTemplate"] = template
        stage["spec"]["selector"]["matchExpressions"].append(
            {"key": MANAGED_BY, "operator": "NotIn", "values": ["tritonop"]}
        )
        result.append(unready)
    return yaml.safe_dump_all(result, sort_keys=False)


def triton_deployment(name: str, replicas: int) -> dict[str, Any]:
    """A Deployment shaped like the operator's: its labels, container name and arguments."""
    selector = {"app.kubernetes.io/name": "triton", "app.kubernetes.io/instance": name}
    labels = {
        **selector,
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/managed-by": "tritonop",
        "app.kubernetes.io/part-of": "tritonop",
        "tritonop.io/inferenceservice": name,
    }
    args = [
        "--model-repository=s3://bucket/models",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--strict-readiness=true",
        "--model-control-mode=explicit",
        "--load-model=simple",
    ]
    container = {
        "name": "triton",
        "image": "nvcr.io/nvidia/tritonserver:25.01-py3",
        "command": ["tritonserver"],
        "args": args,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def _check(condition: bool, message: str, failures: list[str]) -> None:
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def run(state_dir: Path, unready: bool, load_delay: float) -> list[str]:
    """The smoke scenario; returns the failed checks."""
    from kubernetes import client, config

    from e2e.cluster import LocalCluster
    from e2e.cluster.cluster import DEFAULT_KWOK_STAGES

    stages: Path | None = None
    if unready:
        stages = state_dir.parent / "kwok-stages-unready.yaml"
        stages.write_text(unready_stages(DEFAULT_KWOK_STAGES.read_text()))
    cluster = LocalCluster(state_dir, kwok_stages=stages, die_with_parent=True)
    failures: list[str] = []
    cluster.up()
    try:
        kubeconfig = str(cluster.kubeconfig)
        api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        # Any: the generated client's Optional-everywhere models add nothing to a smoke test.
        apps: Any = client.AppsV1Api(api)
        core: Any = client.CoreV1Api(api)
        apps.create_namespaced_deployment("default", triton_deployment("smoke", 1))
        defaults = EmulatorConfig(
            load_delay_s=load_delay, service=ServiceSettings(service_time_ms=20)
        )
        with PodRunner(kubeconfig, defaults=defaults, set_pod_readiness=unready) as runner:
            statuses = runner.wait_until(lambda s: [p.state for p in s] == ["serving"], 60)
            _check(
                statuses[0].ip.startswith("127.64."),
                f"emulator on pod IP {statuses[0].ip}",
                failures,
            )
            if unready:
                pod = core.list_namespaced_pod("default", label_selector=MANAGED_SELECTOR).items[0]
                ready = [c.status for c in pod.status.conditions or [] if c.type == "Ready"]
                _check(ready == ["False"], "pod unready while its model loads", failures)
            with contextlib.suppress(WaitTimeout):  # the check below reports it
                wait_until(
                    lambda: (
                        apps.read_namespaced_deployment("smoke", "default").status.ready_replicas
                    ),
                    30,
                    "a ready replica of Deployment default/smoke",
                    interval=0.2,
                )
            _check(
                apps.read_namespaced_deployment("smoke", "default").status.ready_replicas == 1,
                "Deployment has 1 ready replica",
                failures,
            )

            async def load_while_scaling() -> Any:
                load = LoadConfig(
                    profile=parse_profile("constant:30"),
                    duration_s=8,
                    max_requests=1000,
                    window_s=1,
                    seed=1,
                )
                running = asyncio.create_task(
                    run_load(load, KubernetesEndpoints(kubeconfig, "default", "smoke"))
                )
                await asyncio.sleep(2)
                await asyncio.to_thread(
                    apps.patch_namespaced_deployment_scale,
                    "smoke",
                    "default",
                    {"spec": {"replicas": 3}},
                )
                return await running

            result = asyncio.run(load_while_scaling())
            print(summary_text(result), flush=True)
            _check(result.summary.errors == 0, "no request failed", failures)
            _check(len(result.summary.pods_seen) == 3, "all 3 pods received load", failures)
            apps.patch_namespaced_deployment_scale("smoke", "default", {"spec": {"replicas": 1}})
            statuses = runner.wait_until(lambda s: [p.state for p in s] == ["serving"], 60)
            _check(len(statuses) == 1, "emulators of removed pods stopped", failures)
    finally:
        cluster.down()
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    """Run the smoke scenario in a temporary state directory."""
    parser = argparse.ArgumentParser(
        prog="python -m e2e.tritonsim.cluster_smoke", description=__doc__
    )
    parser.add_argument(
        "--unready-stages",
        action="store_true",
        help="KWOK leaves tritonop pods unready; the pod runner marks them Ready when loaded",
    )
    parser.add_argument("--load-delay", type=float, default=1.0, help="model-load seconds")
    args = parser.parse_args(argv)
    from e2e.dataplane import data_plane_turn

    # Every local cluster gives its pods the same 127.64.N.M IPs: one data plane at a time.
    with (
        data_plane_turn("python -m e2e.tritonsim.cluster_smoke"),
        tempfile.TemporaryDirectory(prefix="tritonsim-smoke-") as scratch,
    ):
        failures = run(Path(scratch) / "cluster", args.unready_stages, args.load_delay)
    print("smoke passed" if not failures else f"smoke FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
