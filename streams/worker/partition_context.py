"""JSON snapshots of an account-stage partition's in-memory context, so it survives moves.

Besides the per-account states (changelogged tables), each account-stage partition keeps
context in worker memory (`models.account_stage.AccountPartition`):

- the watermark and the due index: rebuilt from the recovered account states when the
  partition arrives (`streams/worker/topology.py`, `account_partition`), nothing to snapshot;
- the online model, a River HalfSpaceTrees (`AccountPartition.model`);
- any further partition-local counters the core keeps (today the template recurrence counts,
  `AccountPartition.templates`);
- the convicted clusters broadcast to the partition (`AccountPartition.convicted`, as
  `ConvictedClusters.to_wire`), so a replacement account is still acted on at its first request
  after a move; a conviction received after the last snapshot is lost until it is re-issued;
- the templates known to the partition (`AccountPartition.known`, `KnownTemplates.to_wire`), so
  its accounts' prompts are recognised as templated after a move as before it.

The last two cannot be rebuilt from the account states. Without a snapshot a partition that
moves to another worker (a rebalance, a crash, a deploy) would start them cold there: the model
says nothing until it has learnt `2 * window_size` windows again (hours of traffic), and
template buckets must recur again before accounts join them. So the account stage writes this
snapshot into the changelogged `account_models` table (key: partition number) every
`SNAPSHOT_EVERY_LEARNS` learnt windows or `SNAPSHOT_EVERY_EVENTS` events of the partition,
and restores it when the partition is assigned. What happened on the partition between the
last snapshot and a crash is not in it (the events after the last commit are processed again,
the ones between the snapshot and the commit are not): a bounded, small loss, documented in
docs/operations.md.

Why a snapshot and not a rebuild: the model learns from window summaries in the order they
close and only while the account is not acted on, so rebuilding it means replaying hours of
requests through the account stage; a snapshot is a few table entries per partition (the
model a few KB; the convictions told to the partition up to megabytes, stored compressed in
pieces: `stored_pieces` below).

Why not pickle: River models pickle, but the project allows no pickle codec anywhere, and a
pickled changelog is code execution for whoever can write to it. The snapshot is plain JSON:

- model: its parameters (trees, height, window size, seed) and sorted feature names, a
  fingerprint of the tree structure (every split's feature and threshold), the node masses
  (`r_mass`, `l_mass` of every node, depth first) packed as little-endian uint32,
  zlib-compressed and base64-encoded, River's window counter and first-window flag, and the
  model's `seen`/`warmup` counts. HalfSpaceTrees draws its random splits from its seed when it
  sees its first sample, so the structure is rebuilt by one `learn_one` on a fresh model with
  the same seed and features; the fingerprint proves it is the same structure before the
  masses are written into it;
- other context objects (dataclasses of numbers, strings and byte arrays): field by field,
  byte arrays zlib-compressed and base64-encoded.

A part that does not fit (another River version, other parameters, a changed dataclass) is not
restored and starts cold, and the worker logs which parts were restored: a wrong model is worse
than a cold one.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import sys
import zlib
from array import array
from collections.abc import Callable
from typing import Any

import orjson

SNAPSHOT_FORMAT = 2
SNAPSHOT_EVERY_LEARNS = 25
SNAPSHOT_EVERY_EVENTS = 500
# Context objects of AccountPartition snapshotted field by field (besides the model).
CONTEXT_FIELDS = ("templates",)
# Context objects of AccountPartition snapshotted in their own wire form (`to_wire`/`from_wire`):
# the convicted clusters and the known templates broadcast to the partition.
WIRE_FIELDS = ("convicted", "known")


# ---- the online model ---------------------------------------------------------------------------

def _params(hst: Any) -> dict[str, Any]:
    return {"n_trees": hst.n_trees, "height": hst.height, "window_size": hst.window_size,
            "seed": hst.seed}


def _fingerprint(hst: Any) -> str:
    h = hashlib.sha256()
    for nodes in hst._tree_nodes:
        for node in nodes:
            feature = getattr(node, "feature", None)
            if feature is not None:
                h.update(f"{feature}<{node.threshold!r};".encode())
            else:
                h.update(b"leaf;")
        h.update(b"|")
    return h.hexdigest()[:32]


# The trees' structure (split features and thresholds) is drawn once, at the model's first
# sample, and never changes: its features and fingerprint are computed once and kept on the
# model itself (so they go when the model goes), for the tree list they were computed from.
_STRUCTURE_ATTR = "_distillguard_structure"


def _structure(hst: Any) -> tuple[list[str], str]:
    nodes = hst._tree_nodes
    cached = getattr(hst, _STRUCTURE_ATTR, None)
    if cached is not None and cached[0] is nodes:
        return cached[1], cached[2]
    features = sorted({n.feature for tree in nodes for n in tree
                       if getattr(n, "feature", None) is not None})
    fingerprint = _fingerprint(hst)
    setattr(hst, _STRUCTURE_ATTR, (nodes, features, fingerprint))
    return features, fingerprint


def _pack_ints(values: list[int]) -> str:
    arr = array("I", values)
    if sys.byteorder != "little":
        arr.byteswap()
    return _pack_bytes(arr.tobytes())


def _unpack_ints(text: str) -> list[int]:
    arr = array("I")
    arr.frombytes(_unpack_bytes(text))
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tolist()


def _pack_bytes(data: bytes) -> str:
    # level 1: a snapshot is written often (streams/worker/topology.py); level 6 made this
    # the largest share of a worker's time in a profile, for ~10% smaller snapshots
    return base64.b64encode(zlib.compress(data, 1)).decode()


def _unpack_bytes(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


def model_snapshot(model: Any) -> dict[str, Any]:
    """A JSON-serialisable snapshot of an `AccountModel` (HalfSpaceTrees + counters)."""
    hst = model.hst
    snap: dict[str, Any] = {"params": _params(hst), "seen": model.seen, "warmup": model.warmup,
                            "built": bool(hst.trees)}
    if not hst.trees:
        return snap
    features, fingerprint = _structure(hst)
    masses = [m for nodes in hst._tree_nodes for n in nodes for m in (n.r_mass, n.l_mass)]
    snap.update(features=features, fingerprint=fingerprint, counter=hst.counter,
                first_window=hst._first_window, masses=_pack_ints(masses))
    return snap


def restore_model(model: Any, snap: dict[str, Any]) -> bool:
    """Load `snap` into a freshly created (untrained) `AccountModel`; False if it does not fit.

    On False the model is left untouched (cold).
    """
    if not isinstance(snap, dict) or model.hst.trees or snap.get("params") != _params(model.hst):
        return False
    hst = copy.deepcopy(model.hst)
    if snap.get("built"):
        # One sample builds the trees from the seed exactly as the original first sample did
        # (the structure depends only on the seed and the feature names); its masses are then
        # overwritten below.
        hst.learn_one({f: 0.5 for f in snap["features"]})
        if _fingerprint(hst) != snap.get("fingerprint"):
            return False
        masses = _unpack_ints(snap["masses"])
        nodes = [n for tree_nodes in hst._tree_nodes for n in tree_nodes]
        if len(masses) != 2 * len(nodes):
            return False
        for i, node in enumerate(nodes):
            node.r_mass, node.l_mass = masses[2 * i], masses[2 * i + 1]
        hst.counter = int(snap["counter"])
        hst._first_window = bool(snap["first_window"])
    model.hst = hst
    model.seen = int(snap["seen"])
    model.warmup = int(snap["warmup"])
    return True


# ---- other context objects: dataclasses of plain values and byte arrays ------------------------

def fields_snapshot(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(obj).__name__}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bytes | bytearray):
            out[f.name] = {"zb64": _pack_bytes(bytes(value))}
        elif isinstance(value, bool | int | float | str) or value is None:
            out[f.name] = value
        else:
            raise TypeError(f"{type(obj).__name__}.{f.name} is not snapshottable")
    return out


def restore_fields(obj: Any, snap: dict[str, Any]) -> bool:
    """Set `obj`'s fields from `snap` if both have the same type, fields and value types."""
    if not isinstance(snap, dict) or snap.get("type") != type(obj).__name__:
        return False
    names = [f.name for f in dataclasses.fields(obj)]
    if set(names) != set(snap) - {"type"}:
        return False
    values = {}
    for name in names:
        current, saved = getattr(obj, name), snap[name]
        if isinstance(current, bytes | bytearray):
            if not isinstance(saved, dict) or "zb64" not in saved:
                return False
            data = _unpack_bytes(saved["zb64"])
            if len(data) != len(current):
                return False
            values[name] = type(current)(data)
        elif type(saved) is not type(current) and not (
                isinstance(current, float) and isinstance(saved, int)):
            return False
        else:
            values[name] = saved
    for name, value in values.items():
        setattr(obj, name, value)
    return True


