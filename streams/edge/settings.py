"""One settings object, read once at the entry point from the environment and an optional file.

Every field has an environment variable `DISTILLGUARD_<FIELD>` (upper case). A TOML file named
by `DISTILLGUARD_SETTINGS_FILE` (or `--settings`) may set the same fields at its top level and
detector tunables in a `[detector]` table (see `models.config.DetectorConfig` for the names);
the environment wins over the file, the file over the defaults. Detector tunables can also come
from the environment as `DISTILLGUARD_DETECTOR_<NAME>`. Unknown keys are an error, never ignored.

Fields:

| field                  | env                                 | default               |
|------------------------|-------------------------------------|-----------------------|
| kafka_bootstrap        | DISTILLGUARD_KAFKA_BOOTSTRAP        | 127.0.0.1:9092        |
| app_id                 | DISTILLGUARD_APP_ID                 | distillguard          |
| topic_requests …       | DISTILLGUARD_TOPIC_REQUESTS …       | deploy/topics.toml    |
| partitions             | DISTILLGUARD_PARTITIONS             | 12 (topics.toml)      |
| store                  | DISTILLGUARD_STORE                  | memory://             |
| web_port               | DISTILLGUARD_WEB_PORT               | 6066                  |
| web_bind               | DISTILLGUARD_WEB_BIND               | 127.0.0.1             |
| data_dir               | DISTILLGUARD_DATA_DIR               | .distillguard/faust   |
| log_format             | DISTILLGUARD_LOG_FORMAT             | console (or json)     |
| max_record_bytes       | DISTILLGUARD_MAX_RECORD_BYTES       | 65536                 |
| max_event_ahead_s      | DISTILLGUARD_MAX_EVENT_AHEAD_S      | 300                   |
| security_protocol      | DISTILLGUARD_SECURITY_PROTOCOL      | PLAINTEXT             |
| sasl_mechanism         | DISTILLGUARD_SASL_MECHANISM         | (none)                |
| sasl_username          | DISTILLGUARD_SASL_USERNAME          | (none)                |
| sasl_password          | DISTILLGUARD_SASL_PASSWORD          | (none)                |
| ssl_cafile             | DISTILLGUARD_SSL_CAFILE             | (none)                |
| shadow                 | DISTILLGUARD_SHADOW                 | false                 |
| stall_timeout_s        | DISTILLGUARD_STALL_TIMEOUT_S        | 120                   |
| max_state_bytes        | DISTILLGUARD_MAX_STATE_BYTES        | 900000                |
| standby_replicas       | DISTILLGUARD_STANDBY_REPLICAS       | 0                     |
| session_timeout_s      | DISTILLGUARD_SESSION_TIMEOUT_S      | 10                    |
| source_idle_wall_s     | DISTILLGUARD_SOURCE_IDLE_WALL_S     | 30                    |
| event_time_alignment   | DISTILLGUARD_EVENT_TIME_ALIGNMENT   | true                  |
| idle_state_after_s     | DISTILLGUARD_IDLE_STATE_AFTER_S     | 10                    |
| idle_states_on_disk    | DISTILLGUARD_IDLE_STATES_ON_DISK    | false                 |
| allow_orgs             | DISTILLGUARD_ALLOW_ORGS             | (none)                |
| allow_accounts         | DISTILLGUARD_ALLOW_ACCOUNTS         | (none)                |
| internal_record_keys   | DISTILLGUARD_INTERNAL_RECORD_KEYS   | (none: not signed)    |

partitions: the partition count of every keyed topic of the fleet (requests, account_verdicts,
cluster_summaries, enforcement, decisions; not control nor dead_letter), 1 to 1024: at most that
many workers share the work. Workers, `topics create`, replay, sweep and evaluate all use it
(replay gives every account the partition-local context it has live), so they must agree; a
worker refuses topics or table changelogs of another count. Changing it re-maps every key:
re-partition into new topics under a new app id, never in place (docs/operations.md,
"Re-partitioning").
stall_timeout_s: a worker holding source partitions with lag > 0 that has committed and
recovered nothing for this long exits with code 3 (streams/worker/health.py). max_state_bytes: the
largest encoded table entry (account state, cluster state, model snapshot) a worker writes; a
larger one is refused and dead-lettered, never sent to the changelog; the detector's
`cluster_member_bytes` and `cluster_pending_bytes` together must be at most 90% of it (a
cluster's members and waiting summaries are capped by their bytes on the wire so that its
state fits, models/cluster.py). standby_replicas: Faust
table standby replicas; they only help with a persistent store (rocksdb://), the memory store
re-reads every changelog on each rebalance anyway (docs/operations.md). session_timeout_s: how
long the group waits for a silent (killed, partitioned) worker before moving its partitions.
source_idle_wall_s: event-time alignment (streams/worker/topology.py) makes the cluster stage wait
for every partition of the requests topic, and the account stage wait for the cluster stage; a
partition that has had nothing to read for this many seconds (wall clock) is reported idle and
no longer waited for until its next record (the stated failure: its summaries may then come
behind, /health `alignment`). event_time_alignment: that waiting, on by default (a backlog
decides as the replay does, docs/operations.md "Event-time alignment"); false makes the account
stage run as fast as it reads and count the verdicts that come late (the workers before issue
17). Every worker of an app needs the same value.
idle_state_after_s: a table state (an account's, a cluster's) that nothing has used for this many
seconds of wall clock is held as its encoded changelog bytes, a third of its size as objects,
and decoded at its next use (streams/worker/idle_states.py); shorter saves memory and costs a
decode for an account that comes back (watch `distillguard_idle_states_total`), 1 to 3600.
idle_states_on_disk: those bytes go to a RocksDB database of the worker's own under
`data_dir/idle-states/` instead of its memory (streams/worker/cold_states.py): a cache, rebuilt
from the changelogs like the tables, removed when the worker exits. For a worker tracking
hundreds of thousands of accounts or more (docs/operations.md, "Idle states on disk").
max_event_ahead_s: how far a request's `ts` may be ahead of the time its record was written to
Kafka (a file's line: of the replay's start); a later one is dead-lettered, since it would carry
its partition's event time ahead of every honest event after it (streams/edge/codec.py).
internal_record_keys: secrets (each at least 32 characters, comma-separated in the
environment) with which the workers sign the records between the stages and refuse those they
did not sign; the first signs, all verify, so a key is rotated without a stop
(streams/edge/signing.py). Never printed, not even in an error. Every worker of an app needs
the same keys.
allow_orgs, allow_accounts: verified organisations (`org_id`) and accounts (`account_id`) the
detector never acts on (models/allowlist.py); a TOML array of strings in the file, a
comma-separated list in the environment; each id non-empty, at most 128 characters, printable,
without surrounding spaces. They hold for the whole run and in replays; the control topic adds
and revokes others while the fleet runs, but never revokes these (streams/edge/control.py,
docs/operations.md).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillguard.models._build import BUILD_VARIABLES
from distillguard.models.allowlist import MAX_ALLOWANCES, Allowance, AllowList
from distillguard.models.config import DetectorConfig
from distillguard.streams.edge.codec import DEFAULT_MAX_EVENT_AHEAD_S
from distillguard.streams.edge.signing import MIN_KEY_BYTES, RecordSigner
from distillguard.streams.edge.topics import TopicSpec, load_topic_specs

ENV_PREFIX = "DISTILLGUARD_"
# Variables of the same prefix that are not settings: where to read settings from, and which
# build of the core to load (models/_build.py).
NOT_SETTINGS = frozenset({f"{ENV_PREFIX}SETTINGS_FILE", *BUILD_VARIABLES})
TOPIC_LOGICAL_NAMES = ("requests", "enforcement", "dead_letter", "cluster_summaries",
                       "account_verdicts", "control", "decisions")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# An allow-listed id, as the request contract bounds `org_id` and `account_id`.
MAX_ALLOW_ID_CHARS = 128
SETTINGS_ALLOW_REASON = "listed in the settings"
# The share of max_state_bytes that the members and the waiting summaries of one cluster may
# take together at most (cluster_member_bytes + cluster_pending_bytes); the rest is for its
# windows, strays, verdict and counters (tests/unit/test_state_bounds.py fills all of them).
CAPPED_SHARE_OF_STATE = 0.9
# The least cluster_pending_bytes: a hundred summaries at their longest (models/cluster.py).
MIN_PENDING_BYTES = 65_536
# The most partitions of a keyed topic: a cluster partition waits for every requests partition
# (event-time alignment), and each partition costs every worker a context and a fetch.
MAX_PARTITIONS = 1024
# internal_record_keys: the current key and the ones being rotated out.
MAX_SECRET_KEYS = 4


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the setting and where it came from."""


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    app_id: str = "distillguard"
    topic_requests: str = ""
    topic_enforcement: str = ""
    topic_dead_letter: str = ""
    topic_cluster_summaries: str = ""
    topic_account_verdicts: str = ""
    topic_control: str = ""
    topic_decisions: str = ""
    partitions: int = field(default_factory=lambda: load_topic_specs()["requests"].partitions)
    store: str = "memory://"
    web_port: int = 6066
    # The worker's web server (Faust's, for health and stats). Loopback unless told otherwise:
    # in a container set 0.0.0.0 so the port can be published.
    web_bind: str = "127.0.0.1"
    # Faust's working directory for local table files (the memory store keeps none).
    data_dir: str = ".distillguard/faust"
    log_format: str = "console"
    max_record_bytes: int = 65536
    max_event_ahead_s: float = DEFAULT_MAX_EVENT_AHEAD_S
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    shadow: bool = False
    stall_timeout_s: float = 120.0
    max_state_bytes: int = 900_000
    standby_replicas: int = 0
    session_timeout_s: float = 10.0
    source_idle_wall_s: float = 30.0
    event_time_alignment: bool = True
    idle_state_after_s: float = 10.0
    idle_states_on_disk: bool = False
    allow_orgs: tuple[str, ...] = ()
    allow_accounts: tuple[str, ...] = ()
    internal_record_keys: tuple[str, ...] = field(default=(), repr=False)
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    @property
    def topics(self) -> dict[str, TopicSpec]:
        """The topic definitions of deploy/topics.toml under this run's topic names."""
        names = {n: getattr(self, f"topic_{n}") for n in TOPIC_LOGICAL_NAMES}
        return load_topic_specs(names={k: v for k, v in names.items() if v},
                                partitions=self.partitions)

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection settings for aiokafka clients (admin, producer, consumer)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            import ssl

            kwargs["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.security_protocol.startswith("SASL"):
            kwargs.update(sasl_mechanism=self.sasl_mechanism,
                          sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        return kwargs

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def allowances(self) -> list[Allowance]:
        """The allow-list of the settings, organisations first."""
        return ([Allowance("org", i, SETTINGS_ALLOW_REASON, "settings") for i in self.allow_orgs]
                + [Allowance("account", i, SETTINGS_ALLOW_REASON, "settings")
                   for i in self.allow_accounts])

    def record_signer(self) -> RecordSigner:
        """Signs and checks the records between the stages (internal_record_keys)."""
        return RecordSigner(self.app_id, self.internal_record_keys)

    def allow_list(self) -> AllowList:
        """A new `AllowList` holding the settings' allowances: the one a worker or a replay
        hands its core (the worker then grants and revokes on it from the control topic)."""
        allow = AllowList()
        for allowance in self.allowances():
            allow.grant(allowance)  # cannot be full: _validate bounds the settings' ids
        return allow


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Settings) if f.name != "detector"}


