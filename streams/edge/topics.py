"""The project's Kafka topics: read their one definition (deploy/topics.toml) and create them.

    specs = load_topic_specs()                      # {"requests": TopicSpec(...), ...}
    await wait_for_broker("127.0.0.1:9092")
    created = await ensure_topics("127.0.0.1:9092", specs.values())

Tests use unique topic names per run with ``load_topic_specs(names={"requests": "t-123.requests"})``
and clean up with ``delete_topics``.

No Faust here: aiokafka's admin client only, so tools and tests can use it without a Faust app.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import tomllib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

# deploy/topics.toml, as the package carries it (distillguard/topics.toml links to it in a clone
# and is a copy of it in a wheel): an installed distillguard finds it without a source tree.
DEFAULT_TOPICS_FILE = Path(__file__).parents[2] / "topics.toml"

#: Logical names the project relies on; the definition must have all of them.
REQUIRED_TOPICS: tuple[str, ...] = (
    "requests",
    "enforcement",
    "dead_letter",
    "cluster_summaries",
    "account_verdicts",
)

#: Groups of logical topics that must have the same partition count (same key -> same partition
#: number), because one task joins them by key.
CO_PARTITIONED: tuple[tuple[str, ...], ...] = (("requests", "account_verdicts"),)

#: The topics keyed by account or cluster whose partition count is the fleet's `partitions`
#: setting: one count for all of them, so that the setting changes them together and keeps
#: requests and account_verdicts co-partitioned. Not control (one partition, read whole by
#: every worker) nor dead_letter (read by people and tools).
KEYED_TOPICS: tuple[str, ...] = ("requests", "account_verdicts", "cluster_summaries",
                                 "enforcement", "decisions")

#: What to do when existing topics have another partition count than the settings say.
REPARTITION_HINT = (
    "The partition count is the `partitions` setting (DISTILLGUARD_PARTITIONS; default: "
    "deploy/topics.toml): set it to the existing topics' count to use them, or re-partition "
    "into new topics under a new app id (new DISTILLGUARD_TOPIC_* names and "
    "DISTILLGUARD_APP_ID, then `distillguard copy-topic`: docs/operations.md, "
    "\"Re-partitioning\"); a local broker can start over with deploy/kafka-local.sh reset")

_FIELDS = frozenset({"name", "partitions", "config"})
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_CONFIG_KEY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")

_UNKNOWN_TOPIC_OR_PARTITION = 3
_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    """One topic: ``logical`` is the name used in code, ``name`` the Kafka topic."""

    logical: str
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


class TopicError(RuntimeError):
    """Creating or checking the project's topics failed."""


class TopicMismatchError(TopicError):
    """An existing topic does not match its definition (e.g. a different partition count)."""


class BrokerUnavailableError(ConnectionError):
    """No Kafka broker answered at the bootstrap address in time."""


# --------------------------------------------------------------------------- definition


