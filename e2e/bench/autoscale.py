"""Autoscaling benchmark: every policy on every load, at two service profiles, in two modes.

    python e2e/bench/autoscale.py                    # everything; writes e2e/bench/RESULTS.md
    python e2e/bench/autoscale.py --quick            # step, heavy-burst and the real trace
    python e2e/bench/autoscale.py --loads spike --profiles 1s --json out.json

Loads: the built-in patterns of `tritonop.sim.traces` (step, ramp, diurnal, spike, bursty,
heavy-burst; one hour of Poisson arrivals each) and real production arrivals
(`azure-conv`: e2e/bench/traces/azure-llm-2023-conv.csv, see its README). Profiles:

  50ms: 50 ms per request, 20 s cold start, 500 ms objective, spec.yaml, patterns as built in;
  1s:   1 s per request, 30 s cold start, 5 s objective, spec-1s.yaml, patterns at a fifth of
        their rate (the real trace is replayed as recorded at both profiles).

Modes: `targets` runs the operator on the profile's spec as written; `objective` runs it on
the same spec with `autoscaling.objective: {latencyMs: <the profile's objective>,
attainment: 0.99}` instead of its targets (skipped, with the reason, while the API has no
`objective`). `hpa` and `kpa` cannot use an objective and run on the targets in both modes;
`oracle` and `static:N` use neither.

Every policy starts from the same state (`warm`: autoscaled policies with the replicas the
first minute needs, static:N with N), decides every 5 s, sees metrics of the same age and has
the same cold start; requests in flight at the end are paid for (tritonop.sim.scenario). A
second table reruns each load from minReplicas with the first cold start unscored (`cold`).

Targets (the issue's; each printed as PASS, FAIL, or OUT OF REACH when the oracle itself
misses it, with figures). A row is one load at one profile in one mode:
  objective mode, every row: SLO attainment >= 99%, replica-seconds <= the cheapest static:N
    that meets 99%; <= 1.3x the oracle on step, ramp, diurnal; <= 1.6x on bursty;
  both modes, every row: the operator is not Pareto-dominated by any static:N, hpa or kpa
    (none has both a higher attainment and fewer replica-seconds);
  targets mode, 50ms profile: step >= 98%, ramp and diurnal >= 99.5% SLO attainment, at
    <= 1.5x, 1.3x, 1.3x the oracle's replica-seconds (the results the bench had before);
  every load and profile: the oracle is a floor: at least the attainment of every static:N,
    and no more replica-seconds than the cheapest static:N that meets 99%.

A failed objective-mode target on a pattern row also gets what a policy without foresight can
do there (`Foresight`, measured with `sim.controllers.PresentRateBound`), beside the FAIL.

Also: the scale-down window and balancer sensitivity of the operator (50ms, targets mode;
--no-sensitivity skips it) and, with --robustness-seeds, the patterns at other seeds (their
checks count too, except those that need static:N).

Exits 1 when a target FAILs (OUT OF REACH does not fail). RESULTS.md is written only by a run
of every load, profile and mode (or with --results).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from tritonop.api.models import Autoscaling
from tritonop.api.validation import SpecError, parse_object
from tritonop.sim.controllers import PresentRateBound
from tritonop.sim.engine import ServiceConfig, SimulationResult, simulate
from tritonop.sim.replica import ReplicaConfig
from tritonop.sim.scenario import (
    Scenario,
    StartRule,
    initial_replicas,
    pattern_arrivals,
    run,
    trace_duration,
)
from tritonop.sim.traces import (
    PATTERNS,
    RateProfile,
    base_seconds,
    first_rise,
    parse_trace_csv,
    pattern,
    poisson_arrivals,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "RESULTS.md"
INTERVAL_S = 5.0
OBJECTIVE = 0.99
"""The attainment of the objective mode, and what a static:N must reach to 'meet' a row."""
MODES = ("targets", "objective")


@dataclass(frozen=True)
class Profile:
    """A service the loads run against: the model's speed, its cold start, its objective."""

    name: str
    spec: Path
    service_time_ms: float
    cold_start_s: float
    slo_ms: float
    pattern_scale: float
    """Built-in patterns run at this multiple of their rate (real traces never are scaled)."""

    def service(self, seed: int) -> ServiceConfig:
        return ServiceConfig(
            replica=ReplicaConfig(service_time_ms=self.service_time_ms),
            cold_start_s=self.cold_start_s,
            slo_ms=self.slo_ms,
            seed=seed,
        )


PROFILES = {
    "50ms": Profile("50ms", HERE / "spec.yaml", 50.0, 20.0, 500.0, 1.0),
    "1s": Profile("1s", HERE / "spec-1s.yaml", 1000.0, 30.0, 5000.0, 0.2),
}
TRACES = {"azure-conv": "azure-llm-2023-conv.csv"}
"""Real traces: looked up in e2e/bench/traces/, then in ../shared/traces/ beside the repo."""
LOADS = (*PATTERNS, *TRACES)
QUICK_LOADS = ("step", "heavy-burst", "azure-conv")

