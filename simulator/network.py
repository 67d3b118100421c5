"""Where requests come from: ISPs, clouds, proxy hosters, campuses, and their addresses.

The ASNs are real operators' numbers; the address blocks are plausible but illustrative (no
block is shared by two entries, so an address always maps back to one ASN). Client software is
described by user-agent pools. Everything here is data plus small pure functions of an rng.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

# UTC offsets in January (no daylight saving), by ISO country code.
TZ_OFFSET_H: dict[str, float] = {
    "US": -6.0, "CA": -5.0, "MX": -6.0, "BR": -3.0, "GB": 0.0, "DE": 1.0, "FR": 1.0, "ES": 1.0,
    "IT": 1.0, "NL": 1.0, "PL": 1.0, "TR": 3.0, "NG": 1.0, "ZA": 2.0, "IN": 5.5, "SG": 8.0,
    "ID": 7.0, "VN": 7.0, "PH": 8.0, "TW": 8.0, "KR": 9.0, "JP": 9.0, "AU": 10.0, "HK": 8.0,
    "IE": 0.0,
}


@dataclass(frozen=True)
class Network:
    """One operator: its ASN, country, IPv4 /16 blocks (a, b_lo, b_hi) and optional IPv6 /32."""

    asn: int
    name: str
    country: str
    v4: tuple[tuple[int, int, int], ...]
    v6: tuple[int, int] | None = None  # first two hextets of the operator's IPv6 block
    weight: float = 1.0  # share of the country's users on this operator


RESIDENTIAL: tuple[Network, ...] = (
    Network(7922, "Comcast", "US", ((73, 0, 255),), (0x2601, 0x0100), 4.0),
    Network(20115, "Charter", "US", ((71, 80, 95), (97, 80, 99)), (0x2603, 0x6000), 2.5),
    Network(7018, "AT&T", "US", ((99, 0, 127),), (0x2600, 0x1700), 2.5),
    Network(701, "Verizon", "US", ((108, 0, 55), (96, 224, 255)), None, 2.0),
    Network(21928, "T-Mobile US", "US", ((172, 32, 63),), (0x2607, 0xFB90), 1.5),
    Network(2856, "BT", "GB", ((81, 128, 159), (86, 128, 191)), (0x2A00, 0x23C0), 2.0),
    Network(5089, "Virgin Media", "GB", ((82, 0, 47),), None, 1.5),
    Network(5607, "Sky", "GB", ((90, 192, 255),), None, 1.0),
    Network(3320, "Deutsche Telekom", "DE", ((79, 192, 255), (87, 128, 191)), (0x2003, 0x00E0), 3.0),
    Network(3209, "Vodafone DE", "DE", ((88, 64, 79),), None, 1.5),
    Network(3215, "Orange FR", "FR", ((90, 0, 127),), (0x2A01, 0xCB00), 2.0),
    Network(12322, "Free", "FR", ((82, 64, 127), (88, 160, 191)), (0x2A01, 0x0E0A), 1.5),
    Network(55836, "Reliance Jio", "IN", ((49, 32, 47), (157, 32, 51)), (0x2409, 0x4000), 3.0),
    Network(24560, "Airtel", "IN", ((122, 160, 191),), None, 2.0),
    Network(28573, "Claro BR", "BR", ((177, 0, 63), (189, 0, 63)), None, 2.0),
    Network(18881, "Vivo", "BR", ((187, 0, 63),), None, 1.5),
    Network(4713, "NTT OCN", "JP", ((153, 128, 255),), None, 2.0),
    Network(2516, "KDDI", "JP", ((106, 128, 191),), (0x240B, 0x0010), 1.5),
    Network(4766, "KT", "KR", ((121, 128, 191), (175, 192, 255)), None, 2.0),
    Network(812, "Rogers", "CA", ((174, 112, 127),), None, 1.5),
    Network(577, "Bell Canada", "CA", ((184, 144, 175),), None, 1.5),
    Network(1221, "Telstra", "AU", ((101, 160, 191), (110, 140, 159)), None, 2.0),
    Network(3352, "Telefonica ES", "ES", ((83, 32, 63),), None, 2.0),
    Network(3269, "TIM", "IT", ((79, 0, 63),), None, 2.0),
    Network(1136, "KPN", "NL", ((77, 160, 175),), None, 2.0),
    Network(5617, "Orange Polska", "PL", ((83, 0, 31),), None, 2.0),
    Network(8151, "Telmex", "MX", ((189, 128, 191),), None, 2.0),
    Network(7713, "Telkom Indonesia", "ID", ((36, 64, 95),), None, 2.0),
    Network(7552, "Viettel", "VN", ((27, 64, 79),), None, 2.0),
    Network(3758, "SingNet", "SG", ((116, 86, 89),), None, 2.0),
    Network(3462, "Chunghwa Telecom", "TW", ((114, 24, 47),), None, 2.0),
    Network(9121, "Turk Telekom", "TR", ((85, 96, 111),), None, 2.0),
    Network(29465, "MTN Nigeria", "NG", ((102, 88, 91),), None, 2.0),
    Network(37457, "Telkom SA", "ZA", ((105, 224, 255),), None, 2.0),
    Network(9299, "PLDT", "PH", ((112, 198, 211),), None, 2.0),
)

CLOUD: tuple[Network, ...] = (
    Network(16509, "Amazon AWS", "US", ((3, 80, 95), (52, 0, 95), (54, 64, 95))),
    Network(15169, "Google", "US", ((34, 64, 127), (35, 184, 239))),
    Network(8075, "Microsoft Azure", "US", ((20, 0, 127), (40, 64, 127))),
)

# Hosters whose ranges commercial proxy and router services rent.
DATACENTER: tuple[Network, ...] = (
    Network(9009, "M247", "NL", ((185, 156, 159), (89, 238, 239))),
    Network(20473, "Vultr", "US", ((45, 32, 32), (45, 76, 77), (149, 28, 28))),
    Network(24940, "Hetzner", "DE", ((88, 198, 198), (95, 216, 217), (116, 202, 203))),
    Network(16276, "OVH", "FR", ((51, 75, 91), (145, 239, 239))),
    Network(14061, "DigitalOcean", "SG", ((138, 68, 68), (159, 65, 65), (167, 99, 99))),
    Network(60781, "Leaseweb", "NL", ((5, 79, 79), (37, 48, 48))),
    Network(45102, "Alibaba Cloud", "SG", ((47, 74, 91),)),
    Network(132203, "Tencent Cloud", "HK", ((43, 128, 159),)),
    Network(21859, "Zenlayer", "US", ((128, 1, 1), (98, 98, 98))),
)

UNIVERSITY: tuple[Network, ...] = (
    Network(25, "UC Berkeley", "US", ((128, 32, 32), (136, 152, 152))),
    Network(3, "MIT", "US", ((18, 0, 31),)),
    Network(32, "Stanford", "US", ((171, 64, 67),)),
    Network(680, "DFN", "DE", ((141, 0, 99),)),
    Network(786, "Jisc/JANET", "GB", ((128, 232, 232), (131, 227, 227))),
    Network(2907, "SINET", "JP", ((133, 11, 11),)),
)

# Mobile carriers whose subscribers share carrier-grade NAT pools (a subset of RESIDENTIAL, so
# an address still maps back to one ASN).
MOBILE: tuple[Network, ...] = tuple(
    n for n in RESIDENTIAL if n.asn in (21928, 55836, 24560, 3209, 29465, 7552, 7713, 28573, 18881))

# Hosted-notebook services (Colab, SageMaker Studio Lab) leave from their cloud's egress ranges.
NOTEBOOK_EGRESS: tuple[Network, ...] = (CLOUD[1], CLOUD[0])

# Upstreams that conference centres and event venues buy business fibre or event Wi-Fi from
# (a venue may also sit on a local ISP's business line, see RESIDENTIAL).
VENUE: tuple[Network, ...] = (
    Network(174, "Cogent", "US", ((38, 96, 127),)),
    Network(3356, "Lumen", "US", ((4, 16, 31),)),
    Network(6939, "Hurricane Electric", "US", ((216, 218, 218),)),
    Network(8220, "Colt", "GB", ((212, 36, 39),)),
    Network(5511, "Orange Business", "FR", ((193, 251, 251),)),
    Network(2497, "IIJ", "JP", ((210, 130, 131),)),
    Network(4755, "Tata Communications", "IN", ((14, 140, 143),)),
)

# Where ordinary API users are (share of accounts).
COUNTRY_WEIGHTS: dict[str, float] = {
    "US": 30, "IN": 10, "GB": 6, "DE": 6, "BR": 5, "FR": 4, "JP": 4, "CA": 4, "KR": 3, "AU": 3,
    "ES": 3, "IT": 3, "MX": 3, "ID": 3, "NL": 2, "PL": 2, "VN": 2, "SG": 2, "TW": 2, "TR": 2,
    "NG": 1, "ZA": 1, "PH": 1,
}

_BY_COUNTRY: dict[str, tuple[Network, ...]] = {}
for _net in RESIDENTIAL:
    _BY_COUNTRY[_net.country] = (*_BY_COUNTRY.get(_net.country, ()), _net)


class Picker:
    """Weighted choice with precomputed cumulative weights (random.choices is slower per call)."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, weighted: list[tuple[Any, float]] | tuple[tuple[Any, float], ...]):
        self.items = [item for item, _ in weighted]
        self.cum: list[float] = []
        total = 0.0
        for _, w in weighted:
            total += w
            self.cum.append(total)
        self.total = total

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect_right(self.cum, rng.random() * self.total)]


