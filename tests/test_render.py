"""Rendering: golden manifests for every example, and the rules the manifests must follow."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tritonop.api import ParsedService, parse_object
from tritonop.config import Settings
from tritonop.placement import Placement
from tritonop.render import (
    label_selector_string,
    manifests_to_yaml,
    render_access,
    render_children,
    render_workload,
    selector_labels,
    service_urls,
    standard_labels,
    to_yaml_flow,
)
from tritonop.render.autoscaling import render_autoscaler
from tritonop.render.lockdown import restricted_api_args
from tritonop.render.workload import PRESTOP_PAUSE_SECONDS, TRITON_EXIT_TIMEOUT_SECONDS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "manifests" / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
UID = "3f6c2a9e-1b7d-4c55-9a0e-2d8f6b1c7e40"
NAMESPACE = "models"
SECRET_VERSION = "48213"
ADMIN_KEY = "0123456789abcdef0123456789abcdef"
SETTINGS = Settings()
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

GPU = Placement("GPU", "GPUNodesAvailable", "2 of 3 nodes can host nvidia.com/gpu >= 1")
CPU_FALLBACK = Placement("CPUFallback", "NoMatchingGPUNode", "no node offers nvidia.com/gpu >= 1")
UNPLACEABLE = Placement("Unplaceable", "NoMatchingGPUNode", "no node offers nvidia.com/gpu >= 1")
CPU = Placement("CPU", "CPUOnly", "spec.gpu.count is 0")
PLACEMENTS = {"GPU": GPU, "CPUFallback": CPU_FALLBACK, "CPU": CPU}


def load_example(name: str, *, uid: str = UID) -> ParsedService:
    document = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    document["metadata"].update({"namespace": NAMESPACE, "uid": uid})
    return parse_object(document)


def replicas_for(service: ParsedService) -> int | None:
    """What the operator passes: fixed count, current count (min at first), or None (HPA/KEDA)."""
    spec = service.spec
    if spec.autoscaling is None or spec.autoscaling.mode == "None":
        return spec.replicas
    if spec.autoscaling.mode == "Operator":
        return spec.autoscaling.min_replicas
    return None


def golden_cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        service = load_example(path.stem)
        modes = ["GPU", "CPUFallback"] if service.spec.gpu.count > 0 else ["CPU"]
        cases += [(path.stem, mode) for mode in modes]
    return cases


def render_example(name: str, mode: str) -> str:
    service = load_example(name)
    secret_version = SECRET_VERSION if service.spec.model_repository.secret_ref else None
    objects = [
        *render_access(service, SETTINGS, admin_key=ADMIN_KEY),
        *render_workload(
            service,
            PLACEMENTS[mode],
            SETTINGS,
            replicas=replicas_for(service),
            secret_version=secret_version,
        ),
    ]
    header = (
        f"# Golden render of manifests/examples/{name}.yaml with placement {mode}\n"
        f"# (namespace {NAMESPACE}, a fixed uid and admin key; admin Secret, NetworkPolicy,\n"
        "# Deployment, Service, PodDisruptionBudget).\n"
        "# Regenerate: UPDATE_GOLDEN=1 python -m pytest tests/test_render.py\n"
    )
    return header + manifests_to_yaml(objects)


@pytest.mark.parametrize(("name", "mode"), golden_cases(), ids=lambda value: str(value))
def test_golden(name: str, mode: str) -> None:
    path = GOLDEN / f"{name}-{mode}.yaml"
    rendered = render_example(name, mode)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered)
    expected = path.read_text() if path.exists() else ""
    if rendered != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                fromfile=f"{path.name} (golden)",
                tofile=f"{path.name} (rendered)",
            )
        )
        pytest.fail(f"render differs from {path}; if intended, UPDATE_GOLDEN=1\n{diff}")


KUBERNETES_TYPES = {
    "Secret": "V1Secret",
    "NetworkPolicy": "V1NetworkPolicy",
    "Deployment": "V1Deployment",
    "Service": "V1Service",
    "PodDisruptionBudget": "V1PodDisruptionBudget",
}


@pytest.mark.parametrize(("name", "mode"), golden_cases(), ids=lambda value: str(value))
def test_rendered_fields_are_kubernetes_fields(name: str, mode: str) -> None:
    """The kubernetes client's typed models drop unknown keys: a misspelt field shows as a diff."""
    from kubernetes.client import ApiClient

    client = ApiClient()
    for obj in yaml.safe_load_all(render_example(name, mode)):
        typed = client.deserialize(
            json.dumps(obj), KUBERNETES_TYPES[obj["kind"]], "application/json"
        )
        assert client.sanitize_for_serialization(typed) == obj  # type: ignore[no-untyped-call]