TARGETS_MODE: dict[str, tuple[float, float]] = {
    "step": (0.98, 1.5),
    "ramp": (0.995, 1.3),
    "diurnal": (0.995, 1.3),
}
"""Targets mode, 50ms profile: (SLO attainment at least, replica-seconds x oracle at most)."""
OBJECTIVE_COST: dict[str, float] = {"step": 1.3, "ramp": 1.3, "diurnal": 1.3, "bursty": 1.6}
"""Objective mode, both profiles: replica-seconds x oracle at most."""


# --------------------------------------------------------------------------------------------
# specs and loads
# --------------------------------------------------------------------------------------------


def spec_document(profile: Profile) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(profile.spec.read_text())
    return document


def targets_spec(profile: Profile) -> Autoscaling:
    autoscaling = parse_object(spec_document(profile)).spec.autoscaling
    assert autoscaling is not None, f"{profile.spec} must have spec.autoscaling"
    return autoscaling


def objective_spec(profile: Profile) -> Autoscaling | str:
    """The profile's spec with an objective instead of targets, or why there is none."""
    if "objective" not in Autoscaling.model_fields:
        return (
            "the API has no autoscaling.objective yet (it lands with the policy work of "
            "issue 10); the objective mode runs once it does"
        )
    document = copy.deepcopy(spec_document(profile))
    autoscaling = document["spec"]["autoscaling"]
    autoscaling.pop("targets", None)
    autoscaling["objective"] = {"latencyMs": profile.slo_ms, "attainment": OBJECTIVE}
    try:
        parsed = parse_object(document).spec.autoscaling
    except SpecError as error:
        return f"the objective spec is rejected: {error}"
    assert parsed is not None
    return parsed


def trace_path(name: str) -> Path | None:
    """Where the real trace `name` is (the repo's copy first), or None."""
    file = TRACES[name]
    for candidate in (HERE / "traces" / file, REPO.parent / "shared" / "traces" / file):
        if candidate.is_file():
            return candidate
    return None


def load_arrivals(load: str, profile: Profile, seed: int) -> tuple[list[float], float] | str:
    """Arrivals and duration of `load` at `profile`, or why the load is unavailable."""
    if load in TRACES:
        path = trace_path(load)
        if path is None:
            return (
                f"trace {TRACES[load]} not found in {HERE / 'traces'} nor in "
                f"{REPO.parent / 'shared' / 'traces'} (see e2e/bench/traces/README.md)"
            )
        arrivals = parse_trace_csv(path.read_text())
        return arrivals, trace_duration(arrivals, INTERVAL_S)
    return pattern_arrivals(load, seed, profile.pattern_scale)


# --------------------------------------------------------------------------------------------
# running one cell (one load at one profile)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One policy's figures on one cell."""

    policy: str
    attainment: float
    attainment_all: float
    p50_ms: float
    p99_ms: float
    replica_seconds: float
    max_replicas: int
    scale_events: int
    seconds: float
    """Wall-clock seconds the run took (the oracle's includes its planning)."""
    first_episode: FirstMisses | None = None
    """Where the misses fall: the first run of them, and the attainment after it."""

    @classmethod
    def of(cls, result: SimulationResult, seconds: float, policy: str | None = None) -> Outcome:
        return cls(
            first_episode=FirstMisses.of(result),
            policy=policy or result.controller,
            attainment=result.slo_attainment,
            attainment_all=result.slo_attainment_all,
            p50_ms=result.latency_percentile_ms(50),
            p99_ms=result.latency_percentile_ms(99),
            replica_seconds=result.replica_seconds,
            max_replicas=result.max_replicas,
            scale_events=result.scale_events,
            seconds=seconds,
        )


#: Misses less than this apart belong to one episode (one burst, one step).
MISS_EPISODE_GAP_S = 60.0


@dataclass(frozen=True)
class FirstMisses:
    """The first episode of misses of a run, and how the run did after it.

    A reactive policy cannot see the first burst or step of a load coming (the oracle can);
    what it does after it shows what it learned. Reported beside a failed attainment target,
    never instead of it.
    """

    start: float
    end: float
    """Arrival times of the episode's first and last missed request."""
    misses: int
    total_misses: int
    attainment_after: float
    """Attainment of the scored requests arriving after the episode (1.0 when none)."""

    @classmethod
    def of(cls, result: SimulationResult) -> FirstMisses | None:
        slo = result.slo_ms / 1000.0
        scored = [
            (arrival, latency > slo)
            for arrival, latency in zip(result.arrivals, result.latencies, strict=True)
            if arrival >= result.scored_from
        ]
        missed = [arrival for arrival, late in scored if late]
        if not missed:
            return None
        end = missed[0]
        for arrival in missed[1:]:
            if arrival - end >= MISS_EPISODE_GAP_S:
                break
            end = arrival
        after = [late for arrival, late in scored if arrival > end]
        return cls(
            start=missed[0],
            end=end,
            misses=sum(1 for arrival in missed if arrival <= end),
            total_misses=len(missed),
            attainment_after=1.0 - sum(after) / len(after) if after else 1.0,
        )

    def describe(self) -> str:
        return (
            f"{self.misses} of its {self.total_misses} misses arrive in its first episode of "
            f"misses, {self.start:.0f}-{self.end:.0f} s; after it {self.attainment_after:.2%}"
        )


