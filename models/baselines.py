"""Two baselines scored on the same traffic, so the evaluation shows what the cluster layer adds.

- `rate limit`: a per-account limit of `limit_per_min` requests per minute, the industry's
  usual defence: requests over the limit are refused, an account that ever hits it counts as
  acted on from that moment.
- `HST alone`: River HalfSpaceTrees on per-account windows, the same model and features the
  account stage uses, with no clusters: an account whose window scores at least `threshold` is
  blocked for the block TTL.

Both feed their own `Evaluation`, fed the same events as the detector's, in the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from distillguard.models.account import AccountWindow, add_event
from distillguard.models.config import DetectorConfig
from distillguard.models.decision import BLOCK, THROTTLE
from distillguard.models.detectors import AccountModel
from distillguard.models.evaluation import Evaluation, Report
from distillguard.models.events import RequestEvent
from distillguard.models.features import account_features
from distillguard.models.keys import template_keys
from distillguard.models.windows import window_start

# A generous per-account limit: well above what ordinary users send, below a scripted client.
RATE_LIMIT_PER_MIN = 20
HST_THRESHOLD = 0.9


@dataclass(slots=True)
class _Minute:
    minute: int = -1
    count: int = 0


@dataclass
class Baselines:
    labels: dict[str, tuple[str, str]]
    cfg: DetectorConfig
    limit_per_min: int = RATE_LIMIT_PER_MIN
    threshold: float = HST_THRESHOLD
    rate_limit: Evaluation = field(init=False)
    hst: Evaluation = field(init=False)
    _minutes: dict[str, _Minute] = field(default_factory=dict)
    _windows: dict[str, AccountWindow] = field(default_factory=dict)
    _created: dict[str, float | None] = field(default_factory=dict)
    _model: AccountModel = field(init=False)

    def __post_init__(self) -> None:
        self.rate_limit = Evaluation(self.labels)
        self.hst = Evaluation(self.labels)
        cfg = self.cfg
        self._model = AccountModel.create(seed=cfg.account_model_seed,
                                          n_trees=cfg.account_model_trees,
                                          height=cfg.account_model_height,
                                          window_size=cfg.account_model_window)

    def observe(self, ev: RequestEvent) -> None:
        self._observe_rate_limit(ev)
        self._observe_hst(ev)

    def reports(self) -> dict[str, Report]:
        return {f"per-account rate limit ({self.limit_per_min}/min)": self.rate_limit.report(),
                f"HalfSpaceTrees on account windows alone (score >= {self.threshold})":
                    self.hst.report()}

    def _observe_rate_limit(self, ev: RequestEvent) -> None:
        self.rate_limit.observe_event(ev.account_id, ev.ts)
        m = self._minutes.get(ev.account_id)
        if m is None:
            m = self._minutes[ev.account_id] = _Minute()
        minute = int(ev.ts // 60)
        if minute != m.minute:
            m.minute, m.count = minute, 0
        m.count += 1
        if m.count == self.limit_per_min:
            # The limit is reached: no allowance left until the minute ends.
            rest_of_minute = (minute + 1) * 60 - ev.ts
            self.rate_limit.observe_decision(ev.account_id, THROTTLE, ev.ts,
                                             max(1, math.ceil(rest_of_minute)), 0)

    def _observe_hst(self, ev: RequestEvent) -> None:
        self.hst.observe_event(ev.account_id, ev.ts)
        cfg = self.cfg
        start = window_start(ev.ts, cfg.window_s)
        win = self._windows.get(ev.account_id)
        if win is not None and start > win.start:
            created = self._created.get(ev.account_id)
            age = None if created is None else win.last_ts - created
            score = self._model.score_and_learn(account_features(win, cfg.window_s, age),
                                                may_learn=True)
            if score >= self.threshold:
                self.hst.observe_decision(ev.account_id, BLOCK, ev.ts, cfg.block_ttl_s, None)
            win = None
        if win is None:
            win = self._windows[ev.account_id] = AccountWindow(start=start)
            self._created[ev.account_id] = ev.account_created_ts
        add_event(win, ev, template_keys(ev.simhash, cfg.simhash_bands), [])
