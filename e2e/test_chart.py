"""The Helm chart rendered by the pinned helm: lint, schema, rendering, RBAC and the CRD.

These run `helm template`/`helm lint` (no cluster, about a tenth of a second each), so they
live in the tier that has the Kubernetes binaries: helm comes from `e2e/cluster/build`, found
the way the rest of e2e/ finds its binaries. Without it they error, they do not skip, because a
chart nobody rendered is a chart that may not install. What needs no helm (the chart's version,
the values documentation, the CRD copy) is checked in tests/test_chart.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness import ROOT, bin_dir
from tritonop.api.crd import crd
from tritonop.config import Settings
from tritonop.render.labels import standard_labels

CHART = ROOT / "charts" / "tritonop"
sys.path.insert(0, str(CHART / "hack"))

import helmtool  # noqa: E402

Objects = list[dict[str, Any]]

# ------------------------------------------------------------------------------------------
# The operator's permissions, written once: the agreed list of what the operator uses.
# ------------------------------------------------------------------------------------------

#: (API group, resource) -> verbs, for resources that live in a namespace.
NAMESPACED_RULES: dict[tuple[str, str], set[str]] = {
    ("tritonop.io", "inferenceservices"): {"get", "list", "watch", "patch"},
    ("tritonop.io", "inferenceservices/status"): {"get", "patch", "update"},
    ("tritonop.io", "inferenceservices/scale"): {"get"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("apps", "deployments/scale"): {"get", "patch"},
    ("", "services"): {"get", "list", "watch", "create", "patch"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch"},
    ("autoscaling", "horizontalpodautoscalers"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("keda.sh", "scaledobjects"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch", "patch"},
    ("", "secrets"): {"get", "create", "patch"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "create", "patch", "delete"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
#: Cluster-scoped resources: always in a ClusterRole, also in namespaced mode.
CLUSTER_RULES: dict[tuple[str, str], set[str]] = {
    ("", "nodes"): {"get", "list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"get", "list", "watch"},
}
#: kopf peering, only when several replicas run.
NAMESPACED_PEERING_RULES = {("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"}}
CLUSTER_PEERING_RULES = {("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"}}


@pytest.fixture(scope="module")
def helm() -> str:
    return str(bin_dir() / "helm")


def render(helm: str, values: Mapping[str, Any] | None = None, **options: Any) -> Objects:
    return helmtool.template(values, helm=helm, **options)


@pytest.fixture(scope="module")
def default_objects(helm: str) -> Objects:
    return render(helm)


def only(objects: Objects, kind: str) -> dict[str, Any]:
    matching = [obj for obj in objects if obj["kind"] == kind]
    assert len(matching) == 1, f"expected one {kind}, got {len(matching)}"
    return matching[0]


def of_kind(objects: Objects, kind: str) -> Objects:
    return [obj for obj in objects if obj["kind"] == kind]


def rule_map(rules: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """RBAC rules as (group, resource) -> verbs; a pair granted twice is an error."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in granted, f"{group}/{resource} granted twice"
                granted[(group, resource)] = set(rule["verbs"])
    return granted


