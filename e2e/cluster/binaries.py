"""Pinned control-plane binaries for the e2e cluster: versions, cache paths, and the build.

Why this exists: the e2e suite needs a *real* kube-apiserver, controller-manager, scheduler and
etcd (plus KWOK for fake nodes and helm for chart tests), and this machine has no container
engine and no network except package registries. So we build every binary from the Go module
proxy, once, into a cache outside the repo keyed by version, and reuse it forever after.

Layout (``TRITONOP_CACHE`` defaults to ``~/.cache/tritonop``)::

    $TRITONOP_CACHE/bin/<name>-<version>/<name>     the real binaries (one dir per version)
    $TRITONOP_CACHE/bin/current/<name> -> ...       symlinks to the pinned set (put on PATH)
    $TRITONOP_CACHE/src/<component>-<version>/      generated wrapper modules (go.mod, main.go)

Every binary is built into a temporary directory and moved into place only when complete, so
an interrupted build leaves nothing half-written; re-running simply continues. Go's own module
and build caches stay at their defaults (``go env GOMODCACHE GOCACHE``) so rebuilds are quick.

This module is stdlib-only on purpose: ``e2e/cluster/build`` runs it before anything else of
the project is installed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------------------------
# Pins. Change a version here and re-run e2e/cluster/build; the old build stays in the cache.
# --------------------------------------------------------------------------------------------

#: Kubernetes release. Newest >=1.34 that the Go module proxy serves and that builds here;
#: v1.36.4's build/dependencies.yaml pins etcd 3.6.8 (1.37.x would want etcd 3.7.0).
KUBERNETES_VERSION = "v1.36.4"
#: etcd release expected by KUBERNETES_VERSION (build/dependencies.yaml, name "etcd").
ETCD_VERSION = "v3.6.8"
#: KWOK (controller + kwokctl).
KWOK_VERSION = "v0.8.0"
#: helm, latest 3.x served by the proxy.
HELM_VERSION = "v3.22.0"

# The peers (issue 15): what a user installs instead of tritonop's own autoscaling, started on
# request by ``LocalCluster.start_peers()``, never by ``up()``.
#: Prometheus (github.com/prometheus/prometheus; module v0.3XX.Y is release v3.XX.Y). The
#: newest the Go module proxy serves; built without the ``builtinassets`` tag (no web UI).
PROMETHEUS_VERSION = "v0.316.0"
#: prometheus-adapter (sigs.k8s.io/prometheus-adapter), the custom metrics API server.
PROMETHEUS_ADAPTER_VERSION = "v0.12.0"
#: KEDA (github.com/kedacore/keda/v2): operator and metrics API server. v2.21.x needs Go 1.27;
#: v2.20.2 is the newest whose go.mod builds with the Go 1.26 here.
KEDA_VERSION = "v2.20.2"

KUBE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


@dataclass(frozen=True)
class Binary:
    """One pinned binary: its name, version and the group it is built with."""

    name: str
    version: str
    group: str  # binaries of one group are built by a single `go build`


BINARIES: tuple[Binary, ...] = (
    Binary("etcd", ETCD_VERSION, "etcd"),
    Binary("kwok", KWOK_VERSION, "kwok"),
    Binary("kwokctl", KWOK_VERSION, "kwok"),
    *(Binary(n, KUBERNETES_VERSION, "kubernetes") for n in KUBE_COMPONENTS),
    Binary("helm", HELM_VERSION, "helm"),
    Binary("prometheus", PROMETHEUS_VERSION, "prometheus"),
    Binary("prometheus-adapter", PROMETHEUS_ADAPTER_VERSION, "prometheus-adapter"),
    Binary("keda-operator", KEDA_VERSION, "keda"),
    Binary("keda-adapter", KEDA_VERSION, "keda"),
)

#: The build groups of the peers: built by ``e2e/cluster/build`` like the rest, but only
#: ``LocalCluster.start_peers()`` needs them, so ``--print-bin-dir`` (what every e2e session
#: asks first) does not fail when only they are missing.
PEER_GROUPS = frozenset({"prometheus", "prometheus-adapter", "keda"})


class MissingBinaryError(RuntimeError):
    """A pinned binary is not in the cache; the message tells how to build it."""


def cache_root() -> Path:
    """Root of the tritonop cache (``$TRITONOP_CACHE`` or ``~/.cache/tritonop``)."""
    env = os.environ.get("TRITONOP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tritonop"


def binary_path(b: Binary) -> Path:
    """Where the cached binary ``b`` lives (may not exist yet)."""
    return cache_root() / "bin" / f"{b.name}-{b.version}" / b.name


def bin_dir() -> Path:
    """Directory of symlinks to the pinned set; refreshed by :func:`link_current`."""
    return cache_root() / "bin" / "current"


def missing(groups: Collection[str] | None = None) -> list[Binary]:
    """Pinned binaries not yet in the cache (of ``groups`` only, when given)."""
    return [
        b
        for b in BINARIES
        if (groups is None or b.group in groups) and not os.access(binary_path(b), os.X_OK)
    ]


def core_groups() -> frozenset[str]:
    """The groups every e2e session needs: all but :data:`PEER_GROUPS`."""
    return frozenset(b.group for b in BINARIES) - PEER_GROUPS


def find(name: str) -> str:
    """Absolute path of the pinned binary ``name``; raise a clear error if not built.

    Used by cluster.py so a missing binary fails with "run e2e/cluster/build", not with an
    obscure FileNotFoundError halfway through starting the control plane.
    """
    for b in BINARIES:
        if b.name == name:
            p = binary_path(b)
            if os.access(p, os.X_OK):
                return str(p)
            raise MissingBinaryError(
                f"{name} {b.version} is not built (expected {p}). "
                "Run e2e/cluster/build (about 11 min cold on 2 cores; a no-op once built)."
            )
    raise KeyError(f"{name} is not a pinned binary: {[b.name for b in BINARIES]}")


def link_current() -> Path:
    """(Re)create ``bin/current`` with a symlink per pinned binary, atomically per link."""
    d = bin_dir()
    d.mkdir(parents=True, exist_ok=True)
    for b in BINARIES:
        target = binary_path(b)
        if not target.exists():
            continue
        link = d / b.name
        tmp = d / f".{b.name}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, link)
    return d


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[build {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _go() -> str:
    """The go binary: PATH first, then the toolchain location used on these machines."""
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None
    )
    if not go:
        raise SystemExit(
            "build: 'go' not found on PATH nor at /usr/local/go/bin/go (need Go >= 1.26)"
        )
    return go


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, streaming nothing; on failure print its output and stop loudly. Go runs
    at the lowest CPU priority (``nice -n 19``)."""
    nice = shutil.which("nice")
    if nice and cmd and cmd[0] == _go():
        cmd = [nice, "-n", "19", *cmd]
    p = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if p.returncode != 0:
        sys.stderr.write(p.stdout)
        raise SystemExit(f"build: FAILED (exit {p.returncode}): {' '.join(cmd)}  (in {cwd})")
    return p.stdout


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOFLAGS", "-buildvcs=false")
    env["GOTOOLCHAIN"] = "local"  # never try to download a toolchain (no network for it)
    gobin = os.path.dirname(_go())
    env["PATH"] = gobin + os.pathsep + env.get("PATH", "")
    return env


