"""Every shipped example is a valid, documented InferenceService that renders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tritonop.admission import policy_violations
from tritonop.api import parse_object
from tritonop.config import Settings
from tritonop.placement import NodeInfo, decide
from tritonop.render import render_children

EXAMPLES = Path(__file__).resolve().parent.parent / "manifests" / "examples"
EXPECTED = {
    "gpu-h100",
    "mig",
    "cpu-only",
    "cpu-fallback",
    "pvc-explicit-models",
    "autoscaled",
    "hpa",
    "keda",
}
H100_NODE = NodeInfo(
    name="gpu-1",
    labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    allocatable={"nvidia.com/gpu": "8"},
)
CPU_NODE = NodeInfo(name="cpu-1", allocatable={"cpu": "16"})


def example_paths() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def test_the_documented_examples_exist() -> None:
    assert {path.stem for path in example_paths()} == EXPECTED


@pytest.mark.parametrize("path", example_paths(), ids=lambda path: path.stem)
def test_example_is_valid_documented_and_renders(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# "), "each example opens with a comment explaining it"
    documents = list(yaml.safe_load_all(text))
    assert len(documents) == 1
    document = documents[0]
    assert "namespace" not in document["metadata"], "users choose the namespace"
    service = parse_object(document)
    assert service.name == document["metadata"]["name"]
    for nodes in (None, [CPU_NODE], [CPU_NODE, H100_NODE]):
        for fallback in ("None", "CPU"):
            placement = decide(service.spec, nodes, fallback)
            children = render_children(service, placement, Settings(), replicas=None)
            kinds = [child["kind"] for child in children[:4]]
            assert kinds == ["NetworkPolicy", "Deployment", "Service", "PodDisruptionBudget"]
            assert all(child["metadata"]["name"] == service.name for child in children)
    assert policy_violations(service.spec, Settings()) == [], "examples pass the default policy"


def test_examples_cover_the_documented_features() -> None:
    services = {
        path.stem: parse_object(yaml.safe_load(path.read_text())) for path in example_paths()
    }
    assert services["gpu-h100"].spec.gpu.products == ["NVIDIA-H100-80GB-HBM3"]
    assert services["gpu-h100"].spec.model_repository.secret_ref is not None
    assert services["gpu-h100"].spec.model_repository.uri.startswith("s3://")
    assert services["mig"].spec.gpu.resource_name == "nvidia.com/mig-1g.10gb"
    assert services["mig"].spec.gpu.products == ["NVIDIA-A100-SXM4-80GB"]
    assert services["cpu-only"].spec.gpu.count == 0
    assert services["cpu-fallback"].spec.gpu.fallback == "CPU"
    pvc = services["pvc-explicit-models"].spec
    assert pvc.model_repository.uri == "pvc://model-store/triton"
    assert pvc.models == ["resnet50", "densenet_onnx"]
    autoscaled = services["autoscaled"].spec
    assert autoscaled.autoscaling is not None
    assert autoscaled.autoscaling.mode == "Operator"
    assert (
        autoscaled.autoscaling.targets.queue_depth,
        autoscaled.autoscaling.targets.queue_time_ms,
    ) == (4, 50)
    assert (autoscaled.autoscaling.min_replicas, autoscaled.autoscaling.max_replicas) == (1, 8)
    assert (autoscaled.gpu.count, autoscaled.gpu.fallback, autoscaled.models) == (
        1,
        "CPU",
        ["simple"],
    )
    assert services["hpa"].spec.autoscaling_mode == "HPA"
    assert services["keda"].spec.autoscaling_mode == "KEDA"


def test_cpu_fallback_example_moves_between_gpu_and_cpu() -> None:
    service = parse_object(yaml.safe_load((EXAMPLES / "cpu-fallback.yaml").read_text()))
    assert decide(service.spec, [CPU_NODE], "None").mode == "CPUFallback"
    assert decide(service.spec, [CPU_NODE, H100_NODE], "None").mode == "GPU"
    h100 = parse_object(yaml.safe_load((EXAMPLES / "gpu-h100.yaml").read_text()))
    # gpu-h100 leaves fallback to the operator's default
    assert decide(h100.spec, [CPU_NODE], "CPU").mode == "CPUFallback"
    assert decide(h100.spec, [CPU_NODE], "None").mode == "Unplaceable"
