"""The scale benchmark runs the operator at the defaults a user gets, not the e2e suite's."""

from __future__ import annotations

from e2e.bench.scale import DEFAULT_INTERVALS

from tritonop.config import Settings


def test_the_scale_benchmark_runs_the_operator_at_the_default_intervals() -> None:
    defaults = Settings()
    assert float(DEFAULT_INTERVALS["TRITONOP_AUTOSCALE_INTERVAL_SECONDS"]) == (
        defaults.autoscale_interval_seconds
    )
    assert float(DEFAULT_INTERVALS["TRITONOP_SCRAPE_TIMEOUT_SECONDS"]) == (
        defaults.scrape_timeout_seconds
    )
    assert float(DEFAULT_INTERVALS["TRITONOP_RESYNC_INTERVAL_SECONDS"]) == (
        defaults.resync_interval_seconds
    )
