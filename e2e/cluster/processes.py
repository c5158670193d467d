"""Process supervision for the local cluster: start a component in its own process group,
remember it by pid *and* kernel start time, and stop it again from any process, even after a
crash of the one that started it.

Why the start time: a state file outlives processes, and a pid in it may since have been
reused by an unrelated process. A recorded process is only ever signalled while
``/proc/<pid>/stat`` still reports the start time recorded with it.

Linux only (``/proc``, ``prctl``), like the rest of the e2e cluster.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..polling import WaitTimeout, wait_until

#: How a started process is remembered (a JSON object in the cluster's state.json).
ProcessRecord = Mapping[str, Any]
"""``{"pid": int, "start": str | None, "argv": [...]}``"""

_PR_SET_PDEATHSIG = 1


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (sockets held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_time(pid: int) -> str | None:
    """Kernel start time of ``pid`` (field 22 of /proc/pid/stat), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def is_zombie(pid: int) -> bool:
    """True if ``pid`` has exited but not been reaped (or is gone altogether)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def command_line(pid: int) -> str:
    """The command line of ``pid`` (first 200 characters), or "?" if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200].strip()
    except OSError:
        return "?"


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent (thread) exits.

    Called in a child between fork and exec (``preexec_fn``), or by a supervisor process for
    itself. The kernel ties it to the *thread* that forked, hence :func:`spawn` applies it only
    from the main thread.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum)


def _die_with_parent_kill() -> None:  # preexec_fn: no graceful shutdown to wait for
    die_with_parent(signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str],
    kill_with_parent: bool,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session (and process group) of its own, output appended to
    ``log_path``: killpg reaches all its children, and the terminal's Ctrl-C does not, so a
    component is never half-killed while it is being stopped in order.

    ``kill_with_parent``: the kernel SIGKILLs it when the calling process dies (only applied
    from the main thread, see :func:`die_with_parent`).
    """
    pdeathsig = kill_with_parent and threading.current_thread() is threading.main_thread()
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_die_with_parent_kill if pdeathsig else None,
        )


def record(process: subprocess.Popen[bytes], argv: Sequence[str]) -> dict[str, Any]:
    """What to keep of a started process so that another process can stop it later."""
    return {"pid": process.pid, "start": start_time(process.pid), "argv": list(argv)}


def is_running(recorded: ProcessRecord) -> bool:
    """The recorded process is alive (same pid, same start time: not a reused pid)."""
    return start_time(int(recorded["pid"])) == recorded.get("start")


def stop_group(
    recorded: ProcessRecord,
    timeout: float,
    *,
    process: subprocess.Popen[bytes] | None = None,
    kill_when: Callable[[], bool] | None = None,
) -> None:
    """SIGTERM the process group of a recorded process; SIGKILL the group after ``timeout``
    seconds, or as soon as ``kill_when()`` says the rest of the graceful shutdown is not
    needed, and in any case once the leader is gone (no child may survive it).

    ``process``: its Popen, if this process started it (to reap it). Does nothing if the
    recorded process is gone or its pid now belongs to another process.
    """
    pid = int(recorded["pid"])

    def gone() -> bool:
        if process is not None:
            return process.poll() is not None
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our child
        return not is_running(recorded) or is_zombie(pid)

    if not is_running(recorded):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    with contextlib.suppress(WaitTimeout):  # then it gets SIGKILL below
        wait_until(
            lambda: gone() or (kill_when is not None and kill_when()),
            timeout,
            f"pid {pid} to exit after SIGTERM",
            interval=0.05,
        )
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(
        WaitTimeout
    ):  # a process that outlives SIGKILL is not ours to wait for
        wait_until(gone, 5.0, f"pid {pid} to exit after SIGKILL", interval=0.05)


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a process's log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP) into ``KeyboardInterrupt`` while the block runs, so
    ``finally:``/fixture teardown (``down()``) runs when CI or a user terminates the test
    process. SIGINT already raises KeyboardInterrupt. Main thread only."""

    def raise_(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, raise_) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