COUNTRIES = Picker(list(COUNTRY_WEIGHTS.items()))
_ISP_IN: dict[str, Picker] = {c: Picker([(n, n.weight) for n in nets]) for c, nets in _BY_COUNTRY.items()}
ALL_RESIDENTIAL = Picker([(n, n.weight * COUNTRY_WEIGHTS.get(n.country, 1.0) / sum(
    m.weight for m in _BY_COUNTRY[n.country])) for n in RESIDENTIAL])


def isp_in(country: str, rng: random.Random) -> Network:
    isp: Network = _ISP_IN[country].pick(rng)
    return isp


def v4_in(net: Network, rng: random.Random) -> str:
    """A random host address in one of the operator's blocks."""
    r = rng.random
    a, lo, hi = net.v4[int(r() * len(net.v4))]
    return f"{a}.{lo + int(r() * (hi - lo + 1))}.{int(r() * 256)}.{1 + int(r() * 254)}"


def v4_prefix24(net: Network, rng: random.Random) -> tuple[int, int, int]:
    """A random /24 (as its three leading octets) in one of the operator's blocks."""
    a, lo, hi = net.v4[rng.randrange(len(net.v4))]
    return (a, rng.randint(lo, hi), rng.randrange(256))


def v4_host(prefix: tuple[int, int, int], rng: random.Random) -> str:
    a, b, c = prefix
    return f"{a}.{b}.{c}.{2 + int(rng.random() * 253)}"


