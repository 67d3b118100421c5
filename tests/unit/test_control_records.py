"""The control topic's records (streams/edge/control.py): the codec against
contract/control-record.schema.json, every reason a record is refused, tombstones, and applying
records to the `AllowList` the core reads, with what that does to an account's decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from distillguard.models.account import Verdict
from distillguard.models.account_stage import AccountPartition, AccountStage
from distillguard.models.allowlist import Allowance, AllowList
from distillguard.models.config import DetectorConfig
from distillguard.models.messages import AccountVerdict
from distillguard.models.operator import OperatorDecision, OperatorDecisions
from distillguard.streams.edge.control import (
    ABSENT,
    FULL,
    GRANTED,
    IN_SETTINGS,
    REPLACED,
    REVOKED,
    UNCHANGED,
    AllowListKeeper,
    ControlRecord,
    InvalidControlRecord,
    allow_record,
    decide_record,
    decode_control,
    revoke_record,
)
from tests.conftest import contract_validator, make_event

T0 = 1_767_225_600.0
CFG = DetectorConfig()


def value(**fields: Any) -> dict[str, Any]:
    """A valid grant's value; override fields by keyword."""
    return {"kind": "allow", "scope": "org", "id": "org-1", "reason": "verified customer",
            "by": "analyst-1", "ts": T0, **fields}


def encoded(obj: Any) -> bytes:
    return orjson.dumps(obj)


def schema_errors(obj: Any) -> list[str]:
    return [e.message for e in contract_validator("control-record").iter_errors(obj)]


# --- valid records ----------------------------------------------------------------------------


def test_a_grant_decodes_to_its_allowance() -> None:
    record = decode_control(b"allow:org:org-1", encoded(value()))
    assert record == ControlRecord(
        "org", "org-1", Allowance("org", "org-1", "verified customer", "control", "analyst-1"),
        T0)
    assert record.key == "allow:org:org-1"
    assert record.allowance.describe() == (
        "allow-listed org org-1 (control by analyst-1): verified customer")
    assert schema_errors(value()) == []


@pytest.mark.parametrize("fields", [
    {"scope": "account", "id": "acct-9"},
    {"by": None},
    {"ts": 0},
    {"id": "org:with:colons"},
    {"id": "x" * 128},
])
def test_other_valid_grants(fields: dict[str, Any]) -> None:
    obj = value(**fields)
    key = f"allow:{obj['scope']}:{obj['id']}".encode()
    record = decode_control(key, encoded(obj))
    assert (record.scope, record.id) == (obj["scope"], obj["id"])
    assert record.allowance is not None and record.allowance.by == (obj["by"] or "")
    assert schema_errors(obj) == []


def test_by_may_be_left_out() -> None:
    obj = value()
    del obj["by"]
    assert decode_control(b"allow:org:org-1", encoded(obj)).allowance.by == ""
    assert schema_errors(obj) == []


def test_a_tombstone_revokes_its_key() -> None:
    assert decode_control(b"allow:account:acct-9", None) == ControlRecord("account", "acct-9",
                                                                          None)


def test_allow_record_and_revoke_record_write_what_a_worker_reads() -> None:
    key, raw = allow_record("account", "acct-9", "benchmark partner", "alice", ts=T0)
    assert key == b"allow:account:acct-9"
    obj = orjson.loads(raw)
    assert obj == {"kind": "allow", "scope": "account", "id": "acct-9",
                   "reason": "benchmark partner", "by": "alice", "ts": T0}
    assert schema_errors(obj) == []
    assert decode_control(key, raw).allowance == Allowance("account", "acct-9",
                                                           "benchmark partner", "control", "alice")
    assert orjson.loads(allow_record("org", "o", "r")[1])["by"] is None  # no author known
    assert revoke_record("org", "org-1") == (b"allow:org:org-1", None)
    with pytest.raises(InvalidControlRecord, match="reason"):
        allow_record("org", "org-1", "   ")  # refused before it is written
    with pytest.raises(InvalidControlRecord, match="the id is empty"):
        revoke_record("org", "")


# --- refused records: the reason a dead letter carries ----------------------------------------


