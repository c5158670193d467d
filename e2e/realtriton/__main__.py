"""Run one real tritonserver by hand, with the emulator's flags for the model's behaviour.

    python -m e2e.realtriton --host 127.0.0.1 --service-time-ms 50 --instances 2 \
        [--max-batch-size 4 --max-queue-delay-ms 5 --max-queue-size 16 --load-model resnet] \
        [-- --log-verbose=1 ...]          # after --: passed to tritonserver as they are

Writes a repository into a temporary directory (one `simple`-semantics model per
`--load-model`, default `simple`), starts tritonserver on the address with ports 8000, 8001 and
8002 (or the ones given), prints the endpoints and serves until Ctrl-C or SIGTERM, then stops
it within its exit timeout.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from e2e.tritonsim.emulator import EmulatorConfig
from e2e.tritonsim.options import config_from_args

from .repository import ModelSpec, write_repository
from .server import TritonServer, TritonServerConfig


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    passed: list[str] = []
    if "--" in args:
        index = args.index("--")
        args, passed = args[:index], args[index + 1 :]
    config, ignored = config_from_args(args, base=EmulatorConfig(models=("simple",)))
    if ignored:
        print(f"ignored: {' '.join(ignored)}", file=sys.stderr)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="realtriton-") as work:
        models = [
            ModelSpec(name, config.service, load_delay_s=config.load_delay_s)
            for name in config.models or ("simple",)
        ]
        repository = write_repository(Path(work) / "models", models)
        server_config = TritonServerConfig(
            host=config.host,
            repository=repository,
            http_port=config.http_port,
            metrics_port=config.metrics_port,
            extra_args=tuple(passed),
        )
        server = TritonServer(server_config, log_path=Path(work) / "tritonserver.log")
        server.start()
        try:
            seconds = server.wait_ready(120)
            print(
                f"tritonserver ready after {seconds:.1f}s: http {server.url}, grpc "
                f"{server.grpc_url}, metrics {server.metrics_url}; log {server.log_path}",
                flush=True,
            )
            while not stop.wait(1.0) and server.running:
                pass
        finally:
            print(f"stopped in {server.stop():.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
