"""`streams.edge.signing`: which records between the stages a worker reads."""

from __future__ import annotations

import pytest

from distillguard.streams.edge.settings import SettingsError, load_settings
from distillguard.streams.edge.signing import SIGNATURE_HEADER, RecordSigner

OLD, NEW = "o" * 32, "n" * 48
VALUE = b'["verdicts",[["acct-1"]]]'


def test_without_keys_nothing_is_signed_and_everything_is_read() -> None:
    signer = RecordSigner("app", ())
    assert not signer.enabled and signer.headers("account_verdicts", 3, VALUE) is None
    assert signer.refusal("account_verdicts", 3, VALUE, None) is None


def test_a_signed_record_is_read_and_any_change_is_refused() -> None:
    signer = RecordSigner("app", [NEW])
    headers = signer.headers("account_verdicts", 3, VALUE)
    assert headers is not None and headers[0][0] == SIGNATURE_HEADER
    assert signer.refusal("account_verdicts", 3, VALUE, headers) is None
    assert signer.refusal("account_verdicts", 3, VALUE, dict(headers)) is None  # as a mapping
    assert "unsigned" in (signer.refusal("account_verdicts", 3, VALUE, None) or "")
    assert "unsigned" in (signer.refusal("account_verdicts", 3, VALUE, [("other", b"x")]) or "")
    changed = VALUE.replace(b"acct-1", b"acct-2")
    assert "signed by none" in (signer.refusal("account_verdicts", 3, changed, headers) or "")
    # a summary record replayed as a verdict, or another app's record with the same key
    assert signer.refusal("cluster_summaries", 3, VALUE, headers) is not None
    assert RecordSigner("other-app", [NEW]).refusal("account_verdicts", 3, VALUE, headers)
    # a genuine batch copied to another partition, where its accounts do not live
    assert "another partition" in (signer.refusal("account_verdicts", 4, VALUE, headers) or "")


def test_rotation_the_first_key_signs_and_every_key_verifies() -> None:
    before = RecordSigner("app", [OLD])
    during = RecordSigner("app", [NEW, OLD])
    after = RecordSigner("app", [NEW])
    old_record = before.headers("account_verdicts", 3, VALUE)
    new_record = during.headers("account_verdicts", 3, VALUE)
    assert during.refusal("account_verdicts", 3, VALUE, old_record) is None
    assert after.refusal("account_verdicts", 3, VALUE, new_record) is None
    assert after.refusal("account_verdicts", 3, VALUE, old_record) is not None


def test_a_blank_key_setting_is_an_error_not_signing_silently_off() -> None:
    # a secret missing from the environment must not turn the check off without a word
    for blank in ("", " ", " , "):
        with pytest.raises(SettingsError, match="internal_record_keys"):
            load_settings(env={"DISTILLGUARD_INTERNAL_RECORD_KEYS": blank})


def test_the_settings_refuse_a_short_key_without_printing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env={"DISTILLGUARD_INTERNAL_RECORD_KEYS": f"{NEW},hunter2-secret"})
    assert "key 2 has 14 bytes" in str(caught.value) and "hunter2" not in str(caught.value)
    s = load_settings(env={"DISTILLGUARD_INTERNAL_RECORD_KEYS": f"{NEW}, {OLD}"})
    assert s.internal_record_keys == (NEW, OLD) and NEW not in repr(s)
    assert s.record_signer().enabled