def allow_id_problem(id_: Any) -> str | None:
    """What makes `id_` unusable as an allow-listed org or account id, or None; the phrase
    follows the id in an error (also for the control topic's records, streams/edge/control.py)."""
    if not isinstance(id_, str):
        return f"must be a string, not {type(id_).__name__}"
    if not id_:
        return "is empty"
    if len(id_) > MAX_ALLOW_ID_CHARS:
        return f"is {len(id_)} characters, at most {MAX_ALLOW_ID_CHARS}"
    if id_ != id_.strip() or not id_.isprintable():
        # such an id would never equal the gateway's: a typo, not a wish
        return "has surrounding spaces or unprintable characters"
    return None


def _ids(name: str, raw: Any, source: str) -> tuple[str, ...]:
    """A TOML array of strings, or a comma-separated string (the environment's form)."""
    if isinstance(raw, str):
        items: list[Any] = [] if not raw.strip() else [i.strip() for i in raw.split(",")]
    elif isinstance(raw, list):
        items = raw
    else:
        raise SettingsError(f"{name} from {source}: {raw!r} is not valid (expected an array of "
                            f"strings, e.g. {name} = [\"id-1\", \"id-2\"])")
    for n, item in enumerate(items, 1):
        problem = allow_id_problem(item)
        if problem:
            shown = repr(item) if len(repr(item)) <= 40 else repr(item)[:37] + "..."
            raise SettingsError(f"{name} from {source}: item {n} ({shown}) {problem}")
    return tuple(dict.fromkeys(items))  # in order, once each


