"""Autoscaling benchmark: every policy on every built-in load pattern, judged against an oracle.

    python e2e/bench/autoscale.py                 # seed 1, writes e2e/bench/RESULTS.md
    python e2e/bench/autoscale.py --seeds 1,2,3   # robustness across arrival seeds

For each pattern (one hour, Poisson arrivals, 50 ms requests on one instance per replica,
20 s cold start, 500 ms objective, least-request balancing) it runs the operator's policy,
Kubernetes' HPA, Knative's KPA, static:N for a range of N, and the oracle; it prints a table
of SLO attainment and replica-seconds relative to the oracle, checks the targets below, and
writes the same as Markdown to RESULTS.md. The sensitivity section reruns the operator with
Kubernetes' 300 s scale-down window and every policy behind a plain Service (random
balancing). It also times a one-hour trace of 20,000 requests.

Targets (operator, with the pattern defaults and e2e/bench/spec.yaml):
  step: SLO attainment >= 98%, replica-seconds <= 1.5x oracle
  ramp, diurnal: SLO attainment >= 99.5%, replica-seconds <= 1.3x oracle
  spike, bursty: replica-seconds <= 2x oracle
  every pattern: not Pareto-dominated by hpa or kpa (neither has both a higher SLO
  attainment and fewer replica-seconds)
  honest oracle: on every pattern it meets the SLO at least as well as the cheapest static:N
  that meets it (>= 99.5% of requests), for fewer replica-seconds.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from tritonop.api.models import Autoscaling
from tritonop.api.validation import parse_object
from tritonop.sim.engine import Balancer, ServiceConfig, SimulationResult
from tritonop.sim.scenario import Scenario, pattern_arrivals, run
from tritonop.sim.traces import PATTERNS, RateProfile, poisson_arrivals

HERE = Path(__file__).resolve().parent
SPEC = HERE / "spec.yaml"
RESULTS = HERE / "RESULTS.md"
STATIC_RANGE = range(1, 9)
ADEQUATE = 0.995
"""The SLO attainment a static:N needs to count as meeting the objective."""
POLICIES = ("operator", "hpa", "kpa")
TARGETS: dict[str, tuple[float | None, float]] = {
    "step": (0.98, 1.5),
    "ramp": (0.995, 1.3),
    "diurnal": (0.995, 1.3),
    "spike": (None, 2.0),
    "bursty": (None, 2.0),
}


@dataclass(frozen=True)
class Row:
    """One policy's outcome on one pattern."""

    policy: str
    result: SimulationResult
    seconds: float


@dataclass(frozen=True)
class PatternRun:
    """Every policy on one pattern, plus the verdicts."""

    pattern: str
    seed: int
    rows: dict[str, Row]
    statics: list[Row]
    cheapest_static: Row | None
    checks: list[tuple[str, bool]]

    @property
    def oracle(self) -> SimulationResult:
        return self.rows["oracle"].result


def load_spec() -> Autoscaling:
    autoscaling = parse_object(yaml.safe_load(SPEC.read_text())).spec.autoscaling
    assert autoscaling is not None, f"{SPEC} must have spec.autoscaling"
    return autoscaling


def timed(policy: str, scenario: Scenario) -> Row:
    started = time.perf_counter()
    result = run(policy, scenario)
    return Row(policy, result, time.perf_counter() - started)


def run_pattern(
    name: str,
    seed: int,
    autoscaling: Autoscaling,
    config: ServiceConfig,
    policies: Sequence[str] = POLICIES,
    statics: bool = True,
) -> PatternRun:
    arrivals, duration = pattern_arrivals(name, seed)
    scenario = Scenario(autoscaling, replace(config, seed=seed), arrivals, duration)
    rows = {policy: timed(policy, scenario) for policy in (*policies, "oracle")}
    static_rows = [timed(f"static:{n}", scenario) for n in STATIC_RANGE] if statics else []
    adequate = [row for row in static_rows if row.result.slo_attainment >= ADEQUATE]
    cheapest = min(adequate, key=lambda row: row.result.replica_seconds, default=None)
    return PatternRun(name, seed, rows, static_rows, cheapest, check(name, rows, cheapest))