@dataclass(frozen=True)
class Foresight:
    """What a policy without foresight can do on a pattern: `sim.controllers.PresentRateBound`,
    which knows the true rate at every moment (no metric delay, a decision every 0.5 s) and
    asks for maxReplicas the moment it rises above its calm, but cannot see a rise coming.

    Measured only for a row whose objective-mode targets fail, and reported beside the FAIL,
    never instead of it.
    """

    first_rise: float
    """When the rate first rises above its calm (seconds)."""
    warm: int
    """Replicas every autoscaled policy starts with: what the load before the rise needs."""
    most: int
    """maxReplicas."""
    first_misses: int
    """Misses of the bound holding `warm` until the first rise and maxReplicas from it on:
    what no policy holding only what the calm needs can avoid on the first rise."""
    allowed: int
    """Misses the objective's attainment allows on the row."""
    hold: int | None
    """Fewest replicas the bound must hold through every calm to meet the attainment (None:
    not even maxReplicas)."""
    hold_attainment: float
    below_attainment: float | None
    """The bound's attainment holding one replica fewer (None when that is not run)."""
    calm_seconds: float
    """Seconds the rate is at its calm: `hold` replicas for that long is a floor of the cost
    of any such policy that meets the attainment."""

    @property
    def calm_cost(self) -> float:
        return (self.hold or self.most) * self.calm_seconds

    def first_rise_text(self) -> str:
        return (
            f"without foresight: knowing the rate at every moment and asking for all "
            f"{self.most} replicas the moment it first rises ({self.first_rise:.0f} s), a "
            f"policy holding the {self.warm} replica{'s' if self.warm != 1 else ''} the load "
            f"before needs still misses "
            f"{self.first_misses} requests there, where {OBJECTIVE:.0%} allows "
            f"{self.allowed} on the whole row"
        )

    def hold_text(self, oracle: float) -> str:
        if self.hold is None:
            return f"without foresight not even {self.most} replicas held through the calm meet it"
        below = (
            f" ({self.hold - 1}: {self.below_attainment:.2%})"
            if self.below_attainment is not None
            else ""
        )
        return (
            f"without foresight a policy must hold {self.hold} replicas through the calm to meet "
            f"{OBJECTIVE:.0%}{below}: {self.calm_cost:.0f} replica-s for the calm alone, "
            f"{self.calm_cost / oracle:.2f}x the oracle"
        )


@dataclass
class Cell:
    """Every policy on one load at one profile."""

    load: str
    profile: str
    seed: int
    requests: int = 0
    duration: float = 0.0
    skipped: str | None = None
    operator: dict[str, Outcome] = field(default_factory=dict)
    """Per mode; a mode that cannot run has its reason in `mode_skipped`."""
    mode_skipped: dict[str, str] = field(default_factory=dict)
    mode_errors: dict[str, str] = field(default_factory=dict)
    """Modes whose operator run raised: a failed row, with the error."""
    baselines: dict[str, Outcome] = field(default_factory=dict)
    """hpa, kpa, oracle."""
    statics: list[Outcome] = field(default_factory=list)
    cold: list[Outcome] = field(default_factory=list)
    """The same policies started from minReplicas, the first cold start unscored."""
    cpu_seconds: float = 0.0
    """CPU time of the whole cell (steadier than wall-clock time on a shared machine)."""
    foresight: Foresight | None = None
    """What a policy without foresight can do, for a pattern row whose objective mode fails."""

    @property
    def oracle(self) -> Outcome:
        return self.baselines["oracle"]

    @property
    def cheapest_static(self) -> Outcome | None:
        meeting = [s for s in self.statics if s.attainment >= OBJECTIVE]
        return min(meeting, key=lambda s: s.replica_seconds, default=None)


def timed(policy: str, scenario: Scenario, label: str | None = None) -> Outcome:
    started = time.perf_counter()
    result = run(policy, scenario)
    return Outcome.of(result, time.perf_counter() - started, label)


def mode_specs(
    profile: Profile, modes: Sequence[str]
) -> tuple[dict[str, Autoscaling], dict[str, str]]:
    """The operator's spec per mode, and the modes that cannot run with the reason."""
    specs: dict[str, Autoscaling] = {}
    skipped: dict[str, str] = {}
    for mode in modes:
        spec = targets_spec(profile) if mode == "targets" else objective_spec(profile)
        if isinstance(spec, str):
            skipped[mode] = spec
        else:
            specs[mode] = spec
    return specs, skipped