def load_topic_specs(
    path: Path | None = None,
    names: Mapping[str, str] | None = None,
    partitions: int | None = None,
) -> dict[str, TopicSpec]:
    """Read the topic definition (default: deploy/topics.toml) into ``{logical: TopicSpec}``.

    ``names`` overrides the Kafka topic name per logical name (e.g. unique names for a test);
    ``partitions`` the partition count of every topic of KEYED_TOPICS (the fleet's
    `partitions` setting). Raises ValueError, naming the file and the key, for a malformed
    definition.
    """
    path = Path(path) if path is not None else DEFAULT_TOPICS_FILE
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"topic definition not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None

    def bad(key: str, problem: str) -> ValueError:
        return ValueError(f"{path}: [{key}] {problem}")

    specs: dict[str, TopicSpec] = {}
    for logical, table in raw.items():
        if not isinstance(table, dict):
            raise bad(logical, "must be a table ([name] header) with name, partitions, config")
        unknown = sorted(set(table) - _FIELDS)
        if unknown:
            raise bad(
                logical,
                f"unknown field(s) {', '.join(unknown)}; allowed: name, partitions, config",
            )
        for required in ("name", "partitions"):
            if required not in table:
                raise bad(logical, f"'{required}' is missing")
        name = table["name"]
        if not isinstance(name, str) or not _TOPIC_NAME.match(name) or name in (".", ".."):
            raise bad(
                logical,
                f"'name' = {name!r} is not a valid Kafka topic name "
                "(1-249 characters of A-Z a-z 0-9 . _ -)",
            )
        count = table["partitions"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise bad(logical, f"'partitions' = {count!r} must be a positive integer")
        specs[logical] = TopicSpec(
            logical=logical,
            name=name,
            partitions=count,
            config=_config(table.get("config", {}), lambda p, k=logical: bad(k, p)),
        )

    missing = [t for t in REQUIRED_TOPICS if t not in specs]
    if missing:
        raise ValueError(f"{path}: missing topic table(s): {', '.join(missing)}")

    if names:
        unknown = sorted(set(names) - set(specs))
        if unknown:
            raise ValueError(
                f"name override(s) for unknown logical topic(s) {', '.join(unknown)}; "
                f"known: {', '.join(specs)}"
            )
        for logical, new_name in names.items():
            if not isinstance(new_name, str) or not _TOPIC_NAME.match(new_name):
                raise ValueError(f"name override {logical}={new_name!r} is not a valid topic name")
            old = specs[logical]
            specs[logical] = TopicSpec(old.logical, new_name, old.partitions, old.config)

    for group in CO_PARTITIONED:
        counts = {t: specs[t].partitions for t in group}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{t}={n}" for t, n in counts.items())
            raise ValueError(
                f"{path}: topics {', '.join(group)} must be co-partitioned (same partition "
                f"count, they are joined by account_id) but have {detail}"
            )
    keyed = {t: specs[t].partitions for t in KEYED_TOPICS if t in specs}
    if len(set(keyed.values())) > 1:
        detail = ", ".join(f"{t}={n}" for t, n in keyed.items())
        raise ValueError(
            f"{path}: topics {', '.join(KEYED_TOPICS)} must have one partition count (the "
            f"`partitions` setting changes them together) but have {detail}"
        )
    if partitions is not None:
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions = {partitions!r} must be a positive integer")
        for logical in keyed:
            old = specs[logical]
            specs[logical] = TopicSpec(old.logical, old.name, partitions, old.config)

    seen: dict[str, str] = {}
    for spec in specs.values():
        if spec.name in seen:
            raise ValueError(
                f"{path}: [{spec.logical}] topic name {spec.name!r} is also used by "
                f"[{seen[spec.name]}]"
            )
        seen[spec.name] = spec.logical

    return specs


def _config(value: Any, bad: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise bad('\'config\' must be a table of topic configs, e.g. "retention.ms" = "86400000"')
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            raise bad(
                f"config key {key!r} is a table: quote dotted config names, "
                '"retention.ms" = "..." not retention.ms = "..."'
            )
        if not _CONFIG_KEY.match(key):
            raise bad(f"config key {key!r} is not a Kafka config name")
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, (str, int)):
            out[key] = str(item)
        else:
            raise bad(f"config {key!r} = {item!r} must be a string or an integer")
    return out


# --------------------------------------------------------------------------- broker side


def _admin(
    bootstrap: str, request_timeout_ms: int, client_kwargs: dict[str, Any] | None
) -> AIOKafkaAdminClient:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "request_timeout_ms": request_timeout_ms,
        "client_id": "distillguard-topics",
    }
    kwargs.update(client_kwargs or {})
    return AIOKafkaAdminClient(**kwargs)


async def _close(admin: Any) -> None:
    # closing a half-started client must not hide the real error
    with contextlib.suppress(Exception):
        await admin.close()