def check(name: str, rows: dict[str, Row], cheapest: Row | None) -> list[tuple[str, bool]]:
    """The targets of the module docstring, as (description, passed)."""
    checks: list[tuple[str, bool]] = []
    oracle = rows["oracle"].result
    if "operator" in rows:
        ours = rows["operator"].result
        slo_target, cost_target = TARGETS[name]
        ratio = ours.replica_seconds / oracle.replica_seconds
        if slo_target is not None:
            checks.append(
                (
                    f"{name}: operator SLO attainment {ours.slo_attainment:.2%} >= {slo_target:.1%}",
                    ours.slo_attainment >= slo_target,
                )
            )
        checks.append(
            (
                f"{name}: operator replica-seconds {ratio:.2f}x oracle <= {cost_target:g}x",
                ratio <= cost_target,
            )
        )
        for baseline in ("hpa", "kpa"):
            if baseline not in rows:
                continue
            other = rows[baseline].result
            dominated = (
                other.slo_attainment > ours.slo_attainment
                and other.replica_seconds < ours.replica_seconds
            )
            checks.append((f"{name}: operator not Pareto-dominated by {baseline}", not dominated))
    if cheapest is not None:
        honest = (
            oracle.slo_attainment >= cheapest.result.slo_attainment
            and oracle.replica_seconds < cheapest.result.replica_seconds
        )
        checks.append(
            (
                f"{name}: oracle ({oracle.slo_attainment:.2%}, {oracle.replica_seconds:.0f} "
                f"replica-s) at least as good as {cheapest.policy} "
                f"({cheapest.result.slo_attainment:.2%}, "
                f"{cheapest.result.replica_seconds:.0f} replica-s) and cheaper",
                honest,
            )
        )
    return checks