def _secret_keys(name: str, raw: Any, source: str) -> tuple[str, ...]:
    """Like `_ids`, for secrets: an error names the item's position and length, never it.
    Blank is an error, not "no keys": a secret missing from the environment must not turn the
    check off without a word (unset the variable to run without signatures)."""
    if isinstance(raw, str):
        items: list[Any] = [i.strip() for i in raw.split(",") if i.strip()]
    elif isinstance(raw, list):
        items = [i.strip() if isinstance(i, str) else i for i in raw]
    else:
        raise SettingsError(f"{name} from {source}: not valid (expected an array of strings)")
    if not items:
        raise SettingsError(f"{name} from {source} is blank: set one or more keys, or leave it "
                            "unset to run without signatures")
    if len(items) > MAX_SECRET_KEYS:
        raise SettingsError(f"{name} from {source}: {len(items)} keys, at most {MAX_SECRET_KEYS}")
    for n, item in enumerate(items, 1):
        if not isinstance(item, str) or not item.isprintable():
            raise SettingsError(f"{name} from {source}: key {n} is not a printable string")
        if len(item.encode()) < MIN_KEY_BYTES:
            raise SettingsError(f"{name} from {source}: key {n} has {len(item.encode())} bytes, "
                                f"at least {MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)")
    return tuple(dict.fromkeys(items))


