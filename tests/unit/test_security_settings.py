"""Security of the Kafka connection and of what the workers read and write.

- SASL and SSL settings parse into the aiokafka keyword arguments (admin, producer, consumer)
  and into Faust's broker credentials, and unusable combinations are refused with the setting
  named;
- no pickle codec anywhere: not in our sources, not on any topic or table of the app, and not
  even in Faust's codec registry once a worker has started;
- a bound on every record (requests, internal topics, dead letters) and every state entry
  (refused before it reaches the changelog).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import uuid
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from faust.serializers import codecs
from faust.topics import Topic
from faust.transport.drivers.aiokafka import Producer as AiokafkaProducer

from distillguard.models.partitioning import partition_for
from distillguard.streams.edge.settings import SettingsError, load_settings
from distillguard.streams.worker.process import PICKLE_CODECS, forbid_pickle
from distillguard.streams.worker.topology import (
    DEAD_LETTER_KEEP_BYTES,
    broker_credentials,
    create_app,
)
from tests.conftest import event_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def cafile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA certificate in PEM: a fresh self-signed one, or the system bundle."""
    out = tmp_path_factory.mktemp("ca") / "ca.pem"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=distillguard-test-ca", "-keyout", str(out.with_suffix(".key")),
                        "-out", str(out)], check=True, capture_output=True, timeout=60)
        return out
    except (OSError, subprocess.SubprocessError):
        if SYSTEM_CA.is_file():
            return SYSTEM_CA
        pytest.skip("no openssl and no system CA bundle to build an SSL context from")


def env(**values: str) -> dict[str, str]:
    return {f"DISTILLGUARD_{k.upper()}": v for k, v in values.items()}


# ---- SASL and SSL --------------------------------------------------------------------------------

def test_plaintext_is_the_default_and_needs_no_credentials() -> None:
    s = load_settings(env={})
    assert s.security_protocol == "PLAINTEXT"
    assert s.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(s) is None


def test_sasl_ssl_with_scram_parses_into_aiokafka_and_faust_settings(cafile: Path) -> None:
    s = load_settings(env=env(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                              sasl_username="distillguard", sasl_password="s3cret",
                              ssl_cafile=str(cafile)))
    kw = s.aiokafka_kwargs()
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("distillguard", "s3cret")
    assert isinstance(kw["ssl_context"], ssl.SSLContext)
    assert kw["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert kw["ssl_context"].check_hostname
    creds = broker_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "distillguard" and creds.password == "s3cret"
    assert str(creds.mechanism.value if hasattr(creds.mechanism, "value")
               else creds.mechanism) == "SCRAM-SHA-512"
    assert isinstance(creds.ssl_context, ssl.SSLContext)
    # the password never shows in logs of the settings
    assert "s3cret" not in repr(s)


def test_ssl_alone_gives_ssl_credentials_without_sasl(cafile: Path) -> None:
    s = load_settings(env=env(security_protocol="SSL", ssl_cafile=str(cafile)))
    kw = s.aiokafka_kwargs()
    assert kw["security_protocol"] == "SSL" and isinstance(kw["ssl_context"], ssl.SSLContext)
    assert not any(k.startswith("sasl") for k in kw)
    assert isinstance(broker_credentials(s), faust.SSLCredentials)


def test_sasl_plaintext_with_plain_has_no_ssl_context() -> None:
    s = load_settings(env=env(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                              sasl_username="u", sasl_password="p"))
    kw = s.aiokafka_kwargs()
    assert "ssl_context" not in kw and kw["sasl_mechanism"] == "PLAIN"
    creds = broker_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.ssl_context is None


def test_the_settings_file_carries_security_but_the_password_can_come_from_the_env(
        tmp_path: Path, cafile: Path) -> None:
    f = tmp_path / "dg.toml"
    f.write_text(f'security_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-256"\n'
                 f'sasl_username = "dg"\nssl_cafile = "{cafile}"\n')
    s = load_settings(env=env(sasl_password="from-env"), file=f)
    assert (s.security_protocol, s.sasl_mechanism, s.sasl_password) == (
        "SASL_SSL", "SCRAM-SHA-256", "from-env")


def test_the_app_is_built_with_the_credentials(cafile: Path, tmp_path: Path) -> None:
    s = load_settings(env=env(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
                              sasl_username="dg", sasl_password="pw", ssl_cafile=str(cafile),
                              app_id=f"dg-sec-{uuid.uuid4().hex[:6]}",
                              data_dir=str(tmp_path / "faust")))
    app = create_app(s)
    assert isinstance(app.conf.broker_credentials, faust.SASLCredentials)


@pytest.mark.parametrize(("values", "message"), [
    ({"security_protocol": "SASL_SSL"}, "sasl_mechanism"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI",
      "sasl_username": "u", "sasl_password": "p"}, "sasl_mechanism"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
      "sasl_username": "u"}, "sasl_password"),
    ({"security_protocol": "TLS"}, "security_protocol"),
    ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "ssl_cafile"),
])
def test_unusable_security_settings_are_refused_naming_the_setting(values: dict[str, str],
                                                                   message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env=env(**values))


