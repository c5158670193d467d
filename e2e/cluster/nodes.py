"""The simulated nodes as plain data: which nodes a cluster gets and the Node objects for them.

Pure functions, no I/O: ``LocalCluster.add_node`` posts what :func:`node_manifest` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Annotation selecting the nodes that the KWOK controller manages.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
#: Pod IPs come from this loopback block: node number N gets 127.64.N.0/24.
POD_CIDR_PREFIX = "127.64"
#: Node InternalIPs (a pod's hostIP): node number N gets 127.65.N.1.
NODE_IP_PREFIX = "127.65"

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
#: What a node gets when ``add_node`` is not told its allocatable resources.
CPU_NODE_ALLOCATABLE = {"cpu": "32", "memory": "128Gi", "pods": "110"}


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
        *(NodeSpec(name=n, allocatable=dict(CPU_NODE_ALLOCATABLE)) for n in ("cpu-a", "cpu-b")),
    ]


def pod_cidr(index: int) -> str:
    """The pod CIDR of node number ``index``: its pods' IPs, inside 127.0.0.0/8."""
    return f"{POD_CIDR_PREFIX}.{index}.0/24"


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
    cidr = pod_cidr(index)
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
