"""What the scale benchmark measures with, each instrument independent of the operator's code.

* `AuditTail` reads the API server's audit log incrementally and counts one user's writes, by
  kind (`patch inferenceservices/status`, `create events`, ...): the same trail the e2e tests
  assert on, so a write the operator makes is never missed or double-counted.
* `ProcessMeter` reads a process's CPU seconds from /proc and samples its resident set every
  half second in a thread (the kernel's VmHWM gives the true peak in between), and beside it
  the proportional set of the process with its descendants (the metrics parser's forkserver
  and worker): what the operator's container holds against its memory limit.
* `Watch` follows one resource of the API server with a plain watch stream (stdlib HTTP, the
  cluster's admin certificate) and hands each event to a callback; `Progress` turns the events
  into "first time every Deployment existed / was ready" and "first time every InferenceService
  was observed and Ready".

They cost the benchmark process a little CPU, the same in the floor run and the operator's run.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.polling import wait_until

Key = tuple[str, str]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------ audit log


def write_kind(event: Mapping[str, Any]) -> str:
    """`verb resource[/subresource]` of one audit event, e.g. `patch inferenceservices/status`."""
    ref = event.get("objectRef") or {}
    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
    return f"{event.get('verb')} {ref.get('resource')}{sub}"


@dataclass
class AuditTail:
    """One user's writes in the audit log, read from where the last read stopped."""

    path: Path
    user: str
    verbs: frozenset[str]
    offset: int = 0
    writes: list[tuple[float, str, str]] = field(default_factory=list)
    """(monotonic time of the read that found it, kind, namespace/name) of every write seen."""

    def poll(self) -> int:
        """Read what was appended since the last call; returns the number of writes so far.

        The log is written in blocking mode (an event is on disk before the API server
        answers), so a write the user saw answered is counted by the next poll.
        """
        needle = f'"username":"{self.user}"'
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
            end = data.rfind(b"\n") + 1  # a half-written last line waits for the next poll
            self.offset += end
            now = time.monotonic()
            for line in data[:end].decode().splitlines():
                if needle not in line:
                    continue
                event = json.loads(line)
                if event.get("verb") in self.verbs:
                    ref = event.get("objectRef") or {}
                    target = f"{ref.get('namespace')}/{ref.get('name')}"
                    self.writes.append((now, write_kind(event), target))
        return len(self.writes)

    def since(self, mark: int) -> Counter[str]:
        """Writes by kind after the first `mark` (a value `poll` returned)."""
        return Counter(kind for _, kind, _ in self.writes[mark:])

    def targets(self, mark: int, kind: str) -> Counter[str]:
        """Writes of one kind after the first `mark`, by namespace/name of the object."""
        return Counter(target for _, found, target in self.writes[mark:] if found == kind)


# ------------------------------------------------------------------------------ a process


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, name: str) -> int:
    """One `kB` figure of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """Every live descendant of a process: the children of each of its threads, recursively."""
    found: list[int] = []
    parents = [pid]
    while parents:
        parent = parents.pop()
        with contextlib.suppress(OSError):  # a child that exited meanwhile
            for task in Path(f"/proc/{parent}/task").iterdir():
                with contextlib.suppress(OSError):
                    children = [int(c) for c in (task / "children").read_text().split()]
                    found += children
                    parents += children
    return found


def pss_kib(pid: int) -> int:
    """The process's proportional set (shared pages divided among their sharers), in KiB: summed
    over a process tree it counts each page once, where summed resident sets would count the
    pages a forked child shares with its parent twice."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def tree_pss_kib(pid: int) -> int:
    """Proportional set of a process and its live descendants (raises if `pid` is gone)."""
    total = pss_kib(pid)
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            total += pss_kib(child)
    return total


class ProcessMeter:
    """CPU seconds on demand and the peak resident set of one process, sampled at 2 Hz.

    The peak is the larger of the samples and the kernel's high-water mark (VmHWM), so a spike
    between two samples still counts. `tree_peak_kib` is the sampled peak of the proportional
    set of the process with its descendants (no kernel high-water mark exists for it). Stops
    sampling when the process exits or `stop()`.
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.tree_peak_kib = 0
        self.samples: list[tuple[float, int]] = []
        """(monotonic time, RSS KiB)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"meter-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except OSError:
                return  # the process is gone
            self._stop.wait(self.interval)

    def sample(self) -> int:
        rss = status_kib(self.pid, "VmRSS")
        self.peak_kib = max(self.peak_kib, rss, status_kib(self.pid, "VmHWM"))
        self.tree_peak_kib = max(self.tree_peak_kib, tree_pss_kib(self.pid))
        self.samples.append((time.monotonic(), rss))
        return rss

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    @property
    def tree_peak_mib(self) -> float:
        return self.tree_peak_kib / 1024

    def rss_mib(self) -> float:
        return status_kib(self.pid, "VmRSS") / 1024

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sample()
        self._stop.set()
        self._thread.join(5)


