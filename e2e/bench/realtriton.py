"""What one real tritonserver costs on this machine: start-up, memory, stop.

    python e2e/bench/realtriton.py                    # 4 servers, 1 and 2 instances
    python e2e/bench/realtriton.py --servers 8 --instances 1

Starts `--servers` tritonservers (the `nvidia-pytriton` wheel, see e2e/realtriton) side by
side on 127.66.0.1, 127.66.0.2, ... with the same ports 8000/8001/8002, as the pods of one
service would be, each serving the `simple` python-backend model, all at once; then prints per
server the seconds from start to `/v2/health/ready`, the resident memory of the server process
and of each model instance's stub process, the CPU time used while idle for a few seconds,
and the seconds `stop()` takes, with no client and with a client holding a keep-alive
connection open (tritonserver then waits its whole `--exit-timeout-secs`). Figures only, no
thresholds. The addresses are not pod IPs (127.64/127.65), so no data-plane lock is taken.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.realtriton import ModelSpec, TritonServer, TritonServerConfig, write_repository
from e2e.tritonsim.emulator import ServiceSettings

MIB = 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--instances", default="1,2", help="instance counts to cycle through")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    counts = [int(count) for count in args.instances.split(",")]

    with tempfile.TemporaryDirectory(prefix="realtriton-bench-") as work:
        servers: list[TritonServer] = []
        for index in range(args.servers):
            instances = counts[index % len(counts)]
            repository = write_repository(
                Path(work) / f"server-{index}",
                [ModelSpec("simple", ServiceSettings(service_time_ms=20, instances=instances))],
            )
            config = TritonServerConfig(host=f"127.66.0.{index + 1}", repository=repository)
            servers.append(TritonServer(config, die_with_parent=True))
        try:
            began = time.monotonic()
            for server in servers:
                server.start()
            ready = [server.wait_ready(120) for server in servers]
            all_ready = time.monotonic() - began
            cpu_before = [cpu_seconds(server.process.pid) for server in servers if server.process]
            time.sleep(args.idle_seconds)
            cpu_idle = [
                cpu_seconds(server.process.pid) - before
                for server, before in zip(servers, cpu_before, strict=True)
                if server.process
            ]
            print(
                f"{args.servers} tritonservers started together: all ready after {all_ready:.2f}s"
            )
            print("server        instances  ready   RSS server  RSS per instance  idle CPU")
            per_instance: list[float] = []
            for server, seconds, idle in zip(servers, ready, cpu_idle, strict=True):
                resident, stubs = server.rss()
                per_instance += [stub / MIB for stub in stubs]
                print(
                    f"{server.config.host:<13} {len(stubs):>9}  {seconds:5.2f}s "
                    f"{resident / MIB:8.0f} MiB  "
                    f"{', '.join(f'{stub / MIB:.0f}' for stub in stubs):>12} MiB"
                    f"  {100 * idle / args.idle_seconds:5.1f}%"
                )
            residents = [server.rss()[0] / MIB for server in servers]
            print(
                f"median: server {statistics.median(residents):.0f} MiB, per instance "
                f"{statistics.median(per_instance):.0f} MiB, ready {statistics.median(ready):.2f}s"
            )
            held = http.client.HTTPConnection(servers[0].config.host, 8000, timeout=30)
            held.request("GET", "/v2/health/live")
            held.getresponse().read()  # keep-alive: the connection stays open
            stop_held = servers[0].stop()
            stops = [server.stop() for server in servers[1:]]
            held.close()
            exit_timeout = servers[0].config.exit_timeout_s
            print(
                f"stop (--exit-timeout-secs={exit_timeout}): "
                f"{statistics.median(stops) if stops else float('nan'):.2f}s without clients, "
                f"{stop_held:.2f}s with a keep-alive connection held open"
            )
        finally:
            for server in servers:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
