"""What `make demo` costs: wall time and the peak memory of everything it runs.

    python -m e2e.bench.demo                                 # `make demo` in this checkout
    python -m e2e.bench.demo --cwd /tmp/clone                # in a fresh clone
    python -m e2e.bench.demo -- .venv/bin/python -m e2e.demo --duration 60 --emulator

Runs the command (its output goes to stdout and `--log`) in its own process group, and every
`--interval` seconds walks its process tree (the demo, its control plane, operator, pod
runner, load generator and tritonservers are all descendants) and sums resident memory: RSS
as `ps` shows it, and PSS (`/proc/PID/smaps_rollup`), which shares each shared page among
the processes mapping it and so does not count the tritonservers' common libraries once per
server. It also records every tritonserver it sees with the address in its own command line
(`--http-address`), the evidence that real servers bind the pods' IPs, as `ps -o pid,args -C
tritonserver` shows them.

Prints wall time, exit code, peak RSS and PSS of the tree (and the largest processes at the
PSS peak), peak concurrent tritonservers and their PSS, and the tritonservers seen. Figures
only; the run is bounded by `--timeout` (then its process group is killed).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIB = 2**20


@dataclass
class Sample:
    """One walk of the process tree."""

    t: float
    rss: int
    pss: int
    servers: int
    server_pss: int
    top: list[tuple[int, str]]
    """(PSS bytes, command) of the largest processes, by command name."""


@dataclass
class Watch:
    samples: list[Sample] = field(default_factory=list)
    servers: dict[int, str] = field(default_factory=dict)
    """tritonserver pid -> its --http-address."""


def children_of() -> dict[int, list[int]]:
    """ppid -> pids, for every process."""
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree[ppid].append(int(entry.name))
    return tree


def descendants(root: int) -> list[int]:
    tree, found, todo = children_of(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of one process; (0, 0) when it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    values = dict(re.findall(r"^(Rss|Pss):\s+(\d+) kB", text, re.M))
    return int(values.get("Rss", 0)) * 1024, int(values.get("Pss", 0)) * 1024


def command(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def short_name(argv: Sequence[str]) -> str:
    """A readable name: the binary, or `python -m module` / the script."""
    if not argv or not argv[0]:
        return "?"
    name = Path(argv[0]).name
    if name.startswith("python") and len(argv) > 1:
        rest = argv[2] if argv[1] == "-m" and len(argv) > 2 else Path(argv[1]).name
        return f"python {rest}"
    return name


def sample(root: int, watch: Watch, origin: float) -> None:
    rss = pss = servers = server_pss = 0
    by_name: dict[str, int] = defaultdict(int)
    for pid in descendants(root):
        resident, proportional = memory(pid)
        argv = command(pid)
        rss += resident
        pss += proportional
        name = short_name(argv)
        by_name[name] += proportional
        if name == "tritonserver":
            servers += 1
            server_pss += proportional + sum(memory(child)[1] for child in descendants(pid)[1:])
            address = next(
                (a.split("=", 1)[1] for a in argv if a.startswith("--http-address=")), ""
            )
            watch.servers.setdefault(pid, address)
    top = sorted(((v, k) for k, v in by_name.items()), reverse=True)[:6]
    watch.samples.append(Sample(time.monotonic() - origin, rss, pss, servers, server_pss, top))


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    split = arguments.index("--") if "--" in arguments else len(arguments)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cwd", type=Path, default=Path.cwd())
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--log", type=Path, help="also write the command's output here")
    args = parser.parse_args(arguments[:split])
    cmd = arguments[split + 1 :] or ["make", "demo"]

    env = {**os.environ, "CI": "true"}  # plain lines, no terminal codes
    origin = time.monotonic()
    process = subprocess.Popen(
        cmd,
        cwd=args.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log = args.log.open("w") if args.log else None

    def relay() -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            text = line.decode(errors="replace")
            sys.stdout.write(text)
            if log is not None:
                log.write(text)

    relayer = threading.Thread(target=relay, daemon=True)
    relayer.start()
    watch = Watch()
    timed_out = False
    while process.poll() is None:
        if time.monotonic() - origin > args.timeout:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            break
        sample(process.pid, watch, origin)
        time.sleep(args.interval)
    code = process.wait()
    took = time.monotonic() - origin
    relayer.join(timeout=5)
    if log is not None:
        log.close()
    report(cmd, code, took, timed_out, watch)
    return code


def report(cmd: Sequence[str], code: int, took: float, timed_out: bool, watch: Watch) -> None:
    print("\n=== demo benchmark ===")
    print(f"command: {' '.join(cmd)}")
    print(
        f"wall time: {took:.0f} s; exit code {code}" + (" (TIMED OUT, killed)" if timed_out else "")
    )
    if not watch.samples:
        return
    peak_rss = max(watch.samples, key=lambda s: s.rss)
    peak_pss = max(watch.samples, key=lambda s: s.pss)
    peak_servers = max(watch.samples, key=lambda s: (s.servers, s.server_pss))
    print(
        f"peak memory of the process tree: RSS {peak_rss.rss / MIB:.0f} MiB at {peak_rss.t:.0f} s, "
        f"PSS {peak_pss.pss / MIB:.0f} MiB at {peak_pss.t:.0f} s"
    )
    print(
        "  largest at the PSS peak: "
        + ", ".join(f"{name} {value / MIB:.0f} MiB" for value, name in peak_pss.top)
    )
    print(
        f"tritonservers: at most {peak_servers.servers} at once (PSS with their stubs "
        f"{peak_servers.server_pss / MIB:.0f} MiB at {peak_servers.t:.0f} s), "
        f"{len(watch.servers)} over the run"
    )
    for pid, address in sorted(watch.servers.items()):
        print(f"  tritonserver pid {pid} --http-address={address}")


if __name__ == "__main__":
    sys.exit(main())
