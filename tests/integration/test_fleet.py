"""The worker fleet on the real broker: traffic in, contract-valid decisions out, bad records to
the dead-letter topic while consumption goes on, and two workers splitting the partitions."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
import urllib.error
import urllib.request

import orjson
import pytest

from distillguard.simulator import Scenario, account_labels, generate_events
from distillguard.streams.edge.settings import Settings
from tests.conftest import contract_validator, event_dict
from tests.integration.conftest import (
    Fleet,
    consume_until,
    event_records,
    produce,
    wait_for_lag_zero,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

# Large enough for clusters to form (campaigns of tens of accounts), small enough to stream in
# seconds: ~22k events over 1.5 simulated hours.
SCENARIO = dataclasses.replace(Scenario.default(), scale=0.25, duration_h=1.5, seed=11)


def assignments(fleet: Fleet) -> list[list[int] | None]:
    """Each worker's latest logged assignment of requests partitions."""
    latest: list[list[int] | None] = []
    for path in sorted(fleet.log_dir.glob("worker-*.log")):
        found = None
        for line in path.read_text(errors="replace").splitlines():
            if '"partitions_assigned"' in line:
                found = json.loads(line[line.index("{"):])["partitions"]
        latest.append(found)
    return latest


def wait_for_split(fleet: Fleet, partitions: int, timeout_s: float) -> list[list[int] | None]:
    deadline = time.monotonic() + timeout_s
    split: list[list[int] | None] = []
    while time.monotonic() < deadline:
        split = assignments(fleet)
        if len(split) == len(fleet.procs) and all(split):
            union = sorted(p for parts in split for p in parts or [])
            if union == list(range(partitions)):
                return split
        assert all(fleet.alive()), fleet.logs()
        time.sleep(0.5)  # polling a log file; the condition has its own deadline
    return split


SIGNING_KEY = "fleet-test-signing-key-of-40-characters!"


def test_two_workers_split_partitions_and_emit_contract_valid_decisions(run, fleet) -> None:
    partitions = run.partitions
    # The records between the stages signed, as in a secured deployment: the headers must
    # survive the real producer, broker and Faust's consumer, or no verdict would be read.
    fleet.env["DISTILLGUARD_INTERNAL_RECORD_KEYS"] = SIGNING_KEY
    fleet.start(count=2)
    split = wait_for_split(fleet, partitions, timeout_s=90)
    assert len(split) == 2 and all(split), f"workers did not both get partitions: {split}"
    first, second = (set(s or []) for s in split)
    assert first.isdisjoint(second) and first | second == set(range(partitions)), split

    events = list(generate_events(SCENARIO))
    attack = {lab["account_id"] for lab in account_labels(SCENARIO) if lab["label"] == "attack"}
    asyncio.run(produce(run, event_records(events)))

    def enough(records: list) -> bool:
        return len({orjson.loads(r.value)["account_id"] for r in records} & attack) >= 20

    decisions = asyncio.run(consume_until(run, run.topic_enforcement, enough, timeout_s=240,
                                          alive=lambda: all(fleet.alive())))
    assert all(fleet.alive()), fleet.logs()
    assert decisions, f"no decisions on the enforcement topic\n{fleet.logs()}"
    validator = contract_validator("enforcement-decision")
    for rec in decisions:
        value = orjson.loads(rec.value)
        errors = list(validator.iter_errors(value))
        assert not errors, errors[0].message
        assert rec.key.decode() == value["account_id"]
        assert value["action"] in ("throttle", "block", "allow")
        assert value["model_version"] == run.detector.model_version
    acted = {orjson.loads(r.value)["account_id"] for r in decisions}
    assert len(acted & attack) >= 20, "campaign accounts should be among those acted on"
    signer = run.with_overrides(internal_record_keys=(SIGNING_KEY,)).record_signer()
    verdicts = asyncio.run(consume_until(run, run.topic_account_verdicts, lambda r: len(r) >= 5,
                                         timeout_s=60))
    assert verdicts and all(signer.refusal("account_verdicts", r.partition, r.value,
                                                   r.headers) is None
                            for r in verdicts), "every verdict record carries this app's signature"
    # Both workers made decisions: the work really was shared. The campaign accounts above may
    # all be one worker's so far (a fresh-clone CI run checked too early): the other's verdicts
    # are on their way, so wait for them.
    def both_decided() -> bool:
        logs = [p.read_text() for p in sorted(fleet.log_dir.glob("worker-*.log"))]
        return len(logs) == 2 and all('"decision"' in log for log in logs)
    wait_until(both_decided, 90, "each worker to log its decisions", fleet)