def operator_container(objects: Objects) -> dict[str, Any]:
    containers = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(objects: Objects) -> dict[str, str]:
    return {item["name"]: item["value"] for item in operator_container(objects)["env"]}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "replicaCount": 3,
            "watchNamespaces": ["team-a", "team-b"],
            "metrics": {"serviceMonitor": {"enabled": True}},
            "tritonPodMonitor": {"enabled": True},
        },
    ],
    ids=["defaults", "everything-on"],
)
def test_helm_lint_strict_passes(helm: str, values: dict[str, Any], tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = helmtool.run_helm(
        [
            "lint",
            "--strict",
            "--kube-version",
            helmtool.KUBE_VERSION,
            str(CHART),
            "-f",
            str(values_file),
        ],
        helm=helm,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_schema_rejects_a_misspelled_value(helm: str) -> None:
    with pytest.raises(helmtool.HelmError) as error:
        render(helm, set_values=["gpuFalback=CPU"])
    message = str(error.value)
    assert "values don't meet the specifications of the schema" in message
    assert "gpuFalback" in message and "not allowed" in message


def test_schema_rejects_a_misspelled_nested_value(helm: str) -> None:
    with pytest.raises(helmtool.HelmError) as error:
        render(helm, {"crds": {"keepp": False}})
    assert "keepp" in str(error.value)


@pytest.mark.parametrize(
    ("assignment", "words"),
    [
        ("replicaCount=two", ["replicaCount", "integer"]),
        ("gpuFallback=GPU", ["gpuFallback", "None", "CPU"]),
        ("crds.keep=maybe", ["keep", "boolean"]),
        ("autoscaleIntervalSeconds=0.1", ["autoscaleIntervalSeconds", "more than 0.5"]),
        ("autoscaleIntervalSeconds=often", ["autoscaleIntervalSeconds", "does not match pattern"]),
        ("scrapeTimeoutSeconds=31", ["scrapeTimeoutSeconds"]),
        ("watchNamespaces=team-a", ["watchNamespaces", "array"]),
    ],
)
def test_schema_rejects_wrong_types_with_a_clear_message(
    helm: str, assignment: str, words: list[str]
) -> None:
    with pytest.raises(helmtool.HelmError) as error:
        render(helm, set_values=[assignment])
    for word in words:
        assert word in str(error.value)


def test_decimal_seconds_given_with_set_reach_the_operator(helm: str) -> None:
    """`helm --set` passes 2.5 as a string; the chart must still accept it."""
    objects = render(helm, set_values=["autoscaleIntervalSeconds=2.5", "scrapeTimeoutSeconds=0.5"])
    env = env_of(objects)
    assert env["TRITONOP_AUTOSCALE_INTERVAL_SECONDS"] == "2.5"
    assert env["TRITONOP_SCRAPE_TIMEOUT_SECONDS"] == "0.5"


def test_default_render_has_the_expected_kinds(default_objects: Objects) -> None:
    kinds = sorted(obj["kind"] for obj in default_objects)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "Deployment",
            "CustomResourceDefinition",
        ]
    )
    for obj in default_objects:
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}:
            assert obj["metadata"]["namespace"] == helmtool.NAMESPACE


