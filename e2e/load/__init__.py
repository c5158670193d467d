"""Open-loop load generator for the e2e data plane (test infrastructure only).

`run_load(LoadConfig(...), source)` offers a profile's requests (Poisson arrivals, see
`profiles`) to the ready pods of one InferenceService through tritonclient's asyncio HTTP
client, bounded in time and count, and returns every request's record with per-window and
overall latency statistics. `python -m e2e.load --help` runs it from a shell.
"""

from .generator import (
    Endpoint,
    KubernetesEndpoints,
    LoadConfig,
    LoadGenerator,
    LoadResult,
    LoadSummary,
    RequestRecord,
    StaticEndpoints,
    WindowStats,
    percentile,
    ready_loopback_endpoints,
    run_load,
    summary_text,
)
from .profiles import Profile, ProfileError, parse_profile

__all__ = [
    "Endpoint",
    "KubernetesEndpoints",
    "LoadConfig",
    "LoadGenerator",
    "LoadResult",
    "LoadSummary",
    "Profile",
    "ProfileError",
    "RequestRecord",
    "StaticEndpoints",
    "WindowStats",
    "parse_profile",
    "percentile",
    "ready_loopback_endpoints",
    "run_load",
    "summary_text",
]