def test_every_golden_file_has_a_case() -> None:
    expected = {f"{name}-{mode}.yaml" for name, mode in golden_cases()}
    assert {path.name for path in GOLDEN.glob("*.yaml")} == expected


# --------------------------------------------------------------------------------------------
# focused rules
# --------------------------------------------------------------------------------------------


def make_service(uid: str = UID, **spec: Any) -> ParsedService:
    spec.setdefault("modelRepository", {"uri": "s3://bucket/models"})
    return parse_object(
        {
            "apiVersion": "tritonop.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "svc", "namespace": "ns", "uid": uid},
            "spec": spec,
        }
    )


def deployment(
    service: ParsedService,
    placement: Placement = GPU,
    *,
    replicas: int | None = 1,
    settings_: Settings = SETTINGS,
    secret_version: str | None = None,
) -> dict[str, Any]:
    return render_workload(
        service, placement, settings_, replicas=replicas, secret_version=secret_version
    )[0]


def pod(deploy: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deploy["spec"]["template"]["spec"]
    return spec


def container(deploy: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod(deploy)["containers"]
    assert [c["name"] for c in containers] == ["triton"]
    return containers[0]


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
PRODUCT_EXPRESSION = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["H100"]}


def test_gpu_fields_on_gpu_placement_only() -> None:
    service = make_service(gpu={"count": 2, "products": ["H100"]})
    for placement in (GPU, UNPLACEABLE):
        rendered = deployment(service, placement)
        assert container(rendered)["resources"]["limits"] == {"nvidia.com/gpu": "2"}
        assert pod(rendered)["tolerations"] == [GPU_TOLERATION]
        terms = pod(rendered)["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [PRODUCT_EXPRESSION]}]
        assert "--allow-gpu-metrics=true" in container(rendered)["args"]
    rendered = deployment(service, CPU_FALLBACK)
    assert "resources" not in container(rendered)
    assert "tolerations" not in pod(rendered)
    assert "affinity" not in pod(rendered)
    assert "--allow-gpu-metrics=false" in container(rendered)["args"]
    text = manifests_to_yaml([rendered])
    assert "nvidia.com/gpu" not in text


def test_mig_resource_name_is_the_limit() -> None:
    service = make_service(gpu={"count": 1, "resourceName": "nvidia.com/mig-1g.10gb"})
    limits = container(deployment(service))["resources"]["limits"]
    assert limits == {"nvidia.com/mig-1g.10gb": "1"}


def test_gpu_limit_merged_with_user_resources_and_user_gpu_entry_dropped() -> None:
    service = make_service(
        gpu={"count": 1},
        resources={
            "requests": {"memory": "8Gi", "cpu": "2"},
            "limits": {"memory": "16Gi", "nvidia.com/gpu": "4"},
        },
    )
    gpu_resources = container(deployment(service, GPU))["resources"]
    assert gpu_resources == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
    }
    cpu_resources = container(deployment(service, CPU_FALLBACK))["resources"]
    assert cpu_resources == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"memory": "16Gi"},
    }


USER_AFFINITY: dict[str, Any] = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
            ]
        },
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 10,
                "preference": {"matchExpressions": [{"key": "fast", "operator": "Exists"}]},
            }
        ],
    },
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "svc"}},
                },
            }
        ]
    },
}
USER_TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}


