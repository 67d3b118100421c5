"""Signatures on the records between the stages, so a worker takes only its own app's.

A record on the account-verdicts topic can block or clear any account, and one on the
cluster-summaries topic can frame a crowd: whoever may write either topic steers the detector.
Kafka ACLs are the first fence (docs/operations.md, "Securing the internal topics"); this is
the second, for a cluster where more principals can write than should. With
`internal_record_keys` set, every worker signs each record it sends to those two topics with
the first key, HMAC-SHA256 over the app id, the topic's logical name, the partition and the
record's value, in the record header `dg-sig`; a record whose signature none of the keys makes is refused
(dead-lettered with the reason) before anything reads it. The app id and the topic are in
what is signed, so a record of another deployment with the same key, a summary replayed as a
verdict, or a verdict batch copied to another partition (where its accounts do not live, and a
worker would take it for a new account) is refused too. More than one key: the first signs, all verify (rotation: add the
new key second on every worker, then move it first, then drop the old one).

What it does not stop: a principal that can read the topics may write an old, genuinely
signed record again to its own partition: a summary is counted again, and an old conviction
whose withdrawal has since been pruned applies again. ACLs keep such principals out.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

SIGNATURE_HEADER = "dg-sig"
# A key shorter than this is refused by the settings: HMAC-SHA256 wants 32 bytes of secret,
# and a human-chosen short word is guessable offline from one signed record.
MIN_KEY_BYTES = 32


class RecordSigner:
    """Signs and checks the records of one app's internal topics."""

    def __init__(self, app_id: str, keys: Sequence[str]) -> None:
        self._app = app_id.encode()
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def headers(self, topic: str, partition: int, value: bytes) -> list[tuple[str, bytes]] | None:
        """The headers that sign `value` for the logical `topic` and its partition; None when
        not signing."""
        if not self._keys:
            return None
        return [(SIGNATURE_HEADER, self._mac(self._keys[0], topic, partition, value))]

    def refusal(self, topic: str, partition: int, value: bytes, headers: Any) -> str | None:
        """Why this record is refused (no or a wrong signature), None when it may be read."""
        if not self._keys:
            return None
        signature = _header(headers, SIGNATURE_HEADER)
        if signature is None:
            return (f"unsigned record on the {topic} topic (internal_record_keys is set: only "
                    "this app's workers may write it)")
        if any(hmac.compare_digest(signature, self._mac(k, topic, partition, value))
               for k in self._keys):
            return None
        return (f"record on the {topic} topic signed by none of internal_record_keys (another "
                "app, another key, another partition, or a changed value)")

    def _mac(self, key: bytes, topic: str, partition: int, value: bytes) -> bytes:
        return hmac.new(key, b"%s\0%s\0%d\0%s" % (self._app, topic.encode(), partition, value),
                        hashlib.sha256).digest()


def _header(headers: Any, name: str) -> bytes | None:
    """One header's value from Kafka headers as Faust hands them: a list of (name, value)
    pairs or a mapping, or None."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == name:
            return bytes(value) if value is not None else None
    return None