def _src_dir(component: str, version: str) -> Path:
    d = cache_root() / "src" / f"{component}-{version}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _module_dir(mod: str, version: str, env: dict[str, str]) -> Path:
    out = _run(
        [_go(), "mod", "download", "-json", f"{mod}@{version}"],
        cwd=Path(tempfile.gettempdir()),
        env=env,
    )
    info = json.loads(out)
    if info.get("Error"):
        raise SystemExit(f"build: cannot download {mod}@{version}: {info['Error']}")
    return Path(info["Dir"])


def _install(group_bins: list[Binary], built: Path) -> None:
    """Move freshly built binaries from a temp dir into their versioned cache dirs."""
    for b in group_bins:
        src = built / b.name
        if not os.access(src, os.X_OK):
            raise SystemExit(f"build: go build succeeded but produced no {src}")
        dest = binary_path(b)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{b.name}.partial"
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)


def _build_kubernetes(bins: list[Binary], out: Path, env: dict[str, str]) -> None:
    """Wrapper module technique: k8s.io/kubernetes replaces its staging modules with local
    paths, so `go install k8s.io/kubernetes/cmd/...@v` is refused. A module of our own that
    requires k8s.io/kubernetes and replaces every staging module by its published v0.X.Y works.
    """
    v = KUBERNETES_VERSION
    staging_v = "v0." + v.split(".", 1)[1]  # v1.36.4 -> v0.36.4
    major, minor = v.lstrip("v").split(".")[:2]
    kdir = _module_dir("k8s.io/kubernetes", v, env)
    staging = re.findall(
        r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/src/", (kdir / "go.mod").read_text(), re.M
    )
    if not staging:
        raise SystemExit(f"build: no staging replaces found in {kdir}/go.mod")
    src = _src_dir("kubernetes", v)
    gomod = [
        "module tritonop.local/e2e/kubernetes-build",
        "",
        "go 1.26",
        "",
        f"require k8s.io/kubernetes {v}",
        "",
        "replace (",
        *(f"\t{m} => {m} {staging_v}" for m in staging),
        ")",
        "",
    ]
    _write(src / "go.mod", "\n".join(gomod))
    # The wrapper has no Go files, so there is nothing to tidy: -mod=mod lets `go build` add
    # the requirements and go.sum lines it needs (checked against sum.golang.org).
    build_date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ldflags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [
            f"-X {pkg}.gitVersion={v}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={build_date}",
        ]
    cmd = [
        _go(),
        "build",
        "-mod=mod",
        "-trimpath",
        "-tags",
        "selinux,notest",
        "-ldflags",
        "-s -w " + " ".join(ldflags),
        "-o",
        str(out) + "/",
        *(f"k8s.io/kubernetes/cmd/{b.name}" for b in bins),
    ]
    _run(cmd, cwd=src, env=env)


