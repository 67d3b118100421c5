"""What any detector that acts through template crowds could reach on one campaign.

An oracle, not the detector: the campaign's templates are read from the labels (prompts of the
campaign's accounts within 8 SimHash bits of each other, used by at least two accounts), each
template is convicted the moment its k-th distinct account uses it (no delay, whole template
rather than LSH buckets), and every account is acted on at the earliest time one of its
templates is convicted and it has used that template. It prints, for several k, the share of
the campaign's requests served before action and the share of its accounts ever acted on.

Why it exists: it bounds the stealth targets. On the 10x-accounts variant some accounts send
no templated prompt at all, so no template crowd reaches them however fast it is convicted;
the recall printed here is the most such a detector can get.

    python bench/template_bound.py --input sim/  [--group campaign_stealth]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import orjson

SAME_TEMPLATE_BITS = 8
MIN_TEMPLATE_ACCOUNTS = 2  # (so the bound holds at k = 2 too)


def load(directory: Path, group: str) -> list[tuple[float, str, int]]:
    labels = {r["account_id"]: r["group"]
              for r in map(orjson.loads, (directory / "labels.jsonl").read_bytes().splitlines())}
    requests = []
    with (directory / "events.jsonl").open("rb") as f:
        for line in f:
            e = orjson.loads(line)
            if labels.get(e["account_id"]) == group:
                requests.append((e["ts"], e["account_id"], int(e["prompt_simhash"], 16)))
    requests.sort()
    return requests


def templates_of(requests: list[tuple[float, str, int]]) -> dict[int, int]:
    """Prompt SimHash -> template index, for the prompts of templates several accounts use."""
    accounts_by_prompt: dict[int, set[str]] = defaultdict(set)
    for _, account, simhash in requests:
        accounts_by_prompt[simhash].add(account)
    groups: list[tuple[int, list[int]]] = []  # (first prompt, prompts near it)
    for simhash in accounts_by_prompt:
        for first, members in groups:
            if (first ^ simhash).bit_count() <= SAME_TEMPLATE_BITS:
                members.append(simhash)
                break
        else:
            groups.append((simhash, [simhash]))
    template: dict[int, int] = {}
    for index, (_, members) in enumerate(groups):
        if len(set().union(*(accounts_by_prompt[p] for p in members))) >= MIN_TEMPLATE_ACCOUNTS:
            template.update(dict.fromkeys(members, index))
    return template


def bound(requests: list[tuple[float, str, int]], template: dict[int, int],
          k: int) -> tuple[float, float]:
    """(share of requests served before action, share of accounts acted on)."""
    users: dict[int, list[str]] = defaultdict(list)
    convicted: dict[int, float] = {}
    first_use: dict[tuple[str, int], float] = {}
    for ts, account, simhash in requests:
        t = template.get(simhash)
        if t is None:
            continue
        first_use.setdefault((account, t), ts)
        if t not in convicted and account not in users[t]:
            users[t].append(account)
            if len(users[t]) >= k:
                convicted[t] = ts
    acted: dict[str, float] = {}
    for (account, t), ts in first_use.items():
        if t in convicted:
            at = max(ts, convicted[t])
            acted[account] = min(at, acted.get(account, at))
    before = sum(1 for ts, account, _ in requests if account not in acted or ts < acted[account])
    accounts = {account for _, account, _ in requests}
    return before / len(requests), len(acted) / len(accounts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True,
                        help="directory with events.jsonl and labels.jsonl (distillguard simulate)")
    parser.add_argument("--group", default="campaign_stealth")
    args = parser.parse_args()
    requests = load(args.input, args.group)
    if not requests:
        raise SystemExit(f"no request of group {args.group!r} in {args.input}")
    template = templates_of(requests)
    accounts = {a for _, a, _ in requests}
    templated = {a for _, a, h in requests if h in template}
    print(f"{args.group}: {len(requests):,} requests, {len(accounts):,} accounts, "
          f"{len(set(template.values()))} templates; "
          f"{1 - len(templated) / len(accounts):.1%} of its accounts send no templated prompt")
    for k in (2, 3, 4, 6, 8):
        before, acted = bound(requests, template, k)
        print(f"convicted at account {k} of each template: {before:.1%} served before action, "
              f"{acted:.1%} of accounts acted on")


if __name__ == "__main__":
    main()