def test_user_scheduling_constraints_kept_and_merged() -> None:
    service = make_service(
        gpu={"count": 1, "products": ["H100"]},
        nodeSelector={"pool": "inference"},
        tolerations=[USER_TOLERATION],
        affinity=USER_AFFINITY,
    )
    gpu_pod = pod(deployment(service, GPU))
    assert gpu_pod["nodeSelector"] == {"pool": "inference"}
    assert gpu_pod["tolerations"] == [USER_TOLERATION, GPU_TOLERATION]
    node_affinity = gpu_pod["affinity"]["nodeAffinity"]
    terms = node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]},
                PRODUCT_EXPRESSION,
            ]
        },
        {
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
            "matchExpressions": [PRODUCT_EXPRESSION],
        },
    ]
    user_node_affinity = USER_AFFINITY["nodeAffinity"]
    assert (
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
        == (user_node_affinity["preferredDuringSchedulingIgnoredDuringExecution"])
    )
    assert gpu_pod["affinity"]["podAntiAffinity"] == USER_AFFINITY["podAntiAffinity"]
    # the spec itself is not modified by the merge
    assert service.spec.affinity.manifest() == USER_AFFINITY

    cpu_pod = pod(deployment(service, CPU_FALLBACK))
    assert cpu_pod["nodeSelector"] == {"pool": "inference"}
    assert cpu_pod["tolerations"] == [USER_TOLERATION]
    assert cpu_pod["affinity"] == USER_AFFINITY


def test_gpu_toleration_not_duplicated_when_user_has_it() -> None:
    service = make_service(gpu={"count": 1}, tolerations=[GPU_TOLERATION])
    assert pod(deployment(service))["tolerations"] == [GPU_TOLERATION]


def test_pvc_repository_mounted_read_only_with_sub_path() -> None:
    rendered = deployment(make_service(modelRepository={"uri": "pvc://model-store/triton/v2"}))
    assert {
        "name": "model-repository",
        "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True},
    } in (pod(rendered)["volumes"])
    mounts = container(rendered)["volumeMounts"]
    assert {
        "name": "model-repository",
        "mountPath": "/models",
        "readOnly": True,
        "subPath": "triton/v2",
    } in mounts
    assert "--model-repository=/models" in container(rendered)["args"]

    whole_claim = deployment(make_service(modelRepository={"uri": "pvc://model-store"}))
    mount = next(
        m for m in container(whole_claim)["volumeMounts"] if m["name"] == "model-repository"
    )
    assert mount == {"name": "model-repository", "mountPath": "/models", "readOnly": True}

    object_store = deployment(make_service(modelRepository={"uri": "gs://bucket/repo"}))
    assert [v["name"] for v in pod(object_store)["volumes"]] == ["dshm"]
    assert "--model-repository=gs://bucket/repo" in container(object_store)["args"]


def test_args_order_explicit_models_then_user_args() -> None:
    service = make_service(
        models=["resnet50", "densenet_onnx"],
        triton={"args": ["--log-verbose=1", "--strict-readiness=false"], "strictReadiness": True},
    )
    assert container(deployment(service))["command"] == ["tritonserver"]
    assert container(deployment(service))["args"] == [
        "--model-repository=s3://bucket/models",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--allow-metrics=true",
        "--allow-gpu-metrics=true",
        "--strict-readiness=true",
        *restricted_api_args(),
        "--model-control-mode=explicit",
        "--load-model=resnet50",
        "--load-model=densenet_onnx",
        "--log-verbose=1",
        "--strict-readiness=false",
    ]
    plain = container(deployment(make_service(triton={"strictReadiness": False})))["args"]
    assert "--strict-readiness=false" in plain
    assert not any(arg.startswith(("--model-control-mode", "--load-model")) for arg in plain)