def run_cell(
    load: str, profile_name: str, seed: int, modes: Sequence[str], statics: bool, cold: bool
) -> Cell:
    """Every policy on `load` at the profile; statics from 1 up to where none can do better."""
    profile = PROFILES[profile_name]
    cell = Cell(load, profile_name, seed)
    loaded = load_arrivals(load, profile, seed)
    if isinstance(loaded, str):
        cell.skipped = loaded
        return cell
    arrivals, duration = loaded
    cell.requests, cell.duration = len(arrivals), duration
    targets = targets_spec(profile)
    specs, cell.mode_skipped = mode_specs(profile, modes)

    def scenario(spec: Autoscaling, start: StartRule = "warm") -> Scenario:
        return Scenario(spec, profile.service(seed), arrivals, duration, INTERVAL_S, start)

    for policy in ("oracle", "hpa", "kpa"):
        cell.baselines[policy] = timed(policy, scenario(targets))
    for mode, spec in list(specs.items()):
        try:
            cell.operator[mode] = timed("operator", scenario(spec), f"operator ({mode})")
        except Exception as error:  # a policy that crashes fails its rows, the bench goes on
            cell.mode_errors[mode] = f"{type(error).__name__}: {error}"
            del specs[mode]
    if statics:
        # up to full attainment, and at least up to the operator's mean replicas (a static
        # count above that costs more than the operator and cannot dominate it)
        costliest = max((o.replica_seconds for o in cell.operator.values()), default=0.0)
        for count in range(1, targets.max_replicas + 1):
            outcome = timed(f"static:{count}", scenario(targets))
            cell.statics.append(outcome)
            if outcome.attainment >= 1.0 and count * duration >= costliest:
                break
    if load in PATTERNS and objective_fails(cell):
        rate = pattern(load, random.Random(seed), profile.pattern_scale)
        cell.foresight = measure_foresight(scenario(targets), rate)
    if cold:
        runs = [(policy, targets, policy) for policy in ("oracle", "hpa", "kpa")]
        runs += [("operator", spec, f"operator ({mode})") for mode, spec in specs.items()]
        cheapest = cell.cheapest_static
        if cheapest is not None:
            runs.append((cheapest.policy, targets, cheapest.policy))
        cell.cold = [timed(policy, scenario(spec, "cold"), label) for policy, spec, label in runs]
    return cell


def objective_fails(cell: Cell) -> bool:
    """Whether the objective mode misses its attainment or a cost target on the cell."""
    ours = cell.operator.get("objective")
    if ours is None:
        return False
    ratio = ours.replica_seconds / cell.oracle.replica_seconds
    cheapest = cell.cheapest_static
    return (
        ours.attainment < OBJECTIVE
        or (cell.load in OBJECTIVE_COST and ratio > OBJECTIVE_COST[cell.load])
        or (cheapest is not None and ours.replica_seconds > cheapest.replica_seconds)
    )


def _bound(scenario: Scenario, rate: RateProfile, hold: int, first_only: bool) -> SimulationResult:
    spec = scenario.autoscaling
    controller = PresentRateBound(hold, spec.max_replicas, rate.rate, first_rise_only=first_only)
    service = replace(scenario.service, initial_replicas=hold)
    return simulate(scenario.arrivals, controller, service, duration=scenario.duration)


def _misses(result: SimulationResult) -> int:
    slo = result.slo_ms / 1000.0
    return sum(1 for latency in result.latencies if latency > slo)


def measure_foresight(scenario: Scenario, rate: RateProfile) -> Foresight | None:
    """The present-rate bound on a pattern (see Foresight); None when its rate never rises."""
    rise = first_rise(rate)
    if rise is None:
        return None
    spec = scenario.autoscaling
    warm = initial_replicas("operator", scenario)
    first = _bound(scenario, rate, warm, first_only=True)
    attained: dict[int, float] = {}
    hold: int | None = None
    for count in range(warm, spec.max_replicas + 1):
        attained[count] = _bound(scenario, rate, count, first_only=False).slo_attainment
        if attained[count] >= OBJECTIVE:
            hold = count
            break
    top = hold if hold is not None else spec.max_replicas
    if top - 1 >= 1 and top - 1 not in attained:
        attained[top - 1] = _bound(scenario, rate, top - 1, first_only=False).slo_attainment
    return Foresight(
        first_rise=rise,
        warm=warm,
        most=spec.max_replicas,
        first_misses=_misses(first),
        allowed=math.floor(len(scenario.arrivals) * (1.0 - OBJECTIVE) + 1e-9),
        hold=hold,
        hold_attainment=attained[top],
        below_attainment=attained.get(top - 1),
        calm_seconds=base_seconds(rate),
    )


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------

PASS, FAIL, OUT_OF_REACH = "PASS", "FAIL", "OUT OF REACH"


@dataclass(frozen=True)
class Check:
    status: str
    text: str


def _figures(outcome: Outcome) -> str:
    return f"{outcome.policy} {outcome.attainment:.2%} at {outcome.replica_seconds:.0f} replica-s"


