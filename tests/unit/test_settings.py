"""`streams.edge.settings.load_settings`: defaults, file, environment, and refusing what cannot be used.

Every call passes `env=` explicitly, so the developer's own environment never leaks in.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from distillguard.models.config import DetectorConfig
from distillguard.streams.edge.settings import Settings, SettingsError, load_settings


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(body)
    return path


# --- defaults ---------------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings(env={})
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.app_id == "distillguard"
    assert s.store == "memory://"
    assert s.security_protocol == "PLAINTEXT" and s.sasl_mechanism is None
    assert s.max_record_bytes == 65536
    assert s.shadow is False
    assert s.detector == DetectorConfig()
    assert s.topics["requests"].name == "distillguard.requests"
    assert s.partitions == s.topics["requests"].partitions
    assert s.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_environment_of_the_process_is_read_when_none_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLGUARD_APP_ID", "from-process-env")
    assert load_settings().app_id == "from-process-env"


# --- environment ------------------------------------------------------------------------------


def test_env_overrides() -> None:
    s = load_settings(env={"DISTILLGUARD_KAFKA_BOOTSTRAP": "broker-1:9093,broker-2:9093",
                           "DISTILLGUARD_DETECTOR_WINDOW_S": "60",
                           "DISTILLGUARD_DETECTOR_THROTTLE_SCORE": "0.7",
                           "DISTILLGUARD_MAX_RECORD_BYTES": "2048",
                           "DISTILLGUARD_TOPIC_REQUESTS": "tenant-a.requests",
                           "DISTILLGUARD_IDLE_STATE_AFTER_S": "60",
                           "PATH": "/usr/bin", "UNRELATED": "x"})
    assert s.kafka_bootstrap == "broker-1:9093,broker-2:9093"
    assert s.detector.window_s == 60 and isinstance(s.detector.window_s, int)
    assert s.detector.throttle_score == 0.7
    assert s.max_record_bytes == 2048
    assert s.topics["requests"].name == "tenant-a.requests"
    assert s.idle_state_after_s == 60.0
    assert s.detector.block_score == DetectorConfig().block_score  # untouched


@pytest.mark.parametrize("raw,value", [("true", True), ("1", True), ("YES", True), ("on", True),
                                       ("false", False), ("0", False), ("no", False)])
def test_boolean_env_values(raw: str, value: bool) -> None:
    s = load_settings(env={"DISTILLGUARD_SHADOW": raw})
    assert s.shadow is value and s.detector.shadow is value


# --- file -------------------------------------------------------------------------------------


def test_file_overrides_with_detector_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'app_id = "from-file"\nweb_port = 7000\nshadow = true\n'
                           '[detector]\nwindow_s = 120\ncluster_window_s = 600\n'
                           'release_score = 0.3\n')
    s = load_settings(env={}, file=path)
    assert (s.app_id, s.web_port, s.shadow) == ("from-file", 7000, True)
    assert s.detector.window_s == 120 and s.detector.release_score == 0.3
    assert s.detector.cluster_window_s == 600
    assert s.detector.shadow is True


def test_file_named_by_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'app_id = "named-by-env"\n')
    assert load_settings(env={"DISTILLGUARD_SETTINGS_FILE": str(path)}).app_id == "named-by-env"


def test_env_wins_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'app_id = "file"\nshadow = true\n[detector]\nwindow_s = 180\n'
                           'block_ttl_s = 100\n')
    s = load_settings(env={"DISTILLGUARD_APP_ID": "env", "DISTILLGUARD_SHADOW": "false",
                           "DISTILLGUARD_DETECTOR_WINDOW_S": "60"}, file=path)
    assert s.app_id == "env"
    assert s.shadow is False and s.detector.shadow is False
    assert s.detector.window_s == 60
    assert s.detector.block_ttl_s == 100  # what the env does not set still comes from the file


# --- unknown keys -----------------------------------------------------------------------------


def test_unknown_top_level_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'kafka_bootsrap = "typo:9092"\n')
    with pytest.raises(SettingsError, match="kafka_bootsrap"):
        load_settings(env={}, file=path)


def test_unknown_detector_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[detector]\nwindow_seconds = 60\n")
    with pytest.raises(SettingsError, match="window_seconds"):
        load_settings(env={}, file=path)


def test_unknown_environment_variable() -> None:
    with pytest.raises(SettingsError, match="DISTILLGUARD_KAFKA_BOOTSRAP"):
        load_settings(env={"DISTILLGUARD_KAFKA_BOOTSRAP": "typo:9092"})


def test_the_core_build_variables_are_not_settings() -> None:
    # models/_build.py reads them; the settings loader must not refuse them as unknown
    env = {"DISTILLGUARD_CORE": "interpreted", "DISTILLGUARD_COMPILED_CORE": "/opt/core"}
    assert load_settings(env=env) == load_settings(env={})


def test_a_float_setting_given_whole_names_the_same_model_version() -> None:
    # the compiled core stores 1 as 1.0, the sources keep 1: one version for both
    whole = DetectorConfig(block_score=1)  # type: ignore[arg-type]
    assert whole.model_version == DetectorConfig(block_score=1.0).model_version


def test_unknown_detector_environment_variable() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env={"DISTILLGUARD_DETECTOR_WINDOW_SECONDS": "60"})
    assert "window_seconds" in str(info.value).lower()


def test_detector_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="detector"):
        load_settings(env={}, file=write(tmp_path, 'detector = "x"\n'))


def test_missing_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(env={}, file=tmp_path / "nope.toml")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(env={}, file=write(tmp_path, "this is = = not toml"))


# --- bad values -------------------------------------------------------------------------------


@pytest.mark.parametrize("env,named", [
    ({"DISTILLGUARD_WEB_PORT": "eighty"}, "web_port"),
    ({"DISTILLGUARD_SHADOW": "maybe"}, "shadow"),
    ({"DISTILLGUARD_DETECTOR_WINDOW_S": "five minutes"}, "window_s"),
    ({"DISTILLGUARD_DETECTOR_THROTTLE_SCORE": "high"}, "throttle_score"),
    ({"DISTILLGUARD_LOG_FORMAT": "xml"}, "log_format"),
    ({"DISTILLGUARD_MAX_RECORD_BYTES": "10"}, "max_record_bytes"),
    ({"DISTILLGUARD_MAX_RECORD_BYTES": "99999999"}, "max_record_bytes"),
    ({"DISTILLGUARD_SECURITY_PROTOCOL": "TLS"}, "security_protocol"),
    ({"DISTILLGUARD_KAFKA_BOOTSTRAP": "  "}, "kafka_bootstrap"),
    ({"DISTILLGUARD_SSL_CAFILE": "/nonexistent/ca.pem"}, "ssl_cafile"),
    ({"DISTILLGUARD_PARTITIONS": "0"}, "partitions"),
    ({"DISTILLGUARD_PARTITIONS": "1025"}, "partitions"),
    ({"DISTILLGUARD_PARTITIONS": "many"}, "partitions"),
    ({"DISTILLGUARD_IDLE_STATE_AFTER_S": "0.5"}, "idle_state_after_s"),
    ({"DISTILLGUARD_IDLE_STATE_AFTER_S": "7200"}, "idle_state_after_s"),
])
def test_bad_values_are_refused_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env=env)


def test_bad_value_in_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "web_port = true\n")
    with pytest.raises(SettingsError) as info:
        load_settings(env={}, file=path)
    assert "web_port" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("body,named", [
    ("[detector]\nwindow_s = 0\n", "window_s"),
    ("[detector]\nwindow_s = -300\n", "window_s"),
    ("[detector]\nsimhash_bands = 0\n", "simhash_bands"),
    ("[detector]\nsimhash_bands = 3\n", "simhash_bands"),
    ("[detector]\nwindow_s = 1.5\n", "window_s"),
    ("[detector]\nthrottle_score = 0.9\nblock_score = 0.8\n", "block_score"),
    ("[detector]\ncluster_convict_score = 1.5\n", "cluster_convict_score"),
    # clusters aggregate whole account windows
    ("[detector]\nwindow_s = 120\n", "cluster_window_s"),
    ("[detector]\ncluster_window_s = 1000\n", "cluster_window_s"),
])
def test_unusable_detector_values_are_refused(tmp_path: Path, body: str, named: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(SettingsError) as info:
        load_settings(env={}, file=path)
    assert named in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("env,named", [
    ({"DISTILLGUARD_DETECTOR_WINDOW_S": "0"}, "window_s"),
    ({"DISTILLGUARD_DETECTOR_CLUSTER_WINDOW_S": "450"}, "cluster_window_s"),
    ({"DISTILLGUARD_DETECTOR_VERDICT_REFRESH_S": "-1"}, "verdict_refresh_s"),
])
def test_unusable_detector_values_from_the_environment_are_refused(env: dict[str, str],
                                                                   named: str) -> None:
    with pytest.raises(SettingsError, match=named) as info:
        load_settings(env=env)
    assert "environment" in str(info.value)


def test_compatible_window_lengths_load(tmp_path: Path) -> None:
    s = load_settings(env={"DISTILLGUARD_DETECTOR_WINDOW_S": "60",
                           "DISTILLGUARD_DETECTOR_CLUSTER_WINDOW_S": "600"})
    assert (s.detector.window_s, s.detector.cluster_window_s) == (60, 600)
    path = write(tmp_path, "[detector]\nwindow_s = 120\ncluster_window_s = 1200\n")
    assert load_settings(env={}, file=path).detector.cluster_window_s == 1200


def test_usable_combination_split_across_file_and_environment_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "[detector]\nwindow_s = 120\n")
    s = load_settings(env={"DISTILLGUARD_DETECTOR_CLUSTER_WINDOW_S": "600"}, file=path)
    assert (s.detector.window_s, s.detector.cluster_window_s) == (120, 600)
    # an unusable combination split across them is refused, naming both sources
    with pytest.raises(SettingsError, match="cluster_window_s") as info:
        load_settings(env={"DISTILLGUARD_DETECTOR_CLUSTER_WINDOW_S": "660"}, file=path)
    assert str(path) in str(info.value) and "environment" in str(info.value)


# --- SASL / SSL -------------------------------------------------------------------------------


SASL = {"DISTILLGUARD_SECURITY_PROTOCOL": "SASL_SSL",
        "DISTILLGUARD_SASL_MECHANISM": "SCRAM-SHA-512",
        "DISTILLGUARD_SASL_USERNAME": "dg", "DISTILLGUARD_SASL_PASSWORD": "s3cret"}


@pytest.mark.parametrize("drop", ["DISTILLGUARD_SASL_MECHANISM", "DISTILLGUARD_SASL_USERNAME",
                                  "DISTILLGUARD_SASL_PASSWORD"])
def test_sasl_needs_mechanism_user_and_password(drop: str) -> None:
    env = {k: v for k, v in SASL.items() if k != drop}
    with pytest.raises(SettingsError, match="sasl"):
        load_settings(env=env)


def test_sasl_mechanism_must_be_known() -> None:
    with pytest.raises(SettingsError, match="sasl_mechanism"):
        load_settings(env={**SASL, "DISTILLGUARD_SASL_MECHANISM": "GSSAPI-ISH"})


def test_aiokafka_kwargs_for_sasl_ssl() -> None:
    s = load_settings(env=SASL)
    kwargs = s.aiokafka_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "dg" and kwargs["sasl_plain_password"] == "s3cret"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


def test_aiokafka_kwargs_for_sasl_plaintext_has_no_ssl() -> None:
    s = load_settings(env={**SASL, "DISTILLGUARD_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    kwargs = s.aiokafka_kwargs()
    assert "ssl_context" not in kwargs and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"


def test_password_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(load_settings(env=SASL))


# --- model version ----------------------------------------------------------------------------


def test_model_version_follows_detector_settings_not_shadow() -> None:
    base = load_settings(env={}).detector.model_version
    assert load_settings(env={"DISTILLGUARD_DETECTOR_WINDOW_S": "60"}).detector.model_version \
        != base
    assert load_settings(env={"DISTILLGUARD_DETECTOR_THROTTLE_RPM": "5"}).detector.model_version \
        != base
    assert load_settings(env={"DISTILLGUARD_SHADOW": "true"}).detector.model_version == base
    # settings outside the detector do not change what is computed
    assert load_settings(env={"DISTILLGUARD_APP_ID": "other"}).detector.model_version == base


def test_with_overrides_returns_a_new_settings() -> None:
    s = load_settings(env={})
    t = s.with_overrides(app_id="x")
    assert isinstance(t, Settings) and t.app_id == "x" and s.app_id == "distillguard"


def test_the_partition_count_is_a_setting(tmp_path: Path) -> None:
    assert load_settings(env={}).partitions == 12  # deploy/topics.toml's
    settings = load_settings(env={"DISTILLGUARD_PARTITIONS": "48"})
    assert settings.partitions == 48
    counts = {n: t.partitions for n, t in settings.topics.items()}
    assert counts == {"requests": 48, "account_verdicts": 48, "cluster_summaries": 48,
                      "enforcement": 48, "decisions": 48, "control": 1, "dead_letter": 3}
    path = tmp_path / "s.toml"
    path.write_text("partitions = 24\n")
    assert load_settings(env={}, file=path).topics["account_verdicts"].partitions == 24
    assert load_settings(env={"DISTILLGUARD_PARTITIONS": "6"}, file=path).partitions == 6