def test_ports_shm_and_probes() -> None:
    rendered = deployment(make_service(triton={"shmSize": "4Gi", "startupTimeoutSeconds": 95}))
    triton = container(rendered)
    assert [(p["name"], p["containerPort"], p["protocol"]) for p in triton["ports"]] == [
        ("http", 8000, "TCP"),
        ("grpc", 8001, "TCP"),
        ("metrics", 8002, "TCP"),
    ]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in pod(rendered)[
        "volumes"
    ]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in triton["volumeMounts"]
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    startup = triton["startupProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert (startup["periodSeconds"], startup["failureThreshold"]) == (10, 10)  # ceil(95 / 10)
    default = container(deployment(make_service()))["startupProbe"]
    assert default["failureThreshold"] == 90  # 900 s default
    # a rollout is not declared stuck before the pods could have finished loading
    assert rendered["spec"]["progressDeadlineSeconds"] > 95
    assert deployment(make_service())["spec"]["progressDeadlineSeconds"] > 900


def test_owner_references_only_with_uid() -> None:
    for obj in render_workload(make_service(uid=UID), GPU, SETTINGS, replicas=1):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "tritonop.io/v1alpha1",
                "kind": "InferenceService",
                "name": "svc",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert obj["metadata"]["namespace"] == "ns"
    for obj in render_workload(make_service(uid=""), GPU, SETTINGS, replicas=1):
        assert "ownerReferences" not in obj["metadata"]


def test_replicas_omitted_when_none() -> None:
    assert deployment(make_service(), replicas=3)["spec"]["replicas"] == 3
    assert deployment(make_service(), replicas=0)["spec"]["replicas"] == 0
    assert "replicas" not in deployment(make_service(), replicas=None)["spec"]


def test_rollout_keeps_serving() -> None:
    spec = deployment(make_service())["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert spec["revisionHistoryLimit"] <= 5
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 30


def test_secret_env_and_hash_annotation() -> None:
    service = make_service(modelRepository={"uri": "s3://b/m", "secretRef": {"name": "creds"}})
    rendered = deployment(service, secret_version="abc123")
    assert container(rendered)["envFrom"] == [{"secretRef": {"name": "creds"}}]
    annotations = rendered["spec"]["template"]["metadata"]["annotations"]
    assert annotations["tritonop.io/secret-version"] == "abc123"
    without_hash = deployment(service)["spec"]["template"]["metadata"]["annotations"]
    assert "tritonop.io/secret-version" not in without_hash
    assert "envFrom" not in container(deployment(make_service()))


def test_security_context_restricted_or_root() -> None:
    restricted = deployment(make_service(), settings_=Settings(triton_run_as_user=1000))
    assert pod(restricted)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    root = deployment(make_service(), settings_=Settings(triton_run_as_user=0))
    assert "runAsNonRoot" not in pod(root)["securityContext"]
    assert "runAsUser" not in pod(root)["securityContext"]
    for rendered in (restricted, root):
        context = container(rendered)["securityContext"]
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["allowPrivilegeEscalation"] is False


def test_image_from_spec_or_settings() -> None:
    assert container(deployment(make_service()))["image"] == SETTINGS.default_image
    assert container(deployment(make_service(image="registry.local/triton:1")))["image"] == (
        "registry.local/triton:1"
    )


def test_labels_selectors_service_and_pdb() -> None:
    service = make_service(
        service={"type": "LoadBalancer", "annotations": {"lb/internal": "true"}},
        disruption={"maxUnavailable": "25%"},
    )
    deploy, svc, pdb = render_workload(service, GPU, SETTINGS, replicas=None)
    assert [o["kind"] for o in (deploy, svc, pdb)] == [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ]
    for obj in (deploy, svc, pdb):
        assert obj["metadata"]["name"] == "svc"
        assert obj["metadata"]["labels"] == standard_labels("svc")
    assert deploy["spec"]["template"]["metadata"]["labels"] == standard_labels("svc")
    assert deploy["spec"]["selector"] == {"matchLabels": selector_labels("svc")}
    assert svc["spec"]["selector"] == selector_labels("svc")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == {"lb/internal": "true"}
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 8000, "http"),
        ("grpc", 8001, "grpc"),
        ("metrics", 8002, "metrics"),
    ]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == "25%"
    assert pdb["spec"]["selector"] == {"matchLabels": selector_labels("svc")}
    assert (
        render_workload(make_service(), GPU, SETTINGS, replicas=1)[2]["spec"]["maxUnavailable"] == 1
    )


