"""The kubelet's `$(NAME)` expansion and environment, as the pod runner plays it
(e2e/tritonsim/containerenv.py): what lets the operator pass Triton's admin key from a Secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from e2e.tritonsim.containerenv import (
    ContainerConfigError,
    EnvSource,
    env_sources,
    environment,
    expand,
    expand_all,
)

SECRETS = {
    "admin": {"admin-key": "k3y"},
    "creds": {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "shh"},
}


def read_secret(namespace: str, name: str) -> Mapping[str, str] | None:
    assert namespace == "team"
    return SECRETS.get(name)


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("--key=$(KEY)", "--key=k3y"),
        ("$(KEY)$(KEY)", "k3yk3y"),
        ("--key=$(UNSET)", "--key=$(UNSET)"),
        ("--key=$$(KEY)", "--key=$(KEY)"),
        ("$$", "$"),
        ("cost $5", "cost $5"),
        ("$(KEY", "$(KEY"),
        ("trailing $", "trailing $"),
        ("$()", "$()"),
    ],
)
def test_expand_follows_the_kubelets_rules(text: str, expanded: str) -> None:
    assert expand(text, {"KEY": "k3y"}) == expanded


def test_the_operators_admin_key_reaches_the_restricted_api_flags() -> None:
    """The shape tenancy renders: the key in a Secret, a secretKeyRef, `$(...)` in the args."""
    args = ["--http-restricted-api=model-repository:admin-key=$(TRITONOP_ADMIN_KEY)"]
    container: dict[str, Any] = {
        "name": "triton",
        "args": args,
        "env": [
            {
                "name": "TRITONOP_ADMIN_KEY",
                "valueFrom": {"secretKeyRef": {"name": "admin", "key": "admin-key"}},
            }
        ],
    }
    variables = environment(env_sources(container), "team", read_secret)
    assert expand_all(args, variables) == ("--http-restricted-api=model-repository:admin-key=k3y",)


def test_env_from_comes_first_env_wins_and_values_refer_to_earlier_variables() -> None:
    container = {
        "envFrom": [
            {"secretRef": {"name": "creds"}},
            {"secretRef": {"name": "admin"}, "prefix": "X_"},
        ],
        "env": [
            {"name": "AWS_ACCESS_KEY_ID", "value": "override"},
            {"name": "BOTH", "value": "$(AWS_ACCESS_KEY_ID)/$(LATER)"},
            {"name": "LATER", "value": "late"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
    }
    assert environment(env_sources(container), "team", read_secret) == {
        "AWS_ACCESS_KEY_ID": "override",
        "AWS_SECRET_ACCESS_KEY": "shh",
        "X_admin-key": "k3y",
        "BOTH": "override/$(LATER)",
        "LATER": "late",
    }


def test_a_missing_secret_keeps_the_container_from_starting_unless_optional() -> None:
    missing = {"envFrom": [{"secretRef": {"name": "gone"}}]}
    with pytest.raises(ContainerConfigError, match='secret "gone" not found'):
        environment(env_sources(missing), "team", read_secret)
    no_key = {"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "admin", "key": "x"}}}]}
    with pytest.raises(ContainerConfigError, match="couldn't find key x in Secret team/admin"):
        environment(env_sources(no_key), "team", read_secret)
    optional = {
        "envFrom": [{"secretRef": {"name": "gone", "optional": True}}],
        "env": [
            {
                "name": "K",
                "valueFrom": {"secretKeyRef": {"name": "admin", "key": "x", "optional": True}},
            }
        ],
    }
    assert environment(env_sources(optional), "team", read_secret) == {}


def test_sources_round_trip_through_their_manifests() -> None:
    """The pod runner rebuilds a container from its sources when it retries a start."""
    container = {
        "envFrom": [{"secretRef": {"name": "creds", "optional": False}, "prefix": "P_"}],
        "env": [
            {"name": "A", "value": "1"},
            {
                "name": "K",
                "valueFrom": {"secretKeyRef": {"name": "admin", "key": "k", "optional": True}},
            },
        ],
    }
    sources = env_sources(container)
    rebuilt: dict[str, list[dict[str, object]]] = {}
    for field, entry in (source.manifest() for source in sources):
        rebuilt.setdefault(field, []).append(entry)
    assert rebuilt == container
    assert env_sources(rebuilt) == sources
    assert EnvSource(name="POD_IP").manifest() == ("env", {"name": "POD_IP", "valueFrom": {}})