def test_operator_deployment_is_restricted(default_objects: Objects) -> None:
    deployment = only(default_objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is True
    assert "hostNetwork" not in pod and "hostPID" not in pod
    container = operator_container(default_objects)
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in context
    # The read-only root filesystem needs a writable /tmp.
    tmp = next(volume for volume in pod["volumes"] if volume["name"] == "tmp")
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_operator_container_runs_tritonop_with_probes_and_ports(default_objects: Objects) -> None:
    container = operator_container(default_objects)
    assert container["command"] == ["tritonop"]
    assert container["args"] == ["run"]
    assert container["image"] == "ghcr.io/tritonop/tritonop:0.1.0"  # tag defaults to appVersion
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "320Mi"}
    env = env_of(default_objects)
    assert env["TRITONOP_HEALTH_PORT"] == "8080" and env["TRITONOP_METRICS_PORT"] == "9090"
    service = only(default_objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert (
        service["spec"]["selector"]
        == only(default_objects, "Deployment")["spec"]["selector"]["matchLabels"]
    )


def test_every_operator_env_var_is_a_setting_the_operator_reads(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in an env name would be ignored silently by Settings (extra="ignore")."""
    objects = render(
        helm,
        {
            "gpuFallback": "CPU",
            "watchNamespaces": ["team-a", "team-b"],
            "logFormat": "json",
            "logLevel": "DEBUG",
            "prometheusUrl": "http://prometheus.monitoring:9090",
            "autoscaleIntervalSeconds": 2.5,
            "scrapeTimeoutSeconds": 1,
            "scrapeConcurrency": 4,
            "kubeApiQps": 25.5,
            "kubeApiBurst": 40,
            "tritonRunAsUser": 0,
            "clusterDomain": "example.internal",
            "defaultTritonImage": "registry.example/triton:1",
            "replicaCount": 2,
            "policy": {
                "allowedServiceTypes": ["ClusterIP", "LoadBalancer"],
                "allowedServiceAnnotationPrefixes": ["service.beta.kubernetes.io/"],
                "allowedImagePrefixes": ["registry.example/"],
            },
            "networkPolicy": {
                "enabled": False,
                "prometheus": {"namespace": "obs", "podLabels": "app=prom,team=obs"},
            },
            "metrics": {"authentication": {"secretName": "metrics-token"}},
        },
        namespace="ops",
    )
    env = env_of(objects)
    for name in env:
        assert name.startswith("TRITONOP_")
        assert name.removeprefix("TRITONOP_").lower() in Settings.model_fields, name
        monkeypatch.setenv(name, env[name])
    settings = Settings()
    assert settings.gpu_fallback == "CPU"
    assert settings.namespace_list == ["team-a", "team-b"]
    assert settings.log_format == "json" and settings.log_level == "DEBUG"
    assert settings.prometheus_url == "http://prometheus.monitoring:9090"
    assert settings.autoscale_interval_seconds == 2.5
    assert settings.scrape_timeout_seconds == 1 and settings.scrape_concurrency == 4
    assert settings.kube_api_qps == 25.5 and settings.kube_api_burst == 40
    assert settings.triton_run_as_user == 0
    assert settings.cluster_domain == "example.internal"
    assert settings.default_image == "registry.example/triton:1"
    assert settings.peering == "tritonop"
    assert settings.allowed_service_type_list == ["ClusterIP", "LoadBalancer"]
    assert settings.allowed_service_annotation_prefix_list == ["service.beta.kubernetes.io/"]
    assert settings.allowed_image_prefix_list == ["registry.example/"]
    assert settings.network_policy is False
    assert settings.operator_namespace == "ops"
    assert settings.prometheus_namespace == "obs"
    assert settings.prometheus_pod_label_map == {"app": "prom", "team": "obs"}
    assert settings.metrics_token_file == "/var/run/tritonop/metrics-token/token"


def test_default_env_gives_the_default_settings(
    default_objects: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env_of(default_objects).items():
        monkeypatch.setenv(name, value)
    assert Settings() == Settings.model_validate({})


def test_rbac_grants_exactly_the_agreed_rules_clusterwide(
    helm: str, default_objects: Objects
) -> None:
    assert of_kind(default_objects, "Role") == []
    cluster_role = only(default_objects, "ClusterRole")
    assert rule_map(cluster_role["rules"]) == {**NAMESPACED_RULES, **CLUSTER_RULES}

    with_peering = render(helm, {"replicaCount": 2})
    assert rule_map(only(with_peering, "ClusterRole")["rules"]) == {
        **NAMESPACED_RULES,
        **CLUSTER_RULES,
        **NAMESPACED_PEERING_RULES,
        **CLUSTER_PEERING_RULES,
    }
    binding = only(default_objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role["metadata"]["name"],
    }
    account = only(default_objects, "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": helmtool.NAMESPACE,
        }
    ]
    pod = only(default_objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize("replicas", [1, 2])
def test_namespaced_mode_creates_roles_only_in_the_listed_namespaces(
    helm: str, replicas: int
) -> None:
    objects = render(helm, {"watchNamespaces": ["team-a", "team-b"], "replicaCount": replicas})
    roles = of_kind(objects, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["team-a", "team-b"]
    expected_role_rules = {**NAMESPACED_RULES, **(NAMESPACED_PEERING_RULES if replicas > 1 else {})}
    for role in roles:
        assert rule_map(role["rules"]) == expected_role_rules
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == helmtool.NAMESPACE
    # The only ClusterRole holds cluster-scoped reads, nothing namespaced.
    cluster_role = only(objects, "ClusterRole")
    assert rule_map(cluster_role["rules"]) == CLUSTER_RULES
    assert env_of(objects)["TRITONOP_NAMESPACES"] == "team-a,team-b"


def test_peering_and_pdb_only_with_several_replicas(helm: str, default_objects: Objects) -> None:
    peering_kinds = {"ClusterKopfPeering", "KopfPeering", "PodDisruptionBudget"}
    assert not [obj for obj in default_objects if obj["kind"] in peering_kinds]
    assert env_of(default_objects)["TRITONOP_PEERING"] == ""
    assert only(default_objects, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}

    objects = render(helm, {"replicaCount": 3})
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    peering = only(objects, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert env_of(objects)["TRITONOP_PEERING"] == peering["metadata"]["name"] == "tritonop"
    assert of_kind(objects, "KopfPeering") == []

    named = render(helm, {"replicaCount": 2, "peering": {"name": "triton-operators"}})
    assert only(named, "ClusterKopfPeering")["metadata"]["name"] == "triton-operators"
    assert env_of(named)["TRITONOP_PEERING"] == "triton-operators"


def test_namespaced_peering_uses_a_kopf_peering_per_watched_namespace(helm: str) -> None:
    objects = render(helm, {"replicaCount": 2, "watchNamespaces": ["team-a", "team-b"]})
    assert of_kind(objects, "ClusterKopfPeering") == []
    peerings = of_kind(objects, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert {p["metadata"]["name"] for p in peerings} == {env_of(objects)["TRITONOP_PEERING"]}


def test_kopf_peering_crds_have_the_documented_shape(helm: str) -> None:
    objects = render(helm, include_crds=True)
    peering_crds = {
        obj["metadata"]["name"]: obj
        for obj in of_kind(objects, "CustomResourceDefinition")
        if obj["spec"]["group"] == "kopf.dev"
    }
    assert set(peering_crds) == {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}
    assert peering_crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    assert peering_crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    for definition in peering_crds.values():
        (version,) = definition["spec"]["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"]
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_crds_keep_toggles_the_resource_policy_annotation(
    helm: str, default_objects: Objects
) -> None:
    kept = only(default_objects, "CustomResourceDefinition")
    assert kept["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    not_kept = only(render(helm, {"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "annotations" not in not_kept["metadata"]
    assert of_kind(render(helm, {"crds": {"enabled": False}}), "CustomResourceDefinition") == []


def test_helm_round_trip_of_the_crd_loses_nothing(default_objects: Objects) -> None:
    """The chart embeds the CRD through fromYaml/toYaml: numbers, strings and order survive."""
    rendered = only(default_objects, "CustomResourceDefinition")
    rendered["metadata"].pop("annotations")
    assert rendered == crd()


def test_monitors_are_off_by_default_and_select_the_right_pods(
    helm: str, default_objects: Objects
) -> None:
    assert not of_kind(default_objects, "ServiceMonitor") and not of_kind(
        default_objects, "PodMonitor"
    )
    objects = render(
        helm,
        {
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
            "tritonPodMonitor": {"enabled": True, "labels": {"release": "prom"}},
        },
    )
    service_monitor = only(objects, "ServiceMonitor")
    service = only(objects, "Service")
    selector = service_monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert service_monitor["metadata"]["labels"]["release"] == "prom"

    pod_monitor = only(objects, "PodMonitor")
    pod_selector = pod_monitor["spec"]["selector"]["matchLabels"]
    assert pod_selector == {
        "app.kubernetes.io/managed-by": "tritonop",
        "app.kubernetes.io/name": "triton",
    }
    # The labels the operator puts on every Triton pod match the PodMonitor's selector.
    assert pod_selector.items() <= standard_labels("any-service").items()
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    kept = {relabel["targetLabel"] for relabel in endpoint["relabelings"]}
    assert {"namespace", "pod", "inferenceservice"} <= kept
    assert endpoint["honorLabels"] is False  # a pod's own labels never override namespace/pod
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}

    namespaced = render(
        helm, {"watchNamespaces": ["team-a"], "tritonPodMonitor": {"enabled": True}}
    )
    assert only(namespaced, "PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


def test_service_monitor_without_its_service_fails_clearly(helm: str) -> None:
    with pytest.raises(helmtool.HelmError, match=r"metrics\.service\.enabled"):
        render(
            helm, {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}
        )


def test_existing_service_account(helm: str) -> None:
    objects = render(helm, {"serviceAccount": {"create": False, "name": "platform-operators"}})
    assert of_kind(objects, "ServiceAccount") == []
    assert (
        only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        == "platform-operators"
    )
    assert only(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "platform-operators"
    with pytest.raises(helmtool.HelmError, match=r"serviceAccount\.name is required"):
        render(helm, {"serviceAccount": {"create": False}})


def test_pod_placement_values_reach_the_pod(helm: str) -> None:
    values = {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "ml"},
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"repository": "registry.example/tritonop", "tag": "dev", "pullPolicy": "Always"},
        "extraEnv": [{"name": "TRITONOP_SCRAPE_CONCURRENCY", "value": "8"}],
    }
    objects = render(helm, values)
    template = only(objects, "Deployment")["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert template["metadata"]["annotations"] == {"example.com/a": "b"}
    assert template["metadata"]["labels"]["team"] == "ml"
    container = operator_container(objects)
    assert container["image"] == "registry.example/tritonop:dev"
    assert container["imagePullPolicy"] == "Always"
    assert container["env"][-1] == {"name": "TRITONOP_SCRAPE_CONCURRENCY", "value": "8"}


def test_helm_labels_can_be_left_out(helm: str, default_objects: Objects) -> None:
    deployment = only(default_objects, "Deployment")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    plain = render(helm, {"helmLabels": False})
    text = json.dumps(plain)
    assert "helm.sh/chart" not in text and '"Helm"' not in text
    assert only(plain, "Deployment")["spec"]["selector"] == deployment["spec"]["selector"]


def test_notes_tell_what_to_do_next(helm: str) -> None:
    notes = helmtool.render_notes({"watchNamespaces": ["team-a"], "replicaCount": 2}, helm=helm)
    assert "kubectl -n tritonop-system rollout status deployment/tritonop" in notes
    assert "kubectl get tis" in notes
    assert "manifests/examples/" in notes
    assert "team-a" in notes
    assert "9090" in notes and "8002" in notes


def test_metrics_authentication_mounts_the_token_and_the_service_monitor_sends_it(
    helm: str, default_objects: Objects
) -> None:
    assert env_of(default_objects)["TRITONOP_METRICS_TOKEN_FILE"] == ""
    objects = render(
        helm,
        {
            "metrics": {
                "authentication": {"secretName": "metrics-token"},
                "serviceMonitor": {"enabled": True},
            }
        },
    )
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "metrics-token")
    assert volume["secret"] == {
        "secretName": "metrics-token",
        "items": [{"key": "token", "path": "token"}],
    }
    mount = next(
        m for m in operator_container(objects)["volumeMounts"] if m["name"] == "metrics-token"
    )
    assert env_of(objects)["TRITONOP_METRICS_TOKEN_FILE"] == mount["mountPath"] + "/token"
    (endpoint,) = only(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "metrics-token", "key": "token"},
    }


def test_policy_defaults_allow_only_cluster_ip_no_annotations_and_ngc_triton(
    default_objects: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env_of(default_objects).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.allowed_service_type_list == ["ClusterIP"]
    assert settings.allowed_service_annotation_prefix_list == []
    assert settings.allowed_image_prefix_list == [
        "nvcr.io/nvidia/tritonserver:",
        "nvcr.io/nvidia/tritonserver@",
    ]
    assert settings.network_policy is True
