"""e2e/bench/demo.py: the process-tree sampler behind the demo's memory figures."""

from __future__ import annotations

import sys

import pytest
from e2e.bench import demo


def test_the_bench_samples_the_whole_tree_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    """A parent whose child holds 64 MiB: the tree's peak includes the child."""
    child = (
        "import time; b = bytearray(64 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(2)"
    )
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    code = demo.main(["--interval", "0.2", "--", sys.executable, "-c", parent])
    out = capsys.readouterr().out
    assert code == 0
    assert "; exit code 0" in out
    peak = int(out.split("PSS ", 1)[1].split(" MiB")[0])
    assert peak >= 64, out
    assert "tritonservers: at most 0 at once" in out


def test_short_names() -> None:
    assert demo.short_name(["/usr/bin/python3", "-m", "e2e.demo", "--x"]) == "python e2e.demo"
    assert demo.short_name(["/x/.venv/bin/python", "/x/e2e/cluster/up"]) == "python up"
    assert demo.short_name(["/cache/bin/kube-apiserver", "--etcd"]) == "kube-apiserver"
    assert demo.short_name([]) == "?"