def v6_in(net: Network, rng: random.Random) -> str:
    """A household address: operator /32, random /64, random interface id."""
    assert net.v6 is not None
    h1, h2 = net.v6
    r = rng.getrandbits
    return (f"{h1:x}:{h2 + r(4):x}:{r(16):x}:{r(16):x}:"
            f"{r(16):x}:{r(16):x}:{r(16):x}:{r(16):x}")


def home_address(net: Network, rng: random.Random, ipv6_share: float) -> str:
    """A subscriber's address; about `ipv6_share` of all subscribers get IPv6.

    Roughly half of the users sit on operators with IPv6 (`Network.v6`), so those get it with
    twice the target share.
    """
    if net.v6 is not None and rng.random() < ipv6_share * 2.0:
        return v6_in(net, rng)
    return v4_in(net, rng)


def rotating_exit(rng: random.Random, pool: Picker = ALL_RESIDENTIAL) -> tuple[str, int, str]:
    """A residential proxy exit: (ip, asn, country) of a random subscriber anywhere."""
    net: Network = pool.pick(rng)
    return v4_in(net, rng), net.asn, net.country


# --- client software ------------------------------------------------------------------------

_CHROME_OS = (
    "Windows NT 10.0; Win64; x64",
    "Macintosh; Intel Mac OS X 10_15_7",
    "X11; Linux x86_64",
)


