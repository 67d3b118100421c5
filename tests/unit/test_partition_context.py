"""The account partition's context survives a move as JSON: the restored model scores and learns
exactly like the original, the template counts come back, and anything that does not fit is
refused (the partition then starts cold) rather than half-restored."""

from __future__ import annotations

import random

import orjson
import pytest

from distillguard.models.account import Verdict
from distillguard.models.account_stage import AccountPartition
from distillguard.models.config import DetectorConfig
from distillguard.streams.worker import partition_context as pc

FEATURES = ["requests", "completion_per_request", "reasoning_share", "high_value_share",
            "tools_share", "error_share", "template_reuse", "regularity", "ip_prefixes", "young"]


def windows(seed: int, n: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{f: rng.random() ** 2 for f in FEATURES} for _ in range(n)]


def trained(cfg: DetectorConfig, p: int, n: int) -> AccountPartition:
    part = AccountPartition.create(cfg, p)
    for i, x in enumerate(windows(p, n)):
        part.model.score_and_learn(x, may_learn=i % 7 != 0)
        if hasattr(part, "templates"):
            part.templates.observe((i * 0x9E3779B97F4A7C15) % (1 << 64), 1_700_000_000.0 + i)
    return part


def through_json(snap: dict) -> dict:
    return orjson.loads(orjson.dumps(snap))


@pytest.mark.parametrize("learnt", [0, 10, 300, 777])
def test_a_restored_partition_scores_and_learns_exactly_like_the_original(learnt: int) -> None:
    cfg = DetectorConfig()
    original = trained(cfg, 3, learnt)
    moved = AccountPartition.create(cfg, 3)
    restored = pc.restore(moved, through_json(pc.snapshot(original)))
    assert "model" in restored
    assert moved.model.seen == original.model.seen
    for x in windows(99, 600):
        assert moved.model.score_and_learn(x, True) == original.model.score_and_learn(x, True)


def test_template_counts_come_back() -> None:
    cfg = DetectorConfig()
    original = trained(cfg, 1, 200)
    if not hasattr(original, "templates"):
        pytest.skip("the core keeps no template counts per partition")
    moved = AccountPartition.create(cfg, 1)
    assert "templates" in pc.restore(moved, through_json(pc.snapshot(original)))
    assert moved.templates.current == original.templates.current
    assert moved.templates.previous == original.templates.previous
    assert moved.templates.generation == original.templates.generation


def test_convicted_clusters_come_back() -> None:
    cfg = DetectorConfig()
    original = AccountPartition.create(cfg, 2)
    for i in range(3):
        original.convicted.add(1_700_000_000.0 + i, Verdict(
            f"pay:p{i}", 0.9, 1_700_000_000.0, 1_700_020_000.0, f"cv-{i}", "convicted"))
    moved = AccountPartition.create(cfg, 2)
    assert "convicted" in pc.restore(moved, through_json(pc.snapshot(original)))
    assert moved.convicted == original.convicted


def test_the_snapshot_is_small_json_without_pickle() -> None:
    part = trained(DetectorConfig(), 0, 777)
    data = orjson.dumps(pc.snapshot(part))
    assert len(data) < 128 * 1024
    assert b"pickle" not in data and not data.startswith(b"\x80")


def test_a_snapshot_of_other_parameters_is_refused_and_the_model_stays_cold() -> None:
    snap = through_json(pc.snapshot(trained(DetectorConfig(), 2, 600)))
    other = AccountPartition.create(DetectorConfig(account_model_trees=5), 2)
    assert "model" not in pc.restore(other, snap)
    assert other.model.seen == 0 and not other.model.hst.trees


def test_a_snapshot_of_another_tree_structure_is_refused() -> None:
    snap = through_json(pc.snapshot(trained(DetectorConfig(), 2, 600)))
    snap["model"]["fingerprint"] = "0" * 32
    fresh = AccountPartition.create(DetectorConfig(), 2)
    assert "model" not in pc.restore(fresh, snap)
    assert not fresh.model.hst.trees


@pytest.mark.parametrize("bad", [None, [], {"format": 1}, {"format": pc.SNAPSHOT_FORMAT,
                                                          "model": {"params": "x"}}])
def test_garbage_restores_nothing(bad: object) -> None:
    part = AccountPartition.create(DetectorConfig(), 0)
    assert pc.restore(part, bad) == []  # type: ignore[arg-type]