def _build_etcd(bins: list[Binary], out: Path, env: dict[str, str]) -> None:
    """etcd's own module layout also has local replaces; a wrapper main calling
    etcdmain.Main from go.etcd.io/etcd/server/v3 builds the same server binary."""
    src = _src_dir("etcd", ETCD_VERSION)
    _write(
        src / "go.mod",
        "module tritonop.local/e2e/etcd-build\n\ngo 1.26\n\n"
        f"require go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n",
    )
    _write(
        src / "main.go",
        "// Command etcd is etcd's server main, built from the published server module.\n"
        'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n",
    )
    _run([_go(), "mod", "tidy"], cwd=src, env=env)
    _run(
        [_go(), "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "."],
        cwd=src,
        env=env,
    )


def _build_kwok(bins: list[Binary], out: Path, env: dict[str, str]) -> None:
    e = dict(env, GOBIN=str(out))
    ld = f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}"
    pkgs = [f"sigs.k8s.io/kwok/cmd/{b.name}@{KWOK_VERSION}" for b in bins]
    _run(
        [_go(), "install", "-trimpath", "-ldflags", ld, *pkgs],
        cwd=Path(tempfile.gettempdir()),
        env=e,
    )


def _build_helm(bins: list[Binary], out: Path, env: dict[str, str]) -> None:
    mod = "helm.sh/helm/v3"
    hdir = _module_dir(mod, HELM_VERSION, env)
    m = re.search(r"k8s\.io/client-go v0\.(\d+)\.", (hdir / "go.mod").read_text())
    ld = [
        f"-s -w -X {mod}/internal/version.version={HELM_VERSION}",
        f"-X {mod}/internal/version.gitTreeState=clean",
    ]
    if m:  # what helm's Makefile stamps as the default Capabilities.KubeVersion
        for p in (f"{mod}/pkg/lint/rules", f"{mod}/pkg/chartutil"):
            ld += [f"-X {p}.k8sVersionMajor=1", f"-X {p}.k8sVersionMinor={m.group(1)}"]
    e = dict(env, GOBIN=str(out))
    _run(
        [_go(), "install", "-trimpath", "-ldflags", " ".join(ld), f"{mod}/cmd/helm@{HELM_VERSION}"],
        cwd=Path(tempfile.gettempdir()),
        env=e,
    )


