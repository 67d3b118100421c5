"""The allow-list in the settings: `allow_orgs`, `allow_accounts` (file and environment), their
checks, the `AllowList` they build, and the control topic's name.

Every call passes `env=` explicitly, so the developer's own environment never leaks in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.models.allowlist import MAX_ALLOWANCES, Allowance
from distillguard.streams.edge.settings import SettingsError, load_settings


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(body)
    return path


def test_none_by_default() -> None:
    s = load_settings(env={})
    assert s.allow_orgs == () and s.allow_accounts == ()
    assert s.allowances() == [] and len(s.allow_list()) == 0


def test_from_the_environment_comma_separated() -> None:
    s = load_settings(env={"DISTILLGUARD_ALLOW_ORGS": "org-1, org-2 ,org-1",
                           "DISTILLGUARD_ALLOW_ACCOUNTS": "acct-9"})
    assert s.allow_orgs == ("org-1", "org-2")  # spaces around commas dropped, once each
    assert s.allow_accounts == ("acct-9",)


def test_an_empty_variable_is_an_empty_list() -> None:
    assert load_settings(env={"DISTILLGUARD_ALLOW_ORGS": "  "}).allow_orgs == ()


def test_from_the_file_as_arrays(tmp_path: Path) -> None:
    path = write(tmp_path, 'allow_orgs = ["org-1", "org:with:colons"]\n'
                           'allow_accounts = ["acct-1", "acct-2"]\n')
    s = load_settings(env={}, file=path)
    assert s.allow_orgs == ("org-1", "org:with:colons")
    assert s.allow_accounts == ("acct-1", "acct-2")


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'allow_orgs = ["org-file"]\nallow_accounts = ["acct-file"]\n')
    s = load_settings(env={"DISTILLGUARD_ALLOW_ORGS": "org-env"}, file=path)
    assert s.allow_orgs == ("org-env",) and s.allow_accounts == ("acct-file",)


def test_the_allow_list_they_build() -> None:
    s = load_settings(env={"DISTILLGUARD_ALLOW_ORGS": "org-1",
                           "DISTILLGUARD_ALLOW_ACCOUNTS": "acct-9"})
    assert s.allowances() == [
        Allowance("org", "org-1", "listed in the settings", "settings"),
        Allowance("account", "acct-9", "listed in the settings", "settings")]
    allow = s.allow_list()
    assert allow.lookup("acct-9", None).describe() == (
        "allow-listed account acct-9 (settings): listed in the settings")
    assert allow.lookup("anyone", "org-1").scope == "org"
    assert allow.lookup("anyone", "org-2") is None
    assert s.allow_list() is not allow  # a new one each time: a worker changes its own


@pytest.mark.parametrize(("raw", "problem"), [
    ("org-1,,org-2", "item 2 ('') is empty"),
    ("org-1,", "item 2 ('') is empty"),
    ("x" * 129, "is 129 characters, at most 128"),
])
def test_bad_ids_from_the_environment_name_the_setting_and_the_variable(
        raw: str, problem: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env={"DISTILLGUARD_ALLOW_ORGS": raw})
    assert str(err.value).startswith("allow_orgs from $DISTILLGUARD_ALLOW_ORGS: item ")
    assert problem in str(err.value)


@pytest.mark.parametrize(("value", "problem"), [
    ('[""]', "item 1 ('') is empty"),
    ('["acct-1", " acct-2"]', "item 2 (' acct-2') has surrounding spaces"),
    ('["acct\\n1"]', "unprintable"),
    ('["acct-1", 7]', "item 2 (7) must be a string, not int"),
    (f'["{"a" * 200}"]', "is 200 characters, at most 128"),
    ("7", "is not valid (expected an array of strings"),
    ("{ a = 1 }", "is not valid (expected an array of strings"),
])
def test_bad_ids_in_the_file_name_the_setting_and_the_file(tmp_path: Path, value: str,
                                                           problem: str) -> None:
    path = write(tmp_path, f"allow_accounts = {value}\n")
    with pytest.raises(SettingsError) as err:
        load_settings(env={}, file=path)
    assert str(err.value).startswith(f"allow_accounts from {path}: ")
    assert problem in str(err.value)


def test_an_id_of_128_characters_is_accepted() -> None:
    assert load_settings(env={"DISTILLGUARD_ALLOW_ACCOUNTS": "a" * 128}).allow_accounts == (
        "a" * 128,)


def test_at_most_max_allowances_in_all() -> None:
    orgs = ",".join(f"o{i}" for i in range(MAX_ALLOWANCES // 2))
    accounts = ",".join(f"a{i}" for i in range(MAX_ALLOWANCES // 2 + 1))
    with pytest.raises(SettingsError, match="allow_orgs and allow_accounts list .* at most"):
        load_settings(env={"DISTILLGUARD_ALLOW_ORGS": orgs,
                           "DISTILLGUARD_ALLOW_ACCOUNTS": accounts})


def test_the_control_topic_is_defined_and_named_like_the_others() -> None:
    s = load_settings(env={})
    spec = s.topics["control"]
    assert (spec.name, spec.partitions) == ("distillguard.control", 1)
    assert spec.config == {"cleanup.policy": "compact"}
    renamed = load_settings(env={"DISTILLGUARD_TOPIC_CONTROL": "tenant-a.control"})
    assert renamed.topic_control == "tenant-a.control"
    assert renamed.topics["control"].name == "tenant-a.control"
