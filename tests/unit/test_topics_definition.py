"""Pure tests of the topic definition (deploy/topics.toml via streams.edge.topics.load_topic_specs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.streams.edge.topics import (
    CO_PARTITIONED,
    DEFAULT_TOPICS_FILE,
    KEYED_TOPICS,
    REQUIRED_TOPICS,
    TopicSpec,
    load_topic_specs,
    mismatch_error,
)

SHIPPED = {
    "requests": ("distillguard.requests", 12),
    "enforcement": ("distillguard.enforcement", 12),
    "dead_letter": ("distillguard.dead-letter", 3),
    "cluster_summaries": ("distillguard.cluster-summaries", 12),
    "account_verdicts": ("distillguard.account-verdicts", 12),
    "control": ("distillguard.control", 1),
    "decisions": ("distillguard.decisions", 12),
}
# Compacted: their newest record per key is the state (the allow-list), kept while it holds.
COMPACTED = {"control", "decisions"}


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "topics.toml"
    path.write_text(body)
    return path


def valid_body(**overrides: str) -> str:
    """A complete definition; overrides replace whole topic tables (logical name -> TOML body)."""
    tables = {
        logical: f'name = "{name}"\npartitions = {parts}\n'
        for logical, (name, parts) in SHIPPED.items()
    }
    tables.update(overrides)
    return "\n".join(f"[{logical}]\n{body}" for logical, body in tables.items())


def test_shipped_file_loads() -> None:
    specs = load_topic_specs()
    assert DEFAULT_TOPICS_FILE.name == "topics.toml"
    # the package's copy of deploy/topics.toml (a link in a clone; tests/unit/test_packaging.py
    # checks the wheel's)
    assert DEFAULT_TOPICS_FILE.resolve() == DEFAULT_TOPICS_FILE.parents[1] / "deploy" / "topics.toml"
    assert set(specs) == set(SHIPPED)
    for logical, (name, partitions) in SHIPPED.items():
        spec = specs[logical]
        assert isinstance(spec, TopicSpec)
        assert (spec.logical, spec.name, spec.partitions) == (logical, name, partitions)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in spec.config.items())
        if logical in COMPACTED:
            assert spec.config.get("cleanup.policy") == "compact"
            continue
        assert spec.config.get("cleanup.policy") == "delete"
        assert int(spec.config["retention.ms"]) > 0
    assert len({s.name for s in specs.values()}) == len(specs)


def test_shipped_file_is_co_partitioned() -> None:
    specs = load_topic_specs()
    assert ("requests", "account_verdicts") in CO_PARTITIONED
    for group in CO_PARTITIONED:
        assert len({specs[t].partitions for t in group}) == 1


def test_explicit_path_equals_default() -> None:
    assert load_topic_specs(DEFAULT_TOPICS_FILE) == load_topic_specs()


def test_specs_are_frozen() -> None:
    spec = load_topic_specs()["requests"]
    with pytest.raises(AttributeError):
        spec.partitions = 1  # type: ignore[misc]


def test_name_overrides_apply() -> None:
    specs = load_topic_specs(names={"requests": "t-123.requests", "dead_letter": "t-123.dlq"})
    assert specs["requests"].name == "t-123.requests"
    assert specs["dead_letter"].name == "t-123.dlq"
    assert specs["requests"].partitions == 12  # only the name changes
    assert specs["requests"].config == load_topic_specs()["requests"].config
    assert specs["enforcement"].name == "distillguard.enforcement"


def test_override_of_unknown_logical_name() -> None:
    with pytest.raises(ValueError, match="unknown logical topic.*nope"):
        load_topic_specs(names={"nope": "x"})


def test_override_with_invalid_topic_name() -> None:
    with pytest.raises(ValueError, match="requests"):
        load_topic_specs(names={"requests": "bad name!"})


def test_override_clashing_with_another_topic() -> None:
    with pytest.raises(ValueError, match="also used by"):
        load_topic_specs(names={"requests": "distillguard.enforcement"})


def test_minimal_valid_file_and_config_normalisation(tmp_path: Path) -> None:
    body = valid_body(
        requests='name = "r"\npartitions = 12\n[requests.config]\n'
        '"retention.ms" = 1000\n"cleanup.policy" = "compact"\n"preallocate" = false\n',
        account_verdicts='name = "v"\npartitions = 12\n',
    )
    specs = load_topic_specs(write(tmp_path, body))
    assert specs["requests"].config == {
        "retention.ms": "1000",
        "cleanup.policy": "compact",
        "preallocate": "false",
    }
    assert specs["account_verdicts"].config == {}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "distillguard.requests"\n', r"\[requests\] 'partitions' is missing"),
        ("partitions = 12\n", r"\[requests\] 'name' is missing"),
        ('name = "distillguard.requests"\npartitions = 0\n', r"\[requests\] 'partitions' = 0"),
        ('name = "distillguard.requests"\npartitions = -3\n', r"\[requests\] 'partitions' = -3"),
        ('name = "distillguard.requests"\npartitions = "12"\n', r"\[requests\] 'partitions'"),
        ('name = "distillguard.requests"\npartitions = 1.5\n', r"\[requests\] 'partitions'"),
        ('name = "distillguard.requests"\npartitions = true\n', r"\[requests\] 'partitions'"),
        (
            'name = "distillguard.requests"\npartitions = 12\nkey = "account_id"\n',
            r"\[requests\] unknown field\(s\) key",
        ),
        ('name = "has space"\npartitions = 12\n', r"\[requests\] 'name'"),
        ('name = ""\npartitions = 12\n', r"\[requests\] 'name'"),
        ("name = 7\npartitions = 12\n", r"\[requests\] 'name'"),
        (
            'name = "distillguard.requests"\npartitions = 12\nconfig = "retention.ms=1"\n',
            r"\[requests\] 'config' must be a table",
        ),
        (
            'name = "distillguard.requests"\npartitions = 12\n[requests.config]\nretention.ms = "1"\n',
            r"\[requests\] config key 'retention' is a table: quote dotted",
        ),
        (
            'name = "distillguard.requests"\npartitions = 12\n[requests.config]\n"retention.ms" = 1.5\n',
            r"\[requests\] config 'retention.ms'",
        ),
        (
            'name = "distillguard.requests"\npartitions = 12\n[requests.config]\n"Bad Key" = "1"\n',
            r"\[requests\] config key 'Bad Key'",
        ),
    ],
)
def test_malformed_topic_table(tmp_path: Path, table: str, message: str) -> None:
    path = write(tmp_path, valid_body(requests=table))
    with pytest.raises(ValueError, match=message) as info:
        load_topic_specs(path)
    assert str(path) in str(info.value)


def test_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "stray = 1\n" + valid_body())
    with pytest.raises(ValueError, match=r"\[stray\] must be a table"):
        load_topic_specs(path)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[requests\nname = 1\n")
    with pytest.raises(ValueError, match="not valid TOML") as info:
        load_topic_specs(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_topic_specs(tmp_path / "nope.toml")


@pytest.mark.parametrize("logical", REQUIRED_TOPICS)
def test_missing_required_topic(tmp_path: Path, logical: str) -> None:
    body = valid_body()
    start = body.index(f"[{logical}]\n")
    end = body.find("\n[", start + 1)
    body = body[:start] + (body[end + 1 :] if end != -1 else "")
    with pytest.raises(ValueError, match=f"missing topic table\\(s\\): {logical}"):
        load_topic_specs(write(tmp_path, body))


def test_extra_topic_is_allowed(tmp_path: Path) -> None:
    body = valid_body() + '\n[audit]\nname = "distillguard.audit"\npartitions = 1\n'
    specs = load_topic_specs(write(tmp_path, body))
    assert specs["audit"] == TopicSpec("audit", "distillguard.audit", 1, {})


def test_duplicate_topic_names(tmp_path: Path) -> None:
    body = valid_body(enforcement='name = "distillguard.requests"\npartitions = 12\n')
    with pytest.raises(ValueError, match=r"\[enforcement\].*also used by \[requests\]"):
        load_topic_specs(write(tmp_path, body))


def test_co_partitioning_is_enforced(tmp_path: Path) -> None:
    body = valid_body(account_verdicts='name = "distillguard.account-verdicts"\npartitions = 6\n')
    path = write(tmp_path, body)
    with pytest.raises(ValueError, match="co-partitioned") as info:
        load_topic_specs(path)
    assert "requests=12" in str(info.value)
    assert "account_verdicts=6" in str(info.value)
    assert str(path) in str(info.value)


def test_other_counts_are_fine(tmp_path: Path) -> None:
    body = valid_body(
        requests='name = "r"\npartitions = 6\n',
        account_verdicts='name = "v"\npartitions = 6\n',
        cluster_summaries='name = "c"\npartitions = 6\n',
        enforcement='name = "e"\npartitions = 6\n',
        decisions='name = "d"\npartitions = 6\n',
        dead_letter='name = "x"\npartitions = 2\n',
    )
    specs = load_topic_specs(write(tmp_path, body))
    assert specs["requests"].partitions == specs["account_verdicts"].partitions == 6
    assert specs["dead_letter"].partitions == 2


def test_the_keyed_topics_have_one_count(tmp_path: Path) -> None:
    # The `partitions` setting changes them together: the file cannot give them two.
    body = valid_body(cluster_summaries='name = "c"\npartitions = 24\n')
    with pytest.raises(ValueError, match="must have one partition count") as info:
        load_topic_specs(write(tmp_path, body))
    assert "cluster_summaries=24" in str(info.value) and "requests=12" in str(info.value)


def test_the_partitions_setting_sets_every_keyed_topic_and_no_other() -> None:
    specs = load_topic_specs(names={"requests": "t.requests"}, partitions=48)
    assert {t: specs[t].partitions for t in KEYED_TOPICS} == dict.fromkeys(KEYED_TOPICS, 48)
    assert specs["requests"].name == "t.requests"
    assert specs["control"].partitions == 1 and specs["dead_letter"].partitions == 3
    assert all(len({specs[t].partitions for t in group}) == 1 for group in CO_PARTITIONED)
    with pytest.raises(ValueError, match="positive integer"):
        load_topic_specs(partitions=0)


def test_a_topic_of_another_count_is_refused_saying_what_to_do() -> None:
    problem = "x.requests ([requests]) has 12 partitions, the settings want 48"
    message = str(mismatch_error([problem]))
    assert "has 12 partitions" in message
    for what in ("DISTILLGUARD_PARTITIONS", "DISTILLGUARD_APP_ID", "copy-topic",
                 "Re-partitioning"):
        assert what in message