def _build_prometheus(bins: list[Binary], out: Path, env: dict[str, str]) -> None:
    """`go install` works as is (no replace directives). Without the ``builtinassets`` build
    tag the web UI's assets are not compiled in; the HTTP API, all the peers use, is whole.
    Prometheus' own build tags ``remove_all_sd,enable_kubernetes_sd`` keep only the
    Kubernetes service discovery (the cloud SDKs of the others are most of the build)."""
    mod = "github.com/prometheus/prometheus"
    pkg = "github.com/prometheus/common/version"
    build_date = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H:%M:%S")
    ld = [
        "-s -w",
        f"-X {pkg}.Version={PROMETHEUS_VERSION.lstrip('v')}",
        f"-X {pkg}.Branch=module-proxy",
        f"-X {pkg}.BuildUser=tritonop-e2e",
        f"-X {pkg}.BuildDate={build_date}",
    ]
    e = dict(env, GOBIN=str(out))
    _run(
        [_go(), "install", "-trimpath", "-tags", "remove_all_sd,enable_kubernetes_sd",
         "-ldflags", " ".join(ld), f"{mod}/cmd/prometheus@{PROMETHEUS_VERSION}"],
        cwd=Path(tempfile.gettempdir()),
        env=e,
    )  # fmt: skip


def _build_prometheus_adapter(bins: list[Binary], out: Path, env: dict[str, str]) -> None:
    """A wrapper module: `go install sigs.k8s.io/prometheus-adapter/cmd/adapter@v` is refused
    because the proxy answers 403 to the module's version list (which `go install` reads for
    deprecation notices), while the exact version is served."""
    v = PROMETHEUS_ADAPTER_VERSION
    src = _src_dir("prometheus-adapter", v)
    _write(
        src / "go.mod",
        "module tritonop.local/e2e/prometheus-adapter-build\n\ngo 1.26\n\n"
        f"require sigs.k8s.io/prometheus-adapter {v}\n",
    )
    _run(
        [_go(), "build", "-mod=mod", "-trimpath", "-ldflags", "-s -w",
         "-o", str(out / "prometheus-adapter"), "sigs.k8s.io/prometheus-adapter/cmd/adapter"],
        cwd=src,
        env=env,
    )  # fmt: skip


def _build_keda(bins: list[Binary], out: Path, env: dict[str, str]) -> None:
    """KEDA's go.mod has replace directives (it pins k8s.io and controller-runtime), which
    `go install` refuses; a wrapper module that requires KEDA and repeats its replace block
    builds the operator (cmd/operator) and the metrics API server (cmd/adapter)."""
    v = KEDA_VERSION
    mod = "github.com/kedacore/keda/v2"
    kdir = _module_dir(mod, v, env)
    block = re.search(r"^replace \($.*?^\)$", (kdir / "go.mod").read_text(), re.M | re.S)
    src = _src_dir("keda", v)
    _write(
        src / "go.mod",
        "module tritonop.local/e2e/keda-build\n\ngo 1.26\n\n"
        f"require {mod} {v}\n\n" + (block.group(0) + "\n" if block else ""),
    )
    ld = f"-s -w -X {mod}/version.Version={v} -X {mod}/version.GitCommit=module-proxy"
    names = {"operator": "keda-operator", "adapter": "keda-adapter"}
    for cmd, name in names.items():
        _run(
            [_go(), "build", "-mod=mod", "-trimpath", "-ldflags", ld,
             "-o", str(out / name), f"{mod}/cmd/{cmd}"],
            cwd=src,
            env=env,
        )  # fmt: skip