# ---- the partition ------------------------------------------------------------------------------

def snapshot(part: Any) -> dict[str, Any]:
    """The snapshot of an `AccountPartition`'s model and other context (JSON-serialisable)."""
    snap: dict[str, Any] = {"format": SNAPSHOT_FORMAT, "model": model_snapshot(part.model)}
    for name in CONTEXT_FIELDS:
        obj = getattr(part, name, None)
        if obj is not None and dataclasses.is_dataclass(obj):
            snap[name] = fields_snapshot(obj)
    for name in WIRE_FIELDS:
        obj = getattr(part, name, None)
        if obj is not None:
            snap[name] = obj.to_wire()
    return snap


def restore(part: Any, snap: dict[str, Any]) -> list[str]:
    """Restore what fits of `snap` into a fresh `AccountPartition`; the names restored."""
    if not isinstance(snap, dict) or snap.get("format") != SNAPSHOT_FORMAT:
        return []
    restored = []
    if "model" in snap and restore_model(part.model, snap["model"]):
        restored.append("model")
    for name in CONTEXT_FIELDS:
        obj = getattr(part, name, None)
        if obj is not None and name in snap and restore_fields(obj, snap[name]):
            restored.append(name)
    for name in WIRE_FIELDS:
        if name in snap and hasattr(part, name):
            try:
                setattr(part, name, type(getattr(part, name)).from_wire(snap[name]))
                restored.append(name)
            except (TypeError, ValueError, KeyError, IndexError):
                pass  # not restored: the partition learns them again as they are re-issued
    return restored


