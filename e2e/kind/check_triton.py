#!/usr/bin/env python3
"""Data-plane check against a real Triton reached through `kubectl port-forward`.

    python e2e/kind/check_triton.py --http 127.0.0.1:18000 --metrics 127.0.0.1:18002 \
        [--model simple] [--requests 50]

It asks Triton (with tritonclient, the client the operator's users run) whether the server
and the model are ready, sends a bounded number of add/sub inferences and checks every answer
(OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1), then reads Triton's metrics endpoint
with the operator's own parser and checks that the success counter moved by at least as many
requests: the signal the autoscaler reads is there and counts this traffic.

Used by e2e/kind/run.sh; needs the package installed (`pip install -e .`) and the repository
root on the path (for `e2e.polling`; run.sh sets PYTHONPATH, the tests run from the root).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request

import numpy as np
import tritonclient.http as triton_http
from e2e.polling import WaitTimeout, wait_until

from tritonop.autoscale.observe import parse_triton_metrics

ELEMENTS = 16


def wait_ready(client: triton_http.InferenceServerClient, model: str, timeout: float) -> None:
    """Until Triton and the model are ready (connections are refused while the port-forward
    settles: wait_until retries them)."""
    try:
        wait_until(
            lambda: client.is_server_ready() and client.is_model_ready(model),
            timeout,
            f"Triton and model {model} to be ready",
            interval=1.0,
        )
    except WaitTimeout as error:
        raise SystemExit(str(error)) from None


def success_count(metrics_address: str, model: str) -> float:
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10) as response:
        sample = parse_triton_metrics(response.read().decode())
    return sum(
        stats.request_success or 0.0 for (name, _), stats in sample.models.items() if name == model
    )


def infer_and_check(
    client: triton_http.InferenceServerClient, model: str, rng: np.random.Generator
) -> None:
    first = rng.integers(-1000, 1000, size=(1, ELEMENTS), dtype=np.int32)
    second = rng.integers(-1000, 1000, size=(1, ELEMENTS), dtype=np.int32)
    inputs = [
        triton_http.InferInput("INPUT0", list(first.shape), "INT32"),
        triton_http.InferInput("INPUT1", list(second.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(first, binary_data=True)
    inputs[1].set_data_from_numpy(second, binary_data=True)
    outputs = [
        triton_http.InferRequestedOutput(name, binary_data=True) for name in ("OUTPUT0", "OUTPUT1")
    ]
    result = client.infer(model, inputs, outputs=outputs)
    if not np.array_equal(result.as_numpy("OUTPUT0"), first + second):
        raise SystemExit("OUTPUT0 is not INPUT0 + INPUT1")
    if not np.array_equal(result.as_numpy("OUTPUT1"), first - second):
        raise SystemExit("OUTPUT1 is not INPUT0 - INPUT1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--http", required=True, help="host:port of Triton's HTTP port (8000)")
    parser.add_argument(
        "--metrics", required=True, help="host:port of Triton's metrics port (8002)"
    )
    parser.add_argument("--model", default="simple")
    parser.add_argument("--requests", type=int, default=50, help="inferences to send (bounded)")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    client = triton_http.InferenceServerClient(
        url=args.http, connection_timeout=10, network_timeout=30
    )
    wait_ready(client, args.model, args.ready_timeout)
    before = success_count(args.metrics, args.model)
    rng = np.random.default_rng(7)
    started = time.monotonic()
    for _ in range(args.requests):
        infer_and_check(client, args.model, rng)
    elapsed = time.monotonic() - started
    # Triton updates its metrics every --metrics-interval-ms (2 s by default).
    seen: list[float] = []

    def counted() -> float | None:
        seen.append(success_count(args.metrics, args.model))
        return seen[-1] if seen[-1] - before >= args.requests else None

    try:
        after = wait_until(counted, 15, "the success counter to count them", interval=1.0)
    except WaitTimeout:
        moved = f"{seen[-1] - before:.0f}" if seen else "nothing (metrics unreadable)"
        raise SystemExit(
            f"nv_inference_request_success moved by {moved}, expected >= {args.requests}"
        ) from None
    print(
        f"{args.requests} inferences correct in {elapsed:.2f}s "
        f"({args.requests / elapsed:.1f}/s); nv_inference_request_success +{after - before:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