async def wait_for_broker(
    bootstrap: str, timeout_s: float = 60.0, client_kwargs: dict[str, Any] | None = None
) -> None:
    """Return once a broker at ``bootstrap`` answers a metadata request; retry until timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        admin = _admin(bootstrap, max(1000, min(5000, int(remaining * 1000))), client_kwargs)
        try:
            async with asyncio.timeout(remaining):
                await admin.start()
                await admin.list_topics()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not there yet"
            last = exc
        finally:
            await _close(admin)
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise _no_broker(bootstrap, last, timeout_s)


def _no_broker(
    bootstrap: str, last: BaseException | None, timeout_s: float | None = None
) -> BrokerUnavailableError:
    after = f" after {timeout_s:g} s" if timeout_s is not None else ""
    reason = f" (last error: {type(last).__name__}: {last})" if last else ""
    return BrokerUnavailableError(
        f"no Kafka broker at {bootstrap}{after}; start one with deploy/kafka-local.sh start{reason}"
    )


async def _describe(admin: Any, names: list[str]) -> dict[str, tuple[int, bool] | None]:
    """{topic: (partition count, every partition has a leader), or None if it does not exist}."""
    out: dict[str, tuple[int, bool] | None] = {}
    for topic in await admin.describe_topics(names):
        code = topic["error_code"]
        if code == _UNKNOWN_TOPIC_OR_PARTITION:
            out[topic["topic"]] = None
        elif code != 0:
            raise TopicError(f"describing topic {topic['topic']!r} failed: Kafka error {code}")
        else:
            parts = topic["partitions"]
            led = all(p["error_code"] == 0 and p["leader"] >= 0 for p in parts)
            out[topic["topic"]] = (len(parts), led)
    return out


def _mismatches(specs: list[TopicSpec], found: Mapping[str, tuple[int, bool] | None]) -> list[str]:
    out = []
    for s in specs:
        got = found.get(s.name)
        if got is not None and got[0] != s.partitions:
            out.append(
                f"{s.name} ([{s.logical}]) has {got[0]} partitions, the settings want "
                f"{s.partitions}"
            )
    return out


def mismatch_error(problems: list[str]) -> TopicMismatchError:
    """The error for existing topics whose partition counts are not the definition's."""
    return TopicMismatchError(
        "existing topic(s) do not match their definition: " + "; ".join(problems)
        + ". " + REPARTITION_HINT
    )


async def check_topics(
    bootstrap: str, specs: Iterable[TopicSpec], *, client_kwargs: dict[str, Any] | None = None
) -> list[str]:
    """The names of the topics of ``specs`` that do not exist on the broker (empty when all
    do); an existing one with another partition count raises TopicMismatchError."""
    wanted = list(specs)
    admin = _admin(bootstrap, 10_000, client_kwargs)
    try:
        await admin.start()
        found = await _describe(admin, [s.name for s in wanted])
    except KafkaConnectionError as exc:
        raise _no_broker(bootstrap, exc) from exc
    finally:
        await _close(admin)
    problems = _mismatches(wanted, found)
    if problems:
        raise mismatch_error(problems)
    return [s.name for s in wanted if found.get(s.name) is None]


async def check_topics_exist(
    bootstrap: str, names: Iterable[str], *, client_kwargs: dict[str, Any] | None = None
) -> list[str]:
    """The topics of ``names`` that do not exist on the broker (empty when all do)."""
    wanted = list(names)
    admin = _admin(bootstrap, 10_000, client_kwargs)
    try:
        await admin.start()
        found = await _describe(admin, wanted)
    except KafkaConnectionError as exc:
        raise _no_broker(bootstrap, exc) from exc
    finally:
        await _close(admin)
    return [n for n in wanted if found.get(n) is None]


