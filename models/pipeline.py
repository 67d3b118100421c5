"""The whole detector in one process, for replay, evaluation and tests.

Routes records between the two stages exactly as the topics do in the live fleet (same keys,
same partitions, same partition-local watermarks and models) but synchronously: a summary
reaches its cluster partition, a tick every cluster partition, and a verdict its account,
before the next event is read.

    events ──▶ AccountStage ──summaries, ticks──▶ ClusterStage ──verdicts──▶ AccountStage ──▶ decisions

The stages meet in event time, not in arrival order (models/cluster_stage.py,
models/account_stage.py), so what this computes is what a live fleet computes whenever its
verdict round trip stays under `verdict_delay_s` of event time; `counts["late_verdicts"]` and
`counts["behind_summaries"]` say when a run strayed from that (and `judged_early_summaries`,
when a crowd's waiting summaries outgrew `cluster_pending_bytes`: models/cluster_stage.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from distillguard.models.account import AccountState
from distillguard.models.account_stage import AccountPartition, AccountStage, Outputs
from distillguard.models.allowlist import AllowList
from distillguard.models.cluster import ClusterState
from distillguard.models.cluster_stage import ClusterOutputs, ClusterPartition, ClusterStage
from distillguard.models.config import DetectorConfig
from distillguard.models.decision import Decision
from distillguard.models.due import SLICE
from distillguard.models.events import RequestEvent
from distillguard.models.messages import AccountVerdict, ClusterSummary
from distillguard.models.partitioning import partition_for


class Pipeline:
    def __init__(self, cfg: DetectorConfig, partitions: int = 12,
                 allow: AllowList | None = None) -> None:
        self.cfg = cfg
        self.partitions = partitions
        self.account_stage = AccountStage(cfg, allow)
        self.cluster_stage = ClusterStage(cfg)
        self.accounts: dict[str, AccountState] = {}
        self.clusters: dict[str, ClusterState] = {}
        self.account_parts = [AccountPartition.create(cfg, p) for p in range(partitions)]
        self.cluster_parts = [ClusterPartition.create(cfg, sources=partitions)
                              for _ in range(partitions)]
        self.counts: Counter[str] = Counter()
        # What is routed between the stages, in order, for a caller that sets these to lists
        # (the parity test compares them with what the live fleet's topics carried). Attributes,
        # not an overridable method: the compiled core's classes cannot be subclassed.
        self.routed_summaries: list[ClusterSummary] | None = None
        self.routed_verdicts: list[AccountVerdict] | None = None
        # Called every `slice_keys` due accounts (or clusters settled at a tick) of one step,
        # as the worker flushes there (bench/idle_memory.py: its idle states' flush). Between
        # two keys no state is half-changed. None: nothing to call (the replay).
        self.between_slices: Callable[[], None] | None = None
        self.slice_keys: int = SLICE

    def process(self, ev: RequestEvent) -> list[Decision]:
        """One event in; the decisions it leads to out (possibly for other accounts too)."""
        decisions: list[Decision] = []
        p = partition_for(ev.account_id, self.partitions)
        part = self.account_parts[p]
        state, out = self.account_stage.on_event(self.accounts.get(ev.account_id), ev, part)
        self.accounts[ev.account_id] = state
        self.counts["events"] += 1
        self.counts["late_events"] += out.late
        self._collect(p, out, decisions)
        between = self.between_slices
        for i, account_id in enumerate(self.account_stage.due_accounts(part)):
            if between is not None and i and i % self.slice_keys == 0:
                between()
            due_state = self.accounts.get(account_id)
            if due_state is None:
                continue
            due_out = self.account_stage.on_due(due_state, part)
            if due_out.expired:
                del self.accounts[account_id]
                self.counts["accounts_expired"] += 1
            self._collect(p, due_out, decisions)
        return decisions

    def run(self, events: Iterable[RequestEvent]) -> Iterator[Decision]:
        for ev in events:
            yield from self.process(ev)

    def _collect(self, source: int, out: Outputs, decisions: list[Decision]) -> None:
        decisions.extend(out.decisions)
        self.counts["late_verdicts"] += out.late_verdict
        if out.tick is not None:  # sent before the summaries, as the agent does
            for q in range(self.partitions):
                self._source_tick(q, source, out.tick, decisions)
        for summary in out.summaries:
            self._to_cluster(summary, decisions)

    def _to_cluster(self, s: ClusterSummary, decisions: list[Decision]) -> None:
        # About twice per event: each attribute is read once, and the stage's `keep_until_judged` makes no
        # outputs object (`on_summary`'s only output is `behind`).
        counts, key, clusters = self.counts, s.cluster_key, self.clusters
        counts["summaries"] += 1
        if self.routed_summaries is not None:
            self.routed_summaries.append(s)
        stage, part = self.cluster_stage, self.cluster_parts[partition_for(key, self.partitions)]
        cluster, behind = stage.keep_until_judged(clusters.get(key), s, part)
        clusters[key] = cluster
        counts["behind_summaries"] += behind
        if cluster.pending_bytes > stage.cfg.cluster_pending_bytes:
            out = stage.judge_early(cluster, part)
            counts["judged_early_summaries"] += out.judged_early
            self._to_accounts(out, decisions)

    def _source_tick(self, q: int, source: int, tick: int, decisions: list[Decision]) -> None:
        stage, part = self.cluster_stage, self.cluster_parts[q]
        between = self.between_slices
        for i, key in enumerate(stage.on_source_tick(part, source, tick)):
            if between is not None and i and i % self.slice_keys == 0:
                between()
            cluster = self.clusters.get(key)
            if cluster is not None:
                out = stage.settle(cluster, part)
                if out.verdicts or out.convictions or out.late:  # mostly nothing to pass on
                    self._to_accounts(out, decisions)
        for key in stage.expired_clusters(part):
            cluster = self.clusters.get(key)
            if cluster is not None and stage.is_expired(cluster, part):
                del self.clusters[key]
                self.counts["clusters_expired"] += 1

    def _to_accounts(self, out: ClusterOutputs, decisions: list[Decision]) -> None:
        self.counts["late_summaries"] += out.late
        for conviction in out.convictions:  # to every account partition
            for part in self.account_parts:
                self.counts["late_verdicts"] += self.account_stage.on_conviction(
                    conviction, part).late_verdict
        self.counts["verdicts"] += len(out.verdicts)
        if self.routed_verdicts is not None:
            self.routed_verdicts.extend(out.verdicts)
        for av in out.verdicts:
            acct_part = self.account_parts[partition_for(av.account_id, self.partitions)]
            acct, acct_out = self.account_stage.on_verdict(
                self.accounts.get(av.account_id), av, acct_part)
            self.accounts[av.account_id] = acct
            self.counts["late_verdicts"] += acct_out.late_verdict
            decisions.extend(acct_out.decisions)