def table(run: PatternRun) -> list[str]:
    """Markdown rows for one pattern."""
    oracle_cost = run.oracle.replica_seconds
    lines = [
        f"### {run.pattern} (seed {run.seed}, {run.oracle.requests} requests)",
        "",
        "| policy | SLO attainment | p50 ms | p99 ms | replica-seconds | x oracle | max replicas"
        " | scale events |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    shown = [*run.rows.values()]
    if run.cheapest_static is not None:
        shown.append(run.cheapest_static)
    for row in shown:
        result = row.result
        label = row.policy + (
            " (cheapest static meeting 99.5%)" if row is run.cheapest_static else ""
        )
        lines.append(
            f"| {label} | {result.slo_attainment:.2%} | {result.latency_percentile_ms(50):.0f} "
            f"| {result.latency_percentile_ms(99):.0f} | {result.replica_seconds:.0f} "
            f"| {result.replica_seconds / oracle_cost:.2f} | {result.max_replicas} "
            f"| {result.scale_events} |"
        )
    if run.statics:
        statics = ", ".join(f"{row.policy} {row.result.slo_attainment:.2%}" for row in run.statics)
        lines += ["", f"Static replicas (SLO attainment): {statics}."]
    lines += ["", *(f"- {'PASS' if ok else 'FAIL'} {text}" for text, ok in run.checks), ""]
    return lines


def performance() -> tuple[int, float]:
    """Seconds to simulate one hour of 20,000 requests (about 5.6 req/s) under the operator."""
    rng = random.Random(7)
    rate = 20_000 / 3600
    arrivals = poisson_arrivals(RateProfile("flat", 3600.0, rate, lambda t: rate), rng)
    scenario = Scenario(load_spec(), ServiceConfig(), arrivals, 3600.0)
    started = time.process_time()
    run("operator", scenario)
    return len(arrivals), time.process_time() - started


def sensitivity(autoscaling: Autoscaling, seed: int) -> list[str]:
    """The operator with Kubernetes' 300 s scale-down window; every policy behind random
    balancing (a plain Kubernetes Service)."""
    lines = [
        "## Sensitivity",
        "",
        "### Scale-down window: the operator's default 60 s against Kubernetes' 300 s",
        "",
        "| pattern | window | SLO attainment | replica-seconds | x oracle |",
        "|---|---:|---:|---:|---:|",
    ]
    slow = autoscaling.model_copy(
        update={
            "behavior": autoscaling.behavior.model_validate(
                {"scaleDown": {"stabilizationWindowSeconds": 300}}
            )
        }
    )
    for name in PATTERNS:
        arrivals, duration = pattern_arrivals(name, seed)
        base = Scenario(autoscaling, replace(ServiceConfig(), seed=seed), arrivals, duration)
        oracle = run("oracle", base).replica_seconds
        for label, spec in (("60 s", autoscaling), ("300 s", slow)):
            result = run("operator", replace(base, autoscaling=spec))
            lines.append(
                f"| {name} | {label} | {result.slo_attainment:.2%} | "
                f"{result.replica_seconds:.0f} | {result.replica_seconds / oracle:.2f} |"
            )
        print(f"  sensitivity: {name} scale-down windows done", file=sys.stderr, flush=True)
    lines += [
        "",
        "### Random balancing (a plain Service through kube-proxy), every policy",
        "",
        "| pattern | policy | SLO attainment | replica-seconds | x oracle (random) |",
        "|---|---|---:|---:|---:|",
    ]
    balancer: Balancer = "random"
    for name in PATTERNS:
        config = replace(ServiceConfig(), seed=seed, balancer=balancer)
        run_ = run_pattern(name, seed, autoscaling, config, statics=False)
        for policy, row in run_.rows.items():
            result = row.result
            lines.append(
                f"| {name} | {policy} | {result.slo_attainment:.2%} | "
                f"{result.replica_seconds:.0f} | "
                f"{result.replica_seconds / run_.oracle.replica_seconds:.2f} |"
            )
        print(f"  sensitivity: {name} random balancing done", file=sys.stderr, flush=True)
    return [*lines, ""]


def robustness(autoscaling: Autoscaling, seeds: Sequence[int]) -> tuple[list[str], list[str]]:
    """The operator against hpa, kpa and the oracle on more arrival seeds: a compact table and
    the failed checks (static:N is skipped here, so the oracle check is not repeated)."""
    lines = [
        "## Robustness across arrival seeds",
        "",
        "| seed | pattern | operator SLO | operator x oracle | hpa SLO | hpa x oracle "
        "| kpa SLO | kpa x oracle | checks |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    failures: list[str] = []
    for seed in seeds:
        for name in PATTERNS:
            run_ = run_pattern(name, seed, autoscaling, ServiceConfig(), statics=False)
            cost = run_.oracle.replica_seconds
            cells = []
            for policy in POLICIES:
                result = run_.rows[policy].result
                cells += [f"{result.slo_attainment:.2%}", f"{result.replica_seconds / cost:.2f}"]
            failed = [text for text, ok in run_.checks if not ok]
            failures += [f"seed {seed}: {text}" for text in failed]
            verdict = "all PASS" if not failed else "FAIL: " + "; ".join(failed)
            lines.append(f"| {seed} | {name} | {' | '.join(cells)} | {verdict} |")
        print(f"  robustness: seed {seed} done", file=sys.stderr, flush=True)
    return [*lines, ""], failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1", help="comma-separated arrival seeds (default 1)")
    parser.add_argument("--patterns", default=",".join(PATTERNS), help="comma-separated patterns")
    parser.add_argument("--no-sensitivity", action="store_true", help="skip the sensitivity runs")
    parser.add_argument(
        "--robustness-seeds",
        default="2,3,4,5",
        help="more seeds for the compact robustness table (empty: skip)",
    )
    parser.add_argument("--results", default=str(RESULTS), help="Markdown output file")
    args = parser.parse_args(argv)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    patterns = args.patterns.split(",")
    autoscaling = load_spec()
    started = time.monotonic()

    count, seconds = performance()
    print(f"performance: one hour of {count} requests simulated in {seconds:.2f} s CPU")

    runs: list[PatternRun] = []
    for seed in seeds:
        for name in patterns:
            result = run_pattern(name, seed, autoscaling, ServiceConfig())
            runs.append(result)
            print("\n".join(table(result)), flush=True)

    failures = [text for r in runs for text, ok in r.checks if not ok]
    lines = [
        "# Autoscaling benchmark",
        "",
        "Generated by `python e2e/bench/autoscale.py"
        + (f" --seeds {args.seeds}" if args.seeds != "1" else "")
        + "` (do not edit by hand). Each pattern is one hour of Poisson arrivals "
        "(`tritonop.sim.traces`); each replica runs one model instance of 50 ms per request "
        "(20 req/s at most), starts serving 20 s after it is requested, and costs "
        "replica-seconds from request to removal. Requests reach replicas through a "
        "least-request balancer. The objective: 500 ms from arrival to response. The spec is "
        "[spec.yaml](spec.yaml): targets queueDepth 2 and queueTimeMs 100, 1 to 20 replicas, "
        "no behavior (every policy with its own defaults).",
        "",
        "Policies: `operator` (tritonop's policy, 5 s interval), `hpa` (Kubernetes HPA on the "
        "prometheus-adapter metrics, 15 s sync, 60 s rate window, 300 s scale-down window), "
        "`kpa` (Knative, 2 s tick, 60 s/6 s windows, target concurrency queueDepth + instances "
        "at 70%), `static:N`, and `oracle` (knows the arrivals; per 30 s window the fewest "
        "replicas that serve every request within the objective, started a cold start ahead).",
        "",
        f"Simulator speed: one hour of {count} requests under the operator in {seconds:.2f} s "
        "of CPU.",
        "",
        f"**Targets: {'all PASS' if not failures else f'{len(failures)} FAIL'}** "
        f"({sum(len(r.checks) for r in runs)} checks).",
        "",
        "## Results",
        "",
    ]
    for r in runs:
        lines += table(r)
    lines += [
        "## Reading the step pattern",
        "",
        "The step from 5 to 40 req/s at minute 10 cannot be served without misses by any policy "
        "that reacts to it: the first interval that sees it ends at most 5 s later, a new "
        "replica serves 20 s after that, and meanwhile one replica completes 20 of the 40 "
        "requests arriving each second. The backlog of about 500 requests stays in that "
        "replica's own queue (Triton queues per server), so every request that reached it in "
        "those ~25 s waits longer than 500 ms: about 1,000 of the hour's 60,000 requests, "
        "1.7%. Only the oracle, which starts replicas before the step, avoids them.",
        "",
    ]
    lines += [
        "## Reading the baselines",
        "",
        "`hpa` applies the ratio rule to the queue numbers themselves. Queueing is not "
        "proportional to load: during a burst the backlog keeps growing while new pods start, so "
        "each 15 s sync asks for more and the HPA climbs to maxReplicas; once the backlog is "
        "gone the queue reads near zero at any moderate load, so after its 300 s window it "
        "drops to a count that saturates again. `kpa` sizes by requests in flight per pod, "
        "assuming they are proportional to load; the derived target (2 queued + 1 executing, "
        "at 70%: 2.1 per pod) is reached only close to saturation, so it alternates between "
        "too few replicas and a panic to maxReplicas. The operator's policy turns the same "
        "targets into a utilisation through a queueing model, sizes by the arrival rate, and "
        "counts starting pods as capacity, which is what keeps it near the oracle.",
        "",
    ]
    if args.robustness_seeds:
        extra_seeds = [int(seed) for seed in args.robustness_seeds.split(",")]
        robust_lines, robust_failures = robustness(autoscaling, extra_seeds)
        lines += robust_lines
        failures += robust_failures
        lines[lines.index("## Results") - 2] += f" Robustness seeds {args.robustness_seeds}: " + (
            "all PASS." if not robust_failures else f"{len(robust_failures)} FAIL."
        )
    if not args.no_sensitivity:
        lines += sensitivity(autoscaling, seeds[0])
    Path(args.results).write_text("\n".join(lines))
    print(f"\nwrote {args.results} in {time.monotonic() - started:.0f} s")
    for text in failures:
        print(f"FAIL {text}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