@pytest.mark.parametrize(("key", "reason"), [
    (None, "record has no key"),
    (b"", "record has no key"),
    (b"\xff\xfe", "record key is not UTF-8"),
    (b"org-1", "is not allow:<org|account>:<id>"),
    (b"allow:org", "is not allow:<org|account>:<id>"),
    (b"deny:org:org-1", "unknown kind 'deny'"),
    (b"allow:team:t-1", "scope 'team' is not org or account"),
    (b"allow:org:", "the id is empty"),
    (b"allow:org: org-1", "the id has surrounding spaces"),
    (b"allow:org:" + b"x" * 129, "the id is 129 characters, at most 128"),
])
def test_bad_keys_are_refused_tombstone_or_not(key: bytes | None, reason: str) -> None:
    for raw in (encoded(value()), None):
        with pytest.raises(InvalidControlRecord) as err:
            decode_control(key, raw)
        assert reason in err.value.reason


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff\xfe{", "record value is not UTF-8"),
    (b"{not json", "record value is not JSON"),
    (b"", "record value is not JSON"),
    (b'["allow", "org", "org-1"]', "record value is not a JSON object"),
    (encoded(value(expires_ts=T0 + 60)), "unknown field(s) 'expires_ts'"),
    (encoded({k: v for k, v in value().items() if k != "reason"}), "field(s) 'reason' missing"),
    (encoded({k: v for k, v in value().items() if k not in ("kind", "ts")}),
     "field(s) 'kind', 'ts' missing"),
    (encoded(value(kind="deny")), "kind 'deny' is not one of: allow"),
    (encoded(value(scope="team")), "scope 'team' is not org or account"),
    (encoded(value(id="")), "id '' is empty"),
    (encoded(value(id=7)), "id 7 must be a string, not int"),
    (encoded(value(id="org-1 ")), "has surrounding spaces"),
    (encoded(value(id="o" * 129)), "is 129 characters, at most 128"),
    (encoded(value(reason="")), "reason must be a non-empty string"),
    (encoded(value(reason="  ")), "reason must be a non-empty string"),
    (encoded(value(reason=None)), "reason must be a non-empty string"),
    (encoded(value(reason="r" * 513)), "reason is 513 characters, at most 512"),
    (encoded(value(by=7)), "by must be a string of at most 128 characters or null"),
    (encoded(value(by="b" * 129)), "by must be a string"),
    (encoded(value(ts="2026-01-01")), "ts '2026-01-01' is not a time"),
    (encoded(value(ts=-1)), "ts -1 is not a time"),
    (encoded(value(ts=True)), "ts True is not a time"),
    (encoded(value(ts=None)), "ts None is not a time"),
])
def test_bad_values_are_refused_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidControlRecord) as err:
        decode_control(b"allow:org:org-1", raw)
    assert reason in err.value.reason
    assert isinstance(err.value, ValueError)  # one line from the console script
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    assert schema_errors(obj), "the contract refuses it too"


def test_a_key_naming_another_scope_or_id_than_the_value_is_refused() -> None:
    for key in (b"allow:org:org-2", b"allow:account:org-1"):
        with pytest.raises(InvalidControlRecord, match="does not name the value's org 'org-1'"):
            decode_control(key, encoded(value()))


def test_an_oversized_record_is_refused() -> None:
    raw = encoded(value(reason="r" * 500))
    with pytest.raises(InvalidControlRecord, match="over the limit of 100"):
        decode_control(b"allow:org:org-1", raw, max_bytes=100)


# --- applying records -------------------------------------------------------------------------


def grant(scope: str, id_: str, reason: str = "verified", by: str = "a") -> ControlRecord:
    key, raw = allow_record(scope, id_, reason, by, ts=T0)
    return decode_control(key, raw)


def revoke(scope: str, id_: str) -> ControlRecord:
    return decode_control(*revoke_record(scope, id_))


def test_records_grant_replace_and_revoke_in_order() -> None:
    allow = AllowList()
    keeper = AllowListKeeper(allow)
    assert keeper.apply(grant("org", "org-1")) == GRANTED
    assert allow.lookup("anyone", "org-1").reason == "verified"
    assert keeper.apply(grant("org", "org-1")) == UNCHANGED  # read again: nothing to log
    assert keeper.apply(grant("org", "org-1", "renewed contract", "b")) == REPLACED
    assert allow.lookup("anyone", "org-1").describe() == (
        "allow-listed org org-1 (control by b): renewed contract")
    assert keeper.apply(grant("account", "acct-1")) == GRANTED
    assert keeper.apply(revoke("org", "org-1")) == REVOKED
    assert allow.lookup("anyone", "org-1") is None and allow.lookup("acct-1", None) is not None
    assert keeper.apply(revoke("org", "org-1")) == ABSENT
    assert keeper.apply(revoke("account", "acct-2")) == ABSENT
    assert len(allow) == 1


def test_the_settings_allowances_hold_whatever_the_topic_says() -> None:
    fixed = Allowance("account", "acct-1", "listed in the settings", "settings")
    allow = AllowList()
    allow.grant(fixed)
    keeper = AllowListKeeper(allow, [fixed])
    assert keeper.apply(grant("account", "acct-1", "other reason")) == IN_SETTINGS
    assert keeper.apply(revoke("account", "acct-1")) == IN_SETTINGS
    assert allow.lookup("acct-1", None) == fixed
    # the same id in the other scope is another allowance
    assert keeper.apply(grant("org", "acct-1")) == GRANTED


