"""Idle states held encoded (streams/worker/idle_states.py): what stays in memory changes, the
decisions and the changelog do not."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from distillguard.models.account import AccountState
from distillguard.models.config import DetectorConfig
from distillguard.models.events import event_from_mapping
from distillguard.models.pipeline import Pipeline
from distillguard.simulator import Scenario, generate_events
from distillguard.streams.edge.codec import (
    decode_account_state,
    decode_cluster_state,
    encode_account_state,
    encode_cluster_state,
    encode_decision,
)
from distillguard.streams.worker.held_writes import HeldWrites
from distillguard.streams.worker.idle_states import IdleStates, compact


def states(data: dict[str, Any]) -> IdleStates:
    """Generations of no length: the states unused since the previous flush go encoded."""
    return IdleStates(data, encode_account_state, decode_account_state, idle_after_s=0)


def test_a_state_untouched_for_a_flush_interval_is_kept_as_its_bytes() -> None:
    data: dict[str, Any] = {"a": AccountState.new("a", 10.0), "b": AccountState.new("b", 20.0)}
    idle = states(data)
    a, b = idle.get("a"), idle.get("b")
    idle.after_flush()  # both used before this flush: objects still
    assert data["a"] is a and data["b"] is b
    assert idle.get("b") is b  # b used again, a not
    idle.after_flush()
    assert data["a"] == encode_account_state(a)
    assert data["b"] is b
    again = idle.get("a")  # decoded at its next use, kept as the object from then on
    assert again == a and again is not a
    assert data["a"] is again
    assert idle.counts() == {"decodes": 1, "encoded_idle": 1, "unencodable": 0,
                             "undecodable": 0, "disk_failed": 0}


def test_an_idle_state_is_kept_in_an_allocation_of_its_size() -> None:
    state = AccountState.new("a", 10.0)
    data: dict[str, Any] = {"a": state}
    idle = states(data)
    idle.touched("a")
    idle.after_flush()
    idle.after_flush()
    assert data["a"] == encode_account_state(state)
    # orjson's own bytes sit in a ~4 KB buffer; the kept copy is its size
    assert sys.getsizeof(data["a"]) < sys.getsizeof(b"") + len(data["a"]) + 8
    assert sys.getsizeof(compact(b"x" * 10)) == sys.getsizeof(b"x" * 10)


def test_a_state_goes_encoded_once_unused_for_idle_after_s_at_a_flush() -> None:
    data: dict[str, Any] = {"a": AccountState.new("a", 10.0), "b": AccountState.new("b", 20.0)}
    idle = IdleStates(data, encode_account_state, decode_account_state, idle_after_s=10.0)
    a, b = idle.get("a"), idle.get("b")
    idle.after_flush(now=100.0)  # the first generation begins
    idle.after_flush(now=109.0)
    assert data["a"] is a
    idle.after_flush(now=110.0)  # the generation ends: a and b were used in it
    assert data["a"] is a
    idle.get("b")
    idle.after_flush(now=115.0)
    idle.after_flush(now=120.0)  # a unused for a whole generation, b used
    assert data["a"] == encode_account_state(a) and data["b"] is b


def test_a_state_that_does_not_encode_stays_an_object() -> None:
    def failing(_: Any) -> bytes:
        raise ValueError("no")

    data: dict[str, Any] = {"a": object()}
    idle = IdleStates(data, failing, decode_account_state, idle_after_s=0)
    idle.touched("a")
    idle.after_flush()
    idle.after_flush()
    assert type(data["a"]) is object
    assert idle.counts()["unencodable"] == 1


def test_a_read_only_look_decodes_without_keeping() -> None:
    state = AccountState.new("a", 10.0)
    data: dict[str, Any] = {"a": encode_account_state(state)}
    idle = states(data)
    assert idle.decoded("a", data["a"]) == state
    assert dict(idle.items()) == {"a": state}
    assert type(data["a"]) is bytes and idle.get("missing") is None


def test_a_stored_value_that_does_not_decode_is_dropped_and_reported() -> None:
    """A changelog record of another core's format: the key starts afresh (as Faust's
    recovery skipped it when it decoded records itself), the partition goes on."""
    told: list[tuple[Any, str]] = []
    data: dict[str, Any] = {"bad": b'{"not": "a state"}', "also": b"\xff",
                            "good": encode_account_state(AccountState.new("good", 1.0))}
    idle = IdleStates(data, encode_account_state, decode_account_state,
                      undecodable=lambda key, exc: told.append((key, type(exc).__name__)))
    assert idle.get("bad") is None and "bad" not in data
    assert [key for key, _ in idle.items()] == ["good"]
    assert "also" not in data
    assert [key for key, _ in told] == ["bad", "also"]
    assert idle.counts()["undecodable"] == 2


class ChangelogTable:
    """A table as HeldWrites sees it: its store, its changelog topic's name, what was sent."""

    name = "accounts"

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = {} if data is None else data
        self.sent: list[tuple[bytes, bytes | None]] = []

    @property
    def changelog_topic(self) -> Any:
        return self

    def get_topic_name(self) -> str:
        return "accounts-changelog"


