"""Start and stop NVIDIA's real `tritonserver` (from the `nvidia-pytriton` wheel) on loopback.

The `triton` extra (`pip install -e '.[triton]'`, what `make setup` does) installs PyTriton,
whose wheel carries a CPU build of tritonserver 2.51 with the python backend. PyTriton itself
starts that binary for its own in-process models; this module starts it the way a Triton pod
does, `tritonserver --model-repository ...`, bound to one address inside 127.0.0.0/8 with its
HTTP, gRPC and metrics ports, serving a repository from `repository.write_repository`.

What has to be right for the wheel's binary to serve python-backend models here (each found
by trying; PyTriton does the same at run time):

* **The stub.** The python backend runs each model instance in a `triton_python_backend_stub`
  process that it looks for in the backend directory. The wheel ships one stub per Python
  version under `python_backend_stubs/3.X/` beside `backends/python/`, so a backend directory
  is assembled from the wheel's `backends/python` plus the stub of this interpreter's version
  (`backend_directory`, cached under `$TRITONOP_CACHE/realtriton/`).
* **Shared libraries.** The binaries find their bundled libraries (libtritonserver, libcudart,
  ...) in the wheel's `nvidia_pytriton.libs` through an RPATH relative to their own location;
  the copied stub no longer sits there, so that directory goes on `LD_LIBRARY_PATH`. The stub
  also links `libpython3.X.so.1.0`: a pyenv-built interpreter carries its own beside the
  distribution's, and the stub must use the one of the interpreter whose packages it imports,
  so this interpreter's `LIBDIR` comes first on `LD_LIBRARY_PATH`.
* **The model's Python.** The stub starts an embedded interpreter that finds its prefix (and
  so the venv's site-packages with numpy) from the `python3` on `PATH`: the venv's `bin`
  comes first on `PATH`.
* **Exit.** On SIGTERM tritonserver stops accepting requests and waits for in-flight ones and
  open connections for `--exit-timeout-secs` (30 s by default; a load generator's keep-alive
  connection makes it wait all of it). Servers here get a small one (`exit_timeout_s`), and
  `stop()` kills the process group if the server outlives it by `KILL_MARGIN_S`.
* **No GPU.** `--allow-gpu-metrics=false` spares the DCGM/NVML start-up errors; CUDA
  memory-pool warnings remain in the log and are harmless.
* **Start-up.** With `--disable-auto-complete-config` a server is ready in about 1 s instead
  of 3 s: the written configurations are complete, and auto-completion starts an extra stub
  process per model only to ask the model for its configuration.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType

from e2e.cluster.processes import ProcessRecord, die_with_parent, log_tail, record, stop_group
from e2e.polling import WaitTimeout, wait_until
from e2e.tritonsim.emulator import require_loopback

#: The PyPI distribution that carries tritonserver (installed by the `triton` extra).
DISTRIBUTION = "nvidia-pytriton"
#: Seconds `stop()` waits beyond the server's own exit timeout before SIGKILL.
KILL_MARGIN_S = 3.0
#: Default --exit-timeout-secs: long enough for in-flight requests of the e2e models
#: (tens of milliseconds), short enough that a held keep-alive connection costs little.
DEFAULT_EXIT_TIMEOUT_S = 2


class TritonNotInstalled(RuntimeError):
    """The wheel with tritonserver is missing, or cannot run with this interpreter."""


@dataclass(frozen=True)
class TritonInstallation:
    """Where the wheel put tritonserver, and what it needs to run here."""

    root: Path
    """`.../site-packages/pytriton/tritonserver` (bin/, backends/, python_backend_stubs/)."""
    libs: Path
    """The wheel's bundled shared libraries (`nvidia_pytriton.libs`)."""
    version: str
    """The wheel's version (0.7.0 carries tritonserver 2.51.0)."""

    @classmethod
    def find(cls) -> TritonInstallation:
        """Locate the installed wheel without importing PyTriton (which is heavy)."""
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise TritonNotInstalled(
                f"{DISTRIBUTION} is not installed in {sys.prefix}: run `make setup` (it "
                "installs the project with its `triton` extra: pip install -e '.[test,triton]')"
            )
        package = Path(next(iter(spec.submodule_search_locations)))
        installation = cls(
            root=package / "tritonserver",
            libs=package.parent / "nvidia_pytriton.libs",
            version=importlib.metadata.version(DISTRIBUTION),
        )
        for path in (installation.binary, installation.stub, installation.libs):
            if not path.exists():
                raise TritonNotInstalled(f"{DISTRIBUTION} {installation.version} lacks {path}")
        return installation

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def stub(self) -> Path:
        """The python-backend stub built for this interpreter's Python version."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"

    def backend_directory(self, cache: Path | None = None) -> Path:
        """A --backend-directory holding the python backend with this interpreter's stub.

        Built once per wheel and Python version under `cache` (default
        `$TRITONOP_CACHE/realtriton`), into a temporary directory renamed into place, so
        concurrent sessions never see half a copy.
        """
        from e2e.cluster.binaries import cache_root

        base = (cache or cache_root() / "realtriton").expanduser()
        key = hashlib.sha256(f"{self.root}|{self.version}|{self.stub}".encode()).hexdigest()
        target = (
            base
            / f"backends-{self.version}-py{sys.version_info.major}.{sys.version_info.minor}-{key[:12]}"
        )
        if (target / "python" / self.stub.name).exists():
            return target
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="backends-", dir=base))
        try:
            python = staging / "python"
            shutil.copytree(
                self.root / "backends" / "python",
                python,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            shutil.copy2(self.stub, python / self.stub.name)
            try:
                staging.rename(target)
            except OSError:  # another process won the race: use its copy
                if not (target / "python" / self.stub.name).exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The process environment tritonserver and its python-backend stubs need."""
        env = dict(os.environ if base is None else base)
        libdir = Path(str(sysconfig.get_config_var("LIBDIR")))
        soname = str(sysconfig.get_config_var("INSTSONAME"))
        if not (libdir / soname).exists():
            raise TritonNotInstalled(
                f"the python-backend stub links {soname}, which this interpreter "
                f"({sys.executable}) does not have in {libdir}: use a Python built with "
                "--enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared) or install "
                "the distribution's libpython of the same version"
            )
        library_path = [str(libdir), str(self.libs)]
        if env.get("LD_LIBRARY_PATH"):
            library_path.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(library_path)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env