def random_user_agent(rng: random.Random) -> str | None:
    """A client as ordinary API users run them: SDKs of many versions, scripts, a few browsers."""
    u = rng.random()
    if u < 0.38:
        return (f"anthropic-python/0.{rng.randint(28, 45)}.{rng.randint(0, 3)} "
                f"CPython/3.{rng.randint(9, 13)}.{rng.randint(0, 9)} "
                f"{rng.choice(('Linux', 'Darwin', 'Windows'))}")
    if u < 0.60:
        return f"anthropic-typescript/0.{rng.randint(24, 36)}.{rng.randint(0, 2)}"
    if u < 0.66:
        return f"python-requests/2.{rng.randint(28, 32)}.{rng.randint(0, 3)}"
    if u < 0.71:
        return f"axios/1.{rng.randint(4, 7)}.{rng.randint(0, 9)}"
    if u < 0.75:
        return f"curl/8.{rng.randint(0, 11)}.{rng.randint(0, 1)}"
    if u < 0.78:
        return "Go-http-client/2.0"
    if u < 0.81:
        return f"anthropic-java/1.{rng.randint(0, 4)}.0"
    if u < 0.83:
        return f"anthropic-go/0.2.{rng.randint(0, 9)}"
    if u < 0.85:
        return None  # some clients send no user agent
    if u < 0.93:
        return (f"Mozilla/5.0 ({rng.choice(_CHROME_OS)}) AppleWebKit/537.36 (KHTML, like Gecko) "
                f"Chrome/{rng.randint(126, 132)}.0.0.0 Safari/537.36")
    if u < 0.97:
        return (f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                f"(KHTML, like Gecko) Version/{rng.randint(16, 18)}.{rng.randint(0, 6)} Safari/605.1.15")
    return (f"Mozilla/5.0 (X11; Linux x86_64; rv:{rng.randint(120, 134)}.0) Gecko/20100101 "
            f"Firefox/{rng.randint(120, 134)}.0")


def sdk_user_agent(rng: random.Random) -> str:
    """A current SDK build, the kind automated clients and new users run."""
    if rng.random() < 0.7:
        return (f"anthropic-python/0.{rng.randint(40, 45)}.{rng.randint(0, 2)} "
                f"CPython/3.{rng.randint(10, 12)}.{rng.randint(0, 9)} Linux")
    return f"anthropic-typescript/0.{rng.randint(32, 36)}.{rng.randint(0, 2)}"


def python_sdk_user_agent(rng: random.Random) -> str:
    """A current Python SDK build on Linux: what Python tools (eval harnesses, notebooks on a
    cloud VM, CI jobs) run under."""
    return (f"anthropic-python/0.{rng.randint(40, 45)}.{rng.randint(0, 2)} "
            f"CPython/3.{rng.randint(10, 12)}.{rng.randint(0, 9)} Linux")


@dataclass(frozen=True)
class Tool:
    """An open-source coding tool as the gateway sees it: the user agents of its releases
    (newest first; illustrative version numbers) and the tool definitions it sends."""

    name: str
    user_agents: tuple[str, ...]
    tools: int  # tool definitions sent with every request (0: the tool parses plain text)


OSS_TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("aider", ("aider/0.62.1", "aider/0.61.0", "aider/0.60.1", "aider/0.59.1"), 0),
    Tool("cline", ("Cline/3.2.5", "Cline/3.1.10", "Cline/3.0.12", "Cline/2.2.14"), 11),
    Tool("continue", ("Continue/0.9.246", "Continue/0.9.240", "Continue/0.8.66",
                      "Continue/0.8.61"), 0),
    Tool("opencode", ("opencode/0.3.22", "opencode/0.3.14", "opencode/0.2.30",
                      "opencode/0.2.12"), 9),
    Tool("goose", ("goose/1.0.5", "goose/1.0.4", "goose/1.0.0", "goose/0.9.11"), 7),
)}