def check_cell(cell: Cell) -> list[Check]:
    """The module docstring's targets for one cell (both modes)."""
    if cell.skipped:
        return []
    checks: list[Check] = []
    where = f"{cell.load}/{cell.profile}"
    oracle = cell.oracle
    cheapest = cell.cheapest_static
    if cell.statics:
        best = max(cell.statics, key=lambda s: s.attainment)
        floor_ok = oracle.attainment >= best.attainment and (
            cheapest is None or oracle.replica_seconds <= cheapest.replica_seconds
        )
        text = f"{where}: oracle is a floor: {_figures(oracle)}; best static {_figures(best)}" + (
            f"; cheapest meeting {OBJECTIVE:.0%}: {_figures(cheapest)}" if cheapest else ""
        )
        checks.append(Check(PASS if floor_ok else FAIL, text))
    for mode, error in cell.mode_errors.items():
        checks.append(Check(FAIL, f"{where} {mode}: the operator's policy raised {error}"))
    rivals = [*cell.statics, cell.baselines["hpa"], cell.baselines["kpa"]]
    for mode, ours in cell.operator.items():
        label = f"{where} {mode}:"
        ratio = ours.replica_seconds / oracle.replica_seconds
        dominators = [
            r
            for r in rivals
            if r.attainment > ours.attainment and r.replica_seconds < ours.replica_seconds
        ]
        checks.append(
            Check(
                FAIL if dominators else PASS,
                f"{label} operator ({ours.attainment:.2%}, {ours.replica_seconds:.0f} replica-s) "
                f"not Pareto-dominated by {'any static:N, ' if cell.statics else ''}hpa or kpa"
                + (
                    f" - dominated by {', '.join(_figures(r) for r in dominators[:3])}"
                    if dominators
                    else ""
                ),
            )
        )
        if mode == "targets" and cell.profile == "50ms" and cell.load in TARGETS_MODE:
            slo_target, cost_target = TARGETS_MODE[cell.load]
            checks.append(_attainment_check(label, ours, oracle, slo_target))
            checks.append(
                Check(
                    PASS if ratio <= cost_target else FAIL,
                    f"{label} operator replica-seconds {ratio:.2f}x oracle <= {cost_target:g}x",
                )
            )
        if mode == "objective":
            checks += _objective_checks(cell, label, ours, ratio)
    return checks


def _objective_checks(cell: Cell, label: str, ours: Outcome, ratio: float) -> list[Check]:
    """Objective mode's targets on one cell: attainment, the cheapest static, the oracle."""
    checks: list[Check] = []
    oracle, cheapest = cell.oracle, cell.cheapest_static
    attainment = _attainment_check(label, ours, oracle, OBJECTIVE)
    if attainment.status == FAIL and cell.foresight is not None:
        attainment = _beside(attainment, cell.foresight.first_rise_text())
    checks.append(attainment)
    if not cell.statics:
        pass  # robustness runs: no static:N to compare with
    elif cheapest is None:
        checks.append(
            Check(
                OUT_OF_REACH,
                f"{label} no static:N up to maxReplicas meets {OBJECTIVE:.0%} (best "
                f"{_figures(max(cell.statics, key=lambda s: s.attainment))}): no "
                "cheapest static meeting it to undercut",
            )
        )
    else:
        static_check = Check(
            PASS if ours.replica_seconds <= cheapest.replica_seconds else FAIL,
            f"{label} operator {ours.replica_seconds:.0f} replica-s <= cheapest "
            f"static meeting {OBJECTIVE:.0%}: {_figures(cheapest)}",
        )
        if static_check.status == FAIL and cell.foresight is not None:
            text = cell.foresight.hold_text(oracle.replica_seconds)
            static_check = _beside(static_check, text)
        checks.append(static_check)
    if cell.load in OBJECTIVE_COST:
        limit = OBJECTIVE_COST[cell.load]
        cost_check = Check(
            PASS if ratio <= limit else FAIL,
            f"{label} operator replica-seconds {ratio:.2f}x oracle <= {limit:g}x",
        )
        if cost_check.status == FAIL and cell.foresight is not None:
            text = cell.foresight.hold_text(oracle.replica_seconds)
            cost_check = _beside(cost_check, text)
        checks.append(cost_check)
    return checks


def _beside(check: Check, figure: str) -> Check:
    """The check with a figure beside its verdict (in parentheses, or after the ones there)."""
    if check.text.endswith(")"):
        return replace(check, text=f"{check.text[:-1]}; {figure})")
    return replace(check, text=f"{check.text} ({figure})")


def _attainment_check(label: str, ours: Outcome, oracle: Outcome, target: float) -> Check:
    text = f"{label} operator SLO attainment {ours.attainment:.2%} >= {target:.1%}"
    if ours.attainment >= target:
        return Check(PASS, text)
    if oracle.attainment < target:
        return Check(OUT_OF_REACH, f"{text} (the oracle itself reaches {oracle.attainment:.2%})")
    if ours.first_episode is not None:
        text += f" ({ours.first_episode.describe()})"
    return Check(FAIL, text)


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------

HEADER = (
    "| policy | SLO attainment | p50 ms | p99 ms | replica-seconds | x oracle | max replicas"
    " | scale events |"
)