def _convert(name: str, raw: Any, kind: str, source: str) -> Any:
    if name == "internal_record_keys":
        return _secret_keys(name, raw, source)
    if kind.startswith("tuple"):
        return _ids(name, raw, source)
    try:
        if "bool" in kind:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if "int" in kind:
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if "float" in kind:
            return float(raw)
        if raw is None or (isinstance(raw, str) and raw == "" and "None" in kind):
            return None
        return str(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} from {source}: {raw!r} is not valid ({exc})") from None


def _detector(values: Mapping[str, Any], source: str, base: DetectorConfig) -> DetectorConfig:
    known = DetectorConfig.field_types()
    changes = {}
    for key, raw in values.items():
        if key not in known:
            raise SettingsError(
                f"unknown detector setting '{key}' in {source}; known: {', '.join(sorted(known))}")
        kind = str(known[key])
        if kind == "int" and isinstance(raw, float) and not raw.is_integer():
            raise SettingsError(f"detector.{key} from {source}: {raw!r} must be a whole number")
        changes[key] = _convert(f"detector.{key}", raw, kind, source)
    return dataclasses.replace(base, **changes)


def checked_detector(values: Mapping[str, Any], source: str,
                     base: DetectorConfig) -> DetectorConfig:
    """`base` with `values` applied, converted and checked as one settings source."""
    detector = _detector(values, source, base)
    problems = detector.problems()
    if problems:
        raise SettingsError(f"detector settings from {source}: {'; '.join(problems)}")
    return detector


