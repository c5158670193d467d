"""The benchmark's verdicts (e2e/bench/autoscale.py): what PASSes, FAILs or is OUT OF REACH."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from e2e.bench import autoscale as bench

from tritonop.api.models import Autoscaling
from tritonop.sim.engine import SimulationResult, Timeline


def outcome(policy: str, attainment: float, cost: float) -> bench.Outcome:
    return bench.Outcome(policy, attainment, attainment, 50.0, 100.0, cost, 3, 0, 0.0)


def cell(
    load: str = "step",
    profile: str = "50ms",
    operator: dict[str, bench.Outcome] | None = None,
    oracle: bench.Outcome | None = None,
    statics: list[bench.Outcome] | None = None,
) -> bench.Cell:
    return bench.Cell(
        load,
        profile,
        seed=1,
        requests=1000,
        duration=3600.0,
        operator=operator or {},
        baselines={
            "oracle": oracle or outcome("oracle", 1.0, 6000),
            "hpa": outcome("hpa", 0.95, 26000),
            "kpa": outcome("kpa", 0.88, 17000),
        },
        statics=statics
        if statics is not None
        else [outcome("static:2", 0.33, 7200), outcome("static:3", 1.0, 10800)],
    )


def statuses(checks: list[bench.Check]) -> dict[str, str]:
    """Check status by the words that name the check."""
    names = {
        "floor": "oracle is a floor",
        "pareto": "Pareto",
        "attainment": "SLO attainment",
        "cheapest": "cheapest static meeting",
        "ratio": "x oracle",
    }
    found: dict[str, str] = {}
    for check in checks:
        for name, words in names.items():
            if words in check.text:
                found.setdefault(name, check.status)
    return found


def test_a_good_operator_passes_every_target_in_both_modes() -> None:
    good = outcome("operator", 0.995, 6500)
    checks = bench.check_cell(cell(operator={"targets": good, "objective": good}))
    assert {c.status for c in checks} == {bench.PASS}
    # targets mode on step at 50ms: attainment and ratio; objective: attainment, cheapest, ratio
    assert sum("targets:" in c.text for c in checks) == 3
    assert sum("objective:" in c.text for c in checks) == 4


def test_a_static_count_with_more_attainment_for_less_dominates() -> None:
    ours = outcome("operator", 0.60, 9000)
    checks = bench.check_cell(cell(load="heavy-burst", operator={"targets": ours}))
    pareto = next(c for c in checks if "Pareto" in c.text)
    assert pareto.status == bench.PASS  # static:2 serves less, static:3 costs more
    cheap_better = cell(
        load="heavy-burst",
        operator={"targets": ours},
        statics=[outcome("static:2", 0.7, 7200), outcome("static:3", 1.0, 10800)],
    )
    pareto = next(c for c in bench.check_cell(cheap_better) if "Pareto" in c.text)
    assert pareto.status == bench.FAIL and "static:2 70.00%" in pareto.text


def test_objective_mode_fails_above_the_cheapest_static_and_the_cost_ratio() -> None:
    ours = outcome("operator", 0.999, 11000)
    found = statuses(bench.check_cell(cell(operator={"objective": ours})))
    assert found["attainment"] == bench.PASS
    assert found["cheapest"] == bench.FAIL  # static:3 costs 10800
    assert found["ratio"] == bench.FAIL  # 1.83x the oracle on step


def test_a_target_the_oracle_itself_misses_is_out_of_reach_not_failed() -> None:
    ours = outcome("operator", 0.95, 6000)
    oracle = outcome("oracle", 0.97, 5000)
    statics = [outcome("static:5", 0.96, 18000)]
    found = statuses(
        bench.check_cell(
            cell(load="spike", operator={"objective": ours}, oracle=oracle, statics=statics)
        )
    )
    assert found["attainment"] == bench.OUT_OF_REACH
    assert found["cheapest"] == bench.OUT_OF_REACH  # no static meets 99%
    assert found["floor"] == bench.PASS


def test_the_oracle_must_be_a_floor() -> None:
    costly = outcome("oracle", 1.0, 12000)  # dearer than static:3 at 100%
    assert statuses(bench.check_cell(cell(oracle=costly)))["floor"] == bench.FAIL
    short = outcome("oracle", 0.98, 5000)  # static:3 serves more
    assert statuses(bench.check_cell(cell(oracle=short)))["floor"] == bench.FAIL


def test_targets_mode_keeps_the_old_targets_on_the_fast_profile_only() -> None:
    weak = outcome("operator", 0.97, 9500)
    fast = statuses(bench.check_cell(cell(operator={"targets": weak})))
    assert fast["attainment"] == bench.FAIL and fast["ratio"] == bench.FAIL
    slow = statuses(bench.check_cell(cell(profile="1s", operator={"targets": weak})))
    assert "attainment" not in slow and "ratio" not in slow


def test_a_policy_that_raises_fails_its_row_with_the_error() -> None:
    crashed = cell(operator={"targets": outcome("operator", 0.995, 6500)})
    crashed.mode_errors["objective"] = "ValueError: no targets"
    checks = bench.check_cell(crashed)
    failed = [c for c in checks if c.status == bench.FAIL]
    assert [c.text for c in failed] == [
        "step/50ms objective: the operator's policy raised ValueError: no targets"
    ]
    assert "raised ValueError: no targets" in "\n".join(bench.summary_table([crashed]))


def test_a_skipped_cell_has_no_checks_and_says_why() -> None:
    skipped = bench.Cell("azure-conv", "1s", 1, skipped="trace not found")
    assert bench.check_cell(skipped) == []
    assert "Skipped: trace not found." in bench.cell_table(skipped, [])


def test_a_missing_trace_skips_its_rows_with_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bench, "HERE", tmp_path / "bench")
    monkeypatch.setattr(bench, "REPO", tmp_path / "repo")
    reason = bench.load_arrivals("azure-conv", bench.PROFILES["1s"], 1)
    assert isinstance(reason, str)
    assert "azure-llm-2023-conv.csv not found" in reason and str(tmp_path / "shared") in reason
    shared = tmp_path / "shared" / "traces"
    shared.mkdir(parents=True)
    (shared / "azure-llm-2023-conv.csv").write_text("TIMESTAMP\n0.5\n1.5\n")
    loaded = bench.load_arrivals("azure-conv", bench.PROFILES["1s"], 1)
    assert loaded == ([0.0, 1.0], 5.0)


def test_the_real_trace_ships_with_the_benchmark() -> None:
    path = bench.trace_path("azure-conv")
    assert path is not None and path.parent == bench.HERE / "traces"
    loaded = bench.load_arrivals("azure-conv", bench.PROFILES["50ms"], 1)
    assert not isinstance(loaded, str) and len(loaded[0]) == 19_366


def test_the_objective_mode_is_the_targets_spec_with_an_objective() -> None:
    spec = bench.objective_spec(bench.PROFILES["1s"])
    if "objective" not in Autoscaling.model_fields:
        assert isinstance(spec, str) and "no autoscaling.objective" in spec
        return
    assert not isinstance(spec, str)
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["objective"] == {"latencyMs": 5000, "attainment": 0.99}
    assert spec.max_replicas == bench.targets_spec(bench.PROFILES["1s"]).max_replicas


def test_a_failed_attainment_says_where_the_misses_fall() -> None:
    # misses at 300-330 s (one episode: gaps under a minute), one more at 2000 s
    latencies = [0.1] * 10
    arrivals = [10.0, 300.0, 310.0, 330.0, 400.0, 1000.0, 2000.0, 2500.0, 3000.0, 3500.0]
    for late in (1, 2, 3, 6):
        latencies[late] = 9.0
    result = SimulationResult(
        controller="operator",
        duration=3600.0,
        slo_ms=500.0,
        arrivals=arrivals,
        latencies=latencies,
        replica_seconds=3600.0,
        scale_events=0,
        max_replicas=1,
        timeline=Timeline(),
    )
    first = bench.FirstMisses.of(result)
    assert first is not None
    assert (first.start, first.end, first.misses, first.total_misses) == (300.0, 330.0, 3, 4)
    assert first.attainment_after == pytest.approx(5 / 6)  # 400 s on: one miss of six
    ours = replace(outcome("operator", 0.6, 5000), first_episode=first)
    (check,) = [
        c
        for c in bench.check_cell(cell(operator={"objective": ours}))
        if "SLO attainment" in c.text
    ]
    assert check.status == bench.FAIL  # the figures are beside the verdict, never instead
    assert "3 of its 4 misses arrive in its first episode of misses, 300-330 s" in check.text
    assert bench.FirstMisses.of(replace(result, latencies=[0.1] * 10)) is None
