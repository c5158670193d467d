"""`python -m e2e.tritonsim`: run one Triton emulator until SIGINT/SIGTERM.

Accepts the emulator's own flags and a Triton container's tritonserver flags, e.g.

    python -m e2e.tritonsim --host 127.0.0.1 --http-port 8000 --metrics-port 8002 \\
        --load-model simple --load-delay 2 --service-time-ms 50 --instances 1
    python -m e2e.tritonsim --model-repository=s3://bucket/models --load-model=resnet50 \\
        --strict-readiness=true --host 127.0.0.2
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from .emulator import TritonEmulator
from .options import build_parser, config_from_args


async def _serve(emulator: TritonEmulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await emulator.start()
    print(
        f"Triton emulator ready to accept requests: http://{emulator.url} "
        f"metrics {emulator.metrics_url}",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the emulator, return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    log_level = build_parser().parse_known_args(arguments)[0].log_level
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        config, ignored = config_from_args(arguments)
        emulator = TritonEmulator(config)
    except ValueError as error:
        print(f"tritonsim: {error}", file=sys.stderr)
        return 2
    if ignored:
        logging.info("ignoring arguments the emulator does not model: %s", " ".join(ignored))
    asyncio.run(_serve(emulator))
    return 0


if __name__ == "__main__":
    sys.exit(main())