def group_cpu(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds of each named process that is still running."""
    found = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError, ValueError):
            found[name] = cpu_seconds(pid)
    return found


def cpu_delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


# ------------------------------------------------------------------------------ watches


def admin_ssl_context(pki_dir: Path) -> ssl.SSLContext:
    """TLS as the cluster's admin (the certificates `LocalCluster` made)."""
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    return context


EventHandler = Callable[[str, Mapping[str, Any], float], None]


class Watch:
    """A watch on one collection (e.g. `/apis/apps/v1/deployments`), events to a callback.

    Starts from an empty resourceVersion-pinned list taken at creation, so every object that
    appears later arrives as an event; reconnects where it stopped when the server closes the
    stream (its `timeoutSeconds`). Runs in a daemon thread until `stop()`.
    """

    def __init__(
        self,
        server: str,
        context: ssl.SSLContext,
        path: str,
        handler: EventHandler,
        selector: str = "",
    ) -> None:
        self.server = server
        self.context = context
        self.path = path
        self.selector = selector
        self.handler = handler
        self.errors: list[str] = []
        self._stop = threading.Event()
        listed = self._get(f"{path}?limit=1{self._labels()}")
        self.version = str(listed["metadata"]["resourceVersion"])
        self._thread = threading.Thread(target=self._run, name=f"watch{path}", daemon=True)
        self._thread.start()

    def _labels(self) -> str:
        return f"&labelSelector={urllib.parse.quote(self.selector)}" if self.selector else ""

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(
            self.server + path, context=self.context, timeout=30
        ) as response:
            return json.loads(response.read())

    def _run(self) -> None:
        while not self._stop.is_set():
            url = (
                f"{self.server}{self.path}?watch=true&allowWatchBookmarks=true"
                f"&timeoutSeconds=60&resourceVersion={self.version}{self._labels()}"
            )
            try:
                with urllib.request.urlopen(url, context=self.context, timeout=90) as stream:
                    for line in stream:
                        if self._stop.is_set():
                            return
                        self._event(json.loads(line))
            except (OSError, ValueError, urllib.error.URLError) as error:
                self.errors.append(f"{type(error).__name__}: {error}")
                self._stop.wait(0.5)

    def _event(self, event: Mapping[str, Any]) -> None:
        obj = event.get("object") or {}
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if event.get("type") == "ERROR":
            raise ValueError(f"watch error: {obj.get('message')}")  # e.g. 410 Gone: relist
        if version:
            self.version = str(version)
        if event.get("type") != "BOOKMARK":
            self.handler(str(event["type"]), obj, time.monotonic())

    def stop(self) -> None:
        self._stop.set()


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))


def condition_true(obj: Mapping[str, Any], kind: str) -> bool:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return bool(item.get("status") == "True")
    return False


@dataclass
class Progress:
    """When each Deployment first existed and first had a ready replica, and when each
    InferenceService was first observed (observedGeneration = generation) and Ready."""

    deployments: dict[Key, float] = field(default_factory=dict)
    deployments_ready: dict[Key, float] = field(default_factory=dict)
    services_ready: dict[Key, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_deployment(self, kind: str, obj: Mapping[str, Any], now: float) -> None:
        if kind == "DELETED":
            return
        key = key_of(obj)
        with self.lock:
            self.deployments.setdefault(key, now)
            if int((obj.get("status") or {}).get("readyReplicas") or 0) >= 1:
                self.deployments_ready.setdefault(key, now)

    def on_service(self, kind: str, obj: Mapping[str, Any], now: float) -> None:
        if kind == "DELETED":
            return
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        observed = status.get("observedGeneration") == meta.get("generation")
        if observed and condition_true(obj, "Ready"):
            with self.lock:
                self.services_ready.setdefault(key_of(obj), now)

    def wait_all(
        self,
        which: str,
        expected: int,
        timeout: float,
        check: Callable[[], None] | None = None,
    ) -> float:
        """Wait until `expected` keys are in `which` (an attribute name); returns the monotonic
        time the last of them arrived."""
        found: dict[Key, float] = getattr(self, which)

        def done() -> float | None:
            with self.lock:
                return max(found.values()) if len(found) >= expected else None

        return wait_until(
            done,
            timeout,
            f"{expected} {which.replace('_', ' ')} (have {len(found)})",
            interval=0.5,
            check=check,
        )

    def count(self, which: str) -> int:
        with self.lock:
            return len(getattr(self, which))