# ---- stored in pieces: a snapshot of any size under max_state_bytes per table entry ---------
# A partition's snapshot grows with the convictions broadcast to it (each kept with its
# evidence until it expires): 1.8 MB of JSON for one partition of the default simulation at full
# scale, 3.5 MB with ten times the accounts, where a table entry could take 512 KiB. Stored whole
# it was refused at every write (`partition_context_snapshot_failed`), and a partition that moved
# started cold. So it is stored compressed (zlib, ~4x) and cut into pieces under the bound: the
# partition's key holds a manifest, `"<partition>/<generation>/<i>"` the pieces (base64: the
# table is JSON). Two generations take turns: a new snapshot's pieces go under the generation
# the manifest does not name, and the manifest last, so a crash before it leaves the previous
# snapshot whole. A manifest whose pieces do not match its digest (a piece lost) restores
# nothing: a cold start, logged.
STORED_FORMAT = 3
# base64 turns 3 bytes into 4, and the piece goes into a JSON string with its key
PIECE_OVERHEAD = 256


def piece_key(partition: int, generation: int, i: int) -> str:
    return f"{partition}/{generation}/{i}"


def next_generation(manifest: Any) -> int:
    """The generation a new snapshot is stored under: the one `manifest` does not name."""
    if isinstance(manifest, dict) and manifest.get("format") == STORED_FORMAT:
        return 1 - int(manifest.get("generation") == 1)
    return 0


def stored_pieces(snap: dict[str, Any], max_entry_bytes: int, generation: int = 0,
                  ) -> tuple[dict[str, Any], list[str]]:
    """The manifest and the pieces (base64 strings) that store `snap`, each piece's JSON under
    `max_entry_bytes`."""
    data = zlib.compress(orjson.dumps(snap), 1)  # level 1: 10 ms for 1.8 MB, 4x smaller
    raw_per_piece = max(1, (max_entry_bytes - PIECE_OVERHEAD) * 3 // 4)
    pieces = [base64.b64encode(data[i:i + raw_per_piece]).decode()
              for i in range(0, len(data), raw_per_piece)] or [""]
    manifest = {"format": STORED_FORMAT, "generation": generation, "pieces": len(pieces),
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return manifest, pieces


def from_pieces(manifest: Any, piece: Callable[[int, int], Any]) -> dict[str, Any] | None:
    """The snapshot a manifest and its pieces store (`piece(generation, i)` reads one), None
    when they do not hold one whole. A manifest of the older, unpieced format is the snapshot
    itself."""
    if not isinstance(manifest, dict):
        return None
    if manifest.get("format") == SNAPSHOT_FORMAT:
        return manifest
    if manifest.get("format") != STORED_FORMAT or not isinstance(manifest.get("pieces"), int):
        return None
    generation = manifest.get("generation", 0)
    try:
        data = b"".join(base64.b64decode(piece(generation, i))
                        for i in range(manifest["pieces"]))
    except (TypeError, ValueError):
        return None
    if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        return None
    try:
        snap = orjson.loads(zlib.decompress(data))
    except (zlib.error, ValueError):
        return None
    return snap if isinstance(snap, dict) else None