def test_bad_records_go_to_dead_letter_and_the_worker_keeps_consuming(run, fleet) -> None:
    fleet.start(count=1)
    good = [event_dict(f"acct-dlq-{i}", 1_767_225_600.0 + i, n=i) for i in range(40)]
    not_utf8 = b"\xff\xfe{\"ts\": 1}"
    bad_records = [
        (b"acct-x", not_utf8),
        (b"acct-x", b"{not json"),
        (b"acct-x", orjson.dumps({**good[0], "prompt_simhash": "XYZ"})),  # schema violation
        (b"acct-x", orjson.dumps({**good[0], "status": "200"})),  # wrong type
        (b"acct-x", orjson.dumps({**good[0], "user_agent": "x" * 70_000})),  # over 64 KiB
        (None, orjson.dumps(good[0])),  # no key
        # a day ahead of the time the record is written: it would make the partition's events late
        (b"acct-x", orjson.dumps({**good[0], "account_id": "acct-x", "ts": time.time() + 86_400})),
        (b"acct-x", orjson.dumps({**good[0], "account_id": "acct-x", "completion_tokens": 1e300})),
    ]
    records = event_records(good[:20]) + bad_records + event_records(good[20:])
    asyncio.run(produce(run, records))

    dead = asyncio.run(consume_until(run, run.topic_dead_letter,
                                     lambda rs: len(rs) >= len(bad_records), timeout_s=120,
                                     alive=lambda: all(fleet.alive())))
    assert all(fleet.alive()), fleet.logs()
    assert len(dead) == len(bad_records), fleet.logs()
    by_value = {}
    for rec in dead:
        body = orjson.loads(rec.value)
        assert body["reason"] and body["source_topic"] == run.topic_requests
        assert isinstance(body["source_partition"], int) and body["source_offset"] >= 0
        original = base64.b64decode(body["value_b64"]) if body["value_b64"] else None
        by_value[original] = body["reason"]
    assert set(by_value) == {v for _, v in bad_records}, "every bad record, with its bytes"
    assert "UTF-8" in by_value[not_utf8]
    assert "JSON" in by_value[b"{not json"]
    assert "prompt_simhash" in by_value[bad_records[2][1]]
    assert "status" in by_value[bad_records[3][1]]
    assert "over the limit" in by_value[bad_records[4][1]]
    assert "no key" in by_value[bad_records[5][1]]
    assert "'ts' is 86" in by_value[bad_records[6][1]]  # ~86,400 s past the latest accepted
    assert "'completion_tokens' must be 0..10000000" in by_value[bad_records[7][1]]

    # /health, /ready and /metrics are the only pages: Faust's own would list the workers and read table
    # keys over HTTP
    port = fleet.ports[0]
    assert fleet.health()[0] is not None
    for path in ("/table/", "/router/", "/graph/", "/stats/"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 404, f"{path} answered {status}"

    # The valid records after the bad ones were consumed too: the group caught up.
    lag = asyncio.run(wait_for_lag_zero(run, run.topic_requests, run.partitions, timeout_s=60,
                                        alive=lambda: all(fleet.alive())))
    assert lag == 0, f"the worker did not consume everything (lag {lag})\n{fleet.logs()}"
    assert all(fleet.alive())

    # Caught up, it says it is ready: GET /ready, what a readiness probe asks (deploy/k8s/),
    # 200 once its status is ok or idle.
    def ready() -> tuple[int, dict] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=3) as r:
                answer = (r.status, json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            answer = (exc.code, json.loads(exc.read()))
        return answer if answer[0] == 200 else None

    status, body = wait_until(ready, 30, "GET /ready to answer 200", fleet)
    assert body == {"status": body["status"], "ready": True} and body["status"] in ("ok", "idle")


def test_a_worker_creates_its_changelog_topics_before_faust_starts(run: Settings) -> None:
    """Left to Faust, the workers of a new fleet declared the changelogs while joining the group,
    and on a fresh broker one kept a changelog at 0 partitions in its metadata: its table writes
    failed and nobody recovered that changelog. The worker now creates them up front."""
    from distillguard.streams.edge.topics import TopicMismatchError, delete_topics, ensure_topics
    from distillguard.streams.worker.process import declare_changelogs
    from distillguard.streams.worker.topology import changelog_topic_specs, create_app

    app = create_app(run)
    expected = {f"{run.app_id}-{table}-changelog": partitions for table, partitions in (
        ("accounts", run.topics["requests"].partitions),
        ("clusters", run.topics["cluster_summaries"].partitions),
        ("account_contexts", run.topics["requests"].partitions))}
    specs = changelog_topic_specs(app)
    assert {s.name: s.partitions for s in specs} == expected
    assert all(s.config == {"cleanup.policy": "compact"} for s in specs)
    try:
        assert sorted(asyncio.run(declare_changelogs(run, app))) == sorted(expected)
        assert asyncio.run(declare_changelogs(run, app)) == []  # the next worker: nothing to do
        # they exist with these partition counts: one more is a mismatch
        wrong = [dataclasses.replace(specs[0], partitions=specs[0].partitions + 1)]
        with pytest.raises(TopicMismatchError):
            asyncio.run(ensure_topics(run.kafka_bootstrap, wrong))
    finally:
        asyncio.run(delete_topics(run.kafka_bootstrap, list(expected)))