# ---- no pickle anywhere ---------------------------------------------------------------------------

PICKLE_USE = re.compile(r"^\s*(import pickle|from pickle import)|\bpickle\.(loads?|dumps?)\b|"
                        r"serializer\s*=\s*[\"']pickle|\b(cloudpickle|dill)\b", re.MULTILINE)


def test_no_source_file_uses_pickle() -> None:
    offenders = []
    for folder in ("streams", "models", "simulator", "bench", "deploy"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if PICKLE_USE.search(path.read_text(errors="replace")):
                offenders.append(str(path.relative_to(REPO_ROOT)))
    assert not offenders, f"pickle used in {offenders}"


def test_no_topic_or_table_of_the_app_uses_a_pickle_codec(tmp_path: Path) -> None:
    s = load_settings(env=env(app_id=f"dg-sec-{uuid.uuid4().hex[:6]}",
                              data_dir=str(tmp_path / "faust")))
    app = create_app(s)
    app.finalize()
    used: list[Any] = [app.conf.key_serializer, app.conf.value_serializer]
    for agent in app.agents.values():
        used += [agent.channel.key_serializer, agent.channel.value_serializer]
    for table in app.tables.values():
        used += [table.key_serializer, table.value_serializer,
                 table.changelog_topic.key_serializer, table.changelog_topic.value_serializer]
    assert used and not any(codecs.uses_unsafe_pickle(c) for c in used if c is not None)
    assert not any("pickle" in str(c) for c in used), used


def test_a_worker_removes_every_pickle_codec_from_faust() -> None:
    saved = {name: codecs.codecs.get(name) for name in PICKLE_CODECS}
    try:
        forbid_pickle()
        for name in PICKLE_CODECS:
            with pytest.raises(KeyError):
                codecs.get_codec(name)
        assert codecs.loads("json", b'{"a": 1}') == {"a": 1}  # the others still work
    finally:
        codecs.codecs.update({k: v for k, v in saved.items() if v is not None})


# ---- size bounds ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    ("max_record_bytes", "100"), ("max_record_bytes", "2000000"),
    ("max_state_bytes", "10"), ("max_state_bytes", "2000000"),
])
def test_size_bounds_are_checked(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(env=env(**{name: value}))


def test_size_bounds_have_safe_defaults() -> None:
    s = load_settings(env={})
    assert s.max_record_bytes == 65536
    # an entry, and a dead letter (base64 of at most DEAD_LETTER_KEEP_BYTES in JSON), both
    # stay under the producer's 1 MB request limit
    assert s.max_state_bytes <= 1_000_000
    assert DEAD_LETTER_KEEP_BYTES * 4 // 3 + 4096 < 1_000_000


def run_agent(app: faust.App, agent: str, key: bytes, value: bytes, partition: int) -> None:
    async def scenario() -> None:
        async with app.agents[agent].test_context() as ctx:
            await ctx.put(value, key=key, partition=partition)
            await app.runtime.send_held()  # what the worker's timer and commits do
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, Any]]:
    """Records the agents send instead of producing them (as tests/agents does)."""
    box: list[tuple[str, Any, Any]] = []

    async def send(self: Topic, *, key: Any = None, value: Any = None, **_: Any) -> None:
        box.append((self.get_topic_name(), key, value))

    def send_soon(self: Topic, *, key: Any = None, value: Any = None,
                  partition: int | None = None, **_: Any) -> Any:
        box.append((self.get_topic_name(), key, value))

    async def produce(self: Any, topic: str, key: Any, value: Any, *_: Any, **__: Any) -> None:
        box.append((topic, key, value))

    monkeypatch.setattr(Topic, "send", send)
    monkeypatch.setattr(Topic, "send_soon", send_soon)
    monkeypatch.setattr(AiokafkaProducer, "send", produce)
    return box


