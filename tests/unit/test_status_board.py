"""`streams.cli.status_board.StatusBoard`: the status page's aggregates, bounded, on a fixed clock.

Every cap is tested with what it pushes out: the page may forget, but it says how much.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from distillguard.streams.cli.status import health_url
from distillguard.streams.cli.status_board import Caps, StatusBoard
from distillguard.streams.cli.status_page import PAGE


def decision(account: str, action: str, ts: float = 1_000_000.0, event_ts: float | None = None,
             clusters: tuple[str, ...] = (), reasons: list[str] | None = None,
             **extra: Any) -> dict[str, Any]:
    return {"decision_id": f"dg-{account}-{action}-{ts}", "ts": ts,
            "event_ts": ts - 30 if event_ts is None else event_ts, "account_id": account,
            "action": action, "ttl_s": None if action == "allow" else 900, "score": 0.9,
            "reasons": reasons or [f"score 0.90 -> {action}",
                                   *(f"cluster {c}: 40 accounts in 10 min" for c in clusters)],
            "cluster_ids": list(clusters), "model_version": "m", "mode": "enforce", **extra}


def fixed(now: float = 2_000_000.0) -> Callable[[], float]:
    return lambda: now


def test_totals_time_bins_and_the_accounts_acted_on_now() -> None:
    board = StatusBoard(clock=fixed(1100.0))  # within the decisions' TTLs
    board.add_decision(decision("a", "throttle", ts=1005.0))
    board.add_decision(decision("a", "block", ts=1012.0))  # a escalated: blocked, not throttled
    board.add_decision(decision("b", "block", ts=1019.0))
    board.add_decision(decision("b", "allow", ts=1071.0))  # b lifted
    snap = board.snapshot()
    d = snap["decisions"]
    assert d["total"] == 4 and d["by_action"] == {"block": 2, "throttle": 1, "allow": 1}
    assert d["accounts_now"] == {"block": 1, "throttle": 0, "allow": 1}
    assert d["last_ts"] == 1071.0
    bins = snap["by_processing_time"]
    assert bins["bin_s"] == 10 and bins["start"] == [1000, 1010, 1070]
    assert bins["counts"] == {"block": [0, 2, 0], "throttle": [1, 0, 0], "allow": [0, 0, 1]}
    ev = snap["by_event_time"]  # event_ts = ts - 30: 975, 982, 989 -> 960; 1041 -> 1020
    assert ev["bin_s"] == 60 and ev["start"] == [960, 1020]
    assert [x["account_id"] for x in snap["latest"]] == ["b", "b", "a", "a"]  # newest first
    assert snap["latest"][0]["reason"] == "score 0.90 -> allow"  # the only reason it has


def test_a_record_that_is_not_a_decision_is_counted_not_lost() -> None:
    board = StatusBoard(clock=fixed())
    board.add_decision({"action": "explode", "account_id": "x"})
    board.add_decision(["not", "an", "object"])
    board.add_decision(decision("a", "block"))
    board.add_unreadable("enforcement")
    snap = board.snapshot()
    assert snap["decisions"]["total"] == 1 and snap["decisions"]["not_a_decision"] == 2
    assert snap["unreadable"] == {"enforcement": 1}


def test_clusters_under_action_ranked_by_accounts_with_their_evidence() -> None:
    board = StatusBoard(clock=fixed())
    for i in range(5):
        board.add_decision(decision(f"big-{i}", "block", ts=1000.0 + i,
                                    clusters=("ip:203.0.113", "pay:fp-9")))
    board.add_decision(decision("small-0", "throttle", clusters=("tpl:abc",)))
    board.add_decision(decision("big-0", "block", ts=2000.0, clusters=("ip:203.0.113",)))
    board.add_decision(decision("ok-0", "allow", clusters=("tpl:zzz",)))  # not under action
    top = board.snapshot()["clusters"]["top"]
    assert [c["cluster_id"] for c in top] == ["ip:203.0.113", "pay:fp-9", "tpl:abc"]
    ip = top[0]
    assert ip["accounts"] == 5 and ip["block"] == 6 and ip["throttle"] == 0
    assert ip["evidence"] == "cluster ip:203.0.113: 40 accounts in 10 min"
    assert ip["last_account"] == "big-0" and ip["last_ts"] == 2000.0
    # evidence by position when no reason names the cluster (the core's order)
    board.add_decision(decision("c", "block", clusters=("k1", "k2"),
                                reasons=["score 0.95 -> block", "first crowd", "second crowd"]))
    by_id = {c["cluster_id"]: c for c in board.snapshot()["clusters"]["top"]}
    assert by_id["k1"]["evidence"] == "first crowd" and by_id["k2"]["evidence"] == "second crowd"


def test_every_cap_holds_and_says_what_it_pushed_out() -> None:
    caps = Caps(latest=3, accounts=4, clusters=2, cluster_accounts=2, top_clusters=5, bins=2,
                dead_letter_kinds=2, fleet_history=2, errors=2)
    board = StatusBoard(caps=caps, clock=fixed())
    for i in range(10):
        board.add_decision(decision(f"acc-{i}", "block", ts=1000.0 + 10 * i,
                                    clusters=(f"c{i % 3}", "shared")))
    snap = board.snapshot()
    assert len(snap["latest"]) == 3 and snap["decisions"]["accounts_known"] == 4
    assert snap["evicted"]["accounts"] == 6
    assert len(board.clusters) == 2 and snap["evicted"]["clusters"] > 0
    shared = board.clusters["shared"]
    assert len(shared.accounts) == 2 and shared.accounts_beyond_cap == 8  # counted, not named
    assert len(snap["by_processing_time"]["start"]) == 2
    assert snap["evicted"]["processing_bins_decisions"] == 8
    assert sum(sum(v) for v in snap["by_processing_time"]["counts"].values()) == 2
    for offset, reason in enumerate(("record value is not JSON: 7", "schema: 'ts' missing",
                                     "too large: 70000", "another kind",
                                     "record value is not JSON: 8")):
        board.add_dead_letter({"reason": reason, "source_topic": "t", "source_partition": 0,
                               "source_offset": offset, "ts": 5.0})
    kinds = {e["kind"]: e["count"] for e in board.snapshot()["dead_letters"]["by_reason"]}
    # two kinds followed, the rest under one line: every dead letter is in a count
    assert kinds == {"record value is not JSON: N": 2, "schema: 'ts' missing": 1,
                     "(other kinds: more than the page follows)": 2}
    assert sum(kinds.values()) == board.snapshot()["dead_letters"]["total"] == 5
    for _ in range(5):
        board.set_worker("http://w1/health", None, "refused")
    assert len(board.snapshot()["fleet"]["lag_history"]["http://w1/health"]) == 2


def test_dead_letters_by_kind_of_reason_with_where_the_last_came_from() -> None:
    board = StatusBoard(clock=fixed())
    for offset in range(3):
        board.add_dead_letter({"reason": f"field 'ts' is {86100 + offset} s past the latest",
                               "source_topic": "dg.requests", "source_partition": 4,
                               "source_offset": offset, "ts": 100.0 + offset})
    board.add_dead_letter({"no": "reason"})
    dl = board.snapshot()["dead_letters"]
    assert dl["total"] == 4 and dl["last_ts"] == 102.0
    first = dl["by_reason"][0]
    assert first["kind"] == "field 'ts' is N s past the latest" and first["count"] == 3
    assert first["source"] == "dg.requests[4]@2"
    assert dl["by_reason"][1]["kind"] == "(a dead-letter record without a reason)"


def test_the_fleet_from_health_answers_and_workers_that_do_not_answer() -> None:
    board = StatusBoard(clock=fixed())
    board.set_worker("http://127.0.0.1:6066/health", {
        "status": "ok", "pid": 7, "lag_total": 12, "events_processed_total": 900,
        "rss_bytes": 150_000_000, "dead_letters_total": 2, "alignment": {"late_verdicts": 3},
        "partitions": [{"topic": "x.requests", "partition": 3, "lag": 12},
                       {"topic": "x.requests", "partition": 1, "lag": 0},
                       {"topic": "x.account-verdicts", "partition": 1, "lag": 0}]})
    board.set_worker("http://127.0.0.1:6067/health", None, "ClientConnectorError: refused")
    workers = board.snapshot()["fleet"]["workers"]
    ok, down = workers
    assert ok["status"] == "ok" and ok["lag"] == 12 and ok["events"] == 900
    assert ok["partitions"] == {"x.account-verdicts": [1], "x.requests": [1, 3]}
    assert ok["late_verdicts"] == 3 and ok["dead_letters"] == 2
    assert down["status"] == "unreachable" and "refused" in down["error"]


def test_problems_are_reported_once_and_their_end_too() -> None:
    board = StatusBoard(clock=fixed())
    assert board.problem("broker", "Kafka does not answer") is True
    assert board.problem("broker", "Kafka does not answer") is False  # a retry: not news
    assert board.snapshot()["problems"] == [{"source": "broker",
                                             "message": "Kafka does not answer"}]
    assert board.problem("broker", None) is True
    assert board.problem("broker", None) is False
    snap = board.snapshot()
    assert snap["problems"] == []
    assert [e["message"] for e in snap["errors"]] == ["Kafka does not answer",
                                                      "resolved: Kafka does not answer"]


@pytest.mark.parametrize(("given", "url"), [
    ("127.0.0.1:6066", "http://127.0.0.1:6066/health"),
    ("http://w:6067", "http://w:6067/health"),
    ("http://w:6067/health", "http://w:6067/health"),
])
def test_worker_addresses_become_health_urls(given: str, url: str) -> None:
    assert health_url(given) == url


def test_the_page_is_self_contained_and_escapes_what_the_topics_hold() -> None:
    # nothing fetched from elsewhere: no CDN, no external script, style or font
    assert "http://" not in PAGE and "https://" not in PAGE and "//cdn" not in PAGE
    assert "<script src" not in PAGE and "<link rel=\"stylesheet\"" not in PAGE
    assert 'fetch("api/status"' in PAGE
    # the texts of records are escaped before they become markup
    for field in ("esc(d.account_id)", "esc(d.reason)", "esc(c.evidence)", "esc(e.kind)",
                  "esc(p.message)"):
        assert field in PAGE, field


def test_the_latest_decisions_are_the_newest_by_time_not_the_last_read() -> None:
    # A backlog is read a partition at a time: the newest decisions may be read first.
    board = StatusBoard(caps=Caps(latest=3), clock=fixed())
    for account, ts in [("p1-new", 50.0), ("p1-newer", 60.0), ("p2-old", 10.0),
                        ("p2-older", 5.0), ("p3-mid", 40.0), ("p3-newest", 70.0)]:
        board.add_decision(decision(account, "block", ts=ts))
    assert [d["account_id"] for d in board.snapshot()["latest"]] == \
        ["p3-newest", "p1-newer", "p1-new"]


def test_records_written_twice_are_counted_once_and_the_repeats_shown() -> None:
    # At-least-once: a worker that loses its partitions before it commits (a rebalance)
    # processes its records again: the same decision_id, the same dead-lettered source offset.
    board = StatusBoard(caps=Caps(seen_ids=3), clock=fixed())
    twice = decision("a", "block", clusters=("ip:1",))
    board.add_decision(twice)
    board.add_decision(dict(twice))
    dead = {"reason": "record value is not JSON: 1", "source_topic": "r", "source_partition": 2,
            "source_offset": 0, "ts": 1.0}
    board.add_dead_letter(dead)
    board.add_dead_letter(dict(dead))
    board.add_dead_letter({**dead, "source_offset": 1})  # another record: counted
    board.add_dead_letter({**dead, "source_offset": -1})  # no source record: never a repeat
    board.add_dead_letter({**dead, "source_offset": -1})
    snap = board.snapshot()
    assert snap["decisions"]["total"] == 1 and snap["clusters"]["top"][0]["block"] == 1
    assert snap["dead_letters"]["total"] == 4
    assert snap["duplicates"] == {"decisions": 1, "dead_letters": 1}
    for i in range(4):  # the remembered ids are bounded: the oldest is forgotten
        board.add_decision(decision(f"other-{i}", "block"))
    board.add_decision(dict(twice))
    assert board.snapshot()["decisions"]["total"] == 6


def test_a_port_in_use_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from distillguard.streams.cli.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            code = main(["status", "--port", str(port), "--workers", "0"])
        finally:
            import structlog

            structlog.reset_defaults()  # its logger wrote to pytest's capture, now closed
    assert code == 2
    err = capsys.readouterr().err
    assert f"cannot serve the status page on 127.0.0.1:{port}" in err and "--port" in err


class FakeReader:
    """The part of aiokafka's consumer the service's probe uses; `down` makes it time out."""

    def __init__(self, partitions: dict[str, set[int]], down: bool = False) -> None:
        self.partitions = partitions
        self.down = down

    def partitions_for_topic(self, name: str) -> set[int] | None:
        return self.partitions.get(name)

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        if self.down:
            raise TimeoutError("no answer")  # what a lost broker looks like to the probe
        return dict.fromkeys(tps, 10)

    async def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(tps, 4)


def test_the_probe_shows_a_lost_broker_and_missing_topics_then_clears_them() -> None:
    import asyncio

    from distillguard.streams.cli.status import StatusOptions, StatusService
    from distillguard.streams.edge.settings import load_settings

    settings = load_settings(env={})
    service = StatusService(settings, StatusOptions(poll_s=0.01))
    enforcement, dead = settings.topics["enforcement"].name, settings.topics["dead_letter"].name

    async def probe_once(reader: FakeReader) -> None:
        task = asyncio.create_task(service.probe(reader))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(probe_once(FakeReader({enforcement: {0, 1}}, down=True)))
    problems = {p["source"]: p["message"] for p in service.board.snapshot()["problems"]}
    assert "does not answer" in problems["broker"]
    asyncio.run(probe_once(FakeReader({enforcement: {0, 1}})))
    problems = {p["source"]: p["message"] for p in service.board.snapshot()["problems"]}
    assert "broker" not in problems and dead in problems["topics"]
    assert service.board.topics["enforcement"]["on_topic"] == 12  # (10 - 4) x 2 partitions
    asyncio.run(probe_once(FakeReader({enforcement: {0}, dead: {0}})))
    assert service.board.snapshot()["problems"] == []


def test_a_worker_not_up_yet_is_waiting_then_a_problem() -> None:
    import asyncio

    import aiohttp

    from distillguard.streams.cli.status import StatusOptions, StatusService
    from distillguard.streams.edge.settings import load_settings

    url = "http://127.0.0.1:1/health"  # nothing listens on port 1

    async def poll(grace: float) -> StatusService:
        service = StatusService(load_settings(env={}),
                                StatusOptions(workers=[url], startup_grace_s=grace))
        async with aiohttp.ClientSession() as session:
            await service.poll_worker(session, url)
        return service

    starting = asyncio.run(poll(30.0)).board.snapshot()
    assert starting["fleet"]["workers"][0]["status"] == "waiting"
    assert starting["problems"] == []  # the demo's page asks before its workers listen
    late = asyncio.run(poll(0.0)).board.snapshot()
    assert late["fleet"]["workers"][0]["status"] == "unreachable"
    assert late["problems"][0]["source"] == f"worker {url}"


def test_an_action_whose_ttl_ran_out_is_not_counted_as_now() -> None:
    now = [10_000.0]
    board = StatusBoard(clock=lambda: now[0])
    board.add_decision(decision("short", "block", ts=9_000.0, ttl_s=600))  # ran out at 9,600
    board.add_decision(decision("long", "block", ts=9_000.0, ttl_s=3600))  # until 12,600
    board.add_decision(decision("slow", "throttle", ts=9_500.0, ttl_s=900))  # until 10,400
    assert board.snapshot()["decisions"]["accounts_now"] == {"block": 1, "throttle": 1,
                                                             "allow": 0}
    now[0] = 11_000.0
    assert board.snapshot()["decisions"]["accounts_now"]["throttle"] == 0
