"""Triton Inference Server emulator for the e2e data plane (test infrastructure only).

`TritonEmulator` speaks the KServe v2 HTTP protocol with Triton's extensions on one port and
serves Triton's Prometheus metrics on another, queueing every request through the operator's
own replica model (`tritonop.sim.replica`). `podrunner.PodRunner` starts one emulator per
simulated pod of the e2e cluster. See README.md.
"""

from .emulator import (
    EmulatorConfig,
    MetricsFault,
    ModelState,
    ServiceSettings,
    TritonEmulator,
    require_loopback,
)
from .loop import BackgroundLoop

__all__ = [
    "BackgroundLoop",
    "EmulatorConfig",
    "MetricsFault",
    "ModelState",
    "ServiceSettings",
    "TritonEmulator",
    "require_loopback",
]
