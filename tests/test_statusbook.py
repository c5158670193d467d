"""The status book: writers merge their own parts, an unchanged status is never sent, a writer's
compute sees the status another writer left, and the times come from the injected clock."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from fakes import FakeClock
from tritonop import conditions as c
from tritonop.autoscale.types import ConditionFlag
from tritonop.statusbook import StatusBook, StatusChange

KEY = ("ml", "svc")


class Writer:
    """Records what the book sends; `gone` plays a service deleted meanwhile."""

    def __init__(self, gone: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = gone

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        assert (namespace, name) == KEY
        self.sent.append(status)
        return not self.gone


def ready(status: bool, reason: str) -> ConditionFlag:
    return ConditionFlag(c.READY, status, reason, "")


def test_writers_merge_their_parts_and_an_unchanged_status_is_not_sent() -> None:
    writer, clock = Writer(), FakeClock(0.0)
    book = StatusBook(writer, clock)
    reconcile = StatusChange({"url": "http://svc"}, [ready(False, c.ROLLOUT_IN_PROGRESS)], 3)
    autoscaler = StatusChange(
        {"desiredReplicas": 2},
        [ConditionFlag(c.SCALING_ACTIVE, True, c.VALID_METRICS, "")],
        3,
    )
    assert book.update(KEY, None, lambda _: reconcile)
    assert book.update(KEY, None, lambda _: autoscaler)
    assert not book.update(KEY, None, lambda _: reconcile)  # nothing new: nothing sent
    assert len(writer.sent) == 2
    last = writer.sent[-1]
    assert (last["url"], last["desiredReplicas"]) == ("http://svc", 2)
    assert [(x["type"], x["observedGeneration"]) for x in last["conditions"]] == [
        (c.READY, 3),
        (c.SCALING_ACTIVE, 3),
    ]
    assert book.get(KEY, None) == last


def test_riders_go_with_a_write_the_other_fields_call_for_and_never_cause_one() -> None:
    writer, clock = Writer(), FakeClock(0.0)
    book = StatusBook(writer, clock)
    first = StatusChange({"url": "http://a"}, [], 1, {"reconciledDigest": "d1"})
    assert book.update(KEY, None, lambda _: first)
    assert writer.sent[-1]["reconciledDigest"] == "d1"
    # Only the rider differs: nothing is sent, and the book keeps what was written.
    assert not book.update(
        KEY, None, lambda _: StatusChange({"url": "http://a"}, [], 1, {"reconciledDigest": "d2"})
    )
    assert book.get(KEY, None)["reconciledDigest"] == "d1"
    # A write called for by another field carries the rider; None removes it.
    assert book.update(
        KEY, None, lambda _: StatusChange({"url": "http://b"}, [], 1, {"reconciledDigest": None})
    )
    assert "reconciledDigest" not in writer.sent[-1]
    assert len(writer.sent) == 2


def test_transition_times_come_from_the_clock() -> None:
    writer, clock = Writer(), FakeClock(0.0)
    book = StatusBook(writer, clock)
    book.update(KEY, None, lambda _: StatusChange({}, [ready(False, c.ROLLOUT_IN_PROGRESS)], 1))
    clock.advance(60)
    book.update(KEY, None, lambda _: StatusChange({}, [ready(False, c.NO_REPLICAS_AVAILABLE)], 1))
    clock.advance(60)
    book.update(KEY, None, lambda _: StatusChange({}, [ready(True, c.REPLICAS_READY)], 1))
    times = [s["conditions"][0]["lastTransitionTime"] for s in writer.sent]
    assert times == ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-01T00:02:00Z"]


def test_the_first_update_starts_from_the_seen_status_and_none_changes_nothing() -> None:
    writer = Writer()
    book = StatusBook(writer, FakeClock())
    seen = {"url": "http://old", "metrics": {"queueDepth": 1.0}, "conditions": []}
    assert book.get(KEY, seen) == seen
    assert not book.update(KEY, seen, lambda current: None)
    assert writer.sent == []
    assert not book.update(KEY, seen, lambda current: StatusChange({"url": "http://old"}, [], 0))
    assert writer.sent == []  # merged equals what the object already shows
    assert book.update(KEY, seen, lambda current: StatusChange({"metrics": None}, [], 0))
    assert writer.sent[-1] == {"url": "http://old", "conditions": []}


def test_a_service_deleted_meanwhile_leaves_nothing_behind() -> None:
    writer = Writer(gone=True)
    book = StatusBook(writer, FakeClock())
    assert not book.update(KEY, None, lambda _: StatusChange({"replicas": 1}, [], 1))
    assert len(book) == 0 and book._locks == {}
    assert book.get(KEY, {"replicas": 7}) == {"replicas": 7}
    assert book._locks == {}


def test_forget_starts_over_even_while_an_update_runs() -> None:
    """The autoscaling loop's last interval may still be writing when the delete handler
    forgets the service: what it merges is not kept."""
    writer = Writer()
    book = StatusBook(writer, FakeClock())
    assert book.update(KEY, None, lambda _: StatusChange({"replicas": 1}, [], 1))
    inside, release = threading.Event(), threading.Event()

    def slow(current: Mapping[str, Any]) -> StatusChange:
        inside.set()
        release.wait(5)
        return StatusChange({"replicas": 2}, [], 1)

    running = threading.Thread(target=book.update, args=(KEY, None, slow))
    running.start()
    inside.wait(5)
    book.forget(KEY)
    release.set()
    running.join(5)
    assert len(book) == 0 and book._locks == {}
    assert book.get(KEY, {"replicas": 7}) == {"replicas": 7}


def test_a_writer_computes_from_the_status_the_previous_writer_left() -> None:
    """Two threads: the second writer's compute waits for the lock, then sees the first's part."""
    writer = Writer()
    book = StatusBook(writer, FakeClock())
    inside, release = threading.Event(), threading.Event()
    seen_by_second: list[Mapping[str, Any]] = []

    def slow(current: Mapping[str, Any]) -> StatusChange:
        inside.set()
        release.wait(5)
        return StatusChange({"readyReplicas": 2}, [], 1)

    def second(current: Mapping[str, Any]) -> StatusChange:
        seen_by_second.append(dict(current))
        return StatusChange({"replicaSummary": f"{current.get('readyReplicas')}/2"}, [], 1)

    first = threading.Thread(target=book.update, args=(KEY, None, slow))
    first.start()
    inside.wait(5)
    other = threading.Thread(target=book.update, args=(KEY, None, second))
    other.start()
    release.set()
    first.join(5)
    other.join(5)
    assert seen_by_second[0]["readyReplicas"] == 2
    assert writer.sent[-1]["replicaSummary"] == "2/2"
