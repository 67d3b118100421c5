"""`models.convicted.ConvictedClusters`: what an account partition knows of convicted clusters,
from when, for how long (the hydra response at a replacement account's first request)."""

from __future__ import annotations

from distillguard.models.account import Verdict
from distillguard.models.convicted import ConvictedClusters

T0 = 1_700_000_000.0


def verdict(vid: str, issued: float, key: str = "pay:p", ttl: float = 3600.0) -> Verdict:
    return Verdict(key, 0.9, issued, issued + ttl, vid, f"cluster {key} convicted")


def test_a_conviction_applies_from_its_time_until_it_expires() -> None:
    known = ConvictedClusters()
    known.add(T0 + 60, verdict("cv-1", T0))
    assert known.applicable("pay:p", T0 + 59) is None
    assert known.applicable("pay:p", T0 + 60).verdict_id == "cv-1"
    assert known.applicable("pay:other", T0 + 60) is None
    assert known.applicable("pay:p", T0 + 3600) is None  # expired


def test_an_upgrade_replaces_the_standing_verdict_only_once_it_applies() -> None:
    known = ConvictedClusters()
    known.add(T0 + 60, verdict("cv-1", T0))
    known.add(T0 + 660, verdict("cv-2", T0 + 600))  # arrives before its time
    assert known.applicable("pay:p", T0 + 600).verdict_id == "cv-1"  # the older one stands
    assert known.applicable("pay:p", T0 + 660).verdict_id == "cv-2"
    assert [v.verdict_id for _, v in known.by_key["pay:p"]] == ["cv-2"]  # cv-1 is done with


def test_the_same_conviction_told_twice_is_kept_once_and_expired_keys_are_pruned() -> None:
    known = ConvictedClusters()
    known.add(T0 + 60, verdict("cv-1", T0))
    known.add(T0 + 60, verdict("cv-1", T0))
    known.add(T0 + 60, verdict("cv-9", T0, key="ip:10.0.0.0/24", ttl=7200))
    assert len(known.by_key["pay:p"]) == 1 and len(known) == 2
    known.prune(T0 + 3600)
    assert list(known.by_key) == ["ip:10.0.0.0/24"]


def test_wire_round_trip() -> None:
    known = ConvictedClusters()
    known.add(T0 + 60, verdict("cv-1", T0))
    known.add(T0 + 660, verdict("cv-2", T0 + 600))
    assert ConvictedClusters.from_wire(known.to_wire()) == known
