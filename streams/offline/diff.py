"""Diff of two runs' decisions by account: which accounts change action, on what evidence.

    distillguard diff RUN_A.jsonl RUN_B.jsonl [--labels labels.jsonl] [--csv diff.csv]

A run is a decisions file (a replay's or sweep's output, or the enforcement topic dumped as
JSONL). Per account and run: the strongest action it received (block > throttle > allow), the
final one (its last decision), how many decisions, and the evidence behind the strongest: score,
the clusters it cites and the reasons. An account without decisions in a run was allowed
throughout. Accounts whose strongest or final action differs are listed, the largest changes
(block <-> allow) first; a matrix counts accounts by strongest action in A and in B.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from distillguard.models.decision import STRENGTH
from distillguard.streams.offline.replay_source import ReplayError

NONE = "-"  # no decision at all: allowed throughout


@dataclass
class AccountRun:
    """One account's decisions in one run."""

    strongest: str = NONE
    final: str = NONE
    decisions: int = 0
    score: float | None = None  # of the strongest decision
    event_ts: float | None = None  # when the strongest decision was made (event time)
    cluster_ids: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    decision_id: str = ""


@dataclass
class AccountChange:
    account_id: str
    a: AccountRun
    b: AccountRun
    label: str = ""

    @property
    def step(self) -> int:
        """How far the strongest action moved (block <-> allow = 2)."""
        return abs(_strength(self.a.strongest) - _strength(self.b.strongest))


@dataclass
class RunDiff:
    a_name: str
    b_name: str
    a_accounts: int
    b_accounts: int
    changes: list[AccountChange]
    matrix: Counter[tuple[str, str]]
    same_ids: int  # accounts with exactly the same decision ids in the same order
    model_versions: tuple[list[str], list[str]] = ([], [])


def _strength(action: str) -> int:
    return STRENGTH.get(action, 0)


def load_run(path: Path) -> dict[str, list[dict[str, Any]]]:
    """account -> its decisions in file order."""
    if not path.is_file():
        raise ReplayError(f"decisions file {path} does not exist")
    out: dict[str, list[dict[str, Any]]] = {}
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = orjson.loads(line)
                out.setdefault(str(d["account_id"]), []).append(d)
                if d["action"] not in STRENGTH:
                    raise ValueError(f"unknown action {d['action']!r}")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ReplayError(f"{path}:{n}: not an enforcement decision ({exc})") from None
    return out


def summarise(decisions: list[dict[str, Any]]) -> AccountRun:
    run = AccountRun(decisions=len(decisions))
    if not decisions:
        return run
    strongest = decisions[0]
    for d in decisions[1:]:
        if _strength(d["action"]) > _strength(strongest["action"]):
            strongest = d
    run.strongest = strongest["action"]
    run.final = decisions[-1]["action"]
    run.score = strongest.get("score")
    run.event_ts = strongest.get("event_ts")
    run.cluster_ids = list(strongest.get("cluster_ids") or [])
    run.reasons = list(strongest.get("reasons") or [])
    run.decision_id = strongest.get("decision_id", "")
    return run


def diff_runs(a_path: Path, b_path: Path,
              labels: dict[str, tuple[str, str]] | None = None) -> RunDiff:
    a, b = load_run(a_path), load_run(b_path)
    changes: list[AccountChange] = []
    matrix: Counter[tuple[str, str]] = Counter()
    same = 0
    for account in sorted(set(a) | set(b)):
        da, db = a.get(account, []), b.get(account, [])
        if [d.get("decision_id") for d in da] == [d.get("decision_id") for d in db]:
            same += 1
        ra, rb = summarise(da), summarise(db)
        matrix[(ra.strongest, rb.strongest)] += 1
        if ra.strongest != rb.strongest or ra.final != rb.final:
            label = "/".join(labels[account]) if labels and account in labels else ""
            changes.append(AccountChange(account, ra, rb, label))
    changes.sort(key=lambda c: (-c.step, -max(_strength(c.a.strongest),
                                              _strength(c.b.strongest)), c.account_id))
    versions = tuple(sorted({d.get("model_version", "?") for ds in run.values() for d in ds})
                     for run in (a, b))
    return RunDiff(str(a_path), str(b_path), len(a), len(b), changes, matrix, same,
                   (versions[0], versions[1]))


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _evidence(run: AccountRun, width: int = 110) -> list[str]:
    if run.strongest == NONE:
        return ["no decision: allowed throughout"]
    head = (f"{run.strongest} (final {run.final}, {run.decisions} decisions), score "
            f"{run.score if run.score is not None else '?'} at {_when(run.event_ts)}; "
            f"clusters {', '.join(run.cluster_ids[:4]) or 'none'}"
            + (f" +{len(run.cluster_ids) - 4}" if len(run.cluster_ids) > 4 else ""))
    # reasons[0] is the score summary; the evidence lines follow it
    return [head, *(f"  {r[:width]}" for r in run.reasons[1:4])]


def render_diff(diff: RunDiff, limit: int = 40) -> str:
    va, vb = diff.model_versions
    lines = [(f"A: {diff.a_name} ({diff.a_accounts:,} accounts with decisions, model "
             f"{', '.join(va)})"),
             (f"B: {diff.b_name} ({diff.b_accounts:,} accounts with decisions, model "
             f"{', '.join(vb)})"),
             f"{diff.same_ids:,} accounts have the same decision ids in the same order"
             + (" (ids name the model version, so they differ between settings)"
                if set(va) != set(vb) else "")
             + f"; {len(diff.changes):,} change their strongest or final action.", "",
             "strongest action per account (rows A, columns B; '-' = no decision):"]
    actions = [NONE, "allow", "throttle", "block"]
    corner = "A \\ B"
    lines.append(f"{corner:>10} " + " ".join(f"{x:>9}" for x in actions))
    for x in actions:
        lines.append(f"{x:>10} " + " ".join(f"{diff.matrix.get((x, y), 0):>9,}"
                                             for y in actions))
    if diff.changes:
        lines += ["", (f"accounts that change (largest changes first"
                      f"{f', first {limit}' if len(diff.changes) > limit else ''}):")]
    for c in diff.changes[:limit]:
        label = f"  [{c.label}]" if c.label else ""
        lines.append(f"{c.account_id}{label}: {c.a.strongest} -> {c.b.strongest}"
                     + (f" (final {c.a.final} -> {c.b.final})" if c.a.final != c.b.final
                        else ""))
        for side, run in (("A", c.a), ("B", c.b)):
            ev = _evidence(run)
            lines.append(f"    {side}: {ev[0]}")
            lines += [f"       {e}" for e in ev[1:]]
    if len(diff.changes) > limit:
        lines.append(f"... {len(diff.changes) - limit:,} more (--limit, or --csv for all)")
    return "\n".join(lines)


def write_diff_csv(diff: RunDiff, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account_id", "label", "a_strongest", "a_final", "a_decisions", "a_score",
                    "a_clusters", "a_evidence", "b_strongest", "b_final", "b_decisions",
                    "b_score", "b_clusters", "b_evidence"])
        for c in diff.changes:
            row: list[Any] = [c.account_id, c.label]
            for run in (c.a, c.b):
                row += [run.strongest, run.final, run.decisions,
                        "" if run.score is None else run.score, " ".join(run.cluster_ids),
                        " | ".join(run.reasons[1:])]
            w.writerow(row)