def test_a_full_allow_list_refuses_new_grants_but_not_replacements(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("distillguard.models.allowlist.MAX_ALLOWANCES", 2)
    allow = AllowList()
    keeper = AllowListKeeper(allow)
    assert keeper.apply(grant("org", "o1")) == GRANTED
    assert keeper.apply(grant("org", "o2")) == GRANTED
    assert keeper.apply(grant("account", "a3")) == FULL
    assert allow.lookup("a3", None) is None and len(allow) == 2
    assert keeper.apply(grant("org", "o2", "renewed")) == REPLACED
    assert keeper.apply(revoke("org", "o1")) == REVOKED
    assert keeper.apply(grant("account", "a3")) == GRANTED


# --- what the core does with it ---------------------------------------------------------------


def test_an_account_allowed_by_a_record_is_lifted_at_its_next_event_and_acted_on_once_revoked(
        validate: Callable[[str, Any], None]) -> None:
    """The worker's path without Kafka: control records applied through the keeper to the
    AllowList the account stage was built with, while the stage runs."""
    allow = AllowList()
    keeper = AllowListKeeper(allow)
    stage = AccountStage(CFG, allow)
    part = AccountPartition.create(CFG, 0)
    # a harvester's requests: its own behaviour bears the crowd's verdict out
    harvest = {"org_id": "org-1", "reasoning_requested": True, "task_category": "coding"}
    state, _ = stage.on_event(None, make_event("acct-1", T0, 0, **harvest), part)
    verdict = Verdict("pay:p", 1.0, T0, T0 + CFG.verdict_ttl_s, "cv-pay", "cluster pay:p convicted",
                      0, 1.0, 1.0)
    state, _ = stage.on_verdict(state, AccountVerdict("acct-1", verdict, T0), part)
    ts = T0 + CFG.verdict_delay_s
    state, out = stage.on_event(state, make_event("acct-1", ts, 1, **harvest), part)
    assert [d.action for d in out.decisions] in (["throttle"], ["block"]), "acted on first"

    assert keeper.apply(grant("org", "org-1", "enterprise contract", "analyst-1")) == GRANTED
    state, out = stage.on_event(state, make_event("acct-1", ts + 1, 2, **harvest), part)
    assert [d.action for d in out.decisions] == ["allow"]
    lifted = out.decisions[0]
    assert lifted.reasons == ["allow-listed org org-1 (control by analyst-1): enterprise contract"]
    validate("enforcement-decision", lifted.to_record(processed_ts=ts + 2))
    state, out = stage.on_event(state, make_event("acct-1", ts + 2, 3, **harvest), part)
    assert out.decisions == [], "an allowed account is never acted on"

    assert keeper.apply(revoke("org", "org-1")) == REVOKED
    state, out = stage.on_event(state, make_event("acct-1", ts + 3, 4, **harvest), part)
    assert [d.action for d in out.decisions] in (["throttle"], ["block"])


# --- operators' decisions: decide records -----------------------------------------------------


def decide_value(**fields: Any) -> dict[str, Any]:
    """A valid decide record's value; override fields by keyword."""
    return {"kind": "decide", "scope": "account", "id": "acct-1", "action": "block",
            "ttl_s": 3600, "rate_limit_rpm": None, "reason": "ticket T-9", "by": "alice",
            "ts": T0, **fields}


def test_a_decide_record_decodes_to_an_operator_decision_and_back() -> None:
    manual = OperatorDecision("acct-1", "throttle", 600, 1, "incident I-3", "bob", T0)
    key, raw = decide_record(manual)
    assert key == b"decide:account:acct-1" and schema_errors(orjson.loads(raw)) == []
    record = decode_control(key, raw)
    assert record.decision == manual and record.allowance is None and not record.tombstone
    assert record.key == "decide:account:acct-1"
    gone = decode_control(*revoke_record("account", "acct-1", "decide"))
    assert gone.tombstone and gone.kind == "decide" and gone.key == "decide:account:acct-1"
    for fields in ({}, {"action": "allow"}, {"rate_limit_rpm": None, "action": "block"}):
        assert schema_errors(decide_value(**fields)) == []
        assert decode_control(b"decide:account:acct-1", encoded(decide_value(**fields)))


@pytest.mark.parametrize(("fields", "reason"), [
    ({"action": "ban"}, "action 'ban' is not one of: allow, throttle, block"),
    ({"ttl_s": 0}, "ttl_s 0 is not a whole number of seconds from 1"),
    ({"ttl_s": 31 * 86400}, "ttl_s 2678400 is not a whole number"),
    ({"ttl_s": 60.5}, "ttl_s 60.5 is not a whole number"),
    ({"ttl_s": True}, "ttl_s True is not a whole number"),
    ({"action": "throttle"}, "a throttle needs a whole number of requests per minute"),
    ({"action": "throttle", "rate_limit_rpm": -1}, "a throttle needs a whole number"),
    ({"rate_limit_rpm": 5}, "rate_limit_rpm 5: only a throttle has one"),
    ({"by": ""}, "by must name the operator"),
    ({"by": None}, "by must name the operator"),
    ({"kind": "allow"}, "kind 'allow' is not the key's 'decide'"),
    ({"scope": "team"}, "scope 'team' is not org or account"),
    ({"note": "x"}, "unknown field(s) 'note'"),
])
def test_bad_decide_records_are_refused_with_the_reason(fields: dict[str, Any],
                                                        reason: str) -> None:
    obj = decide_value(**fields)
    with pytest.raises(InvalidControlRecord) as err:
        decode_control(b"decide:account:acct-1", encoded(obj))
    assert reason in err.value.reason
    assert schema_errors(obj), "the contract refuses it too"


def test_a_decide_record_is_about_an_account_or_an_organisation() -> None:
    manual = OperatorDecision("org-1", "throttle", 600, 2, "abuse I-5", "bob", T0, "org")
    key, raw = decide_record(manual)
    assert key == b"decide:org:org-1" and schema_errors(orjson.loads(raw)) == []
    assert decode_control(key, raw).decision == manual
    assert manual.key == "org:org-1" and manual.decision_id != OperatorDecision(
        "org-1", "throttle", 600, 2, "abuse I-5", "bob", T0).decision_id
    # the key names the value's scope and id
    with pytest.raises(InvalidControlRecord, match="does not name the value's account"):
        decode_control(b"decide:org:acct-1", encoded(decide_value()))
    with pytest.raises(InvalidControlRecord, match="does not name the value's org"):
        decode_control(b"decide:account:acct-1", encoded(decide_value(scope="org")))
    with pytest.raises(InvalidControlRecord, match="scope 'team' is not org or account"):
        decode_control(b"decide:team:t-1", encoded(decide_value(scope="team", id="t-1")))


def test_an_organisations_decision_is_held_and_lifted_apart_from_an_accounts() -> None:
    held = OperatorDecisions()
    keeper = AllowListKeeper(AllowList(), operator=held)
    by_org = OperatorDecision("same-id", "block", 600, None, "r", "bob", T0, "org")
    by_account = OperatorDecision("same-id", "allow", 600, None, "r", "bob", T0)
    assert keeper.apply(decode_control(*decide_record(by_org))) == GRANTED
    assert keeper.apply(decode_control(*decide_record(by_account))) == GRANTED
    assert len(held) == 2
    assert held.in_force("acct-9", T0 + 1, org_id="same-id") == by_org
    assert keeper.apply(decode_control(*revoke_record("org", "same-id", "decide"))) == REVOKED
    assert held.in_force("acct-9", T0 + 1, org_id="same-id") is None
    assert held.in_force("same-id", T0 + 1) == by_account


def test_decide_records_hold_and_revoke_operator_decisions_beside_the_allow_list() -> None:
    allow, held = AllowList(), OperatorDecisions()
    keeper = AllowListKeeper(allow, [Allowance("account", "acct-1", "settings", "settings")],
                             held)
    manual = OperatorDecision("acct-1", "block", 3600, None, "ticket", "alice", T0)
    record = decode_control(*decide_record(manual))
    assert keeper.apply(record) == GRANTED  # the settings' allowance does not shadow it
    assert keeper.apply(record) == UNCHANGED
    assert held.in_force("acct-1", T0 + 1) == manual and len(allow) == 0
    assert keeper.apply(decode_control(*revoke_record("account", "acct-1", "decide"))) == REVOKED
    assert held.in_force("acct-1", T0 + 1) is None
    assert keeper.apply(decode_control(*revoke_record("account", "acct-1", "decide"))) == ABSENT


def test_an_operators_block_through_the_stage_holds_then_the_detector_decides_afresh() -> None:
    held = OperatorDecisions()
    keeper = AllowListKeeper(AllowList(), operator=held)
    stage = AccountStage(CFG, operator=held)
    part = AccountPartition.create(CFG, 0)
    state, _ = stage.on_event(None, make_event("acct-1", T0, 0), part)
    manual = OperatorDecision("acct-1", "block", 600, None, "ticket", "alice", T0 + 1)
    keeper.apply(decode_control(*decide_record(manual)))
    for i, t in enumerate((T0 + 2, T0 + 300, T0 + 599), start=1):
        state, out = stage.on_event(state, make_event("acct-1", t, i), part)
        assert out.decisions == [] and state.action == "block"
    state, out = stage.on_event(state, make_event("acct-1", T0 + 700, 9), part)
    assert out.decisions == [], "ran out: an ordinary account, nothing to decide"
