"""Placement: which node snapshots give GPU, CPUFallback, CPU or Unplaceable, and why."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tritonop.api import parse_spec
from tritonop.api.models import InferenceServiceSpec
from tritonop.placement import (
    GPU_TOLERATION,
    NodeInfo,
    Placement,
    Taint,
    decide,
    gpu_capacity_fingerprint,
    gpu_pod_tolerations,
    node_info,
    parse_quantity,
    toleration_matches,
)

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
GPU_TAINT = Taint("nvidia.com/gpu", "present", "NoSchedule")


def gpu_node(
    name: str,
    *,
    gpus: int = 8,
    product: str | None = H100,
    resource: str = "nvidia.com/gpu",
    taints: tuple[Taint, ...] = (GPU_TAINT,),
    unschedulable: bool = False,
    labels: dict[str, str] | None = None,
) -> NodeInfo:
    node_labels = {"kubernetes.io/hostname": name, **(labels or {})}
    if product is not None:
        node_labels["nvidia.com/gpu.product"] = product
    return NodeInfo(
        name=name,
        labels=node_labels,
        allocatable={"cpu": "96", "memory": "1Ti", resource: str(gpus)},
        taints=taints,
        unschedulable=unschedulable,
    )


def cpu_node(name: str) -> NodeInfo:
    return NodeInfo(name=name, labels={"kubernetes.io/hostname": name}, allocatable={"cpu": "16"})


def spec(**fields: Any) -> InferenceServiceSpec:
    return parse_spec("svc", {"modelRepository": {"uri": "s3://bucket/models"}, **fields})


H100_ONE = {"gpu": {"count": 1, "products": [H100]}}
EIGHT_GPUS = {"gpu": {"count": 8}}
MIG = {"gpu": {"count": 1, "resourceName": "nvidia.com/mig-1g.10gb", "products": [A100]}}
ZONE_SELECTOR = {"gpu": {"count": 1}, "nodeSelector": {"topology.kubernetes.io/zone": "zone-b"}}
ZONE_AFFINITY = {
    "gpu": {"count": 1},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/zone",
                                "operator": "In",
                                "values": ["zone-b"],
                            }
                        ]
                    }
                ]
            }
        }
    },
}
TOLERATES_DEDICATED = {
    "gpu": {"count": 1},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ],
}
DEDICATED_TAINT = Taint("dedicated", "ml", "NoSchedule")

# (case id, spec fields, nodes, expected mode with fallback None, with fallback CPU, reason,
#  words the message must contain)
CASES: list[tuple[str, dict[str, Any], list[NodeInfo] | None, str, str, str, list[str]]] = [
    ("unknown-cluster", H100_ONE, None, "GPU", "GPU", "NodesUnknown", ["assuming"]),
    ("no-nodes", H100_ONE, [], "Unplaceable", "CPUFallback", "NoMatchingGPUNode",
     ["no nodes", H100]),
    ("cpu-only-nodes", H100_ONE, [cpu_node("c1"), cpu_node("c2")], "Unplaceable", "CPUFallback",
     "NoMatchingGPUNode", ["nvidia.com/gpu >= 1", "2 without nvidia.com/gpu"]),
    ("h100-with-gpu-taint", H100_ONE, [cpu_node("c1"), gpu_node("g1"), gpu_node("g2")], "GPU",
     "GPU", "GPUNodesAvailable", ["2 of 3 nodes"]),
    ("wrong-product", H100_ONE, [gpu_node("g1", product=A100)], "Unplaceable", "CPUFallback",
     "NoMatchingGPUNode", ["another GPU product", A100]),
    ("unlabelled-product", H100_ONE, [gpu_node("g1", product=None)], "Unplaceable",
     "CPUFallback", "NoMatchingGPUNode", ["another GPU product", "unlabelled"]),
    ("too-few-gpus-per-node", EIGHT_GPUS, [gpu_node("g1", gpus=4), gpu_node("g2", gpus=2)],
     "Unplaceable", "CPUFallback", "NoMatchingGPUNode", ["fewer than 8", "at most 4"]),
    ("exactly-enough-gpus", EIGHT_GPUS, [gpu_node("g1", gpus=8)], "GPU", "GPU",
     "GPUNodesAvailable", ["1 of 1 node"]),
    ("mig-node-for-mig-resource", MIG,
     [gpu_node("m1", gpus=7, product=A100, resource="nvidia.com/mig-1g.10gb")], "GPU", "GPU",
     "GPUNodesAvailable", ["nvidia.com/mig-1g.10gb"]),
    ("full-gpu-node-for-mig-resource", MIG, [gpu_node("g1", product=A100)], "Unplaceable",
     "CPUFallback", "NoMatchingGPUNode", ["without nvidia.com/mig-1g.10gb"]),
    ("cordoned-gpu-node", H100_ONE, [gpu_node("g1", unschedulable=True)], "Unplaceable",
     "CPUFallback", "NoMatchingGPUNode", ["cordoned"]),
    ("untolerated-extra-taint", H100_ONE, [gpu_node("g1", taints=(GPU_TAINT, DEDICATED_TAINT))],
     "Unplaceable", "CPUFallback", "NoMatchingGPUNode", ["untolerated", "dedicated=ml:NoSchedule"]),
    ("user-tolerates-extra-taint", TOLERATES_DEDICATED,
     [gpu_node("g1", taints=(GPU_TAINT, DEDICATED_TAINT))], "GPU", "GPU", "GPUNodesAvailable",
     ["1 of 1 node"]),
    ("gpu-taint-noexecute-not-tolerated", H100_ONE,
     [gpu_node("g1", taints=(Taint("nvidia.com/gpu", "", "NoExecute"),))], "Unplaceable",
     "CPUFallback", "NoMatchingGPUNode", ["nvidia.com/gpu:NoExecute"]),
    ("prefer-no-schedule-taint-ignored", H100_ONE,
     [gpu_node("g1", taints=(Taint("spot", "true", "PreferNoSchedule"),))], "GPU", "GPU",
     "GPUNodesAvailable", ["1 of 1"]),
    ("not-ready-taint-is-transient", H100_ONE,
     [gpu_node("g1", taints=(GPU_TAINT, Taint("node.kubernetes.io/not-ready", "", "NoSchedule")))],
     "GPU", "GPU", "GPUNodesAvailable", ["1 of 1"]),
    ("node-selector-excludes-gpu-nodes", ZONE_SELECTOR,
     [gpu_node("g1", labels={"topology.kubernetes.io/zone": "zone-a"})], "Unplaceable",
     "CPUFallback", "NoMatchingGPUNode", ["spec.nodeSelector"]),
    ("node-selector-matches", ZONE_SELECTOR,
     [gpu_node("g1", labels={"topology.kubernetes.io/zone": "zone-b"})], "GPU", "GPU",
     "GPUNodesAvailable", ["1 of 1"]),
    ("required-affinity-excludes", ZONE_AFFINITY,
     [gpu_node("g1", labels={"topology.kubernetes.io/zone": "zone-a"})], "Unplaceable",
     "CPUFallback", "NoMatchingGPUNode", ["spec.affinity"]),
    ("required-affinity-matches", ZONE_AFFINITY,
     [gpu_node("g1", labels={"topology.kubernetes.io/zone": "zone-a"}),
      gpu_node("g2", labels={"topology.kubernetes.io/zone": "zone-b"})], "GPU", "GPU",
     "GPUNodesAvailable", ["1 of 2 nodes"]),
    ("count-zero-is-cpu", {"gpu": {"count": 0}}, [cpu_node("c1")], "CPU", "CPU", "CPUOnly",
     ["count is 0"]),
    ("count-zero-without-nodes", {"gpu": {"count": 0}}, None, "CPU", "CPU", "CPUOnly", ["CPU"]),
]  # fmt: skip


@pytest.mark.parametrize("fallback", ["None", "CPU"])
@pytest.mark.parametrize(
    ("fields", "nodes", "mode_none", "mode_cpu", "reason", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_placement_table(
    fields: dict[str, Any],
    nodes: list[NodeInfo] | None,
    mode_none: str,
    mode_cpu: str,
    reason: str,
    words: list[str],
    fallback: str,
) -> None:
    placement = decide(spec(**fields), nodes, default_fallback=fallback)
    assert placement.mode == (mode_cpu if fallback == "CPU" else mode_none)
    assert placement.reason == reason
    assert placement.reason.isalpha() and placement.reason[0].isupper()
    for word in words:
        assert word in placement.message, placement.message
    if placement.mode == "CPUFallback":
        assert "running on CPU" in placement.message
    if placement.mode == "Unplaceable":
        assert "Add a node with" in placement.message
        assert "spec.gpu.fallback: CPU" in placement.message


def test_spec_fallback_overrides_operator_default() -> None:
    nodes = [cpu_node("c1")]
    assert decide(spec(gpu={"count": 1, "fallback": "CPU"}), nodes, "None").mode == "CPUFallback"
    assert decide(spec(gpu={"count": 1, "fallback": "None"}), nodes, "CPU").mode == "Unplaceable"


def test_message_names_the_requirement_as_the_issue_describes() -> None:
    placement = decide(spec(gpu={"count": 2, "products": ["X"]}), [cpu_node("c1")], "CPU")
    assert placement.message.startswith("no node offers nvidia.com/gpu >= 2 with product in [X]")


def test_uses_gpu_for_gpu_and_unplaceable_only() -> None:
    assert Placement("GPU", "R", "").uses_gpu
    assert Placement("Unplaceable", "R", "").uses_gpu
    assert not Placement("CPUFallback", "R", "").uses_gpu
    assert not Placement("CPU", "R", "").uses_gpu


def test_decision_ignores_node_order() -> None:
    nodes = [gpu_node("g2", product=A100), cpu_node("c1"), gpu_node("g1", gpus=0)]
    service = spec(**H100_ONE)
    assert decide(service, nodes, "CPU") == decide(service, list(reversed(nodes)), "CPU")


def test_node_info_from_node_object() -> None:
    node = node_info(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": H100}},
            "spec": {
                "unschedulable": True,
                "taints": [
                    {"key": "nvidia.com/gpu", "effect": "NoSchedule"},
                    {"key": "dedicated", "value": "ml", "effect": "NoExecute"},
                ],
            },
            "status": {"allocatable": {"nvidia.com/gpu": "8", "cpu": "96"}, "conditions": []},
        }
    )
    assert node.name == "gpu-1"
    assert node.labels == {"nvidia.com/gpu.product": H100}
    assert node.allocatable["nvidia.com/gpu"] == "8"
    assert node.taints == (
        Taint("nvidia.com/gpu", "", "NoSchedule"),
        Taint("dedicated", "ml", "NoExecute"),
    )
    assert node.unschedulable
    bare = node_info({"metadata": {"name": "bare"}})
    assert (bare.labels, bare.allocatable, bare.taints, bare.unschedulable) == ({}, {}, (), False)


@pytest.mark.parametrize(
    ("text", "value"),
    [("4", Decimal(4)), ("1k", Decimal(1000)), ("2Gi", Decimal(2 * 2**30)),
     ("500m", Decimal("0.5")), ("1e3", Decimal(1000)), ("bogus", None), ("", None)],
)  # fmt: skip
def test_parse_quantity(text: str, value: Decimal | None) -> None:
    assert parse_quantity(text) == value


def test_garbage_allocatable_counts_as_no_gpu() -> None:
    node = NodeInfo(name="odd", allocatable={"nvidia.com/gpu": "lots"})
    assert decide(spec(gpu={"count": 1}), [node], "CPU").mode == "CPUFallback"


@pytest.mark.parametrize(
    ("toleration", "taint", "tolerated"),
    [
        ({"key": "k", "operator": "Exists"}, Taint("k", "v", "NoSchedule"), True),
        ({"operator": "Exists"}, Taint("anything", "v", "NoExecute"), True),
        ({"key": "k", "value": "v"}, Taint("k", "v", "NoSchedule"), True),
        ({"key": "k", "value": "other"}, Taint("k", "v", "NoSchedule"), False),
        (
            {"key": "k", "operator": "Exists", "effect": "NoSchedule"},
            Taint("k", "", "NoExecute"),
            False,
        ),
        ({"key": "j", "operator": "Exists"}, Taint("k", "", "NoSchedule"), False),
    ],
)
def test_toleration_matching(toleration: dict[str, str], taint: Taint, tolerated: bool) -> None:
    assert toleration_matches(toleration, taint) is tolerated


def test_gpu_toleration_added_once() -> None:
    plain = gpu_pod_tolerations(spec(gpu={"count": 1}))
    assert plain == [GPU_TOLERATION]
    user_has_it = gpu_pod_tolerations(spec(gpu={"count": 1}, tolerations=[GPU_TOLERATION]))
    assert user_has_it == [GPU_TOLERATION]


@pytest.mark.parametrize(
    ("operator", "values", "label", "matches"),
    [
        ("In", ["a", "b"], "b", True),
        ("In", ["a"], None, False),
        ("NotIn", ["a"], "b", True),
        ("NotIn", ["a"], None, True),
        ("NotIn", ["a"], "a", False),
        ("Exists", None, "x", True),
        ("Exists", None, None, False),
        ("DoesNotExist", None, None, True),
        ("DoesNotExist", None, "x", False),
        ("Gt", ["4"], "8", True),
        ("Gt", ["8"], "8", False),
        ("Lt", ["8"], "4", True),
        ("Gt", ["4"], "many", False),
        ("Lt", ["8"], None, False),
    ],
)
def test_required_affinity_operators(
    operator: str, values: list[str] | None, label: str | None, matches: bool
) -> None:
    expression: dict[str, Any] = {"key": "gpu.memory", "operator": operator}
    if values is not None:
        expression["values"] = values
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [expression]}]
            }
        }
    }
    node = gpu_node("g1", labels={} if label is None else {"gpu.memory": label})
    expected = "GPU" if matches else "CPUFallback"
    assert decide(spec(gpu={"count": 1}, affinity=affinity), [node], "CPU").mode == expected


def test_affinity_terms_are_ored_and_match_fields_work() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "absent", "operator": "Exists"}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["g2"]}]},
                ]
            }
        }
    }
    nodes = [gpu_node("g1"), gpu_node("g2")]
    placement = decide(spec(gpu={"count": 1}, affinity=affinity), nodes, "CPU")
    assert placement.mode == "GPU"
    assert "1 of 2 nodes" in placement.message


def test_preferred_affinity_does_not_restrict() -> None:
    affinity = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "preference": {"matchExpressions": [{"key": "absent", "operator": "Exists"}]},
                }
            ]
        }
    }
    assert decide(spec(gpu={"count": 1}, affinity=affinity), [gpu_node("g1")], "None").mode == "GPU"


def test_fingerprint_tracks_placement_facts_only() -> None:
    nodes = [gpu_node("g1"), cpu_node("c1")]
    base = gpu_capacity_fingerprint(nodes)
    assert base == gpu_capacity_fingerprint(list(reversed(nodes)))
    assert gpu_capacity_fingerprint(None) == "unknown"
    # cpu/memory allocatable and transient taints churn without changing any decision
    churned = NodeInfo(
        name="c1",
        labels=dict(nodes[1].labels),
        allocatable={"cpu": "15"},
        taints=(Taint("node.kubernetes.io/not-ready", "", "NoSchedule"),),
    )
    assert gpu_capacity_fingerprint([nodes[0], churned]) == base
    # every fact decide() reads moves the fingerprint
    assert gpu_capacity_fingerprint([gpu_node("g1", gpus=4), nodes[1]]) != base
    assert gpu_capacity_fingerprint([gpu_node("g1", product=A100), nodes[1]]) != base
    assert gpu_capacity_fingerprint([gpu_node("g1", unschedulable=True), nodes[1]]) != base
    assert gpu_capacity_fingerprint([gpu_node("g1", taints=()), nodes[1]]) != base
    assert gpu_capacity_fingerprint(nodes[:1]) != base