def test_label_helpers_and_urls() -> None:
    assert selector_labels("x") == {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": "x",
    }
    assert standard_labels("x")["tritonop.io/inferenceservice"] == "x"
    assert standard_labels("x")["app.kubernetes.io/managed-by"] == "tritonop"
    assert (
        label_selector_string("x") == "app.kubernetes.io/instance=x,app.kubernetes.io/name=triton"
    )
    assert service_urls(make_service(), "cluster.local") == (
        "http://svc.ns.svc.cluster.local:8000",
        "svc.ns.svc.cluster.local:8001",
    )


def test_yaml_injection_in_user_values_stays_a_string() -> None:
    # Control characters are refused by the API models; what printable text can try is left.
    evil_model = 'm", privileged: true, "x": "--- kind: Secret #'
    evil_annotation = "x}, injected: {yes: 1"
    evil_arg = "--log-verbose=1'; rm -rf / ]  privileged: true"
    service = make_service(
        models=[evil_model, "*alias", "&anchor x", "!!python/object:os.system"],
        service={"annotations": {"a": evil_annotation, "b": "{b: 1}"}},
        triton={"args": [evil_arg]},
    )
    deploy, svc, _pdb = render_workload(service, GPU, SETTINGS, replicas=1)
    args = container(deploy)["args"]
    for model in [evil_model, "*alias", "&anchor x", "!!python/object:os.system"]:
        assert f"--load-model={model}" in args
    assert args[-1] == evil_arg
    assert "privileged" not in container(deploy)
    assert svc["metadata"]["annotations"] == {"a": evil_annotation, "b": "{b: 1}"}
    first_document = next(iter(yaml.safe_load_all(manifests_to_yaml([deploy, svc]))))
    assert first_document == deploy


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text()
        | st.floats(allow_nan=False, allow_infinity=False),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    )
)
def test_toyaml_round_trips_any_plain_value(value: Any) -> None:
    text = to_yaml_flow(value)
    assert "\n" not in text, "one line: the node cannot break out of its template line"
    assert yaml.safe_load(text) == value
    assert yaml.load(text, Loader=LOADER) == value  # the loader render_manifest uses


def test_render_is_deterministic() -> None:
    service = make_service(
        gpu={"count": 1, "products": ["H100"]},
        affinity=USER_AFFINITY,
        tolerations=[USER_TOLERATION],
        resources={"requests": {"memory": "8Gi", "cpu": "2"}},
    )
    first = render_children(service, GPU, SETTINGS, replicas=2, secret_version="h")
    second = render_children(service, GPU, SETTINGS, replicas=2, secret_version="h")
    assert first == second
    assert manifests_to_yaml(first) == manifests_to_yaml(second)
    # resource maps come out sorted whatever order the spec lists them in
    reordered = make_service(
        gpu={"count": 1, "products": ["H100"]},
        affinity=USER_AFFINITY,
        tolerations=[USER_TOLERATION],
        resources={"requests": {"cpu": "2", "memory": "8Gi"}},
    )
    assert manifests_to_yaml(
        render_children(reordered, GPU, SETTINGS, replicas=2, secret_version="h")
    ) == (manifests_to_yaml(first))


def test_render_children_are_access_then_workload_then_the_autoscaler() -> None:
    service = load_example("hpa")
    children = render_children(service, GPU, SETTINGS, replicas=None, admin_key=ADMIN_KEY)
    access = render_access(service, SETTINGS, admin_key=ADMIN_KEY)
    workload = render_workload(service, GPU, SETTINGS, replicas=None)
    assert children == access + workload + render_autoscaler(service, SETTINGS)
    assert [c["kind"] for c in access] == ["Secret", "NetworkPolicy"]


# --------------------------------------------------------------------------------------------
# lockdown: the admin key, restricted APIs, no token, no scrape annotations, NetworkPolicy
# --------------------------------------------------------------------------------------------