def load_settings(env: Mapping[str, str] | None = None, file: str | Path | None = None) -> Settings:
    """Build the settings from defaults, then the file, then the environment."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    detector = DetectorConfig()
    path = file or env.get(f"{ENV_PREFIX}SETTINGS_FILE")
    if path:
        path = Path(path)
        if not path.is_file():
            raise SettingsError(f"settings file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
        for key, raw in data.items():
            if key == "detector":
                if not isinstance(raw, dict):
                    raise SettingsError(f"[detector] in {path} must be a table")
                detector = _detector(raw, str(path), detector)
            elif key in _FIELD_TYPES:
                values[key] = _convert(key, raw, str(_FIELD_TYPES[key]), str(path))
            else:
                raise SettingsError(f"unknown setting '{key}' in {path}; known: "
                                    f"{', '.join(sorted([*_FIELD_TYPES, 'detector']))}")
    env_detector = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_SETTINGS:
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name.startswith("detector_"):
            env_detector[name[len("detector_"):]] = raw
        elif name in _FIELD_TYPES:
            values[name] = _convert(name, raw, str(_FIELD_TYPES[name]), f"${key}")
        else:
            raise SettingsError(f"unknown environment variable ${key}; known settings: "
                                f"{', '.join(sorted(_FIELD_TYPES))}")
    if env_detector:
        detector = _detector(env_detector, "the environment", detector)
    problems = detector.problems()  # checked once all sources are merged
    if problems:
        sources = " and ".join(s for s, used in ((str(path), bool(path)),
                                                 ("the environment", bool(env_detector))) if used)
        raise SettingsError(f"detector settings from {sources or 'the defaults'}: "
                            f"{'; '.join(problems)}")
    if "shadow" in values:
        detector = dataclasses.replace(detector, shadow=values["shadow"])
    settings = Settings(**values, detector=detector)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.security_protocol not in SECURITY_PROTOCOLS:
        raise SettingsError(f"security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                            f"got {s.security_protocol!r}")
    if s.security_protocol.startswith("SASL"):
        if s.sasl_mechanism not in SASL_MECHANISMS:
            raise SettingsError(f"security_protocol {s.security_protocol} needs sasl_mechanism "
                                f"one of {', '.join(SASL_MECHANISMS)}")
        if not s.sasl_username or not s.sasl_password:
            raise SettingsError(f"security_protocol {s.security_protocol} needs sasl_username "
                                "and sasl_password")
    if s.ssl_cafile and not Path(s.ssl_cafile).is_file():
        raise SettingsError(f"ssl_cafile {s.ssl_cafile} does not exist")
    if s.log_format not in ("console", "json"):
        raise SettingsError(f"log_format must be console or json, got {s.log_format!r}")
    if not 1024 <= s.max_record_bytes <= 1_048_576:
        raise SettingsError("max_record_bytes must be between 1024 and 1048576")
    if not 1.0 <= s.max_event_ahead_s <= 86400.0:
        raise SettingsError("max_event_ahead_s must be between 1 and 86400 seconds")
    if not 1.0 <= s.stall_timeout_s <= 86400.0:
        raise SettingsError("stall_timeout_s must be between 1 and 86400 seconds")
    if not 1024 <= s.max_state_bytes <= 1_000_000:
        raise SettingsError("max_state_bytes must be between 1024 and 1000000 (the producer's "
                            "largest request)")
    if s.detector.cluster_pending_bytes < MIN_PENDING_BYTES:
        # Under it a crowd would be judged early at nearly every summary (a helper's review).
        raise SettingsError(
            f"cluster_pending_bytes must be at least {MIN_PENDING_BYTES:,} (a hundred of the "
            f"longest summaries), got {s.detector.cluster_pending_bytes:,}")
    capped = s.detector.cluster_member_bytes + s.detector.cluster_pending_bytes
    if capped > s.max_state_bytes * CAPPED_SHARE_OF_STATE:
        # The core caps a cluster's members and its waiting summaries by their most bytes on
        # the wire; the rest of the state (windows, strays, verdict) needs the remainder.
        raise SettingsError(
            f"cluster_member_bytes + cluster_pending_bytes ({capped:,}) must be at most "
            f"{CAPPED_SHARE_OF_STATE:.0%} of max_state_bytes ({s.max_state_bytes:,}): lower "
            f"them or raise max_state_bytes")
    if not 1 <= s.partitions <= MAX_PARTITIONS:
        raise SettingsError(f"partitions must be between 1 and {MAX_PARTITIONS}, got "
                            f"{s.partitions}")
    if not 0 <= s.standby_replicas <= 3:
        raise SettingsError("standby_replicas must be between 0 and 3")
    if not 1.0 <= s.source_idle_wall_s <= 3600.0:
        raise SettingsError("source_idle_wall_s must be between 1 and 3600")
    if not 1.0 <= s.idle_state_after_s <= 3600.0:
        raise SettingsError("idle_state_after_s must be between 1 and 3600")
    if not 6.0 <= s.session_timeout_s <= 300.0:
        raise SettingsError("session_timeout_s must be between 6 (the broker's minimum) and 300")
    if not s.kafka_bootstrap.strip():
        raise SettingsError("kafka_bootstrap must not be empty")
    if len(s.allow_orgs) + len(s.allow_accounts) > MAX_ALLOWANCES:
        raise SettingsError(f"allow_orgs and allow_accounts list {len(s.allow_orgs):,} and "
                            f"{len(s.allow_accounts):,} ids; at most {MAX_ALLOWANCES:,} in all")
    s.topics  # noqa: B018 - loads and validates the topic definition with these names