def cell_table(cell: Cell, checks: Sequence[Check]) -> list[str]:
    """Markdown for one cell: its policies, the statics, the checks."""
    title = f"### {cell.load} at {cell.profile}"
    if cell.skipped:
        return [title, "", f"Skipped: {cell.skipped}.", ""]
    profile = PROFILES[cell.profile]
    lines = [
        title,
        "",
        f"Seed {cell.seed}, {cell.requests} requests over {cell.duration:.0f} s; "
        f"{profile.service_time_ms:g} ms per request, {profile.cold_start_s:g} s cold start, "
        f"objective {profile.slo_ms:g} ms.",
        "",
        HEADER,
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cheapest = cell.cheapest_static
    shown = [*cell.operator.values(), *cell.baselines.values()]
    if cheapest is not None:
        shown.append(replace(cheapest, policy=f"{cheapest.policy} (cheapest meeting 99%)"))
    oracle_cost = cell.oracle.replica_seconds
    for o in shown:
        lines.append(
            f"| {o.policy} | {o.attainment:.2%} | {o.p50_ms:.0f} | {o.p99_ms:.0f} "
            f"| {o.replica_seconds:.0f} | {o.replica_seconds / oracle_cost:.2f} "
            f"| {o.max_replicas} | {o.scale_events} |"
        )
    for mode, reason in cell.mode_skipped.items():
        lines.append(f"| operator ({mode}) | skipped: {reason} | | | | | | |")
    for mode, error in cell.mode_errors.items():
        lines.append(f"| operator ({mode}) | raised {error} | | | | | | |")
    if cell.statics:
        statics = ", ".join(f"{s.policy} {s.attainment:.2%}" for s in cell.statics)
        lines += ["", f"Static replicas (SLO attainment): {statics}."]
    lines += ["", *(f"- {c.status} {c.text}" for c in checks), ""]
    return lines


def summary_table(cells: Sequence[Cell]) -> list[str]:
    """Operator (per mode) against the oracle and the cheapest static that meets 99%."""
    lines = [
        "| load | profile | mode | operator | x oracle | oracle | cheapest static meeting 99% "
        "| hpa | kpa |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def short(o: Outcome | None) -> str:
        if o is None:
            return "none"
        return f"{o.attainment:.2%} / {o.replica_seconds:.0f}"

    for cell in cells:
        if cell.skipped:
            lines.append(f"| {cell.load} | {cell.profile} | | skipped: {cell.skipped} | | | | | |")
            continue
        cheapest = cell.cheapest_static
        statics = f"{cheapest.policy} {short(cheapest)}" if cheapest else "none"
        if not cell.statics:
            statics = "not run"
        for mode in MODES:
            ours = cell.operator.get(mode)
            if ours is None:
                if mode in cell.mode_skipped:
                    lines.append(
                        f"| {cell.load} | {cell.profile} | {mode} | not run (no objective "
                        "API yet) | | | | | |"
                    )
                if mode in cell.mode_errors:
                    lines.append(
                        f"| {cell.load} | {cell.profile} | {mode} | raised "
                        f"{cell.mode_errors[mode]} | | | | | |"
                    )
                continue
            lines.append(
                f"| {cell.load} | {cell.profile} | {mode} | {short(ours)} "
                f"| {ours.replica_seconds / cell.oracle.replica_seconds:.2f} "
                f"| {short(cell.oracle)} | {statics} | {short(cell.baselines['hpa'])} "
                f"| {short(cell.baselines['kpa'])} |"
            )
    return [*lines, ""]


def cold_table(cells: Sequence[Cell]) -> list[str]:
    lines = [
        "| load | profile | policy | SLO attainment after the first cold start | over every "
        "request | replica-seconds |",
        "|---|---|---|---:|---:|---:|",
    ]
    for cell in cells:
        for o in cell.cold:
            lines.append(
                f"| {cell.load} | {cell.profile} | {o.policy} | {o.attainment:.2%} "
                f"| {o.attainment_all:.2%} | {o.replica_seconds:.0f} |"
            )
    return [*lines, ""]


@dataclass(frozen=True)
class Sensitivity:
    """One pattern at 50ms in targets mode, under another scale-down window or balancer."""

    load: str
    windows: list[tuple[str, Outcome]]
    """(window, operator outcome) for the operator's default and Kubernetes' 300 s."""
    random: dict[str, Outcome]
    """Every autoscaled policy behind random balancing (a plain Service, kube-proxy)."""


def run_sensitivity(load: str, seed: int) -> Sensitivity:
    profile = PROFILES["50ms"]
    loaded = load_arrivals(load, profile, seed)
    assert not isinstance(loaded, str)
    arrivals, duration = loaded
    spec = targets_spec(profile)
    slow = spec.model_copy(
        update={
            "behavior": spec.behavior.model_validate(
                {"scaleDown": {"stabilizationWindowSeconds": 300}}
            )
        }
    )
    base = Scenario(spec, profile.service(seed), arrivals, duration, INTERVAL_S)
    windows = [
        ("60 s", timed("operator", base)),
        ("300 s", timed("operator", replace(base, autoscaling=slow))),
    ]
    plain = replace(base, service=replace(base.service, balancer="random"))
    random_rows = {p: timed(p, plain) for p in ("operator", "hpa", "kpa", "oracle")}
    return Sensitivity(load, windows, random_rows)


def sensitivity_tables(rows: Sequence[Sensitivity], cells: Sequence[Cell]) -> list[str]:
    """The sensitivity tables; x oracle against the main table's oracle of the same load."""
    oracle_cost = {
        cell.load: cell.oracle.replica_seconds
        for cell in cells
        if cell.profile == "50ms" and not cell.skipped
    }
    lines = [
        "## Sensitivity (50ms profile, targets mode)",
        "",
        "### Scale-down window: the operator's default 60 s against Kubernetes' 300 s",
        "",
        "| pattern | window | SLO attainment | replica-seconds | x oracle |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        for window, o in row.windows:
            lines.append(
                f"| {row.load} | {window} | {o.attainment:.2%} | {o.replica_seconds:.0f} "
                f"| {o.replica_seconds / oracle_cost[row.load]:.2f} |"
            )
    lines += [
        "",
        "### Random balancing (a plain Service through kube-proxy), every policy",
        "",
        "| pattern | policy | SLO attainment | replica-seconds | x oracle (random) |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        oracle = row.random["oracle"].replica_seconds
        for policy, o in row.random.items():
            lines.append(
                f"| {row.load} | {policy} | {o.attainment:.2%} | {o.replica_seconds:.0f} "
                f"| {o.replica_seconds / oracle:.2f} |"
            )
    return [*lines, ""]


def robustness_table(cells: Sequence[Cell], checks: dict[CheckKey, list[Check]]) -> list[str]:
    lines = [
        "## Robustness across arrival seeds",
        "",
        "The patterns at other seeds, without static:N (so without the checks that need it).",
        "",
        "| seed | load | profile | mode | operator | x oracle | hpa | kpa | checks |",
        "|---:|---|---|---|---:|---:|---:|---:|---|",
    ]
    for cell in cells:
        failed = [c.text for c in checks[(cell.seed, cell.load, cell.profile)] if c.status != PASS]
        verdict = "all PASS" if not failed else "; ".join(failed)
        for mode, ours in cell.operator.items():
            lines.append(
                f"| {cell.seed} | {cell.load} | {cell.profile} | {mode} "
                f"| {ours.attainment:.2%} / {ours.replica_seconds:.0f} "
                f"| {ours.replica_seconds / cell.oracle.replica_seconds:.2f} "
                f"| {cell.baselines['hpa'].attainment:.2%} | {cell.baselines['kpa'].attainment:.2%} "
                f"| {verdict} |"
            )
    return [*lines, ""]


def performance() -> tuple[int, float]:
    """CPU seconds to simulate one hour of 20,000 requests (about 5.6 req/s) under the operator."""
    rng = random.Random(7)
    rate = 20_000 / 3600
    arrivals = poisson_arrivals(RateProfile("flat", 3600.0, rate, lambda t: rate), rng)
    scenario = Scenario(targets_spec(PROFILES["50ms"]), ServiceConfig(), arrivals, 3600.0)
    started = time.process_time()
    run("operator", scenario)
    return len(arrivals), time.process_time() - started


def _cell_job(arguments: tuple[str, str, int, tuple[str, ...], bool, bool]) -> Cell:
    started = time.process_time()
    cell = run_cell(*arguments)
    cell.cpu_seconds = time.process_time() - started
    return cell


def _sensitivity_job(arguments: tuple[str, int]) -> tuple[Sensitivity, float]:
    started = time.process_time()
    return run_sensitivity(*arguments), time.process_time() - started


def _selection(text: str, choices: Sequence[str], what: str) -> list[str]:
    chosen = [item for item in text.split(",") if item]
    unknown = [item for item in chosen if item not in choices]
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(choices)}")
    return chosen


CheckKey = tuple[int, str, str]
"""(seed, load, profile)."""


@dataclass
class Report:
    """Everything one run measured, for the console, Markdown and JSON."""

    cells: list[Cell]
    robustness: list[Cell]
    sensitivity: list[Sensitivity]
    checks: dict[CheckKey, list[Check]]
    elapsed: float
    cpu: float
    jobs: int
    speed: tuple[int, float]
    """(requests, CPU seconds) of the simulator speed figure."""

    @property
    def every_check(self) -> list[Check]:
        return [c for cell_checks in self.checks.values() for c in cell_checks]

    def count(self, status: str) -> int:
        return sum(1 for c in self.every_check if c.status == status)

    @property
    def verdict(self) -> str:
        return (
            f"{len(self.every_check)} checks: {self.count(PASS)} PASS, {self.count(FAIL)} FAIL, "
            f"{self.count(OUT_OF_REACH)} OUT OF REACH"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--loads", default=",".join(LOADS), help="comma-separated loads")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="50ms,1s")
    parser.add_argument("--modes", default=",".join(MODES), help="targets,objective")
    parser.add_argument("--quick", action="store_true", help=f"loads {','.join(QUICK_LOADS)}")
    parser.add_argument("--seed", type=int, default=1, help="arrival seed of the patterns")
    parser.add_argument(
        "--robustness-seeds",
        default="",
        metavar="S,S",
        help="also run the patterns at these seeds, without static:N (default none)",
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start table")
    parser.add_argument(
        "--no-sensitivity", action="store_true", help="skip the scale-down/balancer tables"
    )
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument(
        "--results", help="Markdown output (default RESULTS.md, written only by a full run)"
    )
    args = parser.parse_args(argv)
    loads = list(QUICK_LOADS) if args.quick else _selection(args.loads, LOADS, "load")
    profiles = _selection(args.profiles, list(PROFILES), "profile")
    modes = tuple(_selection(args.modes, MODES, "mode"))
    extra_seeds = [int(seed) for seed in args.robustness_seeds.split(",") if seed]
    full = set(loads) == set(LOADS) and set(profiles) == set(PROFILES) and set(modes) == set(MODES)
    results = Path(args.results) if args.results else (RESULTS if full else None)
    started = time.monotonic()

    speed = performance()
    print(
        f"performance: one hour of {speed[0]} requests under the operator in {speed[1]:.2f} s CPU"
    )
    main_jobs = [
        (load, profile, args.seed, modes, True, not args.no_cold)
        for load in loads
        for profile in profiles
    ]
    robust_jobs = [
        (load, profile, seed, modes, False, False)
        for seed in extra_seeds
        for load in loads
        if load in PATTERNS
        for profile in profiles
    ]
    patterns = [load for load in loads if load in PATTERNS and "50ms" in profiles]
    report = Report([], [], [], {}, 0.0, 0.0, args.jobs, speed)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        sensitivity = (
            []
            if args.no_sensitivity
            else [pool.submit(_sensitivity_job, (p, args.seed)) for p in patterns]
        )
        for cell in pool.map(_cell_job, [*main_jobs, *robust_jobs]):
            key = (cell.seed, cell.load, cell.profile)
            report.checks[key] = check_cell(cell)
            report.cpu += cell.cpu_seconds
            if len(report.cells) < len(main_jobs):
                report.cells.append(cell)
                print("\n".join(cell_table(cell, report.checks[key])), flush=True)
            else:
                report.robustness.append(cell)
        for future in sensitivity:
            row, cpu = future.result()
            report.sensitivity.append(row)
            report.cpu += cpu
    report.elapsed = time.monotonic() - started

    print("\n## Operator against the oracle and the cheapest static\n")
    print("\n".join(summary_table(report.cells)))
    if not args.no_cold:
        print("## From minReplicas (cold start)\n")
        print("\n".join(cold_table(report.cells)))
    if report.robustness:
        print("\n".join(robustness_table(report.robustness, report.checks)))
    if report.sensitivity:
        print("\n".join(sensitivity_tables(report.sensitivity, report.cells)))
    print(
        f"{report.verdict}; {report.elapsed:.0f} s with {args.jobs} processes, "
        f"{report.cpu:.0f} s of CPU"
    )
    for c in report.every_check:
        if c.status != PASS:
            print(f"{c.status} {c.text}")
    if args.json:
        payload = {
            "seconds": round(report.elapsed, 1),
            "cpu_seconds": round(report.cpu, 1),
            "jobs": args.jobs,
            "cells": [asdict(cell) for cell in report.cells],
            "robustness": [asdict(cell) for cell in report.robustness],
            "sensitivity": [asdict(row) for row in report.sensitivity],
            "checks": [
                {"seed": seed, "load": load, "profile": profile, **asdict(c)}
                for (seed, load, profile), cell_checks in report.checks.items()
                for c in cell_checks
            ],
        }
        Path(args.json).write_text(json.dumps(payload, indent=1))
    if results is not None:
        results.write_text("\n".join(markdown(report)))
        print(f"wrote {results}")
    return 1 if report.count(FAIL) else 0


def markdown(report: Report) -> list[str]:
    requests, cpu = report.speed
    lines = [
        "# Autoscaling benchmark",
        "",
        "Generated by `python e2e/bench/autoscale.py` (do not edit by hand); what is simulated, "
        "the policies and the rules that make the comparison fair are in [README.md](README.md).",
        "",
        f"**{report.verdict}.** The run took {report.elapsed:.0f} s of wall-clock time with "
        f"{report.jobs} processes and {report.cpu:.0f} s of CPU; the simulator runs one hour of "
        f"{requests} requests under the operator in {cpu:.2f} s of CPU.",
        "",
        "## Operator against the oracle and the cheapest static",
        "",
        "Each cell: SLO attainment / replica-seconds. `x oracle` is the operator's "
        "replica-seconds over the oracle's. The cheapest static is the fewest fixed replicas "
        f"that serve {OBJECTIVE:.0%} of the requests within the objective.",
        "",
        *summary_table(report.cells),
        "## Failed and out-of-reach targets",
        "",
    ]
    misses = [c for c in report.every_check if c.status != PASS]
    lines += [f"- {c.status} {c.text}" for c in misses] or ["None."]
    lines += ["", "## Every load and profile", ""]
    for cell in report.cells:
        lines += cell_table(cell, report.checks[(cell.seed, cell.load, cell.profile)])
    if any(cell.cold for cell in report.cells):
        lines += [
            "## From minReplicas (cold start)",
            "",
            "The other start rule: every policy, static:N included, starts with minReplicas "
            "ready; requests arriving before one interval plus one cold start (25 s at 50ms, "
            "35 s at 1s) are not scored, since no policy could have served them otherwise. "
            "The static row is the cheapest static meeting 99% from the warm start.",
            "",
            *cold_table(report.cells),
        ]
    if report.robustness:
        lines += robustness_table(report.robustness, report.checks)
    if report.sensitivity:
        lines += sensitivity_tables(report.sensitivity, report.cells)
    return lines


if __name__ == "__main__":
    sys.exit(main())