def test_triton_administrative_apis_are_behind_the_admin_key() -> None:
    rendered = deployment(make_service(models=["m"]))
    args = container(rendered)["args"]
    expected = (
        "model-repository,model-config,shared-memory,logging,trace:admin-key=$(TRITONOP_ADMIN_KEY)"
    )
    assert f"--http-restricted-api={expected}" in args
    assert f"--grpc-restricted-protocol={expected}" in args
    # The key comes from the service's admin Secret through the environment, never in clear.
    assert container(rendered)["env"] == [
        {
            "name": "TRITONOP_ADMIN_KEY",
            "valueFrom": {"secretKeyRef": {"name": "svc-triton-admin", "key": "admin-key"}},
        }
    ]
    assert ADMIN_KEY not in json.dumps(rendered)
    assert pod(rendered)["automountServiceAccountToken"] is False
    annotations = rendered["spec"]["template"]["metadata"]["annotations"]
    assert not [key for key in annotations if key.startswith("prometheus.io/")]


def test_admin_secret_holds_the_key_base64_and_is_owned() -> None:
    import base64

    (secret,) = render_access(make_service(), Settings(network_policy=False), admin_key="k3y")
    assert secret["metadata"]["name"] == "svc-triton-admin"
    assert secret["data"] == {"admin-key": base64.b64encode(b"k3y").decode()}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == UID
    assert render_access(make_service(), Settings(network_policy=False), admin_key=None) == []


def test_network_policy_admits_clients_and_scrapers_only() -> None:
    settings_ = Settings(
        operator_namespace="ops",
        prometheus_namespace="mon",
        prometheus_pod_labels="app=prom, team=obs",
    )
    (policy,) = render_access(make_service(), settings_, admin_key=None)
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": selector_labels("svc")}
    assert spec["policyTypes"] == ["Ingress"]
    inference, metrics = spec["ingress"]
    assert [p["port"] for p in inference["ports"]] == ["http", "grpc"]
    assert inference["from"] == [
        {"podSelector": {}},
        {
            "namespaceSelector": {"matchLabels": {"tritonop.io/inference-client": "true"}},
            "podSelector": {"matchLabels": {"tritonop.io/inference-client": "true"}},
        },
    ]
    assert [p["port"] for p in metrics["ports"]] == ["metrics"]
    assert metrics["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/component": "operator",
                    "app.kubernetes.io/part-of": "tritonop",
                }
            },
        },
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}},
            "podSelector": {"matchLabels": {"app": "prom", "team": "obs"}},
        },
    ]
    assert render_access(make_service(), Settings(network_policy=False), admin_key=None) == []


def test_toyaml_keeps_keys_longer_than_yamls_implicit_key_limit() -> None:
    value = {"\u0100" * 300: None, "k": 1}  # escaped, the first key is 1800 characters
    assert yaml.safe_load(to_yaml_flow(value)) == value


def test_a_terminating_pod_pauses_then_has_tritons_exit_timeout_within_its_grace() -> None:
    """Load-aware scale-down: the pod keeps serving while endpoints drop it (preStop), then
    Triton finishes what it holds within --exit-timeout-secs, all before the kubelet's SIGKILL."""
    plain = deployment(make_service())
    assert container(plain)["lifecycle"] == {
        "preStop": {"exec": {"command": ["sleep", str(PRESTOP_PAUSE_SECONDS)]}}
    }
    grace = pod(plain)["terminationGracePeriodSeconds"]
    assert grace == 60 and grace > PRESTOP_PAUSE_SECONDS + TRITON_EXIT_TIMEOUT_SECONDS
    for args, exit_timeout in (
        (["--exit-timeout-secs=120"], 120),
        (["--exit-timeout-secs", "90", "--log-verbose=1"], 90),
        (["--exit-timeout-secs=5", "--exit-timeout-secs=45"], 45),  # tritonserver: last wins
        (["--exit-timeout-secs=soon"], TRITON_EXIT_TIMEOUT_SECONDS),
    ):
        rendered = deployment(make_service(triton={"args": args}))
        assert pod(rendered)["terminationGracePeriodSeconds"] > PRESTOP_PAUSE_SECONDS + exit_timeout