def test_held_writes_encode_the_idle_states_at_a_flush_as_the_changelog_got_them() -> None:
    table = ChangelogTable()
    idle = states(table.data)

    async def produce(topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        table.sent.append((key, value))

    held = HeldWrites(table, produce, max_held=100, encode=encode_account_state, idle=idle)
    state = AccountState.new("a", 10.0)

    async def scenario() -> None:
        held.change(0, "a", state, cause="r1")
        await held.flush()  # written; used in this interval
        await held.flush()  # not used since: encoded, the very bytes the changelog got
    asyncio.run(scenario())
    assert table.sent == [(b'"a"', encode_account_state(state))]
    assert table.data["a"] == table.sent[0][1]
    assert idle.get("a") == state


@pytest.mark.parametrize("every", [31, 257])
def test_the_replay_decides_the_same_with_every_state_round_tripped_through_its_bytes(
        every: int) -> None:
    """What the worker does to an idle state (its changelog bytes, decoded at the next use),
    done to every account and cluster state every `every` events: byte-identical decisions.
    A state that held a reference shared with another object (a partition's verdict, say)
    would part from it here."""
    events = [event_from_mapping(e) for e in generate_events(Scenario.small())]
    plain, tripped = Pipeline(DetectorConfig()), Pipeline(DetectorConfig())
    expected = [encode_decision(d, 0.0) for ev in events for d in plain.process(ev)]
    got: list[bytes] = []
    for i, ev in enumerate(events):
        got.extend(encode_decision(d, 0.0) for d in tripped.process(ev))
        if i % every == 0:
            for key, st in tripped.accounts.items():
                tripped.accounts[key] = decode_account_state(encode_account_state(st))
            for key, cl in tripped.clusters.items():
                tripped.clusters[key] = decode_cluster_state(encode_cluster_state(cl))
    assert len(expected) > 10 and plain.counts["verdicts"], "decisions and verdicts to compare"
    assert got == expected
    assert tripped.counts == plain.counts


def test_a_settled_state_goes_encoded_at_the_next_flush_however_young_its_generation() -> None:
    """A window close of every account a partition saw (aligned windows close together) must
    not hold all their states as objects for `idle_after_s`: those it settles go back to
    their bytes at the next flush (the worker flushes between slices), unless used again."""
    data: dict[str, Any] = {k: AccountState.new(k, 10.0) for k in ("a", "b", "c")}
    idle = IdleStates(data, encode_account_state, decode_account_state, idle_after_s=3600)
    a, b, c = idle.get("a"), idle.get("b"), idle.get("c")
    idle.settled("a")
    idle.settled("b")
    assert idle.get("b") is b  # used again before the flush: in use, not settled
    idle.after_flush(now=0.0)
    assert data["a"] == encode_account_state(a)
    assert data["b"] is b and data["c"] is c  # their generation is young: objects still
    idle.after_flush(now=1.0)
    assert data["b"] is b and data["c"] is c
    assert idle.get("a") == a and idle.counts()["encoded_idle"] == 1