def test_a_state_entry_over_the_bound_is_refused_and_dead_lettered(
        tmp_path: Path, sent: list[tuple[str, Any, Any]]) -> None:
    base = load_settings(env=env(app_id=f"dg-sec-{uuid.uuid4().hex[:6]}",
                                 data_dir=str(tmp_path / "faust")))
    # (event-time alignment off: this test runs one stage, no cluster stage tells it a mark)
    s = base.with_overrides(max_state_bytes=64, event_time_alignment=False)
    app = create_app(s)
    app.finalize()
    ev = event_dict("acct-big", 1_700_000_000.0)
    run_agent(app, "account_stage", b"acct-big", orjson.dumps(ev),
              partition_for("acct-big", s.partitions))
    assert "acct-big" not in app.tables["accounts"]
    changelog = [r for r in sent if r[0].endswith("accounts-changelog")]
    assert not changelog, "an entry over the bound must never reach the changelog"
    dead = [orjson.loads(v) for t, _, v in sent if t == s.topics["dead_letter"].name]
    assert len(dead) == 1 and "StateTooLarge" in dead[0]["reason"], dead



def test_every_record_that_changed_a_state_over_the_bound_since_its_last_write_is_dead_lettered(
        tmp_path: Path, sent: list[tuple[str, Any, Any]]) -> None:
    """A state is encoded and checked once per flush (streams/worker/held_writes.py): each
    record that changed it since its last write is dead-lettered, none is dropped unsaid."""
    base = load_settings(env=env(app_id=f"dg-sec-{uuid.uuid4().hex[:6]}",
                                 data_dir=str(tmp_path / "faust")))
    s = base.with_overrides(max_state_bytes=64, event_time_alignment=False)
    app = create_app(s)
    app.finalize()
    p = partition_for("acct-big", s.partitions)

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as ctx:
            for i in range(2):
                ev = event_dict("acct-big", 1_700_000_000.0 + i)
                await ctx.put(orjson.dumps(ev), key=b"acct-big", partition=p)
            await app.runtime.send_held()
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert "acct-big" not in app.tables["accounts"]
    assert not [r for r in sent if r[0].endswith("accounts-changelog")]
    dead = [orjson.loads(v) for t, _, v in sent if t == s.topics["dead_letter"].name]
    assert [d["reason"].rsplit("(", 1)[1] for d in dead] == ["1 of 2)", "2 of 2)"], dead
    assert all("StateTooLarge" in d["reason"] for d in dead)
    assert [d["source_offset"] for d in dead] == [0, 1], dead

def test_an_internal_record_over_the_bound_is_dead_lettered(
        tmp_path: Path, sent: list[tuple[str, Any, Any]]) -> None:
    s = load_settings(env=env(app_id=f"dg-sec-{uuid.uuid4().hex[:6]}",
                              data_dir=str(tmp_path / "faust")))
    app = create_app(s)
    app.finalize()
    run_agent(app, "cluster_stage", b"ip:203.0.113.0/24", b"{" + b" " * 70_000 + b"}", 0)
    dead = [orjson.loads(v) for t, _, v in sent if t == s.topics["dead_letter"].name]
    assert len(dead) == 1 and "70002 bytes" in dead[0]["reason"], dead


def test_a_dead_letter_keeps_at_most_256_kib_of_the_original(
        tmp_path: Path, sent: list[tuple[str, Any, Any]]) -> None:
    s = load_settings(env=env(app_id=f"dg-sec-{uuid.uuid4().hex[:6]}",
                              data_dir=str(tmp_path / "faust")))
    app = create_app(s)
    app.finalize()
    run_agent(app, "account_stage", b"acct-x", b"x" * 900_000, 0)
    dead = [orjson.loads(v) for t, _, v in sent if t == s.topics["dead_letter"].name]
    assert len(dead) == 1
    assert "900000 bytes" in dead[0]["reason"]
    assert len(dead[0]["value_b64"]) <= (DEAD_LETTER_KEEP_BYTES + 2) // 3 * 4
