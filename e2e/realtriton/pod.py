"""Real tritonserver for one simulated pod, started from the pod's own container arguments.

The pod runner derives what a pod serves the same way for both data planes: the `triton`
container's command and args through `e2e.tritonsim.options.config_from_args` (models, strict
readiness, ports), with the runner's per-pod settings (service time, instances, batching,
load delay) as the base. For the real server that configuration becomes a model repository
(`repository.write_repository`, one `simple`-semantics model per served name), and the pod's
arguments become tritonserver's, rewritten only where this machine differs from the pod:

* `--model-repository`/`--model-store` point at the written repository (the pod's `s3://` or
  `/models` is not here); `--backend-directory` at the wheel's python backend;
* `--http-address`, `--grpc-address`, `--metrics-address` are the pod's IP;
* `--allow-metrics` is true (the operator reads them), `--allow-gpu-metrics` false (no GPU),
  `--exit-timeout-secs` the runner's bound;
* the emulator's own flags (`--service-time-ms`, ...), if a test put any there, are dropped.

Everything else is passed through as the operator rendered it: ports, `--model-control-mode`,
`--load-model`, `--strict-readiness`, `--http-restricted-api`, `--grpc-restricted-protocol`,
logging flags, the user's `spec.triton.args`.

`RealTritonPod` is the asyncio face the pod runner uses: start, stop (bounded), readiness from
the server's own `/v2/health/ready` and the queue length from its `/metrics`, both polled in
the background so the runner's event loop never blocks on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from e2e.tritonsim.emulator import EmulatorConfig
from e2e.tritonsim.options import build_parser, parse_bool

from .repository import ModelSpec, write_repository
from .server import DEFAULT_EXIT_TIMEOUT_S, TritonServer, TritonServerConfig

log = logging.getLogger(__name__)

#: tritonserver flags whose value this machine decides (the pod's would not work here).
REWRITTEN_FLAGS = frozenset(
    {
        "--model-repository",
        "--model-store",
        "--backend-directory",
        "--http-address",
        "--grpc-address",
        "--metrics-address",
        "--allow-metrics",
        "--allow-gpu-metrics",
        "--exit-timeout-secs",
    }
)
#: Flags that become fields of `TritonServerConfig` (their values are kept).
FIELD_FLAGS = frozenset(
    {
        "--http-port",
        "--grpc-port",
        "--metrics-port",
        "--model-control-mode",
        "--load-model",
        "--strict-readiness",
    }
)
#: Flags only the emulator knows; tritonserver would refuse them.
_TRITONSERVER_FLAGS_IN_EMULATOR_PARSER = REWRITTEN_FLAGS | FIELD_FLAGS
EMULATOR_ONLY_FLAGS = frozenset(
    option
    for action in build_parser()._actions
    for option in action.option_strings
    if option.startswith("--") and option not in _TRITONSERVER_FLAGS_IN_EMULATOR_PARSER
) - {"--help"}

#: Seconds between readiness probes of a pod's server.
READINESS_INTERVAL_S = 0.2


def flags(args: Sequence[str]) -> Iterator[tuple[str, str | None, list[str]]]:
    """(flag, value, the original tokens) for each flag of a tritonserver argument list.

    Accepts `--flag=value` and `--flag value`; a leading command (`tritonserver`) and any
    other bare word are yielded as (word, None, [word]).
    """
    tokens = list(args)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.startswith("--") and "=" in token:
            name, value = token.split("=", 1)
            yield name, value, [token]
            index += 1
        elif (
            token.startswith("--")
            and index + 1 < len(tokens)
            and not tokens[index + 1].startswith("--")
        ):
            yield token, tokens[index + 1], tokens[index : index + 2]
            index += 2
        else:
            yield token, None, [token]
            index += 1


def pod_server_config(
    args: Sequence[str],
    *,
    host: str,
    repository: Path,
    exit_timeout_s: int = DEFAULT_EXIT_TIMEOUT_S,
) -> tuple[TritonServerConfig, list[str]]:
    """tritonserver's configuration for a pod with these container arguments.

    Returns it and the tokens that were dropped (rewritten or emulator-only), for the log.
    """
    fields: dict[str, str] = {}
    load_models: list[str] = []
    passed: list[str] = []
    dropped: list[str] = []
    for name, value, tokens in flags(args):
        if value is None:
            if name == "tritonserver" or name.endswith("/tritonserver"):
                continue  # the container's command
            if name in EMULATOR_ONLY_FLAGS or name in REWRITTEN_FLAGS:
                dropped += tokens
            else:
                passed += tokens
        elif name in REWRITTEN_FLAGS or name in EMULATOR_ONLY_FLAGS:
            dropped += tokens
        elif name == "--load-model":
            load_models.append(value)
        elif name in FIELD_FLAGS:
            fields[name] = value
        else:
            passed += tokens
    config = TritonServerConfig(
        host=host,
        repository=repository,
        http_port=int(fields.get("--http-port", 8000)),
        grpc_port=int(fields.get("--grpc-port", 8001)),
        metrics_port=int(fields.get("--metrics-port", 8002)),
        model_control_mode=fields.get("--model-control-mode", "none"),
        load_models=tuple(load_models),
        strict_readiness=parse_bool(fields.get("--strict-readiness", "true")),
        exit_timeout_s=exit_timeout_s,
        extra_args=tuple(passed),
    )
    return config, dropped


def pending_requests(exposition: str) -> int:
    """Sum of `nv_inference_pending_request_count` over the models of a metrics page."""
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(exposition)
        if family.name == "nv_inference_pending_request_count"
        for sample in family.samples
    )


class RealTritonPod:
    """One pod's tritonserver, driven from the pod runner's event loop."""

    def __init__(
        self,
        config: EmulatorConfig,
        args: Sequence[str],
        work_dir: Path,
        *,
        exit_timeout_s: int = DEFAULT_EXIT_TIMEOUT_S,
    ) -> None:
        """`config` is what `config_from_args` made of the pod (models, service settings,
        load delay); `args` the pod's container command and args; `work_dir` holds the
        repository and the server's log."""
        self.config = config
        self.work_dir = work_dir
        models = config.models or ("simple",)
        self.models = [
            ModelSpec(name, config.service, load_delay_s=config.load_delay_s, seed=config.seed)
            for name in models
        ]
        server_config, self.dropped_args = pod_server_config(
            args, host=config.host, repository=work_dir / "models", exit_timeout_s=exit_timeout_s
        )
        # Killed with the thread that starts it (the pod runner's event loop, which stops every
        # server before it ends), so a test process that dies leaves no server on a pod IP.
        self.server = TritonServer(
            server_config, log_path=work_dir / "tritonserver.log", die_with_parent=True
        )
        self._ready = False
        self._pending = 0
        self._probe: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def metrics_url(self) -> str:
        return self.server.metrics_url

    async def start(self) -> None:
        """Write the repository and start the server (returns before its models load)."""
        write_repository(self.work_dir / "models", self.models)
        self.server.start()  # on the loop's thread (the parent-death signal is per thread)
        self._probe = asyncio.create_task(self._watch_readiness(), name=f"ready-{self.url}")
        log.info(
            "tritonserver pid %s on %s: models %s%s",
            self.server.process.pid if self.server.process else "-",
            self.config.host,
            ",".join(spec.name for spec in self.models),
            f", dropped args {' '.join(self.dropped_args)}" if self.dropped_args else "",
        )

    async def stop(self) -> float:
        """SIGTERM, bounded by the exit timeout (then SIGKILL); returns seconds taken."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        self._ready = False
        return await asyncio.to_thread(self.server.stop)

    def is_ready(self) -> bool:
        """The last answer of the server's `/v2/health/ready` (polled every 0.2 s)."""
        return self._ready and self.server.running

    def running(self) -> bool:
        return self.server.running

    @property
    def pending(self) -> int:
        """Requests waiting in the server's queues at the last probe
        (`nv_inference_pending_request_count`, summed over models)."""
        return self._pending

    async def _watch_readiness(self) -> None:
        """Every READINESS_INTERVAL_S: `/v2/health/ready`, and the queue from `/metrics`."""
        url = f"http://{self.url}/v2/health/ready"
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    async with session.get(url) as response:
                        self._ready = response.status == 200
                    async with session.get(self.metrics_url) as response:
                        self._pending = pending_requests(await response.text())
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    self._ready = False
                if not self.server.running:
                    self._ready = False
                    log.warning(
                        "tritonserver on %s exited with %s",
                        self.config.host,
                        self.server.process.returncode if self.server.process else None,
                    )
                    return
                await asyncio.sleep(READINESS_INTERVAL_S)
