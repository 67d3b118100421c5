"""Features of an account window, scaled to [0, 1] for the online model and for rules.

Counts are heavy-tailed, so they go through log1p and a cap before scaling (HalfSpaceTrees
assumes features in [0, 1]).

>>> from distillguard.models.account import AccountWindow
>>> f = account_features(AccountWindow(start=0, requests=10, reasoning=9, high_value=10,
...                                    completion_tokens=20000), window_s=300, age_s=3600.0)
>>> round(f["reasoning_share"], 2), round(f["young"], 2)
(0.9, 1.0)
"""

from __future__ import annotations

import math

from distillguard.models.account import AccountWindow, template_reuse

_LOG_REQUESTS_CAP = math.log1p(600)  # 2 requests/s for a 5-minute window
_LOG_TOKENS_CAP = math.log1p(5_000)  # completion tokens per request
_YOUNG_S = 30 * 86400.0


def _log_scaled(value: float, cap_log: float) -> float:
    return min(1.0, math.log1p(max(0.0, value)) / cap_log)


def regularity(win: AccountWindow) -> float:
    """1 for perfectly regular inter-arrival times, towards 0 for bursty human use."""
    if win.gap_n < 3 or win.gap_sum <= 0:
        return 0.0
    mean = win.gap_sum / win.gap_n
    var = max(0.0, win.gap_sq_sum / win.gap_n - mean * mean)
    cv = math.sqrt(var) / mean
    return 1.0 / (1.0 + cv)


def account_features(win: AccountWindow, window_s: int, age_s: float | None) -> dict[str, float]:
    n = max(1, win.requests)
    rate_scale = 300.0 / window_s  # keep the scale comparable across window lengths
    return {
        "requests": _log_scaled(win.requests * rate_scale, _LOG_REQUESTS_CAP),
        "completion_per_request": _log_scaled(win.completion_tokens / n, _LOG_TOKENS_CAP),
        "reasoning_share": win.reasoning / n,
        "high_value_share": win.high_value / n,
        "tools_share": win.with_tools / n,
        "error_share": win.errors / n,
        "template_reuse": template_reuse(win),
        "regularity": regularity(win),
        "ip_prefixes": min(1.0, (len(win.ip_prefixes) - 1) / 7) if win.ip_prefixes else 0.0,
        # Unknown age counts as middle-aged: neither evidence for nor against.
        "young": 0.5 if age_s is None else max(0.0, 1.0 - age_s / _YOUNG_S),
    }
