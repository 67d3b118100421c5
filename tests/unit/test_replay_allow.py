"""A replay runs with the settings' allow-list, as the live fleet does from its start: the
allowed accounts are never acted on and everyone else's decisions are unchanged (an allowance
changes what the policy does with an account's evidence, never the evidence)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from distillguard.models.config import DetectorConfig
from distillguard.simulator import Scenario, write_files
from distillguard.streams.edge.settings import load_settings
from distillguard.streams.offline.replay import replay_allow_list, replay_file

CFG = DetectorConfig()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    write_files(Scenario.small(), out)
    return out


def decided(path: Path) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for line in path.read_bytes().splitlines():
        d = orjson.loads(line)
        out.setdefault(d["account_id"], []).append((d["action"], d["decision_id"]))
    return out


def test_the_allowed_are_never_acted_on_and_the_others_decided_alike(small: Path,
                                                                     tmp_path: Path) -> None:
    replay_file(small / "events.jsonl", tmp_path / "plain.jsonl", CFG)
    plain = decided(tmp_path / "plain.jsonl")
    acted = sorted(a for a, ds in plain.items() if any(act != "allow" for act, _ in ds))
    assert len(acted) >= 4, "the small scenario acts on campaign accounts"
    orgs = {}
    for line in (small / "events.jsonl").read_bytes().splitlines():
        e = orjson.loads(line)
        if e.get("org_id"):
            orgs.setdefault(e["account_id"], e["org_id"])
    by_org = next(a for a in acted if a in orgs)
    by_account = [a for a in acted if a != by_org][:3]
    same_org = {a for a, o in orgs.items() if o == orgs[by_org]}

    settings = load_settings(env={"DISTILLGUARD_ALLOW_ACCOUNTS": ",".join(by_account),
                                  "DISTILLGUARD_ALLOW_ORGS": orgs[by_org]})
    note = io.StringIO()
    allow = replay_allow_list(settings, note=note)
    assert note.getvalue() == ""  # nothing read from Kafka, nothing to say
    result = replay_file(small / "events.jsonl", tmp_path / "allowed.jsonl", CFG, allow=allow)
    assert result.events > 0
    allowed = decided(tmp_path / "allowed.jsonl")
    exempt = set(by_account) | same_org
    assert not exempt & set(allowed), "an allow-listed account or organisation is never acted on"
    assert {a: ds for a, ds in plain.items() if a not in exempt} == allowed