@dataclass(frozen=True)
class TritonServerConfig:
    """One tritonserver process: where it binds and what it serves."""

    host: str
    """Address inside 127.0.0.0/8 for all three endpoints."""
    repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_control_mode: str = "none"
    """none (load the whole repository), explicit (only --load-model, API loads) or poll."""
    load_models: tuple[str, ...] = ()
    strict_readiness: bool = True
    exit_timeout_s: int = DEFAULT_EXIT_TIMEOUT_S
    extra_args: tuple[str, ...] = ()
    """Appended last (e.g. --http-restricted-api=...)."""

    def argv(self, binary: Path, backend_directory: Path) -> list[str]:
        """tritonserver's command line."""
        flag = "true" if self.strict_readiness else "false"
        args = [
            str(binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_directory}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--strict-readiness={flag}",
            f"--model-control-mode={self.model_control_mode}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            # The repository's configurations are complete (repository.py); auto-completion
            # would start an extra python-backend stub per model just to ask the model, two
            # of the three seconds a server takes to become ready here.
            "--disable-auto-complete-config",
        ]
        args += [f"--load-model={name}" for name in self.load_models]
        return args + list(self.extra_args)


def _rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def tree_rss(pid: int) -> tuple[int, list[int]]:
    """Resident bytes of a tritonserver process and of each of its children (the stub
    processes, one per model instance); (0, []) when it is gone."""
    return _rss_bytes(pid), [_rss_bytes(child) for child in _children(pid)]


@dataclass
class TritonServer:
    """One running tritonserver (its own process group, with its stub processes)."""

    config: TritonServerConfig
    installation: TritonInstallation = field(default_factory=TritonInstallation.find)
    log_path: Path | None = None
    """Where the server's output goes (default: beside the repository)."""
    die_with_parent: bool = False
    """SIGKILL the server if the thread that started it dies (PR_SET_PDEATHSIG): for test
    sessions that may be killed without teardown. Start it from a long-lived thread."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    recorded: ProcessRecord = field(default_factory=dict, init=False)
    started_at: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        require_loopback(self.config.host)
        if self.log_path is None:
            name = f"tritonserver-{self.config.host}-{self.config.http_port}.log"
            self.log_path = self.config.repository.parent / name

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the process (returns at once; `wait_ready` waits for its models)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"tritonserver on {self.config.host} is already running")
        installation = self.installation
        argv = self.config.argv(installation.binary, installation.backend_directory())
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            # Not processes.spawn: that applies the parent-death signal from the main thread
            # only, and the pod runner starts servers from its event-loop thread, which lives
            # until it has stopped them.
            self.process = subprocess.Popen(
                argv,
                env=installation.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=partial(die_with_parent, signal.SIGKILL)
                if self.die_with_parent
                else None,
            )
            self.recorded = record(self.process, argv)

    def stop(self, timeout: float | None = None) -> float:
        """SIGTERM, wait up to the exit timeout plus a margin, then SIGKILL the group.

        Returns the seconds until the server was gone. The stub processes share the server's
        process group and go with it.
        """
        process = self.process
        if process is None:
            return 0.0
        began = time.monotonic()
        limit = self.config.exit_timeout_s + KILL_MARGIN_S if timeout is None else timeout
        stop_group(self.recorded, limit, process=process)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # stubs that outlived an exited server
        process.wait()
        return time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crashed server (no drain, no exit timeout)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ observation

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        """host:port of the HTTP endpoint, the form tritonclient takes."""
        return f"{self.config.host}:{self.config.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.host}:{self.config.metrics_port}/metrics"

    def _status(self, path: str, timeout: float = 1.0) -> int | None:
        """HTTP status of GET path, None when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://{self.url}{path}", timeout=timeout) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None

    def is_ready(self) -> bool:
        """`GET /v2/health/ready` answers 200 (with strict readiness: every model loaded)."""
        return self.running and self._status("/v2/health/ready") == 200

    def is_live(self) -> bool:
        return self.running and self._status("/v2/health/live") == 200

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Block until ready; return seconds since `start()`. Raises with the log's tail if
        the server exits or the timeout passes."""

        def exited() -> None:
            if not self.running:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(
                    f"tritonserver on {self.url} exited with {code} before it was ready:\n"
                    + self.log_tail()
                )

        try:
            wait_until(
                self.is_ready, timeout, f"tritonserver on {self.url}", interval=0.05, check=exited
            )
        except WaitTimeout as error:
            raise WaitTimeout(f"{error}\n{self.log_tail()}") from None
        return time.monotonic() - self.started_at

    def log_tail(self, lines: int = 30) -> str:
        return "(no log)" if self.log_path is None else log_tail(self.log_path, lines)

    def rss(self) -> tuple[int, list[int]]:
        """Resident bytes of the server process and of each of its stub processes (one per
        model instance)."""
        if not self.running or self.process is None:
            return 0, []
        return tree_rss(self.process.pid)