_BUILDERS = {
    "etcd": _build_etcd,
    "kwok": _build_kwok,
    "kubernetes": _build_kubernetes,
    "helm": _build_helm,
    "prometheus": _build_prometheus,
    "prometheus-adapter": _build_prometheus_adapter,
    "keda": _build_keda,
}


def keda_module_dir() -> Path:
    """KEDA's module in Go's module cache (its CRDs and RBAC live under config/)."""
    return _module_dir("github.com/kedacore/keda/v2", KEDA_VERSION, _go_env())


def _clean_stale_tmp(max_age_s: float = 12 * 3600) -> None:
    """Remove temp build dirs left by builds that were killed (SIGKILL skips cleanup).
    Young ones may belong to a build running concurrently, so they stay."""
    tmp = cache_root() / "tmp"
    for d in tmp.glob("*") if tmp.is_dir() else []:
        try:
            if time.time() - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def build(force: bool = False, groups: Collection[str] | None = None) -> None:
    """Build every missing pinned binary (of ``groups``, when given; all of them with
    ``force``), then refresh links. Go runs at ``nice 19``: the machines have two cores that
    tests and benchmarks share."""
    chosen = [b for b in BINARIES if groups is None or b.group in groups]
    todo = chosen if force else missing(groups)
    if not todo:
        link_current()
        _log(f"all {len(chosen)} binaries already built in {cache_root() / 'bin'}; nothing to do")
        return
    env = _go_env()
    _log(f"cache: {cache_root()}  go: {_run([_go(), 'version'], cwd=Path('/'), env=env).strip()}")
    t_all = time.monotonic()
    by_group: dict[str, list[Binary]] = {}
    for b in todo:
        by_group.setdefault(b.group, []).append(b)
    _clean_stale_tmp()
    for group, bins in by_group.items():
        names = ", ".join(f"{b.name} {b.version}" for b in bins)
        _log(f"building {names} ...")
        t0 = time.monotonic()
        (cache_root() / "tmp").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{group}-", dir=cache_root() / "tmp") as tmp:
            _BUILDERS[group](bins, Path(tmp), env)
            _install(bins, Path(tmp))
        _log(f"built {names} in {time.monotonic() - t0:.0f}s")
    link_current()
    _log(f"done in {time.monotonic() - t_all:.0f}s; binaries linked in {bin_dir()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="e2e/cluster/build",
        description="Build the pinned e2e binaries into the cache (no-op when present).",
    )
    ap.add_argument(
        "--print-bin-dir",
        action="store_true",
        help="print the directory holding the pinned binaries (fails if one but the peers' "
        "is missing)",
    )
    ap.add_argument(
        "--list", action="store_true", help="list pinned binaries, versions and whether built"
    )
    ap.add_argument("--force", action="store_true", help="rebuild even if present")
    ap.add_argument(
        "--only",
        choices=("core", "peers"),
        help="build only the control plane and tools (core) or only Prometheus, "
        "prometheus-adapter and KEDA (peers)",
    )
    a = ap.parse_args(argv)
    groups = None if a.only is None else core_groups() if a.only == "core" else PEER_GROUPS
    if a.list:
        for b in BINARIES:
            p = binary_path(b)
            print(f"{b.name:24} {b.version:9} {'built' if p.exists() else 'MISSING':8} {p}")
        return 0
    if a.print_bin_dir:
        miss = missing(core_groups())
        if miss:
            print(
                "missing: "
                + ", ".join(f"{b.name} {b.version}" for b in miss)
                + " -- run e2e/cluster/build",
                file=sys.stderr,
            )
            return 1
        print(link_current())
        return 0

    # SIGTERM/SIGHUP (CI timeouts, closed terminals) unwind like Ctrl-C: subprocess.run kills
    # the running go command and the temp build dir is removed; nothing half-built remains.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    try:
        build(force=a.force, groups=groups)
    except KeyboardInterrupt as e:
        print(
            f"build: interrupted ({e or 'SIGINT'}); re-run e2e/cluster/build to continue",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