def test_known_templates_come_back() -> None:
    original = AccountPartition.create(DetectorConfig(), 3)
    for i in range(50):
        original.known.add((0x0123_4567_89AB_CDEF * (i + 1)) & (2**64 - 1),
                           1_700_000_000.0 + i, f"tpl:{i % 4}:{i:04x}" if i % 2 else "")
    moved = AccountPartition.create(DetectorConfig(), 3)
    assert "known" in pc.restore(moved, through_json(pc.snapshot(original)))
    assert moved.known.entries == original.known.entries
    prompt = (0x0123_4567_89AB_CDEF * 7) & (2**64 - 1)
    assert moved.known.match(prompt ^ 0b101, 1_700_001_000.0) == prompt


# ---- stored in pieces under the table's entry bound --------------------------------------------

def crowded(n: int) -> AccountPartition:
    """A partition that was told of `n` convictions, each with its evidence: the default
    simulation's busiest partition holds ~5,000 (1.8 MB of JSON)."""
    rng = random.Random(n)
    part = trained(DetectorConfig(), 3, 300)
    for i in range(n):
        evidence = " ".join(f"{rng.random():.6f}" for _ in range(40))  # ~400 B, little repeated
        part.convicted.add(1_700_000_000.0 + i, Verdict(
            f"tpl:{i % 4}:{i:04x}", 0.9, 1_700_000_000.0 + i, 1_700_080_000.0,
            f"cv-{i:024x}", f"cluster score 0.9: {evidence}"))
    return part


def store(snap: dict, max_entry_bytes: int, table: dict | None = None) -> dict:
    """The table entries `write_snapshot` makes (streams/worker/topology.py), through JSON: the
    pieces under the generation the table's manifest does not name, then the manifest."""
    table = dict(table or {})
    generation = pc.next_generation(table.get(3))
    manifest, pieces = pc.stored_pieces(snap, max_entry_bytes, generation)
    table.update({pc.piece_key(3, generation, i): orjson.loads(orjson.dumps(p))
                  for i, p in enumerate(pieces)})
    table[3] = through_json(manifest)
    return table


def restored(table: dict) -> dict | None:
    return pc.from_pieces(table.get(3), lambda g, i: table.get(pc.piece_key(3, g, i)))


def test_a_snapshot_bigger_than_an_entry_is_stored_in_pieces_under_the_bound_and_restored() -> None:
    original = crowded(5000)
    snap = pc.snapshot(original)
    assert len(orjson.dumps(snap)) > 1_000_000, "bigger than any table entry may be"
    bound = 512 * 1024
    table = store(snap, bound)
    assert len(table) > 2 and all(len(orjson.dumps(v)) <= bound for v in table.values())
    moved = AccountPartition.create(DetectorConfig(), 3)
    back = restored(table)
    assert back is not None and {"model", "convicted"} <= set(pc.restore(moved, back))
    assert moved.convicted == original.convicted


def test_pieces_that_do_not_match_their_manifest_restore_nothing() -> None:
    table = store(pc.snapshot(crowded(2000)), 64 * 1024)
    generation = table[3]["generation"]
    lost = dict(table)
    del lost[pc.piece_key(3, generation, 1)]
    assert restored(lost) is None
    other = store(pc.snapshot(crowded(2001)), 64 * 1024)  # a piece of another snapshot
    mixed = {**table, pc.piece_key(3, generation, 0): other[pc.piece_key(3, generation, 0)]}
    assert restored(mixed) is None
    assert pc.from_pieces({"format": 99}, lambda g, i: None) is None


def test_a_crash_before_the_new_manifest_leaves_the_previous_snapshot_whole() -> None:
    first = pc.snapshot(crowded(1500))
    table = store(first, 64 * 1024)
    second = pc.snapshot(crowded(1600))
    after = store(second, 64 * 1024, table)
    assert after[3]["generation"] != table[3]["generation"]
    crashed = {k: v for k, v in after.items() if k != 3} | {3: table[3]}  # manifest lost
    assert restored(crashed) == through_json(first)
    assert restored(after) == through_json(second)
    third = store(pc.snapshot(crowded(1700)), 64 * 1024, after)  # generations take turns
    assert third[3]["generation"] == table[3]["generation"] and restored(third) is not None


def test_a_snapshot_of_the_unpieced_format_still_restores() -> None:
    original = trained(DetectorConfig(), 0, 300)
    snap = through_json(pc.snapshot(original))  # as an older worker wrote it
    assert pc.from_pieces(snap, lambda g, i: None) == snap


def test_the_trees_structure_is_computed_once_and_goes_with_its_model() -> None:
    import gc
    import weakref
    part = trained(DetectorConfig(), 0, 300)
    first = pc.snapshot(part)["model"]
    assert pc.snapshot(part)["model"]["fingerprint"] == first["fingerprint"]
    hst = weakref.ref(part.model.hst)
    del part
    gc.collect()
    assert hst() is None, "a cache of the structure must not keep a moved partition's model"
