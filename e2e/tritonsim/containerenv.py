"""What the kubelet does with a container's environment before it starts the container.

KWOK runs no containers, so the pod runner plays the kubelet: the `triton` container's
arguments may refer to its environment as `$(NAME)`, and the operator relies on that to keep
secrets out of the pod spec (the admin key of Triton's restricted APIs reaches
`--http-restricted-api=...:admin-key=$(TRITONOP_ADMIN_KEY)` from a `secretKeyRef`; repository
credentials arrive by `envFrom`). Without the expansion a real tritonserver would take the
literal text `$(TRITONOP_ADMIN_KEY)` as the key and a test of the lock would pass for the
wrong reason.

The rules are Kubernetes' (the expansion of `command`, `args` and `env[].value`):

* `$(NAME)` becomes the variable's value when NAME is defined, and stays as written when not;
* `$$` is an escaped `$` (so `$$(NAME)` is the literal text `$(NAME)`);
* a `$` before anything else, or an unclosed `$(`, stays as written;
* `envFrom` sources come first, then `env` in order (a later definition wins), and an
  `env[].value` may refer to variables defined before it;
* a Secret or key that is missing and not `optional` keeps the container from starting
  (the kubelet's CreateContainerConfigError): `ContainerConfigError` here.

Only Secret sources are resolved (`secretKeyRef`, `envFrom[].secretRef`), because those are
what the operator renders; ConfigMap, field and resource references leave their variable
undefined, so a reference to one stays as written.

Pure functions on plain data; reading a Secret is the caller's `SecretReader`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SecretReader = Callable[[str, str], Mapping[str, str] | None]
"""(namespace, Secret name) -> its decoded data, or None when there is no such Secret."""


class ContainerConfigError(Exception):
    """The container cannot start: a Secret it names is missing (not optional)."""


@dataclass(frozen=True)
class EnvSource:
    """One `env` entry or `envFrom` source of a container, in the order the kubelet reads them.

    Exactly one of: `value` (a literal, possibly with `$(...)` references), `secret` with a
    `key` (`env[].valueFrom.secretKeyRef`), `secret` without one (`envFrom[].secretRef`,
    every key becomes a variable, `prefix` prepended); `name` is empty for `envFrom`.
    Entries of a kind not resolved here have neither value nor secret.
    """

    name: str = ""
    value: str | None = None
    secret: str | None = None
    key: str | None = None
    prefix: str = ""
    optional: bool = False

    def manifest(self) -> tuple[str, dict[str, Any]]:
        """("env" or "envFrom", the entry as it appears in a pod spec)."""
        if not self.name:
            source = {"secretRef": {"name": self.secret, "optional": self.optional}}
            return "envFrom", {**source, **({"prefix": self.prefix} if self.prefix else {})}
        if self.secret is not None:
            reference = {"name": self.secret, "key": self.key, "optional": self.optional}
            return "env", {"name": self.name, "valueFrom": {"secretKeyRef": reference}}
        if self.value is not None:
            return "env", {"name": self.name, "value": self.value}
        return "env", {"name": self.name, "valueFrom": {}}


def env_sources(container: Mapping[str, Any]) -> tuple[EnvSource, ...]:
    """A container's `envFrom` then `env`, as the kubelet applies them."""
    sources: list[EnvSource] = []
    for entry in container.get("envFrom") or []:
        reference = entry.get("secretRef")
        if reference is not None:
            sources.append(
                EnvSource(
                    secret=str(reference.get("name", "")),
                    prefix=str(entry.get("prefix") or ""),
                    optional=bool(reference.get("optional")),
                )
            )
    for entry in container.get("env") or []:
        name = str(entry.get("name", ""))
        reference = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if reference is not None:
            sources.append(
                EnvSource(
                    name=name,
                    secret=str(reference.get("name", "")),
                    key=str(reference.get("key", "")),
                    optional=bool(reference.get("optional")),
                )
            )
        elif "valueFrom" in entry:
            sources.append(EnvSource(name=name))  # a kind this runner does not resolve
        else:
            sources.append(EnvSource(name=name, value=str(entry.get("value") or "")))
    return tuple(sources)


def environment(
    sources: Sequence[EnvSource], namespace: str, read_secret: SecretReader
) -> dict[str, str]:
    """The variables a container with these sources starts with (see the module's rules)."""
    variables: dict[str, str] = {}
    secrets: dict[str, Mapping[str, str] | None] = {}

    def secret(name: str) -> Mapping[str, str] | None:
        if name not in secrets:
            secrets[name] = read_secret(namespace, name)
        return secrets[name]

    for source in sources:
        if source.value is not None:
            variables[source.name] = expand(source.value, variables)
        elif source.secret is None:
            variables.pop(source.name, None)  # unresolved kind: undefined
        else:
            data = secret(source.secret)
            if data is None:
                if source.optional:
                    continue
                raise ContainerConfigError(f'secret "{source.secret}" not found')
            if source.key is None:
                variables.update({source.prefix + k: v for k, v in data.items()})
            elif source.key in data:
                variables[source.name] = data[source.key]
            elif not source.optional:
                raise ContainerConfigError(
                    f"couldn't find key {source.key} in Secret {namespace}/{source.secret}"
                )
    return variables


def expand(text: str, variables: Mapping[str, str]) -> str:
    """`text` with its `$(NAME)` references replaced (see the module's rules)."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        following = text[index + 1] if index + 1 < len(text) else ""
        if char != "$" or not following:
            out.append(char)
            index += 1
        elif following == "$":
            out.append("$")
            index += 2
        elif following == "(" and (close := text.find(")", index + 2)) != -1:
            name = text[index + 2 : close]
            out.append(variables.get(name, f"$({name})"))
            index = close + 1
        else:
            out.append(char + following)
            index += 2
    return "".join(out)


def expand_all(texts: Sequence[str], variables: Mapping[str, str]) -> tuple[str, ...]:
    """`command` or `args` expanded, each element on its own."""
    return tuple(expand(text, variables) for text in texts)
