"""Explainable evidence: a cluster's crowd -> a score in [0, 1] with reasons an analyst can read.

A crowd is judged by its accounts, each counted once by its own behaviour (models/behaviour.py),
never by shares of requests (a few heavy accounts would set those for everyone):

- *harvesting* members ask for high-value answers with a tell of harvesting on top (written-out
  reasoning, several known crowd templates, sustained templated volume, rotation);
- *suspicious* members harvest on a cheap identity: a young account, or one that rotates its
  network and client (bought and aged accounts rotate to look like many people).

The score is the share of the crowd that harvests on cheap identities (`campaign` below), a
little more for a wave of new accounts, a crowd that keeps coming back or a large one. So a key shared honestly scores low however many campaign accounts
pass through it: a big ISP, a campus NAT, a tutorial prompt, a popular tool's system prompt. Its
honest members harvest nothing, or harvest on established identities (a campus's students, an
enterprise's batch accounts: the harvest is theirs). The Fraudar idea of down-weighting popular
targets, applied through who the members are. A crowd needs `min_accounts` suspicious members to be
scored at all (`template_min_accounts` for a template bucket, whose crowd must also agree on a
template: models/cluster.py; `cluster_min_accounts` for the other keys).

A verdict also carries `prior` (`newcomer_prior`): how likely an account joining the key with too
little history of its own to judge is one of its suspicious members (models/policy.py). A
campaign's own card has a prior near 1; a reseller's card with a few attackers on it, 0.

A crowd that keeps coming back, window after window, counts like a wave of new accounts: a slow
campaign, or one that outlasts the horizon, spreads its accounts over hours. A prompt template's
crowd is sized by every account the cluster remembers (members are kept until idle for
`idle_expiry_s`), not only those active in the horizon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distillguard.models.cluster import ClusterState, horizon_totals
from distillguard.models.config import DetectorConfig
from distillguard.models.keys import is_template_key


@dataclass(frozen=True, slots=True)
class ClusterEvidence:
    score: float
    accounts: int  # active in the horizon
    harvesting: int  # of them, harvesting (models/behaviour.py)
    suspicious: int  # of them, harvesting on a young or rotating identity
    young_share: float
    rotating_share: float  # harvesting while rotating (models/cluster.py `member_flags`)
    new_share: float
    # What was asked under the key, as shares of its requests: for the analyst only.
    reasoning_share: float
    high_value_share: float
    requests_per_account: float
    # Share of the horizon's windows the key was used in.
    persistence: float = 0.0
    # Distinct accounts the cluster remembers (active within idle_expiry_s); the size of a
    # template's crowd (0 for other keys: their size is the horizon's).
    remembered: int = 0
    # How likely a newcomer to the key is one of its suspicious members (`newcomer_prior`).
    prior: float = 0.0
    # Share of the suspicious members that have harvested known templates for longer than a
    # tutorial or a course lasts: a crowd proven a campaign, whose newcomers are judged by it.
    proven: float = 0.0

    def reason(self, cluster_key: str) -> str:
        template = is_template_key(cluster_key)
        persistent = (f", used in {self.persistence:.0%} of the horizon's windows"
                      if template else "")
        crowd = (f" ({self.remembered} over the last hours)"
                 if template and self.remembered > self.accounts else "")
        return (f"cluster {cluster_key} score {self.score:.2f}: {self.accounts} accounts{crowd}, "
                f"{self.harvesting} harvesting, {self.suspicious} of them young or rotating, "
                f"{self.young_share:.0%} young, {self.rotating_share:.0%} rotating harvesters, "
                f"{self.new_share:.0%} new in the last hour{persistent}, "
                f"{self.high_value_share:.0%} coding/reasoning/math/tools, "
                f"{self.reasoning_share:.0%} reasoning requested, "
                f"{self.requests_per_account:.1f} requests/account")


# Honest harvesters assumed in every crowd beside those seen (a pseudo-count), and what a member
# not seen harvesting counts for: see `campaign`.
HONEST_PSEUDO_MEMBERS = 2
UNDETERMINED_WEIGHT = 0.5
# The share of the horizon's windows a crowd must have been active in for its proven members to
# count against the assumed honest ones (see `campaign`): six of eight is an hour and a half,
# longer than a lab session or a class.
PROVEN_PERSISTENCE = 0.75


def min_accounts(cluster_key: str, cfg: DetectorConfig) -> int:
    """Suspicious members a key needs before it is scored at all."""
    if is_template_key(cluster_key):
        return cfg.template_min_accounts
    return cfg.cluster_min_accounts


def newcomer_prior(state: ClusterState, cfg: DetectorConfig) -> float:
    """How likely an account joining the key, with too little history of its own to judge, is
    one of its suspicious members: their share of every member the cluster remembers (not only
    the horizon's: a tutorial's template, kept up by a handful of attackers after its wave of
    new users has moved on, is still the wave's), and nothing for a crowd of fewer suspicious
    members than `cluster_min_accounts` (a handful of attackers are no campaign to judge
    strangers by)."""
    remembered = len(state.members)
    if state.remembered_suspicious < cfg.cluster_min_accounts or not remembered:
        return 0.0
    return state.remembered_suspicious / remembered


def persistence(state: ClusterState, cfg: DetectorConfig) -> float:
    """Share of the horizon's windows in which the key was used at all (0..1)."""
    used = sum(1 for w in state.windows.values() if w.requests > 0)
    return min(1.0, used / cfg.cluster_horizon_windows)


def cluster_evidence(state: ClusterState, cfg: DetectorConfig) -> ClusterEvidence:
    n = state.active
    suspicious = state.active_suspicious
    totals = horizon_totals(state)
    requests = max(1, totals.requests)
    young = state.active_young / n if n else 0.0
    rotating = state.active_rotating / n if n else 0.0
    new = state.active_new / n if n else 0.0
    template = is_template_key(state.cluster_key)
    persistent = persistence(state, cfg)
    # A template's crowd: every account remembered using it, not only the horizon's.
    remembered = max(n, len(state.members)) if template else 0
    least = min_accounts(state.cluster_key, cfg)
    if suspicious < least or totals.requests == 0 or (template and not state.template):
        # (a template bucket whose members agree on no template, models/cluster.py: prompts
        # that share 16 bits by chance, or a crowd too small to tell, is no template crowd;
        # a verdict without a signature would match nobody until its next re-issue)
        score = 0.0
    else:
        # The share of the crowd that harvests on cheap identities: near 1 for a campaign's own
        # key, low for one it shares with honest harvesters (a campus's students, an
        # enterprise's batch accounts: the harvest is theirs). Members not seen harvesting
        # (yet) count for half an honest harvester each: a campaign's newcomers soon harvest,
        # most of a class or a launch wave never does. And HONEST_PSEUDO_MEMBERS honest
        # harvesters are assumed beside those seen, so that the first few members of a crowd
        # (young students of a class that is mostly established) do not convict it by the luck
        # of who came first. A verdict weighs on each account by its own behaviour
        # (models/policy.py).
        # (The assumed honest harvesters go down to half as the suspicious members of a crowd
        # that keeps coming back prove themselves: those harvesting known templates for longer
        # than a tutorial lasts, in a crowd active for longer than a lab or a class, are no luck
        # of the draw; a few heavy attackers in a class's crowd are not all of it.)
        undetermined = n - state.active_harvesting
        unproven = (max(0.5, 1.0 - state.active_sustained / suspicious)
                    if persistent >= PROVEN_PERSISTENCE else 1.0)
        campaign = suspicious / (state.active_harvesting + UNDETERMINED_WEIGHT * undetermined
                                 + HONEST_PSEUDO_MEMBERS * unproven)
        # A wave of new accounts, or a crowd that keeps coming back.
        wave = max(new, persistent)
        # Size: 0 at `least` suspicious members, 1 at eight times it (log scale). For a template,
        # the remembered crowd counts in the same proportion.
        crowd = suspicious * remembered / n if template and n else suspicious
        size = max(0.0, min(1.0, math.log(crowd / least) / math.log(8)))
        score = campaign * (0.85 + 0.15 * max(wave, size))
    return ClusterEvidence(score=round(min(1.0, score), 4), accounts=n,
                           harvesting=state.active_harvesting, suspicious=suspicious,
                           young_share=young, rotating_share=rotating, new_share=new,
                           reasoning_share=totals.reasoning / requests,
                           high_value_share=totals.high_value / requests,
                           requests_per_account=totals.requests / n if n else 0.0,
                           persistence=persistent, remembered=remembered,
                           prior=newcomer_prior(state, cfg),
                           proven=state.active_sustained / (suspicious + HONEST_PSEUDO_MEMBERS))