async def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    client_kwargs: dict[str, Any] | None = None,
) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet; return the names created.

    An existing topic with a different partition count than its definition raises
    TopicMismatchError saying what to do (nothing is created then); it is never silently
    accepted. Topic configs of existing topics are left as they are. Returns once the new topics
    have leaders for all partitions, so producers can use them right away.
    """
    wanted = list(specs)
    if not wanted:
        return []
    by_name = {s.name: s for s in wanted}
    deadline = time.monotonic() + timeout_s
    admin = _admin(bootstrap, max(1000, int(timeout_s * 1000)), client_kwargs)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            found = await _describe(admin, list(by_name))
            problems = _mismatches(wanted, found)
            if problems:
                raise mismatch_error(problems)
            missing = [s for s in wanted if found.get(s.name) is None]
            created: list[str] = []
            if missing:
                response = await admin.create_topics(
                    [
                        NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.config)
                        for s in missing
                    ],
                    timeout_ms=max(1000, int((deadline - time.monotonic()) * 1000)),
                )
                errors = []
                for item in response.to_object()["topic_errors"]:
                    code = item["error_code"]
                    if code == 0:
                        created.append(item["topic"])
                    elif code != _TOPIC_ALREADY_EXISTS:  # created meanwhile: checked below
                        errors.append(
                            f"{item['topic']}: Kafka error {code} {item.get('error_message') or ''}"
                        )
                if errors:
                    raise TopicError("creating topics failed: " + "; ".join(errors))
            # Wait until every topic is visible with all partitions led, and check the partition
            # counts again (a topic created concurrently by someone else may differ).
            while True:
                found = await _describe(admin, list(by_name))
                problems = _mismatches(wanted, found)
                if problems:
                    raise mismatch_error(problems)
                if all(found.get(n) == (s.partitions, True) for n, s in by_name.items()):
                    return created
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise TopicError(
            f"creating/checking topics at {bootstrap} did not finish within {timeout_s:g} s "
            "(is the broker up? deploy/kafka-local.sh status)"
        ) from None
    except KafkaConnectionError as exc:
        raise _no_broker(bootstrap, exc) from exc
    finally:
        await _close(admin)


async def delete_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    timeout_s: float = 30.0,
    client_kwargs: dict[str, Any] | None = None,
) -> list[str]:
    """Delete topics (test clean-up); topics that do not exist are ignored. Returns those deleted."""
    names = list(names)
    if not names:
        return []
    admin = _admin(bootstrap, max(1000, int(timeout_s * 1000)), client_kwargs)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            response = await admin.delete_topics(names, timeout_ms=int(timeout_s * 1000))
    except TimeoutError:
        raise TopicError(
            f"deleting topics at {bootstrap} took longer than {timeout_s:g} s"
        ) from None
    except KafkaConnectionError as exc:
        raise _no_broker(bootstrap, exc) from exc
    finally:
        await _close(admin)
    deleted, errors = [], []
    for item in response.to_object()["topic_error_codes"]:
        code = item["error_code"]
        if code == 0:
            deleted.append(item["topic"])
        elif code != _UNKNOWN_TOPIC_OR_PARTITION:
            errors.append(f"{item['topic']}: Kafka error {code}")
    if errors:
        raise TopicError("deleting topics failed: " + "; ".join(errors))
    return deleted


@contextlib.asynccontextmanager
async def reading(consumer: AIOKafkaConsumer, what: str, bootstrap: str, timeout_s: float,
                  slow_hint: str = "", error: type[TopicError] = TopicError
                  ) -> AsyncIterator[None]:
    """`consumer` started for the block, within `timeout_s` in all, and stopped after it; a
    timeout or a Kafka error becomes an `error` that says what was read (`what`) from where:
    "reading WHAT at BOOTSTRAP took over N s SLOW_HINT" or "... failed: KAFKA ERROR"."""
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
            yield
    except TimeoutError:
        raise error(f"reading {what} at {bootstrap} took over {timeout_s:g} s"
                    + (f" {slow_hint}" if slow_hint else "")) from None
    except KafkaError as exc:
        raise error(f"reading {what} at {bootstrap} failed: {exc}") from None
    finally:
        await consumer.stop()
